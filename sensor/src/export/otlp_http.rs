//! OTLP/HTTP (`http/protobuf`): each batch POSTed as a binary protobuf
//! `ExportLogsServiceRequest` to the collector's `/v1/logs` (port 4318),
//! gzip when asked; 429, 502, 503 and 504 are retried (after the
//! collector's `Retry-After` when it gives one), other statuses are not.

use std::time::Duration;

use anyhow::{Context, Result};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

use super::otlp::{Failure, rejected};
use crate::config::{OtlpCompression, OtlpConfig};

pub(super) struct HttpTransport {
    client: reqwest::Client,
    url: String,
    headers: reqwest::header::HeaderMap,
    gzip: bool,
}

/// Where OTLP/HTTP log requests go: the endpoint's `/v1/logs`, unless
/// the endpoint names a path of its own (OTLP's per-signal URL).
fn logs_url(endpoint: &str) -> String {
    let after_scheme = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    match after_scheme.find('/') {
        Some(i) if after_scheme[i..] != *"/" => endpoint.to_string(),
        _ => format!("{}/v1/logs", endpoint.trim_end_matches('/')),
    }
}

impl HttpTransport {
    pub(super) fn new(cfg: &OtlpConfig, endpoint: &str) -> Result<Self> {
        let timeout = Duration::from_secs(cfg.timeout_secs);
        let mut b = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true);
        if let Some(t) = &cfg.tls {
            let read = |p: &std::path::Path, key: &str| {
                std::fs::read(p)
                    .with_context(|| format!("export.otlp.tls.{key}: reading {}", p.display()))
            };
            if let Some(ca) = &t.ca {
                // A private CA only, as for gRPC.
                b = b.tls_built_in_root_certs(false).add_root_certificate(
                    reqwest::Certificate::from_pem(&read(ca, "ca")?)
                        .context("export.otlp.tls.ca: not a PEM certificate")?,
                );
            }
            if let (Some(cert), Some(key)) = (&t.cert, &t.key) {
                let mut pem = read(cert, "cert")?;
                pem.extend_from_slice(&read(key, "key")?);
                b = b.identity(
                    reqwest::Identity::from_pem(&pem)
                        .context("export.otlp.tls: the client certificate and key")?,
                );
            }
            if t.domain.is_some() {
                anyhow::bail!(
                    "export.otlp.tls.domain is for grpc only: with http/protobuf, name the collector in the endpoint"
                );
            }
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .with_context(|| format!("export.otlp.headers: {k:?}"))?;
            let mut value = reqwest::header::HeaderValue::from_str(v)
                .with_context(|| format!("export.otlp.headers: the value of {k:?}"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(HttpTransport {
            client: b.build().context("export.otlp: building the HTTP client")?,
            url: logs_url(endpoint),
            headers,
            gzip: cfg.compression == OtlpCompression::Gzip,
        })
    }

    /// Sends one request; returns how many records the collector rejected.
    pub(super) async fn export(&self, request: &ExportLogsServiceRequest) -> Result<u64, Failure> {
        let HttpTransport {
            client,
            url,
            headers,
            gzip,
        } = self;
        let mut body = request.encode_to_vec();
        let mut req = client
            .post(url.as_str())
            .headers(headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf");
        if *gzip {
            use std::io::Write;
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = z.write_all(&body);
            body = z.finish().unwrap_or_default();
            req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        let resp = req.body(body).send().await.map_err(|e| Failure {
            // Connecting, or the collector went away: try again.
            retryable: true,
            why: format!("{}", e.without_url()),
            after: None,
        })?;
        let status = resp.status().as_u16();
        let after = retry_after(resp.headers());
        let bytes = resp.bytes().await.unwrap_or_default();
        if (200..300).contains(&status) {
            let answer = ExportLogsServiceResponse::decode(bytes).unwrap_or_default();
            return Ok(rejected(answer.partial_success));
        }
        // A google.rpc.Status may say why; its message only.
        let message = rpc_status_message(&bytes);
        Err(Failure {
            retryable: http_retryable(status),
            why: match message {
                Some(m) => format!("HTTP {status}: {m}"),
                None => format!("HTTP {status}"),
            },
            after,
        })
    }
}

/// OTLP/HTTP statuses worth another try (the specification's list).
fn http_retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// The longest pause a collector can ask for before a retry.
pub(super) const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

/// A `Retry-After` in seconds (the form collectors send), at most a
/// minute.
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = h
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(RETRY_AFTER_MAX))
}

/// The message of a `google.rpc.Status` body (field 2, a string), cut
/// to 200 characters.
fn rpc_status_message(bytes: &[u8]) -> Option<String> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let s = RpcStatus::decode(bytes).ok()?;
    (!s.message.is_empty()).then(|| s.message.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{extract::State, http::HeaderMap, response::IntoResponse};
    use opentelemetry_proto::tonic::{logs::v1::LogRecord, resource::v1::Resource};

    use super::*;
    use crate::{config::OtlpProtocol, export::otlp::Otlp};

    #[test]
    fn records_go_to_the_endpoints_v1_logs_unless_it_names_a_path() {
        assert_eq!(logs_url("http://c:4318"), "http://c:4318/v1/logs");
        assert_eq!(logs_url("http://c:4318/"), "http://c:4318/v1/logs");
        assert_eq!(logs_url("https://c/otlp/v1/logs"), "https://c/otlp/v1/logs");
    }

    /// A collector on loopback: answers each request with the next
    /// scripted status (then 200), keeps what it was sent.
    #[derive(Default)]
    struct Collector {
        /// (status, Retry-After).
        script: Mutex<Vec<(u16, Option<&'static str>)>>,
        /// Per request: records, Content-Encoding, authorization.
        seen: Mutex<Vec<(usize, String, String)>>,
    }

    async fn logs(
        State(c): State<Arc<Collector>>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let encoding = h("content-encoding");
        let body = if encoding == "gzip" {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        } else {
            body.to_vec()
        };
        let req = ExportLogsServiceRequest::decode(&body[..]).unwrap();
        let n = req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        c.seen
            .lock()
            .unwrap()
            .push((n, encoding, h("authorization")));
        let next = {
            let mut s = c.script.lock().unwrap();
            if s.is_empty() {
                (200, None)
            } else {
                s.remove(0)
            }
        };
        let status = axum::http::StatusCode::from_u16(next.0).unwrap();
        match next {
            (200, _) => {
                (status, ExportLogsServiceResponse::default().encode_to_vec()).into_response()
            }
            (_, Some(after)) => (status, [("retry-after", after)], "slow down").into_response(),
            _ => (status, "no").into_response(),
        }
    }

    async fn export_through(
        script: Vec<(u16, Option<&'static str>)>,
        records: usize,
        gzip: bool,
    ) -> (Arc<crate::export::otlp::OtlpStats>, Arc<Collector>) {
        let c = Arc::new(Collector::default());
        *c.script.lock().unwrap() = script;
        let app = axum::Router::new()
            .route("/v1/logs", axum::routing::post(logs))
            .with_state(c.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(l, app).await });
        let mut cfg = OtlpConfig {
            endpoint: Some(endpoint.clone()),
            protocol: OtlpProtocol::HttpProtobuf,
            compression: if gzip {
                OtlpCompression::Gzip
            } else {
                OtlpCompression::None
            },
            batch_size: 2,
            batch_timeout_ms: 10,
            queue_capacity: 64,
            timeout_secs: 2,
            max_attempts: 3,
            ..Default::default()
        };
        cfg.headers
            .insert("authorization".into(), "Bearer c0llector".into());
        let otlp = Otlp::start(&cfg, &endpoint, Resource::default()).unwrap();
        for _ in 0..records {
            otlp.offer(LogRecord::default);
        }
        let stats = otlp.stats.clone();
        otlp.finish(Duration::from_secs(10)).await;
        (stats, c)
    }

    fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
        c.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// gzip bodies with the configured header; a 503 with `Retry-After`
    /// and a 429 are retried, and everything is delivered.
    #[tokio::test(flavor = "current_thread")]
    async fn gzip_requests_are_retried_after_throttling_and_delivered() {
        let (stats, c) = export_through(vec![(503, Some("0")), (429, None)], 2, true).await;
        assert_eq!(get(&stats.exported), 2);
        assert_eq!(get(&stats.retries), 2);
        let seen = c.seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        for (n, encoding, auth) in seen.iter() {
            assert_eq!(
                (*n, encoding.as_str(), auth.as_str()),
                (2, "gzip", "Bearer c0llector")
            );
        }
    }

    /// A 400 says the request is bad: given up at once, counted.
    #[tokio::test(flavor = "current_thread")]
    async fn a_client_error_is_not_retried() {
        let (stats, c) = export_through(vec![(400, None)], 4, false).await;
        assert_eq!(get(&stats.retries), 0);
        assert_eq!(get(&stats.batches_failed), 1);
        assert_eq!(get(&stats.failed), 2);
        assert_eq!(get(&stats.exported), 2);
        assert_eq!(c.seen.lock().unwrap()[0].1, "", "not compressed");
    }
}
