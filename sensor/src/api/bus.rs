//! The event bus between the pipeline and API subscribers. It carries
//! events as the JSON text the pipeline already made for its output and the
//! audit store, so publishing costs no conversion; each subscriber turns
//! what it sends into API messages. A broadcast channel (a subscriber that falls `queue` events behind is told how many
//! it missed; the pipeline never waits) and a ring of recent events for
//! replay. Both change under one lock, so a new subscriber's replay and
//! its live events neither overlap nor leave a gap.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use tokio::sync::broadcast;

use super::convert::Origin;

/// One emitted event.
#[derive(Debug)]
pub struct Published {
    pub seq: u64,
    /// The event's JSON form (as on stdout and in the audit store).
    pub json: String,
}

/// A new subscriber's replay and its receiver for what follows.
pub type Subscription = (Vec<Arc<Published>>, broadcast::Receiver<Arc<Published>>);

pub struct Bus {
    inner: Mutex<Inner>,
    recent_cap: usize,
    pub origin: Origin,
}

struct Inner {
    recent: VecDeque<Arc<Published>>,
    /// None once closed: receivers then see the end of the stream.
    tx: Option<broadcast::Sender<Arc<Published>>>,
}

impl Bus {
    pub fn new(origin: Origin, queue: usize, recent_cap: usize) -> Arc<Self> {
        let (tx, _) = broadcast::channel(queue.max(1));
        Arc::new(Self {
            inner: Mutex::new(Inner {
                recent: VecDeque::with_capacity(recent_cap),
                tx: Some(tx),
            }),
            recent_cap,
            origin,
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves a ring that is
        // still a valid ring.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends every subscriber's stream (daemon shutdown).
    pub fn close(&self) {
        self.inner().tx = None;
    }

    /// Fills the ring with stored events at start (oldest first), so a
    /// replay right after a restart still shows what came before it.
    pub fn seed(&self, events: impl IntoIterator<Item = Published>) {
        let r = &mut self.inner().recent;
        for e in events {
            if r.len() == self.recent_cap {
                r.pop_front();
            }
            r.push_back(Arc::new(e));
        }
    }

    pub fn publish(&self, e: Published) {
        let e = Arc::new(e);
        let mut inner = self.inner();
        if inner.recent.len() == self.recent_cap {
            inner.recent.pop_front();
        }
        inner.recent.push_back(e.clone());
        if let Some(tx) = &inner.tx {
            // No receivers is not an error: nobody is subscribed.
            let _ = tx.send(e);
        }
    }

    /// The last `replay` events (at most the ring's size) and a receiver
    /// for everything after them; None once the bus is closed.
    pub fn subscribe(&self, replay: usize) -> Option<Subscription> {
        let inner = self.inner();
        let rx = inner.tx.as_ref()?.subscribe();
        let skip = inner.recent.len().saturating_sub(replay);
        Some((inner.recent.iter().skip(skip).cloned().collect(), rx))
    }

    /// Ring events with a sequence number above `seq`: those the store may
    /// not have yet (it is written at least once a second).
    pub fn recent_after(&self, seq: u64) -> Vec<Arc<Published>> {
        self.inner()
            .recent
            .iter()
            .filter(|e| e.seq > seq)
            .cloned()
            .collect()
    }

    pub fn recent_capacity(&self) -> usize {
        self.recent_cap
    }

    pub fn subscribers(&self) -> usize {
        self.inner().tx.as_ref().map_or(0, |tx| tx.receiver_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64) -> Published {
        Published {
            seq,
            json: format!("{{\"seq\":{seq}}}"),
        }
    }

    fn origin() -> Origin {
        Origin {
            node: "n".into(),
            boot_id: "b".into(),
        }
    }

    #[test]
    fn replay_then_live_without_gap_or_overlap() {
        let bus = Bus::new(origin(), 8, 4);
        bus.seed((1..=3).map(ev));
        bus.publish(ev(4));
        bus.publish(ev(5));
        let (replay, mut rx) = bus.subscribe(10).unwrap();
        let seqs: Vec<u64> = replay.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 3, 4, 5], "ring keeps the last 4");
        bus.publish(ev(6));
        assert_eq!(rx.try_recv().unwrap().seq, 6);
        assert!(rx.try_recv().is_err());
        let after: Vec<u64> = bus.recent_after(4).iter().map(|e| e.seq).collect();
        assert_eq!(after, [5, 6]);
        bus.close();
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
        assert!(bus.subscribe(0).is_none());
    }

    #[test]
    fn a_slow_subscriber_is_told_what_it_missed() {
        let bus = Bus::new(origin(), 2, 4);
        let (_, mut rx) = bus.subscribe(0).unwrap();
        for s in 1..=5 {
            bus.publish(ev(s));
        }
        match rx.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 3),
            other => panic!("expected lag, got {other:?}"),
        }
        assert_eq!(rx.try_recv().unwrap().seq, 4);
    }
}
