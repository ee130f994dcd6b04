//! OTLP log export, over gRPC or HTTP (`http/protobuf`), gzip or not: a
//! bounded queue the pipeline offers records to without waiting, and a
//! task that batches them (by size and age), sends each batch with a
//! timeout, and retries retryable failures with exponential backoff and
//! jitter (or the collector's `Retry-After`) a bounded number of times.
//!
//! Nothing here can slow the pipeline: a full queue drops the new record
//! and counts it, a collector that is down costs only the queue's memory.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsServiceRequest, logs_service_client::LogsServiceClient},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use tokio::{
    sync::mpsc::{self, error::TrySendError},
    task::JoinHandle,
    time::Instant,
};
use tonic::{
    Code,
    codec::CompressionEncoding,
    metadata::{Ascii, MetadataKey, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::config::{OtlpCompression, OtlpConfig, OtlpProtocol};

/// Counters shown by `sensor status` and in the shutdown summary.
#[derive(Debug, Default)]
pub struct OtlpStats {
    /// Records taken into the queue.
    pub queued: AtomicU64,
    /// Records the collector accepted.
    pub exported: AtomicU64,
    /// Records dropped because the queue was full (collector slow or down).
    pub dropped: AtomicU64,
    /// Records of batches given up (retries exhausted, or a failure that
    /// retrying cannot fix), and records the collector rejected.
    pub failed: AtomicU64,
    pub batches_failed: AtomicU64,
    /// Export requests retried.
    pub retries: AtomicU64,
}

impl OtlpStats {
    pub fn totals(&self) -> [(&'static str, u64); 5] {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("otlp_records_exported", g(&self.exported)),
            ("otlp_records_dropped", g(&self.dropped)),
            ("otlp_records_failed", g(&self.failed)),
            ("otlp_batches_failed", g(&self.batches_failed)),
            ("otlp_retries", g(&self.retries)),
        ]
    }
}

/// The pipeline's side: offer records, never wait.
pub struct Otlp {
    tx: Option<mpsc::Sender<LogRecord>>,
    task: JoinHandle<()>,
    pub stats: Arc<OtlpStats>,
}

/// How batches reach the collector.
enum Transport {
    Grpc {
        client: LogsServiceClient<Channel>,
        headers: Vec<(MetadataKey<Ascii>, MetadataValue<Ascii>)>,
    },
    /// POST of the binary protobuf request (OTLP/HTTP).
    Http(super::otlp_http::HttpTransport),
}

/// Why a request did not go through.
pub(super) struct Failure {
    pub retryable: bool,
    /// What the collector (or the transport) said; never the request.
    pub why: String,
    /// The collector asked for this pause (HTTP `Retry-After`).
    pub after: Option<Duration>,
}

/// Settings of the sending task, from `[export.otlp]`.
struct Sender {
    transport: Transport,
    resource: Resource,
    batch_size: usize,
    batch_timeout: Duration,
    timeout: Duration,
    max_attempts: u32,
    stats: Arc<OtlpStats>,
    /// When the last failure was logged (failures are rate-limited).
    last_warning: Option<Instant>,
}

/// First retry after this, doubling up to `BACKOFF_MAX`.
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(16);
/// Failures are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

impl Otlp {
    /// Starts the task. The connection is made lazily (and remade after
    /// failures) by tonic: a collector that is down at start is fine.
    pub fn start(cfg: &OtlpConfig, endpoint: &str, resource: Resource) -> Result<Self> {
        let transport = match cfg.protocol {
            OtlpProtocol::Grpc => grpc(cfg, endpoint)?,
            OtlpProtocol::HttpProtobuf => {
                Transport::Http(super::otlp_http::HttpTransport::new(cfg, endpoint)?)
            }
        };
        let stats = Arc::new(OtlpStats::default());
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let sender = Sender {
            transport,
            resource,
            batch_size: cfg.batch_size,
            batch_timeout: Duration::from_millis(cfg.batch_timeout_ms),
            timeout: Duration::from_secs(cfg.timeout_secs),
            max_attempts: cfg.max_attempts,
            stats: stats.clone(),
            last_warning: None,
        };
        let task = tokio::spawn(sender.run(rx));
        Ok(Self {
            tx: Some(tx),
            task,
            stats,
        })
    }

    /// Queues one record, unless the queue is full (counted). `make` runs
    /// only when there is room, so a dropped record costs nothing.
    pub fn offer(&self, make: impl FnOnce() -> LogRecord) {
        let Some(tx) = &self.tx else { return };
        match tx.try_reserve() {
            Ok(permit) => {
                permit.send(make());
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(())) | Err(TrySendError::Closed(())) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Closes the queue and waits up to `grace` for the task to send what
    /// it holds; what is still unsent then is counted as dropped.
    pub async fn finish(mut self, grace: Duration) {
        drop(self.tx.take());
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            self.task.abort();
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "OTLP export: the collector did not take the last events before shutdown"
            );
        }
    }
}

impl OtlpStats {
    /// Records queued and neither exported nor given up: in flight while
    /// running; after `finish`, what shutdown cut off.
    pub fn unsent(&self) -> u64 {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        g(&self.queued).saturating_sub(g(&self.exported) + g(&self.failed))
    }
}

fn grpc(cfg: &OtlpConfig, endpoint: &str) -> Result<Transport> {
    let channel = channel(cfg, endpoint)?.connect_lazy();
    let headers = cfg
        .headers
        .iter()
        .map(|(k, v)| {
            let key = MetadataKey::from_bytes(k.as_bytes())
                .with_context(|| format!("export.otlp.headers: {k:?}"))?;
            let mut value = MetadataValue::try_from(v.as_str())
                .with_context(|| format!("export.otlp.headers: the value of {k:?}"))?;
            // Kept out of tonic's and hyper's debug output.
            value.set_sensitive(true);
            Ok((key, value))
        })
        .collect::<Result<_>>()?;
    let mut client = LogsServiceClient::new(channel);
    if cfg.compression == OtlpCompression::Gzip {
        client = client
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
    }
    Ok(Transport::Grpc { client, headers })
}

/// Records a collector's partial success says it rejected.
pub(super) fn rejected(
    p: Option<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess>,
) -> u64 {
    p.map_or(0, |p| u64::try_from(p.rejected_log_records).unwrap_or(0))
}

impl Transport {
    /// Sends one request; returns how many records the collector
    /// rejected.
    async fn export(
        &mut self,
        request: &ExportLogsServiceRequest,
        timeout: Duration,
    ) -> Result<u64, Failure> {
        match self {
            Transport::Grpc { client, headers } => {
                let mut req = tonic::Request::new(request.clone());
                req.set_timeout(timeout);
                for (k, v) in headers.iter() {
                    req.metadata_mut().insert(k.clone(), v.clone());
                }
                match client.export(req).await {
                    Ok(resp) => Ok(rejected(resp.into_inner().partial_success)),
                    // The status message is the collector's or tonic's
                    // words; the request (and its headers) is never printed.
                    Err(s) => Err(Failure {
                        retryable: retryable(s.code()),
                        why: format!("{:?}: {}", s.code(), s.message()),
                        after: pause_asked(&s),
                    }),
                }
            }
            Transport::Http(h) => h.export(request).await,
        }
    }
}

fn channel(cfg: &OtlpConfig, endpoint: &str) -> Result<Endpoint> {
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let mut ep = Endpoint::from_shared(endpoint.to_string())
        .context("export.otlp.endpoint")?
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true)
        .keep_alive_while_idle(false);
    if endpoint.starts_with("https://") {
        let t = cfg.tls.clone().unwrap_or_default();
        let read = |p: &std::path::Path, key: &str| {
            std::fs::read(p)
                .with_context(|| format!("export.otlp.tls.{key}: reading {}", p.display()))
        };
        let mut tls = ClientTlsConfig::new();
        tls = match &t.ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca, "ca")?)),
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&t.cert, &t.key) {
            tls = tls.identity(Identity::from_pem(read(cert, "cert")?, read(key, "key")?));
        }
        if let Some(d) = &t.domain {
            tls = tls.domain_name(d.clone());
        }
        ep = ep.tls_config(tls).context(
            "export.otlp.tls: cannot set up TLS (without tls.ca the host's trust store is used)",
        )?;
    }
    Ok(ep)
}

/// The pause a collector asks for in its status details
/// (`google.rpc.RetryInfo`, which the OTLP specification says a client
/// should honour when throttled), at most a minute as HTTP's
/// `Retry-After` is.
fn pause_asked(s: &tonic::Status) -> Option<Duration> {
    use tonic_types::StatusExt;
    let delay = s.get_details_retry_info()?.retry_delay?;
    Some(delay.min(super::otlp_http::RETRY_AFTER_MAX))
}

/// What the OTLP specification says may succeed if sent again.
/// RESOURCE_EXHAUSTED is retried too: collectors use it for a full
/// queue (backpressure), and the backoff is what it asks for.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// Wait before try `attempt` + 1 (attempt ≥ 1): doubling from
/// `BACKOFF_START` up to `BACKOFF_MAX`, with "full jitter" on the upper
/// half so that many sensors behind one collector do not retry in step.
fn backoff(attempt: u32, random: u64) -> Duration {
    let base = BACKOFF_START
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    let half = base / 2;
    let span = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_millis(random % span)
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::Receiver<LogRecord>) {
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            // A batch starts with its first record and is sent when full or
            // `batch_timeout` after that.
            let Some(first) = rx.recv().await else { break };
            batch.push(first);
            let deadline = Instant::now() + self.batch_timeout;
            let mut open = true;
            while batch.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(r)) => batch.push(r),
                    Ok(None) => {
                        open = false;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.send(std::mem::take(&mut batch)).await;
            if !open {
                break;
            }
        }
    }

    /// Sends one batch; retries retryable failures with backoff, then
    /// gives it up (counted). The queue fills meanwhile, and drops beyond
    /// its capacity are counted by the pipeline's side.
    async fn send(&mut self, records: Vec<LogRecord>) {
        let n = records.len() as u64;
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(super::record::scope()),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.transport.export(&request, self.timeout).await {
                Ok(rejected) => {
                    let rejected = rejected.min(n);
                    // Rejected records are not retried (the collector said
                    // they are invalid); they are counted.
                    self.stats
                        .exported
                        .fetch_add(n - rejected, Ordering::Relaxed);
                    self.stats.failed.fetch_add(rejected, Ordering::Relaxed);
                    if rejected > 0 {
                        self.warn(format_args!("collector rejected {rejected} of {n} records"));
                    }
                    return;
                }
                Err(f) => f,
            };
            if !failure.retryable || attempt >= self.max_attempts {
                self.stats.batches_failed.fetch_add(1, Ordering::Relaxed);
                self.stats.failed.fetch_add(n, Ordering::Relaxed);
                self.warn(format_args!(
                    "batch of {n} records given up after {attempt} tries: {}",
                    failure.why
                ));
                return;
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let wait = failure
                .after
                .unwrap_or_else(|| backoff(attempt, getrandom::u64().unwrap_or(0)));
            tracing::debug!(
                why = %failure.why,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "OTLP export failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    fn warn(&mut self, what: std::fmt::Arguments<'_>) {
        if self.last_warning.is_none_or(|t| t.elapsed() > WARN_EVERY) {
            tracing::warn!(
                exported = self.stats.exported.load(Ordering::Relaxed),
                failed = self.stats.failed.load(Ordering::Relaxed),
                dropped = self.stats.dropped.load(Ordering::Relaxed),
                "OTLP export: {what}"
            );
            self.last_warning = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempt in 1..=10 {
            let base = BACKOFF_START * (1 << (attempt - 1));
            let base = base.min(BACKOFF_MAX);
            for random in [0, 1, 12345, u64::MAX] {
                let d = backoff(attempt, random);
                assert!(d >= base / 2 && d < base, "{attempt} {random}: {d:?}");
            }
        }
        assert_eq!(backoff(1, 0), Duration::from_millis(250));
        assert_eq!(backoff(3, 0), Duration::from_secs(1));
        assert!(backoff(30, u64::MAX) < BACKOFF_MAX);
    }

    #[test]
    fn only_transient_codes_are_retried() {
        for c in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
        ] {
            assert!(retryable(c), "{c:?}");
        }
        for c in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
        ] {
            assert!(!retryable(c), "{c:?}");
        }
    }

    fn cfg(endpoint: &str, queue: usize) -> OtlpConfig {
        OtlpConfig {
            endpoint: Some(endpoint.into()),
            batch_size: 2,
            batch_timeout_ms: 10,
            queue_capacity: queue,
            timeout_secs: 1,
            max_attempts: 2,
            ..Default::default()
        }
    }

    /// With nothing listening: every batch fails after its tries, a full
    /// queue drops and counts, and nothing waits on the offering side.
    #[tokio::test(flavor = "current_thread")]
    async fn an_absent_collector_costs_counted_records_only() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let otlp = Otlp::start(&cfg(&endpoint, 4), &endpoint, Resource::default()).unwrap();
        let started = std::time::Instant::now();
        for _ in 0..100 {
            otlp.offer(LogRecord::default);
        }
        assert!(started.elapsed() < Duration::from_millis(100));
        // No task ran yet: 4 queued, 96 dropped.
        assert_eq!(otlp.stats.dropped.load(Ordering::Relaxed), 96);
        assert_eq!(otlp.stats.unsent(), 4);
        let stats = otlp.stats.clone();
        otlp.finish(Duration::from_secs(10)).await;
        assert_eq!(stats.exported.load(Ordering::Relaxed), 0);
        assert_eq!(stats.failed.load(Ordering::Relaxed), 4);
        assert_eq!(stats.batches_failed.load(Ordering::Relaxed), 2);
        // One retry per batch (max_attempts = 2).
        assert_eq!(stats.retries.load(Ordering::Relaxed), 2);
        assert_eq!(stats.unsent(), 0);
    }

    /// An in-process collector (the generated OTLP server) that answers
    /// with a script of results, then OK; it keeps every request's record
    /// count and the value of the `authorization` header.
    mod fake {
        use std::sync::Mutex;

        use opentelemetry_proto::tonic::collector::logs::v1::{
            ExportLogsPartialSuccess, ExportLogsServiceResponse,
            logs_service_server::{LogsService, LogsServiceServer},
        };

        use super::*;

        #[derive(Default)]
        pub struct Collector {
            /// Per request: Err(code) or Ok(records to reject).
            pub script: Mutex<Vec<Result<i64, Code>>>,
            pub batches: Mutex<Vec<usize>>,
            pub auth: Mutex<Vec<String>>,
            /// Each request's `grpc-encoding` ("" when not compressed).
            pub encodings: Mutex<Vec<String>>,
        }

        struct Service(Arc<Collector>);

        #[tonic::async_trait]
        impl LogsService for Service {
            async fn export(
                &self,
                req: tonic::Request<ExportLogsServiceRequest>,
            ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
                let auth = req
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                self.0.auth.lock().unwrap().push(auth);
                let encoding = req
                    .metadata()
                    .get("grpc-encoding")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                self.0.encodings.lock().unwrap().push(encoding);
                let next = {
                    let mut s = self.0.script.lock().unwrap();
                    if s.is_empty() { Ok(0) } else { s.remove(0) }
                };
                let rejected = next.map_err(|c| tonic::Status::new(c, "scripted"))?;
                let n: usize = req
                    .get_ref()
                    .resource_logs
                    .iter()
                    .flat_map(|r| &r.scope_logs)
                    .map(|s| s.log_records.len())
                    .sum();
                self.0.batches.lock().unwrap().push(n);
                Ok(tonic::Response::new(ExportLogsServiceResponse {
                    partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
                        rejected_log_records: rejected,
                        error_message: "scripted".into(),
                    }),
                }))
            }
        }

        /// Serves `c` on a loopback port; returns the endpoint URL.
        pub async fn serve(c: Arc<Collector>) -> String {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(
                        LogsServiceServer::new(Service(c))
                            .accept_compressed(CompressionEncoding::Gzip),
                    )
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
            );
            format!("http://127.0.0.1:{port}")
        }
    }

    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Runs `records` records through an exporter against a collector
    /// answering with `script`; returns the stats and the collector.
    async fn export_through(
        script: Vec<Result<i64, Code>>,
        records: usize,
        tune: impl FnOnce(&mut OtlpConfig),
    ) -> (Arc<OtlpStats>, Arc<fake::Collector>) {
        let collector = Arc::new(fake::Collector::default());
        *collector.script.lock().unwrap() = script;
        let endpoint = fake::serve(collector.clone()).await;
        let mut c = cfg(&endpoint, 64);
        c.max_attempts = 5;
        tune(&mut c);
        let otlp = Otlp::start(&c, &endpoint, Resource::default()).unwrap();
        for _ in 0..records {
            otlp.offer(LogRecord::default);
        }
        let stats = otlp.stats.clone();
        otlp.finish(Duration::from_secs(10)).await;
        (stats, collector)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn retryable_failures_are_retried_until_delivered() {
        let (stats, collector) = export_through(
            vec![Err(Code::Unavailable), Err(Code::ResourceExhausted)],
            2,
            |_| {},
        )
        .await;
        assert_eq!(get(&stats.exported), 2);
        assert_eq!(get(&stats.retries), 2);
        assert_eq!(get(&stats.batches_failed), 0);
        assert_eq!(*collector.batches.lock().unwrap(), vec![2]);
        assert_eq!(collector.auth.lock().unwrap().len(), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_permanent_failure_is_not_retried() {
        let (stats, collector) = export_through(vec![Err(Code::InvalidArgument)], 4, |_| {}).await;
        // The first batch of 2 is given up at once, the second delivered.
        assert_eq!(get(&stats.retries), 0);
        assert_eq!(get(&stats.batches_failed), 1);
        assert_eq!(get(&stats.failed), 2);
        assert_eq!(get(&stats.exported), 2);
        assert_eq!(*collector.batches.lock().unwrap(), vec![2]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn rejected_records_are_counted_as_failed() {
        let (stats, _) = export_through(vec![Ok(1)], 2, |_| {}).await;
        assert_eq!(get(&stats.exported), 1);
        assert_eq!(get(&stats.failed), 1);
        assert_eq!(get(&stats.batches_failed), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn batches_by_size_and_sends_the_rest_at_shutdown() {
        // A partial batch would wait a minute; shutdown sends it at once.
        let (stats, collector) = export_through(vec![], 7, |c| {
            c.batch_size = 3;
            c.batch_timeout_ms = 60_000;
            c.headers
                .insert("authorization".into(), "Bearer t0ken".into());
        })
        .await;
        assert_eq!(get(&stats.exported), 7);
        assert_eq!(stats.unsent(), 0);
        assert_eq!(*collector.batches.lock().unwrap(), vec![3, 3, 1]);
        assert_eq!(
            *collector.auth.lock().unwrap(),
            vec!["Bearer t0ken"; 3],
            "the configured header goes with every request"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn gzip_over_grpc_is_sent_compressed() {
        let (stats, collector) = export_through(vec![], 2, |c| {
            c.compression = OtlpCompression::Gzip;
        })
        .await;
        assert_eq!(get(&stats.exported), 2);
        assert_eq!(*collector.encodings.lock().unwrap(), vec!["gzip"]);
        let (_, plain) = export_through(vec![], 2, |_| {}).await;
        assert_eq!(*plain.encodings.lock().unwrap(), vec![""]);
    }

    /// Issue 22: a throttling collector's RetryInfo sets the pause before
    /// the next try (capped as Retry-After is); without one, the backoff.
    #[test]
    fn a_collectors_retry_info_is_the_pause() {
        use tonic_types::{ErrorDetails, StatusExt};
        let asked = |d| {
            tonic::Status::with_error_details(
                Code::Unavailable,
                "busy",
                ErrorDetails::with_retry_info(Some(d)),
            )
        };
        assert_eq!(
            pause_asked(&asked(Duration::from_millis(1500))),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            pause_asked(&asked(Duration::from_secs(3600))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(pause_asked(&tonic::Status::unavailable("busy")), None);
    }

    #[test]
    fn unreadable_tls_files_name_the_key() {
        let mut c = cfg("https://127.0.0.1:4317", 4);
        c.tls = Some(crate::config::OtlpTlsConfig {
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        });
        let e = channel(&c, "https://127.0.0.1:4317").err().unwrap();
        assert!(format!("{e:#}").contains("export.otlp.tls.ca"), "{e:#}");
    }
}
