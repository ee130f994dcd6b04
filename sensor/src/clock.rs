//! Kernel time (ns since boot, `CLOCK_BOOTTIME`) to wall-clock time, and to
//! the clock ticks /proc uses for process start times.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `USER_HZ`: /proc/PID/stat's start time unit. It is 100 on every Linux ABI
/// this sensor runs on (it is fixed by the ABI, unlike the kernel's HZ).
pub const USER_HZ: u64 = 100;

/// Converts `start_boottime` ns to /proc's clock ticks, exactly as the
/// kernel's `nsec_to_clock_t` does, so both sources give the same key.
pub fn ns_to_ticks(ns: u64) -> u64 {
    ns / (1_000_000_000 / USER_HZ)
}

/// Now, in the kernel's `bpf_ktime_get_boot_ns` time base.
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_BOOTTIME always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Maps boot-relative kernel timestamps to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Unix ns at boot.
    boot_unix_ns: u64,
}

impl Clock {
    pub fn new() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Self {
            boot_unix_ns: now.saturating_sub(boottime_ns()),
        }
    }

    pub fn to_unix_ns(&self, ktime_ns: u64) -> u64 {
        self.boot_unix_ns + ktime_ns
    }

    pub fn to_system_time(&self, ktime_ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.to_unix_ns(ktime_ns))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_match_proc_resolution() {
        assert_eq!(ns_to_ticks(0), 0);
        assert_eq!(ns_to_ticks(9_999_999), 0);
        assert_eq!(ns_to_ticks(10_000_000), 1);
        assert_eq!(ns_to_ticks(12_345_678_901), 1234);
    }

    #[test]
    fn wall_clock_is_now_for_current_boottime() {
        let c = Clock::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mapped = c.to_unix_ns(boottime_ns());
        assert!(mapped.abs_diff(now) < 1_000_000_000, "{mapped} vs {now}");
    }
}
