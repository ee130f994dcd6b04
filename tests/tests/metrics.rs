//! Prometheus /metrics while real traffic flows, parsed by the official
//! Prometheus Python client's OpenMetrics parser: the counters move with
//! the events the sensor emits (API calls, a finding by rule, an action),
//! the latency histogram fills, gauges say what is attached and connected.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use e2e::{
    HttpServer, HttpsServer, Sensor, Value, kind, pid, require_root, run, run_fleet_agent, serial,
    venv_python,
};

#[test]
fn metrics_move_with_real_events() {
    let _g = serial();
    if !require_root("metrics_move_with_real_events") {
        return;
    }
    let sensor = Sensor::start_with(&["--json"], Some("[metrics]\nlisten = \"127.0.0.1:0\"\n"));
    let before = sensor.scrape();
    assert!(
        before.0["content_type"]
            .as_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{}",
        before.0
    );
    let types = &before.0["types"];
    assert_eq!(types["sensor_events"], "counter", "{types}");
    assert_eq!(
        types["sensor_pipeline_latency_seconds"], "histogram",
        "{types}"
    );
    assert_eq!(types["sensor_api_subscribers"], "gauge", "{types}");
    let calls = |m: &e2e::Metrics| m.value("sensor_events_total", &[("kind", "api_call")]);

    // Plain HTTP calls by curl: each an api_call event.
    let server = HttpServer::start("127.0.0.1");
    for i in 0..5 {
        let (c, status) = run(Command::new("curl").args([
            "-sS",
            "-m",
            "5",
            &format!("http://127.0.0.1:{}/m{i}", server.port),
        ]));
        assert!(status.success());
        sensor.wait_for("curl's call", |v| {
            kind(v) == "api_call" && pid(v) == u64::from(c)
        });
    }
    // An agent learns one run; a baseline saying it has learned three more
    // is imported, so its next run's order is a finding.
    let https = HttpsServer::start("127.0.0.1");
    run_fleet_agent(&sensor, &https, "catalog");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.json");
    let (ok, _, err) = sensor.cli(&["baseline", "export", "-o", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let mut b: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    for (_, v) in b["baselines"].as_object_mut().unwrap() {
        v["sessions"] = 3.into();
    }
    std::fs::write(&file, b.to_string()).unwrap();
    let (ok, _, err) = sensor.cli(&["baseline", "import", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let order = run_fleet_agent(&sensor, &https, "order");
    sensor.wait_for("the order's finding", |v| {
        kind(v) == "finding" && pid(v) == u64::from(order)
    });
    // A responder's kill: an action.
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let (ok, _, err) = sensor.cli(&["kill", &victim.id().to_string(), "--why", "metrics e2e"]);
    assert!(ok, "{err}");
    let _ = victim.wait();
    sensor.wait_for("the kill action", |v| kind(v) == "action");
    // A subscriber connected while scraping.
    let mut sub = Command::new(venv_python())
        .arg(e2e::api_client_script())
        .args([
            &sensor.api_target(),
            "subscribe",
            "--kind",
            "none",
            "--timeout",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(sub.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("subscribed"), "{line}");
    // Totals are published once a second, and the subscription is in
    // place once the server has it: scrape until the exposition has caught
    // up with the events printed before the scrape, or the deadline passes
    // (then the checks below say what is missing).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (events, after) = loop {
        let events = sensor.events();
        let after = sensor.scrape();
        let seen = |k: &str| events.iter().filter(|v| kind(v) == k).count() as f64;
        let caught_up = after.value("sensor_api_subscribers", &[]) >= 1.0
            && calls(&after) >= seen("api_call")
            && after.value("sensor_pipeline_latency_seconds_count", &[])
                >= seen("exec") + seen("connect")
            && after.value("sensor_actions_total", &[("action", "kill")]) >= 1.0;
        if caught_up || Instant::now() > deadline {
            break (events, after);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = sub.kill();
    let _ = sub.wait();

    let seen = |k: &str| events.iter().filter(|v| kind(v) == k).count() as f64;
    assert!(calls(&after) - calls(&before) >= 5.0 + 3.0, "{}", after.0);
    assert!(
        calls(&after) >= seen("api_call"),
        "{} vs {}",
        calls(&after),
        seen("api_call")
    );
    let findings = after.value(
        "sensor_findings_total",
        &[("rule", "new_irreversible_endpoint"), ("severity", "high")],
    );
    assert!(findings >= 1.0, "{}", after.0);
    assert_eq!(
        after.value("sensor_events_total", &[("kind", "finding")]),
        after.value("sensor_findings_total", &[]),
        "each finding event is counted once by rule"
    );
    assert!(
        after.value(
            "sensor_actions_total",
            &[("action", "kill"), ("outcome", "done")]
        ) >= 1.0,
        "{}",
        after.0
    );
    let latency = after.value("sensor_pipeline_latency_seconds_count", &[]);
    // exec and connect events always come from a kernel record.
    assert!(
        latency >= seen("exec") + seen("connect"),
        "{latency}: {}",
        after.0
    );
    // Every observation is within the histogram's top bucket (~13 s).
    assert_eq!(
        after.value("sensor_pipeline_latency_seconds_bucket", &[("le", "+Inf")]),
        latency
    );
    assert!(
        after.value("sensor_api_subscribers", &[]) >= 1.0,
        "{}",
        after.0
    );
    assert!(
        after.value("sensor_tls_targets_attached", &[]) >= 1.0,
        "{}",
        after.0
    );
    assert!(
        after.value("sensor_processes_tracked", &[]) > 0.0,
        "{}",
        after.0
    );
    assert!(
        after.value("sensor_uptime_seconds", &[]) > 1.0,
        "{}",
        after.0
    );
    assert!(
        after.value("sensor_records_read_total", &[]) > 0.0,
        "{}",
        after.0
    );
    for drops in [
        "sensor_ringbuf_drops_total",
        "sensor_pipeline_queue_drops_total",
    ] {
        assert!(after.has(drops), "{drops}: {}", after.0);
        assert_eq!(after.value(drops, &[]), 0.0, "{drops}");
    }
    // Nothing secret in the exposition (the agent sent planted keys).
    assert!(!after.0.to_string().contains("PLANTED"));
    // Only /metrics is served.
    let addr = sensor.listen_addr("metrics listening");
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{addr}/"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    sensor.stop();
}

#[test]
fn metrics_refuse_a_remote_address_unless_allowed() {
    let _g = serial();
    if !require_root("metrics_refuse_a_remote_address_unless_allowed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, "[metrics]\nlisten = \"0.0.0.0:9464\"\n").unwrap();
    let out = Command::new(e2e::sensor_bin())
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("metrics.listen") && err.contains("allow_remote"),
        "{err}"
    );
    // A port already taken is a start-up error naming the key.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(&cfg, format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    let out = Command::new(e2e::sensor_bin())
        .args(["run", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("metrics.listen") && err.contains(&port.to_string()),
        "{err}"
    );
}
