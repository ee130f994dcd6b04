//! TLS plaintext capture: which files to probe, and attaching to them.
//!
//! Uprobes are per inode, so each library or executable is attached once,
//! and that covers every process mapping it (now and later). Files are
//! found at start (system library directories and every process's maps)
//! and again when a process execs or first connects, which is when a
//! container's own libssl or a newly installed runtime shows up.

pub mod awslc;
pub mod boringssl;
pub mod client_hello;
pub mod gotls;
pub mod open;
pub mod placement;
pub mod resolve;
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

use resolve::{Attach, Resolution};
use targets::{Candidate, FUNCTIONS, FileId, RET_PROGRAM};

#[derive(Clone, Debug)]
pub struct TlsTarget {
    pub path: PathBuf,
    /// The library recognised ("OpenSSL", "BoringSSL", ...).
    pub library: &'static str,
    /// Per function probed: how it was found and where, e.g.
    /// "SSL_write: signature at 0x320d3a0 (ssl_lib.cc reports ...)"; or,
    /// for a file refused, one line saying why nothing was attached.
    pub functions: Vec<String>,
}

/// `tls.skip`: files whose TLS is not probed.
#[derive(Clone, Debug, Default)]
pub struct Skip(Vec<(String, globset::GlobMatcher)>);

impl Skip {
    pub fn new(globs: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        for g in globs {
            let m = globset::Glob::new(g)
                .map_err(|e| format!("{g:?}: {e}"))?
                .compile_matcher();
            out.push((g.clone(), m));
        }
        Ok(Self(out))
    }

    /// The glob that matches `path`, if one does.
    fn matching(&self, path: &Path) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, m)| m.is_match(path))
            .map(|(g, _)| g.as_str())
    }
}

pub struct TlsAttacher {
    proc_root: PathBuf,
    skip: Skip,
    /// Files already attached or found to hold no TLS function.
    done: HashSet<FileId>,
    /// Files attached whose requests the kernel can hold one by one.
    hooked: HashSet<FileId>,
    /// Processes whose maps were read, by (pid, start ticks).
    scanned: HashSet<(u32, u64)>,
    pub attached: Vec<TlsTarget>,
    /// Files with a TLS library that could not be pinned down.
    pub refused: Vec<TlsTarget>,
    pub attach_errors: u64,
}

/// Loads the TLS programs into the kernel (attaching comes per file).
pub fn load_programs(bpf: &mut Ebpf) -> Result<()> {
    let names = FUNCTIONS
        .iter()
        .map(|(_, p)| *p)
        .chain([RET_PROGRAM])
        .chain(boringssl::PROGRAMS)
        .chain(gotls::PROGRAMS)
        .chain(awslc::PROGRAMS);
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
    pub fn new(proc_root: &Path, skip: Skip) -> Self {
        Self {
            proc_root: proc_root.to_path_buf(),
            skip,
            done: HashSet::new(),
            hooked: HashSet::new(),
            scanned: HashSet::new(),
            attached: Vec::new(),
            refused: Vec::new(),
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

    /// Whether `pid`'s requests can be held one by one: it maps (or is) a
    /// file with attached TLS hooks whose requests the kernel can match
    /// (not Go's: see `consider`). Reads its maps now, attaching new files.
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
        if let Some(glob) = self.skip.matching(&c.shown) {
            info!(file = %c.shown.display(), glob, "TLS not probed (tls.skip)");
            self.refused.push(TlsTarget {
                path: c.shown,
                library: "-",
                functions: vec![format!("skipped: tls.skip {glob:?}")],
            });
            return;
        }
        let started = std::time::Instant::now();
        let (resolution, file) = resolve::resolve_checked(&c.path, Some(c.id));
        let took_ms = started.elapsed().as_millis() as u64;
        let (library, functions) = match resolution {
            // Gone before it could be opened (its process exited): the
            // next process to run it gets it probed.
            Resolution::None if file.is_none() => {
                self.done.remove(&c.id);
                return;
            }
            Resolution::None => return,
            Resolution::Refused { library, reason } => {
                if library == "-" {
                    // `open::open` would not read it (a FIFO, a file being
                    // written, FUSE...): a process may be playing tricks.
                    warn!(file = %c.shown.display(), reason = %reason, "file not probed for TLS functions");
                } else {
                    warn!(file = %c.shown.display(), library, took_ms, reason = %reason, "TLS library found but not attached");
                }
                self.refused.push(TlsTarget {
                    path: c.shown,
                    library,
                    functions: vec![format!("refused: {reason}")],
                });
                return;
            }
            Resolution::Found { library, functions } => (library, functions),
        };
        // Attached through the daemon's own descriptor of the file it
        // read: the process that led to it may have exited meanwhile.
        let at = file.as_ref().map_or_else(|| c.path.clone(), |f| f.path());
        let mut ok = Vec::new();
        for f in functions {
            match attach(bpf, &f.attach, &at) {
                Ok(()) => ok.push(f.to_string()),
                Err(e) => {
                    self.attach_errors += 1;
                    warn!(function = %f, file = %c.shown.display(), error = %format!("{e:#}"), "TLS uprobe not attached");
                }
            }
        }
        if !ok.is_empty() {
            // Go and Codex (rustls) speak HTTP/2 to any server that offers
            // it, and the kernel's request patterns match HTTP/1.x only (at
            // SSL_write's entry, not at aws-lc's cipher): such an agent
            // under a hold stays held at its connections (as before its
            // TLS was hooked) rather than escape by its binary frames.
            if library != gotls::LIBRARY && library != awslc::LIBRARY {
                self.hooked.insert(c.id);
            }
            info!(file = %c.shown.display(), library, took_ms, functions = ?ok, "TLS capture attached");
            self.attached.push(TlsTarget {
                path: c.shown,
                library,
                functions: ok,
            });
        }
    }
}

/// Attaches each program at its place in `path`.
fn attach(bpf: &mut Ebpf, list: &[Attach], path: &Path) -> Result<()> {
    for a in list {
        let prog: &mut UProbe = bpf
            .program_mut(a.program)
            .context("uprobe program missing")?
            .try_into()?;
        let at = UProbeAttachLocation::AbsoluteOffset(a.file_offset);
        prog.attach([at], path, UProbeScope::AllProcesses)
            .with_context(|| {
                format!(
                    "attaching {} at {:#x} in {}",
                    a.program,
                    a.file_offset,
                    path.display()
                )
            })?;
    }
    Ok(())
}
