//! The operator's policy, a YAML file (`agents.policy`): per agent (by
//! name, id or process selector) the endpoints it may and may not call,
//! quotas, what counts as irreversible for it, which mode it is in, and
//! which findings trigger which response.
//!
//! ```yaml
//! policies:
//!   - name: orders
//!     agents: ["ordering_agent.py"]        # names or ids, and/or
//!     selector: { exe: "/opt/agents/*" }   # as [[agents.selectors]]
//!     mode: enforce                        # learn, monitor or enforce
//!     allow: ["GET vendor.example/v1/inventory/*", "POST */v1/recommendations"]
//!     deny: ["DELETE *", "POST */v1/refunds*"]
//!     irreversible: ["POST */v1/quotes*"]
//!     quotas:
//!       - { endpoint: "POST */v1/orders*", per_minute: 3 }
//!       - { endpoint: "*", per_minute: 120 }
//!     respond:
//!       - { finding: denied_endpoint, action: kill_tree }
//!       - { finding: "*", min_severity: high, action: isolate_tree }
//! ```
//!
//! An endpoint pattern is `METHOD host/path`: `*` for any method, any host
//! (or `*.example` for subdomains), and `*` in the path for anything
//! (including `/`). The path is matched against the call's path template
//! (`/v1/orders/{id}`) and its raw path, both without the query. A host
//! without a port matches any port.

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobMatcher};
use serde::Deserialize;

use super::mode::Mode;
use crate::{
    config::{ResponseAction, SelectorConfig, Severity},
    procs::Process,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    policies: Vec<EntryFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    name: String,
    #[serde(default)]
    agents: Vec<String>,
    #[serde(default)]
    selector: Option<SelectorConfig>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    irreversible: Vec<String>,
    #[serde(default)]
    quotas: Vec<QuotaFile>,
    #[serde(default)]
    respond: Vec<RespondFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaFile {
    endpoint: String,
    per_minute: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RespondFile {
    #[serde(default = "any")]
    finding: String,
    #[serde(default = "lowest")]
    min_severity: Severity,
    action: ResponseAction,
}

fn any() -> String {
    "*".into()
}

fn lowest() -> Severity {
    Severity::Low
}

/// `METHOD host/path`, compiled.
#[derive(Clone, Debug)]
pub struct EndpointPattern {
    pub text: String,
    method: Option<String>,
    host: Option<GlobMatcher>,
    host_has_port: bool,
    path: GlobMatcher,
}

impl EndpointPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t == "*" {
            return Self::parse("* */*");
        }
        let (method, rest) = t.split_once(' ').ok_or_else(|| {
            format!(
                "{text:?} is not \"METHOD host/path\" (e.g. \"POST vendor.example/v1/orders*\")"
            )
        })?;
        let rest = rest.trim();
        let method = match method {
            "*" => None,
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Some(m.to_ascii_uppercase())
            }
            m => return Err(format!("{text:?}: {m:?} is not an HTTP method or *")),
        };
        let (host, path) = match rest.find('/') {
            Some(0) => ("*", rest),
            Some(i) => (&rest[..i], &rest[i..]),
            None if rest == "*" => ("*", "/*"),
            None => {
                return Err(format!(
                    "{text:?}: the path must start with / (\"host/path\")"
                ));
            }
        };
        let glob = |p: &str, literal_separator: bool| {
            GlobBuilder::new(p)
                .literal_separator(literal_separator)
                .case_insensitive(!literal_separator)
                .build()
                .map(|g: Glob| g.compile_matcher())
                .map_err(|e| format!("{text:?}: {e}"))
        };
        Ok(Self {
            text: t.to_string(),
            method,
            host_has_port: host.contains(':'),
            host: if host == "*" {
                None
            } else {
                Some(glob(host, false)?)
            },
            path: GlobBuilder::new(path)
                .literal_separator(false)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| format!("{text:?}: {e}"))?,
        })
    }

    /// Whether a call (`authority` as sent, `path` raw or templated)
    /// matches.
    pub fn matches(&self, method: &str, authority: &str, template: &str, path: &str) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        if let Some(h) = &self.host {
            let host = if self.host_has_port {
                authority
            } else {
                super::catalog::host_of(authority)
            };
            if !h.is_match(host) {
                return false;
            }
        }
        if !template.starts_with('/') {
            // A database statement: its template is matched as if it were
            // a path ("DROP *", "DROP db.internal/DROP TABLE staging_*").
            return self.path.is_match(format!("/{template}"));
        }
        self.path.is_match(without_query(template)) || self.path.is_match(without_query(path))
    }
}

fn without_query(p: &str) -> &str {
    p.split('?').next().unwrap_or(p)
}

fn patterns(list: &[String]) -> Result<Vec<EndpointPattern>, String> {
    list.iter().map(|p| EndpointPattern::parse(p)).collect()
}

#[derive(Clone, Debug)]
pub struct Quota {
    /// None: all the agent's calls.
    pub endpoint: Option<EndpointPattern>,
    pub per_minute: u64,
}

#[derive(Clone, Debug)]
pub struct Respond {
    pub finding: String,
    pub min_severity: Severity,
    pub action: ResponseAction,
}

/// One policy entry, compiled.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    agents: Vec<String>,
    selector: Option<super::selectors::Selector>,
    pub mode: Option<Mode>,
    pub allow: Vec<EndpointPattern>,
    pub deny: Vec<EndpointPattern>,
    pub irreversible: Vec<EndpointPattern>,
    pub quotas: Vec<Quota>,
    pub respond: Vec<Respond>,
}

impl Entry {
    /// Whether it names the identity `id` (or its name).
    pub fn names(&self, id: &str, name: &str) -> bool {
        self.agents.iter().any(|a| a == id || a == name)
    }

    /// Whether its selector matches `p`.
    pub fn selects(&self, p: &Process) -> bool {
        self.selector.as_ref().is_some_and(|s| s.matches(p))
    }

    /// The first deny pattern the call matches.
    pub fn denied(&self, m: &str, a: &str, t: &str, p: &str) -> Option<&EndpointPattern> {
        self.deny.iter().find(|d| d.matches(m, a, t, p))
    }

    /// False only when there is an allow list and the call is not on it.
    pub fn allowed(&self, m: &str, a: &str, t: &str, p: &str) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|x| x.matches(m, a, t, p))
    }

    pub fn irreversible(&self, m: &str, a: &str, t: &str, p: &str) -> bool {
        self.irreversible.iter().any(|x| x.matches(m, a, t, p))
    }

    /// The response the policy gives a finding, if any of its rules match.
    pub fn response(&self, rule: &str, severity: Severity) -> Option<ResponseAction> {
        self.respond
            .iter()
            .find(|r| (r.finding == "*" || r.finding == rule) && severity >= r.min_severity)
            .map(|r| r.action)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub entries: Vec<Entry>,
}

impl Policy {
    /// Reads and checks the policy file; errors name the file, the entry
    /// and what is wrong.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: PolicyFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let mut entries = Vec::new();
        for e in file.policies {
            let name = e.name.clone();
            let at = |msg: String| format!("policy {name:?}: {msg}");
            if e.agents.is_empty() && e.selector.is_none() {
                return Err(at(
                    "names no agents and has no selector: say which agents it is for".into(),
                ));
            }
            let selector = e
                .selector
                .as_ref()
                .map(super::selectors::Selector::new)
                .transpose()
                .map_err(at)?;
            let quotas = e
                .quotas
                .iter()
                .map(|q| {
                    if q.per_minute == 0 {
                        return Err(at(format!(
                            "quota {:?}: per_minute must be at least 1 (deny the endpoint instead)",
                            q.endpoint
                        )));
                    }
                    Ok(Quota {
                        endpoint: if q.endpoint.trim() == "*" {
                            None
                        } else {
                            Some(EndpointPattern::parse(&q.endpoint).map_err(at)?)
                        },
                        per_minute: q.per_minute,
                    })
                })
                .collect::<Result<_, _>>()?;
            entries.push(Entry {
                name: e.name.clone(),
                agents: e.agents.clone(),
                selector,
                mode: e.mode,
                allow: patterns(&e.allow).map_err(at)?,
                deny: patterns(&e.deny).map_err(at)?,
                irreversible: patterns(&e.irreversible).map_err(at)?,
                quotas,
                respond: e
                    .respond
                    .iter()
                    .map(|r| Respond {
                        finding: r.finding.clone(),
                        min_severity: r.min_severity,
                        action: r.action,
                    })
                    .collect(),
            });
        }
        Ok(Self { entries })
    }

    /// The entry for an agent identity (its id and name) run by `p`: the
    /// first that names it or whose selector matches the process.
    pub fn for_agent(&self, id: &str, name: &str, p: &Process) -> Option<&Entry> {
        self.index_for(id, name, p).map(|i| &self.entries[i])
    }

    /// The index of `for_agent`'s entry in `entries`.
    pub fn index_for(&self, id: &str, name: &str, p: &Process) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.names(id, name) || e.selects(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_patterns() {
        let p = EndpointPattern::parse("POST vendor.example/v1/orders*").unwrap();
        assert!(p.matches("POST", "vendor.example:443", "/v1/orders", "/v1/orders"));
        assert!(p.matches("POST", "Vendor.Example", "/v1/orders/{id}", "/v1/orders/8"));
        assert!(!p.matches("GET", "vendor.example", "/v1/orders", "/v1/orders"));
        assert!(!p.matches("POST", "evil.example", "/v1/orders", "/v1/orders"));
        let any_host = EndpointPattern::parse("DELETE */customers/*").unwrap();
        assert!(any_host.matches("DELETE", "crm:8080", "/customers/{id}", "/customers/7"));
        let sub = EndpointPattern::parse("* *.corp.example/*").unwrap();
        assert!(sub.matches("GET", "billing.corp.example", "/x", "/x"));
        assert!(!sub.matches("GET", "corp.example.evil", "/x", "/x"));
        let port = EndpointPattern::parse("GET 127.0.0.1:8443/v1/*").unwrap();
        assert!(port.matches("GET", "127.0.0.1:8443", "/v1/a", "/v1/a"));
        assert!(!port.matches("GET", "127.0.0.1:9000", "/v1/a", "/v1/a"));
        // Database statements: the verb, the server, the template.
        let drop = "DROP TABLE staging_sessions";
        let any_drop = EndpointPattern::parse("DROP *").unwrap();
        assert!(any_drop.matches("DROP", "10.0.0.5:5432", drop, drop));
        assert!(!any_drop.matches("SELECT", "10.0.0.5:5432", "SELECT ?", "SELECT ?"));
        let staging = EndpointPattern::parse("DROP 10.0.0.5/DROP TABLE staging_*").unwrap();
        assert!(staging.matches("DROP", "10.0.0.5:5432", drop, drop));
        assert!(!staging.matches(
            "DROP",
            "10.0.0.5:5432",
            "DROP TABLE users",
            "DROP TABLE users"
        ));
        // The query never decides.
        let q = EndpointPattern::parse("GET /v1/models").unwrap();
        assert!(q.matches("GET", "h", "/v1/models?limit", "/v1/models?limit=5"));
        assert!(
            EndpointPattern::parse("*")
                .unwrap()
                .matches("PUT", "h", "/", "/")
        );
        for bad in ["POST", "P0ST /x", "POST vendor.example"] {
            assert!(EndpointPattern::parse(bad).is_err(), "{bad}");
        }
    }

    const POLICY: &str = r#"
policies:
  - name: orders
    agents: ["ordering_agent.py"]
    mode: enforce
    allow: ["GET */v1/inventory/*", "POST */v1/orders*"]
    deny: ["DELETE *"]
    irreversible: ["POST */v1/quotes*"]
    quotas:
      - { endpoint: "POST */v1/orders*", per_minute: 3 }
      - { endpoint: "*", per_minute: 100 }
    respond:
      - { finding: denied_endpoint, action: kill_tree }
      - { finding: "*", min_severity: high, action: isolate_tree }
  - name: bots
    selector: { exe: "/opt/bots/*" }
"#;

    #[test]
    fn a_policy_file_reads_and_answers() {
        let p = Policy::parse(POLICY).unwrap();
        let proc_ = |exe: &str| Process {
            pid: 1,
            start_ticks: 1,
            ppid: 0,
            uid: 0,
            comm: "x".into(),
            exe: exe.into(),
            cmdline: vec![],
            cgroup: None,
            cgroup_id: 0,
            container: None,
            partial: false,
            held: Vec::new(),
        };
        let e = p
            .for_agent("agt-1", "ordering_agent.py", &proc_("/usr/bin/python3"))
            .unwrap();
        assert_eq!(e.mode, Some(Mode::Enforce));
        assert!(
            e.denied("DELETE", "h", "/v1/orders/{id}", "/v1/orders/1")
                .is_some()
        );
        assert!(e.allowed("GET", "h", "/v1/inventory/{id}", "/v1/inventory/3"));
        assert!(!e.allowed("POST", "h", "/billing/credits", "/billing/credits"));
        assert!(e.irreversible("POST", "h", "/v1/quotes", "/v1/quotes"));
        assert_eq!(e.quotas.len(), 2);
        assert!(e.quotas[1].endpoint.is_none());
        assert_eq!(
            e.response("denied_endpoint", Severity::Medium),
            Some(ResponseAction::KillTree)
        );
        assert_eq!(
            e.response("new_endpoint", Severity::High),
            Some(ResponseAction::IsolateTree)
        );
        assert_eq!(e.response("new_endpoint", Severity::Medium), None);
        let b = p.for_agent("agt-2", "bot", &proc_("/opt/bots/b")).unwrap();
        assert_eq!(b.name, "bots");
        assert!(
            p.for_agent("agt-3", "other", &proc_("/usr/bin/x"))
                .is_none()
        );
    }

    #[test]
    fn bad_policies_say_where_and_why() {
        for (bad, why) in [
            ("policies: [", ""),
            ("policies:\n  - name: x\n", "names no agents"),
            (
                "policies:\n  - name: x\n    agents: [a]\n    deny: [\"POST\"]\n",
                "policy \"x\"",
            ),
            (
                "policies:\n  - name: x\n    agents: [a]\n    mode: loud\n",
                "loud",
            ),
            (
                "policies:\n  - name: x\n    agents: [a]\n    colour: red\n",
                "colour",
            ),
            (
                "policies:\n  - name: x\n    agents: [a]\n    quotas: [{endpoint: \"*\", per_minute: 0}]\n",
                "per_minute",
            ),
        ] {
            let e = Policy::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
