//! Python virtualenvs made from a pinned requirements file (PyPI): the SDK
//! clients the end-to-end tests drive (tests/requirements.txt) and the
//! offline checkers of deploy/ (deploy/requirements.txt). Rebuilt only when
//! the requirements change.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use crate::cmd::{root, run};

/// The end-to-end tests' venv; returns its python.
pub fn ensure() -> Result<PathBuf> {
    ensure_at(
        "test",
        &root().join("tests/requirements.txt"),
        &root().join("target/e2e-venv"),
    )
}

/// Returns the python of the venv at `venv`, creating or updating it from
/// `reqs` if needed.
pub fn ensure_at(what: &str, reqs: &Path, venv: &Path) -> Result<PathBuf> {
    let python = venv.join("bin/python");
    let marker = venv.join(".requirements");
    let wanted =
        std::fs::read_to_string(reqs).with_context(|| format!("reading {}", reqs.display()))?;
    if python.exists() && std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str())
    {
        return Ok(python);
    }
    eprintln!(
        "setup: creating the {what} virtualenv {} ({})",
        venv.display(),
        reqs.display()
    );
    // Debian's python, so the clients use the system libssl the sensor probes.
    run(Command::new("/usr/bin/python3")
        .arg("-m")
        .arg("venv")
        .arg("--clear")
        .arg(venv))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(reqs))?;
    std::fs::write(&marker, wanted)?;
    Ok(python)
}
