//! The durable audit trail: every event the sensor emits, in SQLite (WAL)
//! under the state directory, so "what exactly did it touch?" has an answer
//! after a restart or a crash.
//!
//! Guarantee: events are queued in memory and written in one transaction
//! at least once a second (the daemon calls `flush`) or every
//! `BATCH` events. A killed daemon loses at most what was queued since the
//! last write, i.e. about the last second. With WAL and
//! `synchronous=NORMAL` a committed transaction survives the process
//! dying; a power loss may also lose the last transactions before the
//! next checkpoint (https://www.sqlite.org/pragma.html#pragma_synchronous).
//!
//! Events arrive already redacted (no secret reaches the event layer).

use std::{
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, params_from_iter, types::Value as Sql};

use crate::event::Event;

pub mod writer;

/// Queued events written at once when the queue reaches this size.
const BATCH: usize = 1024;
/// While writes fail (disk full, store locked) events wait in memory up to
/// this many; beyond it the oldest are dropped and counted.
const MAX_QUEUE: usize = 65_536;
const SCHEMA_VERSION: i64 = 1;

#[derive(Clone, Debug)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
}

/// Which stored events a query wants; empty fields match everything.
#[derive(Default, Clone, Debug)]
pub struct Query {
    pub pid: Option<u32>,
    pub start_ticks: Option<u64>,
    pub since_unix_ns: Option<u64>,
    pub until_unix_ns: Option<u64>,
    pub kinds: Vec<String>,
    /// Events of one agent session (read from the stored JSON: sessions
    /// are rare questions, not worth an index).
    pub agent_session: Option<String>,
    /// Events of these agents (any of them), read from the stored JSON.
    pub agent_ids: Vec<String>,
    /// Only events numbered below this one: the next page of a reader
    /// going back in time.
    pub before_seq: Option<u64>,
    /// The most recent `limit` matches (still returned oldest first).
    pub limit: Option<usize>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditStats {
    pub rows_written: u64,
    pub flushes: u64,
    pub rows_pruned: u64,
    /// Events lost because writes kept failing (see `MAX_QUEUE`).
    pub rows_dropped: u64,
}

/// One event as stored.
pub struct Row {
    seq: u64,
    ts: u64,
    kind: &'static str,
    pid: u32,
    start_ticks: u64,
    json: String,
}

impl Row {
    pub fn of(ev: &Event, json: &str) -> Self {
        Self {
            seq: ev.seq,
            ts: ev.ts_unix_ns,
            kind: ev.detail.kind(),
            pid: ev.process.pid,
            start_ticks: ev.process.start_ticks,
            json: json.to_string(),
        }
    }
}

pub struct Audit {
    db: Connection,
    path: PathBuf,
    retention: Retention,
    queue: Vec<Row>,
    stats: AuditStats,
}

impl Audit {
    /// Opens or creates the store (directory 0700, file 0600: it holds
    /// security data) and brings its schema up to date.
    pub fn open(path: &Path, retention: Retention) -> Result<Self> {
        let shown = path.display();
        crate::state::private_parent(path, "audit store")?;
        // Created here with 0600 so SQLite never makes it world-readable
        // (it gives the -wal and -shm files the same mode).
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("audit store: cannot create {shown}"))?;
        // A file someone made readable stays private from now on.
        if file.metadata()?.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("audit store: chmod 0600 {shown}"))?;
        }
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("audit store: cannot open {shown}"))?;
        // The writer holds the lock briefly once a second; readers (the
        // API) wait for it rather than fail.
        db.busy_timeout(Duration::from_secs(5))?;
        let mode: String = db
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .with_context(|| {
                format!(
                    "audit store: {shown} is not a usable SQLite database (move it away to start a new one)"
                )
            })?;
        if !mode.eq_ignore_ascii_case("wal") {
            anyhow::bail!("audit store: {shown} refused WAL mode (got {mode})");
        }
        db.execute_batch("PRAGMA synchronous=NORMAL;")?;
        let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            anyhow::bail!(
                "audit store: {shown} has schema version {version}, newer than this sensor's ({SCHEMA_VERSION})"
            );
        }
        if version < SCHEMA_VERSION {
            // Incremental auto-vacuum (only settable before the first
            // table) lets pruning give space back to the filesystem.
            db.execute_batch(
                "PRAGMA auto_vacuum = INCREMENTAL;
                 BEGIN;
                 CREATE TABLE IF NOT EXISTS events (
                     seq INTEGER PRIMARY KEY,
                     ts_unix_ns INTEGER NOT NULL,
                     kind TEXT NOT NULL,
                     pid INTEGER NOT NULL,
                     start_ticks INTEGER NOT NULL,
                     json TEXT NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS events_ts ON events (ts_unix_ns);
                 CREATE INDEX IF NOT EXISTS events_process ON events (pid, start_ticks, seq);
                 CREATE INDEX IF NOT EXISTS events_kind ON events (kind, seq);
                 PRAGMA user_version = 1;
                 COMMIT;",
            )
            .with_context(|| format!("audit store: creating the schema in {shown}"))?;
        }
        Ok(Self {
            db,
            path: path.to_path_buf(),
            retention,
            queue: Vec::new(),
            stats: AuditStats::default(),
        })
    }

    /// Queues one event given with its JSON text (its `seq` is the row's
    /// key); writes the queue when it is full.
    pub fn append(&mut self, ev: &Event, json: &str) -> Result<()> {
        self.push(Row::of(ev, json))
    }

    /// Queues one row; writes the queue when it is full.
    pub fn push(&mut self, row: Row) -> Result<()> {
        self.queue.push(row);
        if self.queue.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every queued event in one transaction. On failure the
    /// events stay queued for the next call, up to `MAX_QUEUE`.
    pub fn flush(&mut self) -> Result<()> {
        if self.queue.is_empty() {
            return Ok(());
        }
        let r = self.write_queue();
        if r.is_err() && self.queue.len() > MAX_QUEUE {
            let excess = self.queue.len() - MAX_QUEUE;
            self.queue.drain(..excess);
            self.stats.rows_dropped += excess as u64;
        }
        r
    }

    fn write_queue(&mut self) -> Result<()> {
        let tx = self.db.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO events (seq, ts_unix_ns, kind, pid, start_ticks, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for r in &self.queue {
                insert.execute(rusqlite::params![
                    r.seq as i64,
                    r.ts as i64,
                    r.kind,
                    r.pid,
                    r.start_ticks as i64,
                    r.json
                ])?;
            }
        }
        tx.commit()
            .with_context(|| format!("audit store: writing to {}", self.path.display()))?;
        self.stats.rows_written += self.queue.len() as u64;
        self.stats.flushes += 1;
        self.queue.clear();
        Ok(())
    }

    /// Applies the retention: rows older than `max_age`, then the oldest
    /// rows while the data is larger than `max_bytes`. Returns rows deleted.
    pub fn prune(&mut self, now_unix_ns: u64) -> Result<u64> {
        let cutoff = now_unix_ns.saturating_sub(self.retention.max_age.as_nanos() as u64);
        let mut deleted = self
            .db
            .execute("DELETE FROM events WHERE ts_unix_ns < ?1", [cutoff as i64])?
            as u64;
        // Deleting frees pages for reuse without shrinking the file: the
        // size that counts is the pages in use.
        while self.used_bytes()? > self.retention.max_bytes {
            let rows: i64 = self
                .db
                .query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
            if rows == 0 {
                break;
            }
            let n = self.db.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?1)",
                [(rows / 10).max(1)],
            )?;
            deleted += n as u64;
        }
        if deleted > 0 {
            self.db.execute_batch("PRAGMA incremental_vacuum;")?;
        }
        self.stats.rows_pruned += deleted;
        Ok(deleted)
    }

    fn used_bytes(&self) -> Result<u64> {
        let pages: i64 = self.db.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = self
            .db
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = self.db.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(((pages - free).max(0) * size) as u64)
    }

    /// Highest stored sequence number (0 when empty).
    pub fn max_seq(&self) -> Result<u64> {
        let s: Option<i64> = self
            .db
            .query_row("SELECT max(seq) FROM events", [], |r| r.get(0))?;
        Ok(s.unwrap_or(0) as u64)
    }

    /// Stored events matching `q`, oldest first.
    pub fn query(&self, q: &Query) -> Result<Vec<serde_json::Value>> {
        let mut clauses = Vec::new();
        let mut args: Vec<Sql> = Vec::new();
        if let Some(p) = q.pid {
            clauses.push("pid = ?".to_string());
            args.push(Sql::Integer(p.into()));
        }
        if let Some(s) = q.start_ticks {
            clauses.push("start_ticks = ?".to_string());
            args.push(Sql::Integer(s as i64));
        }
        if let Some(s) = &q.agent_session {
            clauses.push("json_extract(json, '$.agent.session') = ?".to_string());
            args.push(Sql::Text(s.clone()));
        }
        if !q.agent_ids.is_empty() {
            let marks = vec!["?"; q.agent_ids.len()].join(", ");
            clauses.push(format!("json_extract(json, '$.agent.id') IN ({marks})"));
            args.extend(q.agent_ids.iter().map(|a| Sql::Text(a.clone())));
        }
        if let Some(s) = q.before_seq {
            clauses.push("seq < ?".to_string());
            args.push(Sql::Integer(s as i64));
        }
        if let Some(t) = q.since_unix_ns {
            clauses.push("ts_unix_ns >= ?".to_string());
            args.push(Sql::Integer(t as i64));
        }
        if let Some(t) = q.until_unix_ns {
            clauses.push("ts_unix_ns <= ?".to_string());
            args.push(Sql::Integer(t as i64));
        }
        if !q.kinds.is_empty() {
            let marks = vec!["?"; q.kinds.len()].join(", ");
            clauses.push(format!("kind IN ({marks})"));
            args.extend(q.kinds.iter().map(|k| Sql::Text(k.clone())));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let limit = q.limit.map_or(-1, |l| l as i64);
        args.push(Sql::Integer(limit));
        let sql = format!(
            "SELECT json FROM (SELECT seq, json FROM events {filter} ORDER BY seq DESC LIMIT ?) ORDER BY seq ASC"
        );
        let mut stmt = self.db.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            let json = json?;
            out.push(serde_json::from_str(&json).with_context(|| {
                format!("audit store: a row of {} is not JSON", self.path.display())
            })?);
        }
        Ok(out)
    }

    pub fn stats(&self) -> AuditStats {
        self.stats
    }
}

impl Drop for Audit {
    /// A clean shutdown keeps everything queued.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %format!("{e:#}"), "audit store: last write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{event::Detail, procs::Process};

    fn retention() -> Retention {
        Retention {
            max_age: Duration::from_secs(3600),
            max_bytes: 1 << 30,
        }
    }

    fn event(seq: u64, pid: u32, ts: u64, kind: &str) -> Event {
        let process = Arc::new(Process {
            pid,
            start_ticks: 100 + u64::from(pid),
            ppid: 1,
            uid: 0,
            comm: "curl".into(),
            exe: "/usr/bin/curl".into(),
            cmdline: vec!["curl".into()],
            cgroup: None,
            cgroup_id: 0,
            container: None,
            partial: false,
            held: Vec::new(),
        });
        let detail = match kind {
            "connect" => Detail::Connect {
                fd: 3,
                family: "ipv4",
                daddr: "127.0.0.1".parse().unwrap(),
                dport: 80,
                result: 0,
                result_name: "ok".into(),
            },
            _ => Detail::ApiCall {
                provider: None,
                llm: None,
                tool_call: None,
                unrequested: false,
                method: "POST".into(),
                authority: "vendor.example".into(),
                path: format!("/v1/orders/{seq}"),
                path_template: "/v1/orders/{id}".into(),
                status: Some(201),
                request_bytes: 10,
                response_bytes: 20,
                latency_ms: Some(1.0),
                http_version: "HTTP/1.1".into(),
                transport: "tls",
                tls_library: Some("openssl"),
                credential_fingerprint: None,
                connection: "0x1".into(),
                daddr: None,
                dport: None,
                sni: None,
                db: None,
            },
        };
        Event {
            seq,
            time: String::new(),
            ts_unix_ns: ts,
            tid: pid,
            process,
            agent: None,
            pod: None,
            detail,
        }
    }

    fn put(a: &mut Audit, e: Event) {
        let json = e.to_json();
        a.append(&e, &json).unwrap();
    }

    fn seqs(v: &[serde_json::Value]) -> Vec<u64> {
        v.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
    }

    #[test]
    fn written_events_survive_reopen_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.db");
        {
            let mut a = Audit::open(&path, retention()).unwrap();
            for s in 1..=6 {
                let kind = if s % 2 == 0 { "api_call" } else { "connect" };
                put(&mut a, event(s, 10 + (s as u32 % 3), s * 1000, kind));
            }
            a.flush().unwrap();
            assert_eq!(a.stats().rows_written, 6);
        }
        let a = Audit::open(&path, retention()).unwrap();
        assert_eq!(a.max_seq().unwrap(), 6);
        assert_eq!(
            seqs(&a.query(&Query::default()).unwrap()),
            [1, 2, 3, 4, 5, 6]
        );
        let q = Query {
            kinds: vec!["api_call".into()],
            ..Default::default()
        };
        assert_eq!(seqs(&a.query(&q).unwrap()), [2, 4, 6]);
        let q = Query {
            pid: Some(11),
            ..Default::default()
        };
        assert_eq!(seqs(&a.query(&q).unwrap()), [1, 4]);
        let q = Query {
            since_unix_ns: Some(3000),
            until_unix_ns: Some(5000),
            ..Default::default()
        };
        assert_eq!(seqs(&a.query(&q).unwrap()), [3, 4, 5]);
        let q = Query {
            limit: Some(2),
            ..Default::default()
        };
        assert_eq!(
            seqs(&a.query(&q).unwrap()),
            [5, 6],
            "the last two, oldest first"
        );
        let stored = a.query(&Query::default()).unwrap();
        assert_eq!(stored[1]["path"], "/v1/orders/2");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
    }

    /// A child process (this test binary run again) writes, flushes,
    /// queues more and is killed: exactly the flushed events are there.
    #[test]
    fn a_killed_writer_loses_only_what_it_had_not_flushed() {
        const CHILD: &str = "SENSOR_AUDIT_CRASH_CHILD";
        if let Some(path) = std::env::var_os(CHILD) {
            let mut a = Audit::open(Path::new(&path), retention()).unwrap();
            for s in 1..=50 {
                put(&mut a, event(s, 7, s, "connect"));
            }
            a.flush().unwrap();
            for s in 51..=60 {
                put(&mut a, event(s, 7, s, "connect"));
            }
            // SAFETY: kill(2) on ourselves: no destructor gets to flush.
            unsafe { libc::raise(libc::SIGKILL) };
            unreachable!();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "audit::tests::a_killed_writer_loses_only_what_it_had_not_flushed",
                "--nocapture",
            ])
            .env(CHILD, &path)
            .status()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
        let a = Audit::open(&path, retention()).unwrap();
        assert_eq!(a.query(&Query::default()).unwrap().len(), 50);
        assert_eq!(a.max_seq().unwrap(), 50);
    }

    #[test]
    fn retention_by_age_and_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let mut a = Audit::open(
            &path,
            Retention {
                max_age: Duration::from_nanos(500),
                max_bytes: 1 << 30,
            },
        )
        .unwrap();
        for s in 1..=10 {
            put(&mut a, event(s, 1, s * 100, "connect"));
        }
        a.flush().unwrap();
        // now=1000, age 500: rows with ts < 500 go.
        assert_eq!(a.prune(1000).unwrap(), 4);
        assert_eq!(seqs(&a.query(&Query::default()).unwrap())[0], 5);
        drop(a);

        let mut a = Audit::open(
            &path,
            Retention {
                max_age: Duration::from_secs(3600),
                max_bytes: 64 * 1024,
            },
        )
        .unwrap();
        for s in 100..2100 {
            put(&mut a, event(s, 1, s, "api_call"));
        }
        a.flush().unwrap();
        assert!(a.used_bytes().unwrap() > 64 * 1024);
        let n = a.prune(3000).unwrap();
        assert!(a.used_bytes().unwrap() <= 64 * 1024);
        let left = seqs(&a.query(&Query::default()).unwrap());
        // 6 rows from before and 2000 new: each one gone is counted, the
        // oldest go first and the newest stay.
        assert_eq!(left.len() as u64 + n, 6 + 2000, "{n} pruned");
        let oldest = 2100 - left.len() as u64;
        assert_eq!(left, (oldest..=2099).collect::<Vec<_>>());
        assert_eq!(a.stats().rows_pruned, n);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let e = Audit::open(&path, retention()).err().unwrap();
        let text = format!("{e:#}");
        assert!(
            text.contains("audit.db") && text.contains("not a usable"),
            "{text}"
        );
    }

    #[test]
    fn failing_writes_keep_a_bounded_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let mut a = Audit::open(&path, retention()).unwrap();
        // Another connection holds the write lock: every write fails
        // (after the busy timeout, shortened here).
        a.db.busy_timeout(Duration::from_millis(1)).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE;").unwrap();
        for s in 1..=(MAX_QUEUE as u64 + 10) {
            let e = event(s, 1, s, "connect");
            let json = e.to_json();
            a.queue.push(Row {
                seq: e.seq,
                ts: e.ts_unix_ns,
                kind: e.detail.kind(),
                pid: 1,
                start_ticks: 0,
                json,
            });
        }
        assert!(a.flush().is_err());
        assert_eq!(a.queue.len(), MAX_QUEUE);
        assert_eq!(a.stats().rows_dropped, 10);
        // Once the lock is gone the queue is written, oldest dropped.
        other.execute_batch("COMMIT;").unwrap();
        a.flush().unwrap();
        let first = seqs(
            &a.query(&Query {
                limit: None,
                ..Default::default()
            })
            .unwrap(),
        )[0];
        assert_eq!(first, 11);
    }

    #[test]
    fn clean_drop_keeps_queued_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let mut a = Audit::open(&path, retention()).unwrap();
        put(&mut a, event(1, 1, 1, "connect"));
        drop(a);
        let a = Audit::open(&path, retention()).unwrap();
        assert_eq!(a.query(&Query::default()).unwrap().len(), 1);
    }
}
