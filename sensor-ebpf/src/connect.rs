//! Outbound connections from the connect(2) syscall tracepoints, which exist
//! on every kernel with syscall tracing (no kprobes needed).
//!
//! `sys_enter_connect` fields (…/syscalls/sys_enter_connect/format): `fd` at
//! 16, `uservaddr` at 24, `addrlen` at 32, each 8 bytes. `sys_exit_connect`:
//! `ret` at 16. The sockaddr is read at entry (user memory, still valid) and
//! parked per thread until the exit reports the result.
//! Only the arguments are parked at entry; the sockaddr is read at exit.
//!
//! Only AF_INET and AF_INET6 are reported; AF_UNIX, AF_NETLINK and others are
//! filtered here, in the kernel, because local IPC is frequent and carries no
//! outbound API traffic.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use sensor_common::{AF_INET, AF_INET6, ConnectRecord, Counter, EventKind};

use crate::{
    emit,
    maps::{PENDING_CONNECT, count, is_sensor},
    sockdata,
    syscall::{ARG0, ARG1, ARG2, RET, field},
};

/// connect() arguments parked between syscall entry and exit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingConnect {
    fd: i64,
    uaddr: u64,
    addrlen: u64,
}

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    try_enter(&ctx).unwrap_or(1)
}

fn try_enter(ctx: &TracePointContext) -> Result<u32, i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_sensor((pid_tgid >> 32) as u32) {
        return Ok(0);
    }
    // Only the arguments are parked here; the sockaddr is read at exit, where
    // it is still in place (connect() has not returned), so filtered
    // families cost one map entry and nothing else.
    let pending = PendingConnect {
        fd: field::<u64>(ctx, ARG0) as i64,
        uaddr: field::<u64>(ctx, ARG1),
        addrlen: field::<u64>(ctx, ARG2),
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
        return Ok(0); // the entry was never made (map full, counted there)
    };
    let pending = unsafe { *pending };
    let _ = PENDING_CONNECT.remove(&pid_tgid);
    let ret = field::<i64>(ctx, RET);
    // The kernel rejects AF_INET connects with addrlen < 16 and AF_INET6
    // ones with addrlen < 24 (tcp_v4_connect / tcp_v6_connect), so reading
    // 16 bytes is always in bounds of a sockaddr it accepted. Helper calls
    // cost 100-200 ns each here: one read covers family, port and the IPv4
    // address (sockaddr_in: family 2, port 2, addr 4, zero 8).
    if pending.addrlen < 16 {
        return Ok(0);
    }
    let uaddr = pending.uaddr as *const u8;
    let Ok(head) = (unsafe { bpf_probe_read_user(uaddr as *const [u8; 16]) }) else {
        count(Counter::ReadError);
        return Ok(0);
    };
    let family = u16::from_ne_bytes([head[0], head[1]]);
    let port_be = u16::from_ne_bytes([head[2], head[3]]);
    let mut addr = [0u8; 16];
    match family {
        AF_INET => addr[..4].copy_from_slice(&head[4..8]),
        // sockaddr_in6: family 2, port 2, flowinfo 4, addr 16.
        AF_INET6 if pending.addrlen >= 24 => {
            match unsafe { bpf_probe_read_user(uaddr.add(8) as *const [u8; 16]) } {
                Ok(a) => addr = a,
                Err(_) => {
                    count(Counter::ReadError);
                    return Ok(0);
                }
            }
        }
        _ => return Ok(0), // AF_UNIX and others are not reported
    }
    // Connected or connecting: watch its first sends (ClientHello, request).
    const EINPROGRESS: i64 = 115;
    if ret == 0 || ret == -EINPROGRESS {
        sockdata::watch(pid_tgid, pending.fd as i32);
    }
    let Some(mut entry) = emit::reserve::<ConnectRecord>() else {
        return Ok(0);
    };
    entry.write(ConnectRecord {
        header: emit::current_header(EventKind::Connect),
        fd: pending.fd as i32,
        ret: ret as i32,
        family,
        port: u16::from_be(port_be),
        addr,
        _pad: 0,
    });
    emit::submit(entry);
    Ok(0)
}
