//! Response times, measured on the real path: how long from an agent's
//! anomalous request (its SSL write) until isolation is in force, and
//! whether an armed block lets anything through.

use std::{ffi::OsStr, process::Command, time::Duration};

use anyhow::{Context, Result, bail};

use crate::{bench::RunningSensor, bench_https::BenchServer};

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
        Ok(Command::new("python3")
            .arg(&script)
            .arg(server.port.to_string())
            .env("BENCH_MODE", mode)
            .output()?)
    };
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        "[response]\nmode = \"enforce\"\nmax_actions_per_minute = 1000\n\
         [[response.rules]]\nrule = \"new_irreversible_endpoint\"\naction = \"isolate\"\n",
    )?;
    let state = dir.join("state");
    let args: Vec<&OsStr> = vec![
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--state-dir"),
        state.as_os_str(),
        OsStr::new("--socket"),
        OsStr::new("/tmp/sensor-bench-response.sock"),
    ];
    println!();
    println!(
        "automatic isolation: an agent's first order (a new irreversible endpoint) until its next connect is refused, {runs} runs"
    );
    let sensor = RunningSensor::start_with(bin, &args)?;
    for _ in 0..3 {
        if !agent("learn")?.status.success() {
            bail!("the learning run of the bench agent failed");
        }
    }
    // The learning runs' last calls reach the baseline before the next run.
    std::thread::sleep(Duration::from_millis(300));
    let mut us = Vec::new();
    let mut never = 0;
    for _ in 0..runs {
        let out = agent("anomaly")?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.trim().parse::<f64>() {
            Ok(v) => us.push(v / 1000.0),
            Err(_) => never += 1,
        }
    }
    sensor.stop()?;
    if us.is_empty() {
        bail!("isolation was never observed in {runs} runs");
    }
    let n = us.len();
    println!(
        "request -> isolation in force: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {n} runs (target p99 < 10 ms); {never} runs never isolated within 5 s",
        percentile(&mut us, 0.5),
        percentile(&mut us, 0.99),
        percentile(&mut us, 1.0),
    );

    // Armed: the same agent, its orders denied in the kernel.
    let arm = dir.join("arm.toml");
    std::fs::write(
        &arm,
        "[[response.arm]]\nagent = \"bench_agent.py\"\ndeny = [\"POST /v1/orders\"]\n",
    )?;
    let args: Vec<&OsStr> = vec![
        OsStr::new("--config"),
        arm.as_os_str(),
        OsStr::new("--state-dir"),
        state.as_os_str(),
        OsStr::new("--socket"),
        OsStr::new("/tmp/sensor-bench-response.sock"),
    ];
    let before = orders(&server);
    let sensor = RunningSensor::start_with(bin, &args)?;
    let mut killed = 0;
    for _ in 0..runs {
        let out = agent("anomaly")?;
        use std::os::unix::process::ExitStatusExt;
        if out.status.signal() == Some(9) {
            killed += 1;
        }
    }
    sensor.stop()?;
    std::thread::sleep(Duration::from_millis(200));
    let delivered = orders(&server) - before;
    println!(
        "armed block: {killed} of {runs} agents killed at their order's SSL write; orders delivered: {delivered} (target 0)"
    );
    let _ = std::fs::remove_dir_all(&dir);
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
