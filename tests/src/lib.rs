//! Harness for the end-to-end tests: runs the real `sensor` binary (built by
//! `cargo xtask test`, path in `SENSOR_BIN`) as root, collects its JSON
//! events, and provides loopback servers for real clients to reach.
//!
//! Tests that cannot run (not root) record themselves as skipped in the file
//! named by `SENSOR_E2E_LOG`; `.ci/run` fails if any did while running as root.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

pub use serde_json::Value;

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

pub struct Sensor {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    pub pid: u32,
    /// Port of the sensor's own loopback connect at start (must be filtered).
    pub probe_port: u16,
    /// Its state directory (audit store, fingerprint key) and API socket:
    /// private to the test, so a sensor already running on the host is
    /// not disturbed.
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    _config: Option<tempfile::NamedTempFile>,
    _dir: Option<tempfile::TempDir>,
}

impl Sensor {
    /// Starts `sensor run --json` with default settings.
    pub fn start() -> Sensor {
        Self::start_with(&["--json"], None)
    }

    /// Starts `sensor run` with extra args and optional TOML config text,
    /// in a fresh state directory.
    pub fn start_with(args: &[&str], config: Option<&str>) -> Sensor {
        let dir = tempfile::tempdir().expect("state dir");
        let mut s = Self::start_in(dir.path(), args, config);
        s._dir = Some(dir);
        s
    }

    /// Starts `sensor run` with state (and API socket) in `state_dir`, so a
    /// later sensor can start where this one stopped.
    pub fn start_in(state_dir: &Path, args: &[&str], config: Option<&str>) -> Sensor {
        let socket = state_dir.join("sensor.sock");
        let cfg = config.map(|text| {
            let mut f = tempfile::NamedTempFile::new().expect("temp config");
            f.write_all(text.as_bytes()).expect("write config");
            f
        });
        let mut cmd = Command::new(sensor_bin());
        cmd.arg("run")
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--socket")
            .arg(&socket)
            .args(args);
        if let Some(f) = &cfg {
            cmd.arg("--config").arg(f.path());
        }
        cmd.env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn sensor");
        let pid = child.id();
        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        {
            let events = events.clone();
            thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let v =
                        serde_json::from_str(&line).unwrap_or_else(|_| Value::String(line.clone()));
                    events.lock().unwrap().push(v);
                }
            });
        }
        {
            let stderr = stderr.clone();
            thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let mut sensor = Sensor {
            child,
            events,
            stderr,
            pid,
            probe_port: 0,
            state_dir: state_dir.to_path_buf(),
            socket,
            _config: cfg,
            _dir: None,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = sensor.stderr();
            if let Some(line) = text.lines().find(|l| l.contains("sensor ready")) {
                sensor.probe_port = line
                    .split("self_probe_port=")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                return sensor;
            }
            if let Ok(Some(status)) = sensor.child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "sensor exited ({status}) before it was ready:\n{}",
                    sensor.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sensor not ready after 60 s:\n{text}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Waits up to 15 s for the sensor to log a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the sensor never logged {needle:?}:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to 15 s for an event matching `pred`.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_n(what, 1, pred).remove(0)
    }

    /// Waits up to 15 s until `n` events match `pred`; returns them all
    /// (at least `n`), in arrival order.
    pub fn wait_for_n(&self, what: &str, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found: Vec<Value> = self
                .events
                .lock()
                .unwrap()
                .iter()
                .filter(|v| pred(v))
                .cloned()
                .collect();
            if found.len() >= n {
                return found;
            }
            if Instant::now() > deadline {
                let events = self.events();
                let tail: Vec<String> = events
                    .iter()
                    .rev()
                    .take(30)
                    .map(|v| v.to_string())
                    .collect();
                panic!(
                    "{} of {n} events {what} after 15 s ({} events; last ones):\n{}\nsensor stderr:\n{}",
                    found.len(),
                    events.len(),
                    tail.join("\n"),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like `stop`, and also returns every event, including those written
    /// during shutdown.
    pub fn stop_with_events(self) -> (std::process::ExitStatus, String, Vec<Value>) {
        let events = self.events.clone();
        let (status, stderr) = self.stop();
        let events = events.lock().unwrap().clone();
        (status, stderr, events)
    }

    /// SIGKILL: a crash. Returns what it wrote to stderr.
    pub fn crash(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        thread::sleep(Duration::from_millis(100));
        self.stderr()
    }

    /// Runs the sensor CLI (`sensor status`, `events`, ...) against this
    /// daemon's socket; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(sensor_bin())
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("run the sensor CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// SIGTERM, then wait; returns everything the sensor wrote to stderr.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "sensor did not stop within 20 s of SIGTERM:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        thread::sleep(Duration::from_millis(100)); // let the reader threads finish
        (status, self.stderr())
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A tiny HTTP/1.1 server on loopback that answers every request with 200
/// and counts the connections it accepted.
pub struct HttpServer {
    pub port: u16,
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    /// `addr` is "127.0.0.1" or "::1".
    pub fn start(addr: &str) -> HttpServer {
        let listener = TcpListener::bind((addr, 0)).expect("bind loopback server");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        {
            let stop = stop.clone();
            let accepted = accepted.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            thread::spawn(move || serve(s));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        HttpServer {
            port,
            accepted,
            stop,
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut s: TcpStream) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
}

/// A loopback port with nothing listening (bound, then closed).
pub fn closed_port(addr: &str) -> u16 {
    let l = TcpListener::bind((addr, 0)).expect("bind");
    l.local_addr().unwrap().port()
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

/// Field accessors for event JSON.
pub fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

pub fn pid(v: &Value) -> u64 {
    v["process"]["pid"].as_u64().unwrap_or(0)
}

/// A local HTTPS (HTTP/1.1 keep-alive, or HTTP/2) server in Python with a
/// self-signed certificate made at start; it reports each request it gets.
pub struct HttpsServer {
    pub port: u16,
    pub pid: u32,
    child: Child,
    requests: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl HttpsServer {
    /// `addr` is "127.0.0.1" or "::1".
    pub fn start(addr: &str) -> HttpsServer {
        Self::spawn(Path::new(python3()), "https_server.py", true, addr)
    }

    /// An HTTP/2 server over TLS (ALPN h2), in Python with the `h2` package.
    pub fn start_h2(addr: &str) -> HttpsServer {
        Self::spawn(&venv_python(), "h2_server.py", true, addr)
    }

    /// A cleartext HTTP/2 server (prior knowledge, no upgrade).
    pub fn start_h2c(addr: &str) -> HttpsServer {
        Self::spawn(&venv_python(), "h2_server.py", false, addr)
    }

    fn spawn(python: &Path, fixture: &str, tls: bool, addr: &str) -> HttpsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = if tls {
            self_signed_cert(dir.path())
        } else {
            ("-".into(), "-".into())
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(fixture);
        let mut child = Command::new(python)
            .arg(script)
            .arg(&cert)
            .arg(&key)
            .arg(addr)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the test server");
        let pid = child.id();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = lines
            .next()
            .and_then(Result::ok)
            .and_then(|l| l.strip_prefix("PORT ").and_then(|p| p.parse().ok()))
            .unwrap_or_else(|| panic!("the {fixture} server reports its port"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        {
            let requests = requests.clone();
            thread::spawn(move || {
                for l in lines.map_while(Result::ok) {
                    requests.lock().unwrap().push(l);
                }
            });
        }
        HttpsServer {
            port,
            pid,
            child,
            requests,
            _dir: dir,
        }
    }

    /// "REQ <method> <path> <body bytes>" lines received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// POSTs to `path` received so far.
    pub fn posts(&self, path: &str) -> usize {
        let line = format!("REQ POST {path} ");
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with(&line))
            .count()
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// A self-signed certificate for localhost / 127.0.0.1 / ::1 in `dir`,
/// made now with `openssl req`; returns (cert, key) paths.
pub fn self_signed_cert(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl to make a test certificate");
    assert!(status.success(), "openssl req failed");
    (cert, key)
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

impl Sensor {
    /// `unix://` target of its API socket, for the Python client.
    pub fn api_target(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The address a listener logged as `<what> ... listen=ADDR` (a
    /// listener configured on port 0 picks a free one).
    pub fn listen_addr(&self, what: &str) -> String {
        let log = self.stderr();
        log.lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split("listen=").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {what:?} line with listen=:\n{log}"))
            .to_string()
    }

    /// Scrapes its /metrics (configured with `[metrics] listen`) and parses
    /// it with the Prometheus Python client's OpenMetrics parser.
    pub fn scrape(&self) -> Metrics {
        let url = format!("http://{}/metrics", self.listen_addr("metrics listening"));
        let out = Command::new(venv_python())
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/metrics_scrape.py"))
            .arg(&url)
            .output()
            .expect("run the metrics scraper");
        assert!(
            out.status.success(),
            "scraping {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Metrics(serde_json::from_slice(&out.stdout).expect("scraper output is JSON"))
    }
}

/// A parsed /metrics scrape.
pub struct Metrics(pub Value);

impl Metrics {
    /// The value of the sample `name` whose labels include `labels`
    /// (summed over the other labels); 0 when there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0["samples"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["name"] == name)
            .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .map(|s| s["value"].as_f64().unwrap_or(0.0))
            .sum()
    }

    /// Whether any sample is named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.0["samples"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == name)
    }
}

/// A keep-alive HTTP/1.1 server on loopback that records every request
/// line it receives ("POST /v1/orders"): answers POST with 201, anything
/// else with 200, and keeps the connection open for the next request.
pub struct RecordingServer {
    pub addr: String,
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl RecordingServer {
    /// `addr` is a loopback address ("127.0.0.1", "127.0.0.2", "::1").
    pub fn start(addr: &str) -> RecordingServer {
        let listener = TcpListener::bind((addr, 0)).expect("bind loopback server");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        {
            let (stop, requests) = (stop.clone(), requests.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let requests = requests.clone();
                            thread::spawn(move || serve_keep_alive(s, &requests));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        RecordingServer {
            addr: addr.to_string(),
            port,
            requests,
            stop,
        }
    }

    /// Request lines received so far, e.g. "POST /v1/orders".
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for RecordingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_keep_alive(s: TcpStream, requests: &Mutex<Vec<String>>) {
    let _ = s.set_nonblocking(false);
    let Ok(mut out) = s.try_clone() else {
        return;
    };
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        if r.read_exact(&mut vec![0; len]).is_err() {
            return;
        }
        let request: Vec<&str> = line.split_whitespace().take(2).collect();
        let request = request.join(" ");
        let status = if request.starts_with("POST ") {
            "201 Created"
        } else {
            "200 OK"
        };
        requests.lock().unwrap().push(request);
        if write!(out, "HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok").is_err() {
            return;
        }
    }
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

    /// Sends one command, returns its one-line answer.
    pub fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
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
