//! Processes whose records wake the daemon at once (issue 21, item 3).
//!
//! The kernel batches ring-buffer wakeups (`sensor-ebpf/src/emit.rs`): a
//! record waits for `ringbuf.wakeup_bytes` of company or the reader's
//! `ringbuf.poll_interval_ms` timer, which saves a wakeup per record but
//! delays a record that decides a response by up to the 5 ms poll. The
//! processes of agents in `enforce` mode are the ones whose next record
//! can decide one: their tgids are kept in the kernel's `URGENT` map, and
//! their records wake the reader as soon as they are written. Everything
//! else stays batched. `cargo xtask bench --only response` measures both
//! side by side (urgent / batched median 0.81 on 2026-12-04).
//!
//! A process is marked when one of its calls is attributed to an agent
//! whose mode is `enforce`, and a child it forks is marked with it (its
//! first call then wakes the reader too); both are forgotten at exit.

use std::collections::HashSet;

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{HashMap, MapData},
};
use tracing::warn;

/// What `URGENT` holds at most (`sensor-ebpf/src/maps.rs`).
const CAPACITY: usize = 4096;

pub struct Urgent {
    map: HashMap<MapData, u32, u8>,
    /// `ringbuf.urgent_wakeups`: off, nothing is marked.
    enabled: bool,
    marked: HashSet<u32>,
    /// A refused mark is said once: those processes' records wait for the
    /// batch like any other.
    refused_warned: bool,
}

impl Urgent {
    pub fn take(bpf: &mut Ebpf, enabled: bool) -> Result<Self> {
        let map = bpf.take_map("URGENT").context("map URGENT missing")?;
        Ok(Self {
            map: HashMap::try_from(map)?,
            enabled,
            marked: HashSet::new(),
            refused_warned: false,
        })
    }

    /// Whether `pid` is worth checking: marking is on and it is not
    /// marked yet.
    pub fn wants(&self, pid: u32) -> bool {
        self.enabled && !self.marked.contains(&pid)
    }

    /// Makes `pid`'s records wake the reader at once.
    pub fn mark(&mut self, pid: u32) {
        if !self.enabled || self.marked.contains(&pid) {
            return;
        }
        if self.marked.len() >= CAPACITY {
            self.refuse(pid, "full");
            return;
        }
        match self.map.insert(&pid, &1, 0) {
            Ok(()) => {
                self.marked.insert(pid);
            }
            Err(e) => self.refuse(pid, &e.to_string()),
        }
    }

    fn refuse(&mut self, pid: u32, why: &str) {
        if !self.refused_warned {
            self.refused_warned = true;
            warn!(
                pid,
                error = why,
                capacity = CAPACITY,
                "an enforced agent's process could not be marked urgent: its records wait for the batched wakeup (said once)"
            );
        }
    }

    /// A marked process forked: its child's records are urgent too.
    pub fn on_fork(&mut self, parent: u32, child: u32) {
        if self.marked.contains(&parent) {
            self.mark(child);
        }
    }

    pub fn on_exit(&mut self, pid: u32) {
        if self.marked.remove(&pid) {
            let _ = self.map.remove(&pid);
        }
    }
}
