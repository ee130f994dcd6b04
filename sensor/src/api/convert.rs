//! Events as the API sends them. The source is an event's JSON form, the
//! same text the audit store keeps, so live events and replayed ones go
//! through one conversion and cannot drift apart.

use sensor_proto::pbjson_types::Timestamp;
use sensor_proto::v1 as pb;
use serde_json::Value;

use super::bus::Published;

/// What the API adds to every event: where it was seen.
#[derive(Clone, Debug)]
pub struct Origin {
    pub node: String,
    /// /proc/sys/kernel/random/boot_id: with pid and start time it names a
    /// process uniquely across pid reuse and reboots.
    pub boot_id: String,
}

impl Origin {
    pub fn of_this_host() -> Self {
        let node = node_name(
            std::env::var("NODE_NAME").ok(),
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok()),
        );
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Self { node, boot_id }
    }

    pub fn process_id(&self, pid: u64, start_ticks: u64) -> String {
        format!("{}:{pid}:{start_ticks}", self.boot_id)
    }
}

/// The node's name: `NODE_NAME` when set (a Kubernetes pod's hostname is
/// the pod's name, so the DaemonSet passes `spec.nodeName` through the
/// downward API), else the hostname.
fn node_name(env: Option<String>, hostname: Option<String>) -> String {
    env.map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or(hostname)
        .unwrap_or_default()
}

/// An event as published on the bus (its JSON text).
pub fn published(p: &Published, origin: &Origin) -> pb::Event {
    match serde_json::from_str::<Value>(&p.json) {
        Ok(v) => from_json(&v, origin),
        Err(e) => error_event(origin, format!("event {} could not be read: {e}", p.seq)),
    }
}

/// The severity of an event kind, until findings bring their own.
pub fn severity(kind: &str) -> pb::Severity {
    match kind {
        "parse_error" => pb::Severity::Low,
        // A mode change decides whether findings are acted on.
        "lagged" | "error" | "mode" => pb::Severity::Medium,
        "action" | "blocked" => pb::Severity::High,
        _ => pb::Severity::Info,
    }
}

pub fn error_event(origin: &Origin, message: String) -> pb::Event {
    pb::Event {
        time: Some(now()),
        node: origin.node.clone(),
        kind: "error".into(),
        severity: severity("error") as i32,
        payload: Some(pb::event::Payload::Error(pb::Error { message })),
        ..Default::default()
    }
}

pub fn lagged_event(origin: &Origin, missed: u64) -> pb::Event {
    pb::Event {
        time: Some(now()),
        node: origin.node.clone(),
        kind: "lagged".into(),
        severity: severity("lagged") as i32,
        payload: Some(pb::event::Payload::Lagged(pb::Lagged { missed })),
        ..Default::default()
    }
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn text(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or_default().into()
}

fn num(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or_default()
}

fn int(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(Value::as_i64).unwrap_or_default()
}

fn strings(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn opt_u32(v: &Value, k: &str) -> Option<u32> {
    v.get(k)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

fn llm_call(l: &Value) -> pb::LlmCall {
    pb::LlmCall {
        model: text(l, "model"),
        stream: l["stream"].as_bool().unwrap_or(false),
        input_tokens: l.get("input_tokens").and_then(Value::as_u64),
        output_tokens: l.get("output_tokens").and_then(Value::as_u64),
        tool_calls: l["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| pb::ToolCall {
                id: text(t, "id"),
                name: text(t, "name"),
                arguments_bytes: num(t, "arguments_bytes"),
            })
            .collect(),
        tool_results: num(l, "tool_results"),
        truncated: l["truncated"].as_bool().unwrap_or(false),
    }
}

fn pod(p: &Value) -> pb::Pod {
    pb::Pod {
        name: text(p, "name"),
        namespace: text(p, "namespace"),
        labels: p["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        workload: text(p, "workload"),
        container_name: text(p, "container"),
        image: text(p, "image"),
    }
}

fn process(p: &Value, agent: &Value, origin: &Origin) -> pb::Process {
    let pid = num(p, "pid");
    let start = num(p, "start_ticks");
    let container = p.get("container").unwrap_or(&Value::Null);
    pb::Process {
        pid: pid as u32,
        start_ticks: start,
        process_id: origin.process_id(pid, start),
        ppid: num(p, "ppid") as u32,
        uid: num(p, "uid") as u32,
        comm: text(p, "comm"),
        exe: text(p, "exe"),
        cmdline: strings(p, "cmdline"),
        cgroup: text(p, "cgroup"),
        container_id: text(container, "id"),
        container_runtime: text(container, "runtime"),
        pod: None,
        partial: p.get("partial").and_then(Value::as_bool).unwrap_or(false),
        agent_id: text(agent, "id"),
        agent_name: text(agent, "name"),
        agent_session: text(agent, "session"),
    }
}

/// One stored or live event (its JSON form) as the API's message.
pub fn from_json(v: &Value, origin: &Origin) -> pb::Event {
    use pb::event::Payload;
    let kind = text(v, "kind");
    let ns = num(v, "ts_unix_ns");
    let payload = match kind.as_str() {
        "exec" => Some(Payload::ProcessEvent(pb::ProcessEvent {
            change: Some(pb::process_event::Change::Exec(pb::Exec {
                filename: text(v, "filename"),
                filename_truncated: v["filename_truncated"].as_bool().unwrap_or(false),
                args_truncated: v["args_truncated"].as_bool().unwrap_or(false),
                credentials: v["credentials"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| pb::HeldCredential {
                        var: text(c, "var"),
                        fingerprint: text(c, "fingerprint"),
                        kind: text(c, "kind"),
                        inherited: c["inherited"].as_bool().unwrap_or(false),
                        hops: num(c, "hops") as u32,
                        origin_pid: num(&c["origin"], "pid") as u32,
                        origin_exe: text(&c["origin"], "exe"),
                        origin_cmdline: text(&c["origin"], "cmdline"),
                    })
                    .collect(),
            })),
        })),
        "fork" => Some(Payload::ProcessEvent(pb::ProcessEvent {
            change: Some(pb::process_event::Change::Fork(pb::Fork {
                child_pid: num(v, "child_pid") as u32,
                child_start_ticks: num(v, "child_start_ticks"),
            })),
        })),
        "exit" => Some(Payload::ProcessEvent(pb::ProcessEvent {
            change: Some(pb::process_event::Change::Exit(pb::Exit {
                exit_code: v.get("exit_code").and_then(Value::as_i64).map(|c| c as i32),
                signal: v.get("signal").and_then(Value::as_i64).map(|c| c as i32),
            })),
        })),
        "connect" => Some(Payload::Connect(pb::Connect {
            fd: int(v, "fd") as i32,
            family: text(v, "family"),
            daddr: text(v, "daddr"),
            dport: num(v, "dport") as u32,
            result: int(v, "result") as i32,
            result_name: text(v, "result_name"),
        })),
        "api_call" => Some(Payload::ApiCall(pb::ApiCall {
            method: text(v, "method"),
            authority: text(v, "authority"),
            path: text(v, "path"),
            path_template: text(v, "path_template"),
            status: opt_u32(v, "status"),
            request_bytes: num(v, "request_bytes"),
            response_bytes: num(v, "response_bytes"),
            latency_ms: v.get("latency_ms").and_then(Value::as_f64),
            http_version: text(v, "http_version"),
            transport: text(v, "transport"),
            tls_library: text(v, "tls_library"),
            credential_fingerprint: text(v, "credential_fingerprint"),
            connection: text(v, "connection"),
            daddr: text(v, "daddr"),
            dport: opt_u32(v, "dport"),
            sni: text(v, "sni"),
            provider: text(v, "provider"),
            llm: v.get("llm").map(llm_call),
            tool_call: v.get("tool_call").map(|t| pb::ToolRef {
                id: text(t, "id"),
                name: text(t, "name"),
            }),
            unrequested: v["unrequested"].as_bool().unwrap_or(false),
            db: v.get("db").map(|d| pb::DbCall {
                engine: text(d, "engine"),
                database: text(d, "database"),
                user: text(d, "user"),
                protocol: text(d, "protocol"),
                kind: text(d, "kind"),
                class: text(d, "class"),
                objects: strings(d, "objects"),
                unbounded_write: d["unbounded_write"].as_bool().unwrap_or(false),
                truncated: d["truncated"].as_bool().unwrap_or(false),
                outcome: text(d, "outcome"),
                rows: d.get("rows").and_then(Value::as_u64),
                sqlstate: text(d, "sqlstate"),
            }),
        })),
        "tls_client_hello" => Some(Payload::TlsClientHello(pb::TlsClientHello {
            fd: int(v, "fd") as i32,
            daddr: text(v, "daddr"),
            dport: opt_u32(v, "dport"),
            sni: text(v, "sni"),
            alpn: strings(v, "alpn"),
        })),
        "finding" => Some(Payload::Finding(pb::Finding {
            rule: text(v, "rule"),
            summary: text(v, "summary"),
            endpoint: text(v, "endpoint"),
            count: num(v, "count"),
            baseline_sessions: num(v, "baseline_sessions"),
            credential_fingerprint: text(v, "credential_fingerprint"),
            tool_call: v.get("tool_call").map(|t| pb::ToolRef {
                id: text(t, "id"),
                name: text(t, "name"),
            }),
            call_seq: num(v, "call_seq"),
            mode: text(v, "mode"),
            policy: text(v, "policy"),
            response: text(v, "response"),
        })),
        "mode" => Some(Payload::Mode(pb::ModeChange {
            agent_id: text(v, "agent_id"),
            agent_name: text(v, "agent_name"),
            from: text(v, "from"),
            to: text(v, "to"),
            why: text(v, "why"),
        })),
        "blocked" => Some(Payload::Blocked(pb::Blocked {
            agent: text(v, "agent"),
            pattern: text(v, "pattern"),
            connection: text(v, "connection"),
            killed: v["killed"].as_bool().unwrap_or(false),
        })),
        "action" => Some(Payload::Action(pb::Action {
            action: text(v, "action"),
            outcome: text(v, "outcome"),
            by: text(v, "by"),
            why: text(v, "why"),
            targets: v["pids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| pb::ProcessRef {
                            pid: p[0].as_u64().unwrap_or(0) as u32,
                            start_ticks: p[1].as_u64().unwrap_or(0),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            error: text(v, "error"),
            finding_seq: v["finding_seq"].as_u64(),
            hold_id: v["hold_id"].as_u64(),
        })),
        "held" => Some(Payload::Held(pb::Held {
            hold_id: num(v, "hold_id"),
            agent: text(v, "agent"),
            pattern: text(v, "pattern"),
            method: text(v, "method"),
            authority: text(v, "authority"),
            path: text(v, "path"),
            head: text(v, "head"),
            tool_call: text(v, "tool_call"),
            trail: strings(v, "trail"),
            timeout_secs: num(v, "timeout_secs") as u32,
            on_timeout: text(v, "on_timeout"),
            stopped: v["stopped"].as_bool().unwrap_or(false),
            level: text(v, "level"),
        })),
        "parse_error" => Some(Payload::ParseError(pb::ParseError {
            protocol: text(v, "protocol"),
            error: text(v, "error"),
            connection: text(v, "connection"),
            daddr: text(v, "daddr"),
            dport: opt_u32(v, "dport"),
            sni: text(v, "sni"),
        })),
        other => {
            return error_event(origin, format!("event of unknown kind {other:?}"));
        }
    };
    pb::Event {
        time: Some(Timestamp {
            seconds: (ns / 1_000_000_000) as i64,
            nanos: (ns % 1_000_000_000) as i32,
        }),
        node: origin.node.clone(),
        seq: num(v, "seq"),
        tid: num(v, "tid") as u32,
        process: v.get("process").map(|p| {
            let mut pr = process(p, v.get("agent").unwrap_or(&Value::Null), origin);
            pr.pod = v.get("pod").map(pod);
            pr
        }),
        severity: match v["severity"].as_str() {
            Some("low") => pb::Severity::Low as i32,
            Some("medium") => pb::Severity::Medium as i32,
            Some("high") => pb::Severity::High as i32,
            Some("critical") => pb::Severity::Critical as i32,
            _ => severity(&kind) as i32,
        },
        kind,
        payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            node: "node-a".into(),
            boot_id: "b00t".into(),
        }
    }

    #[test]
    fn node_name_prefers_the_downward_api() {
        let host = || Some("sensor-x7k2p".to_string());
        assert_eq!(node_name(Some("worker-3".into()), host()), "worker-3");
        assert_eq!(node_name(Some(" ".into()), host()), "sensor-x7k2p");
        assert_eq!(node_name(None, host()), "sensor-x7k2p");
        assert_eq!(node_name(None, None), "");
    }

    /// An api_call as the pipeline emits it (its JSON), every field set:
    /// each arrives, under the name the API gives it.
    #[test]
    fn api_call_keeps_every_field() {
        use crate::{agents, event, pods::PodContainer, procs};
        use std::sync::Arc;
        let ev = event::Event {
            seq: 77,
            time: "2026-11-22T10:00:00.000000123Z".into(),
            ts_unix_ns: 1_795_000_000_000_000_123,
            tid: 12,
            process: Arc::new(procs::Process {
                pid: 10,
                start_ticks: 99,
                ppid: 4,
                uid: 1000,
                comm: "python3".into(),
                exe: "/usr/bin/python3".into(),
                cmdline: vec!["python3".into(), "bot.py".into()],
                cgroup: Some("/kubepods/pod1/ab".into()),
                cgroup_id: 5,
                container: Some(procs::container::ContainerInfo {
                    id: "ab".into(),
                    runtime: "containerd",
                    pod_uid: None,
                }),
                partial: true,
                held: Vec::new(),
            }),
            agent: Some(Arc::new(agents::AgentTag {
                id: "agt-1".into(),
                name: "bot".into(),
                session: "sess-10-99".into(),
                key: (10, 99),
                policy: None,
            })),
            pod: Some(Arc::new(PodContainer {
                namespace: "shop".into(),
                name: "bot-7d9c".into(),
                uid: "u-1".into(),
                workload: Some("Deployment/bot".into()),
                container: "agent".into(),
                image: "registry.example/bot:1".into(),
                labels: [("app".to_string(), "bot".to_string())].into(),
            })),
            detail: event::Detail::ApiCall {
                provider: Some("openai"),
                llm: Some(Box::new(agents::llm::LlmSummary {
                    model: Some("gpt-4o".into()),
                    stream: true,
                    input_tokens: Some(12),
                    output_tokens: Some(3),
                    tool_calls: vec![agents::llm::ToolCall {
                        id: "call_2".into(),
                        name: "search".into(),
                        arguments_bytes: 40,
                    }],
                    tool_results: 1,
                    truncated: true,
                })),
                tool_call: Some(agents::ToolRef {
                    id: "call_1".into(),
                    name: "run".into(),
                }),
                unrequested: true,
                method: "POST".into(),
                authority: "vendor.example".into(),
                path: "/v1/orders/8".into(),
                path_template: "/v1/orders/{id}".into(),
                status: Some(201),
                request_bytes: 120,
                response_bytes: 80,
                latency_ms: Some(1.5),
                http_version: "HTTP/2".into(),
                transport: "tls",
                tls_library: Some("openssl"),
                credential_fingerprint: Some("Bearer fp:0123456789ab".into()),
                connection: "0x1".into(),
                daddr: Some("127.0.0.1".parse().unwrap()),
                dport: Some(443),
                sni: Some("vendor.example".into()),
                // Every field, though no HTTP call has one.
                db: Some(Box::new(crate::db::DbCall {
                    engine: "postgresql",
                    database: Some("prod".into()),
                    user: Some("verifier".into()),
                    protocol: "extended",
                    kind: "drop",
                    class: "ddl",
                    objects: vec!["staging_sessions".into()],
                    unbounded_write: true,
                    truncated: true,
                    outcome: Some(crate::db::Outcome::Error),
                    rows: Some(3),
                    sqlstate: Some("42P01".into()),
                })),
            },
        };
        let v: Value = serde_json::from_str(&ev.to_json()).unwrap();
        let s = |x: &str| x.to_string();
        let want = pb::Event {
            time: Some(Timestamp {
                seconds: 1_795_000_000,
                nanos: 123,
            }),
            node: s("node-a"),
            seq: 77,
            tid: 12,
            process: Some(pb::Process {
                pid: 10,
                start_ticks: 99,
                process_id: s("b00t:10:99"),
                ppid: 4,
                uid: 1000,
                comm: s("python3"),
                exe: s("/usr/bin/python3"),
                cmdline: vec![s("python3"), s("bot.py")],
                cgroup: s("/kubepods/pod1/ab"),
                container_id: s("ab"),
                container_runtime: s("containerd"),
                pod: Some(pb::Pod {
                    name: s("bot-7d9c"),
                    namespace: s("shop"),
                    labels: [(s("app"), s("bot"))].into(),
                    workload: s("Deployment/bot"),
                    container_name: s("agent"),
                    image: s("registry.example/bot:1"),
                }),
                partial: true,
                agent_id: s("agt-1"),
                agent_name: s("bot"),
                agent_session: s("sess-10-99"),
            }),
            severity: pb::Severity::Info as i32,
            kind: s("api_call"),
            payload: Some(pb::event::Payload::ApiCall(pb::ApiCall {
                method: s("POST"),
                authority: s("vendor.example"),
                path: s("/v1/orders/8"),
                path_template: s("/v1/orders/{id}"),
                status: Some(201),
                request_bytes: 120,
                response_bytes: 80,
                latency_ms: Some(1.5),
                http_version: s("HTTP/2"),
                transport: s("tls"),
                tls_library: s("openssl"),
                credential_fingerprint: s("Bearer fp:0123456789ab"),
                connection: s("0x1"),
                daddr: s("127.0.0.1"),
                dport: Some(443),
                sni: s("vendor.example"),
                provider: s("openai"),
                llm: Some(pb::LlmCall {
                    model: s("gpt-4o"),
                    stream: true,
                    input_tokens: Some(12),
                    output_tokens: Some(3),
                    tool_calls: vec![pb::ToolCall {
                        id: s("call_2"),
                        name: s("search"),
                        arguments_bytes: 40,
                    }],
                    tool_results: 1,
                    truncated: true,
                }),
                tool_call: Some(pb::ToolRef {
                    id: s("call_1"),
                    name: s("run"),
                }),
                unrequested: true,
                db: Some(pb::DbCall {
                    engine: s("postgresql"),
                    database: s("prod"),
                    user: s("verifier"),
                    protocol: s("extended"),
                    kind: s("drop"),
                    class: s("ddl"),
                    objects: vec![s("staging_sessions")],
                    unbounded_write: true,
                    truncated: true,
                    outcome: s("error"),
                    rows: Some(3),
                    sqlstate: s("42P01"),
                }),
            })),
        };
        assert_eq!(from_json(&v, &origin()), want);
    }

    #[test]
    fn absent_status_stays_absent_and_unknown_kinds_are_errors() {
        let v = serde_json::json!({"kind": "api_call", "ts_unix_ns": 1, "method": "GET"});
        let Some(pb::event::Payload::ApiCall(c)) = from_json(&v, &origin()).payload else {
            panic!("payload")
        };
        assert_eq!(c.status, None);
        let e = from_json(&serde_json::json!({"kind": "nope"}), &origin());
        assert_eq!(e.kind, "error");
        assert_eq!(e.severity, pb::Severity::Medium as i32);
    }
}
