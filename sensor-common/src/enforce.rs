//! Map values of the in-kernel enforcement (network isolation), shared by
//! the kernel programs and the daemon that writes them.
//!
//! These maps are pinned under `/sys/fs/bpf/sensor` so enforcement outlives
//! the daemon: changing a layout here needs a new map name, or a restarted
//! daemon would find an old pinned map of another size.

/// Most allowed IPv4 / IPv6 networks per isolated process.
pub const ISOLATE_ALLOW_MAX: usize = 4;

/// Loopback (127.0.0.0/8, ::1) stays reachable.
pub const ISOLATE_ALLOW_LOOPBACK: u32 = 1;

/// One isolated process (keyed by tgid in `ISOLATED`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Isolation {
    /// The process's start (ns since boot, `task->start_boottime`), so a
    /// restarted daemon can tell a reused pid from the isolated process.
    pub start_ns: u64,
    /// When isolation began (ns since boot).
    pub since_ns: u64,
    /// The isolated parent this process inherited isolation from at fork;
    /// 0 when isolated directly.
    pub parent_tgid: u32,
    pub flags: u32,
    /// IPv4 networks still reachable: address and mask, network order.
    pub allow4: [[u32; 2]; ISOLATE_ALLOW_MAX],
    pub allow4_len: u32,
    pub allow6_len: u32,
    /// IPv6 networks still reachable: address then mask, network order.
    pub allow6: [[u32; 8]; ISOLATE_ALLOW_MAX],
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for Isolation {}

/// Most deny patterns per armed process, and their longest length.
pub const ARM_RULES_MAX: usize = 8;
pub const ARM_PATTERN_MAX: usize = 64;

/// What the kernel does at a TLS write matching an armed pattern.
/// Kill the process (SIGKILL) before the library encrypts the request.
pub const ARM_KILL: u8 = 0;
/// Stop the whole process (SIGSTOP) until a person approves (SIGCONT: the
/// same write then goes on) or denies.
pub const ARM_HOLD: u8 = 1;
/// Let it through: an approved ("remembered") request, checked before the
/// patterns that would hold it.
pub const ARM_ALLOW: u8 = 2;
/// In a blocked record: the process was stopped at the first bytes of a
/// new TLS connection (its ClientHello), for a client whose TLS library is
/// not hooked: the daemon holds it if the SNI names a held host.
pub const ARM_HOLD_TLS: u8 = 3;

/// `ArmRules::flags`: stop the process at each new TLS connection (a held
/// agent with host patterns whose plaintext may not be visible).
pub const ARM_FLAG_HOLD_TLS: u32 = 1;

/// The patterns of one armed process (keyed by tgid in `ARMED`): the first
/// bytes of an HTTP/1.x request, "METHOD /path-prefix", or of a database
/// statement after its message header, each with an action (`ARM_*`).
/// The first pattern a TLS write starts with decides.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ArmRules {
    pub len: u32,
    /// `ARM_FLAG_*`.
    pub flags: u32,
    /// Bytes of the write a pattern covers, `skip` included.
    pub pattern_len: [u32; ARM_RULES_MAX],
    pub patterns: [[u8; ARM_PATTERN_MAX]; ARM_RULES_MAX],
    pub action: [u8; ARM_RULES_MAX],
    /// Per byte, the bits compared (`write & mask == pattern`): 0xff for
    /// HTTP; 0 over a database message's header (type and length, which
    /// vary with the statement); 0xdf on a statement's letters, so they
    /// compare in any case (the pattern holds them upper case). A mask
    /// rather than flags: no branch more per byte for the verifier.
    pub mask: [[u8; ARM_PATTERN_MAX]; ARM_RULES_MAX],
}

impl Default for ArmRules {
    fn default() -> Self {
        Self {
            len: 0,
            flags: 0,
            pattern_len: [0; ARM_RULES_MAX],
            patterns: [[0; ARM_PATTERN_MAX]; ARM_RULES_MAX],
            action: [ARM_KILL; ARM_RULES_MAX],
            mask: [[0xff; ARM_PATTERN_MAX]; ARM_RULES_MAX],
        }
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for ArmRules {}
