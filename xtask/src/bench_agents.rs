//! Agents and detection on one core (`sensor/examples/agents_bench.rs`):
//! 1,000 identities, 10,000 open sessions, a policy and a selector in
//! force; what it times is named in its banner. Run three times (the machine
//! is shared and noisy); the median and the spread are printed with the
//! targets: at least 200,000 calls/s and under 256 MiB.

use anyhow::{Context, Result, bail};

use crate::{
    bench::median,
    cmd::{self, cargo, root},
};

pub fn run() -> Result<()> {
    cmd::run(cargo().args([
        "build",
        "--release",
        "-p",
        "sensor",
        "--example",
        "agents_bench",
    ]))?;
    let bin = root().join("target/release/examples/agents_bench");
    println!();
    println!(
        "agents: per call, Agents::observe (attribution, sessions, baselines, policy, detection; a policy entry and a selector in force) + take_mode_changes + Event::to_json, as the daemon's emit() before any write (not measured: stdout, audit store, exports, API bus, responder); one core, 1,000 identities, 10,000 open sessions, round-robin (the worst case for caches), 3 runs; each run fails unless every stray session raised a finding"
    );
    let (mut rates, mut mems, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        // Side by side: the same calls without the serialisation.
        for json in ["1", "0"] {
            let out = std::process::Command::new(&bin)
                .args(["--calls", "2000000", "--json", json])
                .output()
                .context("running the agents bench")?;
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !out.status.success() {
                bail!(
                    "agents bench failed: {text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            println!(
                "  {}{text}",
                if json == "0" { "without JSON: " } else { "" }
            );
            let number_before = |suffix: &str| -> Option<f64> {
                let i = text.find(suffix)?;
                text[..i].rsplit(' ').next()?.parse().ok()
            };
            let rate = number_before(" calls/s").context("calls/s in the bench output")?;
            if json == "0" {
                bare.push(rate);
                continue;
            }
            rates.push(rate);
            mems.push(number_before(" MiB (VmHWM").context("peak MiB in the bench output")?);
        }
    }
    let bare = median(&mut bare);
    let (lo, hi) = (
        rates.iter().copied().fold(f64::INFINITY, f64::min),
        rates.iter().copied().fold(0.0, f64::max),
    );
    let rate = median(&mut rates);
    let mem = median(&mut mems);
    println!(
        "median: {rate:.0} calls/s (runs {lo:.0}-{hi:.0}; target >= 200000: {}), peak memory {mem:.0} MiB (target < 256: {}); without the JSON {bare:.0} calls/s ({:.2} us of the {:.2} us per call is serialisation)",
        if rate >= 200_000.0 { "met" } else { "NOT met" },
        if mem < 256.0 { "met" } else { "NOT met" },
        (1e6 / rate - 1e6 / bare).max(0.0),
        1e6 / rate
    );
    Ok(())
}
