//! Plain-text HTTP (local LLM servers, internal APIs): requests named from
//! the first bytes a process sends on a socket it connected.

use std::process::Command;

use e2e::{HttpServer, Sensor, kind, pid, require_root, run, serial};

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
    sensor.stop();
}
