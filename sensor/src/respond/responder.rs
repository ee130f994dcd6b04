//! The one place actions are taken: operator commands (API, CLI) and the
//! automatic response policy both come through here, and every attempt,
//! whatever its outcome, is reported as an `action` event.

use std::{
    collections::{HashSet, VecDeque},
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    RespondError,
    isolate::{Isolated, Isolator, Note, Options},
    kill,
};
use crate::{
    config::{ResponseAction, ResponseConfig, ResponseMode, Severity},
    event::{Detail, Event},
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
}

pub struct Responder {
    isolator: Result<Isolator, String>,
    cfg: ResponseConfig,
    protect: kill::Protect,
    /// (session, action) already taken automatically: once is enough.
    taken: HashSet<(String, &'static str)>,
    recent: VecDeque<Instant>,
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
        cfg: ResponseConfig,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Self {
        let protect = kill::Protect {
            exes: cfg.protect.clone(),
        };
        Self {
            isolator,
            cfg,
            protect,
            taken: HashSet::new(),
            recent: VecDeque::new(),
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
            if let Some(why) = protect.why(pid) {
                return Err(RespondError::Protected { pid, why });
            }
            let targets = iso.isolate(
                pid,
                start,
                opts,
                Note {
                    why: who.why.clone(),
                    by: who.by.clone(),
                },
            )?;
            Ok(Outcome {
                targets,
                skipped: vec![],
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
            skipped: k
                .skipped
                .into_iter()
                .map(|(p, why)| format!("{p}: {why}"))
                .collect(),
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

    /// At a clean stop.
    pub fn stop(&mut self) {
        super::isolate::on_clean_stop(self.isolator.as_mut().ok());
    }

    /// The automatic response: the first policy rule matching `finding`
    /// decides; in monitor mode the action is only reported.
    pub fn on_finding(&mut self, finding: &Event) {
        let Detail::Finding { rule, severity, .. } = &finding.detail else {
            return;
        };
        let Some(agent) = &finding.agent else {
            return;
        };
        let severity = Severity::parse(severity).unwrap_or(Severity::Low);
        let Some(matched) = self.cfg.rules.iter().find(|r| {
            (r.rule == "*" || r.rule == *rule)
                && severity >= r.min_severity
                && (r.agent == "*" || r.agent == agent.name || r.agent == agent.id)
        }) else {
            return;
        };
        let action = matched.action;
        if action == ResponseAction::Alert {
            return; // the finding itself is the alert
        }
        if !self.taken.insert((agent.session.clone(), action.name())) {
            return;
        }
        let mode = self
            .cfg
            .agents
            .get(&agent.name)
            .or_else(|| self.cfg.agents.get(&agent.id))
            .copied()
            .unwrap_or(self.cfg.mode);
        // The session's root is the process to act on: the agent, not
        // whichever of its tools made the call.
        let (root, root_start) = session_root(&agent.session)
            .unwrap_or((finding.process.pid, finding.process.start_ticks));
        let who = Requester {
            by: "policy".into(),
            why: format!(
                "{severity:?} finding {rule} on agent {} (rule: {} ≥ {:?} → {})",
                agent.name,
                matched.rule,
                matched.min_severity,
                action.name()
            )
            .to_lowercase(),
            finding_seq: Some(finding.seq),
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
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.cfg.max_actions_per_minute as usize {
            warn!(
                limit = self.cfg.max_actions_per_minute,
                "automatic response rate limit reached; action not taken"
            );
            self.report(
                (root, root_start),
                action.name(),
                &who,
                &Err(RespondError::Invalid(format!(
                    "rate limit: more than {} automatic actions in a minute",
                    self.cfg.max_actions_per_minute
                ))),
                false,
            );
            return;
        }
        self.recent.push_back(now);
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

/// A session id is "pid-start_ticks" of the agent's root process.
fn session_root(session: &str) -> Option<(u32, u64)> {
    let (p, t) = session.split_once('-')?;
    Some((p.parse().ok()?, t.parse().ok()?))
}
