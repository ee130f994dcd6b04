//! `sensor run`: load, attach, stream events until SIGINT/SIGTERM.

use std::{
    io::Write,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::RingBuf;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracing::info;

use crate::{
    clock::Clock,
    collect::{self, CollectStats},
    config::{Config, OutputFormat},
    decode::Record,
    ebpf::{self, Counters},
    event,
    procs::ProcessTable,
};

pub async fn run(cfg: Config) -> Result<()> {
    let mut procs = ProcessTable::new(&cfg.procs);
    let seeded = procs.seed();
    info!(
        processes = seeded,
        "process table seeded from {}",
        cfg.procs.proc_root.display()
    );

    let mut loaded = ebpf::load(&cfg)?;
    let counters = Counters::take(&mut loaded.bpf)?;
    let ring = RingBuf::try_from(
        loaded
            .bpf
            .take_map("EVENTS")
            .context("EVENTS map missing from the object")?,
    )?;
    for d in &loaded.degraded {
        tracing::warn!(feature = %d, "degraded");
    }
    // Tests and scripts wait for this line before driving traffic.
    info!(
        pid = std::process::id(),
        programs = loaded.attachments.len(),
        "sensor ready"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let (tx, mut rx) = mpsc::channel::<Record>(cfg.ringbuf.queue_capacity);
    let stats = Arc::new(CollectStats::default());
    let poll = Duration::from_millis(cfg.ringbuf.poll_interval_ms);
    let reader = {
        let stats = stats.clone();
        tokio::spawn(async move { collect::run(ring, tx, poll, stop_rx, &stats).await })
    };

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = sigint.recv() => "SIGINT",
            _ = sigterm.recv() => "SIGTERM",
        }
    };

    let clock = Clock::new();
    let format = cfg.output.format;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut batch = Vec::with_capacity(1024);
    let mut by_kind = std::collections::BTreeMap::<&'static str, u64>::new();
    let mut last_sweep = Instant::now();
    tokio::pin!(shutdown);
    let mut stopping = false;
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 1024) => {
                if n == 0 {
                    break; // reader finished and queue drained
                }
                for rec in batch.drain(..) {
                    let ev = event::from_record(&rec, &mut procs, &clock);
                    *by_kind.entry(ev.detail.kind()).or_default() += 1;
                    let line = match format {
                        OutputFormat::Json => ev.to_json(),
                        OutputFormat::Text => ev.to_text(),
                    };
                    if writeln!(out, "{line}").is_err() {
                        // stdout closed (e.g. `sensor run | head`): stop cleanly.
                        let _ = stop_tx.send(true);
                    }
                }
                let _ = out.flush();
                if last_sweep.elapsed() > Duration::from_secs(5) {
                    procs.sweep(Instant::now());
                    last_sweep = Instant::now();
                }
            }
            sig = &mut shutdown, if !stopping => {
                info!(signal = sig, "shutting down");
                stopping = true;
                let _ = stop_tx.send(true);
            }
        }
    }
    reader.await.context("ring buffer reader panicked")??;
    let _ = out.flush();
    drop(out);

    let kernel = counters.read();
    let attached = loaded.attachments.len();
    drop(loaded); // detaches every program
    let mut summary = format!("sensor stopped: {attached} programs detached; events");
    for (k, v) in &by_kind {
        summary.push_str(&format!(" {k}={v}"));
    }
    summary.push_str(&format!(
        "; records read={} queue_full_drops={}",
        stats.records.load(Ordering::Relaxed),
        stats.queue_full_drops.load(Ordering::Relaxed)
    ));
    for (k, v) in stats.decode_errors() {
        summary.push_str(&format!(" decode_error_{k}={v}"));
    }
    for (k, v) in kernel {
        summary.push_str(&format!(" {k}={v}"));
    }
    summary.push_str(&format!(" process_table_evictions={}", procs.evicted));
    eprintln!("{summary}");
    Ok(())
}
