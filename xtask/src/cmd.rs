//! Running commands with a clear error naming what failed.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// cargo of the pinned userspace toolchain, through rustup's proxy (`+`
/// wins over the RUSTUP_TOOLCHAIN of the stable cargo that built xtask), so
/// rustc, clippy and rustfmt below it are that toolchain's too.
pub fn cargo() -> Command {
    let mut c = Command::new("cargo");
    c.arg(format!("+{}", crate::setup::USERSPACE_TOOLCHAIN))
        .current_dir(root());
    c
}

/// Runs `cmd`, inheriting stdio; fails with the command line on error.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout, or None if it could not run or failed.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Builds the sensor binary and returns its path.
pub fn build_sensor(release: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "--package", "sensor", "--bin", "sensor"]);
    if release {
        c.arg("--release");
    }
    run(&mut c)?;
    let dir = if release { "release" } else { "debug" };
    Ok(root().join("target").join(dir).join("sensor"))
}

/// Starts `sensor run ARGS`, as root (through sudo when needed), and waits.
pub fn exec_sensor(bin: &Path, args: &[String]) -> Result<()> {
    let mut c = if is_root() {
        Command::new(bin)
    } else if output(Command::new("sudo").arg("-n").arg("true")).is_some() {
        let mut c = Command::new("sudo");
        c.arg(bin);
        c
    } else {
        bail!(
            "the sensor loads kernel programs and needs root: run `sudo {} run`",
            bin.display()
        );
    };
    c.arg("run").args(args);
    eprintln!("xtask: starting {c:?} (Ctrl-C stops it)");
    run(&mut c)
}
