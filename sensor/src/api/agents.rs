//! `sensor.v1.Agents`: the inventory of agent identities and each one's
//! blast radius.

use std::sync::{Arc, Mutex};

use sensor_proto::{pbjson_types::Timestamp, v1 as pb};
use tonic::{Request, Response, Status};

use crate::agents::{Agents, Inventory, baseline::BaselineFile};

pub struct AgentsService {
    pub agents: Arc<Mutex<Agents>>,
    /// Whether control (importing baselines) is allowed on this listener.
    pub control: bool,
}

fn time(ns: u64) -> Option<Timestamp> {
    (ns > 0).then_some(Timestamp {
        seconds: (ns / 1_000_000_000) as i64,
        nanos: (ns % 1_000_000_000) as i32,
    })
}

fn endpoints(m: &std::collections::BTreeMap<String, u64>) -> Vec<pb::Endpoint> {
    let mut v: Vec<pb::Endpoint> = m
        .iter()
        .map(|(k, calls)| {
            let mut parts = k.splitn(3, ' ');
            pb::Endpoint {
                method: parts.next().unwrap_or_default().into(),
                authority: parts.next().unwrap_or_default().into(),
                path_template: parts.next().unwrap_or_default().into(),
                calls: *calls,
            }
        })
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.calls));
    v
}

pub fn agent(i: &Inventory) -> pb::Agent {
    pb::Agent {
        id: i.id.clone(),
        name: i.name.clone(),
        exe: i.exe.clone(),
        cmdline: i.cmdline.clone(),
        first_seen: time(i.first_seen_ns),
        last_seen: time(i.last_seen_ns),
        providers: i.providers.iter().cloned().collect(),
        credentials: i.credentials.iter().cloned().collect(),
        endpoints: endpoints(&i.endpoints),
        irreversible: endpoints(&i.irreversible),
        destinations: i.destinations.iter().cloned().collect(),
        sessions: i.sessions,
        recent_sessions: i.recent_sessions.iter().cloned().collect(),
        calls: i.calls,
    }
}

impl AgentsService {
    fn table(&self) -> std::sync::MutexGuard<'_, Agents> {
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[tonic::async_trait]
impl pb::agents_server::Agents for AgentsService {
    async fn list(
        &self,
        _: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let agents = self.table().list().map(agent).collect();
        Ok(Response::new(pb::ListAgentsResponse { agents }))
    }

    async fn get(&self, req: Request<pb::GetAgentRequest>) -> Result<Response<pb::Agent>, Status> {
        let id = req.into_inner().id;
        let t = self.table();
        if let Some(i) = t.get(&id) {
            return Ok(Response::new(agent(i)));
        }
        let named: Vec<&Inventory> = t.list().filter(|i| i.name == id).collect();
        match named.as_slice() {
            [one] => Ok(Response::new(agent(one))),
            [] => Err(Status::not_found(format!(
                "no agent {id:?} on this host (`sensor agents` lists them)"
            ))),
            many => Err(Status::invalid_argument(format!(
                "{} agents are named {id:?}: use an id ({})",
                many.len(),
                many.iter()
                    .map(|i| i.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    async fn export_baselines(
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

    async fn import_baselines(
        &self,
        req: Request<pb::BaselineFile>,
    ) -> Result<Response<pb::ImportBaselinesResponse>, Status> {
        if !self.control {
            return Err(Status::permission_denied(
                "importing baselines is control: not served on this listener (use the unix socket, or set api.tcp.allow_control)",
            ));
        }
        let file = BaselineFile::parse(&req.into_inner().json)
            .map_err(|e| Status::invalid_argument(format!("not a baseline file: {e}")))?;
        let agents = self
            .table()
            .import_baselines(&file, true)
            .map_err(|e| Status::internal(format!("{e:#}")))?;
        tracing::info!(agents, nodes = ?file.nodes, "baselines imported");
        Ok(Response::new(pb::ImportBaselinesResponse {
            agents: agents as u32,
            nodes: file.nodes,
        }))
    }
}
