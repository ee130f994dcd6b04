//! HTTP/2 over one captured connection: frames in both directions, HPACK
//! header blocks decoded with `loona-hpack` (a maintained, fuzzed fork of
//! the `hpack` crate that returns errors instead of panicking), and one
//! request and one response per stream.
//!
//! DATA payloads are counted as they stream through, never buffered; only
//! a frame header and a header block (bounded by `MAX_BLOCK`) are kept.
//! HPACK is stateful: a direction that loses bytes outside a DATA or
//! skipped payload, or whose block cannot be decoded, cannot resynchronise,
//! so it reports one error and goes quiet. Errors name frame types and
//! lengths, never the captured bytes. Nothing here panics on input.

use std::collections::BTreeMap;

use loona_hpack::Decoder;

use super::{
    fingerprint::Credentials,
    stream::{Direction, Kept},
};

/// What a client sends first on every HTTP/2 connection (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Largest header block (HEADERS or PUSH_PROMISE plus CONTINUATIONs) kept.
pub const MAX_BLOCK: usize = 256 * 1024;

/// Streams tracked at once per connection; beyond it the oldest is dropped.
pub const MAX_STREAMS: usize = 1024;

/// Largest HPACK dynamic table a peer may ask for. Real stacks use the
/// 4 KiB default or a little more; this bounds memory per direction.
const MAX_TABLE: usize = 64 * 1024;

/// The dynamic table size every HPACK decoder starts with (RFC 9113
/// §6.5.2): an encoder may use more only after the decoder's side says so
/// in SETTINGS_HEADER_TABLE_SIZE, which `settings` reads. Holding peers to
/// it matters because a literal whose name is indexed copies that name into
/// the table: with a 64 KiB entry, two input bytes cost a 64 KiB copy inside
/// the decoder (issue 19, finding 2).
const DEFAULT_TABLE: usize = 4096;

/// Decoded header bytes a block may make us read (fingerprint or keep):
/// 16 KiB plus 16 per byte of the block, at most `MAX_LIST`. Indexed fields
/// cost one input byte each however long their table entry is, so without
/// a bound one 256 KiB block of references to a 4 KiB credential made a
/// gigabyte of HMAC work (issue 19, finding 2). Fields past it are counted
/// and said, not read; the table is still kept in step.
const LIST_BASE: usize = 16 * 1024;
const LIST_PER_BYTE: usize = 16;
const MAX_LIST: usize = 256 * 1024;

/// Credential fields fingerprinted per header block: a request carries one
/// or two; more are counted in the block's error message.
const MAX_CREDENTIALS: usize = 8;

/// The fields a stream's call is made of (the first of each is kept).
const KEPT_FIELDS: [&str; 7] = [
    ":method",
    ":path",
    ":authority",
    ":status",
    "host",
    "content-type",
    "content-encoding",
];

/// Longest header name looked at: every name the parser reads (pseudo
/// headers, host, content-type, credential headers) is far shorter.
const MAX_NAME: usize = 128;

// Frame types and flags (RFC 9113 §6); the API's authority rewriter
// (api/authority.rs) reads frames with them too.
const FRAME_HEADER: usize = 9;
const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
pub(crate) const CONTINUATION: u8 = 0x9;
pub(crate) const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
pub(crate) const END_HEADERS: u8 = 0x4;
pub(crate) const PADDED: u8 = 0x8;
pub(crate) const PRIORITY: u8 = 0x20;

/// True when `d` starts with the client connection preface (its first 16
/// bytes suffice: a capture may be cut short).
pub fn is_client_preface(d: &[u8]) -> bool {
    d.len() >= 16 && PREFACE.starts_with(&d[..d.len().min(PREFACE.len())])
}

/// True when `d` starts with a SETTINGS frame on stream 0 without ACK:
/// what an HTTP/2 server writes first (the client writes the preface).
pub fn is_server_preface(d: &[u8]) -> bool {
    d.len() >= FRAME_HEADER
        && d[3] == 0x4
        && d[4] == 0
        && d[5..9] == [0, 0, 0, 0]
        && (usize::from(d[0]) << 16 | usize::from(d[1]) << 8 | usize::from(d[2])) % 6 == 0
}

#[derive(Clone, Debug, PartialEq)]
pub enum H2Message {
    /// A request whose client side ended (END_STREAM) or was reset.
    Request {
        stream_id: u32,
        method: String,
        path: String,
        authority: Option<String>,
        /// Keyed fingerprints of credential headers.
        credentials: Vec<String>,
        /// Header frames, their 9-byte frame headers included.
        head_bytes: u64,
        /// DATA payload bytes, padding excluded.
        body_bytes: u64,
        /// The body, for streams `H2Conn::keep_bodies` selects.
        body: Option<Kept>,
    },
    /// A response whose server side ended, or was reset after a final
    /// status; status 0 when the stream ended without one. A stream reset
    /// before any final status gives none: its request stays unanswered,
    /// which is what it was.
    Response {
        stream_id: u32,
        status: u16,
        head_bytes: u64,
        body_bytes: u64,
        /// The body, for streams whose request body was kept.
        body: Option<Kept>,
        content_type: Option<String>,
    },
    /// Bytes that could not be framed or decoded.
    Error(String),
}

#[derive(Debug, Default)]
struct Side {
    head_bytes: u64,
    body_bytes: u64,
    ended: bool,
    emitted: bool,
    /// The body so far, when the stream's bodies are kept.
    kept: Option<Kept>,
}

#[derive(Debug, Default)]
struct Stream {
    method: Option<String>,
    path: String,
    authority: Option<String>,
    credentials: Vec<String>,
    status: u16,
    content_type: Option<String>,
    req: Side,
    resp: Side,
}

/// Where a direction's parser is in its byte stream.
#[derive(Debug)]
enum State {
    /// Client only: this many preface bytes already matched.
    Preface(usize),
    FrameHeader,
    /// A header block fragment, kept until the frame is whole.
    Keep {
        ty: u8,
        flags: u8,
        sid: u32,
        len: usize,
    },
    /// DATA: counted, not kept.
    Data {
        sid: u32,
        flags: u8,
        remaining: usize,
        /// Still to learn the pad length (first payload byte).
        pad_unknown: bool,
        pad: usize,
    },
    /// A payload nobody needs (SETTINGS, PING, WINDOW_UPDATE, ...).
    Skip(usize),
    Lost,
}

/// A header block being collected across CONTINUATION frames.
#[derive(Debug)]
struct Block {
    sid: u32,
    /// PUSH_PROMISE: decoded only to keep the HPACK table in step.
    promise: bool,
    end_stream: bool,
    bytes: Vec<u8>,
    frame_bytes: u64,
}

struct Half {
    state: State,
    buf: Vec<u8>,
    decoder: Decoder<'static>,
    block: Option<Block>,
}

impl Half {
    fn new(dir: Direction) -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(DEFAULT_TABLE);
        Self {
            state: match dir {
                Direction::Request => State::Preface(0),
                Direction::Response => State::FrameHeader,
            },
            buf: Vec::new(),
            decoder,
            block: None,
        }
    }
}

pub struct H2Conn {
    halves: [Half; 2],
    streams: BTreeMap<u32, Stream>,
    /// Bodies of requests `keep` selects (by authority and path), and of
    /// their responses, are kept up to `keep_limit` bytes each.
    keep: Option<fn(&str, &str) -> bool>,
    keep_limit: usize,
}

impl Default for H2Conn {
    fn default() -> Self {
        Self::new()
    }
}

fn index(dir: Direction) -> usize {
    match dir {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

fn frame_name(ty: u8) -> &'static str {
    match ty {
        DATA => "DATA",
        HEADERS => "HEADERS",
        RST_STREAM => "RST_STREAM",
        PUSH_PROMISE => "PUSH_PROMISE",
        CONTINUATION => "CONTINUATION",
        _ => "frame",
    }
}

impl H2Conn {
    pub fn new() -> Self {
        Self {
            halves: [
                Half::new(Direction::Request),
                Half::new(Direction::Response),
            ],
            streams: BTreeMap::new(),
            keep: None,
            keep_limit: 0,
        }
    }

    /// Keeps the bodies of requests for which `keep(authority, path)`
    /// holds, and of their responses, up to `limit` bytes each (the rest
    /// is counted and marks the body truncated).
    pub fn keep_bodies(&mut self, limit: usize, keep: fn(&str, &str) -> bool) {
        self.keep = Some(keep);
        self.keep_limit = limit;
    }

    /// Bytes captured in direction `dir` (requests: client to server).
    pub fn feed(
        &mut self,
        dir: Direction,
        mut data: &[u8],
        creds: &dyn Credentials,
    ) -> Vec<H2Message> {
        let mut out = Vec::new();
        let i = index(dir);
        while !data.is_empty() {
            let state = std::mem::replace(&mut self.halves[i].state, State::Lost);
            let next = match state {
                State::Lost => return out,
                State::Preface(seen) => {
                    let n = (PREFACE.len() - seen).min(data.len());
                    if data[..n] != PREFACE[seen..seen + n] {
                        self.lose(i, "the connection preface is not HTTP/2's".into(), &mut out);
                        return out;
                    }
                    data = &data[n..];
                    if seen + n == PREFACE.len() {
                        State::FrameHeader
                    } else {
                        State::Preface(seen + n)
                    }
                }
                State::FrameHeader => {
                    let h = &mut self.halves[i];
                    let n = (FRAME_HEADER - h.buf.len()).min(data.len());
                    h.buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if h.buf.len() < FRAME_HEADER {
                        State::FrameHeader
                    } else {
                        let b = std::mem::take(&mut h.buf);
                        match self.frame_header(i, &b, creds, &mut out) {
                            Some(s) => s,
                            None => return out,
                        }
                    }
                }
                State::Keep {
                    ty,
                    flags,
                    sid,
                    len,
                } => {
                    let h = &mut self.halves[i];
                    let n = (len - h.buf.len()).min(data.len());
                    h.buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if h.buf.len() < len {
                        State::Keep {
                            ty,
                            flags,
                            sid,
                            len,
                        }
                    } else {
                        let payload = std::mem::take(&mut h.buf);
                        if !self.frame(i, ty, flags, sid, &payload, creds, &mut out) {
                            return out;
                        }
                        State::FrameHeader
                    }
                }
                State::Data {
                    sid,
                    flags,
                    mut remaining,
                    mut pad_unknown,
                    mut pad,
                } => {
                    if pad_unknown {
                        pad = usize::from(data[0]);
                        pad_unknown = false;
                        remaining -= 1;
                        data = &data[1..];
                        if pad > remaining {
                            self.lose(
                                i,
                                format!("DATA padding {pad} longer than its payload {remaining}"),
                                &mut out,
                            );
                            return out;
                        }
                    }
                    let n = remaining.min(data.len());
                    // Padding sits at the end of the payload: only the
                    // bytes before it are body.
                    let body = n.min(remaining.saturating_sub(pad));
                    self.count_body(i, sid, body as u64);
                    self.keep_body(i, sid, &data[..body]);
                    remaining -= n;
                    data = &data[n..];
                    if remaining == 0 {
                        self.data_done(i, sid, flags, &mut out);
                        State::FrameHeader
                    } else {
                        State::Data {
                            sid,
                            flags,
                            remaining,
                            pad_unknown,
                            pad,
                        }
                    }
                }
                State::Skip(remaining) => {
                    let n = remaining.min(data.len());
                    data = &data[n..];
                    if remaining == n {
                        State::FrameHeader
                    } else {
                        State::Skip(remaining - n)
                    }
                }
            };
            self.halves[i].state = next;
        }
        out
    }

    /// `n` bytes of direction `dir` were not captured. Inside a DATA or
    /// skipped payload they are counted; anywhere else HPACK is out of step
    /// for good.
    pub fn gap(&mut self, dir: Direction, n: u64) -> Vec<H2Message> {
        let mut out = Vec::new();
        if n == 0 {
            return out;
        }
        let i = index(dir);
        let state = std::mem::replace(&mut self.halves[i].state, State::Lost);
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let next = match state {
            State::Lost => State::Lost,
            State::Data {
                sid,
                flags,
                remaining,
                pad_unknown,
                pad,
            } if n <= remaining => {
                // A lost pad-length byte leaves the padding unknown: it is
                // counted as body, over by at most 255 bytes, rather than
                // giving up a direction whose HPACK state is still sound.
                let skipped_pad_len = usize::from(pad_unknown);
                let body = (n - skipped_pad_len).min(remaining.saturating_sub(pad));
                self.count_body(i, sid, body as u64);
                self.body_lost(i, sid);
                if n == remaining {
                    self.data_done(i, sid, flags, &mut out);
                    State::FrameHeader
                } else {
                    State::Data {
                        sid,
                        flags,
                        remaining: remaining - n,
                        pad_unknown: false,
                        pad,
                    }
                }
            }
            State::Skip(remaining) if n <= remaining => match remaining - n {
                0 => State::FrameHeader,
                r => State::Skip(r),
            },
            _ => {
                self.lose(
                    i,
                    format!("{n} bytes were not captured outside a DATA payload"),
                    &mut out,
                );
                State::Lost
            }
        };
        self.halves[i].state = next;
        out
    }

    fn lose(&mut self, i: usize, why: String, out: &mut Vec<H2Message>) {
        let h = &mut self.halves[i];
        h.state = State::Lost;
        h.buf = Vec::new();
        h.block = None;
        let dir = if i == 0 { "client" } else { "server" };
        out.push(H2Message::Error(format!(
            "HTTP/2 {dir} side no longer followed: {why}"
        )));
    }

    /// The state after a frame header.
    fn frame_header(
        &mut self,
        i: usize,
        b: &[u8],
        creds: &dyn Credentials,
        out: &mut Vec<H2Message>,
    ) -> Option<State> {
        let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
        let (ty, flags) = (b[3], b[4]);
        let sid = u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff;
        let in_block = self.halves[i].block.is_some();
        if in_block && ty != CONTINUATION {
            self.lose(
                i,
                format!("a {} frame interrupted a header block", frame_name(ty)),
                out,
            );
            return None;
        }
        let state = match ty {
            DATA if len == 0 => {
                self.data_done(i, sid, flags, out);
                State::FrameHeader
            }
            DATA => State::Data {
                sid,
                flags,
                remaining: len,
                pad_unknown: flags & PADDED != 0,
                pad: 0,
            },
            // The stream id in the header is all a reset needs: acting on it
            // now lets its payload be skipped, so a gap there costs nothing.
            RST_STREAM => {
                self.reset(sid, out);
                if len == 0 {
                    State::FrameHeader
                } else {
                    State::Skip(len)
                }
            }
            HEADERS | PUSH_PROMISE | CONTINUATION => {
                let held = self.halves[i].block.as_ref().map_or(0, |b| b.bytes.len());
                if held + len > MAX_BLOCK {
                    self.lose(
                        i,
                        format!(
                            "header block of more than {MAX_BLOCK} bytes ({} frame of {len})",
                            frame_name(ty)
                        ),
                        out,
                    );
                    return None;
                }
                if ty == CONTINUATION && !in_block {
                    self.lose(i, "CONTINUATION without a header block".into(), out);
                    return None;
                }
                State::Keep {
                    ty,
                    flags,
                    sid,
                    len,
                }
            }
            // A peer's SETTINGS say how large a table the other side's
            // encoder may use (6 bytes per setting; longer ones are not
            // settings a conforming peer sends, and are skipped).
            SETTINGS if sid == 0 && flags & ACK == 0 && len > 0 && len <= 6 * 16 => State::Keep {
                ty,
                flags,
                sid,
                len,
            },
            _ if len == 0 => State::FrameHeader,
            _ => State::Skip(len),
        };
        // A Keep of length 0 has nothing to wait for. It still needs the
        // real credentials policy: an empty CONTINUATION can end a block
        // whose earlier fragments hold an authorization header.
        if let State::Keep {
            ty,
            flags,
            sid,
            len: 0,
        } = state
        {
            return self
                .frame(i, ty, flags, sid, &[], creds, out)
                .then_some(State::FrameHeader);
        }
        Some(state)
    }

    /// Handles one complete kept frame; false when the direction is lost.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        i: usize,
        ty: u8,
        flags: u8,
        sid: u32,
        payload: &[u8],
        creds: &dyn Credentials,
        out: &mut Vec<H2Message>,
    ) -> bool {
        let frame_bytes = (FRAME_HEADER + payload.len()) as u64;
        match ty {
            HEADERS | PUSH_PROMISE => {
                let mut p = payload;
                let mut pad = 0;
                if flags & PADDED != 0 {
                    let Some((&n, rest)) = p.split_first() else {
                        self.lose(i, format!("{} frame too short", frame_name(ty)), out);
                        return false;
                    };
                    pad = usize::from(n);
                    p = rest;
                }
                let skip = match ty {
                    HEADERS if flags & PRIORITY != 0 => 5,
                    PUSH_PROMISE => 4,
                    _ => 0,
                };
                if p.len() < skip + pad {
                    self.lose(
                        i,
                        format!(
                            "{} frame of {} bytes shorter than its padding and fields",
                            frame_name(ty),
                            payload.len()
                        ),
                        out,
                    );
                    return false;
                }
                let fragment = &p[skip..p.len() - pad];
                self.halves[i].block = Some(Block {
                    sid,
                    promise: ty == PUSH_PROMISE,
                    end_stream: ty == HEADERS && flags & END_STREAM != 0,
                    bytes: fragment.to_vec(),
                    frame_bytes,
                });
                if flags & END_HEADERS != 0 {
                    return self.block_done(i, creds, out);
                }
                true
            }
            CONTINUATION => {
                let same = self.halves[i].block.as_ref().is_some_and(|b| b.sid == sid);
                if !same {
                    self.lose(i, "CONTINUATION on another stream".into(), out);
                    return false;
                }
                if let Some(b) = &mut self.halves[i].block {
                    b.bytes.extend_from_slice(payload);
                    b.frame_bytes = b.frame_bytes.saturating_add(frame_bytes);
                }
                if flags & END_HEADERS != 0 {
                    return self.block_done(i, creds, out);
                }
                true
            }
            SETTINGS => {
                self.settings(i, payload);
                true
            }
            _ => true,
        }
    }

    /// The SETTINGS of side `i`: SETTINGS_HEADER_TABLE_SIZE bounds the
    /// table the other side's encoder may grow to (never above
    /// `MAX_TABLE`; a lowered size is not enforced, a late block encoded
    /// before the peer read it must still decode).
    fn settings(&mut self, i: usize, payload: &[u8]) {
        for s in payload.as_chunks::<6>().0 {
            if u16::from_be_bytes([s[0], s[1]]) == 0x1 {
                let size = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
                let size = usize::try_from(size)
                    .unwrap_or(MAX_TABLE)
                    .clamp(DEFAULT_TABLE, MAX_TABLE);
                self.halves[1 - i].decoder.set_max_allowed_table_size(size);
            }
        }
    }

    /// Decodes a finished header block and applies it to its stream.
    fn block_done(&mut self, i: usize, creds: &dyn Credentials, out: &mut Vec<H2Message>) -> bool {
        let Some(block) = self.halves[i].block.take() else {
            return true;
        };
        let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
        let mut credentials = Vec::new();
        let mut left = (LIST_BASE + LIST_PER_BYTE * block.bytes.len()).min(MAX_LIST);
        let mut unread = 0usize;
        let mut lower = String::new();
        let decoded = self.halves[i]
            .decoder
            .decode_with_cb(&block.bytes, |name, value| {
                if name.len() > MAX_NAME {
                    return;
                }
                lower.clear();
                lower.push_str(&String::from_utf8_lossy(&name));
                lower.make_ascii_lowercase();
                let name = lower.as_str();
                let secret = creds.is_secret(name);
                let kept = !secret
                    && KEPT_FIELDS.contains(&name)
                    && !fields.iter().any(|(k, _)| k == name);
                if !secret && !kept {
                    return;
                }
                if value.len() > left || (secret && credentials.len() >= MAX_CREDENTIALS) {
                    unread += 1;
                    return;
                }
                left -= value.len();
                if secret {
                    credentials.push(creds.fingerprint(&value));
                } else {
                    fields.push((name.to_string(), value.into_owned()));
                }
            });
        if let Err(e) = decoded {
            self.lose(
                i,
                format!(
                    "HPACK block of {} bytes on stream {} undecodable ({e:?})",
                    block.bytes.len(),
                    block.sid
                ),
                out,
            );
            return false;
        }
        if unread > 0 {
            out.push(H2Message::Error(format!(
                "HPACK block of {} bytes on stream {}: {unread} fields not read (a block may make the sensor read {} decoded bytes, {MAX_CREDENTIALS} credentials)",
                block.bytes.len(),
                block.sid,
                (LIST_BASE + LIST_PER_BYTE * block.bytes.len()).min(MAX_LIST)
            )));
        }
        // Server push: the table is in step now; its streams are not the
        // client's calls.
        if block.promise || block.sid == 0 || block.sid % 2 == 0 {
            return true;
        }
        let field = |n: &str| {
            fields
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        if !self.streams.contains_key(&block.sid)
            && i == 0
            && self.streams.len() >= MAX_STREAMS
            && let Some((old, _)) = self.streams.pop_first()
        {
            out.push(H2Message::Error(format!(
                "more than {MAX_STREAMS} open streams: stream {old} no longer followed"
            )));
        }
        // Responses only to streams whose request was seen.
        if i == 1 && !self.streams.contains_key(&block.sid) {
            return true;
        }
        let s = self.streams.entry(block.sid).or_default();
        if i == 0 {
            s.req.head_bytes = s.req.head_bytes.saturating_add(block.frame_bytes);
            if s.method.is_none() {
                s.method = field(":method");
                s.path = field(":path").unwrap_or_default();
                s.authority = field(":authority").or_else(|| field("host"));
                s.credentials = credentials;
                if self
                    .keep
                    .is_some_and(|keep| keep(s.authority.as_deref().unwrap_or_default(), &s.path))
                {
                    s.req.kept = Some(Kept {
                        encoding: field("content-encoding"),
                        ..Kept::default()
                    });
                    s.resp.kept = Some(Kept::default());
                }
            }
        } else {
            s.resp.head_bytes = s.resp.head_bytes.saturating_add(block.frame_bytes);
            let status = field(":status").and_then(|v| v.trim().parse::<u16>().ok());
            // 1xx heads are interim; the final status follows.
            if let Some(st) = status
                && (s.status == 0 || (100..200).contains(&s.status))
            {
                s.status = st;
                s.content_type = field("content-type");
                if let Some(k) = &mut s.resp.kept {
                    k.encoding = field("content-encoding");
                }
            }
        }
        if block.end_stream {
            self.side_ended(i, block.sid, out);
        }
        true
    }

    fn count_body(&mut self, i: usize, sid: u32, n: u64) {
        if let Some(s) = self.streams.get_mut(&sid) {
            let side = if i == 0 { &mut s.req } else { &mut s.resp };
            side.body_bytes = side.body_bytes.saturating_add(n);
        }
    }

    fn keep_body(&mut self, i: usize, sid: u32, bytes: &[u8]) {
        let limit = self.keep_limit;
        if let Some(s) = self.streams.get_mut(&sid) {
            let side = if i == 0 { &mut s.req } else { &mut s.resp };
            if let Some(k) = &mut side.kept {
                k.push(bytes, limit);
            }
        }
    }

    /// Body bytes of stream `sid` went uncaptured.
    fn body_lost(&mut self, i: usize, sid: u32) {
        if let Some(s) = self.streams.get_mut(&sid) {
            let side = if i == 0 { &mut s.req } else { &mut s.resp };
            if let Some(k) = &mut side.kept {
                k.truncated = true;
            }
        }
    }

    fn data_done(&mut self, i: usize, sid: u32, flags: u8, out: &mut Vec<H2Message>) {
        if flags & END_STREAM != 0 {
            self.side_ended(i, sid, out);
        }
    }

    fn side_ended(&mut self, i: usize, sid: u32, out: &mut Vec<H2Message>) {
        let Some(s) = self.streams.get_mut(&sid) else {
            return;
        };
        if i == 0 {
            s.req.ended = true;
            emit_request(sid, s, out);
        } else {
            s.resp.ended = true;
            // A server may answer before the request body ended (an early
            // 413): the request is reported first so the pair stays whole.
            emit_request(sid, s, out);
            emit_response(sid, s, out);
            self.streams.remove(&sid);
        }
    }

    fn reset(&mut self, sid: u32, out: &mut Vec<H2Message>) {
        if let Some(mut s) = self.streams.remove(&sid) {
            emit_request(sid, &mut s, out);
            if s.status != 0 {
                emit_response(sid, &mut s, out);
            }
        }
    }
}

fn emit_request(sid: u32, s: &mut Stream, out: &mut Vec<H2Message>) {
    if s.req.emitted {
        return;
    }
    let Some(method) = s.method.clone() else {
        return;
    };
    s.req.emitted = true;
    out.push(H2Message::Request {
        stream_id: sid,
        method,
        path: s.path.clone(),
        authority: s.authority.clone(),
        credentials: std::mem::take(&mut s.credentials),
        head_bytes: s.req.head_bytes,
        body_bytes: s.req.body_bytes,
        body: s.req.kept.take(),
    });
}

fn emit_response(sid: u32, s: &mut Stream, out: &mut Vec<H2Message>) {
    if s.resp.emitted || !s.req.emitted {
        return;
    }
    s.resp.emitted = true;
    out.push(H2Message::Response {
        stream_id: sid,
        status: s.status,
        head_bytes: s.resp.head_bytes,
        body_bytes: s.resp.body_bytes,
        body: s.resp.kept.take(),
        content_type: s.content_type.take(),
    });
}

// The tests are most of the file's length: kept apart so the parser reads whole.
#[cfg(test)]
#[path = "h2_tests.rs"]
mod tests;
