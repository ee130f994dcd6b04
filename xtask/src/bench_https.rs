//! HTTPS keep-alive request loop, sensor off vs on: what the TLS uprobes
//! (entry + return on every SSL_write / SSL_read) cost a real client.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::{
    bench::{RunningSensor, median},
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
    pub fn start() -> Result<Self> {
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
        let mut child = Command::new("python3")
            .arg(root().join("tests/fixtures/https_server.py"))
            .arg(&cert)
            .arg(&key)
            .arg("127.0.0.1")
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

pub fn run(bin: &std::path::Path, seconds: u64, rounds: usize) -> Result<()> {
    let server = BenchServer::start()?;
    let port = server.port;
    let client = |secs: u64| -> Result<f64> {
        let out = Command::new("python3")
            .args(["-c", CLIENT, &port.to_string(), &secs.to_string()])
            .output()?;
        let n: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("client count")?;
        Ok(n / secs as f64)
    };
    println!();
    println!(
        "HTTPS keep-alive loop: Python http.client (OpenSSL _ex calls), small GET, {seconds} s per round, {rounds} rounds"
    );
    println!(
        "{:>5} {:>12} {:>12} {:>10} {:>11}",
        "round", "off req/s", "on req/s", "api_calls", "sensor CPU"
    );
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let o = client(seconds)?;
        let sensor = RunningSensor::start(bin)?;
        let n = client(seconds)?;
        let cpu = sensor.cpu_seconds() / seconds as f64 * 100.0;
        let summary = sensor.stop()?;
        let calls = crate::bench::counter(&summary, "api_call=");
        println!("{r:>5} {o:>12.0} {n:>12.0} {calls:>10} {cpu:>10.0}%");
        off.push(o);
        on.push(n);
    }
    drop(server);
    let (m_off, m_on) = (median(&mut off), median(&mut on));
    println!(
        "median: off {m_off:.0} req/s, on {m_on:.0} req/s, on/off ratio {:.3} (target >= 0.90); added {:.1} us per request (client and server share the 2 CPUs with the sensor; each SSL call of both costs an entry and a return uprobe)",
        m_on / m_off,
        (1e6 / m_on - 1e6 / m_off).max(0.0)
    );
    Ok(())
}
