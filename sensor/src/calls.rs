//! TLS plaintext → HTTP exchanges → `api_call` events.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Result;
use sensor_common::{TLS_DIR_WRITE, TLS_LIB_GNUTLS};

use crate::{
    clock::Clock,
    decode::{SockData, TlsData},
    event::{Detail, Event},
    flows::{ApiCall, Flows, RequestSummary, ResponseSummary, StreamKey},
    http::{
        fingerprint::Fingerprinter,
        stream::{Direction, H1Stream, Message, SECRET_HEADERS, starts_with_method},
        template::path_template,
    },
    procs::Process,
    redact,
};

/// Request parser, response parser, and whether the process turned out to
/// be the server of this connection (it writes responses): the sensor
/// reports the calls a process makes, not the ones it serves.
type Parsers = (H1Stream, H1Stream, Option<bool>);

pub struct Calls {
    flows: Flows<Parsers>,
    fp: Fingerprinter,
    /// Stream bytes that could not be framed as HTTP/1.1 (HTTP/2, other
    /// protocols, captures that started mid-message).
    pub parse_errors: u64,
    /// TLS records of connections where the process is the server.
    pub server_records: u64,
}

impl Calls {
    pub fn new(state_dir: &Path) -> Result<Self> {
        Ok(Self {
            flows: Flows::new(16384, Duration::from_secs(120)),
            fp: Fingerprinter::load_or_create(&state_dir.join("fingerprint.key"))?,
            parse_errors: 0,
            server_records: 0,
        })
    }

    pub fn evicted_streams(&self) -> u64 {
        self.flows.stats.streams_evicted
    }

    /// Feeds one TLS record; returns the exchanges it completed.
    pub fn on_tls(&mut self, t: &TlsData, process: &Arc<Process>) -> Vec<ApiCall> {
        let key = StreamKey {
            pid: process.pid,
            start_ticks: process.start_ticks,
            conn: t.hdr.conn,
        };
        let lib = if t.hdr.lib == TLS_LIB_GNUTLS {
            "gnutls"
        } else {
            "openssl"
        };
        let now = t.hdr.header.ktime_ns;
        let mut done = Vec::new();
        let Self {
            flows,
            fp,
            parse_errors,
            server_records,
        } = self;
        let stream = flows.stream(
            key,
            process,
            lib,
            now,
            || {
                (
                    H1Stream::new(Direction::Request),
                    H1Stream::new(Direction::Response),
                    None,
                )
            },
            &mut done,
        );
        let writing = t.hdr.dir == TLS_DIR_WRITE;
        if stream.parsers.2.is_none() {
            // Decided on evidence only: a status line or a request line at
            // the start of a record. Until then the process is taken for
            // the client (a connection that predates the sensor may start
            // mid-body).
            let status_line = t.data.starts_with(b"HTTP/1.");
            let request_line = starts_with_method(&t.data);
            stream.parsers.2 = match (writing, status_line, request_line) {
                (true, true, _) | (false, _, true) => Some(true),
                (true, _, true) | (false, true, _) => Some(false),
                _ => None,
            };
        }
        if stream.parsers.2 == Some(true) {
            *server_records += 1;
            return done;
        }
        let fingerprint = |v: &[u8]| fp.fingerprint(v);
        let parser = if writing {
            &mut stream.parsers.0
        } else {
            &mut stream.parsers.1
        };
        let mut msgs = parser.feed(&t.data, &fingerprint);
        let missing = t.hdr.len.saturating_sub(t.data.len() as u64);
        if missing > 0 {
            msgs.extend(parser.gap(missing));
        }
        for m in msgs {
            match m {
                Message::Error(e) => {
                    *parse_errors += 1;
                    tracing::debug!(pid = key.pid, conn = key.conn, error = %e, "HTTP framing");
                }
                Message::Complete { head, body_bytes } if writing => {
                    stream.parsers.1.expect_response_to(&head.method);
                    let req = RequestSummary {
                        authority: head.host.clone().unwrap_or_default(),
                        method: head.method,
                        target: head.target,
                        http_version: format!("HTTP/1.{}", head.version),
                        credential_fingerprint: head.credentials.into_iter().next(),
                        body_bytes,
                        head_bytes: head.head_bytes,
                    };
                    stream.request(req, now, t.hdr.header.tid);
                }
                Message::Complete { head, body_bytes } => {
                    let resp = ResponseSummary {
                        status: head.status,
                        body_bytes,
                        head_bytes: head.head_bytes,
                    };
                    done.extend(stream.response(&key, resp, now));
                }
            }
        }
        done
    }
}

impl Calls {
    /// A plain-text request seen in the first sends of a connected socket.
    /// Only sends are captured on plain sockets so far: the call carries no
    /// response (status absent).
    pub fn on_plain(&mut self, d: &SockData, process: &Arc<Process>) -> Option<ApiCall> {
        if !starts_with_method(&d.data) {
            return None;
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(&d.data) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) | Err(_) => {
                self.parse_errors += 1;
                return None;
            }
        };
        let mut authority = String::new();
        let mut credential = None;
        for h in req.headers.iter() {
            let name = h.name.to_ascii_lowercase();
            if name == "host" {
                authority = String::from_utf8_lossy(h.value).trim().to_ascii_lowercase();
            } else if credential.is_none() && SECRET_HEADERS.contains(&name.as_str()) {
                credential = Some(self.fp.fingerprint(h.value));
            }
        }
        let ns = d.hdr.header.ktime_ns;
        Some(ApiCall {
            process: process.clone(),
            conn: d.hdr.fd as u64,
            tls_library: None,
            request: RequestSummary {
                method: req.method.unwrap_or("").to_string(),
                target: req.path.unwrap_or("").to_string(),
                authority,
                http_version: format!("HTTP/1.{}", req.version.unwrap_or(1)),
                credential_fingerprint: credential,
                // What this send carried after the head.
                body_bytes: d.hdr.len.saturating_sub(head_len as u64),
                head_bytes: head_len as u64,
            },
            response: None,
            started_ns: ns,
            finished_ns: ns,
            tid: d.hdr.header.tid,
        })
    }
}

impl Calls {
    /// Ends streams idle for long (all of them with `u64::MAX`, at
    /// shutdown); their unanswered requests come back as calls.
    pub fn sweep(&mut self, now_ns: u64) -> Vec<ApiCall> {
        if now_ns == u64::MAX {
            return self
                .flows
                .sweep(std::time::Instant::now(), now_ns, |_| true);
        }
        self.flows
            .sweep(std::time::Instant::now(), now_ns, |_| false)
    }
}

/// The event for a finished exchange, timed at its request.
pub fn event(call: ApiCall, clock: &Clock) -> Event {
    let r = &call.request;
    let latency_ms = call
        .response
        .as_ref()
        .map(|_| call.finished_ns.saturating_sub(call.started_ns) as f64 / 1e6);
    let detail = Detail::ApiCall {
        method: r.method.clone(),
        authority: r.authority.clone(),
        path: redact::target(&r.target),
        path_template: path_template(&r.target),
        status: call.response.as_ref().map(|s| s.status),
        request_bytes: r.head_bytes + r.body_bytes,
        response_bytes: call
            .response
            .as_ref()
            .map_or(0, |s| s.head_bytes + s.body_bytes),
        latency_ms,
        http_version: r.http_version.clone(),
        transport: if call.tls_library.is_some() {
            "tls"
        } else {
            "plain"
        },
        tls_library: call.tls_library,
        credential_fingerprint: r.credential_fingerprint.clone(),
        connection: if call.tls_library.is_some() {
            format!("{:#x}", call.conn)
        } else {
            format!("fd {}", call.conn)
        },
    };
    let tid = call.tid;
    let started = call.started_ns;
    Event::at(clock, started, tid, call.process, detail)
}
