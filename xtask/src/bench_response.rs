//! Response times, measured on the real path: how long from an agent's
//! anomalous request (its SSL write) until isolation is in force, and
//! whether an armed block lets anything through.

use std::{
    ffi::OsStr,
    io::BufRead,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    bench::{PYTHON, RunningSensor, monotonic_ns},
    bench_https::BenchServer,
};

/// An agent: one LLM call (which makes it an agent), then, in "anomaly"
/// mode, an order it never placed while learning. After the order's SSL
/// write it probes with new connects until one is refused (or aborted),
/// and prints the time between the two in microseconds.
const AGENT: &str = r#"
import http.client, json, os, socket, ssl, sys, time
# The mode is in the environment: a different argument would make a
# different agent identity.
port, mode = int(sys.argv[1]), os.environ["BENCH_MODE"]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
def call(method, path, body):
    c.request(method, path, body=json.dumps(body), headers={"Content-Type": "application/json", "Authorization": "Bearer bench-key"})
    return c.getresponse().read()
call("POST", "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
call("GET", "/v1/catalog", {})
if mode == "learn":
    sys.exit(0)
if mode in ("hold", "plain"):
    # One order (held, in "hold" mode, until the bench approves it) or an
    # unheld write of the same size, timed around the call.
    path = "/v1/orders" if mode == "hold" else "/v1/ordinal"
    print("T0", time.monotonic_ns(), flush=True)
    call("POST", path, {"sku": "A-1"})
    print("T1", time.monotonic_ns(), flush=True)
    sys.exit(0)
t0 = time.monotonic()
try:
    call("POST", "/v1/orders", {"sku": "A-1"})
except OSError:
    pass  # armed: never returns (killed); isolated: the connection is cut
deadline = t0 + 5
while time.monotonic() < deadline:
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except (PermissionError, ConnectionAbortedError):
        # Refused by the connect program, or aborted mid-handshake when
        # isolation destroyed the process's sockets: either way, cut off.
        print(int((time.monotonic() - t0) * 1e6))
        sys.exit(0)
    finally:
        s.close()
    time.sleep(0.0002)
print("never")
"#;

/// Runs of one variant before the bench switches to the other: the
/// machine's drift falls on both alike.
const ROUND: usize = 10;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub fn run(bin: &std::path::Path) -> Result<()> {
    let runs = 30;
    let server = BenchServer::start()?;
    let dir = tempfile_dir("sensor-bench-response")?;
    let script = dir.join("bench_agent.py");
    std::fs::write(&script, AGENT)?;
    let agent = |mode: &str| -> Result<std::process::Output> {
        Ok(Command::new(PYTHON)
            .arg(&script)
            .arg(server.port.to_string())
            .env("BENCH_MODE", mode)
            .output()?)
    };
    // The same policy twice: records of enforced agents batched like any
    // other, and waking the reader at once (`ringbuf.urgent_wakeups`).
    let policy = "[response]\nmode = \"enforce\"\nmax_actions_per_minute = 1000\n\
         [[response.rules]]\nrule = \"new_irreversible_endpoint\"\naction = \"isolate\"\n";
    let variants = [("batched", false), ("urgent", true)];
    let mut configs = Vec::new();
    for (label, urgent) in variants {
        let c = dir.join(format!("sensor-{label}.toml"));
        std::fs::write(
            &c,
            format!("[ringbuf]\nurgent_wakeups = {urgent}\n{policy}"),
        )?;
        configs.push(c);
    }
    let state = dir.join("state");
    let socket = dir.join("sensor.sock");
    println!();
    println!(
        "automatic isolation: an agent's first order (a new irreversible endpoint) until its next connect is refused, {runs} runs each with enforced agents' records batched and urgent, alternating in rounds of {ROUND}"
    );
    let sensor = start_sensor(bin, &configs[0], &state, &socket)?;
    for _ in 0..3 {
        if !agent("learn")?.status.success() {
            bail!("the learning run of the bench agent failed");
        }
    }
    // The learning runs' last calls reach the baseline before the next run.
    std::thread::sleep(Duration::from_millis(300));
    sensor.stop()?;
    // Every run counts: one that never saw its connect refused, or whose
    // agent died, is a failure of the target, not a run left out.
    let mut us = [Vec::new(), Vec::new()];
    let mut failures = [Vec::new(), Vec::new()];
    for round in 0..runs / ROUND {
        for (v, config) in configs.iter().enumerate() {
            let sensor = start_sensor(bin, config, &state, &socket)?;
            for i in 1..=ROUND {
                let run = round * ROUND + i;
                let out = agent("anomaly")?;
                let text = String::from_utf8_lossy(&out.stdout);
                match text.trim().parse::<f64>() {
                    Ok(t) if out.status.success() => us[v].push(t / 1000.0),
                    _ if out.status.success() && text.trim() == "never" => {
                        failures[v].push(format!("run {run}: never isolated within 5 s"))
                    }
                    _ => failures[v].push(format!(
                        "run {run}: the agent failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                            .lines()
                            .last()
                            .unwrap_or("")
                    )),
                }
            }
            sensor.stop()?;
        }
    }
    let mut p50s = [0.0; 2];
    for (v, (label, _)) in variants.iter().enumerate() {
        let n = us[v].len();
        let failed = failures[v].len();
        for f in &failures[v] {
            println!("  FAILED ({label}) {f}");
        }
        // Failures rank above every time: a p99 over all runs is a time
        // only while under 1% of them failed.
        let mut all: Vec<f64> = us[v]
            .iter()
            .copied()
            .chain(std::iter::repeat_n(f64::INFINITY, failed))
            .collect();
        let (p50, p99, max) = (
            percentile(&mut all, 0.5),
            percentile(&mut all, 0.99),
            percentile(&mut all, 1.0),
        );
        p50s[v] = p50;
        let show = |t: f64| {
            if t.is_finite() {
                format!("{t:.1} ms")
            } else {
                "failed".to_string()
            }
        };
        println!(
            "{label}: request -> isolation in force over all {} runs: p50 {}, p99 {}, max {} (target p99 < 10 ms: {}); {n} isolated, {failed} failed",
            n + failed,
            show(p50),
            show(p99),
            show(max),
            if p99 < 10.0 { "met" } else { "NOT met" },
        );
    }
    println!(
        "urgent / batched, p50: {:.2} (below 1: the wakeup at once is faster)",
        p50s[1] / p50s[0]
    );

    // Armed: the same agent, its orders denied in the kernel.
    let arm = dir.join("arm.toml");
    std::fs::write(
        &arm,
        "[[response.arm]]\nagent = \"bench_agent.py\"\ndeny = [\"POST /v1/orders\"]\n",
    )?;
    let before = orders(&server);
    let sensor = start_sensor(bin, &arm, &state, &socket)?;
    let mut killed = 0;
    let mut other = Vec::new();
    for run in 1..=runs {
        let out = agent("anomaly")?;
        use std::os::unix::process::ExitStatusExt;
        if out.status.signal() == Some(9) {
            killed += 1;
        } else {
            other.push(format!("run {run}: {}", out.status));
        }
    }
    sensor.stop()?;
    std::thread::sleep(Duration::from_millis(200));
    let delivered = orders(&server) - before;
    println!(
        "armed block: {killed} of {runs} agents killed at their order's SSL write; orders delivered: {delivered} (target 0)"
    );
    for o in &other {
        println!("  FAILED {o}: not killed");
    }
    hold(bin, &script, &server, &dir, runs)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Holds: from the order's start (just before the client builds and
/// writes it) until the process is seen stopped, and what an approved
/// call costs beyond the person's own time (the CLI's start included),
/// next to the same call unheld.
fn hold(
    bin: &std::path::Path,
    script: &std::path::Path,
    server: &BenchServer,
    dir: &std::path::Path,
    runs: usize,
) -> Result<()> {
    let config = dir.join("hold.toml");
    std::fs::write(
        &config,
        "[[response.hold]]\nagent = \"bench_agent.py\"\npatterns = [\"POST /v1/orders\"]\n",
    )?;
    let socket = dir.join("hold.sock");
    let state = dir.join("hold-state");
    let sensor = start_sensor(bin, &config, &state, &socket)?;
    let timed =
        |mode: &str, mut on_t0: Box<dyn FnMut(u32, u64) -> Result<u64> + '_>| -> Result<f64> {
            let mut child = Command::new(PYTHON)
                .arg(script)
                .arg(server.port.to_string())
                .env("BENCH_MODE", mode)
                .stdout(std::process::Stdio::piped())
                .spawn()?;
            let pid = child.id();
            let mut lines = std::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
            let mut stamp = |tag: &str| -> Result<u64> {
                let line = lines.next().context("the bench agent ended early")??;
                line.strip_prefix(tag)
                    .and_then(|v| v.trim().parse().ok())
                    .with_context(|| format!("unexpected line {line:?}"))
            };
            let t0 = stamp("T0")?;
            let excluded = on_t0(pid, t0)?;
            let t1 = stamp("T1")?;
            child.wait()?;
            Ok((t1 - t0).saturating_sub(excluded) as f64 / 1e6)
        };
    let mut stop_ms = Vec::new();
    let mut approved_ms = Vec::new();
    let mut plain_ms = Vec::new();
    for _ in 0..runs {
        plain_ms.push(timed("plain", Box::new(|_, _| Ok(0)))?);
        let sensor_bin = bin.to_path_buf();
        let socket = socket.clone();
        let stops = &mut stop_ms;
        approved_ms.push(timed(
            "hold",
            Box::new(move |pid, t0| {
                let deadline = Instant::now() + Duration::from_secs(10);
                let stopped = loop {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
                    if stat
                        .rsplit_once(") ")
                        .is_some_and(|(_, r)| r.starts_with('T'))
                    {
                        break monotonic_ns();
                    }
                    if Instant::now() > deadline {
                        bail!("the held agent {pid} was never stopped");
                    }
                    std::thread::sleep(Duration::from_micros(50));
                };
                stops.push((stopped - t0) as f64 / 1e6);
                // The person: finds the hold, then approves it. Only the
                // approval's own cost counts.
                let id = loop {
                    let out = Command::new(&sensor_bin)
                        .args(["holds", "--json", "--socket"])
                        .arg(&socket)
                        .output()?;
                    let text = String::from_utf8_lossy(&out.stdout).to_string();
                    if let Some(id) = text.lines().find_map(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).ok()?;
                        (v["process"]["pid"].as_u64() == Some(u64::from(pid))).then(|| {
                            // proto3 JSON writes 64-bit integers as strings.
                            match &v["hold_id"] {
                                serde_json::Value::String(s) => Some(s.clone()),
                                n => n.as_u64().map(|n| n.to_string()),
                            }
                        })?
                    }) {
                        break id;
                    }
                    if Instant::now() > deadline {
                        bail!("no hold listed for {pid}: {text}");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                };
                let decided = monotonic_ns();
                let out = Command::new(&sensor_bin)
                    .args(["approve", &id, "--socket"])
                    .arg(&socket)
                    .output()?;
                if !out.status.success() {
                    bail!("approve failed: {}", String::from_utf8_lossy(&out.stderr));
                }
                Ok(decided - stopped)
            }),
        )?);
    }
    sensor.stop()?;
    println!();
    println!(
        "hold for approval: an agent's order until its process is stopped, then approved, {runs} runs"
    );
    println!(
        "order start -> process stopped: p50 {:.2} ms, p99 {:.2} ms (includes the client building the request)",
        percentile(&mut stop_ms, 0.5),
        percentile(&mut stop_ms, 0.99)
    );
    let held = percentile(&mut approved_ms, 0.5);
    let plain = percentile(&mut plain_ms, 0.5);
    println!(
        "approved call, the person's time excluded: p50 {held:.2} ms vs the same call unheld {plain:.2} ms: +{:.2} ms (`sensor approve` start and RPC included)",
        held - plain
    );
    Ok(())
}

fn orders(server: &BenchServer) -> usize {
    server
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with("REQ POST /v1/orders "))
        .count()
}

fn tempfile_dir(name: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("bench temp dir")?;
    Ok(dir)
}

/// The sensor with a config file, a state directory and an API socket of
/// the bench's own.
fn start_sensor(
    bin: &std::path::Path,
    config: &std::path::Path,
    state: &std::path::Path,
    socket: &std::path::Path,
) -> Result<RunningSensor> {
    let args: Vec<&OsStr> = vec![
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--state-dir"),
        state.as_os_str(),
        OsStr::new("--socket"),
        socket.as_os_str(),
    ];
    RunningSensor::start_with(bin, &args)
}
