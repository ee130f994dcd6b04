//! What each agent identity normally does, learned from its first runs:
//! the endpoints it calls (method, authority, path template), the
//! transitions between consecutive endpoints, its credentials and
//! destinations, how fast it calls (the peak calls in any 60 s of each
//! run, in total and per endpoint) and how much it sends (peak bytes in
//! any 60 s, largest request per endpoint). `detect` checks calls against
//! it. Baselines are kept in the state directory, survive restarts, and
//! travel between nodes as `BaselineFile`s.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Distinct endpoints, transitions, credentials and destinations kept.
pub const MAX_ENTRIES: usize = 4096;
/// Learned runs whose peaks are kept (the most recent).
pub const RUNS_KEPT: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Baseline {
    pub sessions: u64,
    pub calls: u64,
    /// "METHOD authority template" → calls while learning.
    pub endpoints: BTreeMap<String, u64>,
    /// "previous endpoint -> endpoint" → times seen while learning.
    pub transitions: BTreeMap<String, u64>,
    pub credentials: BTreeSet<String>,
    pub destinations: BTreeSet<String>,
    /// Peak calls in any 60 s of each learned run.
    pub peak_calls: Vec<u64>,
    /// Per endpoint: peak calls to it in any 60 s of each learned run that
    /// called it.
    pub endpoint_peaks: BTreeMap<String, Vec<u64>>,
    /// Peak request bytes sent in any 60 s of each learned run.
    pub peak_bytes: Vec<u64>,
    /// Largest request (head and body) per endpoint.
    pub max_request_bytes: BTreeMap<String, u64>,
    /// When this node first saw the identity (Unix seconds): time-limited
    /// learning counts from it.
    pub first_seen_unix: u64,
}

/// The high percentile (95th, nearest rank) of learned runs' peaks; None
/// before any run was learned.
pub fn high(samples: &[u64]) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let rank = (v.len() * 95).div_ceil(100).max(1);
    Some(v[rank - 1])
}

/// Appends a run's peak, keeping the most recent `RUNS_KEPT`.
pub fn push_run(samples: &mut Vec<u64>, peak: u64) {
    samples.push(peak);
    if samples.len() > RUNS_KEPT {
        let excess = samples.len() - RUNS_KEPT;
        samples.drain(..excess);
    }
}

impl Baseline {
    /// Adds what `other` learned (another node, an export): runs and calls
    /// add up, endpoints and transitions add their counts, credentials and
    /// destinations unite, peaks of runs are pooled, within the same bounds
    /// as learning.
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
        for p in &other.peak_calls {
            push_run(&mut self.peak_calls, *p);
        }
        for p in &other.peak_bytes {
            push_run(&mut self.peak_bytes, *p);
        }
        for (ep, peaks) in &other.endpoint_peaks {
            if self.endpoint_peaks.len() < MAX_ENTRIES || self.endpoint_peaks.contains_key(ep) {
                let mine = self.endpoint_peaks.entry(ep.clone()).or_default();
                for p in peaks {
                    push_run(mine, *p);
                }
            }
        }
        for (ep, n) in &other.max_request_bytes {
            if self.max_request_bytes.len() < MAX_ENTRIES || self.max_request_bytes.contains_key(ep)
            {
                let m = self.max_request_bytes.entry(ep.clone()).or_default();
                *m = (*m).max(*n);
            }
        }
        if self.first_seen_unix == 0
            || (other.first_seen_unix != 0 && other.first_seen_unix < self.first_seen_unix)
        {
            self.first_seen_unix = other.first_seen_unix;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_from_several_nodes_merge() {
        let one = Baseline {
            sessions: 2,
            endpoints: BTreeMap::from([("GET v /a".into(), 3)]),
            credentials: BTreeSet::from(["fp:1".into()]),
            peak_calls: vec![4, 5],
            max_request_bytes: BTreeMap::from([("GET v /a".into(), 100)]),
            first_seen_unix: 50,
            ..Default::default()
        };
        let two = Baseline {
            sessions: 3,
            endpoints: BTreeMap::from([("GET v /a".into(), 1), ("POST v /b".into(), 2)]),
            credentials: BTreeSet::from(["fp:2".into()]),
            peak_calls: vec![9],
            max_request_bytes: BTreeMap::from([("GET v /a".into(), 300)]),
            first_seen_unix: 20,
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
        assert_eq!(b.peak_calls, [4, 5, 9, 4, 5]);
        assert_eq!(b.max_request_bytes["GET v /a"], 300);
        assert_eq!(b.first_seen_unix, 20);
    }

    #[test]
    fn the_high_percentile_of_runs() {
        assert_eq!(high(&[]), None);
        assert_eq!(high(&[3]), Some(3));
        assert_eq!(high(&[1, 9, 2]), Some(9));
        let many: Vec<u64> = (1..=100).collect();
        assert_eq!(high(&many), Some(95));
        let mut v = Vec::new();
        for i in 0..(RUNS_KEPT as u64 + 10) {
            push_run(&mut v, i);
        }
        assert_eq!(v.len(), RUNS_KEPT);
        assert_eq!(v[0], 10);
    }

    #[test]
    fn files_of_the_previous_shape_still_read() {
        // Written before rates and volumes were learned.
        let f = BaselineFile::parse(
            br#"{"format":"sensor-baselines/1","baselines":{"a":{"sessions":4,"endpoints":{"GET h /x":2}}}}"#,
        )
        .unwrap();
        assert_eq!(f.baselines["a"].sessions, 4);
        assert!(f.baselines["a"].peak_calls.is_empty());
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
}
