//! The real agents the end-to-end tests drive (Claude Code, Codex CLI,
//! Gemini CLI), installed from npm at the exact versions of
//! tests/agents/package-lock.json. Reinstalled only when the lock changes.
//! Install scripts are not run: the tests call the platform binaries
//! directly, and a package's postinstall has no business on a CI host.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};

use crate::cmd::{root, run};

/// Installs the pinned agents if needed; returns the install directory
/// (its `node_modules` holds them).
pub fn ensure() -> Result<PathBuf> {
    let src = root().join("tests/agents");
    let dir = root().join("target/e2e-npm");
    let lock = std::fs::read_to_string(src.join("package-lock.json"))
        .context("reading tests/agents/package-lock.json")?;
    let marker = dir.join(".lock");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(lock.as_str()) {
        return Ok(dir);
    }
    eprintln!(
        "setup: installing the agents of tests/agents (npm ci) into {}",
        dir.display()
    );
    std::fs::create_dir_all(&dir)?;
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(src.join(f), dir.join(f)).with_context(|| format!("copying {f}"))?;
    }
    if Command::new("npm").arg("--version").output().is_err() {
        // Debian's npm (it brings nodejs); a host with NodeSource's nodejs
        // has npm already.
        crate::setup::apt_ensure(
            &[("npm", "installs the real agents of the end-to-end tests")],
            &mut Vec::new(),
        )?;
    }
    run(Command::new("npm")
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(&dir))?;
    std::fs::write(&marker, lock)?;
    Ok(dir)
}
