//! TLS plaintext from the libraries' own API, before encryption and after
//! decryption: uprobes at entry park the arguments per thread, one uretprobe
//! copies the bytes the call really moved.
//!
//! Signatures (arguments in order):
//! - OpenSSL `int SSL_write(SSL *s, const void *buf, int num)` and
//!   `int SSL_read(SSL *s, void *buf, int num)`: return the byte count (> 0)
//!   or <= 0 on error / retry.
//! - OpenSSL `int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t
//!   *written)` and `SSL_read_ex(.., size_t *readbytes)`: return 1 on
//!   success, the count is in the 4th argument, read at return (5th for
//!   OpenSSL 3.3+ `SSL_write_ex2`, which takes flags before it).
//! - GnuTLS `ssize_t gnutls_record_send(gnutls_session_t s, const void
//!   *data, size_t n)` and `gnutls_record_recv(.., void *data, size_t n)`.
//!
//! Which function a return belongs to is in the parked arguments, so a
//! single return program serves them all.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated},
    macros::{map, uprobe, uretprobe},
    maps::{LruHashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
};
use sensor_common::{
    Counter, EventKind, TLS_DATA_MAX, TLS_DIR_READ, TLS_DIR_WRITE, TLS_LIB_BORINGSSL,
    TLS_LIB_GNUTLS, TLS_LIB_OPENSSL, TLS_LIB_RUSTLS, TlsBindRecord, TlsDataHeader, TlsDataRecord,
};

use crate::{
    emit,
    maps::{EVENTS, TLS_CAPTURE_BYTES, TLS_RECORD_CAPTURE_BYTES, count, is_sensor},
};

/// A thread's TLS call: its arguments while in progress, or (state
/// `AWAIT_SOCKET`) a finished write whose ciphertext has not reached a
/// socket yet, or `IDLE` between calls.
///
/// The entry lives as long as the thread and is rewritten in place by each
/// call: an insert and a delete per call (bucket lock, free-list) cost the
/// two probes about twice the lookup. It also keeps what never changes for
/// the thread (its process's start time), read from the task once.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsCall {
    conn: u64,
    buf: u64,
    /// `size_t *` holding the count for the `_ex` functions, else 0.
    count_ptr: u64,
    /// Bytes the call asked to move: a count above it is not believed.
    num: u64,
    /// Start time of the thread's process (`EventHeader::start_ns`).
    start_ns: u64,
    /// First watched socket the thread wrote or read during the call.
    fd: i32,
    state: u8,
    dir: u8,
    lib: u8,
    _pad: u8,
}

/// `TlsCall::dir` of an `SSL_do_handshake` call (never in a record).
const DIR_HANDSHAKE: u8 = 0xff;

const IN_CALL: u8 = 0;
const AWAIT_SOCKET: u8 = 1;
const IDLE: u8 = 2;

/// pid_tgid → the thread's call. LRU: a thread whose exit was not seen
/// (none should be) cannot fill the map for good; with more live TLS
/// threads than entries, the least recently calling loses its entry (and
/// at most the call it was in).
#[map]
static TLS_CALLS: LruHashMap<u64, TlsCall> = LruHashMap::with_max_entries(32768, 0);

/// Building area for one record: 16 KiB does not fit the 512-byte stack.
#[map]
static TLS_SCRATCH: PerCpuArray<TlsDataRecord> = PerCpuArray::with_max_entries(1, 0);

/// A thread that exits inside a TLS call leaves its entry; drop it.
#[inline(always)]
pub fn forget_thread(pid_tgid: u64) {
    let _ = TLS_CALLS.remove(&pid_tgid);
}

/// The thread is about to write (`writing`) or read watched socket `fd`.
/// Inside a TLS call that is the call's socket (OpenSSL's socket BIO uses
/// write/read, curl's own BIO send/recv, GnuTLS its push/pull functions).
/// After a TLS write that touched no socket (a memory BIO: Python asyncio,
/// Node), the thread's next socket write carries that ciphertext: report
/// the pair once.
#[inline(always)]
pub fn on_socket_syscall(pid_tgid: u64, fd: i32, writing: bool) {
    let Some(call) = TLS_CALLS.get_ptr_mut(&pid_tgid) else {
        return;
    };
    let call = unsafe { &mut *call };
    if call.state == IN_CALL {
        if call.fd < 0 {
            call.fd = fd;
        }
        return;
    }
    if call.state != AWAIT_SOCKET || !writing {
        return;
    }
    call.state = IDLE;
    emit_bind(call.conn, fd);
}

/// Reports that TLS object `conn` of this thread sends on socket `fd`.
#[inline(always)]
fn emit_bind(conn: u64, fd: i32) {
    if let Some(mut entry) = emit::reserve::<TlsBindRecord>() {
        entry.write(TlsBindRecord {
            header: emit::current_header(EventKind::TlsBind),
            conn,
            fd,
            _pad: 0,
        });
        emit::submit(entry);
    }
}

#[inline(always)]
/// `count_arg`: index of the `size_t *` argument that receives the byte
/// count (the `_ex` functions), or None when the return value is the count.
fn enter(ctx: &ProbeContext, dir: u8, lib: u8, count_arg: Option<usize>) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_sensor((pid_tgid >> 32) as u32) {
        return 0;
    }
    let (Some(conn), Some(buf)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    if dir == TLS_DIR_WRITE
        && crate::enforce::block_armed_write(
            (pid_tgid >> 32) as u32,
            conn,
            buf,
            ctx.arg::<u64>(2).unwrap_or(0),
        )
    {
        return 0;
    }
    let count_ptr = match count_arg {
        Some(n) => ctx.arg::<u64>(n).unwrap_or(0),
        None => 0,
    };
    let existing = TLS_CALLS.get_ptr_mut(&pid_tgid);
    let call = TlsCall {
        conn,
        buf,
        count_ptr,
        num: ctx.arg::<u64>(2).unwrap_or(0),
        start_ns: match existing {
            Some(c) => unsafe { (*c).start_ns },
            None => emit::current_start_ns(),
        },
        fd: -1,
        state: IN_CALL,
        dir,
        lib,
        _pad: 0,
    };
    if let Some(c) = existing {
        // Only this thread touches its entry: no race in writing it.
        unsafe { *c = call };
        return 0;
    }
    if TLS_CALLS.insert(&pid_tgid, &call, 0).is_err() {
        count(Counter::TlsPendingError);
    }
    0
}

#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_DIR_WRITE, TLS_LIB_OPENSSL, None)
}

#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_DIR_READ, TLS_LIB_OPENSSL, None)
}

#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_DIR_WRITE, TLS_LIB_OPENSSL, Some(3))
}

#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_DIR_READ, TLS_LIB_OPENSSL, Some(3))
}

/// `int SSL_write_ex2(SSL *s, const void *buf, size_t num, uint64_t flags,
/// size_t *written)`.
#[uprobe]
pub fn ssl_write_ex2(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_DIR_WRITE, TLS_LIB_OPENSSL, Some(4))
}

/// BoringSSL's `SSL_write`, found without symbols (in Bun) by
/// `sensor/src/tls/boringssl.rs`: OpenSSL's signature, but its own program
/// so the call is labelled with the library that made it.
#[uprobe]
pub fn boringssl_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_DIR_WRITE, TLS_LIB_BORINGSSL, None)
}

#[uprobe]
pub fn boringssl_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_DIR_READ, TLS_LIB_BORINGSSL, None)
}

/// BoringSSL `int SSL_do_handshake(SSL *ssl)`: the ClientHello goes out
/// during the call, so the socket the thread writes then is the
/// connection's, reported at return before any request is written.
#[uprobe]
pub fn boringssl_do_handshake(ctx: ProbeContext) -> u32 {
    enter(&ctx, DIR_HANDSHAKE, TLS_LIB_BORINGSSL, None)
}

#[uprobe]
pub fn gnutls_send(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_DIR_WRITE, TLS_LIB_GNUTLS, None)
}

#[uprobe]
pub fn gnutls_recv(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_DIR_READ, TLS_LIB_GNUTLS, None)
}

#[uretprobe]
pub fn tls_ret(ctx: RetProbeContext) -> u32 {
    try_ret(&ctx).unwrap_or(1)
}

fn try_ret(ctx: &RetProbeContext) -> Result<u32, i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(entry) = TLS_CALLS.get_ptr_mut(&pid_tgid) else {
        return Ok(0);
    };
    let call = unsafe { *entry };
    if call.state != IN_CALL {
        return Ok(0);
    }
    if call.dir == DIR_HANDSHAKE {
        unsafe { (*entry).state = IDLE };
        if call.fd >= 0 {
            emit_bind(call.conn, call.fd);
        }
        return Ok(0);
    }
    // A write that reached no socket went to a memory BIO: the thread's
    // next socket write names the connection's socket.
    unsafe {
        (*entry).state = if call.dir == TLS_DIR_WRITE && call.fd < 0 {
            AWAIT_SOCKET
        } else {
            IDLE
        };
    }

    let moved: u64 = if call.count_ptr != 0 {
        // _ex: 1 on success, count written through the pointer (OpenSSL's
        // internal functions, probed instead of a wrapper pair by
        // `sensor/src/tls/placement.rs`, return > 0).
        if ctx.ret::<i32>() <= 0 {
            return Ok(0);
        }
        unsafe { bpf_probe_read_user(call.count_ptr as *const u64) }.unwrap_or(0)
    } else if call.lib == TLS_LIB_GNUTLS {
        let n = ctx.ret::<i64>();
        if n <= 0 { 0 } else { n as u64 }
    } else {
        let n = ctx.ret::<i32>();
        if n <= 0 { 0 } else { n as u64 }
    };
    if moved == 0 {
        return Ok(0);
    }
    // More than was asked for is not a count (an int num is widened by the
    // plain functions, so compare as 32-bit when it came from one).
    let int_num = call.lib == TLS_LIB_OPENSSL || call.lib == TLS_LIB_BORINGSSL;
    let asked = if call.count_ptr == 0 && int_num {
        call.num as u32 as u64
    } else {
        call.num
    };
    if moved > asked {
        count(Counter::ReadError);
        return Ok(0);
    }
    emit_data(
        call.conn,
        call.buf,
        moved,
        call.fd,
        call.dir,
        call.lib,
        call.start_ns,
    );
    Ok(0)
}

/// Sends `moved` bytes of plaintext at user address `buf` (the first
/// `TLS_CAPTURE_BYTES` of them; `TLS_RECORD_CAPTURE_BYTES` for a record
/// cipher's, `lib` rustls) as one `TlsData` record: shared by the C
/// libraries' return probe, Go's (`go_tls.rs`) and aws-lc's (`aead.rs`).
#[inline(always)]
pub fn emit_data(conn: u64, buf: u64, moved: u64, fd: i32, dir: u8, lib: u8, start_ns: u64) {
    let Some(rec) = TLS_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let limit = if lib == TLS_LIB_RUSTLS {
        TLS_RECORD_CAPTURE_BYTES.load()
    } else {
        TLS_CAPTURE_BYTES.load()
    } as u64;
    let mut n = if moved < limit { moved } else { limit };
    // Explicit clamp against the buffer size: this is what lets the
    // verifier bound both the copy and the ring-buffer output below.
    if n > TLS_DATA_MAX as u64 {
        n = TLS_DATA_MAX as u64;
    }
    if n < moved {
        count(Counter::TlsTruncated);
    }
    unsafe {
        (*rec).hdr = TlsDataHeader {
            header: emit::header_with_start(EventKind::TlsData, start_ns),
            conn,
            len: moved,
            captured: n as u32,
            fd,
            dir,
            lib,
            _pad: [0; 6],
        };
        if generated::bpf_probe_read_user(
            (*rec).data.as_mut_ptr() as *mut _,
            n as u32,
            buf as *const _,
        ) != 0
        {
            count(Counter::ReadError);
            return;
        }
        // Only the header and the captured bytes go out, not the whole
        // 16 KiB scratch record.
        let size = size_of::<TlsDataHeader>() + n as usize;
        let bytes = &*(rec as *const [u8; size_of::<TlsDataRecord>()]);
        if let Some(out) = bytes.get(..size)
            && EVENTS.output(out, emit::wakeup_flags()).is_err()
        {
            count(Counter::RingbufFull);
        }
    }
}
