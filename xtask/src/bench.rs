//! `cargo xtask bench`: overheads measured side by side in one run, sensor
//! off and on, alternating rounds so drift on a noisy machine hits both.

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::cmd::{build_sensor, is_root};

/// The Python of the benches' clients and servers: Debian's, linked to the
/// system libssl, as the end-to-end tests use (a pyenv Python first on
/// PATH carries an OpenSSL of its own, and its probes are placed apart).
pub const PYTHON: &str = "/usr/bin/python3";

/// Left after the sensor starts (its start-up tail: the /proc scan, the
/// first TLS attaches) or stops (uprobes going away), and after a client's
/// new connection, before a window is measured.
pub const SETTLE: Duration = Duration::from_millis(500);

pub fn run(seconds: u64, rounds: usize, only: Option<&str>) -> Result<()> {
    if only == Some("agents") {
        // No kernel programs: the detection stage alone.
        return crate::bench_agents::run();
    }
    if only == Some("db") {
        // No kernel programs: database statements through parsing and
        // detection.
        return crate::bench_db::run();
    }
    if !is_root() {
        bail!("the benchmark starts the sensor, which needs root");
    }
    // "Off" rounds must be off: no other sensor's programs, and no pinned
    // isolation links a killed sensor left on the root cgroup.
    crate::bpf_progs::ensure_no_sensor()?;
    let bin = build_sensor(true)?;
    let result = run_kernel_benches(&bin, seconds, rounds, only);
    let _ = std::fs::remove_dir_all(state_dir());
    result?;
    if only.is_none() {
        crate::bench_agents::run()?;
        crate::bench_db::run()?;
    }
    Ok(())
}

fn run_kernel_benches(
    bin: &std::path::Path,
    seconds: u64,
    rounds: usize,
    only: Option<&str>,
) -> Result<()> {
    match only {
        None | Some("connect") => connect(bin, seconds, rounds)?,
        Some("https" | "response" | "claude") => {}
        Some(other) => bail!("--only {other}: one of connect, https, response, claude, agents, db"),
    }
    if matches!(only, None | Some("https")) {
        crate::bench_https::run(bin, seconds, rounds)?;
    }
    if matches!(only, None | Some("response")) {
        crate::bench_response::run(bin)?;
    }
    if matches!(only, None | Some("claude")) {
        // Each round runs the real Claude Code twice: fewer rounds.
        crate::bench_claude::run(bin, rounds.clamp(3, 8))?;
    }
    Ok(())
}

/// Loopback connect + close, sensor off and on: each "on" window between
/// two "off" windows, its ratio against their mean (the VM's speed drifts
/// within seconds), a settle after every start and stop, and "off"
/// checked to be off before every off window.
fn connect(bin: &std::path::Path, seconds: u64, rounds: usize) -> Result<()> {
    let dur = Duration::from_secs(seconds);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    // The loop runs on CPU 0 and the sensor on CPU 1, so the ratio measures
    // what each connect pays in the kernel rather than where the scheduler
    // happened to put the sensor's reader; the reader's own cost is reported
    // separately as the sensor's CPU use.
    pin_to_cpu(0);
    println!(
        "connect loop: loopback TCP connect + close on CPU 0, sensor on CPU 1; {seconds} s windows, {rounds} rounds; each on window against the mean of the off windows either side, {} ms settle after every start and stop",
        SETTLE.as_millis()
    );
    println!(
        "{:>5} {:>12} {:>12} {:>8} {:>10} {:>10} {:>11}",
        "round", "off conn/s", "on conn/s", "ratio", "seen", "dropped", "sensor CPU"
    );
    let mut off = vec![off_window(&listener, dur)?];
    let (mut on, mut ratios) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let sensor = RunningSensor::start(bin)?;
        std::thread::sleep(SETTLE);
        // CPU over the window only: start-up (BTF, verifier, /proc scan)
        // is not what a connect costs.
        let cpu0 = sensor.cpu_seconds();
        let start = Instant::now();
        let n = connect_count(&listener, dur)?;
        let secs = start.elapsed().as_secs_f64();
        let cpu = (sensor.cpu_seconds() - cpu0) / secs * 100.0;
        let on_rate = n as f64 / secs;
        let summary = sensor.stop()?;
        let seen = counter(&summary, "connect=");
        let dropped =
            counter(&summary, "ringbuf_full_drops=") + counter(&summary, "queue_full_drops=");
        // Every connect of the window was reported (the settle's and the
        // stop's were not made: the loop only runs in the window).
        if seen < n || dropped > 0 {
            bail!(
                "round {r}: the sensor reported {seen} connects of {n} made ({dropped} dropped): an on round that did not capture what it ran measures nothing"
            );
        }
        std::thread::sleep(SETTLE);
        let o = off_window(&listener, dur)?;
        let ratio = on_rate / ((off[r - 1] + o) / 2.0);
        println!(
            "{r:>5} {:>12.0} {on_rate:>12.0} {ratio:>8.3} {seen:>10} {dropped:>10} {cpu:>10.0}%",
            off[r - 1]
        );
        off.push(o);
        on.push(on_rate);
        ratios.push(ratio);
    }
    let (lo, hi) = bootstrap_median_interval(&ratios);
    let (m_off, m_on, ratio) = (median(&mut off), median(&mut on), median(&mut ratios));
    println!(
        "median: off {m_off:.0} conn/s, on {m_on:.0} conn/s, on/off ratio {ratio:.3} (95% interval {lo:.3}-{hi:.3}, moving-block bootstrap over rounds: neighbouring ratios share an off window; target >= 0.95); added cost {:.2} us per connect",
        (1e6 / m_on - 1e6 / m_off).max(0.0)
    );
    println!(
        "checks: every on round reported every connect it made with none dropped; every off window began with no sensor program loaded and no {} pin directory",
        crate::bpf_progs::SENSOR_PIN_DIR
    );
    // A separate round with kernel.bpf_stats_enabled: it times every
    // program run, which would bias the rounds above.
    let stats = crate::bpf_progs::Stats::enable()?;
    let sensor = RunningSensor::start(bin)?;
    std::thread::sleep(SETTLE);
    let before = crate::bpf_progs::loaded()?;
    let made = connect_count(&listener, dur)?;
    let after = crate::bpf_progs::loaded()?;
    sensor.stop()?;
    drop(stats);
    println!(
        "kernel programs, profiled round (every loaded program, not only the sensor's): {}",
        programs_per_op(&before, &after, made, "connect")
    );
    println!(
        "  the rest of the added cost is outside BPF programs: the kernel's syscall-tracepoint path, which every syscall of every process takes while a syscall tracepoint is attached"
    );
    Ok(())
}

/// An off window, after checking that off is off.
fn off_window(listener: &TcpListener, dur: Duration) -> Result<f64> {
    crate::bpf_progs::ensure_no_sensor()?;
    connect_loop(listener, dur)
}

/// 95% interval of the median of `ratios` by a moving-block bootstrap
/// (blocks of two rounds, 2,000 resamples, fixed seed): round r's ratio
/// shares its off windows with rounds r-1 and r+1, so rounds are not
/// independent draws and a plain standard error would understate the
/// spread.
pub fn bootstrap_median_interval(ratios: &[f64]) -> (f64, f64) {
    const BLOCK: usize = 2;
    const RESAMPLES: usize = 2_000;
    let n = ratios.len();
    if n < BLOCK + 1 {
        let m = median(&mut ratios.to_vec());
        return (m, m);
    }
    // xorshift64: deterministic, so a rerun of the same rounds prints the
    // same interval.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let starts = n - BLOCK + 1;
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let mut sample = Vec::with_capacity(n + BLOCK);
            while sample.len() < n {
                let s = (next() % starts as u64) as usize;
                sample.extend_from_slice(&ratios[s..s + BLOCK]);
            }
            sample.truncate(n);
            median(&mut sample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| medians[((RESAMPLES - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

/// What every loaded program ran between two snapshots, per `ops`
/// operations of the measured loop: the total, then the costliest six.
pub fn programs_per_op(
    before: &[crate::bpf_progs::Prog],
    after: &[crate::bpf_progs::Prog],
    ops: u64,
    op: &str,
) -> String {
    let ops = ops.max(1) as f64;
    let mut per: Vec<(String, f64, f64)> = crate::bpf_progs::delta(before, after)
        .into_iter()
        .filter(|p| p.run_cnt > 0)
        .map(|p| {
            (
                format!("{} ({})", p.name, p.kind),
                p.run_time_ns as f64 / ops,
                p.run_cnt as f64 / ops,
            )
        })
        .collect();
    per.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = per.iter().map(|p| p.1).sum();
    let parts: Vec<String> = per
        .iter()
        .take(6)
        .map(|(n, ns, runs)| format!("{n} {ns:.0} ns ({runs:.2} runs)"))
        .collect();
    format!(
        "{total:.0} ns per {op} in {} programs that ran: {}",
        per.len(),
        parts.join(", ")
    )
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn counter(summary: &str, key: &str) -> u64 {
    summary
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| {
            v.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The loop runs on one thread: a loopback connect completes its handshake
/// inside the syscall, so the same thread then accepts and closes both ends.
/// (A separate acceptor thread made the rate depend on cross-CPU wakeups,
/// which on these VMs swung it by 50x between rounds.)
fn connect_loop(listener: &TcpListener, dur: Duration) -> Result<f64> {
    let start = Instant::now();
    let n = connect_count(listener, dur)?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn connect_count(listener: &TcpListener, dur: Duration) -> Result<u64> {
    let addr: SocketAddr = listener.local_addr()?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        let s = TcpStream::connect(addr).context("loopback connect")?;
        let (accepted, _) = listener.accept().context("loopback accept")?;
        drop(accepted);
        // Reset on close: no TIME_WAIT, so the loop never runs out of ports.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: valid socket fd and a correctly sized option value.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                size_of::<libc::linger>() as u32,
            )
        };
        n += 1;
    }
    Ok(n)
}

/// The bench sensor's state directory and socket, removed when the bench ends.
fn state_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("sensor-bench-state-{}", std::process::id()))
}

pub struct RunningSensor {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

/// `program` run on one CPU only (`taskset`): the benches keep the
/// measured loop on CPU 0 and the sensor on CPU 1.
pub fn on_cpu(cpu: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("taskset");
    c.args(["--cpu-list", &cpu.to_string()]).arg(program);
    c
}

impl RunningSensor {
    /// With a state directory and API socket of the bench's own: the
    /// host's (/var/lib/sensor, /run/sensor) belong to a sensor that may
    /// be installed there, and its baselines must not shape a round.
    pub fn start(bin: &std::path::Path) -> Result<Self> {
        let state = state_dir();
        std::fs::create_dir_all(&state).context("the bench's state directory")?;
        let socket = state.join("sensor.sock");
        // The Go server stands in for an API on another host: its own TLS
        // (which the sensor would probe since it captures Go) is left out.
        let config = state.join("bench.toml");
        let go_server = crate::bench_https::go_server_path();
        std::fs::write(
            &config,
            format!("[tls]\nskip = [{:?}]\n", go_server.display().to_string()),
        )?;
        Self::start_with(
            bin,
            &[
                "--state-dir".as_ref(),
                state.as_os_str(),
                "--socket".as_ref(),
                socket.as_os_str(),
                "--config".as_ref(),
                config.as_os_str(),
            ],
        )
    }

    /// With extra `sensor run` arguments (config, state directory).
    pub fn start_with(bin: &std::path::Path, args: &[&std::ffi::OsStr]) -> Result<Self> {
        let mut cmd = on_cpu(1, bin);
        let mut child = cmd
            .args(["run", "--json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the sensor")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().context("sensor stderr")?;
        let buf = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut b = buf.lock().unwrap();
                b.push_str(&line);
                b.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stderr.lock().unwrap().contains("sensor ready") {
            if Instant::now() > deadline || child.try_wait()?.is_some() {
                bail!("sensor did not start:\n{}", stderr.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, stderr })
    }

    /// CPU time (user + system) the sensor has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised comm; utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
            .sum();
        ticks as f64 / 100.0
    }

    /// SIGTERM and wait; returns the shutdown summary line.
    pub fn stop(mut self) -> Result<String> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait()?;
        std::thread::sleep(Duration::from_millis(50));
        let text = self.stderr.lock().unwrap().clone();
        text.lines()
            .find(|l| l.starts_with("sensor stopped:"))
            .map(str::to_string)
            .with_context(|| format!("no shutdown summary from the sensor:\n{text}"))
    }
}

/// CLOCK_MONOTONIC in ns, the clock Python's `time.monotonic` and
/// `time.monotonic_ns` read (the bench clients report on it).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_interval_brackets_the_median_and_widens_with_spread() {
        let tight: Vec<f64> = (0..20).map(|i| 0.90 + f64::from(i % 3) * 0.001).collect();
        let wide: Vec<f64> = (0..20).map(|i| 0.80 + f64::from(i % 5) * 0.05).collect();
        let (a, b) = bootstrap_median_interval(&tight);
        let (c, d) = bootstrap_median_interval(&wide);
        let m = median(&mut wide.clone());
        assert!(a <= b && c <= m && m <= d, "{a} {b} {c} {m} {d}");
        assert!(d - c > 10.0 * (b - a), "tight {a}-{b}, wide {c}-{d}");
        // The same rounds give the same interval.
        assert_eq!(bootstrap_median_interval(&wide), (c, d));
    }
}
