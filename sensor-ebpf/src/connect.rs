//! Outbound connections: connect(2)'s file descriptor, destination and
//! result. Three ways in, one record: the daemon attaches the first its
//! kernel allows (`sensor/src/attach.rs` says which and why).
//!
//! - fexit on `__sys_connect`: one program at the function's return sees
//!   the arguments and the result together, so nothing is parked.
//! - kprobe + kretprobe on `__sys_connect`: where trampolines are refused
//!   but kprobes are built; the entry parks the arguments per thread.
//! - tracepoints `syscalls/sys_enter_connect` + `sys_exit_connect`: on
//!   every kernel with syscall tracing; the entry parks the arguments.
//!
//! `__sys_connect(int fd, struct sockaddr __user *uservaddr, int addrlen)`
//! (net/socket.c) is what the connect syscall (and 32-bit socketcall)
//! calls with the user's arguments unchanged, and returns the syscall's
//! result: so its records are exactly the tracepoints' (fd, the user's
//! sockaddr, -EINPROGRESS for a non-blocking connect). It is a global,
//! traceable function in the BTF of 6.1 and of 6.18 (checked in
//! /sys/kernel/btf/vmlinux of both). `__x64_sys_connect` would tie us to
//! one architecture's pt_regs wrapper; `tcp_v4_connect` and friends see
//! one protocol each and not the syscall's result.
//!
//! Tracepoint fields (…/syscalls/sys_enter_connect/format): `fd` at 16,
//! `uservaddr` at 24, `addrlen` at 32, each 8 bytes; `sys_exit_connect`:
//! `ret` at 16. Only the arguments are parked at entry; the sockaddr is
//! read at exit, where it is still in place (connect() has not returned),
//! so filtered families cost one map entry and nothing else.
//!
//! Only AF_INET and AF_INET6 are reported; AF_UNIX, AF_NETLINK and others are
//! filtered here, in the kernel, because local IPC is frequent and carries no
//! outbound API traffic.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{fexit, kprobe, kretprobe, tracepoint},
    programs::{FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};
use sensor_common::{AF_INET, AF_INET6, ConnectRecord, Counter, EventKind};

use crate::{
    emit,
    maps::{PENDING_CONNECT, count, is_sensor},
    sockdata,
    syscall::{ARG0, ARG1, ARG2, RET, field},
};

/// connect() arguments, parked between entry and exit by the methods that
/// see them apart.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingConnect {
    fd: i64,
    uaddr: u64,
    addrlen: u64,
}

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    park(PendingConnect {
        fd: field::<u64>(&ctx, ARG0) as i64,
        uaddr: field::<u64>(&ctx, ARG1),
        addrlen: field::<u64>(&ctx, ARG2),
    });
    0
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    finish(field::<i64>(&ctx, RET));
    0
}

/// `int __sys_connect(int fd, ...)`: the `int` arguments are read as the
/// low 32 bits of their registers (the upper half is not defined by the
/// calling convention).
#[kprobe]
pub fn connect_kprobe(ctx: ProbeContext) -> u32 {
    let (Some(fd), Some(uaddr), Some(addrlen)) =
        (ctx.arg::<u64>(0), ctx.arg::<u64>(1), ctx.arg::<u64>(2))
    else {
        return 0;
    };
    park(PendingConnect {
        fd: i64::from(fd as i32),
        uaddr,
        addrlen: addrlen as i32 as u64,
    });
    0
}

#[kretprobe]
pub fn connect_kretprobe(ctx: RetProbeContext) -> u32 {
    finish(i64::from(ctx.ret::<u64>() as i32));
    0
}

/// At `__sys_connect`'s return. The BTF context holds the three arguments
/// and, after them, the return value (`ctx[3]`, readable by fexit programs:
/// `btf_ctx_access` allows `arg == nr_args` for BPF_TRACE_FEXIT); a direct
/// load costs nothing, where `bpf_get_func_ret` is a helper call.
#[fexit(function = "__sys_connect")]
pub fn connect_fexit(ctx: FExitContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_sensor((pid_tgid >> 32) as u32) {
        return 0;
    }
    let call = PendingConnect {
        fd: i64::from(ctx.arg::<u64>(0) as i32),
        uaddr: ctx.arg::<u64>(1),
        addrlen: ctx.arg::<u64>(2) as i32 as u64,
    };
    report(pid_tgid, &call, i64::from(ctx.arg::<u64>(3) as i32));
    0
}

/// Entry half of the parked methods.
#[inline(always)]
fn park(call: PendingConnect) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_sensor((pid_tgid >> 32) as u32) {
        return;
    }
    if PENDING_CONNECT.insert(&pid_tgid, &call, 0).is_err() {
        count(Counter::ConnectPendingError);
    }
}

/// Exit half of the parked methods.
#[inline(always)]
fn finish(ret: i64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_sensor((pid_tgid >> 32) as u32) {
        return;
    }
    let Some(pending) = PENDING_CONNECT.get_ptr(&pid_tgid) else {
        return; // the entry was never made (map full, counted there)
    };
    let pending = unsafe { *pending };
    let _ = PENDING_CONNECT.remove(&pid_tgid);
    report(pid_tgid, &pending, ret);
}

/// What every method does once it has the arguments and the result: reads
/// the destination, watches the socket's first bytes, emits the record.
#[inline(always)]
fn report(pid_tgid: u64, call: &PendingConnect, ret: i64) {
    // The kernel rejects AF_INET connects with addrlen < 16 and AF_INET6
    // ones with addrlen < 24 (tcp_v4_connect / tcp_v6_connect), so reading
    // 16 bytes is always in bounds of a sockaddr it accepted. Helper calls
    // cost 100-200 ns each here: one read covers family, port and the IPv4
    // address (sockaddr_in: family 2, port 2, addr 4, zero 8).
    if call.addrlen < 16 {
        return;
    }
    let uaddr = call.uaddr as *const u8;
    let Ok(head) = (unsafe { bpf_probe_read_user(uaddr as *const [u8; 16]) }) else {
        count(Counter::ReadError);
        return;
    };
    let family = u16::from_ne_bytes([head[0], head[1]]);
    let port_be = u16::from_ne_bytes([head[2], head[3]]);
    let mut addr = [0u8; 16];
    match family {
        AF_INET => addr[..4].copy_from_slice(&head[4..8]),
        // sockaddr_in6: family 2, port 2, flowinfo 4, addr 16.
        AF_INET6 if call.addrlen >= 24 => {
            match unsafe { bpf_probe_read_user(uaddr.add(8) as *const [u8; 16]) } {
                Ok(a) => addr = a,
                Err(_) => {
                    count(Counter::ReadError);
                    return;
                }
            }
        }
        _ => return, // AF_UNIX and others are not reported
    }
    // Connected or connecting: watch its first sends (ClientHello, request).
    const EINPROGRESS: i64 = 115;
    if ret == 0 || ret == -EINPROGRESS {
        sockdata::watch(pid_tgid, call.fd as i32);
    }
    let Some(mut entry) = emit::reserve::<ConnectRecord>() else {
        return;
    };
    entry.write(ConnectRecord {
        header: emit::current_header(EventKind::Connect),
        fd: call.fd as i32,
        ret: ret as i32,
        family,
        port: u16::from_be(port_be),
        addr,
        _pad: 0,
    });
    emit::submit(entry);
}
