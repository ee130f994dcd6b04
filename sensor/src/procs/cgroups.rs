//! cgroup v2 id → path. The kernel stamps every record with the task's
//! cgroup id (`bpf_get_current_cgroup_id`), which is the inode number of the
//! cgroup's directory in the cgroup2 filesystem. Resolving it here, instead
//! of reading /proc/PID/cgroup, works for processes that are already gone and
//! notices processes moved to another cgroup after they started.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Finds where cgroup2 is mounted: /sys/fs/cgroup on unified hosts,
/// /sys/fs/cgroup/unified on hybrid ones (like the CI machines).
pub fn find_cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir))
    })
}

pub struct CgroupResolver {
    root: Option<PathBuf>,
    paths: HashMap<u64, String>,
    last_scan: Option<Instant>,
}

/// Rescans on a miss at most this often: a burst of records from an unknown
/// cgroup costs one walk, not one per record.
const MIN_RESCAN: Duration = Duration::from_millis(200);
/// Deep hierarchies are walked to this depth (kubepods nests about 5).
const MAX_DEPTH: usize = 12;

impl CgroupResolver {
    pub fn new(root: Option<PathBuf>) -> Self {
        Self {
            root,
            paths: HashMap::new(),
            last_scan: None,
        }
    }

    /// The cgroup path (as in /proc/PID/cgroup, e.g. `/system.slice/x.scope`).
    pub fn path(&mut self, id: u64) -> Option<String> {
        if id == 0 {
            return None;
        }
        if let Some(p) = self.paths.get(&id) {
            return Some(p.clone());
        }
        let root = self.root.clone()?;
        if self.last_scan.is_some_and(|t| t.elapsed() < MIN_RESCAN) {
            return None;
        }
        self.last_scan = Some(Instant::now());
        self.paths.clear(); // removed cgroups go; ids are not reused while mounted
        self.scan(&root, &root, 0);
        self.paths.get(&id).cloned()
    }

    fn scan(&mut self, root: &Path, dir: &Path, depth: usize) {
        if let Ok(md) = std::fs::metadata(dir) {
            let rel = dir.strip_prefix(root).unwrap_or(dir);
            self.paths.insert(md.ino(), format!("/{}", rel.display()));
        }
        if depth >= MAX_DEPTH {
            return;
        }
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                self.scan(root, &e.path(), depth + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_a_fresh_cgroup_by_inode() {
        let Some(root) = find_cgroup2_root() else {
            panic!("no cgroup2 mount on this host");
        };
        let mut r = CgroupResolver::new(Some(root.clone()));
        assert_eq!(
            r.path(std::fs::metadata(&root).unwrap().ino()).as_deref(),
            Some("/")
        );
        // A directory made now is found too (the first lookup scanned before it existed).
        if nix::unistd::Uid::effective().is_root() {
            let dir = root.join(format!("sensor-unit-{}", std::process::id()));
            std::fs::create_dir(&dir).unwrap();
            let ino = std::fs::metadata(&dir).unwrap().ino();
            std::thread::sleep(MIN_RESCAN);
            let got = r.path(ino);
            std::fs::remove_dir(&dir).unwrap();
            assert_eq!(got, Some(format!("/sensor-unit-{}", std::process::id())));
        } else {
            crate::skips::record_skip(
                "procs::cgroups::tests::resolves_a_fresh_cgroup_by_inode",
                "not root: the part that makes a cgroup did not run",
            );
        }
        assert_eq!(r.path(0), None);
    }
}
