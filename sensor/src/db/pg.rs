//! PostgreSQL's frontend/backend protocol (version 3) of one connection,
//! both directions, as captured: each statement the client has the server
//! run becomes a request, and what the server answered (rows, SQLSTATE)
//! its response, in the order the server answers them.
//!
//! - Simple query (`Q`): one request per message (which may hold several
//!   statements); it completes at the next `ReadyForQuery`.
//! - Extended query: `Parse` names a statement, `Bind` a portal on it,
//!   `Execute` runs the portal: one request per `Execute`. After an error
//!   the server skips to `Sync`, so the executes in between fail too.
//! - Never read: passwords and SASL exchanges (`p`), `Bind` parameters
//!   (values), row data, the backend's cancel key, error messages (they
//!   quote values); only the SQLSTATE of an error is kept.
//!
//! Bounded: a message body is buffered only for the types read, up to a
//! limit; the rest is skipped by its length. A capture keeps a prefix of
//! each send or receive: a gap within a message is skipped, a gap that
//! hides a message boundary loses the framing until the client's next
//! message (clients send whole messages per send; the server's answer to
//! a statement starts after the client sent it), and the statements then
//! awaiting an answer complete with an unknown outcome.
//!
//! <https://www.postgresql.org/docs/current/protocol-message-formats.html>

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::{Message, Outcome, Side, sql};

pub const ENGINE: &str = "postgresql";

/// Most statement text read of one message.
const TEXT_MAX: usize = 64 * 1024;
/// Most bytes read of a message whose start only is needed.
const SMALL_MAX: usize = 1024;
/// Named statements and portals remembered per connection.
const NAMES_MAX: usize = 256;
/// Statements awaiting the server's answer.
const AWAITED_MAX: usize = 1024;

/// `Q`uery, `P`arse, `B`ind, `E`xecute, `C`lose, `D`escribe, `S`ync,
/// `H` flush, `X` terminate, `F`unction call, copy data/done/fail, and
/// `p`assword-like messages: the first byte of a client message.
const CLIENT_TYPES: &[u8] = b"QPBECDSHXFdcfp";

/// Whether `b` starts a StartupMessage of protocol 3.0: a client's first
/// bytes on a PostgreSQL connection (after a possible TLS negotiation).
pub fn is_startup(b: &[u8]) -> bool {
    b.len() >= 8
        && b[4..8] == [0, 3, 0, 0]
        && (9..=10_000).contains(&u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Framing state of one direction.
#[derive(Default)]
struct Framer {
    /// The client's first message has no type byte.
    untyped_next: bool,
    head: [u8; 5],
    head_len: usize,
    /// Body bytes of the current message still to come.
    remaining: usize,
    /// Body size of the current message.
    size: usize,
    body: Vec<u8>,
    /// Most body bytes buffered of the current message (0: none).
    keep: usize,
    /// Part of the current message's body was not captured.
    cut: bool,
    /// The framing is lost (a gap hid a message boundary).
    lost: bool,
    /// Bytes since the last request (client) or response (server).
    bytes: u64,
}

impl Framer {
    fn reset(&mut self) {
        self.head_len = 0;
        self.remaining = 0;
        self.body.clear();
        self.cut = false;
        self.lost = false;
    }

    fn head_size(&self) -> usize {
        if self.untyped_next { 4 } else { 5 }
    }
}

/// What a statement awaiting an answer is.
enum Awaited {
    /// An `Execute`, answered by `CommandComplete`, `EmptyQueryResponse`,
    /// `PortalSuspended` or an error.
    Execute,
    /// A `Sync`: the extended protocol's `ReadyForQuery`.
    Sync,
    /// A simple query: answered at `ReadyForQuery`, its statements' rows
    /// summed.
    Query {
        rows: Option<u64>,
        sqlstate: Option<String>,
    },
    /// A function call: nothing to report, but its `ReadyForQuery`.
    Silent,
}

pub struct PgConn {
    client: Framer,
    server: Framer,
    user: Option<String>,
    database: Option<String>,
    statements: HashMap<String, Arc<sql::Normalised>>,
    portals: HashMap<String, Arc<sql::Normalised>>,
    awaited: VecDeque<Awaited>,
    /// An error was reported (later ones are not).
    failed: bool,
    /// DataRows since the last completion: the rows of an Execute that a
    /// row limit suspended (asyncpg's fetchval), whose answer has no tag.
    data_rows: u64,
}

impl Default for PgConn {
    fn default() -> Self {
        Self::new()
    }
}

impl PgConn {
    pub fn new() -> Self {
        Self {
            client: Framer {
                untyped_next: true,
                ..Framer::default()
            },
            server: Framer::default(),
            user: None,
            database: None,
            statements: HashMap::new(),
            portals: HashMap::new(),
            awaited: VecDeque::new(),
            failed: false,
            data_rows: 0,
        }
    }

    /// Feeds captured bytes of one direction.
    pub fn feed(&mut self, side: Side, mut data: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        let lost = self.framer(side).lost;
        if lost {
            // A client send starts with a message: take the framing back
            // if these bytes look like one.
            let plausible = side == Side::Client
                && data.len() >= 5
                && CLIENT_TYPES.contains(&data[0])
                && (4..1 << 30).contains(&u32::from_be_bytes([data[1], data[2], data[3], data[4]]));
            if !plausible {
                self.framer(side).bytes += data.len() as u64;
                return out;
            }
            self.client.reset();
        }
        while !data.is_empty() {
            let f = self.framer(side);
            if f.remaining == 0 && f.head_len < f.head_size() {
                let need = f.head_size() - f.head_len;
                let n = need.min(data.len());
                let at = f.head_len;
                f.head[at..at + n].copy_from_slice(&data[..n]);
                f.head_len += n;
                f.bytes += n as u64;
                data = &data[n..];
                if f.head_len < f.head_size() {
                    break;
                }
                let size = f.head_size();
                let len = u32::from_be_bytes(f.head[size - 4..size].try_into().unwrap()) as usize;
                if !(4..=1 << 30).contains(&len) {
                    f.lost = true;
                    self.fail(&mut out, side, "message length out of range");
                    return out;
                }
                let typ = if f.untyped_next { 0 } else { f.head[0] };
                let f = self.framer(side);
                f.remaining = len - 4;
                f.size = len - 4;
                f.keep = keep(side, typ);
                f.body.clear();
                f.cut = false;
                if f.remaining == 0 {
                    self.finish(side, &mut out);
                }
                continue;
            }
            let n = f.remaining.min(data.len());
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
        if f.lost {
            return out;
        }
        if f.remaining as u64 >= n && f.head_len == f.head_size() {
            f.remaining -= n as usize;
            f.cut = true;
            if f.remaining == 0 {
                self.finish(side, &mut out);
            }
            return out;
        }
        // The gap hides where the next message starts.
        f.lost = true;
        out
    }

    fn framer(&mut self, side: Side) -> &mut Framer {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    fn fail(&mut self, out: &mut Vec<Message>, side: Side, what: &str) {
        if !self.failed {
            self.failed = true;
            out.push(Message::failure(ENGINE, side, what));
        }
    }

    /// A whole message of `side` is in (its body as kept).
    fn finish(&mut self, side: Side, out: &mut Vec<Message>) {
        let f = self.framer(side);
        let typ = if f.untyped_next { 0 } else { f.head[0] };
        f.untyped_next = false;
        f.head_len = 0;
        let body = std::mem::take(&mut f.body);
        let cut = f.cut || f.size > body.len();
        match side {
            Side::Client => self.client_message(typ, &body, cut, out),
            Side::Server => self.server_message(typ, &body, out),
        }
        // Keep the allocation for the next message.
        let f = self.framer(side);
        f.body = body;
        f.body.clear();
    }

    fn client_message(&mut self, typ: u8, body: &[u8], cut: bool, out: &mut Vec<Message>) {
        match typ {
            0 => self.startup(body),
            b'Q' => {
                let text = cstr(body).unwrap_or(body);
                let statement = Arc::new(sql::normalise(
                    &String::from_utf8_lossy(text),
                    cut && cstr(body).is_none(),
                ));
                self.request(
                    statement,
                    Awaited::Query {
                        rows: None,
                        sqlstate: None,
                    },
                    "simple",
                    out,
                );
            }
            b'P' => {
                let Some(name) = cstr(body) else { return };
                let rest = &body[name.len() + 1..];
                let text = cstr(rest).unwrap_or(rest);
                let statement =
                    sql::normalise(&String::from_utf8_lossy(text), cut && cstr(rest).is_none());
                remember(&mut self.statements, name, Arc::new(statement));
            }
            b'B' => {
                let Some(portal) = cstr(body) else { return };
                let Some(name) = cstr(&body[portal.len() + 1..]) else {
                    return;
                };
                if let Some(st) = self.statements.get(&*String::from_utf8_lossy(name)) {
                    let st = st.clone();
                    remember(&mut self.portals, portal, st);
                }
            }
            b'E' => {
                let statement = cstr(body)
                    .and_then(|p| self.portals.get(&*String::from_utf8_lossy(p)).cloned())
                    // Prepared before the capture began.
                    .unwrap_or_else(|| Arc::new(sql::normalise("", true)));
                self.request(statement, Awaited::Execute, "extended", out);
            }
            b'S' => {
                self.await_answer(Awaited::Sync);
            }
            b'F' => {
                self.await_answer(Awaited::Silent);
            }
            b'C' => {
                // Close a statement ('S') or portal ('P').
                if let (Some(&kind), Some(name)) = (body.first(), body.get(1..).and_then(cstr)) {
                    let name = String::from_utf8_lossy(name);
                    match kind {
                        b'S' => self.statements.remove(&*name),
                        _ => self.portals.remove(&*name),
                    };
                }
            }
            _ => {}
        }
    }

    /// StartupMessage: protocol version, then name/value pairs; `user` and
    /// `database` are kept (never `options`, which may carry anything).
    fn startup(&mut self, body: &[u8]) {
        let mut rest = body.get(4..).unwrap_or_default();
        while let Some(key) = cstr(rest) {
            if key.is_empty() {
                break;
            }
            rest = &rest[key.len() + 1..];
            let Some(value) = cstr(rest) else { break };
            rest = &rest[value.len() + 1..];
            let value = String::from_utf8_lossy(value).chars().take(128).collect();
            match key {
                b"user" => self.user = Some(value),
                b"database" => self.database = Some(value),
                _ => {}
            }
        }
        if self.database.is_none() {
            // The server's default: the database named as the user.
            self.database = self.user.clone();
        }
    }

    fn await_answer(&mut self, a: Awaited) -> bool {
        if self.awaited.len() >= AWAITED_MAX {
            return false;
        }
        self.awaited.push_back(a);
        true
    }

    fn request(
        &mut self,
        statement: Arc<sql::Normalised>,
        awaited: Awaited,
        protocol: &'static str,
        out: &mut Vec<Message>,
    ) {
        if self.server.lost {
            // The server's answers to earlier statements were not seen
            // whole; its answer to this one starts after it was sent.
            while let Some(a) = self.awaited.pop_front() {
                if matches!(a, Awaited::Execute | Awaited::Query { .. }) {
                    self.respond(Outcome::Unknown, None, None, out);
                }
            }
            self.server.reset();
        }
        if !self.await_answer(awaited) {
            self.fail(out, Side::Client, "too many statements awaiting an answer");
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

    fn server_message(&mut self, typ: u8, body: &[u8], out: &mut Vec<Message>) {
        match typ {
            // CommandComplete, EmptyQueryResponse, PortalSuspended.
            b'D' => self.data_rows += 1,
            b'C' | b'I' | b's' => {
                let rows = match typ {
                    b'C' => rows_of(body),
                    b's' => Some(self.data_rows),
                    _ => None,
                };
                self.data_rows = 0;
                match self.awaited.front_mut() {
                    Some(Awaited::Execute) => {
                        self.awaited.pop_front();
                        self.respond(Outcome::Ok, rows, None, out);
                    }
                    Some(Awaited::Query { rows: sum, .. }) => {
                        if let Some(r) = rows {
                            *sum = Some(sum.unwrap_or(0) + r);
                        }
                    }
                    _ => {}
                }
            }
            b'E' => {
                let code = sqlstate(body);
                match self.awaited.front_mut() {
                    Some(Awaited::Execute) => {
                        // The server skips to Sync: the executes sent
                        // before it never run.
                        while matches!(self.awaited.front(), Some(Awaited::Execute)) {
                            self.awaited.pop_front();
                            self.respond(Outcome::Error, None, code.clone(), out);
                        }
                    }
                    Some(Awaited::Query { sqlstate, .. }) => *sqlstate = code,
                    _ => {}
                }
            }
            // ReadyForQuery.
            b'Z' => {
                while let Some(a) = self.awaited.pop_front() {
                    match a {
                        Awaited::Execute => self.respond(Outcome::Unknown, None, None, out),
                        Awaited::Query { rows, sqlstate } => {
                            let outcome = if sqlstate.is_some() {
                                Outcome::Error
                            } else {
                                Outcome::Ok
                            };
                            self.respond(outcome, rows, sqlstate, out);
                            break;
                        }
                        Awaited::Sync | Awaited::Silent => break,
                    }
                }
            }
            _ => {}
        }
    }
}

/// Body bytes worth buffering of a message of `typ` from `side`.
fn keep(side: Side, typ: u8) -> usize {
    match (side, typ) {
        (Side::Client, 0 | b'Q' | b'P') => TEXT_MAX,
        // Bind: only the portal and statement names, never the values.
        (Side::Client, b'B' | b'E' | b'C') => SMALL_MAX,
        (Side::Server, b'C' | b'E') => SMALL_MAX,
        _ => 0,
    }
}

/// Bytes up to the first NUL (`None` without one).
fn cstr(b: &[u8]) -> Option<&[u8]> {
    b.iter().position(|&c| c == 0).map(|n| &b[..n])
}

fn remember(
    map: &mut HashMap<String, Arc<sql::Normalised>>,
    name: &[u8],
    st: Arc<sql::Normalised>,
) {
    let name = String::from_utf8_lossy(name).into_owned();
    if map.len() >= NAMES_MAX && !map.contains_key(&name) {
        // A client that never closes what it names: forget one.
        if let Some(k) = map.keys().next().cloned() {
            map.remove(&k);
        }
    }
    map.insert(name, st);
}

/// Rows a CommandComplete tag reports (`INSERT 0 5`, `DELETE 3`,
/// `SELECT 10`); none for DDL (`DROP TABLE`).
fn rows_of(body: &[u8]) -> Option<u64> {
    let tag = std::str::from_utf8(cstr(body)?).ok()?;
    let mut words = tag.split(' ');
    let verb = words.next()?;
    if !matches!(
        verb,
        "INSERT" | "DELETE" | "UPDATE" | "SELECT" | "MERGE" | "MOVE" | "FETCH" | "COPY"
    ) {
        return None;
    }
    words.next_back()?.parse().ok()
}

/// The SQLSTATE of an ErrorResponse (field `C`); the other fields (the
/// message, detail, hint) may quote values and are not read.
fn sqlstate(body: &[u8]) -> Option<String> {
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let value = cstr(tail)?;
        if field == b'C' && value.len() == 5 && value.iter().all(u8::is_ascii_alphanumeric) {
            return Some(String::from_utf8_lossy(value).into_owned());
        }
        rest = &tail[value.len() + 1..];
    }
    None
}

#[cfg(test)]
#[path = "pg_tests.rs"]
mod tests;
