//! Captured HTTP bytes (TLS library plaintext, plain-text sockets) →
//! exchanges → `api_call` events.

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use sensor_common::{TLS_DIR_WRITE, TLS_LIB_BORINGSSL, TLS_LIB_GNUTLS, TLS_LIB_GO, TLS_LIB_RUSTLS};

use crate::{
    agents::{catalog, llm},
    clock::Clock,
    db::{self, DbCall, Side},
    decode::{SockData, TlsData},
    event::{Detail, Event},
    flows::{
        ApiCall, Flows, MAX_PENDING, PENDING_BUDGET, RequestSummary, ResponseSummary, StreamKey,
    },
    http::{
        fingerprint::{Credentials, Fingerprinter},
        h2::{H2Conn, H2Message, is_client_preface, is_server_preface},
        stream::{Direction, H1Stream, Message, absolute_target, starts_with_method},
        template::path_template,
    },
    procs::Process,
    redact,
    sockets::FirstBytes,
    ws_calls::{WsCalls, WsParsed},
};

/// Plain sockets share the stream table with TLS connection objects
/// (user-space pointers, below 2^57 on x86-64 and arm64): this bit keeps
/// their keys apart.
const PLAIN: u64 = 1 << 63;

/// Streams of rustls connections are keyed by socket (`RUSTLS | fd`): the
/// kernel sees them at the record cipher, where each direction has its
/// own context (`sensor-ebpf/src/aead.rs`).
const RUSTLS: u64 = 1 << 62;

/// Records of rustls connections held until the kernel names their
/// socket: the first records sealed on a connection go out before the
/// send that ties them (normally the very next record). Past these bounds
/// the oldest context's records are dropped, and counted.
const MAX_UNBOUND_RECORDS: usize = 64;
const MAX_UNBOUND_CONTEXTS: usize = 1024;

/// Per-stream parser state.
struct Parsers {
    request: H1Stream,
    response: H1Stream,
    /// Set when the client's first bytes are the HTTP/2 preface (ALPN h2,
    /// or cleartext with prior knowledge); both directions then go here.
    h2: Option<H2Conn>,
    /// Set when the client's first bytes are a PostgreSQL StartupMessage
    /// or a MySQL handshake response (plain, or inside TLS after the
    /// client asked for it).
    db: Option<db::Conn>,
    /// A WebSocket upgrade the client asked for (its request), until the
    /// server's answer; then, on a 101, the connection's messages.
    ws_upgrade: Option<RequestSummary>,
    ws: Option<WsCalls>,
    /// Whether the process turned out to be the server of this connection
    /// (it writes responses): the sensor reports the calls a process makes,
    /// not the ones it serves.
    server: Option<bool>,
    /// A parse error of this stream was reported (later ones are counted).
    error_reported: bool,
}

/// Largest LLM request or response body kept to read model, usage and
/// tool calls from.
const LLM_BODY_LIMIT: usize = 256 * 1024;

/// Requests whose bodies are kept: those to LLM providers.
fn is_llm_request(h: &crate::http::stream::Head) -> bool {
    catalog::match_call(h.host.as_deref().unwrap_or_default(), &h.target).is_some()
}

impl Parsers {
    fn new() -> Self {
        let mut request = H1Stream::new(Direction::Request);
        request.keep_bodies(LLM_BODY_LIMIT, Some(is_llm_request));
        let mut response = H1Stream::new(Direction::Response);
        response.keep_bodies(LLM_BODY_LIMIT, None);
        Self {
            request,
            response,
            h2: None,
            db: None,
            ws_upgrade: None,
            ws: None,
            server: None,
            error_reported: false,
        }
    }
}

/// Bytes that could not be framed, named by connection: reported once per
/// stream so a misbehaving connection cannot flood the output.
#[derive(Clone, Debug)]
pub struct ParseFailure {
    pub process: Arc<Process>,
    pub conn: u64,
    pub fd: Option<i32>,
    pub tls_library: Option<&'static str>,
    pub protocol: &'static str,
    /// Says what was wrong, never the bytes themselves.
    pub error: String,
    pub ns: u64,
    pub tid: u32,
}

/// One parsed message of either protocol, before pairing.
enum Parsed {
    Error(String),
    /// A request and the HTTP/2 stream it went on (0 for HTTP/1.x).
    Request(RequestSummary, u32),
    Response(ResponseSummary, u32),
}

/// What feeding bytes produced.
#[derive(Clone, Debug)]
pub enum Outcome {
    Call(Box<ApiCall>),
    ParseError(ParseFailure),
}

/// One captured chunk of one direction of a connection.
struct Chunk<'a> {
    conn: u64,
    tls_library: Option<&'static str>,
    writing: bool,
    data: &'a [u8],
    /// Bytes the call really moved (`data` may be a prefix).
    len: u64,
    ns: u64,
    tid: u32,
    fd: Option<i32>,
}

pub struct Calls {
    flows: Flows<Parsers>,
    fp: Arc<Fingerprinter>,
    /// Stream bytes that could not be framed as HTTP/1.1 or HTTP/2 (other
    /// protocols, captures that started mid-message).
    pub parse_errors: u64,
    /// Records of connections where the process is the server.
    pub server_records: u64,
    /// rustls records whose socket is not known yet, by (pid, start
    /// ticks, cipher context).
    unbound: HashMap<(u32, u64, u64), Vec<TlsData>>,
    /// rustls records dropped because their socket never became known
    /// (`tls_records_unbound` in `sensor status`).
    pub unbound_dropped: u64,
}

impl Calls {
    /// `shared_key`: a fingerprint key shared by a fleet, which must exist;
    /// otherwise the host's own in `state_dir`, made on first use.
    pub fn new(state_dir: &Path, shared_key: Option<&Path>) -> Result<Self> {
        let fp = match shared_key {
            Some(path) => Fingerprinter::load(path).with_context(|| {
                format!(
                    "http.fingerprint_key {} (make one with `head -c 32 /dev/urandom`, the same on every node)",
                    path.display()
                )
            })?,
            None => Fingerprinter::load_or_create(&state_dir.join("fingerprint.key"))?,
        };
        Ok(Self {
            flows: Flows::new(16384, Duration::from_secs(120)),
            fp: Arc::new(fp),
            parse_errors: 0,
            server_records: 0,
            unbound: HashMap::new(),
            unbound_dropped: 0,
        })
    }

    /// The fingerprint key's holder, shared with whatever else must give a
    /// credential the same fingerprint (held credentials).
    pub fn fingerprinter(&self) -> Arc<Fingerprinter> {
        self.fp.clone()
    }

    pub fn evicted_streams(&self) -> u64 {
        self.flows.stats.streams_evicted
    }

    /// Feeds one TLS record.
    pub fn on_tls(&mut self, t: &TlsData, process: &Arc<Process>) -> Vec<Outcome> {
        let lib = match t.hdr.lib {
            TLS_LIB_GNUTLS => "gnutls",
            TLS_LIB_GO => "go",
            TLS_LIB_RUSTLS => "rustls",
            TLS_LIB_BORINGSSL => "boringssl",
            _ => "openssl",
        };
        let conn = if t.hdr.lib != TLS_LIB_RUSTLS {
            t.hdr.conn
        } else if t.hdr.fd >= 0 {
            RUSTLS | t.hdr.fd as u32 as u64
        } else {
            self.hold_unbound(t, process);
            return Vec::new();
        };
        let chunk = Chunk {
            conn,
            tls_library: Some(lib),
            writing: t.hdr.dir == TLS_DIR_WRITE,
            data: &t.data,
            len: t.hdr.len,
            ns: t.hdr.header.ktime_ns,
            tid: t.hdr.header.tid,
            fd: (t.hdr.fd >= 0).then_some(t.hdr.fd),
        };
        self.feed(process, chunk, true)
    }

    /// Feeds bytes of a plain socket. Only a send that starts like a
    /// request (the HTTP/2 preface, a database client's first message) opens a
    /// stream: other protocols' first bytes (and TLS ClientHellos) are not
    /// calls.
    pub fn on_plain(&mut self, d: &SockData, process: &Arc<Process>) -> Vec<Outcome> {
        let writing = d.hdr.dir == TLS_DIR_WRITE;
        let chunk = Chunk {
            conn: PLAIN | d.hdr.fd as u32 as u64,
            tls_library: None,
            writing,
            data: &d.data,
            len: d.hdr.len,
            ns: d.hdr.header.ktime_ns,
            tid: d.hdr.header.tid,
            fd: Some(d.hdr.fd),
        };
        let opens = writing
            && (starts_with_method(&d.data)
                || is_client_preface(&d.data)
                || db::Conn::opens(&d.data));
        self.feed(process, chunk, opens)
    }

    /// The kernel saw TLS connection `conn` of `process` write to socket
    /// `fd` (a memory-BIO user, or a rustls cipher context). The caller
    /// checks `fd` carried a TLS handshake. Returns what the records held
    /// for it complete.
    pub fn bind(&mut self, process: &Arc<Process>, conn: u64, fd: i32) -> Vec<Outcome> {
        let key = StreamKey {
            pid: process.pid,
            start_ticks: process.start_ticks,
            conn,
        };
        if let Some(s) = self.flows.existing(&key) {
            s.fd = Some(fd);
        }
        let held = self
            .unbound
            .remove(&(process.pid, process.start_ticks, conn))
            .unwrap_or_default();
        let mut out = Vec::new();
        for mut t in held {
            t.hdr.fd = fd;
            out.extend(self.on_tls(&t, process));
        }
        out
    }

    /// Keeps a rustls record until its socket is known (`bind`).
    fn hold_unbound(&mut self, t: &TlsData, process: &Process) {
        let key = (process.pid, process.start_ticks, t.hdr.conn);
        if !self.unbound.contains_key(&key) && self.unbound.len() >= MAX_UNBOUND_CONTEXTS {
            // Contexts never tied (their sends were not seen): forget one.
            if let Some(k) = self.unbound.keys().next().copied() {
                let gone = self.unbound.remove(&k).map_or(0, |v| v.len());
                self.unbound_dropped += gone as u64;
            }
        }
        let held = self.unbound.entry(key).or_default();
        if held.len() >= MAX_UNBOUND_RECORDS {
            self.unbound_dropped += 1;
            return;
        }
        held.push(t.clone());
    }

    /// `fd` of `process` was connected anew: a plain stream on the old
    /// connection with that number is over.
    pub fn on_connect(&mut self, process: &Process, fd: i32, now_ns: u64) -> Vec<Outcome> {
        let mut out = Vec::new();
        for kind in [PLAIN, RUSTLS] {
            let key = StreamKey {
                pid: process.pid,
                start_ticks: process.start_ticks,
                conn: kind | fd as u32 as u64,
            };
            out.extend(
                self.flows
                    .end(&key, now_ns)
                    .into_iter()
                    .map(|c| Outcome::Call(Box::new(c))),
            );
        }
        out
    }

    fn feed(&mut self, process: &Arc<Process>, c: Chunk, open: bool) -> Vec<Outcome> {
        let key = StreamKey {
            pid: process.pid,
            start_ticks: process.start_ticks,
            conn: c.conn,
        };
        let mut evicted = Vec::new();
        let Self {
            flows,
            fp,
            parse_errors,
            server_records,
            ..
        } = self;
        let stream = if open {
            flows.stream(
                key,
                process,
                c.tls_library,
                c.ns,
                Parsers::new,
                &mut evicted,
            )
        } else {
            match flows.existing(&key) {
                Some(s) => s,
                None => return Vec::new(),
            }
        };
        let mut out: Vec<Outcome> = evicted
            .into_iter()
            .map(|c| Outcome::Call(Box::new(c)))
            .collect();
        if c.fd.is_some() {
            stream.fd = c.fd;
        }
        let p = &mut stream.parsers;
        if p.server.is_none() {
            // Decided on evidence only: a status line, a request line or
            // the HTTP/2 preface at the start of a record. Until then the
            // process is taken for the client (a connection that predates
            // the sensor may start mid-body).
            // An HTTP/2 server speaks first, with SETTINGS.
            let status_line = c.data.starts_with(b"HTTP/1.") || is_server_preface(c.data);
            let db_start = db::Conn::opens(c.data);
            let request_start = starts_with_method(c.data) || is_client_preface(c.data) || db_start;
            p.server = match (c.writing, status_line, request_start) {
                (true, true, _) | (false, _, true) => Some(true),
                (true, _, true) | (false, true, _) => Some(false),
                _ => None,
            };
            if p.server == Some(false) && is_client_preface(c.data) {
                let mut h2 = H2Conn::new();
                h2.keep_bodies(LLM_BODY_LIMIT, |authority, path| {
                    catalog::match_call(authority, path).is_some()
                });
                p.h2 = Some(h2);
            }
            if p.server == Some(false) {
                p.db = db::Conn::open(c.data);
            }
        }
        if p.server == Some(true) {
            *server_records += 1;
            return out;
        }
        let missing = c.len.saturating_sub(c.data.len() as u64);
        let (parsed, protocol) = parse(p, &c, missing, &|v: &[u8]| fp.fingerprint(v));
        let failure = |fd: Option<i32>, error: String| {
            Outcome::ParseError(ParseFailure {
                process: process.clone(),
                conn: c.conn,
                fd,
                tls_library: c.tls_library,
                protocol,
                error,
                ns: c.ns,
                tid: c.tid,
            })
        };
        for m in parsed {
            match m {
                Parsed::Error(error) => {
                    *parse_errors += 1;
                    if !stream.parsers.error_reported {
                        stream.parsers.error_reported = true;
                        out.push(failure(stream.fd, error));
                    }
                }
                Parsed::Request(req, sid) => {
                    let was = stream.unpaired;
                    let now = stream.request(&key, req, c.ns, c.tid, sid);
                    if stream.unpaired && !was {
                        out.push(failure(stream.fd, format!(
                            "more than {MAX_PENDING} requests (or {} MiB across connections) awaiting responses: this connection's calls are reported as their requests complete, without responses",
                            PENDING_BUDGET >> 20
                        )));
                    }
                    out.extend(now.into_iter().map(|c| Outcome::Call(Box::new(c))));
                }
                Parsed::Response(resp, sid) => {
                    out.extend(
                        stream
                            .response(&key, sid, resp, c.ns)
                            .map(|c| Outcome::Call(Box::new(c))),
                    );
                }
            }
        }
        out
    }

    /// Ends streams idle for long, those of processes `exited` names, and
    /// all of them with `u64::MAX` (at shutdown); their unanswered requests
    /// come back as calls.
    pub fn sweep(&mut self, now_ns: u64, exited: impl Fn(u32, u64) -> bool) -> Vec<Outcome> {
        let all = now_ns == u64::MAX;
        // A response read until the connection closes (HTTP/1.0 without a
        // length) ends with its stream: completed here, at the time of the
        // stream's last record.
        let close = |key: &StreamKey, s: &mut crate::flows::Stream<Parsers>| {
            let ns = s.last_ns;
            s.parsers
                .response
                .close()
                .into_iter()
                .filter_map(|m| match m {
                    Message::Complete {
                        head,
                        body_bytes,
                        kept,
                    } => s.response(key, 0, response_summary(head, body_bytes, kept), ns),
                    _ => None,
                })
                .collect()
        };
        self.flows
            .sweep(
                std::time::Instant::now(),
                now_ns,
                |k| all || exited(k.pid, k.start_ticks),
                close,
            )
            .into_iter()
            .map(|c| Outcome::Call(Box::new(c)))
            .collect()
    }
}

/// What a kept request body (of a call to an LLM provider) says: read
/// now, so the bytes do not wait for the response.
fn request_summary(kept: Option<crate::http::stream::Kept>) -> Option<Box<llm::LlmSummary>> {
    kept.map(|k| {
        let k = k.decoded(LLM_BODY_LIMIT);
        Box::new(llm::summarize_request(&k.bytes, k.truncated))
    })
}

fn response_summary(
    head: crate::http::stream::Head,
    body_bytes: u64,
    kept: Option<crate::http::stream::Kept>,
) -> ResponseSummary {
    ResponseSummary {
        status: head.status,
        body_bytes,
        head_bytes: head.head_bytes,
        body: kept,
        content_type: head.content_type,
        db: None,
    }
}

/// Runs one chunk through the connection's parser; returns the messages
/// and the protocol they were framed as.
fn parse(
    p: &mut Parsers,
    c: &Chunk,
    missing: u64,
    fingerprint: &dyn Credentials,
) -> (Vec<Parsed>, &'static str) {
    if let Some(conn) = &mut p.db {
        let engine = conn.engine();
        return (parse_db(conn, c, missing, fingerprint), engine);
    }
    if let Some(ws) = &mut p.ws {
        return (
            ws_parsed(ws.feed(c.writing, c.data, missing)).collect(),
            "websocket",
        );
    }
    if let Some(h2) = &mut p.h2 {
        let dir = if c.writing {
            Direction::Request
        } else {
            Direction::Response
        };
        let mut msgs = h2.feed(dir, c.data, fingerprint);
        if missing > 0 {
            msgs.extend(h2.gap(dir, missing));
        }
        let parsed = msgs.into_iter().map(|m| match m {
            H2Message::Error(e) => Parsed::Error(e),
            H2Message::Request {
                stream_id,
                method,
                path,
                authority,
                credentials,
                head_bytes,
                body_bytes,
                body,
            } => Parsed::Request(
                RequestSummary {
                    authority: authority.unwrap_or_default(),
                    method,
                    target: path,
                    http_version: "HTTP/2".to_string(),
                    credential_fingerprint: credentials.into_iter().next(),
                    body_bytes,
                    head_bytes,
                    llm: request_summary(body),
                    db: None,
                },
                stream_id,
            ),
            H2Message::Response {
                stream_id,
                status,
                head_bytes,
                body_bytes,
                body,
                content_type,
            } => Parsed::Response(
                ResponseSummary {
                    status,
                    body_bytes,
                    head_bytes,
                    body,
                    content_type,
                    db: None,
                },
                stream_id,
            ),
        });
        return (parsed.collect(), "http/2");
    }
    let parser = if c.writing {
        &mut p.request
    } else {
        &mut p.response
    };
    let mut msgs = parser.feed(c.data, fingerprint);
    if missing > 0 {
        msgs.extend(parser.gap(missing));
    }
    let mut parsed = Vec::with_capacity(msgs.len());
    for m in msgs {
        parsed.push(match m {
            Message::Error(e) => Parsed::Error(e),
            // The bytes after a 101: a WebSocket's first messages, or a
            // protocol the sensor does not read (said once).
            Message::Switched(rest) => match &mut p.ws {
                Some(ws) => {
                    parsed.extend(ws_parsed(ws.feed(false, &rest, missing)));
                    continue;
                }
                None => Parsed::Error(
                    "101 Switching Protocols to a protocol other than WebSocket: the rest of this connection is not read".into(),
                ),
            },
            Message::Complete {
                head,
                body_bytes,
                kept,
            } if c.writing => {
                p.response.expect_response(&head.method, kept.is_some());
                // A target in absolute form names the host the server
                // uses (RFC 9112 §3.2.2): the call is to its origin form.
                let (authority, target) = match absolute_target(&head.target) {
                    Some((host, path)) => (host, path),
                    None => (head.host.unwrap_or_default(), head.target),
                };
                let request = RequestSummary {
                    authority,
                    method: head.method,
                    target,
                    http_version: format!("HTTP/1.{}", head.version),
                    credential_fingerprint: head.credentials.into_iter().next(),
                    body_bytes,
                    head_bytes: head.head_bytes,
                    llm: request_summary(kept),
                    db: None,
                };
                p.ws_upgrade = head.websocket.then(|| request.clone());
                Parsed::Request(request, 0)
            }
            Message::Complete {
                head,
                body_bytes,
                kept,
            } if head.status == 101 => {
                // Messages follow (`Switched` comes next with the rest).
                if let Some(upgrade) = p.ws_upgrade.take() {
                    p.ws = Some(WsCalls::new(
                        &upgrade,
                        head.ws_extensions.as_deref(),
                        LLM_BODY_LIMIT,
                    ));
                }
                Parsed::Response(response_summary(head, body_bytes, kept), 0)
            }
            Message::Complete {
                head,
                body_bytes,
                kept,
            } => Parsed::Response(response_summary(head, body_bytes, kept), 0),
        });
    }
    (parsed, "http/1.1")
}

fn ws_parsed(msgs: Vec<WsParsed>) -> impl Iterator<Item = Parsed> {
    msgs.into_iter().map(|m| match m {
        WsParsed::Error(e) => Parsed::Error(e),
        WsParsed::Request(r) => Parsed::Request(r, 0),
        WsParsed::Response(r) => Parsed::Response(r, 0),
    })
}

/// Runs one chunk through a database connection's parser. A statement
/// is a request whose method is its verb and whose target its template;
/// the user it runs as stands as its credential (by fingerprint, like any
/// credential: the same user in two agents is one credential).
fn parse_db(
    conn: &mut db::Conn,
    c: &Chunk,
    missing: u64,
    fingerprint: &dyn Credentials,
) -> Vec<Parsed> {
    let side = if c.writing {
        Side::Client
    } else {
        Side::Server
    };
    let mut msgs = conn.feed(side, c.data);
    if missing > 0 {
        msgs.extend(conn.gap(side, missing));
    }
    msgs.into_iter()
        .map(|m| match m {
            db::Message::Error(e) => Parsed::Error(e),
            db::Message::Request { request, bytes } => Parsed::Request(
                RequestSummary {
                    method: request.statement.kind.to_ascii_uppercase(),
                    target: request.statement.template.clone(),
                    authority: request.database.clone().unwrap_or_default(),
                    http_version: request.engine.to_string(),
                    credential_fingerprint: request.user.as_ref().map(|u| {
                        fingerprint.fingerprint(format!("{}:{u}", request.engine).as_bytes())
                    }),
                    body_bytes: 0,
                    head_bytes: bytes,
                    llm: None,
                    db: Some(request),
                },
                0,
            ),
            db::Message::Response { result, bytes } => Parsed::Response(
                ResponseSummary {
                    status: 0,
                    body_bytes: 0,
                    head_bytes: bytes,
                    body: None,
                    content_type: None,
                    db: Some(result),
                },
                0,
            ),
        })
        .collect()
}

/// How a connection is named in events: the TLS library's object, or the
/// plain socket.
fn connection_name(conn: u64, tls_library: Option<&str>) -> String {
    match tls_library {
        Some(_) => format!("{conn:#x}"),
        None => format!("fd {}", conn & !PLAIN),
    }
}

/// The event for an outcome; destinations come from the socket table.
pub fn event(outcome: Outcome, clock: &Clock, sockets: &FirstBytes) -> Event {
    match outcome {
        Outcome::Call(call) => call_event(*call, clock, sockets),
        Outcome::ParseError(f) => {
            let dst =
                f.fd.and_then(|fd| sockets.get(f.process.pid, f.process.start_ticks, fd));
            let detail = Detail::ParseError {
                protocol: f.protocol,
                error: f.error,
                connection: connection_name(f.conn, f.tls_library),
                daddr: dst.map(|d| d.addr),
                dport: dst.map(|d| d.port),
                sni: dst.and_then(|d| d.sni.clone()),
            };
            Event::at(clock, f.ns, f.tid, f.process, detail)
        }
    }
}

/// The event for a finished exchange, timed at its request.
fn call_event(call: ApiCall, clock: &Clock, sockets: &FirstBytes) -> Event {
    let r = &call.request;
    let dst = call
        .fd
        .and_then(|fd| sockets.get(call.process.pid, call.process.start_ticks, fd));
    let latency_ms = call
        .response
        .as_ref()
        .map(|_| call.finished_ns.saturating_sub(call.started_ns) as f64 / 1e6);
    // LLM calls: what the model was asked and answered, from the bodies.
    let provider = catalog::match_call(&r.authority, &r.target);
    let llm = provider.map(|_| {
        let resp = call.response.as_ref();
        let mut s = r.llm.clone().unwrap_or_default();
        let body = resp
            .and_then(|s| s.body.as_ref())
            .map(|k| k.decoded(LLM_BODY_LIMIT));
        llm::add_response(
            &mut s,
            body.as_ref().map(|k| (k.bytes.as_slice(), k.truncated)),
            resp.and_then(|s| s.content_type.as_deref()),
        );
        s
    });
    let db = r.db.as_ref().map(|q| {
        let answer = call.response.as_ref().and_then(|s| s.db.as_ref());
        Box::new(DbCall::new(q, answer))
    });
    let (authority, path, template, status) = match &r.db {
        // The template has no literal to mask, and is its own template.
        Some(_) => (
            dst.map(|d| std::net::SocketAddr::new(d.addr, d.port).to_string())
                .unwrap_or_default(),
            r.target.clone(),
            r.target.clone(),
            None,
        ),
        None => (
            r.authority.clone(),
            redact::target(&r.target),
            path_template(&r.target),
            // WebSocket messages have no status of their own (0).
            call.response.as_ref().map(|s| s.status).filter(|&s| s != 0),
        ),
    };
    let detail = Detail::ApiCall {
        provider,
        llm,
        tool_call: None,
        unrequested: false,
        method: r.method.clone(),
        authority,
        path,
        path_template: template,
        status,
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
        connection: connection_name(call.conn, call.tls_library),
        daddr: dst.map(|d| d.addr),
        dport: dst.map(|d| d.port),
        sni: dst.and_then(|d| d.sni.clone()),
        db,
    };
    let tid = call.tid;
    let started = call.started_ns;
    Event::at(clock, started, tid, call.process, detail)
}

#[cfg(test)]
mod tests {
    use sensor_common::{EventHeader, EventKind, TLS_DIR_READ, TlsDataHeader};

    use super::*;

    fn rustls(conn: u64, fd: i32, dir: u8, data: &[u8]) -> TlsData {
        TlsData {
            hdr: TlsDataHeader {
                header: EventHeader {
                    kind: EventKind::TlsData as u32,
                    tid: 7,
                    tgid: 7,
                    uid: 0,
                    gid: 0,
                    _pad: 0,
                    ktime_ns: 1,
                    start_ns: 0,
                    cgroup_id: 0,
                    comm: [0; sensor_common::COMM_LEN],
                },
                conn,
                len: data.len() as u64,
                captured: data.len() as u32,
                fd,
                dir,
                lib: TLS_LIB_RUSTLS,
                _pad: [0; 6],
            },
            data: data.to_vec(),
        }
    }

    /// A call table (its state in a temporary directory, kept alive by
    /// the first value) and process 7.
    fn calls_of_pid_7() -> (tempfile::TempDir, Calls, Arc<Process>) {
        let dir = tempfile::tempdir().unwrap();
        let calls = Calls::new(dir.path(), None).unwrap();
        let p = Arc::new(Process {
            pid: 7,
            start_ticks: 1,
            ..Default::default()
        });
        (dir, calls, p)
    }

    fn call(out: Vec<Outcome>) -> ApiCall {
        match out.into_iter().next() {
            Some(Outcome::Call(c)) => *c,
            other => panic!("{other:?}"),
        }
    }

    /// rustls records come from two cipher contexts (one per direction):
    /// a request sealed before its socket was known is held until the
    /// kernel ties its context to the socket, then pairs with the
    /// response read on that socket.
    #[test]
    fn rustls_records_of_both_directions_meet_on_their_socket() {
        let (_dir, mut calls, p) = calls_of_pid_7();
        let (write_ctx, read_ctx) = (0x7f00_0000_1000, 0x7f00_0000_2000);
        let req =
            b"POST /v1/responses HTTP/1.1\r\nHost: api.openai.com\r\nContent-Length: 2\r\n\r\n{}";
        assert!(
            calls
                .on_tls(&rustls(write_ctx, -1, TLS_DIR_WRITE, req), &p)
                .is_empty()
        );
        // Tied: the held request goes to the socket's stream.
        assert!(calls.bind(&p, write_ctx, 9).is_empty());
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let c = call(calls.on_tls(&rustls(read_ctx, 9, TLS_DIR_READ, resp), &p));
        assert_eq!(c.request.target, "/v1/responses");
        assert_eq!(c.response.map(|r| r.status), Some(200));
        assert_eq!(c.fd, Some(9));
        assert_eq!(c.tls_library, Some("rustls"));
        assert_eq!(calls.unbound_dropped, 0);
    }

    /// A context never tied holds a bounded number of records, counted
    /// when dropped.
    #[test]
    fn records_never_tied_are_bounded_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut calls = Calls::new(dir.path(), None).unwrap();
        let p = Arc::new(Process::default());
        for _ in 0..MAX_UNBOUND_RECORDS + 5 {
            calls.on_tls(&rustls(0x1000, -1, TLS_DIR_WRITE, b"x"), &p);
        }
        assert_eq!(calls.unbound_dropped, 5);
        for ctx in 0..MAX_UNBOUND_CONTEXTS as u64 {
            calls.on_tls(&rustls(0x2000 + ctx, -1, TLS_DIR_WRITE, b"x"), &p);
        }
        assert!(calls.unbound.len() <= MAX_UNBOUND_CONTEXTS);
        assert!(calls.unbound_dropped > 5);
    }

    /// A WebSocket frame as a client (masked) or server sends it, the
    /// payload compressed (permessage-deflate) with `z` when given.
    fn ws_frame(payload: &str, client: bool, z: Option<&mut flate2::Compress>) -> Vec<u8> {
        let mut p = payload.as_bytes().to_vec();
        let mut b0 = 0x81u8;
        if let Some(z) = z {
            let mut out = Vec::with_capacity(p.len() + 256);
            z.compress_vec(&p, &mut out, flate2::FlushCompress::Sync)
                .unwrap();
            out.truncate(out.len() - 4);
            p = out;
            b0 |= 0x40;
        }
        let mut f = vec![b0];
        let m = if client { 0x80 } else { 0 };
        if p.len() < 126 {
            f.push(m | p.len() as u8);
        } else {
            f.push(m | 126);
            f.extend_from_slice(&(p.len() as u16).to_be_bytes());
        }
        let key = [9u8, 8, 7, 6];
        if client {
            f.extend_from_slice(&key);
            f.extend(p.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            f.extend_from_slice(&p);
        }
        f
    }

    /// Codex's first transport: `GET /v1/responses` upgraded to a
    /// WebSocket with permessage-deflate; each `response.create` message
    /// is a call of its own, with the upgrade's credential, and its
    /// model and usage read from the answer's messages, the first of
    /// which came in the 101's record.
    #[test]
    fn websocket_messages_to_the_responses_api_are_calls() {
        let (_dir, mut calls, p) = calls_of_pid_7();
        let (w, r) = (0x7f00_0000_1000, 0x7f00_0000_2000);
        let upgrade = b"GET /v1/responses HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n\
            Authorization: Bearer sk-planted-ws-secret\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
        calls.on_tls(&rustls(w, 9, TLS_DIR_WRITE, upgrade), &p);
        let mut zs = flate2::Compress::new(flate2::Compression::default(), false);
        let mut zc = flate2::Compress::new(flate2::Compression::default(), false);
        let mut rec = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
            .to_vec();
        rec.extend(ws_frame(
            r#"{"type":"codex.rate_limits"}"#,
            false,
            Some(&mut zs),
        ));
        let opened = calls.on_tls(&rustls(r, 9, TLS_DIR_READ, &rec), &p);
        let get = call(opened);
        assert_eq!(
            (get.request.method.as_str(), get.response.map(|r| r.status)),
            ("GET", Some(101))
        );

        for turn in 0..2 {
            let create = format!(
                r#"{{"type":"response.create","model":"gpt-e2e-codex","input":[{{"turn":{turn}}}]}}"#
            );
            let out = calls.on_tls(
                &rustls(w, 9, TLS_DIR_WRITE, &ws_frame(&create, true, Some(&mut zc))),
                &p,
            );
            assert!(out.is_empty(), "{out:?}");
            let mut answer = Vec::new();
            for e in [
                r#"{"type":"response.created","response":{"model":"gpt-e2e-codex"}}"#,
                r#"{"type":"response.output_text.delta","delta":"Hello"}"#,
                r#"{"type":"response.completed","response":{"model":"gpt-e2e-codex","usage":{"input_tokens":11,"output_tokens":7}}}"#,
            ] {
                answer.extend(ws_frame(e, false, Some(&mut zs)));
            }
            let c = call(calls.on_tls(&rustls(r, 9, TLS_DIR_READ, &answer), &p));
            let ev = call_event(c, &Clock::new(), &FirstBytes::default());
            let v = serde_json::to_value(&ev).unwrap();
            assert_eq!(v["method"], "WS", "{v}");
            assert_eq!(v["path"], "/v1/responses", "{v}");
            assert_eq!(v["http_version"], "websocket", "{v}");
            assert!(v.get("status").is_none_or(|s| s.is_null()), "{v}");
            assert_eq!(v["provider"], "openai-compatible", "{v}");
            assert_eq!(v["llm"]["model"], "gpt-e2e-codex", "{v}");
            assert_eq!(v["llm"]["input_tokens"], 11, "{v}");
            assert_eq!(v["llm"]["output_tokens"], 7, "{v}");
            assert!(
                v["credential_fingerprint"]
                    .as_str()
                    .unwrap()
                    .starts_with("Bearer fp:"),
                "{v}"
            );
            assert!(!v.to_string().contains("planted"), "{v}");
        }
        assert_eq!(calls.parse_errors, 0);
    }

    /// Compressed bodies of an LLM call are read: a zstd request (Codex
    /// signed in with ChatGPT) and a gzip JSON answer (what a client that
    /// accepts gzip gets), each split over two records.
    #[test]
    fn compressed_bodies_give_model_and_usage() {
        use std::io::Write;
        let (_dir, mut calls, p) = calls_of_pid_7();
        let mut body = Vec::new();
        ruzstd::encoding::compress(
            &br#"{"model":"gpt-zstd","input":[]}"#[..],
            &mut body,
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut req = format!(
            "POST /v1/responses HTTP/1.1\r\nHost: api.openai.com\r\n\
             Content-Encoding: zstd\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend(&body);
        let (a, b) = req.split_at(req.len() - 3);
        calls.on_tls(&rustls(0x1000, 9, TLS_DIR_WRITE, a), &p);
        calls.on_tls(&rustls(0x1000, 9, TLS_DIR_WRITE, b), &p);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(br#"{"model":"gpt-zstd","usage":{"input_tokens":21,"output_tokens":4}}"#)
            .unwrap();
        let gz = gz.finish().unwrap();
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
             Content-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .into_bytes();
        resp.extend(&gz);
        let (a, b) = resp.split_at(resp.len() / 2);
        assert!(
            calls
                .on_tls(&rustls(0x2000, 9, TLS_DIR_READ, a), &p)
                .is_empty()
        );
        let c = call(calls.on_tls(&rustls(0x2000, 9, TLS_DIR_READ, b), &p));
        let v = serde_json::to_value(call_event(c, &Clock::new(), &FirstBytes::default())).unwrap();
        assert_eq!(v["llm"]["model"], "gpt-zstd", "{v}");
        assert_eq!(v["llm"]["input_tokens"], 21, "{v}");
        assert_eq!(v["llm"]["output_tokens"], 4, "{v}");
        assert_eq!(v["llm"]["truncated"], false, "{v}");
    }
}
