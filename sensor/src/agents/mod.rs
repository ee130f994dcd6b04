//! Which processes are AI agents, and what each agent identity has done.
//!
//! - `catalog`: LLM provider endpoints.
//!
//! A process becomes an agent when it calls a provider (or, when its
//! plaintext is not visible, sends a ClientHello naming one); the processes
//! it forks afterwards belong to the same agent session, so a tool script
//! or `curl` it spawns is the agent's too. An agent identity is stable
//! across restarts and hosts: derived from the executable and the command
//! line without volatile arguments. The inventory of every identity ever
//! seen (the host's shadow-AI list) is kept in the state directory.

pub mod baseline;
pub mod catalog;
pub mod detect;
pub mod llm;
pub mod mode;
pub mod policy;
pub mod selectors;

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet, VecDeque},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::{
    event::{Detail, Event},
    procs::Process,
};

/// What an event of an agent's process carries.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentTag {
    pub id: String,
    pub name: String,
    /// The run of the process tree: its root's pid and start time.
    pub session: String,
    /// The same, as numbers: the key of per-session state.
    #[serde(skip)]
    pub key: SessionKey,
    /// The policy entry that applies to the session (matched on its root
    /// process when it started): a session the detector had to forget is
    /// checked against the same entry, quotas included, when it calls again.
    #[serde(skip)]
    pub policy: Option<usize>,
}

/// A session by its root process: (pid, start ticks).
pub type SessionKey = (u32, u64);

/// Hash maps of the per-call path: foldhash (hashbrown's default) rather
/// than SipHash. Keys are the sensor's own (pids, identity ids, hashes of
/// endpoints made with the default SipHash), seeded per process.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// A tool call of an agent's model, as named on the calls it led to.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub name: String,
}

/// Calls of a session a hold shows.
const TRAIL_LEN: usize = 8;
/// Steps of a session kept in order (older ones are only counted).
const RING_LEN: usize = 32;

/// Sessions whose pending tool calls are remembered (oldest forgotten).
const MAX_SESSIONS: usize = 16_384;

/// Distinct values kept per set in an inventory entry.
const MAX_SET: usize = 512;
/// Processes remembered as agent members (oldest forgotten first).
const MAX_MEMBERS: usize = 65_536;
const RECENT_SESSIONS: usize = 16;

/// One agent identity: everything it was seen doing, its blast radius.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Inventory {
    pub id: String,
    pub name: String,
    pub exe: String,
    /// Command line as identified (redacted, volatile arguments dropped).
    pub cmdline: Vec<String>,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub providers: BTreeSet<String>,
    /// Credential fingerprints it sent.
    pub credentials: BTreeSet<String>,
    /// "METHOD authority path_template" → calls.
    pub endpoints: BTreeMap<String, u64>,
    /// The subset of `endpoints` that cannot be undone (see `irreversible`).
    pub irreversible: BTreeMap<String, u64>,
    /// "addr:port" and TLS server names.
    pub destinations: BTreeSet<String>,
    pub sessions: u64,
    pub recent_sessions: VecDeque<String>,
    pub calls: u64,
}

fn bounded_insert(set: &mut BTreeSet<String>, v: String) {
    if set.len() < MAX_SET || set.contains(&v) {
        set.insert(v);
    }
}

/// As `bounded_insert`, allocating only for a value not yet in the set.
fn bounded_insert_str(set: &mut BTreeSet<String>, v: &str) {
    if !set.contains(v) && set.len() < MAX_SET {
        set.insert(v.to_string());
    }
}

/// Counts `k`, allocating only for a key not yet in the map.
fn bounded_count_str(map: &mut BTreeMap<String, u64>, k: &str) {
    if let Some(n) = map.get_mut(k) {
        *n += 1;
    } else if map.len() < MAX_SET {
        map.insert(k.to_string(), 1);
    }
}

/// Write calls to paths that name money, orders, deletion or permissions:
/// what a person would want to approve before an agent does it.
pub fn irreversible(method: &str, template: &str) -> bool {
    const WORDS: [&str; 14] = [
        "order",
        "payment",
        "pay",
        "refund",
        "credit",
        "transfer",
        "charge",
        "invoice",
        "delete",
        "drop",
        "permission",
        "role",
        "grant",
        "purchase",
    ];
    // Reads first, and no allocation for the usual lowercase path: this
    // runs on every call of every agent.
    if !matches!(method, "POST" | "PUT" | "PATCH" | "DELETE") {
        // A database statement's verb (HTTP has no such methods).
        return crate::db::irreversible(method, template);
    }
    if method == "DELETE" {
        return true;
    }
    let path = template.split('?').next().unwrap_or(template);
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        let lower = path.to_ascii_lowercase();
        WORDS.iter().any(|w| lower.contains(w))
    } else {
        WORDS.iter().any(|w| path.contains(w))
    }
}

/// Arguments that change from run to run and must not split an identity.
fn volatile(arg: &str) -> bool {
    let a = arg.trim_start_matches('-');
    let value = a.split_once('=').map_or(a, |(_, v)| v);
    let hexish = value.len() >= 8 && value.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    value.is_empty() && arg != "-" && arg != "--"
        || value.bytes().all(|b| b.is_ascii_digit())
        || hexish
        || arg == "<redacted>"
        || value.contains("<redacted>")
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

const INTERPRETERS: [&str; 8] = [
    "python", "node", "ruby", "perl", "bun", "deno", "java", "php",
];

/// (id, readable name, normalised command line) of a process.
pub fn identity(p: &Process) -> (String, String, Vec<String>) {
    let mut norm: Vec<String> = Vec::new();
    for (i, a) in p.cmdline.iter().enumerate() {
        if i == 0 {
            norm.push(basename(a).to_string());
        } else if a.starts_with("/tmp/") || a.starts_with("/var/tmp/") {
            // Scripts run from temporary directories: the file name is the
            // stable part.
            norm.push(basename(a).to_string());
        } else if !volatile(a) {
            norm.push(a.clone());
        }
    }
    let exe = if p.exe.is_empty() {
        p.comm.clone()
    } else {
        p.exe.clone()
    };
    let mut h = Sha256::new();
    h.update(basename(&exe).as_bytes());
    for a in &norm {
        h.update([0]);
        h.update(a.as_bytes());
    }
    let id = format!("agt-{}", &hex(&h.finalize())[..12]);
    let base = basename(&exe);
    let interpreted = INTERPRETERS.iter().any(|i| base.starts_with(i));
    let name = if interpreted {
        let mut args = norm.iter().skip(1);
        let mut name = None;
        while let Some(a) = args.next() {
            match a.as_str() {
                "-m" => {
                    name = args.next().cloned();
                    break;
                }
                "-c" | "-e" => {
                    name = Some(format!("{base} {a}"));
                    break;
                }
                s if s.starts_with('-') => continue,
                s => {
                    name = Some(basename(s).to_string());
                    break;
                }
            }
        }
        name.unwrap_or_else(|| base.to_string())
    } else {
        base.to_string()
    };
    (id, name, norm)
}

/// The identity of `p`, from its pod when it runs in one: the same agent
/// on every node (and in every replica) is the workload's container
/// running the same image, whatever its pid, pod name or image tag.
pub fn identity_in(
    p: &Process,
    pod: Option<&crate::pods::PodContainer>,
) -> (String, String, Vec<String>) {
    let Some(pod) = pod else {
        return identity(p);
    };
    let (_, _, cmdline) = identity(p);
    let owner = pod
        .workload
        .clone()
        .unwrap_or_else(|| format!("Pod/{}", pod.name));
    let repo = image_repository(&pod.image);
    let mut h = Sha256::new();
    for part in ["k8s", &pod.namespace, &owner, &pod.container, repo] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let id = format!("agt-{}", &hex(&h.finalize())[..12]);
    let short = owner.split_once('/').map_or(owner.as_str(), |(_, n)| n);
    (
        id,
        format!("{}/{short}/{}", pod.namespace, pod.container),
        cmdline,
    )
}

/// "registry:5000/team/app:1.2@sha256:…" → "registry:5000/team/app".
fn image_repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// New agent identities refused for want of room (`room_for`), since the
/// daemon started.
static IDENTITIES_REFUSED: AtomicU64 = AtomicU64::new(0);

pub fn identities_refused() -> u64 {
    IDENTITIES_REFUSED.load(Ordering::Relaxed)
}

/// What the operator configured about agents, beyond the defaults.
#[derive(Clone, Default)]
pub struct Settings {
    pub tuning: detect::Tuning,
    pub policy: Arc<policy::Policy>,
    /// The operator's selectors, as every part of the daemon names agents.
    pub naming: selectors::Naming,
}

impl Settings {
    /// From the config; the policy file and selectors were checked when
    /// the config was. Installs the operator's providers and naming for
    /// the whole daemon (the armer names processes by the same selectors).
    pub fn from_config(cfg: &crate::config::Config) -> Result<Self> {
        let policy = match &cfg.agents.policy {
            Some(p) => {
                policy::Policy::load(p).map_err(|e| anyhow::anyhow!("agents.policy: {e}"))?
            }
            None => policy::Policy::default(),
        };
        let naming = selectors::Naming::from_config(&cfg.agents.selectors)
            .map_err(|e| anyhow::anyhow!("agents.selectors: {e}"))?;
        catalog::install(&cfg.agents.providers);
        naming.install();
        Ok(Self {
            tuning: detect::Tuning::from_config(cfg),
            policy: Arc::new(policy),
            naming,
        })
    }
}

/// What is kept per live session.
#[derive(Default)]
struct SessionInfo {
    /// The tool calls its model asked for last, in order.
    pending: Vec<ToolRef>,
    trail: Trail,
    /// Hashes of the last credential and destination put in the inventory.
    last_credential: u64,
    last_destination: u64,
    /// Hashes of the (credential, endpoint) pairs of its latest calls put
    /// in the credential audit: a repeated one is not looked up again
    /// (measured: the audit's lookups on every call cost the agents bench
    /// about a fifth of its rate).
    credential_uses: [u64; 8],
}

/// Whether `value` differs from the one `last` remembers (by hash), which
/// it then remembers.
fn changed(last: &mut u64, value: Option<&str>) -> bool {
    let Some(v) = value else {
        return false;
    };
    let h = detect::subject_hash("", v) | 1;
    std::mem::replace(last, h) != h
}

/// One step of a session: a model turn or another API call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub ts_unix_ns: u64,
    /// "METHOD authority template".
    pub endpoint: String,
    pub llm: bool,
    /// For a model turn, the tool calls it asked for; for a call, the one
    /// that asked for it.
    pub tools: Vec<String>,
}

/// A session's sequence: the most recent steps in order, counters for all.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Trail {
    pub agent: String,
    pub recent: VecDeque<Step>,
    pub llm_turns: u64,
    pub api_calls: u64,
    /// Steps no longer in `recent`.
    pub older: u64,
}

pub struct Agents {
    pub detector: detect::Detector,
    settings: Settings,
    modes_path: Option<PathBuf>,
    /// Processes already checked against the selectors.
    selected: FastSet<(u32, u64)>,
    /// Per identity, the policy entry of its latest session (matched on
    /// its root process): what its mode is worked out with between calls.
    session_policy: FastMap<String, Option<usize>>,
    baselines_path: Option<PathBuf>,
    /// Baselines imported while running (`sensor baseline import`), kept
    /// so they are checked after a restart too.
    imported_path: Option<PathBuf>,
    /// Per session: the tool calls its model asked for last, and its steps
    /// in order (one map, one lookup per call).
    sessions: FastMap<SessionKey, SessionInfo>,
    session_order: VecDeque<SessionKey>,
    members: FastMap<(u32, u64), Arc<AgentTag>>,
    order: VecDeque<(u32, u64)>,
    /// By id (a hash map: looked up on every call; listed sorted).
    inventory: FastMap<String, Inventory>,
    path: Option<PathBuf>,
    dirty: bool,
    /// Mode changes made by operators, to announce.
    pending_modes: Vec<detect::ModeChange>,
    scratch: String,
    /// Endpoint → (provider, irreversible): see `classify`.
    classes: FastMap<String, (Option<&'static str>, bool)>,
    /// Every credential agents held or used (the credential audit).
    pub credentials: crate::credentials::Inventory,
    /// Where it is kept (beside `path`).
    credentials_path: Option<PathBuf>,
}

impl Agents {
    /// The inventory kept at `path` (created on first save), or an empty
    /// one in memory only.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        Self::load_with(path, Settings::default())
    }

    /// As `load`, with the operator's settings.
    pub fn load_with(path: Option<&Path>, settings: Settings) -> Result<Self> {
        let baselines_path = path.map(|p| p.with_file_name("baselines.json"));
        let baselines = match &baselines_path {
            Some(p) => match std::fs::read(p) {
                Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "baselines {} are not readable JSON (move the file aside to learn anew)",
                        p.display()
                    )
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => FastMap::default(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
            },
            None => FastMap::default(),
        };
        let inventory = match path {
            Some(p) => match std::fs::read(p) {
                Ok(bytes) => serde_json::from_slice::<Vec<Inventory>>(&bytes)
                    .with_context(|| {
                        format!(
                            "agent inventory {} is not readable JSON (move it aside to start a new one)",
                            p.display()
                        )
                    })?
                    .into_iter()
                    .map(|i| (i.id.clone(), i))
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => FastMap::default(),
                Err(e) => {
                    return Err(e).with_context(|| format!("reading {}", p.display()));
                }
            },
            None => FastMap::default(),
        };
        let mut detector =
            detect::Detector::new(baselines, settings.tuning.clone(), settings.policy.clone());
        let credentials_path = path.map(|p| p.with_file_name("credentials.json"));
        let credentials = match &credentials_path {
            Some(p) => match std::fs::read(p) {
                Ok(bytes) => crate::credentials::Inventory::from_json(&bytes).with_context(|| {
                    format!(
                        "credential inventory {} is not readable JSON (move it aside to start a new one)",
                        p.display()
                    )
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
            },
            None => Default::default(),
        };
        let modes_path = path.map(|p| p.with_file_name("modes.json"));
        if let Some(p) = &modes_path {
            match std::fs::read(p) {
                Ok(bytes) => {
                    detector.modes = serde_json::from_slice(&bytes).with_context(|| {
                        format!(
                            "agent modes {} are not readable JSON (move the file aside: modes return to automatic)",
                            p.display()
                        )
                    })?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
            }
        }
        let imported_path = path.map(|p| p.with_file_name("baselines-imported.json"));
        if let Some(p) = &imported_path {
            match std::fs::read(p) {
                Ok(bytes) => {
                    let file = baseline::BaselineFile::parse(&bytes).map_err(|e| {
                        anyhow::anyhow!(
                            "imported baselines {}: {e} (move the file aside to drop them)",
                            p.display()
                        )
                    })?;
                    detector.import(&file);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
            }
        }
        Ok(Self {
            detector,
            settings,
            modes_path,
            selected: FastSet::default(),
            session_policy: FastMap::default(),
            baselines_path,
            imported_path,
            sessions: FastMap::default(),
            session_order: VecDeque::new(),
            members: FastMap::default(),
            order: VecDeque::new(),
            inventory,
            path: path.map(Path::to_path_buf),
            dirty: false,
            pending_modes: Vec::new(),
            scratch: String::new(),
            classes: FastMap::default(),
            credentials,
            credentials_path,
        })
    }

    /// Writes the inventory if it changed (atomically, 0600).
    pub fn save(&mut self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let list: Vec<&Inventory> = self.list().collect();
        crate::state::write_private(path, &serde_json::to_vec(&list)?)?;
        if let Some(b) = &self.baselines_path {
            crate::state::write_private(b, &serde_json::to_vec(&self.detector.baselines)?)?;
        }
        if let Some(m) = &self.modes_path {
            crate::state::write_private(m, &serde_json::to_vec(&self.detector.modes)?)?;
        }
        if let Some(c) = &self.credentials_path {
            crate::state::write_private(c, &self.credentials.to_json()?)?;
        }
        self.dirty = false;
        Ok(())
    }

    /// A clean stop: open learning runs are folded into their baselines,
    /// then everything is saved.
    pub fn close(&mut self) -> Result<()> {
        self.detector.end_all();
        self.dirty = true;
        self.save()
    }

    /// Pins the mode of an agent (id or name), or with None returns it to
    /// automatic; the change is announced with the next events.
    pub fn set_mode(
        &mut self,
        agent: &str,
        mode: Option<mode::Mode>,
        by: &str,
    ) -> Result<String, String> {
        let id = if self.inventory.contains_key(agent)
            || self.detector.baselines.contains_key(agent)
            || self.detector.imported.contains_key(agent)
        {
            agent.to_string()
        } else {
            let named: Vec<&Inventory> = self
                .inventory
                .values()
                .filter(|i| i.name == agent)
                .collect();
            match named.as_slice() {
                [one] => one.id.clone(),
                [] => return Err(format!("no agent {agent:?} on this host")),
                many => {
                    return Err(format!(
                        "{agent:?} names {} agents; use an id: {}",
                        many.len(),
                        many.iter()
                            .map(|i| i.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        };
        self.detector.set_mode(&id, mode, by);
        let name = self
            .inventory
            .get(&id)
            .map(|i| i.name.clone())
            .unwrap_or_default();
        let entry = self.policy_entry(&id, &name);
        let m = self.detector.mode(&id, &name, entry.as_ref());
        let why = self.detector.mode_reason(&id, entry.as_ref());
        let announced = self.detector.modes.get(&id).and_then(|s| s.announced);
        if announced != Some(m) {
            self.pending_modes.push(detect::ModeChange {
                agent: id.clone(),
                from: announced,
                to: m,
                why,
            });
            self.detector.modes.entry(id.clone()).or_default().announced = Some(m);
        }
        self.dirty = true;
        Ok(id)
    }

    /// The policy entry of identity `id` (named `name`): the one its
    /// latest session started under; for an identity not seen running
    /// since the start, the entry naming it or whose selector matches its
    /// executable and command line as identified (its user, cgroup and
    /// container are not known then).
    fn policy_entry(&self, id: &str, name: &str) -> Option<policy::Entry> {
        if let Some(index) = self.session_policy.get(id) {
            return index.and_then(|i| self.settings.policy.entries.get(i).cloned());
        }
        let exe = self
            .inventory
            .get(id)
            .map(|i| i.exe.clone())
            .unwrap_or_default();
        let cmdline = self
            .inventory
            .get(id)
            .map(|i| i.cmdline.clone())
            .unwrap_or_default();
        let p = Process {
            pid: 0,
            start_ticks: 0,
            ppid: 0,
            uid: 0,
            comm: String::new(),
            exe,
            cmdline,
            cgroup: None,
            cgroup_id: 0,
            container: None,
            partial: true,
            held: Vec::new(),
        };
        self.settings.policy.for_agent(id, name, &p).cloned()
    }

    /// The mode an agent identity is in now.
    pub fn mode_of(&self, id: &str) -> mode::Mode {
        let (name, entry) = self.named_policy_entry(id);
        self.detector.mode(id, &name, entry.as_ref())
    }

    /// Why an agent identity is in its mode now.
    pub fn mode_reason(&self, id: &str) -> String {
        let (_, entry) = self.named_policy_entry(id);
        self.detector.mode_reason(id, entry.as_ref())
    }

    /// An identity's readable name and the policy entry that applies to it.
    fn named_policy_entry(&self, id: &str) -> (String, Option<policy::Entry>) {
        let name = self
            .inventory
            .get(id)
            .map(|i| i.name.clone())
            .unwrap_or_default();
        let entry = self.policy_entry(id, &name);
        (name, entry)
    }

    /// Mode changes the last observed call caused, with the agent's name:
    /// announced in that call's context.
    pub fn take_mode_changes(&mut self) -> Vec<(detect::ModeChange, String)> {
        let changes = self.detector.take_mode_changes();
        self.named(changes)
    }

    /// Mode changes an operator made (`set_mode`), with the agent's name:
    /// announced on the daemon's clock as the sensor's own, never in the
    /// context of whichever call happens to come next.
    pub fn take_operator_mode_changes(&mut self) -> Vec<(detect::ModeChange, String)> {
        let changes = std::mem::take(&mut self.pending_modes);
        self.named(changes)
    }

    fn named(&mut self, all: Vec<detect::ModeChange>) -> Vec<(detect::ModeChange, String)> {
        if !all.is_empty() {
            self.dirty = true;
        }
        all.into_iter()
            .map(|c| {
                let name = self
                    .inventory
                    .get(&c.agent)
                    .map(|i| i.name.clone())
                    .unwrap_or_default();
                (c, name)
            })
            .collect()
    }

    /// The live sessions of an agent identity, with their sequences.
    pub fn sessions_of(&self, id: &str) -> Vec<(String, &Trail)> {
        let mut v: Vec<(String, &Trail)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.trail.agent == id)
            .map(|((pid, start), s)| (format!("{pid}-{start}"), &s.trail))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every identity, by id.
    pub fn list(&self) -> std::vec::IntoIter<&Inventory> {
        let mut v: Vec<&Inventory> = self.inventory.values().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v.into_iter()
    }

    /// Baselines learned elsewhere, from now on checked with this node's
    /// own. With `keep`, they are also kept in the state directory (an
    /// import at run time); files named in the config are read at each
    /// start instead. Returns the number of agents covered.
    pub fn import_baselines(&mut self, file: &baseline::BaselineFile, keep: bool) -> Result<usize> {
        if keep && let Some(p) = &self.imported_path {
            let mut all = match std::fs::read(p) {
                Ok(bytes) => baseline::BaselineFile::parse(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    baseline::BaselineFile::merge_all(&[])
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
            };
            all = baseline::BaselineFile::merge_all(&[all, file.clone()]);
            crate::state::write_private(p, &serde_json::to_vec(&all)?)?;
        }
        Ok(self.detector.import(file))
    }

    /// The baselines of the agents named (ids or names; all when none).
    pub fn export_baselines(
        &self,
        node: &str,
        agents: &[String],
    ) -> Result<baseline::BaselineFile, String> {
        let mut ids = Vec::new();
        for a in agents {
            if self.detector.baselines.contains_key(a) || self.detector.imported.contains_key(a) {
                ids.push(a.clone());
                continue;
            }
            let named: Vec<&Inventory> = self.inventory.values().filter(|i| i.name == *a).collect();
            match named.as_slice() {
                [] => return Err(format!("no agent {a:?} with a baseline on this host")),
                many => ids.extend(many.iter().map(|i| i.id.clone())),
            }
        }
        Ok(self.detector.export(node, &ids))
    }

    pub fn get(&self, id: &str) -> Option<&Inventory> {
        self.inventory.get(id)
    }

    fn remember(&mut self, key: (u32, u64), tag: Arc<AgentTag>) {
        if self.members.insert(key, tag).is_none() {
            self.order.push_back(key);
            if self.order.len() > MAX_MEMBERS
                && let Some(old) = self.order.pop_front()
            {
                self.members.remove(&old);
            }
        }
    }

    /// The state of session `key`, made (and the oldest forgotten) when new.
    fn session_info(&mut self, key: SessionKey) -> &mut SessionInfo {
        if !self.sessions.contains_key(&key) {
            self.session_order.push_back(key);
            if self.session_order.len() > MAX_SESSIONS
                && let Some(old) = self.session_order.pop_front()
            {
                self.sessions.remove(&old);
            }
        }
        self.sessions.entry(key).or_default()
    }

    /// What a held process of an agent was doing: the tool call its model
    /// asked for last (the one it is most plausibly carrying out) and its
    /// session's last calls.
    pub fn hold_context(
        &self,
        pid: u32,
        start_ticks: u64,
    ) -> crate::respond::responder::HoldContext {
        let Some(tag) = self.members.get(&(pid, start_ticks)) else {
            return Default::default();
        };
        crate::respond::responder::HoldContext {
            tool_call: self
                .sessions
                .get(&tag.key)
                .and_then(|s| s.pending.last())
                .map(|t| format!("{} ({})", t.name, t.id)),
            trail: self
                .sessions
                .get(&tag.key)
                .map(|s| {
                    let t = &s.trail;
                    let skip = t.recent.len().saturating_sub(TRAIL_LEN);
                    t.recent
                        .iter()
                        .skip(skip)
                        .map(|s| s.endpoint.clone())
                        .collect()
                })
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    fn push_step(info: &mut SessionInfo, agent: &str, step: Step) {
        let t = &mut info.trail;
        if t.agent.is_empty() {
            t.agent = agent.to_string();
        }
        if step.llm {
            t.llm_turns += 1;
        } else {
            t.api_calls += 1;
        }
        if t.recent.len() == RING_LEN {
            t.recent.pop_front();
            t.older += 1;
        }
        t.recent.push_back(step);
    }

    /// Whether a discovered identity may be kept: a known one always, a
    /// new one while fewer than `agents.max_identities` are. Refusing the
    /// newest, rather than forgetting the oldest, keeps the baselines of
    /// the agents already learned: a flood of invented names cannot send
    /// them back to learning.
    fn room_for(&self, id: &str, name: &str) -> bool {
        if self.inventory.contains_key(id)
            || self.inventory.len() < self.settings.tuning.max_identities
        {
            return true;
        }
        if IDENTITIES_REFUSED.fetch_add(1, Ordering::Relaxed) == 0 {
            warn!(
                agent = name,
                limit = self.settings.tuning.max_identities,
                "agent identity limit reached (agents.max_identities): calls of new agents are reported without an agent and not checked against a baseline (said once; counted in agent_identities_refused)"
            );
        }
        false
    }

    /// Starts a session of `ev`'s process as the agent `named` (as
    /// `Naming::name` names it).
    fn become_agent(&mut self, ev: &Event, named: selectors::Named) -> Arc<AgentTag> {
        let p = &ev.process;
        let selectors::Named {
            id, name, cmdline, ..
        } = named;
        let session = format!("{}-{}", p.pid, p.start_ticks);
        let key = (p.pid, p.start_ticks);
        let policy = self.detector.session_started(&id, &name, key, p);
        self.session_policy.insert(id.clone(), policy);
        let tag = Arc::new(AgentTag {
            id: id.clone(),
            name: name.clone(),
            session: session.clone(),
            key,
            policy,
        });
        self.remember((p.pid, p.start_ticks), tag.clone());
        let inv = self
            .inventory
            .entry(id.clone())
            .or_insert_with(|| Inventory {
                id,
                name,
                exe: p.exe.clone(),
                cmdline,
                first_seen_ns: ev.ts_unix_ns,
                ..Default::default()
            });
        inv.sessions += 1;
        // Named as it is named now: an operator may name an agent the
        // sensor discovered earlier, and lookups by name (`sensor agent`,
        // `sensor baseline mode`) go through the inventory.
        if inv.name != tag.name {
            inv.name.clone_from(&tag.name);
        }
        let inv = self.inventory.get_mut(&tag.id).expect("just inserted");
        inv.recent_sessions.push_back(session);
        if inv.recent_sessions.len() > RECENT_SESSIONS {
            inv.recent_sessions.pop_front();
        }
        self.dirty = true;
        tag
    }

    /// The provider an endpoint belongs to and whether it cannot be undone,
    /// worked out once per endpoint ("METHOD authority template"): the
    /// catalogue and the irreversible words are many string searches.
    fn classify(
        &mut self,
        endpoint: &str,
        method: &str,
        authority: &str,
        path: &str,
        template: &str,
    ) -> (Option<&'static str>, bool) {
        if let Some(c) = self.classes.get(endpoint) {
            return *c;
        }
        let c = (
            catalog::match_call(authority, path),
            irreversible(method, template),
        );
        if self.classes.len() >= MAX_MEMBERS {
            self.classes.clear(); // bound memory; they are cheap to redo
        }
        self.classes.insert(endpoint.to_string(), c);
        c
    }

    /// The operator's selectors, checked once per process image: at its
    /// first event and again at each exec (same pid and start time, a new
    /// executable and command line: a launcher that execs the agent).
    fn selected_agent(&mut self, ev: &Event) -> Option<Arc<AgentTag>> {
        if !self.settings.naming.has_selectors() || ev.process.partial {
            return None;
        }
        let key = (ev.process.pid, ev.process.start_ticks);
        if self.selected.len() > MAX_MEMBERS {
            self.selected.clear(); // bound memory; a second check is harmless
        }
        if !self.selected.insert(key) && !matches!(ev.detail, Detail::Exec { .. }) {
            return None;
        }
        let named = self.settings.naming.name(&ev.process, ev.pod.as_deref());
        named.selected.then(|| self.become_agent(ev, named))
    }

    /// Updates agent membership and inventory from `ev`, tags it with its
    /// agent if its process is one, and returns what the agent's baseline
    /// and policy say about it.
    pub fn observe(&mut self, ev: &mut Event) -> Vec<detect::Finding> {
        let mut findings = Vec::new();
        let key = (ev.process.pid, ev.process.start_ticks);
        let mut tag = self.members.get(&key).cloned();
        if tag.is_none() && !matches!(ev.detail, Detail::Exit { .. } | Detail::Fork { .. }) {
            tag = self.selected_agent(ev);
        }
        match &ev.detail {
            Detail::Fork {
                child_pid,
                child_start_ticks,
            } => {
                if let Some(t) = &tag {
                    self.remember((*child_pid, *child_start_ticks), t.clone());
                }
            }
            Detail::Exit { .. } => {
                // The session's root ended: its run is over.
                if let Some(t) = &tag
                    && t.key == key
                {
                    self.detector.session_ended(t.key);
                    self.dirty = true;
                }
            }
            Detail::ApiCall {
                method,
                authority,
                path,
                path_template,
                credential_fingerprint,
                daddr,
                dport,
                sni,
                llm,
                request_bytes,
                db,
                ..
            } => {
                // "METHOD authority template", without the fmt machinery.
                let mut endpoint =
                    String::with_capacity(method.len() + authority.len() + path_template.len() + 2);
                endpoint.push_str(method);
                endpoint.push(' ');
                endpoint.push_str(authority);
                endpoint.push(' ');
                endpoint.push_str(path_template);
                let (provider, irreversible) =
                    self.classify(&endpoint, method, authority, path, path_template);
                if tag.is_none() && provider.is_some() {
                    let named = self.settings.naming.name(&ev.process, ev.pod.as_deref());
                    if self.room_for(&named.id, &named.name) {
                        tag = Some(self.become_agent(ev, named));
                    }
                }
                // Some(tool call or none) for a call that is not a model
                // turn, Some(None) for a model turn, None outside agents.
                let mut link: Option<Option<Option<ToolRef>>> = None;
                if let Some(t) = &tag {
                    let destination: Option<Cow<str>> = match (sni, db) {
                        (Some(s), _) => Some(Cow::Borrowed(s)),
                        // A database server's databases are destinations
                        // apart (prod is not staging).
                        (None, Some(db)) => Some(Cow::Owned(format!(
                            "{authority}/{}",
                            db.database.as_deref().unwrap_or_default()
                        ))),
                        (None, None) => daddr
                            .zip(*dport)
                            .map(|(a, p)| Cow::Owned(format!("{a}:{p}"))),
                    };
                    // One lookup of the session for its tool calls and for
                    // whether its credential or destination changed (the
                    // inventory's sets are only searched then).
                    let info = self.session_info(t.key);
                    let tools: Vec<String> = if provider.is_some() {
                        // A new model turn: the tool calls it asks for now
                        // replace those the agent has answered.
                        info.pending.clear();
                        if let Some(l) = llm {
                            info.pending.extend(l.tool_calls.iter().map(|c| ToolRef {
                                id: c.id.clone(),
                                name: c.name.clone(),
                            }));
                        }
                        link = Some(None);
                        info.pending.iter().map(|a| a.name.clone()).collect()
                    } else {
                        let last = info.pending.last().cloned();
                        let tools = last.iter().map(|t| t.name.clone()).collect();
                        link = Some(Some(last));
                        tools
                    };
                    let new_credential =
                        changed(&mut info.last_credential, credential_fingerprint.as_deref());
                    let new_destination =
                        changed(&mut info.last_destination, destination.as_deref());
                    let new_use = credential_fingerprint.as_deref().is_some_and(|c| {
                        let h = detect::subject_hash(c, &endpoint) | 1;
                        let seen = &mut info.credential_uses;
                        if seen.contains(&h) {
                            return false;
                        }
                        seen.rotate_right(1);
                        seen[0] = h;
                        true
                    });
                    if let Some(inv) = self.inventory.get_mut(&t.id) {
                        inv.calls += 1;
                        inv.last_seen_ns = inv.last_seen_ns.max(ev.ts_unix_ns);
                        if let Some(p) = provider {
                            bounded_insert_str(&mut inv.providers, p);
                        }
                        if let Some(c) = credential_fingerprint
                            && new_credential
                        {
                            bounded_insert_str(&mut inv.credentials, c);
                        }
                        if irreversible {
                            bounded_count_str(&mut inv.irreversible, &endpoint);
                        }
                        bounded_count_str(&mut inv.endpoints, &endpoint);
                        if let Some(d) = &destination
                            && new_destination
                        {
                            bounded_insert_str(&mut inv.destinations, d);
                        }
                        if let (Some(a), Some(port), Some(_), true) =
                            (daddr, dport, sni, new_destination)
                        {
                            // The address too, when the name was given (in
                            // a reused buffer: this runs on every call).
                            use std::fmt::Write;
                            self.scratch.clear();
                            let _ = write!(self.scratch, "{a}:{port}");
                            bounded_insert_str(&mut inv.destinations, &self.scratch);
                        }
                        self.dirty = true;
                    }
                    let mut credential_alerts = Vec::new();
                    if let Some(c) = credential_fingerprint
                        && (new_use || new_credential)
                    {
                        self.credentials.used(
                            &t.name,
                            &t.id,
                            c,
                            db.is_some(),
                            &endpoint,
                            irreversible,
                            ev.ts_unix_ns,
                        );
                        self.dirty = true;
                        // Its runs and sharing are looked at when the run's
                        // credential changes (its first call with one, or
                        // another one): not on every call.
                        if new_credential {
                            let lifetime = crate::credentials::Lifetime {
                                max_sessions: self.settings.tuning.credential_max_sessions,
                                max_days: self.settings.tuning.credential_max_days,
                            };
                            credential_alerts =
                                self.credentials
                                    .on_use(t.key, &t.id, c, ev.ts_unix_ns, lifetime);
                        }
                    }
                    let credential_findings =
                        self.credential_findings(&t.id, credential_alerts, &endpoint);
                    findings = self.detector.call(
                        &t.id,
                        &t.name,
                        &detect::Call {
                            session: t.key,
                            policy: t.policy,
                            endpoint: &endpoint,
                            method,
                            authority,
                            template: path_template,
                            path,
                            irreversible,
                            write: matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"),
                            credential: credential_fingerprint.as_deref(),
                            destination: destination.as_deref(),
                            request_bytes: *request_bytes,
                            ts_ns: ev.ts_unix_ns,
                        },
                    );
                    findings.extend(credential_findings);
                    // The endpoint string moves into the session's steps.
                    let step = Step {
                        ts_unix_ns: ev.ts_unix_ns,
                        endpoint,
                        llm: provider.is_some(),
                        tools,
                    };
                    Self::push_step(self.session_info(t.key), &t.id, step);
                }
                if let (
                    Some(Some(found)),
                    Detail::ApiCall {
                        tool_call,
                        unrequested,
                        ..
                    },
                ) = (link, &mut ev.detail)
                {
                    match found {
                        Some(t) => *tool_call = Some(t),
                        None => *unrequested = true,
                    }
                }
            }
            Detail::TlsClientHello {
                sni: Some(sni),
                daddr,
                dport,
                ..
            } => {
                let provider = catalog::match_sni(sni);
                if tag.is_none() && provider.is_some() {
                    let named = self.settings.naming.name(&ev.process, ev.pod.as_deref());
                    tag = Some(self.become_agent(ev, named));
                }
                if let Some(t) = &tag
                    && let Some(inv) = self.inventory.get_mut(&t.id)
                {
                    inv.last_seen_ns = inv.last_seen_ns.max(ev.ts_unix_ns);
                    if let Some(p) = provider {
                        bounded_insert(&mut inv.providers, format!("{p} (server name only)"));
                    }
                    bounded_insert_str(&mut inv.destinations, sni);
                    if let (Some(a), Some(port)) = (daddr, dport) {
                        bounded_insert(&mut inv.destinations, format!("{a}:{port}"));
                    }
                    self.dirty = true;
                }
            }
            _ => {}
        }
        if let Some(t) = &tag
            && !ev.process.held.is_empty()
            && self
                .credentials
                .held(key, &t.name, &t.id, &ev.process.held, ev.ts_unix_ns)
        {
            self.dirty = true;
            let learning = self.mode_of(&t.id) == mode::Mode::Learn;
            let detector = &self.detector;
            let learned = |fp: &str| detector.learned_credential(&t.id, fp);
            let alerts = self.credentials.on_held(
                t.key,
                &t.id,
                &ev.process.held,
                (!learning).then_some(&learned as &dyn Fn(&str) -> bool),
            );
            findings.extend(self.credential_findings(&t.id, alerts, ""));
        }
        ev.agent = tag;
        findings
    }

    /// The credential audit's alerts as findings of agent `id`, in its
    /// mode; `endpoint` for those about the call.
    fn credential_findings(
        &self,
        id: &str,
        alerts: Vec<crate::credentials::Alert>,
        endpoint: &str,
    ) -> Vec<detect::Finding> {
        if alerts.is_empty() {
            return Vec::new();
        }
        let mode = self.mode_of(id);
        let baseline_sessions = self.detector.learned_sessions(id);
        alerts
            .into_iter()
            .map(|a| detect::Finding {
                rule: a.rule,
                severity: a.severity,
                summary: a.summary,
                endpoint: if a.subject.is_empty() {
                    endpoint.to_string()
                } else {
                    a.subject
                },
                count: a.count,
                baseline_sessions,
                mode,
                policy: None,
                response: None,
                credential: Some(a.credential),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, exe: &str, cmdline: &[&str]) -> Arc<Process> {
        Arc::new(Process {
            pid,
            start_ticks: 1000 + u64::from(pid),
            ppid: 1,
            uid: 0,
            comm: basename(exe).into(),
            exe: exe.into(),
            cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
            cgroup: None,
            cgroup_id: 0,
            container: None,
            partial: false,
            held: Vec::new(),
        })
    }

    fn ev(p: &Arc<Process>, detail: Detail) -> Event {
        Event {
            seq: 0,
            time: String::new(),
            ts_unix_ns: 5,
            tid: p.pid,
            process: p.clone(),
            detail,
            agent: None,
            pod: None,
        }
    }

    fn call(method: &str, authority: &str, path: &str, cred: Option<&str>) -> Detail {
        Detail::ApiCall {
            provider: None,
            llm: None,
            tool_call: None,
            unrequested: false,
            method: method.into(),
            authority: authority.into(),
            path: path.into(),
            path_template: crate::http::template::path_template(path),
            status: Some(200),
            request_bytes: 1,
            response_bytes: 1,
            latency_ms: None,
            http_version: "HTTP/1.1".into(),
            transport: "tls",
            tls_library: Some("openssl"),
            credential_fingerprint: cred.map(String::from),
            connection: "0x1".into(),
            daddr: Some("127.0.0.1".parse().unwrap()),
            dport: Some(443),
            sni: None,
            db: None,
        }
    }

    #[test]
    fn identity_is_stable_and_readable() {
        let a = process(
            10,
            "/usr/bin/python3.11",
            &["python3", "/tmp/abc123/ordering_agent.py", "--run", "8812"],
        );
        let b = process(
            11,
            "/usr/bin/python3.11",
            &["python3", "/tmp/zz9/ordering_agent.py", "--run", "9913"],
        );
        let c = process(12, "/usr/bin/python3.11", &["python3", "support_bot.py"]);
        let (ida, name, _) = identity(&a);
        assert_eq!(name, "ordering_agent.py");
        assert_eq!(identity(&b).0, ida, "temp dirs and numbers do not split it");
        assert_ne!(identity(&c).0, ida);
        let m = process(
            13,
            "/usr/bin/python3",
            &["python3", "-u", "-m", "agents.buyer"],
        );
        assert_eq!(identity(&m).1, "agents.buyer");
        let n = process(
            14,
            "/usr/local/bin/claude-agent",
            &["claude-agent", "--session=5f0e8a9c1d"],
        );
        assert_eq!(identity(&n).1, "claude-agent");
        assert!(ida.starts_with("agt-") && ida.len() == 16);
    }

    #[test]
    fn a_provider_call_makes_an_agent_and_its_children_follow() {
        let mut agents = Agents::load(None).unwrap();
        let p = process(20, "/usr/bin/python3", &["python3", "agent.py"]);
        // Before any LLM call: not an agent.
        let mut e = ev(&p, call("GET", "vendor.example", "/v1/inventory/1", None));
        agents.observe(&mut e);
        assert!(e.agent.is_none());
        let mut e = ev(
            &p,
            call(
                "POST",
                "127.0.0.1:8443",
                "/v1/chat/completions",
                Some("Bearer fp:aa"),
            ),
        );
        agents.observe(&mut e);
        let tag = e.agent.clone().expect("agent now");
        assert_eq!(tag.name, "agent.py");
        assert_eq!(tag.session, "20-1020");
        // Its child (a curl tool) is the agent's too.
        let mut f = ev(
            &p,
            Detail::Fork {
                child_pid: 21,
                child_start_ticks: 1021,
            },
        );
        agents.observe(&mut f);
        let curl = process(
            21,
            "/usr/bin/curl",
            &["curl", "-X", "POST", "https://vendor.example/v1/orders"],
        );
        let mut e = ev(
            &curl,
            call("POST", "vendor.example", "/v1/orders", Some("Bearer fp:bb")),
        );
        agents.observe(&mut e);
        assert_eq!(e.agent.as_deref(), Some(&*tag));
        let inv = agents.get(&tag.id).unwrap();
        assert_eq!(inv.calls, 2);
        assert_eq!(inv.sessions, 1);
        assert!(inv.providers.contains("openai-compatible"));
        assert!(
            inv.credentials.contains("Bearer fp:aa") && inv.credentials.contains("Bearer fp:bb")
        );
        assert_eq!(
            inv.irreversible.get("POST vendor.example /v1/orders"),
            Some(&1)
        );
        assert_eq!(inv.endpoints.len(), 2);
    }

    #[test]
    fn an_operators_mode_change_waits_for_the_clock_not_the_next_call() {
        let mut agents = Agents::load(None).unwrap();
        let p = process(30, "/usr/bin/python3", &["python3", "agent.py"]);
        let mut e = ev(
            &p,
            call("POST", "127.0.0.1:8443", "/v1/chat/completions", None),
        );
        agents.observe(&mut e);
        let id = e.agent.clone().expect("an agent").id.clone();
        agents.take_mode_changes();
        agents
            .set_mode(&id, Some(mode::Mode::Enforce), "cli uid 0")
            .unwrap();
        // A call of another process comes next: it must not carry the
        // operator's change (its process, pod and time would be wrong).
        let other = process(31, "/usr/bin/curl", &["curl", "https://example.org/"]);
        let mut e = ev(&other, call("GET", "example.org", "/", None));
        agents.observe(&mut e);
        assert!(agents.take_mode_changes().is_empty());
        let op = agents.take_operator_mode_changes();
        assert_eq!(op.len(), 1);
        assert_eq!(op[0].0.agent, id);
        assert_eq!(op[0].0.to, mode::Mode::Enforce);
        assert_eq!(op[0].1, "agent.py");
        assert!(agents.take_operator_mode_changes().is_empty());
    }

    #[test]
    fn calls_link_to_the_tool_call_that_asked_for_them() {
        use crate::agents::llm::{LlmSummary, ToolCall};
        let mut agents = Agents::load(None).unwrap();
        let p = process(50, "/usr/bin/python3", &["python3", "buyer.py"]);
        let mut turn = ev(
            &p,
            call("POST", "127.0.0.1:8443", "/v1/chat/completions", None),
        );
        if let Detail::ApiCall { llm, .. } = &mut turn.detail {
            *llm = Some(Box::new(LlmSummary {
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "place_order".into(),
                    arguments_bytes: 20,
                }],
                ..Default::default()
            }));
        }
        agents.observe(&mut turn);
        let mut order = ev(&p, call("POST", "vendor.example", "/v1/orders", None));
        agents.observe(&mut order);
        let Detail::ApiCall {
            tool_call,
            unrequested,
            ..
        } = &order.detail
        else {
            unreachable!()
        };
        assert_eq!(tool_call.as_ref().unwrap().name, "place_order");
        assert!(!unrequested);
        // The next model turn asks for nothing: a later call is unrequested.
        let mut turn = ev(
            &p,
            call("POST", "127.0.0.1:8443", "/v1/chat/completions", None),
        );
        agents.observe(&mut turn);
        let mut stray = ev(&p, call("DELETE", "vendor.example", "/v1/orders/7", None));
        agents.observe(&mut stray);
        let Detail::ApiCall {
            tool_call,
            unrequested,
            ..
        } = &stray.detail
        else {
            unreachable!()
        };
        assert!(tool_call.is_none() && *unrequested);
    }

    #[test]
    fn server_name_alone_marks_an_agent() {
        let mut agents = Agents::load(None).unwrap();
        let p = process(30, "/usr/local/bin/goagent", &["goagent"]);
        let mut e = ev(
            &p,
            Detail::TlsClientHello {
                fd: 3,
                daddr: None,
                dport: None,
                sni: Some("api.anthropic.com".into()),
                alpn: vec![],
            },
        );
        agents.observe(&mut e);
        let id = e.agent.unwrap().id.clone();
        assert!(
            agents
                .get(&id)
                .unwrap()
                .providers
                .contains("anthropic (server name only)")
        );
    }

    #[test]
    fn inventory_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agents.json");
        let mut agents = Agents::load(Some(&path)).unwrap();
        let p = process(40, "/usr/bin/node", &["node", "bot.js"]);
        let mut e = ev(&p, call("POST", "api.openai.com", "/v1/responses", None));
        agents.observe(&mut e);
        agents.save().unwrap();
        let again = Agents::load(Some(&path)).unwrap();
        let inv: Vec<_> = again.list().collect();
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].name, "bot.js");
        assert!(inv[0].providers.contains("openai"));
        std::fs::write(&path, b"{not json").unwrap();
        let e = Agents::load(Some(&path)).err().unwrap();
        assert!(format!("{e:#}").contains("agents.json"), "{e:#}");
    }

    /// The credential audit's inventory is kept beside the agents': who
    /// used a credential for what is still known after a restart.
    #[test]
    fn credentials_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agents.json");
        let mut agents = Agents::load(Some(&path)).unwrap();
        let p = process(41, "/usr/bin/node", &["node", "bot.js"]);
        let mut e = ev(
            &p,
            call(
                "POST",
                "api.openai.com",
                "/v1/responses",
                Some("Bearer fp:0123456789ab"),
            ),
        );
        agents.observe(&mut e);
        agents.save().unwrap();
        let again = Agents::load(Some(&path)).unwrap();
        let list = again.credentials.list(None);
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].fingerprint, "fp:0123456789ab");
        assert_eq!(list[0].used_by[0].agent, "bot.js");
        assert_eq!(list[0].used_by[0].calls, 1);
        std::fs::write(dir.path().join("credentials.json"), b"[{").unwrap();
        let e = Agents::load(Some(&path)).err().unwrap();
        assert!(format!("{e:#}").contains("credentials.json"), "{e:#}");
    }

    fn settings(selectors: &[crate::config::SelectorConfig], policy: &str) -> Settings {
        Settings {
            naming: selectors::Naming::from_config(selectors).unwrap(),
            policy: Arc::new(policy::Policy::parse(policy).unwrap()),
            ..Default::default()
        }
    }

    /// Issue 19, finding 8: a local process inventing script names made
    /// one identity (inventory entry, baseline) per name, without bound.
    #[test]
    fn discovered_identities_are_capped_and_known_ones_still_run() {
        let mut settings = settings(&[], "policies: []");
        settings.tuning.max_identities = 2;
        let mut agents = Agents::load_with(None, settings).unwrap();
        let refused_before = identities_refused();
        let llm = || call("POST", "127.0.0.1:8443", "/v1/chat/completions", None);
        let script = |pid, name: &str| {
            process(
                pid,
                "/usr/bin/python3",
                &["python3", &format!("/tmp/{name}.py")],
            )
        };
        for (pid, name) in [(60, "a"), (61, "b")] {
            let mut e = ev(&script(pid, name), llm());
            agents.observe(&mut e);
            assert!(e.agent.is_some(), "{name}");
        }
        // A third name: its call is still an event, without an agent.
        let mut e = ev(&script(62, "c"), llm());
        agents.observe(&mut e);
        assert!(e.agent.is_none(), "{:?}", e.agent);
        assert_eq!(agents.list().len(), 2);
        assert_eq!(identities_refused() - refused_before, 1);
        // A known identity's new run is not refused.
        let mut e = ev(&script(63, "a"), llm());
        agents.observe(&mut e);
        assert_eq!(e.agent.expect("known identity").name, "a.py");
    }

    #[test]
    fn an_agent_named_after_its_discovery_is_found_by_its_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agents.json");
        let script = |pid, dir: &str| {
            process(
                pid,
                "/usr/bin/python3",
                &["python3", &format!("/tmp/{dir}/dba_agent.py")],
            )
        };
        let mut agents = Agents::load(Some(&path)).unwrap();
        let mut e = ev(
            &script(50, "a1"),
            call("POST", "127.0.0.1:8443", "/v1/chat/completions", None),
        );
        agents.observe(&mut e);
        let id = e.agent.unwrap().id.clone();
        assert_eq!(agents.get(&id).unwrap().name, "dba_agent.py");
        agents.close().unwrap();
        // The operator names it: its next run is "dba" in its events and
        // wherever it is looked up by name.
        let dba = crate::config::SelectorConfig {
            name: Some("dba".into()),
            cmdline: Some(r"dba_agent\.py".into()),
            ..Default::default()
        };
        let mut agents = Agents::load_with(Some(&path), settings(&[dba], "policies: []")).unwrap();
        let mut e = ev(
            &script(51, "a2"),
            call("GET", "db.example", "/v1/customers/7", None),
        );
        agents.observe(&mut e);
        let tag = e.agent.expect("selected");
        assert_eq!((tag.id.as_str(), tag.name.as_str()), (id.as_str(), "dba"));
        assert_eq!(agents.get(&id).unwrap().name, "dba");
        assert_eq!(
            agents.set_mode("dba", Some(mode::Mode::Enforce), "test"),
            Ok(id)
        );
    }

    #[test]
    fn an_agent_is_shown_in_the_mode_its_sessions_policy_entry_gives() {
        // The entry picks it out by its user, which its identity (and so
        // the inventory) does not hold.
        let policy = "policies:\n  - name: svc\n    selector: { uid: 1001 }\n    mode: enforce\n";
        let mut agents = Agents::load_with(None, settings(&[], policy)).unwrap();
        let p = Arc::new(Process {
            uid: 1001,
            ..(*process(60, "/usr/bin/python3", &["python3", "bot.py"])).clone()
        });
        let mut e = ev(
            &p,
            call("POST", "127.0.0.1:8443", "/v1/chat/completions", None),
        );
        agents.observe(&mut e);
        let id = e.agent.unwrap().id.clone();
        let changes = agents.take_mode_changes();
        assert_eq!(changes[0].0.to, mode::Mode::Enforce);
        assert_eq!(agents.mode_of(&id), mode::Mode::Enforce);
        assert_eq!(agents.mode_reason(&id), "policy \"svc\"");
        // Pinned, then back to automatic: the mode announced is the
        // policy's again.
        agents
            .set_mode(&id, Some(mode::Mode::Monitor), "test")
            .unwrap();
        agents.set_mode(&id, None, "test").unwrap();
        let op = agents.take_operator_mode_changes();
        assert_eq!(op.last().unwrap().0.to, mode::Mode::Enforce, "{op:?}");
    }

    #[test]
    fn reversibility() {
        assert!(irreversible("POST", "/v1/orders"));
        assert!(irreversible("POST", "/billing/credits"));
        assert!(irreversible("DELETE", "/v1/customers/{id}"));
        assert!(!irreversible("GET", "/v1/orders/{id}"));
        assert!(!irreversible("POST", "/v1/chat/completions"));
        // Database statements, by their verb (and WHERE for UPDATE).
        assert!(irreversible("DROP", "DROP TABLE staging_sessions"));
        assert!(irreversible("TRUNCATE", "TRUNCATE orders"));
        assert!(irreversible("UPDATE", "UPDATE accounts SET balance = ?"));
        assert!(!irreversible(
            "UPDATE",
            "UPDATE accounts SET balance = ? WHERE id = ?"
        ));
        assert!(!irreversible(
            "SELECT",
            "SELECT count(*) FROM staging_sessions"
        ));
        assert!(!irreversible("INSERT", "INSERT INTO t VALUES (?)"));
    }
}
