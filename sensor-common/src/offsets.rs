//! Kernel structure offsets resolved by userspace from BTF at start.
//!
//! aya's Rust eBPF programs cannot use CO-RE field relocations, so the daemon
//! reads `/sys/kernel/btf/vmlinux`, finds the byte offsets of the few
//! `task_struct` fields it needs, and writes them into a global of the
//! program before loading it. A zero `valid` means BTF was not usable: the
//! programs then report those fields as 0 and userspace fills them from /proc.

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOffsets {
    /// 1 when every offset below was resolved from BTF.
    pub valid: u32,
    /// `task_struct.pid` (thread id, `pid_t`).
    pub pid: u32,
    /// `task_struct.tgid` (process id, `pid_t`).
    pub tgid: u32,
    /// `task_struct.real_parent` (`struct task_struct *`).
    pub real_parent: u32,
    /// `task_struct.group_leader` (`struct task_struct *`).
    pub group_leader: u32,
    /// `task_struct.start_boottime` (`u64`, ns since boot incl. suspend).
    /// /proc/PID/stat field 22 is this value in clock ticks.
    pub start_boottime: u32,
    /// `task_struct.exit_code` (`int`, wait(2) status encoding).
    pub exit_code: u32,
    /// `task_struct.mm` (`struct mm_struct *`).
    pub mm: u32,
    /// `mm_struct.arg_start` / `arg_end` (`unsigned long`): the argv strings
    /// in the process's memory, read at exec so short-lived processes keep
    /// their command line.
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    /// `task_struct.signal` (`struct signal_struct *`, shared by the
    /// thread group) and `signal_struct.live` (`atomic_t`: threads not yet
    /// past `do_exit`'s decrement). 0 at `sched_process_exit` means the
    /// whole group is dead, whichever thread exits last (the leader may
    /// exit first and leave the others running).
    pub signal: u32,
    pub signal_live: u32,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for TaskOffsets {}

/// Where `struct socket` keeps its `struct sock *sk`, as the LSM programs
/// are compiled: they load it directly from the hook's `struct socket *`
/// argument, because only a pointer the verifier typed from BTF may be
/// passed to `bpf_get_socket_cookie` in an LSM program (a value read with
/// `bpf_probe_read_kernel` is a plain number to it). Without CO-RE this
/// is a fixed offset, so the daemon compares it with the running kernel's
/// BTF and does not choose the LSM method when they differ (24 on 6.1 and
/// 6.18: `state` 4, `type` 2, padding 2, `flags` 8, `file` 8).
pub const SOCKET_SK_OFFSET: u32 = 24;

/// Where `struct msghdr` keeps `void *msg_name` and `int msg_namelen`, as
/// the LSM programs are compiled (checked against BTF like
/// [`SOCKET_SK_OFFSET`]): the programs add only constants to the pointers
/// the verifier typed from BTF, never an offset it cannot see.
pub const MSGHDR_NAME_OFFSET: u32 = 0;
pub const MSGHDR_NAMELEN_OFFSET: u32 = 8;

/// `struct sock` offsets the LSM isolation programs read with
/// `bpf_probe_read_kernel` from the socket's address (any layout works:
/// they are resolved from BTF at start, like [`TaskOffsets`]). A zero
/// `valid` means the LSM method is not used.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOffsets {
    pub valid: u32,
    /// `struct sock_common.skc_family` (`unsigned short`); `struct sock`
    /// starts with its `sock_common`.
    pub skc_family: u32,
    /// `sock_common.skc_daddr` (`__be32`): the IPv4 peer.
    pub skc_daddr: u32,
    /// `sock_common.skc_v6_daddr` (`struct in6_addr`): the IPv6 peer
    /// (v4-mapped for IPv4 on an IPv6 socket).
    pub skc_v6_daddr: u32,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for SockOffsets {}
