//! Unit tests that cannot run here say so in a record, never by returning
//! early in silence: `cargo xtask test` points `SENSOR_SKIP_LOG` at
//! `target/unit-skips.txt`, prints what is there and fails a run as root
//! (CI) that has any.
//!
//! A test skips only for a reason that is the host's, checked, not for any
//! error: what fails where the host allows it is a failure.

use std::{fs::OpenOptions, io::Write, path::Path};

/// Records that `test` (its full name, as `cargo test` prints it) did not
/// run, all or part of it, and why: one line `skipped TEST: WHY`.
///
/// Panics when `SENSOR_SKIP_LOG` is set and cannot be written: a skip
/// that is not recorded is a silent one (libtest shows no stderr of a test
/// that passes).
pub fn record_skip(test: &str, why: &str) {
    eprintln!("skipped {test}: {why}");
    if let Some(path) = std::env::var_os("SENSOR_SKIP_LOG") {
        let path = Path::new(&path);
        append(path, test, why).unwrap_or_else(|e| {
            panic!(
                "cannot record that {test} skipped in SENSOR_SKIP_LOG {}: {e}",
                path.display()
            )
        });
    }
}

fn append(path: &Path, test: &str, why: &str) -> std::io::Result<()> {
    let line = format!("skipped {test}: {}\n", why.replace('\n', " "));
    // One write of the whole line (O_APPEND): tests running in parallel
    // do not interleave theirs.
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

/// Whether loopback has `::1` here (`/proc/net/if_inet6`, this network
/// namespace): without it (IPv6 disabled) binding `[::1]` cannot work.
pub fn ipv6_loopback() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|t| {
        t.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"00000000000000000000000000000001") && f.last() == Some(&"lo")
        })
    })
}

/// `CAP_NET_ADMIN` (linux/capability.h): aborting sockets needs it.
pub const CAP_NET_ADMIN: u32 = 12;
/// `CAP_SYS_ADMIN`: new namespaces need it.
pub const CAP_SYS_ADMIN: u32 = 21;

/// Whether this thread holds capability `cap` (its effective set).
pub fn has_capability(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    effective_capability(&status, cap)
}

fn effective_capability(status: &str, cap: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|set| cap < 64 && set & (1 << cap) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_skip_is_one_line_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("skips.txt");
        append(&path, "a::tests::one", "no [::1] here").unwrap();
        append(&path, "b::tests::two", "first\nsecond").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "skipped a::tests::one: no [::1] here\nskipped b::tests::two: first second\n"
        );
        assert!(append(&dir.path().join("none/skips.txt"), "t", "w").is_err());
    }

    #[test]
    fn capabilities_are_read_from_the_effective_set() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000200000\n";
        assert!(effective_capability(status, CAP_SYS_ADMIN));
        assert!(!effective_capability(status, CAP_NET_ADMIN));
        assert!(!effective_capability("CapEff:\tzz\n", 0));
        assert!(!effective_capability(status, 64));
    }
}
