//! Pid-safe kill: the process is pinned by a pidfd first, then checked
//! (start time, protection), then signalled through that pidfd, so a pid
//! reused between the check and the signal can never be hit.

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd, RawFd},
};

use super::RespondError;

/// The process to kill; `start_time` (clock ticks since boot) must match
/// when given.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub pid: u32,
    pub start_time: Option<u64>,
}

/// Executables or names never killed, besides the built-in protections
/// (the sensor, init, kernel threads).
#[derive(Clone, Debug, Default)]
pub struct Protect {
    pub exes: Vec<String>,
}

impl Protect {
    /// Why `pid` must not be touched, if so.
    pub fn why(&self, pid: u32) -> Option<String> {
        if let Some(why) = super::protected(pid) {
            return Some(why.into());
        }
        if self.exes.is_empty() {
            return None;
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        self.exes
            .iter()
            .find(|e| **e == exe || e.as_str() == comm.trim())
            .map(|e| format!("on the protected list ({e})"))
    }
}

/// What was killed (pid, start ticks) in order, and what was left alone.
#[derive(Debug, Default)]
pub struct Killed {
    pub pids: Vec<(u32, u64)>,
    pub skipped: Vec<(u32, String)>,
}

pub type KillError = RespondError;

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success the return value is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by pidfd_open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn pidfd_kill(fd: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a pidfd we own; null siginfo means "as kill(2)".
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Kills one process: pidfd first, checks after (see the module doc).
fn kill_one(pid: u32, start: Option<u64>, protect: &Protect) -> Result<u64, RespondError> {
    let fd = pidfd_open(pid).map_err(|e| match e.raw_os_error() {
        Some(libc::ESRCH) => RespondError::NoSuchProcess(pid),
        Some(libc::EPERM) => RespondError::Kernel(format!("not permitted to open process {pid}")),
        _ => RespondError::Kernel(format!("pidfd_open({pid}): {e}")),
    })?;
    let ticks = super::check_target(pid, start)?;
    if let Some(why) = protect.why(pid) {
        return Err(RespondError::Protected { pid, why });
    }
    pidfd_kill(&fd).map_err(|e| match e.raw_os_error() {
        // Exited between the check and the signal: nothing left to kill.
        Some(libc::ESRCH) => RespondError::NoSuchProcess(pid),
        Some(libc::EPERM) => RespondError::Kernel(format!("not permitted to kill process {pid}")),
        _ => RespondError::Kernel(format!("pidfd_send_signal({pid}): {e}")),
    })?;
    Ok(ticks)
}

/// Kills `target`; with `tree`, its descendants first, deepest first, so
/// no child is left to be re-parented and carry on. Protected or vanished
/// descendants are reported, not fatal; the target itself must be killable.
pub fn kill(target: &Target, tree: bool, protect: &Protect) -> Result<Killed, KillError> {
    // The root is checked before anything is done to its tree.
    let root_ticks = super::check_target(target.pid, target.start_time)?;
    if let Some(why) = protect.why(target.pid) {
        return Err(RespondError::Protected {
            pid: target.pid,
            why,
        });
    }
    let mut out = Killed::default();
    if tree {
        // Parents come before children in `descendants`: reversed, leaves
        // go first.
        for (pid, ticks) in super::descendants(target.pid).into_iter().rev() {
            match kill_one(pid, Some(ticks), protect) {
                Ok(t) => out.pids.push((pid, t)),
                Err(RespondError::NoSuchProcess(_)) => {}
                Err(e) => out.skipped.push((pid, e.to_string())),
            }
        }
    }
    let t = kill_one(target.pid, Some(root_ticks), protect)?;
    out.pids.push((target.pid, t));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    }

    #[test]
    fn kills_only_the_process_that_was_meant() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = super::super::start_ticks(pid).unwrap();
        let wrong = Target {
            pid,
            start_time: Some(start + 7),
        };
        let err = kill(&wrong, false, &Protect::default()).unwrap_err();
        assert!(matches!(err, RespondError::Reused { .. }), "{err}");
        assert!(alive(pid));
        let right = Target {
            pid,
            start_time: Some(start),
        };
        let k = kill(&right, false, &Protect::default()).unwrap();
        assert_eq!(k.pids, vec![(pid, start)]);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        let err = kill(&right, false, &Protect::default()).unwrap_err();
        assert!(matches!(err, RespondError::NoSuchProcess(_)), "{err}");
    }

    #[test]
    fn refuses_protected_processes() {
        for pid in [1, 2, std::process::id()] {
            let t = Target {
                pid,
                start_time: None,
            };
            let err = kill(&t, false, &Protect::default()).unwrap_err();
            assert!(
                matches!(err, RespondError::Protected { .. }),
                "{pid}: {err}"
            );
        }
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let protect = Protect {
            exes: vec!["sleep".into()],
        };
        let t = Target {
            pid: child.id(),
            start_time: None,
        };
        let err = kill(&t, false, &protect).unwrap_err();
        assert!(err.to_string().contains("protected list"), "{err}");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_tree_goes_leaves_first_and_protected_leaves_stay() {
        let mut sh = Command::new("sh")
            .args(["-c", "sh -c 'sleep 30 & wait' & tail -f /dev/null & wait"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let comm = |p: u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        // Formed once every fork has exec'd: sh, sleep under it, and tail.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let (tree, tail) = loop {
            let tree = super::super::descendants(sh.id());
            let tail = tree
                .iter()
                .find(|(p, _)| comm(*p).trim() == "tail")
                .map(|t| t.0);
            let sleeping = tree.iter().any(|(p, _)| comm(*p).trim() == "sleep");
            if let Some(tail) = tail
                && sleeping
                && tree.len() == 3
            {
                break (tree, tail);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tree did not form: {tree:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(tree.len(), 3);
        let protect = Protect {
            exes: vec!["tail".into()],
        };
        let t = Target {
            pid: sh.id(),
            start_time: None,
        };
        let k = kill(&t, true, &protect).unwrap();
        assert_eq!(k.pids.len(), 3, "{k:?}");
        assert_eq!(k.pids.last().unwrap().0, sh.id(), "the root goes last");
        assert_eq!(k.skipped.len(), 1, "{k:?}");
        assert_eq!(k.skipped[0].0, tail);
        sh.wait().unwrap();
        for (p, _) in &k.pids {
            assert!(!alive(*p), "{p} survived");
        }
        assert!(alive(tail));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(tail as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
