//! One event as one OTLP log record, with stable attribute names.
//!
//! Names follow the OpenTelemetry semantic conventions where one exists
//! (`process.pid`, `http.request.method`, `server.address`, `url.path`,
//! `gen_ai.request.model`, …) and are `sensor.*` otherwise. The body is
//! the event's JSON, the same text stdout, the file export and the audit
//! store carry, so nothing is lost for fields without an attribute. The
//! list is documented in the README ("Export"): renaming one breaks the
//! SOC's queries, so the unit tests pin them.

use std::net::IpAddr;

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, SeverityNumber},
    resource::v1::Resource,
};

use crate::{
    api::convert::Origin,
    event::{Detail, Event},
};

/// The sensor's own identity on every export: which sensor on which host.
pub fn resource(origin: &Origin) -> Resource {
    let mut a = Attrs::default();
    a.str("service.name", "sensor");
    a.str("service.version", env!("CARGO_PKG_VERSION"));
    a.str("host.name", &origin.node);
    // The machine id names the host even when hostnames repeat (cloned
    // VMs, pods); absent in some containers.
    if let Ok(id) = std::fs::read_to_string("/etc/machine-id") {
        a.str("host.id", id.trim());
    }
    a.str("os.type", "linux");
    // With pid and start ticks it names a process across pid reuse
    // (`sensor.process.id`).
    a.str("sensor.boot_id", &origin.boot_id);
    Resource {
        attributes: a.0,
        ..Default::default()
    }
}

pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "sensor".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// The sensor's severity word for an event: a finding's own, else the
/// one the API gives its kind.
fn level(ev: &Event) -> &'static str {
    if let Detail::Finding { severity, .. } = &ev.detail {
        return severity;
    }
    use sensor_proto::v1::Severity as S;
    match crate::api::convert::severity(ev.detail.kind()) {
        S::Low => "low",
        S::Medium => "medium",
        S::High => "high",
        S::Critical => "critical",
        S::Info | S::Unspecified => "info",
    }
}

fn severity_number(level: &str) -> SeverityNumber {
    match level {
        "low" => SeverityNumber::Warn,
        "medium" => SeverityNumber::Warn3,
        "high" => SeverityNumber::Error,
        "critical" => SeverityNumber::Fatal,
        _ => SeverityNumber::Info,
    }
}

/// `json` is `ev.to_json()`, already made by the pipeline.
pub fn log_record(ev: &Event, json: &str, observed_unix_ns: u64) -> LogRecord {
    let level = level(ev);
    LogRecord {
        time_unix_nano: ev.ts_unix_ns,
        observed_time_unix_nano: observed_unix_ns,
        severity_number: severity_number(level) as i32,
        severity_text: level.to_string(),
        event_name: format!("sensor.{}", ev.detail.kind()),
        body: Some(AnyValue {
            value: Some(Value::StringValue(json.to_string())),
        }),
        attributes: attributes(ev),
        ..Default::default()
    }
}

#[derive(Default)]
struct Attrs(Vec<KeyValue>);

impl Attrs {
    fn put(&mut self, key: &str, value: Value) {
        self.0.push(KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        });
    }
    fn str(&mut self, key: &str, v: &str) {
        if !v.is_empty() {
            self.put(key, Value::StringValue(v.into()));
        }
    }
    fn int(&mut self, key: &str, v: impl Into<i64>) {
        self.put(key, Value::IntValue(v.into()));
    }
    /// u64 counters and sequence numbers; OTLP ints are signed.
    fn uint(&mut self, key: &str, v: u64) {
        self.put(key, Value::IntValue(i64::try_from(v).unwrap_or(i64::MAX)));
    }
    fn bool(&mut self, key: &str, v: bool) {
        self.put(key, Value::BoolValue(v));
    }
    fn strs(&mut self, key: &str, v: &[String]) {
        let values = v
            .iter()
            .map(|s| AnyValue {
                value: Some(Value::StringValue(s.clone())),
            })
            .collect();
        self.put(key, Value::ArrayValue(ArrayValue { values }));
    }
    fn peer(&mut self, daddr: Option<&IpAddr>, dport: Option<u16>) {
        if let Some(a) = daddr {
            self.str("network.peer.address", &a.to_string());
            self.str("network.type", if a.is_ipv4() { "ipv4" } else { "ipv6" });
        }
        if let Some(p) = dport {
            self.int("network.peer.port", p);
        }
    }
    fn tool_call(&mut self, t: Option<&crate::agents::ToolRef>) {
        if let Some(t) = t {
            self.str("gen_ai.tool.call.id", &t.id);
            self.str("gen_ai.tool.name", &t.name);
        }
    }
    fn authority(&mut self, authority: &str) {
        let (host, port) = split_authority(authority);
        self.str("server.address", host);
        if let Some(p) = port {
            self.int("server.port", p);
        }
    }
    fn path(&mut self, path: &str) {
        // Secret query values were masked when the event was made.
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        self.str("url.path", p);
        self.str("url.query", q);
    }
}

/// "host:port", "[v6]:port" or "host" → (host, port).
fn split_authority(a: &str) -> (&str, Option<u16>) {
    if let Some(rest) = a.strip_prefix('[')
        && let Some((host, tail)) = rest.split_once(']')
    {
        return (host, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match a.rsplit_once(':') {
        // A bare IPv6 address has more than one colon and no port.
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (a, None),
        },
        _ => (a, None),
    }
}

fn attributes(ev: &Event) -> Vec<KeyValue> {
    let mut a = Attrs::default();
    a.str("sensor.event.kind", ev.detail.kind());
    a.uint("sensor.event.seq", ev.seq);
    a.int("thread.id", ev.tid);
    let p = &ev.process;
    a.int("process.pid", p.pid);
    a.uint("sensor.process.start_ticks", p.start_ticks);
    a.int("process.parent_pid", p.ppid);
    a.int("process.user.id", p.uid);
    a.str("process.command", &p.comm);
    a.str("process.executable.path", &p.exe);
    if !p.cmdline.is_empty() {
        // Credentials were redacted when the process entered the table.
        a.str("process.command_line", &p.cmdline.join(" "));
    }
    if let Some(c) = &p.container {
        a.str("container.id", &c.id);
        a.str("container.runtime.name", c.runtime);
        if let Some(pod) = &c.pod_uid {
            a.str("k8s.pod.uid", pod);
        }
    }
    if let Some(pod) = &ev.pod {
        a.str("k8s.namespace.name", &pod.namespace);
        a.str("k8s.pod.name", &pod.name);
        a.str("k8s.container.name", &pod.container);
        a.str("container.image.name", &pod.image);
        // k8s.deployment.name, k8s.statefulset.name, k8s.cronjob.name…
        if let Some((kind, name)) = pod.workload.as_deref().and_then(|w| w.split_once('/')) {
            a.str(&format!("k8s.{}.name", kind.to_ascii_lowercase()), name);
        }
    }
    if let Some(g) = &ev.agent {
        a.str("sensor.agent.id", &g.id);
        a.str("sensor.agent.name", &g.name);
        a.str("sensor.agent.session", &g.session);
    }
    match &ev.detail {
        Detail::Exec {
            filename,
            args_truncated,
            credentials,
            ..
        } => {
            a.str("sensor.exec.filename", filename);
            a.bool("sensor.exec.args_truncated", *args_truncated);
            if !credentials.is_empty() {
                // "VAR fp:… (inherited from pid N)", one per credential.
                let held: Vec<String> = credentials
                    .iter()
                    .map(|c| match c.inherited {
                        true => format!(
                            "{} {} (inherited from pid {})",
                            c.var, c.fingerprint, c.origin.pid
                        ),
                        false => format!("{} {}", c.var, c.fingerprint),
                    })
                    .collect();
                a.str("sensor.exec.credentials", &held.join(", "));
            }
        }
        Detail::Fork { child_pid, .. } => a.int("sensor.fork.child_pid", *child_pid),
        Detail::Exit { exit_code, signal } => {
            if let Some(c) = exit_code {
                a.int("process.exit.code", *c);
            }
            if let Some(s) = signal {
                a.int("sensor.exit.signal", *s);
            }
        }
        Detail::Connect {
            fd,
            daddr,
            dport,
            result,
            result_name,
            ..
        } => {
            a.peer(Some(daddr), Some(*dport));
            a.int("sensor.fd", *fd);
            a.int("sensor.connect.result", *result);
            a.str("sensor.connect.result_name", result_name);
        }
        Detail::TlsClientHello {
            fd,
            daddr,
            dport,
            sni,
            alpn,
        } => {
            a.peer(daddr.as_ref(), *dport);
            a.int("sensor.fd", *fd);
            if let Some(s) = sni {
                a.str("tls.client.server_name", s);
                a.str("server.address", s);
            }
            if !alpn.is_empty() {
                a.strs("sensor.tls.alpn", alpn);
            }
        }
        Detail::ApiCall {
            provider,
            llm,
            tool_call,
            unrequested,
            method,
            authority,
            path,
            path_template,
            status,
            request_bytes,
            response_bytes,
            latency_ms,
            http_version,
            transport,
            tls_library,
            credential_fingerprint,
            connection,
            daddr,
            dport,
            sni,
            db,
        } => {
            if let Some(db) = db {
                // OpenTelemetry's database conventions, not HTTP's: the
                // template is the sanitised query text they ask for.
                a.str("db.system.name", db.engine);
                a.str("db.namespace", db.database.as_deref().unwrap_or_default());
                a.str("db.operation.name", method);
                a.str("db.query.text", path);
                a.strs("sensor.db.objects", &db.objects);
                if let Some(c) = db.objects.first() {
                    a.str("db.collection.name", c);
                }
                a.str("sensor.db.user", db.user.as_deref().unwrap_or_default());
                a.str("sensor.db.class", db.class);
                if let Some(o) = db.outcome {
                    a.str("sensor.db.outcome", o.as_str());
                }
                if let Some(code) = &db.sqlstate {
                    a.str("db.response.status_code", code);
                }
                if let Some(n) = db.rows {
                    a.uint("db.response.returned_rows", n);
                }
                if let Some(ms) = latency_ms {
                    a.put("sensor.db.latency_ms", Value::DoubleValue(*ms));
                }
                let _ = (authority, path_template, status, http_version);
            } else {
                a.str("http.request.method", method);
                a.authority(authority);
                a.path(path);
                a.str("url.template", path_template);
                if let Some(s) = status {
                    a.int("http.response.status_code", *s);
                }
                if let Some(ms) = latency_ms {
                    a.put("sensor.http.latency_ms", Value::DoubleValue(*ms));
                }
                a.str(
                    "network.protocol.version",
                    http_version.strip_prefix("HTTP/").unwrap_or(http_version),
                );
            }
            a.uint("http.request.size", *request_bytes);
            a.uint("http.response.size", *response_bytes);
            a.str("sensor.http.transport", transport);
            if let Some(l) = tls_library {
                a.str("sensor.tls.library", l);
            }
            if let Some(fp) = credential_fingerprint {
                a.str("sensor.credential.fingerprint", fp);
            }
            a.str("sensor.connection", connection);
            a.peer(daddr.as_ref(), *dport);
            if let Some(s) = sni {
                a.str("tls.client.server_name", s);
            }
            if let Some(p) = provider {
                a.str("gen_ai.provider.name", p);
            }
            if let Some(l) = llm {
                if let Some(m) = &l.model {
                    a.str("gen_ai.request.model", m);
                }
                if let Some(n) = l.input_tokens {
                    a.uint("gen_ai.usage.input_tokens", n);
                }
                if let Some(n) = l.output_tokens {
                    a.uint("gen_ai.usage.output_tokens", n);
                }
                if !l.tool_calls.is_empty() {
                    let names: Vec<String> = l.tool_calls.iter().map(|t| t.name.clone()).collect();
                    a.strs("sensor.llm.tool_calls", &names);
                }
            }
            a.tool_call(tool_call.as_ref());
            if *unrequested {
                a.bool("sensor.api_call.unrequested", true);
            }
        }
        Detail::Finding {
            rule,
            severity,
            summary,
            endpoint,
            count,
            baseline_sessions,
            credential_fingerprint,
            tool_call,
            call_seq,
            mode,
            policy,
            response,
        } => {
            a.str("sensor.finding.rule", rule);
            a.str("sensor.agent.mode", mode);
            if let Some(p) = policy {
                a.str("sensor.policy.name", p);
            }
            if let Some(r) = response {
                a.str("sensor.policy.response", r);
            }
            a.str("sensor.finding.severity", severity);
            a.str("sensor.finding.summary", summary);
            a.str("sensor.finding.endpoint", endpoint);
            a.uint("sensor.finding.count", *count);
            a.uint("sensor.finding.baseline_sessions", *baseline_sessions);
            a.uint("sensor.finding.call_seq", *call_seq);
            if let Some(fp) = credential_fingerprint {
                a.str("sensor.credential.fingerprint", fp);
            }
            a.tool_call(tool_call.as_ref());
        }
        Detail::Mode {
            agent_id,
            agent_name,
            from,
            to,
            why,
        } => {
            a.str("sensor.mode.agent.id", agent_id);
            a.str("sensor.mode.agent.name", agent_name);
            if let Some(f) = from {
                a.str("sensor.mode.from", f);
            }
            a.str("sensor.mode.to", to);
            a.str("sensor.mode.why", why);
        }
        Detail::Action {
            action,
            outcome,
            by,
            why,
            pids,
            error,
            finding_seq,
            hold_id,
        } => {
            a.str("sensor.action", action);
            a.str("sensor.action.outcome", outcome);
            a.str("sensor.action.by", by);
            a.str("sensor.action.why", why);
            if !pids.is_empty() {
                let values = pids
                    .iter()
                    .map(|(pid, _)| AnyValue {
                        value: Some(Value::IntValue(i64::from(*pid))),
                    })
                    .collect();
                a.put(
                    "sensor.action.pids",
                    Value::ArrayValue(ArrayValue { values }),
                );
            }
            if let Some(e) = error {
                a.str("sensor.action.error", e);
            }
            if let Some(s) = finding_seq {
                a.uint("sensor.finding.seq", *s);
            }
            if let Some(h) = hold_id {
                a.uint("sensor.hold.id", *h);
            }
        }
        Detail::Held {
            hold_id,
            agent: _,
            pattern,
            method,
            authority,
            path,
            tool_call,
            timeout_secs,
            on_timeout,
            stopped,
            level,
            // The request's head (redacted) and the trail are in the body.
            head: _,
            trail: _,
        } => {
            a.uint("sensor.hold.id", *hold_id);
            a.str("sensor.hold.pattern", pattern);
            a.str("http.request.method", method);
            a.authority(authority);
            a.path(path);
            if let Some(t) = tool_call {
                a.str("gen_ai.tool.name", t);
            }
            a.uint("sensor.hold.timeout_secs", *timeout_secs);
            a.str("sensor.hold.on_timeout", on_timeout);
            a.bool("sensor.hold.stopped", *stopped);
            a.str("sensor.hold.level", level);
        }
        Detail::Blocked {
            agent: _,
            pattern,
            connection,
            killed,
        } => {
            a.str("sensor.blocked.pattern", pattern);
            a.str("sensor.connection", connection);
            a.bool("sensor.blocked.killed", *killed);
        }
        Detail::ParseError {
            protocol,
            error,
            connection,
            daddr,
            dport,
            sni,
        } => {
            a.str("network.protocol.name", protocol);
            a.str("sensor.parse_error.message", error);
            a.str("sensor.connection", connection);
            a.peer(daddr.as_ref(), *dport);
            if let Some(s) = sni {
                a.str("tls.client.server_name", s);
            }
        }
    }
    a.0
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, sync::Arc};

    use super::*;
    use crate::{
        agents::{AgentTag, ToolRef},
        procs::{ContainerInfo, Process},
    };

    fn process() -> Arc<Process> {
        Arc::new(Process {
            pid: 4242,
            start_ticks: 777,
            ppid: 1,
            uid: 1000,
            comm: "python3".into(),
            exe: "/usr/bin/python3.11".into(),
            cmdline: vec!["python3".into(), "agent.py".into(), "--key=***".into()],
            container: Some(ContainerInfo {
                id: "ab".repeat(32),
                runtime: "docker",
                pod_uid: None,
            }),
            ..Default::default()
        })
    }

    fn event(detail: Detail) -> Event {
        Event {
            seq: 99,
            time: "2026-11-29T10:00:00.000000Z".into(),
            ts_unix_ns: 1_795_000_000_123_456_789,
            tid: 4243,
            process: process(),
            agent: Some(Arc::new(AgentTag {
                id: "agt-123".into(),
                name: "agent.py".into(),
                session: "4242:777".into(),
                key: (4242, 777),
                policy: None,
            })),
            pod: None,
            detail,
        }
    }

    /// Attribute name → value, as a collector would index them.
    fn attrs(r: &LogRecord) -> HashMap<String, Value> {
        let mut m = HashMap::new();
        for kv in &r.attributes {
            let v = kv.value.clone().and_then(|v| v.value).expect("value");
            assert!(m.insert(kv.key.clone(), v).is_none(), "{} twice", kv.key);
        }
        m
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    fn record(ev: &Event) -> LogRecord {
        log_record(ev, &ev.to_json(), 5)
    }

    fn api_call() -> Detail {
        Detail::ApiCall {
            provider: Some("openai"),
            llm: Some(Box::new(crate::agents::llm::LlmSummary {
                model: Some("gpt-4o".into()),
                input_tokens: Some(12),
                output_tokens: Some(34),
                ..Default::default()
            })),
            tool_call: Some(ToolRef {
                id: "call_1".into(),
                name: "place_order".into(),
            }),
            unrequested: false,
            method: "POST".into(),
            authority: "api.vendor.example:8443".into(),
            path: "/v1/orders?api_key=***&limit=5".into(),
            path_template: "/v1/orders?api_key&limit".into(),
            status: Some(201),
            request_bytes: 300,
            response_bytes: 40,
            latency_ms: Some(12.5),
            http_version: "HTTP/1.1".into(),
            transport: "tls",
            tls_library: Some("openssl"),
            credential_fingerprint: Some("fp:abcd".into()),
            connection: "ssl 0x1".into(),
            daddr: Some("10.0.0.7".parse().unwrap()),
            dport: Some(8443),
            sni: Some("api.vendor.example".into()),
            db: None,
        }
    }

    #[test]
    fn api_call_attributes() {
        let ev = event(api_call());
        let r = record(&ev);
        assert_eq!(r.time_unix_nano, 1_795_000_000_123_456_789);
        assert_eq!(r.observed_time_unix_nano, 5);
        assert_eq!(r.severity_number, SeverityNumber::Info as i32);
        assert_eq!(r.severity_text, "info");
        assert_eq!(r.event_name, "sensor.api_call");
        assert_eq!(r.body.clone().unwrap().value, Some(s(&ev.to_json())));
        let a = attrs(&r);
        for (k, v) in [
            ("sensor.event.kind", s("api_call")),
            ("sensor.event.seq", Value::IntValue(99)),
            ("thread.id", Value::IntValue(4243)),
            ("process.pid", Value::IntValue(4242)),
            ("sensor.process.start_ticks", Value::IntValue(777)),
            ("process.parent_pid", Value::IntValue(1)),
            ("process.user.id", Value::IntValue(1000)),
            ("process.command", s("python3")),
            ("process.executable.path", s("/usr/bin/python3.11")),
            ("process.command_line", s("python3 agent.py --key=***")),
            ("container.id", s(&"ab".repeat(32))),
            ("container.runtime.name", s("docker")),
            ("sensor.agent.id", s("agt-123")),
            ("sensor.agent.name", s("agent.py")),
            ("sensor.agent.session", s("4242:777")),
            ("http.request.method", s("POST")),
            ("server.address", s("api.vendor.example")),
            ("server.port", Value::IntValue(8443)),
            ("url.path", s("/v1/orders")),
            ("url.query", s("api_key=***&limit=5")),
            ("url.template", s("/v1/orders?api_key&limit")),
            ("http.response.status_code", Value::IntValue(201)),
            ("http.request.size", Value::IntValue(300)),
            ("http.response.size", Value::IntValue(40)),
            ("sensor.http.latency_ms", Value::DoubleValue(12.5)),
            ("network.protocol.version", s("1.1")),
            ("sensor.http.transport", s("tls")),
            ("sensor.tls.library", s("openssl")),
            ("sensor.credential.fingerprint", s("fp:abcd")),
            ("sensor.connection", s("ssl 0x1")),
            ("network.peer.address", s("10.0.0.7")),
            ("network.peer.port", Value::IntValue(8443)),
            ("network.type", s("ipv4")),
            ("tls.client.server_name", s("api.vendor.example")),
            ("gen_ai.provider.name", s("openai")),
            ("gen_ai.request.model", s("gpt-4o")),
            ("gen_ai.usage.input_tokens", Value::IntValue(12)),
            ("gen_ai.usage.output_tokens", Value::IntValue(34)),
            ("gen_ai.tool.call.id", s("call_1")),
            ("gen_ai.tool.name", s("place_order")),
        ] {
            assert_eq!(a.get(k), Some(&v), "{k}");
        }
    }

    #[test]
    fn finding_takes_its_own_severity() {
        let ev = event(Detail::Finding {
            rule: "new_irreversible_endpoint",
            severity: "high",
            summary: "agent.py made a write it never made".into(),
            endpoint: "POST api.vendor.example /v1/orders".into(),
            count: 1,
            baseline_sessions: 3,
            credential_fingerprint: Some("fp:abcd".into()),
            tool_call: None,
            call_seq: 98,
            mode: "enforce",
            policy: Some("shop".into()),
            response: Some("kill"),
        });
        let r = record(&ev);
        assert_eq!(r.severity_number, SeverityNumber::Error as i32);
        assert_eq!(r.severity_text, "high");
        let a = attrs(&r);
        assert_eq!(a["sensor.finding.rule"], s("new_irreversible_endpoint"));
        assert_eq!(a["sensor.agent.mode"], s("enforce"));
        assert_eq!(a["sensor.policy.name"], s("shop"));
        assert_eq!(a["sensor.policy.response"], s("kill"));
        assert_eq!(a["sensor.finding.severity"], s("high"));
        assert_eq!(
            a["sensor.finding.endpoint"],
            s("POST api.vendor.example /v1/orders")
        );
        assert_eq!(a["sensor.finding.call_seq"], Value::IntValue(98));
        assert_eq!(a["sensor.finding.baseline_sessions"], Value::IntValue(3));
        assert_eq!(a["sensor.credential.fingerprint"], s("fp:abcd"));
        for (sev, n) in [
            ("low", SeverityNumber::Warn),
            ("medium", SeverityNumber::Warn3),
            ("critical", SeverityNumber::Fatal),
        ] {
            let mut ev = ev.clone();
            if let Detail::Finding { severity, .. } = &mut ev.detail {
                *severity = sev;
            }
            assert_eq!(record(&ev).severity_number, n as i32, "{sev}");
        }
    }

    #[test]
    fn action_attributes() {
        let ev = event(Detail::Action {
            action: "isolate_tree",
            outcome: "done",
            by: "policy".into(),
            why: "critical repetition".into(),
            pids: vec![(4242, 777), (4250, 800)],
            error: None,
            finding_seq: Some(100),
            hold_id: None,
        });
        let r = record(&ev);
        // Actions are what the API calls high.
        assert_eq!(r.severity_text, "high");
        let a = attrs(&r);
        assert_eq!(a["sensor.action"], s("isolate_tree"));
        assert_eq!(a["sensor.action.outcome"], s("done"));
        assert_eq!(a["sensor.action.by"], s("policy"));
        assert_eq!(a["sensor.action.why"], s("critical repetition"));
        assert_eq!(a["sensor.finding.seq"], Value::IntValue(100));
        let Value::ArrayValue(pids) = &a["sensor.action.pids"] else {
            panic!("pids: {:?}", a["sensor.action.pids"]);
        };
        let pids: Vec<_> = pids.values.iter().map(|v| v.value.clone()).collect();
        assert_eq!(
            pids,
            vec![Some(Value::IntValue(4242)), Some(Value::IntValue(4250))]
        );
        assert!(!a.contains_key("sensor.action.error"));
    }

    #[test]
    fn connect_and_exit_attributes() {
        let ev = event(Detail::Connect {
            fd: 5,
            family: "ipv6",
            daddr: "::1".parse().unwrap(),
            dport: 443,
            result: -111,
            result_name: "ECONNREFUSED".into(),
        });
        let a = attrs(&record(&ev));
        assert_eq!(a["network.peer.address"], s("::1"));
        assert_eq!(a["network.peer.port"], Value::IntValue(443));
        assert_eq!(a["network.type"], s("ipv6"));
        assert_eq!(a["sensor.connect.result"], Value::IntValue(-111));
        assert_eq!(a["sensor.connect.result_name"], s("ECONNREFUSED"));
        let a = attrs(&record(&event(Detail::Exit {
            exit_code: Some(3),
            signal: None,
        })));
        assert_eq!(a["process.exit.code"], Value::IntValue(3));
        assert!(!a.contains_key("sensor.exit.signal"));
    }

    #[test]
    fn empty_values_are_left_out() {
        let mut ev = event(api_call());
        ev.agent = None;
        ev.process = Arc::new(Process {
            pid: 1,
            ..Default::default()
        });
        let a = attrs(&record(&ev));
        for k in [
            "process.executable.path",
            "process.command_line",
            "container.id",
            "sensor.agent.id",
        ] {
            assert!(!a.contains_key(k), "{k}");
        }
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(split_authority("a.example:443"), ("a.example", Some(443)));
        assert_eq!(split_authority("a.example"), ("a.example", None));
        assert_eq!(split_authority("[::1]:8080"), ("::1", Some(8080)));
        assert_eq!(split_authority("[::1]"), ("::1", None));
        assert_eq!(split_authority("::1"), ("::1", None));
        assert_eq!(split_authority("a:b"), ("a:b", None));
    }

    #[test]
    fn resource_names_the_sensor_and_host() {
        let origin = Origin {
            node: "node-1".into(),
            boot_id: "boot-1".into(),
        };
        let r = resource(&origin);
        let a: HashMap<_, _> = r
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone().unwrap().value.unwrap()))
            .collect();
        assert_eq!(a["service.name"], s("sensor"));
        assert_eq!(a["service.version"], s(env!("CARGO_PKG_VERSION")));
        assert_eq!(a["host.name"], s("node-1"));
        assert_eq!(a["sensor.boot_id"], s("boot-1"));
    }
}
