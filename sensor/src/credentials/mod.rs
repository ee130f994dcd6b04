//! The credential audit: every credential an agent holds (its process's
//! environment at exec: `env`) or uses (the fingerprint of a call's
//! credential), by fingerprint, with who held it, who used it for what,
//! and where it came from.
//!
//! A fingerprint is `fp:` and 12 hex digits of the host's keyed HMAC of
//! the credential (`http::fingerprint`); a call's may carry its scheme
//! (`Bearer fp:…`), dropped here so that a held key and the same key sent
//! as a bearer token are one credential.

pub mod env;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use env::{HeldCredential, Origin};

/// Credentials kept; the oldest seen is forgotten past this.
const CREDENTIALS_MAX: usize = 4096;
/// Holders, users and endpoints kept per credential.
const PER_CREDENTIAL_MAX: usize = 32;

/// `fp:…` without a scheme.
pub fn bare(fingerprint: &str) -> &str {
    fingerprint
        .rsplit_once(' ')
        .map_or(fingerprint, |(_, fp)| fp)
}

/// One agent identity that held a credential.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub agent: String,
    pub agent_id: String,
    pub var: String,
    pub inherited: bool,
    pub hops: u32,
    pub origin: Origin,
    /// Processes of the agent that held it.
    pub processes: u64,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

/// One agent identity that used a credential, and for what.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub agent: String,
    pub agent_id: String,
    /// Calls, those repeating one of the run's last 8 (credential,
    /// endpoint) pairs counted once (the agents module skips them).
    pub calls: u64,
    /// "METHOD authority template" → calls, counted the same way.
    pub endpoints: BTreeMap<String, u64>,
    /// Those of `endpoints` that cannot be undone.
    pub irreversible: Vec<String>,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub fingerprint: String,
    /// Runs (sessions) of agents that used it, and its first use.
    pub sessions_used: u64,
    pub first_used_ns: u64,
    /// From the variable that held it (`api_key`, `db_user`, …) or the
    /// call that used it (`bearer`, `header`, `db_user`).
    pub kind: String,
    pub held_by: Vec<Holder>,
    pub used_by: Vec<User>,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

impl Credential {
    /// Held by an identity that never used it: an ambient credential.
    pub fn ambient_for(&self, agent_id: &str) -> bool {
        self.held_by.iter().any(|h| h.agent_id == agent_id)
            && !self.used_by.iter().any(|u| u.agent_id == agent_id)
    }
}

/// A finding of the credential audit (the agents module adds the mode).
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub rule: &'static str,
    pub severity: &'static str,
    pub summary: String,
    /// What it is about: the call's endpoint, or "VAR fp:…" when held.
    pub subject: String,
    pub credential: String,
    pub count: u64,
}

/// When a credential is not scoped to a task.
#[derive(Clone, Copy, Debug)]
pub struct Lifetime {
    pub max_sessions: u64,
    pub max_days: u64,
}

/// Every credential agents held or used, by bare fingerprint.
#[derive(Default)]
pub struct Inventory {
    /// A hash map: looked up on every call of an agent with a credential.
    by_fp: crate::agents::FastMap<String, Credential>,
    /// Processes whose holdings were counted, per agent (once each), by
    /// hash: this is looked up on every event of an agent holding one.
    counted: crate::agents::FastSet<u64>,
    /// (session, rule, fingerprint) by hash: each rule once per run and
    /// credential.
    reported: crate::agents::FastSet<u64>,
}

/// A 64-bit key for the sets above (foldhash, as the agents' maps).
fn key_of(parts: (u32, u64, &str, &str)) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::default().hash_one(parts)
}

const DAY_NS: u64 = 86_400 * 1_000_000_000;

/// "name (id), name (id)".
fn names<'a>(who: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    who.map(|(n, id)| format!("{n} ({id})"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Inventory {
    fn entry(&mut self, fp: &str, kind: &str, ts: u64) -> &mut Credential {
        if self.by_fp.contains_key(fp) {
            // Known (the common case): no allocation.
            let c = self.by_fp.get_mut(fp).expect("present");
            c.last_seen_ns = c.last_seen_ns.max(ts);
            return c;
        }
        if self.by_fp.len() >= CREDENTIALS_MAX {
            let oldest = self
                .by_fp
                .iter()
                .min_by_key(|(_, c)| c.last_seen_ns)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.by_fp.remove(&k);
            }
        }
        let c = self
            .by_fp
            .entry(fp.to_string())
            .or_insert_with(|| Credential {
                fingerprint: fp.to_string(),
                kind: kind.to_string(),
                first_seen_ns: ts,
                ..Default::default()
            });
        c.last_seen_ns = c.last_seen_ns.max(ts);
        c
    }

    /// Process `key` of an agent holds `held`: counted once per process
    /// and agent (true then).
    pub fn held(
        &mut self,
        key: (u32, u64),
        agent: &str,
        agent_id: &str,
        held: &[HeldCredential],
        ts: u64,
    ) -> bool {
        if held.is_empty() || !self.counted.insert(key_of((key.0, key.1, agent_id, ""))) {
            return false;
        }
        if self.counted.len() > 100_000 {
            self.counted.clear(); // bound memory; a recount adds a session
        }
        for h in held {
            let c = self.entry(&h.fingerprint, h.kind, ts);
            // The variable's name says more than the header it went in.
            c.kind = h.kind.to_string();
            let full = c.held_by.len() >= PER_CREDENTIAL_MAX;
            match c
                .held_by
                .iter_mut()
                .find(|x| x.agent_id == agent_id && x.var == h.var)
            {
                Some(x) => {
                    x.processes += 1;
                    x.last_seen_ns = x.last_seen_ns.max(ts);
                }
                None if !full => c.held_by.push(Holder {
                    agent: agent.to_string(),
                    agent_id: agent_id.to_string(),
                    var: h.var.clone(),
                    inherited: h.inherited,
                    hops: h.hops,
                    origin: h.origin.clone(),
                    processes: 1,
                    first_seen_ns: ts,
                    last_seen_ns: ts,
                }),
                None => {}
            }
        }
        true
    }

    /// An agent's call used credential `fingerprint` at `endpoint`.
    #[allow(clippy::too_many_arguments)]
    pub fn used(
        &mut self,
        agent: &str,
        agent_id: &str,
        fingerprint: &str,
        database: bool,
        endpoint: &str,
        irreversible: bool,
        ts: u64,
    ) {
        let kind = if database {
            "db_user"
        } else if fingerprint.contains(' ') {
            "bearer"
        } else {
            "header"
        };
        let c = self.entry(bare(fingerprint), kind, ts);
        let i = match c.used_by.iter().position(|u| u.agent_id == agent_id) {
            Some(i) => i,
            None if c.used_by.len() < PER_CREDENTIAL_MAX => {
                c.used_by.push(User {
                    agent: agent.to_string(),
                    agent_id: agent_id.to_string(),
                    first_seen_ns: ts,
                    ..Default::default()
                });
                c.used_by.len() - 1
            }
            None => return,
        };
        let u = &mut c.used_by[i];
        u.calls += 1;
        u.last_seen_ns = u.last_seen_ns.max(ts);
        if let Some(n) = u.endpoints.get_mut(endpoint) {
            *n += 1;
        } else if u.endpoints.len() < PER_CREDENTIAL_MAX {
            u.endpoints.insert(endpoint.to_string(), 1);
        }
        if irreversible
            && u.irreversible.len() < PER_CREDENTIAL_MAX
            && !u.irreversible.iter().any(|e| e == endpoint)
        {
            u.irreversible.push(endpoint.to_string());
        }
    }

    fn first(&mut self, session: (u32, u64), rule: &'static str, fp: &str) -> bool {
        if self.reported.len() > 100_000 {
            self.reported.clear();
        }
        self.reported
            .insert(key_of((session.0, session.1, rule, fp)))
    }

    /// After `used`: a credential shared by several agent identities, or
    /// not scoped to a task (used over too many runs or days). Once per
    /// run and credential each.
    pub fn on_use(
        &mut self,
        session: (u32, u64),
        agent_id: &str,
        fingerprint: &str,
        ts: u64,
        lifetime: Lifetime,
    ) -> Vec<Alert> {
        let fp = bare(fingerprint);
        let mut out = Vec::new();
        let new_run = self.first(session, "used", fp);
        let Some(c) = self.by_fp.get_mut(fp) else {
            return out;
        };
        if new_run {
            c.sessions_used += 1;
        }
        if c.first_used_ns == 0 {
            c.first_used_ns = ts;
        }
        let (runs, days) = (c.sessions_used, ts.saturating_sub(c.first_used_ns) / DAY_NS);
        let too_long = runs > lifetime.max_sessions || days > lifetime.max_days;
        let shared = c.used_by.iter().any(|u| u.agent_id != agent_id);
        // The common case (nothing to say, or said in this run already):
        // nothing allocated.
        let unsaid = |rule| {
            !self
                .reported
                .contains(&key_of((session.0, session.1, rule, fp)))
        };
        let shared = shared && unsaid("shared_credential");
        let too_long = too_long && unsaid("long_lived_credential");
        if !shared && !too_long {
            return out;
        }
        let others: Vec<(String, String)> = c
            .used_by
            .iter()
            .filter(|u| u.agent_id != agent_id)
            .map(|u| (u.agent.clone(), u.agent_id.clone()))
            .collect();
        let fp = fp.to_string();
        if shared && self.first(session, "shared_credential", &fp) {
            out.push(Alert {
                rule: "shared_credential",
                severity: "medium",
                summary: format!(
                    "credential {fp} is used by {} other agent identit{} too: {}",
                    others.len(),
                    if others.len() == 1 { "y" } else { "ies" },
                    names(others.iter().map(|(n, i)| (n.as_str(), i.as_str())))
                ),
                subject: String::new(),
                credential: fp.clone(),
                count: others.len() as u64 + 1,
            });
        }
        if too_long && self.first(session, "long_lived_credential", &fp) {
            out.push(Alert {
                rule: "long_lived_credential",
                severity: "low",
                summary: format!(
                    "credential {fp} has been used in {runs} runs over {days} days (limits {} runs, {} days): not scoped to a task",
                    lifetime.max_sessions, lifetime.max_days
                ),
                subject: String::new(),
                credential: fp.clone(),
                count: runs,
            });
        }
        out
    }

    /// After `held`: credentials the agent holds but has no use for. One
    /// another identity used for irreversible calls (high), or, once the
    /// agent learned, one it never used while learning (`learned` says
    /// which it used). Once per run and credential.
    pub fn on_held(
        &mut self,
        session: (u32, u64),
        agent_id: &str,
        held: &[HeldCredential],
        learned: Option<&dyn Fn(&str) -> bool>,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        for h in held {
            let Some(c) = self.by_fp.get(&h.fingerprint) else {
                continue;
            };
            let used_here = c.used_by.iter().any(|u| u.agent_id == agent_id);
            let irreversible_elsewhere: Vec<(&str, &str)> = c
                .used_by
                .iter()
                .filter(|u| u.agent_id != agent_id && !u.irreversible.is_empty())
                .map(|u| (u.agent.as_str(), u.agent_id.as_str()))
                .collect();
            let alert = if !irreversible_elsewhere.is_empty() && !used_here {
                Some((
                    "high",
                    format!(
                        "holds {} ({}), which {} used for irreversible calls: an ambient credential",
                        h.var,
                        h.fingerprint,
                        names(irreversible_elsewhere.into_iter())
                    ),
                ))
            } else {
                match learned {
                    Some(l) if !l(&h.fingerprint) && !used_here => Some((
                        "medium",
                        format!(
                            "holds {} ({}, {}) and never used it in its learned runs: an ambient credential",
                            h.var,
                            h.fingerprint,
                            if h.inherited {
                                format!("inherited from {} [{}]", h.origin.exe, h.origin.pid)
                            } else {
                                "set at its exec".to_string()
                            }
                        ),
                    )),
                    _ => None,
                }
            };
            if let Some((severity, summary)) = alert
                && self.first(session, "ambient_credential", &h.fingerprint)
            {
                out.push(Alert {
                    rule: "ambient_credential",
                    severity,
                    summary,
                    subject: format!("{} {}", h.var, h.fingerprint),
                    credential: h.fingerprint.clone(),
                    count: 0,
                });
            }
        }
        out
    }

    /// Every credential, as `credentials.json` in the state directory
    /// keeps them (who held and used each survives a restart; which
    /// processes and runs were counted does not, as runs end with it).
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&self.list(None))
    }

    /// The credentials `to_json` saved.
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        let list: Vec<Credential> = serde_json::from_slice(bytes)?;
        let mut inv = Inventory::default();
        for c in list.into_iter().take(CREDENTIALS_MAX) {
            inv.by_fp.insert(c.fingerprint.clone(), c);
        }
        Ok(inv)
    }

    /// Every credential, or those an agent (name or id) held or used.
    pub fn list(&self, agent: Option<&str>) -> Vec<&Credential> {
        let involves = |c: &Credential, a: &str| {
            c.held_by.iter().any(|h| h.agent == a || h.agent_id == a)
                || c.used_by.iter().any(|u| u.agent == a || u.agent_id == a)
        };
        let mut out: Vec<&Credential> = self
            .by_fp
            .values()
            .filter(|c| agent.is_none_or(|a| involves(c, a)))
            .collect();
        out.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(fp: &str, var: &str, inherited: bool) -> HeldCredential {
        HeldCredential {
            var: var.into(),
            fingerprint: fp.into(),
            kind: "api_key",
            inherited,
            hops: u32::from(inherited),
            origin: Origin {
                pid: 10,
                exe: "/usr/bin/python3".into(),
                cmdline: "python3 migrate.py".into(),
            },
        }
    }

    #[test]
    fn a_held_key_and_the_same_key_sent_as_bearer_are_one_credential() {
        let mut inv = Inventory::default();
        let keys = [
            held("fp:aaaaaaaaaaaa", "ADMIN_KEY", true),
            held("fp:bbbbbbbbbbbb", "READ_KEY", false),
        ];
        inv.held((11, 1), "verifier", "agt-1", &keys, 5);
        // The same session again: not counted twice.
        inv.held((11, 1), "verifier", "agt-1", &keys, 6);
        inv.used(
            "verifier",
            "agt-1",
            "Bearer fp:bbbbbbbbbbbb",
            false,
            "GET a /v1/x",
            false,
            7,
        );
        inv.used(
            "billing",
            "agt-2",
            "Bearer fp:aaaaaaaaaaaa",
            false,
            "DELETE a /v1/y",
            true,
            8,
        );
        let all = inv.list(None);
        assert_eq!(all.len(), 2);
        let admin = all
            .iter()
            .find(|c| c.fingerprint == "fp:aaaaaaaaaaaa")
            .unwrap();
        assert_eq!(admin.held_by[0].processes, 1);
        assert!(admin.held_by[0].inherited);
        assert_eq!(admin.used_by[0].irreversible, ["DELETE a /v1/y"]);
        // Held by the verifier, never used by it: ambient for it.
        assert!(admin.ambient_for("agt-1"));
        let read = all
            .iter()
            .find(|c| c.fingerprint == "fp:bbbbbbbbbbbb")
            .unwrap();
        assert!(!read.ambient_for("agt-1"));
        assert_eq!(inv.list(Some("billing")).len(), 1);
        assert_eq!(inv.list(Some("verifier")).len(), 2);
    }

    const LIFE: Lifetime = Lifetime {
        max_sessions: 2,
        max_days: 30,
    };

    #[test]
    fn shared_and_long_lived_credentials_are_found_once_per_run() {
        let mut inv = Inventory::default();
        let fp = "Bearer fp:aaaaaaaaaaaa";
        let mut rules = Vec::new();
        for (session, agent) in [(1, "agt-1"), (1, "agt-1"), (2, "agt-1"), (3, "agt-2")] {
            inv.used(agent, agent, fp, false, "GET a /x", false, 10);
            rules.extend(
                inv.on_use((session, 0), agent, fp, 10, LIFE)
                    .into_iter()
                    .map(|a| (session, a.rule)),
            );
        }
        // The third run is one too many; the second identity shares it.
        assert_eq!(
            rules,
            [(3, "shared_credential"), (3, "long_lived_credential")]
        );
        // Days count too.
        let mut inv = Inventory::default();
        inv.used("a", "agt-1", fp, false, "GET a /x", false, 1);
        assert!(inv.on_use((1, 0), "agt-1", fp, 1, LIFE).is_empty());
        let later = 1 + 31 * DAY_NS;
        let a = inv.on_use((2, 0), "agt-1", fp, later, LIFE);
        assert_eq!(a[0].rule, "long_lived_credential");
        assert!(a[0].summary.contains("31 days"), "{}", a[0].summary);
    }

    #[test]
    fn a_held_credential_it_has_no_use_for_is_ambient() {
        let mut inv = Inventory::default();
        let admin = held("fp:aaaaaaaaaaaa", "ADMIN_KEY", true);
        let read = held("fp:bbbbbbbbbbbb", "READ_KEY", false);
        // Another identity deleted with the admin key.
        inv.used(
            "billing",
            "agt-2",
            "Bearer fp:aaaaaaaaaaaa",
            false,
            "DELETE a /y",
            true,
            1,
        );
        let both = [admin.clone(), read.clone()];
        inv.held((5, 0), "verifier", "agt-1", &both, 2);
        let a = inv.on_held((5, 0), "agt-1", &both, None);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!((a[0].rule, a[0].severity), ("ambient_credential", "high"));
        assert!(a[0].summary.contains("billing (agt-2)"), "{}", a[0].summary);
        // Once learned: what it never used while learning is ambient too;
        // what it used is not.
        let learned = |fp: &str| fp == "fp:bbbbbbbbbbbb";
        inv.held((6, 0), "verifier", "agt-1", &both, 3);
        let a = inv.on_held((6, 0), "agt-1", &both, Some(&learned));
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].subject, "ADMIN_KEY fp:aaaaaaaaaaaa");
        // Once per run.
        assert!(
            inv.on_held((6, 0), "agt-1", &both, Some(&learned))
                .is_empty()
        );
    }
}
