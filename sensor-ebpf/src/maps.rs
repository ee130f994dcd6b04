//! Maps and load-time globals shared by all programs.

use aya_ebpf::{
    Global,
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use sensor_common::{COUNTER_SLOTS, Counter, DEFAULT_RINGBUF_BYTES, SockOffsets, TaskOffsets};

/// All records go to this one ring buffer; its size is set by the loader
/// (`ringbuf_bytes` in the config).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RINGBUF_BYTES, 0);

/// Per-CPU counters indexed by [`Counter`]; userspace sums them.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// The sensor's own process: its activity is never reported.
#[unsafe(no_mangle)]
pub static SENSOR_TGID: Global<u32> = Global::new(0);

/// `task_struct` field offsets from BTF (see `sensor_common::offsets`).
#[unsafe(no_mangle)]
pub static TASK_OFFSETS: Global<TaskOffsets> = Global::new(TaskOffsets {
    valid: 0,
    pid: 0,
    tgid: 0,
    real_parent: 0,
    group_leader: 0,
    start_boottime: 0,
    exit_code: 0,
    mm: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    signal: 0,
    signal_live: 0,
});

/// `sock_common` offsets from BTF for the LSM
/// isolation programs (see `sensor_common::offsets`).
#[unsafe(no_mangle)]
pub static SOCK_OFFSETS: Global<SockOffsets> = Global::new(SockOffsets {
    valid: 0,
    skc_family: 0,
    skc_daddr: 0,
    skc_v6_daddr: 0,
});

/// Wake the reader only once this many bytes are pending; 0 wakes it for
/// every record. Batching saves a wakeup (several µs) per record; the reader
/// also drains on a timer so nothing waits longer than its poll interval.
#[unsafe(no_mangle)]
pub static WAKEUP_BYTES: Global<u64> = Global::new(0);

/// Processes (tgid) of agents in `enforce` mode: their records wake the
/// reader at once, since the next one may decide a response
/// (`sensor/src/respond/urgent.rs`). Not pinned: the daemon marks them
/// again as it attributes their calls.
#[map]
pub static URGENT: HashMap<u32, u8> = HashMap::with_max_entries(4096, 0);

/// A connect() in flight, keyed by thread (pid_tgid), from sys_enter to
/// sys_exit. A plain preallocated hash: an LRU hash cost about 1 µs more per
/// connect here (measured by `cargo xtask bench`). Entries are removed at
/// sys_exit, overwritten by the thread's next connect, and dropped when the
/// thread exits, so a thread dying inside connect() cannot leak one.
#[map]
pub static PENDING_CONNECT: HashMap<u64, crate::connect::PendingConnect> =
    HashMap::with_max_entries(16384, 0);

/// Most plaintext bytes copied per TLS call (`tls.capture_bytes`), at most
/// `TLS_DATA_MAX`.
#[unsafe(no_mangle)]
pub static TLS_CAPTURE_BYTES: Global<u32> = Global::new(4096);

/// Most plaintext bytes copied per record sealed or opened by a record
/// cipher (`tls.record_capture_bytes`, aws-lc's AEAD under rustls), at
/// most `TLS_DATA_MAX`: by default the whole record.
#[unsafe(no_mangle)]
pub static TLS_RECORD_CAPTURE_BYTES: Global<u32> = Global::new(16384);

/// Most bytes copied per watched send (`sockets.capture_bytes`), at most
/// `SOCK_DATA_MAX`.
#[unsafe(no_mangle)]
pub static SOCK_CAPTURE_BYTES: Global<u32> = Global::new(2048);

/// How many sends of each connected socket are captured.
#[unsafe(no_mangle)]
pub static SOCK_CAPTURE_SENDS: Global<u32> = Global::new(2);

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // Per-CPU slot: no other CPU writes it, and BPF programs are not
        // preempted by themselves on the same CPU for these hook types.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn is_sensor(tgid: u32) -> bool {
    tgid == SENSOR_TGID.load()
}
