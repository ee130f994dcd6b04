//! Processes no action may touch (`response.protect`), by what a process
//! cannot change about itself.
//!
//! A process name (comm) was once enough: any process sets its own with
//! `prctl(PR_SET_NAME)`, so a runaway agent could call itself `sshd` and
//! be spared. Entries now name:
//! - an absolute path: the file there now, by (device, inode), against the
//!   file the process runs (`/proc/PID/exe`, whatever its mount namespace
//!   or name calls it): a copy elsewhere is another file;
//! - a bare name: the file of that name in the system's directories
//!   (`/usr/bin`, `/usr/sbin`…, links followed: `sh` is `dash`), or an
//!   executable of that file name that only root could have put where it
//!   is (owned by root, in a directory owned by root, neither writable by
//!   others): a user's copy of `python3` called `sshd` is neither, a
//!   distribution's `/usr/sbin/sshd` or a root-built image's is;
//! - `cgroup:/PATH`: processes in that cgroup (v2) or below it, e.g. the
//!   node's `cgroup:/system.slice/kubelet.service`; only root moves a
//!   process between cgroups.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Path(PathBuf),
    Name(String),
    Cgroup(String),
    /// Every process: what a list that failed to parse stands for.
    All,
}

#[derive(Clone, Debug, Default)]
pub struct Protect {
    entries: Vec<(String, Entry)>,
}

const CGROUP: &str = "cgroup:";

impl Protect {
    /// Parses `response.protect`; an entry that is neither an absolute
    /// path, a file name nor `cgroup:/PATH` is an error that names it.
    pub fn new(entries: &[String]) -> Result<Self, String> {
        let entries = entries
            .iter()
            .map(|e| Ok((e.clone(), parse(e)?)))
            .collect::<Result<_, String>>()?;
        Ok(Self { entries })
    }

    /// Protects every process (no action is possible).
    pub fn everything() -> Self {
        Self {
            entries: vec![("a response.protect that did not parse".into(), Entry::All)],
        }
    }

    /// Why `pid` must not be touched, if so.
    pub fn why(&self, pid: u32) -> Option<String> {
        if let Some(why) = super::protected(pid) {
            return Some(why.into());
        }
        self.entries
            .iter()
            .find(|(_, e)| matches(e, pid))
            .map(|(text, _)| format!("on the protected list ({text})"))
    }
}

fn parse(e: &str) -> Result<Entry, String> {
    if let Some(path) = e.strip_prefix(CGROUP) {
        if !path.starts_with('/') {
            return Err(format!(
                "{e:?}: a cgroup is named by its path from the root, e.g. cgroup:/system.slice/kubelet.service"
            ));
        }
        let path = path.trim_end_matches('/');
        return Ok(Entry::Cgroup(
            if path.is_empty() { "/" } else { path }.into(),
        ));
    }
    if e.starts_with('/') {
        return Ok(Entry::Path(e.into()));
    }
    if e.is_empty() || e.contains('/') {
        return Err(format!(
            "{e:?}: an entry is an absolute path (/usr/bin/kubelet), an executable's file name (kubelet) or cgroup:/PATH"
        ));
    }
    Ok(Entry::Name(e.into()))
}

fn matches(e: &Entry, pid: u32) -> bool {
    let exe = || std::fs::metadata(format!("/proc/{pid}/exe")).ok();
    match e {
        Entry::Path(p) => match (std::fs::metadata(p), exe()) {
            (Ok(want), Some(have)) => (want.dev(), want.ino()) == (have.dev(), have.ino()),
            _ => false,
        },
        Entry::Name(n) => exe().is_some_and(|m| {
            SYSTEM_DIRS.iter().any(|d| {
                std::fs::metadata(Path::new(d).join(n))
                    .is_ok_and(|f| (f.dev(), f.ino()) == (m.dev(), m.ino()))
            }) || root_installed(pid, n, &m)
        }),
        Entry::Cgroup(prefix) => cgroup(pid).is_some_and(|c| under(&c, prefix)),
        Entry::All => true,
    }
}

/// Where the host's own executables are, by name.
const SYSTEM_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Whether `pid` runs an executable called `name` that only root could
/// have put where it is.
fn root_installed(pid: u32, name: &str, exe: &std::fs::Metadata) -> bool {
    let Ok(path) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    // A file unlinked or replaced since its exec: nothing to vouch for it.
    if path.file_name().and_then(|f| f.to_str()) != Some(name) {
        return false;
    }
    let root_only = |m: &std::fs::Metadata| m.uid() == 0 && m.mode() & 0o022 == 0;
    // The directory, as the process sees it (its own root, for a process
    // in a container).
    let dir = path.parent().unwrap_or(Path::new("/"));
    let dir = Path::new(&format!("/proc/{pid}/root")).join(dir.strip_prefix("/").unwrap_or(dir));
    root_only(exe) && std::fs::metadata(dir).is_ok_and(|d| root_only(&d))
}

/// The process's cgroup v2 path (`0::/PATH` in /proc/PID/cgroup).
fn cgroup(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Whether cgroup `path` is `prefix` or below it (whole components only).
fn under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use std::{
        os::unix::fs::PermissionsExt,
        process::{Child, Command},
    };

    use super::*;

    fn protect(entries: &[&str]) -> Protect {
        Protect::new(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn sleeper(exe: &Path) -> Killed {
        let c = Killed(Command::new(exe).arg("30").spawn().unwrap());
        // Until the exec has happened (/proc/PID/exe is the new file).
        for _ in 0..200 {
            if std::fs::read_link(format!("/proc/{}/exe", c.0.id())).ok()
                == Some(exe.canonicalize().unwrap())
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        c
    }

    fn sleep_path() -> PathBuf {
        PathBuf::from("/usr/bin/sleep").canonicalize().unwrap()
    }

    #[test]
    fn bad_entries_are_refused_with_their_text() {
        for bad in ["", "bin/sleep", "cgroup:system.slice"] {
            let err = Protect::new(&[bad.to_string()]).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn a_path_protects_that_file_and_not_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("sleep");
        std::fs::copy(sleep_path(), &copy).unwrap();
        let real = sleeper(&sleep_path());
        let copied = sleeper(&copy);
        let p = protect(&["/nowhere/at/all", sleep_path().to_str().unwrap()]);
        assert!(p.why(real.0.id()).unwrap().contains("/usr/bin/sleep"));
        assert_eq!(p.why(copied.0.id()), None);
    }

    /// The spoof this module exists for: a process that names itself after
    /// a protected program.
    #[test]
    fn a_process_name_protects_nothing() {
        let p = protect(&["protected-name"]);
        let mut child = Killed(
            Command::new("python3")
                .args([
                    "-c",
                    "import ctypes,sys,time; ctypes.CDLL(None).prctl(15, b'protected-name', 0, 0, 0); print(flush=True); time.sleep(30)",
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.0.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", child.0.id())).unwrap();
        assert_eq!(comm.trim(), "protected-name");
        assert_eq!(p.why(child.0.id()), None);
    }

    #[test]
    fn a_name_protects_only_what_root_installed() {
        let p = protect(&["sleep"]);
        let real = sleeper(&sleep_path());
        assert!(p.why(real.0.id()).unwrap().contains("(sleep)"));
        // The same program, copied by anyone into a directory anyone may
        // write (as a user's copy in /tmp would be).
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let copy = dir.path().join("sleep");
        std::fs::copy(sleep_path(), &copy).unwrap();
        let copied = sleeper(&copy);
        assert_eq!(
            p.why(copied.0.id()),
            None,
            "a copy in a world-writable directory"
        );
        // Root's own, in a root-only directory: trusted as installed.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // (Owned by whoever runs the test: root in CI.)
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } == 0 {
            assert!(p.why(copied.0.id()).is_some());
        }
    }

    #[test]
    fn a_cgroup_protects_itself_and_below_by_whole_components() {
        assert!(under("/system.slice/kubelet.service", "/system.slice"));
        assert!(under("/system.slice", "/system.slice"));
        assert!(!under("/system.slicex/a", "/system.slice"));
        assert!(under("/anything", "/"));
        let mine = cgroup(std::process::id()).expect("cgroup v2");
        let p = protect(&["cgroup:/sensor-test-nowhere"]);
        // The sensor's own pid is always protected; ask about a child.
        let child = sleeper(&sleep_path());
        assert_eq!(p.why(child.0.id()), None);
        for entry in [format!("cgroup:{mine}"), format!("cgroup:{mine}/")] {
            assert!(protect(&[&entry]).why(child.0.id()).is_some(), "{entry}");
        }
    }
}
