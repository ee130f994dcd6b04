//! HTTP/1.1 message framing over one direction of a captured byte stream:
//! keep-alive and pipelining, Content-Length, chunked bodies (extensions,
//! trailers), bodiless responses (1xx, 204, 304, HEAD), read-until-close.
//! Heads are parsed with `httparse`; bodies are counted, not kept.
//!
//! Memory is bounded (a head may not exceed `MAX_HEAD`); bad input is an
//! error that resets the stream, which then waits for the next thing that
//! looks like a message start. Nothing here panics on input.

use std::collections::VecDeque;

use super::fingerprint::Credentials;

/// Largest request/response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// A parsed head with the header values the layers above need. Values of
/// credential headers are never stored, only passed to `on_secret`.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub status: u16,
    pub version: u8,
    pub host: Option<String>,
    /// Lowercase, parameters included (`text/event-stream; charset=utf-8`).
    pub content_type: Option<String>,
    pub head_bytes: u64,
    /// Keyed fingerprints of credential header values.
    pub credentials: Vec<String>,
    /// A request asking to become a WebSocket (`Upgrade: websocket`).
    pub websocket: bool,
    /// A response's `Sec-WebSocket-Extensions` (what a 101 accepted).
    pub ws_extensions: Option<String>,
    /// `Content-Encoding` (gzip, br, zstd…), lowercase.
    pub content_encoding: Option<String>,
}

// Nearly every message is a `Complete`, handed straight to the caller:
// boxing its head would add an allocation to each, to shrink the rare
// others.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A complete message: its head and body size, and the body itself
    /// when it was asked for (`keep_bodies`, `expect_response`).
    Complete {
        head: Head,
        body_bytes: u64,
        kept: Option<Kept>,
    },
    /// Input that could not be framed; the stream resynchronises.
    Error(String),
    /// A `101 Switching Protocols` response ended HTTP on this connection
    /// (it comes right after that response's `Complete`): these are the
    /// bytes that followed it in the same record, and the stream reads
    /// nothing more.
    Switched(Vec<u8>),
}

/// A body kept for the layers above (LLM calls), bounded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kept {
    /// De-chunked body bytes, at most the keep limit.
    pub bytes: Vec<u8>,
    /// Some of the body is missing (over the limit, or not captured).
    pub truncated: bool,
    /// Its `Content-Encoding`, when it has one (`http::encoding`).
    pub encoding: Option<String>,
    /// What its bytes took from the parsers' shared budget.
    pub charge: super::budget::Charge,
}

impl Kept {
    /// Adds `data`, keeping at most `limit` bytes in all and no more than
    /// the shared budget grants; what is not kept marks it truncated.
    pub fn push(&mut self, data: &[u8], limit: usize) {
        let room = limit.saturating_sub(self.bytes.len()).min(data.len());
        let got = self.charge.take(room);
        self.bytes.extend_from_slice(&data[..got]);
        self.truncated |= data.len() > got;
    }

    /// The body as its sender wrote it, before any content coding, at
    /// most `limit` bytes.
    pub fn decoded(&self, limit: usize) -> std::borrow::Cow<'_, Kept> {
        super::encoding::decode(self, self.encoding.as_deref(), limit)
    }
}

#[derive(Clone, Debug)]
enum Body {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Clone, Debug)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

pub struct H1Stream {
    dir: Direction,
    buf: Vec<u8>,
    current: Option<(Head, Body, u64)>,
    /// Methods of requests whose responses are awaited (HEAD has no body),
    /// and whether their bodies are to be kept.
    methods: VecDeque<(String, bool)>,
    /// True after an error until a plausible message start is seen.
    lost: bool,
    /// Largest body kept, and which request heads want theirs kept.
    keep_limit: usize,
    keep_request: Option<fn(&Head) -> bool>,
    /// The current message's body, when kept.
    kept: Option<Kept>,
    /// Whether the response whose head was just parsed is to be kept.
    response_keep: bool,
    /// A 101 ended HTTP here: the rest is another protocol's.
    switched: bool,
}

/// Credential headers: their values become fingerprints, never text.
pub use crate::redact::SECRET_HEADERS;

impl H1Stream {
    pub fn new(dir: Direction) -> Self {
        Self {
            dir,
            buf: Vec::new(),
            current: None,
            methods: VecDeque::new(),
            lost: false,
            keep_limit: 0,
            keep_request: None,
            kept: None,
            response_keep: false,
            switched: false,
        }
    }

    /// Keeps up to `limit` body bytes of requests `want` selects, and of
    /// responses announced with `expect_response(_, true)`.
    pub fn keep_bodies(&mut self, limit: usize, want: Option<fn(&Head) -> bool>) {
        self.keep_limit = limit;
        self.keep_request = want;
    }

    /// Tells a response stream the method of a request sent on the same
    /// connection (responses to HEAD carry no body).
    pub fn expect_response_to(&mut self, method: &str) {
        self.expect_response(method, false);
    }

    /// Like `expect_response_to`; `keep` asks for the response's body.
    pub fn expect_response(&mut self, method: &str, keep: bool) {
        if self.methods.len() < 256 {
            self.methods.push_back((method.to_string(), keep));
        }
    }

    fn keep(&mut self, data: &[u8]) {
        if let Some(k) = &mut self.kept {
            k.push(data, self.keep_limit);
        }
    }

    /// `n` bytes of the stream were not captured (the kernel copies a
    /// bounded prefix of each call). Inside a body they are simply counted;
    /// anywhere else the message cannot be framed.
    pub fn gap(&mut self, n: u64) -> Vec<Message> {
        let mut out = Vec::new();
        if self.switched {
            return out;
        }
        if let Some(k) = &mut self.kept {
            k.truncated = true;
        }
        if let Some((_, body, got)) = &mut self.current {
            match body {
                Body::Length(rest) if *rest >= n => {
                    *rest -= n;
                    *got += n;
                    if *rest == 0 {
                        self.finish(&mut out);
                    }
                    return out;
                }
                Body::Chunked(Chunk::Data(rest)) if *rest >= n => {
                    *rest -= n;
                    *got += n;
                    if *rest == 0 {
                        *body = Body::Chunked(Chunk::DataEnd);
                    }
                    return out;
                }
                Body::UntilClose => {
                    *got += n;
                    return out;
                }
                _ => {}
            }
        }
        self.fail(&mut out, format!("{n} bytes not captured outside a body"));
        out
    }

    /// The connection ended: a read-until-close body is complete.
    pub fn close(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        match &self.current {
            Some((_, Body::UntilClose, _)) => self.finish(&mut out),
            // A body the reader stopped short of: an SSE client that left
            // after its last event without reading the final empty chunk
            // (Codex does), or a connection cut. What was seen is the
            // message, marked truncated, rather than a request without
            // its response.
            Some(_) => {
                if let Some(k) = &mut self.kept {
                    k.truncated = true;
                }
                self.finish(&mut out);
            }
            None => {}
        }
        out
    }

    pub fn feed(&mut self, data: &[u8], fingerprint: &dyn Credentials) -> Vec<Message> {
        let mut out = Vec::new();
        if self.switched {
            return out;
        }
        // Bytes after a head, or after a bad byte, are fed again by this
        // loop, not by recursion: a record of many small pipelined
        // requests would otherwise nest a call per request and overflow
        // the daemon's stack (issue 19, finding 10).
        let mut again = self.feed_once(data, fingerprint, &mut out);
        while let Some(rest) = again {
            again = self.feed_once(&rest, fingerprint, &mut out);
        }
        out
    }

    /// Feeds `data`; returns bytes to be fed next when what was held from
    /// earlier records turned out bad (the rest of them, then `data`).
    /// Heads are parsed in `data` itself when nothing is held, so many
    /// messages in one record cost no copy each.
    fn feed_once(
        &mut self,
        mut data: &[u8],
        fingerprint: &dyn Credentials,
        out: &mut Vec<Message>,
    ) -> Option<Vec<u8>> {
        while !data.is_empty() || (self.current.is_none() && !self.buf.is_empty() && !self.lost) {
            if self.current.is_some() {
                let used = self.body(data, out);
                data = &data[used..];
                continue;
            }
            if self.lost {
                // Skip to something that starts like a message.
                data = &data[find_start(data, self.dir)?..];
                self.lost = false;
            }
            let held = self.buf.len();
            let parsed = if held == 0 {
                self.parse_head(data, fingerprint)
            } else {
                self.buf.extend_from_slice(data);
                let buf = std::mem::take(&mut self.buf);
                let r = self.parse_head(&buf, fingerprint);
                self.buf = buf;
                r
            };
            match parsed {
                Ok(Some((head, body, used))) => {
                    // The head ends in `data` (what was held alone was
                    // incomplete): what follows it is fed next.
                    data = data.get(used.saturating_sub(held)..).unwrap_or(&[]);
                    self.buf.clear();
                    let keep = match self.dir {
                        Direction::Request => self.keep_request.is_some_and(|f| f(&head)),
                        Direction::Response => self.response_keep,
                    };
                    self.kept = (keep && self.keep_limit > 0).then(|| Kept {
                        encoding: head.content_encoding.clone(),
                        ..Kept::default()
                    });
                    let switching = self.dir == Direction::Response && head.status == 101;
                    self.current = Some((head, body, 0));
                    if let Some((_, Body::Length(0), _)) = &self.current {
                        self.finish(out);
                    }
                    if switching {
                        self.switched = true;
                        out.push(Message::Switched(data.to_vec()));
                        return None;
                    }
                }
                Ok(None) => {
                    if held == 0 {
                        self.buf.extend_from_slice(data);
                    }
                    if self.buf.len() > MAX_HEAD {
                        let n = self.buf.len();
                        self.fail(
                            out,
                            format!("head larger than {MAX_HEAD} bytes ({n} so far)"),
                        );
                    }
                    return None;
                }
                Err(e) => {
                    // Look for the next message start past the bad byte.
                    if held == 0 {
                        self.fail(out, e);
                        data = data.get(1..).unwrap_or(&[]);
                    } else {
                        let rest = self.buf.get(1..).unwrap_or(&[]).to_vec();
                        self.fail(out, e);
                        return Some(rest);
                    }
                }
            }
        }
        None
    }

    fn fail(&mut self, out: &mut Vec<Message>, why: String) {
        out.push(Message::Error(why));
        self.buf.clear();
        self.current = None;
        self.kept = None;
        self.lost = true;
    }

    fn finish(&mut self, out: &mut Vec<Message>) {
        if let Some((head, _, got)) = self.current.take() {
            out.push(Message::Complete {
                head,
                body_bytes: got,
                kept: self.kept.take(),
            });
        }
    }

    /// Consumes body bytes from `data`; returns how many were used.
    fn body(&mut self, data: &[u8], out: &mut Vec<Message>) -> usize {
        let Some((_, body, got)) = &mut self.current else {
            return 0;
        };
        match body {
            Body::Length(rest) => {
                let n = (*rest).min(data.len() as u64);
                *rest -= n;
                *got += n;
                let done = *rest == 0;
                self.keep(&data[..n as usize]);
                if done {
                    self.finish(out);
                }
                n as usize
            }
            Body::UntilClose => {
                *got += data.len() as u64;
                self.keep(data);
                data.len()
            }
            Body::Chunked(state) => {
                let mut i = 0;
                while i < data.len() {
                    match state {
                        Chunk::Data(rest) => {
                            let n = (*rest).min((data.len() - i) as u64);
                            *rest -= n;
                            *got += n;
                            if *rest == 0 {
                                *state = Chunk::DataEnd;
                            }
                            if let Some(k) = &mut self.kept {
                                k.push(&data[i..i + n as usize], self.keep_limit);
                            }
                            i += n as usize;
                        }
                        Chunk::Size | Chunk::DataEnd | Chunk::Trailers => {
                            // Line-oriented parts: gather one line.
                            let Some(nl) = data[i..].iter().position(|&b| b == b'\n') else {
                                self.buf.extend_from_slice(&data[i..]);
                                if self.buf.len() > 4096 {
                                    self.fail(out, "chunk framing line too long".into());
                                }
                                return data.len();
                            };
                            self.buf.extend_from_slice(&data[i..i + nl]);
                            i += nl + 1;
                            let line = std::mem::take(&mut self.buf);
                            let line = line.strip_suffix(b"\r").unwrap_or(&line);
                            match state {
                                Chunk::Size => {
                                    let hex = line.split(|&b| b == b';').next().unwrap_or(b"");
                                    let hex = std::str::from_utf8(hex).unwrap_or("").trim();
                                    match u64::from_str_radix(hex, 16) {
                                        Ok(0) => *state = Chunk::Trailers,
                                        Ok(n) => *state = Chunk::Data(n),
                                        Err(_) => {
                                            // The line is not echoed: errors reach the output,
                                            // and a misframed line may be body text.
                                            self.fail(
                                                out,
                                                format!(
                                                    "bad chunk size line ({} bytes)",
                                                    line.len()
                                                ),
                                            );
                                            return data.len();
                                        }
                                    }
                                }
                                Chunk::DataEnd => {
                                    if !line.is_empty() {
                                        self.fail(out, "chunk not followed by CRLF".into());
                                        return data.len();
                                    }
                                    *state = Chunk::Size;
                                }
                                Chunk::Trailers => {
                                    if line.is_empty() {
                                        self.finish(out);
                                        return i;
                                    }
                                }
                                Chunk::Data(_) => {}
                            }
                        }
                    }
                }
                i
            }
        }
    }

    /// Parses a head from `bytes`: Ok(None) if incomplete.
    fn parse_head(
        &mut self,
        bytes: &[u8],
        fingerprint: &dyn Credentials,
    ) -> Result<Option<(Head, Body, usize)>, String> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (used, mut head, hdrs): (usize, Head, Vec<(String, &[u8])>) = match self.dir {
            Direction::Request => {
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(bytes) {
                    Ok(httparse::Status::Complete(n)) => (
                        n,
                        Head {
                            method: req.method.unwrap_or("").to_string(),
                            target: req.path.unwrap_or("").to_string(),
                            status: 0,
                            version: req.version.unwrap_or(1),
                            host: None,
                            head_bytes: n as u64,
                            credentials: Vec::new(),
                            content_type: None,
                            websocket: false,
                            ws_extensions: None,
                            content_encoding: None,
                        },
                        req.headers
                            .iter()
                            .map(|h| (h.name.to_ascii_lowercase(), h.value))
                            .collect(),
                    ),
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(e) => return Err(format!("request head: {e}")),
                }
            }
            Direction::Response => {
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(bytes) {
                    Ok(httparse::Status::Complete(n)) => (
                        n,
                        Head {
                            method: String::new(),
                            target: String::new(),
                            status: resp.code.unwrap_or(0),
                            version: resp.version.unwrap_or(1),
                            host: None,
                            head_bytes: n as u64,
                            credentials: Vec::new(),
                            content_type: None,
                            websocket: false,
                            ws_extensions: None,
                            content_encoding: None,
                        },
                        resp.headers
                            .iter()
                            .map(|h| (h.name.to_ascii_lowercase(), h.value))
                            .collect(),
                    ),
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(e) => return Err(format!("response head: {e}")),
                }
            }
        };
        let mut length = None;
        let mut chunked = false;
        for (name, value) in &hdrs {
            match name.as_str() {
                "host" => {
                    head.host = Some(String::from_utf8_lossy(value).trim().to_ascii_lowercase())
                }
                "content-type" => {
                    head.content_type =
                        Some(String::from_utf8_lossy(value).trim().to_ascii_lowercase())
                }
                "content-encoding" => {
                    head.content_encoding =
                        Some(String::from_utf8_lossy(value).trim().to_ascii_lowercase())
                }
                "content-length" => {
                    let v = std::str::from_utf8(value).unwrap_or("").trim();
                    length = Some(
                        v.parse::<u64>()
                            .map_err(|_| format!("bad Content-Length ({} bytes)", v.len()))?,
                    );
                }
                "upgrade" => {
                    head.websocket = String::from_utf8_lossy(value)
                        .split(',')
                        .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
                }
                "sec-websocket-extensions" => {
                    let v = String::from_utf8_lossy(value).trim().to_string();
                    head.ws_extensions = Some(match head.ws_extensions.take() {
                        Some(before) => format!("{before}, {v}"),
                        None => v,
                    });
                }
                "transfer-encoding" => {
                    chunked = String::from_utf8_lossy(value)
                        .to_ascii_lowercase()
                        .contains("chunked");
                }
                n if fingerprint.is_secret(n) => {
                    head.credentials.push(fingerprint.fingerprint(value))
                }
                _ => {}
            }
        }
        let body = match self.dir {
            Direction::Request => {
                if chunked {
                    Body::Chunked(Chunk::Size)
                } else {
                    Body::Length(length.unwrap_or(0))
                }
            }
            Direction::Response => {
                let (method, keep) = if (100..200).contains(&head.status) {
                    // Interim response: the request still awaits its final one.
                    (String::new(), false)
                } else {
                    self.methods.pop_front().unwrap_or_default()
                };
                self.response_keep = keep;
                if method == "HEAD"
                    || (100..200).contains(&head.status)
                    || head.status == 204
                    || head.status == 304
                {
                    Body::Length(0)
                } else if chunked {
                    Body::Chunked(Chunk::Size)
                } else if let Some(n) = length {
                    Body::Length(n)
                } else {
                    Body::UntilClose
                }
            }
        };
        Ok(Some((head, body, used)))
    }
}

/// Whether `d` starts with a request line's method (a message start).
pub fn starts_with_method(d: &[u8]) -> bool {
    const METHODS: [&[u8]; 7] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"PATCH ",
        b"HEAD ",
        b"OPTIONS ",
    ];
    METHODS.iter().any(|m| d.starts_with(m))
}

/// Offset of the first plausible message start in `data`.
fn find_start(data: &[u8], dir: Direction) -> Option<usize> {
    (0..data.len()).find(|&i| match dir {
        Direction::Request => starts_with_method(&data[i..]),
        Direction::Response => data[i..].starts_with(b"HTTP/1."),
    })
}

/// An absolute-form target (`https://host:port/path?query`) as its host
/// (with port, lowercase) and origin-form path; None for any other form.
pub fn absolute_target(target: &str) -> Option<(String, String)> {
    let lower = target.get(..8)?.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &target[8..]
    } else if lower.starts_with("http://") {
        &target[7..]
    } else {
        return None;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, path) = rest.split_at(end);
    // userinfo@host: the host is after the last '@'.
    let host = host.rsplit('@').next().unwrap_or(host).to_ascii_lowercase();
    let path = match path.strip_prefix('?') {
        Some(_) => format!("/{path}"),
        None if path.is_empty() => "/".to_string(),
        None => path.to_string(),
    };
    Some((host, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(v: &[u8]) -> String {
        format!("fp:{}", v.len())
    }

    fn feed_all(s: &mut H1Stream, data: &[u8]) -> Vec<Message> {
        s.feed(data, &fp)
    }

    fn feed_bytewise(s: &mut H1Stream, data: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        for b in data {
            out.extend(s.feed(std::slice::from_ref(b), &fp));
        }
        out
    }

    fn complete(m: &[Message]) -> Vec<(String, String, u16, u64)> {
        m.iter()
            .filter_map(|m| match m {
                Message::Complete {
                    head, body_bytes, ..
                } => Some((
                    head.method.clone(),
                    head.target.clone(),
                    head.status,
                    *body_bytes,
                )),
                Message::Error(_) | Message::Switched(_) => None,
            })
            .collect()
    }

    /// A 101 ends HTTP: its head completes, the bytes after it in the
    /// same record come back, and nothing later is read as HTTP.
    #[test]
    fn a_101_switches_the_stream_and_hands_over_what_follows() {
        let mut req = H1Stream::new(Direction::Request);
        let out = feed_all(
            &mut req,
            b"GET /v1/responses HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n",
        );
        let [Message::Complete { head, .. }] = &out[..] else {
            panic!("{out:?}")
        };
        assert!(head.websocket);
        let mut resp = H1Stream::new(Direction::Response);
        resp.expect_response_to("GET");
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n";
        for split in [3, head.len(), head.len() + 1] {
            let mut r = H1Stream::new(Direction::Response);
            let mut all = head.to_vec();
            all.extend_from_slice(b"\x81\x02hi");
            let mut out = r.feed(&all[..split], &fp);
            out.extend(r.feed(&all[split..], &fp));
            let n = out.len();
            assert!(n >= 2, "{out:?}");
            let Message::Complete { head: h, .. } = &out[0] else {
                panic!("{out:?}")
            };
            assert_eq!(h.status, 101);
            assert_eq!(
                h.ws_extensions.as_deref(),
                Some("permessage-deflate; server_no_context_takeover")
            );
            let rest: Vec<u8> = out[1..]
                .iter()
                .flat_map(|m| match m {
                    Message::Switched(b) => b.clone(),
                    other => panic!("{other:?}"),
                })
                .collect();
            // What followed the head in the record that ended it (later
            // records are the caller's to read as the new protocol).
            let end = if split < head.len() { all.len() } else { split };
            assert_eq!(rest, all[head.len()..end]);
            assert!(r.feed(b"HTTP/1.1 200 OK\r\n\r\n", &fp).is_empty());
            assert!(r.gap(10).is_empty());
        }
        drop(resp);
    }

    const REQS: &[u8] = b"POST /v1/orders HTTP/1.1\r\nHost: Vendor.Example\r\nAuthorization: Bearer sk-secret-123\r\nContent-Length: 9\r\n\r\n{\"qty\":1}GET /v1/orders/7 HTTP/1.1\r\nHost: vendor.example\r\n\r\n";
    const RESPS: &[u8] = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: y\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[test]
    fn pipelined_requests_and_chunked_responses() {
        for bytewise in [false, true] {
            let mut rq = H1Stream::new(Direction::Request);
            let m = if bytewise {
                feed_bytewise(&mut rq, REQS)
            } else {
                feed_all(&mut rq, REQS)
            };
            assert_eq!(
                complete(&m),
                [
                    ("POST".into(), "/v1/orders".into(), 0, 9),
                    ("GET".into(), "/v1/orders/7".into(), 0, 0)
                ]
            );
            let Message::Complete { head, .. } = &m[0] else {
                panic!()
            };
            assert_eq!(head.host.as_deref(), Some("vendor.example"));
            assert_eq!(head.credentials, ["fp:20"]);
            assert!(!format!("{m:?}").contains("sk-secret"), "no secret kept");

            let mut rs = H1Stream::new(Direction::Response);
            rs.expect_response_to("POST");
            rs.expect_response_to("GET");
            let m = if bytewise {
                feed_bytewise(&mut rs, RESPS)
            } else {
                feed_all(&mut rs, RESPS)
            };
            assert_eq!(
                complete(&m),
                [
                    (String::new(), String::new(), 201, 7),
                    (String::new(), String::new(), 200, 2)
                ]
            );
        }
    }

    #[test]
    fn bodiless_responses() {
        let mut rs = H1Stream::new(Direction::Response);
        for m in ["HEAD", "GET", "GET", "GET"] {
            rs.expect_response_to(m);
        }
        let data = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\n\r\nrest-until-close";
        let m = feed_all(&mut rs, data);
        let statuses: Vec<u16> = complete(&m).iter().map(|c| c.2).collect();
        assert_eq!(statuses, [200, 100, 204, 304]);
        let m = rs.close();
        assert_eq!(complete(&m), [(String::new(), String::new(), 200, 16)]);
    }

    /// An SSE client that stops reading after its last event never sees
    /// the final empty chunk: at the stream's end the response is what was
    /// read, marked truncated (it was lost with its request before).
    #[test]
    fn a_chunked_body_cut_short_completes_at_close_marked_truncated() {
        let mut rs = H1Stream::new(Direction::Response);
        rs.keep_bodies(1024, None);
        rs.expect_response("POST", true);
        let m = feed_all(
            &mut rs,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nevent\r\n",
        );
        assert!(complete(&m).is_empty());
        let m = rs.close();
        assert_eq!(complete(&m), [(String::new(), String::new(), 200, 5)]);
        let Some(Message::Complete { kept: Some(k), .. }) = m.first() else {
            panic!("{m:?}");
        };
        assert_eq!((k.bytes.as_slice(), k.truncated), (&b"event"[..], true));
    }

    #[test]
    fn garbage_then_resync() {
        let mut rq = H1Stream::new(Direction::Request);
        let m = feed_all(
            &mut rq,
            b"\x16\x03\x01garbage\r\n\r\nGET /ok HTTP/1.1\r\n\r\n",
        );
        assert!(matches!(m[0], Message::Error(_)), "{m:?}");
        assert_eq!(complete(&m), [("GET".into(), "/ok".into(), 0, 0)]);
    }

    #[test]
    fn head_size_is_bounded() {
        let mut rq = H1Stream::new(Direction::Request);
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..5000 {
            big.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaa\r\n");
        }
        let m = feed_all(&mut rq, &big);
        assert!(m.iter().any(|m| matches!(m, Message::Error(_))));
        assert!(rq.buf.len() <= MAX_HEAD);
    }

    #[test]
    fn gaps_inside_bodies_are_counted() {
        let mut rs = H1Stream::new(Direction::Response);
        rs.expect_response_to("GET");
        let mut m = feed_all(
            &mut rs,
            b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\nabc",
        );
        m.extend(rs.gap(9997));
        assert_eq!(complete(&m), [(String::new(), String::new(), 200, 10000)]);
        // A gap in a head cannot be framed.
        let mut rq = H1Stream::new(Direction::Request);
        rq.feed(b"GET / HT", &fp);
        assert!(matches!(rq.gap(10)[0], Message::Error(_)));
    }

    #[test]
    fn arbitrary_splits_never_panic() {
        let all = [REQS, RESPS].concat();
        for dir in [Direction::Request, Direction::Response] {
            for cut in 0..all.len() {
                let mut s = H1Stream::new(dir);
                s.feed(&all[..cut], &fp);
                s.feed(&all[cut..], &fp);
                s.gap(3);
                s.close();
            }
        }
    }

    #[test]
    fn kept_bodies_are_bounded_and_dechunked() {
        let fp = |v: &[u8]| format!("fp:{}", v.len());
        let mut rq = H1Stream::new(Direction::Request);
        rq.keep_bodies(8, Some(|h: &Head| h.target.starts_with("/v1/chat")));
        let m = rq.feed(
            b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 12\r\n\r\n{\"model\":1}POST /v1/orders HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            &fp,
        );
        let kept: Vec<Option<Kept>> = m
            .into_iter()
            .map(|m| match m {
                Message::Complete { kept, .. } => kept,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kept,
            [
                Some(Kept {
                    bytes: b"{\"model\"".to_vec(),
                    truncated: true,
                    ..Kept::default()
                }),
                None
            ]
        );
        let mut rs = H1Stream::new(Direction::Response);
        rs.keep_bodies(64, None);
        rs.expect_response("POST", true);
        let m = rs.feed(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n3\r\n{}\n\r\n0\r\n\r\n",
            &fp,
        );
        let Message::Complete { head, kept, .. } = &m[0] else {
            panic!("{m:?}")
        };
        assert_eq!(head.content_type.as_deref(), Some("text/event-stream"));
        assert_eq!(kept.as_ref().unwrap().bytes, b"data: {}\n");
        assert!(!kept.as_ref().unwrap().truncated);
    }

    #[test]
    fn many_pipelined_requests_in_one_record_do_not_nest() {
        // Issue 19, finding 10: each request after a head was fed by a
        // recursive call. 100,000 minimal requests in one record (any
        // process can write them to a socket) overflowed the stack.
        let one = b"GET / HTTP/1.1\r\n\r\n";
        let data: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * 100_000)
            .collect();
        let fp = |v: &[u8]| format!("fp:{}", v.len());
        let n = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut s = H1Stream::new(Direction::Request);
                s.feed(&data, &fp).len()
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(n, 100_000);
    }

    #[test]
    fn absolute_targets_give_their_host_and_origin_form() {
        assert_eq!(
            absolute_target("HTTP://h.example?q=1"),
            Some(("h.example".into(), "/?q=1".into()))
        );
        assert_eq!(
            absolute_target("https://u:p@Vendor.Example:8443/v1/orders?x=1"),
            Some(("vendor.example:8443".into(), "/v1/orders?x=1".into()))
        );
        assert_eq!(absolute_target("/v1/orders"), None);
        assert_eq!(absolute_target("http:/"), None);
    }
}
