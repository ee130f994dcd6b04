//! One budget for every body the parsers keep at once (LLM requests and
//! answers, WebSocket messages), across all connections: each body is
//! bounded (256 KiB), but 16,384 HTTP/1 streams × 2 directions, 1,024
//! HTTP/2 streams per connection, or WebSocket messages in flight could
//! each hold one (issue 19, finding 2). Past the budget a body keeps no
//! more bytes and is marked truncated; the bytes refused are counted
//! (`http_body_bytes_over_budget`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Bytes all kept bodies may hold together.
pub const BODY_BUDGET: usize = 64 << 20;

static USED: AtomicUsize = AtomicUsize::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Bytes refused since the daemon started.
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Bytes kept bodies hold now.
pub fn used() -> usize {
    USED.load(Ordering::Relaxed)
}

/// What one kept body took from the budget, given back when it is
/// dropped. A clone holds nothing (it is a copy for reading, not kept by
/// a parser), and charges never make two bodies differ.
#[derive(Debug, Default)]
pub struct Charge(usize);

impl Charge {
    /// Takes up to `want` bytes; returns how many were granted.
    pub fn take(&mut self, want: usize) -> usize {
        let mut got = 0;
        let _ = USED.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            got = want.min(BODY_BUDGET.saturating_sub(used));
            Some(used + got)
        });
        self.0 += got;
        if got < want {
            REFUSED.fetch_add((want - got) as u64, Ordering::Relaxed);
        }
        got
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        USED.fetch_sub(self.0, Ordering::Relaxed);
    }
}

impl Clone for Charge {
    fn clone(&self) -> Self {
        Charge(0)
    }
}

impl PartialEq for Charge {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::stream::Kept;

    /// Bodies past the budget keep nothing more, marked truncated and
    /// counted; dropping them gives their bytes back. (The budget is one
    /// per process, shared with other tests running at once: only what
    /// this test can be sure of is checked.)
    #[test]
    fn bodies_past_the_budget_are_truncated_and_bytes_come_back() {
        let chunk = vec![b'x'; 256 * 1024];
        let mut bodies = Vec::new();
        for _ in 0..(BODY_BUDGET / chunk.len() + 8) {
            let mut k = Kept::default();
            k.push(&chunk, chunk.len());
            bodies.push(k);
        }
        assert!(
            bodies
                .iter()
                .any(|k| k.truncated && k.bytes.len() < chunk.len())
        );
        let held: usize = bodies.iter().map(|k| k.bytes.len()).sum();
        assert!(held <= BODY_BUDGET);
        assert!(refused() > 0);
        let before = used();
        let copy = bodies[0].clone();
        assert_eq!(used(), before, "a clone takes nothing");
        assert_eq!(copy, bodies[0]);
        drop(bodies);
        // What they held is back (others may have taken some since).
        let mut k = Kept::default();
        k.push(&chunk, chunk.len());
        assert!(!k.truncated);
    }
}
