//! Which kernel mechanism carries each hook on this host.
//!
//! Kernels differ in what they let a BPF program attach to: the development
//! machines' 6.18 has no kprobes and refuses fentry/fexit and BPF LSM at
//! load; Debian's stock 6.1 allows all three; most production kernels have
//! kprobes, few run BPF LSM. [`HOOKS`] is the one table of what the sensor
//! can use for each hook, in order of preference, with the capabilities
//! each method needs (proven at start by `ebpf::probe_program_types` and
//! the BTF and cgroup checks) and why it is preferred. The loader takes,
//! per hook, the first method whose capabilities were proven, and falls
//! back to the next when it fails to load or attach. What it chose, and
//! what it skipped and why, goes to the startup log, `sensor status` and
//! the Status RPC; a hook with no usable method makes its feature report
//! itself unavailable.

use std::fmt;

use sensor_proto::v1 as pb;

/// Something the kernel was found to allow at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    /// tracefs with `events/` (syscall and sched tracepoints).
    Tracepoint,
    /// `/sys/kernel/btf/vmlinux` with the `task_struct` fields we read.
    Btf,
    /// A kprobe program loads and attaches (kernel built with kprobes).
    Kprobe,
    /// An fentry program loads (BPF trampolines: fentry, fexit).
    Fentry,
    /// A BPF LSM program loads and `bpf` is in the active LSM list.
    Lsm,
    /// A cgroup v2 hierarchy is mounted (its root takes cgroup programs).
    CgroupV2,
}

impl Capability {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tracepoint => "tracepoint",
            Self::Btf => "btf",
            Self::Kprobe => "kprobe",
            Self::Fentry => "fentry",
            Self::Lsm => "lsm",
            Self::CgroupV2 => "cgroup_v2",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The methods the loader knows how to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodId {
    ExecExitTracepoints,
    ForkRawTracepoint,
    SocketDataTracepoints,
    TlsUprobes,
    ConnectFexit,
    ConnectKprobe,
    ConnectTracepoints,
    IsolationLsm,
    IsolationCgroup,
}

pub struct Method {
    pub id: MethodId,
    /// Short name, as status shows it: "fexit", "kprobe", "lsm", ...
    pub name: &'static str,
    pub needs: &'static [Capability],
    pub why: &'static str,
}

pub struct Hook {
    /// "connect", "isolation", ...
    pub name: &'static str,
    /// The feature a missing hook takes away, as `degraded` names it.
    pub feature: &'static str,
    /// The sensor does not start without it.
    pub required: bool,
    /// In order of preference.
    pub methods: &'static [Method],
}

use Capability::*;

/// Every hook, its methods in order of preference, what each needs, why.
pub const HOOKS: &[Hook] = &[
    Hook {
        name: "exec_exit",
        feature: "process events",
        required: true,
        methods: &[Method {
            id: MethodId::ExecExitTracepoints,
            name: "tracepoint",
            needs: &[Tracepoint],
            why: "sched_process_exec/exit are stable tracepoints on every kernel the sensor supports",
        }],
    },
    Hook {
        name: "fork",
        feature: "fork events",
        required: false,
        methods: &[Method {
            id: MethodId::ForkRawTracepoint,
            name: "raw_tracepoint",
            needs: &[Btf],
            why: "the raw sched_process_fork tracepoint passes the child task, whose tgid tells a process from a thread; reading it needs BTF offsets",
        }],
    },
    Hook {
        name: "connect",
        feature: "connect events (and first-bytes capture: SNI, plain HTTP)",
        required: false,
        methods: &[
            Method {
                id: MethodId::ConnectFexit,
                name: "fexit",
                needs: &[Fentry, Btf],
                why: "one program at __sys_connect's return sees arguments and result together: no per-thread parking map, one program run per connect instead of two",
            },
            Method {
                id: MethodId::ConnectKprobe,
                name: "kprobe",
                needs: &[Kprobe],
                why: "where trampolines are refused but kprobes are built: the same __sys_connect, entry parks the arguments for the return probe",
            },
            Method {
                id: MethodId::ConnectTracepoints,
                name: "tracepoint",
                needs: &[Tracepoint],
                why: "syscalls/sys_enter_connect and sys_exit_connect exist wherever syscall tracing is built: the stable fallback",
            },
        ],
    },
    Hook {
        name: "socket_data",
        feature: "first-bytes capture (SNI, plain HTTP)",
        required: false,
        methods: &[Method {
            id: MethodId::SocketDataTracepoints,
            name: "tracepoint",
            needs: &[Tracepoint],
            why: "write/sendto/writev/sendmsg/sendmmsg/read/recvfrom/close syscall tracepoints see the bytes of connected sockets in user memory, whichever send call a client's runtime makes",
        }],
    },
    Hook {
        name: "tls",
        feature: "TLS plaintext capture",
        required: false,
        methods: &[Method {
            id: MethodId::TlsUprobes,
            name: "uprobe",
            needs: &[],
            why: "the plaintext exists only in the process, at the TLS library's calls (uprobes load wherever perf events do; attached per library file)",
        }],
    },
    Hook {
        name: "isolation",
        feature: "network isolation",
        required: false,
        methods: &[
            Method {
                id: MethodId::IsolationLsm,
                name: "lsm",
                needs: &[Lsm, Btf],
                why: "socket_connect/sendmsg/recvmsg refuse the isolated process itself with EPERM at every syscall, on new and already open sockets, whatever cgroup it is in (cgroup_skb stays beside it for datagram senders and kernel-sent packets)",
            },
            Method {
                id: MethodId::IsolationCgroup,
                name: "cgroup",
                needs: &[CgroupV2],
                why: "cgroup sock_addr programs on the v2 root refuse new connects and datagrams; cgroup_skb drops packets of sockets the process already holds",
            },
        ],
    },
];

/// What the kernel allows, as proven at start: each capability is either
/// proven or refused with the kernel's reason.
#[derive(Default)]
pub struct Proven {
    checked: Vec<(Capability, Result<(), String>)>,
}

impl Proven {
    pub fn set(&mut self, cap: Capability, result: Result<(), String>) {
        self.checked.retain(|(c, _)| *c != cap);
        self.checked.push((cap, result));
    }

    /// Why `cap` cannot be used, or None if it was proven.
    pub fn refusal(&self, cap: Capability) -> Option<String> {
        match self.checked.iter().find(|(c, _)| *c == cap) {
            Some((_, Ok(()))) => None,
            Some((_, Err(why))) => Some(why.clone()),
            None => Some("not checked".into()),
        }
    }
}

/// The outcome for one hook.
#[derive(Clone, Debug)]
pub struct Choice {
    pub hook: &'static str,
    pub feature: &'static str,
    /// The method in use, its table entry's `why`, and what it attached.
    pub chosen: Option<(&'static str, &'static str, String)>,
    /// Better methods passed over: (method, why not).
    pub skipped: Vec<(&'static str, String)>,
    /// Set when no method is in use.
    pub unavailable: Option<String>,
}

impl Choice {
    pub fn method(&self) -> Option<&'static str> {
        self.chosen.as_ref().map(|(m, _, _)| *m)
    }

    /// A hook the configuration turned off.
    pub fn disabled(hook: &'static Hook, why: &str) -> Choice {
        Choice {
            hook: hook.name,
            feature: hook.feature,
            chosen: None,
            skipped: Vec::new(),
            unavailable: Some(why.to_string()),
        }
    }

    /// The line `degraded` carries for a hook with no method.
    pub fn degraded(&self) -> Option<String> {
        self.unavailable
            .as_ref()
            .map(|why| format!("{}: unavailable: {why}", self.feature))
    }

    pub fn to_proto(&self) -> pb::HookChoice {
        let (method, why, detail) = self.chosen.clone().unwrap_or_default();
        pb::HookChoice {
            hook: self.hook.into(),
            feature: self.feature.into(),
            method: method.into(),
            detail,
            why: why.into(),
            skipped: self
                .skipped
                .iter()
                .map(|(m, r)| pb::SkippedMethod {
                    method: (*m).into(),
                    reason: r.clone(),
                })
                .collect(),
            unavailable: self.unavailable.clone().unwrap_or_default(),
        }
    }
}

/// The table entry of a hook by name.
pub fn hook(name: &str) -> &'static Hook {
    HOOKS
        .iter()
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("no hook {name} in attach::HOOKS"))
}

/// Tries the methods of `hook` in order: one the configuration avoids
/// ("hook:method" in `avoid`) or whose capabilities are not all proven is
/// skipped with the reason; otherwise `attempt` loads and
/// attaches it (returning what it attached) and, if it fails, must leave
/// nothing attached, and the next method is tried.
pub fn choose(
    hook: &'static Hook,
    proven: &Proven,
    avoid: &[String],
    mut attempt: impl FnMut(MethodId) -> anyhow::Result<String>,
) -> Choice {
    let mut choice = Choice {
        hook: hook.name,
        feature: hook.feature,
        chosen: None,
        skipped: Vec::new(),
        unavailable: None,
    };
    for m in hook.methods {
        if avoid.contains(&format!("{}:{}", hook.name, m.name)) {
            choice
                .skipped
                .push((m.name, "avoided by the configuration (attach.avoid)".into()));
            continue;
        }
        if let Some((cap, why)) = m
            .needs
            .iter()
            .find_map(|c| proven.refusal(*c).map(|why| (c, why)))
        {
            choice
                .skipped
                .push((m.name, format!("needs {cap}, not available here: {why}")));
            continue;
        }
        match attempt(m.id) {
            Ok(detail) => {
                choice.chosen = Some((m.name, m.why, detail));
                return choice;
            }
            Err(e) => choice.skipped.push((m.name, format!("failed: {e:#}"))),
        }
    }
    let reasons: Vec<String> = choice
        .skipped
        .iter()
        .map(|(m, why)| format!("{m}: {why}"))
        .collect();
    choice.unavailable = Some(reasons.join("; "));
    choice
}

/// The status text of the attach choices (`sensor status`).
pub fn status_text(hooks: &[pb::HookChoice]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for h in hooks {
        if h.method.is_empty() {
            let _ = writeln!(s, "  {:<12} unavailable: {}", h.hook, h.unavailable);
        } else {
            let _ = writeln!(s, "  {:<12} {:<14} {}", h.hook, h.method, h.detail);
        }
        for k in &h.skipped {
            let _ = writeln!(s, "    skipped {}: {}", k.method, k.reason);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hook_has_methods_each_with_a_reason() {
        for h in HOOKS {
            assert!(!h.methods.is_empty(), "{}", h.name);
            for m in h.methods {
                assert!(m.why.len() > 20, "{}/{}: say why", h.name, m.name);
            }
        }
        assert_eq!(hook("connect").methods[0].name, "fexit");
        assert_eq!(hook("isolation").methods[0].name, "lsm");
    }

    #[test]
    fn the_first_proven_method_that_attaches_wins_and_the_rest_is_said() {
        let mut proven = Proven::default();
        proven.set(Fentry, Err("EPERM at load".into()));
        proven.set(Btf, Ok(()));
        proven.set(Kprobe, Ok(()));
        proven.set(Tracepoint, Ok(()));
        let mut tried = Vec::new();
        let c = choose(hook("connect"), &proven, &[], |id| {
            tried.push(id);
            match id {
                MethodId::ConnectKprobe => anyhow::bail!("no __sys_connect"),
                _ => Ok("tracepoints".into()),
            }
        });
        // fexit is never attempted: its capability was refused.
        assert_eq!(
            tried,
            [MethodId::ConnectKprobe, MethodId::ConnectTracepoints]
        );
        assert_eq!(c.method(), Some("tracepoint"));
        assert_eq!(c.skipped.len(), 2);
        assert!(c.skipped[0].1.contains("needs fentry") && c.skipped[0].1.contains("EPERM"));
        assert!(c.skipped[1].1.contains("failed: no __sys_connect"));
        assert!(c.degraded().is_none());
        let p = c.to_proto();
        assert_eq!(p.method, "tracepoint");
        assert!(p.unavailable.is_empty());
    }

    #[test]
    fn an_avoided_method_is_passed_over_and_said_so() {
        let mut proven = Proven::default();
        for cap in [Fentry, Btf, Kprobe, Tracepoint] {
            proven.set(cap, Ok(()));
        }
        let c = choose(hook("connect"), &proven, &["connect:fexit".into()], |id| {
            Ok(format!("{id:?}"))
        });
        assert_eq!(c.method(), Some("kprobe"));
        assert_eq!(
            c.skipped,
            [(
                "fexit",
                "avoided by the configuration (attach.avoid)".to_string()
            )]
        );
    }

    #[test]
    fn a_hook_without_a_usable_method_makes_its_feature_unavailable() {
        let mut proven = Proven::default();
        proven.set(Lsm, Err("bpf is not in the active LSM list".into()));
        proven.set(Btf, Ok(()));
        proven.set(CgroupV2, Err("no cgroup2 filesystem mounted".into()));
        let c = choose(hook("isolation"), &proven, &[], |_| unreachable!());
        assert_eq!(c.method(), None);
        let d = c.degraded().unwrap();
        assert!(
            d.starts_with("network isolation: unavailable: lsm: needs lsm"),
            "{d}"
        );
        assert!(d.contains("cgroup: needs cgroup_v2"), "{d}");
        let text = status_text(&[c.to_proto()]);
        assert!(text.contains("isolation    unavailable: "), "{text}");
    }
}
