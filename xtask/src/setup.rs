//! Idempotent prerequisites for a fresh Debian 12 machine: checks are cheap,
//! installs happen only for what is missing, each with a message.

use std::{path::Path, process::Command};

use anyhow::{Result, bail};

use crate::cmd::{self, is_root, output, run};

/// The userspace compiler (sensor, tests, clippy, rustfmt). Not pinned in a
/// rust-toolchain.toml: rustup >= 1.28 refuses to run cargo at all under a
/// pinned toolchain it has not installed, so `cargo xtask` could not even
/// start on a new machine. xtask builds with the default stable, installs
/// this one here and runs every other cargo command with it (`cmd::cargo`).
/// Must equal the workspace's `rust-version` (a test checks).
pub const USERSPACE_TOOLCHAIN: &str = "1.98.0";

/// Nightly that builds the eBPF crate; its LLVM (22) must match bpf-linker's.
/// Must equal `EBPF_TOOLCHAIN` in sensor/build.rs (a test checks).
pub const EBPF_TOOLCHAIN: &str = "nightly-2026-06-01";
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages and why they are needed.
const APT_PACKAGES: &[(&str, &str)] = &[
    (
        "llvm-22-dev",
        "LLVM 22, which bpf-linker is built against and links",
    ),
    (
        "libpolly-22-dev",
        "needed to link bpf-linker against LLVM 22",
    ),
    ("curl", "a real client in the end-to-end tests"),
    ("python3", "a real client in the end-to-end tests"),
    (
        "python3-venv",
        "the virtualenv for the Python SDK clients of the end-to-end tests",
    ),
    ("wget", "a GnuTLS client in the end-to-end tests"),
    ("openssl", "makes the test certificates"),
    (
        "postgresql",
        "a real database server for the database-call tests",
    ),
    (
        "mariadb-server",
        "a real MySQL-protocol server for the database-call tests",
    ),
    (
        "mariadb-client-core",
        "the `mariadb` command-line client of the database-call tests",
    ),
    (
        "bpftool",
        "lists the loaded BPF programs: the benches' off-is-off check and program profiles",
    ),
    (
        "golang-go",
        "a Go agent (crypto/tls, hooked through .gopclntab) in the end-to-end tests",
    ),
];

pub fn ensure() -> Result<()> {
    let mut did = Vec::new();
    apt(&mut did)?;
    toolchain(USERSPACE_TOOLCHAIN, &["clippy", "rustfmt"], &mut did)?;
    toolchain(EBPF_TOOLCHAIN, &["rust-src"], &mut did)?;
    bpf_linker(&mut did)?;
    tracefs(&mut did);
    if did.is_empty() {
        eprintln!(
            "setup: all present (apt packages, Rust {USERSPACE_TOOLCHAIN}, {EBPF_TOOLCHAIN} + rust-src, bpf-linker {BPF_LINKER_VERSION}, tracefs)"
        );
    }
    Ok(())
}

pub fn dpkg_installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", pkg]))
        .is_some_and(|s| s.trim() == "installed")
}

fn apt(did: &mut Vec<String>) -> Result<()> {
    apt_ensure(APT_PACKAGES, did)
}

/// Installs those of `packages` (name, why) that are missing; a no-op costing
/// one `dpkg-query` per package when all are present.
pub fn apt_ensure(packages: &[(&str, &str)], did: &mut Vec<String>) -> Result<()> {
    let missing: Vec<&(&str, &str)> = packages
        .iter()
        .filter(|(p, _)| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for (p, why) in &missing {
        eprintln!("setup: installing {p} ({why})");
    }
    let names: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    if !is_root() {
        bail!(
            "setup: cannot install {} without root; run: sudo apt-get install -y {}",
            names.join(", "),
            names.join(" ")
        );
    }
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&names)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    did.push(format!("apt: {}", names.join(" ")));
    Ok(())
}

/// Installs `name` with `components` (minimal profile) or the components it
/// lacks; two `rustup` queries when all is there.
fn toolchain(name: &str, components: &[&str], did: &mut Vec<String>) -> Result<()> {
    let Some(list) = output(Command::new("rustup").args(["toolchain", "list"])) else {
        bail!("setup: rustup not found; install it (https://rustup.rs) and retry");
    };
    if !list.lines().any(|l| l.starts_with(name)) {
        eprintln!(
            "setup: installing Rust {name} with {} ({})",
            components.join(", "),
            why_toolchain(name)
        );
        let mut c = Command::new("rustup");
        c.args(["toolchain", "install", name, "--profile", "minimal"]);
        for comp in components {
            c.args(["--component", comp]);
        }
        run(&mut c)?;
        did.push(name.into());
        return Ok(());
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        name,
    ]))
    .unwrap_or_default();
    for comp in components {
        if !installed.lines().any(|l| l.starts_with(comp)) {
            eprintln!("setup: adding {comp} to Rust {name}");
            run(Command::new("rustup").args(["component", "add", comp, "--toolchain", name]))?;
            did.push(format!("{name} {comp}"));
        }
    }
    Ok(())
}

fn why_toolchain(name: &str) -> &'static str {
    if name == EBPF_TOOLCHAIN {
        "builds the eBPF programs: its LLVM matches bpf-linker's"
    } else {
        "builds the sensor and its tests"
    }
}

fn bpf_linker(did: &mut Vec<String>) -> Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.split_whitespace().nth(1) == Some(BPF_LINKER_VERSION) {
        return Ok(());
    }
    if version.is_empty() {
        eprintln!(
            "setup: installing bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (a few minutes, once)"
        );
    } else {
        eprintln!(
            "setup: replacing {} with bpf-linker {BPF_LINKER_VERSION} built against LLVM 22",
            version.trim()
        );
    }
    let mut c = cmd::cargo();
    c.args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--no-default-features",
        "--features",
        "llvm-22",
        "--locked",
        "--force",
    ])
    .env("LLVM_PREFIX", "/usr/lib/llvm-22");
    run(&mut c)?;
    did.push(format!("bpf-linker {BPF_LINKER_VERSION}"));
    Ok(())
}

fn tracefs(did: &mut Vec<String>) {
    if Path::new("/sys/kernel/tracing/events").exists() {
        return;
    }
    if !is_root() {
        eprintln!(
            "setup: tracefs is not mounted and mounting needs root: sudo mount -t tracefs tracefs /sys/kernel/tracing"
        );
        return;
    }
    eprintln!("setup: mounting tracefs at /sys/kernel/tracing (tracepoints need it)");
    match run(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])) {
        Ok(()) => did.push("tracefs".into()),
        Err(e) => eprintln!("setup: could not mount tracefs: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userspace_toolchain_meets_the_workspace_rust_version() {
        let manifest = std::fs::read_to_string(cmd::root().join("Cargo.toml")).unwrap();
        let minor = USERSPACE_TOOLCHAIN.rsplit_once('.').unwrap().0;
        assert!(
            manifest.contains(&format!("rust-version = \"{minor}\"")),
            "the workspace's rust-version is not {minor} (setup installs {USERSPACE_TOOLCHAIN})"
        );
        assert!(
            !cmd::root().join("rust-toolchain.toml").exists(),
            "a rust-toolchain.toml stops `cargo xtask` from starting where rustup has not installed its toolchain"
        );
    }

    #[test]
    fn ebpf_toolchain_matches_sensor_build_script() {
        let build_rs = std::fs::read_to_string(cmd::root().join("sensor/build.rs")).unwrap();
        assert!(
            build_rs.contains(&format!("\"{EBPF_TOOLCHAIN}\"")),
            "sensor/build.rs does not name {EBPF_TOOLCHAIN}"
        );
    }
}
