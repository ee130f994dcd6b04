//! The tests that run on both kernels of the matrix: the host's (6.18 on
//! the development machines: tracepoint connect, cgroup isolation) and
//! Debian's 6.1 in the `cargo xtask vm-test` guest (fexit connect, BPF LSM
//! isolation). They need no Python: the clients are curl, openssl and
//! `e2e-puppet` (tests/src/bin), the servers are in this process or
//! `openssl s_server`.
//!
//! Which methods a kernel must get: `SENSOR_E2E_EXPECT_METHODS`
//! ("connect=fexit,isolation=lsm", set by the guest suite for the 6.1
//! kernel it boots), else what this test finds the kernel allows with its
//! own probes (aya's feature probes, the kprobe PMU, the LSM list), which
//! share no code with the sensor's.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use e2e::{
    HttpServer, Puppet, RecordingServer, RefusedPort, Sensor, Value, assert_no_pins_left,
    hook_choice, kind, pid, require_root, run, self_signed_cert, serial,
};

const PUPPET: &str = env!("CARGO_BIN_EXE_e2e-puppet");

/// What a kernel must get, and where that expectation came from.
struct Expected {
    connect: String,
    /// The connect method when fexit is avoided (`attach.avoid`).
    connect_next: String,
    isolation: String,
    source: String,
}

const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe/type";

fn expected_methods() -> Expected {
    if let Ok(spec) = std::env::var("SENSOR_E2E_EXPECT_METHODS") {
        let get = |key: &str| {
            spec.split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("SENSOR_E2E_EXPECT_METHODS={spec:?} names no {key}"))
                .to_string()
        };
        return Expected {
            connect: get("connect"),
            connect_next: get("connect_next"),
            isolation: get("isolation"),
            source: format!("SENSOR_E2E_EXPECT_METHODS={spec}"),
        };
    }
    let (tracing, lsm) = independent_probes();
    let kprobe_pmu = Path::new(KPROBE_PMU).exists();
    let next = if kprobe_pmu { "kprobe" } else { "tracepoint" };
    Expected {
        connect: if tracing { "fexit" } else { next }.into(),
        connect_next: next.into(),
        isolation: if lsm { "lsm" } else { "cgroup" }.into(),
        source: format!(
            "this test's probes: tracing {tracing}, kprobe PMU {kprobe_pmu}, lsm {lsm}"
        ),
    }
}

/// Whether this kernel loads tracing (fentry/fexit) programs and LSM
/// programs with `bpf` active, by aya's own feature probes (a trivial
/// program of each type; a refusal such as EPERM counts as no).
fn independent_probes() -> (bool, bool) {
    use aya::{
        programs::{LsmAttachType, ProgramType},
        sys::is_program_supported,
    };
    let tracing = is_program_supported(ProgramType::Tracing).unwrap_or(false);
    let lsm_listed = std::fs::read_to_string("/sys/kernel/security/lsm")
        .is_ok_and(|l| l.trim().split(',').any(|m| m == "bpf"));
    let lsm =
        lsm_listed && is_program_supported(ProgramType::Lsm(LsmAttachType::Mac)).unwrap_or(false);
    (tracing, lsm)
}

fn status_json(sensor: &Sensor) -> Value {
    let (ok, json, err) = sensor.cli(&["status", "--json"]);
    assert!(ok, "sensor status --json: {err}");
    serde_json::from_str(&json).expect("status --json is JSON")
}

/// The table's methods for a hook, in preference order
/// (sensor/src/attach.rs): everything before the chosen one must be
/// reported as skipped, with a reason.
fn table(hook: &str) -> &'static [&'static str] {
    match hook {
        "connect" => &["fexit", "kprobe", "tracepoint"],
        "isolation" => &["lsm", "cgroup"],
        _ => unreachable!(),
    }
}

/// What a skipped method needs, as its reason must name it.
fn needs(method: &str) -> &'static str {
    match method {
        "fexit" => "fentry",
        "kprobe" => "kprobe",
        "lsm" => "lsm",
        _ => "",
    }
}

#[test]
fn attach_methods_are_the_best_this_kernel_allows_and_say_why() {
    let _g = serial();
    if !require_root("attach_methods_are_the_best_this_kernel_allows_and_say_why") {
        return;
    }
    let Expected {
        connect: want_connect,
        isolation: want_isolation,
        source,
        ..
    } = expected_methods();
    eprintln!(
        "kernel matrix: expecting connect={want_connect} isolation={want_isolation} ({source})"
    );
    let sensor = Sensor::start();
    let st = status_json(&sensor);
    for (hook, want) in [("connect", &want_connect), ("isolation", &want_isolation)] {
        let (method, skipped) = hook_choice(&st, hook);
        assert_eq!(&method, want, "{hook} (expected from {source}): {st}");
        let order = table(hook);
        let before: Vec<&str> = order
            .iter()
            .take_while(|m| **m != method)
            .copied()
            .collect();
        let names: Vec<&str> = skipped.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(names, before, "{hook}: the better methods skipped: {st}");
        for (m, why) in &skipped {
            assert!(
                why.contains(&format!("needs {}", needs(m))) || why.starts_with("failed: "),
                "{hook}: skipping {m} must say why: {why:?}"
            );
        }
    }
    // The guest's kernel allows what the host's refuses: the test there
    // is told so, and the kernel must agree with it.
    if std::env::var("SENSOR_E2E_EXPECT_METHODS").is_ok() {
        let (tracing, lsm) = independent_probes();
        assert_eq!(
            tracing,
            want_connect == "fexit",
            "aya's tracing probe disagrees"
        );
        assert_eq!(lsm, want_isolation == "lsm", "aya's LSM probe disagrees");
    }
    // The programs in force are the chosen method's.
    let programs: Vec<&str> = st["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["program"].as_str())
        .collect();
    let connect_programs: &[&str] = match want_connect.as_str() {
        "fexit" => &["connect_fexit"],
        "kprobe" => &["connect_kprobe", "connect_kretprobe"],
        _ => &["sys_enter_connect", "sys_exit_connect"],
    };
    let isolation_programs: &[&str] = match want_isolation.as_str() {
        "lsm" => &[
            "isolate_lsm_connect",
            "isolate_lsm_sendmsg",
            "isolate_lsm_recvmsg",
        ],
        _ => &[
            "isolate_connect4",
            "isolate_connect6",
            "isolate_sendmsg4",
            "isolate_sendmsg6",
        ],
    };
    for p in connect_programs.iter().chain(isolation_programs) {
        assert!(programs.contains(p), "{p} not attached: {programs:?}");
    }
    for p in [
        "connect_fexit",
        "connect_kprobe",
        "sys_enter_connect",
        "isolate_lsm_connect",
        "isolate_connect4",
    ] {
        if !connect_programs.contains(&p) && !isolation_programs.contains(&p) {
            assert!(
                !programs.contains(&p),
                "{p} attached beside the chosen method: {programs:?}"
            );
        }
    }
    let degraded = st["degraded"].as_array().cloned().unwrap_or_default();
    assert!(
        !degraded
            .iter()
            .any(|d| d.as_str().unwrap_or("").contains("unavailable")),
        "{degraded:?}"
    );
    // The same in the text status and the startup log.
    let (ok, text, err) = sensor.cli(&["status"]);
    assert!(ok, "{err}");
    for (hook, want) in [("connect", &want_connect), ("isolation", &want_isolation)] {
        assert!(
            text.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.first() == Some(&hook) && w.get(1) == Some(&want.as_str())
            }),
            "{hook} {want} not in the status text:\n{text}"
        );
    }
    let log = sensor.stderr();
    // For the vm-test summary: the status, and the start-up log (its
    // timestamps show where a start spends its time).
    if let Some(out) = std::env::var_os("SENSOR_E2E_STATUS_OUT") {
        let out = std::path::PathBuf::from(out);
        std::fs::write(&out, &text).unwrap();
        std::fs::write(out.with_extension("log"), &log).unwrap();
    }
    for (hook, want) in [("connect", &want_connect), ("isolation", &want_isolation)] {
        assert!(
            log.lines().any(|l| l.contains("attach method chosen")
                && l.contains(&format!("hook=\"{hook}\""))
                && l.contains(&format!("method=\"{want}\""))),
            "no startup line for {hook}:\n{log}"
        );
    }
    connects_are_reported(&sensor);
    sensor.stop();
}

/// The connect method in force reports connects: curl's non-blocking one
/// and a refused one.
fn connects_are_reported(sensor: &Sensor) {
    let server = HttpServer::start("127.0.0.1");
    let (child, status) = run(Command::new("curl").args([
        "-sS",
        "-m",
        "5",
        &format!("http://127.0.0.1:{}/", server.port),
    ]));
    assert!(status.success(), "curl: {status}");
    let ev = sensor.wait_for("curl's connect", |v| {
        kind(v) == "connect" && pid(v) == u64::from(child) && v["dport"] == server.port
    });
    assert_eq!(ev["result_name"], "EINPROGRESS", "{ev}");
    assert_eq!(ev["daddr"], "127.0.0.1", "{ev}");
    let refused = RefusedPort::bind("::1");
    let port = refused.port;
    let mut p = Puppet::start(PUPPET);
    assert_eq!(p.ask(&format!("connect ::1 {port}")), "err ECONNREFUSED");
    let ev = sensor.wait_for("the refused connect", |v| {
        kind(v) == "connect" && pid(v) == u64::from(p.pid) && v["dport"] == port
    });
    // connect_timeout connects non-blocking: the syscall says EINPROGRESS,
    // the refusal comes later on the socket.
    assert_eq!(ev["result"], -115, "{ev}");
    assert_eq!(ev["family"], "ipv6", "{ev}");
    assert_eq!(ev["daddr"], "::1", "{ev}");
}

/// `attach.avoid` passes over the best method: the next one in the table
/// takes the hook and does the same work (on the 6.1 guest this is how
/// the kprobe connect method and the cgroup isolation programs run).
#[test]
fn the_next_method_takes_over_when_the_best_is_avoided() {
    let _g = serial();
    if !require_root("the_next_method_takes_over_when_the_best_is_avoided") {
        return;
    }
    let want = expected_methods();
    let config = "[attach]\navoid = [\"connect:fexit\", \"isolation:lsm\"]\n";
    let sensor = Sensor::start_with(&["--json"], Some(config));
    let st = status_json(&sensor);
    let avoided = "avoided by the configuration (attach.avoid)";
    let (method, skipped) = hook_choice(&st, "connect");
    assert_eq!(method, want.connect_next, "({}) {st}", want.source);
    assert_eq!(
        skipped[0],
        ("fexit".to_string(), avoided.to_string()),
        "{st}"
    );
    let (method, skipped) = hook_choice(&st, "isolation");
    assert_eq!(method, "cgroup", "{st}");
    assert_eq!(skipped, [("lsm".to_string(), avoided.to_string())], "{st}");
    connects_are_reported(&sensor);
    let server = RecordingServer::start("127.0.0.1");
    let main = format!("127.0.0.1 {}", server.port);
    let mut agent = Puppet::start(PUPPET);
    isolate(&sensor, agent.pid, &["--why", "fallback"]);
    assert_eq!(agent.ask(&format!("connect {main}")), "err EPERM");
    assert_eq!(agent.ask(&format!("udp {main}")), "err EPERM");
    let (ok, _, err) = sensor.cli(&["release", &agent.pid.to_string()]);
    assert!(ok, "{err}");
    assert_eq!(agent.ask(&format!("connect {main}")), "ok");
    let sensor_pid = sensor.pid;
    let (_, stderr) = sensor.stop();
    assert_no_pins_left(sensor_pid, &stderr);
}

/// curl (libssl.so.3, uprobes) against `openssl s_server` on loopback.
#[test]
fn tls_to_openssl_s_server_becomes_an_api_call() {
    let _g = serial();
    if !require_root("tls_to_openssl_s_server_becomes_an_api_call") {
        return;
    }
    let sensor = Sensor::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_cert(dir.path());
    // -HTTP serves files relative to its directory, each holding a whole
    // response, so it can carry a Content-Length.
    std::fs::create_dir(dir.path().join("matrix")).unwrap();
    std::fs::write(
        dir.path().join("matrix/tls"),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n",
    )
    .unwrap();
    // Port 0: the kernel picks a free one, which s_server prints once it
    // listens ("ACCEPT 127.0.0.1:PORT").
    let mut server = Command::new("openssl")
        .args(["s_server", "-HTTP", "-accept", "127.0.0.1:0"])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let port: u16 = loop {
        let mut line = String::new();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "openssl s_server exited before it listened");
        if let Some(addr) = line.trim().strip_prefix("ACCEPT ") {
            break addr.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    // What it prints per request is read, so it never blocks on the pipe.
    std::thread::spawn(move || for _ in out.lines().map_while(Result::ok) {});
    let url = format!("https://127.0.0.1:{port}/matrix/tls");
    let out = Command::new("curl")
        .args(["-sk", "-m", "10", &url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.status.success(), "curl {url}: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    let call = sensor.wait_for("curl's api_call", |v| {
        kind(v) == "api_call"
            && v["path"] == "/matrix/tls"
            && v["process"]["exe"] == "/usr/bin/curl"
    });
    assert_eq!(call["method"], "GET", "{call}");
    assert_eq!(call["status"], 200, "{call}");
    assert_eq!(call["transport"], "tls", "{call}");
    assert_eq!(call["tls_library"], "openssl", "{call}");
    assert_eq!(
        call["dport"], port,
        "the call is tied to its socket: {call}"
    );
    sensor.stop();
}

fn isolate(sensor: &Sensor, pid: u32, extra: &[&str]) {
    let pid = pid.to_string();
    let mut args = vec!["isolate", pid.as_str()];
    args.extend(extra);
    let (ok, out, err) = sensor.cli(&args);
    assert!(ok, "isolate: {err}");
    assert!(out.contains(&pid), "{out}");
}

fn posts(server: &RecordingServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST "))
        .count()
}

#[test]
fn isolation_refuses_the_isolated_process_and_its_forks_only() {
    let _g = serial();
    if !require_root("isolation_refuses_the_isolated_process_and_its_forks_only") {
        return;
    }
    let method = expected_methods().isolation;
    let sensor = Sensor::start();
    let server = RecordingServer::start("127.0.0.1");
    // Listed networks stay reachable: 127.0.0.2 is loopback too, but not
    // allowed as loopback (no --allow-loopback), only as a network.
    let allowed = RecordingServer::start("127.0.0.2");
    let v6 = HttpServer::start("::1");
    let main = format!("127.0.0.1 {}", server.port);
    let mut agent = Puppet::start(PUPPET);
    let mut bystander = Puppet::start(PUPPET);
    // A keep-alive connection that exists before isolation.
    assert_eq!(agent.ask(&format!("open {main}")), "ok");
    assert_eq!(agent.ask("request GET /warmup"), "ok 200");

    isolate(
        &sensor,
        agent.pid,
        &["--allow", "127.0.0.2/32", "--why", "matrix"],
    );
    assert_eq!(
        agent.ask(&format!("connect {main}")),
        "err EPERM",
        "new connect"
    );
    assert_eq!(
        agent.ask(&format!("connect ::1 {}", v6.port)),
        "err EPERM",
        "IPv6 connect"
    );
    assert_eq!(agent.ask(&format!("udp {main}")), "err EPERM", "UDP send");
    assert_eq!(
        agent.ask(&format!("child {main}")),
        "err EPERM",
        "a child forked after"
    );
    assert_eq!(
        agent.ask(&format!("connect 127.0.0.2 {}", allowed.port)),
        "ok",
        "an allowed network"
    );
    let r = agent.ask("request POST /v1/orders");
    if method == "lsm" {
        // socket_sendmsg refuses the write itself, before TCP looks at
        // the connection (which SOCK_DESTROY may have aborted).
        assert_eq!(r, "err EPERM", "the open keep-alive connection");
    } else {
        assert!(r.starts_with("err "), "the open keep-alive connection: {r}");
    }
    assert_eq!(
        posts(&server),
        0,
        "the server got a request from an isolated process"
    );
    // Nobody else is touched.
    assert_eq!(bystander.ask(&format!("connect {main}")), "ok");
    assert_eq!(bystander.ask(&format!("open {main}")), "ok");
    assert_eq!(bystander.ask("request POST /v1/orders"), "ok 201");
    assert_eq!(posts(&server), 1);

    let (ok, listing, err) = sensor.cli(&["isolated"]);
    assert!(ok, "{err}");
    assert!(
        listing.contains(&agent.pid.to_string()) && listing.contains("matrix"),
        "{listing}"
    );
    let (ok, _, err) = sensor.cli(&["release", &agent.pid.to_string()]);
    assert!(ok, "release: {err}");
    assert_eq!(agent.ask(&format!("connect {main}")), "ok");
    assert_eq!(agent.ask(&format!("udp {main}")), "ok");
    assert_eq!(agent.ask(&format!("child {main}")), "ok");
    assert_eq!(agent.ask(&format!("open {main}")), "ok");
    assert_eq!(agent.ask("request POST /v1/orders"), "ok 201");
    let sensor_pid = sensor.pid;
    let (_, stderr) = sensor.stop();
    assert_no_pins_left(sensor_pid, &stderr);
}

#[test]
fn isolation_outlives_a_daemon_crash_and_the_next_takes_it_over() {
    let _g = serial();
    if !require_root("isolation_outlives_a_daemon_crash_and_the_next_takes_it_over") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let sensor = Sensor::start_in(state.path(), &["--json"], None);
    let server = RecordingServer::start("127.0.0.1");
    let main = format!("127.0.0.1 {}", server.port);
    let mut agent = Puppet::start(PUPPET);
    isolate(&sensor, agent.pid, &["--why", "before the crash"]);
    assert_eq!(agent.ask(&format!("connect {main}")), "err EPERM");
    sensor.crash();
    // No daemon: the pinned links and maps still enforce. (Its forks are
    // not isolated meanwhile: the fork program is not pinned, README.)
    assert_eq!(
        agent.ask(&format!("connect {main}")),
        "err EPERM",
        "daemon down"
    );
    assert_eq!(
        agent.ask(&format!("udp {main}")),
        "err EPERM",
        "daemon down"
    );
    let sensor = Sensor::start_in(state.path(), &["--json"], None);
    assert!(
        sensor
            .stderr()
            .contains("replacing a previous daemon's pinned link"),
        "{}",
        sensor.stderr()
    );
    assert_eq!(
        agent.ask(&format!("connect {main}")),
        "err EPERM",
        "after the restart"
    );
    let (ok, listing, err) = sensor.cli(&["isolated"]);
    assert!(ok, "{err}");
    assert!(
        listing.contains(&agent.pid.to_string()) && listing.contains("before the crash"),
        "{listing}"
    );
    let (ok, _, err) = sensor.cli(&["release", &agent.pid.to_string()]);
    assert!(ok, "{err}");
    assert_eq!(agent.ask(&format!("connect {main}")), "ok");
    let sensor_pid = sensor.pid;
    let (_, stderr) = sensor.stop();
    assert_no_pins_left(sensor_pid, &stderr);
    assert_eq!(posts(&server), 0);
}
