//! TLS plaintext capture: which files to probe, and attaching to them.
//!
//! Uprobes are per inode, so each library or executable is attached once,
//! and that covers every process mapping it (now and later). Files are
//! found at start (system library directories and every process's maps)
//! and again when a process execs or first connects, which is when a
//! container's own libssl or a newly installed runtime shows up.

pub mod client_hello;
pub mod placement;
pub mod targets;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeScope},
    },
};
use tracing::{info, warn};

use targets::{Candidate, FUNCTIONS, FileId};

/// The return program shared by every TLS function.
const RET_PROGRAM: &str = "tls_ret";

#[derive(Clone, Debug)]
pub struct TlsTarget {
    pub path: PathBuf,
    /// Functions probed, by name, or "SSL_read_ex+SSL_read at 0x35290"
    /// for an internal function that serves both (`placement`).
    pub functions: Vec<String>,
}

pub struct TlsAttacher {
    proc_root: PathBuf,
    /// Files already attached or found to hold no TLS function.
    done: HashSet<FileId>,
    /// Files attached.
    hooked: HashSet<FileId>,
    /// Processes whose maps were read, by (pid, start ticks).
    scanned: HashSet<(u32, u64)>,
    pub attached: Vec<TlsTarget>,
    pub attach_errors: u64,
}

/// Loads the TLS programs into the kernel (attaching comes per file).
pub fn load_programs(bpf: &mut Ebpf) -> Result<()> {
    let names = FUNCTIONS.iter().map(|(_, p)| *p).chain([RET_PROGRAM]);
    for name in names {
        let prog: &mut UProbe = bpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing from the object"))?
            .try_into()
            .with_context(|| format!("program {name} is not a uprobe"))?;
        prog.load()
            .with_context(|| format!("loading uprobe program {name}"))?;
    }
    Ok(())
}

impl TlsAttacher {
    pub fn new(proc_root: &Path) -> Self {
        Self {
            proc_root: proc_root.to_path_buf(),
            done: HashSet::new(),
            hooked: HashSet::new(),
            scanned: HashSet::new(),
            attached: Vec::new(),
            attach_errors: 0,
        }
    }

    /// The host's own TLS libraries, then every running process.
    pub fn scan_host(&mut self, bpf: &mut Ebpf, pids: impl IntoIterator<Item = (u32, u64)>) {
        for c in targets::system_libraries()
            .into_iter()
            .chain(targets::system_runtimes())
        {
            self.consider(bpf, c);
        }
        for (pid, start) in pids {
            self.scan_process(bpf, pid, start);
        }
    }

    /// Reads one process's maps (once per process) and attaches to new files.
    pub fn scan_process(&mut self, bpf: &mut Ebpf, pid: u32, start_ticks: u64) {
        if self.scanned.len() > 200_000 {
            self.scanned.clear(); // bound memory; a rescan is harmless
        }
        if !self.scanned.insert((pid, start_ticks)) {
            return;
        }
        self.rescan_process(bpf, pid);
    }

    /// Reads the maps again even if the process was seen (after an exec, a
    /// process maps a new set of libraries).
    pub fn rescan_process(&mut self, bpf: &mut Ebpf, pid: u32) {
        let (libs, exe) = targets::of_process(&self.proc_root, pid);
        for c in libs.into_iter().chain(exe) {
            self.consider(bpf, c);
        }
    }

    /// Whether `pid`'s TLS plaintext is visible: it maps (or is) a file
    /// with attached TLS hooks. Reads its maps now, attaching new files.
    pub fn hooks_process(&mut self, bpf: &mut Ebpf, pid: u32) -> bool {
        let (libs, exe) = targets::of_process(&self.proc_root, pid);
        let mut any = false;
        for c in libs.into_iter().chain(exe) {
            let id = c.id;
            self.consider(bpf, c);
            any |= self.hooked.contains(&id);
        }
        any
    }

    fn consider(&mut self, bpf: &mut Ebpf, c: Candidate) {
        if !self.done.insert(c.id) {
            return;
        }
        let plan = targets::probe_plan(&c.path);
        if plan.exported.is_empty() {
            return;
        }
        let mut ok = Vec::new();
        for i in &plan.internals {
            let what = format!("{} at {:#x}", i.covers.join("+"), i.vaddr);
            match attach(
                bpf,
                i.program,
                UProbeAttachLocation::AbsoluteOffset(i.file_offset),
                &c.path,
            ) {
                Ok(()) => ok.push(what),
                Err(e) => {
                    self.attach_errors += 1;
                    warn!(functions = %what, file = %c.path.display(), error = %format!("{e:#}"), "TLS uprobe not attached");
                }
            }
        }
        for (f, program) in plan.by_symbol() {
            match attach(bpf, program, UProbeAttachLocation::Symbol(f), &c.path) {
                Ok(()) => ok.push(f.to_string()),
                Err(e) => {
                    self.attach_errors += 1;
                    warn!(function = f, file = %c.path.display(), error = %format!("{e:#}"), "TLS uprobe not attached");
                }
            }
        }
        if !ok.is_empty() {
            self.hooked.insert(c.id);
            info!(file = %c.path.display(), functions = ?ok, "TLS capture attached");
            self.attached.push(TlsTarget {
                path: c.path,
                functions: ok,
            });
        }
    }
}

/// Attaches `entry` and the shared return program at `at` in `path`.
fn attach(bpf: &mut Ebpf, entry: &str, at: UProbeAttachLocation<'_>, path: &Path) -> Result<()> {
    for prog_name in [entry, RET_PROGRAM] {
        let prog: &mut UProbe = bpf
            .program_mut(prog_name)
            .context("uprobe program missing")?
            .try_into()?;
        prog.attach([at], path, UProbeScope::AllProcesses)
            .with_context(|| format!("attaching {prog_name} to {at:?} in {}", path.display()))?;
    }
    Ok(())
}
