//! Commands that talk to the running daemon through its API: `status`,
//! `events`, `history`, `agents`, `agent`, `isolate`, `release`, `kill`,
//! `isolated`, `health`.

use std::{path::PathBuf, time::Duration};

use anyhow::{Result, bail};
use clap::Args;
use sensor_proto::v1::{
    self as pb, agents_client::AgentsClient, baselines_client::BaselinesClient,
    events_client::EventsClient, response_client::ResponseClient, sensor_client::SensorClient,
};
use tokio_stream::StreamExt;

use crate::api::client::{connect, event_line, rpc_error, status_text};

pub const DEFAULT_SOCKET: &str = "/run/sensor/sensor.sock";

#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// The daemon's API socket.
    #[arg(long, env = "SENSOR_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// One JSON object per line (the proto3 JSON form) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct Filters {
    /// Only these event kinds (repeatable): exec, connect, api_call, ...
    #[arg(long = "kind")]
    pub kinds: Vec<String>,
    /// Only these processes (repeatable).
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Only processes whose executable matches this regex.
    #[arg(long)]
    pub exe: Option<String>,
    /// Only processes in this container (id or id prefix).
    #[arg(long)]
    pub container: Option<String>,
    /// Only processes in this Kubernetes pod (name).
    #[arg(long)]
    pub pod: Option<String>,
    /// Only processes in pods of this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only these agents (id, repeatable).
    #[arg(long = "agent")]
    pub agents: Vec<String>,
    /// Leave out these kinds (repeatable).
    #[arg(long = "not-kind")]
    pub not_kinds: Vec<String>,
    /// Leave out these processes (repeatable).
    #[arg(long = "not-pid")]
    pub not_pids: Vec<u32>,
    /// Leave out processes whose executable matches this regex.
    #[arg(long = "not-exe")]
    pub not_exe: Option<String>,
    /// Leave out these agents (id, repeatable).
    #[arg(long = "not-agent")]
    pub not_agents: Vec<String>,
    /// Leave out processes in this container (id or id prefix).
    #[arg(long = "not-container")]
    pub not_container: Option<String>,
    /// Leave out processes in this Kubernetes pod (name).
    #[arg(long = "not-pod")]
    pub not_pod: Option<String>,
    /// Leave out processes in pods of this namespace.
    #[arg(long = "not-namespace")]
    pub not_namespace: Option<String>,
    /// Minimum severity: info, low, medium, high, critical.
    #[arg(long, value_parser = parse_severity)]
    pub min_severity: Option<i32>,
}

fn parse_severity(s: &str) -> Result<i32, String> {
    let name = format!("SEVERITY_{}", s.to_ascii_uppercase());
    pb::Severity::from_str_name(&name)
        .map(|v| v as i32)
        .ok_or_else(|| format!("{s:?}: one of info, low, medium, high, critical"))
}

impl Filters {
    fn allow(&self) -> pb::Filter {
        pb::Filter {
            kinds: self.kinds.clone(),
            pids: self.pids.clone(),
            exe_regex: self.exe.clone().unwrap_or_default(),
            container_id: self.container.clone().unwrap_or_default(),
            pod: self.pod.clone().unwrap_or_default(),
            namespace: self.namespace.clone().unwrap_or_default(),
            agent_ids: self.agents.clone(),
            ..Default::default()
        }
    }

    fn deny(&self) -> pb::Filter {
        pb::Filter {
            kinds: self.not_kinds.clone(),
            pids: self.not_pids.clone(),
            exe_regex: self.not_exe.clone().unwrap_or_default(),
            agent_ids: self.not_agents.clone(),
            container_id: self.not_container.clone().unwrap_or_default(),
            pod: self.not_pod.clone().unwrap_or_default(),
            namespace: self.not_namespace.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// `println!` for everything the CLI shows a person: control characters
/// and bidirectional overrides from events (a command line, a held
/// request) are printed escaped, so what a process sent cannot redraw or
/// reorder the operator's screen.
macro_rules! say {
    () => {
        println!()
    };
    ($($arg:tt)*) => {
        println!("{}", crate::redact::visible(&format!($($arg)*)))
    };
}

fn print(e: &pb::Event, json: bool) -> Result<()> {
    use std::io::Write;
    let line = if json {
        serde_json::to_string(e)?
    } else {
        event_line(e)
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", crate::redact::visible(&line)).is_err() {
        // Reader went away (`| head`): a normal way to stop.
        std::process::exit(0);
    }
    Ok(())
}

pub async fn status(c: &Conn) -> Result<()> {
    let mut client = SensorClient::new(connect(&c.socket).await?);
    let r = client
        .status(pb::StatusRequest {})
        .await
        .map_err(|s| rpc_error("status", s))?
        .into_inner();
    if c.json {
        say!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", status_text(&r));
    }
    Ok(())
}

/// The standard gRPC health check (`grpc.health.v1.Health/Check`) over the
/// socket: Ok only when the daemon answers SERVING within `timeout`.
pub async fn health(c: &Conn, service: &str, timeout: Duration) -> Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let check = async {
        let mut client =
            tonic_health::pb::health_client::HealthClient::new(connect(&c.socket).await?);
        let r = client
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .map_err(|s| rpc_error("health", s))?
            .into_inner();
        Ok::<_, anyhow::Error>(r.status())
    };
    let status = tokio::time::timeout(timeout, check).await.map_err(|_| {
        anyhow::anyhow!(
            "health: no answer from the sensor daemon on {} within {timeout:?}",
            c.socket.display()
        )
    })??;
    let name = status.as_str_name();
    if c.json {
        say!("{}", serde_json::json!({ "status": name }));
    } else {
        say!("{name}");
    }
    if status != ServingStatus::Serving {
        bail!("the sensor daemon is not serving ({name})");
    }
    Ok(())
}

/// Recent stored events; with `follow`, then live ones until interrupted.
pub async fn events(c: &Conn, f: &Filters, last: u32, follow: bool) -> Result<()> {
    let mut client = EventsClient::new(connect(&c.socket).await?);
    if !follow {
        let req = pb::HistoryRequest {
            allow: Some(f.allow()),
            deny: Some(f.deny()),
            min_severity: f.min_severity.unwrap_or_default(),
            since: None,
            limit: last,
        };
        return drain(client.history(req).await, c.json).await;
    }
    let req = pb::SubscribeRequest {
        allow: Some(f.allow()),
        deny: Some(f.deny()),
        min_severity: f.min_severity.unwrap_or_default(),
        replay_last: last,
    };
    let mut stream = client
        .subscribe(req)
        .await
        .map_err(|s| rpc_error("subscribe", s))?
        .into_inner();
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(e)) => print(&e, c.json)?,
                Some(Err(s)) => return Err(rpc_error("event stream", s)),
                None => bail!("the sensor daemon closed the event stream (it is shutting down?)"),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// What one process (a pid) or one agent (an id or name) did, from the
/// audit trail, oldest first.
pub async fn history(
    c: &Conn,
    who: &str,
    since: Option<Duration>,
    f: &Filters,
    limit: u32,
) -> Result<()> {
    let channel = connect(&c.socket).await?;
    let mut allow = f.allow();
    match who.parse::<u32>() {
        Ok(pid) => allow.pids = vec![pid],
        Err(_) => {
            // A name is resolved by the daemon, which knows its agents.
            let a = AgentsClient::new(channel.clone())
                .get(pb::GetAgentRequest { id: who.into() })
                .await
                .map_err(|s| rpc_error("history", s))?
                .into_inner();
            allow.agent_ids = vec![a.id];
        }
    }
    let mut client = EventsClient::new(channel);
    let since = since.map(|d| {
        let t = std::time::SystemTime::now() - d;
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        sensor_proto::pbjson_types::Timestamp {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }
    });
    let req = pb::HistoryRequest {
        allow: Some(allow),
        deny: Some(f.deny()),
        min_severity: f.min_severity.unwrap_or_default(),
        since,
        limit,
    };
    drain(client.history(req).await, c.json).await
}

/// One agent session's story, oldest first.
pub async fn trace(c: &Conn, session: &str, since: Option<Duration>) -> Result<()> {
    if session
        .split_once('-')
        .is_none_or(|(p, t)| p.parse::<u32>().is_err() || t.parse::<u64>().is_err())
    {
        bail!(
            "{session:?} is not a session: it reads PID-START_TICKS, as in the events' agent.session"
        );
    }
    let mut client = EventsClient::new(connect(&c.socket).await?);
    let kinds = [
        "exec", "api_call", "finding", "held", "blocked", "action", "exit",
    ];
    let req = pb::HistoryRequest {
        allow: Some(pb::Filter {
            agent_session: session.to_string(),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            ..Default::default()
        }),
        deny: None,
        min_severity: 0,
        since: since.map(|d| {
            let t = std::time::SystemTime::now() - d;
            let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            sensor_proto::pbjson_types::Timestamp {
                seconds: d.as_secs() as i64,
                nanos: d.subsec_nanos() as i32,
            }
        }),
        limit: 0,
    };
    let mut stream = client
        .history(req)
        .await
        .map_err(|s| rpc_error("trace", s))?
        .into_inner();
    let mut n = 0;
    // What the agent holds, by fingerprint: each call's credential is
    // named with where its process got it.
    let mut held: Option<Vec<pb::Credential>> = None;
    while let Some(e) = stream.next().await {
        let e = e.map_err(|s| rpc_error("trace", s))?;
        if n == 0
            && !c.json
            && let Some(p) = &e.process
        {
            say!(
                "session {session} of agent {} ({})",
                p.agent_name,
                p.agent_id
            );
        }
        n += 1;
        print(&e, c.json)?;
        if c.json {
            continue;
        }
        if let (Some(p), Some(pb::event::Payload::ApiCall(call))) = (&e.process, &e.payload)
            && !call.credential_fingerprint.is_empty()
        {
            if held.is_none() {
                held = Some(
                    list_credentials(c, Some(&p.agent_id))
                        .await
                        .unwrap_or_default(),
                );
            }
            let fp = crate::credentials::bare(&call.credential_fingerprint);
            let holder = held
                .iter()
                .flatten()
                .filter(|cred| cred.fingerprint == fp)
                .flat_map(|cred| &cred.held_by)
                .find(|h| h.agent_id == p.agent_id);
            if let Some(h) = holder {
                say!("    credential held as {}, {}", h.var, origin_of(h));
            }
        }
    }
    if n == 0 {
        bail!(
            "no events of session {session} in the audit trail (sensor agents lists recent sessions)"
        );
    }
    Ok(())
}

async fn drain(
    resp: Result<tonic::Response<tonic::Streaming<pb::Event>>, tonic::Status>,
    json: bool,
) -> Result<()> {
    let mut stream = resp.map_err(|s| rpc_error("history", s))?.into_inner();
    while let Some(item) = stream.next().await {
        print(&item.map_err(|s| rpc_error("history", s))?, json)?;
    }
    Ok(())
}

/// Every agent identity seen on this host.
pub async fn agents(c: &Conn) -> Result<()> {
    let mut client = AgentsClient::new(connect(&c.socket).await?);
    let r = client
        .list(pb::ListAgentsRequest {})
        .await
        .map_err(|s| rpc_error("agents", s))?
        .into_inner();
    if c.json {
        for a in &r.agents {
            say!("{}", serde_json::to_string(a)?);
        }
        return Ok(());
    }
    if r.agents.is_empty() {
        say!("no agent seen on this host yet");
        return Ok(());
    }
    say!(
        "{:<17} {:<24} {:>8} {:>6} {:>12}  providers",
        "ID",
        "NAME",
        "CALLS",
        "RUNS",
        "IRREVERSIBLE"
    );
    for a in &r.agents {
        let irreversible: u64 = a.irreversible.iter().map(|e| e.calls).sum();
        say!(
            "{:<17} {:<24} {:>8} {:>6} {:>12}  {}",
            a.id,
            a.name,
            a.calls,
            a.sessions,
            irreversible,
            a.providers.join(", ")
        );
    }
    Ok(())
}

async fn list_credentials(c: &Conn, agent: Option<&str>) -> Result<Vec<pb::Credential>> {
    let mut client = AgentsClient::new(connect(&c.socket).await?);
    Ok(client
        .credentials(pb::ListCredentialsRequest {
            agent: agent.unwrap_or_default().to_string(),
        })
        .await
        .map_err(|s| rpc_error("credentials", s))?
        .into_inner()
        .credentials)
}

/// "1 call", "3 calls".
fn calls(n: u64) -> String {
    format!("{n} call{}", if n == 1 { "" } else { "s" })
}

/// Where a holder got a credential: "introduced at its exec" or
/// "inherited from EXE [pid] (N execs up): CMDLINE".
fn origin_of(h: &pb::CredentialHolder) -> String {
    if h.inherited {
        format!(
            "inherited from {} [{}] ({} exec{} up): {}",
            h.origin_exe,
            h.origin_pid,
            h.hops,
            if h.hops == 1 { "" } else { "s" },
            h.origin_cmdline
        )
    } else {
        format!(
            "introduced at its exec ({} [{}])",
            h.origin_exe, h.origin_pid
        )
    }
}

/// Every credential agents held or used, with who and where from.
pub async fn credentials(c: &Conn, agent: Option<&str>) -> Result<()> {
    let list = list_credentials(c, agent).await?;
    if c.json {
        for cred in &list {
            say!("{}", serde_json::to_string(cred)?);
        }
        return Ok(());
    }
    if list.is_empty() {
        say!("no credential held or used by an agent yet");
        return Ok(());
    }
    for cred in &list {
        say!("{} ({})", cred.fingerprint, cred.kind);
        for h in &cred.held_by {
            say!(
                "  held by {} ({}) as {}: {}",
                h.agent,
                h.agent_id,
                h.var,
                origin_of(h)
            );
        }
        for u in &cred.used_by {
            say!("  used by {} ({}): {}", u.agent, u.agent_id, calls(u.calls));
            for e in &u.endpoints {
                let key = format!("{} {} {}", e.method, e.authority, e.path_template);
                let mark = if u.irreversible.contains(&key) {
                    "  IRREVERSIBLE"
                } else {
                    ""
                };
                say!("    {:>6}  {key}{mark}", e.calls);
            }
        }
        if cred.used_by.is_empty() {
            say!("  never used by an agent");
        }
    }
    Ok(())
}

/// One agent's profile and blast radius.
pub async fn agent(c: &Conn, id: &str) -> Result<()> {
    let mut client = AgentsClient::new(connect(&c.socket).await?);
    let a = client
        .get(pb::GetAgentRequest { id: id.to_string() })
        .await
        .map_err(|s| rpc_error("agent", s))?
        .into_inner();
    if c.json {
        say!("{}", serde_json::to_string_pretty(&a)?);
        return Ok(());
    }
    say!("agent {} ({})", a.name, a.id);
    say!("  exe:          {}", a.exe);
    say!("  command:      {}", a.cmdline.join(" "));
    say!(
        "  runs:         {} (recent: {})",
        a.sessions,
        a.recent_sessions.join(", ")
    );
    say!("  providers:    {}", a.providers.join(", "));
    say!("  credentials:  {}", a.credentials.join(", "));
    say!("  destinations: {}", a.destinations.join(", "));
    say!("  irreversible calls:");
    for e in &a.irreversible {
        say!(
            "    {:>6}  {} {}{}",
            e.calls,
            e.method,
            e.authority,
            e.path_template
        );
    }
    say!("  endpoints ({} calls):", a.calls);
    for e in &a.endpoints {
        say!(
            "    {:>6}  {} {}{}",
            e.calls,
            e.method,
            e.authority,
            e.path_template
        );
    }
    say!("  mode:         {}", a.mode);
    // Its blast radius: each credential it holds, what it did with it,
    // what others did with the same one.
    let held: Vec<pb::Credential> = list_credentials(c, Some(&a.id))
        .await?
        .into_iter()
        .filter(|cred| cred.held_by.iter().any(|h| h.agent_id == a.id))
        .collect();
    if !held.is_empty() {
        say!("  credentials held:");
    }
    for cred in &held {
        for h in cred.held_by.iter().filter(|h| h.agent_id == a.id) {
            say!(
                "    {} {} ({}): {}",
                h.var,
                cred.fingerprint,
                cred.kind,
                origin_of(h)
            );
        }
        let own = cred.used_by.iter().find(|u| u.agent_id == a.id);
        match own {
            Some(u) => say!(
                "      used by it: {}{}",
                calls(u.calls),
                if u.irreversible.is_empty() {
                    String::new()
                } else {
                    format!(", irreversible: {}", u.irreversible.join("; "))
                }
            ),
            None => say!("      never used by it: an ambient credential"),
        }
        for u in cred.used_by.iter().filter(|u| u.agent_id != a.id) {
            say!(
                "      used by {} ({}): {}{}",
                u.agent,
                u.agent_id,
                calls(u.calls),
                if u.irreversible.is_empty() {
                    String::new()
                } else {
                    format!(", irreversible: {}", u.irreversible.join("; "))
                }
            );
        }
    }
    for l in &a.live_sessions {
        say!(
            "  running session {}: {} model turns, {} calls{}",
            l.id,
            l.llm_turns,
            l.api_calls,
            if l.older_steps > 0 {
                format!(" ({} earlier steps not shown)", l.older_steps)
            } else {
                String::new()
            }
        );
        for st in &l.recent {
            let tools = if st.tools.is_empty() {
                String::new()
            } else if st.llm {
                format!(" asks for {}", st.tools.join(", "))
            } else {
                format!(" <- tool call {}", st.tools.join(", "))
            };
            say!(
                "    {} {}{tools}",
                if st.llm { "model" } else { "call " },
                st.endpoint
            );
        }
    }
    Ok(())
}

/// Which process an action is about.
#[derive(Args, Debug, Clone)]
pub struct Target {
    pub pid: u32,
    /// Refuse if the pid now names a process that did not start at this
    /// time (clock ticks since boot, `start_ticks` in events).
    #[arg(long)]
    pub start_ticks: Option<u64>,
    /// Its descendants too.
    #[arg(long)]
    pub tree: bool,
    /// Why, for the audit trail.
    #[arg(long, default_value = "")]
    pub why: String,
}

fn print_result(what: &str, r: &pb::ActionResult, json: bool) -> Result<()> {
    if json {
        say!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let pids: Vec<String> = r.targets.iter().map(|t| t.pid.to_string()).collect();
    say!("{what}: {}", pids.join(", "));
    for s in &r.skipped {
        say!("  left alone: {s}");
    }
    Ok(())
}

/// Cuts a process (tree) off the network, in the kernel.
pub async fn isolate(
    c: &Conn,
    t: &Target,
    allow_loopback: bool,
    allow: &[crate::respond::isolate::Net],
) -> Result<()> {
    let mut client = ResponseClient::new(connect(&c.socket).await?);
    let r = client
        .isolate(pb::IsolateRequest {
            pid: t.pid,
            start_ticks: t.start_ticks,
            tree: t.tree,
            allow_loopback,
            allow: allow.iter().map(|n| n.to_string()).collect(),
            why: t.why.clone(),
        })
        .await
        .map_err(|s| rpc_error("isolate", s))?
        .into_inner();
    print_result("isolated", &r, c.json)
}

pub async fn release(c: &Conn, pid: u32, why: &str) -> Result<()> {
    let mut client = ResponseClient::new(connect(&c.socket).await?);
    let r = client
        .release(pb::ReleaseRequest {
            pid,
            why: why.into(),
        })
        .await
        .map_err(|s| rpc_error("release", s))?
        .into_inner();
    print_result("released", &r, c.json)
}

pub async fn kill(c: &Conn, t: &Target) -> Result<()> {
    let mut client = ResponseClient::new(connect(&c.socket).await?);
    let r = client
        .kill(pb::KillRequest {
            pid: t.pid,
            start_ticks: t.start_ticks,
            tree: t.tree,
            why: t.why.clone(),
        })
        .await
        .map_err(|s| rpc_error("kill", s))?
        .into_inner();
    print_result("killed", &r, c.json)
}

/// Every isolated process, since when and why.
pub async fn isolated(c: &Conn) -> Result<()> {
    let mut client = ResponseClient::new(connect(&c.socket).await?);
    let r = client
        .list_isolated(pb::ListIsolatedRequest {})
        .await
        .map_err(|s| rpc_error("isolated", s))?
        .into_inner();
    if c.json {
        for p in &r.processes {
            say!("{}", serde_json::to_string(p)?);
        }
        return Ok(());
    }
    if r.processes.is_empty() {
        say!("no process is isolated");
        return Ok(());
    }
    say!(
        "{:>8} {:<20} {:<28} {:<24} why",
        "PID",
        "SINCE (UTC)",
        "EXE",
        "BY"
    );
    for p in &r.processes {
        let since = p
            .since
            .as_ref()
            .and_then(|t| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_secs(t.seconds.max(0) as u64),
                )
                .to_string()
                .get(..19)
                .map(str::to_string)
            })
            .unwrap_or_default();
        let mut why = p.why.clone();
        if p.allow_loopback {
            why.push_str(" [loopback allowed]");
        }
        if !p.allow.is_empty() {
            why.push_str(&format!(" [allowed: {}]", p.allow.join(", ")));
        }
        say!(
            "{:>8} {:<20} {:<28} {:<24} {why}",
            p.process.as_ref().map_or(0, |r| r.pid),
            since,
            p.exe,
            p.by
        );
    }
    Ok(())
}

/// Approves (`approve`) or denies a hold; `flag` is `--remember` for an
/// approval and `--isolate` for a denial.
pub async fn decide(c: &Conn, hold_id: u64, approve: bool, flag: bool, why: &str) -> Result<()> {
    let mut client = ResponseClient::new(connect(&c.socket).await?);
    let req = pb::HoldDecision {
        hold_id,
        why: why.into(),
        remember: approve && flag,
        isolate: !approve && flag,
    };
    let (what, r) = if approve {
        ("approved", client.approve(req).await)
    } else {
        ("denied", client.deny(req).await)
    };
    let r = r
        .map_err(|s| rpc_error(if approve { "approve" } else { "deny" }, s))?
        .into_inner();
    print_result(what, &r, c.json)
}

/// Pending holds, oldest first.
pub async fn holds(c: &Conn) -> Result<()> {
    let mut client = ResponseClient::new(connect(&c.socket).await?);
    let r = client
        .list_holds(pb::ListHoldsRequest {})
        .await
        .map_err(|s| rpc_error("holds", s))?
        .into_inner();
    if c.json {
        for h in &r.holds {
            say!("{}", serde_json::to_string(h)?);
        }
        return Ok(());
    }
    if r.holds.is_empty() {
        say!("no pending hold");
        return Ok(());
    }
    say!(
        "{:>5} {:>8} {:>7} {:<16} request",
        "HOLD",
        "PID",
        "AGE",
        "AGENT"
    );
    for h in &r.holds {
        say!(
            "{:>5} {:>8} {:>6.0}s {:<16} {} {}{}",
            h.hold_id,
            h.process.as_ref().map_or(0, |p| p.pid),
            h.age_secs,
            h.agent,
            h.method,
            h.authority,
            h.path
        );
        for line in h.head.lines() {
            say!("{:>40}{line}", "");
        }
    }
    Ok(())
}

fn write_out(output: Option<&std::path::Path>, bytes: &[u8]) -> Result<()> {
    match output {
        Some(p) => {
            std::fs::write(p, bytes).map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.write_all(b"\n")?;
            Ok(())
        }
    }
}

fn read_baselines(path: &std::path::Path) -> Result<crate::agents::baseline::BaselineFile> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    crate::agents::baseline::BaselineFile::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// One agent's baseline, as the daemon checks it now.
pub async fn show_baseline(c: &Conn, agent: &str) -> Result<()> {
    let mut client = BaselinesClient::new(connect(&c.socket).await?);
    let b = client
        .get(pb::GetBaselineRequest {
            agent: agent.to_string(),
        })
        .await
        .map_err(|s| rpc_error("baseline show", s))?
        .into_inner();
    if c.json {
        say!("{}", serde_json::to_string_pretty(&b)?);
        return Ok(());
    }
    let name = if b.agent_name.is_empty() {
        "(imported, not seen here)"
    } else {
        &b.agent_name
    };
    say!("baseline of agent {name} ({})", b.agent_id);
    say!(
        "  state:        {}",
        if b.learning {
            format!(
                "learning ({} of {} runs)",
                b.sessions.min(b.learn_sessions),
                b.learn_sessions
            )
        } else {
            "checking (calls outside it raise findings)".to_string()
        }
    );
    say!("  mode:         {} ({})", b.mode, b.mode_why);
    say!(
        "  rates:        peak calls in 60 s per run {:?} (95th percentile {}), peak bytes {:?} (95th percentile {})",
        b.peak_calls,
        b.peak_calls_high,
        b.peak_bytes,
        b.peak_bytes_high
    );
    say!(
        "  runs:         {} ({} here, {} imported), {} calls learned",
        b.sessions,
        b.local_sessions,
        b.imported_sessions,
        b.calls
    );
    say!("  credentials:  {}", b.credentials.join(", "));
    say!("  destinations: {}", b.destinations.join(", "));
    say!("  endpoints:");
    for e in &b.endpoints {
        say!(
            "    {:>6}  {} {}{}",
            e.calls,
            e.method,
            e.authority,
            e.path_template
        );
    }
    say!("  transitions:");
    for t in &b.transitions {
        say!(
            "    {:>6}  {} -> {}",
            t.count,
            t.from_endpoint,
            t.to_endpoint
        );
    }
    Ok(())
}

/// Pins (or returns to automatic) an agent's mode.
pub async fn set_mode(c: &Conn, agent: &str, mode: &str, why: &str) -> Result<()> {
    let mut client = BaselinesClient::new(connect(&c.socket).await?);
    let r = client
        .set_mode(pb::SetModeRequest {
            agent: agent.to_string(),
            mode: mode.to_string(),
            why: why.to_string(),
        })
        .await
        .map_err(|s| rpc_error("baseline mode", s))?
        .into_inner();
    if c.json {
        say!("{}", serde_json::to_string(&r)?);
    } else {
        say!("agent {} is in {} mode ({})", r.agent_id, r.mode, r.why);
    }
    Ok(())
}

/// The daemon's baselines as a file.
pub async fn export_baselines(
    c: &Conn,
    agents: &[String],
    output: Option<&std::path::Path>,
) -> Result<()> {
    let mut client = BaselinesClient::new(connect(&c.socket).await?);
    let r = client
        .export(pb::ExportBaselinesRequest {
            agents: agents.to_vec(),
        })
        .await
        .map_err(|s| rpc_error("baseline export", s))?
        .into_inner();
    write_out(output, &r.json)
}

/// Adds a baseline file to the daemon.
pub async fn import_baselines(c: &Conn, path: &std::path::Path) -> Result<()> {
    // Checked here first, so a wrong file is named before any RPC.
    let file = read_baselines(path)?;
    let mut client = BaselinesClient::new(connect(&c.socket).await?);
    let r = client
        .import(pb::BaselineFile {
            json: serde_json::to_vec(&file)?,
        })
        .await
        .map_err(|s| rpc_error("baseline import", s))?
        .into_inner();
    say!(
        "imported baselines of {} agents (learned on {})",
        r.agents,
        r.nodes.join(", ")
    );
    Ok(())
}

/// Merges baseline files, offline.
pub fn merge_baselines(paths: &[PathBuf], output: Option<&std::path::Path>) -> Result<()> {
    let files = paths
        .iter()
        .map(|p| read_baselines(p))
        .collect::<Result<Vec<_>>>()?;
    let merged = crate::agents::baseline::BaselineFile::merge_all(&files);
    write_out(output, &serde_json::to_vec_pretty(&merged)?)
}
