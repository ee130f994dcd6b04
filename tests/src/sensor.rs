//! The `sensor run` child: its events and log, waiting on them, stopping
//! it with everything it wrote, and what it leaves in the kernel.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{sensor_bin, venv_python};

pub struct Sensor {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    /// The threads reading its stdout and stderr: they end at EOF, once
    /// the sensor (and anything that inherited its output) is gone.
    readers: Vec<JoinHandle<()>>,
    pub pid: u32,
    /// Port of the sensor's own loopback connect at start (must be filtered).
    pub probe_port: u16,
    /// Its state directory (audit store, fingerprint key) and API socket:
    /// private to the test, so a sensor already running on the host is
    /// not disturbed.
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    _config: tempfile::NamedTempFile,
    _dir: Option<tempfile::TempDir>,
}

/// A frozen daemon (`Sensor::freeze`): continued when dropped, also when
/// the test fails meanwhile.
pub struct Frozen(u32);

impl Drop for Frozen {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
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
        // /metrics listens on a fixed port by default, which another
        // sensor on the host (a deployed daemon, another checkout's tests)
        // may hold: a test that does not set it gets a free port.
        let mut text = config.unwrap_or("").to_string();
        if !text.contains("[metrics]") {
            text.push_str("\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
        }
        let cfg = {
            let mut f = tempfile::NamedTempFile::new().expect("temp config");
            f.write_all(text.as_bytes()).expect("write config");
            f
        };
        let mut cmd = Command::new(sensor_bin());
        cmd.arg("run")
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--socket")
            .arg(&socket)
            .args(args);
        cmd.arg("--config").arg(cfg.path());
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
        let mut readers = Vec::new();
        {
            let events = events.clone();
            readers.push(thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let v =
                        serde_json::from_str(&line).unwrap_or_else(|_| Value::String(line.clone()));
                    events.lock().unwrap().push(v);
                }
            }));
        }
        {
            let stderr = stderr.clone();
            readers.push(thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            }));
        }
        let mut sensor = Sensor {
            child,
            events,
            stderr,
            readers,
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
                sensor.join_readers();
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

    /// Waits until no event has arrived for a second (the daemon has read
    /// a flood the test made), at most `max`; returns how many arrived.
    pub fn wait_quiet(&self, max: Duration) -> usize {
        let deadline = Instant::now() + max;
        let mut seen = self.events.lock().unwrap().len();
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.events.lock().unwrap().len();
            if now == seen {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "events still arriving after {max:?} ({now})"
            );
            seen = now;
        }
    }

    /// Stops the daemon (SIGSTOP) until the guard is dropped: a daemon too
    /// busy to read its events, while the kernel programs go on.
    pub fn freeze(&self) -> Frozen {
        unsafe { libc::kill(self.pid as i32, libc::SIGSTOP) };
        Frozen(self.pid)
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
    pub fn stop_with_events(self) -> (ExitStatus, String, Vec<Value>) {
        let events = self.events.clone();
        let (status, stderr) = self.stop();
        let events = events.lock().unwrap().clone();
        (status, stderr, events)
    }

    /// SIGKILL: a crash. Returns what it wrote to stderr.
    pub fn crash(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_readers();
        self.stderr()
    }

    /// Runs the sensor CLI (`sensor status`, `events`, ...) against this
    /// daemon's socket; returns (success, stdout, stderr).
    /// `sensor status` once `ready` holds for it (the daemon refreshes
    /// what status shows every few seconds), within 15 s.
    pub fn status_when(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let (ok, out, err) = self.cli(&["status"]);
            assert!(ok, "sensor status failed: {err}");
            if ready(&out) {
                return out;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sensor status never showed {what}:\n{out}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

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

    /// SIGTERM, then wait; returns everything the sensor wrote to stderr
    /// (its output readers have read to the end: what it wrote while
    /// shutting down is in `events()` and the returned log).
    pub fn stop(mut self) -> (ExitStatus, String) {
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
        self.join_readers();
        (status, self.stderr())
    }

    /// Waits until both output readers have read to EOF.
    fn join_readers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for r in std::mem::take(&mut self.readers) {
            while !r.is_finished() {
                assert!(
                    Instant::now() < deadline,
                    "the sensor's output was still open 20 s after it exited"
                );
                thread::sleep(Duration::from_millis(5));
            }
            r.join().expect("an output reader panicked");
        }
    }

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

    /// The BPF programs this sensor holds (id -> name as the kernel keeps
    /// it): every program it loaded, attached or not.
    pub fn bpf_programs(&self) -> BTreeMap<u32, String> {
        let held = bpf_programs_held(self.pid);
        loaded_bpf_programs()
            .into_iter()
            .filter(|(id, _)| held.contains(id))
            .collect()
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

/// A counter from the "sensor stopped:" summary line, parsed whole
/// (`key=1` must not match `key=12`).
pub fn summary_counter(stderr: &str, key: &str) -> u64 {
    let key = format!("{key}=");
    stderr
        .lines()
        .filter(|l| l.starts_with("sensor stopped:"))
        .flat_map(|l| l.split_whitespace())
        .find_map(|w| w.strip_prefix(key.as_str()))
        .and_then(|v| v.trim_end_matches(';').parse().ok())
        .unwrap_or_else(|| panic!("{key} missing from the summary:\n{stderr}"))
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

/// Every BPF program loaded in the kernel (id -> name), by `bpftool`.
pub fn loaded_bpf_programs() -> BTreeMap<u32, String> {
    let out = Command::new("bpftool")
        .args(["--json", "prog", "show"])
        .output()
        .expect("bpftool (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "bpftool prog show: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let progs: Value = serde_json::from_slice(&out.stdout).expect("bpftool --json is JSON");
    progs
        .as_array()
        .expect("a list of programs")
        .iter()
        .filter_map(|p| {
            let id = u32::try_from(p["id"].as_u64()?).ok()?;
            Some((id, p["name"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

/// IDs of the BPF programs process `pid` holds open: the fdinfo of a
/// program's fd, and of a link's, names it (`prog_id:`).
pub fn bpf_programs_held(pid: u32) -> BTreeSet<u32> {
    let dir = format!("/proc/{pid}/fdinfo");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:")?.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Where the sensor pins its enforcement maps and links
/// (sensor/src/respond/isolate.rs).
pub const PIN_DIR: &str = "/sys/fs/bpf/sensor";

/// Asserts that the sensor that ran as `pid` and stopped cleanly with
/// nobody isolated left nothing pinned: none of its links, and no pin
/// directory unless another sensor is running (a deployed daemon, another
/// test's) and keeps it.
pub fn assert_no_pins_left(pid: u32, stderr: &str) {
    let links: Vec<String> = std::fs::read_dir(Path::new(PIN_DIR).join("links"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mine = format!("-{pid}");
    let own: Vec<&String> = links.iter().filter(|l| l.ends_with(&mine)).collect();
    assert!(
        own.is_empty(),
        "its links are still pinned: {own:?}\n{stderr}"
    );
    if Path::new(PIN_DIR).exists() {
        let others = other_sensors(pid);
        assert!(
            !others.is_empty(),
            "{PIN_DIR} is left behind with no other sensor running (links {links:?}):\n{stderr}"
        );
    }
}

/// Pids of running `sensor` processes other than `pid`.
pub fn other_sensors(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| p != pid)
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sensor")
        })
        .collect()
}
