//! `sensor.v1.Agents`: the inventory of agent identities and each one's
//! blast radius.

use std::sync::{Arc, Mutex};

use sensor_proto::{pbjson_types::Timestamp, v1 as pb};
use tonic::{Request, Response, Status};

use crate::agents::{Agents, Inventory};

pub struct AgentsService {
    pub agents: Arc<Mutex<Agents>>,
}

fn time(ns: u64) -> Option<Timestamp> {
    (ns > 0).then_some(Timestamp {
        seconds: (ns / 1_000_000_000) as i64,
        nanos: (ns % 1_000_000_000) as i32,
    })
}

/// "METHOD authority path_template" keys with their counts, most called
/// first.
pub fn endpoints(m: &std::collections::BTreeMap<String, u64>) -> Vec<pb::Endpoint> {
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
        mode: String::new(),
        live_sessions: Vec::new(),
    }
}

/// `agent` with its mode and live sessions, as Get gives it.
pub fn agent_in_full(t: &Agents, i: &Inventory) -> pb::Agent {
    let mut a = agent(i);
    a.mode = t.mode_of(&i.id).name().into();
    a.live_sessions = t
        .sessions_of(&i.id)
        .into_iter()
        .map(|(id, trail)| pb::LiveSession {
            id: id.to_string(),
            llm_turns: trail.llm_turns,
            api_calls: trail.api_calls,
            older_steps: trail.older,
            recent: trail
                .recent
                .iter()
                .map(|s| pb::Step {
                    time: time(s.ts_unix_ns),
                    endpoint: s.endpoint.clone(),
                    llm: s.llm,
                    tools: s.tools.clone(),
                })
                .collect(),
        })
        .collect();
    a
}

/// The agent `id` names: its id, or a name that only one agent has.
pub fn find<'a>(t: &'a Agents, id: &str) -> Result<&'a Inventory, Status> {
    if let Some(i) = t.get(id) {
        return Ok(i);
    }
    let named: Vec<&Inventory> = t.list().filter(|i| i.name == id).collect();
    match named.as_slice() {
        [one] => Ok(one),
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

/// A credential of the audit as the API gives it.
pub fn credential(c: &crate::credentials::Credential) -> pb::Credential {
    pb::Credential {
        fingerprint: c.fingerprint.clone(),
        kind: c.kind.clone(),
        held_by: c
            .held_by
            .iter()
            .map(|h| pb::CredentialHolder {
                agent: h.agent.clone(),
                agent_id: h.agent_id.clone(),
                var: h.var.clone(),
                inherited: h.inherited,
                hops: h.hops,
                origin_pid: h.origin.pid,
                origin_exe: h.origin.exe.clone(),
                origin_cmdline: h.origin.cmdline.clone(),
                processes: h.processes,
            })
            .collect(),
        used_by: c
            .used_by
            .iter()
            .map(|u| pb::CredentialUser {
                agent: u.agent.clone(),
                agent_id: u.agent_id.clone(),
                calls: u.calls,
                endpoints: endpoints(&u.endpoints),
                irreversible: u.irreversible.clone(),
            })
            .collect(),
        first_seen: time(c.first_seen_ns),
        last_seen: time(c.last_seen_ns),
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
        let t = self.table();
        let agents = t
            .list()
            .map(|i| {
                let mut a = agent(i);
                a.mode = t.mode_of(&i.id).name().into();
                a
            })
            .collect();
        Ok(Response::new(pb::ListAgentsResponse { agents }))
    }

    async fn credentials(
        &self,
        req: Request<pb::ListCredentialsRequest>,
    ) -> Result<Response<pb::ListCredentialsResponse>, Status> {
        let agent = req.into_inner().agent;
        let t = self.table();
        let agent = match agent.as_str() {
            "" => None,
            a => Some(find(&t, a)?.id.clone()),
        };
        let credentials = t
            .credentials
            .list(agent.as_deref())
            .into_iter()
            .map(credential)
            .collect();
        Ok(Response::new(pb::ListCredentialsResponse { credentials }))
    }

    async fn get(&self, req: Request<pb::GetAgentRequest>) -> Result<Response<pb::Agent>, Status> {
        let t = self.table();
        let i = find(&t, &req.into_inner().id)?;
        Ok(Response::new(agent_in_full(&t, i)))
    }
}
