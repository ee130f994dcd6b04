//! A network namespace with loopback only, for the real agents (Claude
//! Code, Codex): they run offline against a local stand-in of their
//! provider and can reach nothing else. The sensor sees every namespace.

use std::{ffi::OsStr, process::Command};

pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates it with loopback up; deleted on drop.
    pub fn new(tag: &str) -> Netns {
        let name = format!("sensor-e2e-{tag}-{}", std::process::id());
        // A namespace left by a killed run of the same pid is reused.
        let _ = Command::new("ip")
            .args(["netns", "delete", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name} failed");
        let ns = Netns { name };
        let ok = ns
            .command("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "bringing loopback up in {} failed", ns.name);
        ns
    }

    /// `program` to be run inside (`ip netns exec` execs it: the child's
    /// pid is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}
