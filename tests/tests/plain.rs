//! Plain-text HTTP (local LLM servers, internal APIs): requests named from
//! the first bytes a process sends on a socket it connected.

use std::process::Command;

use e2e::{HttpServer, Sensor, kind, pid, require_root, run, serial, summary_counter};

#[test]
fn plain_http_requests_become_api_calls() {
    let _g = serial();
    if !require_root("plain_http_requests_become_api_calls") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpServer::start("127.0.0.1");
    let url = format!(
        "http://127.0.0.1:{}/api/generate?key=PLANTED-plain",
        server.port
    );
    let (child, status) = run(Command::new("curl").args([
        "-sS",
        "-m",
        "5",
        "-H",
        "Authorization: Bearer PLANTED-plain-tok",
        "-d",
        "{\"model\":\"llama3\"}",
        &url,
    ]));
    assert!(status.success());
    let ev = sensor.wait_for("plain api_call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(child)
    });
    assert_eq!(ev["transport"], "plain", "{ev}");
    assert_eq!(ev["method"], "POST");
    assert_eq!(ev["authority"], format!("127.0.0.1:{}", server.port));
    assert_eq!(ev["path"], "/api/generate?key=<redacted>");
    assert_eq!(ev["path_template"], "/api/generate?key");
    assert!(
        ev["credential_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("Bearer fp:")
    );
    assert!(ev.get("tls_library").is_none());
    // Receives on plain HTTP sockets are captured too: the exchange is whole.
    assert_eq!(ev["status"], 200, "{ev}");
    assert!(ev["response_bytes"].as_u64().unwrap() > 0, "{ev}");
    assert_eq!(ev["daddr"], "127.0.0.1", "{ev}");
    assert_eq!(ev["dport"], u64::from(server.port), "{ev}");
    assert!(!ev.to_string().contains("PLANTED"), "{ev}");
    let get_url = format!("http://127.0.0.1:{}/api/tags", server.port);
    let (get, status) = run(Command::new("curl").args([
        "-sS",
        "-m",
        "5",
        "-H",
        "Authorization: Bearer PLANTED-plain-tok",
        &get_url,
    ]));
    assert!(status.success());
    let g = sensor.wait_for("plain GET", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(get)
    });
    assert_eq!(g["method"], "GET", "{g}");
    assert_eq!(g["status"], 200, "{g}");
    assert_eq!(
        g["credential_fingerprint"], ev["credential_fingerprint"],
        "same token, same fingerprint"
    );
    sensor.stop();
}

/// A server that answers an HTTP request with bytes that are not HTTP.
fn garbage_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"PLANTED-garbage \x00\x01\x02 not a status line\r\n\r\n");
        }
    });
    port
}

#[test]
fn unparseable_response_is_reported_with_its_connection() {
    let _g = serial();
    if !require_root("unparseable_response_is_reported_with_its_connection") {
        return;
    }
    let sensor = Sensor::start();
    let port = garbage_server();
    let url = format!("http://127.0.0.1:{port}/v1/status");
    // curl refuses the reply (HTTP/0.9): its exit status is not the point.
    let (child, _) = run(Command::new("curl").args(["-sS", "-m", "5", &url]));
    let ev = sensor.wait_for("parse_error", |v| {
        kind(v) == "parse_error" && pid(v) == u64::from(child)
    });
    assert_eq!(ev["protocol"], "http/1.1", "{ev}");
    assert!(
        ev["connection"].as_str().unwrap().starts_with("fd "),
        "{ev}"
    );
    assert_eq!(ev["daddr"], "127.0.0.1", "{ev}");
    assert_eq!(ev["dport"], u64::from(port), "{ev}");
    assert!(!ev["error"].as_str().unwrap().is_empty(), "{ev}");
    // What was wrong is said; the captured bytes are not repeated.
    assert!(!ev.to_string().contains("PLANTED"), "{ev}");
    // The request itself is still a call, with no status (reported when
    // its stream ends: here at shutdown).
    let (_, stderr, events) = sensor.stop_with_events();
    let call = events
        .iter()
        .find(|v| kind(v) == "api_call" && pid(v) == u64::from(child))
        .unwrap_or_else(|| panic!("no api_call; stderr:\n{stderr}"));
    assert_eq!(call["path"], "/v1/status", "{call}");
    assert!(call.get("status").is_none(), "{call}");
    // Exactly the one reply (a substring check would take 10 to 19).
    assert_eq!(summary_counter(&stderr, "http_parse_errors"), 1, "{stderr}");
}

#[test]
fn operator_added_secret_headers_are_fingerprinted() {
    let _g = serial();
    if !require_root("operator_added_secret_headers_are_fingerprinted") {
        return;
    }
    let sensor = Sensor::start_with(
        &["--json"],
        Some("[http]\nsecret_headers = [\"X-Vendor-Token\"]\n"),
    );
    let server = HttpServer::start("127.0.0.1");
    let url = format!("http://127.0.0.1:{}/v1/orders", server.port);
    let (child, status) = run(Command::new("curl").args([
        "-sS",
        "-m",
        "5",
        "-H",
        "X-Vendor-Token: PLANTED-vendor-secret",
        &url,
    ]));
    assert!(status.success());
    let ev = sensor.wait_for("api_call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(child)
    });
    let fp = ev["credential_fingerprint"].as_str().unwrap_or_default();
    assert!(fp.starts_with("fp:"), "{ev}");
    let (_, stderr, events) = sensor.stop_with_events();
    for e in &events {
        assert!(!e.to_string().contains("PLANTED"), "{e}");
    }
    assert!(!stderr.contains("PLANTED"), "{stderr}");
}
