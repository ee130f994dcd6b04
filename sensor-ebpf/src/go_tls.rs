//! Go's crypto/tls: `func (c *Conn) Write(b []byte) (int, error)` and
//! `Read`, found by the sensor through `.gopclntab` (stripped binaries
//! keep it). Write is captured at its entry (its buffer is the plaintext
//! to send); Read with a uprobe at entry and one at each `RET` (never a
//! uretprobe: it rewrites the return address on the goroutine's stack,
//! which Go moves when it grows; the runtime then crashes).
//!
//! Go's register ABI (1.17+, amd64): the receiver `c` in RAX, `b`'s
//! pointer, length and capacity in RBX, RCX, RDI; `n` returned in RAX.
//! The current goroutine (`g`) is in R14: goroutines move between threads
//! during a call, so a call is keyed by (process, g), not by thread.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::LruHashMap,
    programs::ProbeContext,
};
use sensor_common::{Counter, TLS_DIR_READ, TLS_DIR_WRITE, TLS_LIB_GO};

use crate::{
    emit,
    maps::{count, is_sensor},
};

#[repr(C)]
#[derive(Clone, Copy)]
struct GoKey {
    tgid: u64,
    g: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct GoCall {
    conn: u64,
    buf: u64,
    len: u64,
    start_ns: u64,
    fd: i32,
    dir: u8,
    _pad: [u8; 3],
}

/// Calls in progress. LRU: a goroutine that never returns (its process
/// killed mid-call) cannot fill the map for good.
#[map]
static GO_CALLS: LruHashMap<GoKey, GoCall> = LruHashMap::with_max_entries(16384, 0);

/// The socket under a `*tls.Conn`: its first field is the `net.Conn`
/// interface (itab, data); the data of a TCP connection is a
/// `*net.TCPConn`, whose first field is its `*netFD`; a `netFD` starts with
/// `poll.FD`, whose `Sysfd` follows a 16-byte `fdMutex`. Stable since Go
/// 1.9 (checked by the end-to-end test: the fd is the connect's). Another
/// `net.Conn` (a pipe, a proxy wrapper) yields a wrong or no number: the
/// record then names no socket.
#[inline(always)]
fn socket_of(conn: u64) -> i32 {
    let Ok(data) = (unsafe { bpf_probe_read_user((conn + 8) as *const u64) }) else {
        return -1;
    };
    let Ok(netfd) = (unsafe { bpf_probe_read_user(data as *const u64) }) else {
        return -1;
    };
    match unsafe { bpf_probe_read_user((netfd + 16) as *const i64) } {
        Ok(fd) if (0..=i32::MAX as i64).contains(&fd) => fd as i32,
        _ => -1,
    }
}

#[inline(always)]
fn enter(ctx: &ProbeContext, dir: u8) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = pid_tgid >> 32;
    if is_sensor(tgid as u32) {
        return 0;
    }
    let regs = unsafe { &*ctx.regs };
    let (conn, buf, len) = (regs.rax, regs.rbx, regs.rcx);
    if dir == TLS_DIR_WRITE && crate::enforce::block_armed_write(tgid as u32, conn, buf, len) {
        return 0;
    }
    if dir == TLS_DIR_WRITE {
        // Sent at entry, where the whole buffer is the plaintext: Go's
        // transport reads the answer on another goroutine, often on another
        // CPU, whose Read can return before this Write's RET is reached,
        // and a response must not reach the daemon before its request.
        if len > 0 {
            crate::tls::emit_data(
                conn,
                buf,
                len,
                socket_of(conn),
                dir,
                TLS_LIB_GO,
                emit::current_start_ns(),
            );
        }
        return 0;
    }
    let call = GoCall {
        conn,
        buf,
        len,
        start_ns: emit::current_start_ns(),
        fd: socket_of(conn),
        dir,
        _pad: [0; 3],
    };
    let key = GoKey { tgid, g: regs.r14 };
    if GO_CALLS.insert(&key, &call, 0).is_err() {
        count(Counter::TlsPendingError);
    }
    0
}

#[uprobe]
pub fn go_tls_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_DIR_WRITE)
}

#[uprobe]
pub fn go_tls_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_DIR_READ)
}

/// At each `RET` of Read: RAX holds `n`.
#[uprobe]
pub fn go_tls_ret(ctx: ProbeContext) -> u32 {
    let regs = unsafe { &*ctx.regs };
    let key = GoKey {
        tgid: bpf_get_current_pid_tgid() >> 32,
        g: regs.r14,
    };
    let Some(call) = (unsafe { GO_CALLS.get(&key) }).copied() else {
        return 0;
    };
    let _ = GO_CALLS.remove(&key);
    let n = regs.rax as i64;
    // More than was asked for is not a count.
    if n <= 0 || n as u64 > call.len {
        return 0;
    }
    crate::tls::emit_data(
        call.conn,
        call.buf,
        n as u64,
        call.fd,
        call.dir,
        TLS_LIB_GO,
        call.start_ns,
    );
    0
}
