//! Prometheus metrics (`/metrics`, OpenMetrics text) for the SOC's and the
//! node's monitoring: events by kind, findings by rule and severity,
//! actions by action and outcome, pipeline latency, API subscribers and
//! what they missed, and every drop and error counter of `sensor status`.
//!
//! The pipeline only increments atomics (and takes one uncontended lock a
//! second for its totals); the scrape reads them. Nothing here can make
//! the pipeline wait for a scraper.
//!
//! - `serve`: the HTTP listener.

pub mod serve;

use std::{
    collections::BTreeMap,
    sync::{Mutex, atomic::AtomicU64},
    time::Instant,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
        info::Info,
    },
    registry::{Registry, Unit},
};

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

pub struct Metrics {
    registry: Registry,
    events: Family<Labels1, Counter>,
    findings: Family<Labels2, Counter>,
    actions: Family<Labels2, Counter>,
    latency: Histogram,
    lagged: Counter,
    missed: Counter,
    subscribers: Gauge,
    uptime: Gauge<f64, AtomicU64>,
    processes: Gauge,
    tls_targets: Gauge,
    totals: std::sync::Arc<Totals>,
    started: Instant,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Facts that do not change while the daemon runs (`sensor_info`).
pub struct Build<'a> {
    pub node: &'a str,
    pub kernel: &'a str,
}

impl Metrics {
    pub fn new(build: Build) -> Self {
        let mut registry = Registry::with_prefix("sensor");
        registry.register(
            "info",
            "The sensor's version, node and kernel",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("node", build.node.to_string()),
                ("kernel", build.kernel.to_string()),
            ]),
        );
        let events = Family::<Labels1, Counter>::default();
        registry.register("events", "Events emitted, by kind", events.clone());
        let findings = Family::<Labels2, Counter>::default();
        registry.register(
            "findings",
            "Findings raised, by rule and severity",
            findings.clone(),
        );
        let actions = Family::<Labels2, Counter>::default();
        registry.register(
            "actions",
            "Response actions (policy or responders), by action and outcome (done, would, refused, failed)",
            actions.clone(),
        );
        // 100 µs to ~13 s: a healthy pipeline sits in the first buckets;
        // the top ones show a stalled output.
        let latency = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register_with_unit(
            "pipeline_latency",
            "From the kernel record's timestamp to the event's emission (output, audit store, API)",
            Unit::Seconds,
            latency.clone(),
        );
        let lagged = Counter::default();
        registry.register(
            "api_lagged",
            "Lagged events sent to API subscribers that fell behind",
            lagged.clone(),
        );
        let missed = Counter::default();
        registry.register(
            "api_missed_events",
            "Events API subscribers missed because they fell behind (the pipeline did not wait)",
            missed.clone(),
        );
        let subscribers = Gauge::default();
        registry.register(
            "api_subscribers",
            "Event stream subscribers connected",
            subscribers.clone(),
        );
        let uptime = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "uptime",
            "Time since the daemon started",
            Unit::Seconds,
            uptime.clone(),
        );
        let processes = Gauge::default();
        registry.register(
            "processes_tracked",
            "Processes in the process table (live and recently exited)",
            processes.clone(),
        );
        let tls_targets = Gauge::default();
        registry.register(
            "tls_targets_attached",
            "Library files and executables with TLS capture uprobes attached",
            tls_targets.clone(),
        );
        let totals = std::sync::Arc::new(Totals::default());
        registry.register_collector(Box::new(totals.clone()));
        Self {
            registry,
            events,
            findings,
            actions,
            latency,
            lagged,
            missed,
            subscribers,
            uptime,
            processes,
            tls_targets,
            totals,
            started: Instant::now(),
        }
    }

    /// One event emitted; findings and actions also by their labels.
    pub fn event(&self, d: &crate::event::Detail) {
        use crate::event::Detail;
        self.events.get_or_create(&[("kind", d.kind())]).inc();
        match d {
            Detail::Finding { rule, severity, .. } => {
                self.findings
                    .get_or_create(&[("rule", *rule), ("severity", *severity)])
                    .inc();
            }
            Detail::Action {
                action, outcome, ..
            } => {
                self.actions
                    .get_or_create(&[("action", *action), ("outcome", *outcome)])
                    .inc();
            }
            _ => {}
        }
    }

    /// An event emitted `ns` after its kernel record was made.
    pub fn latency_ns(&self, ns: u64) {
        self.latency.observe(ns as f64 / 1e9);
    }

    /// A subscriber fell behind and missed `n` events.
    pub fn lagged(&self, n: u64) {
        self.lagged.inc();
        self.missed.inc_by(n);
    }

    /// The pipeline's totals (the counters of `sensor status`) and gauges,
    /// about once a second.
    pub fn update(&self, totals: &BTreeMap<String, u64>, processes: usize, tls_targets: usize) {
        *self.totals.0.lock().unwrap_or_else(|e| e.into_inner()) = totals.clone();
        self.processes.set(processes as i64);
        self.tls_targets.set(tls_targets as i64);
    }

    /// The text exposition, with the values read at the time of the call.
    pub fn encode(&self, subscribers: usize) -> String {
        self.subscribers.set(subscribers as i64);
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        out
    }
}

/// The counters of `sensor status`, as the pipeline last published them.
#[derive(Debug, Default)]
struct Totals(Mutex<BTreeMap<String, u64>>);

/// Kernel counters other than ring buffer drops: read and parking errors.
const KERNEL_ERRORS: [&str; 4] = [
    "kernel_read_errors",
    "connect_pending_errors",
    "tls_pending_errors",
    "socket_watch_full",
];

/// Which metric (name, help) and label a status counter becomes.
fn family(counter: &str) -> (&'static str, &'static str, Option<(&'static str, String)>) {
    match counter {
        "ringbuf_full_drops" => (
            "ringbuf_drops",
            "Records the kernel dropped because the ring buffer was full",
            None,
        ),
        "queue_full_drops" => (
            "pipeline_queue_drops",
            "Records dropped between the ring buffer reader and the pipeline (queue full)",
            None,
        ),
        "records_read" => ("records_read", "Records read from the ring buffer", None),
        "holds_killed_unreported" => (
            "holds_killed_unreported",
            "Held processes killed instead of stopped: the kernel could not report the hold (ring buffer full)",
            None,
        ),
        "http_parse_errors" => (
            "parse_errors",
            "HTTP/1.1 and HTTP/2 exchanges that could not be parsed (each is also a parse_error event)",
            None,
        ),
        "socket_watch_stale" => (
            "socket_watch_stale",
            "Watched-socket entries dropped because their socket was gone (exec, exit, dup2, close_range, pid reuse)",
            None,
        ),
        "tls_truncated_records" => (
            "tls_truncated_records",
            "TLS plaintext records longer than tls.capture_bytes (sent truncated)",
            None,
        ),
        c if c.starts_with("decode_error_") => (
            "decode_errors",
            "Ring buffer records that failed to decode, by reason",
            Some(("reason", c["decode_error_".len()..].to_string())),
        ),
        c if KERNEL_ERRORS.contains(&c) => (
            "kernel_errors",
            "Kernel-side read and bookkeeping failures, by counter",
            Some(("counter", c.to_string())),
        ),
        c => (
            "internal",
            "Every other counter of `sensor status` (audit store, export, process table), by name",
            Some(("counter", c.to_string())),
        ),
    }
}

impl Collector for Totals {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // Grouped so each metric's descriptor is written once.
        let mut by_metric: BTreeMap<&str, (&str, Vec<Series>)> = BTreeMap::new();
        for (k, v) in &totals {
            let (name, help, label) = family(k);
            by_metric
                .entry(name)
                .or_insert((help, Vec::new()))
                .1
                .push((label, *v));
        }
        for (name, (help, values)) in by_metric {
            let counter = ConstCounter::new(0u64);
            let mut m = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            for (label, v) in values {
                match label {
                    None => ConstCounter::new(v).encode(m.encode_family(&NoLabels)?)?,
                    Some((key, value)) => {
                        ConstCounter::new(v).encode(m.encode_family(&[(key, value)])?)?
                    }
                }
            }
        }
        Ok(())
    }
}

/// One value of a status counter metric, with its label if it has one.
type Series = (Option<(&'static str, String)>, u64);

/// An empty label set (a metric with one series).
struct NoLabels;

impl prometheus_client::encoding::EncodeLabelSet for NoLabels {
    fn encode(
        &self,
        _: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(Build {
            node: "n1",
            kernel: "6.18.0",
        })
    }

    #[test]
    fn events_findings_actions_and_totals_are_exposed() {
        let m = metrics();
        let call = crate::event::Detail::Finding {
            rule: "new_endpoint",
            severity: "medium",
            summary: String::new(),
            endpoint: String::new(),
            count: 0,
            baseline_sessions: 3,
            credential_fingerprint: None,
            tool_call: None,
            call_seq: 1,
            mode: "enforce",
            policy: Some("shop".into()),
            response: Some("kill"),
        };
        m.event(&call);
        m.event(&call);
        let action = crate::event::Detail::Action {
            action: "kill",
            outcome: "done",
            by: "policy".into(),
            why: String::new(),
            pids: vec![(7, 1)],
            error: None,
            finding_seq: Some(1),
            hold_id: None,
        };
        m.event(&action);
        m.latency_ns(250_000);
        m.lagged(7);
        let totals: BTreeMap<String, u64> = [
            ("ringbuf_full_drops", 0),
            ("queue_full_drops", 2),
            ("decode_error_short", 1),
            ("kernel_read_errors", 4),
            ("audit_rows_written", 9),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        m.update(&totals, 12, 3);
        let text = m.encode(2);
        for line in [
            "sensor_events_total{kind=\"finding\"} 2",
            "sensor_findings_total{rule=\"new_endpoint\",severity=\"medium\"} 2",
            "sensor_events_total{kind=\"action\"} 1",
            "sensor_actions_total{action=\"kill\",outcome=\"done\"} 1",
            "sensor_api_missed_events_total 7",
            "sensor_api_lagged_total 1",
            "sensor_api_subscribers 2",
            "sensor_processes_tracked 12",
            "sensor_tls_targets_attached 3",
            "sensor_ringbuf_drops_total 0",
            "sensor_pipeline_queue_drops_total 2",
            "sensor_decode_errors_total{reason=\"short\"} 1",
            "sensor_kernel_errors_total{counter=\"kernel_read_errors\"} 4",
            "sensor_internal_total{counter=\"audit_rows_written\"} 9",
            "sensor_pipeline_latency_seconds_count 1",
            "sensor_pipeline_latency_seconds_bucket{le=\"0.0004\"} 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
        let info = format!(
            "sensor_info_info{{version=\"{}\",node=\"n1\",kernel=\"6.18.0\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == info), "{info:?} not in:\n{text}");
    }
}
