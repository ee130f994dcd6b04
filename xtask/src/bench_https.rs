//! HTTPS keep-alive request loop, sensor off vs on: what the TLS uprobes
//! (entry + return on every SSL_write / SSL_read) cost a real client.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    bench::{PYTHON, RunningSensor, SETTLE, median, monotonic_ns, on_cpu},
    cmd::root,
};

/// Client: Python's http.client over its ssl module (OpenSSL, the `_ex`
/// functions), small GETs on a keep-alive connection, for as long as it
/// runs. Every 50 ms it prints "<CLOCK_MONOTONIC seconds> <requests so
/// far>", so windows are cut out of one long run: no process start-up or
/// handshake falls inside a window. SIGUSR1 makes it open a new
/// connection, as the bench does after each start and stop of the sensor:
/// the sensor sees the connect of what it measures (a connection older
/// than the sensor is not tied to its socket, which would skip work).
const CLIENT: &str = r#"
import http.client, signal, ssl, sys, time
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
port = int(sys.argv[1])
reconnect = False
def on_usr1(*_):
    global reconnect
    reconnect = True
signal.signal(signal.SIGUSR1, on_usr1)
c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
n, nxt = 0, 0.0
while True:
    c.request("GET", "/v1/models/42", headers={"Authorization": "Bearer bench"})
    c.getresponse().read()
    n += 1
    if reconnect:
        reconnect = False
        c.close()
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
    if n % 8 == 0:
        t = time.monotonic()
        if t >= nxt:
            print(f"{t:.6f} {n}", flush=True)
            nxt = t + 0.05
"#;

/// The running client and the (time, count) samples it printed.
struct LoopClient {
    child: std::process::Child,
    samples: std::sync::Arc<std::sync::Mutex<Vec<(f64, f64)>>>,
}

impl LoopClient {
    fn start(port: u16) -> Result<Self> {
        let mut child = on_cpu(0, PYTHON)
            .args(["-c", CLIENT, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the bench client")?;
        let out = BufReader::new(child.stdout.take().context("client stdout")?);
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = samples.clone();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                let mut f = l.split_whitespace().map(str::parse::<f64>);
                if let (Some(Ok(t)), Some(Ok(n))) = (f.next(), f.next()) {
                    kept.lock().unwrap().push((t, n));
                }
            }
        });
        let c = Self { child, samples };
        c.count_at(monotonic())?;
        Ok(c)
    }

    /// Opens a new connection (the sensor just started or stopped).
    fn reconnect(&self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGUSR1) };
    }

    /// Requests done by time `t`, interpolated between samples; waits for
    /// the first sample after `t`.
    fn count_at(&self, t: f64) -> Result<f64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let s = self.samples.lock().unwrap();
                if let Some(i) = s.iter().position(|&(ts, _)| ts >= t) {
                    let (t1, n1) = s[i];
                    let Some(&(t0, n0)) = i.checked_sub(1).and_then(|j| s.get(j)) else {
                        return Ok(n1);
                    };
                    return Ok(n0 + (n1 - n0) * (t - t0) / (t1 - t0));
                }
            }
            if Instant::now() > deadline {
                bail!("the bench client stopped reporting (see its stderr above)");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Requests per second over the next `secs` seconds.
    fn window(&self, secs: f64) -> Result<f64> {
        Ok(self.window_with_count(secs)?.0)
    }

    /// Requests per second over the next `secs` seconds, and how many.
    fn window_with_count(&self, secs: f64) -> Result<(f64, f64)> {
        let a = monotonic();
        std::thread::sleep(Duration::from_secs_f64(secs));
        let b = monotonic();
        let made = self.count_at(b)? - self.count_at(a)?;
        Ok((made / (b - a), made))
    }
}

impl Drop for LoopClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CLOCK_MONOTONIC in seconds: the clock of the client's samples.
fn monotonic() -> f64 {
    monotonic_ns() as f64 / 1e9
}

/// The tests' HTTPS fixture server with a fresh self-signed certificate;
/// every request line it reports is kept.
pub struct BenchServer {
    pub port: u16,
    child: std::process::Child,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub dir: std::path::PathBuf,
}

impl BenchServer {
    /// The Python fixture server (its `ssl` module: OpenSSL, hooked).
    pub fn start() -> Result<Self> {
        Self::python(Command::new(PYTHON))
    }

    /// The Python fixture server on CPU 0, with the client (see `measure`).
    pub fn start_on_cpu0() -> Result<Self> {
        Self::python(on_cpu(0, PYTHON))
    }

    fn python(mut python3: Command) -> Result<Self> {
        Self::start_with(move |cert, key| {
            python3
                .arg(root().join("tests/fixtures/https_server.py"))
                .arg(cert)
                .arg(key)
                .arg("127.0.0.1");
            Ok(python3)
        })
    }

    /// A Go net/http server, standing in for an API on another host: the
    /// bench's sensor leaves its TLS unprobed (`tls.skip`), so only the
    /// client's side is.
    pub fn start_go() -> Result<Self> {
        let bin = build_go_server()?;
        Self::start_with(|cert, key| {
            // On CPU 0 with the client, one Go thread: see `measure`.
            let mut c = on_cpu(0, &bin);
            c.arg(cert).arg(key).env("GOMAXPROCS", "1");
            Ok(c)
        })
    }

    pub fn start_with(
        server: impl FnOnce(&std::path::Path, &std::path::Path) -> Result<Command>,
    ) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("sensor-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                // Clients that check the name (Claude Code) reach it by IP.
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success();
        if !ok {
            bail!("openssl could not make the bench certificate");
        }
        let mut child = server(&cert, &key)?
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the HTTPS bench server")?;
        let mut lines = BufReader::new(child.stdout.take().context("server stdout")?).lines();
        let port: u16 = lines
            .next()
            .and_then(Result::ok)
            .and_then(|l| l.strip_prefix("PORT ").and_then(|p| p.parse().ok()))
            .context("the bench server did not report its port")?;
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        // Drained continuously so the server never blocks on stdout.
        let kept = requests.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(l);
            }
        });
        Ok(Self {
            port,
            child,
            requests,
            dir,
        })
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Go server: listens on 127.0.0.1, prints "PORT <n>", answers every
/// request with a small JSON body over keep-alive HTTP/1.1.
const GO_SERVER: &str = r#"
package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Printf("PORT %d\n", ln.Addr().(*net.TCPAddr).Port)
	body := []byte(`{"ok":true}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	srv := &http.Server{Handler: h}
	// HTTP/1.1 only, like the Python server: the client speaks it.
	srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	if err := srv.ServeTLS(ln, os.Args[1], os.Args[2]); err != nil {
		panic(err)
	}
}
"#;

/// Where the Go server is built.
pub fn go_server_path() -> std::path::PathBuf {
    root().join("target").join("bench-go").join("https-server")
}

/// Builds the Go server into target/bench-go (cached there).
fn build_go_server() -> Result<std::path::PathBuf> {
    let dir = root().join("target").join("bench-go");
    std::fs::create_dir_all(&dir)?;
    let src = dir.join("server.go");
    std::fs::write(&src, GO_SERVER)?;
    let bin = go_server_path();
    let ok = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .status()
        .context("go (golang-go) is installed by cargo xtask setup")?
        .success();
    if !ok {
        bail!("go build of the bench server failed");
    }
    Ok(bin)
}

/// What one setup measured.
struct Measured {
    ratio: f64,
    added_us: f64,
}

pub fn run(bin: &std::path::Path, seconds: u64, rounds: usize) -> Result<()> {
    println!();
    println!(
        "HTTPS keep-alive loop: Python http.client (OpenSSL _ex calls), small GET, {seconds} s per run, {rounds} rounds of off/on, ratio per round against the mean of the off runs either side"
    );
    let remote = measure(
        bin,
        &BenchServer::start_go()?,
        "server in Go (its TLS left unprobed by tls.skip), as an API on another host would be: the agent's cost",
        seconds,
        rounds,
    )?;
    let both = measure(
        bin,
        &BenchServer::start_on_cpu0()?,
        "server in Python (OpenSSL, hooked too): both ends of every request probed",
        seconds,
        rounds,
    )?;
    println!(
        "summary: on/off ratio {:.3} with the API elsewhere (target >= 0.90), {:.3} with both ends hooked here; added {:.1} / {:.1} us per request",
        remote.ratio, both.ratio, remote.added_us, both.added_us
    );
    Ok(())
}

fn measure(
    bin: &std::path::Path,
    server: &BenchServer,
    what: &str,
    seconds: u64,
    rounds: usize,
) -> Result<Measured> {
    // Client and server share CPU 0 and the sensor runs on CPU 1, as in
    // the connect loop: a request then costs what its own path costs
    // (uprobe traps, programs, syscalls), not where the scheduler put two
    // processes that wake each other (a wakeup across CPUs of this VM
    // swung the rate between runs by up to 60%). The sensor's own CPU is
    // reported beside it.
    let client = LoopClient::start(server.port)?;
    let secs = seconds as f64;
    println!("{what}");
    println!(
        "{:>5} {:>12} {:>12} {:>8} {:>10} {:>11}",
        "round", "off req/s", "on req/s", "ratio", "api_calls", "sensor CPU"
    );
    std::thread::sleep(SETTLE);
    crate::bpf_progs::ensure_no_sensor()?;
    let mut off = vec![client.window(secs)?];
    let (mut on, mut ratios) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let sensor = RunningSensor::start(bin)?;
        client.reconnect();
        std::thread::sleep(SETTLE);
        let before = sensor.cpu_seconds();
        let (n, made) = client.window_with_count(secs)?;
        let cpu = (sensor.cpu_seconds() - before) / secs * 100.0;
        let summary = sensor.stop()?;
        let calls = crate::bench::counter(&summary, "api_call=");
        // The sensor ran through the whole window: each request made in
        // it must be an api_call (the settle's and the stop's add more).
        if (calls as f64) < made * 0.98 {
            bail!(
                "round {r}: {calls} api_calls for {made:.0} requests made in the window: an on round that did not capture what it ran measures nothing"
            );
        }
        client.reconnect();
        std::thread::sleep(SETTLE);
        crate::bpf_progs::ensure_no_sensor()?;
        let o = client.window(secs)?;
        // Against the off windows just before and after: the speed of this
        // shared VM drifts by a quarter within seconds.
        let ratio = n / ((off[r - 1] + o) / 2.0);
        println!(
            "{r:>5} {:>12.0} {n:>12.0} {ratio:>8.3} {calls:>10} {cpu:>10.0}%",
            off[r - 1]
        );
        off.push(o);
        on.push(n);
        ratios.push(ratio);
    }
    let profile = profiled_round(bin, &client, secs)?;
    let (lo, hi) = crate::bench::bootstrap_median_interval(&ratios);
    let (m_off, m_on, ratio) = (median(&mut off), median(&mut on), median(&mut ratios));
    let added_us = (1e6 / m_on - 1e6 / m_off).max(0.0);
    println!(
        "median: off {m_off:.0} req/s, on {m_on:.0} req/s, on/off ratio {ratio:.3} (95% interval {lo:.3}-{hi:.3}, moving-block bootstrap over rounds: neighbouring ratios share an off window); added {added_us:.1} us per request, of which the kernel's programs run {profile}"
    );
    println!(
        "checks: every on round turned at least 98% of the requests of its window into api_calls; every off window began with no sensor program loaded and no {} pin directory",
        crate::bpf_progs::SENSOR_PIN_DIR
    );
    Ok(Measured { ratio, added_us })
}

/// One more round with kernel.bpf_stats_enabled (it times every program
/// run, so it is kept apart from the measured rounds): what the loaded
/// programs themselves cost per request, by program.
fn profiled_round(bin: &std::path::Path, client: &LoopClient, secs: f64) -> Result<String> {
    let stats = crate::bpf_progs::Stats::enable()?;
    let sensor = RunningSensor::start(bin)?;
    client.reconnect();
    std::thread::sleep(SETTLE);
    let a = monotonic();
    let before = crate::bpf_progs::loaded()?;
    std::thread::sleep(Duration::from_secs_f64(secs));
    let after = crate::bpf_progs::loaded()?;
    let b = monotonic();
    sensor.stop()?;
    drop(stats);
    let requests = (client.count_at(b)? - client.count_at(a)?).max(1.0);
    Ok(format!(
        "{}; the rest is the uprobe traps (about 2.7 us per probed call here) and the dispatch of the syscall tracepoints (about 250 ns per traced read or write, 60-80 ns on every other syscall)",
        crate::bench::programs_per_op(&before, &after, requests as u64, "request")
    ))
}
