//! Operator-named agents: processes that are agents by what they are
//! (executable, command line, container, cgroup, uid), whether or not
//! their LLM traffic is visible, e.g. an agent behind an internal gateway
//! the catalogue does not know; and `Naming`, the one way a process gets
//! its agent id and name.

use std::sync::{Arc, OnceLock};

use globset::{Glob, GlobMatcher};
use regex::Regex;

use crate::{config::SelectorConfig, pods::PodContainer, procs::Process};

/// One compiled selector: every field given must match.
#[derive(Clone, Debug)]
pub struct Selector {
    pub name: Option<String>,
    exe: Option<GlobMatcher>,
    /// The process name (`comm`) a process exec'd as this selector's
    /// executable gets, when the glob's last component is literal: the
    /// kernel arms by it at exec (see `Naming::exec_names`).
    exec_name: Option<String>,
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
            exec_name: c.exe.as_deref().and_then(exec_name),
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

/// The kernel's name for a process exec'd from a file matching `exe`:
/// the file name's first 15 bytes, if the glob's last component is
/// literal (`*/claude-code-linux-x64/claude` gives `claude`).
fn exec_name(exe: &str) -> Option<String> {
    let base = exe.rsplit('/').next()?;
    if base.is_empty() || base.contains(['*', '?', '[', ']', '{', '}', '\\']) {
        return None;
    }
    let mut end = base.len().min(15);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    Some(base[..end].to_string())
}

/// The first selector `p` matches.
pub fn first<'a>(selectors: &'a [Selector], p: &Process) -> Option<&'a Selector> {
    selectors.iter().find(|s| s.matches(p))
}

/// A process as an agent: its identity and readable name.
#[derive(Clone, Debug, PartialEq)]
pub struct Named {
    pub id: String,
    pub name: String,
    /// The command line as identified (volatile arguments dropped).
    pub cmdline: Vec<String>,
    /// An operator selector matched it: it is an agent whatever it calls.
    pub selected: bool,
}

/// How processes are named as agents: the identity of their executable
/// and command line (or of their pod's workload), and the name of the
/// first operator selector that matches them, else the one derived from
/// the process. Every part of the daemon that names a process asks this
/// (the agents module for its events, the armer for holds, arms and
/// remembered approvals), so an agent named in `[[response.hold]]`,
/// `[[response.arm]]`, `response.agents` or the policy is the one the
/// events show.
#[derive(Clone, Debug, Default)]
pub struct Naming {
    selectors: Arc<[Selector]>,
}

/// The daemon's naming, installed once at start (see `Naming::install`).
static INSTALLED: OnceLock<Naming> = OnceLock::new();

impl Naming {
    pub fn new(selectors: Vec<Selector>) -> Self {
        Self {
            selectors: selectors.into(),
        }
    }

    pub fn from_config(selectors: &[SelectorConfig]) -> Result<Self, String> {
        Ok(Self::new(
            selectors
                .iter()
                .map(Selector::new)
                .collect::<Result<_, _>>()?,
        ))
    }

    /// The process names a process of agent `name` has right after its
    /// exec, when operator selectors name it by a literal executable
    /// file name. The kernel arms such a process at its exec, before the
    /// daemon has read the exec event; the daemon then checks the full
    /// identity and undoes the arming of a namesake that is not the agent.
    pub fn exec_names(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .selectors
            .iter()
            .filter(|s| s.name.as_deref() == Some(name))
            .filter_map(|s| s.exec_name.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether no operator selector is configured.
    pub fn has_selectors(&self) -> bool {
        !self.selectors.is_empty()
    }

    /// `p` (in `pod`, if it runs in one) as an agent. Selectors are not
    /// checked against a process whose exe and command line could not be
    /// read (`partial`).
    pub fn name(&self, p: &Process, pod: Option<&PodContainer>) -> Named {
        let (id, derived, cmdline) = super::identity_in(p, pod);
        let selector = if p.partial {
            None
        } else {
            first(&self.selectors, p)
        };
        Named {
            id,
            name: selector.and_then(|s| s.name.clone()).unwrap_or(derived),
            cmdline,
            selected: selector.is_some(),
        }
    }

    /// Makes this the naming `installed` returns: the daemon's, set when
    /// its config is read (once per process, as the operator's providers
    /// are; a second call is ignored), for the parts of the daemon built
    /// from the config without it (the armer).
    pub fn install(&self) {
        let _ = INSTALLED.set(self.clone());
    }

    /// The daemon's naming; without one installed, identities and derived
    /// names only.
    pub fn installed() -> Naming {
        INSTALLED.get().cloned().unwrap_or_default()
    }
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
            held: Vec::new(),
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
    fn naming_gives_the_selectors_name_to_the_identity() {
        let naming = Naming::from_config(&[
            SelectorConfig {
                name: Some("dba".into()),
                cmdline: Some(r"dba_agent\.py".into()),
                ..Default::default()
            },
            SelectorConfig {
                uid: Some(1001),
                ..Default::default()
            },
        ])
        .unwrap();
        let script = ["python3", "/tmp/x1/dba_agent.py"];
        let dba = naming.name(&process("/usr/bin/python3.11", &script, 0), None);
        let (id, derived, _) = crate::agents::identity(&process("/usr/bin/python3.11", &script, 0));
        assert_eq!((dba.id.as_str(), dba.name.as_str()), (id.as_str(), "dba"));
        assert!(dba.selected);
        assert_eq!(derived, "dba_agent.py");
        // A selector without a name makes an agent and keeps the derived
        // name; no selector, no agent by selection.
        let svc = naming.name(&process("/opt/bot", &["bot"], 1001), None);
        assert_eq!((svc.name.as_str(), svc.selected), ("bot", true));
        let other = naming.name(&process("/usr/bin/curl", &["curl"], 0), None);
        assert_eq!((other.name.as_str(), other.selected), ("curl", false));
        // What could not be read is not selected.
        let mut partial = process("/usr/bin/python3.11", &script, 0);
        partial.partial = true;
        let p = naming.name(&partial, None);
        assert_eq!((p.name.as_str(), p.selected), ("dba_agent.py", false));
        assert!(!Naming::default().has_selectors() && naming.has_selectors());
    }

    #[test]
    fn exec_names_are_the_literal_file_names_of_an_agents_selectors() {
        let sel = |name: &str, exe: &str| SelectorConfig {
            name: Some(name.into()),
            exe: Some(exe.into()),
            ..Default::default()
        };
        let naming = Naming::from_config(&[
            sel("claude-code", "*/claude-code-linux-x64/claude"),
            sel("claude-code", "/root/.local/share/claude/versions/*"),
            sel("claude-code", "/opt/claude"),
            sel("indexer", "/opt/bin/a-very-long-agent-binary-name"),
            sel("py", "/usr/bin/python3.*"),
        ])
        .unwrap();
        assert_eq!(naming.exec_names("claude-code"), ["claude"]);
        // The kernel keeps 15 bytes of a process name.
        assert_eq!(naming.exec_names("indexer"), ["a-very-long-age"]);
        assert!(naming.exec_names("py").is_empty(), "a glob names no one");
        assert!(naming.exec_names("nobody").is_empty());
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
