//! What `Sensor.Status` reports: fixed facts from start-up, and counters
//! the pipeline refreshes about once a second.

use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use sensor_proto::v1 as pb;

/// Facts known once the programs are attached.
#[derive(Clone, Debug, Default)]
pub struct StartFacts {
    pub node: String,
    pub kernel: String,
    pub capabilities: Vec<String>,
    pub unavailable: Vec<String>,
    pub attachments: Vec<(String, String)>,
    pub degraded: Vec<String>,
    /// The attach method chosen for each hook, and those skipped.
    pub hooks: Vec<pb::HookChoice>,
}

#[derive(Default)]
struct Live {
    counters: BTreeMap<String, u64>,
    events_by_kind: BTreeMap<String, u64>,
    tls_targets: Vec<(String, Vec<String>)>,
    /// (when, events emitted in total) about once a second, last minute.
    samples: std::collections::VecDeque<(Instant, u64)>,
}

pub struct StatusBoard {
    facts: StartFacts,
    started: Instant,
    live: Mutex<Live>,
}

impl StatusBoard {
    pub fn new(facts: StartFacts) -> Self {
        Self {
            facts,
            started: Instant::now(),
            live: Mutex::new(Live::default()),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the pipeline with its current totals.
    pub fn update(
        &self,
        counters: BTreeMap<String, u64>,
        events_by_kind: &BTreeMap<&'static str, u64>,
        tls_targets: Vec<(String, Vec<String>)>,
    ) {
        let total = events_by_kind.values().sum();
        let mut l = self.live();
        l.counters = counters;
        l.events_by_kind = events_by_kind
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        l.tls_targets = tls_targets;
        let now = Instant::now();
        l.samples.push_back((now, total));
        while l
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(60))
        {
            l.samples.pop_front();
        }
    }

    pub fn report(&self, subscribers: usize) -> pb::StatusResponse {
        let l = self.live();
        let rate = match (l.samples.front(), l.samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                n1.saturating_sub(*n0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        };
        let up = self.started.elapsed();
        pb::StatusResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            node: self.facts.node.clone(),
            kernel: self.facts.kernel.clone(),
            uptime: Some(sensor_proto::pbjson_types::Duration {
                seconds: up.as_secs() as i64,
                nanos: up.subsec_nanos() as i32,
            }),
            pid: std::process::id(),
            capabilities: self.facts.capabilities.clone(),
            unavailable: self.facts.unavailable.clone(),
            attachments: self
                .facts
                .attachments
                .iter()
                .map(|(program, method)| pb::Attachment {
                    program: program.clone(),
                    method: method.clone(),
                })
                .collect(),
            degraded: self.facts.degraded.clone(),
            tls_targets: l
                .tls_targets
                .iter()
                .map(|(path, functions)| pb::TlsTarget {
                    path: path.clone(),
                    functions: functions.clone(),
                })
                .collect(),
            counters: l.counters.clone().into_iter().collect(),
            events_by_kind: l.events_by_kind.clone().into_iter().collect(),
            event_rate: rate,
            subscribers: subscribers as u32,
            hooks: self.facts.hooks.clone(),
        }
    }
}
