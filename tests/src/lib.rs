//! Harness for the end-to-end tests: runs the real `sensor` binary (built by
//! `cargo xtask test`, path in `SENSOR_BIN`) as root, collects its JSON
//! events, and provides loopback servers for real clients to reach.
//!
//! Tests that cannot run (not root) record themselves as skipped in the file
//! named by `SENSOR_E2E_LOG`; `.ci/run` fails if any did while running as root.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard},
};

pub use serde_json::Value;

mod mariadb;
mod netns;
mod postgres;
mod sensor;
mod servers;

pub use mariadb::*;
pub use netns::Netns;
pub use postgres::*;
pub use sensor::*;
pub use servers::*;

/// The process state letter from /proc/PID/stat ('T' when stopped).
pub fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
        .unwrap_or('?')
}

/// Stops a server the tests started: `signal` (its clean shutdown), then
/// SIGKILL if it is still running after `grace`.
pub fn stop_server(child: &mut Child, signal: i32, grace: std::time::Duration) {
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits up to 30 s for `cond`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Tests share the kernel (one sensor at a time): take this lock first.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn log_line(line: &str) {
    eprintln!("e2e: {line}");
    if let Ok(path) = std::env::var("SENSOR_E2E_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// True if the test can run; otherwise records why it was skipped.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        log_line(&format!(
            "skipped {test}: not root (the kernel programs need root)"
        ));
        return false;
    }
    log_line(&format!("ran {test}"));
    true
}

/// For a test that needs no root: records that it ran (`cargo xtask test`
/// fails when a listed test left no record).
pub fn record_ran(test: &str) {
    log_line(&format!("ran {test}"));
}

pub fn sensor_bin() -> PathBuf {
    let p = std::env::var_os("SENSOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("SENSOR_BIN is not set: run the end-to-end tests with `cargo xtask test`")
        });
    assert!(p.exists(), "SENSOR_BIN={} does not exist", p.display());
    p
}

/// Prefer the distribution's python (no pyenv shim chain of execs).
pub fn python3() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Runs a command to completion, returning its pid and exit status.
pub fn run(cmd: &mut Command) -> (u32, std::process::ExitStatus) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    let status = child.wait().expect("wait");
    (pid, status)
}

/// Runs `cmd` to its end with stdout piped; asserts it succeeded and
/// returns its pid and what it printed, trimmed.
pub fn run_printing(cmd: &mut Command) -> (u32, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{cmd:?}: {status}");
    (child.id(), out.trim().to_string())
}

/// Waits for `child` at most `limit` (then kills it); returns whether it
/// succeeded and its stdout followed by its stderr (both piped).
pub fn finish_within(mut child: Child, limit: std::time::Duration) -> (bool, String) {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Field accessors for event JSON.
pub fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

pub fn pid(v: &Value) -> u64 {
    v["process"]["pid"].as_u64().unwrap_or(0)
}

/// The test virtualenv's python (requests, httpx), made by `cargo xtask test`.
pub fn venv_python() -> PathBuf {
    let p = std::env::var_os("SENSOR_E2E_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("SENSOR_E2E_PYTHON is not set: run the end-to-end tests with `cargo xtask test`")
        });
    assert!(
        p.exists(),
        "SENSOR_E2E_PYTHON={} does not exist",
        p.display()
    );
    p
}

/// Builds a Go program (one file, standard library only) into
/// `dir/name` with the `go` that `cargo xtask setup` installs.
pub fn go_build(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.go"));
    std::fs::write(&src, source).expect("write the Go source");
    let bin = dir.join(name);
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .output()
        .expect("go (golang-go) is installed by cargo xtask setup");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// tests/fixtures/api_client.py: the gRPC client generated from the proto
/// with grpcio-tools.
pub fn api_client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/api_client.py")
}

/// Runs the generated Python API client to completion against `target`
/// (`unix://…` or host:port with --ca/--cert/--key); returns (success,
/// stdout lines as JSON, stderr).
pub fn api_client(target: &str, args: &[&str]) -> (bool, Vec<Value>, String) {
    let out = Command::new(venv_python())
        .arg(api_client_script())
        .arg(target)
        .args(args)
        .output()
        .expect("run the Python API client");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs tests/fixtures/fleet_agent.py (an openai SDK agent) in `mode`
/// against `server` to its end and waits until the sensor has seen its
/// exit; returns its pid.
pub fn run_fleet_agent(sensor: &Sensor, server: &HttpsServer, mode: &str) -> u32 {
    let (child, status) = run(Command::new(venv_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/fleet_agent.py"
        ))
        .arg(format!("https://127.0.0.1:{}", server.port))
        .env("FLEET_MODE", mode));
    assert!(status.success(), "fleet agent {mode}: {status}");
    sensor.wait_for(&format!("the {mode} run's exit"), |v| {
        kind(v) == "exit" && pid(v) == u64::from(child)
    });
    child
}

/// tests/src/bin/e2e-puppet.rs: a client steered line by line, so a test
/// decides when each connection is made (before or after isolation).
pub struct Puppet {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    pub pid: u32,
}

impl Puppet {
    /// `bin` is `env!("CARGO_BIN_EXE_e2e-puppet")` (set for integration
    /// tests only, so the test passes it); `SENSOR_E2E_PUPPET` overrides it
    /// where the binary lives elsewhere (the vm-test guest).
    pub fn start(bin: &str) -> Puppet {
        let bin = std::env::var("SENSOR_E2E_PUPPET").unwrap_or_else(|_| bin.to_string());
        Puppet::spawn(&mut Command::new(&bin), &bin)
    }

    /// Starts `cmd` (any program that speaks the puppet protocol: first
    /// line `ready PID`, then one answer per command) and waits until it
    /// is ready.
    pub fn spawn(cmd: &mut Command, what: &str) -> Puppet {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let pid = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("{what} did not start: {line:?}"));
        assert_eq!(pid, child.id());
        Puppet {
            child,
            stdin,
            stdout,
            pid,
        }
    }

    /// Sends one command without waiting for its answer (the process may
    /// be stopped or killed by it).
    pub fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
    }

    /// Sends one command, returns its one-line answer.
    pub fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.read_line()
    }

    /// The answer to a command `send` gave.
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    }
}

impl Drop for Puppet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The attach method `sensor status --json` reports for `hook`, with the
/// methods it skipped as (method, reason).
pub fn hook_choice(status: &Value, hook: &str) -> (String, Vec<(String, String)>) {
    let h = status["hooks"]
        .as_array()
        .and_then(|a| a.iter().find(|h| h["hook"] == hook))
        .unwrap_or_else(|| panic!("no hook {hook} in the status: {status}"));
    let skipped = h["skipped"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|k| {
                    (
                        k["method"].as_str().unwrap_or("").to_string(),
                        k["reason"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (h["method"].as_str().unwrap_or("").to_string(), skipped)
}

/// A real agent binary installed from npm at the version pinned in
/// tests/agents/package-lock.json (`cargo xtask test` installs them and
/// names the directory in `SENSOR_E2E_NPM`), e.g.
/// `npm_binary("@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex")`.
pub fn npm_binary(under_node_modules: &str) -> PathBuf {
    let dir = std::env::var("SENSOR_E2E_NPM").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/e2e-npm")
            .display()
            .to_string()
    });
    let path = Path::new(&dir)
        .join("node_modules")
        .join(under_node_modules);
    assert!(
        path.is_file(),
        "{} missing: run the tests with cargo xtask test, which installs tests/agents",
        path.display()
    );
    path
}
