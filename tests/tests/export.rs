//! Export to the SOC: OTLP log records received by a local receiver built
//! from the upstream OTLP protos (Python `opentelemetry-proto` + grpcio),
//! and the JSON lines file, for a real client's traffic; planted secrets
//! in neither; a collector that is down costs counted losses only.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use e2e::{
    ChildLines, HttpsServer, RefusedPort, Sensor, Value, kind, pid, require_root, run, serial,
    summary_counter, venv_python,
};

/// The receiver fixture; every log record it got, as JSON (printed before
/// it answers the export, so all of them are read once the sensor has its
/// answer).
struct Receiver {
    port: u16,
    child: Child,
    records: ChildLines,
}

impl Receiver {
    /// On `port` (0: any free one); `tls`: server cert, key and, for
    /// mutual TLS, the CA of client certificates.
    fn start(port: u16, tls: &[&Path]) -> Receiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/otlp_receiver.py");
        let mut cmd = Command::new(venv_python());
        cmd.arg(script).arg(port.to_string()).args(tls);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the OTLP receiver");
        let (first, records) = ChildLines::start(child.stdout.take().unwrap());
        let port = first
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the receiver reports its port: {first:?}"));
        Receiver {
            port,
            child,
            records,
        }
    }

    /// OTLP/HTTP (`POST /v1/logs`, protobuf) on any free port.
    fn start_http() -> Receiver {
        Self::start(0, &[Path::new("http")])
    }

    fn records(&self) -> Vec<Value> {
        self.records
            .lines()
            .iter()
            .map(|l| serde_json::from_str(l).expect("receiver line is JSON"))
            .collect()
    }

    /// Waits up to `secs` for a record matching `pred`.
    fn wait_for(&self, what: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(r) = self.records().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no OTLP record {what} after {secs} s; got {} records",
                self.records().len()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn attr<'a>(r: &'a Value, k: &str) -> &'a Value {
    &r["attributes"][k]
}

fn of(r: &Value, kind: &str, pid: u32) -> bool {
    attr(r, "sensor.event.kind") == kind && attr(r, "process.pid") == pid
}

/// A counter from `sensor status --json` (uint64 values are strings in
/// proto3 JSON).
fn status_counter(sensor: &Sensor, key: &str) -> u64 {
    let (ok, out, err) = sensor.cli(&["status", "--json"]);
    assert!(ok, "sensor status: {err}");
    let v: Value = serde_json::from_str(&out).expect("status JSON");
    match &v["counters"][key] {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.as_u64().unwrap(),
        _ => 0,
    }
}

const SECRET: &str = "sk-live-PLANTED-otlp-4c2e9a";

/// curl with a planted credential in a header (and so in its command line).
fn curl_with_secret(port: u16) -> u32 {
    let url = format!("https://127.0.0.1:{port}/v1/orders?api_key={SECRET}");
    let auth = format!("Authorization: Bearer {SECRET}");
    let (child, status) =
        run(Command::new("curl").args(["-sSk", "-m", "10", "--http1.1", "-H", &auth, &url]));
    assert!(status.success(), "curl: {status}");
    child
}

#[test]
fn events_reach_an_otlp_receiver_and_the_file() {
    let _g = serial();
    if !require_root("events_reach_an_otlp_receiver_and_the_file") {
        return;
    }
    let receiver = Receiver::start(0, &[]);
    let server = HttpsServer::start("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export/events.jsonl");
    let config = format!(
        "[export.otlp]\nendpoint = \"http://127.0.0.1:{}\"\nbatch_timeout_ms = 200\nheaders = {{ \"x-collector-token\" = \"collector-ok-123\" }}\n[export.file]\npath = \"{}\"\n",
        receiver.port,
        file.display()
    );
    let sensor = Sensor::start_with(&["--json"], Some(&config));
    let curl = curl_with_secret(server.port);
    let call = sensor.wait_for("curl's api_call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(curl)
    });

    let exec = receiver.wait_for("of curl's exec", 15, |r| of(r, "exec", curl));
    let connect = receiver.wait_for("of curl's connect", 15, |r| of(r, "connect", curl));
    let api = receiver.wait_for("of curl's api_call", 15, |r| of(r, "api_call", curl));

    // Who sent it, and the headers the collector asked for.
    assert_eq!(api["resource"]["service.name"], "sensor", "{api}");
    assert!(
        api["resource"]["host.name"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{api}"
    );
    assert_eq!(api["scope"], "sensor");
    assert_eq!(api["metadata"]["x-collector-token"], "collector-ok-123");
    // The record is the event: same time, same JSON in the body.
    assert_eq!(api["time_unix_nano"], call["ts_unix_ns"], "{api}");
    let body: Value = serde_json::from_str(api["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, call);
    assert_eq!(api["severity_text"], "info");
    assert_eq!(api["severity_number"], 9);
    assert_eq!(api["event_name"], "sensor.api_call");
    for (k, v) in [
        ("sensor.event.seq", call["seq"].clone()),
        ("process.executable.path", "/usr/bin/curl".into()),
        ("http.request.method", "GET".into()),
        ("server.address", "127.0.0.1".into()),
        ("server.port", server.port.into()),
        ("url.path", "/v1/orders".into()),
        ("http.response.status_code", 200.into()),
        ("sensor.http.transport", "tls".into()),
        ("network.peer.port", server.port.into()),
        (
            "sensor.credential.fingerprint",
            call["credential_fingerprint"].clone(),
        ),
    ] {
        assert_eq!(attr(&api, k), &v, "{k} in {api}");
    }
    assert!(attr(&api, "sensor.credential.fingerprint").is_string());
    assert!(
        attr(&api, "process.command_line")
            .as_str()
            .is_some_and(|c| c.starts_with("curl ")),
        "{api}"
    );
    assert_eq!(attr(&connect, "network.peer.address"), "127.0.0.1");
    assert_eq!(attr(&connect, "network.peer.port"), server.port);
    assert_eq!(attr(&exec, "process.executable.path"), "/usr/bin/curl");

    let (status, stderr, events) = sensor.stop_with_events();
    assert!(status.success(), "{stderr}");
    // Shutdown sends what was queued: every event the sensor printed
    // reached the receiver, once.
    let printed: BTreeMap<u64, &Value> = events
        .iter()
        .filter_map(|v| Some((v["seq"].as_u64()?, v)))
        .collect();
    assert!(printed.len() >= 3, "{} events", printed.len());
    let received: Vec<u64> = receiver
        .records()
        .iter()
        .map(|r| attr(r, "sensor.event.seq").as_u64().unwrap())
        .collect();
    let mut unique = received.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), received.len(), "a record was sent twice");
    assert_eq!(
        unique,
        printed.keys().copied().collect::<Vec<_>>(),
        "received vs printed seqs"
    );
    assert_eq!(
        summary_counter(&stderr, "otlp_records_exported"),
        printed.len() as u64
    );
    assert_eq!(summary_counter(&stderr, "otlp_records_dropped"), 0);
    assert_eq!(summary_counter(&stderr, "otlp_records_unsent_at_exit"), 0);

    // The file holds the same events, as the same JSON.
    let text = std::fs::read_to_string(&file).expect("the export file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), printed.len(), "file lines vs printed events");
    for l in &lines {
        let seq = l["seq"].as_u64().unwrap();
        assert_eq!(Some(&l), printed.get(&seq), "file line {seq}");
    }
    assert_eq!(
        summary_counter(&stderr, "file_export_lines"),
        printed.len() as u64
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // The planted credential was sent (the server saw the request) and
    // is in no export, no event and no log line.
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
    for r in receiver.records() {
        assert!(!r.to_string().contains("PLANTED"), "secret exported: {r}");
    }
    assert!(!text.contains("PLANTED"), "secret in the export file");
    assert!(!stderr.contains("PLANTED"), "secret in the log:\n{stderr}");
    assert!(
        !stderr.contains("collector-ok-123"),
        "the collector's header value is in the log:\n{stderr}"
    );
}

/// OTLP/HTTP with gzip (`protocol = "http/protobuf"`): the same records
/// reach a receiver built from the upstream protos, POSTed to `/v1/logs`
/// gzip-compressed with the configured header, every printed event once.
#[test]
fn events_reach_an_otlp_http_receiver_gzipped() {
    let _g = serial();
    if !require_root("events_reach_an_otlp_http_receiver_gzipped") {
        return;
    }
    let receiver = Receiver::start_http();
    let server = HttpsServer::start("127.0.0.1");
    let config = format!(
        "[export.otlp]\nendpoint = \"http://127.0.0.1:{}\"\nprotocol = \"http/protobuf\"\ncompression = \"gzip\"\nbatch_timeout_ms = 200\nheaders = {{ \"x-collector-token\" = \"collector-ok-123\" }}\n",
        receiver.port
    );
    let sensor = Sensor::start_with(&["--json"], Some(&config));
    let curl = curl_with_secret(server.port);
    let call = sensor.wait_for("curl's api_call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(curl)
    });
    let api = receiver.wait_for("of curl's api_call", 15, |r| of(r, "api_call", curl));
    assert_eq!(api["metadata"][":path"], "/v1/logs", "{api}");
    assert_eq!(api["metadata"]["content-encoding"], "gzip", "{api}");
    assert_eq!(
        api["metadata"]["content-type"], "application/x-protobuf",
        "{api}"
    );
    assert_eq!(api["metadata"]["x-collector-token"], "collector-ok-123");
    assert_eq!(api["resource"]["service.name"], "sensor", "{api}");
    let body: Value = serde_json::from_str(api["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, call);
    assert_eq!(attr(&api, "url.path"), "/v1/orders");

    let (status, stderr, events) = sensor.stop_with_events();
    assert!(status.success(), "{stderr}");
    let printed: BTreeMap<u64, &Value> = events
        .iter()
        .filter_map(|v| Some((v["seq"].as_u64()?, v)))
        .collect();
    let mut received: Vec<u64> = receiver
        .records()
        .iter()
        .map(|r| attr(r, "sensor.event.seq").as_u64().unwrap())
        .collect();
    received.sort_unstable();
    assert_eq!(
        received,
        printed.keys().copied().collect::<Vec<_>>(),
        "received vs printed seqs"
    );
    assert_eq!(summary_counter(&stderr, "otlp_records_dropped"), 0);
    for r in receiver.records() {
        assert!(!r.to_string().contains("PLANTED"), "secret exported: {r}");
    }
    assert!(!stderr.contains("collector-ok-123"), "{stderr}");
}

#[test]
fn an_absent_collector_costs_counted_losses_then_export_resumes() {
    let _g = serial();
    if !require_root("an_absent_collector_costs_counted_losses_then_export_resumes") {
        return;
    }
    // Held, never listening, through the outage: nobody else takes the
    // port before the collector comes up on it (gRPC binds it beside this
    // socket with SO_REUSEPORT).
    let refused = RefusedPort::bind_shared("127.0.0.1");
    let port = refused.port;
    // A small queue and few tries, so that the outage shows in seconds.
    let config = format!(
        "[export.otlp]\nendpoint = \"http://127.0.0.1:{port}\"\nbatch_size = 8\nqueue_capacity = 8\nbatch_timeout_ms = 100\nmax_attempts = 2\ntimeout_secs = 2\n"
    );
    let sensor = Sensor::start_with(&["--json"], Some(&config));
    let deadline = Instant::now() + Duration::from_secs(30);
    // Processes make events; with nobody listening they cannot leave.
    while status_counter(&sensor, "otlp_batches_failed") == 0
        || status_counter(&sensor, "otlp_records_dropped") == 0
    {
        assert!(
            Instant::now() < deadline,
            "no failed batch and drop counted after 30 s:\n{}",
            sensor.stderr()
        );
        for _ in 0..10 {
            run(&mut Command::new("/bin/true"));
        }
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(status_counter(&sensor, "otlp_records_exported"), 0);
    // Said in the log too (checked every 10 s).
    while !sensor.stderr().contains("OTLP export is losing events") {
        assert!(
            Instant::now() < deadline + Duration::from_secs(15),
            "no warning:\n{}",
            sensor.stderr()
        );
        thread::sleep(Duration::from_millis(200));
    }

    // The collector comes up on that port: export resumes by itself.
    let receiver = Receiver::start(port, &[]);
    assert_eq!(receiver.port, port);
    drop(refused);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    let (child, found) = loop {
        // A queue of 8 may still be full of older events, so try until one
        // of a new process's records gets through.
        let (child, _) = run(&mut Command::new("/bin/true"));
        sensor.wait_for("the new process's exec on stdout", |v| {
            kind(v) == "exec" && pid(v) == u64::from(child)
        });
        thread::sleep(Duration::from_millis(500));
        if receiver
            .records()
            .iter()
            .any(|r| attr(r, "process.pid") == child)
        {
            break (child, true);
        }
        if Instant::now() > deadline {
            break (child, false);
        }
    };
    assert!(
        found,
        "no record of process {child} received {} s after the collector came up ({} records)",
        started.elapsed().as_secs(),
        receiver.records().len()
    );
    // The status board is refreshed every second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while status_counter(&sensor, "otlp_records_exported") == 0 {
        assert!(Instant::now() < deadline, "no export counted in the status");
        thread::sleep(Duration::from_millis(200));
    }
    let (status, stderr) = sensor.stop();
    assert!(status.success(), "{stderr}");
    assert!(summary_counter(&stderr, "otlp_records_failed") > 0);
    assert!(summary_counter(&stderr, "otlp_retries") > 0);
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate,
/// made with the openssl CLI (rustls refuses a self-signed CA as the
/// server's own certificate).
struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

impl Pki {
    fn new(d: &Path) -> Pki {
        let openssl = |args: &[&str], paths: &[&Path]| {
            let out = Command::new("openssl")
                .args(args)
                .args(paths)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let p = |n: &str| d.join(n);
        let (ca, ca_key, ext) = (p("ca.pem"), p("ca.key"), p("ext.cnf"));
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-days", "1", "-subj", "/CN=otlp-ca", "-keyout"],
            ]
            .concat(),
            &[&ca_key, Path::new("-out"), &ca],
        );
        std::fs::write(
            &ext,
            "[srv]\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n[cli]\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        let leaf = |name: &str, section: &str| {
            let (cert, key, csr) = (
                p(&format!("{name}.pem")),
                p(&format!("{name}.key")),
                p(&format!("{name}.csr")),
            );
            openssl(
                &[
                    &["req"][..],
                    &ec,
                    &["-subj", &format!("/CN={name}"), "-keyout"],
                ]
                .concat(),
                &[&key, Path::new("-out"), &csr],
            );
            openssl(
                &[
                    "x509",
                    "-req",
                    "-days",
                    "1",
                    "-CAcreateserial",
                    "-extensions",
                    section,
                    "-extfile",
                ],
                &[
                    &ext,
                    Path::new("-in"),
                    &csr,
                    Path::new("-CA"),
                    &ca,
                    Path::new("-CAkey"),
                    &ca_key,
                    Path::new("-out"),
                    &cert,
                ],
            );
            (cert, key)
        };
        let server = leaf("server", "srv");
        let client = leaf("client", "cli");
        Pki { ca, server, client }
    }
}

#[test]
fn export_over_mutual_tls_checks_both_sides() {
    let _g = serial();
    if !require_root("export_over_mutual_tls_checks_both_sides") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let receiver = Receiver::start(0, &[&pki.server.0, &pki.server.1, &pki.ca]);
    let config = format!(
        "[export.otlp]\nendpoint = \"https://127.0.0.1:{}\"\nbatch_timeout_ms = 100\n[export.otlp.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        receiver.port,
        pki.ca.display(),
        pki.client.0.display(),
        pki.client.1.display()
    );
    let sensor = Sensor::start_with(&["--json"], Some(&config));
    let (child, _) = run(&mut Command::new("/bin/true"));
    receiver.wait_for("of the process over mutual TLS", 15, |r| {
        of(r, "exec", child)
    });
    let (status, stderr) = sensor.stop();
    assert!(status.success(), "{stderr}");

    // Without the CA the host's trust store does not know the
    // collector's certificate; without a client certificate the collector
    // refuses the sensor. Either way nothing is exported, and the
    // failures are counted.
    for tls in [
        format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            pki.client.0.display(),
            pki.client.1.display()
        ),
        format!("ca = \"{}\"\n", pki.ca.display()),
    ] {
        let receiver = Receiver::start(0, &[&pki.server.0, &pki.server.1, &pki.ca]);
        let config = format!(
            "[export.otlp]\nendpoint = \"https://127.0.0.1:{}\"\nbatch_timeout_ms = 100\nmax_attempts = 1\n[export.otlp.tls]\n{tls}",
            receiver.port
        );
        let sensor = Sensor::start_with(&["--json"], Some(&config));
        let (child, _) = run(&mut Command::new("/bin/true"));
        sensor.wait_for("the exec on stdout", |v| {
            kind(v) == "exec" && pid(v) == u64::from(child)
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        while status_counter(&sensor, "otlp_batches_failed") == 0 {
            assert!(
                Instant::now() < deadline,
                "{tls}: no failed batch:\n{}",
                sensor.stderr()
            );
            thread::sleep(Duration::from_millis(200));
        }
        let (status, stderr) = sensor.stop();
        assert!(status.success(), "{stderr}");
        assert!(
            receiver.records().is_empty(),
            "{tls}: {:?}",
            receiver.records()
        );
        assert_eq!(
            summary_counter(&stderr, "otlp_records_exported"),
            0,
            "{tls}"
        );
    }
}
