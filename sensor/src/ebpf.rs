//! Loading the embedded kernel programs and attaching them.

use std::path::Path;

use anyhow::{Context, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray},
    programs::{RawTracePoint, TracePoint},
};
use sensor_common::{Counter, TaskOffsets};
use tracing::{info, warn};

use crate::{btf, config::Config};

/// The object built by `build.rs` from `sensor-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor-ebpf"));

/// How each hook is attached on this host; printed at start and kept for
/// the status report.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub program: &'static str,
    pub method: String,
}

pub struct Loaded {
    pub bpf: Ebpf,
    pub attachments: Vec<Attachment>,
    /// The TLS uprobe programs are loaded (attached per file by `tls`).
    pub tls_loaded: bool,
    /// The network isolation programs are attached (maps pinned).
    pub isolation: bool,
    /// Features that run reduced on this host, with the reason.
    pub degraded: Vec<String>,
    /// Kernel features proven here by loading what needs them.
    pub capabilities: Vec<&'static str>,
    /// Program types probed and refused here, with the kernel's reason.
    pub unavailable: Vec<String>,
}

/// Regular tracepoints: (program, category, event).
const TRACEPOINTS: [(&str, &str, &str); 4] = [
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("sys_enter_connect", "syscalls", "sys_enter_connect"),
    ("sys_exit_connect", "syscalls", "sys_exit_connect"),
];

/// Bytes of connected sockets: every write/sendto/read/recvfrom/close on
/// the host passes through these (one map lookup when the fd is not
/// watched; one more at read exit, on a map that is empty unless a plain
/// HTTP receive is in flight).
const SOCKET_TRACEPOINTS: [(&str, &str, &str); 7] = [
    ("sys_enter_write", "syscalls", "sys_enter_write"),
    ("sys_enter_sendto", "syscalls", "sys_enter_sendto"),
    ("sys_enter_read", "syscalls", "sys_enter_read"),
    ("sys_enter_recvfrom", "syscalls", "sys_enter_recvfrom"),
    ("sys_exit_read", "syscalls", "sys_exit_read"),
    ("sys_exit_recvfrom", "syscalls", "sys_exit_recvfrom"),
    ("sys_enter_close", "syscalls", "sys_enter_close"),
];

pub fn load(cfg: &Config) -> Result<Loaded> {
    if OBJECT.is_empty() {
        anyhow::bail!(
            "this sensor binary was built with AYA_BUILD_SKIP=1 and carries no kernel programs; \
             rebuild without it (cargo xtask run)"
        );
    }
    ensure_tracefs();
    let mut degraded = Vec::new();
    let offsets = match btf::task_offsets(Path::new(btf::VMLINUX)) {
        Ok(o) => o,
        Err(e) => {
            let why = format!("{e:#}");
            warn!(
                "kernel BTF unusable ({why}): fork events off; ppid, exit codes, argv and start times come from /proc only"
            );
            degraded.push(format!("process details from BTF: {why}"));
            TaskOffsets::default()
        }
    };
    let tgid = std::process::id();
    // Enforcement maps are pinned so isolation outlives the daemon.
    let pin_dir = crate::respond::isolate::prepare_pin_dir()
        .context("preparing /sys/fs/bpf/sensor for the enforcement maps")?;
    let mut bpf = EbpfLoader::new()
        .default_map_pin_directory(&pin_dir)
        .map_max_entries("EVENTS", cfg.ringbuf.bytes)
        .override_global("SENSOR_TGID", &tgid, true)
        .override_global("TASK_OFFSETS", &offsets, true)
        .override_global("WAKEUP_BYTES", &cfg.ringbuf.wakeup_bytes, true)
        .override_global("TLS_CAPTURE_BYTES", &cfg.tls.capture_bytes, true)
        .override_global("SOCK_CAPTURE_BYTES", &cfg.sockets.capture_bytes, true)
        .override_global(
            "SOCK_CAPTURE_SENDS",
            &if cfg.sockets.enabled {
                cfg.sockets.capture_sends
            } else {
                0
            },
            true,
        )
        .load(OBJECT)
        .context("loading the kernel programs (are you root, with CAP_BPF and CAP_PERFMON?)")?;

    // The object loaded: its ring buffer map exists; tracepoints follow.
    let mut capabilities = vec!["ringbuf", "tracepoint"];
    if offsets.valid == 1 {
        capabilities.push("btf");
    }
    let mut attachments = Vec::new();
    let socket_hooks = if cfg.sockets.enabled {
        &SOCKET_TRACEPOINTS[..]
    } else {
        degraded.push(
            "first-bytes capture (SNI, plain HTTP): disabled in config (sockets.enabled = false)"
                .into(),
        );
        &[]
    };
    for &(name, category, event) in TRACEPOINTS.iter().chain(socket_hooks) {
        let prog: &mut TracePoint = program(&mut bpf, name)?;
        prog.load()
            .with_context(|| format!("loading program {name}"))?;
        prog.attach(category, event)
            .with_context(|| format!("attaching {name} to tracepoint {category}/{event}"))?;
        attachments.push(Attachment {
            program: name,
            method: format!("tracepoint {category}/{event}"),
        });
    }
    if offsets.valid == 1 {
        let prog: &mut RawTracePoint = program(&mut bpf, "sched_process_fork")?;
        prog.load().context("loading program sched_process_fork")?;
        prog.attach("sched_process_fork")
            .context("attaching raw tracepoint sched_process_fork")?;
        attachments.push(Attachment {
            program: "sched_process_fork",
            method: "raw_tracepoint sched_process_fork".into(),
        });
        capabilities.push("raw_tracepoint");
    } else {
        degraded.push("fork events: need BTF to read the child task".into());
    }
    let tls_loaded = if cfg.tls.enabled {
        match crate::tls::load_programs(&mut bpf) {
            Ok(()) => {
                attachments.push(Attachment {
                    program: "tls",
                    method: "uprobe + uretprobe per TLS library file".into(),
                });
                capabilities.push("uprobe");
                true
            }
            Err(e) => {
                warn!(error = %format!("{e:#}"), "TLS plaintext capture unavailable");
                degraded.push(format!("TLS plaintext capture: {e:#}"));
                false
            }
        }
    } else {
        degraded.push("TLS plaintext capture: disabled in config (tls.enabled = false)".into());
        false
    };
    let isolation = match crate::procs::cgroups::find_cgroup2_root() {
        Some(root) => match crate::respond::isolate::attach(&mut bpf, &pin_dir, &root) {
            Ok(a) => {
                attachments.extend(a);
                capabilities.push("cgroup_sock_addr");
                capabilities.push("cgroup_skb");
                true
            }
            Err(e) => {
                warn!(error = %format!("{e:#}"), "network isolation unavailable");
                degraded.push(format!("network isolation: {e:#}"));
                false
            }
        },
        None => {
            degraded.push("network isolation: no cgroup2 filesystem mounted".into());
            false
        }
    };
    let unavailable = probe_program_types(&mut bpf, &mut capabilities);
    for a in &attachments {
        info!(program = a.program, method = %a.method, "attached");
    }
    Ok(Loaded {
        bpf,
        attachments,
        tls_loaded,
        isolation,
        degraded,
        capabilities,
        unavailable,
    })
}

/// Program types this kernel allows beyond those in use, proven by loading
/// (kprobes: attaching) a program that does nothing (`sensor-ebpf`'s
/// `probe.rs`), and then unloading it. Reported in `capabilities`; what is
/// refused is logged with the kernel's reason. Nothing here changes what
/// the sensor attaches: these are the facts a per-host choice of method
/// (fentry/kprobe for connect, BPF LSM for isolation) is made from.
fn probe_program_types(bpf: &mut Ebpf, capabilities: &mut Vec<&'static str>) -> Vec<String> {
    use aya::{
        Btf,
        programs::{FEntry, KProbe, Lsm},
    };
    let mut refused = Vec::new();
    match program::<KProbe>(bpf, "probe_kprobe").and_then(|p| {
        p.load()?;
        let link = p.attach("tcp_v4_connect", 0)?;
        p.detach(link)?;
        p.unload()?;
        Ok(())
    }) {
        Ok(()) => capabilities.push("kprobe"),
        Err(e) => refused.push(format!("kprobe: {e:#}")),
    }
    let btf = match Btf::from_sys_fs() {
        Ok(b) => b,
        Err(e) => {
            for t in ["fentry", "lsm"] {
                refused.push(format!("{t}: no kernel BTF to load it against ({e})"));
            }
            return refused;
        }
    };
    match program::<FEntry>(bpf, "probe_fentry").and_then(|p| {
        p.load("tcp_v4_connect", &btf)?;
        p.unload()?;
        Ok(())
    }) {
        Ok(()) => capabilities.push("fentry"),
        Err(e) => refused.push(format!("fentry: {e:#}")),
    }
    let lsm_active = std::fs::read_to_string("/sys/kernel/security/lsm")
        .is_ok_and(|l| l.trim().split(',').any(|m| m == "bpf"));
    match program::<Lsm>(bpf, "probe_lsm").and_then(|p| {
        p.load("socket_connect", &btf)?;
        p.unload()?;
        Ok(())
    }) {
        Ok(()) if lsm_active => capabilities.push("lsm"),
        Ok(()) => refused.push(
            "lsm: loads, but bpf is not in the active LSM list (boot with lsm=...,bpf)".into(),
        ),
        Err(e) => refused.push(format!("lsm: {e:#}")),
    }
    for r in &refused {
        info!(capability = %r, "program type not available here");
    }
    refused
}

pub fn program<'a, T>(bpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = bpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?;
    p.try_into()
        .with_context(|| format!("program {name} has an unexpected type"))
}

/// Tracepoints need tracefs; mount it where the kernel expects it if absent.
fn ensure_tracefs() {
    let dir = Path::new("/sys/kernel/tracing");
    if dir.join("events").exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return;
    }
    let status = std::process::Command::new("mount")
        .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
        .status();
    match status {
        Ok(s) if s.success() => info!("mounted tracefs at /sys/kernel/tracing"),
        _ => warn!("tracefs is not mounted and could not be mounted at /sys/kernel/tracing"),
    }
}

/// Reads the per-CPU counters, summed over CPUs.
pub struct Counters(PerCpuArray<MapData, u64>);

impl Counters {
    pub fn take(bpf: &mut Ebpf) -> Result<Self> {
        let map = bpf.take_map("COUNTERS").context("COUNTERS map missing")?;
        Ok(Self(PerCpuArray::try_from(map)?))
    }

    pub fn read(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL
            .iter()
            .map(|c| {
                let sum = self
                    .0
                    .get(&(*c as u32), 0)
                    .map(|v| v.iter().sum())
                    .unwrap_or(0);
                (c.name(), sum)
            })
            .collect()
    }
}
