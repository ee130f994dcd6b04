//! HTTPS keep-alive request loop, sensor off vs on: what the TLS uprobes
//! (entry + return on every SSL_write / SSL_read) cost a real client.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::{
    bench::{RunningSensor, median, on_cpu},
    cmd::root,
};

/// Client: Python's http.client over its ssl module (OpenSSL, the `_ex`
/// functions), one keep-alive connection, small GETs for `secs` seconds.
const CLIENT: &str = r#"
import http.client, ssl, sys, time
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx)
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    c.request("GET", "/v1/models/42", headers={"Authorization": "Bearer bench"})
    c.getresponse().read()
    n += 1
print(n)
"#;

/// The tests' HTTPS fixture server with a fresh self-signed certificate;
/// every request line it reports is kept.
pub struct BenchServer {
    pub port: u16,
    child: std::process::Child,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    dir: std::path::PathBuf,
}

impl BenchServer {
    /// The Python fixture server (its `ssl` module: OpenSSL, hooked).
    pub fn start() -> Result<Self> {
        Self::python(Command::new("python3"))
    }

    /// The Python fixture server on CPU 0, with the client (see `measure`).
    pub fn start_on_cpu0() -> Result<Self> {
        Self::python(on_cpu(0, "python3"))
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

    /// A Go net/http server (crypto/tls: nothing to hook), standing in for
    /// an API on another host: only the client's side is probed.
    pub fn start_go() -> Result<Self> {
        let bin = build_go_server()?;
        Self::start_with(|cert, key| {
            // On CPU 0 with the client, one Go thread: see `measure`.
            let mut c = on_cpu(0, &bin);
            c.arg(cert).arg(key).env("GOMAXPROCS", "1");
            Ok(c)
        })
    }

    fn start_with(
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

/// Builds the Go server into target/bench-go (cached there).
fn build_go_server() -> Result<std::path::PathBuf> {
    let dir = root().join("target").join("bench-go");
    std::fs::create_dir_all(&dir)?;
    let src = dir.join("server.go");
    std::fs::write(&src, GO_SERVER)?;
    let bin = dir.join("https-server");
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
        "server in Go (crypto/tls, not hooked), as an API on another host would be: the agent's cost",
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
    let port = server.port;
    // Client and server share CPU 0 and the sensor runs on CPU 1, as in
    // the connect loop: a request then costs what its own path costs
    // (uprobe traps, programs, syscalls), not where the scheduler put two
    // processes that wake each other (a wakeup across CPUs of this VM
    // swung the rate between runs by up to 60%). The sensor's own CPU is
    // reported beside it.
    let client = |secs: u64| -> Result<f64> {
        let out = on_cpu(0, "python3")
            .args(["-c", CLIENT])
            .args([&port.to_string(), &secs.to_string()])
            .output()?;
        let n: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .with_context(|| {
                format!(
                    "client count (stderr: {})",
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })?;
        Ok(n / secs as f64)
    };
    println!("{what}");
    println!(
        "{:>5} {:>12} {:>12} {:>8} {:>10} {:>11}",
        "round", "off req/s", "on req/s", "ratio", "api_calls", "sensor CPU"
    );
    let mut off = vec![client(seconds)?];
    let (mut on, mut ratios) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let sensor = RunningSensor::start(bin)?;
        // Start-up (loading and verifying the programs) is not the loop's.
        let before = sensor.cpu_seconds();
        let n = client(seconds)?;
        let cpu = (sensor.cpu_seconds() - before) / seconds as f64 * 100.0;
        let summary = sensor.stop()?;
        let calls = crate::bench::counter(&summary, "api_call=");
        let o = client(seconds)?;
        // Against the off runs just before and after: slow drift of a
        // shared VM cancels out.
        let ratio = n / ((off[r - 1] + o) / 2.0);
        println!(
            "{r:>5} {:>12.0} {n:>12.0} {ratio:>8.3} {calls:>10} {cpu:>10.0}%",
            off[r - 1]
        );
        off.push(o);
        on.push(n);
        ratios.push(ratio);
    }
    let profile = profiled_round(bin, &client, seconds)?;
    let (m_off, m_on, ratio) = (median(&mut off), median(&mut on), median(&mut ratios));
    let added_us = (1e6 / m_on - 1e6 / m_off).max(0.0);
    println!(
        "median: off {m_off:.0} req/s, on {m_on:.0} req/s, on/off ratio {ratio:.3}; added {added_us:.1} us per request, of which the sensor's kernel programs run {profile}"
    );
    Ok(Measured { ratio, added_us })
}

/// One more round with kernel.bpf_stats_enabled (it times every program
/// run, so it is kept apart from the measured rounds): what the sensor's
/// programs themselves cost per request, by program.
fn profiled_round(
    bin: &std::path::Path,
    client: &dyn Fn(u64) -> Result<f64>,
    seconds: u64,
) -> Result<String> {
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
    let sensor = RunningSensor::start(bin)?;
    let snapshot = || -> std::collections::BTreeMap<String, (u128, u64)> {
        let mut m = std::collections::BTreeMap::new();
        for p in aya::programs::loaded_programs().flatten() {
            let name = p.name_as_str().unwrap_or("?").to_string();
            let e = m.entry(name).or_insert((0u128, 0u64));
            e.0 += p.run_time().as_nanos();
            e.1 += p.run_count();
        }
        m
    };
    let before = snapshot();
    let rate = client(seconds)?;
    let after = snapshot();
    sensor.stop()?;
    drop(stats);
    let requests = (rate * seconds as f64).max(1.0);
    let mut per: Vec<(String, f64, f64)> = after
        .iter()
        .filter_map(|(name, (ns, n))| {
            let (ns0, n0) = before.get(name).copied().unwrap_or((0, 0));
            let runs = n.saturating_sub(n0) as f64 / requests;
            let ns = ns.saturating_sub(ns0) as f64 / requests;
            (runs >= 0.5).then(|| (name.clone(), ns, runs))
        })
        .collect();
    per.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = per.iter().map(|p| p.1).sum();
    let parts: Vec<String> = per
        .iter()
        .take(6)
        .map(|(n, ns, runs)| format!("{n} {:.1} us ({runs:.1} runs)", ns / 1000.0))
        .collect();
    Ok(format!(
        "{:.1} us ({}); the rest is the uprobe traps (about 2.7 us per probed call here) and the daemon sharing the CPUs",
        total / 1000.0,
        parts.join(", ")
    ))
}
