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
    agents::Agents,
    api::{
        self,
        bus::{Bus, Published},
        convert::Origin,
        status::{StartFacts, StatusBoard},
    },
    audit::{Audit, Query, Retention, writer::AuditWriter},
    calls::Calls,
    clock::{self, Clock},
    collect::{self, CollectStats},
    config::{Config, OutputFormat},
    decode::Record,
    ebpf::{self, Counters},
    event::{self, Detail},
    metrics::Metrics,
    procs::ProcessTable,
    respond::{
        arm::Armer,
        isolate::Isolator,
        responder::{Report, Responder},
    },
    sockets::FirstBytes,
    tls::TlsAttacher,
};

pub async fn run(cfg: Config) -> Result<()> {
    let metrics_listener = if cfg.metrics.enabled {
        Some(crate::metrics::serve::bind(cfg.metrics.listen).await?)
    } else {
        None
    };
    let mut calls = Calls::new(&cfg.state.dir, cfg.http.fingerprint_key.as_deref())?;
    let mut procs = ProcessTable::new(&cfg.procs);
    procs.read_held_credentials(calls.fingerprinter());
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
    // Checked when the config was read.
    let skip = crate::tls::Skip::new(&cfg.tls.skip).unwrap_or_default();
    let mut tls = TlsAttacher::new(&cfg.procs.proc_root, skip);
    if loaded.tls_loaded {
        tls.scan_host(&mut loaded.bpf, procs.live_keys());
        info!(files = tls.attached.len(), "TLS capture targets attached");
    }
    for d in &loaded.degraded {
        tracing::warn!(feature = %d, "degraded");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let origin = Origin::of_this_host();
    let retention = Retention {
        max_age: cfg.audit.max_age,
        max_bytes: cfg.audit.max_bytes,
    };
    let audit_path = cfg.state.dir.join(&cfg.audit.path);
    let audit = if cfg.audit.enabled {
        Some(Audit::open(&audit_path, retention.clone())?)
    } else {
        None
    };
    let bus = Bus::new(origin.clone(), cfg.api.subscriber_queue, RECENT_EVENTS);
    // Replay and seq numbers continue from what the store already holds.
    let mut next_seq = 1;
    if let Some(a) = &audit {
        let stored = a.query(&Query {
            limit: Some(RECENT_EVENTS),
            ..Default::default()
        })?;
        next_seq = a.max_seq()? + 1;
        bus.seed(stored.iter().map(|v| Published {
            seq: v["seq"].as_u64().unwrap_or(0),
            json: v.to_string(),
        }));
    }
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let metrics = Arc::new(Metrics::new(crate::metrics::Build {
        node: &origin.node,
        kernel: &kernel,
    }));
    let board = Arc::new(StatusBoard::new(StartFacts {
        node: origin.node.clone(),
        kernel,
        capabilities: loaded.capabilities.iter().map(|c| c.to_string()).collect(),
        unavailable: loaded.unavailable.clone(),
        attachments: loaded
            .attachments
            .iter()
            .map(|a| (a.program.to_string(), a.method.clone()))
            .collect(),
        degraded: loaded.degraded.clone(),
        hooks: loaded.choices.iter().map(|c| c.to_proto()).collect(),
    }));
    let store = if cfg.audit.enabled {
        Some(api::store::Store::open(&audit_path, retention)?)
    } else {
        None
    };
    let mut table = Agents::load_with(
        Some(&cfg.state.dir.join("agents.json")),
        crate::agents::Settings::from_config(&cfg)?,
    )?;
    for path in &cfg.baselines.import {
        let file = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("baselines.import {}: {e}", path.display()))
            .and_then(|b| {
                crate::agents::baseline::BaselineFile::parse(&b)
                    .map_err(|e| anyhow::anyhow!("baselines.import {}: {e}", path.display()))
            })?;
        let n = table.import_baselines(&file, false)?;
        info!(file = %path.display(), agents = n, nodes = ?file.nodes, "baselines imported");
    }
    let agents = Arc::new(std::sync::Mutex::new(table));
    let export = crate::export::Exporters::start(&cfg.export, &cfg.state.dir, &origin)?;
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let isolator = if loaded.isolation {
        Isolator::take(&mut loaded.bpf, &cfg.state.dir).map_err(|e| format!("{e:#}"))
    } else {
        // The responder says "network isolation: unavailable: <why>".
        Err(loaded
            .choices
            .iter()
            .find(|c| c.hook == "isolation")
            .and_then(|c| c.unavailable.clone())
            .map_or_else(
                || "not attached".into(),
                |why| format!("unavailable: {why}"),
            ))
    };
    if let Ok(i) = &isolator {
        let still = i.list();
        if !still.is_empty() {
            tracing::warn!(
                processes = still.len(),
                "processes isolated by an earlier daemon stay isolated"
            );
        }
    }
    let pods = crate::pods::Pods::default();
    if let Some(source) = cfg.kubernetes.source() {
        let api = source.api_server.clone();
        match pods.spawn_refresh(source, stop_rx.clone()) {
            Ok(_) => info!(api_server = %api, "pod metadata: listing this node's pods"),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "pod metadata unavailable: events carry no pod")
            }
        }
    }
    let urgent = crate::respond::urgent::Urgent::take(&mut loaded.bpf, cfg.ringbuf.urgent_wakeups)?;
    let mut armer = Armer::take(
        &mut loaded.bpf,
        pods.clone(),
        cfg.response.arm.clone(),
        cfg.response.hold.clone(),
        Some(cfg.state.dir.join("approved.json")),
    )?;
    if armer.active() {
        if !loaded.tls_loaded {
            tracing::warn!(
                "armed and held agents: TLS capture is not loaded, so their patterns cannot be matched"
            );
        }
        let mut armed = 0;
        for key in procs.live_keys() {
            let key = crate::procs::ProcKey {
                pid: key.0,
                start_ticks: key.1,
            };
            if let Some(p) = procs.get(&key).cloned() {
                armed += usize::from(armer.on_process(&p));
            }
        }
        info!(
            processes = armed,
            armed_agents = cfg.response.arm.len(),
            held_agents = cfg.response.hold.len(),
            "armed agents"
        );
    }
    let mut responder = Responder::new(isolator, armer, cfg.response.clone(), reports_tx);
    let holds_file = cfg.state.dir.join("holds.json");
    let taken_up = responder.keep_holds_in(holds_file)?;
    if taken_up > 0 {
        info!(holds = taken_up, "holds of the previous run taken up");
    }
    let responder = Arc::new(std::sync::Mutex::new(responder));
    let serving = api::serve(
        &cfg.api,
        api::Backends {
            bus: bus.clone(),
            board: board.clone(),
            store,
            agents: agents.clone(),
            responder: responder.clone(),
            metrics: metrics.clone(),
        },
        stop_rx.clone(),
    )
    .await?;
    let metrics_task = match metrics_listener {
        Some(l) => Some(crate::metrics::serve::serve(
            l,
            metrics.clone(),
            bus.clone(),
            stop_rx.clone(),
        )?),
        None => None,
    };
    let probe_port = self_exclusion_probe();
    // Tests and scripts wait for this line before driving traffic.
    info!(
        pid = std::process::id(),
        programs = loaded.attachments.len(),
        self_probe_port = probe_port,
        "sensor ready"
    );

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
    let mut out = Output {
        out: std::io::BufWriter::new(std::io::stdout().lock()),
        format: cfg.output.format,
        by_kind: Default::default(),
        stop: stop_tx.clone(),
        next_seq,
        audit: audit.map(AuditWriter::start).transpose()?,
        bus: bus.clone(),
        agents: agents.clone(),
        responder: responder.clone(),
        pods: pods.clone(),
        export,
        metrics: metrics.clone(),
        record_ktime: None,
        urgent,
    };
    let mut batch = Vec::with_capacity(1024);
    let mut last_sweep = Instant::now();
    let mut drops = DropWatch::default();
    let mut check = tokio::time::interval(Duration::from_secs(10));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The audit store is written at least this often: what a crash can
    // lose.
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = Instant::now();
    // Baselines and the inventory are saved this often (what a crash can
    // lose of them; the events themselves are in the audit store).
    let mut last_save = Instant::now();
    tokio::pin!(shutdown);
    let mut stopping = false;
    let own_pid = std::process::id();
    let mut self_events = 0u64;
    let mut tls_records = 0u64;
    let mut sock_records = 0u64;
    let mut first_bytes = FirstBytes::default();
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 1024) => {
                if n == 0 {
                    break; // reader finished and queue drained
                }
                for rec in batch.drain(..) {
                    // Events emitted from here on are this record's: their
                    // latency counts from its kernel timestamp.
                    out.record_ktime = Some(rec.header().ktime_ns);
                    if rec.header().tgid == own_pid {
                        // The kernel filter should have dropped it.
                        if self_events == 0 {
                            tracing::error!("the in-kernel self filter let one of the sensor's own records through");
                        }
                        self_events += 1;
                        continue;
                    }
                    match &rec {
                        Record::TlsData(t) => {
                            tls_records += 1;
                            let process = procs.resolve(&t.hdr.header);
                            for o in calls.on_tls(t, &process) {
                                out.emit(crate::calls::event(o, &clock, &first_bytes));
                            }
                            continue;
                        }
                        Record::SockData(d) => {
                            sock_records += 1;
                            if let Some(ev) = first_bytes.on_data(d, &mut procs, &clock) {
                                out.emit(ev);
                            } else {
                                let process = procs.resolve(&d.hdr.header);
                                for o in calls.on_plain(d, &process) {
                                    out.emit(crate::calls::event(o, &clock, &first_bytes));
                                }
                            }
                            continue;
                        }
                        Record::Blocked(b) => {
                            let process = procs.resolve(&b.header);
                            let mut context = lock(&agents).hold_context(process.pid, process.start_ticks);
                            if b.action == u32::from(sensor_common::ARM_HOLD_TLS) {
                                // Stopped at a new TLS connection. A process
                                // whose TLS library is hooked is held by its
                                // requests instead: resume it, and stop
                                // stopping it at connections.
                                if loaded.tls_loaded && tls.hooks_process(&mut loaded.bpf, process.pid) {
                                    let mut r = lock(&responder);
                                    r.armer.hooked_tls(process.pid);
                                    r.resume(&process);
                                    continue;
                                }
                                if let Some(d) = first_bytes.get(process.pid, process.start_ticks, b.conn as i32) {
                                    context.sni.clone_from(&d.sni);
                                    context.destination = Some(format!("{}:{}", d.addr, d.port));
                                }
                            }
                            let detail = lock(&responder).on_blocked(b, &process, context);
                            if let Some(detail) = detail {
                                out.emit(event::Event::new(&clock, &b.header, process, detail));
                            }
                            continue;
                        }
                        Record::TlsBind(b) => {
                            let process = procs.resolve(&b.header);
                            // Only a socket that sent a ClientHello carries
                            // TLS: anything else was a stray write.
                            if first_bytes
                                .get(process.pid, process.start_ticks, b.fd)
                                .is_some_and(|d| d.tls)
                            {
                                for o in calls.bind(&process, b.conn, b.fd) {
                                    out.emit(crate::calls::event(o, &clock, &first_bytes));
                                }
                            }
                            continue;
                        }
                        _ => {}
                    }
                    let Some(ev) = event::from_record(&rec, &mut procs, &clock) else {
                        continue;
                    };
                    first_bytes.on_event(&ev);
                    match &ev.detail {
                        Detail::Exec { .. } => {
                            lock(&responder).armer.on_process(&ev.process);
                        }
                        Detail::Fork { child_pid, .. } => {
                            lock(&responder).armer.on_fork(ev.process.pid, *child_pid)
                        }
                        Detail::Exit { .. } => lock(&responder).on_exit(ev.process.pid),
                        _ => {}
                    }
                    if let Detail::Connect { fd, .. } = ev.detail {
                        for o in calls.on_connect(&ev.process, fd, rec.header().ktime_ns) {
                            out.emit(crate::calls::event(o, &clock, &first_bytes));
                        }
                    }
                    if loaded.tls_loaded {
                        match ev.detail {
                            // A new image maps new libraries.
                            Detail::Exec { .. } => tls.rescan_process(&mut loaded.bpf, ev.process.pid),
                            // By its first connect a process has loaded its
                            // TLS library (Python imports ssl lazily).
                            Detail::Connect { .. } => tls.scan_process(&mut loaded.bpf, ev.process.pid, ev.process.start_ticks),
                            _ => {}
                        }
                    }
                    out.emit(ev);
                }
                out.record_ktime = None;
                out.flush();
            }
            Some(r) = reports.recv() => {
                out.emit(action_event(r, &procs, &clock));
                out.flush();
            }
            _ = check.tick() => {
                drops.check(&counters.read(), &stats);
                out.export.check();
                lock(&responder).reconcile();
            }
            _ = second.tick() => {
                lock(&responder).expire_holds();
                // Modes an operator changed (Baselines.SetMode).
                let changes = lock(&agents).take_operator_mode_changes();
                if !changes.is_empty() {
                    let now = clock::boottime_ns();
                    let base = event::Event {
                        seq: 0,
                        time: humantime::format_rfc3339_micros(clock.to_system_time(now)).to_string(),
                        ts_unix_ns: clock.to_unix_ns(now),
                        tid: std::process::id(),
                        process: own_process(),
                        agent: None,
                        pod: None,
                        detail: Detail::Exit { exit_code: None, signal: None },
                    };
                    for (c, name) in changes {
                        out.emit(mode_event(&base, c, name));
                    }
                    out.flush();
                }
                // On the clock, not on records: a quiet host still reports
                // what its exited processes left open.
                if last_sweep.elapsed() > Duration::from_secs(5) {
                    procs.sweep(Instant::now());
                    // Streams of exited processes, and idle ones, end;
                    // requests that never got a response are still
                    // reported (status absent).
                    let gone = |pid, start_ticks| {
                        procs.exited(&crate::procs::ProcKey { pid, start_ticks })
                    };
                    for o in calls.sweep(clock::boottime_ns(), gone) {
                        out.emit(crate::calls::event(o, &clock, &first_bytes));
                    }
                    first_bytes.sweep(gone);
                    out.flush();
                    last_sweep = Instant::now();
                }
                if last_save.elapsed() > Duration::from_secs(10) {
                    out.save_agents();
                    last_save = Instant::now();
                }
                if last_prune.elapsed() > Duration::from_secs(60) {
                    out.prune();
                    last_prune = Instant::now();
                }
                let mut t = totals(&counters, &stats, &procs, &calls, self_events);
                out.export.totals(&mut t);
                if let Some(a) = &out.audit {
                    t.insert("audit_write_errors".into(), a.errors());
                    t.insert("audit_rows_written".into(), a.stats().rows_written);
                    t.insert("audit_rows_dropped".into(), a.stats().rows_dropped);
                    t.insert("audit_rows_pruned".into(), a.stats().rows_pruned);
                }
                metrics.update(&t, procs.len(), tls.attached.len());
                board.update(
                    t,
                    &out.by_kind,
                    tls.attached
                        .iter()
                        .chain(&tls.refused)
                        .map(|t| {
                            (
                                format!("{} [{}]", t.path.display(), t.library),
                                t.functions.clone(),
                            )
                        })
                        .collect(),
                );
            }
            sig = &mut shutdown, if !stopping => {
                info!(signal = sig, "shutting down");
                stopping = true;
                let _ = stop_tx.send(true);
            }
        }
    }
    reader.await.context("ring buffer reader panicked")??;
    for o in calls.sweep(u64::MAX, |_, _| true) {
        out.emit(crate::calls::event(o, &clock, &first_bytes));
    }
    lock(&responder).stop();
    while let Ok(r) = reports.try_recv() {
        out.emit(action_event(r, &procs, &clock));
    }
    out.flush();
    // Open learning runs are folded into their baselines before the save.
    if let Err(e) = lock(&agents).close() {
        tracing::warn!(error = %format!("{e:#}"), "agent inventory not saved");
    }
    let by_kind = std::mem::take(&mut out.by_kind);
    // The writer's last commit is counted too.
    let (audit_errors, audit_dropped) = out.audit.take().map_or((0, 0), |a| {
        let (stats, errors) = a.close();
        (errors, stats.rows_dropped)
    });
    let export = std::mem::take(&mut out.export);
    drop(out);
    // After the last event: the file is flushed and the collector gets a
    // bounded time for what is queued.
    let export_summary = export.finish().await;
    bus.close();
    serving.finish().await;
    if let Some(mut t) = metrics_task
        && tokio::time::timeout(Duration::from_secs(3), &mut t)
            .await
            .is_err()
    {
        t.abort();
    }

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
    summary.push_str(&format!(
        " process_table_evictions={} self_records_leaked={self_events} tls_records={tls_records} socket_records={sock_records} http_parse_errors={} http_streams_evicted={} http_body_bytes_over_budget={} tls_files_attached={} tls_attach_errors={}",
        procs.evicted,
        calls.parse_errors,
        calls.evicted_streams(),
        crate::http::budget::refused(),
        tls.attached.len(),
        tls.attach_errors
    ));
    summary.push_str(&format!(
        " audit_write_errors={audit_errors} audit_rows_dropped={audit_dropped} api_subscribers_at_exit={}",
        bus.subscribers()
    ));
    summary.push_str(&export_summary);
    eprintln!("{summary}");
    Ok(())
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `mode` event, in the context of `ev` (the call that moved the mode,
/// or for an operator's change the sensor's own process).
fn mode_event(
    ev: &event::Event,
    c: crate::agents::detect::ModeChange,
    name: String,
) -> event::Event {
    event::Event {
        seq: 0,
        time: ev.time.clone(),
        ts_unix_ns: ev.ts_unix_ns,
        tid: ev.tid,
        process: ev.process.clone(),
        agent: ev.agent.clone().filter(|a| a.id == c.agent),
        pod: ev.pod.clone(),
        detail: Detail::Mode {
            agent_id: c.agent,
            agent_name: name,
            from: c.from.map(|m| m.name()),
            to: c.to.name(),
            why: c.why,
        },
    }
}

/// The sensor's own process, for events it makes on an operator's request.
fn own_process() -> Arc<crate::procs::Process> {
    Arc::new(crate::procs::Process {
        pid: std::process::id(),
        comm: "sensor".into(),
        exe: std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        partial: true,
        held: Vec::new(),
        ..Default::default()
    })
}

/// An action as an event about the process it targeted (as the process
/// table knows it, or as /proc still shows it).
fn action_event(r: Report, procs: &ProcessTable, clock: &Clock) -> event::Event {
    let (pid, start) = r.target;
    let key = |start_ticks| crate::procs::ProcKey { pid, start_ticks };
    let process = procs
        .get(&key(start))
        .or_else(|| procs.get(&key(crate::respond::start_ticks(pid).unwrap_or(0))))
        .cloned()
        .unwrap_or_else(|| {
            Arc::new(crate::procs::Process {
                pid,
                start_ticks: start,
                partial: true,
                held: Vec::new(),
                ..Default::default()
            })
        });
    let now = clock::boottime_ns();
    event::Event {
        seq: 0,
        time: humantime::format_rfc3339_micros(clock.to_system_time(now)).to_string(),
        ts_unix_ns: clock.to_unix_ns(now),
        tid: pid,
        process,
        agent: None,
        pod: None,
        detail: r.detail,
    }
}

/// Connects to a loopback listener of our own once the programs are
/// attached. The kernel must not report it (the sensor excludes itself); the
/// port is logged so a test can prove that it was filtered.
fn self_exclusion_probe() -> u16 {
    let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", 0)) else {
        return 0;
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        return 0;
    }
    port
}

/// Warns while running, not only at shutdown, when records are being lost.
#[derive(Default)]
struct DropWatch {
    ringbuf_full: u64,
    queue_full: u64,
    holds_unreported: u64,
}

impl DropWatch {
    fn check(&mut self, kernel: &[(&'static str, u64)], stats: &CollectStats) {
        let ringbuf_full = kernel
            .iter()
            .find(|(k, _)| *k == sensor_common::Counter::RingbufFull.name())
            .map_or(0, |(_, v)| *v);
        let unreported = kernel
            .iter()
            .find(|(k, _)| *k == sensor_common::Counter::HoldUnreported.name())
            .map_or(0, |(_, v)| *v);
        if unreported > self.holds_unreported {
            tracing::error!(
                killed = unreported - self.holds_unreported,
                total = unreported,
                "held processes killed instead of stopped: their holds could not be reported (kernel ring buffer full; raise ringbuf.bytes)"
            );
        }
        self.holds_unreported = unreported;
        let queue_full = stats.queue_full_drops.load(Ordering::Relaxed);
        if ringbuf_full > self.ringbuf_full {
            tracing::warn!(
                dropped = ringbuf_full - self.ringbuf_full,
                total = ringbuf_full,
                "kernel ring buffer full: records dropped (raise ringbuf.bytes)"
            );
        }
        if queue_full > self.queue_full {
            tracing::warn!(
                dropped = queue_full - self.queue_full,
                total = queue_full,
                "pipeline queue full: records dropped (raise ringbuf.queue_capacity, or the output is too slow)"
            );
        }
        self.ringbuf_full = ringbuf_full;
        self.queue_full = queue_full;
    }
}

/// Recent events kept in memory for replay to new subscribers.
const RECENT_EVENTS: usize = 10_000;

/// Where events go: numbered, counted by kind, written in the configured
/// format, kept in the audit store and published to API subscribers.
struct Output<W: Write> {
    out: W,
    format: OutputFormat,
    by_kind: std::collections::BTreeMap<&'static str, u64>,
    stop: watch::Sender<bool>,
    next_seq: u64,
    audit: Option<AuditWriter>,
    bus: Arc<Bus>,
    agents: Arc<std::sync::Mutex<Agents>>,
    responder: Arc<std::sync::Mutex<Responder>>,
    pods: crate::pods::Pods,
    /// OTLP and file export.
    export: crate::export::Exporters,
    metrics: Arc<Metrics>,
    /// The kernel timestamp of the record being turned into events, if
    /// any (actions and sweeps have none).
    record_ktime: Option<u64>,
    /// Enforced agents' processes, whose records wake the reader at once.
    urgent: crate::respond::urgent::Urgent,
}

impl<W: Write> Output<W> {
    fn emit(&mut self, mut ev: event::Event) {
        ev.seq = self.next_seq;
        self.next_seq += 1;
        if ev.pod.is_none()
            && let Some(c) = &ev.process.container
        {
            ev.pod = self.pods.of(c);
        }
        let (findings, modes) = {
            let mut a = self.agents.lock().unwrap_or_else(|e| e.into_inner());
            let f = a.observe(&mut ev);
            let pid = ev.process.pid;
            match &ev.detail {
                Detail::Fork { child_pid, .. } => self.urgent.on_fork(pid, *child_pid),
                Detail::Exit { .. } => self.urgent.on_exit(pid),
                // Checked at calls, where a process is tied to its agent
                // (its mode may change meanwhile: learning ends).
                Detail::ApiCall { .. } => {
                    if let Some(t) = &ev.agent
                        && self.urgent.wants(pid)
                        && a.mode_of(&t.id) == crate::agents::mode::Mode::Enforce
                    {
                        self.urgent.mark(pid);
                    }
                }
                _ => {}
            }
            (f, a.take_mode_changes())
        };
        *self.by_kind.entry(ev.detail.kind()).or_default() += 1;
        self.metrics.event(&ev.detail);
        // Serialised once: stdout (JSON), the audit store, the exports and
        // the API bus share the text.
        let json = ev.to_json();
        let text;
        let line = match self.format {
            OutputFormat::Json => &json,
            OutputFormat::Text => {
                text = ev.to_text();
                &text
            }
        };
        if writeln!(self.out, "{line}").is_err() {
            // stdout closed (e.g. `sensor run | head`): stop cleanly.
            let _ = self.stop.send(true);
        }
        if let Some(a) = &self.audit {
            a.append(&ev, &json);
        }
        self.export.emit(&ev, &json);
        self.bus.publish(Published { seq: ev.seq, json });
        if let Some(k) = self.record_ktime {
            self.metrics
                .latency_ns(clock::boottime_ns().saturating_sub(k));
        }
        // A mode change comes before the finding it decides, and after
        // the event that caused it: seqs go out in order (Subscribe's
        // replay and History read the ring and the store in seq order).
        for (c, name) in modes {
            self.emit(mode_event(&ev, c, name));
        }
        for f in findings {
            let (credential_fingerprint, tool_call) = match &ev.detail {
                Detail::ApiCall {
                    credential_fingerprint,
                    tool_call,
                    ..
                } => (credential_fingerprint.clone(), tool_call.clone()),
                _ => (None, None),
            };
            let finding = event::Event {
                seq: 0,
                time: ev.time.clone(),
                ts_unix_ns: ev.ts_unix_ns,
                tid: ev.tid,
                process: ev.process.clone(),
                agent: ev.agent.clone(),
                pod: ev.pod.clone(),
                detail: Detail::Finding {
                    rule: f.rule,
                    severity: f.severity,
                    summary: f.summary,
                    endpoint: f.endpoint,
                    count: f.count,
                    baseline_sessions: f.baseline_sessions,
                    credential_fingerprint: f.credential.or(credential_fingerprint),
                    tool_call,
                    call_seq: ev.seq,
                    mode: f.mode.name(),
                    policy: f.policy,
                    response: f.response.map(|r| r.name()),
                },
            };
            self.emit(finding.clone());
            // emit() numbered its own copy; the policy sees the same seq.
            let finding = event::Event {
                seq: self.next_seq - 1,
                ..finding
            };
            lock(&self.responder).on_finding(&finding);
        }
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
        self.export.flush();
    }

    /// Writes the agent inventory if it changed.
    fn save_agents(&mut self) {
        let r = self.agents.lock().unwrap_or_else(|e| e.into_inner()).save();
        if let Err(e) = r {
            tracing::warn!(error = %format!("{e:#}"), "agent inventory not saved");
        }
    }

    fn prune(&mut self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        if let Some(a) = &self.audit {
            a.prune(now);
        }
    }
}

/// Kernel and pipeline counters by name, for the status report.
fn totals(
    counters: &Counters,
    stats: &CollectStats,
    procs: &ProcessTable,
    calls: &Calls,
    self_events: u64,
) -> std::collections::BTreeMap<String, u64> {
    let mut m: std::collections::BTreeMap<String, u64> = counters
        .read()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    m.insert("records_read".into(), stats.records.load(Ordering::Relaxed));
    m.insert(
        "queue_full_drops".into(),
        stats.queue_full_drops.load(Ordering::Relaxed),
    );
    for (k, v) in stats.decode_errors() {
        m.insert(format!("decode_error_{k}"), v);
    }
    m.insert("process_table_evictions".into(), procs.evicted);
    m.insert("self_records_leaked".into(), self_events);
    m.insert("http_parse_errors".into(), calls.parse_errors);
    m.insert("http_streams_evicted".into(), calls.evicted_streams());
    m.insert("tls_records_unbound".into(), calls.unbound_dropped);
    m.insert(
        "agent_identities_refused".into(),
        crate::agents::identities_refused(),
    );
    m.insert(
        "http_body_bytes_over_budget".into(),
        crate::http::budget::refused(),
    );
    m
}
