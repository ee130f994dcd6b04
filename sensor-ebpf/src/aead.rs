//! TLS plaintext of rustls clients (Codex CLI) at the record cipher: aws-lc's
//! `EVP_AEAD_CTX_seal` (entry: the record to encrypt) and
//! `EVP_AEAD_CTX_open` (return: the record decrypted in place), found
//! without symbols by `sensor/src/tls/awslc.rs`. rustls itself is Rust
//! with no stable ABI and dozens of monomorphised copies of its I/O
//! paths; these two C functions are one each, with a stable signature
//! (measured on Codex 0.171.0 with gdb and kernel uprobes: the request
//! head, the JSON body and the SSE events are in clear there):
//!
//! ```c
//! int EVP_AEAD_CTX_seal(ctx, out, size_t *out_len, max_out_len, nonce,
//!                       nonce_len, in, in_len, ad, ad_len);
//! int EVP_AEAD_CTX_open(ctx, out, size_t *out_len, max_out_len, nonce,
//!                       nonce_len, in, in_len, ad, ad_len);
//! ```
//!
//! The last four arguments are on the stack: at entry, `[rsp]` is the
//! return address and `in`, `in_len`, `ad`, `ad_len` follow it.
//!
//! Only TLS application data is reported. The additional data tells a
//! TLS record from any other use of the cipher: 5 bytes (TLS 1.3, the
//! outer header `17 03 03 len`; the record's real type is its plaintext's
//! last byte) or 13 (TLS 1.2: sequence, type at byte 8, version, length).
//!
//! Each direction of a connection has its own `ctx`, so records are tied
//! to their socket instead, exactly where possible:
//! - a sealed record goes out with the thread's next send on a TLS
//!   socket, whose buffer starts 5 (TLS 1.3) or 13 (TLS 1.2: header and
//!   explicit nonce) bytes before the plaintext;
//! - an opened record was read by the thread's last receive on a TLS
//!   socket, into a buffer that holds it (rustls decrypts in place).
//!
//! Once tied, `ctx` → socket is kept for the connection's later records.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, uprobe, uretprobe},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use sensor_common::{Counter, TLS_DIR_READ, TLS_DIR_WRITE, TLS_LIB_RUSTLS, TlsBindRecord};

use crate::{
    emit,
    maps::{count, is_sensor},
};

/// What one thread of a rustls process is doing with records.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AeadThread {
    start_ns: u64,
    /// A sealed record whose socket is not known yet (0: none).
    seal_ctx: u64,
    seal_in: u64,
    /// The last receive on a TLS socket: its buffer and length.
    recv_buf: u64,
    recv_len: u64,
    recv_fd: i32,
    /// The header length before the plaintext of the sealed record.
    seal_head: u32,
    /// An open in progress (0: none).
    open_ctx: u64,
    open_out: u64,
    open_out_len: u64,
    open_fd: i32,
    /// TLS 1.3 (the type is the plaintext's last byte) or 1.2 (checked).
    open_tls13: u32,
}

/// Per thread. LRU: threads that exit unseen age out.
#[map]
static AEAD_THREADS: LruHashMap<u64, AeadThread> = LruHashMap::with_max_entries(16384, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct CtxKey {
    tgid: u64,
    ctx: u64,
}

/// (process, cipher context) → its socket, once tied.
#[map]
static AEAD_SOCKETS: LruHashMap<CtxKey, i32> = LruHashMap::with_max_entries(16384, 0);

/// Processes that ran one of these probes: their threads' receives on TLS
/// sockets are noted (other processes pay nothing more).
#[map]
static AEAD_PROCESSES: LruHashMap<u32, u8> = LruHashMap::with_max_entries(4096, 0);

const APPLICATION_DATA: u8 = 0x17;
const TLS13_AD: u64 = 5;
const TLS12_AD: u64 = 13;

/// The arguments on the stack at entry: `in`, `in_len`, `ad`, `ad_len`.
#[inline(always)]
fn stack_args(ctx: &ProbeContext) -> Option<[u64; 4]> {
    let sp = unsafe { (*ctx.regs).rsp };
    unsafe { bpf_probe_read_user((sp + 8) as *const [u64; 4]) }.ok()
}

/// The thread's entry, made on first use.
#[inline(always)]
fn thread(pid_tgid: u64) -> Option<*mut AeadThread> {
    if let Some(t) = AEAD_THREADS.get_ptr_mut(&pid_tgid) {
        return Some(t);
    }
    let t = AeadThread {
        start_ns: emit::current_start_ns(),
        seal_ctx: 0,
        seal_in: 0,
        recv_buf: 0,
        recv_len: 0,
        recv_fd: -1,
        seal_head: 0,
        open_ctx: 0,
        open_out: 0,
        open_out_len: 0,
        open_fd: -1,
        open_tls13: 0,
    };
    let _ = AEAD_PROCESSES.insert(&((pid_tgid >> 32) as u32), &1, 0);
    if AEAD_THREADS.insert(&pid_tgid, &t, 0).is_err() {
        count(Counter::TlsPendingError);
        return None;
    }
    AEAD_THREADS.get_ptr_mut(&pid_tgid)
}

#[inline(always)]
fn socket_of(pid_tgid: u64, ctx: u64) -> i32 {
    let k = CtxKey {
        tgid: pid_tgid >> 32,
        ctx,
    };
    match unsafe { AEAD_SOCKETS.get(&k) } {
        Some(fd) => *fd,
        None => -1,
    }
}

#[inline(always)]
fn tie(pid_tgid: u64, ctx: u64, fd: i32) {
    let k = CtxKey {
        tgid: pid_tgid >> 32,
        ctx,
    };
    let _ = AEAD_SOCKETS.insert(&k, &fd, 0);
}

/// The last byte of a TLS 1.3 plaintext: the record's real type.
#[inline(always)]
fn inner_type(buf: u64, len: u64) -> u8 {
    if len == 0 {
        return 0;
    }
    unsafe { bpf_probe_read_user((buf + len - 1) as *const u8) }.unwrap_or(0)
}

#[uprobe]
pub fn aead_seal(ctx: ProbeContext) -> u32 {
    let Some([input, in_len, ad, ad_len]) = stack_args(&ctx) else {
        return 0;
    };
    seal(&ctx, input, in_len, ad, ad_len)
}

/// `int EVP_AEAD_CTX_seal_scatter(ctx, out, out_tag, size_t *out_tag_len,
/// max_out_tag_len, nonce, nonce_len, in, in_len, extra_in, extra_in_len,
/// ad, ad_len)`: what aws-lc-rs seals TLS 1.2 AES-GCM records with. At
/// entry `nonce_len` is at `[rsp+8]`, then `in`, `in_len`, `extra_in`,
/// `extra_in_len`, `ad`, `ad_len`.
#[uprobe]
pub fn aead_seal_scatter(ctx: ProbeContext) -> u32 {
    let sp = unsafe { (*ctx.regs).rsp };
    let Ok([input, in_len, _, _, ad, ad_len]) =
        (unsafe { bpf_probe_read_user((sp + 16) as *const [u64; 6]) })
    else {
        return 0;
    };
    seal(&ctx, input, in_len, ad, ad_len)
}

/// A record about to be encrypted: `in_len` bytes at `input`.
#[inline(always)]
fn seal(ctx: &ProbeContext, input: u64, in_len: u64, ad: u64, ad_len: u64) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_sensor((pid_tgid >> 32) as u32) {
        return 0;
    }
    let Some(cipher) = ctx.arg::<u64>(0) else {
        return 0;
    };
    let (len, head) = match ad_len {
        TLS13_AD => {
            if inner_type(input, in_len) != APPLICATION_DATA {
                return 0;
            }
            (in_len - 1, 5)
        }
        TLS12_AD => {
            match unsafe { bpf_probe_read_user((ad + 8) as *const u8) } {
                Ok(APPLICATION_DATA) => {}
                _ => return 0,
            }
            (in_len, 13)
        }
        _ => return 0,
    };
    let Some(t) = thread(pid_tgid) else {
        return 0;
    };
    let fd = socket_of(pid_tgid, cipher);
    let t = unsafe { &mut *t };
    if fd < 0 {
        // Tied by the thread's next send (`on_send`).
        t.seal_ctx = cipher;
        t.seal_in = input;
        t.seal_head = head;
    }
    crate::tls::emit_data(
        cipher,
        input,
        len,
        fd,
        TLS_DIR_WRITE,
        TLS_LIB_RUSTLS,
        t.start_ns,
    );
    0
}

#[uprobe]
pub fn aead_open(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_sensor((pid_tgid >> 32) as u32) {
        return 0;
    }
    let (Some(cipher), Some(out), Some(out_len), Some([input, _, ad, ad_len])) = (
        ctx.arg::<u64>(0),
        ctx.arg::<u64>(1),
        ctx.arg::<u64>(2),
        stack_args(&ctx),
    ) else {
        return 0;
    };
    let tls13 = match ad_len {
        TLS13_AD => 1,
        TLS12_AD => {
            match unsafe { bpf_probe_read_user((ad + 8) as *const u8) } {
                Ok(APPLICATION_DATA) => {}
                _ => return 0,
            }
            0
        }
        _ => return 0,
    };
    let Some(t) = thread(pid_tgid) else {
        return 0;
    };
    let t = unsafe { &mut *t };
    let mut fd = socket_of(pid_tgid, cipher);
    // Read into the buffer of the thread's last receive: that socket's.
    if t.recv_fd >= 0 && input >= t.recv_buf && input < t.recv_buf + t.recv_len {
        if fd != t.recv_fd {
            tie(pid_tgid, cipher, t.recv_fd);
        }
        fd = t.recv_fd;
    }
    t.open_ctx = cipher;
    t.open_out = out;
    t.open_out_len = out_len;
    t.open_fd = fd;
    t.open_tls13 = tls13;
    0
}

#[uretprobe]
pub fn aead_open_ret(ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(t) = AEAD_THREADS.get_ptr_mut(&pid_tgid) else {
        return 0;
    };
    let t = unsafe { &mut *t };
    if t.open_ctx == 0 {
        return 0;
    }
    let (cipher, out, fd, tls13) = (t.open_ctx, t.open_out, t.open_fd, t.open_tls13);
    t.open_ctx = 0;
    if ctx.ret::<i32>() != 1 {
        return 0;
    }
    let Ok(mut len) = (unsafe { bpf_probe_read_user(t.open_out_len as *const u64) }) else {
        count(Counter::ReadError);
        return 0;
    };
    if tls13 == 1 {
        if inner_type(out, len) != APPLICATION_DATA {
            return 0;
        }
        len -= 1;
    }
    if len == 0 {
        return 0;
    }
    crate::tls::emit_data(
        cipher,
        out,
        len,
        fd,
        TLS_DIR_READ,
        TLS_LIB_RUSTLS,
        t.start_ns,
    );
    0
}

/// A receive of `len` bytes into `buf` on TLS socket `fd`: the records
/// opened next on this thread came from there.
#[inline(always)]
pub fn on_recv(pid_tgid: u64, fd: i32, buf: u64, len: u64) {
    if unsafe { AEAD_PROCESSES.get(&((pid_tgid >> 32) as u32)) }.is_none() {
        return;
    }
    let Some(t) = thread(pid_tgid) else {
        return;
    };
    let t = unsafe { &mut *t };
    t.recv_buf = buf;
    t.recv_len = len;
    t.recv_fd = fd;
}

/// Whether the thread sealed a record whose socket is not known yet.
#[inline(always)]
pub fn awaits_socket(pid_tgid: u64) -> bool {
    match unsafe { AEAD_THREADS.get(&pid_tgid) } {
        Some(t) => t.seal_ctx != 0,
        None => false,
    }
}

/// A send on TLS socket `fd` whose first buffers start at `bases`: if one
/// starts where the thread's last sealed record's header does, that
/// record, and every later one of its `ctx`, goes out on `fd`.
#[inline(always)]
pub fn on_send(pid_tgid: u64, fd: i32, bases: &[u64; 4]) {
    let Some(t) = AEAD_THREADS.get_ptr_mut(&pid_tgid) else {
        return;
    };
    let t = unsafe { &mut *t };
    if t.seal_ctx == 0 {
        return;
    }
    let start = t.seal_in.wrapping_sub(t.seal_head as u64);
    if !bases.contains(&start) {
        return;
    }
    let cipher = t.seal_ctx;
    t.seal_ctx = 0;
    tie(pid_tgid, cipher, fd);
    if let Some(mut entry) = emit::reserve::<TlsBindRecord>() {
        entry.write(TlsBindRecord {
            header: emit::current_header(sensor_common::EventKind::TlsBind),
            conn: cipher,
            fd,
            _pad: 0,
        });
        emit::submit(entry);
    }
}
