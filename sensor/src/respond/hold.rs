//! Holds: a process of a held agent stopped by the kernel (SIGSTOP, whole
//! thread group) at the TLS write of an irreversible request, waiting for
//! a person to approve (SIGCONT: that very write goes on) or deny it.
//!
//! The request is read from the stopped process's memory (the write's
//! buffer, which cannot change while every thread is stopped), redacted,
//! and shown; it never leaves the host in clear.

use std::{
    collections::BTreeMap,
    os::unix::fs::FileExt,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::redact;

/// Bytes of the request read from the process: the request line, the
/// headers and the start of the body.
pub const READ_MAX: usize = 4096;
/// Body bytes shown with a hold.
const BODY_SHOWN: usize = 512;

/// A request as a hold shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub method: String,
    /// The Host header, lowercase, without a default port.
    pub authority: String,
    /// The path with secret query values masked.
    pub path: String,
    /// "METHOD /path " as the kernel sees its first bytes: what an
    /// approval remembers (the space ends the path: exactly this one).
    /// Never written to disk: its query may carry a secret (a hold read
    /// back after a restart cannot be remembered).
    #[serde(skip)]
    pub request_line: String,
    /// Request line, headers and the body's start, secrets masked.
    pub head: String,
}

/// Parses the start of an HTTP/1.x request, whatever it holds: a
/// truncated or malformed one yields what could be read.
pub fn parse_request(bytes: &[u8]) -> Request {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let status = req.parse(bytes);
    let method = req.method.unwrap_or("").to_string();
    let raw_path = req.path.unwrap_or("");
    let mut authority = String::new();
    let mut head = format!(
        "{method} {} HTTP/1.{}\n",
        redact::target(raw_path),
        req.version.unwrap_or(1)
    );
    for h in req.headers.iter().filter(|h| !h.name.is_empty()) {
        let value = String::from_utf8_lossy(h.value);
        let lname = h.name.to_ascii_lowercase();
        if lname == "host" {
            authority = value.trim().to_ascii_lowercase();
            for default in [":443", ":80"] {
                if let Some(a) = authority.strip_suffix(default) {
                    authority = a.to_string();
                }
            }
        }
        let shown = if redact::is_sensitive_header(&lname) {
            "<redacted>".to_string()
        } else {
            redact::text(&value)
        };
        head.push_str(&format!("{}: {shown}\n", h.name));
    }
    match status {
        Ok(httparse::Status::Complete(n)) => {
            let body = &bytes[n..];
            if !body.is_empty() {
                let shown = &body[..body.len().min(BODY_SHOWN)];
                head.push('\n');
                head.push_str(&redact::text(&String::from_utf8_lossy(shown)));
                if body.len() > BODY_SHOWN {
                    head.push_str(&format!("… ({} more bytes)", body.len() - BODY_SHOWN));
                }
            }
        }
        Ok(httparse::Status::Partial) => head.push_str("… (headers continue)\n"),
        Err(e) => head.push_str(&format!("… (not parsed further: {e})\n")),
    }
    Request {
        request_line: format!("{method} {raw_path} "),
        method,
        authority,
        path: redact::target(raw_path),
        head,
    }
}

/// A database statement held at its write (a statement pattern matched):
/// PostgreSQL's `Query` or unnamed `Parse`, MySQL's `COM_QUERY` or
/// `COM_STMT_PREPARE`. Shown as its template, kind and objects: never its
/// literals. None when the bytes are none of these (the kernel matched a
/// write that only looks like one).
pub fn parse_statement(bytes: &[u8]) -> Option<Request> {
    let (engine, text) = statement_text(bytes)?;
    let cut = !text.contains(&0) && bytes.len() >= READ_MAX;
    let text = text.split(|&b| b == 0).next().unwrap_or_default();
    let st = crate::db::sql::normalise(&String::from_utf8_lossy(text), cut);
    let mut head = format!("{engine} statement: {}\n", st.template);
    head.push_str(&format!(
        "kind: {} ({})\n",
        st.kind,
        crate::db::sql::class(st.kind)
    ));
    if !st.objects.is_empty() {
        head.push_str(&format!("objects: {}\n", st.objects.join(", ")));
    }
    head.push_str("(literals are not shown)\n");
    Some(Request {
        method: st.kind.to_ascii_uppercase(),
        authority: String::new(),
        path: st.template.clone(),
        // Only an HTTP request line can be remembered as an approval.
        request_line: String::new(),
        head,
    })
}

/// The engine and statement bytes of a write that starts with a statement
/// message.
fn statement_text(b: &[u8]) -> Option<(&'static str, &[u8])> {
    let be = |at: usize| Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?));
    match b.first()? {
        b'Q' if (4..1 << 30).contains(&be(1)?) => return Some(("postgresql", b.get(5..)?)),
        b'P' if (4..1 << 30).contains(&be(1)?) && b.get(5) == Some(&0) => {
            return Some(("postgresql", b.get(6..)?));
        }
        _ => {}
    }
    let len = u32::from_le_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, 0]) as usize;
    if b.get(3) == Some(&0) && matches!(b.get(4), Some(0x03 | 0x16)) && len > 1 {
        let end = (4 + len).min(b.len());
        return Some(("mysql", b.get(5..end)?));
    }
    None
}

/// Reads `len` bytes (at most [`READ_MAX`]) at `addr` in process `pid`.
pub fn read_request(pid: u32, addr: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut buf = vec![0u8; (len as usize).min(READ_MAX)];
    let n = f.read_at(&mut buf, addr)?;
    buf.truncate(n);
    Ok(buf)
}

/// One pending hold.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hold {
    pub id: u64,
    pub pid: u32,
    pub start_ticks: u64,
    /// The agent as configured, and its id.
    pub agent: String,
    pub agent_id: String,
    pub pattern: String,
    pub request: Request,
    /// When it was held, on this daemon's clock; from `since_unix_ns` for
    /// a hold read back after a restart.
    #[serde(skip, default = "Instant::now")]
    pub since: Instant,
    pub since_unix_ns: u64,
}

/// The pending holds, by id (ids are not reused within a daemon's life,
/// nor across restarts when they are kept in a file).
#[derive(Default)]
pub struct Holds {
    pending: BTreeMap<u64, Hold>,
    next: u64,
    /// `holds.json` in the state directory: every change is written at
    /// once, so a daemon that crashes or is killed leaves the processes it
    /// stopped findable by the next one (else they stay stopped forever,
    /// and nobody knows why).
    file: Option<PathBuf>,
    /// A write failed and was logged; logged again once one succeeds.
    write_failing: bool,
}

impl Holds {
    /// Holds kept in `path`, and those the file holds from a previous
    /// daemon (not pending here: whether each still stands is for the
    /// caller to check). A missing file holds none; one that does not
    /// parse is an error naming it (a stopped process must not be
    /// forgotten silently).
    pub fn kept_in(path: PathBuf) -> Result<(Holds, Vec<Hold>)> {
        let before: Vec<Hold> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} does not parse", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let before = before
            .into_iter()
            .map(|mut h| {
                // The time it has waited counts toward its timeout.
                let waited = Duration::from_nanos(now_ns.saturating_sub(h.since_unix_ns));
                h.since = Instant::now()
                    .checked_sub(waited)
                    .unwrap_or_else(Instant::now);
                h
            })
            .collect::<Vec<_>>();
        let holds = Holds {
            next: before.iter().map(|h| h.id).max().unwrap_or(0),
            file: Some(path),
            ..Holds::default()
        };
        Ok((holds, before))
    }

    pub fn add(&mut self, mut hold: Hold) -> u64 {
        self.next += 1;
        hold.id = self.next;
        self.pending.insert(hold.id, hold);
        self.save();
        self.next
    }

    /// Puts back a hold taken out, or read back after a restart, under its
    /// own id.
    pub fn restore(&mut self, hold: Hold) {
        self.next = self.next.max(hold.id);
        self.pending.insert(hold.id, hold);
        self.save();
    }

    pub fn take(&mut self, id: u64) -> Option<Hold> {
        let h = self.pending.remove(&id);
        if h.is_some() {
            self.save();
        }
        h
    }

    pub fn list(&self) -> impl Iterator<Item = &Hold> {
        self.pending.values()
    }

    /// Holds older than `timeout`.
    pub fn expired(&mut self, timeout: Duration) -> Vec<Hold> {
        let now = Instant::now();
        let ids: Vec<u64> = self
            .pending
            .values()
            .filter(|h| now.duration_since(h.since) >= timeout)
            .map(|h| h.id)
            .collect();
        self.take_all(ids)
    }

    /// Holds of a process that is gone.
    pub fn of_exited(&mut self, pid: u32) -> Vec<Hold> {
        let ids: Vec<u64> = self
            .pending
            .values()
            .filter(|h| h.pid == pid)
            .map(|h| h.id)
            .collect();
        self.take_all(ids)
    }

    fn take_all(&mut self, ids: Vec<u64>) -> Vec<Hold> {
        let taken: Vec<Hold> = ids
            .into_iter()
            .filter_map(|id| self.pending.remove(&id))
            .collect();
        if !taken.is_empty() {
            self.save();
        }
        taken
    }

    /// Writes the pending holds to the file, if there is one. A failure is
    /// logged (once until a write succeeds again) and the holds stay
    /// pending in memory: they are still answered while the daemon runs.
    pub fn save(&mut self) {
        let Some(path) = &self.file else { return };
        let holds: Vec<&Hold> = self.pending.values().collect();
        let result = serde_json::to_vec_pretty(&holds)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| crate::state::write_private(path, &bytes));
        match result {
            Ok(()) if self.write_failing => {
                self.write_failing = false;
                tracing::info!(file = %path.display(), "pending holds written again");
            }
            Ok(()) => {}
            Err(e) if !self.write_failing => {
                self.write_failing = true;
                tracing::error!(
                    file = %path.display(),
                    error = %format!("{e:#}"),
                    "pending holds could not be written: after a crash the processes they stopped would not be found"
                );
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_shown_with_its_secrets_masked() {
        let r = parse_request(
            b"POST /v1/orders?api_key=sk-PLANTED HTTP/1.1\r\nHost: Vendor.example:443\r\n\
              Authorization: Bearer sk-PLANTED\r\nContent-Type: application/json\r\n\
              Content-Length: 44\r\n\r\n{\"sku\": \"A-1\", \"password\": \"PLANTED-pass\"}",
        );
        assert_eq!(r.method, "POST");
        assert_eq!(r.authority, "vendor.example");
        assert!(r.path.starts_with("/v1/orders?api_key="), "{}", r.path);
        assert_eq!(r.request_line, "POST /v1/orders?api_key=sk-PLANTED ");
        assert!(
            r.head.contains("Content-Type: application/json"),
            "{}",
            r.head
        );
        assert!(r.head.contains("\"sku\": \"A-1\""), "{}", r.head);
        assert!(!r.head.contains("PLANTED"), "{}", r.head);
        assert!(!r.path.contains("PLANTED"), "{}", r.path);
    }

    #[test]
    fn headers_named_as_secrets_and_form_bodies_are_masked() {
        let r = parse_request(
            b"POST /oauth/token HTTP/1.1\r\nHost: a\r\nX-Amz-Security-Token: PLANTED1\r\n\
              PRIVATE-TOKEN: PLANTED2\r\nOcp-Apim-Subscription-Key: PLANTED3\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 57\r\n\r\n\
              grant_type=password&username=bob&password=PLANTED4&x=1",
        );
        assert!(!r.head.contains("PLANTED"), "{}", r.head);
        assert!(r.head.contains("PRIVATE-TOKEN: <redacted>"), "{}", r.head);
        assert!(
            r.head.contains("username=bob&password=<redacted>&x=1"),
            "{}",
            r.head
        );
    }

    #[test]
    fn truncated_or_malformed_requests_yield_what_was_read() {
        let r = parse_request(b"DELETE /customers/42 HTTP/1.1\r\nHost: a");
        assert_eq!(r.method, "DELETE");
        assert_eq!(r.path, "/customers/42");
        assert!(r.head.contains("headers continue"), "{}", r.head);
        let r = parse_request(b"\x16\x03\x01garbage");
        assert_eq!(r.method, "");
        assert!(r.head.contains("not parsed"), "{}", r.head);
        let _ = parse_request(b"");
    }

    #[test]
    fn a_held_statement_is_shown_as_its_template() {
        let mut q = b"Q\0\0\0\x2edrop table staging_sessions -- PLANTED\0".to_vec();
        let r = parse_statement(&q).unwrap();
        assert_eq!(r.method, "DROP");
        assert_eq!(r.path, "DROP TABLE staging_sessions");
        assert!(
            r.head.starts_with("postgresql statement: DROP TABLE"),
            "{}",
            r.head
        );
        assert!(r.head.contains("objects: staging_sessions"), "{}", r.head);
        assert!(r.request_line.is_empty());
        // psycopg: an unnamed Parse, then Bind and the rest in one write.
        let p = b"P\0\0\0\x30\0DELETE FROM t WHERE token = 'PLANTED'\0\0\0B\0\0\0\x0c";
        let r = parse_statement(p).unwrap();
        assert_eq!(r.path, "DELETE FROM t WHERE token = ?");
        // MySQL's COM_QUERY (no NUL: the packet's length ends it).
        let sql = b"TRUNCATE TABLE orders";
        let mut m = ((sql.len() + 1) as u32).to_le_bytes()[..3].to_vec();
        m.extend_from_slice(&[0, 3]);
        m.extend_from_slice(sql);
        let r = parse_statement(&m).unwrap();
        assert!(
            r.head.starts_with("mysql statement: TRUNCATE TABLE orders"),
            "{}",
            r.head
        );
        assert!(!format!("{r:?}").contains("PLANTED"));
        // Not a statement: an HTTP request, a TLS record.
        assert!(parse_statement(b"DELETE /x HTTP/1.1\r\n").is_none());
        assert!(parse_statement(b"\x17\x03\x03\0\x10").is_none());
        q.truncate(3);
        assert!(parse_statement(&q).is_none());
    }

    #[test]
    fn holds_expire_and_go_with_their_process() {
        let mut h = Holds::default();
        let hold = |pid| Hold {
            id: 0,
            pid,
            start_ticks: 1,
            agent: "a".into(),
            agent_id: "id".into(),
            pattern: "POST /x".into(),
            request: Request::default(),
            since: Instant::now(),
            since_unix_ns: 0,
        };
        let a = h.add(hold(10));
        let b = h.add(hold(11));
        assert_ne!(a, b);
        assert!(h.expired(Duration::from_secs(60)).is_empty());
        assert_eq!(h.of_exited(10).len(), 1);
        assert_eq!(h.list().count(), 1);
        assert_eq!(h.expired(Duration::ZERO)[0].id, b);
        assert!(h.take(b).is_none());
    }

    #[test]
    fn pending_holds_are_kept_in_their_file_without_request_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("holds.json");
        let (mut h, before) = Holds::kept_in(path.clone()).unwrap();
        assert!(before.is_empty());
        let held_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            - 30_000_000_000;
        let hold = |pid| Hold {
            id: 0,
            pid,
            start_ticks: 7,
            agent: "orderer.py".into(),
            agent_id: "id".into(),
            pattern: "POST /v1/orders".into(),
            request: parse_request(b"POST /v1/orders?api_key=PLANTED HTTP/1.1\r\nHost: a\r\n\r\n"),
            since: Instant::now(),
            since_unix_ns: held_ns,
        };
        let a = h.add(hold(10));
        let b = h.add(hold(11));
        assert!(h.take(a).is_some());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("PLANTED"), "{text}");
        // What a crash leaves: b, read back with its wait counted.
        drop(h);
        let (mut h, before) = Holds::kept_in(path.clone()).unwrap();
        assert_eq!(before.len(), 1);
        let back = &before[0];
        assert_eq!((back.id, back.pid, back.start_ticks), (b, 11, 7));
        assert!(
            back.request.path.starts_with("/v1/orders?api_key=")
                && !back.request.path.contains("PLANTED")
        );
        assert!(back.request.request_line.is_empty());
        assert!(
            back.since.elapsed() >= Duration::from_secs(29),
            "{:?}",
            back.since
        );
        // Ids go on from the file's.
        assert_eq!(h.add(hold(12)), b + 1);
        // A file that does not parse is named, not ignored.
        std::fs::write(&path, b"{not json").unwrap();
        let e = Holds::kept_in(path.clone()).err().unwrap();
        assert!(format!("{e:#}").contains("holds.json"), "{e:#}");
    }
}
