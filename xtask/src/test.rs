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

/// Before any set-up: what was asked for can run here.
pub fn check_can_run(e2e: bool, vm: bool) -> Result<()> {
    // Without root the kernel suites cannot run, and a run that skipped
    // them must not look like one that passed them: only the named
    // opt-outs leave them out, and the end says so.
    if !is_root() && (e2e || vm) {
        bail!(
            "the end-to-end tests and the 6.1 kernel guest suite load kernel programs and need root: \
             run `sudo cargo xtask test`, or leave them out by name with `--no-e2e --no-vm`"
        );
    }
    Ok(())
}

pub fn run_all(e2e: bool, vm: bool) -> Result<()> {
    let mut totals = Totals::default();
    let result = steps(e2e, &mut totals).and_then(|()| {
        if !(e2e && vm) {
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
    for (left_out, flag) in [(!e2e, "--no-e2e"), (!vm, "--no-vm")] {
        if left_out {
            let what = if flag == "--no-e2e" {
                "the end-to-end tests against the kernel"
            } else {
                "the suite on Debian's 6.1 kernel"
            };
            eprintln!("xtask test: NOT RUN ({flag}): {what}");
        }
    }
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
    let skips = root().join("target").join("unit-skips.txt");
    let _ = std::fs::remove_file(&skips);
    // The TLS resolver's unit tests read the real agent binaries.
    let agents = crate::npm::ensure()?;
    test_step(
        "unit tests",
        cargo()
            .args(["test", "--workspace", "--exclude", "e2e"])
            .env("SENSOR_SKIP_LOG", &skips)
            .env("SENSOR_E2E_NPM", &agents),
        totals,
    )?;
    let skipped = std::fs::read_to_string(&skips).unwrap_or_default();
    if !skipped.trim().is_empty() {
        eprintln!("xtask test: unit tests that skipped themselves:\n{skipped}");
        if is_root() {
            bail!("unit tests skipped themselves while running as root (listed above)");
        }
    }
    // Every parser of captured bytes, fuzzed from the attack shapes on.
    eprintln!(
        "xtask test: fuzz ({} s per target)",
        crate::fuzz::CI_SECONDS
    );
    match crate::fuzz::run_all(crate::fuzz::CI_SECONDS, None) {
        Ok(()) => totals.passed += 1,
        Err(e) => {
            totals.failed += 1;
            bail!("fuzzing failed: {e:#}");
        }
    }
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
            .env("SENSOR_E2E_NPM", &agents)
            .env("SENSOR_E2E_LOG", &log)
            // The host's attach methods, for the vm-test summary.
            .env("SENSOR_E2E_STATUS_OUT", root().join(crate::vm::HOST_STATUS)),
        totals,
    )?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    check_e2e_records(&e2e_test_names()?, &text)
}

/// Every end-to-end test by name (`cargo test -- --list`).
fn e2e_test_names() -> Result<Vec<String>> {
    let out = cargo()
        .args([
            "test",
            "--package",
            "e2e",
            "--",
            "--list",
            "--format",
            "terse",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("listing the end-to-end tests")?;
    if !out.status.success() {
        bail!("listing the end-to-end tests failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(|n| n.rsplit("::").next().unwrap_or(n).to_string())
        .collect())
}

/// Each end-to-end test records one line, `ran NAME` or `skipped NAME:
/// why`, in the e2e log: a test with no line, or skipped, fails the run.
/// (A count of "ran" lines alone passed with most tests missing.)
fn check_e2e_records(names: &[String], log: &str) -> Result<()> {
    let ran: Vec<&str> = log.lines().filter_map(|l| l.strip_prefix("ran ")).collect();
    let skipped: Vec<&str> = log.lines().filter(|l| l.starts_with("skipped ")).collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| {
            !ran.contains(&n.as_str())
                && !skipped.iter().any(|s| s[8..].starts_with(&format!("{n}:")))
        })
        .collect();
    eprintln!(
        "xtask test: end-to-end: {} tests, {} ran against the kernel, {} skipped, {} with no record",
        names.len(),
        ran.len(),
        skipped.len(),
        missing.len()
    );
    for s in &skipped {
        eprintln!("  {s}");
    }
    for m in &missing {
        eprintln!("  no record: {m}");
    }
    if names.is_empty() || !skipped.is_empty() || !missing.is_empty() {
        bail!("every end-to-end test must record that it ran (none may skip or stay silent)");
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
    fn e2e_records_must_name_every_test() {
        let names: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        assert!(super::check_e2e_records(&names, "ran a\nran b\n").is_ok());
        // One test silent: a count of "ran" lines (>= 1) let this pass.
        assert!(super::check_e2e_records(&names, "ran a\n").is_err());
        assert!(super::check_e2e_records(&names, "ran a\nskipped b: not root\n").is_err());
        assert!(super::check_e2e_records(&[], "").is_err());
    }

    #[test]
    fn counts_cargo_summaries() {
        let s = "ok. 34 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.42s";
        assert_eq!(super::count(s, " passed"), 34);
        assert_eq!(super::count(s, " failed"), 2);
        assert_eq!(super::count("FAILED. 1 passed; 1 failed;", " failed"), 1);
    }
}
