//! Armed agents: request patterns written to the kernel for each process
//! of an agent the config arms, so that the kernel acts at the TLS write of
//! a matching request, before the bytes are encrypted (see
//! `sensor-ebpf/src/enforce.rs`, `block_armed_write`): it kills the process
//! (`response.arm`, deny), stops it until a person decides
//! (`response.hold`), or lets it through (a request approved and
//! remembered, checked first).
//!
//! Matching is on the first bytes of an HTTP/1.x request ("POST
//! /v1/orders"). The authority is not in the request line: a deny applies
//! to every host the agent talks to, and a hold pattern naming a host
//! ("POST vendor.example/v1/orders") stops the process at any host's
//! matching request, after which the daemon reads the Host header and
//! resumes it at once if it is another host. HTTP/2 requests are binary
//! (HPACK) and are not matched in the kernel.
//!
//! Database statements: "DROP *" (any statement whose verb is DROP) or
//! "DROP [host]/DROP TABLE staging_*" (a statement prefix) match the
//! statement's first bytes after its message header, letters in any case:
//! PostgreSQL's simple `Query` and MySQL's `COM_QUERY` and
//! `COM_STMT_PREPARE` (header 5 bytes), PostgreSQL's `Parse` of an unnamed
//! statement (6 bytes: psycopg, libpq's PQexecParams). Each takes two
//! kernel patterns. Not matched in the kernel: statements after leading
//! spaces or comments, with other spacing than the pattern's, or parsed
//! under a name (asyncpg's), and plain-TCP connections (only TLS writes
//! are probed); the daemon still sees them, after they ran. The server is
//! not in the statement: a hold naming one holds at any server.

use std::{
    collections::{BTreeMap, HashMap as StdHashMap},
    path::PathBuf,
};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{HashMap, MapData},
};
use sensor_common::{
    ARM_ALLOW, ARM_FLAG_HOLD_TLS, ARM_HOLD, ARM_KILL, ARM_PATTERN_MAX, ARM_RULES_MAX, ArmRules,
};
use tracing::{info, warn};

use crate::{
    config::{ArmConfig, HoldConfig},
    procs::Process,
};

/// One pattern of an armed process.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    /// As configured (or remembered).
    pub text: String,
    /// What the kernel matches: "METHOD /path-prefix", or a statement's
    /// prefix (upper case) after `skip` bytes.
    pub kernel: String,
    /// The host a hold applies to; None for any.
    pub authority: Option<String>,
    /// `ARM_KILL`, `ARM_HOLD` or `ARM_ALLOW`.
    pub action: u8,
    /// A database statement's header bytes before `kernel` (0 for HTTP).
    pub skip: u8,
    /// Stops every request of a method whose target is in absolute form
    /// (`POST https://host/path HTTP/1.1`, which servers must accept,
    /// RFC 9112 §3.2.2): the kernel compares request lines from their
    /// start and cannot skip a scheme and host of any length, so the
    /// daemon checks the agent's patterns against the stopped request.
    pub absolute_form: bool,
}

/// Message headers a statement follows in a write: PostgreSQL's `Query`
/// and MySQL's packet header with `COM_QUERY` or `COM_STMT_PREPARE` (5
/// bytes); PostgreSQL's `Parse` of the unnamed statement (type, length,
/// the empty name's NUL: 6).
const STATEMENT_SKIPS: [u8; 2] = [5, 6];

impl Pattern {
    pub fn is_statement(&self) -> bool {
        self.skip > 0
    }
}

/// The statement prefix a pattern names, if it names one: "VERB *", or
/// "VERB [host]/VERB rest*" (the path is the statement, as the policy's
/// patterns write it).
fn statement_prefix(method: &str, target: &str, path: &str) -> Option<String> {
    if target == "*" {
        return Some(format!("{method} "));
    }
    let text = path.strip_prefix('/')?;
    let first = text.split(' ').next()?;
    if !first.eq_ignore_ascii_case(method) {
        return None;
    }
    Some(text.trim_end_matches('*').to_ascii_uppercase())
}

/// Parses "METHOD /path-prefix", or with `authority_ok` also "METHOD
/// host/path-prefix" and "METHOD */path-prefix"; and statement patterns
/// ("DROP *", "DROP [host]/DROP TABLE staging_*"), which give one kernel
/// pattern per statement header.
pub fn parse(p: &str, action: u8, authority_ok: bool) -> Result<Vec<Pattern>, String> {
    let bad = || {
        format!(
            "{p:?} is not \"METHOD /path-prefix\" (e.g. \"POST /v1/orders\") nor a statement pattern (\"DROP *\", \"DROP /DROP TABLE staging_*\")"
        )
    };
    let (method, target) = p.split_once(' ').ok_or_else(bad)?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad());
    }
    let slash = target.find('/').or((target == "*").then_some(0));
    let slash = slash.ok_or_else(bad)?;
    let (host, path) = target.split_at(slash);
    let authority = match host {
        "" | "*" if slash == 0 || authority_ok => None,
        h if authority_ok && !h.contains(char::is_whitespace) => Some(h.to_ascii_lowercase()),
        _ if authority_ok => return Err(bad()),
        _ => {
            return Err(format!(
                "{p:?}: a deny pattern cannot name a host (the kernel sees only the request line): \"METHOD /path-prefix\""
            ));
        }
    };
    if let Some(prefix) = statement_prefix(method, target, path) {
        let room = ARM_PATTERN_MAX - usize::from(STATEMENT_SKIPS[1]);
        if prefix.len() > room {
            return Err(format!("{p:?}: a statement prefix is at most {room} bytes"));
        }
        return Ok(STATEMENT_SKIPS
            .iter()
            .map(|&skip| Pattern {
                text: p.to_string(),
                kernel: prefix.clone(),
                authority: authority.clone(),
                action,
                skip,
                absolute_form: false,
            })
            .collect());
    }
    let kernel = format!("{method} {path}");
    if kernel.len() > ARM_PATTERN_MAX {
        return Err(format!("{p:?} is longer than {ARM_PATTERN_MAX} bytes"));
    }
    Ok(vec![Pattern {
        text: p.to_string(),
        kernel,
        authority,
        action,
        skip: 0,
        absolute_form: false,
    }])
}

/// One absolute-form catch-all per method of the HTTP patterns that stop
/// a request (see `Pattern::absolute_form`).
fn absolute_forms(patterns: &[Pattern]) -> Vec<Pattern> {
    let mut methods: Vec<&str> = patterns
        .iter()
        .filter(|p| p.action != ARM_ALLOW && !p.is_statement())
        .filter_map(|p| p.kernel.split_once(' ').map(|(m, _)| m))
        .collect();
    methods.sort_unstable();
    methods.dedup();
    methods
        .into_iter()
        .map(|m| Pattern {
            text: format!(
                "{m} scheme://host/… (a request in absolute form, checked by the daemon)"
            ),
            kernel: format!("{m} http"),
            authority: None,
            action: ARM_HOLD,
            skip: 0,
            absolute_form: true,
        })
        .collect()
}

/// The first of `patterns` (in the kernel's order) that the request
/// `method target` in absolute form matches, with the host it names.
pub fn match_absolute<'a>(
    patterns: &'a [Pattern],
    method: &str,
    target: &str,
) -> Option<(&'a Pattern, String)> {
    let (host, path) = crate::http::stream::absolute_target(target)?;
    let line = format!("{method} {path} ");
    patterns
        .iter()
        .filter(|p| !p.absolute_form && !p.is_statement())
        .find(|p| {
            // A remembered approval is the exact request line it was
            // given for (absolute form included).
            if p.action == ARM_ALLOW {
                return p.kernel == format!("{method} {target} ");
            }
            line.starts_with(&p.kernel)
                && p.authority
                    .as_deref()
                    .is_none_or(|want| super::responder::host_matches(want, &host))
        })
        .map(|p| (p, host))
}

/// Parses each of `patterns`, in order.
fn parse_all(patterns: &[String], action: u8, authority_ok: bool) -> Result<Vec<Pattern>, String> {
    let mut out = Vec::new();
    for p in patterns {
        out.extend(parse(p, action, authority_ok)?);
    }
    Ok(out)
}

/// Packs patterns for the kernel, in order (the first match decides).
pub fn pack(patterns: &[Pattern]) -> Result<ArmRules, String> {
    if patterns.is_empty() {
        return Err("no pattern".into());
    }
    if patterns.len() > ARM_RULES_MAX {
        return Err(format!(
            "at most {ARM_RULES_MAX} patterns per agent (deny, hold and remembered approvals together; a statement pattern counts twice)"
        ));
    }
    let mut r = ArmRules::default();
    for (i, p) in patterns.iter().enumerate() {
        let b = p.kernel.as_bytes();
        let skip = usize::from(p.skip);
        if skip + b.len() > ARM_PATTERN_MAX {
            return Err(format!(
                "{:?} is longer than {ARM_PATTERN_MAX} bytes",
                p.text
            ));
        }
        r.pattern_len[i] = (skip + b.len()) as u32;
        r.action[i] = p.action;
        for (j, &c) in b.iter().enumerate() {
            // A statement's letters in any case: bit 5 is what tells
            // upper from lower case in ASCII.
            let folded =
                p.is_statement() || (p.absolute_form && j > p.kernel.find(' ').unwrap_or(0));
            let m = if folded && c.is_ascii_alphabetic() {
                0xdf
            } else {
                0xff
            };
            r.mask[i][skip + j] = m;
            r.patterns[i][skip + j] = c & m;
        }
        r.mask[i][..skip].fill(0);
    }
    r.len = patterns.len() as u32;
    Ok(r)
}

/// Checks deny patterns (`response.arm`).
pub fn rules(deny: &[String]) -> Result<ArmRules, String> {
    pack(&parse_all(deny, ARM_KILL, false)?)
}

/// Checks hold patterns (`response.hold`).
pub fn hold_rules(patterns: &[String]) -> Result<Vec<Pattern>, String> {
    let p = parse_all(patterns, ARM_HOLD, true)?;
    pack(&p)?;
    Ok(p)
}

/// Who is armed, with what.
pub struct Armer {
    map: HashMap<MapData, u32, ArmRules>,
    arm: Vec<ArmConfig>,
    hold: Vec<HoldConfig>,
    /// Agent id → remembered approvals ("METHOD /path "), allowed first.
    remembered: BTreeMap<String, Vec<String>>,
    remembered_path: Option<PathBuf>,
    /// tgid → (agent id, the agent as configured, its patterns).
    armed: StdHashMap<u32, (String, String, Vec<Pattern>)>,
    /// A process is named as the agents module names it: by the same
    /// operator selectors, and in a pod by its workload.
    naming: crate::agents::selectors::Naming,
    pods: crate::pods::Pods,
    /// Processes whose TLS library is hooked: their requests are seen in
    /// plaintext, so they are not stopped at each new TLS connection.
    hooked: std::collections::HashSet<u32>,
    /// Process names the kernel arms at exec (see `ARM_BY_COMM`).
    by_comm: std::collections::HashSet<String>,
}

/// A process name as the kernel's `comm` holds it: 15 bytes and NULs.
/// `name` as the kernel keeps a process name: its first 15 bytes.
fn comm_of(name: &str) -> String {
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

fn comm_key(name: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    let b = name.as_bytes();
    let n = b.len().min(15);
    k[..n].copy_from_slice(&b[..n]);
    k
}

/// What the kernel matched, in words.
pub struct Matched {
    pub agent: String,
    pub agent_id: String,
    pub pattern: Pattern,
}

impl Armer {
    /// Processes are named by the daemon's installed naming
    /// (`agents::Settings::from_config`, read before this).
    pub fn take(
        bpf: &mut Ebpf,
        pods: crate::pods::Pods,
        arm: Vec<ArmConfig>,
        hold: Vec<HoldConfig>,
        remembered_path: Option<PathBuf>,
    ) -> Result<Self> {
        let map = bpf.take_map("ARMED").context("map ARMED missing")?;
        let remembered = match &remembered_path {
            Some(p) => match std::fs::read(p) {
                Ok(b) => serde_json::from_slice(&b)
                    .with_context(|| format!("reading remembered approvals {}", p.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
            },
            None => BTreeMap::new(),
        };
        Self {
            map: HashMap::try_from(map)?,
            arm,
            hold,
            remembered,
            remembered_path,
            armed: StdHashMap::new(),
            naming: crate::agents::selectors::Naming::installed(),
            pods,
            hooked: Default::default(),
            by_comm: Default::default(),
        }
        .arm_by_comm(bpf)
    }

    /// Tells the kernel the process names of armed and held agents (the
    /// agent's name itself, and the executable file names of the operator
    /// selectors that name it), so a process is armed at its exec, before
    /// it runs an instruction; its identity is checked when the daemon
    /// reads the exec event, which may come after its first request (a
    /// busy daemon, a binary that connects at once).
    fn arm_by_comm(mut self, bpf: &mut Ebpf) -> Result<Self> {
        let mut map: HashMap<MapData, [u8; 16], ArmRules> = HashMap::try_from(
            bpf.take_map("ARM_BY_COMM")
                .context("map ARM_BY_COMM missing")?,
        )?;
        for (comm, name) in self.exec_names() {
            if let Some((_, patterns)) = self.patterns("", &name)
                && let Ok(r) = self.rules_for(u32::MAX, &patterns)
            {
                match map.insert(&comm_key(&comm), &r, 0) {
                    Ok(()) => {
                        self.by_comm.insert(comm);
                    }
                    Err(e) => warn!(agent = %name, error = %e, "could not arm at exec"),
                }
            }
        }
        Ok(self)
    }

    /// (process name at exec, agent) for every armed or held agent; a
    /// process name two agents would claim arms neither (the daemon arms
    /// each by its identity once it reads the exec).
    fn exec_names(&self) -> Vec<(String, String)> {
        let mut claims: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let agents = self.arm.iter().map(|a| &a.agent);
        for name in agents.chain(self.hold.iter().map(|h| &h.agent)) {
            let mut comms = self.naming.exec_names(name);
            if !name.starts_with("agt-") && !name.contains('/') {
                comms.push(comm_of(name));
            }
            for comm in comms {
                let owners = claims.entry(comm).or_default();
                if !owners.contains(name) {
                    owners.push(name.clone());
                }
            }
        }
        claims
            .into_iter()
            .filter_map(|(comm, owners)| match owners.as_slice() {
                [one] => Some((comm, one.clone())),
                _ => {
                    warn!(process_name = %comm, agents = ?owners, "not armed at exec: the name is shared by several armed agents");
                    None
                }
            })
            .collect()
    }

    pub fn active(&self) -> bool {
        !self.arm.is_empty() || !self.hold.is_empty()
    }

    /// The patterns of an agent: remembered approvals, then denies, then
    /// holds.
    fn patterns(&self, id: &str, name: &str) -> Option<(String, Vec<Pattern>)> {
        let is = |a: &str| a == name || a == id;
        let mut label = None;
        let mut out = Vec::new();
        for a in self.arm.iter().filter(|a| is(&a.agent)) {
            label.get_or_insert_with(|| a.agent.clone());
            out.extend(
                a.deny
                    .iter()
                    .filter_map(|d| parse(d, ARM_KILL, false).ok())
                    .flatten(),
            );
        }
        for h in self.hold.iter().filter(|h| is(&h.agent)) {
            label.get_or_insert_with(|| h.agent.clone());
            out.extend(
                h.patterns
                    .iter()
                    .filter_map(|d| parse(d, ARM_HOLD, true).ok())
                    .flatten(),
            );
        }
        let label = label?;
        let allow = self
            .remembered
            .get(id)
            .into_iter()
            .flatten()
            .map(|k| Pattern {
                text: format!("approved {}", crate::redact::target(k.trim_end())),
                kernel: k.clone(),
                authority: None,
                action: ARM_ALLOW,
                skip: 0,
                absolute_form: false,
            });
        let mut all: Vec<Pattern> = allow.collect();
        let absolute = absolute_forms(&out);
        all.extend(out);
        all.extend(absolute);
        if all.len() > ARM_RULES_MAX {
            warn!(agent = %label, "more than {ARM_RULES_MAX} kernel patterns: the last are not armed (absolute-form requests are checked last)");
        }
        all.truncate(ARM_RULES_MAX);
        Some((label, all))
    }

    /// The kernel rules for `pid`'s patterns.
    fn rules_for(&self, pid: u32, patterns: &[Pattern]) -> Result<ArmRules, String> {
        let mut r = pack(patterns)?;
        // Until the process is known to use a hooked TLS library, it is
        // stopped at each new TLS connection (after its ClientHello, before
        // any request): the daemon then resolves its files (a binary never
        // seen before is probed only from then on, and its first request
        // may come within milliseconds of its exec) and resumes it, its
        // requests held or denied one by one from there; a client whose
        // plaintext is not visible (rustls, anything without hookable
        // functions) is held there instead if a pattern names the host.
        if !self.hooked.contains(&pid) && patterns.iter().any(|p| p.action != ARM_ALLOW) {
            r.flags |= ARM_FLAG_HOLD_TLS;
        }
        Ok(r)
    }

    fn write(&mut self, pid: u32, patterns: &[Pattern]) -> bool {
        let Ok(r) = self.rules_for(pid, patterns) else {
            return false; // checked when the config was loaded
        };
        match self.map.insert(&pid, &r, 0) {
            Ok(()) => true,
            Err(e) => {
                warn!(pid, error = %e, "could not arm");
                false
            }
        }
    }

    /// Arms `p` if it is a process of an armed agent (by the agent name or
    /// id it is named by: an operator selector's name, else the one its
    /// executable and command line give). Called for every process at
    /// start and at each exec, so a process is armed before it sends
    /// anything; its forks inherit the arming in the kernel.
    pub fn on_process(&mut self, p: &Process) -> bool {
        if !self.active() {
            return false;
        }
        let pod = p.container.as_ref().and_then(|c| self.pods.of(c));
        let crate::agents::selectors::Named { id, name, .. } = self.naming.name(p, pod.as_deref());
        let Some((label, patterns)) = self.patterns(&id, &name) else {
            // Armed at exec by its name alone, but not the agent: undone.
            if self.by_comm.contains(&p.comm) {
                let _ = self.map.remove(&p.pid);
            }
            return false;
        };
        if !self.write(p.pid, &patterns) {
            return false;
        }
        info!(pid = p.pid, agent = %name, patterns = patterns.len(), "armed");
        self.armed.insert(p.pid, (id, label, patterns));
        true
    }

    pub fn on_exit(&mut self, pid: u32) {
        self.armed.remove(&pid);
        self.hooked.remove(&pid);
    }

    /// The hosts `pid` is held at (from hold patterns naming one).
    pub fn held_hosts(&self, pid: u32) -> Vec<(String, String)> {
        self.armed
            .get(&pid)
            .map_or_else(Vec::new, |(_, _, patterns)| {
                patterns
                    .iter()
                    .filter(|p| p.action == ARM_HOLD)
                    .filter_map(|p| Some((p.authority.clone()?, p.text.clone())))
                    .collect()
            })
    }

    /// `pid` turned out to use a hooked TLS library: stop holding it at
    /// each new connection (its requests are held by their plaintext).
    pub fn hooked_tls(&mut self, pid: u32) {
        if !self.hooked.insert(pid) {
            return;
        }
        if let Some((_, _, patterns)) = self.armed.get(&pid).cloned() {
            self.write(pid, &patterns);
        }
    }

    /// A child forked by an armed process is armed in the kernel already.
    pub fn on_fork(&mut self, parent: u32, child: u32) {
        if let Some(a) = self.armed.get(&parent).cloned() {
            self.armed.insert(child, a);
        }
    }

    /// The agent `pid` is armed as: (as configured, id); "?" if it is not.
    pub fn agent_of(&self, pid: u32) -> (String, String) {
        self.armed.get(&pid).map_or_else(
            || ("?".into(), String::new()),
            |(id, label, _)| (label.clone(), id.clone()),
        )
    }

    /// The patterns `pid` is armed with, in the kernel's order.
    pub fn patterns_of(&self, pid: u32) -> Vec<Pattern> {
        self.armed
            .get(&pid)
            .map(|(_, _, p)| p.clone())
            .unwrap_or_default()
    }

    pub fn matched(&self, pid: u32, rule: u32) -> Matched {
        let (agent, agent_id) = self.agent_of(pid);
        let pattern = self
            .armed
            .get(&pid)
            .and_then(|(_, _, patterns)| patterns.get(rule as usize).cloned())
            .unwrap_or_else(|| Pattern {
                text: format!("pattern {rule}"),
                kernel: String::new(),
                authority: None,
                action: ARM_KILL,
                skip: 0,
                absolute_form: false,
            });
        Matched {
            agent,
            agent_id,
            pattern,
        }
    }

    /// Lets `request_line` ("METHOD /path ", up to the version) of agent
    /// `id` through from now on, in its live processes and in later ones.
    pub fn remember(&mut self, id: &str, request_line: &str) -> Result<(), String> {
        if request_line.len() > ARM_PATTERN_MAX {
            return Err(format!(
                "{:?} is longer than {ARM_PATTERN_MAX} bytes: it cannot be remembered",
                request_line.trim_end()
            ));
        }
        let list = self.remembered.entry(id.to_string()).or_default();
        if !list.iter().any(|k| k == request_line) {
            list.push(request_line.to_string());
        }
        let pids: Vec<u32> = self
            .armed
            .iter()
            .filter(|(_, (a, _, _))| a == id)
            .map(|(p, _)| *p)
            .collect();
        let Some((label, patterns)) = self
            .armed
            .values()
            .find(|(a, _, _)| a == id)
            .map(|(_, label, _)| label.clone())
            .and_then(|label| self.patterns(id, &label))
        else {
            return Ok(());
        };
        if patterns.iter().filter(|p| p.action != ARM_ALLOW).count() == 0 {
            return Err("no room left for the agent's own patterns".into());
        }
        for pid in pids {
            if self.write(pid, &patterns) {
                self.armed
                    .insert(pid, (id.to_string(), label.clone(), patterns.clone()));
            }
        }
        if let Some(path) = &self.remembered_path
            && let Err(e) = crate::state::write_private(
                path,
                &serde_json::to_vec_pretty(&on_disk(&self.remembered)).unwrap_or_default(),
            )
        {
            warn!(error = %format!("{e:#}"), "could not save remembered approvals");
        }
        Ok(())
    }
}

/// The approvals written to disk: not one whose request line carries a
/// secret (`?token=…`), which the kernel needs whole to match and which
/// must not rest in a file: it lasts until the daemon stops, and is asked
/// again after.
fn on_disk(remembered: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    remembered
        .iter()
        .map(|(id, lines)| {
            let clean = lines
                .iter()
                .filter(|l| crate::redact::target(l) == **l)
                .cloned()
                .collect::<Vec<_>>();
            (id.clone(), clean)
        })
        .filter(|(_, lines)| !lines.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_with_secrets_are_not_written_to_disk() {
        let mut r = BTreeMap::new();
        r.insert(
            "agt-1".to_string(),
            vec![
                "POST /v1/orders ".to_string(),
                "GET /x?token=PLANTED ".to_string(),
            ],
        );
        r.insert(
            "agt-2".to_string(),
            vec!["GET /y?api_key=PLANTED ".to_string()],
        );
        let disk = serde_json::to_string(&on_disk(&r)).unwrap();
        assert_eq!(disk, r#"{"agt-1":["POST /v1/orders "]}"#);
    }

    #[test]
    fn patterns_are_checked_and_packed() {
        let r = rules(&["POST /v1/orders".into(), "DELETE /".into()]).unwrap();
        assert_eq!(r.len, 2);
        assert_eq!(&r.patterns[0][..15], b"POST /v1/orders");
        assert_eq!(r.pattern_len, [15, 8, 0, 0, 0, 0, 0, 0]);
        assert_eq!(r.action, [ARM_KILL; 8]);
        for bad in ["post /x", "POST", "POST x", ""] {
            assert!(rules(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(rules(&[]).is_err());
        assert!(rules(&vec!["GET /".to_string(); 9]).is_err());
        assert!(rules(&[format!("GET /{}", "a".repeat(64))]).is_err());
        let e = rules(&["POST vendor.example/v1/orders".into()]).unwrap_err();
        assert!(e.contains("cannot name a host"), "{e}");
    }

    #[test]
    fn hold_patterns_may_name_a_host() {
        let p = hold_rules(&[
            "POST Vendor.example/v1/orders".into(),
            "DELETE */customers/".into(),
            "POST /billing/credits".into(),
        ])
        .unwrap();
        assert_eq!(p[0].kernel, "POST /v1/orders");
        assert_eq!(p[0].authority.as_deref(), Some("vendor.example"));
        assert_eq!(p[1].kernel, "DELETE /customers/");
        assert_eq!(p[1].authority, None);
        assert_eq!(p[2].authority, None);
        assert!(p.iter().all(|p| p.action == ARM_HOLD));
        let packed = pack(&p).unwrap();
        assert_eq!(packed.action[..3], [ARM_HOLD; 3]);
        assert!(hold_rules(&["POST vendor example/x".into()]).is_err());
    }

    #[test]
    fn statement_patterns_skip_the_message_header_and_fold_case() {
        let p = hold_rules(&[
            "DROP *".into(),
            "TRUNCATE db.internal/TRUNCATE staging_*".into(),
        ])
        .unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!((p[0].kernel.as_str(), p[0].skip), ("DROP ", 5));
        assert_eq!((p[1].kernel.as_str(), p[1].skip), ("DROP ", 6));
        assert_eq!(p[2].kernel, "TRUNCATE STAGING_");
        assert_eq!(p[2].authority.as_deref(), Some("db.internal"));
        let r = pack(&p).unwrap();
        assert_eq!(&r.patterns[0][..10], b"\0\0\0\0\0DROP ");
        assert_eq!(r.pattern_len[..4], [10, 11, 22, 23]);
        // The header is not compared, letters in any case, the rest as is.
        assert_eq!(
            r.mask[1][..11],
            [0, 0, 0, 0, 0, 0, 0xdf, 0xdf, 0xdf, 0xdf, 0xff]
        );
        let write = b"Q\0\0\0\x20drop table x";
        let matches = |i: usize| {
            (0..r.pattern_len[i] as usize).all(|j| write[j] & r.mask[i][j] == r.patterns[i][j])
        };
        assert!(matches(0) && !matches(1) && !matches(2));
        let http = rules(&["POST /v1/orders".into()]).unwrap();
        assert!(http.mask[0].iter().all(|&m| m == 0xff));
        // A deny may not name a server, as for HTTP; too many patterns
        // (each statement counts twice) are refused.
        assert!(rules(&["DROP db/DROP TABLE x".into()]).is_err());
        assert!(rules(&vec!["DROP *".to_string(); 5]).is_err());
        assert!(rules(&["DROP *".into(), "POST /v1/orders".into()]).is_ok());
        // An HTTP path is not a statement.
        let http = &parse("DELETE /customers/", ARM_KILL, false).unwrap()[0];
        assert!(!http.is_statement());
        assert!(parse(&format!("DROP /DROP {}", "A".repeat(60)), ARM_KILL, false).is_err());
    }

    #[test]
    fn requests_in_absolute_form_are_matched_by_the_daemon() {
        let holds = hold_rules(&["POST vendor.example/v1/orders".into()]).unwrap();
        let mut all = parse("DELETE /customers/", ARM_KILL, false).unwrap();
        all.extend(holds);
        let catch = absolute_forms(&all);
        assert_eq!(
            catch.iter().map(|p| p.kernel.as_str()).collect::<Vec<_>>(),
            ["DELETE http", "POST http"]
        );
        // The kernel sees "POST HTTPS://" too: the scheme's letters fold.
        let packed = pack(&catch).unwrap();
        assert_eq!(packed.mask[1][..5], [0xff; 5]);
        assert_eq!(packed.mask[1][5..9], [0xdf; 4]);
        assert_eq!(&packed.patterns[1][5..9], b"HTTP");
        all.extend(catch);
        let (p, host) =
            match_absolute(&all, "POST", "https://Vendor.Example:443/v1/orders?x=1").unwrap();
        assert_eq!(
            (p.text.as_str(), host.as_str()),
            ("POST vendor.example/v1/orders", "vendor.example:443")
        );
        assert!(match_absolute(&all, "POST", "https://other.example/v1/orders").is_none());
        assert!(match_absolute(&all, "POST", "https://vendor.example/v1/quotes").is_none());
        let (p, _) = match_absolute(&all, "DELETE", "http://u:p@any.example/customers/9").unwrap();
        assert_eq!(p.action, ARM_KILL);
        // A remembered approval is the exact request line.
        let approved = Pattern {
            text: "approved".into(),
            kernel: "POST https://vendor.example/v1/orders ".into(),
            authority: None,
            action: ARM_ALLOW,
            skip: 0,
            absolute_form: false,
        };
        let mut with = vec![approved];
        with.extend(all);
        let (p, _) = match_absolute(&with, "POST", "https://vendor.example/v1/orders").unwrap();
        assert_eq!(p.action, ARM_ALLOW);
    }
}
