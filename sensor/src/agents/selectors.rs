//! Operator-named agents: processes that are agents by what they are
//! (executable, command line, container, cgroup, uid), whether or not
//! their LLM traffic is visible, e.g. an agent behind an internal gateway
//! the catalogue does not know.

use globset::{Glob, GlobMatcher};
use regex::Regex;

use crate::{config::SelectorConfig, procs::Process};

/// One compiled selector: every field given must match.
#[derive(Clone, Debug)]
pub struct Selector {
    pub name: Option<String>,
    exe: Option<GlobMatcher>,
    cmdline: Option<Regex>,
    container: Option<GlobMatcher>,
    cgroup: Option<GlobMatcher>,
    uid: Option<u32>,
}

fn glob(field: &str, pattern: &Option<String>) -> Result<Option<GlobMatcher>, String> {
    pattern
        .as_deref()
        .map(|p| {
            Glob::new(p)
                .map(|g| g.compile_matcher())
                .map_err(|e| format!("{field} {p:?} is not a glob: {e}"))
        })
        .transpose()
}

impl Selector {
    pub fn new(c: &SelectorConfig) -> Result<Self, String> {
        let cmdline = c
            .cmdline
            .as_deref()
            .map(|r| Regex::new(r).map_err(|e| format!("cmdline {r:?} is not a regex: {e}")))
            .transpose()?;
        let s = Self {
            name: c.name.clone(),
            exe: glob("exe", &c.exe)?,
            cmdline,
            container: glob("container", &c.container)?,
            cgroup: glob("cgroup", &c.cgroup)?,
            uid: c.uid,
        };
        if s.exe.is_none()
            && s.cmdline.is_none()
            && s.container.is_none()
            && s.cgroup.is_none()
            && s.uid.is_none()
        {
            return Err(
                "a selector needs at least one of exe, cmdline, container, cgroup, uid (it would make every process an agent)"
                    .into(),
            );
        }
        Ok(s)
    }

    pub fn matches(&self, p: &Process) -> bool {
        if let Some(g) = &self.exe
            && !g.is_match(&p.exe)
        {
            return false;
        }
        if let Some(r) = &self.cmdline
            && !r.is_match(&p.cmdline.join(" "))
        {
            return false;
        }
        if let Some(g) = &self.container {
            match &p.container {
                Some(c) if g.is_match(&c.id) => {}
                _ => return false,
            }
        }
        if let Some(g) = &self.cgroup {
            match &p.cgroup {
                Some(c) if g.is_match(c) => {}
                _ => return false,
            }
        }
        self.uid.is_none_or(|u| u == p.uid)
    }
}

/// The first selector `p` matches.
pub fn first<'a>(selectors: &'a [Selector], p: &Process) -> Option<&'a Selector> {
    selectors.iter().find(|s| s.matches(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(exe: &str, cmd: &[&str], uid: u32) -> Process {
        Process {
            pid: 1,
            start_ticks: 1,
            ppid: 0,
            uid,
            comm: "x".into(),
            exe: exe.into(),
            cmdline: cmd.iter().map(|s| s.to_string()).collect(),
            cgroup: Some("/system.slice/agent-billing.service".into()),
            cgroup_id: 0,
            container: None,
            partial: false,
        }
    }

    #[test]
    fn every_given_field_must_match() {
        let s = Selector::new(&SelectorConfig {
            exe: Some("/opt/agents/*".into()),
            cmdline: Some(r"--role[= ]billing".into()),
            uid: Some(1001),
            ..Default::default()
        })
        .unwrap();
        let yes = process("/opt/agents/bot", &["bot", "--role", "billing"], 1001);
        assert!(s.matches(&yes));
        assert!(!s.matches(&process(
            "/usr/bin/bot",
            &["bot", "--role", "billing"],
            1001
        )));
        assert!(!s.matches(&process("/opt/agents/bot", &["bot"], 1001)));
        assert!(!s.matches(&process("/opt/agents/bot", &["bot", "--role=billing"], 0)));
        let c = Selector::new(&SelectorConfig {
            cgroup: Some("/system.slice/agent-*.service".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(c.matches(&yes));
        let k = Selector::new(&SelectorConfig {
            container: Some("*".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(!k.matches(&yes), "not in a container");
    }

    #[test]
    fn bad_selectors_are_clear_errors() {
        let e = Selector::new(&SelectorConfig::default()).unwrap_err();
        assert!(e.contains("at least one of"), "{e}");
        let e = Selector::new(&SelectorConfig {
            cmdline: Some("(".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("cmdline") && e.contains("regex"), "{e}");
        let e = Selector::new(&SelectorConfig {
            exe: Some("[".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("exe") && e.contains("glob"), "{e}");
    }
}
