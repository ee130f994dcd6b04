//! Checking each call of an agent against its identity's baseline and the
//! operator's policy, and learning while the identity learns.
//!
//! Findings, each explainable (rule, severity, the numbers behind it),
//! reported once per rule and subject in a session:
//!
//! | rule | when | needs a baseline |
//! |---|---|---|
//! | `new_endpoint` | an endpoint the identity never called while learning | yes |
//! | `new_irreversible_endpoint` | the same, for a write that cannot be undone | yes |
//! | `runaway_rate` | calls in 60 s, in total or to one endpoint, above `rate_multiplier` × the learned runs' high percentile (and `rate_floor`) | yes |
//! | `volume_spike` | bytes sent in 60 s, or one request, above `rate_multiplier` × what was learned (and `volume_floor_bytes`) | yes |
//! | `unlikely_sequence` | a transition between known endpoints the learned model gives a probability under 10% | yes |
//! | `new_credential` | a credential the identity never used | yes |
//! | `new_destination` | a destination it never reached | yes |
//! | `borrowed_credential` | a credential another identity learned, new to this one | no |
//! | `repetition` | the same write `repeat_limit` times within 60 s (the runaway loop) | no |
//! | `denied_endpoint` | a call the policy denies | no |
//! | `not_allowed_endpoint` | a call outside the policy's allow list | no |
//! | `quota_exceeded` | calls in 60 s above a policy quota | no |
//!
//! Rules that need no baseline apply in every mode, learning included.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use super::{FastMap, FastSet, SessionKey};
use super::{
    baseline::{Baseline, BaselineFile, MAX_ENTRIES, high, push_run},
    mode::Mode,
    policy::{Entry, Policy},
};
use crate::{config::ResponseAction, procs::Process};

/// Length of the sliding windows rates and volumes are counted over.
pub const WINDOW_NS: u64 = 60_000_000_000;
/// Sessions whose state is kept (oldest forgotten first).
const MAX_SESSIONS: usize = 16_384;
/// Endpoints tracked per session.
const MAX_SESSION_ENDPOINTS: usize = 256;
/// A transition is unlikely under this smoothed probability...
const UNLIKELY: f64 = 0.1;
/// ... once its source endpoint was left this many times while learning.
const MIN_TRANSITIONS_FROM: u64 = 5;

/// How learning ends and how far a call may stray (from `[agents]`).
#[derive(Clone, Debug)]
pub struct Tuning {
    pub learn_sessions: u64,
    pub learn_minutes: u64,
    pub rate_multiplier: f64,
    pub rate_floor: u64,
    pub volume_floor_bytes: u64,
    pub repeat_limit: u64,
    pub credential_max_sessions: u64,
    pub credential_max_days: u64,
    /// Discovered identities at most (`agents.max_identities`).
    pub max_identities: usize,
    /// The mode after learning: `response.mode`, per agent `response.agents`.
    pub after_learning: Mode,
    pub after_learning_by_agent: BTreeMap<String, Mode>,
}

impl Default for Tuning {
    fn default() -> Self {
        let c = crate::config::AgentsConfig::default();
        Self {
            learn_sessions: c.learn_sessions,
            learn_minutes: c.learn_minutes,
            rate_multiplier: c.rate_multiplier,
            rate_floor: c.rate_floor,
            volume_floor_bytes: c.volume_floor_bytes,
            repeat_limit: c.repeat_limit,
            credential_max_sessions: c.credential_max_sessions,
            credential_max_days: c.credential_max_days,
            max_identities: c.max_identities as usize,
            after_learning: Mode::Monitor,
            after_learning_by_agent: BTreeMap::new(),
        }
    }
}

impl Tuning {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let a = &cfg.agents;
        Self {
            learn_sessions: a.learn_sessions,
            learn_minutes: a.learn_minutes,
            rate_multiplier: a.rate_multiplier,
            rate_floor: a.rate_floor,
            volume_floor_bytes: a.volume_floor_bytes,
            repeat_limit: a.repeat_limit,
            credential_max_sessions: a.credential_max_sessions,
            credential_max_days: a.credential_max_days,
            max_identities: usize::try_from(a.max_identities).unwrap_or(usize::MAX),
            after_learning: cfg.response.mode.into(),
            after_learning_by_agent: cfg
                .response
                .agents
                .iter()
                .map(|(k, v)| (k.clone(), Mode::from(*v)))
                .collect(),
        }
    }
}

/// One call as the detector sees it.
pub struct Call<'a> {
    pub session: SessionKey,
    /// The session's policy entry, as `session_started` returned it.
    pub policy: Option<usize>,
    /// "METHOD authority template".
    pub endpoint: &'a str,
    pub method: &'a str,
    pub authority: &'a str,
    pub template: &'a str,
    pub path: &'a str,
    /// Irreversible by the built-in catalogue (the policy can add more).
    pub irreversible: bool,
    pub write: bool,
    pub credential: Option<&'a str>,
    pub destination: Option<&'a str>,
    pub request_bytes: u64,
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
    /// The count behind the rule (calls or bytes in the window; 0 for a
    /// new endpoint).
    pub count: u64,
    /// Learned runs of the identity.
    pub baseline_sessions: u64,
    /// The identity's mode when it was found: what the response does.
    pub mode: Mode,
    /// The policy entry that applied, if any.
    pub policy: Option<String>,
    /// The response the policy gives this finding, if it names one.
    pub response: Option<ResponseAction>,
    /// The credential it is about, when not the call's (a held one).
    pub credential: Option<String>,
}

/// A change of an identity's mode, to be announced as a `mode` event.
#[derive(Clone, Debug, PartialEq)]
pub struct ModeChange {
    pub agent: String,
    pub from: Option<Mode>,
    pub to: Mode,
    pub why: String,
}

/// Modes pinned by operators, and the last mode announced per identity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModeState {
    pub pinned: Option<Mode>,
    pub pinned_by: Option<String>,
    pub announced: Option<Mode>,
}

/// Buckets a window is cut into: a window counts the current bucket and
/// the `BUCKETS - 1` before it, so between 50 and 60 s of calls.
const BUCKETS: usize = 6;
const BUCKET_NS: u64 = WINDOW_NS / BUCKETS as u64;

/// What happened (calls, bytes) in about the last `WINDOW_NS`, in 40
/// bytes: 10,000 sessions of a busy host each keep several windows, a
/// timestamp per call would grow with the call rate, and every call
/// touches its session's windows (measured: they were the most missed
/// cache lines of the agents bench). Counts saturate at u32::MAX.
#[derive(Default)]
struct Window {
    /// Index (time / BUCKET_NS) of the newest bucket.
    newest: u64,
    buckets: [u32; BUCKETS],
    sum: u32,
}

impl Window {
    /// Adds `amount` at `ts` and returns the window's sum.
    fn push(&mut self, ts: u64, amount: u64) -> u64 {
        let idx = ts / BUCKET_NS;
        if idx > self.newest {
            let gone = (idx - self.newest).min(BUCKETS as u64);
            for i in 1..=gone {
                let b = ((self.newest + i) % BUCKETS as u64) as usize;
                self.sum -= self.buckets[b];
                self.buckets[b] = 0;
            }
            self.newest = idx;
        }
        // A late record (out of order by less than the window) counts in
        // its own bucket; an older one in the oldest.
        let idx = idx.max(self.newest.saturating_sub(BUCKETS as u64 - 1));
        let amount = u32::try_from(amount).unwrap_or(u32::MAX);
        let b = &mut self.buckets[(idx % BUCKETS as u64) as usize];
        let room = u32::MAX - self.sum;
        let added = amount.min(room);
        *b += added;
        self.sum += added;
        u64::from(self.sum)
    }
}

#[derive(Default)]
struct EndpointState {
    window: Window,
    peak: u64,
    known: Option<(u64, bool)>,
    /// The learned runs' high percentile for it, as of a generation.
    high: Option<(u64, Option<u64>)>,
    /// The endpoint itself, read when the run ends.
    name: String,
}

/// Whether the baseline holds a value, remembered per session: the same
/// credential and destination come back on nearly every call.
#[derive(Clone, Copy, Default)]
struct Known {
    hash: u64,
    generation: u64,
    known: bool,
}

/// Per session. `repr(C)` keeps the fields every call reads (mode cache,
/// the windows, the remembered lookups) together at the front: a busy
/// host's sessions do not stay in cache between two of their calls.
#[derive(Default)]
#[repr(C)]
struct SessionState {
    /// The identity's mode as last worked out, the detector generation
    /// then, and when (event time): a time-limited learning can end
    /// between two generations.
    mode: Option<(Mode, u64, u64)>,
    /// Index of the policy entry that applies.
    policy: Option<usize>,
    calls: Window,
    bytes: Window,
    credential: Option<Known>,
    destination: Option<Known>,
    /// (generation, high percentile of calls, of bytes) of learned runs.
    highs: Option<(u64, Option<u64>, Option<u64>)>,
    has_last: bool,
    learning: bool,
    /// Peaks of this run, folded into the baseline when a learning run ends.
    peak_calls: u64,
    peak_bytes: u64,
    /// Per endpoint (by the hash of "METHOD authority template": no key
    /// string to compare): its window, this run's peak, and whether the
    /// baseline knows it (as of a detector generation).
    endpoints: FastMap<u64, EndpointState>,
    /// The run's last endpoint and the one before it (buffers reused).
    last_endpoint: String,
    prev_endpoint: String,
    identity: String,
    quotas: Vec<Window>,
    /// Rules already reported in this session, per subject, by hash (a
    /// check runs on every call while its condition holds: no string is
    /// built for it).
    reported: FastSet<u64>,
}

pub struct Detector {
    /// What this node learned (hash maps: looked up on every call).
    pub baselines: FastMap<String, Baseline>,
    /// What was imported (learned elsewhere): checked together with the
    /// node's own, never written into it, so importing again at each start
    /// counts nothing twice.
    pub imported: FastMap<String, Baseline>,
    pub modes: FastMap<String, ModeState>,
    /// Bumped whenever a mode could change other than by time (runs,
    /// pins, imports): sessions cache their identity's mode until then.
    generation: u64,
    sessions: FastMap<SessionKey, SessionState>,
    session_order: VecDeque<SessionKey>,
    /// Credential → identities whose baselines hold it.
    owners: FastMap<String, BTreeSet<String>>,
    tuning: Tuning,
    policy: Arc<Policy>,
    changes: Vec<ModeChange>,
}

impl Default for Detector {
    fn default() -> Self {
        Self::new(FastMap::default(), Tuning::default(), Arc::default())
    }
}

fn bump(map: &mut BTreeMap<String, u64>, k: &str) {
    if let Some(n) = map.get_mut(k) {
        *n += 1;
    } else if map.len() < MAX_ENTRIES {
        map.insert(k.to_string(), 1);
    }
}

/// The hash of a (rule, subject) pair, for `SessionState::reported`.
pub fn subject_hash(rule: &str, subject: &str) -> u64 {
    use std::hash::BuildHasher;
    // One random seed per process: endpoints come from traffic, and a seed
    // an outsider cannot know keeps them from choosing colliding ones.
    static SEED: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
    SEED.get_or_init(Default::default).hash_one((rule, subject))
}

thread_local! {
    /// "from -> to" keys are built here to look transitions up: no
    /// allocation per call.
    static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// `f` of the transition key "from -> to", built in `KEY`.
fn with_transition_key<R>(from: &str, to: &str, f: impl FnOnce(&str) -> R) -> R {
    KEY.with(|k| {
        let mut k = k.borrow_mut();
        k.clear();
        k.push_str(from);
        k.push_str(" -> ");
        k.push_str(to);
        f(&k)
    })
}

/// Times `from -> to` was learned.
fn transition_seen(v: &View, from: &str, to: &str) -> u64 {
    with_transition_key(from, to, |k| v.transition(k))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The identity's own and imported baselines, looked at together.
struct View<'a> {
    own: Option<&'a Baseline>,
    imported: Option<&'a Baseline>,
}

impl View<'_> {
    fn all(&self) -> impl Iterator<Item = &Baseline> {
        self.own.into_iter().chain(self.imported)
    }
    fn sessions(&self) -> u64 {
        self.all().map(|b| b.sessions).sum()
    }
    fn has_endpoint(&self, e: &str) -> bool {
        self.all().any(|b| b.endpoints.contains_key(e))
    }
    fn has_credential(&self, c: &str) -> bool {
        self.all().any(|b| b.credentials.contains(c))
    }
    fn has_destination(&self, d: &str) -> bool {
        self.all().any(|b| b.destinations.contains(d))
    }
    fn transition(&self, key: &str) -> u64 {
        self.all().filter_map(|b| b.transitions.get(key)).sum()
    }
    /// Transitions learned out of `from`.
    fn transitions_from(&self, from: &str) -> u64 {
        let prefix = format!("{from} -> ");
        self.all()
            .map(|b| {
                b.transitions
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(_, n)| n)
                    .sum::<u64>()
            })
            .sum()
    }
    fn endpoints(&self) -> usize {
        match (self.own, self.imported) {
            (Some(a), Some(b)) => a
                .endpoints
                .keys()
                .chain(b.endpoints.keys().filter(|k| !a.endpoints.contains_key(*k)))
                .count(),
            (Some(a), None) | (None, Some(a)) => a.endpoints.len(),
            (None, None) => 0,
        }
    }
    fn peaks(&self, pick: impl Fn(&Baseline) -> Option<&Vec<u64>>) -> Vec<u64> {
        self.all().filter_map(pick).flatten().copied().collect()
    }
    fn max_request(&self, e: &str) -> Option<u64> {
        self.all()
            .filter_map(|b| b.max_request_bytes.get(e))
            .copied()
            .max()
    }
}

impl Detector {
    pub fn new(baselines: FastMap<String, Baseline>, tuning: Tuning, policy: Arc<Policy>) -> Self {
        let mut d = Self {
            baselines,
            imported: FastMap::default(),
            modes: FastMap::default(),
            generation: 0,
            sessions: FastMap::default(),
            session_order: VecDeque::new(),
            owners: FastMap::default(),
            tuning,
            policy,
            changes: Vec::new(),
        };
        let pairs: Vec<(String, String)> = d
            .baselines
            .iter()
            .flat_map(|(id, b)| b.credentials.iter().map(|c| (c.clone(), id.clone())))
            .collect();
        for (c, id) in pairs {
            d.own_credential(&c, &id);
        }
        d
    }

    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    fn own_credential(&mut self, cred: &str, id: &str) {
        if let Some(o) = self.owners.get_mut(cred) {
            if o.len() < 64 {
                o.insert(id.to_string());
            }
        } else if self.owners.len() < 65_536 {
            self.owners
                .insert(cred.to_string(), BTreeSet::from([id.to_string()]));
        }
    }

    fn view(&self, identity: &str) -> View<'_> {
        View {
            own: self.baselines.get(identity),
            imported: self.imported.get(identity),
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
        self.generation += 1;
        for (id, b) in &file.baselines {
            self.imported.entry(id.clone()).or_default().merge(b);
            for c in &b.credentials {
                self.own_credential(c, id);
            }
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

    /// Whether `identity` is still learning: fewer than `learn_sessions`
    /// runs seen (here and imported) and, when `learn_minutes` is set, less
    /// time than that since it was first seen.
    pub fn learning(&self, identity: &str) -> bool {
        let v = self.view(identity);
        let t = &self.tuning;
        let by_runs = t.learn_sessions == 0 || v.sessions() <= t.learn_sessions;
        let first = v.all().map(|b| b.first_seen_unix).filter(|s| *s > 0).min();
        let by_time = t.learn_minutes == 0
            || first.is_none_or(|f| now_unix().saturating_sub(f) < t.learn_minutes * 60);
        // Whichever ends first (each is always true when its key is 0).
        by_runs && by_time
    }

    /// The mode `identity` (named `name`) is in.
    pub fn mode(&self, identity: &str, name: &str, policy: Option<&Entry>) -> Mode {
        if let Some(p) = self.modes.get(identity).and_then(|m| m.pinned) {
            return p;
        }
        if let Some(m) = policy.and_then(|e| e.mode) {
            return m;
        }
        if self.learning(identity) {
            return Mode::Learn;
        }
        self.tuning
            .after_learning_by_agent
            .get(name)
            .or_else(|| self.tuning.after_learning_by_agent.get(identity))
            .copied()
            .unwrap_or(self.tuning.after_learning)
    }

    /// Why `identity` is in the mode `mode` says, for the `mode` event.
    pub fn mode_reason(&self, identity: &str, policy: Option<&Entry>) -> String {
        if let Some(m) = self.modes.get(identity)
            && m.pinned.is_some()
        {
            let by = m.pinned_by.as_deref().unwrap_or("an operator");
            return format!("set by {by}");
        }
        if let Some(e) = policy
            && e.mode.is_some()
        {
            return format!("policy {:?}", e.name);
        }
        let runs = self.view(identity).sessions();
        if self.learning(identity) {
            format!("learning: run {runs} of {}", self.tuning.learn_sessions)
        } else {
            format!("learned {runs} runs")
        }
    }

    /// Pins (or, with None, unpins) the mode of `identity`.
    pub fn set_mode(&mut self, identity: &str, mode: Option<Mode>, by: &str) {
        self.generation += 1;
        let m = self.modes.entry(identity.to_string()).or_default();
        m.pinned = mode;
        m.pinned_by = mode.map(|_| by.to_string());
    }

    /// Records a change of mode if `identity`'s differs from the last one
    /// announced.
    fn announce(&mut self, identity: &str, name: &str, policy: Option<usize>) -> Mode {
        let policy_ref = self.policy.clone();
        let entry = policy.and_then(|i| policy_ref.entries.get(i));
        let mode = self.mode(identity, name, entry);
        let announced = self.modes.get(identity).and_then(|m| m.announced);
        if announced != Some(mode) {
            let why = self.mode_reason(identity, entry);
            self.changes.push(ModeChange {
                agent: identity.to_string(),
                from: announced,
                to: mode,
                why,
            });
            self.modes
                .entry(identity.to_string())
                .or_default()
                .announced = Some(mode);
        }
        mode
    }

    /// Mode changes since the last call.
    pub fn take_mode_changes(&mut self) -> Vec<ModeChange> {
        std::mem::take(&mut self.changes)
    }

    /// A new run (`session`) of `identity` started, rooted at `root`;
    /// returns the policy entry that applies to it (see `Call::policy`).
    pub fn session_started(
        &mut self,
        identity: &str,
        name: &str,
        session: SessionKey,
        root: &Process,
    ) -> Option<usize> {
        self.generation += 1;
        let b = self.baselines.entry(identity.to_string()).or_default();
        b.sessions += 1;
        if b.first_seen_unix == 0 {
            b.first_seen_unix = now_unix();
        }
        let policy = self.policy.index_for(identity, name, root);
        self.open_session(identity, session, policy);
        self.announce(identity, name, policy);
        policy
    }

    /// The state of a run of `identity` under policy entry `policy`, made
    /// (or remade) with its learning flag and one quota window per quota.
    fn open_session(&mut self, identity: &str, session: SessionKey, policy: Option<usize>) {
        let quotas = policy
            .and_then(|i| self.policy.entries.get(i))
            .map_or(0, |e| e.quotas.len());
        let learning = self.learning(identity);
        let s = self.session_state(session);
        s.identity = identity.to_string();
        s.policy = policy;
        s.learning = learning;
        s.quotas.resize_with(quotas, Window::default);
    }

    fn session_state(&mut self, key: SessionKey) -> &mut SessionState {
        if !self.sessions.contains_key(&key) {
            self.session_order.push_back(key);
            if self.session_order.len() > MAX_SESSIONS
                && let Some(old) = self.session_order.pop_front()
            {
                self.session_ended(old);
            }
        }
        self.sessions.entry(key).or_default()
    }

    /// A run ended (its root exited, or it was forgotten): a learning run's
    /// peaks become part of the baseline.
    pub fn session_ended(&mut self, session: SessionKey) {
        let Some(s) = self.sessions.remove(&session) else {
            return;
        };
        if !s.learning || s.peak_calls == 0 {
            return;
        }
        let Some(b) = self.baselines.get_mut(&s.identity) else {
            return;
        };
        push_run(&mut b.peak_calls, s.peak_calls);
        push_run(&mut b.peak_bytes, s.peak_bytes);
        for (_, e) in s.endpoints {
            let (ep, peak) = (e.name, e.peak);
            if let Some(v) = b.endpoint_peaks.get_mut(&ep) {
                push_run(v, peak);
            } else if b.endpoint_peaks.len() < MAX_ENTRIES {
                b.endpoint_peaks.insert(ep, vec![peak]);
            }
        }
    }

    /// Every open run ends (a clean stop): what learning runs saw is kept.
    pub fn end_all(&mut self) {
        let open: Vec<SessionKey> = self.sessions.keys().copied().collect();
        for s in open {
            self.session_ended(s);
        }
        self.session_order.clear();
    }

    /// The mode of the call's session, worked out again only when the
    /// detector changed or a second passed (this runs on every call).
    fn session_mode(&mut self, identity: &str, name: &str, c: &Call) -> Mode {
        if !self.sessions.contains_key(&c.session) {
            // A run whose start was not seen, or whose state was forgotten
            // (more live sessions than MAX_SESSIONS): its policy entry and
            // quotas still apply (the quotas' windows start over).
            self.open_session(identity, c.session, c.policy);
        }
        let (policy_index, cached) = self
            .sessions
            .get(&c.session)
            .map_or((None, None), |s| (s.policy, s.mode));
        if let Some((m, generation, at)) = cached
            && generation == self.generation
            && c.ts_ns.saturating_sub(at) < 1_000_000_000
        {
            return m;
        }
        let m = self.announce(identity, name, policy_index);
        let generation = self.generation;
        if let Some(s) = self.sessions.get_mut(&c.session) {
            s.mode = Some((m, generation, c.ts_ns));
        }
        m
    }

    /// Learns from or checks one call of `identity` (named `name`).
    /// Whether `identity` used credential `fp` (bare, `fp:…`) in the runs
    /// it learned (its own or imported).
    pub fn learned_credential(&self, identity: &str, fp: &str) -> bool {
        let v = View {
            own: self.baselines.get(identity),
            imported: self.imported.get(identity),
        };
        v.all().any(|b| {
            b.credentials
                .iter()
                .any(|c| crate::credentials::bare(c) == fp)
        })
    }

    /// Runs `identity` learned (its own and imported).
    pub fn learned_sessions(&self, identity: &str) -> u64 {
        View {
            own: self.baselines.get(identity),
            imported: self.imported.get(identity),
        }
        .sessions()
    }

    pub fn call(&mut self, identity: &str, name: &str, c: &Call) -> Vec<Finding> {
        let mode = self.session_mode(identity, name, c);
        let tuning = &self.tuning;
        let (multiplier, rate_floor, volume_floor, repeat_limit) = (
            tuning.rate_multiplier,
            tuning.rate_floor,
            tuning.volume_floor_bytes,
            tuning.repeat_limit,
        );
        // Disjoint borrows of the detector's parts: one lookup each.
        let policy = Arc::clone(&self.policy);
        let v = View {
            own: self.baselines.get(identity),
            imported: self.imported.get(identity),
        };
        let owners = &self.owners;
        let Some(s) = self.sessions.get_mut(&c.session) else {
            return Vec::new();
        };
        let entry = s.policy.and_then(|i| policy.entries.get(i));
        let irreversible = c.irreversible
            || entry.is_some_and(|e| e.irreversible(c.method, c.authority, c.template, c.path));
        let baseline_sessions = v.sessions();
        let mut out = Vec::new();
        let mut push = |rule: &'static str, severity: &'static str, summary: String, count: u64| {
            out.push(Finding {
                rule,
                severity,
                summary,
                endpoint: c.endpoint.to_string(),
                count,
                baseline_sessions,
                mode,
                policy: entry.map(|e| e.name.clone()),
                response: None,
                credential: None,
            });
        };

        // Windows of this run: calls, bytes, the endpoint, the quotas.
        let calls_now = s.calls.push(c.ts_ns, 1);
        let bytes_now = s.bytes.push(c.ts_ns, c.request_bytes);
        let generation = self.generation;
        let ep_key = subject_hash("endpoint", c.endpoint);
        if !s.endpoints.contains_key(&ep_key) && s.endpoints.len() < MAX_SESSION_ENDPOINTS {
            s.endpoints.insert(
                ep_key,
                EndpointState {
                    name: c.endpoint.to_string(),
                    ..Default::default()
                },
            );
        }
        let (ep_now, endpoint_known) = match s.endpoints.get_mut(&ep_key) {
            Some(e) => {
                let n = e.window.push(c.ts_ns, 1);
                e.peak = e.peak.max(n);
                let known = match e.known {
                    Some((g, k)) if g == generation => k,
                    _ => {
                        let k = v.has_endpoint(c.endpoint);
                        e.known = Some((generation, k));
                        k
                    }
                };
                (n, known)
            }
            None => (1, v.has_endpoint(c.endpoint)),
        };
        s.peak_calls = s.peak_calls.max(calls_now);
        s.peak_bytes = s.peak_bytes.max(bytes_now);
        let known = |slot: &mut Option<Known>, value: &str, lookup: &dyn Fn(&str) -> bool| {
            let hash = subject_hash("", value);
            match *slot {
                Some(k) if k.hash == hash && k.generation == generation => k.known,
                _ => {
                    let known = lookup(value);
                    *slot = Some(Known {
                        hash,
                        generation,
                        known,
                    });
                    known
                }
            }
        };
        let known_credential = c
            .credential
            .is_none_or(|cred| known(&mut s.credential, cred, &|x| v.has_credential(x)));
        let known_destination = c
            .destination
            .is_none_or(|d| known(&mut s.destination, d, &|x| v.has_destination(x)));
        let mut quota_counts = Vec::new();
        if let Some(e) = entry {
            for (i, q) in e.quotas.iter().enumerate() {
                let hit = q
                    .endpoint
                    .as_ref()
                    .is_none_or(|p| p.matches(c.method, c.authority, c.template, c.path));
                if hit && let Some(w) = s.quotas.get_mut(i) {
                    quota_counts.push((i, w.push(c.ts_ns, 1)));
                }
            }
        }
        // The previous endpoint of the run (for transitions), in reused
        // buffers: this runs on every call.
        std::mem::swap(&mut s.prev_endpoint, &mut s.last_endpoint);
        s.last_endpoint.clear();
        s.last_endpoint.push_str(c.endpoint);
        let had_prev = std::mem::replace(&mut s.has_last, true);
        let prev: Option<&str> = had_prev.then_some(s.prev_endpoint.as_str());
        // The learned runs' high percentiles, worked out once per detector
        // generation (a sort of up to 64 peaks, each call past a floor).
        let highs = match s.highs {
            Some((g, calls, bytes)) if g == generation => (calls, bytes),
            _ => {
                let h = (
                    high(&v.peaks(|b| Some(&b.peak_calls))),
                    high(&v.peaks(|b| Some(&b.peak_bytes))),
                );
                s.highs = Some((generation, h.0, h.1));
                h
            }
        };
        let endpoint_high = |e: &mut EndpointState| match e.high {
            Some((g, h)) if g == generation => h,
            _ => {
                let h = high(&v.peaks(|b| b.endpoint_peaks.get(c.endpoint)));
                e.high = Some((generation, h));
                h
            }
        };
        let ep_high = if ep_now > rate_floor {
            match s.endpoints.get_mut(&ep_key) {
                Some(e) => endpoint_high(e),
                None => high(&v.peaks(|b| b.endpoint_peaks.get(c.endpoint))),
            }
        } else {
            None
        };
        let reported = &mut s.reported;
        let mut first = |rule: &str, subject: &str| reported.insert(subject_hash(rule, subject));

        // Rules that need no baseline.
        if c.write && ep_now >= repeat_limit && first("repetition", c.endpoint) {
            push(
                "repetition",
                if irreversible { "critical" } else { "high" },
                format!(
                    "{} called {ep_now} times within {} s in one run (loop?)",
                    c.endpoint,
                    WINDOW_NS / 1_000_000_000
                ),
                ep_now,
            );
        }
        let mut denied = false;
        if let Some(e) = entry {
            if let Some(d) = e.denied(c.method, c.authority, c.template, c.path) {
                denied = true;
                if first("denied", c.endpoint) {
                    push(
                        "denied_endpoint",
                        if irreversible { "critical" } else { "high" },
                        format!(
                            "{} is denied to this agent by policy {:?} ({:?})",
                            c.endpoint, e.name, d.text
                        ),
                        0,
                    );
                }
            } else if !e.allowed(c.method, c.authority, c.template, c.path) {
                denied = true;
                if first("not allowed", c.endpoint) {
                    push(
                        "not_allowed_endpoint",
                        if irreversible { "high" } else { "medium" },
                        format!(
                            "{} is not on policy {:?}'s allow list for this agent",
                            c.endpoint, e.name
                        ),
                        0,
                    );
                }
            }
            for (i, n) in &quota_counts {
                let q = &e.quotas[*i];
                let what = q.endpoint.as_ref().map_or("all calls", |p| p.text.as_str());
                if *n > q.per_minute && first("quota", &i.to_string()) {
                    push(
                        "quota_exceeded",
                        "high",
                        format!(
                            "{n} calls to {what} within 60 s, above policy {:?}'s quota of {} per minute",
                            e.name, q.per_minute
                        ),
                        *n,
                    );
                }
            }
        }
        // Another identity's credential, new to this one: borrowed.
        let others = |cred: &str| {
            owners
                .get(cred)
                .into_iter()
                .flatten()
                .filter(move |i| *i != identity)
        };
        let borrowed = match c.credential {
            Some(cred) if !known_credential => others(cred).next().is_some(),
            _ => false,
        };
        if let Some(cred) = c.credential
            && borrowed
            && first("borrowed", cred)
        {
            let others: Vec<&str> = others(cred).map(String::as_str).collect();
            push(
                "borrowed_credential",
                "high",
                format!(
                    "credential {cred} belongs to {} other agent identit{} ({}): borrowed?",
                    others.len(),
                    if others.len() == 1 { "y" } else { "ies" },
                    others.join(", ")
                ),
                others.len() as u64,
            );
        }

        if mode != Mode::Learn {
            if !endpoint_known && first("new", c.endpoint) {
                let (rule, severity, what) = if irreversible {
                    (
                        "new_irreversible_endpoint",
                        "high",
                        "an irreversible endpoint",
                    )
                } else {
                    ("new_endpoint", "medium", "an endpoint")
                };
                push(
                    rule,
                    severity,
                    format!(
                        "{what} this agent never called in its {} learned runs: {}",
                        v.sessions(),
                        c.endpoint
                    ),
                    0,
                );
            }
            // The limit is never below its floor, so the learned peaks are
            // only looked at past it (the common case costs nothing).
            let limit = |peak: Option<u64>, floor: u64| {
                peak.map(|p| ((p as f64 * multiplier).ceil() as u64).max(floor))
            };
            if calls_now > rate_floor {
                let peak = highs.0;
                if let Some(l) = limit(peak, rate_floor)
                    && calls_now > l
                    && first("rate", "")
                {
                    push(
                        "runaway_rate",
                        "high",
                        format!(
                            "{calls_now} calls within 60 s; its learned runs peaked at {} (95th percentile), limit {l}",
                            peak.unwrap_or(0)
                        ),
                        calls_now,
                    );
                }
            }
            if ep_now > rate_floor {
                let peak = ep_high;
                if let Some(l) = limit(peak, rate_floor)
                    && ep_now > l
                    && first("rate", c.endpoint)
                {
                    push(
                        "runaway_rate",
                        if irreversible { "critical" } else { "high" },
                        format!(
                            "{ep_now} calls to {} within 60 s; learned runs peaked at {} (95th percentile), limit {l}",
                            c.endpoint,
                            peak.unwrap_or(0)
                        ),
                        ep_now,
                    );
                }
            }
            if bytes_now > volume_floor {
                let peak = highs.1;
                if let Some(l) = limit(peak, volume_floor)
                    && bytes_now > l
                    && first("volume", "")
                {
                    push(
                        "volume_spike",
                        "medium",
                        format!(
                            "{bytes_now} bytes sent within 60 s; learned runs peaked at {} (95th percentile), limit {l}",
                            peak.unwrap_or(0)
                        ),
                        bytes_now,
                    );
                }
            }
            if c.request_bytes > volume_floor {
                let largest = v.max_request(c.endpoint);
                if let Some(l) = limit(largest, volume_floor)
                    && c.request_bytes > l
                    && first("volume", c.endpoint)
                {
                    push(
                        "volume_spike",
                        "medium",
                        format!(
                            "one {}-byte request to {}; the largest learned was {}, limit {l}",
                            c.request_bytes,
                            c.endpoint,
                            largest.unwrap_or(0)
                        ),
                        c.request_bytes,
                    );
                }
            }
            if let Some(p) = prev
                && p != c.endpoint
                && v.has_endpoint(p)
                && v.has_endpoint(c.endpoint)
                && transition_seen(&v, p, c.endpoint) == 0
            {
                let from = v.transitions_from(p);
                let k = v.endpoints() as u64;
                // Add-one smoothing over the known endpoints.
                let prob = 1.0 / (from + k).max(1) as f64;
                if from >= MIN_TRANSITIONS_FROM && prob < UNLIKELY {
                    let key = format!("{p} -> {}", c.endpoint);
                    if first("sequence", &key) {
                        push(
                            "unlikely_sequence",
                            "medium",
                            format!(
                                "{key}: never seen in {from} learned transitions from {p}; probability {prob:.3}"
                            ),
                            from,
                        );
                    }
                }
            }
            if let Some(cred) = c.credential
                && !known_credential
                && !borrowed
                && first("credential", cred)
            {
                push(
                    "new_credential",
                    "medium",
                    format!("a credential this agent never used before: {cred}"),
                    0,
                );
            }
            if let Some(d) = c.destination
                && !known_destination
                && first("destination", d)
            {
                push(
                    "new_destination",
                    "low",
                    format!("a destination this agent never reached before: {d}"),
                    0,
                );
            }
        }
        let learning = s.learning;

        // Learning: only what no rule objected to.
        if mode == Mode::Learn && learning && !denied {
            let b = match self.baselines.get_mut(identity) {
                Some(b) => b,
                None => self.baselines.entry(identity.to_string()).or_default(),
            };
            b.calls += 1;
            bump(&mut b.endpoints, c.endpoint);
            if let Some(p) = prev {
                with_transition_key(p, c.endpoint, |k| bump(&mut b.transitions, k));
            }
            if let Some(m) = b.max_request_bytes.get_mut(c.endpoint) {
                *m = (*m).max(c.request_bytes);
            } else if b.max_request_bytes.len() < MAX_ENTRIES {
                b.max_request_bytes
                    .insert(c.endpoint.to_string(), c.request_bytes);
            }
            if let Some(d) = c.destination
                && b.destinations.len() < MAX_ENTRIES
                && !b.destinations.contains(d)
            {
                b.destinations.insert(d.to_string());
            }
            if let Some(cred) = c.credential
                && b.credentials.len() < MAX_ENTRIES
                && !b.credentials.contains(cred)
            {
                b.credentials.insert(cred.to_string());
                self.own_credential(cred, identity);
            }
        }
        // The policy's response for each finding.
        if let Some(e) = entry {
            for f in &mut out {
                let sev = crate::config::Severity::parse(f.severity)
                    .unwrap_or(crate::config::Severity::Low);
                f.response = e.response(f.rule, sev);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// A session key for a test's session name.
    fn k(name: &str) -> SessionKey {
        let h = name
            .bytes()
            .fold(17u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
        (1, h)
    }

    fn root() -> Process {
        Process {
            pid: 1,
            start_ticks: 1,
            ppid: 0,
            uid: 0,
            comm: "agent".into(),
            exe: "/usr/bin/python3".into(),
            cmdline: vec![],
            cgroup: None,
            cgroup_id: 0,
            container: None,
            partial: false,
            held: Vec::new(),
        }
    }

    /// A call "METHOD host path" at `ts_s` seconds.
    fn call<'a>(session: &'a str, endpoint: &'a str, ts_s: u64) -> Call<'a> {
        let mut parts = endpoint.splitn(3, ' ');
        let method = parts.next().unwrap();
        let authority = parts.next().unwrap();
        let template = parts.next().unwrap();
        let write = method != "GET";
        Call {
            session: k(session),
            policy: None,
            endpoint,
            method,
            authority,
            template,
            path: template,
            irreversible: write && template.contains("orders"),
            write,
            credential: Some("Bearer fp:1"),
            destination: Some("vendor.example"),
            request_bytes: 200,
            ts_ns: ts_s * S,
        }
    }

    fn run(d: &mut Detector, id: &str, session: &str, calls: &[(&str, u64)]) -> Vec<Finding> {
        d.session_started(id, id, k(session), &root());
        let mut out = Vec::new();
        for (e, t) in calls {
            out.extend(d.call(id, id, &call(session, e, *t)));
        }
        d.session_ended(k(session));
        out
    }

    const NORMAL: [(&str, u64); 2] = [("GET v /inventory/{id}", 1), ("POST v /recommendations", 2)];

    fn learned(id: &str) -> Detector {
        let mut d = Detector::default();
        for r in 0..3 {
            assert!(run(&mut d, id, &format!("l{r}"), &NORMAL).is_empty());
        }
        d
    }

    #[test]
    fn learns_then_flags_new_and_irreversible_once() {
        let mut d = learned("agt-1");
        let changes = d.take_mode_changes();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!((changes[0].from, changes[0].to), (None, Mode::Learn));
        // A normal run: nothing, and the mode moved on to monitor.
        assert!(run(&mut d, "agt-1", "n", &NORMAL).is_empty());
        let changes = d.take_mode_changes();
        assert_eq!(changes[0].to, Mode::Monitor);
        assert_eq!(changes[0].why, "learned 4 runs");
        d.session_started("agt-1", "agt-1", k("s9"), &root());
        let f = d.call("agt-1", "agt-1", &call("s9", "POST v /orders", 3));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, "new_irreversible_endpoint");
        assert_eq!(f[0].severity, "high");
        assert_eq!(f[0].mode, Mode::Monitor);
        // Once per run, and findings are not learned.
        assert!(
            d.call("agt-1", "agt-1", &call("s9", "POST v /orders", 4))
                .is_empty()
        );
        let b = &d.baselines["agt-1"];
        assert_eq!(
            b.transitions["GET v /inventory/{id} -> POST v /recommendations"],
            3
        );
        assert!(!b.endpoints.contains_key("POST v /orders"));
        assert_eq!(b.peak_calls, [2, 2, 2]);
    }

    #[test]
    fn an_imported_baseline_checks_from_the_first_run_and_is_never_counted_twice() {
        let mut a = learned("agt-x");
        run(&mut a, "agt-x", "a9", &NORMAL);
        let file = a.export("node-a", &[]);
        let file = BaselineFile::parse(&serde_json::to_vec(&file).unwrap()).unwrap();
        let mut b = Detector::default();
        assert_eq!(b.import(&file), 1);
        b.session_started("agt-x", "agt-x", k("b1"), &root());
        assert!(
            b.call("agt-x", "agt-x", &call("b1", "GET v /inventory/{id}", 1))
                .is_empty()
        );
        let f = b.call("agt-x", "agt-x", &call("b1", "POST v /orders", 2));
        assert_eq!(f[0].rule, "new_irreversible_endpoint", "{f:?}");
        assert!(
            !b.baselines["agt-x"]
                .endpoints
                .contains_key("POST v /orders")
        );
        assert_eq!(b.baselines["agt-x"].sessions, 1);
        assert_eq!(b.effective("agt-x").sessions, 5);
    }

    #[test]
    fn repetition_in_a_window_even_while_learning() {
        let mut d = Detector::default();
        d.session_started("agt-2", "agt-2", k("r"), &root());
        let mut found = Vec::new();
        for i in 0..8 {
            found.extend(d.call("agt-2", "agt-2", &call("r", "POST v /orders", i)));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].rule, "repetition");
        assert_eq!(found[0].severity, "critical");
        assert_eq!(found[0].count, 5);
        assert_eq!(found[0].mode, Mode::Learn);
        // Spread out over more than the window: no loop.
        let mut d = Detector::default();
        d.session_started("agt-3", "agt-3", k("q"), &root());
        for i in 0..10 {
            assert!(
                d.call("agt-3", "agt-3", &call("q", "POST v /orders", i * 30))
                    .is_empty()
            );
        }
    }

    #[test]
    fn runaway_rate_against_the_learned_peaks() {
        let mut d = learned("agt-r");
        // Reads (no repetition rule) far faster than learned: the learned
        // peak is 1 per endpoint, 2 in total; the floor is 10.
        d.session_started("agt-r", "agt-r", k("fast"), &root());
        let mut rules = Vec::new();
        for i in 0..12 {
            for f in d.call(
                "agt-r",
                "agt-r",
                &call("fast", "GET v /inventory/{id}", 10 + i),
            ) {
                rules.push((f.rule, f.count, f.summary));
            }
        }
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert!(rules.iter().all(|r| r.0 == "runaway_rate"));
        assert!(rules.iter().all(|r| r.1 == 11), "{rules:?}");
        assert!(rules[0].2.contains("limit 10"), "{rules:?}");
    }

    #[test]
    fn volume_spike_of_one_request() {
        let mut d = learned("agt-v");
        d.session_started("agt-v", "agt-v", k("big"), &root());
        let mut c = call("big", "POST v /recommendations", 5);
        c.request_bytes = 10 << 20;
        let f = d.call("agt-v", "agt-v", &c);
        let rules: Vec<&str> = f.iter().map(|f| f.rule).collect();
        assert_eq!(rules, ["volume_spike", "volume_spike"], "{f:?}");
        assert!(f[1].summary.contains("largest learned was 200"), "{f:?}");
    }

    #[test]
    fn an_unlikely_sequence_between_known_endpoints() {
        let mut d = Detector::default();
        let order = [
            ("GET v /a", 1),
            ("GET v /b", 2),
            ("GET v /a", 3),
            ("GET v /b", 4),
            ("GET v /a", 5),
            ("GET v /b", 6),
            ("GET v /c", 7),
        ];
        for r in 0..3 {
            run(&mut d, "agt-s", &format!("l{r}"), &order);
        }
        // a -> b and b -> a, b -> c learned; c -> a never.
        d.session_started("agt-s", "agt-s", k("odd"), &root());
        assert!(
            d.call("agt-s", "agt-s", &call("odd", "GET v /a", 1))
                .is_empty()
        );
        let f = d.call("agt-s", "agt-s", &call("odd", "GET v /c", 2));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, "unlikely_sequence");
        assert!(
            f[0].summary.contains("never seen in 9 learned transitions"),
            "{f:?}"
        );
    }

    #[test]
    fn borrowed_and_new_credentials_and_destinations() {
        let mut d = learned("agt-owner");
        // Another identity, learning, uses the owner's credential.
        d.session_started("agt-other", "agt-other", k("o"), &root());
        let f = d.call(
            "agt-other",
            "agt-other",
            &call("o", "GET v /inventory/{id}", 1),
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, "borrowed_credential");
        assert!(f[0].summary.contains("agt-owner"), "{f:?}");
        // The owner itself, after learning, with a key nobody has and a
        // new destination.
        run(&mut d, "agt-owner", "x0", &NORMAL);
        d.session_started("agt-owner", "agt-owner", k("x"), &root());
        let mut c = call("x", "GET v /inventory/{id}", 1);
        c.credential = Some("Bearer fp:fresh");
        c.destination = Some("billing.example");
        let rules: Vec<&str> = d
            .call("agt-owner", "agt-owner", &c)
            .iter()
            .map(|f| f.rule)
            .collect();
        assert_eq!(rules, ["new_credential", "new_destination"]);
    }

    #[test]
    fn policy_denies_allows_and_quotas_in_every_mode() {
        let policy = Policy::parse(
            r#"
policies:
  - name: shop
    agents: ["agt-p"]
    allow: ["GET */inventory/*", "POST */orders"]
    deny: ["POST */refunds"]
    quotas: [{ endpoint: "POST */orders", per_minute: 2 }]
    respond: [{ finding: denied_endpoint, action: kill }]
"#,
        )
        .unwrap();
        let mut d = Detector::new(FastMap::default(), Tuning::default(), Arc::new(policy));
        d.session_started("agt-p", "agt-p", k("p"), &root());
        let f = d.call("agt-p", "agt-p", &call("p", "POST v /refunds", 1));
        assert_eq!(f[0].rule, "denied_endpoint");
        assert_eq!(f[0].mode, Mode::Learn);
        assert_eq!(f[0].response, Some(ResponseAction::Kill));
        assert_eq!(f[0].policy.as_deref(), Some("shop"));
        let f = d.call("agt-p", "agt-p", &call("p", "GET v /billing", 2));
        assert_eq!(f[0].rule, "not_allowed_endpoint");
        assert_eq!(f[0].response, None);
        let mut rules = Vec::new();
        for t in 3..6 {
            rules.extend(
                d.call("agt-p", "agt-p", &call("p", "POST v /orders", t))
                    .into_iter()
                    .map(|f| f.rule),
            );
        }
        assert_eq!(rules, ["quota_exceeded"]);
        // Denied calls are not learned.
        assert!(
            !d.baselines["agt-p"]
                .endpoints
                .contains_key("POST v /refunds")
        );
    }

    #[test]
    fn a_forgotten_session_keeps_its_policy_and_quotas() {
        let policy = Policy::parse(
            r#"
policies:
  - name: shop
    agents: ["agt-q"]
    deny: ["POST */refunds"]
    quotas: [{ endpoint: "POST */orders", per_minute: 2 }]
"#,
        )
        .unwrap();
        let mut d = Detector::new(FastMap::default(), Tuning::default(), Arc::new(policy));
        let index = d.session_started("agt-q", "agt-q", k("q"), &root());
        assert_eq!(index, Some(0));
        // More sessions start than the detector keeps: "q" is forgotten
        // while its processes live on and go on calling.
        for i in 0..MAX_SESSIONS as u64 {
            d.session_started("agt-other", "agt-other", (7, i), &root());
        }
        assert!(!d.sessions.contains_key(&k("q")));
        let with_policy = |c: Call<'static>| Call { policy: index, ..c };
        let f = d.call(
            "agt-q",
            "agt-q",
            &with_policy(call("q", "POST v /refunds", 1)),
        );
        assert_eq!(f[0].rule, "denied_endpoint");
        assert_eq!(f[0].policy.as_deref(), Some("shop"));
        let mut rules = Vec::new();
        for t in 2..5 {
            let c = with_policy(call("q", "POST v /orders", t));
            rules.extend(d.call("agt-q", "agt-q", &c).into_iter().map(|f| f.rule));
        }
        assert!(rules.contains(&"quota_exceeded"), "{rules:?}");
    }

    #[test]
    fn modes_pinned_by_an_operator_or_the_policy() {
        let policy =
            Policy::parse("policies:\n  - name: strict\n    agents: [agt-m]\n    mode: enforce\n")
                .unwrap();
        let mut d = Detector::new(FastMap::default(), Tuning::default(), Arc::new(policy));
        d.session_started("agt-m", "agt-m", k("m"), &root());
        let c = d.take_mode_changes();
        assert_eq!(c[0].to, Mode::Enforce);
        assert_eq!(c[0].why, "policy \"strict\"");
        d.set_mode("agt-m", Some(Mode::Monitor), "cli uid 0");
        d.call("agt-m", "agt-m", &call("m", "GET v /a", 1));
        let c = d.take_mode_changes();
        assert_eq!((c[0].from, c[0].to), (Some(Mode::Enforce), Mode::Monitor));
        assert_eq!(c[0].why, "set by cli uid 0");
    }

    #[test]
    fn windows_count_the_last_minute_in_constant_memory() {
        let mut w = Window::default();
        assert_eq!(w.push(100 * S, 1), 1);
        assert_eq!(w.push(130 * S, 1), 2);
        assert_eq!(w.push(149 * S, 5), 7);
        // 100 s is more than a window behind 161 s: it has gone; the
        // rest is within 50-60 s.
        assert_eq!(w.push(161 * S, 1), 7);
        // A late record still counts.
        assert_eq!(w.push(140 * S, 1), 8);
        // Long quiet: everything expired.
        assert_eq!(w.push(1_000 * S, 2), 2);
        // Bytes saturate rather than wrap.
        assert_eq!(w.push(1_001 * S, u64::MAX), u64::from(u32::MAX));
        assert_eq!(size_of::<Window>(), 40);
    }

    #[test]
    fn learning_can_be_limited_in_time() {
        let mut d = Detector::new(
            FastMap::default(),
            Tuning {
                learn_sessions: 100,
                learn_minutes: 1,
                ..Tuning::default()
            },
            Arc::default(),
        );
        d.session_started("agt-t", "agt-t", k("t"), &root());
        assert!(d.learning("agt-t"));
        d.baselines.get_mut("agt-t").unwrap().first_seen_unix -= 61;
        assert!(!d.learning("agt-t"));
    }
}
