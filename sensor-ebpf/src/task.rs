//! Reads of `task_struct` fields at offsets resolved from BTF by userspace.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use sensor_common::{Counter, TaskOffsets};

use crate::maps::{TASK_OFFSETS, count};

pub type Task = *const u8;

#[inline(always)]
pub fn offsets() -> Option<TaskOffsets> {
    let o = TASK_OFFSETS.load();
    if o.valid == 1 { Some(o) } else { None }
}

#[inline(always)]
pub fn current() -> Task {
    unsafe { bpf_get_current_task() as Task }
}

#[inline(always)]
pub fn read<T: Copy>(task: Task, offset: u32) -> Option<T> {
    match unsafe { bpf_probe_read_kernel(task.add(offset as usize) as *const T) } {
        Ok(v) => Some(v),
        Err(_) => {
            count(Counter::ReadError);
            None
        }
    }
}

/// Start time (ns since boot) of the process `task` belongs to.
#[inline(always)]
pub fn process_start_ns(o: &TaskOffsets, task: Task) -> u64 {
    let leader: Task = read(task, o.group_leader).unwrap_or(core::ptr::null());
    if leader.is_null() {
        return 0;
    }
    read::<u64>(leader, o.start_boottime).unwrap_or(0)
}

/// Whether the thread group of `task`, a thread in `do_exit`, has no thread
/// left alive: `signal->live` reached 0 before `sched_process_exit` runs
/// (kernel/exit.c). On a failed read, the leader's exit stands for it.
#[inline(always)]
pub fn group_dead(o: &TaskOffsets, task: Task, is_leader: bool) -> bool {
    let signal: Task = read(task, o.signal).unwrap_or(core::ptr::null());
    if signal.is_null() {
        return is_leader;
    }
    match read::<i32>(signal, o.signal_live) {
        Some(live) => live == 0,
        None => is_leader,
    }
}

/// tgid of the real parent of `task`.
#[inline(always)]
pub fn parent_tgid(o: &TaskOffsets, task: Task) -> u32 {
    let parent: Task = read(task, o.real_parent).unwrap_or(core::ptr::null());
    if parent.is_null() {
        return 0;
    }
    read::<u32>(parent, o.tgid).unwrap_or(0)
}

/// `[arg_start, arg_end)` of the task's argv, or (0, 0).
#[inline(always)]
pub fn arg_range(o: &TaskOffsets, task: Task) -> (u64, u64) {
    let mm: Task = read(task, o.mm).unwrap_or(core::ptr::null());
    if mm.is_null() {
        return (0, 0);
    }
    match (
        read::<u64>(mm, o.mm_arg_start),
        read::<u64>(mm, o.mm_arg_end),
    ) {
        (Some(s), Some(e)) if e > s => (s, e),
        _ => (0, 0),
    }
}
