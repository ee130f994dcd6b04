//! Process table keyed by (pid, start time), seeded from /proc at start and
//! kept current by exec/fork/exit records.
//!
//! A pid alone is never an identity: pids are reused, so every lookup uses
//! the process start time the kernel reported with the record.

pub mod cgroups;
pub mod container;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use procfs::process::Process as ProcfsProcess;
use serde::Serialize;

pub use cgroups::CgroupResolver;
pub use container::ContainerInfo;

use crate::{
    clock::ns_to_ticks,
    config::ProcsConfig,
    decode::{argv, c_str},
    redact,
};
use sensor_common::{EventHeader, ExecRecord, ExitRecord, ForkRecord};

/// Most bytes of a command line kept, and of one argument: a 2 MB argv
/// would otherwise ride on every event of its process (and fill the audit
/// store). What is cut is said, with its size.
const CMDLINE_MAX: usize = 16 * 1024;
const ARG_MAX: usize = 4096;

/// `args` (redacted already) within `CMDLINE_MAX` and `ARG_MAX`.
fn bounded(args: Vec<String>) -> Vec<String> {
    let n = args.len();
    let mut out = Vec::with_capacity(n.min(64));
    let mut total = 0;
    for (i, mut a) in args.into_iter().enumerate() {
        if total >= CMDLINE_MAX {
            out.push(format!("…({} more arguments)", n - i));
            break;
        }
        if a.len() > ARG_MAX {
            let mut cut = ARG_MAX;
            while !a.is_char_boundary(cut) {
                cut -= 1;
            }
            let more = a.len() - cut;
            a.truncate(cut);
            a.push_str(&format!("…(+{more} bytes)"));
        }
        total += a.len();
        out.push(a);
    }
    out
}

/// (pid, start time in clock ticks since boot). Start 0 means unknown.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ProcKey {
    pub pid: u32,
    pub start_ticks: u64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Process {
    pub pid: u32,
    pub start_ticks: u64,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    /// Executable path; empty when it could not be learned.
    pub exe: String,
    /// Arguments, with credentials replaced (see `redact`).
    pub cmdline: Vec<String>,
    /// cgroup v2 path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// cgroup v2 id the kernel last reported for it (0: not yet seen).
    #[serde(skip)]
    pub cgroup_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// True when the entry came from the record alone (the process was gone
    /// before /proc could be read and no exec of it was seen).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// Credentials its environment held at exec (fingerprints only): shown
    /// on its exec event, not on every event.
    #[serde(skip)]
    pub held: Vec<crate::credentials::HeldCredential>,
}

struct Entry {
    process: Arc<Process>,
    exited_at: Option<Instant>,
}

pub struct ProcessTable {
    entries: HashMap<ProcKey, Entry>,
    /// pid → start of the live (or latest) process with that pid.
    latest: HashMap<u32, u64>,
    proc_root: PathBuf,
    cgroups: CgroupResolver,
    retention: Duration,
    max_entries: usize,
    /// Entries removed to respect `max_entries` before their retention ended.
    pub evicted: u64,
    /// Fingerprints held credentials; None: environments are not read.
    fingerprinter: Option<std::sync::Arc<crate::http::fingerprint::Fingerprinter>>,
    secret_env: Vec<String>,
}

impl ProcessTable {
    pub fn new(cfg: &ProcsConfig) -> Self {
        Self {
            entries: HashMap::new(),
            latest: HashMap::new(),
            proc_root: cfg.proc_root.clone(),
            cgroups: CgroupResolver::new(cgroups::find_cgroup2_root()),
            retention: Duration::from_secs(cfg.exited_retention_secs),
            max_entries: cfg.max_entries,
            evicted: 0,
            fingerprinter: None,
            secret_env: cfg.secret_env.clone(),
        }
    }

    /// From now on, each exec's environment is read for held credentials,
    /// fingerprinted with `f` (the one traffic credentials get).
    pub fn read_held_credentials(
        &mut self,
        f: std::sync::Arc<crate::http::fingerprint::Fingerprinter>,
    ) {
        self.fingerprinter = Some(f);
    }

    /// The credentials `pid`'s environment holds, those `from` held
    /// counting as inherited.
    fn held_of(
        &self,
        pid: u32,
        exe: &str,
        cmdline: &[String],
        from: &[crate::credentials::HeldCredential],
    ) -> Vec<crate::credentials::HeldCredential> {
        let Some(f) = &self.fingerprinter else {
            return Vec::new();
        };
        let Some(environ) = crate::credentials::env::read_environ(&self.proc_root, pid) else {
            return Vec::new();
        };
        let here = crate::credentials::Origin {
            pid,
            exe: exe.to_string(),
            cmdline: cmdline.join(" ").chars().take(160).collect(),
        };
        crate::credentials::env::held(
            &environ,
            &self.secret_env,
            &|v: &[u8]| f.fingerprint(v),
            from,
            here,
        )
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Loads every process visible in /proc; returns how many.
    pub fn seed(&mut self) -> usize {
        let Ok(all) = procfs::process::all_processes_with_root(&self.proc_root) else {
            return 0;
        };
        let mut found: Vec<Process> = all.flatten().filter_map(|p| read_proc(&p)).collect();
        // Oldest first, so a parent's credentials are known when its
        // children are read: one a child holds with the parent's
        // fingerprint is inherited from it (as at an exec the sensor
        // sees), and its origin is the parent's. A process whose parent
        // already exited counts as introducing what it holds.
        found.sort_by_key(|p| p.start_ticks);
        let n = found.len();
        for mut proc_ in found {
            let parent = self
                .latest_of(proc_.ppid)
                .filter(|parent| parent.start_ticks <= proc_.start_ticks);
            let from = parent.as_ref().map_or(&[][..], |p| &p.held[..]);
            proc_.held = self.held_of(proc_.pid, &proc_.exe, &proc_.cmdline, from);
            self.insert(proc_);
        }
        n
    }

    /// (pid, start ticks) of every process not known to have exited.
    pub fn live_keys(&self) -> Vec<(u32, u64)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.exited_at.is_none())
            .map(|(k, _)| (k.pid, k.start_ticks))
            .collect()
    }

    /// Whether the process is known to have exited (its entry is kept for
    /// `exited_retention_secs`).
    pub fn exited(&self, key: &ProcKey) -> bool {
        self.entries.get(key).is_some_and(|e| e.exited_at.is_some())
    }

    pub fn get(&self, key: &ProcKey) -> Option<&Arc<Process>> {
        self.entries.get(key).map(|e| &e.process)
    }

    fn insert(&mut self, p: Process) -> Arc<Process> {
        let key = ProcKey {
            pid: p.pid,
            start_ticks: p.start_ticks,
        };
        let latest = self.latest.entry(p.pid).or_insert(p.start_ticks);
        if p.start_ticks >= *latest {
            *latest = p.start_ticks;
        }
        let arc = Arc::new(p);
        self.entries.insert(
            key,
            Entry {
                process: arc.clone(),
                exited_at: None,
            },
        );
        arc
    }

    fn key_of(header: &EventHeader) -> ProcKey {
        ProcKey {
            pid: header.tgid,
            start_ticks: ns_to_ticks(header.start_ns),
        }
    }

    /// The process a record is about. Falls back to /proc, then to what the
    /// record itself says (comm, uid), so every event names a process.
    pub fn resolve(&mut self, header: &EventHeader) -> Arc<Process> {
        let mut key = Self::key_of(header);
        if header.start_ns == 0 {
            // No BTF: the kernel could not tell the start time; the newest
            // process with this pid is the best guess.
            if let Some(&start) = self.latest.get(&key.pid) {
                key.start_ticks = start;
            }
        }
        if let Some(e) = self.entries.get(&key) {
            if header.cgroup_id == e.process.cgroup_id || header.cgroup_id == 0 {
                return e.process.clone();
            }
            // Moved to another cgroup since we last looked (or first record
            // with an id): re-derive its cgroup and container.
            let mut p = (*e.process).clone();
            self.apply_cgroup(&mut p, header.cgroup_id, None);
            return self.insert(p);
        }
        if let Some(mut p) = ProcfsProcess::new_with_root(self.proc_root.join(key.pid.to_string()))
            .ok()
            .and_then(|p| read_proc(&p))
            && (header.start_ns == 0 || p.start_ticks == key.start_ticks)
        {
            p.cgroup_id = header.cgroup_id;
            return self.insert(p);
        }
        let mut p = Process {
            pid: key.pid,
            start_ticks: key.start_ticks,
            ppid: 0,
            uid: header.uid,
            comm: c_str(&header.comm),
            exe: String::new(),
            cmdline: Vec::new(),
            cgroup: None,
            cgroup_id: 0,
            container: None,
            partial: true,
            held: Vec::new(),
        };
        self.apply_cgroup(&mut p, header.cgroup_id, None);
        self.insert(p)
    }

    /// Sets cgroup path and container from the kernel's cgroup id, falling
    /// back to a /proc/PID/cgroup text (which also carries v1 hierarchies,
    /// where container runtimes on hybrid hosts put their ids).
    fn apply_cgroup(&mut self, p: &mut Process, cgroup_id: u64, proc_text: Option<&str>) {
        p.cgroup_id = cgroup_id;
        let v2 = self.cgroups.path(cgroup_id);
        let from_v2 = v2.as_deref().and_then(container::parse);
        let from_text = proc_text.and_then(container::from_proc_cgroup);
        if let Some(path) = v2.or_else(|| proc_text.and_then(container::v2_path)) {
            p.cgroup = Some(path);
        }
        if let Some(c) = from_v2.or(from_text) {
            p.container = Some(c);
        }
    }

    /// exec: same process, new image. Argv comes from the record (read in the
    /// kernel), so even processes that exit at once keep their command line.
    pub fn on_exec(&mut self, rec: &ExecRecord) -> Arc<Process> {
        let key = Self::key_of(&rec.header);
        let filename =
            lossy(&rec.filename[..usize::from(rec.filename_len).min(rec.filename.len())]);
        let args = argv(&rec.args[..usize::from(rec.args_len).min(rec.args.len())]);
        let dir = self.proc_root.join(key.pid.to_string());
        let live = ProcfsProcess::new_with_root(dir).ok();
        let exe = if Path::new(&filename).is_absolute() {
            filename
        } else {
            live.as_ref()
                .and_then(|p| p.exe().ok())
                .map(|p| p.display().to_string())
                .unwrap_or(filename)
        };
        // Redacted here, where every command line enters: events only ever
        // see the stored copy.
        let cmdline = bounded(redact::argv(&if args.is_empty() {
            live.as_ref()
                .and_then(|p| p.cmdline().ok())
                .unwrap_or_default()
        } else {
            args
        }));
        let cgroup_text = live.as_ref().and_then(read_cgroup);
        // exec does not move cgroups: the previous image's entry (or the
        // parent's) is the fallback when the process is already gone.
        let inherited = self.get(&key).cloned().or_else(|| self.latest_of(rec.ppid));
        let mut p = Process {
            pid: key.pid,
            start_ticks: key.start_ticks,
            ppid: rec.ppid,
            uid: rec.header.uid,
            comm: c_str(&rec.header.comm),
            exe,
            cmdline,
            cgroup: inherited.as_ref().and_then(|p| p.cgroup.clone()),
            cgroup_id: 0,
            container: inherited.as_ref().and_then(|p| p.container.clone()),
            partial: false,
            held: Vec::new(),
        };
        // Read now: the environment of a process that already exited is
        // gone (then nothing is known to be held).
        let from = inherited.as_ref().map_or(&[][..], |p| &p.held[..]);
        p.held = self.held_of(p.pid, &p.exe, &p.cmdline, from);
        self.apply_cgroup(&mut p, rec.header.cgroup_id, cgroup_text.as_deref());
        self.insert(p)
    }

    /// fork: the child starts as a copy of its parent.
    pub fn on_fork(&mut self, rec: &ForkRecord) -> (Arc<Process>, Arc<Process>) {
        let parent = self.resolve(&rec.header);
        let mut child = (*parent).clone();
        child.pid = rec.child_tgid;
        child.start_ticks = ns_to_ticks(rec.child_start_ns);
        child.ppid = parent.pid;
        (parent, self.insert(child))
    }

    /// exit: kept for `exited_retention_secs` for late records.
    pub fn on_exit(&mut self, rec: &ExitRecord) -> Arc<Process> {
        let p = self.resolve(&rec.header);
        if let Some(e) = self.entries.get_mut(&ProcKey {
            pid: p.pid,
            start_ticks: p.start_ticks,
        }) {
            e.exited_at = Some(Instant::now());
        }
        p
    }

    fn latest_of(&self, pid: u32) -> Option<Arc<Process>> {
        let start = *self.latest.get(&pid)?;
        self.get(&ProcKey {
            pid,
            start_ticks: start,
        })
        .cloned()
    }

    /// Drops exited entries past retention, then the oldest exited ones
    /// while the table is over its bound.
    pub fn sweep(&mut self, now: Instant) {
        let retention = self.retention;
        self.entries.retain(|_, e| {
            e.exited_at
                .is_none_or(|t| now.duration_since(t) < retention)
        });
        if self.entries.len() > self.max_entries {
            let mut exited: Vec<(Instant, ProcKey)> = self
                .entries
                .iter()
                .filter_map(|(k, e)| e.exited_at.map(|t| (t, *k)))
                .collect();
            exited.sort();
            let excess = self.entries.len() - self.max_entries;
            for (_, k) in exited.into_iter().take(excess) {
                self.entries.remove(&k);
                self.evicted += 1;
            }
        }
        let entries = &self.entries;
        self.latest.retain(|pid, start| {
            entries.contains_key(&ProcKey {
                pid: *pid,
                start_ticks: *start,
            })
        });
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read_cgroup(p: &ProcfsProcess) -> Option<String> {
    // Through the process's own directory fd, so a reused pid cannot be read
    // by mistake.
    let mut text = String::new();
    std::io::Read::read_to_string(&mut p.open_relative("cgroup").ok()?, &mut text).ok()?;
    Some(text)
}

/// A process as /proc shows it; None if it vanished while being read.
fn read_proc(p: &ProcfsProcess) -> Option<Process> {
    let stat = p.stat().ok()?;
    let uid = p.status().ok().map(|s| s.ruid).unwrap_or(0);
    let cgroup_text = read_cgroup(p);
    Some(Process {
        pid: stat.pid as u32,
        start_ticks: stat.starttime,
        ppid: stat.ppid as u32,
        uid,
        comm: stat.comm.clone(),
        exe: p.exe().map(|e| e.display().to_string()).unwrap_or_default(),
        cmdline: bounded(redact::argv(&p.cmdline().unwrap_or_default())),
        cgroup: cgroup_text.as_deref().and_then(container::v2_path),
        cgroup_id: 0,
        container: cgroup_text.as_deref().and_then(container::from_proc_cgroup),
        partial: false,
        held: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tests::{exec, header};
    use sensor_common::EventKind;

    fn table() -> ProcessTable {
        ProcessTable::new(&ProcsConfig::default())
    }

    #[test]
    fn a_huge_command_line_is_kept_bounded_and_says_what_was_cut() {
        // 12 arguments of 120 KiB (each under the kernel's 128 KiB per
        // argument): 1.4 MB read from /proc/PID/cmdline.
        let big = "x".repeat(120 * 1024);
        // sh runs `sleep 5` (not as its last command: it is not exec'd);
        // the rest is its $0.. (kept in its argv).
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5; exit 0", "sh"])
            .args(std::iter::repeat_n(&big, 12))
            .spawn()
            .unwrap();
        let mut t = table();
        t.seed();
        let pid = child.id();
        let start = t
            .live_keys()
            .into_iter()
            .find(|(p, _)| *p == pid)
            .expect("the child in the table")
            .1;
        let p = t
            .get(&ProcKey {
                pid,
                start_ticks: start,
            })
            .unwrap()
            .clone();
        let _ = child.kill();
        let _ = child.wait();
        let total: usize = p.cmdline.iter().map(String::len).sum();
        assert!(total < CMDLINE_MAX + 2 * ARG_MAX, "{total}");
        assert_eq!(p.cmdline[..4], ["sh", "-c", "sleep 5; exit 0", "sh"]);
        assert!(
            p.cmdline[4].ends_with("…(+118784 bytes)"),
            "{}",
            &p.cmdline[4][4090..]
        );
        assert!(
            p.cmdline.last().unwrap().ends_with("more arguments)"),
            "{:?}",
            p.cmdline.last()
        );
        // Short ones are kept whole; a cut never splits a character.
        assert_eq!(bounded(vec!["a".into(), "b".into()]), ["a", "b"]);
        let wide = "é".repeat(3000);
        assert!(bounded(vec![wide])[0].contains("…(+"));
    }

    #[test]
    fn processes_older_than_the_sensor_inherit_their_parents_credentials() {
        // A pipeline step that introduced a key, and the tool it started,
        // both running before the table is seeded.
        let mut step = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .env("SEEDTEST_API_KEY", "sk-seedtest-PLANTED")
            .spawn()
            .unwrap();
        let sh = step.id();
        let mut t = table();
        t.read_held_credentials(std::sync::Arc::new(
            crate::http::fingerprint::Fingerprinter::new([7; 32]),
        ));
        // The background sleep exists once sh forked it.
        let deadline = Instant::now() + Duration::from_secs(5);
        let sleep = loop {
            let kids = std::fs::read_to_string(format!("/proc/{sh}/task/{sh}/children"))
                .unwrap_or_default();
            if let Some(k) = kids.split_whitespace().next() {
                break k.parse::<u32>().unwrap();
            }
            assert!(Instant::now() < deadline, "sh never started sleep");
            std::thread::sleep(Duration::from_millis(10));
        };
        t.seed();
        let _ = step.kill();
        let _ = std::process::Command::new("kill")
            .arg(sleep.to_string())
            .status();
        let _ = step.wait();
        let held_by = |pid| {
            t.latest_of(pid)
                .unwrap()
                .held
                .iter()
                .find(|h| h.var == "SEEDTEST_API_KEY")
                .cloned()
                .unwrap_or_else(|| panic!("{pid} holds no SEEDTEST_API_KEY"))
        };
        let (introduced, inherited) = (held_by(sh), held_by(sleep));
        assert!(!introduced.inherited && introduced.origin.pid == sh);
        assert!(inherited.inherited, "{inherited:?}");
        assert_eq!(inherited.origin.pid, sh, "{inherited:?}");
        assert_eq!(inherited.hops, 1);
        assert_eq!(inherited.fingerprint, introduced.fingerprint);
        assert!(!format!("{inherited:?}{introduced:?}").contains("PLANTED"));
    }

    #[test]
    fn seed_finds_this_test_process() {
        let mut t = table();
        assert!(t.seed() > 1);
        let me = std::process::id();
        let start = procfs::process::Process::myself()
            .unwrap()
            .stat()
            .unwrap()
            .starttime;
        let p = t
            .get(&ProcKey {
                pid: me,
                start_ticks: start,
            })
            .expect("self in table");
        // As /proc shows this process: the whole of each, not a part.
        assert_eq!(
            p.exe,
            std::env::current_exe().unwrap().display().to_string()
        );
        let args: Vec<String> = std::env::args().collect();
        assert_eq!(p.cmdline, redact::argv(&args));
        assert_eq!(p.ppid, std::os::unix::process::parent_id());
    }

    #[test]
    fn exec_fork_exit_lifecycle() {
        // A pid that is not alive, so nothing comes from /proc.
        let pid = 4_000_000;
        let mut t = table();
        let mut e = exec(pid, 1, "/usr/bin/curl", &["curl", "-s", "http://x/"]);
        e.header.start_ns = 2_000_000_000;
        let p = t.on_exec(&e);
        assert_eq!(p.exe, "/usr/bin/curl");
        assert_eq!(p.cmdline, ["curl", "-s", "http://x/"]);
        assert_eq!((p.pid, p.start_ticks, p.ppid), (pid, 200, 1));

        // A connect record from the same process resolves to the exec'd entry.
        let mut h = header(EventKind::Connect, pid);
        h.start_ns = 2_000_000_000;
        assert_eq!(t.resolve(&h).exe, "/usr/bin/curl");

        // fork: child inherits the image, parent is recorded.
        let f = ForkRecord {
            header: h,
            child_tgid: pid + 1,
            _pad: 0,
            child_start_ns: 3_000_000_000,
        };
        let (_, child) = t.on_fork(&f);
        assert_eq!(
            (child.pid, child.ppid, child.start_ticks),
            (pid + 1, pid, 300)
        );
        assert_eq!(child.exe, "/usr/bin/curl");

        // exit: the entry survives until retention passes.
        let x = ExitRecord {
            header: h,
            exit_code: 0,
            _pad: 0,
        };
        t.on_exit(&x);
        t.sweep(Instant::now());
        assert_eq!(t.resolve(&h).exe, "/usr/bin/curl");
        t.sweep(Instant::now() + Duration::from_secs(3600));
        assert!(
            t.get(&ProcKey {
                pid,
                start_ticks: 200
            })
            .is_none()
        );
        // The child never exited, so it stays.
        assert!(
            t.get(&ProcKey {
                pid: pid + 1,
                start_ticks: 300
            })
            .is_some()
        );
    }

    #[test]
    fn pid_reuse_keeps_processes_apart() {
        let pid = 4_000_100;
        let mut t = table();
        let mut a = exec(pid, 1, "/bin/a", &["a"]);
        a.header.start_ns = 1_000_000_000;
        let mut b = exec(pid, 1, "/bin/b", &["b"]);
        b.header.start_ns = 9_000_000_000;
        t.on_exec(&a);
        t.on_exec(&b);
        let mut h = header(EventKind::Connect, pid);
        h.start_ns = 1_000_000_000;
        assert_eq!(t.resolve(&h).exe, "/bin/a");
        h.start_ns = 9_000_000_000;
        assert_eq!(t.resolve(&h).exe, "/bin/b");
    }

    #[test]
    fn unknown_dead_process_is_partial_but_named() {
        let mut t = table();
        let h = header(EventKind::Connect, 4_000_200);
        let p = t.resolve(&h);
        assert!(p.partial);
        assert_eq!(p.comm, "curl");
        assert_eq!(p.uid, 1000);
    }

    #[test]
    fn table_is_bounded() {
        let cfg = ProcsConfig {
            max_entries: 1024,
            ..ProcsConfig::default()
        };
        let mut t = ProcessTable::new(&cfg);
        for i in 0..2000u32 {
            let mut h = header(EventKind::Exit, 4_100_000 + i);
            h.start_ns = 1_000_000_000;
            t.on_exit(&ExitRecord {
                header: h,
                exit_code: 0,
                _pad: 0,
            });
        }
        t.sweep(Instant::now());
        assert!(t.len() <= 1024, "{}", t.len());
        assert_eq!(t.evicted, 2000 - 1024);
    }
}
