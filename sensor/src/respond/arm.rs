//! Armed agents: deny patterns written to the kernel for each process of an
//! agent the config arms, so the kernel kills the process at the TLS write
//! of a matching request, before the bytes are encrypted (see
//! `sensor-ebpf/src/enforce.rs`, `block_armed_write`).
//!
//! Matching is on the first bytes of an HTTP/1.x request ("POST
//! /v1/orders"): the authority is not in the request line, so a pattern
//! applies to every host the agent talks to. HTTP/2 requests are binary
//! (HPACK) and are not matched in the kernel.

use std::collections::HashMap as StdHashMap;

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{HashMap, MapData},
};
use sensor_common::{ARM_PATTERN_MAX, ARM_RULES_MAX, ArmRules};
use tracing::{info, warn};

use crate::{config::ArmConfig, procs::Process};

/// Checks and packs deny patterns for the kernel.
pub fn rules(deny: &[String]) -> Result<ArmRules, String> {
    if deny.is_empty() {
        return Err("no deny pattern".into());
    }
    if deny.len() > ARM_RULES_MAX {
        return Err(format!("at most {ARM_RULES_MAX} deny patterns"));
    }
    let mut r = ArmRules::default();
    for (i, p) in deny.iter().enumerate() {
        let Some((method, path)) = p.split_once(' ') else {
            return Err(format!("{p:?} is not \"METHOD /path-prefix\""));
        };
        if method.is_empty()
            || !method.bytes().all(|b| b.is_ascii_uppercase())
            || !path.starts_with('/')
        {
            return Err(format!(
                "{p:?} is not \"METHOD /path-prefix\" (e.g. \"POST /v1/orders\")"
            ));
        }
        if p.len() > ARM_PATTERN_MAX {
            return Err(format!("{p:?} is longer than {ARM_PATTERN_MAX} bytes"));
        }
        r.patterns[i][..p.len()].copy_from_slice(p.as_bytes());
        r.pattern_len[i] = p.len() as u32;
    }
    r.len = deny.len() as u32;
    Ok(r)
}

/// Who is armed, for naming what the kernel blocked.
pub struct Armer {
    map: HashMap<MapData, u32, ArmRules>,
    config: Vec<ArmConfig>,
    /// tgid → index in `config`.
    armed: StdHashMap<u32, usize>,
}

/// What the kernel blocked, in words.
pub struct Blocked {
    pub agent: String,
    pub pattern: String,
}

impl Armer {
    pub fn take(bpf: &mut Ebpf, config: Vec<ArmConfig>) -> Result<Self> {
        let map = bpf.take_map("ARMED").context("map ARMED missing")?;
        Ok(Self {
            map: HashMap::try_from(map)?,
            config,
            armed: StdHashMap::new(),
        })
    }

    /// Arms `p` if it is a process of an armed agent (by the agent name or
    /// id its executable and command line give). Called for every process
    /// at start and at each exec, so a process is armed before it sends
    /// anything; its forks inherit the arming in the kernel.
    pub fn on_process(&mut self, p: &Process) -> bool {
        if self.config.is_empty() {
            return false;
        }
        let (id, name, _) = crate::agents::identity(p);
        let Some(i) = self
            .config
            .iter()
            .position(|a| a.agent == name || a.agent == id)
        else {
            return false;
        };
        let Ok(r) = rules(&self.config[i].deny) else {
            return false; // checked when the config was loaded
        };
        match self.map.insert(&p.pid, &r, 0) {
            Ok(()) => {
                info!(pid = p.pid, agent = %name, "armed");
                self.armed.insert(p.pid, i);
                true
            }
            Err(e) => {
                warn!(pid = p.pid, error = %e, "could not arm");
                false
            }
        }
    }

    pub fn on_exit(&mut self, pid: u32) {
        self.armed.remove(&pid);
    }

    /// A child forked by an armed process is armed in the kernel already.
    pub fn on_fork(&mut self, parent: u32, child: u32) {
        if let Some(&i) = self.armed.get(&parent) {
            self.armed.insert(child, i);
        }
    }

    pub fn blocked(&self, pid: u32, rule: u32) -> Blocked {
        let cfg = self.armed.get(&pid).and_then(|&i| self.config.get(i));
        Blocked {
            agent: cfg.map_or_else(|| "?".into(), |c| c.agent.clone()),
            pattern: cfg
                .and_then(|c| c.deny.get(rule as usize).cloned())
                .unwrap_or_else(|| format!("pattern {rule}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_checked_and_packed() {
        let r = rules(&["POST /v1/orders".into(), "DELETE /".into()]).unwrap();
        assert_eq!(r.len, 2);
        assert_eq!(&r.patterns[0][..15], b"POST /v1/orders");
        assert_eq!(r.pattern_len, [15, 8, 0, 0, 0, 0, 0, 0]);
        for bad in ["post /x", "POST", "POST x", ""] {
            assert!(rules(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(rules(&[]).is_err());
        assert!(rules(&vec!["GET /".to_string(); 9]).is_err());
        assert!(rules(&[format!("GET /{}", "a".repeat(64))]).is_err());
    }
}
