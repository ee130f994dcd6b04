//! Ring-buffer records and per-CPU counter indexes.

/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;
/// Bytes of the exec'd filename kept; longer names are truncated and flagged.
pub const FILENAME_LEN: usize = 256;
/// Bytes of the NUL-separated argv kept at exec.
pub const ARGS_LEN: usize = 256;

/// The kind of record that follows an [`EventHeader`]. Values are stable:
/// they are the wire format between kernel and userspace.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    Fork = 2,
    Exit = 3,
    Connect = 4,
    /// Variable length: a [`TlsDataHeader`] then `captured` bytes.
    TlsData = 5,
    /// Variable length: a [`SockDataHeader`] then `captured` bytes.
    SockData = 6,
    /// A TLS connection object tied to its socket after the fact (memory-BIO
    /// users encrypt first and write the socket later).
    TlsBind = 7,
    /// An armed process was killed before a request it was about to send.
    Blocked = 8,
}

impl EventKind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Exec),
            2 => Some(Self::Fork),
            3 => Some(Self::Exit),
            4 => Some(Self::Connect),
            5 => Some(Self::TlsData),
            6 => Some(Self::SockData),
            7 => Some(Self::TlsBind),
            8 => Some(Self::Blocked),
            _ => None,
        }
    }

    /// Size in bytes of the fixed part of a record of this kind (the whole
    /// record for all but TlsData). Exhaustive on purpose: a new kind does
    /// not build until it has a size.
    pub const fn record_size(self) -> usize {
        match self {
            Self::Exec => size_of::<ExecRecord>(),
            Self::Fork => size_of::<ForkRecord>(),
            Self::Exit => size_of::<ExitRecord>(),
            Self::Connect => size_of::<ConnectRecord>(),
            Self::TlsData => size_of::<TlsDataHeader>(),
            Self::SockData => size_of::<SockDataHeader>(),
            Self::TlsBind => size_of::<TlsBindRecord>(),
            Self::Blocked => size_of::<BlockedRecord>(),
        }
    }
}

/// Common prefix of every record: who did it, and when.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`] value.
    pub kind: u32,
    /// Thread id (kernel `pid`).
    pub tid: u32,
    /// Process id (kernel `tgid`).
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_boot_ns()` when the record was made.
    pub ktime_ns: u64,
    /// Start of the process (its group leader), ns since boot; 0 if unknown.
    /// With `tgid` it identifies the process across pid reuse.
    pub start_ns: u64,
    /// cgroup v2 id of the task (`bpf_get_current_cgroup_id`).
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// `sched_process_exec`: the process `header.tgid` now runs `filename`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecRecord {
    pub header: EventHeader,
    /// tgid of the real parent; 0 if it could not be read.
    pub ppid: u32,
    /// Bytes of `filename` that are valid (without the NUL).
    pub filename_len: u16,
    /// 1 if the kernel's filename was longer than [`FILENAME_LEN`].
    pub filename_truncated: u8,
    /// 1 if argv was longer than [`ARGS_LEN`].
    pub args_truncated: u8,
    /// Bytes of `args` that are valid: argv strings, each NUL-terminated.
    pub args_len: u16,
    pub _pad: [u8; 6],
    pub filename: [u8; FILENAME_LEN],
    pub args: [u8; ARGS_LEN],
}

/// `sched_process_fork` for a new process (threads are not reported):
/// `header` describes the parent.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkRecord {
    pub header: EventHeader,
    pub child_tgid: u32,
    pub _pad: u32,
    /// Start of the child, ns since boot.
    pub child_start_ns: u64,
}

/// `sched_process_exit` of the last thread of a process.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    pub header: EventHeader,
    /// wait(2) status as the kernel keeps it: `(code << 8) | signal`.
    pub exit_code: i32,
    pub _pad: u32,
}

/// `connect()` on an AF_INET or AF_INET6 socket, reported at syscall exit.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectRecord {
    pub header: EventHeader,
    pub fd: i32,
    /// Return value of the syscall: 0, `-EINPROGRESS`, or `-errno`.
    pub ret: i32,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// Destination port, host byte order.
    pub port: u16,
    /// IPv6 flow info / scope id are not kept; IPv4 uses the first 4 bytes.
    pub addr: [u8; 16],
    pub _pad: u32,
}

/// Most plaintext bytes one TLS record can carry (a TLS record holds at most
/// 16 KiB of plaintext, so one SSL_read never returns more).
pub const TLS_DATA_MAX: usize = 16384;

/// Direction of TLS plaintext, from the process's point of view.
pub const TLS_DIR_WRITE: u8 = 0;
pub const TLS_DIR_READ: u8 = 1;
/// Which library the plaintext came from.
pub const TLS_LIB_OPENSSL: u8 = 1;
pub const TLS_LIB_GNUTLS: u8 = 2;
/// Go's crypto/tls (`sensor-ebpf/src/go_tls.rs`).
pub const TLS_LIB_GO: u8 = 3;
/// rustls, at aws-lc's record cipher (`sensor-ebpf/src/aead.rs`): `conn`
/// is the cipher context of one direction, so records are tied to their
/// connection by socket.
pub const TLS_LIB_RUSTLS: u8 = 4;
/// BoringSSL linked into an executable without symbols (Bun, so Claude
/// Code), found by `sensor/src/tls/boringssl.rs`: OpenSSL's API, its own
/// programs so its calls say which library made them.
pub const TLS_LIB_BORINGSSL: u8 = 5;

/// Plaintext passed to or returned by a TLS library call, captured at the
/// call's return. `captured` bytes follow this header in the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TlsDataHeader {
    pub header: EventHeader,
    /// The library's connection object (`SSL *`, `gnutls_session_t`): with
    /// tgid, it keys the stream.
    pub conn: u64,
    /// Bytes the call actually wrote or read.
    pub len: u64,
    /// Bytes that follow (`min(len, capture limit)`).
    pub captured: u32,
    /// The socket the library wrote or read during the call, or -1 when it
    /// made no socket syscall (memory BIO, data already buffered).
    pub fd: i32,
    /// [`TLS_DIR_WRITE`] or [`TLS_DIR_READ`].
    pub dir: u8,
    /// One of the `TLS_LIB_*` values: the library whose call this was.
    pub lib: u8,
    pub _pad: [u8; 6],
}

/// `conn` of this process writes its ciphertext to socket `fd`: sent for
/// the first socket write of a thread after a TLS write that touched no
/// socket itself.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TlsBindRecord {
    pub header: EventHeader,
    pub conn: u64,
    pub fd: i32,
    pub _pad: u32,
}

/// An armed process's TLS write matched deny pattern `rule`: it was sent
/// SIGKILL before the library saw the bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockedRecord {
    pub header: EventHeader,
    pub conn: u64,
    /// Index of the matching pattern in the process's `ArmRules`.
    pub rule: u32,
    /// `bpf_send_signal`'s result: 0 when the signal was queued.
    pub signal_result: i32,
    /// The write's buffer and length in the process: a held (stopped)
    /// process's request is read from there by the daemon.
    pub buf: u64,
    pub len: u64,
    /// `ARM_KILL` or `ARM_HOLD`.
    pub action: u32,
    pub _pad: u32,
}

/// The kernel's scratch layout for building a TlsData record.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsDataRecord {
    pub hdr: TlsDataHeader,
    pub data: [u8; TLS_DATA_MAX],
}

/// Most bytes one socket-data record carries: enough for a ClientHello
/// (post-quantum key shares make them ~1.8 KiB) or a request head.
pub const SOCK_DATA_MAX: usize = 4096;

/// Bytes a process sent (write, writev, sendto, sendmsg, the first message
/// of sendmmsg; captured at entry) or received
/// (read/recvfrom, captured at exit) on a socket it connected. `captured` bytes follow this header.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockDataHeader {
    pub header: EventHeader,
    pub fd: i32,
    pub captured: u32,
    /// Bytes the call was asked to send (at send entry) or received (at
    /// receive exit).
    pub len: u64,
    /// [`TLS_DIR_WRITE`] for a send, [`TLS_DIR_READ`] for a receive.
    pub dir: u8,
    pub _pad: [u8; 7],
}

/// The kernel's scratch layout for building a SockData record.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SockDataRecord {
    pub hdr: SockDataHeader,
    pub data: [u8; SOCK_DATA_MAX],
}

/// Indexes of the per-CPU `COUNTERS` array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A record could not be reserved because the ring buffer was full.
    RingbufFull = 0,
    /// A kernel read (`bpf_probe_read_*`) failed; the record was still sent
    /// when the failed field was optional, else dropped.
    ReadError = 1,
    /// A connect() could not be parked between syscall entry and exit.
    ConnectPendingError = 2,
    /// A TLS call could not be parked between entry and return.
    TlsPendingError = 3,
    /// TLS plaintext longer than the capture limit (sent truncated, with
    /// its true length).
    TlsTruncated = 4,
    /// A process could not be given an image stamp (its table full): its
    /// watched sockets cannot be told from stale entries after an exec.
    SockWatchFull = 5,
    /// A held write (or connection) was killed instead of stopped: its
    /// record could not be reserved (ring buffer full), so nobody would
    /// have known of the stopped process to answer for it.
    HoldUnreported = 6,
    /// A watched-socket entry found to outlive its socket (closed by exec's
    /// close-on-exec, by exit, dup2/dup3 or close_range, or left by a
    /// process whose pid was reused) and dropped before it was used.
    SockWatchStale = 7,
}

pub const COUNTER_SLOTS: u32 = 8;

impl Counter {
    pub const ALL: [Counter; COUNTER_SLOTS as usize] = [
        Self::RingbufFull,
        Self::ReadError,
        Self::ConnectPendingError,
        Self::TlsPendingError,
        Self::TlsTruncated,
        Self::SockWatchFull,
        Self::HoldUnreported,
        Self::SockWatchStale,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::RingbufFull => "ringbuf_full_drops",
            Self::ReadError => "kernel_read_errors",
            Self::ConnectPendingError => "connect_pending_errors",
            Self::TlsPendingError => "tls_pending_errors",
            Self::TlsTruncated => "tls_truncated_records",
            Self::SockWatchFull => "socket_watch_full",
            Self::HoldUnreported => "holds_killed_unreported",
            Self::SockWatchStale => "socket_watch_stale",
        }
    }
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Default ring buffer size (bytes, power of two multiple of the page size).
pub const DEFAULT_RINGBUF_BYTES: u32 = 1 << 22;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for EventHeader {}
    unsafe impl aya::Pod for ExecRecord {}
    unsafe impl aya::Pod for ForkRecord {}
    unsafe impl aya::Pod for ExitRecord {}
    unsafe impl aya::Pod for ConnectRecord {}
    unsafe impl aya::Pod for TlsDataHeader {}
    unsafe impl aya::Pod for SockDataHeader {}
    unsafe impl aya::Pod for TlsBindRecord {}
    unsafe impl aya::Pod for BlockedRecord {}
}

// Layout checks: the kernel and userspace must agree byte for byte, and the
// ring buffer hands out 8-byte aligned slots.
const _: () = assert!(size_of::<EventHeader>() == 64);
const _: () = assert!(size_of::<ExecRecord>().is_multiple_of(8));
const _: () = assert!(size_of::<ForkRecord>().is_multiple_of(8));
const _: () = assert!(size_of::<ExitRecord>().is_multiple_of(8));
const _: () = assert!(size_of::<ConnectRecord>().is_multiple_of(8));
const _: () = assert!(size_of::<TlsDataHeader>().is_multiple_of(8));
const _: () = assert!(size_of::<SockDataHeader>().is_multiple_of(8));
const _: () = assert!(size_of::<TlsBindRecord>().is_multiple_of(8));
