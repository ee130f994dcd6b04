//! The daemon as an operator meets it: readable output, clean shutdown with
//! counters, clear config errors.

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use e2e::{
    HttpServer, Sensor, Value, loaded_bpf_programs, require_root, run, sensor_bin, serial,
    summary_counter,
};

#[test]
fn text_output_names_process_and_destination() {
    let _g = serial();
    if !require_root("text_output_names_process_and_destination") {
        return;
    }
    let sensor = Sensor::start_with(&[], None);
    let server = HttpServer::start("127.0.0.1");
    let url = format!("http://127.0.0.1:{}/text-output", server.port);
    let (child, _) = run(Command::new("curl").args(["-sS", "-m", "5", &url]));
    let line = sensor.wait_for("a readable connect line", |v| {
        v.as_str()
            .is_some_and(|l| l.contains(&format!("curl[{child}] -> 127.0.0.1:{}", server.port)))
    });
    let line = line.as_str().unwrap();
    assert!(line.contains("connect"), "{line}");
    assert!(line.contains("exe=/usr/bin/curl"), "{line}");
    assert!(
        line.contains("/text-output"),
        "the command line is shown: {line}"
    );
    sensor.stop();
}

#[test]
fn shutdown_detaches_and_prints_counters() {
    let _g = serial();
    if !require_root("shutdown_detaches_and_prints_counters") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpServer::start("127.0.0.1");
    let (child, _) = run(Command::new("curl").args([
        "-sS",
        "-m",
        "5",
        &format!("http://127.0.0.1:{}/", server.port),
    ]));
    sensor.wait_for("connect", |v| {
        e2e::kind(v) == "connect" && e2e::pid(v) == u64::from(child)
    });
    // Every program it loaded, attached or not, by id (another sensor on
    // the host, a deployed daemon or another test's, has its own ids).
    let mine = sensor.bpf_programs();
    // Positive control: every program its status says is attached is
    // among them (the kernel keeps 15 bytes of a name).
    let (ok, json, err) = sensor.cli(&["status", "--json"]);
    assert!(ok, "{err}");
    let st: Value = serde_json::from_str(&json).unwrap();
    let attached: Vec<&str> = st["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["program"].as_str())
        .collect();
    assert!(attached.len() >= 5, "{st}");
    // "tls" stands for the uprobes of the TLS libraries.
    let attached = attached.iter().flat_map(|p| match *p {
        "tls" => vec!["ssl_write", "ssl_read", "tls_ret"],
        p => vec![p],
    });
    for p in attached {
        assert!(
            mine.values()
                .any(|n| n == p || (n.len() == 15 && p.starts_with(n.as_str()))),
            "{p} is attached but not among its programs {mine:?}"
        );
    }
    let (status, stderr) = sensor.stop();
    assert!(status.success(), "exit status {status}: {stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("sensor stopped:"))
        .unwrap_or_else(|| panic!("no summary line:\n{stderr}"));
    assert!(summary.contains("programs detached"), "{summary}");
    for counter in ["ringbuf_full_drops=0", "queue_full_drops=0", "connect="] {
        assert!(summary.contains(counter), "{counter} missing: {summary}");
    }
    // Detached means none of the sensor's programs is left in the kernel
    // (a program is freed once its last holder lets go: wait for it).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let loaded = loaded_bpf_programs();
        let left: BTreeMap<&u32, &String> = mine
            .iter()
            .filter(|(id, _)| loaded.contains_key(id))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "programs still loaded 10 s after shutdown: {left:?}\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_config_is_a_clear_error() {
    let _g = serial();
    e2e::record_ran("bad_config_is_a_clear_error");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sensor.toml");
    std::fs::write(&path, "[ringbuf]\nbytes = 12345\n").unwrap();
    let out = Command::new(sensor_bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ringbuf.bytes") && err.contains("power of two"),
        "{err}"
    );
    assert!(err.contains(&path.display().to_string()), "{err}");
    // And `config check` says the same without needing root.
    let out = Command::new(sensor_bin())
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ringbuf.bytes"));
}

#[test]
fn ring_buffer_overflow_is_counted_not_silent() {
    let _g = serial();
    if !require_root("ring_buffer_overflow_is_counted_not_silent") {
        return;
    }
    // One page of ring buffer holds ~39 connect records.
    let sensor = Sensor::start_with(
        &["--json"],
        Some("[ringbuf]\nbytes = 4096\nwakeup_bytes = 0\n[metrics]\nlisten = \"127.0.0.1:0\"\n"),
    );
    let server = HttpServer::start("127.0.0.1");
    // Freeze the reader so the burst must overflow the ring.
    // SAFETY: kill(2) on the sensor child we started.
    unsafe { libc::kill(sensor.pid as i32, libc::SIGSTOP) };
    let made = 300;
    let script = format!(
        "import socket\nfor _ in range({made}):\n    s = socket.create_connection(('127.0.0.1', {}))\n    s.close()\n",
        server.port
    );
    let (child, status) = run(Command::new(e2e::python3()).args(["-c", &script]));
    // SAFETY: as above.
    unsafe { libc::kill(sensor.pid as i32, libc::SIGCONT) };
    assert!(status.success());
    // The totals behind /metrics are published once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metric_drops = loop {
        let drops = sensor.scrape().value("sensor_ringbuf_drops_total", &[]);
        if drops > 0.0 || Instant::now() > deadline {
            break drops;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let seen = sensor
        .events()
        .iter()
        .filter(|v| e2e::kind(v) == "connect" && e2e::pid(v) == u64::from(child))
        .count() as u64;
    let (_, stderr) = sensor.stop();
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("sensor stopped:"))
        .unwrap_or("");
    let dropped = summary_counter(&stderr, "ringbuf_full_drops");
    assert!(
        dropped > 0,
        "a 4 KiB ring must overflow on {made} connects: {summary}"
    );
    assert!(seen < made, "saw all {made} despite the frozen reader?");
    assert!(
        metric_drops > 0.0 && metric_drops <= dropped as f64,
        "/metrics said {metric_drops}, the summary {dropped}"
    );
    // Every record is either delivered or counted as dropped.
    assert!(
        seen + dropped >= made,
        "seen {seen} + dropped {dropped} < made {made}: {summary}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let _g = serial();
    if !require_root("json_logs_are_one_object_per_line") {
        return;
    }
    let sensor = Sensor::start_with(&["--json"], Some("[log]\nformat = \"json\"\n"));
    let (status, stderr) = sensor.stop();
    assert!(status.success(), "{stderr}");
    let mut ready = None;
    // The shutdown summary is a plain line of its own; every log line is
    // an object with a level and fields.
    for line in stderr.lines().filter(|l| !l.starts_with("sensor stopped:")) {
        let v: e2e::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{v}"
        );
        if v["fields"]["message"] == "sensor ready" {
            ready = Some(v);
        }
    }
    let ready = ready.unwrap_or_else(|| panic!("no sensor ready line:\n{stderr}"));
    assert!(ready["fields"]["pid"].as_u64().is_some(), "{ready}");
}
