//! Database calls of captured connections: each statement an agent has a
//! database server run, what it was (a template without literals, its
//! kind, the objects it names) and what the server answered.
//!
//! - `pg`: PostgreSQL's wire protocol, both directions of a connection.
//! - `mysql`: MySQL's (and MariaDB's) wire protocol, likewise.
//! - `sql`: statement text → template, kind, objects.
//!
//! A statement travels the pipeline as an `api_call` with a `db` section:
//! its method is the statement's verb (`DROP`), its path the template, its
//! authority the server (`10.0.0.5:5432`), its destination the server and
//! database (`10.0.0.5:5432/prod`: prod is not staging), its credential
//! the database user's fingerprint. So attribution, baselines, findings,
//! policy patterns (`DROP *`) and trace treat it as an HTTP call.

use std::sync::Arc;

use serde::Serialize;

pub mod mysql;
pub mod pg;
pub mod sql;

/// Which end of the connection sent the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// One parsed message of a database connection.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A statement sent; `bytes` the client messages that carried it.
    Request {
        request: DbRequest,
        bytes: u64,
    },
    /// The answer to the oldest statement awaiting one.
    Response {
        result: DbResult,
        bytes: u64,
    },
    Error(String),
}

impl Message {
    /// `statement`, sent by `user` to `database` as `protocol`.
    fn sent(
        engine: &'static str,
        (user, database): (&Option<String>, &Option<String>),
        protocol: &'static str,
        statement: Arc<sql::Normalised>,
        bytes: u64,
    ) -> Self {
        Message::Request {
            request: DbRequest {
                engine,
                database: database.clone(),
                user: user.clone(),
                protocol,
                statement,
            },
            bytes,
        }
    }

    fn answered(outcome: Outcome, rows: Option<u64>, sqlstate: Option<String>, bytes: u64) -> Self {
        Message::Response {
            result: DbResult {
                outcome,
                rows,
                sqlstate,
            },
            bytes,
        }
    }

    /// What was wrong with `side`'s bytes (never the bytes).
    fn failure(engine: &str, side: Side, what: &str) -> Self {
        let side = match side {
            Side::Client => "client",
            Side::Server => "server",
        };
        Message::Error(format!("{engine} {side}: {what}"))
    }
}

/// A database connection of either engine, told by the client's first
/// message.
pub enum Conn {
    Pg(pg::PgConn),
    MySql(mysql::MySqlConn),
}

impl Conn {
    /// The parser for a connection whose client sent `first` first.
    pub fn open(first: &[u8]) -> Option<Self> {
        if pg::is_startup(first) {
            Some(Self::Pg(pg::PgConn::new()))
        } else if mysql::is_handshake(first) {
            Some(Self::MySql(mysql::MySqlConn::new()))
        } else {
            None
        }
    }

    /// Whether `first` opens a database connection.
    pub fn opens(first: &[u8]) -> bool {
        pg::is_startup(first) || mysql::is_handshake(first)
    }

    pub fn engine(&self) -> &'static str {
        match self {
            Self::Pg(_) => pg::ENGINE,
            Self::MySql(_) => mysql::ENGINE,
        }
    }

    pub fn feed(&mut self, side: Side, data: &[u8]) -> Vec<Message> {
        match self {
            Self::Pg(c) => c.feed(side, data),
            Self::MySql(c) => c.feed(side, data),
        }
    }

    /// `n` bytes of `side` were not captured.
    pub fn gap(&mut self, side: Side, n: u64) -> Vec<Message> {
        match self {
            Self::Pg(c) => c.gap(side, n),
            Self::MySql(c) => c.gap(side, n),
        }
    }
}

/// One statement sent.
#[derive(Clone, Debug, PartialEq)]
pub struct DbRequest {
    pub engine: &'static str,
    pub database: Option<String>,
    /// The user the client logged in as: the credential's identity (its
    /// password or SCRAM exchange is never read).
    pub user: Option<String>,
    /// How the statement was sent. PostgreSQL: `simple` (one message,
    /// text) or `extended` (parse, bind, execute). MySQL: `text`
    /// (COM_QUERY) or `prepared` (COM_STMT_PREPARE, then EXECUTE).
    pub protocol: &'static str,
    pub statement: Arc<sql::Normalised>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Error,
    /// The answer was not captured whole.
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Unknown => "unknown",
        }
    }
}

/// What the server answered to one statement.
#[derive(Clone, Debug, PartialEq)]
pub struct DbResult {
    pub outcome: Outcome,
    /// Rows returned or affected, when the server says.
    pub rows: Option<u64>,
    /// The error's SQLSTATE (`42P01`: no such table); never its message,
    /// which may quote values.
    pub sqlstate: Option<String>,
}

/// The `db` section of an `api_call` event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DbCall {
    pub engine: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub protocol: &'static str,
    /// The statement's verb (`select`, `drop`, …).
    pub kind: &'static str,
    /// `read`, `write`, `ddl`, `dcl`, `transaction`, `session`, `other`.
    pub class: &'static str,
    pub objects: Vec<String>,
    /// An UPDATE or DELETE without WHERE.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unbounded_write: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Absent when no answer was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
}

impl DbCall {
    pub fn new(req: &DbRequest, res: Option<&DbResult>) -> Self {
        let st = &req.statement;
        Self {
            engine: req.engine,
            database: req.database.clone(),
            user: req.user.clone(),
            protocol: req.protocol,
            kind: st.kind,
            class: sql::class(st.kind),
            objects: st.objects.clone(),
            unbounded_write: st.unbounded_write,
            truncated: st.truncated,
            outcome: res.map(|r| r.outcome),
            rows: res.and_then(|r| r.rows),
            sqlstate: res.and_then(|r| r.sqlstate.clone()),
        }
    }
}

/// Statements that cannot be undone: schema and permission changes,
/// deletions, and updates of every row. `method` is the statement's verb
/// and `template` its template, as an `api_call` carries them (HTTP has
/// no such methods but DELETE, irreversible there too).
pub fn irreversible(method: &str, template: &str) -> bool {
    match method {
        "DROP" | "TRUNCATE" | "ALTER" | "CREATE" | "GRANT" | "REVOKE" | "DELETE" => true,
        "UPDATE" => !template.split(' ').any(|w| w == "WHERE"),
        _ => false,
    }
}

/// What the parsers' tests read of a conversation.
#[cfg(test)]
mod tests {
    use super::{DbRequest, DbResult, Message};

    pub fn requests(out: &[Message]) -> Vec<&DbRequest> {
        out.iter()
            .filter_map(|m| match m {
                Message::Request { request, .. } => Some(request),
                _ => None,
            })
            .collect()
    }

    pub fn results(out: &[Message]) -> Vec<&DbResult> {
        out.iter()
            .filter_map(|m| match m {
                Message::Response { result, .. } => Some(result),
                _ => None,
            })
            .collect()
    }
}
