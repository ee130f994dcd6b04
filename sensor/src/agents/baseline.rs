//! What each agent identity normally does, learned from its first runs,
//! and the explainable findings when it does something else.
//!
//! An identity learns during its first `LEARN_SESSIONS` runs: the
//! endpoints it calls (method, authority, path template), the transitions
//! between consecutive endpoints, its credentials and destinations. After
//! that its calls are checked: an endpoint never seen (worse when it cannot
//! be undone), a credential or destination never seen, and the same write
//! repeated in a short window (the runaway ordering loop). Baselines are
//! kept in the state directory and survive restarts.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Runs of an identity that are learned before its calls are checked.
pub const LEARN_SESSIONS: u64 = 3;
/// Writes to one endpoint within `REPEAT_WINDOW_NS` that make a loop.
pub const REPEAT_LIMIT: usize = 5;
pub const REPEAT_WINDOW_NS: u64 = 60_000_000_000;
const MAX_ENTRIES: usize = 4096;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Baseline {
    pub sessions: u64,
    pub calls: u64,
    /// "METHOD authority template" → calls while learning.
    pub endpoints: BTreeMap<String, u64>,
    /// "previous endpoint → endpoint" → times seen while learning.
    pub transitions: BTreeMap<String, u64>,
    pub credentials: BTreeSet<String>,
    pub destinations: BTreeSet<String>,
}

impl Baseline {
    pub fn learning(&self) -> bool {
        self.sessions <= LEARN_SESSIONS
    }
}

/// One call as the detector sees it.
pub struct Call<'a> {
    pub session: &'a str,
    pub endpoint: String,
    pub irreversible: bool,
    pub write: bool,
    pub credential: Option<&'a str>,
    pub destination: Option<String>,
    pub ts_ns: u64,
}

/// An explainable finding: which rule, how bad, and the numbers behind it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    /// low, medium, high, critical.
    pub severity: &'static str,
    pub summary: String,
    pub endpoint: String,
    /// Calls to the endpoint in the window (repetition), or in the
    /// baseline (0 for a new one).
    pub count: u64,
    pub baseline_sessions: u64,
}

#[derive(Default)]
struct SessionState {
    last_endpoint: Option<String>,
    /// Times of recent writes per endpoint.
    writes: HashMap<String, VecDeque<u64>>,
    /// Rules already reported in this session, per endpoint or value.
    reported: BTreeSet<String>,
}

#[derive(Default)]
pub struct Detector {
    pub baselines: BTreeMap<String, Baseline>,
    sessions: HashMap<String, SessionState>,
    session_order: VecDeque<String>,
}

fn bump(map: &mut BTreeMap<String, u64>, k: String) {
    if map.len() < MAX_ENTRIES || map.contains_key(&k) {
        *map.entry(k).or_default() += 1;
    }
}

impl Detector {
    pub fn with_baselines(baselines: BTreeMap<String, Baseline>) -> Self {
        Self {
            baselines,
            ..Default::default()
        }
    }

    /// A new run of `identity` started.
    pub fn session_started(&mut self, identity: &str) {
        self.baselines
            .entry(identity.to_string())
            .or_default()
            .sessions += 1;
    }

    fn session(&mut self, id: &str) -> &mut SessionState {
        if !self.sessions.contains_key(id) {
            self.session_order.push_back(id.to_string());
            if self.session_order.len() > 16_384
                && let Some(old) = self.session_order.pop_front()
            {
                self.sessions.remove(&old);
            }
        }
        self.sessions.entry(id.to_string()).or_default()
    }

    /// Learns from or checks one call of `identity`.
    pub fn call(&mut self, identity: &str, c: &Call) -> Vec<Finding> {
        let base = self
            .baselines
            .entry(identity.to_string())
            .or_default()
            .clone();
        let learning = base.learning();
        let s = self.session(c.session);
        let prev = s.last_endpoint.replace(c.endpoint.clone());
        let mut out = Vec::new();
        if c.write {
            let times = s.writes.entry(c.endpoint.clone()).or_default();
            times.push_back(c.ts_ns);
            while times
                .front()
                .is_some_and(|t| c.ts_ns.saturating_sub(*t) > REPEAT_WINDOW_NS)
            {
                times.pop_front();
            }
            let n = times.len();
            if n >= REPEAT_LIMIT && s.reported.insert(format!("repetition {}", c.endpoint)) {
                out.push(Finding {
                    rule: "repetition",
                    severity: if c.irreversible { "critical" } else { "high" },
                    summary: format!(
                        "{} called {n} times within {} s in one run (loop?)",
                        c.endpoint,
                        REPEAT_WINDOW_NS / 1_000_000_000
                    ),
                    endpoint: c.endpoint.clone(),
                    count: n as u64,
                    baseline_sessions: base.sessions,
                });
            }
        }
        if !learning {
            if !base.endpoints.contains_key(&c.endpoint)
                && s.reported.insert(format!("new {}", c.endpoint))
            {
                let (rule, severity, what) = if c.irreversible {
                    (
                        "new_irreversible_endpoint",
                        "high",
                        "an irreversible endpoint",
                    )
                } else {
                    ("new_endpoint", "medium", "an endpoint")
                };
                out.push(Finding {
                    rule,
                    severity,
                    summary: format!(
                        "{what} this agent never called in its {} learned runs: {}",
                        LEARN_SESSIONS, c.endpoint
                    ),
                    endpoint: c.endpoint.clone(),
                    count: 0,
                    baseline_sessions: base.sessions,
                });
            }
            if let Some(cred) = c.credential
                && !base.credentials.contains(cred)
                && s.reported.insert(format!("credential {cred}"))
            {
                out.push(Finding {
                    rule: "new_credential",
                    severity: "medium",
                    summary: format!("a credential this agent never used before: {cred}"),
                    endpoint: c.endpoint.clone(),
                    count: 0,
                    baseline_sessions: base.sessions,
                });
            }
            if let Some(d) = &c.destination
                && !base.destinations.contains(d)
                && s.reported.insert(format!("destination {d}"))
            {
                out.push(Finding {
                    rule: "new_destination",
                    severity: "low",
                    summary: format!("a destination this agent never reached before: {d}"),
                    endpoint: c.endpoint.clone(),
                    count: 0,
                    baseline_sessions: base.sessions,
                });
            }
        } else if let Some(b) = self.baselines.get_mut(identity) {
            b.calls += 1;
            bump(&mut b.endpoints, c.endpoint.clone());
            if let Some(p) = prev {
                bump(&mut b.transitions, format!("{p} -> {}", c.endpoint));
            }
            if let Some(cred) = c.credential
                && b.credentials.len() < MAX_ENTRIES
            {
                b.credentials.insert(cred.to_string());
            }
            if let Some(d) = &c.destination
                && b.destinations.len() < MAX_ENTRIES
            {
                b.destinations.insert(d.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(session: &'a str, endpoint: &str, ts_s: u64) -> Call<'a> {
        let write = endpoint.starts_with("POST");
        Call {
            session,
            endpoint: endpoint.into(),
            irreversible: endpoint.contains("orders") && write,
            write,
            credential: Some("Bearer fp:1"),
            destination: Some("vendor.example".into()),
            ts_ns: ts_s * 1_000_000_000,
        }
    }

    #[test]
    fn learns_then_flags_new_and_irreversible_once() {
        let mut d = Detector::default();
        for run in 0..LEARN_SESSIONS {
            d.session_started("agt-1");
            let s = format!("s{run}");
            assert!(
                d.call("agt-1", &call(&s, "GET v /inventory/{id}", 1))
                    .is_empty()
            );
            assert!(
                d.call("agt-1", &call(&s, "POST v /recommendations", 2))
                    .is_empty()
            );
        }
        d.session_started("agt-1");
        // A normal run: nothing.
        assert!(
            d.call("agt-1", &call("s9", "GET v /inventory/{id}", 1))
                .is_empty()
        );
        assert!(
            d.call("agt-1", &call("s9", "POST v /recommendations", 2))
                .is_empty()
        );
        let f = d.call("agt-1", &call("s9", "POST v /orders", 3));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "new_irreversible_endpoint");
        assert_eq!(f[0].severity, "high");
        assert_eq!(f[0].baseline_sessions, LEARN_SESSIONS + 1);
        // Once per run.
        assert!(d.call("agt-1", &call("s9", "POST v /orders", 4)).is_empty());
        let b = &d.baselines["agt-1"];
        assert_eq!(
            b.transitions["GET v /inventory/{id} -> POST v /recommendations"],
            3
        );
        assert!(
            !b.endpoints.contains_key("POST v /orders"),
            "findings are not learned"
        );
    }

    #[test]
    fn repetition_in_a_window() {
        let mut d = Detector::default();
        d.session_started("agt-2");
        let mut found = Vec::new();
        for i in 0..REPEAT_LIMIT as u64 + 3 {
            found.extend(d.call("agt-2", &call("r", "POST v /orders", i)));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].rule, "repetition");
        assert_eq!(found[0].severity, "critical");
        assert_eq!(found[0].count, REPEAT_LIMIT as u64);
        // Spread out over more than the window: no loop.
        let mut d = Detector::default();
        d.session_started("agt-3");
        for i in 0..10 {
            assert!(
                d.call("agt-3", &call("q", "POST v /orders", i * 30))
                    .is_empty()
            );
        }
    }

    #[test]
    fn new_credential_and_destination_after_learning() {
        let mut d = Detector::default();
        for run in 0..=LEARN_SESSIONS {
            d.session_started("agt-4");
            d.call("agt-4", &call(&format!("s{run}"), "GET v /a", 1));
        }
        let mut c = call("x", "GET v /a", 1);
        c.credential = Some("Bearer fp:borrowed");
        c.destination = Some("billing.example".into());
        let rules: Vec<&str> = d.call("agt-4", &c).iter().map(|f| f.rule).collect();
        assert_eq!(rules, ["new_credential", "new_destination"]);
    }
}
