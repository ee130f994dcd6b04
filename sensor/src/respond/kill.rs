//! Pid-safe kill.
//!
//! A pid alone is a weak name: the process an event named may have exited
//! and its number gone to another. So each process is first pinned with a
//! pidfd, only then checked (start time, protection), and signalled
//! through that pidfd. If the number was reused before the open, the check
//! reads the newcomer's start time and refuses. If the process dies after
//! the open, the signal finds the pinned process gone (ESRCH) instead of
//! reaching whoever holds the number by then. Checking before the open
//! would leave exactly that window.

use std::{
    collections::HashSet,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use super::RespondError;

/// The process to kill. `start_time` is in clock ticks since boot, as in
/// field 22 of /proc/PID/stat and in every event; when given it must match.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub pid: u32,
    pub start_time: Option<u64>,
}

pub use super::protect::Protect;

/// What was killed, as (pid, start ticks) in the order signalled, and the
/// descendants left alone with the reason.
#[derive(Debug, Default)]
pub struct Killed {
    pub pids: Vec<(u32, u64)>,
    pub skipped: Vec<(u32, String)>,
}

/// Refusals share the responder's error type so every action reports
/// them in the same words.
pub type KillError = RespondError;

/// How many times a tree is rescanned for children forked while it was
/// being killed: a parent that respawns a child as fast as it dies would
/// otherwise keep the kill going forever.
const TREE_ROUNDS: usize = 4;

/// Kills `target`. With `tree`, the whole tree is first frozen top-down
/// (SIGSTOP: the root first, so nothing stopped can fork or notice a
/// child's death and carry on), rescanning for children forked meanwhile,
/// and then killed, descendants before ancestors and the root last.
/// Protected descendants are left running and reported in `skipped`, ones
/// that exit meanwhile are dropped silently; the root itself being gone,
/// reused, protected or out of reach is an error and nothing is killed.
pub fn kill(target: &Target, tree: bool, protect: &Protect) -> Result<Killed, KillError> {
    let root = Pinned::new(target.pid, target.start_time, protect)?;
    let mut out = Killed::default();
    if !tree {
        out.pids.push((root.pid, root.kill()?));
        return Ok(out);
    }
    root.signal(libc::SIGSTOP)?;
    let mut frozen: Vec<Pinned> = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..TREE_ROUNDS {
        // The stopped root keeps its pid, so parent links still lead to
        // its descendants (module doc).
        let fresh: Vec<(u32, u64)> = super::descendants(root.pid)
            .into_iter()
            .filter(|d| seen.insert(*d))
            .collect();
        if fresh.is_empty() {
            break;
        }
        // `descendants` lists parents before children: each is stopped
        // before it could fork again.
        for (pid, ticks) in fresh {
            match Pinned::new(pid, Some(ticks), protect)
                .and_then(|p| p.signal(libc::SIGSTOP).map(|()| p))
            {
                Ok(p) => frozen.push(p),
                Err(RespondError::NoSuchProcess(_) | RespondError::Reused { .. }) => {}
                Err(e) => out.skipped.push((pid, e.to_string())),
            }
        }
    }
    for p in frozen.iter().rev() {
        match p.kill() {
            Ok(ticks) => out.pids.push((p.pid, ticks)),
            Err(e) => out.skipped.push((p.pid, e.to_string())),
        }
    }
    match root.kill() {
        Ok(ticks) => out.pids.push((root.pid, ticks)),
        Err(e) => {
            // Not left frozen by a kill that failed.
            let _ = root.signal(libc::SIGCONT);
            return Err(e);
        }
    }
    Ok(out)
}

/// Continues a stopped process (SIGCONT), pid-safely. Protection does not
/// apply: resuming is what the process was doing anyway.
pub fn resume(target: &Target) -> Result<u64, RespondError> {
    let p = Pinned::new(target.pid, target.start_time, &Protect::default())?;
    p.signal(libc::SIGCONT)?;
    Ok(p.ticks)
}

/// A process held by a pidfd and checked to be the one meant.
struct Pinned {
    pid: u32,
    ticks: u64,
    fd: OwnedFd,
}

impl Pinned {
    fn new(pid: u32, expected: Option<u64>, protect: &Protect) -> Result<Self, RespondError> {
        let fd = pidfd_open(pid)?;
        // Only now, with the process pinned, is /proc read (module doc).
        let stat = procfs::process::Process::new(pid as i32)
            .and_then(|p| p.stat())
            .map_err(|_| RespondError::NoSuchProcess(pid))?;
        // A zombie has already died; killing it again would report a kill
        // that did nothing.
        if stat.state == 'Z' {
            return Err(RespondError::NoSuchProcess(pid));
        }
        if let Some(expected) = expected
            && expected != stat.starttime
        {
            return Err(RespondError::Reused {
                pid,
                expected,
                actual: stat.starttime,
            });
        }
        if let Some(why) = protect.why(pid) {
            return Err(RespondError::Protected { pid, why });
        }
        Ok(Self {
            pid,
            ticks: stat.starttime,
            fd,
        })
    }

    /// SIGKILL; returns the start ticks checked when pinned.
    fn kill(&self) -> Result<u64, RespondError> {
        match self.signal(libc::SIGKILL) {
            // It died on its own between the check and the signal: it is
            // gone either way, which is what was asked.
            Ok(()) | Err(RespondError::NoSuchProcess(_)) => Ok(self.ticks),
            Err(e) => Err(e),
        }
    }

    fn signal(&self, sig: libc::c_int) -> Result<(), RespondError> {
        // SAFETY: a plain syscall on a pidfd we own; a null siginfo means
        // "as kill(2) would send it".
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        let pid = self.pid;
        Err(match e.raw_os_error() {
            Some(libc::ESRCH) => RespondError::NoSuchProcess(pid),
            Some(libc::EPERM) => RespondError::Kernel(format!(
                "not permitted to signal process {pid} (the sensor needs CAP_KILL in its namespace)"
            )),
            _ => RespondError::Kernel(format!("pidfd_send_signal({pid}): {e}")),
        })
    }
}

fn pidfd_open(pid: u32) -> Result<OwnedFd, RespondError> {
    // 0 and negative pid_t values mean something else to the kernel.
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return Err(RespondError::NoSuchProcess(pid));
    };
    if raw == 0 {
        return Err(RespondError::NoSuchProcess(pid));
    }
    // SAFETY: a plain syscall; on success it returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    if fd >= 0 {
        // SAFETY: fd was just returned by pidfd_open and nobody else has it.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::ESRCH) => RespondError::NoSuchProcess(pid),
        // Only thread-group leaders have a pidfd: a thread id names a
        // thread, and a responder should be told which process owns it.
        Some(libc::EINVAL) => match procfs::process::Process::new(raw).and_then(|p| p.status()) {
            Ok(s) if s.tgid as u32 != pid => RespondError::Invalid(format!(
                "{pid} is a thread of process {}, not a process: kill {} instead",
                s.tgid, s.tgid
            )),
            _ => RespondError::NoSuchProcess(pid),
        },
        Some(libc::ENOSYS) => {
            RespondError::Unavailable("pid-safe kill needs Linux 5.3 or later (pidfd_open)".into())
        }
        Some(libc::EPERM) => RespondError::Kernel(format!("not permitted to open process {pid}")),
        _ => RespondError::Kernel(format!("pidfd_open({pid}): {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        os::unix::process::ExitStatusExt,
        process::{Child, Command, Stdio},
        time::{Duration, Instant},
    };

    /// Children with no inherited pipes, so one leaked by a failed test
    /// cannot hold the test runner's output open.
    fn spawn(args: &[&str]) -> Child {
        Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// SIGKILLs whatever it holds when dropped, failed assertion or not.
    struct Cleanup(Vec<u32>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*p as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    fn stat(pid: u32) -> Option<procfs::process::Stat> {
        procfs::process::Process::new(pid as i32)
            .and_then(|p| p.stat())
            .ok()
    }

    fn alive(pid: u32) -> bool {
        stat(pid).is_some_and(|s| s.state != 'Z')
    }

    /// Whether `pid` is gone within a few seconds: SIGKILL is delivered,
    /// not executed, by the syscall.
    fn dies(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// The children of `parent` running `comm`, once there are `n`.
    fn children_named(parent: u32, comm: &str, n: usize) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found: Vec<u32> = procfs::process::all_processes()
                .unwrap()
                .flatten()
                .filter_map(|p| p.stat().ok())
                .filter(|s| s.ppid as u32 == parent && s.comm == comm)
                .map(|s| s.pid as u32)
                .collect();
            if found.len() >= n {
                return found;
            }
            assert!(Instant::now() < deadline, "{parent} has {found:?} {comm}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn target(pid: u32) -> Target {
        Target {
            pid,
            start_time: None,
        }
    }

    #[test]
    fn kills_the_process_meant_and_no_other() {
        let mut child = spawn(&["sleep", "30"]);
        let _cleanup = Cleanup(vec![child.id()]);
        let pid = child.id();
        let start = super::super::start_ticks(pid).unwrap();

        let wrong = Target {
            pid,
            start_time: Some(start + 7),
        };
        let err = kill(&wrong, false, &Protect::default()).unwrap_err();
        assert!(
            matches!(err, RespondError::Reused { pid: p, expected, actual }
                if p == pid && expected == start + 7 && actual == start),
            "{err}"
        );
        assert!(err.to_string().contains("reused"), "{err}");
        assert!(alive(pid), "a refused kill killed");

        let right = Target {
            pid,
            start_time: Some(start),
        };
        let k = kill(&right, false, &Protect::default()).unwrap();
        assert_eq!(k.pids, vec![(pid, start)]);
        assert!(k.skipped.is_empty());
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));

        let err = kill(&right, false, &Protect::default()).unwrap_err();
        assert!(
            matches!(err, RespondError::NoSuchProcess(p) if p == pid),
            "{err}"
        );
    }

    #[test]
    fn an_unused_pid_is_no_such_process() {
        // pid_max itself is never handed out.
        let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        for pid in [max, 0, u32::MAX] {
            let err = kill(&target(pid), true, &Protect::default()).unwrap_err();
            assert!(
                matches!(err, RespondError::NoSuchProcess(p) if p == pid),
                "{err}"
            );
            assert!(
                err.to_string().starts_with(&format!("no process {pid}")),
                "{err}"
            );
        }
    }

    #[test]
    fn refuses_init_the_sensor_and_kernel_threads() {
        let mut pids = vec![1, std::process::id()];
        pids.extend(
            procfs::process::all_processes()
                .unwrap()
                .flatten()
                .filter_map(|p| p.stat().ok())
                .find(|s| s.flags & 0x0020_0000 != 0)
                .map(|s| s.pid as u32),
        );
        for pid in pids {
            for tree in [false, true] {
                let err = kill(&target(pid), tree, &Protect::default()).unwrap_err();
                assert!(
                    matches!(err, RespondError::Protected { pid: p, .. } if p == pid),
                    "{pid}: {err}"
                );
            }
        }
    }

    #[test]
    fn refuses_a_protected_exe() {
        let mut child = spawn(&["sleep", "30"]);
        let _cleanup = Cleanup(vec![child.id()]);
        let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
        for name in [exe.display().to_string(), "sleep".into()] {
            let protect = Protect::new(&["unrelated".into(), name.clone()]).unwrap();
            let err = kill(&target(child.id()), false, &protect).unwrap_err();
            assert!(
                matches!(&err, RespondError::Protected { why, .. } if why.contains(&name)),
                "{err}"
            );
            assert!(alive(child.id()));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_tree_is_frozen_then_dies_leaves_first_root_last() {
        let mut sh = spawn(&["sh", "-c", "sleep 30 & sleep 30 & wait"]);
        let root = sh.id();
        let sleeps = children_named(root, "sleep", 2);
        let mut all = sleeps.clone();
        all.push(root);
        let _cleanup = Cleanup(all);

        let k = kill(&target(root), true, &Protect::default()).unwrap();
        assert!(k.skipped.is_empty(), "{k:?}");
        let order: Vec<u32> = k.pids.iter().map(|(p, _)| *p).collect();
        assert_eq!(order.len(), 3, "{k:?}");
        assert_eq!(order[2], root, "the root goes last: {k:?}");
        for s in &sleeps {
            assert!(order[..2].contains(s), "{s} not killed: {k:?}");
        }
        // Frozen first, the shell cannot see its children die and exit on
        // its own: it dies of the kill.
        let status = sh.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "{status:?}"
        );
        for s in &sleeps {
            assert!(dies(*s), "{s} survived");
        }
    }

    #[test]
    fn a_tree_skips_protected_descendants() {
        let mut sh = spawn(&["sh", "-c", "sleep 30 & tail -f /dev/null & wait"]);
        let root = sh.id();
        let sleep = children_named(root, "sleep", 1)[0];
        let tail = children_named(root, "tail", 1)[0];
        let _cleanup = Cleanup(vec![sleep, tail, root]);

        let protect = Protect::new(&["tail".into()]).unwrap();
        let k = kill(&target(root), true, &protect).unwrap();
        let order: Vec<u32> = k.pids.iter().map(|(p, _)| *p).collect();
        assert_eq!(order, vec![sleep, root], "{k:?}");
        assert_eq!(k.skipped.len(), 1, "{k:?}");
        assert_eq!(k.skipped[0].0, tail);
        assert!(k.skipped[0].1.contains("protected"), "{k:?}");
        assert_eq!(sh.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(dies(sleep));
        assert!(alive(tail), "a protected descendant was killed");
    }

    #[test]
    fn a_protected_root_is_fatal_even_in_tree_mode() {
        let mut sh = spawn(&["sh", "-c", "sleep 30 & wait"]);
        let root = sh.id();
        let sleep = children_named(root, "sleep", 1)[0];
        let _cleanup = Cleanup(vec![sleep, root]);
        let protect = Protect::new(&["sh".into()]).unwrap();
        let err = kill(&target(root), true, &protect).unwrap_err();
        assert!(
            matches!(err, RespondError::Protected { pid, .. } if pid == root),
            "{err}"
        );
        assert!(alive(root) && alive(sleep), "nothing may be touched");
        sh.kill().unwrap();
        sh.wait().unwrap();
    }
}
