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

    /// Adds what `other` learned (another node, an export): runs and calls
    /// add up, endpoints and transitions add their counts, credentials and
    /// destinations unite, within the same bounds as learning.
    pub fn merge(&mut self, other: &Baseline) {
        self.sessions += other.sessions;
        self.calls += other.calls;
        for (map, from) in [
            (&mut self.endpoints, &other.endpoints),
            (&mut self.transitions, &other.transitions),
        ] {
            for (k, n) in from {
                if map.len() < MAX_ENTRIES || map.contains_key(k) {
                    *map.entry(k.clone()).or_default() += n;
                }
            }
        }
        for (set, from) in [
            (&mut self.credentials, &other.credentials),
            (&mut self.destinations, &other.destinations),
        ] {
            for v in from {
                if set.len() < MAX_ENTRIES {
                    set.insert(v.clone());
                }
            }
        }
    }
}

/// The format name a baseline file carries.
pub const FILE_FORMAT: &str = "sensor-baselines/1";

/// Baselines as exported, imported and merged across nodes (one JSON
/// document, small enough for a ConfigMap for a host's agents). Credential
/// fingerprints in it only match across nodes that share the fingerprint
/// key (`http.fingerprint_key`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BaselineFile {
    pub format: String,
    /// Nodes it was learned on.
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub exported_unix: u64,
    /// Agent id → what it learned.
    pub baselines: BTreeMap<String, Baseline>,
}

impl BaselineFile {
    pub fn new(node: &str, baselines: BTreeMap<String, Baseline>) -> Self {
        Self {
            format: FILE_FORMAT.into(),
            nodes: vec![node.to_string()],
            exported_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            baselines,
        }
    }

    /// Reads a baseline file, refusing anything that is not one.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        match v.get("format").and_then(|f| f.as_str()) {
            Some(FILE_FORMAT) => {}
            Some(other) => {
                return Err(format!(
                    "format {other:?} is not {FILE_FORMAT:?} (made by another sensor version?)"
                ));
            }
            None => return Err(format!("no \"format\": not a {FILE_FORMAT} file")),
        }
        serde_json::from_value(v).map_err(|e| format!("not a {FILE_FORMAT} file: {e}"))
    }

    /// Merges several files (learned on several nodes) into one.
    pub fn merge_all(files: &[BaselineFile]) -> Self {
        let mut out = Self {
            format: FILE_FORMAT.into(),
            ..Default::default()
        };
        for f in files {
            for n in &f.nodes {
                if !out.nodes.contains(n) {
                    out.nodes.push(n.clone());
                }
            }
            out.exported_unix = out.exported_unix.max(f.exported_unix);
            for (id, b) in &f.baselines {
                out.baselines.entry(id.clone()).or_default().merge(b);
            }
        }
        out
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
    /// What this node learned.
    pub baselines: BTreeMap<String, Baseline>,
    /// What was imported (learned elsewhere): checked together with the
    /// node's own, never written into it, so importing again at each start
    /// counts nothing twice.
    pub imported: BTreeMap<String, Baseline>,
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

    /// The baseline `identity` is checked against: its own and imported.
    pub fn effective(&self, identity: &str) -> Baseline {
        let mut b = self.baselines.get(identity).cloned().unwrap_or_default();
        if let Some(i) = self.imported.get(identity) {
            b.merge(i);
        }
        b
    }

    /// Adds imported baselines; returns how many agents they cover.
    pub fn import(&mut self, file: &BaselineFile) -> usize {
        for (id, b) in &file.baselines {
            self.imported.entry(id.clone()).or_default().merge(b);
        }
        file.baselines.len()
    }

    /// The effective baselines of `ids` (all agents when empty).
    pub fn export(&self, node: &str, ids: &[String]) -> BaselineFile {
        let all: BTreeSet<&String> = self.baselines.keys().chain(self.imported.keys()).collect();
        let baselines = all
            .into_iter()
            .filter(|id| ids.is_empty() || ids.contains(id))
            .map(|id| (id.clone(), self.effective(id)))
            .collect();
        BaselineFile::new(node, baselines)
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
        self.baselines.entry(identity.to_string()).or_default();
        let base = self.effective(identity);
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
    fn an_imported_baseline_checks_from_the_first_run_and_is_never_counted_twice() {
        // Node A learns; node B imports what A learned.
        let mut a = Detector::default();
        for run in 0..=LEARN_SESSIONS {
            a.session_started("agt-x");
            let s = format!("a{run}");
            assert!(a.call("agt-x", &call(&s, "GET v /catalog", run)).is_empty());
        }
        let file = a.export("node-a", &[]);
        let text = serde_json::to_vec(&file).unwrap();
        let file = BaselineFile::parse(&text).unwrap();
        assert_eq!(file.nodes, ["node-a"]);
        let mut b = Detector::default();
        assert_eq!(b.import(&file), 1);
        b.session_started("agt-x");
        assert!(b.call("agt-x", &call("b1", "GET v /catalog", 1)).is_empty());
        let f = b.call("agt-x", &call("b1", "POST v /orders", 2));
        assert_eq!(f[0].rule, "new_irreversible_endpoint", "{f:?}");
        // Checking did not learn, and the import stayed apart.
        assert!(
            !b.baselines["agt-x"]
                .endpoints
                .contains_key("POST v /orders")
        );
        assert_eq!(b.baselines["agt-x"].sessions, 1);
        assert_eq!(b.effective("agt-x").sessions, LEARN_SESSIONS + 2);
    }

    #[test]
    fn baselines_from_several_nodes_merge() {
        let one = Baseline {
            sessions: 2,
            endpoints: BTreeMap::from([("GET v /a".into(), 3)]),
            credentials: BTreeSet::from(["fp:1".into()]),
            ..Default::default()
        };
        let two = Baseline {
            sessions: 3,
            endpoints: BTreeMap::from([("GET v /a".into(), 1), ("POST v /b".into(), 2)]),
            credentials: BTreeSet::from(["fp:2".into()]),
            ..Default::default()
        };
        let f = |node: &str, b: &Baseline| {
            BaselineFile::new(node, BTreeMap::from([("agt".to_string(), b.clone())]))
        };
        let m = BaselineFile::merge_all(&[f("n1", &one), f("n2", &two), f("n1", &one)]);
        assert_eq!(m.nodes, ["n1", "n2"]);
        let b = &m.baselines["agt"];
        assert_eq!(b.sessions, 7);
        assert_eq!(b.endpoints["GET v /a"], 7);
        assert_eq!(b.endpoints["POST v /b"], 2);
        assert_eq!(b.credentials.len(), 2);
        assert!(!b.learning());
    }

    #[test]
    fn only_baseline_files_are_read() {
        for (bad, why) in [
            (&b"{"[..], "not JSON"),
            (b"{}", "no \"format\""),
            (
                br#"{"format":"sensor-baselines/9","baselines":{}}"#,
                "made by another",
            ),
            (br#"{"format":"sensor-baselines/1"}"#, "missing field"),
            (
                br#"{"format":"sensor-baselines/1","baselines":{"a":{"sessions":"x"}}}"#,
                "invalid type",
            ),
        ] {
            let e = BaselineFile::parse(bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
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
