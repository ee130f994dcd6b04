//! The Python virtualenv with the SDK clients the end-to-end tests drive
//! (tests/requirements.txt, from PyPI). Rebuilt only when the requirements
//! change.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};

use crate::cmd::{root, run};

/// Returns the venv's python, creating or updating the venv if needed.
pub fn ensure() -> Result<PathBuf> {
    let reqs = root().join("tests/requirements.txt");
    let venv = root().join("target/e2e-venv");
    let python = venv.join("bin/python");
    let marker = venv.join(".requirements");
    let wanted =
        std::fs::read_to_string(&reqs).with_context(|| format!("reading {}", reqs.display()))?;
    if python.exists() && std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str())
    {
        return Ok(python);
    }
    eprintln!(
        "setup: creating the test virtualenv {} ({})",
        venv.display(),
        reqs.display()
    );
    // Debian's python, so the clients use the system libssl the sensor probes.
    run(Command::new("/usr/bin/python3")
        .arg("-m")
        .arg("venv")
        .arg("--clear")
        .arg(&venv))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&reqs))?;
    std::fs::write(&marker, wanted)?;
    Ok(python)
}
