//! Reading syscall tracepoint records (`syscalls/sys_enter_*`, `sys_exit_*`).
//!
//! Layout (see /sys/kernel/tracing/events/syscalls/*/format): 8 bytes of
//! common fields, `__syscall_nr` at 8, then each argument in an 8-byte
//! slot from offset 16; `sys_exit_*` has `ret` at 16.

use aya_ebpf::{EbpfContext, programs::TracePointContext};

pub const ARG0: usize = 16;
pub const ARG1: usize = 24;
pub const ARG2: usize = 32;
pub const RET: usize = 16;

/// Reads a record field directly: tracepoint programs may load from their
/// context (kernel `tp_prog_is_valid_access`), which saves a
/// `bpf_probe_read` helper call (100-200 ns here) per field.
#[inline(always)]
pub fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    unsafe { core::ptr::read_unaligned((ctx.as_ptr() as *const u8).add(offset) as *const T) }
}
