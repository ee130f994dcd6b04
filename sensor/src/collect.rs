//! Reads the kernel ring buffer and decodes records. It never waits on the
//! consumers: when the queue to the pipeline is full, records are dropped
//! and counted here rather than leaving the kernel to drop them later.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, watch},
};

use crate::decode::{Record, decode};

#[derive(Default)]
pub struct CollectStats {
    pub records: AtomicU64,
    pub queue_full_drops: AtomicU64,
    decode_errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl CollectStats {
    pub fn decode_errors(&self) -> BTreeMap<&'static str, u64> {
        self.decode_errors
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

/// Decodes every pending record and queues it; returns how many were read.
fn drain(ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<Record>, stats: &CollectStats) -> usize {
    let mut n = 0;
    while let Some(item) = ring.next() {
        n += 1;
        match decode(&item) {
            Ok(rec) => {
                if tx.try_send(rec).is_err() {
                    stats.queue_full_drops.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "skipping undecodable record");
                if let Ok(mut m) = stats.decode_errors.lock() {
                    *m.entry(e.label()).or_default() += 1;
                }
            }
        }
    }
    stats.records.fetch_add(n as u64, Ordering::Relaxed);
    n
}

/// Runs until `stop` turns true, then drains once more and returns (dropping
/// `tx`, which ends the pipeline after it has seen every queued record).
pub async fn run(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Record>,
    poll_interval: Duration,
    mut stop: watch::Receiver<bool>,
    stats: &CollectStats,
) -> Result<()> {
    // SAFETY: the ring buffer's fd stays open and unchanged while the
    // AsyncFd owns the RingBuf.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {e}"))?;
    let mut tick = tokio::time::interval(poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &tx, stats);
                guard.clear_ready();
            }
            _ = tick.tick() => {
                drain(fd.get_mut(), &tx, stats);
            }
            _ = stop.changed() => break,
        }
    }
    drain(fd.get_mut(), &tx, stats);
    Ok(())
}
