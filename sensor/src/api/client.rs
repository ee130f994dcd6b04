//! The CLI's side of the API: connecting to the daemon's unix socket with
//! errors that say what to do, and rendering events and status for people.

use std::{fmt::Write as _, path::Path};

use anyhow::{Result, anyhow};
use hyper_util::rt::TokioIo;
use sensor_proto::v1 as pb;
use tonic::transport::{Channel, Endpoint, Uri};

/// A channel to the daemon listening on `socket`.
pub async fn connect(socket: &Path) -> Result<Channel> {
    // Checked first so the common mistakes get a plain answer instead of a
    // transport error.
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => {}
        Err(e) => return Err(unreachable(socket, &e)),
    }
    let path = socket.to_path_buf();
    // The URI is required by the API but unused: the connector below
    // always dials the socket.
    Endpoint::try_from("http://sensor.local")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await
        .map_err(|e| {
            anyhow!(
                "cannot talk to the sensor daemon on {}: {e}",
                socket.display()
            )
        })
}

fn unreachable(socket: &Path, e: &std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind::*;
    let s = socket.display();
    match e.kind() {
        NotFound => anyhow!(
            "the sensor daemon is not running: no API socket at {s} (start it with `sudo sensor run`, or pass --socket)"
        ),
        PermissionDenied => anyhow!(
            "permission denied on {s}: the API socket is root-only (mode 0600); run this command with sudo"
        ),
        ConnectionRefused => anyhow!(
            "no sensor daemon is listening on {s} (a stale socket from a daemon that stopped; start it with `sudo sensor run`)"
        ),
        _ => anyhow!("cannot reach the sensor daemon at {s}: {e}"),
    }
}

/// Maps an RPC error to a message for people.
pub fn rpc_error(what: &str, s: tonic::Status) -> anyhow::Error {
    anyhow!("{what}: {} ({:?})", s.message(), s.code())
}

fn time(e: &pb::Event) -> String {
    let Some(t) = &e.time else {
        return "-".into();
    };
    let secs = t.seconds.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        t.nanos / 1_000_000
    )
}

/// One readable line per event: time (UTC), kind, process, what.
pub fn event_line(e: &pb::Event) -> String {
    use pb::event::Payload;
    let (comm, pid) = e
        .process
        .as_ref()
        .map_or(("-", 0), |p| (p.comm.as_str(), p.pid));
    let mut s = format!("{} {:<16} {}[{}]", time(e), e.kind, comm, pid);
    match &e.payload {
        Some(Payload::ProcessEvent(p)) => match &p.change {
            Some(pb::process_event::Change::Exec(x)) => {
                let args = e.process.as_ref().map(|p| p.cmdline.join(" "));
                let _ = write!(s, " {} {}", x.filename, args.unwrap_or_default());
            }
            Some(pb::process_event::Change::Fork(f)) => {
                let _ = write!(s, " forked {}", f.child_pid);
            }
            Some(pb::process_event::Change::Exit(x)) => {
                let _ = match (x.exit_code, x.signal) {
                    (Some(c), _) => write!(s, " exit code {c}"),
                    (None, Some(sig)) => write!(s, " killed by signal {sig}"),
                    _ => write!(s, " exited"),
                };
            }
            None => {}
        },
        Some(Payload::Connect(c)) => {
            let _ = write!(s, " {}:{} {}", c.daddr, c.dport, c.result_name);
        }
        Some(Payload::ApiCall(c)) if c.db.is_some() => {
            // A database statement: who, where, what, and the answer.
            let db = c.db.as_ref().unwrap();
            let _ = write!(
                s,
                " {} {}@{}/{}: {} -> {}",
                db.engine,
                db.user,
                c.authority,
                db.database,
                c.path,
                if db.outcome.is_empty() {
                    "-"
                } else {
                    &db.outcome
                }
            );
            if !db.sqlstate.is_empty() {
                let _ = write!(s, " {}", db.sqlstate);
            }
            if let Some(rows) = db.rows {
                let _ = write!(s, " rows={rows}");
            }
            let via = if c.tls_library.is_empty() {
                &c.transport
            } else {
                &c.tls_library
            };
            let _ = write!(s, " {via}");
            if let Some(t) = &c.tool_call {
                let _ = write!(s, " <- tool call {}", t.name);
            }
        }
        Some(Payload::ApiCall(c)) => {
            let status = c.status.map_or("-".to_string(), |v| v.to_string());
            let _ = write!(
                s,
                " {} {}{} {status} {} {}",
                c.method,
                c.authority,
                c.path,
                c.http_version,
                if c.tls_library.is_empty() {
                    &c.transport
                } else {
                    &c.tls_library
                }
            );
            if !c.credential_fingerprint.is_empty() {
                let _ = write!(s, " cred={}", c.credential_fingerprint);
            }
            if let Some(t) = &c.tool_call {
                let _ = write!(s, " <- tool call {}", t.name);
            } else if c.unrequested {
                let _ = write!(s, " (no tool call asked for it)");
            }
            if let Some(l) = &c.llm {
                let tools: Vec<&str> = l.tool_calls.iter().map(|t| t.name.as_str()).collect();
                let _ = write!(s, " model={}", l.model);
                if !tools.is_empty() {
                    let _ = write!(s, " asks for {}", tools.join(", "));
                }
            }
        }
        Some(Payload::TlsClientHello(h)) => {
            let _ = write!(s, " sni={} {}:{}", h.sni, h.daddr, h.dport.unwrap_or(0));
        }
        Some(Payload::ParseError(p)) => {
            let _ = write!(s, " {} on {}: {}", p.protocol, p.connection, p.error);
        }
        Some(Payload::Finding(f)) => {
            let sev = pb::Severity::try_from(e.severity)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("SEVERITY_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            let _ = write!(s, " {sev} {}: {}", f.rule, f.summary);
            if let Some(t) = &f.tool_call {
                let _ = write!(s, " (asked for by tool call {})", t.name);
            }
            if !f.mode.is_empty() {
                let _ = write!(s, " [{}", f.mode);
                if !f.response.is_empty() {
                    let _ = write!(s, ", policy {} says {}", f.policy, f.response);
                }
                s.push(']');
            }
        }
        Some(Payload::Mode(m)) => {
            let _ = write!(
                s,
                " agent {} ({}) {} -> {}: {}",
                m.agent_name,
                m.agent_id,
                if m.from.is_empty() { "new" } else { &m.from },
                m.to,
                m.why
            );
        }
        Some(Payload::Blocked(b)) => {
            let _ = write!(
                s,
                " {} by armed agent {}: {}",
                b.pattern,
                b.agent,
                if b.killed {
                    "killed before the request left"
                } else {
                    "kill FAILED"
                }
            );
        }
        Some(Payload::Held(h)) => {
            let _ = write!(
                s,
                " hold {}: agent {} stopped before {} {}{}",
                h.hold_id, h.agent, h.method, h.authority, h.path
            );
            if !h.tool_call.is_empty() {
                let _ = write!(s, " (tool call {})", h.tool_call);
            }
            let _ = write!(
                s,
                "; sensor approve {} | sensor deny {} ({} in {} s)",
                h.hold_id, h.hold_id, h.on_timeout, h.timeout_secs
            );
        }
        Some(Payload::Action(a)) => {
            if let Some(h) = a.hold_id {
                let _ = write!(s, " hold {h}:");
            }
            let _ = write!(s, " {} {} by {}: {}", a.action, a.outcome, a.by, a.why);
            if !a.targets.is_empty() {
                let pids: Vec<String> = a.targets.iter().map(|t| t.pid.to_string()).collect();
                let _ = write!(s, " pids={}", pids.join(","));
            }
            if !a.error.is_empty() {
                let _ = write!(s, " ({})", a.error);
            }
        }
        Some(Payload::Lagged(l)) => {
            let _ = write!(s, " this subscriber missed {} events", l.missed);
        }
        Some(Payload::Error(x)) => {
            let _ = write!(s, " {}", x.message);
        }
        None => {}
    }
    s
}

pub fn status_text(r: &pb::StatusResponse) -> String {
    let mut s = String::new();
    let up = r.uptime.as_ref().map_or(0, |d| d.seconds);
    let _ = writeln!(
        s,
        "sensor {} on {} (kernel {}), pid {}, up {}s",
        r.version, r.node, r.kernel, r.pid, up
    );
    let _ = writeln!(s, "capabilities: {}", r.capabilities.join(", "));
    for u in &r.unavailable {
        let _ = writeln!(s, "  not available: {u}");
    }
    let _ = writeln!(s, "attach methods:");
    s.push_str(&crate::attach::status_text(&r.hooks));
    let _ = writeln!(s, "attached:");
    for a in &r.attachments {
        let _ = writeln!(s, "  {:<22} {}", a.program, a.method);
    }
    if r.degraded.is_empty() {
        let _ = writeln!(s, "degraded: none");
    } else {
        let _ = writeln!(s, "degraded:");
        for d in &r.degraded {
            let _ = writeln!(s, "  {d}");
        }
    }
    let _ = writeln!(s, "TLS targets: {}", r.tls_targets.len());
    for t in &r.tls_targets {
        let _ = writeln!(s, "  {}", t.path);
        for f in &t.functions {
            let _ = writeln!(s, "    {f}");
        }
    }
    let _ = writeln!(
        s,
        "events: {:.1}/s over the last minute, {} subscribers",
        r.event_rate, r.subscribers
    );
    let mut kinds: Vec<_> = r.events_by_kind.iter().collect();
    kinds.sort();
    for (k, v) in kinds {
        let _ = writeln!(s, "  {k:<22} {v}");
    }
    let _ = writeln!(s, "counters:");
    let mut counters: Vec<_> = r.counters.iter().collect();
    counters.sort();
    for (k, v) in counters {
        let _ = writeln!(s, "  {k:<28} {v}");
    }
    s
}
