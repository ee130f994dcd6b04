//! The sensor daemon: loads the kernel programs, reads their records,
//! attributes them to processes and containers, and emits events.
//!
//! Data flow (see ARCHITECTURE.md): `collect` (ring buffer) → `decode` →
//! `procs` (process table) → `event` (typed events, rendering) → output.

pub mod agents;
pub mod api;
pub mod attach;
pub mod audit;
pub mod btf;
pub mod calls;
pub mod cli;
pub mod clock;
pub mod collect;
pub mod config;
pub mod credentials;
pub mod db;
pub mod decode;
pub mod ebpf;
pub mod event;
pub mod export;
pub mod flows;
pub mod http;
pub mod metrics;
pub mod pods;
pub mod procs;
pub mod redact;
pub mod respond;
pub mod run;
#[cfg(test)]
mod skips;
pub mod sockets;
pub mod state;
pub mod tls;
pub mod ws_calls;
