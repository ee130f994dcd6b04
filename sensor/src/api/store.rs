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

#[derive(Clone)]
pub struct Store(Arc<Mutex<Audit>>);

impl Store {
    pub fn open(path: &Path, retention: Retention) -> anyhow::Result<Self> {
        Ok(Self(Arc::new(Mutex::new(Audit::open(path, retention)?))))
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
        let db = self.0.clone();
        tokio::task::spawn_blocking(move || {
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
