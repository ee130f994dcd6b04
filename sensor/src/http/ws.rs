//! WebSocket messages (RFC 6455) over one upgraded HTTP/1.1 connection,
//! both directions, with permessage-deflate (RFC 7692) when the server's
//! 101 accepted it. Codex CLI sends its Responses API calls this way first
//! (`GET /v1/responses` upgraded, then a `response.create` message per
//! turn and the answer's events as messages).
//!
//! Frames are unmasked and joined into messages; control frames (ping,
//! pong, close) are read past. A message's payload is kept up to a limit;
//! a compressed one is inflated as its frames arrive, all of it (the
//! window carries over to the next message unless the peer said
//! `no_context_takeover`), but never more than `MAX_INFLATED` per
//! message: a small message that inflates to gigabytes is cut off and
//! that direction is no longer decoded. Bytes the capture missed inside a
//! payload truncate that message (and, with a shared window, stop the
//! direction's decoding: later messages would inflate to garbage);
//! missed anywhere else, the framing is lost for that direction. Errors
//! say what was wrong, never the bytes. Nothing here panics on input.

use std::{
    borrow::Cow,
    sync::atomic::{AtomicUsize, Ordering},
};

use flate2::{Decompress, FlushDecompress, Status};

use super::stream::Kept;

/// Most bytes a single message may inflate to before its direction is
/// given up (a deflate stream expands at most about 1,000 times: a 16 KiB
/// record could otherwise cost 16 MiB of work each).
pub const MAX_INFLATED: u64 = 16 << 20;

/// Inflaters alive at once (about 43 KiB each): connections past this
/// many with compression are framed and counted, their messages not read.
pub const MAX_INFLATERS: usize = 256;

static INFLATERS: AtomicUsize = AtomicUsize::new(0);

/// What the server's `Sec-WebSocket-Extensions` accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deflate {
    /// Each client message starts a fresh window.
    pub client_no_context_takeover: bool,
    /// Each server message starts a fresh window.
    pub server_no_context_takeover: bool,
}

impl Deflate {
    /// permessage-deflate from a 101 response's extension header, if it
    /// was accepted (the first extension offered under that name).
    pub fn accepted(header: Option<&str>) -> Option<Deflate> {
        let header = header?;
        header.split(',').find_map(|ext| {
            let mut params = ext.split(';').map(str::trim);
            if !params.next()?.eq_ignore_ascii_case("permessage-deflate") {
                return None;
            }
            let mut d = Deflate::default();
            for p in params {
                let name = p.split('=').next().unwrap_or("").trim();
                if name.eq_ignore_ascii_case("client_no_context_takeover") {
                    d.client_no_context_takeover = true;
                } else if name.eq_ignore_ascii_case("server_no_context_takeover") {
                    d.server_no_context_takeover = true;
                }
            }
            Some(d)
        })
    }
}

/// One complete data message, or what went wrong.
#[derive(Clone, Debug, PartialEq)]
pub enum WsMessage {
    Data {
        from_client: bool,
        /// Text (opcode 1) rather than binary.
        text: bool,
        /// The payload (inflated), at most the keep limit.
        payload: Vec<u8>,
        /// Some of the payload is missing (over the limit, not captured,
        /// or not decodable).
        truncated: bool,
        /// Frame headers and payload bytes as they went over the wire.
        wire_bytes: u64,
    },
    /// The peer sent a close frame.
    Close {
        from_client: bool,
    },
    Error(String),
}

/// The frame being read.
#[derive(Clone, Copy, Debug)]
struct Frame {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Payload bytes still to come, and those already read.
    left: u64,
    read: u64,
}

/// The data message being assembled.
struct Assembling {
    text: bool,
    compressed: bool,
    /// The payload so far (inflated), bounded and charged to the
    /// parsers' shared budget.
    body: Kept,
    wire_bytes: u64,
    inflated: u64,
}

/// An inflater, counted against `MAX_INFLATERS` while it lives.
struct Inflater(Decompress);

impl Inflater {
    fn new() -> Option<Inflater> {
        let n = INFLATERS.fetch_add(1, Ordering::Relaxed);
        if n >= MAX_INFLATERS {
            INFLATERS.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Inflater(Decompress::new(false)))
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        INFLATERS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One direction of the connection.
struct Reader {
    from_client: bool,
    keep_limit: usize,
    /// Whether compressed messages may come, and whether each starts a
    /// fresh window.
    deflate: Option<bool>,
    inflater: Option<Inflater>,
    /// Compressed messages can no longer be read (a gap broke the shared
    /// window, a bomb, or no inflater was free); said once.
    undecodable: Option<&'static str>,
    header: Vec<u8>,
    frame: Option<Frame>,
    message: Option<Assembling>,
    /// The framing was lost: nothing more is read in this direction.
    lost: bool,
}

/// Why a message that starts its own window is not read: bytes of it
/// were not captured (the next message is read again).
const HOLE: &str = "bytes of this message were not captured";

/// The trailer RFC 7692 §7.2.2 has senders strip from each message.
const DEFLATE_TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

impl Reader {
    fn new(from_client: bool, keep_limit: usize, fresh_window: Option<bool>) -> Self {
        Self {
            from_client,
            keep_limit,
            deflate: fresh_window,
            inflater: None,
            undecodable: None,
            header: Vec::new(),
            frame: None,
            message: None,
            lost: false,
        }
    }

    fn feed(&mut self, mut data: &[u8], out: &mut Vec<WsMessage>) {
        while !data.is_empty() && !self.lost {
            match self.frame {
                None => {
                    let used = self.read_header(data, out);
                    data = &data[used..];
                }
                Some(mut f) => {
                    let n = f.left.min(data.len() as u64) as usize;
                    let chunk = match f.mask {
                        Some(key) => Cow::Owned(
                            data[..n]
                                .iter()
                                .enumerate()
                                .map(|(i, b)| b ^ key[(f.read as usize + i) % 4])
                                .collect(),
                        ),
                        None => Cow::Borrowed(&data[..n]),
                    };
                    self.payload(&f, &chunk, out);
                    f.left -= n as u64;
                    f.read += n as u64;
                    data = &data[n..];
                    self.frame = Some(f);
                    if f.left == 0 {
                        self.end_frame(&f, out);
                    }
                }
            }
        }
    }

    /// Bytes of a frame header; returns how many of `data` it used.
    fn read_header(&mut self, data: &[u8], out: &mut Vec<WsMessage>) -> usize {
        let had = self.header.len();
        let want = 14usize.saturating_sub(had).min(data.len());
        self.header.extend_from_slice(&data[..want]);
        let h = &self.header;
        if h.len() < 2 {
            return want;
        }
        let (fin, rsv, opcode) = (h[0] & 0x80 != 0, h[0] & 0x70, h[0] & 0x0f);
        let masked = h[1] & 0x80 != 0;
        let len7 = h[1] & 0x7f;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let size = 2 + ext + if masked { 4 } else { 0 };
        if h.len() < size {
            return want;
        }
        let len = match ext {
            0 => u64::from(len7),
            2 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            _ => u64::from_be_bytes(h[2..10].try_into().unwrap_or_default()),
        };
        let mask = masked.then(|| {
            let k = &h[2 + ext..size];
            [k[0], k[1], k[2], k[3]]
        });
        self.header.clear();
        let used = size - had;
        let control = opcode & 0x08 != 0;
        let why = if len >> 63 != 0 {
            Some("a frame length with its top bit set".to_string())
        } else if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
            Some(format!("reserved opcode {opcode:#x}"))
        } else if rsv & 0x30 != 0 {
            Some("reserved bits RSV2/RSV3 set".to_string())
        } else if control && (!fin || len > 125 || rsv != 0) {
            Some("a control frame fragmented, compressed or over 125 bytes".to_string())
        } else if opcode == 0 && self.message.is_none() {
            Some("a continuation frame outside a message".to_string())
        } else if matches!(opcode, 1 | 2) && self.message.is_some() {
            Some("a new message inside a fragmented one".to_string())
        } else if rsv & 0x40 != 0 && (opcode == 0 || self.deflate.is_none()) {
            Some("RSV1 set without permessage-deflate on a message's first frame".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            self.lose(out, why);
            return used;
        }
        let f = Frame {
            fin,
            opcode,
            mask,
            left: len,
            read: 0,
        };
        if matches!(opcode, 1 | 2) {
            self.start_message(opcode == 1, rsv & 0x40 != 0, out);
        }
        if let Some(m) = &mut self.message
            && !control
        {
            m.wire_bytes += size as u64 + len;
        }
        self.frame = Some(f);
        if len == 0 {
            self.end_frame(&f, out);
        }
        used
    }

    fn start_message(&mut self, text: bool, compressed: bool, out: &mut Vec<WsMessage>) {
        if compressed && self.undecodable.is_none() {
            if self.deflate == Some(true) {
                // A fresh window per message: a broken one is forgotten.
                if let Some(i) = &mut self.inflater {
                    i.0.reset(false);
                }
            }
            if self.inflater.is_none() {
                self.inflater = Inflater::new();
                if self.inflater.is_none() {
                    self.give_up(
                        out,
                        "too many compressed WebSocket connections at once: this one's messages are not read",
                    );
                }
            }
        }
        self.message = Some(Assembling {
            text,
            compressed,
            body: Kept::default(),
            wire_bytes: 0,
            inflated: 0,
        });
    }

    /// Unmasked payload bytes of the current frame.
    fn payload(&mut self, f: &Frame, chunk: &[u8], out: &mut Vec<WsMessage>) {
        if f.opcode & 0x08 != 0 {
            return;
        }
        let Some(m) = &mut self.message else {
            return;
        };
        if !m.compressed {
            keep(m, chunk, self.keep_limit);
            return;
        }
        if self.undecodable.is_some() {
            m.body.truncated = true;
            return;
        }
        if let Err(why) = inflate(self.inflater.as_mut(), m, chunk, self.keep_limit) {
            self.give_up(out, why);
        }
    }

    fn end_frame(&mut self, f: &Frame, out: &mut Vec<WsMessage>) {
        self.frame = None;
        if f.opcode == 8 {
            out.push(WsMessage::Close {
                from_client: self.from_client,
            });
            return;
        }
        if f.opcode & 0x08 != 0 || !f.fin {
            return;
        }
        let Some(mut m) = self.message.take() else {
            return;
        };
        if m.compressed
            && self.undecodable.is_none()
            && let Err(why) = inflate(
                self.inflater.as_mut(),
                &mut m,
                &DEFLATE_TAIL,
                self.keep_limit,
            )
        {
            self.give_up(out, why);
        }
        if m.compressed && self.undecodable.is_some() {
            m.body.truncated = true;
        }
        if self.undecodable == Some(HOLE) {
            self.undecodable = None;
        }
        out.push(WsMessage::Data {
            from_client: self.from_client,
            text: m.text,
            payload: m.body.bytes,
            truncated: m.body.truncated,
            wire_bytes: m.wire_bytes,
        });
    }

    /// Compressed messages of this direction are no longer read.
    fn give_up(&mut self, out: &mut Vec<WsMessage>, why: &'static str) {
        if self.undecodable.is_none() {
            out.push(WsMessage::Error(why.to_string()));
        }
        self.undecodable = Some(why);
        self.inflater = None;
        if let Some(m) = &mut self.message {
            m.body.truncated = true;
        }
    }

    fn lose(&mut self, out: &mut Vec<WsMessage>, why: String) {
        let side = if self.from_client { "client" } else { "server" };
        out.push(WsMessage::Error(format!(
            "{why}: the {side}'s WebSocket frames are no longer read"
        )));
        self.lost = true;
        self.frame = None;
        self.message = None;
        self.inflater = None;
    }

    fn gap(&mut self, n: u64, out: &mut Vec<WsMessage>) {
        if self.lost {
            return;
        }
        match &mut self.frame {
            Some(f) if f.left >= n && f.opcode & 0x08 == 0 => {
                f.left -= n;
                f.read += n;
                let f = *f;
                if let Some(m) = &mut self.message {
                    m.body.truncated = true;
                    // Inflating past a hole gives garbage, and so would
                    // every later message sharing the window.
                    if m.compressed && self.deflate == Some(false) {
                        self.give_up(
                            out,
                            "bytes of a compressed WebSocket message were not captured: later messages of that side share its window and are not read",
                        );
                    } else if m.compressed && self.undecodable.is_none() {
                        // A fresh window comes with the next message.
                        self.inflater = None;
                        self.undecodable = Some(HOLE);
                    }
                }
                if f.left == 0 {
                    self.end_frame(&f, out);
                }
            }
            _ => self.lose(
                out,
                format!("{n} bytes not captured outside a frame's payload"),
            ),
        }
    }
}

fn keep(m: &mut Assembling, bytes: &[u8], limit: usize) {
    m.body.push(bytes, limit);
}

/// Runs compressed bytes through the direction's inflater into the
/// message (kept up to `limit`, all of it inflated so the window stays
/// whole).
fn inflate(
    inflater: Option<&mut Inflater>,
    m: &mut Assembling,
    mut input: &[u8],
    limit: usize,
) -> Result<(), &'static str> {
    let Some(Inflater(d)) = inflater else {
        m.body.truncated = true;
        return Ok(());
    };
    let mut scratch = vec![0u8; 16 * 1024];
    loop {
        let (in0, out0) = (d.total_in(), d.total_out());
        let status = d
            .decompress(input, &mut scratch, FlushDecompress::Sync)
            .map_err(|_| "a compressed WebSocket message does not inflate: that side's messages are no longer read")?;
        let used = (d.total_in() - in0) as usize;
        let made = (d.total_out() - out0) as usize;
        input = &input[used..];
        m.inflated += made as u64;
        if m.inflated > MAX_INFLATED {
            return Err(
                "a WebSocket message inflates to more than 16 MiB: that side's messages are no longer read",
            );
        }
        keep(m, &scratch[..made], limit);
        if status == Status::StreamEnd {
            // A sender that ended the deflate stream (BFINAL): the next
            // message starts a new one.
            d.reset(false);
        }
        if made < scratch.len() && (input.is_empty() || used == 0) {
            return Ok(());
        }
    }
}

/// Both directions of one upgraded connection.
pub struct WsConn {
    client: Reader,
    server: Reader,
}

impl WsConn {
    /// `deflate`: what the server's 101 accepted. Each direction's
    /// messages are kept up to `keep_limit` bytes.
    pub fn new(deflate: Option<Deflate>, keep_limit: usize) -> Self {
        Self {
            client: Reader::new(
                true,
                keep_limit,
                deflate.map(|d| d.client_no_context_takeover),
            ),
            server: Reader::new(
                false,
                keep_limit,
                deflate.map(|d| d.server_no_context_takeover),
            ),
        }
    }

    pub fn feed(&mut self, from_client: bool, data: &[u8]) -> Vec<WsMessage> {
        let mut out = Vec::new();
        self.side(from_client).feed(data, &mut out);
        out
    }

    /// `n` bytes of one direction were not captured.
    pub fn gap(&mut self, from_client: bool, n: u64) -> Vec<WsMessage> {
        let mut out = Vec::new();
        self.side(from_client).gap(n, &mut out);
        out
    }

    fn side(&mut self, from_client: bool) -> &mut Reader {
        if from_client {
            &mut self.client
        } else {
            &mut self.server
        }
    }
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
