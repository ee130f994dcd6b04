//! Issue 19, finding 1: an unprivileged local user cannot hang or kill the
//! daemon through the files it probes for TLS functions. Each test plays
//! the attack as `nobody` (tests/fixtures/hostile_lib.py), then shows the
//! daemon still reads events (another process's connect appears) and
//! still answers `sensor status`.

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    process::{Child, Command, Stdio},
};

use e2e::{Sensor, kind, npm_binary, pid, python3, require_root, serial};

const NOBODY: &str = "65534";

/// Runs the fixture as `nobody` in a directory it owns; returns once it
/// printed "mapped" (its connect, which makes the daemon probe its maps).
fn attacker(mode: &str, extra: &[&std::path::Path]) -> (Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hostile_lib.py");
    let mut child = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .arg(python3())
        .arg(script)
        .arg(mode)
        .arg(dir.path())
        .args(extra)
        .env("HOLD", "20")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("setpriv");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "mapped", "the attacker did not start");
    (child, dir)
}

/// The daemon is alive and reading: a connect made now is reported, and
/// `sensor status` answers.
fn still_serving(sensor: &Sensor) {
    let mut child = Command::new(python3())
        .args([
            "-c",
            "import socket; socket.socket().connect_ex(('127.0.0.1', 9))",
        ])
        .spawn()
        .unwrap();
    let me = u64::from(child.id());
    child.wait().unwrap();
    sensor.wait_for("a connect after the attack", |v| {
        kind(v) == "connect" && pid(v) == me
    });
    let (ok, out, err) = sensor.cli(&["status"]);
    assert!(ok, "sensor status failed: {out}{err}");
}

#[test]
fn a_fifo_put_in_place_of_a_mapped_library_does_not_hang_the_daemon() {
    let _g = serial();
    if !require_root("a_fifo_put_in_place_of_a_mapped_library_does_not_hang_the_daemon") {
        return;
    }
    let sensor = Sensor::start();
    let (mut child, _dir) = attacker("fifo", &[]);
    still_serving(&sensor);
    let _ = child.kill();
    let _ = child.wait();
    let (status, stderr) = sensor.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_library_cut_while_the_daemon_reads_it_does_not_kill_the_daemon() {
    let _g = serial();
    if !require_root("a_library_cut_while_the_daemon_reads_it_does_not_kill_the_daemon") {
        return;
    }
    let sensor = Sensor::start();
    // A large file the probe reads for a while: Claude Code's executable
    // (BoringSSL found by scanning its code), copied and renamed.
    let big = npm_binary("@anthropic-ai/claude-code-linux-x64/claude");
    let (mut child, _dir) = attacker("truncate", &[&big]);
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("truncated"), "{line:?}");
    eprintln!("attacker: {}", line.trim());
    still_serving(&sensor);
    let _ = child.kill();
    let _ = child.wait();
    let (status, stderr) = sensor.stop();
    assert!(status.success(), "{stderr}");
}
