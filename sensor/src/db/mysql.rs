//! MySQL's client/server protocol (spoken by MySQL and MariaDB) of one
//! connection, both directions, as captured from the client's
//! handshake response on: each statement the client has the server run
//! becomes a request, and what the server answered (rows, SQLSTATE) its
//! response.
//!
//! - The server speaks first (its greeting) but the capture starts with
//!   the client's first send, the handshake response: the user, the
//!   capabilities and the database. After `SSLRequest` the handshake
//!   response is the first plaintext inside TLS.
//! - `COM_QUERY` (text protocol): one request; `COM_STMT_PREPARE` names a
//!   statement by the id the server answers, `COM_STMT_EXECUTE` (and
//!   MariaDB's bulk execute) runs it: one request per execute. A statement
//!   the server refused to prepare never runs; it is reported as a request
//!   that failed, so the attempt is seen.
//! - A command's answer: OK (rows affected), ERR (its SQLSTATE) or a
//!   result set (its rows counted: column count, column definitions, rows,
//!   then EOF or, with `CLIENT_DEPRECATE_EOF`, an OK); several when the
//!   server says more results follow (multi-statements, procedures).
//! - Never read: the authentication data of the handshake response (held
//!   while the message is parsed, never kept) and every packet of an
//!   authentication exchange, statement parameters (values), row data,
//!   error messages (they quote values). Connections with the compressed
//!   protocol are not read (one `parse_error` says so).
//!
//! Bounded like `pg`: a packet body is buffered only for the commands
//! read, up to a limit; a gap that hides a packet boundary loses the
//! framing until the client's next command, and the statements awaiting
//! an answer then complete with an unknown outcome.
//!
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/PAGE_PROTOCOL.html>,
//! <https://mariadb.com/kb/en/clientserver-protocol/>

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::{Message, Outcome, Side, sql};

/// The protocol's name (MariaDB speaks it too; the server's greeting,
/// which names it, comes before the capture starts).
pub const ENGINE: &str = "mysql";

/// Most statement text read of one command.
const TEXT_MAX: usize = 64 * 1024;
/// Most bytes read of a handshake response: capabilities, user,
/// authentication data (skipped), database.
const HANDSHAKE_MAX: usize = 2048;
/// Most bytes read of a server packet (OK, ERR, EOF, column count,
/// prepare OK: their fields come first).
const SERVER_MAX: usize = 32;
/// Prepared statements remembered per connection.
const STATEMENTS_MAX: usize = 256;
/// Commands awaiting the server's answer.
const AWAITED_MAX: usize = 1024;
/// A packet of this length continues in the next one.
const PACKET_FULL: usize = 0xff_ffff;

const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_COMPRESS: u32 = 0x20;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH_LENENC_DATA: u32 = 0x20_0000;
const CLIENT_DEPRECATE_EOF: u32 = 0x100_0000;
const CLIENT_ZSTD_COMPRESSION: u32 = 0x400_0000;
const CLIENT_QUERY_ATTRIBUTES: u32 = 0x800_0000;

const SERVER_MORE_RESULTS_EXIST: u16 = 0x8;
const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x40;

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_CHANGE_USER: u8 = 0x11;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
/// MariaDB's execute of a prepared statement over many rows of values.
const COM_STMT_BULK_EXECUTE: u8 = 0xfa;
/// The statement id MariaDB clients pipeline an execute with: the one
/// prepared just before.
const LAST_PREPARED: u32 = 0xffff_ffff;

/// Whether `b` starts a handshake response of protocol 4.1 (the
/// client's first message, or its first inside TLS): a packet of
/// sequence 1 (2 after `SSLRequest`), `CLIENT_PROTOCOL_41`, and 19 zero
/// bytes of filler after capabilities, packet size and character set
/// (then 4 more: zeros, or MariaDB's extended capabilities). An
/// `SSLRequest` (the same 32 bytes and nothing more) is not one.
pub fn is_handshake(b: &[u8]) -> bool {
    if b.len() < 36 {
        return false;
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], 0]) as usize;
    let caps = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    (33..=HANDSHAKE_MAX * 8).contains(&len)
        && matches!(b[3], 1 | 2)
        && caps & CLIENT_PROTOCOL_41 != 0
        && b[13..32].iter().all(|&z| z == 0)
}

/// Framing state of one direction.
#[derive(Default)]
struct Framer {
    head: [u8; 4],
    head_len: usize,
    /// Body bytes of the current packet still to come.
    remaining: usize,
    /// Body size of the current packet.
    size: usize,
    seq: u8,
    /// The current packet continues the one before (which was full).
    continued: bool,
    body: Vec<u8>,
    /// Most body bytes buffered of the current packet, known from its
    /// first byte.
    keep: usize,
    cut: bool,
    lost: bool,
    /// Bytes since the last request (client) or response (server).
    bytes: u64,
}

impl Framer {
    fn reset(&mut self) {
        self.head_len = 0;
        self.remaining = 0;
        self.body.clear();
        self.size = 0;
        self.cut = false;
        self.lost = false;
        self.continued = false;
    }
}

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Awaiting the client's handshake response.
    Handshake,
    /// Authentication: until the server's OK (or ERR).
    Auth,
    Ready,
    /// Nothing more is read (compressed protocol, failed login).
    Stopped,
}

/// What a command awaiting an answer is, and how far its answer got.
enum Awaited {
    /// A statement: OK, ERR or result sets.
    Statement { rows: Option<u64>, reading: Reading },
    /// A prepare: the server's id for the statement, then its parameter
    /// and column definitions to skip.
    Prepare {
        statement: Arc<sql::Normalised>,
        skip: Option<u32>,
    },
    /// `COM_INIT_DB`: the session's database, once the server agrees.
    InitDb(String),
    /// `COM_CHANGE_USER`: the session's user, once authenticated.
    ChangeUser {
        user: String,
        database: Option<String>,
    },
    /// Any other command: its answer's first packet ends it.
    Other,
}

/// Position in a statement's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    /// The first packet of a result.
    Start,
    /// Column definitions still to come.
    Columns(u64),
    /// The EOF after the column definitions (without DEPRECATE_EOF).
    ColumnsEof,
    Rows,
}

pub struct MySqlConn {
    client: Framer,
    server: Framer,
    phase: Phase,
    caps: u32,
    user: Option<String>,
    database: Option<String>,
    statements: HashMap<u32, Arc<sql::Normalised>>,
    last_prepared: Option<u32>,
    awaited: VecDeque<Awaited>,
    failed: bool,
}

impl Default for MySqlConn {
    fn default() -> Self {
        Self::new()
    }
}

impl MySqlConn {
    pub fn new() -> Self {
        Self {
            client: Framer::default(),
            server: Framer::default(),
            phase: Phase::Handshake,
            caps: 0,
            user: None,
            database: None,
            statements: HashMap::new(),
            last_prepared: None,
            awaited: VecDeque::new(),
            failed: false,
        }
    }

    fn framer(&mut self, side: Side) -> &mut Framer {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// Feeds captured bytes of one direction.
    pub fn feed(&mut self, side: Side, mut data: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        if self.phase == Phase::Stopped {
            return out;
        }
        if self.framer(side).lost {
            // A client send starts with a command: take the framing back
            // if these bytes look like one.
            let plausible = side == Side::Client
                && data.len() >= 5
                && data[3] == 0
                && u32::from_le_bytes([data[0], data[1], data[2], 0]) > 0
                && is_command(data[4]);
            if !plausible {
                self.framer(side).bytes += data.len() as u64;
                return out;
            }
            self.client.reset();
        }
        while !data.is_empty() && self.phase != Phase::Stopped {
            let f = self.framer(side);
            if f.remaining == 0 && f.head_len < 4 {
                let n = (4 - f.head_len).min(data.len());
                let at = f.head_len;
                f.head[at..at + n].copy_from_slice(&data[..n]);
                f.head_len += n;
                f.bytes += n as u64;
                data = &data[n..];
                if f.head_len < 4 {
                    break;
                }
                let len = u32::from_le_bytes([f.head[0], f.head[1], f.head[2], 0]) as usize;
                f.continued = f.size == PACKET_FULL;
                f.seq = f.head[3];
                f.remaining = len;
                f.size = len;
                f.keep = 1;
                f.body.clear();
                f.cut = false;
                if len == 0 {
                    self.finish(side, &mut out);
                }
                continue;
            }
            let n = f.remaining.min(data.len());
            if f.remaining == f.size && n > 0 {
                // The packet's first byte says what it is.
                let keep = self.keep(side, data[0]);
                self.framer(side).keep = keep;
            }
            let f = self.framer(side);
            let room = f.keep.saturating_sub(f.body.len()).min(n);
            f.body.extend_from_slice(&data[..room]);
            f.remaining -= n;
            f.bytes += n as u64;
            data = &data[n..];
            if f.remaining == 0 {
                self.finish(side, &mut out);
            }
        }
        out
    }

    /// `n` bytes of one direction were not captured.
    pub fn gap(&mut self, side: Side, n: u64) -> Vec<Message> {
        let mut out = Vec::new();
        let f = self.framer(side);
        f.bytes += n;
        if f.lost || self.phase == Phase::Stopped {
            return out;
        }
        let f = self.framer(side);
        if f.remaining as u64 >= n && f.head_len == 4 && f.remaining < f.size {
            f.remaining -= n as usize;
            f.cut = true;
            if f.remaining == 0 {
                self.finish(side, &mut out);
            }
            return out;
        }
        // The gap hides where the next packet starts (or the first byte
        // that says what this one is).
        f.lost = true;
        out
    }

    /// Body bytes worth buffering of a packet whose first byte is `typ`.
    fn keep(&self, side: Side, typ: u8) -> usize {
        match side {
            Side::Server => SERVER_MAX,
            Side::Client if self.client.continued => 0,
            Side::Client if self.phase == Phase::Handshake => HANDSHAKE_MAX,
            // Authentication data, LOCAL INFILE contents.
            Side::Client if self.client.seq != 0 => 0,
            Side::Client => match typ {
                COM_QUERY | COM_STMT_PREPARE => TEXT_MAX,
                COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE | COM_STMT_CLOSE => 5,
                COM_INIT_DB | COM_CHANGE_USER => 1024,
                _ => 1,
            },
        }
    }

    fn fail(&mut self, out: &mut Vec<Message>, side: Side, what: &str) {
        if !self.failed {
            self.failed = true;
            out.push(Message::failure(ENGINE, side, what));
        }
    }

    /// A whole packet of `side` is in (its body as kept).
    fn finish(&mut self, side: Side, out: &mut Vec<Message>) {
        let f = self.framer(side);
        f.head_len = 0;
        let body = std::mem::take(&mut f.body);
        let (seq, size, continued) = (f.seq, f.size, f.continued);
        let cut = f.cut || size > body.len();
        // The rest of a full packet is part of its message: nothing new.
        if !continued {
            match side {
                Side::Client => self.client_packet(seq, &body, cut || size == PACKET_FULL, out),
                Side::Server => self.server_packet(&body, size, out),
            }
        }
        // Keep the allocation for the next packet.
        let f = self.framer(side);
        f.body = body;
        f.body.clear();
    }

    fn client_packet(&mut self, seq: u8, body: &[u8], cut: bool, out: &mut Vec<Message>) {
        match self.phase {
            Phase::Handshake => self.handshake(body, out),
            Phase::Ready if seq == 0 => self.command(body, cut, out),
            _ => {}
        }
    }

    /// HandshakeResponse41: capabilities, packet size, character set,
    /// filler, user, authentication data (skipped), database.
    fn handshake(&mut self, body: &[u8], out: &mut Vec<Message>) {
        if body.len() < 32 {
            self.fail(out, Side::Client, "handshake response too short");
            self.phase = Phase::Stopped;
            return;
        }
        let caps = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
        if caps & CLIENT_SSL != 0 && body.len() == 32 {
            // SSLRequest seen as plaintext: the handshake response comes
            // next (inside TLS, where the TLS hooks see it).
            return;
        }
        self.caps = caps;
        if caps & (CLIENT_COMPRESS | CLIENT_ZSTD_COMPRESSION) != 0 {
            self.fail(out, Side::Client, "compressed protocol, not read");
            self.phase = Phase::Stopped;
            return;
        }
        let rest = &body[32..];
        let Some(user) = cstr(rest) else {
            self.phase = Phase::Auth;
            return;
        };
        self.user = Some(text(user));
        let rest = &rest[user.len() + 1..];
        // The authentication response: its length, then bytes never read.
        let auth = if caps & CLIENT_PLUGIN_AUTH_LENENC_DATA != 0 {
            lenenc(rest)
        } else if caps & CLIENT_SECURE_CONNECTION != 0 {
            rest.first().map(|&n| (u64::from(n), 1))
        } else {
            cstr(rest).map(|a| (a.len() as u64 + 1, 0))
        };
        if caps & CLIENT_CONNECT_WITH_DB != 0
            && let Some((n, at)) = auth
            && let Some(db) = rest.get(at + n as usize..).and_then(cstr)
            && !db.is_empty()
        {
            self.database = Some(text(db));
        }
        self.phase = Phase::Auth;
    }

    fn command(&mut self, body: &[u8], cut: bool, out: &mut Vec<Message>) {
        let Some((&typ, rest)) = body.split_first() else {
            return;
        };
        match typ {
            COM_QUERY => {
                let statement = self.query_text(rest, cut);
                self.request(statement, "text", out);
            }
            COM_STMT_PREPARE => {
                let statement = Arc::new(sql::normalise(&String::from_utf8_lossy(rest), cut));
                self.await_answer(
                    Awaited::Prepare {
                        statement,
                        skip: None,
                    },
                    out,
                );
            }
            COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE => {
                let statement = id(rest)
                    .and_then(|id| match id {
                        LAST_PREPARED => self.last_prepared(),
                        id => self.statements.get(&id).cloned(),
                    })
                    // Prepared before the capture began.
                    .unwrap_or_else(|| Arc::new(sql::normalise("", true)));
                self.request(statement, "prepared", out);
            }
            COM_STMT_CLOSE => {
                if let Some(id) = id(rest) {
                    self.statements.remove(&id);
                }
            }
            COM_STMT_SEND_LONG_DATA | COM_QUIT => {}
            COM_INIT_DB => {
                let db = text(rest);
                self.await_answer(Awaited::InitDb(db), out);
            }
            COM_CHANGE_USER => {
                let user = cstr(rest).unwrap_or(rest);
                let after = rest.get(user.len() + 1..).unwrap_or_default();
                // Authentication data (a length, then bytes never read),
                // then the database.
                let database = after
                    .first()
                    .and_then(|&n| after.get(1 + usize::from(n)..))
                    .and_then(cstr)
                    .filter(|d| !d.is_empty())
                    .map(text);
                let user = text(user);
                self.await_answer(Awaited::ChangeUser { user, database }, out);
            }
            _ => {
                self.await_answer(Awaited::Other, out);
            }
        }
    }

    /// A COM_QUERY's text; with query attributes (MySQL 8.0.23+) it comes
    /// after their count and values, which are not read.
    fn query_text(&self, rest: &[u8], cut: bool) -> Arc<sql::Normalised> {
        let mut text = rest;
        if self.caps & CLIENT_QUERY_ATTRIBUTES != 0 {
            text = match lenenc(rest) {
                Some((0, n)) => match rest.get(n..).and_then(lenenc) {
                    Some((_, m)) => &rest[n + m..],
                    None => &[],
                },
                // Attributes with values: where the text starts is not
                // worth their parsing.
                _ => &[],
            };
            if text.is_empty() {
                return Arc::new(sql::normalise("", true));
            }
        }
        Arc::new(sql::normalise(&String::from_utf8_lossy(text), cut))
    }

    fn await_answer(&mut self, a: Awaited, out: &mut Vec<Message>) -> bool {
        if self.server.lost {
            // The server's answers to earlier commands were not seen
            // whole; its answer to this one starts after it was sent.
            while let Some(a) = self.awaited.pop_front() {
                if matches!(a, Awaited::Statement { .. }) {
                    self.respond(Outcome::Unknown, None, None, out);
                }
            }
            self.server.reset();
        }
        if self.awaited.len() >= AWAITED_MAX {
            self.fail(out, Side::Client, "too many commands awaiting an answer");
            return false;
        }
        self.awaited.push_back(a);
        true
    }

    fn request(
        &mut self,
        statement: Arc<sql::Normalised>,
        protocol: &'static str,
        out: &mut Vec<Message>,
    ) {
        if !self.await_answer(
            Awaited::Statement {
                rows: None,
                reading: Reading::Start,
            },
            out,
        ) {
            return;
        }
        let bytes = std::mem::take(&mut self.client.bytes);
        let who = (&self.user, &self.database);
        out.push(Message::sent(ENGINE, who, protocol, statement, bytes));
    }

    fn respond(
        &mut self,
        outcome: Outcome,
        rows: Option<u64>,
        sqlstate: Option<String>,
        out: &mut Vec<Message>,
    ) {
        let bytes = std::mem::take(&mut self.server.bytes);
        out.push(Message::answered(outcome, rows, sqlstate, bytes));
    }

    fn server_packet(&mut self, body: &[u8], size: usize, out: &mut Vec<Message>) {
        let first = body.first().copied();
        match self.phase {
            Phase::Auth => match first {
                Some(0x00) => self.phase = Phase::Ready,
                // Refused: the connection ends.
                Some(0xff) => self.phase = Phase::Stopped,
                // Switch of method, more data: the exchange goes on.
                _ => {}
            },
            Phase::Ready => self.answer(first, body, size, out),
            Phase::Handshake | Phase::Stopped => {}
        }
    }

    /// The statement prepared last: still awaiting its id when the client
    /// pipelines its execute.
    fn last_prepared(&self) -> Option<Arc<sql::Normalised>> {
        let pending = self.awaited.iter().rev().find_map(|a| match a {
            Awaited::Prepare { statement, .. } => Some(statement.clone()),
            _ => None,
        });
        pending.or_else(|| {
            self.last_prepared
                .and_then(|id| self.statements.get(&id).cloned())
        })
    }

    fn prepared(&mut self, id: u32, statement: Arc<sql::Normalised>) {
        if self.statements.len() >= STATEMENTS_MAX && !self.statements.contains_key(&id) {
            // A client that never closes what it prepares: forget one.
            if let Some(&k) = self.statements.keys().next() {
                self.statements.remove(&k);
            }
        }
        self.statements.insert(id, statement);
        self.last_prepared = Some(id);
    }
}

/// Commands a client sends (the first byte of a packet of sequence 0).
fn is_command(b: u8) -> bool {
    matches!(b, 0x01..=0x1f | COM_STMT_BULK_EXECUTE)
}

/// A statement id (4 bytes, little-endian) at the start of `b`.
fn id(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

/// A length-encoded integer: its value and the bytes it took.
fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let (&first, rest) = b.split_first()?;
    let wide = |n: usize| -> Option<(u64, usize)> {
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(rest.get(..n)?);
        Some((u64::from_le_bytes(v), n + 1))
    };
    match first {
        0..=0xfa => Some((u64::from(first), 1)),
        0xfc => wide(2),
        0xfd => wide(3),
        0xfe => wide(8),
        _ => None,
    }
}

/// Bytes up to the first NUL (`None` without one).
fn cstr(b: &[u8]) -> Option<&[u8]> {
    b.iter().position(|&c| c == 0).map(|n| &b[..n])
}

/// A name as the protocol sends it (user, database), bounded.
fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().take(128).collect()
}

#[path = "mysql_answer.rs"]
mod answer;

#[cfg(test)]
#[path = "mysql_tests.rs"]
mod tests;
