//! Subscription filters: an allow-list and a deny-list of the same shape,
//! and a minimum severity.
//!
//! Besides the event kinds, `llm_call` names the `api_call` events that
//! went to an LLM provider (they carry `provider`), so a SOC tool can ask
//! for model traffic alone.

use regex::Regex;
use sensor_proto::v1 as pb;
use tonic::Status;

/// The pseudo-kind of `api_call` events to an LLM provider.
const LLM_CALL: &str = "llm_call";

fn kind_matches(kinds: &[String], e: &pb::Event) -> bool {
    kinds.iter().any(|k| {
        *k == e.kind
            || (k == LLM_CALL
                && matches!(&e.payload, Some(pb::event::Payload::ApiCall(c)) if !c.provider.is_empty()))
    })
}

/// One `pb::Filter`, compiled. Every non-empty field must match; a list
/// matches when any value does.
#[derive(Debug, Default)]
struct Compiled {
    kinds: Vec<String>,
    agent_ids: Vec<String>,
    pids: Vec<u32>,
    exe: Option<Regex>,
    container_id: String,
    pod: String,
    namespace: String,
    agent_session: String,
}

impl Compiled {
    fn new(f: Option<&pb::Filter>, which: &str) -> Result<Self, Status> {
        let Some(f) = f else {
            return Ok(Self::default());
        };
        let exe = if f.exe_regex.is_empty() {
            None
        } else {
            Some(Regex::new(&f.exe_regex).map_err(|e| {
                Status::invalid_argument(format!("{which}.exe_regex is not a valid regex: {e}"))
            })?)
        };
        Ok(Self {
            kinds: f.kinds.clone(),
            agent_ids: f.agent_ids.clone(),
            pids: f.pids.clone(),
            exe,
            container_id: f.container_id.clone(),
            pod: f.pod.clone(),
            namespace: f.namespace.clone(),
            agent_session: f.agent_session.clone(),
        })
    }

    fn is_empty(&self) -> bool {
        self.kinds.is_empty()
            && self.agent_ids.is_empty()
            && self.pids.is_empty()
            && self.exe.is_none()
            && self.container_id.is_empty()
            && self.pod.is_empty()
            && self.namespace.is_empty()
            && self.agent_session.is_empty()
    }

    fn matches(&self, e: &pb::Event) -> bool {
        let p = e.process.as_ref();
        let pod = p.and_then(|p| p.pod.as_ref());
        (self.kinds.is_empty() || kind_matches(&self.kinds, e))
            && (self.agent_ids.is_empty()
                || p.is_some_and(|p| self.agent_ids.contains(&p.agent_id)))
            && (self.pids.is_empty() || p.is_some_and(|p| self.pids.contains(&p.pid)))
            && self
                .exe
                .as_ref()
                .is_none_or(|re| p.is_some_and(|p| re.is_match(&p.exe)))
            && (self.container_id.is_empty()
                || p.is_some_and(|p| p.container_id.starts_with(&self.container_id)))
            && (self.pod.is_empty() || pod.is_some_and(|x| x.name == self.pod))
            && (self.namespace.is_empty() || pod.is_some_and(|x| x.namespace == self.namespace))
            && (self.agent_session.is_empty()
                || p.is_some_and(|p| p.agent_session == self.agent_session))
    }
}

#[derive(Debug)]
pub struct Selection {
    allow: Compiled,
    deny: Compiled,
    min_severity: i32,
}

impl Selection {
    pub fn new(
        allow: Option<&pb::Filter>,
        deny: Option<&pb::Filter>,
        min_severity: i32,
    ) -> Result<Self, Status> {
        Ok(Self {
            allow: Compiled::new(allow, "allow")?,
            deny: Compiled::new(deny, "deny")?,
            min_severity,
        })
    }

    pub fn passes(&self, e: &pb::Event) -> bool {
        // A subscriber must always learn that it lost events or that the
        // sensor failed, whatever it filters on.
        if e.kind == "lagged" || e.kind == "error" {
            return true;
        }
        e.severity >= self.min_severity
            && self.allow.matches(e)
            && (self.deny.is_empty() || !self.deny.matches(e))
    }

    /// Event kinds the allow-list is limited to (empty: any), as stored,
    /// so stores can narrow their query (`llm_call` is stored as
    /// `api_call`).
    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self
            .allow
            .kinds
            .iter()
            .map(|k| {
                if k == LLM_CALL {
                    "api_call".into()
                } else {
                    k.clone()
                }
            })
            .collect();
        k.sort();
        k.dedup();
        k
    }

    /// The single pid the allow-list names, if it names exactly one.
    pub fn single_pid(&self) -> Option<u32> {
        match self.allow.pids.as_slice() {
            [p] => Some(*p),
            _ => None,
        }
    }

    /// Agents the allow-list is limited to (empty: any).
    pub fn agent_ids(&self) -> &[String] {
        &self.allow.agent_ids
    }

    /// The agent session asked for, if any: the store selects by it.
    pub fn session(&self) -> Option<&str> {
        (!self.allow.agent_session.is_empty()).then_some(self.allow.agent_session.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, pid: u32, exe: &str) -> pb::Event {
        pb::Event {
            kind: kind.into(),
            severity: super::super::convert::severity(kind) as i32,
            process: Some(pb::Process {
                pid,
                exe: exe.into(),
                container_id: "abcdef".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn filter(f: impl FnOnce(&mut pb::Filter)) -> pb::Filter {
        let mut x = pb::Filter::default();
        f(&mut x);
        x
    }

    #[test]
    fn allow_and_deny() {
        let allow = filter(|f| {
            f.kinds = vec!["api_call".into(), "connect".into()];
            f.exe_regex = "python".into();
        });
        let deny = filter(|f| f.pids = vec![7]);
        let s = Selection::new(Some(&allow), Some(&deny), 0).unwrap();
        assert!(s.passes(&ev("api_call", 1, "/usr/bin/python3")));
        assert!(s.passes(&ev("connect", 1, "/usr/bin/python3")));
        assert!(!s.passes(&ev("exec", 1, "/usr/bin/python3")), "kind");
        assert!(!s.passes(&ev("api_call", 1, "/usr/bin/curl")), "exe");
        assert!(
            !s.passes(&ev("api_call", 7, "/usr/bin/python3")),
            "denied pid"
        );
        assert!(s.passes(&ev("lagged", 0, "")), "lagged always passes");
    }

    #[test]
    fn empty_allows_everything_and_severity_cuts() {
        let s = Selection::new(None, None, pb::Severity::Low as i32).unwrap();
        assert!(!s.passes(&ev("api_call", 1, "x")), "info < low");
        assert!(s.passes(&ev("parse_error", 1, "x")));
        let c = filter(|f| f.container_id = "abc".into());
        let s = Selection::new(Some(&c), None, 0).unwrap();
        assert!(s.passes(&ev("exec", 1, "x")), "container id prefix");
    }

    /// Each field lets through what it names and nothing else, allowed or
    /// denied (a filter that ignored one would pass everything above).
    #[test]
    fn every_field_narrows() {
        let ev = |agent: &str, session: &str, container: &str, pod: &str, ns: &str| pb::Event {
            kind: "exec".into(),
            process: Some(pb::Process {
                pid: 1,
                agent_id: agent.into(),
                agent_session: session.into(),
                container_id: container.into(),
                pod: Some(pb::Pod {
                    name: pod.into(),
                    namespace: ns.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let base = ev("agt-1", "s-1", "abcdef", "web-1", "shop");
        let cases = [
            (
                filter(|f| f.agent_ids = vec!["agt-9".into(), "agt-1".into()]),
                ev("agt-2", "s-1", "abcdef", "web-1", "shop"),
            ),
            (
                filter(|f| f.agent_session = "s-1".into()),
                ev("agt-1", "s-2", "abcdef", "web-1", "shop"),
            ),
            (
                filter(|f| f.container_id = "abc".into()),
                ev("agt-1", "s-1", "fedcba", "web-1", "shop"),
            ),
            (
                filter(|f| f.pod = "web-1".into()),
                ev("agt-1", "s-1", "abcdef", "web-2", "shop"),
            ),
            (
                filter(|f| f.namespace = "shop".into()),
                ev("agt-1", "s-1", "abcdef", "web-1", "shop-2"),
            ),
        ];
        for (f, other) in &cases {
            let s = Selection::new(Some(f), None, 0).unwrap();
            assert!(s.passes(&base) && !s.passes(other), "allow {f:?}");
            let s = Selection::new(None, Some(f), 0).unwrap();
            assert!(!s.passes(&base) && s.passes(other), "deny {f:?}");
        }
    }

    #[test]
    fn llm_call_selects_calls_to_providers() {
        let call = |provider: &str| pb::Event {
            kind: "api_call".into(),
            payload: Some(pb::event::Payload::ApiCall(pb::ApiCall {
                provider: provider.into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let llm = filter(|f| f.kinds = vec!["llm_call".into()]);
        let s = Selection::new(Some(&llm), None, 0).unwrap();
        assert!(s.passes(&call("openai")));
        assert!(!s.passes(&call("")), "a call to no provider");
        assert!(!s.passes(&ev("connect", 1, "x")));
        assert_eq!(s.kinds(), ["api_call"]);
        // Denied: every api_call but the model traffic.
        let s = Selection::new(None, Some(&llm), 0).unwrap();
        assert!(!s.passes(&call("anthropic")));
        assert!(s.passes(&call("")));
    }

    #[test]
    fn bad_regex_is_a_clear_error() {
        let f = filter(|f| f.exe_regex = "(".into());
        let e = Selection::new(None, Some(&f), 0).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("deny.exe_regex"), "{}", e.message());
    }
}
