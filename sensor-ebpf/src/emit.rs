//! Filling the common header and submitting records with batched wakeups.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
    },
    maps::ring_buf::RingBufEntry,
};
use sensor_common::{COMM_LEN, Counter, EventHeader, EventKind};

use crate::{
    maps::{EVENTS, URGENT, WAKEUP_BYTES, count},
    task,
};

/// Header for a record about the current task.
#[inline(always)]
pub fn current_header(kind: EventKind) -> EventHeader {
    let uid_gid = bpf_get_current_uid_gid();
    EventHeader {
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]),
        ..header_with_start(kind, current_start_ns())
    }
}

/// Start time of the current task's process (0 without BTF offsets).
#[inline(always)]
pub fn current_start_ns() -> u64 {
    match task::offsets() {
        Some(o) => task::process_start_ns(&o, task::current()),
        None => 0,
    }
}

/// Header for the records of TLS calls, the sensor's most frequent (two
/// per API call on each hooked end): the process is named by (tgid,
/// start time) only, the start time cached per thread by the caller. Its
/// uid, cgroup and comm came with its exec or connect, or userspace reads
/// them from /proc; each helper left out costs 100-200 ns here (cgroup_id
/// 0 means "unchanged" to userspace).
#[inline(always)]
pub fn header_with_start(kind: EventKind, start_ns: u64) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    EventHeader {
        kind: kind as u32,
        tid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        uid: 0,
        gid: 0,
        _pad: 0,
        ktime_ns: unsafe { bpf_ktime_get_boot_ns() },
        start_ns,
        cgroup_id: 0,
        comm: [0u8; COMM_LEN],
    }
}

/// Reserve a record of type `T`, counting a drop when the ring is full.
#[inline(always)]
pub fn reserve<T: 'static>() -> Option<RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count(Counter::RingbufFull);
    }
    entry
}

/// Submit, waking the reader only when enough bytes are pending.
#[inline(always)]
pub fn submit<T>(entry: RingBufEntry<T>) {
    entry.submit(wakeup_flags());
}

/// Submit and wake the reader at once: for records the daemon must act on
/// without delay (a process the kernel just stopped for a hold).
#[inline(always)]
pub fn submit_now<T>(entry: RingBufEntry<T>) {
    entry.submit(BPF_RB_FORCE_WAKEUP as u64);
}

/// Ring-buffer flags that batch wakeups: wake only once `WAKEUP_BYTES` are
/// pending (the reader's timer picks up the rest), or at once for a record
/// of an `URGENT` process (a hash lookup, about 30 ns).
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    let threshold = WAKEUP_BYTES.load();
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if threshold == 0 {
        0
    } else if unsafe { URGENT.get(&tgid) }.is_some()
        || EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= threshold
    {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}
