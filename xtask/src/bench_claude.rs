//! The Claude Code path, side by side with Node's: what the sensor adds to
//! each request of the real Claude Code binary (BoringSSL found by
//! signature, probes at `SSL_write`, `SSL_read` and `SSL_do_handshake`)
//! and of Node's `https` (OpenSSL's exported functions), both posting a
//! Messages request with a ~48 KB body and reading an SSE answer from the
//! same stand-in, in a loopback-only network namespace.
//!
//! `claude -p` makes one or two requests per run after about a second of
//! start-up, so its wall time on/off cannot show microseconds per request;
//! what is compared per request is what the kernel measures (program run
//! time and runs, from `kernel.bpf_stats_enabled`), and the wall time per
//! run is printed for what it is. Node's loop gives both.

use std::{
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::{
    bench::{PYTHON, RunningSensor, SETTLE, median, programs_per_op},
    bench_https::BenchServer,
    cmd::root,
};

/// Node client: `n` POSTs on one keep-alive connection; prints the mean
/// microseconds per request.
const NODE_CLIENT: &str = r#"
const https = require('https');
const port = +process.argv[1], n = +process.argv[2];
const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
const body = JSON.stringify({ model: 'claude-bench', max_tokens: 32, stream: true,
  messages: [{ role: 'user', content: 'x'.repeat(48000) }] });
function one() {
  return new Promise((resolve, reject) => {
    const r = https.request({ host: '127.0.0.1', port, path: '/v1/messages?beta=true', method: 'POST',
      agent, rejectUnauthorized: false,
      headers: { 'content-type': 'application/json', 'x-api-key': 'bench',
                 'anthropic-version': '2023-06-01', 'content-length': Buffer.byteLength(body) } },
      (res) => { res.on('data', () => {}); res.on('end', resolve); });
    r.on('error', reject);
    r.end(body);
  });
}
(async () => {
  await one();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await one();
  console.log(Number(process.hrtime.bigint() - t0) / 1e3 / n);
  agent.destroy();
})();
"#;

/// Requests per Node run.
const NODE_REQUESTS: u32 = 40;

const CLAUDE: &str = "target/e2e-npm/node_modules/@anthropic-ai/claude-code-linux-x64/claude";

/// A loopback-only network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Result<Self> {
        let name = format!("sensor-bench-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()?
            .success();
        if !ok {
            bail!("ip netns add {name} failed");
        }
        let ns = Netns(name);
        if !ns
            .command("ip")
            .args(["link", "set", "lo", "up"])
            .status()?
            .success()
        {
            bail!("loopback up in {} failed", ns.0);
        }
        Ok(ns)
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

struct Setup {
    ns: Netns,
    server: BenchServer,
    claude: std::path::PathBuf,
    home: std::path::PathBuf,
}

impl Setup {
    /// Mean microseconds per Node request.
    fn node(&self) -> Result<f64> {
        let out = self
            .ns
            .command("node")
            .args(["-e", NODE_CLIENT, &self.server.port.to_string()])
            .arg(NODE_REQUESTS.to_string())
            .stderr(Stdio::inherit())
            .output()
            .context("running the Node client")?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("the Node client's mean")
    }

    /// One `claude -p` run: (milliseconds, Messages requests it made).
    fn claude(&self) -> Result<(f64, usize)> {
        let before = self.posts();
        let t = Instant::now();
        let cert = self.server.dir.join("cert.pem");
        let out = self
            .ns
            .command(&self.claude)
            .args(["-p", "Say ok."])
            .env("HOME", &self.home)
            .env(
                "ANTHROPIC_BASE_URL",
                format!("https://127.0.0.1:{}", self.server.port),
            )
            .env("ANTHROPIC_API_KEY", "sk-ant-bench")
            .env("ANTHROPIC_MODEL", "claude-bench")
            .env("SSL_CERT_FILE", &cert)
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .stdin(Stdio::null())
            .output()
            .context("running claude")?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if !out.status.success() {
            bail!(
                "claude -p failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((ms, self.posts() - before))
    }

    fn posts(&self) -> usize {
        self.server
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with("REQ POST /v1/messages"))
            .count()
    }
}

/// The TLS capture programs alone (uprobes on the TLS functions), per
/// request: the part of the cost that is the path's own, where the total
/// also counts every syscall the process made (Claude Code's start-up).
fn tls_per_request(
    before: &[crate::bpf_progs::Prog],
    after: &[crate::bpf_progs::Prog],
    requests: u64,
) -> String {
    let tls: Vec<_> = crate::bpf_progs::delta(before, after)
        .into_iter()
        .filter(|p| p.run_cnt > 0 && (p.name.starts_with("ssl_") || p.name.starts_with("tls_")))
        .collect();
    let n = requests.max(1) as f64;
    let ns: u64 = tls.iter().map(|p| p.run_time_ns).sum();
    let runs: u64 = tls.iter().map(|p| p.run_cnt).sum();
    let parts: Vec<String> = tls
        .iter()
        .map(|p| format!("{} {:.1}", p.name, p.run_cnt as f64 / n))
        .collect();
    format!(
        "TLS programs {:.1} µs in {:.1} uprobe hits per request ({})",
        ns as f64 / n / 1e3,
        runs as f64 / n,
        parts.join(", ")
    )
}

pub fn run(bin: &std::path::Path, rounds: usize) -> Result<()> {
    let claude = root().join(CLAUDE);
    crate::npm::ensure()?;
    if !claude.is_file() {
        bail!("{} missing after npm ci", claude.display());
    }
    let ns = Netns::new()?;
    let server = BenchServer::start_with(|cert, key| {
        let mut c = ns.command(PYTHON);
        c.arg(root().join("tests/fixtures/https_server.py"))
            .arg(cert)
            .arg(key)
            .arg("127.0.0.1");
        Ok(c)
    })?;
    let home = server.dir.join("home");
    std::fs::create_dir_all(&home)?;
    let s = Setup {
        ns,
        server,
        claude,
        home,
    };
    println!();
    println!(
        "Claude Code path vs Node's: POST /v1/messages (~48 KB body, SSE answer) to a local stand-in, {rounds} rounds of off/on"
    );
    // Warm both (page cache of the 400 MB executable, Node's modules).
    s.node()?;
    s.claude()?;

    let (mut node_ratio, mut node_off, mut node_on) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cc_off, mut cc_on) = (Vec::new(), Vec::new());
    let mut node_profile = String::new();
    let mut cc_profile = String::new();
    let mut cc_requests = 0;
    for round in 0..rounds {
        crate::bpf_progs::ensure_no_sensor()?;
        let off = s.node()?;
        let (c_off, _) = s.claude()?;
        let sensor = RunningSensor::start(bin)?;
        std::thread::sleep(SETTLE);
        let stats = crate::bpf_progs::Stats::enable()?;
        let p0 = crate::bpf_progs::loaded()?;
        let on = s.node()?;
        let p1 = crate::bpf_progs::loaded()?;
        let (c_on, n) = s.claude()?;
        let p2 = crate::bpf_progs::loaded()?;
        drop(stats);
        sensor.stop()?;
        std::thread::sleep(SETTLE);
        if round == 0 {
            // The programs per request, once (stats bias what they time).
            let node_n = u64::from(NODE_REQUESTS) + 1;
            node_profile = format!(
                "{}; all programs: {}",
                tls_per_request(&p0, &p1, node_n),
                programs_per_op(&p0, &p1, node_n, "Node request")
            );
            cc_profile = format!(
                "{}; all programs, start-up included: {}",
                tls_per_request(&p1, &p2, n as u64),
                programs_per_op(&p1, &p2, n as u64, "Claude Code request")
            );
            cc_requests = n;
        }
        node_ratio.push(off / on);
        node_off.push(off);
        node_on.push(on);
        cc_off.push(c_off);
        cc_on.push(c_on);
    }
    let node_off = median(&mut node_off);
    let node_on = median(&mut node_on);
    println!(
        "  Node https: {node_off:.0} µs per request off, {node_on:.0} on, ratio {:.3} (median of {rounds}); {node_profile}",
        median(&mut node_ratio)
    );
    let cc_off = median(&mut cc_off);
    let cc_on = median(&mut cc_on);
    println!(
        "  Claude Code -p: {cc_off:.0} ms per run off, {cc_on:.0} on (start-up dominates; {cc_requests} requests in the profiled run); {cc_profile}"
    );
    Ok(())
}
