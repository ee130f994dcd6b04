//! `sensor.v1.Response`: isolate, release, kill, list isolated.
//!
//! These act on the host: `control` decides who may (the unix socket, and
//! on TCP the clients `api.tcp` allows). Every call, whatever its outcome,
//! is an `action` event naming who asked.

use std::sync::{Arc, Mutex};

use sensor_proto::{pbjson_types::Timestamp, v1 as pb};
use tonic::{Code, Request, Response, Status};

use super::control::Control;
use crate::respond::{
    RespondError,
    isolate::{Net, Options},
    responder::{Outcome, Requester, Responder},
};

pub struct ResponseService {
    pub responder: Arc<Mutex<Responder>>,
    /// Who may act through this listener.
    pub control: Control,
}

fn status(e: RespondError) -> Status {
    let code = match &e {
        RespondError::NoSuchProcess(_)
        | RespondError::NotIsolated(_)
        | RespondError::NoSuchHold(_) => Code::NotFound,
        RespondError::Reused { .. } => Code::FailedPrecondition,
        RespondError::Protected { .. } => Code::PermissionDenied,
        RespondError::AlreadyIsolated(_) => Code::AlreadyExists,
        RespondError::Invalid(_) => Code::InvalidArgument,
        RespondError::Unavailable(_) => Code::Unavailable,
        RespondError::Kernel(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}

fn result(o: Outcome) -> pb::ActionResult {
    pb::ActionResult {
        targets: o
            .targets
            .into_iter()
            .map(|(pid, start_ticks)| pb::ProcessRef { pid, start_ticks })
            .collect(),
        skipped: o.skipped,
    }
}

impl ResponseService {
    /// Who asked, for the audit trail; refuses `rpc` where control is not
    /// allowed.
    fn requester<T>(&self, req: &Request<T>, rpc: &str, why: &str) -> Result<Requester, Status> {
        let by = self.control.authorize(req, rpc)?;
        Ok(Requester {
            by,
            why: if why.is_empty() {
                "no reason given".into()
            } else {
                why.into()
            },
            finding_seq: None,
            hold_id: None,
        })
    }

    fn responder(&self) -> std::sync::MutexGuard<'_, Responder> {
        self.responder.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[tonic::async_trait]
impl pb::response_server::Response for ResponseService {
    async fn isolate(
        &self,
        req: Request<pb::IsolateRequest>,
    ) -> Result<Response<pb::ActionResult>, Status> {
        let who = self.requester(&req, "isolate", &req.get_ref().why)?;
        let r = req.into_inner();
        let allow = r
            .allow
            .iter()
            .map(|a| a.parse::<Net>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(Status::invalid_argument)?;
        let opts = Options {
            tree: r.tree,
            allow_loopback: r.allow_loopback,
            allow,
        };
        let out = self
            .responder()
            .isolate(r.pid, r.start_ticks, &opts, &who)
            .map_err(status)?;
        Ok(Response::new(result(out)))
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ActionResult>, Status> {
        let who = self.requester(&req, "release", &req.get_ref().why)?;
        let pid = req.get_ref().pid;
        let out = self.responder().release(pid, &who).map_err(status)?;
        Ok(Response::new(result(out)))
    }

    async fn kill(
        &self,
        req: Request<pb::KillRequest>,
    ) -> Result<Response<pb::ActionResult>, Status> {
        let who = self.requester(&req, "kill", &req.get_ref().why)?;
        let r = req.into_inner();
        let out = self
            .responder()
            .kill(r.pid, r.start_ticks, r.tree, &who)
            .map_err(status)?;
        Ok(Response::new(result(out)))
    }

    async fn approve(
        &self,
        req: Request<pb::HoldDecision>,
    ) -> Result<Response<pb::ActionResult>, Status> {
        let who = self.requester(&req, "approve", &req.get_ref().why)?;
        let r = req.into_inner();
        let out = self
            .responder()
            .approve(r.hold_id, r.remember, &who)
            .map_err(status)?;
        Ok(Response::new(result(out)))
    }

    async fn deny(
        &self,
        req: Request<pb::HoldDecision>,
    ) -> Result<Response<pb::ActionResult>, Status> {
        let who = self.requester(&req, "deny", &req.get_ref().why)?;
        let r = req.into_inner();
        let out = self
            .responder()
            .deny(r.hold_id, r.isolate, &who)
            .map_err(status)?;
        Ok(Response::new(result(out)))
    }

    async fn list_holds(
        &self,
        _: Request<pb::ListHoldsRequest>,
    ) -> Result<Response<pb::ListHoldsResponse>, Status> {
        let holds = self.responder().holds();
        Ok(Response::new(pb::ListHoldsResponse {
            holds: holds
                .into_iter()
                .map(|h| pb::PendingHold {
                    hold_id: h.id,
                    process: Some(pb::ProcessRef {
                        pid: h.pid,
                        start_ticks: h.start_ticks,
                    }),
                    agent: h.agent,
                    pattern: h.pattern,
                    method: h.request.method,
                    authority: h.request.authority,
                    path: h.request.path,
                    head: h.request.head,
                    since: Some(Timestamp {
                        seconds: (h.since_unix_ns / 1_000_000_000) as i64,
                        nanos: (h.since_unix_ns % 1_000_000_000) as i32,
                    }),
                    age_secs: h.since.elapsed().as_secs_f64(),
                })
                .collect(),
        }))
    }

    async fn list_isolated(
        &self,
        _: Request<pb::ListIsolatedRequest>,
    ) -> Result<Response<pb::ListIsolatedResponse>, Status> {
        let list = self.responder().list().map_err(status)?;
        Ok(Response::new(pb::ListIsolatedResponse {
            processes: list
                .into_iter()
                .map(|i| pb::IsolatedProcess {
                    process: Some(pb::ProcessRef {
                        pid: i.pid,
                        start_ticks: i.start_ticks,
                    }),
                    since: Some(Timestamp {
                        seconds: i.since_unix as i64,
                        nanos: (i.since_unix.fract() * 1e9) as i32,
                    }),
                    why: i.note.why,
                    by: i.note.by,
                    parent: i.parent,
                    allow_loopback: i.options.allow_loopback,
                    allow: i.options.allow.iter().map(|n| n.to_string()).collect(),
                    exe: std::fs::read_link(format!("/proc/{}/exe", i.pid))
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                })
                .collect(),
        }))
    }
}
