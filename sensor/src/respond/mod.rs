//! Response: cutting an agent's network off in the kernel, killing it
//! pid-safely, holding it at an irreversible request for a person to
//! decide, and the policy that turns findings into actions.
//!
//! A process is named by pid and, where the caller knows it, its start
//! time (clock ticks since boot, as in /proc/PID/stat and every event):
//! an action on a pid that now belongs to another process is refused.

pub mod arm;
pub mod budget;
pub mod hold;
pub mod isolate;
pub mod kill;
pub mod protect;
pub mod responder;
pub mod sockets;
pub mod urgent;

use std::collections::BTreeMap;

/// Why an action was refused, worded for the responder who asked.
#[derive(Debug, thiserror::Error)]
pub enum RespondError {
    #[error("no process {0} (it exited, or the pid is wrong)")]
    NoSuchProcess(u32),
    #[error(
        "pid {pid} was reused: it now names a process started at tick {actual}, not the one started at tick {expected}; nothing done"
    )]
    Reused {
        pid: u32,
        expected: u64,
        actual: u64,
    },
    #[error("process {pid} is protected ({why}); nothing done")]
    Protected { pid: u32, why: String },
    #[error("process {0} is already isolated (sensor isolated lists since when and why)")]
    AlreadyIsolated(u32),
    #[error("process {0} is not isolated")]
    NotIsolated(u32),
    #[error(
        "no pending hold {0} (decided already, expired, or its process exited; sensor holds lists them)"
    )]
    NoSuchHold(u64),
    #[error("{0}")]
    Invalid(String),
    #[error("not available on this host: {0}")]
    Unavailable(String),
    #[error("the kernel refused: {0}")]
    Kernel(String),
}

/// The start time of `pid` in clock ticks since boot, if it exists.
pub fn start_ticks(pid: u32) -> Option<u64> {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .ok()
        .map(|s| s.starttime)
}

/// The state letter of `pid` (R, S, T for stopped, Z…), if it exists.
pub fn process_state(pid: u32) -> Option<char> {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .ok()
        .map(|s| s.state)
}

/// Why `pid` must never be acted on, if it must not: the sensor itself,
/// init, and kernel threads.
pub fn protected(pid: u32) -> Option<&'static str> {
    const PF_KTHREAD: u32 = 0x0020_0000;
    if pid == std::process::id() {
        return Some("the sensor itself");
    }
    if pid <= 1 {
        return Some("init");
    }
    let stat = procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .ok()?;
    (stat.flags & PF_KTHREAD != 0 || stat.ppid == 2 || pid == 2).then_some("a kernel thread")
}

/// Checks that `pid` exists, is the process the caller meant (start time)
/// and may be acted on. Returns its start ticks.
pub fn check_target(pid: u32, expected_start: Option<u64>) -> Result<u64, RespondError> {
    let actual = start_ticks(pid).ok_or(RespondError::NoSuchProcess(pid))?;
    if let Some(expected) = expected_start
        && expected != actual
    {
        return Err(RespondError::Reused {
            pid,
            expected,
            actual,
        });
    }
    if let Some(why) = protected(pid) {
        return Err(RespondError::Protected {
            pid,
            why: why.into(),
        });
    }
    Ok(actual)
}

/// Every live descendant of `pid` as (pid, start ticks), parents before
/// their children.
pub fn descendants(pid: u32) -> Vec<(u32, u64)> {
    let mut children: BTreeMap<u32, Vec<(u32, u64)>> = BTreeMap::new();
    if let Ok(all) = procfs::process::all_processes() {
        for p in all.flatten() {
            if let Ok(s) = p.stat() {
                children
                    .entry(s.ppid as u32)
                    .or_default()
                    .push((s.pid as u32, s.starttime));
            }
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for &(c, t) in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            // pid 0's children would be init and kthreadd: never walked.
            if c != pid && !out.iter().any(|(o, _)| *o == c) {
                out.push((c, t));
                queue.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_before_anything_is_done() {
        assert!(matches!(
            check_target(std::process::id(), None),
            Err(RespondError::Protected { .. })
        ));
        assert!(matches!(
            check_target(1, None),
            Err(RespondError::Protected { .. })
        ));
        assert!(matches!(
            check_target(2, None),
            Err(RespondError::Protected { .. })
        ));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = check_target(pid, None).unwrap();
        assert_eq!(check_target(pid, Some(start)).unwrap(), start);
        let err = check_target(pid, Some(start + 1)).unwrap_err();
        assert!(err.to_string().contains("reused"), "{err}");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(matches!(
            check_target(pid, None),
            Err(RespondError::NoSuchProcess(_))
        ));
    }

    #[test]
    fn descendants_are_found_parents_first() {
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sh -c 'sleep 30' & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let found = loop {
            let d = descendants(sh.id());
            if d.len() >= 3 || std::time::Instant::now() > deadline {
                break d;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let pids: Vec<u32> = found.iter().map(|(p, _)| *p).collect();
        assert_eq!(pids.len(), 3, "{found:?}");
        // The inner shell comes before its sleep.
        let inner = pids
            .iter()
            .position(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.starts_with("sh\0"))
            })
            .unwrap();
        let inner_pid = pids[inner];
        let grandchild = pids
            .iter()
            .position(|p| {
                procfs::process::Process::new(*p as i32)
                    .and_then(|p| p.stat())
                    .is_ok_and(|s| s.ppid as u32 == inner_pid)
            })
            .unwrap();
        assert!(inner < grandchild);
        for p in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        sh.kill().unwrap();
        sh.wait().unwrap();
    }
}
