//! The kernel socket cookies of a process's open TCP and UDP sockets.
//!
//! Isolating a process must also cut the connections it already has open
//! (keep-alive connections to an API, say): the kernel program that drops
//! an isolated process's packets matches them by socket cookie — the value
//! `bpf_get_socket_cookie` returns — and sockets opened before the sensor
//! started were never seen by it. They are found here instead.
//!
//! How: the process's fds (`/proc/PID/fd/*` links `socket:[INODE]`) give
//! its socket inodes; NETLINK_SOCK_DIAG inet dumps (`SOCK_DIAG_BY_FAMILY`
//! with an `inet_diag_req_v2`, for AF_INET and AF_INET6 × TCP and UDP, all
//! states) list every such socket of a network namespace with its inode
//! (`idiag_inode`) and cookie (`idiag_cookie`, two host-order u32s, low
//! half first — the same `sock_gen_cookie` value `SO_COOKIE` and
//! `bpf_get_socket_cookie` return).
//!
//! A dump lists only the sockets of the namespace the netlink socket was
//! created in, so each distinct network namespace of the process's threads
//! is dumped, entering it from a short-lived thread where it is not ours
//! (which needs CAP_SYS_ADMIN, as the sensor has). A socket that lives in
//! a namespace none of its threads are in (an fd passed over from another
//! namespace) is not found.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt, io,
    net::{IpAddr, SocketAddr, SocketAddrV6},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_ALIGNTO, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagDestroy, SockDiagMessage,
    inet::{ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};

/// The transport protocol of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    fn ipproto(self) -> u8 {
        match self {
            Protocol::Tcp => libc::IPPROTO_TCP as u8,
            Protocol::Udp => libc::IPPROTO_UDP as u8,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One open TCP or UDP socket of a process.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SockInfo {
    /// The kernel socket cookie: what `bpf_get_socket_cookie` and
    /// `getsockopt(SO_COOKIE)` return for this socket. Never 0.
    pub cookie: u64,
    /// The socket inode, as in the `/proc/PID/fd/N -> socket:[INODE]` link.
    pub inode: u64,
    pub protocol: Protocol,
    /// Local address and port (unspecified and 0 if unbound). An IPv6
    /// socket talking IPv4 shows v4-mapped addresses.
    pub local: SocketAddr,
    /// Remote address and port (unspecified and 0 if not connected).
    pub remote: SocketAddr,
    /// The kernel's socket state (`TCP_ESTABLISHED` = 1 … `TCP_LISTEN` =
    /// 10; UDP sockets are 1 when connected, 7 otherwise); see
    /// [`SockInfo::state_name`].
    pub state: u8,
}

impl SockInfo {
    /// The state as `ss` names it; for UDP, "connected" or "unconnected".
    pub fn state_name(&self) -> &'static str {
        match (self.protocol, self.state) {
            (Protocol::Udp, 1) => "connected",
            (Protocol::Udp, 7) => "unconnected",
            (_, 1) => "established",
            (_, 2) => "syn-sent",
            (_, 3) => "syn-recv",
            (_, 4) => "fin-wait-1",
            (_, 5) => "fin-wait-2",
            (_, 6) => "time-wait",
            (_, 7) => "close",
            (_, 8) => "close-wait",
            (_, 9) => "last-ack",
            (_, 10) => "listen",
            (_, 11) => "closing",
            (_, 12) => "new-syn-recv",
            (_, 13) => "bound-inactive",
            _ => "unknown",
        }
    }
}

/// The inodes of every socket `pid` has open (any kind: inet, unix,
/// netlink…), from its `/proc/PID/fd` links.
pub fn process_socket_inodes(pid: u32) -> Result<BTreeSet<u64>> {
    let dir = format!("/proc/{pid}/fd");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!("no process {pid}"),
        Err(e) => return Err(e).with_context(|| format!("reading {dir}")),
    };
    let mut inodes = BTreeSet::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {dir}"))?;
        // An fd closed since the listing is simply gone.
        if let Ok(target) = std::fs::read_link(entry.path())
            && let Some(inode) = socket_inode(&target)
        {
            inodes.insert(inode);
        }
    }
    Ok(inodes)
}

/// Every TCP and UDP socket (IPv4 and IPv6, any state) open in `pid`, with
/// its kernel socket cookie, ordered by inode. Sockets shared with other
/// processes (inherited, passed) are included.
pub fn socket_cookies(pid: u32) -> Result<Vec<SockInfo>> {
    Ok(scan(pid, &|_| false)?.0)
}

/// What [`cut_tcp`] did to one socket it chose.
#[derive(Debug)]
pub struct Cut {
    pub sock: SockInfo,
    /// `Err` when the kernel refused (e.g. `EOPNOTSUPP` without
    /// CONFIG_INET_DIAG_DESTROY) or the socket was already gone (`ENOENT`).
    pub result: io::Result<()>,
}

/// Lists `pid`'s sockets as [`socket_cookies`] does and aborts each TCP
/// socket `choose` selects (SOCK_DESTROY, as `ss -K` does): its queued,
/// unsent data is discarded, the process sees ECONNABORTED, and no
/// retransmission can deliver it later. Listening sockets are never
/// chosen.
pub fn cut_tcp(pid: u32, choose: &dyn Fn(&SockInfo) -> bool) -> Result<(Vec<SockInfo>, Vec<Cut>)> {
    scan(pid, &|s| {
        s.protocol == Protocol::Tcp && s.state != TCP_LISTEN && choose(s)
    })
}

const TCP_LISTEN: u8 = 10;

/// Dumps every network namespace of `pid`'s threads for its sockets, and
/// destroys those `destroy` selects while the namespace's netlink socket
/// is at hand (SOCK_DESTROY acts only within the socket's own namespace).
fn scan(pid: u32, destroy: &dyn Fn(&SockInfo) -> bool) -> Result<(Vec<SockInfo>, Vec<Cut>)> {
    let mut wanted = process_socket_inodes(pid)?;
    if wanted.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let here = current_netns()?;
    let mut found: BTreeMap<u64, SockInfo> = BTreeMap::new();
    let mut cuts = Vec::new();
    for (ns, path) in process_netns(pid)? {
        if wanted.is_empty() {
            break;
        }
        let socket = if ns == here {
            diag_socket().map_err(anyhow::Error::from)
        } else {
            diag_socket_in(&path)
        }
        .with_context(|| format!("opening a sock_diag socket in network namespace net:[{ns}]"))?;
        let mut chosen = Vec::new();
        collect(&socket, &mut wanted, &mut |r, info| {
            if destroy(&info) {
                chosen.push((r.header.family, r.header.socket_id.clone(), info.clone()));
            }
            found.insert(info.inode, info);
        })
        .with_context(|| format!("listing sockets of network namespace net:[{ns}]"))?;
        for (family, id, sock) in chosen {
            let result = destroy_one(&socket, family, id);
            cuts.push(Cut { sock, result });
        }
    }
    Ok((found.into_values().collect(), cuts))
}

/// One SOCK_DESTROY request for the exact socket `id` names (addresses,
/// ports and cookie, so a reused 4-tuple is not hit), and its ack.
fn destroy_one(socket: &Socket, family: u8, id: SocketId) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = u32::MAX;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagDestroy::new(SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: libc::IPPROTO_TCP as u8,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::from_bits_retain(u32::MAX),
            socket_id: id,
        }))
        .into(),
    );
    request.finalize();
    let mut out = vec![0; request.buffer_len()];
    request.serialize(&mut out);
    socket.send(&out, 0)?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match socket.recv(&mut &mut buf[..], 0) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let message = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[..n])
            .map_err(|e| io::Error::other(format!("bad sock_diag reply: {e}")))?;
        if message.header.sequence_number != u32::MAX {
            continue;
        }
        return match message.payload {
            NetlinkPayload::Error(e) if e.code.is_some() => Err(e.to_io()),
            _ => Ok(()),
        };
    }
}

/// The inode in a `/proc/PID/fd/N` link target of the form `socket:[INODE]`.
fn socket_inode(target: &Path) -> Option<u64> {
    bracketed(target.to_str()?, "socket:")
}

/// The number in `PREFIX[N]`.
fn bracketed(s: &str, prefix: &str) -> Option<u64> {
    s.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn ns_inode(link: &Path) -> Option<u64> {
    bracketed(link.to_str()?, "net:")
}

/// The network namespace this thread is in (its nsfs inode).
fn current_netns() -> Result<u64> {
    let path = Path::new("/proc/thread-self/ns/net");
    let link = std::fs::read_link(path).with_context(|| format!("reading {}", path.display()))?;
    ns_inode(&link).with_context(|| format!("unexpected {} link {link:?}", path.display()))
}

/// The distinct network namespaces of `pid`'s threads, the process's own
/// first: (nsfs inode, a `/proc/…/ns/net` path naming it).
fn process_netns(pid: u32) -> Result<Vec<(u64, PathBuf)>> {
    let mut out: Vec<(u64, PathBuf)> = Vec::new();
    let mut add = |path: PathBuf| {
        if let Ok(link) = std::fs::read_link(&path)
            && let Some(ns) = ns_inode(&link)
            && !out.iter().any(|(n, _)| *n == ns)
        {
            out.push((ns, path));
        }
    };
    add(PathBuf::from(format!("/proc/{pid}/ns/net")));
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            add(task.path().join("ns/net"));
        }
    }
    if out.is_empty() {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no process {pid}");
        }
        bail!("cannot read the network namespace of process {pid} (/proc/{pid}/ns/net)");
    }
    Ok(out)
}

/// How long one dump may go without a reply before giving up (the kernel
/// answers at once; this only guards the responder against a hang).
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// Receive buffer: the kernel's dump messages are at most 32 KiB.
const RECV_BUF: usize = 64 * 1024;

/// A NETLINK_SOCK_DIAG socket, connected to the kernel, in this thread's
/// network namespace.
fn diag_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    let tv = libc::timeval {
        tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: a valid fd and a `timeval` that outlives the call, with its
    // size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// A NETLINK_SOCK_DIAG socket in the network namespace `ns` names: made
/// from a thread that enters it (setns changes only the calling thread,
/// and that thread ends here), and which stays in that namespace.
fn diag_socket_in(ns: &Path) -> Result<Socket> {
    let ns_file = std::fs::File::open(ns).with_context(|| format!("opening {}", ns.display()))?;
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("sock-diag-netns".into())
            .spawn_scoped(s, || -> Result<Socket> {
                // SAFETY: a valid nsfs fd; only this thread's namespace
                // changes.
                if unsafe { libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error())
                        .with_context(|| format!("entering {}", ns.display()));
                }
                Ok(diag_socket()?)
            })
            .context("starting a thread to enter the namespace")?;
        match worker.join() {
            Ok(result) => result,
            Err(_) => bail!("the thread entering {} panicked", ns.display()),
        }
    })
}

/// Dumps TCP and UDP over IPv4 and IPv6 on `socket`, handing each socket
/// whose inode is in `wanted` (and removing it there) to `found`; stops early once
/// nothing is wanted.
fn collect(
    socket: &Socket,
    wanted: &mut BTreeSet<u64>,
    found: &mut dyn FnMut(&InetResponse, SockInfo),
) -> Result<()> {
    let mut seq = 0;
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            if wanted.is_empty() {
                return Ok(());
            }
            seq += 1;
            let result = dump(socket, family, protocol, seq, |r| {
                let inode = u64::from(r.header.inode);
                if inode != 0 && wanted.remove(&inode) {
                    found(&r, sock_info(protocol, &r));
                }
            });
            match result {
                Ok(()) => {}
                // No udp_diag in this kernel (CONFIG_INET_UDP_DIAG off, or
                // the module missing): TCP is still worth cutting.
                Err(e)
                    if protocol == Protocol::Udp
                        && matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EOPNOTSUPP)) =>
                {
                    tracing::warn!(
                        "the kernel cannot list UDP sockets (udp_diag unavailable: {e}); \
                         UDP sockets opened before the sensor are not found"
                    );
                    break;
                }
                Err(e) => {
                    let family = if family == libc::AF_INET as u8 {
                        "IPv4"
                    } else {
                        "IPv6"
                    };
                    return Err(e).with_context(|| format!("dumping {family} {protocol} sockets"));
                }
            }
        }
    }
    Ok(())
}

/// One `SOCK_DIAG_BY_FAMILY` dump request — `nlmsghdr` (NLM_F_REQUEST |
/// NLM_F_DUMP) + `inet_diag_req_v2 { sdiag_family, sdiag_protocol,
/// idiag_ext: 0, idiag_states: all, id: zero (no filter) }` — and its
/// replies, one `inet_diag_msg` per socket, up to NLMSG_DONE.
fn dump(
    socket: &Socket,
    family: u8,
    protocol: Protocol,
    seq: u32,
    mut each: impl FnMut(InetResponse),
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: protocol.ipproto(),
            extensions: ExtensionFlags::empty(),
            // Every state bit, including those newer than this crate
            // (NEW_SYN_RECV, BOUND_INACTIVE); unknown ones are ignored.
            states: StateFlags::from_bits_retain(u32::MAX),
            socket_id: if family == libc::AF_INET as u8 {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
    request.finalize();
    let mut out = vec![0; request.buffer_len()];
    request.serialize(&mut out);
    let sent = socket.send(&out, 0)?;
    if sent != out.len() {
        return Err(io::Error::other(format!(
            "sent {sent} of {} request bytes",
            out.len()
        )));
    }

    let mut buf = vec![0u8; RECV_BUF];
    loop {
        // MSG_TRUNC: the datagram's real length, to notice truncation.
        let n = match socket.recv(&mut &mut buf[..], libc::MSG_TRUNC) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the kernel did not finish the socket dump in time",
                ));
            }
            Err(e) => return Err(e),
        };
        if n > buf.len() {
            return Err(io::Error::other(format!(
                "a {n}-byte dump message did not fit the {}-byte buffer",
                buf.len()
            )));
        }
        let mut offset = 0;
        while offset < n {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[offset..n])
                .map_err(|e| io::Error::other(format!("bad sock_diag reply: {e}")))?;
            let len = message.header.length as usize;
            if len == 0 {
                return Err(io::Error::other("a zero-length netlink message"));
            }
            offset += len.next_multiple_of(usize::from(NLMSG_ALIGNTO));
            if message.header.sequence_number != seq {
                continue;
            }
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => each(*r),
                NetlinkPayload::Done(done) if done.code < 0 => {
                    return Err(io::Error::from_raw_os_error(-done.code));
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                NetlinkPayload::Overrun(_) => {
                    return Err(io::Error::other("netlink overrun during the socket dump"));
                }
                // Acks, no-ops, other messages.
                _ => {}
            }
        }
    }
}

fn sock_info(protocol: Protocol, r: &InetResponse) -> SockInfo {
    let id = &r.header.socket_id;
    let c = id.cookie;
    // idiag_cookie is `__u32[2]` in host byte order, low half first.
    let cookie = u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        | u64::from(u32::from_ne_bytes([c[4], c[5], c[6], c[7]])) << 32;
    let addr = |ip: IpAddr, port: u16| match ip {
        // A link-local address means little without its interface.
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            SocketAddr::V6(SocketAddrV6::new(v6, port, 0, id.interface_id))
        }
        ip => SocketAddr::new(ip, port),
    };
    SockInfo {
        cookie,
        inode: u64::from(r.header.inode),
        protocol,
        local: addr(id.source_address, id.source_port),
        remote: addr(id.destination_address, id.destination_port),
        state: r.header.state,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{TcpListener, TcpStream, UdpSocket},
        os::fd::RawFd,
    };

    use super::*;

    /// The cookie `getsockopt(SO_COOKIE)` gives: the kernel's own.
    fn so_cookie(fd: RawFd) -> u64 {
        let mut cookie: u64 = 0;
        let mut len = size_of::<u64>() as libc::socklen_t;
        // SAFETY: a valid fd and a u64 out-parameter with its size.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_COOKIE,
                (&raw mut cookie).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "SO_COOKIE: {}", io::Error::last_os_error());
        assert_eq!(len as usize, size_of::<u64>());
        cookie
    }

    fn inode_of(fd: RawFd) -> u64 {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        socket_inode(&link).unwrap()
    }

    /// Checks the entry for `fd` and returns its cookie.
    fn check(
        all: &[SockInfo],
        fd: RawFd,
        protocol: Protocol,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> u64 {
        let inode = inode_of(fd);
        let info = all
            .iter()
            .find(|s| s.inode == inode)
            .unwrap_or_else(|| panic!("no entry for fd {fd} (inode {inode}) in {all:#?}"));
        assert_eq!(info.protocol, protocol, "{info:?}");
        assert_eq!(info.local, local, "{info:?}");
        assert_eq!(info.remote, remote, "{info:?}");
        assert_ne!(info.cookie, 0, "{info:?}");
        assert_eq!(
            info.cookie,
            so_cookie(fd),
            "not the kernel's cookie: {info:?}"
        );
        info.cookie
    }

    /// A listener, both ends of a connection to it, an unconnected and a
    /// connected UDP socket, all on `ip`: found, with the kernel's cookies.
    fn sockets_on(ip: IpAddr) {
        let unspecified = SocketAddr::new(
            match ip {
                IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
                IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
            },
            0,
        );
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let udp = UdpSocket::bind((ip, 0)).unwrap();
        let udp_conn = UdpSocket::bind((ip, 0)).unwrap();
        udp_conn.connect(udp.local_addr().unwrap()).unwrap();

        let all = socket_cookies(std::process::id()).unwrap();
        let l = listener.local_addr().unwrap();
        let c = client.local_addr().unwrap();
        let cookies = BTreeSet::from([
            check(&all, listener.as_raw_fd(), Protocol::Tcp, l, unspecified),
            check(&all, client.as_raw_fd(), Protocol::Tcp, c, l),
            check(&all, server.as_raw_fd(), Protocol::Tcp, l, c),
            check(
                &all,
                udp.as_raw_fd(),
                Protocol::Udp,
                udp.local_addr().unwrap(),
                unspecified,
            ),
            check(
                &all,
                udp_conn.as_raw_fd(),
                Protocol::Udp,
                udp_conn.local_addr().unwrap(),
                udp.local_addr().unwrap(),
            ),
        ]);
        assert_eq!(cookies.len(), 5, "cookies are not distinct: {all:#?}");
        let state = |fd: RawFd| {
            let inode = inode_of(fd);
            all.iter().find(|s| s.inode == inode).unwrap().state_name()
        };
        assert_eq!(state(listener.as_raw_fd()), "listen");
        assert_eq!(state(client.as_raw_fd()), "established");
        assert_eq!(state(udp.as_raw_fd()), "unconnected");
        assert_eq!(state(udp_conn.as_raw_fd()), "connected");
        // Each socket once, ordered by inode.
        assert!(all.windows(2).all(|w| w[0].inode < w[1].inode), "{all:#?}");
    }

    #[test]
    fn ipv4_sockets_have_their_kernel_cookies() {
        sockets_on(std::net::Ipv4Addr::LOCALHOST.into());
    }

    #[test]
    fn ipv6_sockets_have_their_kernel_cookies() {
        if let Err(e) = TcpListener::bind("[::1]:0") {
            // Only a loopback without ::1 (IPv6 disabled) is the host's
            // doing; any other refusal is a failure, root or not.
            assert!(!crate::skips::ipv6_loopback(), "binding [::1]: {e}");
            crate::skips::record_skip(
                "respond::sockets::tests::ipv6_sockets_have_their_kernel_cookies",
                &format!("no ::1 on loopback, IPv6 off or loopback down ({e})"),
            );
            return;
        }
        sockets_on(std::net::Ipv6Addr::LOCALHOST.into());
    }

    #[test]
    fn sockets_of_a_thread_in_another_network_namespace_are_found() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: changes this thread's network namespace only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                tx.send(Err(io::Error::last_os_error())).unwrap();
                return;
            }
            // Loopback is down in a new namespace: bind the wildcard.
            let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
            let tcp = TcpListener::bind("[::]:0").unwrap();
            tx.send(Ok((
                udp.as_raw_fd(),
                udp.local_addr().unwrap(),
                tcp.as_raw_fd(),
                tcp.local_addr().unwrap(),
            )))
            .unwrap();
            // Stay in the namespace (and keep the sockets) until checked.
            let _ = done_rx.recv();
        });
        let (udp_fd, udp_addr, tcp_fd, tcp_addr) = match rx.recv().unwrap() {
            Ok(sockets) => sockets,
            Err(e) => {
                // Refused for want of CAP_SYS_ADMIN (not root, or a
                // container's root) is the host's doing; refused with it,
                // a failure.
                use crate::skips::{CAP_SYS_ADMIN, has_capability};
                assert!(
                    e.raw_os_error() == Some(libc::EPERM) && !has_capability(CAP_SYS_ADMIN),
                    "unshare(CLONE_NEWNET): {e}"
                );
                crate::skips::record_skip(
                    "respond::sockets::tests::sockets_of_a_thread_in_another_network_namespace_are_found",
                    &format!("no CAP_SYS_ADMIN to make a network namespace ({e})"),
                );
                return;
            }
        };
        let here = current_netns().unwrap();
        let namespaces = process_netns(std::process::id()).unwrap();
        assert!(namespaces.len() >= 2, "{namespaces:?}");
        assert_eq!(namespaces[0].0, here);

        let all = socket_cookies(std::process::id()).unwrap();
        let v6_any = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 0);
        let v4_any = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0);
        let a = check(&all, udp_fd, Protocol::Udp, udp_addr, v4_any);
        let b = check(&all, tcp_fd, Protocol::Tcp, tcp_addr, v6_any);
        assert_ne!(a, b);
        done_tx.send(()).unwrap();
        thread.join().unwrap();
    }

    #[test]
    fn chosen_tcp_connections_are_aborted_and_others_kept() {
        use std::io::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut doomed = TcpStream::connect(addr).unwrap();
        let (mut doomed_peer, _) = listener.accept().unwrap();
        let mut kept = TcpStream::connect(addr).unwrap();
        let (mut kept_peer, _) = listener.accept().unwrap();
        let doomed_port = doomed.local_addr().unwrap().port();

        // Only the client end of one connection is chosen; the listener
        // could not be even if chosen.
        let (all, cuts) = cut_tcp(std::process::id(), &|s| {
            s.local.port() == doomed_port || s.state == TCP_LISTEN
        })
        .unwrap();
        assert!(all.len() >= 5, "{all:#?}");
        assert_eq!(cuts.len(), 1, "{cuts:#?}");
        assert_eq!(cuts[0].sock.local.port(), doomed_port);
        use crate::skips::{CAP_NET_ADMIN, has_capability};
        if !has_capability(CAP_NET_ADMIN) {
            // SOCK_DESTROY needs CAP_NET_ADMIN: refused, and said so.
            let e = cuts[0].result.as_ref().unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{cuts:#?}");
            crate::skips::record_skip(
                "respond::sockets::tests::chosen_tcp_connections_are_aborted_and_others_kept",
                "no CAP_NET_ADMIN: the abort was refused (EPERM), what it does was not checked",
            );
            return;
        }
        assert!(cuts[0].result.is_ok(), "{cuts:#?}");

        let err = doomed.write_all(b"late").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECONNABORTED), "{err}");
        // Nothing reaches the peer: it sees the reset or an end, no data.
        let mut buf = [0u8; 8];
        doomed_peer
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert!(matches!(doomed_peer.read(&mut buf), Ok(0) | Err(_)));

        kept.write_all(b"ping").unwrap();
        kept_peer.read_exact(&mut buf[..4]).unwrap();
        assert_eq!(&buf[..4], b"ping");
        let after = socket_cookies(std::process::id()).unwrap();
        assert!(
            after
                .iter()
                .any(|s| s.state_name() == "listen" && s.local == addr)
        );
    }

    #[test]
    fn a_missing_process_is_a_clear_error() {
        // Above any possible pid_max (2^22).
        let pid = i32::MAX as u32;
        let err = socket_cookies(pid).unwrap_err();
        assert_eq!(err.to_string(), format!("no process {pid}"));
        let err = process_socket_inodes(pid).unwrap_err();
        assert_eq!(err.to_string(), format!("no process {pid}"));
    }

    #[test]
    fn socket_links_are_parsed() {
        assert_eq!(socket_inode(Path::new("socket:[12345]")), Some(12345));
        assert_eq!(socket_inode(Path::new("pipe:[12345]")), None);
        assert_eq!(socket_inode(Path::new("anon_inode:[eventfd]")), None);
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
        assert_eq!(ns_inode(Path::new("net:[4026531833]")), Some(4026531833));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let inodes = process_socket_inodes(std::process::id()).unwrap();
        assert!(inodes.contains(&inode_of(listener.as_raw_fd())));
    }
}
