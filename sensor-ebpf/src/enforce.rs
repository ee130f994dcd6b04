//! Network isolation of processes, enforced in the kernel, by one of two
//! methods (the daemon picks the first this kernel allows, see
//! `sensor/src/attach.rs`); both read the same pinned maps.
//!
//! BPF LSM (preferred):
//! - `socket_connect` refuses an isolated process's connects with EPERM,
//!   `socket_sendmsg` its sends (unconnected UDP such as DNS, and every
//!   write on a socket it already holds), `socket_recvmsg` its receives
//!   on a connected socket: the process gets EPERM at the syscall, on new
//!   and on old sockets, whatever its cgroup.
//! - `cgroup_skb` stays attached beside them: it drops, per packet, what
//!   no syscall hook can judge — datagrams arriving on an unconnected
//!   socket from a sender that is not allowed (a receive does not know its
//!   sender before it runs), packets the kernel sends by itself for the
//!   process's sockets (TCP retransmits and keepalives of data queued
//!   before isolation, should SOCK_DESTROY fail), and sockets the process
//!   handed to another one. With nobody isolated it costs two array
//!   lookups per packet.
//!
//! cgroup programs (where BPF LSM does not load):
//! - New connections: cgroup `connect4`/`connect6` on the cgroup v2 root
//!   refuse isolated processes (returning 0 makes connect() fail with
//!   EPERM); `sendmsg4`/`sendmsg6` refuse their unconnected UDP (DNS).
//! - Connections that already exist: `cgroup_skb` egress and ingress drop
//!   packets of sockets whose owner is isolated.
//!
//! Owners are recorded by socket cookie at connect (here, by either
//! method) and, for sockets older than the sensor, written by the daemon
//! from sock_diag when it isolates. A socket once cut stays cut
//! (`CUT_SOCKS`), even after release or exit.
//! - Forks of an isolated process are isolated at fork (`process.rs`), and
//!   an isolated process's entry goes when it exits, so a reused pid is
//!   never isolated by mistake while the daemon runs (and the daemon checks
//!   start times when it starts).
//!
//! cgroup programs cannot read the task struct, but they can call
//! `bpf_get_current_pid_tgid` (sock_addr) and `bpf_get_socket_cookie`
//! (both hook types): https://docs.kernel.org/bpf/prog_cgroup_sockaddr.html

use aya_ebpf::{
    EbpfContext,
    bindings::bpf_sock_addr,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::{bpf_get_socket_cookie, bpf_probe_read_user, bpf_send_signal},
    },
    macros::{cgroup_skb, cgroup_sock_addr, lsm, map},
    maps::{Array, HashMap, LruHashMap},
    programs::{LsmContext, SkBuffContext, SockAddrContext},
};
use sensor_common::{
    AF_INET, AF_INET6, ARM_ALLOW, ARM_FLAG_HOLD_TLS, ARM_HOLD, ARM_HOLD_TLS, ARM_KILL,
    ARM_PATTERN_MAX, ARM_RULES_MAX, ArmRules, BlockedRecord, Counter, EventKind,
    ISOLATE_ALLOW_LOOPBACK, ISOLATE_ALLOW_MAX, Isolation, MSGHDR_NAME_OFFSET,
    MSGHDR_NAMELEN_OFFSET, SOCKET_SK_OFFSET, SockOffsets,
};

use crate::{
    emit,
    maps::{SOCK_OFFSETS, count},
};

/// Isolated processes by tgid. Pinned: enforcement outlives the daemon.
#[map]
pub static ISOLATED: HashMap<u32, Isolation> = HashMap::pinned(4096, 0);

/// Socket cookie → owning tgid, recorded at connect. LRU: sockets come
/// and go without a hook at close here; the oldest owners are forgotten
/// first, and an isolated process's sockets are rewritten when it is
/// isolated.
#[map]
pub static SOCK_OWNER: LruHashMap<u64, u32> = LruHashMap::pinned(65536, 0);

/// Slot 0: number of isolated processes as the daemon last wrote it;
/// slot 1: non-zero once a socket has been cut (set here). When both are 0
/// every packet and connect takes the fast path (array lookups only).
#[map]
pub static ENFORCE_STATE: Array<u32> = Array::pinned(2, 0);

/// Sockets of isolated processes whose packets were dropped: cut for good.
/// TCP keeps retransmitting what was queued, and would deliver it once the
/// owner exits (its isolation ends with it) or is released: a request made
/// while isolated must never arrive later. Keyed by socket cookie (unique
/// per boot, so pid reuse cannot matter); LRU, sockets end without a hook.
#[map]
pub static CUT_SOCKS: LruHashMap<u64, u32> = LruHashMap::pinned(16384, 0);

const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[inline(always)]
fn active() -> bool {
    matches!(ENFORCE_STATE.get(0), Some(n) if *n != 0)
}

#[inline(always)]
fn any_cut() -> bool {
    matches!(ENFORCE_STATE.get(1), Some(n) if *n != 0)
}

#[inline(always)]
pub fn isolation(tgid: u32) -> Option<&'static Isolation> {
    if !active() {
        return None;
    }
    unsafe { ISOLATED.get(&tgid) }
}

/// Armed processes by tgid: their deny patterns. Written by the daemon
/// when a process of an armed agent appears; not pinned (the daemon arms
/// again from its config when it starts).
#[map]
pub static ARMED: HashMap<u32, ArmRules> = HashMap::with_max_entries(4096, 0);

/// Arm rules by process name (`comm` after exec, 15 bytes and a NUL): a
/// process that execs an armed agent's executable is armed here, at exec,
/// before it runs a single instruction. The daemon arms by full identity
/// only once it has read the exec event (milliseconds later), and a
/// compiled client connects faster than that (a Go client sent its
/// ClientHello first); the daemon then corrects an entry that does not
/// match the identity.
#[map]
pub static ARM_BY_COMM: HashMap<[u8; 16], ArmRules> = HashMap::with_max_entries(64, 0);

#[inline(always)]
pub fn arm_at_exec(tgid: u32) {
    let Ok(comm) = bpf_get_current_comm() else {
        return;
    };
    if let Some(rules) = unsafe { ARM_BY_COMM.get(&comm) } {
        let _ = ARMED.insert(&tgid, rules, 0);
    }
}

/// Called at fork: the child of an isolated or armed process is too.
#[inline(always)]
pub fn inherit(parent_tgid: u32, child_tgid: u32, child_start_ns: u64) {
    if let Some(parent) = isolation(parent_tgid) {
        let mut child = *parent;
        child.start_ns = child_start_ns;
        child.parent_tgid = parent_tgid;
        let _ = ISOLATED.insert(&child_tgid, &child, 0);
    }
    if let Some(rules) = unsafe { ARMED.get(&parent_tgid) } {
        let _ = ARMED.insert(&child_tgid, rules, 0);
    }
}

/// Called when a process ends (its last thread exits).
#[inline(always)]
pub fn forget(tgid: u32) {
    if active() {
        let _ = ISOLATED.remove(&tgid);
    }
    let _ = ARMED.remove(&tgid);
}

const SIGKILL: u32 = 9;
const SIGSTOP: u32 = 19;

/// Called at the first send of a new TLS connection (its ClientHello, seen
/// at the entry of write, writev, sendto, sendmsg or sendmmsg): a held agent's process whose plaintext
/// may not be visible is stopped right after this write, before any
/// request can follow; the daemon reads the SNI and resumes it at once
/// unless the host is held. The ClientHello itself leaves (the syscall
/// runs before the signal is delivered): no request byte does.
#[inline(always)]
pub fn hold_new_tls(tgid: u32, fd: i32) {
    let Some(rules) = (unsafe { ARMED.get(&tgid) }) else {
        return;
    };
    if rules.flags & ARM_FLAG_HOLD_TLS == 0 {
        return;
    }
    // The record first: a process stopped without one is stopped for good
    // (nobody knows to resume it), so without room it is killed instead.
    let Some(mut entry) = emit::reserve::<BlockedRecord>() else {
        unsafe { bpf_send_signal(SIGKILL) };
        count(Counter::HoldUnreported);
        return;
    };
    let signal_result = unsafe { bpf_send_signal(SIGSTOP) } as i32;
    entry.write(BlockedRecord {
        header: emit::current_header(EventKind::Blocked),
        conn: fd as u32 as u64,
        rule: 0,
        signal_result,
        buf: 0,
        len: 0,
        action: u32::from(ARM_HOLD_TLS),
        _pad: 0,
    });
    // Stopped until the daemon reads this: no batching.
    emit::submit_now(entry);
}

/// Called at the entry of a TLS write: if the process is armed and the
/// plaintext starts with one of its patterns (after the bytes a database
/// pattern skips), SIGKILL (deny) or SIGSTOP (hold) it now. The signal is delivered on the return from this probe
/// to user space, before the library's code goes on (a uprobe defers
/// signals only across the single-stepped first instruction): the bytes
/// are not encrypted, let alone sent (`bpf_send_signal`,
/// https://docs.ebpf.io/linux/helper-function/bpf_send_signal/).
/// Returns true when it killed.
#[inline(always)]
pub fn block_armed_write(tgid: u32, conn: u64, buf: u64, len: u64) -> bool {
    let Some(rules) = (unsafe { ARMED.get(&tgid) }) else {
        return false;
    };
    let mut head = [0u8; ARM_PATTERN_MAX];
    // Reads a fixed 64 bytes: a shorter buffer is followed by mapped memory
    // in practice; if not, the read fails and nothing matches (patterns are
    // also checked against `len` below, so bytes past it never match).
    if unsafe {
        bpf_probe_read_user(
            head.as_mut_ptr() as *mut _,
            ARM_PATTERN_MAX as u32,
            buf as *const _,
        )
    } != 0
    {
        return false;
    }
    let mut i = 0;
    while i < ARM_RULES_MAX {
        let plen = rules.pattern_len[i] as usize;
        if (i as u32) < rules.len && plen > 0 && plen <= ARM_PATTERN_MAX && plen as u64 <= len {
            let mut same = true;
            let mut j = 0;
            while j < ARM_PATTERN_MAX {
                if j < plen && head[j] & rules.mask[i][j] != rules.patterns[i][j] {
                    same = false;
                }
                j += 1;
            }
            if same {
                let action = rules.action[i];
                if action == ARM_ALLOW {
                    return false;
                }
                let sig = if action == ARM_HOLD { SIGSTOP } else { SIGKILL };
                // The record is reserved before the signal: a hold nobody
                // hears of would leave the process stopped for good, so
                // without room a hold is a deny (a kill goes on unreported).
                let Some(mut entry) = emit::reserve::<BlockedRecord>() else {
                    unsafe { bpf_send_signal(SIGKILL) };
                    if action == ARM_HOLD {
                        count(Counter::HoldUnreported);
                    }
                    return true;
                };
                // The signal is delivered on the way back to user space,
                // before the library runs: the request is not encrypted,
                // and a stopped process goes on with this very write once
                // continued. bpf_send_signal signals the whole thread
                // group, so no other thread can send it meanwhile.
                let signal_result = unsafe { bpf_send_signal(sig) } as i32;
                entry.write(BlockedRecord {
                    header: emit::current_header(EventKind::Blocked),
                    conn,
                    rule: i as u32,
                    signal_result,
                    buf,
                    len,
                    action: u32::from(action),
                    _pad: 0,
                });
                // A held process waits for the daemon to read this (and
                // resumes at once when its host is not the pattern's): no
                // batching.
                emit::submit_now(entry);
                // A held write is captured as usual once it goes on.
                return action == ARM_KILL;
            }
        }
        i += 1;
    }
    false
}

fn allowed4(iso: &Isolation, addr: u32) -> bool {
    // Network order: the first octet is the low byte on little-endian.
    if iso.flags & ISOLATE_ALLOW_LOOPBACK != 0 && addr & 0xff == 127 {
        return true;
    }
    let mut i = 0;
    while i < ISOLATE_ALLOW_MAX {
        if (i as u32) < iso.allow4_len && addr & iso.allow4[i][1] == iso.allow4[i][0] {
            return true;
        }
        i += 1;
    }
    false
}

fn allowed6(iso: &Isolation, addr: &[u32; 4]) -> bool {
    if iso.flags & ISOLATE_ALLOW_LOOPBACK != 0
        && addr[0] == 0
        && addr[1] == 0
        && addr[2] == 0
        && addr[3] == 1u32.to_be()
    {
        return true;
    }
    // IPv4-mapped addresses (::ffff:a.b.c.d) are IPv4 destinations.
    if addr[0] == 0 && addr[1] == 0 && addr[2] == 0xffff_u32.to_be() {
        return allowed4(iso, addr[3]);
    }
    let mut i = 0;
    while i < ISOLATE_ALLOW_MAX {
        let n = &iso.allow6[i];
        if (i as u32) < iso.allow6_len
            && addr[0] & n[4] == n[0]
            && addr[1] & n[5] == n[1]
            && addr[2] & n[6] == n[2]
            && addr[3] & n[7] == n[3]
        {
            return true;
        }
        i += 1;
    }
    false
}

/// Records who owns the socket, then refuses the call if that owner is
/// isolated and the destination is not allowed.
fn check_sock_addr(ctx: &SockAddrContext, v6: bool) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let _ = SOCK_OWNER.insert(&cookie, &tgid, 0);
    let Some(iso) = isolation(tgid) else {
        return ALLOW;
    };
    let sa: *const bpf_sock_addr = ctx.sock_addr;
    // The verifier wants 4-byte loads of the context, word by word.
    let ok = unsafe {
        if v6 {
            let a = [
                (*sa).user_ip6[0],
                (*sa).user_ip6[1],
                (*sa).user_ip6[2],
                (*sa).user_ip6[3],
            ];
            allowed6(iso, &a)
        } else {
            allowed4(iso, (*sa).user_ip4)
        }
    };
    if ok { ALLOW } else { DENY }
}

#[cgroup_sock_addr(connect4)]
pub fn isolate_connect4(ctx: SockAddrContext) -> i32 {
    check_sock_addr(&ctx, false)
}

#[cgroup_sock_addr(connect6)]
pub fn isolate_connect6(ctx: SockAddrContext) -> i32 {
    check_sock_addr(&ctx, true)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn isolate_sendmsg4(ctx: SockAddrContext) -> i32 {
    check_sock_addr(&ctx, false)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn isolate_sendmsg6(ctx: SockAddrContext) -> i32 {
    check_sock_addr(&ctx, true)
}

/// Packets of an isolated owner's sockets are dropped both ways, so a
/// keep-alive connection opened before isolation goes silent too.
fn check_skb(ctx: &SkBuffContext) -> i32 {
    let (active, any_cut) = (active(), any_cut());
    if !active && !any_cut {
        return ALLOW;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if any_cut && unsafe { CUT_SOCKS.get(&cookie) }.is_some() {
        return DENY;
    }
    if !active {
        return ALLOW;
    }
    let Some(owner) = (unsafe { SOCK_OWNER.get(&cookie) }) else {
        return ALLOW;
    };
    let Some(iso) = (unsafe { ISOLATED.get(owner) }) else {
        return ALLOW;
    };
    let ok = match ctx.skb.family() {
        f if f == AF_INET as u32 => allowed4(iso, ctx.skb.remote_ipv4()),
        f if f == AF_INET6 as u32 => {
            let r = ctx.skb.remote_ipv6();
            allowed6(iso, &[r[0], r[1], r[2], r[3]])
        }
        _ => true,
    };
    if ok {
        return ALLOW;
    }
    let owner = *owner;
    let _ = CUT_SOCKS.insert(&cookie, &owner, 0);
    if let Some(flag) = ENFORCE_STATE.get_ptr_mut(1) {
        unsafe { *flag = 1 };
    }
    DENY
}

#[cgroup_skb(egress)]
pub fn isolate_egress(ctx: SkBuffContext) -> i32 {
    check_skb(&ctx)
}

#[cgroup_skb(ingress)]
pub fn isolate_ingress(ctx: SkBuffContext) -> i32 {
    check_skb(&ctx)
}

// ---- BPF LSM ----------------------------------------------------------
//
// Hook signatures (include/linux/lsm_hook_defs.h, the same on 6.1 and
// 6.18); the BTF context holds the arguments and, after them, the return
// value of the BPF LSM program that ran before this one on the hook
// (https://docs.kernel.org/bpf/prog_lsm.html): a refusal already made is
// kept.
//   socket_connect(struct socket *sock, struct sockaddr *address, int addrlen)
//   socket_sendmsg(struct socket *sock, struct msghdr *msg, int size)
//   socket_recvmsg(struct socket *sock, struct msghdr *msg, int size, int flags)
// `address` and `msg->msg_name` are the kernel's copies of the caller's
// sockaddr (move_addr_to_kernel), so they are read with
// bpf_probe_read_kernel.

const EPERM: i32 = 1;
const AF_UNSPEC: u16 = 0;

/// A destination as the allow rules see it: network-order words.
enum Dest {
    V4(u32),
    V6([u32; 4]),
    /// Not an IP destination (AF_UNIX, AF_UNSPEC on connect, …): not ours.
    Other,
}

#[inline(always)]
fn kread<T: Copy>(addr: u64) -> Option<T> {
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

#[inline(always)]
fn sock_offsets() -> Option<SockOffsets> {
    let o = SOCK_OFFSETS.load();
    if o.valid == 1 { Some(o) } else { None }
}

/// The `struct sock *` of a hook's `struct socket *`, loaded directly so
/// that the verifier types it from BTF (`socket.sk` is a trusted field,
/// kernel/bpf/verifier.c `BTF_TYPE_SAFE_TRUSTED(struct socket)`) and lets
/// it be passed to `bpf_get_socket_cookie`. The offset is a constant the
/// daemon checked against the kernel's BTF before choosing this method.
#[inline(always)]
fn socket_sk(sock: *const u8) -> *const u8 {
    unsafe { *(sock.add(SOCKET_SK_OFFSET as usize) as *const *const u8) }
}

/// Records `tgid` as the owner of the socket, for the skb programs (the
/// same table the cgroup programs fill).
#[inline(always)]
fn record_owner(sk: *const u8, tgid: u32) {
    let cookie = unsafe { bpf_get_socket_cookie(sk as *mut _) };
    let _ = SOCK_OWNER.insert(&cookie, &tgid, 0);
}

/// The destination in a kernel sockaddr. `AF_UNSPEC` is what udp_sendmsg
/// reads as an IPv4 address on an IPv4 socket (`unspec_v4`); on connect
/// it means disconnect.
#[inline(always)]
fn sockaddr_dest(addr: u64, unspec_v4: bool) -> Option<Dest> {
    // sockaddr_in: family 2, port 2, addr 4; sockaddr_in6: family 2,
    // port 2, flowinfo 4, addr 16 at 8. The kernel's copy lives in a
    // sockaddr_storage (128 bytes), so these reads stay inside it.
    let head: [u8; 8] = kread(addr)?;
    let v4 = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]);
    Some(match u16::from_ne_bytes([head[0], head[1]]) {
        AF_INET => Dest::V4(v4),
        AF_UNSPEC if unspec_v4 => Dest::V4(v4),
        AF_INET6 => Dest::V6(kread(addr + 8)?),
        _ => Dest::Other,
    })
}

/// The peer of a socket (zero when it has none).
#[inline(always)]
fn sock_peer(o: &SockOffsets, sk: u64, family: u16) -> Option<Dest> {
    Some(if family == AF_INET {
        Dest::V4(kread(sk + o.skc_daddr as u64)?)
    } else {
        Dest::V6(kread(sk + o.skc_v6_daddr as u64)?)
    })
}

#[inline(always)]
fn verdict(iso: &Isolation, dest: &Dest) -> i32 {
    let ok = match dest {
        Dest::V4(a) => allowed4(iso, *a),
        Dest::V6(a) => allowed6(iso, a),
        Dest::Other => true,
    };
    if ok { 0 } else { -EPERM }
}

/// An IP socket of the caller: its `struct sock` (typed, for the cookie),
/// its address as a number (for the BTF-offset reads) and its family.
#[inline(always)]
fn ip_sock(sock: *const u8, o: &SockOffsets) -> Option<(*const u8, u64, u16)> {
    let sk = socket_sk(sock);
    if sk.is_null() {
        return None;
    }
    // The same pointer read as a plain number: the offsets below come
    // from a global, and the verifier takes variable offsets only on
    // scalars.
    let addr: u64 = kread(sock as u64 + SOCKET_SK_OFFSET as u64)?;
    let family: u16 = kread(addr + o.skc_family as u64)?;
    (family == AF_INET || family == AF_INET6).then_some((sk, addr, family))
}

#[lsm(hook = "socket_connect")]
pub fn isolate_lsm_connect(ctx: LsmContext) -> i32 {
    let earlier = ctx.arg::<u64>(3) as i32;
    if earlier != 0 {
        return earlier;
    }
    lsm_connect(ctx.arg(0), ctx.arg(1), ctx.arg::<u64>(2) as i32)
}

#[inline(always)]
fn lsm_connect(sock: *const u8, address: u64, addrlen: i32) -> i32 {
    if addrlen < 2 {
        return 0;
    }
    let Some(dest) = sockaddr_dest(address, false) else {
        return 0;
    };
    if matches!(dest, Dest::Other) {
        return 0;
    }
    // Every IP connect records its owner, as the cgroup connect programs
    // do: a process isolated later has its sockets known here.
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let sk = socket_sk(sock);
    if !sk.is_null() {
        record_owner(sk, tgid);
    }
    match isolation(tgid) {
        Some(iso) => verdict(iso, &dest),
        None => 0,
    }
}

#[lsm(hook = "socket_sendmsg")]
pub fn isolate_lsm_sendmsg(ctx: LsmContext) -> i32 {
    let earlier = ctx.arg::<u64>(3) as i32;
    if earlier != 0 {
        return earlier;
    }
    lsm_sendmsg(ctx.arg(0), ctx.arg(1))
}

/// For an isolated caller's IP socket: its isolation, the socket
/// offsets, and the socket's address and family, after recording the
/// caller as the socket's owner (for the skb programs). None when the
/// caller is not isolated or the socket is not IP: let it through.
#[inline(always)]
fn isolated_ip_sock(sock: *const u8) -> Option<(&'static Isolation, SockOffsets, u64, u16)> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let iso = isolation(tgid)?;
    let o = sock_offsets()?;
    let (sk, addr, family) = ip_sock(sock, &o)?;
    record_owner(sk, tgid);
    Some((iso, o, addr, family))
}

#[inline(always)]
fn lsm_sendmsg(sock: *const u8, msg: u64) -> i32 {
    // Every send on the host passes here: one array lookup unless someone
    // is isolated, one hash lookup unless the caller is.
    let Some((iso, o, addr, family)) = isolated_ip_sock(sock) else {
        return 0;
    };
    // sendto/sendmsg with an address (unconnected UDP, TCP fast open):
    // that address; otherwise the socket's peer. udpv6_sendmsg treats
    // AF_UNSPEC as "no address".
    let name: u64 = kread(msg + MSGHDR_NAME_OFFSET as u64).unwrap_or(0);
    let namelen: i32 = kread(msg + MSGHDR_NAMELEN_OFFSET as u64).unwrap_or(0);
    let named = if name != 0 && namelen >= 2 {
        sockaddr_dest(name, family == AF_INET)
    } else {
        None
    };
    let dest = match named {
        Some(Dest::Other) | None => sock_peer(&o, addr, family),
        d => d,
    };
    match dest {
        Some(d) => verdict(iso, &d),
        // Unreadable: refuse, the caller is isolated.
        None => -EPERM,
    }
}

#[lsm(hook = "socket_recvmsg")]
pub fn isolate_lsm_recvmsg(ctx: LsmContext) -> i32 {
    let earlier = ctx.arg::<u64>(4) as i32;
    if earlier != 0 {
        return earlier;
    }
    lsm_recvmsg(ctx.arg(0))
}

#[inline(always)]
fn lsm_recvmsg(sock: *const u8) -> i32 {
    let Some((iso, o, addr, family)) = isolated_ip_sock(sock) else {
        return 0;
    };
    match sock_peer(&o, addr, family) {
        // No peer (an unconnected UDP socket): its datagrams may come from
        // an allowed network; the skb ingress program judges each one by
        // its sender, now that it knows this socket's owner.
        Some(Dest::V4(0)) | Some(Dest::V6([0, 0, 0, 0])) => 0,
        Some(d) => verdict(iso, &d),
        None => -EPERM,
    }
}
