//! Database calls of captured connections: each statement an agent has a
//! database server run, what it was (a template without literals, its
//! kind, the objects it names) and what the server answered.
//!
//! - `pg`: PostgreSQL's wire protocol, both directions of a connection.
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

pub mod pg;
pub mod sql;

/// One statement sent.
#[derive(Clone, Debug, PartialEq)]
pub struct DbRequest {
    pub engine: &'static str,
    pub database: Option<String>,
    /// The user the client logged in as: the credential's identity (its
    /// password or SCRAM exchange is never read).
    pub user: Option<String>,
    /// `simple` (one message, text) or `extended` (parse, bind, execute).
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
