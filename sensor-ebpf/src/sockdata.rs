//! The first bytes a process sends on a socket it connected: a TLS
//! ClientHello (SNI and ALPN name the destination of any TLS client, hookable
//! or not) or a plain-text request (local LLM servers, internal APIs).
//!
//! Sockets are registered per (tgid, fd) when connect() succeeds or is in
//! progress, with a budget of sends to capture. `write` and `sendto` (glibc's
//! `send`) capture from registered fds only; `close` forgets the fd, so a
//! reused fd number never exposes a file's contents.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated},
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::TracePointContext,
};
use sensor_common::{Counter, EventKind, SOCK_DATA_MAX, SockDataHeader, SockDataRecord};

use crate::{
    emit,
    maps::{EVENTS, SOCK_CAPTURE_BYTES, SOCK_CAPTURE_SENDS, count},
    syscall::{ARG0, ARG1, ARG2, field},
};

/// (tgid << 32 | fd) → sends still to capture.
#[map]
static WATCHED: HashMap<u64, u32> = HashMap::with_max_entries(65536, 0);

#[map]
static SOCK_SCRATCH: PerCpuArray<SockDataRecord> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn key(pid_tgid: u64, fd: i32) -> u64 {
    (pid_tgid & 0xffff_ffff_0000_0000) | (fd as u32 as u64)
}

/// Called at connect() exit for sockets worth watching.
#[inline(always)]
pub fn watch(pid_tgid: u64, fd: i32) {
    let budget = SOCK_CAPTURE_SENDS.load();
    if budget > 0 && WATCHED.insert(&key(pid_tgid, fd), &budget, 0).is_err() {
        count(Counter::SockWatchFull);
    }
}

#[tracepoint]
pub fn sys_enter_write(ctx: TracePointContext) -> u32 {
    capture(&ctx)
}

#[tracepoint]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    capture(&ctx)
}

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let fd = field::<u64>(&ctx, ARG0) as i32;
    let k = key(bpf_get_current_pid_tgid(), fd);
    // Most closes are of files or of sockets no longer watched: a lookup is
    // lock-free, a delete takes the bucket lock, so only delete on a hit
    // (no gain measurable on the single-threaded bench loop, where program
    // dispatch dominates; it avoids lock traffic across CPUs).
    if WATCHED.get_ptr(&k).is_some() {
        let _ = WATCHED.remove(&k);
    }
    0
}

#[inline(always)]
fn capture(ctx: &TracePointContext) -> u32 {
    // write/sendto share the layout: fd, buf, count at ARG0..ARG2.
    let pid_tgid = bpf_get_current_pid_tgid();
    let fd = field::<u64>(ctx, ARG0) as i32;
    let k = key(pid_tgid, fd);
    // Most writes on the host are not to a watched socket: one lookup and out.
    let Some(budget) = WATCHED.get_ptr_mut(&k) else {
        return 0;
    };
    unsafe {
        if *budget <= 1 {
            let _ = WATCHED.remove(&k);
        } else {
            *budget -= 1;
        }
    }
    let buf = field::<u64>(ctx, ARG1);
    let len = field::<u64>(ctx, ARG2);
    if len == 0 {
        return 0;
    }
    let Some(rec) = SOCK_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let limit = SOCK_CAPTURE_BYTES.load() as u64;
    let mut n = if len < limit { len } else { limit };
    // Explicit clamp: bounds the copy and the output size for the verifier.
    if n > SOCK_DATA_MAX as u64 {
        n = SOCK_DATA_MAX as u64;
    }
    unsafe {
        (*rec).hdr = SockDataHeader {
            header: emit::current_header(EventKind::SockData),
            fd,
            captured: n as u32,
            len,
        };
        if generated::bpf_probe_read_user(
            (*rec).data.as_mut_ptr() as *mut _,
            n as u32,
            buf as *const _,
        ) != 0
        {
            count(Counter::ReadError);
            return 0;
        }
        let size = size_of::<SockDataHeader>() + n as usize;
        let bytes = &*(rec as *const [u8; size_of::<SockDataRecord>()]);
        if let Some(out) = bytes.get(..size)
            && EVENTS.output(out, emit::wakeup_flags()).is_err()
        {
            count(Counter::RingbufFull);
        }
    }
    0
}
