//! The audit store written on its own thread, so the pipeline never waits
//! for SQLite: inserts cost tens of microseconds per event here, and a WAL
//! checkpoint can stall on the disk, while the ring buffer keeps filling.
//!
//! The pipeline hands each row over a bounded channel and moves on; the
//! writer commits at least once a second (the guarantee of `Audit`: a
//! killed daemon loses about the last second) and whenever `BATCH` rows are
//! queued. If the writer falls `CHANNEL` rows behind (a stuck disk), new
//! rows are dropped and counted rather than blocking the pipeline.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{Audit, AuditStats, Row};
use crate::event::Event;

/// Rows waiting for the writer before new ones are dropped.
const CHANNEL: usize = 65_536;
/// How long a row may wait before it is committed.
const INTERVAL: Duration = Duration::from_secs(1);
/// How long the writer lets rows gather after a wakeup (see `run`).
const GATHER: Duration = Duration::from_millis(10);

enum Msg {
    Row(Row),
    /// Apply the retention, as of this time (Unix ns).
    Prune(u64),
}

#[derive(Default)]
struct Shared {
    written: AtomicU64,
    flushes: AtomicU64,
    pruned: AtomicU64,
    /// Rows lost: the writer was too far behind, or writes kept failing.
    dropped: AtomicU64,
    errors: AtomicU64,
}

pub struct AuditWriter {
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl AuditWriter {
    /// Moves `audit` to a writer thread.
    pub fn start(audit: Audit) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(CHANNEL);
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run(audit, rx, &s))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            shared,
        })
    }

    /// Queues `m` unless the writer is too far behind (or gone).
    fn send(&self, m: Msg) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.try_send(m).is_ok())
    }

    /// Queues one event with its JSON text; never waits.
    pub fn append(&self, ev: &Event, json: &str) {
        if !self.send(Msg::Row(Row::of(ev, json))) {
            let before = self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            if before == 0 {
                tracing::error!(
                    "audit store: the writer is {CHANNEL} events behind; events are being dropped (counted in audit_rows_dropped)"
                );
            }
        }
    }

    pub fn prune(&self, now_unix_ns: u64) {
        self.send(Msg::Prune(now_unix_ns));
    }

    pub fn stats(&self) -> AuditStats {
        let s = &self.shared;
        AuditStats {
            rows_written: s.written.load(Ordering::Relaxed),
            flushes: s.flushes.load(Ordering::Relaxed),
            rows_pruned: s.pruned.load(Ordering::Relaxed),
            rows_dropped: s.dropped.load(Ordering::Relaxed),
        }
    }

    /// Failed writes and prunes so far.
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }
}

impl AuditWriter {
    /// Writes everything handed over, stops the writer, and returns the
    /// final counters and errors.
    pub fn close(mut self) -> (AuditStats, u64) {
        self.stop();
        (self.stats(), self.errors())
    }

    fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("audit store: the writer thread panicked");
        }
    }
}

impl Drop for AuditWriter {
    /// A clean stop writes everything that was handed over.
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(mut audit: Audit, rx: Receiver<Msg>, shared: &Shared) {
    let mut last = Instant::now();
    let commit = |audit: &mut Audit, last: &mut Instant| {
        *last = Instant::now();
        let before = audit.stats();
        if let Err(e) = audit.flush() {
            error(shared, "write", &e);
        }
        publish(audit.stats(), before, shared);
    };
    loop {
        let wait = INTERVAL.saturating_sub(last.elapsed());
        let first = match rx.recv_timeout(wait) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                commit(&mut audit, &mut last);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                commit(&mut audit, &mut last);
                return;
            }
        };
        // Everything already queued, without blocking again.
        let before = audit.stats();
        handle(&mut audit, first, shared);
        while let Ok(m) = rx.try_recv() {
            handle(&mut audit, m, shared);
        }
        publish(audit.stats(), before, shared);
        if last.elapsed() >= INTERVAL {
            commit(&mut audit, &mut last);
        }
        // Let rows gather before blocking again. A writer that blocks
        // after each row is woken by the pipeline for every event: the
        // futex wake and two context switches per event cost more than
        // the insert (measured: a third of the sensor's CPU under an
        // HTTPS loop). While it sleeps, `try_send` finds no waiter to
        // wake; the channel holds far more than a GATHER of rows.
        std::thread::sleep(GATHER);
    }
}

fn handle(audit: &mut Audit, m: Msg, shared: &Shared) {
    match m {
        Msg::Row(r) => {
            if let Err(e) = audit.push(r) {
                error(shared, "write", &e);
            }
        }
        Msg::Prune(now) => match audit.prune(now) {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "audit store pruned (retention)"),
            Err(e) => error(shared, "prune", &e),
        },
    }
}

/// Adds what `audit` did since `before` to the shared counters.
fn publish(now: AuditStats, before: AuditStats, shared: &Shared) {
    shared
        .written
        .fetch_add(now.rows_written - before.rows_written, Ordering::Relaxed);
    shared
        .flushes
        .fetch_add(now.flushes - before.flushes, Ordering::Relaxed);
    shared
        .pruned
        .fetch_add(now.rows_pruned - before.rows_pruned, Ordering::Relaxed);
    shared
        .dropped
        .fetch_add(now.rows_dropped - before.rows_dropped, Ordering::Relaxed);
}

fn error(shared: &Shared, what: &str, e: &anyhow::Error) {
    // Said loudly the first time, then counted (status, shutdown line).
    if shared.errors.fetch_add(1, Ordering::Relaxed) == 0 {
        tracing::error!(error = %format!("{e:#}"), "audit store {what} failed: events are not being kept");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Query, Retention};

    #[test]
    fn rows_are_committed_within_a_second_and_at_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let retention = Retention {
            max_age: Duration::from_secs(3600),
            max_bytes: 1 << 30,
        };
        let w = AuditWriter::start(Audit::open(&path, retention.clone()).unwrap()).unwrap();
        let reader = Audit::open(&path, retention.clone()).unwrap();
        let p = std::sync::Arc::new(crate::procs::Process {
            pid: 7,
            start_ticks: 1,
            ppid: 1,
            uid: 0,
            comm: "t".into(),
            exe: "/t".into(),
            cmdline: vec![],
            cgroup: None,
            cgroup_id: 0,
            container: None,
            partial: false,
            held: Vec::new(),
        });
        let ev = |seq| Event {
            seq,
            time: String::new(),
            ts_unix_ns: seq,
            tid: 7,
            process: p.clone(),
            detail: crate::event::Detail::Exit {
                exit_code: Some(0),
                signal: None,
            },
            agent: None,
            pod: None,
        };
        w.append(&ev(1), r#"{"seq":1}"#);
        // Not asked to flush: the writer's own clock commits it, within
        // the second promised (and 1.5 s for a loaded machine).
        let appended = Instant::now();
        while reader.query(&Query::default()).unwrap().is_empty() {
            let waited = appended.elapsed();
            assert!(
                waited < Duration::from_millis(2500),
                "not committed in {waited:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for seq in 2..=10 {
            w.append(&ev(seq), &format!(r#"{{"seq":{seq}}}"#));
        }
        drop(w);
        assert_eq!(reader.query(&Query::default()).unwrap().len(), 10);
        assert_eq!(reader.max_seq().unwrap(), 10);
    }
}
