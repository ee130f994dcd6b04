//! `cargo xtask fuzz`: every fuzz target for a bounded time (not in CI).

use std::process::Command;

use anyhow::Result;

use crate::cmd::{output, root, run};

/// cargo-fuzz needs a nightly (-Z sanitizer). Not the eBPF one: that
/// predates features aya-obj 0.6 uses; fuzzing has no LLVM constraint.
const FUZZ_TOOLCHAIN: &str = "nightly-2026-10-29";

pub const TARGETS: [&str; 7] = [
    "records",
    "client_hello",
    "http1",
    "http2",
    "held_request",
    "postgres",
    "mysql",
];

pub fn run_all(seconds: u64, only: Option<&str>) -> Result<()> {
    if let Some(t) = only
        && !TARGETS.contains(&t)
    {
        anyhow::bail!("no fuzz target {t:?}: one of {}", TARGETS.join(", "));
    }
    let have = output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if !have.lines().any(|l| l.starts_with(FUZZ_TOOLCHAIN)) {
        eprintln!("setup: installing the {FUZZ_TOOLCHAIN} toolchain for cargo-fuzz");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            FUZZ_TOOLCHAIN,
            "--profile",
            "minimal",
        ]))?;
    }
    if output(Command::new("cargo").args(["fuzz", "--version"])).is_none() {
        eprintln!("setup: installing cargo-fuzz (libFuzzer driver)");
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    for t in TARGETS.iter().filter(|t| only.is_none_or(|o| o == **t)) {
        eprintln!("xtask fuzz: {t} for {seconds} s");
        run(Command::new("cargo")
            .arg(format!("+{FUZZ_TOOLCHAIN}"))
            .args([
                "fuzz",
                "run",
                t,
                "--",
                &format!("-max_total_time={seconds}"),
            ])
            .current_dir(root())
            .env("AYA_BUILD_SKIP", "1"))?;
    }
    Ok(())
}
