//! `sensor.v1.Baselines`: what each agent identity learned (and what was
//! imported for it), as checked now; export and import across nodes.

use std::sync::{Arc, Mutex};

use sensor_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::control::Control;
use crate::agents::{Agents, baseline::BaselineFile};

pub struct BaselinesService {
    pub agents: Arc<Mutex<Agents>>,
    /// Who may import through this listener.
    pub control: Control,
}

impl BaselinesService {
    fn table(&self) -> std::sync::MutexGuard<'_, Agents> {
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One agent's baseline message: `id`'s own and imported, merged as the
/// detector checks them.
fn baseline(t: &Agents, id: &str) -> pb::Baseline {
    let d = &t.detector;
    let b = d.effective(id);
    let mut transitions: Vec<pb::Transition> = b
        .transitions
        .iter()
        .map(|(k, count)| {
            let (from, to) = k.split_once(" -> ").unwrap_or((k.as_str(), ""));
            pb::Transition {
                from_endpoint: from.into(),
                to_endpoint: to.into(),
                count: *count,
            }
        })
        .collect();
    transitions.sort_by_key(|t| std::cmp::Reverse(t.count));
    pb::Baseline {
        agent_id: id.to_string(),
        agent_name: t.get(id).map(|i| i.name.clone()).unwrap_or_default(),
        learning: d.learning(id),
        sessions: b.sessions,
        learn_sessions: d.tuning().learn_sessions,
        calls: b.calls,
        endpoints: super::agents::endpoints(&b.endpoints),
        transitions,
        credentials: b.credentials.iter().cloned().collect(),
        destinations: b.destinations.iter().cloned().collect(),
        local_sessions: d.baselines.get(id).map_or(0, |b| b.sessions),
        imported_sessions: d.imported.get(id).map_or(0, |b| b.sessions),
        mode: t.mode_of(id).name().into(),
        mode_why: t.mode_reason(id),
        peak_calls_high: crate::agents::baseline::high(&b.peak_calls).unwrap_or(0),
        peak_bytes_high: crate::agents::baseline::high(&b.peak_bytes).unwrap_or(0),
        peak_calls: b.peak_calls,
        peak_bytes: b.peak_bytes,
    }
}

#[tonic::async_trait]
impl pb::baselines_server::Baselines for BaselinesService {
    async fn get(
        &self,
        req: Request<pb::GetBaselineRequest>,
    ) -> Result<Response<pb::Baseline>, Status> {
        let name = req.into_inner().agent;
        let t = self.table();
        // An agent only imported here has a baseline but no inventory
        // entry yet: its id is enough.
        let known =
            t.detector.baselines.contains_key(&name) || t.detector.imported.contains_key(&name);
        let id = if known {
            name
        } else {
            super::agents::find(&t, &name)?.id.clone()
        };
        Ok(Response::new(baseline(&t, &id)))
    }

    async fn export(
        &self,
        req: Request<pb::ExportBaselinesRequest>,
    ) -> Result<Response<pb::BaselineFile>, Status> {
        let node = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = self
            .table()
            .export_baselines(&node, &req.into_inner().agents)
            .map_err(Status::not_found)?;
        let json = serde_json::to_vec_pretty(&file).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::BaselineFile { json }))
    }

    async fn import(
        &self,
        req: Request<pb::BaselineFile>,
    ) -> Result<Response<pb::ImportBaselinesResponse>, Status> {
        let by = self.control.authorize(&req, "baseline import")?;
        let file = BaselineFile::parse(&req.into_inner().json)
            .map_err(|e| Status::invalid_argument(format!("not a baseline file: {e}")))?;
        let agents = self
            .table()
            .import_baselines(&file, true)
            .map_err(|e| Status::internal(format!("{e:#}")))?;
        tracing::info!(agents, nodes = ?file.nodes, by, "baselines imported");
        Ok(Response::new(pb::ImportBaselinesResponse {
            agents: agents as u32,
            nodes: file.nodes,
        }))
    }

    async fn set_mode(
        &self,
        req: Request<pb::SetModeRequest>,
    ) -> Result<Response<pb::SetModeResponse>, Status> {
        let by = self.control.authorize(&req, "set mode")?;
        let r = req.into_inner();
        let mode = match r.mode.as_str() {
            "auto" => None,
            m => Some(crate::agents::mode::Mode::parse(m).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "mode {m:?} is not one of learn, monitor, enforce, auto"
                ))
            })?),
        };
        let who = if r.why.trim().is_empty() {
            by.clone()
        } else {
            format!("{by}: {}", r.why.trim())
        };
        let mut t = self.table();
        let id = t
            .set_mode(&r.agent, mode, &who)
            .map_err(Status::not_found)?;
        let now = t.mode_of(&id);
        let why = t.mode_reason(&id);
        tracing::info!(agent = %id, mode = now.name(), by = %who, "agent mode set");
        Ok(Response::new(pb::SetModeResponse {
            agent_id: id,
            mode: now.name().into(),
            why,
        }))
    }
}
