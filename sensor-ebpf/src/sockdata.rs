//! Bytes on sockets a process connected (TCP over IPv4/IPv6).
//!
//! - The first sends name the destination of any TLS client (the ClientHello
//!   carries SNI and ALPN, hookable library or not).
//! - Plain-text HTTP (local LLM servers, internal APIs) and database
//!   sessions (PostgreSQL, MySQL) are captured in both directions for the
//!   life of the connection, a bounded prefix per call.
//! - Inside a TLS call, the socket the library touches ties the library's
//!   connection object to the socket (see `tls::on_socket_syscall`).
//!
//! Sockets are registered per (tgid, fd) when connect() succeeds or is in
//! progress, and classified by their first send: TLS, HTTP, database or other. Only
//! registered fds are looked at. A socket can go without close(2): exit,
//! close-on-exec, dup2/dup3 over it, close_range. So that a file later
//! given the same fd number is never read as the socket's traffic, and so
//! that no user can fill the table with sockets that are gone:
//! - close, dup2/dup3 and close_range forget the fds they close;
//! - each entry carries its process image's stamp (set at fork and exec,
//!   dropped when the whole process has exited), and an entry whose stamp
//!   is not the current one is dropped when it is met (exec, pid reuse);
//! - the table is an LRU: what is left over is evicted first.
//!
//! A send is any of write, sendto, writev, sendmsg and sendmmsg: a client
//! picks one by its runtime, not by protocol (tokio's TcpStream, and so
//! rustls clients such as Codex, sends its ClientHello with writev; libuv
//! gathers several buffers with writev too). Each tracepoint runs for
//! every call of its syscall on the host, and costs one map lookup for an
//! unwatched fd. Not seen: sends through io_uring (no syscall per send)
//! and pwritev2 (no client found using it on a socket).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, generated},
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use sensor_common::{
    Counter, EventKind, SOCK_DATA_MAX, SockDataHeader, TLS_DIR_READ, TLS_DIR_WRITE,
};

use crate::{
    emit,
    maps::{EVENTS, SOCK_CAPTURE_BYTES, SOCK_CAPTURE_SENDS, count},
    syscall::{ARG0, ARG1, ARG2, RET, field},
    tls,
};

/// What the first send said the connection speaks.
const MODE_NEW: u32 = 0;
const MODE_TLS: u32 = 1;
const MODE_HTTP: u32 = 2;
const MODE_OTHER: u32 = 3;
/// A database session (PostgreSQL's StartupMessage, MySQL's handshake
/// response): captured like plain HTTP.
const MODE_DB: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Watch {
    /// Sends still to capture while the protocol is unknown or other.
    sends_left: u32,
    mode: u32,
    /// The stamp of the process image that connected the socket.
    image: u64,
}

/// (tgid << 32 | fd) → what is captured of that socket. Entries live until
/// the socket is closed (TLS sockets stay for the binding of TLS calls to
/// sockets). An LRU: a plain hash refused every new socket once full,
/// which any user could make it by exiting with sockets open (the kernel
/// closes them without close(2)); stale entries are now evicted first,
/// and live ones only under more live sockets than it holds.
#[map]
static WATCHED: LruHashMap<u64, Watch> = LruHashMap::with_max_entries(65536, 0);

/// What the sensor knows of a process image.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Image {
    /// When it began (fork or exec; ns since boot): unique per image of a
    /// tgid, so an entry of an earlier image (before an exec, or of an
    /// exited process whose pid was reused) is told apart.
    stamp: u64,
    /// 1 once it watched a socket: close_range scans only then.
    watching: u64,
}

/// tgid → its current image. Set at fork and exec, removed when the whole
/// process has exited; a process older than the sensor gets one at its
/// first watched socket.
#[map]
static IMAGES: HashMap<u32, Image> = HashMap::with_max_entries(65536, 0);

/// A receive on a plain HTTP socket in flight, keyed by thread, from
/// syscall entry (buffer) to exit (byte count).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingRecv {
    buf: u64,
    fd: i32,
    _pad: u32,
}

/// An LRU: a plain hash was filled for good by a local user's 16,500
/// threads parked in recv(2) on one watched socket, after which no other
/// receive on the host was captured (`tests/tests/watched_sockets.rs`).
/// Entries live for one call; the oldest are the parked ones. Only
/// receives on watched sockets insert; every read's exit looks up, which
/// costs the same in both kinds of map.
#[map]
static PENDING_RECV: LruHashMap<u64, PendingRecv> = LruHashMap::with_max_entries(16384, 0);

/// Building area for one record (a `SockDataRecord` and as much again).
/// A gathered send copies each piece at a variable offset; the verifier
/// bounds the offset (< `SOCK_DATA_MAX`) and the length (<= `SOCK_DATA_MAX`)
/// of each copy apart, never their sum, so the area must hold both maxima.
/// Only the header and the bytes captured are output.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SockScratch {
    hdr: SockDataHeader,
    data: [u8; 2 * SOCK_DATA_MAX],
}

#[map]
static SOCK_SCRATCH: PerCpuArray<SockScratch> = PerCpuArray::with_max_entries(1, 0);

/// Pieces of a gathered send read at most (two probe reads each). hyper
/// sends a request as head + body, or + chunk framing (2-4 pieces), Node
/// its corked writes; a send with more pieces reports the bytes and the
/// length of the first `MAX_IOV` (each probe read costs 100-200 ns, and
/// only watched sockets' captured sends pay it).
const MAX_IOV: u64 = 16;

/// How a send syscall passes its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Src {
    /// write, sendto: buffer and length at ARG1, ARG2.
    Flat,
    /// writev: `struct iovec *` and count at ARG1, ARG2.
    Iov,
    /// sendmsg: `struct user_msghdr *` at ARG1.
    Msg,
    /// sendmmsg: `struct mmsghdr *` (a msghdr first) and count at ARG1, ARG2.
    Mmsg,
}

#[inline(always)]
fn key(pid_tgid: u64, fd: i32) -> u64 {
    (pid_tgid & 0xffff_ffff_0000_0000) | (fd as u32 as u64)
}

/// A new process image of `tgid` (a new process at fork, or an exec):
/// every socket entry of the one before is stale from now on.
#[inline(always)]
pub fn new_image(tgid: u32) {
    let img = Image {
        stamp: unsafe { bpf_ktime_get_ns() },
        watching: 0,
    };
    if IMAGES.insert(&tgid, &img, 0).is_err() {
        count(Counter::SockWatchFull);
    }
}

/// The whole process `tgid` has exited.
#[inline(always)]
pub fn forget_process(tgid: u32) {
    let _ = IMAGES.remove(&tgid);
}

/// The stamp of `tgid`'s current image, 0 when it has none.
#[inline(always)]
fn stamp(tgid: u32) -> u64 {
    match unsafe { IMAGES.get(&tgid) } {
        Some(img) => img.stamp,
        None => 0,
    }
}

/// Called at connect() exit for sockets worth watching.
#[inline(always)]
pub fn watch(pid_tgid: u64, fd: i32) {
    let tgid = (pid_tgid >> 32) as u32;
    let image = match IMAGES.get_ptr_mut(&tgid) {
        Some(img) => unsafe {
            (*img).watching = 1;
            (*img).stamp
        },
        None => {
            // Older than the sensor: its image begins now.
            new_image(tgid);
            if let Some(img) = IMAGES.get_ptr_mut(&tgid) {
                unsafe { (*img).watching = 1 };
            }
            stamp(tgid)
        }
    };
    let w = Watch {
        sends_left: SOCK_CAPTURE_SENDS.load(),
        mode: MODE_NEW,
        image,
    };
    // An LRU insert does not fail for want of room.
    let _ = WATCHED.insert(&key(pid_tgid, fd), &w, 0);
}

/// The entry of a watched socket, if `fd` of the calling process is one: an
/// entry of an earlier image is dropped and counted, never used.
#[inline(always)]
fn watched(pid_tgid: u64, fd: i32) -> Option<*mut Watch> {
    let k = key(pid_tgid, fd);
    let w = WATCHED.get_ptr_mut(&k)?;
    if unsafe { (*w).image } != stamp((pid_tgid >> 32) as u32) {
        let _ = WATCHED.remove(&k);
        count(Counter::SockWatchStale);
        return None;
    }
    Some(w)
}

/// Forgets `fd` of the calling process if it is watched (the socket was
/// closed, or replaced by dup2/dup3).
#[inline(always)]
fn unwatch(pid_tgid: u64, fd: i32) {
    let k = key(pid_tgid, fd);
    // Most closes are of files or of sockets no longer watched: a lookup is
    // lock-free, a delete takes the bucket lock, so only delete on a hit
    // (no gain measurable on the single-threaded bench loop, where program
    // dispatch dominates; it avoids lock traffic across CPUs).
    if WATCHED.get_ptr(&k).is_some() {
        let _ = WATCHED.remove(&k);
    }
}

/// A thread exiting inside a receive leaves its entry; drop it.
#[inline(always)]
pub fn forget_thread(pid_tgid: u64) {
    let _ = PENDING_RECV.remove(&pid_tgid);
}

#[tracepoint]
pub fn sys_enter_write(ctx: TracePointContext) -> u32 {
    on_send(&ctx, Src::Flat)
}

#[tracepoint]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    on_send(&ctx, Src::Flat)
}

#[tracepoint]
pub fn sys_enter_writev(ctx: TracePointContext) -> u32 {
    on_send(&ctx, Src::Iov)
}

#[tracepoint]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    on_send(&ctx, Src::Msg)
}

#[tracepoint]
pub fn sys_enter_sendmmsg(ctx: TracePointContext) -> u32 {
    on_send(&ctx, Src::Mmsg)
}

#[tracepoint]
pub fn sys_enter_read(ctx: TracePointContext) -> u32 {
    on_recv_enter(&ctx)
}

#[tracepoint]
pub fn sys_enter_recvfrom(ctx: TracePointContext) -> u32 {
    on_recv_enter(&ctx)
}

#[tracepoint]
pub fn sys_exit_read(ctx: TracePointContext) -> u32 {
    on_recv_exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_recvfrom(ctx: TracePointContext) -> u32 {
    on_recv_exit(&ctx)
}

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    unwatch(bpf_get_current_pid_tgid(), field::<u64>(&ctx, ARG0) as i32);
    0
}

/// `dup2(oldfd, newfd)`, `dup3(oldfd, newfd, flags)`: newfd is closed first
/// (a no-op when it equals oldfd, which keeps the socket, so it is kept).
#[tracepoint]
pub fn sys_enter_dup2(ctx: TracePointContext) -> u32 {
    on_dup(&ctx)
}

#[tracepoint]
pub fn sys_enter_dup3(ctx: TracePointContext) -> u32 {
    on_dup(&ctx)
}

#[inline(always)]
fn on_dup(ctx: &TracePointContext) -> u32 {
    let (old, new) = (
        field::<u64>(ctx, ARG0) as i32,
        field::<u64>(ctx, ARG1) as i32,
    );
    if old != new {
        unwatch(bpf_get_current_pid_tgid(), new);
    }
    0
}

/// fds a `close_range` is followed over: a process that watches sockets
/// and closes a wider range keeps entries past it, which its next exec or
/// exit makes stale (dropped when met, evicted first).
const CLOSE_RANGE_SCAN: u32 = 256;
/// `CLOSE_RANGE_CLOEXEC` (include/uapi/linux/close_range.h): the fds are
/// only marked, and closed by the next exec (whose new image stamp makes
/// their entries stale).
const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;

/// `close_range(first, last, flags)`, which CPython, glibc's posix_spawn
/// and systemd use to shed descriptors.
#[tracepoint]
pub fn sys_enter_close_range(ctx: TracePointContext) -> u32 {
    if field::<u64>(&ctx, ARG2) & CLOSE_RANGE_CLOEXEC != 0 {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    // Most callers are children about to exec, which never watched a
    // socket: no scan for them.
    match unsafe { IMAGES.get(&((pid_tgid >> 32) as u32)) } {
        Some(img) if img.watching != 0 => {}
        _ => return 0,
    }
    let first = field::<u64>(&ctx, ARG0) as u32;
    let last = field::<u64>(&ctx, ARG1) as u32;
    for i in 0..CLOSE_RANGE_SCAN {
        let fd = first.wrapping_add(i);
        if fd < first || fd > last || fd > i32::MAX as u32 {
            break;
        }
        unwatch(pid_tgid, fd as i32);
    }
    0
}

/// First four bytes of a request line (or of the h2c preface): the
/// connection speaks plain HTTP.
#[inline(always)]
fn is_http_start(b: &[u8; 4]) -> bool {
    matches!(
        b,
        b"GET " | b"POST" | b"PUT " | b"DELE" | b"PATC" | b"HEAD" | b"OPTI" | b"PRI "
    )
}

#[inline(always)]
fn on_send(ctx: &TracePointContext, src: Src) -> u32 {
    // Every send syscall has the fd at ARG0 (`src` says where the bytes are).
    let pid_tgid = bpf_get_current_pid_tgid();
    let fd = field::<u64>(ctx, ARG0) as i32;
    // Most writes on the host are not to a watched socket: one lookup and out.
    let Some(w) = watched(pid_tgid, fd) else {
        return 0;
    };
    tls::on_socket_syscall(pid_tgid, fd, true);
    let w = unsafe { &mut *w };
    match w.mode {
        MODE_TLS => {
            if crate::aead::awaits_socket(pid_tgid) {
                crate::aead::on_send(pid_tgid, fd, &send_bases(ctx, src));
            }
            return 0;
        }
        MODE_HTTP | MODE_DB => {}
        _ => {
            if w.sends_left == 0 {
                return 0;
            }
            w.sends_left -= 1;
        }
    }
    let first = match src {
        Src::Flat => {
            let len = field::<u64>(ctx, ARG2);
            if len == 0 {
                return 0;
            }
            output(fd, field::<u64>(ctx, ARG1), len, TLS_DIR_WRITE)
        }
        Src::Iov => output_iov(fd, field::<u64>(ctx, ARG1), field::<u64>(ctx, ARG2)),
        Src::Msg | Src::Mmsg => {
            // sendmmsg: only its first message (the first bytes are there).
            if src == Src::Mmsg && field::<u64>(ctx, ARG2) == 0 {
                return 0;
            }
            // struct user_msghdr: msg_name 8, msg_namelen 4 + 4 padding,
            // then msg_iov and msg_iovlen (8 each) at 16.
            let msg = field::<u64>(ctx, ARG1);
            match unsafe { bpf_probe_read_user((msg + 16) as *const [u64; 2]) } {
                Ok([iov, iovlen]) => output_iov(fd, iov, iovlen),
                Err(_) => {
                    count(Counter::ReadError);
                    NO_START
                }
            }
        }
    };
    if w.mode == MODE_NEW {
        w.mode = match first {
            // A TLS handshake record: the library's plaintext is captured
            // by the TLS hooks, nothing more to copy here.
            [0x16, 0x03, ..] => {
                crate::enforce::hold_new_tls((pid_tgid >> 32) as u32, fd);
                MODE_TLS
            }
            // PostgreSQL's SSLRequest or GSSENCRequest: the next send is
            // a ClientHello (server said yes) or the StartupMessage (no);
            // that one decides, and this send is not counted.
            [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f | 0x30] => {
                w.sends_left += 1;
                MODE_NEW
            }
            // StartupMessage of protocol 3.0 (length, then 0x00030000).
            [0, 0, _, _, 0, 3, 0, 0] => MODE_DB,
            // MySQL/MariaDB, whose server speaks first (its greeting is
            // not captured): the client's first packet is sequence 1, with
            // CLIENT_PROTOCOL_41 (0x200) in its capabilities. 32 bytes
            // with CLIENT_SSL (0x800) are an SSLRequest: the ClientHello
            // follows, and decides; this send is not counted.
            [32, 0, 0, 1, _, c1, _, _] if c1 & 0x0a == 0x0a => {
                w.sends_left += 1;
                MODE_NEW
            }
            // A handshake response (user, database) is longer.
            [l0, l1, 0, 1, _, c1, _, _] if c1 & 0x02 != 0 && (l1 > 0 || l0 > 32) => MODE_DB,
            [a, b, c, d, ..] if is_http_start(&[a, b, c, d]) => MODE_HTTP,
            _ => MODE_OTHER,
        };
    }
    0
}

/// Where the first (up to) four buffers of a send start, zeros past its
/// end or where they cannot be read.
#[inline(always)]
fn send_bases(ctx: &TracePointContext, src: Src) -> [u64; 4] {
    let iov = match src {
        Src::Flat => return [field::<u64>(ctx, ARG1), 0, 0, 0],
        Src::Iov => field::<u64>(ctx, ARG1),
        Src::Msg | Src::Mmsg => {
            // msg_iov of the (first) msghdr, as in `on_send`.
            let msg = field::<u64>(ctx, ARG1);
            match unsafe { bpf_probe_read_user((msg + 16) as *const u64) } {
                Ok(iov) => iov,
                Err(_) => return [0; 4],
            }
        }
    };
    let mut out = [0u64; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        // struct iovec { void *base; size_t len; }: 16 bytes each. A read
        // past the array's end reads the caller's other memory or fails;
        // either way no record starts there by chance.
        match unsafe { bpf_probe_read_user((iov + i as u64 * 16) as *const u64) } {
            Ok(b) => *slot = b,
            Err(_) => break,
        }
    }
    out
}

#[inline(always)]
fn on_recv_enter(ctx: &TracePointContext) -> u32 {
    // read/recvfrom share the layout: fd, buf at ARG0..ARG1.
    let pid_tgid = bpf_get_current_pid_tgid();
    let fd = field::<u64>(ctx, ARG0) as i32;
    let Some(w) = watched(pid_tgid, fd) else {
        return 0;
    };
    tls::on_socket_syscall(pid_tgid, fd, false);
    let mode = unsafe { (*w).mode };
    if mode == MODE_TLS {
        crate::aead::on_recv(
            pid_tgid,
            fd,
            field::<u64>(ctx, ARG1),
            field::<u64>(ctx, ARG2),
        );
        return 0;
    }
    if mode != MODE_HTTP && mode != MODE_DB {
        return 0;
    }
    let p = PendingRecv {
        buf: field::<u64>(ctx, ARG1),
        fd,
        _pad: 0,
    };
    if PENDING_RECV.insert(&pid_tgid, &p, 0).is_err() {
        count(Counter::SockWatchFull);
    }
    0
}

#[inline(always)]
fn on_recv_exit(ctx: &TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Every read on the host exits here: an empty map answers fast.
    let Some(p) = PENDING_RECV.get_ptr(&pid_tgid) else {
        return 0;
    };
    let p = unsafe { *p };
    let _ = PENDING_RECV.remove(&pid_tgid);
    let ret = field::<i64>(ctx, RET);
    if ret > 0 {
        output(p.fd, p.buf, ret as u64, TLS_DIR_READ);
    }
    0
}

/// Most bytes to copy of one send or receive: `sockets.capture_bytes`,
/// clamped explicitly so the verifier can bound every copy.
#[inline(always)]
fn capture_limit() -> u64 {
    let limit = SOCK_CAPTURE_BYTES.load() as u64;
    if limit > SOCK_DATA_MAX as u64 {
        SOCK_DATA_MAX as u64
    } else {
        limit
    }
}

/// What `output` returns when it copied fewer than four bytes: zeros
/// start neither a TLS record, a request nor a database message. (No `Option`: LLVM moves a
/// `None`'s undefined payload through registers, and the verifier refuses
/// to read a register never written: "R5 !read_ok".)
const NO_START: [u8; 8] = [0; 8];

/// Copies up to the capture limit of `len` bytes at `buf` into a record;
/// returns its first bytes (see `submit`).
#[inline(always)]
fn output(fd: i32, buf: u64, len: u64, dir: u8) -> [u8; 8] {
    let Some(rec) = SOCK_SCRATCH.get_ptr_mut(0) else {
        return NO_START;
    };
    let limit = capture_limit();
    let mut n = if len < limit { len } else { limit };
    // Explicit clamp: bounds the copy and the output size for the verifier.
    if n > SOCK_DATA_MAX as u64 {
        n = SOCK_DATA_MAX as u64;
    }
    unsafe {
        if generated::bpf_probe_read_user(
            (*rec).data.as_mut_ptr() as *mut _,
            n as u32,
            buf as *const _,
        ) != 0
        {
            count(Counter::ReadError);
            return NO_START;
        }
    }
    submit(rec, fd, n, len, dir)
}

/// `output` for a gathered send: the pieces of `iovcnt` iovecs at `iov`
/// (`struct iovec { void *base; size_t len; }`), copied one after the
/// other up to the capture limit, as one record whose length is theirs
/// together, as if one buffer had been written.
#[inline(always)]
fn output_iov(fd: i32, iov: u64, iovcnt: u64) -> [u8; 8] {
    let Some(rec) = SOCK_SCRATCH.get_ptr_mut(0) else {
        return NO_START;
    };
    let limit = capture_limit();
    let mut off = 0u64;
    let mut total = 0u64;
    for i in 0..MAX_IOV {
        if i >= iovcnt {
            break;
        }
        let Ok([base, len]) = (unsafe { bpf_probe_read_user((iov + i * 16) as *const [u64; 2]) })
        else {
            count(Counter::ReadError);
            return NO_START;
        };
        total = total.wrapping_add(len);
        if off >= limit || len == 0 {
            continue;
        }
        let room = limit - off;
        let n = if len < room { len } else { room };
        // `off < limit <= SOCK_DATA_MAX` and `n <= room` already hold, but
        // the verifier learns no bound from comparing two registers (`off`
        // against `limit`, `len` against `room`; 6.1's does not, 6.18's
        // does): the mask and the clamp restate them as bounds against
        // constants, which it does learn. LLVM proves the clamp redundant
        // and deletes it (then 6.1 refuses the program: "R2 min value is
        // negative" at the read), so `n` is read back through a volatile
        // load, whose value LLVM knows nothing about.
        let at = off & (SOCK_DATA_MAX as u64 - 1);
        let mut n = unsafe { core::ptr::read_volatile(&n) };
        if n > SOCK_DATA_MAX as u64 {
            n = SOCK_DATA_MAX as u64;
        }
        unsafe {
            if generated::bpf_probe_read_user(
                (*rec).data.as_mut_ptr().add(at as usize) as *mut _,
                n as u32,
                base as *const _,
            ) != 0
            {
                count(Counter::ReadError);
                return NO_START;
            }
        }
        off = at + n;
    }
    if total == 0 {
        return NO_START;
    }
    if off > SOCK_DATA_MAX as u64 {
        off = SOCK_DATA_MAX as u64;
    }
    submit(rec, fd, off, total, TLS_DIR_WRITE)
}

/// Outputs the header and the `n` bytes copied into the scratch record;
/// returns the first eight (zeros past the fourth when fewer were copied,
/// none when fewer than four).
#[inline(always)]
fn submit(rec: *mut SockScratch, fd: i32, n: u64, len: u64, dir: u8) -> [u8; 8] {
    unsafe {
        (*rec).hdr = SockDataHeader {
            header: emit::current_header(EventKind::SockData),
            fd,
            captured: n as u32,
            len,
            dir,
            _pad: [0; 7],
        };
        let size = size_of::<SockDataHeader>() + n as usize;
        let bytes = &*(rec as *const [u8; size_of::<SockScratch>()]);
        if let Some(out) = bytes.get(..size)
            && EVENTS.output(out, emit::wakeup_flags()).is_err()
        {
            count(Counter::RingbufFull);
        }
        let d = &(*rec).data;
        if n >= 8 {
            return [d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]];
        }
        if n >= 4 {
            return [d[0], d[1], d[2], d[3], 0, 0, 0, 0];
        }
    }
    NO_START
}
