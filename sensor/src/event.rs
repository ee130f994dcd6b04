//! Typed events as the sensor emits them, and their two renderings: one
//! readable line, or one JSON object per line.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use serde::Serialize;

use crate::{
    clock::{Clock, ns_to_ticks},
    decode::Record,
    procs::{Process, ProcessTable},
};
use sensor_common::{AF_INET, ConnectRecord};

#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Emission order, increasing across restarts (continued from the
    /// audit store): a gap means events were lost. Set at output.
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    pub ts_unix_ns: u64,
    /// Thread that did it.
    pub tid: u32,
    pub process: Arc<Process>,
    /// The agent (identity and session) the process belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<Arc<crate::agents::AgentTag>>,
    /// The Kubernetes pod container the process runs in, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Arc<crate::pods::PodContainer>>,
    #[serde(flatten)]
    pub detail: Detail,
}

// api_call is the largest variant and also the commonest one that matters;
// events are moved a handful of times, so boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Detail {
    Exec {
        filename: String,
        filename_truncated: bool,
        args_truncated: bool,
        /// Credentials its environment holds (fingerprints, never values)
        /// and where each came from.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        credentials: Vec<crate::credentials::HeldCredential>,
    },
    Fork {
        child_pid: u32,
        child_start_ticks: u64,
    },
    Exit {
        /// Exit status when the process called exit().
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Signal number when a signal ended it.
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    Connect {
        fd: i32,
        family: &'static str,
        daddr: IpAddr,
        dport: u16,
        /// 0, `-EINPROGRESS` (non-blocking), or `-errno`.
        result: i32,
        /// `ok`, `EINPROGRESS`, `ECONNREFUSED`, …
        result_name: String,
    },
    /// One HTTP exchange (request and its response) seen in plaintext.
    ApiCall {
        /// The LLM provider called, if this is an LLM call.
        #[serde(skip_serializing_if = "Option::is_none")]
        provider: Option<&'static str>,
        /// What the LLM call said (model, usage, tool calls).
        #[serde(skip_serializing_if = "Option::is_none")]
        llm: Option<Box<crate::agents::llm::LlmSummary>>,
        /// The tool call of the agent's model that most plausibly asked for
        /// this call (the latest one pending in its session).
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_call: Option<crate::agents::ToolRef>,
        /// An agent's call that no pending tool call asked for.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        unrequested: bool,
        method: String,
        authority: String,
        /// Request target with secret query values masked.
        path: String,
        path_template: String,
        /// None when no response was seen (stream ended or evicted).
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        request_bytes: u64,
        response_bytes: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        latency_ms: Option<f64>,
        http_version: String,
        /// `tls` (library plaintext) or `plain`.
        transport: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        tls_library: Option<&'static str>,
        /// Keyed fingerprint of the credential sent, never the credential.
        #[serde(skip_serializing_if = "Option::is_none")]
        credential_fingerprint: Option<String>,
        /// The connection: TLS library object (SSL pointer) or `fd N`.
        connection: String,
        /// Where the socket goes, when the connection was tied to a socket
        /// the sensor saw connect.
        #[serde(skip_serializing_if = "Option::is_none")]
        daddr: Option<IpAddr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        dport: Option<u16>,
        /// Server name the TLS client asked for.
        #[serde(skip_serializing_if = "Option::is_none")]
        sni: Option<String>,
        /// A database statement: `method` is its verb, `path` and
        /// `path_template` its template (never a literal), `authority` the
        /// server and database; this says the rest.
        #[serde(skip_serializing_if = "Option::is_none")]
        db: Option<Box<crate::db::DbCall>>,
    },
    /// A TLS ClientHello sent on a connection the process opened: names
    /// the destination of any TLS client, hookable or not.
    TlsClientHello {
        fd: i32,
        #[serde(skip_serializing_if = "Option::is_none")]
        daddr: Option<IpAddr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        dport: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sni: Option<String>,
        alpn: Vec<String>,
    },
    /// An agent did something its baseline says it never does.
    Finding {
        rule: &'static str,
        /// low, medium, high, critical.
        severity: &'static str,
        /// One sentence for the analyst, with the numbers.
        summary: String,
        /// "METHOD authority path_template" of the call.
        endpoint: String,
        count: u64,
        baseline_sessions: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        credential_fingerprint: Option<String>,
        /// The tool call of the agent's model that asked for the call.
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_call: Option<crate::agents::ToolRef>,
        /// `seq` of the api_call event it is about.
        call_seq: u64,
        /// The agent's mode when it was found (learn, monitor, enforce):
        /// whether the response policy's action is done or only reported.
        mode: &'static str,
        /// The policy entry that applied.
        #[serde(skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
        /// The response the policy file gives this finding.
        #[serde(skip_serializing_if = "Option::is_none")]
        response: Option<&'static str>,
    },
    /// An agent identity changed mode (learn, monitor, enforce): learning
    /// ended, an operator pinned one, or the policy did.
    Mode {
        agent_id: String,
        agent_name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<&'static str>,
        to: &'static str,
        why: String,
    },
    /// Something was done (or would be, in monitor mode) to a process:
    /// isolate, release, kill. Automatic or manual, with who and why.
    Action {
        /// isolate, isolate_tree, release, kill, kill_tree.
        action: &'static str,
        /// done, would (monitor mode: a dry run), refused, failed.
        outcome: &'static str,
        /// "policy" or the operator interface (e.g. "cli uid 0").
        by: String,
        why: String,
        /// The processes acted on (pid, start ticks).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pids: Vec<(u32, u64)>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// `seq` of the finding that triggered it (automatic response).
        #[serde(skip_serializing_if = "Option::is_none")]
        finding_seq: Option<u64>,
        /// The hold a decision answers.
        #[serde(skip_serializing_if = "Option::is_none")]
        hold_id: Option<u64>,
    },
    /// A held agent's process was stopped in the kernel at an
    /// irreversible request, waiting for a person's decision.
    Held {
        hold_id: u64,
        agent: String,
        pattern: String,
        method: String,
        authority: String,
        path: String,
        /// Request line, headers and body start, secrets redacted.
        head: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_call: Option<String>,
        trail: Vec<String>,
        timeout_secs: u64,
        on_timeout: &'static str,
        stopped: bool,
        /// "request" (stopped before a matching request's bytes) or
        /// "connection" (stopped at a new TLS connection to a held host,
        /// for a client whose requests cannot be seen: coarser).
        level: &'static str,
    },
    /// An armed process was killed in the kernel at the TLS write of a
    /// request matching a deny pattern: the request never left.
    Blocked {
        /// The armed agent (name or id, as configured).
        agent: String,
        /// The deny pattern it matched, "METHOD /path-prefix".
        pattern: String,
        /// TLS connection object of the write.
        connection: String,
        /// False if the kernel could not queue SIGKILL.
        killed: bool,
    },
    /// Captured bytes of a connection could not be understood (reported
    /// once per connection; `http_parse_errors` counts them all).
    ParseError {
        protocol: &'static str,
        /// What was wrong; never the bytes themselves.
        error: String,
        connection: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        daddr: Option<IpAddr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        dport: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sni: Option<String>,
    },
}

impl Detail {
    pub fn kind(&self) -> &'static str {
        match self {
            Detail::Exec { .. } => "exec",
            Detail::Fork { .. } => "fork",
            Detail::Exit { .. } => "exit",
            Detail::Connect { .. } => "connect",
            Detail::TlsClientHello { .. } => "tls_client_hello",
            Detail::ApiCall { .. } => "api_call",
            Detail::ParseError { .. } => "parse_error",
            Detail::Finding { .. } => "finding",
            Detail::Mode { .. } => "mode",
            Detail::Action { .. } => "action",
            Detail::Blocked { .. } => "blocked",
            Detail::Held { .. } => "held",
        }
    }
}

/// Turns a decoded record into an event, updating the process table. TLS
/// plaintext is not an event of its own (it holds secrets): the stream
/// layer turns it into API calls, so it yields None here.
pub fn from_record(rec: &Record, procs: &mut ProcessTable, clock: &Clock) -> Option<Event> {
    let header = *rec.header();
    let (process, detail) = match rec {
        Record::Exec(r) => {
            let p = procs.on_exec(r);
            let credentials = p.held.clone();
            let filename = String::from_utf8_lossy(
                &r.filename[..usize::from(r.filename_len).min(r.filename.len())],
            )
            .into_owned();
            (
                p,
                Detail::Exec {
                    filename,
                    filename_truncated: r.filename_truncated != 0,
                    args_truncated: r.args_truncated != 0,
                    credentials,
                },
            )
        }
        Record::Fork(r) => {
            let (parent, _child) = procs.on_fork(r);
            (
                parent,
                Detail::Fork {
                    child_pid: r.child_tgid,
                    child_start_ticks: ns_to_ticks(r.child_start_ns),
                },
            )
        }
        Record::Exit(r) => {
            let p = procs.on_exit(r);
            // wait(2) encoding: low 7 bits = terminating signal, else the
            // exit status is in bits 8..16.
            let sig = r.exit_code & 0x7f;
            let detail = if sig == 0 {
                Detail::Exit {
                    exit_code: Some((r.exit_code >> 8) & 0xff),
                    signal: None,
                }
            } else {
                Detail::Exit {
                    exit_code: None,
                    signal: Some(sig),
                }
            };
            (p, detail)
        }
        Record::Connect(r) => (procs.resolve(&r.header), connect_detail(r)),
        // Plaintext and first bytes: the stream layers handle them.
        Record::TlsData(_) | Record::SockData(_) | Record::TlsBind(_) | Record::Blocked(_) => {
            return None;
        }
    };
    Some(Event::new(clock, &header, process, detail))
}

impl Event {
    /// An event at kernel time `ktime_ns` by thread `tid`.
    pub fn at(
        clock: &Clock,
        ktime_ns: u64,
        tid: u32,
        process: Arc<Process>,
        detail: Detail,
    ) -> Event {
        Event {
            seq: 0,
            time: humantime::format_rfc3339_micros(clock.to_system_time(ktime_ns)).to_string(),
            ts_unix_ns: clock.to_unix_ns(ktime_ns),
            tid,
            process,
            agent: None,
            pod: None,
            detail,
        }
    }

    pub fn new(
        clock: &Clock,
        header: &sensor_common::EventHeader,
        process: Arc<Process>,
        detail: Detail,
    ) -> Event {
        Self::at(clock, header.ktime_ns, header.tid, process, detail)
    }
}

fn connect_detail(r: &ConnectRecord) -> Detail {
    let (family, daddr) = if r.family == AF_INET {
        let a = [r.addr[0], r.addr[1], r.addr[2], r.addr[3]];
        ("ipv4", IpAddr::V4(Ipv4Addr::from(a)))
    } else {
        ("ipv6", IpAddr::V6(Ipv6Addr::from(r.addr)))
    };
    Detail::Connect {
        fd: r.fd,
        family,
        daddr,
        dport: r.port,
        result: r.ret,
        result_name: errno_name(r.ret),
    }
}

/// `ok` for 0, else the errno's symbolic name (`ECONNREFUSED`).
pub fn errno_name(ret: i32) -> String {
    if ret == 0 {
        return "ok".into();
    }
    let errno = nix::errno::Errno::from_raw(-ret);
    if errno == nix::errno::Errno::UnknownErrno {
        format!("errno {}", -ret)
    } else {
        format!("{errno:?}")
    }
}

impl Event {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"kind\":\"error\",\"error\":\"serialize: {e}\"}}"))
    }

    /// One readable line: time, kind, who, what.
    pub fn to_text(&self) -> String {
        let p = &self.process;
        let time = self.time.get(11..23).unwrap_or(&self.time);
        let mut s = format!("{time} {:<7} {}[{}]", self.detail.kind(), p.comm, p.pid);
        match &self.detail {
            Detail::Connect {
                daddr,
                dport,
                result_name,
                fd,
                ..
            } => {
                let dst = match daddr {
                    IpAddr::V6(a) => format!("[{a}]:{dport}"),
                    IpAddr::V4(a) => format!("{a}:{dport}"),
                };
                let _ = write!(s, " -> {dst} {result_name} fd={fd}");
            }
            Detail::Exec {
                filename,
                credentials,
                ..
            } => {
                let _ = write!(s, " ppid={} exec {filename}", p.ppid);
                for c in credentials {
                    let _ = write!(s, " holds {} {}", c.var, c.fingerprint);
                    if c.inherited {
                        let _ = write!(s, " (from {} [{}])", c.origin.exe, c.origin.pid);
                    }
                }
            }
            Detail::TlsClientHello {
                sni,
                alpn,
                daddr,
                dport,
                fd,
            } => {
                let _ = write!(s, " -> sni={}", sni.as_deref().unwrap_or("-"));
                if let (Some(a), Some(p)) = (daddr, dport) {
                    let _ = write!(s, " dst={}", SocketAddr::new(*a, *p));
                }
                if !alpn.is_empty() {
                    let _ = write!(s, " alpn={}", alpn.join(","));
                }
                let _ = write!(s, " fd={fd}");
            }
            Detail::ApiCall {
                method,
                authority,
                path,
                status,
                latency_ms,
                credential_fingerprint,
                daddr,
                dport,
                db,
                ..
            } => {
                if let Some(db) = db {
                    let outcome = db.outcome.map_or("-", |o| o.as_str());
                    let _ = write!(s, " {method} {authority}: {path} -> {outcome}");
                    if let Some(code) = &db.sqlstate {
                        let _ = write!(s, " {code}");
                    }
                    if let Some(rows) = db.rows {
                        let _ = write!(s, " rows={rows}");
                    }
                } else {
                    let status = status.map_or("-".to_string(), |s| s.to_string());
                    let _ = write!(s, " {method} {authority}{path} -> {status}");
                }
                if let Some(ms) = latency_ms {
                    let _ = write!(s, " {ms:.1}ms");
                }
                if let (Some(a), Some(p)) = (daddr, dport) {
                    let _ = write!(s, " dst={}", SocketAddr::new(*a, *p));
                }
                if let Some(fp) = credential_fingerprint {
                    let _ = write!(s, " cred={fp}");
                }
            }
            Detail::Finding {
                rule,
                severity,
                summary,
                mode,
                response,
                ..
            } => {
                let _ = write!(s, " {severity} {rule}: {summary} [{mode}");
                if let Some(r) = response {
                    let _ = write!(s, ", policy response {r}");
                }
                s.push(']');
            }
            Detail::Mode {
                agent_name,
                agent_id,
                from,
                to,
                why,
            } => {
                let _ = write!(
                    s,
                    " agent {agent_name} ({agent_id}) {} -> {to}: {why}",
                    from.unwrap_or("new")
                );
            }
            Detail::Blocked {
                agent,
                pattern,
                killed,
                ..
            } => {
                let _ = write!(
                    s,
                    " {pattern} by armed agent {agent}: {}",
                    if *killed {
                        "killed before the request left"
                    } else {
                        "kill FAILED"
                    }
                );
            }
            Detail::Held {
                hold_id,
                agent,
                method,
                authority,
                path,
                tool_call,
                timeout_secs,
                on_timeout,
                stopped,
                ..
            } => {
                if *stopped {
                    let _ = write!(
                        s,
                        " hold {hold_id}: agent {agent} stopped before {method} {authority}{path}"
                    );
                    if let Some(t) = tool_call {
                        let _ = write!(s, " (tool call {t})");
                    }
                    let _ = write!(
                        s,
                        "; sensor approve {hold_id} | sensor deny {hold_id} ({on_timeout} in {timeout_secs} s)"
                    );
                } else {
                    let _ = write!(
                        s,
                        " agent {agent}: {method} {authority}{path} matched a hold but the kernel could not stop it"
                    );
                }
            }
            Detail::Action {
                action,
                outcome,
                by,
                why,
                pids,
                error,
                hold_id,
                ..
            } => {
                if let Some(h) = hold_id {
                    let _ = write!(s, " hold {h}:");
                }
                let _ = write!(s, " {action} {outcome} by {by}: {why}");
                if !pids.is_empty() {
                    let list: Vec<String> = pids.iter().map(|(p, _)| p.to_string()).collect();
                    let _ = write!(s, " pids={}", list.join(","));
                }
                if let Some(e) = error {
                    let _ = write!(s, " error: {e}");
                }
            }
            Detail::ParseError {
                protocol,
                error,
                connection,
                ..
            } => {
                let _ = write!(s, " {protocol} parse error on {connection}: {error}");
            }
            Detail::Fork { child_pid, .. } => {
                let _ = write!(s, " forked {child_pid}");
            }
            Detail::Exit { exit_code, signal } => match (exit_code, signal) {
                (Some(c), _) => {
                    let _ = write!(s, " exited code={c}");
                }
                (_, Some(sig)) => {
                    let _ = write!(s, " killed by signal {sig}");
                }
                _ => {}
            },
        }
        let _ = write!(s, " | uid={}", p.uid);
        if !p.exe.is_empty() {
            let _ = write!(s, " exe={}", p.exe);
        }
        if !p.cmdline.is_empty() {
            let _ = write!(s, " cmd={:?}", shorten(&p.cmdline.join(" "), 120));
        }
        if let Some(c) = &p.container {
            let _ = write!(s, " container={}", &c.id[..12.min(c.id.len())]);
        }
        if let Some(pod) = &self.pod {
            let _ = write!(s, " pod={}/{} ({})", pod.namespace, pod.name, pod.container);
        }
        if let Some(a) = &self.agent {
            let _ = write!(s, " agent={}({})", a.name, a.id);
        }
        // For a person's terminal: what a process sent is shown, not acted on.
        crate::redact::visible(&s).into_owned()
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::ProcsConfig, decode::tests::connect};

    #[test]
    fn connect_event_json_and_text() {
        let mut procs = ProcessTable::new(&ProcsConfig::default());
        let clock = Clock::new();
        let rec = Record::Connect(connect(4_000_300, 8443, -111));
        let ev = from_record(&rec, &mut procs, &clock).unwrap();
        let v: serde_json::Value = serde_json::from_str(&ev.to_json()).unwrap();
        assert_eq!(v["kind"], "connect");
        assert_eq!(v["daddr"], "127.0.0.1");
        assert_eq!(v["dport"], 8443);
        assert_eq!(v["result"], -111);
        assert_eq!(v["result_name"], "ECONNREFUSED");
        assert_eq!(v["process"]["pid"], 4_000_300);
        assert_eq!(v["process"]["comm"], "curl");
        // The line whole: the time of day (ms), then what happened.
        let t = ev.to_text();
        let time = &v["time"].as_str().unwrap()[11..23];
        assert_eq!(
            t,
            format!("{time} connect curl[4000300] -> 127.0.0.1:8443 ECONNREFUSED fd=3 | uid=1000")
        );
    }

    #[test]
    fn ipv6_destination() {
        let mut r = connect(4_000_301, 80, 0);
        r.family = sensor_common::AF_INET6;
        r.addr = Ipv6Addr::LOCALHOST.octets();
        let Detail::Connect {
            daddr,
            family,
            result_name,
            ..
        } = connect_detail(&r)
        else {
            unreachable!()
        };
        assert_eq!(
            (daddr.to_string().as_str(), family, result_name.as_str()),
            ("::1", "ipv6", "ok")
        );
        let mut procs = ProcessTable::new(&ProcsConfig::default());
        let ev = from_record(&Record::Connect(r), &mut procs, &Clock::new()).unwrap();
        let t = ev.to_text();
        assert_eq!(
            t[12..],
            *" connect curl[4000301] -> [::1]:80 ok fd=3 | uid=1000",
            "{t}"
        );
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(0), "ok");
        assert_eq!(errno_name(-115), "EINPROGRESS");
        assert_eq!(errno_name(-1), "EPERM");
        assert_eq!(errno_name(-100_000), "errno 100000");
    }

    #[test]
    fn exit_status_decoding() {
        let mut procs = ProcessTable::new(&ProcsConfig::default());
        let clock = Clock::new();
        let mk = |status| {
            Record::Exit(sensor_common::ExitRecord {
                header: crate::decode::tests::header(sensor_common::EventKind::Exit, 4_000_400),
                exit_code: status,
                _pad: 0,
            })
        };
        let v = |e: Event| serde_json::to_value(&e).unwrap();
        let ok = v(from_record(&mk(3 << 8), &mut procs, &clock).unwrap());
        assert_eq!(ok["exit_code"], 3);
        let killed = v(from_record(&mk(9), &mut procs, &clock).unwrap());
        assert_eq!(killed["signal"], 9);
        assert!(killed.get("exit_code").is_none());
    }
}
