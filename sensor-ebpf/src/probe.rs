//! Capability probes: programs that do nothing, loaded (and for kprobes
//! attached) at start only to learn whether this kernel allows their type.
//! Production kernels differ: kprobes may be compiled out (they are on the
//! development machines), fentry/fexit and BPF LSM may be refused at load
//! (EPERM there) or work (Debian's stock 6.1). The daemon reports what it
//! found, so the attach method choice can be made per host.

use aya_ebpf::{
    macros::{fentry, kprobe, lsm},
    programs::{FEntryContext, LsmContext, ProbeContext},
};

#[kprobe]
pub fn probe_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[fentry(function = "tcp_v4_connect")]
pub fn probe_fentry(_ctx: FEntryContext) -> u32 {
    0
}

/// Returns 0: allow. Attached for a moment at most, it changes nothing.
#[lsm(hook = "socket_connect")]
pub fn probe_lsm(_ctx: LsmContext) -> i32 {
    0
}
