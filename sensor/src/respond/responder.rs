//! The one place actions are taken: operator commands (API, CLI) and the
//! automatic response policy both come through here, and every attempt,
//! whatever its outcome, is reported as an `action` event.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tracing::{info, warn};

use sensor_common::{ARM_ALLOW, ARM_HOLD, ARM_HOLD_TLS, BlockedRecord};

use super::{
    RespondError,
    arm::{self, Armer},
    hold::{self, Hold, Holds},
    isolate::{Isolated, Isolator, Note, Options},
    kill,
};
use crate::{
    config::{HoldExpiry, ResponseAction, ResponseConfig, ResponseMode, Severity},
    event::{Detail, Event},
    procs::Process,
};

/// What was done, for the pipeline to turn into an `action` event about
/// `target`.
#[derive(Debug)]
pub struct Report {
    pub target: (u32, u64),
    pub detail: Detail,
}

/// Who asked: the policy, or an operator through an interface.
#[derive(Clone, Debug)]
pub struct Requester {
    pub by: String,
    pub why: String,
    pub finding_seq: Option<u64>,
    /// The hold a decision answers.
    pub hold_id: Option<u64>,
}

/// What the agent was doing when it was held: the tool call the model
/// asked for, and its last calls.
#[derive(Debug, Default)]
pub struct HoldContext {
    pub tool_call: Option<String>,
    pub trail: Vec<String>,
    /// For a connection hold: the SNI of its ClientHello, and where it goes.
    pub sni: Option<String>,
    pub destination: Option<String>,
}

/// "[::1]:443" → "[::1]", "host:443" → "host"; without a port, itself.
fn host_of(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((h, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (h.ends_with(']') || !h.contains(':')) =>
        {
            h
        }
        _ => authority,
    }
}

/// `authority` as a hold compares it: lowercase, and the name without the
/// root's trailing dot (`vendor.example.` is the same host, and a client
/// may write it so to slip past a hold naming `vendor.example`).
fn normal(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    let host = host_of(&a);
    let port = &a[host.len()..];
    format!("{}{port}", host.trim_end_matches('.'))
}

/// Whether a pattern's host names `authority` (a Host header or SNI): a
/// pattern without a port matches any port.
pub(super) fn host_matches(want: &str, authority: &str) -> bool {
    let (want, authority) = (normal(want), normal(authority));
    if host_of(&want) != want {
        return authority == want;
    }
    host_of(&authority) == want
}

pub struct Responder {
    isolator: Result<Isolator, String>,
    /// Armed and held agents' kernel patterns.
    pub armer: Armer,
    holds: Holds,
    cfg: ResponseConfig,
    protect: kill::Protect,
    /// (session, action) already taken automatically: once is enough.
    taken: HashSet<(String, &'static str)>,
    budget: super::budget::ActionBudget,
    reports: mpsc::UnboundedSender<Report>,
}

/// What a successful action touched.
#[derive(Debug, Default)]
pub struct Outcome {
    pub targets: Vec<(u32, u64)>,
    pub skipped: Vec<String>,
}

impl Responder {
    pub fn new(
        isolator: Result<Isolator, String>,
        armer: Armer,
        cfg: ResponseConfig,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Self {
        // Checked with the rest of the configuration at load; an entry that
        // would not parse here protects everything rather than nothing.
        let protect = kill::Protect::new(&cfg.protect).unwrap_or_else(|e| {
            tracing::error!(error = %e, "response.protect; no action will be taken");
            kill::Protect::everything()
        });
        Self {
            isolator,
            armer,
            holds: Holds::default(),
            budget: super::budget::ActionBudget::new(cfg.max_actions_per_minute),
            cfg,
            protect,
            taken: HashSet::new(),
            reports,
        }
    }

    fn isolator(&mut self) -> Result<&mut Isolator, RespondError> {
        self.isolator
            .as_mut()
            .map_err(|why| RespondError::Unavailable(format!("network isolation: {why}")))
    }

    fn report(
        &self,
        target: (u32, u64),
        action: &'static str,
        who: &Requester,
        result: &Result<Outcome, RespondError>,
        dry_run: bool,
    ) {
        let (outcome, pids, error) = match result {
            Ok(_) if dry_run => ("would", vec![target], None),
            Ok(o) => ("done", o.targets.clone(), None),
            Err(e @ (RespondError::Kernel(_) | RespondError::Unavailable(_))) => {
                ("failed", vec![], Some(e.to_string()))
            }
            Err(e) => ("refused", vec![], Some(e.to_string())),
        };
        info!(action, outcome, pid = target.0, by = %who.by, why = %who.why, "action");
        let _ = self.reports.send(Report {
            target,
            detail: Detail::Action {
                action,
                outcome,
                by: who.by.clone(),
                why: who.why.clone(),
                pids,
                error,
                finding_seq: who.finding_seq,
                hold_id: who.hold_id,
            },
        });
    }

    pub fn isolate(
        &mut self,
        pid: u32,
        start: Option<u64>,
        opts: &Options,
        who: &Requester,
    ) -> Result<Outcome, RespondError> {
        let protect = self.protect.clone();
        let result = self.isolator().and_then(|iso| {
            let (targets, skipped) = iso.isolate(
                pid,
                start,
                opts,
                Note {
                    why: who.why.clone(),
                    by: who.by.clone(),
                },
                &protect,
            )?;
            Ok(Outcome {
                targets,
                skipped: skipped_lines(skipped),
            })
        });
        let action = if opts.tree { "isolate_tree" } else { "isolate" };
        self.report((pid, start.unwrap_or(0)), action, who, &result, false);
        result
    }

    pub fn release(&mut self, pid: u32, who: &Requester) -> Result<Outcome, RespondError> {
        let result = self.isolator().and_then(|iso| {
            let start = super::start_ticks(pid).unwrap_or(0);
            Ok(Outcome {
                targets: iso
                    .release(pid)?
                    .into_iter()
                    .map(|p| (p, if p == pid { start } else { 0 }))
                    .collect(),
                skipped: vec![],
            })
        });
        self.report((pid, 0), "release", who, &result, false);
        result
    }

    pub fn kill(
        &mut self,
        pid: u32,
        start: Option<u64>,
        tree: bool,
        who: &Requester,
    ) -> Result<Outcome, RespondError> {
        let result = kill::kill(
            &kill::Target {
                pid,
                start_time: start,
            },
            tree,
            &self.protect,
        )
        .map(|k| Outcome {
            targets: k.pids,
            skipped: skipped_lines(k.skipped),
        });
        let action = if tree { "kill_tree" } else { "kill" };
        self.report((pid, start.unwrap_or(0)), action, who, &result, false);
        result
    }

    pub fn list(&self) -> Result<Vec<Isolated>, RespondError> {
        match &self.isolator {
            Ok(i) => Ok(i.list()),
            Err(why) => Err(RespondError::Unavailable(format!(
                "network isolation: {why}"
            ))),
        }
    }

    /// Periodic upkeep: forget isolations of processes that are gone.
    pub fn reconcile(&mut self) {
        if let Ok(i) = &mut self.isolator {
            i.reconcile();
        }
    }

    /// The kernel matched an armed pattern: a deny is reported as done; a
    /// hold becomes pending (returned as a `held` event) unless the
    /// request's host is not the one the pattern holds, in which case the
    /// process goes on at once.
    pub fn on_blocked(
        &mut self,
        b: &BlockedRecord,
        process: &Process,
        context: HoldContext,
    ) -> Option<Detail> {
        if b.action == u32::from(ARM_HOLD_TLS) {
            return self.hold_connection(b, process, context);
        }
        let m = self.armer.matched(b.header.tgid, b.rule);
        if b.action != u32::from(ARM_HOLD) {
            warn!(pid = b.header.tgid, agent = %m.agent, pattern = %m.pattern.text, "armed agent killed before its request left");
            return Some(Detail::Blocked {
                agent: m.agent,
                pattern: m.pattern.text,
                connection: format!("{:#x}", b.conn),
                killed: b.signal_result == 0,
            });
        }
        let pid = b.header.tgid;
        let request = match hold::read_request(pid, b.buf, b.len) {
            Ok(bytes) if m.pattern.is_statement() => match hold::parse_statement(&bytes) {
                Some(r) => r,
                None => {
                    let why = format!("the write held by {:?} is not a statement", m.pattern.text);
                    self.resume_held(pid, process.start_ticks, why);
                    return None;
                }
            },
            Ok(bytes) => hold::parse_request(&bytes),
            Err(e) => hold::Request {
                head: format!("(the request could not be read from the process: {e})"),
                ..Default::default()
            },
        };
        let (m, request) = if m.pattern.absolute_form {
            let target = request
                .request_line
                .trim_end()
                .split_once(' ')
                .map_or("", |(_, t)| t)
                .to_string();
            let patterns = self.armer.patterns_of(pid);
            match arm::match_absolute(&patterns, &request.method, &target) {
                // An approval, or a request no pattern stops.
                None => {
                    let why = "a request in absolute form that no pattern stops".to_string();
                    self.resume_held(pid, process.start_ticks, why);
                    return None;
                }
                Some((p, _)) if p.action == ARM_ALLOW => {
                    let why = format!("a request in absolute form approved by {:?}", p.text);
                    self.resume_held(pid, process.start_ticks, why);
                    return None;
                }
                Some((p, _)) if p.action != ARM_HOLD => {
                    warn!(pid, agent = %m.agent, pattern = %p.text, "armed agent killed before its request (in absolute form) left");
                    let killed = kill::kill(
                        &kill::Target {
                            pid,
                            start_time: Some(process.start_ticks),
                        },
                        false,
                        &self.protect,
                    )
                    .is_ok();
                    return Some(Detail::Blocked {
                        agent: m.agent,
                        pattern: p.text.clone(),
                        connection: format!("{:#x}", b.conn),
                        killed,
                    });
                }
                Some((p, host)) => {
                    let mut request = request;
                    // The server takes the host from the target, not the
                    // Host header (RFC 9112 §3.2.2).
                    request.authority = host;
                    let m = arm::Matched {
                        pattern: p.clone(),
                        ..m
                    };
                    (m, request)
                }
            }
        } else {
            (m, request)
        };
        let hold = Hold {
            id: 0,
            pid,
            start_ticks: process.start_ticks,
            agent: m.agent.clone(),
            agent_id: m.agent_id.clone(),
            pattern: m.pattern.text.clone(),
            request,
            since: Instant::now(),
            since_unix_ns: crate::clock::Clock::new().to_unix_ns(b.header.ktime_ns),
        };
        if let Some(want) = &m.pattern.authority
            && !hold.request.authority.is_empty()
            && !host_matches(want, &hold.request.authority)
        {
            let why = format!(
                "host {} is not held by {:?}",
                hold.request.authority, m.pattern.text
            );
            self.resume_held(pid, hold.start_ticks, why);
            return None;
        }
        self.pend(hold, b.signal_result == 0, context, "request")
    }

    /// A process the kernel stopped for a hold that does not apply goes
    /// on at once (reported as the policy's approval).
    fn resume_held(&mut self, pid: u32, start_ticks: u64, why: String) {
        let who = Requester {
            by: "policy".into(),
            why,
            finding_seq: None,
            hold_id: None,
        };
        let result = kill::resume(&kill::Target {
            pid,
            start_time: Some(start_ticks),
        })
        .map(|t| Outcome {
            targets: vec![(pid, t)],
            skipped: vec![],
        });
        self.report((pid, start_ticks), "approve", &who, &result, false);
    }

    /// A held agent's process stopped at the first bytes of a new TLS
    /// connection (its TLS library is not hooked): held if the SNI names a
    /// held host, otherwise resumed at once.
    fn hold_connection(
        &mut self,
        b: &BlockedRecord,
        process: &Process,
        context: HoldContext,
    ) -> Option<Detail> {
        let pid = b.header.tgid;
        let hosts = self.armer.held_hosts(pid);
        let held = match context.sni.as_deref().filter(|s| !s.is_empty()) {
            Some(sni) => hosts.into_iter().find(|(host, _)| host_matches(host, sni)),
            // No server name (a client that reaches an address, or leaves
            // it out): the host cannot be told, so the connection is held
            // as if it were a held host (fail closed) for a person to look.
            None => hosts.into_iter().next(),
        };
        let Some((_, pattern)) = held else {
            self.resume(process);
            return None;
        };
        let sni = context.sni.clone().unwrap_or_default();
        let named = if sni.is_empty() {
            "a server that was not named (no SNI: its host cannot be told, so it is held as a held host would be)".to_string()
        } else {
            sni.clone()
        };
        let (agent, agent_id) = self.armer.agent_of(pid);
        let hold = Hold {
            id: 0,
            pid,
            start_ticks: process.start_ticks,
            agent,
            agent_id,
            pattern,
            request: hold::Request {
                authority: sni.clone(),
                head: format!(
                    "TLS connection to {named} ({}): this client's TLS library is not hooked, so its requests cannot be seen; held at the connection, before any request is sent (coarser than a request hold: approving lets the whole connection through)",
                    context.destination.as_deref().unwrap_or("?")
                ),
                ..Default::default()
            },
            since: Instant::now(),
            since_unix_ns: crate::clock::Clock::new().to_unix_ns(b.header.ktime_ns),
        };
        self.pend(hold, b.signal_result == 0, context, "connection")
    }

    /// Registers a hold on a stopped process and describes it.
    fn pend(
        &mut self,
        hold: Hold,
        stopped: bool,
        context: HoldContext,
        level: &'static str,
    ) -> Option<Detail> {
        let pid = hold.pid;
        let timeout = self.cfg.hold_timeout_secs;
        let on_timeout = match self.cfg.hold_expiry {
            HoldExpiry::Deny => "deny",
            HoldExpiry::Approve => "approve",
        };
        let mut detail = Detail::Held {
            hold_id: 0,
            agent: hold.agent.clone(),
            pattern: hold.pattern.clone(),
            method: hold.request.method.clone(),
            authority: hold.request.authority.clone(),
            path: hold.request.path.clone(),
            head: hold.request.head.clone(),
            tool_call: context.tool_call,
            trail: context.trail,
            timeout_secs: timeout,
            on_timeout,
            stopped,
            level,
        };
        if !stopped {
            warn!(
                pid,
                "the kernel could not stop the process for a hold; its request went on"
            );
            return Some(detail);
        }
        let id = self.holds.add(hold);
        if let Detail::Held { hold_id, .. } = &mut detail {
            *hold_id = id;
        }
        warn!(
            pid,
            hold = id,
            "agent held at an irreversible request: sensor approve {id} | sensor deny {id}"
        );
        Some(detail)
    }

    /// The pending hold `id` and the requester naming it; a hold that is
    /// not pending is reported as refused.
    fn take_hold(
        &mut self,
        id: u64,
        action: &'static str,
        who: &Requester,
    ) -> Result<(Hold, Requester), RespondError> {
        let who = Requester {
            hold_id: Some(id),
            ..who.clone()
        };
        match self.holds.take(id) {
            Some(h) => Ok((h, who)),
            None => {
                let refused = Err(RespondError::NoSuchHold(id));
                self.report((0, 0), action, &who, &refused, false);
                Err(RespondError::NoSuchHold(id))
            }
        }
    }

    /// Keeps the pending holds in `path` from now on, and takes up those a
    /// previous daemon left there (it crashed or was killed while they
    /// waited): each whose process is still the one it stopped (same start
    /// time, still stopped) is pending again, answered as before, its
    /// timeout counted from when it was held; the others are reported
    /// cleared. Returns how many are pending again.
    pub fn keep_holds_in(&mut self, path: std::path::PathBuf) -> anyhow::Result<usize> {
        let (holds, before) = Holds::kept_in(path)?;
        self.holds = holds;
        let mut taken_up = 0;
        for h in before {
            let same = super::start_ticks(h.pid) == Some(h.start_ticks);
            match super::process_state(h.pid) {
                Some('T' | 't') if same => {
                    warn!(
                        pid = h.pid,
                        hold = h.id,
                        "a hold left by the previous run of the sensor is pending again: sensor approve {0} | sensor deny {0}",
                        h.id
                    );
                    let who = Requester {
                        by: "sensor".into(),
                        why: "held before the sensor restarted; still stopped, still pending".into(),
                        finding_seq: None,
                        hold_id: Some(h.id),
                    };
                    let target = (h.pid, h.start_ticks);
                    self.holds.restore(h);
                    let outcome = Ok(Outcome {
                        targets: vec![target],
                        skipped: vec![],
                    });
                    self.report(target, "hold_taken_up", &who, &outcome, false);
                    taken_up += 1;
                }
                _ if !same => self.cleared(
                    &h,
                    "the held process exited while the sensor was not running",
                ),
                _ => self.cleared(
                    &h,
                    "the held process was continued while the sensor was not running (its request went on)",
                ),
            }
        }
        self.holds.save();
        Ok(taken_up)
    }

    /// Continues a process the kernel stopped that is not to be held.
    pub fn resume(&self, process: &Process) {
        if let Err(e) = kill::resume(&kill::Target {
            pid: process.pid,
            start_time: Some(process.start_ticks),
        }) {
            warn!(pid = process.pid, error = %e, "could not resume a stopped process");
        }
    }

    pub fn holds(&self) -> Vec<Hold> {
        self.holds.list().cloned().collect()
    }

    /// Resumes a held process: the request it was about to send goes on.
    /// With `remember`, the same request line is let through from now on.
    pub fn approve(
        &mut self,
        id: u64,
        remember: bool,
        who: &Requester,
    ) -> Result<Outcome, RespondError> {
        let (h, who) = self.take_hold(id, "approve", who)?;
        let mut skipped = Vec::new();
        if remember && h.request.request_line.is_empty() {
            skipped.push(
                "not remembered: only an HTTP request line can be (a connection or statement hold has none, nor a hold taken up after a restart)"
                    .into(),
            );
        } else if remember && let Err(e) = self.armer.remember(&h.agent_id, &h.request.request_line)
        {
            skipped.push(format!("not remembered: {e}"));
        }
        let result = kill::resume(&kill::Target {
            pid: h.pid,
            start_time: Some(h.start_ticks),
        })
        .map(|t| Outcome {
            targets: vec![(h.pid, t)],
            skipped,
        });
        let action = if remember {
            "approve_remember"
        } else {
            "approve"
        };
        self.report((h.pid, h.start_ticks), action, &who, &result, false);
        result
    }

    /// Refuses a held request: the process is killed (pid-safe), or with
    /// `isolate` cut off the network (its connections aborted) and then
    /// resumed, so the request fails and the agent can carry on offline.
    pub fn deny(
        &mut self,
        id: u64,
        isolate: bool,
        who: &Requester,
    ) -> Result<Outcome, RespondError> {
        let (h, who) = self.take_hold(id, "deny", who)?;
        let target = kill::Target {
            pid: h.pid,
            start_time: Some(h.start_ticks),
        };
        let result = if isolate {
            let note = Note {
                why: who.why.clone(),
                by: who.by.clone(),
            };
            let opts = Options {
                tree: true,
                ..Default::default()
            };
            let protect = self.protect.clone();
            self.isolator()
                .and_then(|iso| iso.isolate(h.pid, Some(h.start_ticks), &opts, note, &protect))
                .and_then(|(targets, skipped)| {
                    kill::resume(&target)?;
                    Ok(Outcome {
                        targets,
                        skipped: skipped_lines(skipped),
                    })
                })
        } else {
            kill::kill(&target, false, &self.protect).map(|k| Outcome {
                targets: k.pids,
                skipped: vec![],
            })
        };
        let action = if isolate { "deny_isolate" } else { "deny" };
        self.report((h.pid, h.start_ticks), action, &who, &result, false);
        result
    }

    /// Periodic: holds nobody answered in time are decided by policy, and
    /// holds whose process was continued by someone else (SIGCONT from
    /// outside the sensor: its request went on) are cleared, so a late
    /// denial cannot kill a process that already carried on.
    pub fn expire_holds(&mut self) {
        // A hold younger than a second may belong to a process the signal
        // has not reached yet.
        let ids: Vec<(u64, u32)> = self
            .holds
            .list()
            .filter(|h| h.since.elapsed() > Duration::from_secs(1))
            .map(|h| (h.id, h.pid))
            .collect();
        for (id, pid) in ids {
            if super::process_state(pid).is_some_and(|s| s != 'T' && s != 't')
                && let Some(h) = self.holds.take(id)
            {
                self.cleared(
                    &h,
                    "the held process was continued outside the sensor (its request went on)",
                );
            }
        }
        let timeout = Duration::from_secs(self.cfg.hold_timeout_secs);
        for h in self.holds.expired(timeout) {
            let why = format!("no decision within {} s", self.cfg.hold_timeout_secs);
            self.decide_by_policy(h, why);
        }
    }

    fn decide_by_policy(&mut self, h: Hold, why: String) {
        let id = h.id;
        // Put back, so the decision goes through the usual path.
        self.holds.restore(h);
        let who = Requester {
            by: "policy".into(),
            why,
            finding_seq: None,
            hold_id: Some(id),
        };
        let _ = match self.cfg.hold_expiry {
            HoldExpiry::Deny => self.deny(id, false, &who),
            HoldExpiry::Approve => self.approve(id, false, &who),
        };
    }

    fn cleared(&self, h: &Hold, why: &str) {
        let who = Requester {
            by: "kernel".into(),
            why: why.into(),
            finding_seq: None,
            hold_id: Some(h.id),
        };
        self.report(
            (h.pid, h.start_ticks),
            "hold_cleared",
            &who,
            &Ok(Outcome::default()),
            false,
        );
    }

    /// A process exited: its holds are moot.
    pub fn on_exit(&mut self, pid: u32) {
        self.armer.on_exit(pid);
        for h in self.holds.of_exited(pid) {
            self.cleared(&h, "the held process exited before a decision");
        }
    }

    /// At a clean stop. Pending holds are decided as if they had expired:
    /// without the daemon nobody could answer them, and a process left
    /// stopped forever is a hung agent.
    pub fn stop(&mut self) {
        let pending: Vec<u64> = self.holds.list().map(|h| h.id).collect();
        for id in pending {
            if let Some(h) = self.holds.take(id) {
                self.decide_by_policy(h, "the sensor is stopping".into());
            }
        }
        super::isolate::on_clean_stop(self.isolator.as_mut().ok());
    }

    /// The automatic response: the policy file's response for the finding
    /// when it names one, else the first `response.rules` entry matching
    /// it. The agent's mode, carried by the finding, decides: `enforce`
    /// acts, `monitor` and `learn` only report what would be done.
    pub fn on_finding(&mut self, finding: &Event) {
        let Detail::Finding {
            rule,
            severity,
            mode,
            policy,
            response,
            ..
        } = &finding.detail
        else {
            return;
        };
        let Some(agent) = &finding.agent else {
            return;
        };
        let severity = Severity::parse(severity).unwrap_or(Severity::Low);
        let (action, because) = match response.and_then(ResponseAction::parse) {
            Some(a) => (
                a,
                format!(
                    "policy {:?} → {}",
                    policy.as_deref().unwrap_or(""),
                    a.name()
                ),
            ),
            None => {
                let Some(matched) = self.cfg.rules.iter().find(|r| {
                    (r.rule == "*" || r.rule == *rule)
                        && severity >= r.min_severity
                        && (r.agent == "*" || r.agent == agent.name || r.agent == agent.id)
                }) else {
                    return;
                };
                (
                    matched.action,
                    format!(
                        "rule: {} ≥ {:?} → {}",
                        matched.rule,
                        matched.min_severity,
                        matched.action.name()
                    ),
                )
            }
        };
        if action == ResponseAction::Alert {
            return; // the finding itself is the alert
        }
        if !self.taken.insert((agent.session.clone(), action.name())) {
            return;
        }
        let mode = if *mode == "enforce" {
            ResponseMode::Enforce
        } else {
            ResponseMode::Monitor
        };
        // The session's root is the process to act on: the agent, not
        // whichever of its tools made the call.
        let (root, root_start) = agent.key;
        let who = Requester {
            by: "policy".into(),
            why: format!(
                "{severity:?} finding {rule} on agent {} ({because})",
                agent.name,
            )
            .to_lowercase(),
            finding_seq: Some(finding.seq),
            hold_id: None,
        };
        if mode == ResponseMode::Monitor {
            self.report(
                (root, root_start),
                action.name(),
                &who,
                &Ok(Outcome::default()),
                true,
            );
            return;
        }
        if !self
            .budget
            .take(&agent.id, finding.process.uid, Instant::now())
        {
            warn!(
                limit = self.cfg.max_actions_per_minute,
                agent = %agent.name,
                uid = finding.process.uid,
                "automatic response rate limit reached for this agent and user; action not taken"
            );
            self.report(
                (root, root_start),
                action.name(),
                &who,
                &Err(RespondError::Invalid(format!(
                    "rate limit: more than {} automatic actions in a minute on agent {} run by uid {}",
                    self.cfg.max_actions_per_minute, agent.name, finding.process.uid
                ))),
                false,
            );
            return;
        }
        let _ = match action {
            ResponseAction::Isolate | ResponseAction::IsolateTree => self.isolate(
                root,
                Some(root_start),
                &Options {
                    tree: action == ResponseAction::IsolateTree,
                    ..Default::default()
                },
                &who,
            ),
            ResponseAction::Kill | ResponseAction::KillTree => self.kill(
                root,
                Some(root_start),
                action == ResponseAction::KillTree,
                &who,
            ),
            ResponseAction::Alert => return,
        };
    }
}

/// Processes an action left alone, as its report says them.
fn skipped_lines(skipped: Vec<(u32, String)>) -> Vec<String> {
    skipped
        .into_iter()
        .map(|(p, why)| format!("{p}: {why}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_with_or_without_a_port() {
        assert!(host_matches("vendor.example", "Vendor.example:443"));
        assert!(host_matches("vendor.example", "vendor.example"));
        assert!(host_matches("127.0.0.1", "127.0.0.1:8443"));
        assert!(host_matches("[::1]", "[::1]:443"));
        assert!(host_matches("vendor.example:8443", "vendor.example:8443"));
        assert!(!host_matches("vendor.example:8443", "vendor.example:443"));
        assert!(!host_matches("vendor.example", "evil.vendor.example"));
        // Issue 19, finding 5: the same host written another way.
        assert!(host_matches("vendor.example", "vendor.example."));
        assert!(host_matches("vendor.example", "VENDOR.example.:443"));
        assert!(host_matches("vendor.example:8443", "vendor.example.:8443"));
        assert!(host_matches("Vendor.Example", " vendor.example"));
        assert!(!host_matches("vendor.example", "vendor.example.evil"));
    }
}
