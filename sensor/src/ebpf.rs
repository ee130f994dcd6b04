//! Loading the embedded kernel programs and attaching them, each hook by
//! the first method of `attach::HOOKS` this kernel allows.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray},
    programs::{FExit, KProbe, RawTracePoint, TracePoint},
};
use sensor_common::{Counter, SockOffsets, TaskOffsets};
use tracing::{info, warn};

use crate::{
    attach::{self, Capability, Choice, MethodId, Proven},
    btf,
    config::Config,
};

/// The object built by `build.rs` from `sensor-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor-ebpf"));

/// How each program is attached on this host; printed at start and kept
/// for the status report.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub program: &'static str,
    pub method: String,
}

pub struct Loaded {
    pub bpf: Ebpf,
    pub attachments: Vec<Attachment>,
    /// The attach method chosen for each hook (`attach::HOOKS` order).
    pub choices: Vec<Choice>,
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

/// Process lifecycle tracepoints: (program, category, event).
const PROCESS_TRACEPOINTS: [(&str, &str, &str); 2] = [
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sched_process_exit", "sched", "sched_process_exit"),
];

const CONNECT_TRACEPOINTS: [(&str, &str, &str); 2] = [
    ("sys_enter_connect", "syscalls", "sys_enter_connect"),
    ("sys_exit_connect", "syscalls", "sys_exit_connect"),
];

/// The kernel function the fexit and kprobe connect methods attach to
/// (why this one: `sensor-ebpf/src/connect.rs`).
const CONNECT_FUNCTION: &str = "__sys_connect";

/// Bytes of connected sockets: every write/sendto/writev/sendmsg/sendmmsg/
/// read/recvfrom/close on the host passes through these (one map lookup
/// when the fd is not watched; one more at read exit, on a map that is
/// empty unless a plain HTTP receive is in flight; measured with
/// bpf_stats: 120-130 ns a run, the same for write, writev and sendmsg).
/// Every send syscall is hooked: a client's runtime, not its protocol,
/// picks one (tokio, hence rustls clients such as Codex, sends its
/// ClientHello with writev).
const SOCKET_TRACEPOINTS: [(&str, &str, &str); 13] = [
    ("sys_enter_write", "syscalls", "sys_enter_write"),
    ("sys_enter_sendto", "syscalls", "sys_enter_sendto"),
    ("sys_enter_writev", "syscalls", "sys_enter_writev"),
    ("sys_enter_sendmsg", "syscalls", "sys_enter_sendmsg"),
    ("sys_enter_sendmmsg", "syscalls", "sys_enter_sendmmsg"),
    ("sys_enter_read", "syscalls", "sys_enter_read"),
    ("sys_enter_recvfrom", "syscalls", "sys_enter_recvfrom"),
    ("sys_exit_read", "syscalls", "sys_exit_read"),
    ("sys_exit_recvfrom", "syscalls", "sys_exit_recvfrom"),
    ("sys_enter_close", "syscalls", "sys_enter_close"),
    // Other ways a socket's fd is closed (see sensor-ebpf/src/sockdata.rs).
    ("sys_enter_dup2", "syscalls", "sys_enter_dup2"),
    ("sys_enter_dup3", "syscalls", "sys_enter_dup3"),
    ("sys_enter_close_range", "syscalls", "sys_enter_close_range"),
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
    let mut proven = Proven::default();
    proven.set(
        Capability::Tracepoint,
        if Path::new("/sys/kernel/tracing/events").exists()
            || Path::new("/sys/kernel/debug/tracing/events").exists()
        {
            Ok(())
        } else {
            Err("tracefs is not mounted".into())
        },
    );
    let kernel_btf = btf::KernelBtf::open(Path::new(btf::VMLINUX));
    let offsets = match kernel_btf
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .and_then(btf::task_offsets_in)
    {
        Ok(o) => {
            proven.set(Capability::Btf, Ok(()));
            o
        }
        Err(e) => {
            let why = format!("{e:#}");
            warn!(
                "kernel BTF unusable ({why}): fork events off; ppid, exit codes, argv and start times come from /proc only"
            );
            degraded.push(format!("process details from BTF: {why}"));
            proven.set(Capability::Btf, Err(why));
            TaskOffsets::default()
        }
    };
    // Read now: they are globals of the object. Without them the LSM
    // method is not tried (its attempt says why).
    let sock_offsets = kernel_btf
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .and_then(btf::sock_offsets_in);
    drop(kernel_btf);
    // aya's own parse of the same BTF, done once: fentry, fexit and LSM
    // programs are loaded by it (and the loader would parse it again for
    // the object's BTF fix-ups).
    let aya_btf = Btf::from_sys_fs().map_err(|e| format!("{e}"));
    let cgroup_root = crate::procs::cgroups::find_cgroup2_root();
    proven.set(
        Capability::CgroupV2,
        cgroup_root
            .as_ref()
            .map(|_| ())
            .ok_or_else(|| "no cgroup2 filesystem mounted".to_string()),
    );
    let tgid = std::process::id();
    // Enforcement maps are pinned so isolation outlives the daemon.
    let pin_dir = crate::respond::isolate::prepare_pin_dir()
        .context("preparing /sys/fs/bpf/sensor for the enforcement maps")?;
    let mut loader = EbpfLoader::new();
    if let Ok(b) = &aya_btf {
        loader.btf(b);
    }
    let mut bpf = loader
        .default_map_pin_directory(&pin_dir)
        .map_max_entries("EVENTS", cfg.ringbuf.bytes)
        .override_global("SENSOR_TGID", &tgid, true)
        .override_global("TASK_OFFSETS", &offsets, true)
        .override_global(
            "SOCK_OFFSETS",
            sock_offsets.as_ref().unwrap_or(&SockOffsets::default()),
            true,
        )
        .override_global("WAKEUP_BYTES", &cfg.ringbuf.wakeup_bytes, true)
        .override_global("TLS_CAPTURE_BYTES", &cfg.tls.capture_bytes, true)
        .override_global(
            "TLS_RECORD_CAPTURE_BYTES",
            &cfg.tls.record_capture_bytes,
            true,
        )
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

    // The object loaded: its ring buffer map exists.
    let mut capabilities = vec!["ringbuf"];
    if proven.refusal(Capability::Tracepoint).is_none() {
        capabilities.push("tracepoint");
    }
    if offsets.valid == 1 {
        capabilities.push("btf");
    }
    // What the methods of the table need, proven before choosing.
    let unavailable = probe_program_types(&mut bpf, &aya_btf, &mut capabilities, &mut proven);
    let kernel_btf = aya_btf.ok();
    if cgroup_root.is_some() {
        capabilities.push("cgroup_v2");
    }

    let mut ctx = Attacher {
        bpf: &mut bpf,
        attachments: Vec::new(),
        kernel_btf: kernel_btf.as_ref(),
        sock_offsets: sock_offsets.map_err(|e| format!("{e:#}")),
        pin_dir: &pin_dir,
        cgroup_root: cgroup_root.as_deref(),
    };
    let mut choices = Vec::new();
    for hook in attach::HOOKS {
        let disabled = match hook.name {
            "socket_data" if !cfg.sockets.enabled => {
                Some("disabled in config (sockets.enabled = false)")
            }
            "tls" if !cfg.tls.enabled => Some("disabled in config (tls.enabled = false)"),
            _ => None,
        };
        let choice = match disabled {
            Some(why) => Choice::disabled(hook, why),
            None => attach::choose(hook, &proven, &cfg.attach.avoid, |id| ctx.attempt(id)),
        };
        match (&choice.chosen, &choice.unavailable) {
            (Some((method, _, detail)), _) => info!(
                hook = hook.name,
                method,
                detail = %detail,
                skipped = %skipped_text(&choice),
                "attach method chosen"
            ),
            (None, Some(why)) if hook.required => anyhow::bail!(
                "{}: no attach method works on this kernel: {why}",
                hook.feature
            ),
            (None, why) => warn!(
                hook = hook.name,
                why = why.as_deref().unwrap_or(""),
                "{}: unavailable",
                hook.feature
            ),
        }
        if let Some(d) = choice.degraded() {
            degraded.push(d);
        }
        choices.push(choice);
    }
    let attachments = ctx.attachments;
    let method = |hook: &str| {
        choices
            .iter()
            .find(|c| c.hook == hook)
            .and_then(Choice::method)
    };
    if method("fork").is_some() {
        capabilities.push("raw_tracepoint");
    }
    let tls_loaded = method("tls").is_some();
    if tls_loaded {
        capabilities.push("uprobe");
    }
    let isolation = match method("isolation") {
        Some("cgroup") => {
            capabilities.extend(["cgroup_sock_addr", "cgroup_skb"]);
            true
        }
        Some(_) => {
            if cgroup_root.is_some() {
                capabilities.push("cgroup_skb");
            } else {
                degraded.push(
                    "network isolation: no per-packet drops (no cgroup v2 for cgroup_skb): datagrams from any sender reach an isolated process's unconnected sockets".into(),
                );
            }
            true
        }
        None => false,
    };
    for a in &attachments {
        info!(program = a.program, method = %a.method, "attached");
    }
    Ok(Loaded {
        bpf,
        attachments,
        choices,
        tls_loaded,
        isolation,
        degraded,
        capabilities,
        unavailable,
    })
}

fn skipped_text(c: &Choice) -> String {
    if c.skipped.is_empty() {
        return "none".into();
    }
    c.skipped
        .iter()
        .map(|(m, why)| format!("{m} ({why})"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Attaches one method of the table; on failure leaves nothing of it
/// attached, so the next method can be tried.
struct Attacher<'a> {
    bpf: &'a mut Ebpf,
    attachments: Vec<Attachment>,
    kernel_btf: Option<&'a Btf>,
    sock_offsets: std::result::Result<SockOffsets, String>,
    pin_dir: &'a PathBuf,
    cgroup_root: Option<&'a Path>,
}

impl Attacher<'_> {
    fn attempt(&mut self, id: MethodId) -> Result<String> {
        match id {
            MethodId::ExecExitTracepoints => self.tracepoints(&PROCESS_TRACEPOINTS),
            MethodId::ConnectTracepoints => self.tracepoints(&CONNECT_TRACEPOINTS),
            MethodId::SocketDataTracepoints => self.tracepoints(&SOCKET_TRACEPOINTS),
            MethodId::ForkRawTracepoint => {
                let prog: &mut RawTracePoint = program(self.bpf, "sched_process_fork")?;
                prog.load().context("loading program sched_process_fork")?;
                if let Err(e) = prog.attach("sched_process_fork") {
                    let _ = prog.unload();
                    return Err(e).context("attaching raw tracepoint sched_process_fork");
                }
                self.attached("sched_process_fork", "raw_tracepoint sched_process_fork")
            }
            MethodId::TlsUprobes => {
                crate::tls::load_programs(self.bpf)?;
                self.attached("tls", "uprobe + uretprobe per TLS library file")
            }
            MethodId::ConnectFexit => {
                let btf = self.kernel_btf.context("no kernel BTF")?;
                let prog: &mut FExit = program(self.bpf, "connect_fexit")?;
                prog.load(CONNECT_FUNCTION, btf)
                    .with_context(|| format!("loading fexit {CONNECT_FUNCTION}"))?;
                if let Err(e) = prog.attach() {
                    let _ = prog.unload();
                    return Err(e).with_context(|| format!("attaching fexit {CONNECT_FUNCTION}"));
                }
                self.attached("connect_fexit", &format!("fexit {CONNECT_FUNCTION}"))
            }
            MethodId::ConnectKprobe => {
                let loaded = ["connect_kprobe", "connect_kretprobe"];
                let r = (|| -> Result<()> {
                    for name in loaded {
                        let prog: &mut KProbe = program(self.bpf, name)?;
                        prog.load()
                            .with_context(|| format!("loading program {name}"))?;
                        prog.attach(CONNECT_FUNCTION, 0)
                            .with_context(|| format!("attaching {name} to {CONNECT_FUNCTION}"))?;
                    }
                    Ok(())
                })();
                if let Err(e) = r {
                    self.unload::<KProbe>(&loaded);
                    return Err(e);
                }
                self.attached("connect_kprobe", &format!("kprobe {CONNECT_FUNCTION}"))?;
                self.attached(
                    "connect_kretprobe",
                    &format!("kretprobe {CONNECT_FUNCTION}"),
                )?;
                Ok(format!("kprobe + kretprobe {CONNECT_FUNCTION}"))
            }
            MethodId::IsolationLsm => {
                let btf = self.kernel_btf.context("no kernel BTF")?;
                self.sock_offsets
                    .as_ref()
                    .map_err(|e| anyhow::anyhow!("socket offsets from BTF: {e}"))?;
                let (a, detail) = crate::respond::isolate::attach_lsm(
                    self.bpf,
                    self.pin_dir,
                    btf,
                    self.cgroup_root,
                )?;
                self.attachments.extend(a);
                Ok(detail)
            }
            MethodId::IsolationCgroup => {
                let root = self.cgroup_root.context("no cgroup2 filesystem mounted")?;
                let (a, detail) =
                    crate::respond::isolate::attach_cgroup(self.bpf, self.pin_dir, root)?;
                self.attachments.extend(a);
                Ok(detail)
            }
        }
    }

    fn attached(&mut self, program: &'static str, method: &str) -> Result<String> {
        self.attachments.push(Attachment {
            program,
            method: method.into(),
        });
        Ok(method.into())
    }

    /// Loads and attaches tracepoints; on a failure unloads those it did.
    fn tracepoints(&mut self, list: &[(&'static str, &str, &str)]) -> Result<String> {
        let r = (|| -> Result<()> {
            for &(name, category, event) in list {
                let prog: &mut TracePoint = program(self.bpf, name)?;
                prog.load()
                    .with_context(|| format!("loading program {name}"))?;
                prog.attach(category, event).with_context(|| {
                    format!("attaching {name} to tracepoint {category}/{event}")
                })?;
            }
            Ok(())
        })();
        let names: Vec<&str> = list.iter().map(|t| t.0).collect();
        if let Err(e) = r {
            self.unload::<TracePoint>(&names);
            return Err(e);
        }
        for &(name, category, event) in list {
            self.attached(name, &format!("tracepoint {category}/{event}"))?;
        }
        Ok(format!(
            "tracepoints {}",
            list.iter()
                .map(|(_, c, e)| format!("{c}/{e}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// Unloading detaches a program's links too.
    fn unload<T>(&mut self, names: &[&str])
    where
        for<'b> &'b mut T:
            TryFrom<&'b mut aya::programs::Program, Error = aya::programs::ProgramError>,
        T: Unload,
    {
        for name in names {
            if let Ok(p) = program::<T>(self.bpf, name) {
                let _ = p.unload_program();
            }
        }
    }
}

/// `unload` of the program types a failed attempt may leave loaded.
trait Unload {
    fn unload_program(&mut self) -> Result<(), aya::programs::ProgramError>;
}

impl Unload for TracePoint {
    fn unload_program(&mut self) -> Result<(), aya::programs::ProgramError> {
        self.unload()
    }
}

impl Unload for KProbe {
    fn unload_program(&mut self) -> Result<(), aya::programs::ProgramError> {
        self.unload()
    }
}

/// Program types this kernel allows beyond the always-present ones,
/// proven by loading (kprobes: attaching) a program that does nothing
/// (`sensor-ebpf`'s `probe.rs`), and then unloading it. Each is reported
/// in `capabilities` when proven; what is refused is logged with the
/// kernel's reason. The table of attach methods is chosen from these.
/// Returns the refusals.
fn probe_program_types(
    bpf: &mut Ebpf,
    btf: &std::result::Result<Btf, String>,
    capabilities: &mut Vec<&'static str>,
    proven: &mut Proven,
) -> Vec<String> {
    use aya::programs::{FEntry, Lsm};
    let mut refused = Vec::new();
    let mut note = |cap: Capability, r: Result<()>, refused: &mut Vec<String>| match r {
        Ok(()) => {
            capabilities.push(cap.name());
            proven.set(cap, Ok(()));
        }
        Err(e) => {
            let why = format!("{e:#}");
            refused.push(format!("{cap}: {why}"));
            proven.set(cap, Err(why));
        }
    };
    let r = program::<KProbe>(bpf, "probe_kprobe").and_then(|p| {
        p.load()?;
        let link = p.attach("tcp_v4_connect", 0)?;
        p.detach(link)?;
        p.unload()?;
        Ok(())
    });
    note(Capability::Kprobe, r, &mut refused);
    let btf = match btf {
        Ok(b) => b,
        Err(e) => {
            for cap in [Capability::Fentry, Capability::Lsm] {
                note(
                    cap,
                    Err(anyhow::anyhow!("no kernel BTF to load it against ({e})")),
                    &mut refused,
                );
            }
            log_refused(&refused);
            return refused;
        }
    };
    let r = program::<FEntry>(bpf, "probe_fentry").and_then(|p| {
        p.load("tcp_v4_connect", btf)?;
        p.unload()?;
        Ok(())
    });
    note(Capability::Fentry, r, &mut refused);
    let lsm_active = std::fs::read_to_string("/sys/kernel/security/lsm")
        .is_ok_and(|l| l.trim().split(',').any(|m| m == "bpf"));
    let r = program::<Lsm>(bpf, "probe_lsm").and_then(|p| {
        p.load("socket_connect", btf)?;
        p.unload()?;
        anyhow::ensure!(
            lsm_active,
            "loads, but bpf is not in the active LSM list (boot with lsm=...,bpf)"
        );
        Ok(())
    });
    note(Capability::Lsm, r, &mut refused);
    log_refused(&refused);
    refused
}

fn log_refused(refused: &[String]) {
    for r in refused {
        info!(capability = %r, "program type not available here");
    }
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
