//! Network isolation: attaching the programs of `sensor-ebpf`'s
//! `enforce.rs` so that they outlive the daemon — BPF LSM where the kernel
//! allows it, the cgroup programs elsewhere (`attach::HOOKS`) — and
//! writing the maps that say who is isolated (the same maps for both).
//!
//! Everything lives under `/sys/fs/bpf/sensor`: the maps (pinned by name by
//! the loader) and the LSM and cgroup links (pinned here). A daemon that crashes
//! leaves enforcement in force; the next one reuses the maps, attaches its
//! own programs, and only then unpins its predecessor's links, so there is
//! no moment without enforcement. A clean stop with nobody isolated removes
//! it all.

use std::{
    collections::BTreeMap,
    fs,
    net::IpAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, Lsm, links::FdLink,
    },
};
use sensor_common::{ISOLATE_ALLOW_LOOPBACK, ISOLATE_ALLOW_MAX, Isolation};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{RespondError, protect::Protect};

/// Processes an action spared, with the reason.
pub type LeftAlone = Vec<(u32, String)>;
use crate::{
    clock::{Clock, USER_HZ, ns_to_ticks},
    ebpf::Attachment,
};

/// Where the maps and links are pinned.
pub const PIN_DIR: &str = "/sys/fs/bpf/sensor";

/// The cgroup method's programs, in the order they are attached.
const SOCK_ADDR_PROGRAMS: [&str; 4] = [
    "isolate_connect4",
    "isolate_connect6",
    "isolate_sendmsg4",
    "isolate_sendmsg6",
];
const SKB_PROGRAMS: [(&str, CgroupSkbAttachType); 2] = [
    ("isolate_egress", CgroupSkbAttachType::Egress),
    ("isolate_ingress", CgroupSkbAttachType::Ingress),
];
/// The LSM method's programs and their hooks (`sensor-ebpf` enforce.rs).
const LSM_PROGRAMS: [(&str, &str); 3] = [
    ("isolate_lsm_connect", "socket_connect"),
    ("isolate_lsm_sendmsg", "socket_sendmsg"),
    ("isolate_lsm_recvmsg", "socket_recvmsg"),
];

/// bpffs must be mounted at /sys/fs/bpf for anything to be pinned; hosts
/// without systemd (and containers) may not have it.
pub fn prepare_pin_dir() -> Result<PathBuf> {
    let root = Path::new("/sys/fs/bpf");
    let mounted = fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let mut f = l.split_whitespace();
            f.nth(1) == Some("/sys/fs/bpf") && f.next() == Some("bpf")
        });
    if !mounted {
        let status = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
            .status()
            .context("running mount -t bpf")?;
        anyhow::ensure!(
            status.success(),
            "bpffs is not mounted at /sys/fs/bpf and mounting it failed ({status})"
        );
        info!("mounted bpffs at {}", root.display());
    }
    let dir = PathBuf::from(PIN_DIR);
    fs::create_dir_all(dir.join("links")).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Links made by one attempt, pinned only once all of them are made: a
/// method that fails halfway leaves nothing attached (dropping an unpinned
/// link detaches it) and the next method starts from a clean slate.
#[derive(Default)]
struct Links {
    made: Vec<(&'static str, FdLink, String)>,
}

impl Links {
    fn add(&mut self, name: &'static str, link: FdLink, method: String) {
        self.made.push((name, link, method));
    }

    /// Pins every link as "<program>-<pid>" (bpffs refuses names with a
    /// dot: EPERM), then removes the links a dead predecessor left pinned.
    /// The pinned link keeps the program attached after this process
    /// exits, so isolation outlives the daemon.
    fn pin(self, pin_dir: &Path) -> Result<Vec<Attachment>> {
        let links = pin_dir.join("links");
        let me = std::process::id();
        let mut attached = Vec::new();
        for (name, link, method) in self.made {
            let path = links.join(format!("{name}-{me}"));
            let _ = fs::remove_file(&path);
            link.pin(&path)
                .with_context(|| format!("pinning {}", path.display()))?;
            attached.push(Attachment {
                program: name,
                method,
            });
        }
        // Only now that ours are in force: a dead predecessor's links go
        // (a live sensor's stay: two daemons enforce the same maps). The
        // predecessor may have used the other method: its links go too.
        for path in link_pins(&links) {
            if let Some(pid) = pin_owner(&path)
                && pid != me
                && !is_sensor(pid)
            {
                info!(link = %path.display(), "replacing a previous daemon's pinned link");
                fs::remove_file(&path)?;
            }
        }
        Ok(attached)
    }
}

/// The cgroup method: sock_addr programs refuse new connects and
/// datagrams, skb programs drop packets of sockets isolated processes
/// hold, all on the cgroup v2 root. Returns what was attached and a
/// summary for the status.
pub fn attach_cgroup(
    bpf: &mut Ebpf,
    pin_dir: &Path,
    cgroup_root: &Path,
) -> Result<(Vec<Attachment>, String)> {
    let mut links = Links::default();
    let r = (|| -> Result<()> {
        let cgroup = fs::File::open(cgroup_root)
            .with_context(|| format!("opening the cgroup v2 root {}", cgroup_root.display()))?;
        for name in SOCK_ADDR_PROGRAMS {
            let prog: &mut CgroupSockAddr = crate::ebpf::program(bpf, name)?;
            prog.load()
                .with_context(|| format!("loading program {name}"))?;
            // Single: AllowMultiple is refused with EINVAL here (KERNEL-NOTES),
            // and links to one cgroup stack anyway.
            let id = prog
                .attach(&cgroup, CgroupAttachMode::Single)
                .with_context(|| format!("attaching {name} to {}", cgroup_root.display()))?;
            links.add(
                name,
                prog.take_link(id)?.try_into()?,
                format!("cgroup sock_addr on {}", cgroup_root.display()),
            );
        }
        attach_skb(bpf, &cgroup, cgroup_root, &mut links)
    })();
    if let Err(e) = r {
        drop(links);
        unload(bpf);
        return Err(e);
    }
    let attached = links.pin(pin_dir)?;
    Ok((
        attached,
        format!(
            "cgroup sock_addr connect4/6 + sendmsg4/6 and cgroup_skb egress/ingress on {}",
            cgroup_root.display()
        ),
    ))
}

/// The LSM method: `socket_connect`, `socket_sendmsg` and `socket_recvmsg`
/// refuse isolated processes; the skb programs stay beside them on the
/// cgroup v2 root when there is one (why: `sensor-ebpf` enforce.rs).
pub fn attach_lsm(
    bpf: &mut Ebpf,
    pin_dir: &Path,
    btf: &aya::Btf,
    cgroup_root: Option<&Path>,
) -> Result<(Vec<Attachment>, String)> {
    let mut links = Links::default();
    let r = (|| -> Result<()> {
        for (name, hook) in LSM_PROGRAMS {
            let prog: &mut Lsm = crate::ebpf::program(bpf, name)?;
            prog.load(hook, btf)
                .with_context(|| format!("loading lsm program {name} for {hook}"))?;
            let id = prog
                .attach()
                .with_context(|| format!("attaching {name} to lsm/{hook}"))?;
            links.add(name, prog.take_link(id)?.into(), format!("lsm {hook}"));
        }
        if let Some(root) = cgroup_root {
            let cgroup = fs::File::open(root)
                .with_context(|| format!("opening the cgroup v2 root {}", root.display()))?;
            attach_skb(bpf, &cgroup, root, &mut links)?;
        }
        Ok(())
    })();
    if let Err(e) = r {
        drop(links);
        unload(bpf);
        return Err(e);
    }
    let attached = links.pin(pin_dir)?;
    let hooks: Vec<&str> = LSM_PROGRAMS.iter().map(|(_, h)| *h).collect();
    Ok((
        attached,
        match cgroup_root {
            Some(root) => format!(
                "lsm {} and cgroup_skb egress/ingress on {}",
                hooks.join(", "),
                root.display()
            ),
            None => format!("lsm {} (no cgroup v2: no cgroup_skb)", hooks.join(", ")),
        },
    ))
}

fn attach_skb(
    bpf: &mut Ebpf,
    cgroup: &fs::File,
    cgroup_root: &Path,
    links: &mut Links,
) -> Result<()> {
    for (name, kind) in SKB_PROGRAMS {
        let prog: &mut CgroupSkb = crate::ebpf::program(bpf, name)?;
        prog.load()
            .with_context(|| format!("loading program {name}"))?;
        let id = prog
            .attach(cgroup, kind, CgroupAttachMode::Single)
            .with_context(|| format!("attaching {name} to {}", cgroup_root.display()))?;
        links.add(
            name,
            prog.take_link(id)?.try_into()?,
            format!("cgroup_skb on {}", cgroup_root.display()),
        );
    }
    Ok(())
}

/// After a failed attempt: every isolation program is unloaded (unloading
/// a program that was never loaded is refused, and harmless), so another
/// method can load its own.
fn unload(bpf: &mut Ebpf) {
    for name in SOCK_ADDR_PROGRAMS {
        if let Ok(p) = crate::ebpf::program::<CgroupSockAddr>(bpf, name) {
            let _ = p.unload();
        }
    }
    for (name, _) in SKB_PROGRAMS {
        if let Ok(p) = crate::ebpf::program::<CgroupSkb>(bpf, name) {
            let _ = p.unload();
        }
    }
    for (name, _) in LSM_PROGRAMS {
        if let Ok(p) = crate::ebpf::program::<Lsm>(bpf, name) {
            let _ = p.unload();
        }
    }
}

fn link_pins(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The daemon that pinned a link: "<program>-<pid>".
fn pin_owner(path: &Path) -> Option<u32> {
    path.file_name()?.to_str()?.rsplit_once('-')?.1.parse().ok()
}

fn is_sensor(pid: u32) -> bool {
    let me = fs::read_link("/proc/self/exe").ok();
    me.is_some() && fs::read_link(format!("/proc/{pid}/exe")).ok() == me
}

/// How a process is isolated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub tree: bool,
    pub allow_loopback: bool,
    /// Networks still reachable (e.g. the SOC's collector).
    pub allow: Vec<Net>,
}

/// An IP network, `addr/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR (like 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0..={max}"))?
        };
        Ok(Net { addr, prefix })
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Address and mask as the kernel compares them: words in network order.
fn words(net: &Net) -> (Vec<u32>, Vec<u32>) {
    let (bytes, bits): (Vec<u8>, u32) = match net.addr {
        IpAddr::V4(a) => (a.octets().to_vec(), 32),
        IpAddr::V6(a) => (a.octets().to_vec(), 128),
    };
    let mask: u128 = if net.prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(net.prefix))
    };
    let mask_bytes = &mask.to_be_bytes()[..(bits / 8) as usize];
    let word = |b: &[u8]| -> Vec<u32> {
        b.chunks(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let masked: Vec<u8> = bytes.iter().zip(mask_bytes).map(|(a, m)| a & m).collect();
    (word(&masked), word(mask_bytes))
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        let (bits, a, b) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(ip)) => {
                (32, u128::from(n.to_bits()), u128::from(ip.to_bits()))
            }
            (IpAddr::V6(n), IpAddr::V6(ip)) => (128, n.to_bits(), ip.to_bits()),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (a >> shift) == (b >> shift)
    }
}

impl Options {
    /// Whether a connection to `ip` stays allowed, as the kernel decides
    /// it (a v4-mapped IPv6 address counts as its IPv4 address).
    fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        (self.allow_loopback && ip.is_loopback()) || self.allow.iter().any(|n| n.contains(ip))
    }

    fn to_kernel(&self, start_ns: u64, since_ns: u64) -> Result<Isolation, RespondError> {
        let mut iso = Isolation {
            start_ns,
            since_ns,
            flags: if self.allow_loopback {
                ISOLATE_ALLOW_LOOPBACK
            } else {
                0
            },
            ..Default::default()
        };
        for net in &self.allow {
            let (a, m) = words(net);
            if net.addr.is_ipv4() {
                let i = iso.allow4_len as usize;
                if i == ISOLATE_ALLOW_MAX {
                    return Err(RespondError::Invalid(format!(
                        "at most {ISOLATE_ALLOW_MAX} IPv4 networks can stay allowed"
                    )));
                }
                iso.allow4[i] = [a[0], m[0]];
                iso.allow4_len += 1;
            } else {
                let i = iso.allow6_len as usize;
                if i == ISOLATE_ALLOW_MAX {
                    return Err(RespondError::Invalid(format!(
                        "at most {ISOLATE_ALLOW_MAX} IPv6 networks can stay allowed"
                    )));
                }
                iso.allow6[i] = [a[0], a[1], a[2], a[3], m[0], m[1], m[2], m[3]];
                iso.allow6_len += 1;
            }
        }
        Ok(iso)
    }
}

fn from_kernel(iso: &Isolation) -> Options {
    let mut allow = Vec::new();
    let bytes = |w: &[u32]| -> Vec<u8> { w.iter().flat_map(|w| w.to_ne_bytes()).collect() };
    let prefix = |m: Vec<u8>| m.iter().map(|b| b.count_ones()).sum::<u32>() as u8;
    for n in &iso.allow4[..(iso.allow4_len as usize).min(ISOLATE_ALLOW_MAX)] {
        let a = bytes(&n[..1]);
        allow.push(Net {
            addr: IpAddr::from([a[0], a[1], a[2], a[3]]),
            prefix: prefix(bytes(&n[1..])),
        });
    }
    for n in &iso.allow6[..(iso.allow6_len as usize).min(ISOLATE_ALLOW_MAX)] {
        let a: [u8; 16] = bytes(&n[..4]).try_into().unwrap_or_default();
        allow.push(Net {
            addr: IpAddr::from(a),
            prefix: prefix(bytes(&n[4..])),
        });
    }
    Options {
        tree: false,
        allow_loopback: iso.flags & ISOLATE_ALLOW_LOOPBACK != 0,
        allow,
    }
}

/// Why and by whom a process was isolated: kept beside the kernel state
/// (which has no room for text) in the state directory.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Note {
    pub why: String,
    pub by: String,
}

/// One isolated process as `sensor isolated` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Isolated {
    pub pid: u32,
    pub start_ticks: u64,
    /// Seconds since the Unix epoch.
    pub since_unix: f64,
    /// Isolated because its isolated parent forked it.
    pub parent: Option<u32>,
    pub options: Options,
    pub note: Note,
}

/// The daemon's handle on the isolation maps.
pub struct Isolator {
    isolated: HashMap<MapData, u32, Isolation>,
    owners: HashMap<MapData, u64, u32>,
    on: Array<MapData, u32>,
    notes_path: PathBuf,
    notes: BTreeMap<String, Note>,
}

fn note_key(pid: u32, start_ticks: u64) -> String {
    format!("{pid}-{start_ticks}")
}

impl Isolator {
    pub fn take(bpf: &mut Ebpf, state_dir: &Path) -> Result<Self> {
        let map = |bpf: &mut Ebpf, name: &str| {
            bpf.take_map(name)
                .with_context(|| format!("map {name} missing from the object"))
        };
        let notes_path = state_dir.join("isolations.json");
        let notes = match fs::read(&notes_path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                warn!(path = %notes_path.display(), error = %e, "unreadable isolation notes; starting without them");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        let mut me = Self {
            isolated: HashMap::try_from(map(bpf, "ISOLATED")?)?,
            owners: HashMap::try_from(map(bpf, "SOCK_OWNER")?)?,
            on: Array::try_from(map(bpf, "ENFORCE_STATE")?)?,
            notes_path,
            notes,
        };
        me.reconcile();
        Ok(me)
    }

    /// Forgets entries whose process is gone or whose pid now belongs to
    /// another process (the daemon was down when it exited), and tells the
    /// kernel whether anything is isolated.
    pub fn reconcile(&mut self) -> usize {
        let entries: Vec<(u32, Isolation)> = self.isolated.iter().filter_map(|r| r.ok()).collect();
        let mut kept = 0;
        for (pid, iso) in entries {
            let ticks = ns_to_ticks(iso.start_ns);
            if super::start_ticks(pid) == Some(ticks) {
                kept += 1;
            } else {
                info!(pid, "isolated process is gone; forgetting its isolation");
                let _ = self.isolated.remove(&pid);
            }
        }
        let live: Vec<String> = self
            .list()
            .iter()
            .map(|i| note_key(i.pid, i.start_ticks))
            .collect();
        let before = self.notes.len();
        self.notes.retain(|k, _| live.contains(k));
        if self.notes.len() != before {
            self.save_notes();
        }
        let _ = self.on.set(0, &(kept as u32), 0);
        kept
    }

    /// Isolates `pid` (and with `tree`, its descendants but the protected
    /// ones, returned with the reason). Returns each process isolated as
    /// (pid, start ticks). A protected `pid` is refused.
    pub fn isolate(
        &mut self,
        pid: u32,
        expected_start: Option<u64>,
        opts: &Options,
        note: Note,
        protect: &Protect,
    ) -> Result<(Vec<(u32, u64)>, LeftAlone), RespondError> {
        let start = super::check_target(pid, expected_start)?;
        if let Some(why) = protect.why(pid) {
            return Err(RespondError::Protected { pid, why });
        }
        if let Some(iso) = self.isolated.get(&pid, 0).ok()
            && ns_to_ticks(iso.start_ns) == start
        {
            return Err(RespondError::AlreadyIsolated(pid));
        }
        let mut targets = vec![(pid, start)];
        let mut skipped = Vec::new();
        if opts.tree {
            for (p, ticks) in super::descendants(pid) {
                match protect.why(p) {
                    Some(why) => skipped.push((p, why)),
                    None => targets.push((p, ticks)),
                }
            }
        }
        let since = crate::clock::boottime_ns();
        let mut done = Vec::new();
        for (p, ticks) in targets {
            let mut iso = opts.to_kernel(ticks * (1_000_000_000 / USER_HZ), since)?;
            if p != pid {
                iso.parent_tgid = pid;
            }
            self.isolated
                .insert(&p, &iso, 0)
                .map_err(|e| RespondError::Kernel(format!("writing ISOLATED: {e}")))?;
            // In force before the process's sockets are listed: a connect
            // the programs let through while they were still off (the
            // first isolation on the host) has its socket open by then and
            // is cut; listed first, such a socket was missed and, its SYN
            // dropped once enforcement came on, hung its connect until
            // TCP gave up (minutes; seen by `cargo xtask bench`).
            self.count_isolated();
            self.notes.insert(note_key(p, ticks), note.clone());
            self.cut_open_connections(p, opts);
            done.push((p, ticks));
        }
        self.save_notes();
        Ok((done, skipped))
    }

    /// Connections `pid` already holds (keep-alive ones, or older than the
    /// sensor) to destinations that are not allowed: their cookies go to
    /// the kernel's owner table, so the skb programs drop their packets,
    /// and TCP ones are aborted, so that data already queued is discarded
    /// rather than retransmitted once enforcement ends (on release, or a
    /// clean stop after the process exits).
    fn cut_open_connections(&mut self, pid: u32, opts: &Options) {
        let cut = |s: &super::sockets::SockInfo| {
            !s.remote.ip().is_unspecified() && !opts.allows(s.remote.ip())
        };
        let (socks, cuts) = match super::sockets::cut_tcp(pid, &cut) {
            Ok(found) => found,
            Err(e) => {
                warn!(pid, error = %format!("{e:#}"), "could not list the process's sockets; its existing connections may stay open");
                return;
            }
        };
        for s in &socks {
            let _ = self.owners.insert(&s.cookie, &pid, 0);
        }
        for c in cuts {
            match c.result {
                Ok(()) => info!(pid, remote = %c.sock.remote, "aborted an open connection"),
                // Closed meanwhile: nothing left to cut.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => {
                    warn!(pid, remote = %c.sock.remote, error = %e, "could not abort an open connection; the kernel still drops its packets while the process is isolated")
                }
            }
        }
    }

    /// Tells the kernel programs how many processes are isolated: they
    /// look anything up only while some are.
    fn count_isolated(&mut self) {
        let n = self.isolated.keys().count() as u32;
        let _ = self.on.set(0, &n, 0);
    }

    /// Releases `pid` and everything isolated because of it (its forks).
    pub fn release(&mut self, pid: u32) -> Result<Vec<u32>, RespondError> {
        let all = self.list();
        if !all.iter().any(|i| i.pid == pid) {
            return Err(RespondError::NotIsolated(pid));
        }
        let mut gone = vec![pid];
        // Forks of forks: follow parent links until nothing new is found.
        loop {
            let more: Vec<u32> = all
                .iter()
                .filter(|i| i.parent.is_some_and(|p| gone.contains(&p)) && !gone.contains(&i.pid))
                .map(|i| i.pid)
                .collect();
            if more.is_empty() {
                break;
            }
            gone.extend(more);
        }
        for p in &gone {
            let _ = self.isolated.remove(p);
        }
        for i in all.iter().filter(|i| gone.contains(&i.pid)) {
            self.notes.remove(&note_key(i.pid, i.start_ticks));
        }
        self.count_isolated();
        self.save_notes();
        Ok(gone)
    }

    pub fn list(&self) -> Vec<Isolated> {
        let clock = Clock::new();
        let mut out: Vec<Isolated> = self
            .isolated
            .iter()
            .filter_map(|r| r.ok())
            .map(|(pid, iso)| {
                let start_ticks = ns_to_ticks(iso.start_ns);
                let parent = (iso.parent_tgid != 0).then_some(iso.parent_tgid);
                let note = self
                    .notes
                    .get(&note_key(pid, start_ticks))
                    .cloned()
                    .unwrap_or_else(|| Note {
                        why: match parent {
                            Some(p) => format!("forked by isolated process {p}"),
                            None => "unknown (isolated by an earlier daemon)".into(),
                        },
                        by: "kernel".into(),
                    });
                Isolated {
                    pid,
                    start_ticks,
                    since_unix: clock.to_unix_ns(iso.since_ns) as f64 / 1e9,
                    parent,
                    options: from_kernel(&iso),
                    note,
                }
            })
            .collect();
        out.sort_by_key(|i| i.pid);
        out
    }

    fn save_notes(&self) {
        if let Err(e) = crate::state::write_private(
            &self.notes_path,
            &serde_json::to_vec_pretty(&self.notes).unwrap_or_default(),
        ) {
            warn!(error = %format!("{e:#}"), "could not save isolation notes");
        }
    }
}

/// At a clean stop: with nobody isolated, this daemon leaves nothing in
/// the kernel (and the directory goes when no other sensor uses it);
/// otherwise its pinned programs keep enforcing.
pub fn on_clean_stop(isolator: Option<&mut Isolator>) {
    let remaining = isolator.map_or(0, |i| i.reconcile());
    if remaining > 0 {
        warn!(
            isolated = remaining,
            "processes stay isolated: the kernel keeps enforcing after the daemon stops (sensor release <pid> once it runs again)"
        );
        return;
    }
    let links = Path::new(PIN_DIR).join("links");
    let me = std::process::id();
    let mut others = 0;
    for path in link_pins(&links) {
        if pin_owner(&path) == Some(me) {
            let _ = fs::remove_file(&path);
        } else {
            others += 1;
        }
    }
    if others == 0
        && let Err(e) = fs::remove_dir_all(PIN_DIR)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(error = %e, "could not remove {PIN_DIR}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_destinations_match_what_the_kernel_lets_through() {
        let opts = Options {
            tree: false,
            allow_loopback: true,
            allow: vec!["10.1.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()],
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(opts.allows(ip("127.0.0.1")));
        assert!(opts.allows(ip("::1")));
        assert!(opts.allows(ip("::ffff:127.0.0.2")));
        assert!(opts.allows(ip("10.1.255.3")));
        assert!(opts.allows(ip("::ffff:10.1.0.9")));
        assert!(opts.allows(ip("fd12::1")));
        assert!(!opts.allows(ip("10.2.0.1")));
        assert!(!opts.allows(ip("fe80::1")));
        assert!(!opts.allows(ip("93.184.216.34")));
        let none = Options {
            tree: false,
            allow_loopback: false,
            allow: vec!["0.0.0.0/0".parse().unwrap()],
        };
        assert!(!none.allows(ip("::1")));
        assert!(none.allows(ip("127.0.0.1")));
    }

    #[test]
    fn networks_parse_and_round_trip_through_kernel_words() {
        let opts = Options {
            tree: false,
            allow_loopback: true,
            allow: vec![
                "10.1.2.3/8".parse().unwrap(),
                "192.168.7.9".parse().unwrap(),
                "fd00::1/16".parse().unwrap(),
            ],
        };
        let iso = opts.to_kernel(1, 2).unwrap();
        assert_eq!(iso.allow4_len, 2);
        assert_eq!(iso.allow6_len, 1);
        // 10.0.0.0/8 in network order: first octet in the low byte here.
        assert_eq!(
            iso.allow4[0],
            [
                u32::from_ne_bytes([10, 0, 0, 0]),
                u32::from_ne_bytes([255, 0, 0, 0])
            ]
        );
        let back = from_kernel(&iso);
        assert!(back.allow_loopback);
        assert_eq!(
            back.allow.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["10.0.0.0/8", "192.168.7.9/32", "fd00::/16"]
        );
    }

    #[test]
    fn bad_networks_say_what_is_wrong() {
        assert!("10.0.0.0/33".parse::<Net>().unwrap_err().contains("0..=32"));
        assert!(
            "example.com"
                .parse::<Net>()
                .unwrap_err()
                .contains("not an address")
        );
        let too_many = Options {
            allow: (0..5)
                .map(|i| format!("10.0.0.{i}").parse().unwrap())
                .collect(),
            ..Default::default()
        };
        assert!(matches!(
            too_many.to_kernel(0, 0),
            Err(RespondError::Invalid(_))
        ));
    }
}
