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
const KEPT_FIELDS: [&str; 6] = [
    ":method",
    ":path",
    ":authority",
    ":status",
    "host",
    "content-type",
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
                    s.req.kept = Some(Kept::default());
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
                let room = limit.saturating_sub(k.bytes.len());
                k.bytes.extend_from_slice(&bytes[..bytes.len().min(room)]);
                k.truncated |= bytes.len() > room;
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

#[cfg(test)]
mod tests {
    use loona_hpack::Encoder;

    use super::*;

    const REQ: Direction = Direction::Request;
    const RESP: Direction = Direction::Response;

    fn fp(v: &[u8]) -> String {
        format!("fp:{}", v.len())
    }

    fn frame(ty: u8, flags: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
        f.extend_from_slice(&sid.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn block(enc: &mut Encoder, headers: &[(&str, &str)]) -> Vec<u8> {
        enc.encode(headers.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    }

    fn client_start() -> Vec<u8> {
        let mut v = PREFACE.to_vec();
        v.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])); // SETTINGS
        v
    }

    fn get(enc: &mut Encoder, sid: u32, path: &str) -> Vec<u8> {
        let b = block(
            enc,
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "api.example"),
                (":path", path),
                ("authorization", "Bearer sk-secret-h2"),
                // Not in the static table: indexed on first use, so a
                // second request takes it from the dynamic table.
                ("x-api-key", "k-dyn"),
            ],
        );
        frame(HEADERS, END_HEADERS | END_STREAM, sid, &b)
    }

    fn ok(enc: &mut Encoder, sid: u32, status: &str, body: &[u8]) -> Vec<u8> {
        let b = block(
            enc,
            &[(":status", status), ("content-type", "application/json")],
        );
        let mut v = frame(HEADERS, END_HEADERS, sid, &b);
        v.extend(frame(DATA, END_STREAM, sid, body));
        v
    }

    fn feed_all(c: &mut H2Conn, dir: Direction, d: &[u8]) -> Vec<H2Message> {
        c.feed(dir, d, &fp)
    }

    fn request(m: &H2Message) -> (u32, &str, &str) {
        match m {
            H2Message::Request {
                stream_id,
                method,
                path,
                ..
            } => (*stream_id, method, path),
            other => panic!("not a request: {other:?}"),
        }
    }

    fn response(m: &H2Message) -> (u32, u16, u64) {
        match m {
            H2Message::Response {
                stream_id,
                status,
                body_bytes,
                ..
            } => (*stream_id, *status, *body_bytes),
            other => panic!("not a response: {other:?}"),
        }
    }

    #[test]
    fn preface_detection() {
        assert!(is_client_preface(PREFACE));
        assert!(is_client_preface(&PREFACE[..16]));
        assert!(!is_client_preface(&PREFACE[..10]));
        assert!(!is_client_preface(b"GET / HTTP/1.1\r\nHost: x\r\n"));
        assert!(is_server_preface(&frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])));
        assert!(!is_server_preface(&frame(0x4, 1, 0, &[])), "an ACK");
        assert!(!is_server_preface(b"HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn get_and_its_response() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = H2Conn::new();
        let mut d = client_start();
        d.extend(get(&mut ce, 1, "/v1/orders/7"));
        let m = feed_all(&mut c, REQ, &d);
        assert_eq!(m.len(), 1);
        assert_eq!(request(&m[0]), (1, "GET", "/v1/orders/7"));
        let H2Message::Request {
            authority,
            credentials,
            head_bytes,
            ..
        } = &m[0]
        else {
            unreachable!()
        };
        assert_eq!(authority.as_deref(), Some("api.example"));
        assert_eq!(credentials, &["fp:19", "fp:5"]);
        assert!(*head_bytes > 9);
        assert!(!format!("{m:?}").contains("sk-secret"), "no secret kept");
        let mut s = frame(0x4, 0, 0, &[]);
        s.extend(ok(&mut se, 1, "200", b"{\"ok\":true}"));
        let m = feed_all(&mut c, RESP, &s);
        assert_eq!(m.len(), 1);
        assert_eq!(response(&m[0]), (1, 200, 11));
    }

    #[test]
    fn post_body_over_several_data_frames_byte_by_byte() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = H2Conn::new();
        let mut d = client_start();
        let b = block(
            &mut ce,
            &[
                (":method", "POST"),
                (":path", "/v1/orders"),
                (":authority", "a"),
            ],
        );
        d.extend(frame(HEADERS, END_HEADERS, 3, &b));
        d.extend(frame(DATA, 0, 3, b"{\"sku\":"));
        d.extend(frame(DATA, END_STREAM, 3, b"\"A-1\"}"));
        let mut m = Vec::new();
        for byte in &d {
            m.extend(feed_all(&mut c, REQ, std::slice::from_ref(byte)));
        }
        assert_eq!(m.len(), 1);
        let H2Message::Request { body_bytes, .. } = &m[0] else {
            panic!("{m:?}")
        };
        assert_eq!(*body_bytes, 13);
        let m = feed_all(&mut c, RESP, &ok(&mut se, 3, "201", b"{}"));
        assert_eq!(response(&m[0]), (3, 201, 2));
    }

    #[test]
    fn bodies_of_selected_streams_are_kept_bounded() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = H2Conn::new();
        c.keep_bodies(16, |authority, path| {
            authority == "llm" && path == "/v1/messages"
        });
        let mut d = client_start();
        for (sid, authority) in [(1, "llm"), (3, "other")] {
            let b = block(
                &mut ce,
                &[
                    (":method", "POST"),
                    (":path", "/v1/messages"),
                    (":authority", authority),
                ],
            );
            d.extend(frame(HEADERS, END_HEADERS, sid, &b));
            // Padded: pad length 2, then the body, then the padding.
            d.extend(frame(DATA, PADDED, sid, b"\x02{\"model\":xx"));
            d.extend(frame(DATA, END_STREAM, sid, b"\"m\"}"));
        }
        let m = feed_all(&mut c, REQ, &d);
        let bodies: Vec<_> = m
            .iter()
            .map(|m| match m {
                H2Message::Request {
                    stream_id, body, ..
                } => (*stream_id, body.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            bodies,
            [
                (
                    1,
                    Some(Kept {
                        bytes: b"{\"model\":\"m\"}".to_vec(),
                        truncated: false
                    })
                ),
                (3, None)
            ]
        );
        // The response of a kept request: its body (over the limit: cut
        // and marked) and content type.
        let b = block(
            &mut se,
            &[(":status", "200"), ("content-type", "text/event-stream")],
        );
        let mut r = frame(HEADERS, END_HEADERS, 1, &b);
        r.extend(frame(DATA, END_STREAM, 1, b"data: {\"usage\":{}}\n\n"));
        let m = feed_all(&mut c, RESP, &r);
        let [
            H2Message::Response {
                body: Some(k),
                content_type,
                ..
            },
        ] = &m[..]
        else {
            panic!("{m:?}")
        };
        assert_eq!(k.bytes, b"data: {\"usage\":{");
        assert!(k.truncated);
        assert_eq!(content_type.as_deref(), Some("text/event-stream"));
    }

    #[test]
    fn a_gap_in_a_kept_body_marks_it_truncated() {
        let mut ce = Encoder::new();
        let mut c = H2Conn::new();
        c.keep_bodies(1024, |_, _| true);
        let mut d = client_start();
        let b = block(
            &mut ce,
            &[(":method", "POST"), (":path", "/x"), (":authority", "a")],
        );
        d.extend(frame(HEADERS, END_HEADERS, 1, &b));
        let data = frame(DATA, END_STREAM, 1, b"0123456789");
        d.extend_from_slice(&data[..13]); // header + 4 body bytes
        let mut m = feed_all(&mut c, REQ, &d);
        m.extend(c.gap(REQ, 6));
        let [
            H2Message::Request {
                body: Some(k),
                body_bytes,
                ..
            },
        ] = &m[..]
        else {
            panic!("{m:?}")
        };
        assert_eq!(*body_bytes, 10);
        assert_eq!(k.bytes, b"0123");
        assert!(k.truncated);
    }

    #[test]
    fn interleaved_streams_and_dynamic_table_reuse() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = H2Conn::new();
        let mut d = client_start();
        d.extend(get(&mut ce, 1, "/a"));
        d.extend(get(&mut ce, 3, "/b"));
        let m = feed_all(&mut c, REQ, &d);
        assert_eq!(request(&m[0]), (1, "GET", "/a"));
        assert_eq!(request(&m[1]), (3, "GET", "/b"));
        // The second request's x-api-key came from the dynamic table.
        let H2Message::Request {
            authority,
            credentials,
            ..
        } = &m[1]
        else {
            unreachable!()
        };
        assert_eq!(authority.as_deref(), Some("api.example"));
        assert_eq!(credentials, &["fp:19", "fp:5"]);
        let mut s = ok(&mut se, 3, "404", b"no");
        s.extend(ok(&mut se, 1, "200", b"yes!"));
        let m = feed_all(&mut c, RESP, &s);
        assert_eq!(response(&m[0]), (3, 404, 2));
        assert_eq!(response(&m[1]), (1, 200, 4));
    }

    #[test]
    fn continuation_padding_and_priority() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = H2Conn::new();
        let b = block(
            &mut ce,
            &[
                (":method", "DELETE"),
                (":path", "/v1/customers/9"),
                ("x-api-key", "k"),
            ],
        );
        let (first, rest) = b.split_at(b.len() / 2);
        let mut p = vec![3]; // pad length
        p.extend([0, 0, 0, 0, 16]); // priority: dependency + weight
        p.extend_from_slice(first);
        p.extend([0, 0, 0]);
        let mut d = client_start();
        d.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 5, &p));
        d.extend(frame(CONTINUATION, END_HEADERS, 5, rest));
        let m = feed_all(&mut c, REQ, &d);
        assert_eq!(request(&m[0]), (5, "DELETE", "/v1/customers/9"));
        // Padded DATA: only the body counts.
        let hb = block(&mut se, &[(":status", "204")]);
        let mut s = frame(HEADERS, END_HEADERS, 5, &hb);
        let mut data = vec![4];
        data.extend(b"abc");
        data.extend([0; 4]);
        s.extend(frame(DATA, PADDED | END_STREAM, 5, &data));
        let m = feed_all(&mut c, RESP, &s);
        assert_eq!(response(&m[0]), (5, 204, 3));
    }

    #[test]
    fn interim_1xx_then_final_status_and_reset() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = H2Conn::new();
        let mut d = client_start();
        d.extend(get(&mut ce, 1, "/slow"));
        d.extend(get(&mut ce, 3, "/cancelled"));
        feed_all(&mut c, REQ, &d);
        let b100 = block(&mut se, &[(":status", "103")]);
        let mut s = frame(HEADERS, END_HEADERS, 1, &b100);
        s.extend(ok(&mut se, 1, "200", b"x"));
        let m = feed_all(&mut c, RESP, &s);
        assert_eq!(response(&m[0]), (1, 200, 1));
        // The client gives up on stream 3: it ends with no response.
        assert!(feed_all(&mut c, REQ, &frame(RST_STREAM, 0, 3, &[0, 0, 0, 8])).is_empty());
        let m = feed_all(&mut c, RESP, &ok(&mut se, 3, "200", b""));
        assert!(m.is_empty(), "{m:?}");
    }

    #[test]
    fn gaps_in_data_are_counted_and_in_headers_are_fatal() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = H2Conn::new();
        let mut d = client_start();
        d.extend(get(&mut ce, 1, "/big"));
        feed_all(&mut c, REQ, &d);
        let hb = block(&mut se, &[(":status", "200")]);
        let mut s = frame(HEADERS, END_HEADERS, 1, &hb);
        let body = vec![b'z'; 5000];
        let data = frame(DATA, END_STREAM, 1, &body);
        s.extend_from_slice(&data[..109]); // header + 100 body bytes
        assert!(feed_all(&mut c, RESP, &s).is_empty());
        assert!(c.gap(RESP, 4000).is_empty());
        let m = feed_all(&mut c, RESP, &data[4109..]);
        assert_eq!(response(&m[0]), (1, 200, 5000));
        // A gap in a header block: one error, then silence.
        let m = c.gap(REQ, 7);
        assert!(matches!(&m[..], [H2Message::Error(_)]), "{m:?}");
        assert!(feed_all(&mut c, REQ, &get(&mut ce, 3, "/x")).is_empty());
    }

    #[test]
    fn garbage_and_oversized_blocks_are_errors() {
        let mut c = H2Conn::new();
        let m = feed_all(&mut c, REQ, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n");
        assert!(matches!(&m[..], [H2Message::Error(_)]), "{m:?}");
        // Server side: a HEADERS frame announcing a block beyond the bound.
        let mut c = H2Conn::new();
        let len = MAX_BLOCK + 1;
        let hdr = [
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            HEADERS,
            0,
            0,
            0,
            0,
            1,
        ];
        let m = feed_all(&mut c, RESP, &hdr);
        assert!(
            matches!(&m[..], [H2Message::Error(e)] if e.contains("header block")),
            "{m:?}"
        );
        // An undecodable HPACK block (index 127+ into an empty table).
        let mut c = H2Conn::new();
        let mut d = client_start();
        d.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0xff, 0x7f]));
        let m = feed_all(&mut c, REQ, &d);
        assert!(
            matches!(&m[..], [H2Message::Error(e)] if e.contains("HPACK")),
            "{m:?}"
        );
        // Errors say what, never the bytes.
        assert!(!format!("{m:?}").contains("\\u{ff}"));
    }

    #[test]
    fn every_prefix_and_every_byte_never_panics() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut d = client_start();
        d.extend(get(&mut ce, 1, "/a"));
        let s = ok(&mut se, 1, "200", b"body");
        for cut in 0..d.len() {
            let mut c = H2Conn::new();
            feed_all(&mut c, REQ, &d[..cut]);
            c.gap(REQ, 3);
            feed_all(&mut c, REQ, &d[cut..]);
            for flip in 0..s.len() {
                let mut bad = s.clone();
                bad[flip] ^= 0xa5;
                feed_all(&mut c, RESP, &bad);
            }
        }
    }

    #[test]
    fn empty_continuation_ends_a_block_with_its_credentials() {
        let mut ce = Encoder::new();
        let mut c = H2Conn::new();
        let b = block(
            &mut ce,
            &[
                (":method", "GET"),
                (":path", "/me"),
                ("authorization", "Bearer sk-secret-cont"),
            ],
        );
        let mut d = client_start();
        d.extend(frame(HEADERS, END_STREAM, 1, &b));
        d.extend(frame(CONTINUATION, END_HEADERS, 1, &[]));
        let m = feed_all(&mut c, REQ, &d);
        let [H2Message::Request { credentials, .. }] = &m[..] else {
            panic!("{m:?}")
        };
        assert_eq!(credentials, &["fp:21"]);
        assert!(!format!("{m:?}").contains("sk-secret"));
    }

    #[test]
    fn reset_reports_what_each_side_had_sent() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = H2Conn::new();
        let b = block(&mut ce, &[(":method", "PUT"), (":path", "/upload")]);
        let mut d = client_start();
        d.extend(frame(HEADERS, END_HEADERS, 1, &b));
        d.extend(frame(DATA, 0, 1, b"12345"));
        assert!(feed_all(&mut c, REQ, &d).is_empty());
        // The client abandons the upload: the request is reported as far
        // as it got. The reset's payload is not needed, so a gap there is
        // harmless.
        let rst = frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]);
        let m = feed_all(&mut c, REQ, &rst[..10]);
        let [H2Message::Request { body_bytes: 5, .. }] = &m[..] else {
            panic!("{m:?}")
        };
        assert!(c.gap(REQ, 3).is_empty());
        // The server answered a second stream's head, then reset it.
        let b = block(&mut ce, &[(":method", "GET"), (":path", "/stream")]);
        let d = frame(HEADERS, END_HEADERS | END_STREAM, 3, &b);
        assert_eq!(
            request(&feed_all(&mut c, REQ, &d)[0]),
            (3, "GET", "/stream")
        );
        let hb = block(&mut se, &[(":status", "200")]);
        let mut s = frame(HEADERS, END_HEADERS, 3, &hb);
        s.extend(frame(DATA, 0, 3, b"partial"));
        s.extend(frame(RST_STREAM, 0, 3, &[0, 0, 0, 2]));
        let m = feed_all(&mut c, RESP, &s);
        assert_eq!(response(&m[0]), (3, 200, 7));
    }

    #[test]
    fn push_promise_keeps_the_server_table_in_step() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = H2Conn::new();
        let mut d = client_start();
        d.extend(get(&mut ce, 1, "/page"));
        feed_all(&mut c, REQ, &d);
        // The promise adds x-pushed to the server's dynamic table; the
        // response below refers to it by index only.
        let mut p = 2u32.to_be_bytes().to_vec();
        p.extend(block(
            &mut se,
            &[
                (":method", "GET"),
                (":path", "/style.css"),
                ("x-pushed", "1"),
            ],
        ));
        let mut s = frame(PUSH_PROMISE, END_HEADERS, 1, &p);
        let hb = block(&mut se, &[(":status", "200"), ("x-pushed", "1")]);
        assert!(hb.contains(&0xbe), "x-pushed indexed from the table");
        s.extend(frame(HEADERS, END_HEADERS, 1, &hb));
        s.extend(frame(HEADERS, END_HEADERS, 2, &hb));
        s.extend(frame(DATA, END_STREAM, 2, b"body{}"));
        s.extend(frame(DATA, END_STREAM, 1, b"<html>"));
        let m = feed_all(&mut c, RESP, &s);
        assert_eq!(m.len(), 1, "pushed streams are not the client's calls");
        assert_eq!(response(&m[0]), (1, 200, 6));
    }

    #[test]
    fn table_size_updates_are_honoured_and_bounded() {
        let mut ce = Encoder::new();
        let mut c = H2Conn::new();
        // Shrinking to 0 evicts everything; the block still decodes.
        let mut b = vec![0x20];
        b.extend(block(&mut ce, &[(":method", "GET"), (":path", "/a")]));
        let mut d = client_start();
        d.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &b));
        assert_eq!(request(&feed_all(&mut c, REQ, &d)[0]), (1, "GET", "/a"));
        // Growing to 100000 bytes is beyond what this sensor keeps.
        let mut b = vec![0x3f, 0x81, 0x8d, 0x06];
        b.extend([0x82, 0x84]);
        let m = feed_all(&mut c, REQ, &frame(HEADERS, END_HEADERS, 3, &b));
        assert!(
            matches!(&m[..], [H2Message::Error(e)] if e.contains("HPACK")),
            "{m:?}"
        );
    }

    /// RFC 7541 appendix C.4: three requests as a real encoder writes them,
    /// Huffman-coded, the second and third reusing the dynamic table.
    #[test]
    fn rfc7541_huffman_requests() {
        let blocks: [&[u8]; 3] = [
            &[
                0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
                0x90, 0xf4, 0xff,
            ],
            &[
                0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
            ],
            &[
                0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f,
                0x89, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
            ],
        ];
        let mut c = H2Conn::new();
        let mut d = client_start();
        for (n, b) in (0u32..).zip(blocks) {
            d.extend(frame(HEADERS, END_HEADERS | END_STREAM, 2 * n + 1, b));
        }
        let m = feed_all(&mut c, REQ, &d);
        let got: Vec<_> = m
            .iter()
            .map(|m| match m {
                H2Message::Request {
                    path, authority, ..
                } => (path.as_str(), authority.as_deref()),
                other => panic!("{other:?}"),
            })
            .collect();
        let host = Some("www.example.com");
        assert_eq!(got, [("/", host), ("/", host), ("/index.html", host)]);
    }

    #[test]
    fn stream_count_is_bounded() {
        let mut ce = Encoder::new();
        let mut c = H2Conn::new();
        let mut d = client_start();
        for n in 0..=MAX_STREAMS as u32 {
            let b = block(&mut ce, &[(":method", "POST"), (":path", "/p")]);
            d.extend(frame(HEADERS, END_HEADERS, 2 * n + 1, &b));
        }
        let m = feed_all(&mut c, REQ, &d);
        assert!(
            matches!(&m[..], [H2Message::Error(e)] if e.contains("stream 1 ")),
            "{m:?}"
        );
        assert!(feed_all(&mut c, REQ, &frame(DATA, END_STREAM, 1, b"x")).is_empty());
        let m = feed_all(&mut c, REQ, &frame(DATA, END_STREAM, 3, b"x"));
        assert_eq!(request(&m[0]), (3, "POST", "/p"));
    }

    #[test]
    fn empty_gaps_and_lost_pad_lengths_do_not_lose_the_side() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = H2Conn::new();
        let mut d = client_start();
        d.extend(get(&mut ce, 1, "/a"));
        let cut = d.len() - 3;
        feed_all(&mut c, REQ, &d[..cut]);
        assert!(c.gap(REQ, 0).is_empty(), "nothing was lost");
        assert_eq!(request(&feed_all(&mut c, REQ, &d[cut..])[0]).0, 1);
        // The pad-length byte of a padded DATA frame is lost: its body is
        // still counted (padding included, as its size is unknown).
        let hb = block(&mut se, &[(":status", "200")]);
        let mut s = frame(HEADERS, END_HEADERS, 1, &hb);
        let mut data = vec![2];
        data.extend(b"abcd");
        data.extend([0; 2]);
        s.extend(frame(DATA, PADDED | END_STREAM, 1, &data));
        let (head, tail) = s.split_at(s.len() - data.len());
        assert!(feed_all(&mut c, RESP, head).is_empty());
        assert!(c.gap(RESP, 1).is_empty());
        let m = feed_all(&mut c, RESP, &tail[1..]);
        assert_eq!(response(&m[0]), (1, 200, 6));
    }

    /// Counts the credential bytes a connection makes the sensor HMAC.
    #[derive(Default)]
    struct Counting {
        calls: std::cell::Cell<usize>,
        bytes: std::cell::Cell<usize>,
    }

    impl Credentials for Counting {
        fn is_secret(&self, name: &str) -> bool {
            name == "authorization"
        }
        fn fingerprint(&self, value: &[u8]) -> String {
            self.calls.set(self.calls.get() + 1);
            self.bytes.set(self.bytes.get() + value.len());
            fp(value)
        }
    }

    /// An HPACK integer of `prefix` bits after the representation's
    /// `first` bits (RFC 7541 §5.1).
    fn hpack_int(first: u8, prefix: u32, mut n: usize, out: &mut Vec<u8>) {
        let max = (1usize << prefix) - 1;
        if n < max {
            out.push(first | n as u8);
            return;
        }
        out.push(first | max as u8);
        n -= max;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }

    /// A GET of `/` whose authorization field is a literal added to the
    /// dynamic table (index 62) of `len` bytes.
    fn indexed_credential(len: usize) -> Vec<u8> {
        let mut b = vec![0x82, 0x84, 0x87, 0x40, 13];
        b.extend(b"authorization");
        hpack_int(0, 7, len, &mut b);
        b.extend(std::iter::repeat_n(b'k', len));
        b
    }

    #[test]
    fn a_header_block_of_references_costs_what_its_bytes_allow() {
        // Issue 19, finding 2: one 4000-byte credential put in the table,
        // then 200,000 one-byte references to it. Each reference was
        // fingerprinted: 800 MB of HMAC for a 200 KB block.
        let creds = Counting::default();
        let mut c = H2Conn::new();
        c.feed(REQ, &client_start(), &creds);
        let mut b = indexed_credential(4000);
        b.extend(std::iter::repeat_n(0xbe, 200_000));
        let m = c.feed(
            REQ,
            &frame(HEADERS, END_HEADERS | END_STREAM, 1, &b),
            &creds,
        );
        assert_eq!(creds.calls.get(), MAX_CREDENTIALS);
        assert!(creds.bytes.get() <= MAX_LIST);
        let said = m
            .iter()
            .any(|m| matches!(m, H2Message::Error(e) if e.contains("199993 fields not read")));
        assert!(said, "no message says what was not read");
        assert_eq!(request(m.last().unwrap()), (1, "GET", "/"));

        // A small block may read 16 KiB and 16 bytes per byte of its own:
        // eight references of 4000 bytes in a 12-byte block read four.
        let creds = Counting::default();
        let mut b = vec![0x82, 0x84, 0x87];
        b.extend([0xbe; 8]);
        let m = c.feed(
            REQ,
            &frame(HEADERS, END_HEADERS | END_STREAM, 3, &b),
            &creds,
        );
        assert_eq!(creds.calls.get(), 4, "{m:?}");
        assert!(matches!(&m[0], H2Message::Error(e) if e.contains("4 fields not read")));
        assert_eq!(request(&m[1]), (3, "GET", "/"));
    }

    #[test]
    fn the_table_grows_only_as_far_as_the_other_side_allowed() {
        // A table size update to 64 KiB before the server's SETTINGS said
        // so: the 4 KiB default holds and the client side is lost.
        let mut b = Vec::new();
        hpack_int(0x20, 5, 65536, &mut b);
        b.extend([0x82, 0x84, 0x87]);
        let mut c = H2Conn::new();
        feed_all(&mut c, REQ, &client_start());
        let m = feed_all(
            &mut c,
            REQ,
            &frame(HEADERS, END_HEADERS | END_STREAM, 1, &b),
        );
        assert!(
            matches!(&m[..], [H2Message::Error(e)] if e.contains("undecodable")),
            "{m:?}"
        );
        // After the server's SETTINGS_HEADER_TABLE_SIZE of 65536 it decodes.
        let mut c = H2Conn::new();
        feed_all(&mut c, REQ, &client_start());
        let settings = frame(SETTINGS, 0, 0, &[0, 1, 0, 1, 0, 0]);
        assert!(feed_all(&mut c, RESP, &settings).is_empty());
        let m = feed_all(
            &mut c,
            REQ,
            &frame(HEADERS, END_HEADERS | END_STREAM, 1, &b),
        );
        assert_eq!(request(&m[0]), (1, "GET", "/"));
    }
}
