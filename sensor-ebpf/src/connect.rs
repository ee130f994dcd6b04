//! Outbound connections from the connect(2) syscall tracepoints, which exist
//! on every kernel with syscall tracing (no kprobes needed).
//!
//! `sys_enter_connect` fields (…/syscalls/sys_enter_connect/format): `fd` at
//! 16, `uservaddr` at 24, `addrlen` at 32, each 8 bytes. `sys_exit_connect`:
//! `ret` at 16. The sockaddr is read at entry (user memory, still valid) and
//! parked per thread until the exit reports the result.
//!
//! Only AF_INET and AF_INET6 are reported; AF_UNIX, AF_NETLINK and others are
//! filtered here, in the kernel, because local IPC is frequent and carries no
//! outbound API traffic.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, bpf_probe_read_user_buf},
    macros::tracepoint,
    programs::TracePointContext,
};
use sensor_common::{AF_INET, AF_INET6, ConnectRecord, Counter, EventKind};

use crate::{
    emit,
    maps::{PENDING_CONNECT, count, is_sensor},
};

const ARG_FD: usize = 16;
const ARG_UADDR: usize = 24;
const ARG_ADDRLEN: usize = 32;
const RET: usize = 16;

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    try_enter(&ctx).unwrap_or(1)
}

fn try_enter(ctx: &TracePointContext) -> Result<u32, i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_sensor((pid_tgid >> 32) as u32) {
        return Ok(0);
    }
    let fd: u64 = unsafe { ctx.read_at(ARG_FD) }.map_err(|e| e as i64)?;
    let uaddr: u64 = unsafe { ctx.read_at(ARG_UADDR) }.map_err(|e| e as i64)?;
    let addrlen: u64 = unsafe { ctx.read_at(ARG_ADDRLEN) }.map_err(|e| e as i64)?;
    let uaddr = uaddr as *const u8;
    let Ok(family) = (unsafe { bpf_probe_read_user(uaddr as *const u16) }) else {
        count(Counter::ReadError);
        return Ok(0);
    };
    let mut addr = [0u8; 16];
    // sockaddr_in: family(2) port(2) addr(4); sockaddr_in6: family(2)
    // port(2) flowinfo(4) addr(16).
    let (addr_off, addr_len, min_len) = match family {
        AF_INET => (4usize, 4usize, 8u64),
        AF_INET6 => (8, 16, 24),
        _ => return Ok(0),
    };
    if addrlen < min_len {
        return Ok(0); // the kernel will fail it with EINVAL; nothing to attribute
    }
    let port_be: u16 = match unsafe { bpf_probe_read_user(uaddr.add(2) as *const u16) } {
        Ok(p) => p,
        Err(_) => {
            count(Counter::ReadError);
            return Ok(0);
        }
    };
    let read = if addr_len == 4 {
        unsafe { bpf_probe_read_user_buf(uaddr.add(addr_off), &mut addr[..4]) }
    } else {
        unsafe { bpf_probe_read_user_buf(uaddr.add(addr_off), &mut addr) }
    };
    if read.is_err() {
        count(Counter::ReadError);
        return Ok(0);
    }
    let pending = ConnectRecord {
        header: emit::current_header(EventKind::Connect),
        fd: fd as i32,
        ret: 0,
        family,
        port: u16::from_be(port_be),
        addr,
        _pad: 0,
    };
    if PENDING_CONNECT.insert(&pid_tgid, &pending, 0).is_err() {
        count(Counter::ConnectPendingError);
    }
    Ok(0)
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    try_exit(&ctx).unwrap_or(1)
}

fn try_exit(ctx: &TracePointContext) -> Result<u32, i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_sensor((pid_tgid >> 32) as u32) {
        return Ok(0);
    }
    let Some(pending) = PENDING_CONNECT.get_ptr(&pid_tgid) else {
        // Filtered family at entry, or the entry was evicted.
        return Ok(0);
    };
    let ret: i64 = unsafe { ctx.read_at(RET) }.map_err(|e| e as i64)?;
    let mut rec = unsafe { *pending };
    let _ = PENDING_CONNECT.remove(&pid_tgid);
    rec.ret = ret as i32;
    let Some(mut entry) = emit::reserve::<ConnectRecord>() else {
        return Ok(0);
    };
    entry.write(rec);
    emit::submit(entry);
    Ok(0)
}
