//! The API's read side of the audit store: its own SQLite connection (WAL
//! lets it read while the pipeline writes), used from blocking threads so
//! a long query never stalls the event pipeline.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use tonic::Status;

use crate::audit::{Audit, Query, Retention};

#[derive(Clone)]
pub struct Store(Arc<Mutex<Audit>>);

impl Store {
    pub fn open(path: &Path, retention: Retention) -> anyhow::Result<Self> {
        Ok(Self(Arc::new(Mutex::new(Audit::open(path, retention)?))))
    }

    pub async fn query(&self, q: Query) -> Result<Vec<serde_json::Value>, Status> {
        let db = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let db = db.lock().unwrap_or_else(|e| e.into_inner());
            db.query(&q)
        })
        .await
        .map_err(|e| Status::internal(format!("audit query task failed: {e}")))?
        .map_err(|e| Status::internal(format!("audit store query failed: {e:#}")))
    }
}
