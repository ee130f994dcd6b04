//! `cargo xtask fuzz`: every fuzz target for a bounded time. `cargo xtask
//! test` runs each for `CI_SECONDS`, so a parser that crashes on what the
//! fuzzer finds cannot land. Each starts from the shapes in `fuzz/seeds/`
//! (attacks a hostile process plays: HPACK amplification, unanswered
//! pipelining) and the corpus it grew before, in `target/fuzz-corpus/`.

use std::process::Command;

use anyhow::Result;

use crate::cmd::{output, root, run};

/// cargo-fuzz needs a nightly (-Z sanitizer). Not the eBPF one: that
/// predates features aya-obj 0.6 uses; fuzzing has no LLVM constraint.
const FUZZ_TOOLCHAIN: &str = "nightly-2026-10-29";

pub const TARGETS: [&str; 8] = [
    "records",
    "client_hello",
    "http1",
    "http2",
    "held_request",
    "postgres",
    "mysql",
    "websocket",
];

/// Seconds per target in `cargo xtask test`.
pub const CI_SECONDS: u64 = 30;

/// Where the instrumented builds go: a cache outside the checkout, so that
/// a fresh clone (as CI makes for each run) rebuilds only what changed
/// (the sensor crate and the targets) instead of every dependency with
/// ASan: the stage took about 12 minutes on a clean clone, mostly
/// building. A fresh machine builds it from nothing.
/// `SENSOR_FUZZ_TARGET_DIR` chooses another.
fn target_dir() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("SENSOR_FUZZ_TARGET_DIR") {
        return d.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))
        .unwrap_or_else(|| root().join("target"));
    cache.join("sensor-fuzz-target")
}

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
        // libFuzzer writes what it finds to the first directory only: the
        // seeds under version control stay as they are.
        let corpus = root().join("target").join("fuzz-corpus").join(t);
        std::fs::create_dir_all(&corpus)?;
        let seeds = root().join("fuzz").join("seeds").join(t);
        let mut dirs = vec![corpus];
        if seeds.is_dir() {
            dirs.push(seeds);
        }
        run(Command::new("cargo")
            .arg(format!("+{FUZZ_TOOLCHAIN}"))
            .args(["fuzz", "run", t])
            .arg("--target-dir")
            .arg(target_dir())
            .args(&dirs)
            .args(["--", &format!("-max_total_time={seconds}")])
            .current_dir(root())
            .env("AYA_BUILD_SKIP", "1"))?;
    }
    Ok(())
}
