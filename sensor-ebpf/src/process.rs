//! Process lifecycle: exec, fork (new processes only) and exit.
//!
//! Hooks and the kernel signatures they rely on:
//! - tracepoint `sched/sched_process_exec`: fields `__data_loc char[] filename`
//!   at offset 8, `pid` at 12 (see /sys/kernel/tracing/events/sched/sched_process_exec/format).
//! - raw tracepoint `sched_process_fork`: `TP_PROTO(struct task_struct *parent,
//!   struct task_struct *child)`; raw so the child task itself is readable
//!   (the regular tracepoint has no tgid, so it cannot tell threads from processes).
//! - tracepoint `sched/sched_process_exit`: runs in `do_exit()` on the exiting
//!   task, after `exit_code` is set.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, generated::bpf_probe_read_user,
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use sensor_common::{
    ARGS_LEN, Counter, EventKind, ExecRecord, ExitRecord, FILENAME_LEN, ForkRecord,
};

use crate::{emit, maps::is_sensor, task};

/// Offset of `filename`'s `__data_loc` word in the exec tracepoint record.
const EXEC_FILENAME_LOC: usize = 8;

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    try_exec(&ctx).unwrap_or(1)
}

fn try_exec(ctx: &TracePointContext) -> Result<u32, i64> {
    let header = emit::current_header(EventKind::Exec);
    if is_sensor(header.tgid) {
        return Ok(0);
    }
    crate::enforce::arm_at_exec(header.tgid);
    crate::sockdata::new_image(header.tgid);
    // A __data_loc word: low 16 bits = offset from the record start, high 16
    // bits = length including the NUL.
    let loc: u32 = unsafe { ctx.read_at(EXEC_FILENAME_LOC) }.map_err(|e| e as i64)?;
    let src = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
    let full_len = (loc >> 16) as usize;
    let offsets = task::offsets();
    let (ppid, args_start, args_end) = match &offsets {
        Some(o) => {
            let (start, end) = task::arg_range(o, task::current());
            (task::parent_tgid(o, task::current()), start, end)
        }
        None => (0, 0, 0),
    };

    let Some(mut entry) = emit::reserve::<ExecRecord>() else {
        return Ok(0);
    };
    let rec = entry.as_mut_ptr();
    unsafe {
        (*rec).header = header;
        (*rec).ppid = ppid;
        (*rec)._pad = [0; 6];
        let n = match bpf_probe_read_kernel_str_bytes(src, &mut (*rec).filename) {
            Ok(s) => s.len(),
            Err(_) => {
                crate::maps::count(Counter::ReadError);
                0
            }
        };
        (*rec).filename_len = n as u16;
        (*rec).filename_truncated = (full_len > FILENAME_LEN) as u8;

        // argv lives in the new image's memory, [arg_start, arg_end).
        let mut len = args_end.saturating_sub(args_start) as usize;
        (*rec).args_truncated = (len > ARGS_LEN) as u8;
        // The explicit clamp is what lets the verifier bound a variable-size
        // read into ring-buffer memory (see KERNEL-NOTES.md).
        if len > ARGS_LEN {
            len = ARGS_LEN;
        }
        let ok = len > 0
            && bpf_probe_read_user(
                (*rec).args.as_mut_ptr() as *mut _,
                len as u32,
                args_start as *const _,
            ) == 0;
        if !ok && len > 0 {
            crate::maps::count(Counter::ReadError);
        }
        (*rec).args_len = if ok { len as u16 } else { 0 };
    }
    emit::submit(entry);
    Ok(0)
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    try_fork(&ctx).unwrap_or(1)
}

fn try_fork(ctx: &RawTracePointContext) -> Result<i32, i64> {
    // Without BTF offsets the child cannot be read; userspace reports fork
    // events as unavailable in that case.
    let Some(o) = task::offsets() else {
        return Ok(0);
    };
    let header = emit::current_header(EventKind::Fork);
    if is_sensor(header.tgid) {
        return Ok(0);
    }
    let child: task::Task = ctx.arg::<*const u8>(1);
    let (Some(child_pid), Some(child_tgid)) = (
        task::read::<u32>(child, o.pid),
        task::read::<u32>(child, o.tgid),
    ) else {
        return Ok(0);
    };
    if child_pid != child_tgid {
        return Ok(0); // a new thread, not a new process
    }
    let child_start_ns = task::read::<u64>(child, o.start_boottime).unwrap_or(0);
    crate::enforce::inherit(header.tgid, child_tgid, child_start_ns);
    crate::sockdata::new_image(child_tgid);
    let Some(mut entry) = emit::reserve::<ForkRecord>() else {
        return Ok(0);
    };
    entry.write(ForkRecord {
        header,
        child_tgid,
        _pad: 0,
        child_start_ns,
    });
    emit::submit(entry);
    Ok(0)
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    try_exit(&ctx).unwrap_or(1)
}

fn try_exit(_ctx: &TracePointContext) -> Result<u32, i64> {
    // Every exiting thread: forget calls it never returned from.
    let pid_tgid = bpf_get_current_pid_tgid();
    let _ = crate::maps::PENDING_CONNECT.remove(&pid_tgid);
    crate::tls::forget_thread(pid_tgid);
    crate::sockdata::forget_thread(pid_tgid);
    let header = emit::current_header(EventKind::Exit);
    // Report and forget the process once, when its last thread exits: a
    // leader may exit first (exit(2) from main) and leave the others
    // running, and forgetting it then set an isolated process free.
    // (`group_dead` is a tracepoint argument only on recent kernels; older
    // ones are read through `signal->live`. Without offsets, the leader's
    // exit stands for the group's.)
    let leader = header.tid == header.tgid;
    let offsets = task::offsets();
    let dead = match &offsets {
        Some(o) => task::group_dead(o, task::current(), leader),
        None => leader,
    };
    if !dead || is_sensor(header.tgid) {
        return Ok(0);
    }
    crate::enforce::forget(header.tgid);
    crate::sockdata::forget_process(header.tgid);
    let exit_code = match &offsets {
        Some(o) => task::read::<i32>(task::current(), o.exit_code).unwrap_or(0),
        None => 0,
    };
    let Some(mut entry) = emit::reserve::<ExitRecord>() else {
        return Ok(0);
    };
    entry.write(ExitRecord {
        header,
        exit_code,
        _pad: 0,
    });
    emit::submit(entry);
    Ok(0)
}
