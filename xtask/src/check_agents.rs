//! `cargo xtask check-agents`: whether the TLS resolver still finds its
//! functions in the newest releases of the agents people run. Claude Code
//! and Codex release several times a week and each release is a new
//! build; the pinned versions in tests/agents prove the capture end to
//! end, this shows how far it reaches beyond them. Not part of CI (it
//! downloads ~150 MB per version).

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};

use crate::cmd::{build_sensor, root, run};

struct Agent {
    /// The npm package whose versions are listed.
    package: &'static str,
    /// The platform package of a version.
    platform: fn(&str) -> String,
    /// The executable inside that package's tarball.
    exe: &'static str,
}

const AGENTS: [Agent; 2] = [
    Agent {
        package: "@anthropic-ai/claude-code",
        platform: |v| format!("@anthropic-ai/claude-code-linux-x64@{v}"),
        exe: "package/claude",
    },
    Agent {
        package: "@openai/codex",
        platform: |v| format!("@openai/codex@{v}-linux-x64"),
        exe: "package/vendor/x86_64-unknown-linux-musl/bin/codex",
    },
];

pub fn run_check(versions: usize) -> Result<()> {
    let sensor = build_sensor(true)?;
    let cache = root().join("target/check-agents");
    std::fs::create_dir_all(&cache)?;
    let mut failed = 0;
    for Agent {
        package,
        platform,
        exe,
    } in AGENTS
    {
        let newest = newest_versions(package, versions)?;
        for v in newest {
            let dir = cache.join(format!("{}-{v}", package.replace('/', "_")));
            let file = dir.join(exe);
            if !file.is_file() {
                fetch(&platform(&v), &dir)?;
            }
            let out = Command::new(&sensor)
                .arg("tls-resolve")
                .arg(&file)
                .output()
                .context("running sensor tls-resolve")?;
            let text = String::from_utf8_lossy(&out.stdout);
            println!("{package} {v}:");
            for line in text.lines() {
                // The cache path means nothing to a reader.
                println!("  {}", line.replace(&*dir.to_string_lossy(), "."));
            }
            if !out.status.success() {
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} agent version(s) not resolved (above)");
    }
    Ok(())
}

/// The `n` newest stable versions of `package` (no pre-releases), oldest
/// first.
fn newest_versions(package: &str, n: usize) -> Result<Vec<String>> {
    let out = Command::new("npm")
        .args(["view", package, "versions", "--json"])
        .output()
        .context("npm view")?;
    if !out.status.success() {
        bail!(
            "npm view {package} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let all: Vec<String> = serde_json::from_slice(&out.stdout).context("npm view's JSON")?;
    let stable: Vec<String> = all.into_iter().filter(|v| !v.contains('-')).collect();
    Ok(stable[stable.len().saturating_sub(n)..].to_vec())
}

/// Downloads `spec`'s tarball and unpacks it into `dir`.
fn fetch(spec: &str, dir: &Path) -> Result<()> {
    eprintln!("check-agents: fetching {spec}");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    run(Command::new("npm")
        .args(["pack", "--silent", spec, "--pack-destination"])
        .arg(dir))?;
    let tarball = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .with_context(|| format!("npm pack {spec} left no tarball"))?;
    run(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir))?;
    std::fs::remove_file(tarball)?;
    Ok(())
}
