//! The API's read side of the audit store: its own SQLite connection (WAL
//! lets it read while the pipeline writes), used from blocking threads so
//! a long query never stalls the event pipeline.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use sensor_proto::v1 as pb;
use tonic::Status;

use super::{convert::Origin, filter::Selection};
use crate::audit::{Audit, Query, Retention};

/// Rows read per page when filters SQL cannot apply are checked here.
const PAGE: usize = 2000;

/// Reads of the store running at once (History, and Subscribe's replay of
/// what the ring no longer holds). Each may gather up to
/// `events::HISTORY_CAP` events in memory on a blocking thread: without a
/// cap, a client opening reads in a loop held the daemon's memory and its
/// blocking threads (issue 19, finding 10). Past it a read is refused at
/// once with RESOURCE_EXHAUSTED, and the client may retry.
pub const READERS_MAX: usize = 4;

#[derive(Clone)]
pub struct Store {
    db: Arc<Mutex<Audit>>,
    pub(super) readers: Arc<tokio::sync::Semaphore>,
}

impl Store {
    pub fn open(path: &Path, retention: Retention) -> anyhow::Result<Self> {
        Ok(Self {
            db: Arc::new(Mutex::new(Audit::open(path, retention)?)),
            readers: Arc::new(tokio::sync::Semaphore::new(READERS_MAX)),
        })
    }

    /// The most recent `limit` stored events that match `q` and pass
    /// `sel`, oldest first. `q` narrows in SQL (kinds, a pid, a session,
    /// agents, time); the rest of the selection (exe regex, deny lists,
    /// pods, severity) is checked here, on pages read newest first until
    /// `limit` are found, so a limit never hides older matches.
    pub async fn matching(
        &self,
        q: Query,
        sel: Arc<Selection>,
        origin: Origin,
        limit: usize,
    ) -> Result<Vec<pb::Event>, Status> {
        let reading = self.readers.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{READERS_MAX} reads of the audit store are already running: try again when one ends"
            ))
        })?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let _reading = reading;
            let mut out = Vec::new();
            let mut q = Query {
                limit: Some(PAGE),
                ..q
            };
            while out.len() < limit {
                // Locked per page: other readers get their turn.
                let page = db.lock().unwrap_or_else(|e| e.into_inner()).query(&q)?;
                for v in page.iter().rev() {
                    let e = super::convert::from_json(v, &origin);
                    if sel.passes(&e) {
                        out.push(e);
                        if out.len() == limit {
                            break;
                        }
                    }
                }
                match page.first().and_then(|v| v["seq"].as_u64()) {
                    Some(oldest) if page.len() == PAGE => q.before_seq = Some(oldest),
                    _ => break,
                }
            }
            out.reverse();
            Ok::<_, anyhow::Error>(out)
        })
        .await
        .map_err(|e| Status::internal(format!("audit query task failed: {e}")))?
        .map_err(|e| Status::internal(format!("audit store query failed: {e:#}")))
    }
}
