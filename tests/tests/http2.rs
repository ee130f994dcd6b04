//! HTTP/2 (ALPN h2 over TLS, and cleartext with prior knowledge): frames
//! and HPACK headers of real clients become one api_call per stream.

use std::process::Command;

use e2e::{
    HttpsServer, Sensor, Value, kind, pid, require_root, run, serial, summary_counter, venv_python,
};

/// The first `n` api_calls of `child`, sorted by path; waits up to 15 s.
fn calls_of(sensor: &Sensor, child: u32, n: usize) -> Vec<Value> {
    let mut calls = sensor.wait_for_n(&format!("api_calls of {child}"), n, |v| {
        kind(v) == "api_call" && pid(v) == u64::from(child)
    });
    calls.sort_by_key(|v| v["path"].as_str().unwrap_or_default().to_string());
    calls
}

#[test]
fn curl_http2_over_tls() {
    let _g = serial();
    if !require_root("curl_http2_over_tls") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start_h2("127.0.0.1");
    let base = format!("https://localhost:{}", server.port);
    // Two requests on one connection (streams 1 and 3): the second one's
    // headers come from the HPACK dynamic table filled by the first.
    let (child, status) = run(Command::new("curl").args([
        "-sSk",
        "-m",
        "10",
        "--http2",
        "-H",
        "Authorization: Bearer PLANTED-h2-token",
        &format!("{base}/v1/orders/8812"),
        &format!("{base}/v1/orders/8813?api_key=PLANTED-q"),
    ]));
    assert!(status.success(), "curl: {status}");
    let calls = calls_of(&sensor, child, 2);
    for (c, path) in calls
        .iter()
        .zip(["/v1/orders/8812", "/v1/orders/8813?api_key=<redacted>"])
    {
        assert_eq!(c["http_version"], "HTTP/2", "{c}");
        assert_eq!(c["method"], "GET", "{c}");
        assert_eq!(c["path"], path, "{c}");
        assert_eq!(c["authority"], format!("localhost:{}", server.port), "{c}");
        assert_eq!(c["status"], 200, "{c}");
        assert_eq!(c["tls_library"], "openssl", "{c}");
        assert_eq!(c["dport"], u64::from(server.port), "{c}");
        assert_eq!(c["sni"], "localhost", "{c}");
        assert!(c["response_bytes"].as_u64().unwrap() > 20, "{c}");
        let fp = c["credential_fingerprint"].as_str().unwrap_or_default();
        assert!(fp.starts_with("Bearer fp:"), "{c}");
        assert!(!c.to_string().contains("PLANTED"), "{c}");
    }
    assert_eq!(calls[0]["path_template"], "/v1/orders/{id}");
    assert_eq!(calls[1]["path_template"], "/v1/orders/{id}?api_key");
    let (post, status) = run(Command::new("curl").args([
        "-sSk",
        "-m",
        "10",
        "--http2",
        "-H",
        "Authorization: Bearer PLANTED-h2-token",
        "-d",
        "{\"sku\":\"A-1\",\"qty\":2}",
        &format!("{base}/v1/orders"),
    ]));
    assert!(status.success(), "curl: {status}");
    let p = &calls_of(&sensor, post, 1)[0];
    assert_eq!(p["method"], "POST", "{p}");
    assert_eq!(p["status"], 201, "{p}");
    assert_eq!(p["http_version"], "HTTP/2", "{p}");
    assert!(p["request_bytes"].as_u64().unwrap() >= 21, "{p}");
    assert!(!p.to_string().contains("PLANTED"), "{p}");
    assert_eq!(server.requests().len(), 3, "{:?}", server.requests());
    let (_, stderr) = sensor.stop();
    assert!(!stderr.contains("PLANTED"), "{stderr}");
    assert_eq!(summary_counter(&stderr, "http_parse_errors"), 0, "{stderr}");
}

#[test]
fn httpx_http2_client() {
    let _g = serial();
    if !require_root("httpx_http2_client") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start_h2("127.0.0.1");
    let script = "import sys, httpx\n\
        with httpx.Client(http2=True, verify=False) as c:\n\
        \x20   r = c.get(sys.argv[1] + '/v1/inventory/77', headers={'x-api-key': 'PLANTED-httpx'})\n\
        \x20   assert r.http_version == 'HTTP/2', r.http_version\n\
        \x20   r = c.post(sys.argv[1] + '/v1/orders', json={'sku': 'A-1', 'qty': 2})\n\
        \x20   assert r.status_code == 201\n";
    let base = format!("https://127.0.0.1:{}", server.port);
    let (child, status) = run(Command::new(venv_python()).args(["-c", script, &base]));
    assert!(status.success(), "httpx: {status}");
    let calls = calls_of(&sensor, child, 2);
    let (get, post) = (&calls[0], &calls[1]);
    assert_eq!(get["path_template"], "/v1/inventory/{id}", "{get}");
    assert_eq!(get["status"], 200, "{get}");
    assert_eq!(get["http_version"], "HTTP/2", "{get}");
    let fp = get["credential_fingerprint"].as_str().unwrap_or_default();
    assert!(fp.starts_with("fp:"), "{get}");
    assert_eq!(post["method"], "POST", "{post}");
    assert_eq!(post["status"], 201, "{post}");
    assert!(post["request_bytes"].as_u64().unwrap() > 20, "{post}");
    assert_eq!(post["dport"], u64::from(server.port), "{post}");
    assert!(!get.to_string().contains("PLANTED"), "{get}");
    sensor.stop();
}

#[test]
fn cleartext_http2_prior_knowledge() {
    let _g = serial();
    if !require_root("cleartext_http2_prior_knowledge") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start_h2c("127.0.0.1");
    let url = format!("http://127.0.0.1:{}/api/chat", server.port);
    let (child, status) = run(Command::new("curl").args([
        "-sS",
        "-m",
        "10",
        "--http2-prior-knowledge",
        "-d",
        "{\"model\":\"llama3\"}",
        &url,
    ]));
    assert!(status.success(), "curl: {status}");
    let c = &calls_of(&sensor, child, 1)[0];
    assert_eq!(c["transport"], "plain", "{c}");
    assert_eq!(c["http_version"], "HTTP/2", "{c}");
    assert_eq!(c["method"], "POST", "{c}");
    assert_eq!(c["path"], "/api/chat", "{c}");
    assert_eq!(c["status"], 201, "{c}");
    assert_eq!(c["dport"], u64::from(server.port), "{c}");
    sensor.stop();
}
