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
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for TaskOffsets {}
