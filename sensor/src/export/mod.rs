//! Events to the SOC's pipeline: OTLP log records to a collector
//! (`otlp`, mapped by `record`) and JSON lines to a rotated file for log
//! shippers (`file`). Both are fed by the pipeline's output with the JSON
//! it already made, and neither can stop or slow it.

pub mod file;
pub mod otlp;
mod otlp_http;
pub mod record;

use std::{collections::BTreeMap, path::Path, sync::atomic::Ordering, time::Duration};

use anyhow::Result;

use crate::{api::convert::Origin, config::ExportConfig, event::Event};

/// How long a clean shutdown waits for the collector to take what is
/// queued: bounded, so a collector that is down cannot hold the stop up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Exporters {
    otlp: Option<otlp::Otlp>,
    file: Option<file::RotatingFile>,
    /// OTLP drops and failures already warned about.
    dropped_seen: u64,
    failed_seen: u64,
}

impl Exporters {
    /// What `[export]` asks for. Unusable settings (TLS files, file path)
    /// stop the start with the key named; an unreachable collector does not.
    pub fn start(cfg: &ExportConfig, state_dir: &Path, origin: &Origin) -> Result<Self> {
        let mut e = Self::default();
        if let Some(endpoint) = &cfg.otlp.endpoint {
            e.otlp = Some(otlp::Otlp::start(
                &cfg.otlp,
                endpoint,
                record::resource(origin),
            )?);
            // The endpoint is not a secret; the headers may be and are not
            // named here.
            tracing::info!(
                endpoint = %endpoint,
                headers = cfg.otlp.headers.len(),
                "exporting events over OTLP"
            );
        }
        if let Some(path) = &cfg.file.path {
            let path = state_dir.join(path);
            e.file = Some(file::RotatingFile::open(
                &path,
                cfg.file.max_bytes,
                cfg.file.keep,
            )?);
            tracing::info!(path = %path.display(), "exporting events to a file");
        }
        Ok(e)
    }

    /// One numbered event and its JSON form.
    pub fn emit(&mut self, ev: &Event, json: &str) {
        if let Some(o) = &self.otlp {
            o.offer(|| record::log_record(ev, json, now_unix_ns()));
        }
        if let Some(f) = &mut self.file {
            f.write_line(json);
        }
    }

    pub fn flush(&mut self) {
        if let Some(f) = &mut self.file {
            f.flush();
        }
    }

    /// Counters for the status report.
    pub fn totals(&self, m: &mut BTreeMap<String, u64>) {
        if let Some(o) = &self.otlp {
            for (k, v) in o.stats.totals() {
                m.insert(k.into(), v);
            }
        }
        if let Some(f) = &self.file {
            m.insert("file_export_lines".into(), f.stats.lines);
            m.insert("file_export_write_errors".into(), f.stats.write_errors);
            m.insert("file_export_rotations".into(), f.stats.rotations);
        }
    }

    /// Called every few seconds: says so when OTLP records started being
    /// lost since the last call (so at most one line per call).
    pub fn check(&mut self) {
        let Some(o) = &self.otlp else { return };
        let dropped = o.stats.dropped.load(Ordering::Relaxed);
        let failed = o.stats.failed.load(Ordering::Relaxed);
        if dropped > self.dropped_seen || failed > self.failed_seen {
            tracing::warn!(
                dropped = dropped - self.dropped_seen,
                failed = failed - self.failed_seen,
                total_dropped = dropped,
                total_failed = failed,
                exported = o.stats.exported.load(Ordering::Relaxed),
                "OTLP export is losing events (collector down or slow; raise export.otlp.queue_capacity to ride out longer outages)"
            );
        }
        self.dropped_seen = dropped;
        self.failed_seen = failed;
    }

    /// Flushes the file and gives the collector a bounded time to take
    /// what is queued; returns the counters for the shutdown summary.
    pub async fn finish(mut self) -> String {
        self.flush();
        let mut summary = String::new();
        if let Some(o) = self.otlp.take() {
            let stats = o.stats.clone();
            o.finish(SHUTDOWN_GRACE).await;
            for (k, v) in stats.totals() {
                summary.push_str(&format!(" {k}={v}"));
            }
            summary.push_str(&format!(" otlp_records_unsent_at_exit={}", stats.unsent()));
        }
        let mut m = BTreeMap::new();
        self.totals(&mut m);
        for (k, v) in m {
            summary.push_str(&format!(" {k}={v}"));
        }
        summary
    }
}

fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
