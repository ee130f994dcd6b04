//! The SOC's view: the gRPC API driven by a Python client generated from
//! the proto with grpcio-tools, the stock health and reflection clients,
//! the mTLS TCP listener, lag reporting, the audit trail across restarts
//! and crashes, and the CLI on top.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use e2e::{
    HttpServer, RefusedPort, Sensor, Value, kind, pid, python3, require_root, run, serial,
    venv_python,
};

fn target(sensor: &Sensor) -> String {
    sensor.api_target()
}

/// Runs the Python API client (target first) to completion.
fn client(args: &[&str]) -> (bool, Vec<Value>, String) {
    e2e::api_client(args[0], &args[1..])
}

/// Starts a streaming client and waits until its subscription is in place.
fn subscriber(args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(venv_python())
        .arg(e2e::api_client_script())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the Python subscriber");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("subscriber output");
    assert!(line.contains("subscribed"), "subscriber said {line:?}");
    (child, out)
}

fn lines(out: BufReader<ChildStdout>) -> Vec<Value> {
    out.lines()
        .map_while(Result::ok)
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect()
}

fn curl(url: &str) -> u32 {
    let (child, status) = run(Command::new("curl").args(["-sS", "-m", "5", url]));
    assert!(status.success(), "curl {url}: {status}");
    child
}

#[test]
fn generated_python_client_gets_filtered_live_events() {
    let _g = serial();
    if !require_root("generated_python_client_gets_filtered_live_events") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpServer::start("127.0.0.1");
    let t = target(&sensor);
    let (mut sub, out) = subscriber(&[
        &t,
        "subscribe",
        "--kind",
        "api_call",
        "--exe",
        "curl$",
        "--count",
        "1",
    ]);
    // A python call first: the filter must leave it out.
    let url = format!("http://127.0.0.1:{}", server.port);
    let (py, status) = run(Command::new(python3()).args([
        "-c",
        &format!("import urllib.request; urllib.request.urlopen('{url}/from-python').read()"),
    ]));
    assert!(status.success());
    sensor.wait_for("python's api_call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(py)
    });
    let c = curl(&format!("{url}/from-curl"));
    let status = sub.wait().unwrap();
    assert!(status.success(), "subscriber: {status}");
    let got = lines(out);
    assert_eq!(got.len(), 1, "{got:?}");
    let e = &got[0];
    assert_eq!(e["kind"], "api_call", "{e}");
    assert_eq!(e["process"]["pid"], c, "{e}");
    assert_eq!(e["api_call"]["path"], "/from-curl", "{e}");
    assert_eq!(e["api_call"]["status"], 200, "{e}");
    assert!(!e["node"].as_str().unwrap().is_empty(), "{e}");
    let id = e["process"]["process_id"].as_str().unwrap();
    assert!(
        id.ends_with(&format!(
            ":{c}:{}",
            e["process"]["start_ticks"].as_str().unwrap()
        )),
        "{e}"
    );
    assert!(
        e["seq"].as_str().unwrap().parse::<u64>().unwrap() > 0,
        "{e}"
    );
    sensor.stop();
}

#[test]
fn health_reflection_status_and_cli() {
    let _g = serial();
    if !require_root("health_reflection_status_and_cli") {
        return;
    }
    let sensor = Sensor::start();
    let t = target(&sensor);
    let (ok, out, err) = client(&[&t, "health"]);
    assert!(ok, "{err}");
    assert_eq!(out[0]["status"], "SERVING");
    let (ok, out, err) = client(&[&t, "reflect"]);
    assert!(ok, "{err}");
    let services: Vec<&str> = out[0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for s in [
        "sensor.v1.Events",
        "sensor.v1.Sensor",
        "sensor.v1.Agents",
        "sensor.v1.Baselines",
        "sensor.v1.Response",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(services.contains(&s), "{s} not in {services:?}");
    }
    let (ok, out, err) = client(&[&t, "status"]);
    assert!(ok, "{err}");
    let st = &out[0];
    assert_eq!(st["pid"], sensor.pid, "{st}");
    let caps: Vec<&str> = st["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        caps.contains(&"tracepoint") && caps.contains(&"uprobe"),
        "{st}"
    );
    // Each probed program type is either proven or refused with a reason
    // (which one depends on the kernel: 6.18 here refuses all three).
    let refused: Vec<&str> = st["unavailable"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for t in ["kprobe", "fentry", "lsm"] {
        let proven = caps.contains(&t);
        let why = refused.iter().any(|r| r.starts_with(&format!("{t}: ")));
        assert!(proven != why, "{t}: proven {proven}, refused {why}: {st}");
    }
    // Whichever method carries connects here, it is attached, and every
    // hook says what it chose or why it has nothing (stock gRPC clients
    // see the same HookChoice list as `sensor status`).
    let (connect, _) = e2e::hook_choice(st, "connect");
    let program = match connect.as_str() {
        "fexit" => "connect_fexit",
        "kprobe" => "connect_kprobe",
        _ => "sys_enter_connect",
    };
    assert!(
        st["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["program"] == program),
        "{st}"
    );
    for h in st["hooks"].as_array().expect("hooks in Status") {
        let chosen = h["method"].as_str().is_some_and(|m| !m.is_empty());
        let why_not = h["unavailable"].as_str().is_some_and(|m| !m.is_empty());
        assert!(chosen != why_not, "{h}");
        for k in h["skipped"].as_array().into_iter().flatten() {
            assert!(k["reason"].as_str().is_some_and(|r| !r.is_empty()), "{h}");
        }
    }
    let (isolation, _) = e2e::hook_choice(st, "isolation");
    assert!(["lsm", "cgroup"].contains(&isolation.as_str()), "{st}");
    // The socket is root-only.
    let mode = std::fs::metadata(&sensor.socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    // The CLI over the same API.
    let (ok, text, err) = sensor.cli(&["status"]);
    assert!(ok, "{err}");
    assert!(text.contains(program), "{text}");
    assert!(text.contains("attach methods:"), "{text}");
    assert!(text.contains("capabilities:"), "{text}");
    let (ok, json, err) = sensor.cli(&["status", "--json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&json).expect("status --json is JSON");
    assert_eq!(v["pid"], sensor.pid);
    // The health check the Kubernetes probes run (deploy/kubernetes).
    let (ok, text, err) = sensor.cli(&["health"]);
    assert!(ok, "{err}");
    assert_eq!(text.trim(), "SERVING");
    let (ok, text, err) = sensor.cli(&["health", "--service", "sensor.v1.Response", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["status"],
        "SERVING"
    );
    let (ok, _, err) = sensor.cli(&["health", "--service", "no.such.Service"]);
    assert!(!ok && err.contains("health"), "{err}");
    sensor.stop();
    let out = Command::new(e2e::sensor_bin())
        .args(["health", "--socket", "/nonexistent/sensor.sock"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not running"),
        "{out:?}"
    );
    // Once it is gone, the CLI says so plainly.
    let out = Command::new(e2e::sensor_bin())
        .args(["status", "--socket", "/nonexistent/sensor.sock"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn slow_subscriber_is_told_it_lagged_and_nothing_else_drops() {
    let _g = serial();
    if !require_root("slow_subscriber_is_told_it_lagged_and_nothing_else_drops") {
        return;
    }
    let sensor = Sensor::start_with(
        &["--json"],
        Some("[api]\nsubscriber_queue = 16\n[metrics]\nlisten = \"127.0.0.1:0\"\n"),
    );
    let t = target(&sensor);
    let (mut sub, out) = subscriber(&[&t, "slow", "--sleep", "8", "--kind", "connect"]);
    // Thousands of refused connects: far more than the subscriber's queue
    // plus what HTTP/2 flow control lets the server send ahead.
    let refused = RefusedPort::bind("127.0.0.1");
    let port = refused.port;
    let script = format!(
        "import socket\nfor _ in range(4000):\n    s = socket.socket()\n    try:\n        s.connect(('127.0.0.1', {port}))\n    except OSError:\n        pass\n    s.close()\n"
    );
    let (_, status) = run(Command::new(python3()).args(["-c", &script]));
    assert!(status.success());
    let started = Instant::now();
    let status = sub.wait().unwrap();
    assert!(status.success(), "subscriber: {status}");
    let got = lines(out);
    let lag = got
        .iter()
        .find(|e| e["kind"] == "lagged")
        .unwrap_or_else(|| panic!("no lagged event in {} events", got.len()));
    let missed: u64 = lag["lagged"]["missed"].as_str().unwrap().parse().unwrap();
    assert!(missed > 0, "{lag}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // /metrics counts what the subscriber missed, and no pipeline drop.
    let m = sensor.scrape();
    assert!(
        m.value("sensor_api_missed_events_total", &[]) >= missed as f64,
        "{}",
        m.0
    );
    assert!(m.value("sensor_api_lagged_total", &[]) >= 1.0, "{}", m.0);
    for drops in [
        "sensor_ringbuf_drops_total",
        "sensor_pipeline_queue_drops_total",
    ] {
        assert!(m.has(drops), "{drops} missing: {}", m.0);
        assert_eq!(m.value(drops, &[]), 0.0, "{drops}");
    }
    let (_, stderr) = sensor.stop();
    // The pipeline itself lost nothing: only the slow subscriber missed.
    for counter in ["ringbuf_full_drops=0", "queue_full_drops=0"] {
        assert!(stderr.contains(counter), "{counter}:\n{stderr}");
    }
}

/// Paths of the api_call events `sensor events` returns from the store,
/// and the highest sequence number among them.
fn stored_calls(sensor: &Sensor) -> (Vec<String>, u64) {
    let (ok, out, err) = sensor.cli(&["events", "--kind", "api_call", "--last", "1000", "--json"]);
    assert!(ok, "{err}");
    let mut seq = 0;
    let paths = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            // proto3 JSON writes 64-bit integers as strings.
            seq = seq.max(v["seq"].as_str().unwrap().parse().unwrap());
            v["api_call"]["path"].as_str().unwrap().to_string()
        })
        .collect();
    (paths, seq)
}

#[test]
fn history_survives_restart_and_crash() {
    let _g = serial();
    if !require_root("history_survives_restart_and_crash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start("127.0.0.1");
    let url = |p: &str| format!("http://127.0.0.1:{}/{p}", server.port);

    let sensor = Sensor::start_in(dir.path(), &["--json"], None);
    let a = curl(&url("before-restart"));
    sensor.wait_for("first call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(a)
    });
    sensor.stop();

    let sensor = Sensor::start_in(dir.path(), &["--json"], None);
    let (paths, _) = stored_calls(&sensor);
    assert!(paths.iter().any(|p| p == "/before-restart"), "{paths:?}");
    // `sensor history <pid>` names what that process did.
    let (ok, text, err) = sensor.cli(&["history", &a.to_string()]);
    assert!(ok, "{err}");
    assert!(
        text.contains("/before-restart") && text.contains("exec"),
        "{text}"
    );
    let b = curl(&url("before-crash"));
    sensor.wait_for("second call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(b)
    });
    // The store commits at least once a second, one row per event in
    // order: once this run has committed as many rows as it printed events
    // up to the call, the call is on disk whatever happens next.
    let upto = sensor
        .events()
        .iter()
        .position(|v| kind(v) == "api_call" && pid(v) == u64::from(b))
        .unwrap() as u64
        + 1;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out, err) = sensor.cli(&["status", "--json"]);
        assert!(ok, "{err}");
        let st: Value = serde_json::from_str(&out).unwrap();
        let written: u64 = match &st["counters"]["audit_rows_written"] {
            Value::String(s) => s.parse().unwrap(),
            v => v.as_u64().unwrap_or(0),
        };
        if written >= upto {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{written} of {upto} rows committed after 10 s: {st}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = sensor.crash();

    let sensor = Sensor::start_in(dir.path(), &["--json"], None);
    let (paths, stored_seq) = stored_calls(&sensor);
    assert!(paths.iter().any(|p| p == "/before-restart"), "{paths:?}");
    assert!(paths.iter().any(|p| p == "/before-crash"), "{paths:?}");
    // Numbering continues after what the store holds.
    let c = curl(&url("after-crash"));
    let ev = sensor.wait_for("third call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(c)
    });
    assert!(
        ev["seq"].as_u64().unwrap() > stored_seq,
        "{ev} vs {stored_seq}"
    );
    sensor.stop();
}

#[test]
fn tcp_listener_demands_a_client_certificate_from_its_ca() {
    let _g = serial();
    if !require_root("tcp_listener_demands_a_client_certificate_from_its_ca") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new(d);
    let config = format!(
        "[api.tcp]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        pki.server_cert, pki.server_key, pki.ca_cert
    );
    let sensor = Sensor::start_with(&["--json"], Some(&config));
    let listen = sensor.listen_addr("API listening (TCP");
    let base = [
        listen.as_str(),
        "health",
        "--ca",
        &pki.ca_cert,
        "--timeout",
        "5",
    ];
    let (ok, _, err) = client(&base);
    assert!(!ok, "served without a client certificate");
    assert!(err.contains("UNAVAILABLE"), "{err}");
    let mut rogue = base.to_vec();
    rogue.extend(["--cert", &pki.rogue_cert, "--key", &pki.rogue_key]);
    let (ok, _, err) = client(&rogue);
    assert!(!ok, "served a certificate from another CA");
    assert!(err.contains("UNAVAILABLE"), "{err}");
    let mut good = base.to_vec();
    good.extend(["--cert", &pki.client_cert, "--key", &pki.client_key]);
    let (ok, out, err) = client(&good);
    assert!(ok, "{err}");
    assert_eq!(out[0]["status"], "SERVING");
    sensor.stop();
}

#[test]
fn tcp_control_is_limited_to_named_client_certificates() {
    let _g = serial();
    if !require_root("tcp_control_is_limited_to_named_client_certificates") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    // responder is named by its SAN DNS name; reader, from the same CA,
    // is not named at all.
    let config = format!(
        "[api.tcp]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\ncontrol_clients = [\"responder.soc.test\"]\n",
        pki.server_cert, pki.server_key, pki.ca_cert
    );
    let sensor = Sensor::start_with(&["--json"], Some(&config));
    let listen = sensor.listen_addr("API listening (TCP");
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = victim.id().to_string();
    let as_ = |who: &str, args: &[&str]| {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.extend(pki.client_args(who));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        e2e::api_client(&listen, &a)
    };
    let (ok, _, err) = as_("reader", &["isolate", "--pid", &pid, "--why", "e2e"]);
    assert!(!ok, "reader was allowed to isolate");
    assert!(
        err.contains("PERMISSION_DENIED")
            && err.contains("CN=reader")
            && err.contains("api.tcp.control_clients"),
        "{err}"
    );
    let (ok, out, err) = as_("responder", &["isolate", "--pid", &pid, "--why", "e2e"]);
    assert!(ok, "responder: {err}");
    assert_eq!(out[0]["targets"][0]["pid"], victim.id(), "{out:?}");
    // Both can read: the reader's stream shows the responder's action,
    // naming the certificate that asked.
    for who in ["reader", "responder"] {
        let (ok, out, err) = as_(
            who,
            &[
                "subscribe",
                "--kind",
                "action",
                "--replay",
                "10000",
                "--count",
                "1",
            ],
        );
        assert!(ok, "{who} subscribe: {err}");
        let a = &out[1];
        assert_eq!(a["action"]["action"], "isolate", "{a}");
        assert_eq!(a["action"]["outcome"], "done", "{a}");
        let by = a["action"]["by"].as_str().unwrap();
        assert!(
            by.contains("CN=responder") && by.contains("DNS=responder.soc.test"),
            "{by}"
        );
    }
    let (ok, _, err) = as_("reader", &["release", "--pid", &pid]);
    assert!(!ok && err.contains("PERMISSION_DENIED"), "{err}");
    let (ok, _, err) = as_(
        "responder",
        &["release", "--pid", &pid, "--why", "e2e done"],
    );
    assert!(ok, "{err}");
    // The unix socket keeps control.
    let (ok, _, err) = sensor.cli(&["kill", &pid, "--why", "e2e"]);
    assert!(ok, "{err}");
    let _ = victim.wait();
    sensor.stop();
}

/// A CA with a server and three client certificates (`client`, `reader`
/// with their CN only, `responder` also with the SAN DNS name
/// responder.soc.test), and a client certificate from an unrelated CA;
/// made with the openssl CLI.
struct Pki {
    ca_cert: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    rogue_cert: String,
    rogue_key: String,
    dir: std::path::PathBuf,
}

impl Pki {
    /// --ca/--cert/--key arguments of the Python client for `name`.
    fn client_args(&self, name: &str) -> Vec<String> {
        let p = |n: String| self.dir.join(n).display().to_string();
        vec![
            "--ca".into(),
            self.ca_cert.clone(),
            "--cert".into(),
            p(format!("{name}.pem")),
            "--key".into(),
            p(format!("{name}.key")),
        ]
    }
}

impl Pki {
    fn new(d: &Path) -> Pki {
        let p = |n: &str| d.join(n).display().to_string();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for ca in ["ca", "rogue-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN={ca}"),
                "-keyout",
                &p(&format!("{ca}.key")),
                "-out",
                &p(&format!("{ca}.pem")),
            ]);
        }
        let ext = p("ext.cnf");
        std::fs::write(
            &ext,
            "[srv]\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n[cli]\nextendedKeyUsage=clientAuth\n[cli_san]\nsubjectAltName=DNS:responder.soc.test\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        for (name, ca, section) in [
            ("server", "ca", "srv"),
            ("client", "ca", "cli"),
            ("reader", "ca", "cli"),
            ("responder", "ca", "cli_san"),
            ("rogue", "rogue-ca", "cli"),
        ] {
            openssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &p(&format!("{name}.key")),
                "-out",
                &p(&format!("{name}.csr")),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &p(&format!("{name}.csr")),
                "-CA",
                &p(&format!("{ca}.pem")),
                "-CAkey",
                &p(&format!("{ca}.key")),
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &ext,
                "-extensions",
                section,
                "-out",
                &p(&format!("{name}.pem")),
            ]);
        }
        Pki {
            ca_cert: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
            rogue_cert: p("rogue.pem"),
            rogue_key: p("rogue.key"),
            dir: d.to_path_buf(),
        }
    }
}
