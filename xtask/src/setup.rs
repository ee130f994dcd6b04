//! Idempotent prerequisites for a fresh Debian 12 machine: checks are cheap,
//! installs happen only for what is missing, each with a message.

use std::{path::Path, process::Command};

use anyhow::{Result, bail};

use crate::cmd::{self, is_root, output, run};

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
        "golang-go",
        "a Go client (crypto/tls, nothing to hook) in the end-to-end tests",
    ),
];

pub fn ensure() -> Result<()> {
    let mut did = Vec::new();
    apt(&mut did)?;
    toolchain(&mut did)?;
    bpf_linker(&mut did)?;
    tracefs(&mut did);
    if did.is_empty() {
        eprintln!(
            "setup: all present (apt packages, {EBPF_TOOLCHAIN} + rust-src, bpf-linker {BPF_LINKER_VERSION}, tracefs)"
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

fn toolchain(did: &mut Vec<String>) -> Result<()> {
    let Some(list) = output(Command::new("rustup").args(["toolchain", "list"])) else {
        bail!("setup: rustup not found; install it (https://rustup.rs) and retry");
    };
    if !list.lines().any(|l| l.starts_with(EBPF_TOOLCHAIN)) {
        eprintln!(
            "setup: installing Rust {EBPF_TOOLCHAIN} with rust-src (builds the eBPF programs)"
        );
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            EBPF_TOOLCHAIN,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
        did.push(EBPF_TOOLCHAIN.into());
        return Ok(());
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        EBPF_TOOLCHAIN,
    ]))
    .unwrap_or_default();
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: adding rust-src to {EBPF_TOOLCHAIN} (needed for -Z build-std=core)");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            EBPF_TOOLCHAIN,
        ]))?;
        did.push("rust-src".into());
    }
    Ok(())
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
    fn ebpf_toolchain_matches_sensor_build_script() {
        let build_rs = std::fs::read_to_string(cmd::root().join("sensor/build.rs")).unwrap();
        assert!(
            build_rs.contains(&format!("\"{EBPF_TOOLCHAIN}\"")),
            "sensor/build.rs does not name {EBPF_TOOLCHAIN}"
        );
    }
}
