//! `cargo xtask test`: style gates, unit tests, the offline checks of
//! deploy/, then the end-to-end tests serially against the real kernel.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::cmd::{build_sensor, cargo, is_root, root, run};

/// Passed/failed totals over every `cargo test` step.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
}

pub fn run_all(e2e: bool, vm: bool) -> Result<()> {
    let mut totals = Totals::default();
    let result = steps(e2e, &mut totals).and_then(|()| {
        if !(e2e && vm) {
            eprintln!("xtask test: the 6.1 kernel guest suite not run (--no-e2e or --no-vm)");
            return Ok(());
        }
        if !is_root() {
            eprintln!("xtask test: the 6.1 kernel guest suite needs root (apt, the guest's sensor): not run");
            return Ok(());
        }
        // The same sensor, proven on a second kernel: Debian's 6.1 under QEMU.
        eprintln!("xtask test: end-to-end on Debian's 6.1 kernel (cargo xtask vm-test)");
        match crate::vm::run_vm_test() {
            Ok(()) => {
                totals.passed += 1;
                Ok(())
            }
            Err(e) => {
                totals.failed += 1;
                Err(anyhow::anyhow!("the 6.1 kernel guest suite failed: {e:#}"))
            }
        }
    });
    // The closing line CI reads.
    println!("xtask: {} passed, {} failed", totals.passed, totals.failed);
    result
}

fn steps(e2e: bool, totals: &mut Totals) -> Result<()> {
    step("format", cargo().args(["fmt", "--all", "--check"]))?;
    step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    test_step(
        "unit tests",
        cargo().args(["test", "--workspace", "--exclude", "e2e"]),
        totals,
    )?;
    // Loads no kernel programs: runs with --no-e2e too.
    let bin = build_sensor(false)?;
    eprintln!("xtask test: deploy checks");
    crate::deploy::check(&bin).map_err(|e| anyhow::anyhow!("deploy checks failed: {e:#}"))?;
    if !e2e {
        eprintln!("xtask test: end-to-end tests not run (--no-e2e)");
        return Ok(());
    }
    let python = crate::venv::ensure()?;
    let log = root().join("target").join("e2e-log.txt");
    let _ = std::fs::remove_file(&log);
    // Serial: the tests share the kernel and filter events by their own pids.
    test_step(
        "end-to-end tests",
        cargo()
            .args(["test", "--package", "e2e", "--", "--test-threads=1"])
            .env("SENSOR_BIN", &bin)
            .env("SENSOR_E2E_PYTHON", &python)
            .env("SENSOR_E2E_LOG", &log)
            // The host's attach methods, for the vm-test summary.
            .env("SENSOR_E2E_STATUS_OUT", root().join(crate::vm::HOST_STATUS)),
        totals,
    )?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let ran = text.lines().filter(|l| l.starts_with("ran ")).count();
    let skipped: Vec<&str> = text.lines().filter(|l| l.starts_with("skipped ")).collect();
    eprintln!(
        "xtask test: end-to-end: {ran} ran against the kernel, {} skipped",
        skipped.len()
    );
    for s in &skipped {
        eprintln!("  {s}");
    }
    if is_root() && (!skipped.is_empty() || ran == 0) {
        bail!("end-to-end tests must run, not skip, when running as root");
    }
    Ok(())
}

fn step(name: &str, cmd: &mut std::process::Command) -> Result<()> {
    eprintln!("xtask test: {name}");
    run(cmd).map_err(|e| anyhow::anyhow!("{name} failed: {e:#}"))
}

/// Runs a `cargo test` step, echoing its output and adding up its
/// `test result:` lines.
fn test_step(name: &str, cmd: &mut Command, totals: &mut Totals) -> Result<()> {
    eprintln!("xtask test: {name}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {cmd:?}"))?;
    let out = child.stdout.take().context("test stdout")?;
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            totals.passed += count(rest, " passed");
            totals.failed += count(rest, " failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

/// `ok. 34 passed; 0 failed; ...` → the number before `what`.
fn count(summary: &str, what: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| part.trim_end().strip_suffix(what.trim_start()))
        .and_then(|n| n.trim().rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_cargo_summaries() {
        let s = "ok. 34 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.42s";
        assert_eq!(super::count(s, " passed"), 34);
        assert_eq!(super::count(s, " failed"), 2);
        assert_eq!(super::count("FAILED. 1 passed; 1 failed;", " failed"), 1);
    }
}
