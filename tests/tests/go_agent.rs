//! An agent written in Go (net/http over crypto/tls, built here from
//! tests/fixtures/go_agent.go, once as is and once stripped): Go's TLS is
//! no library with symbols, and is found through `.gopclntab` and probed
//! at entry and at each `RET`; its calls are `api_call` events of an agent
//! with model and usage (over HTTP/1.1 and HTTP/2), on the connect's
//! socket, its key never shown.

use std::{path::PathBuf, process::Command};

use e2e::{HttpsServer, Sensor, kind, pid, require_root, serial};

const KEY: &str = "sk-proj-GOE2EPLANTEDSECRET0123456789abcdef";

/// Builds the fixture with extra flags into `dir`.
fn build(dir: &std::path::Path, name: &str, flags: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let ok = Command::new("go")
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/go_agent.go"))
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .status()
        .expect("go (golang-go, installed by cargo xtask setup)")
        .success();
    assert!(ok, "go build failed");
    out
}

/// Runs the agent to its end against `server`; returns what it printed.
fn call(exe: &std::path::Path, server: &HttpsServer, calls: u32) -> String {
    let out = Command::new(exe)
        .arg(format!("https://127.0.0.1:{}", server.port))
        .arg(calls.to_string())
        .env("SSL_CERT_FILE", &server.cert)
        .env("OPENAI_API_KEY", KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_go_agents_calls_are_api_calls_stripped_or_not() {
    let _g = serial();
    if !require_root("a_go_agents_calls_are_api_calls_stripped_or_not") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plain = build(dir.path(), "go-agent", &[]);
    let stripped = build(dir.path(), "go-agent-stripped", &["-ldflags=-s -w"]);
    let sensor = Sensor::start_with(&["--json"], None);
    let server = HttpsServer::start("127.0.0.1");
    for exe in [&plain, &stripped] {
        assert_eq!(call(exe, &server, 3), "ok 1");
        // The pid is gone by now: calls are found by their executable.
        let exe_name = exe.to_string_lossy().to_string();
        let calls = sensor.wait_for_n("the Go agent's api_calls", 3, |v| {
            kind(v) == "api_call" && v["process"]["exe"] == exe_name.as_str()
        });
        let first_pid = pid(&calls[0]);
        for c in &calls {
            assert_eq!(pid(c), first_pid, "{c}");
            assert_eq!(c["method"], "POST", "{c}");
            assert_eq!(c["path"], "/v1/chat/completions", "{c}");
            assert_eq!(c["status"], 200, "{c}");
            assert_eq!(c["transport"], "tls", "{c}");
            assert_eq!(c["tls_library"], "go", "{c}");
            assert_eq!(c["http_version"], "HTTP/1.1", "{c}");
            assert_eq!(c["provider"], "openai-compatible", "{c}");
            assert_eq!(c["llm"]["model"], "gpt-e2e", "{c}");
            assert_eq!(c["llm"]["input_tokens"], 1, "{c}");
            assert_eq!(c["llm"]["output_tokens"], 1, "{c}");
            assert!(
                c["agent"]["id"].as_str().unwrap().starts_with("agt-"),
                "{c}"
            );
            // The fd read from the netFD is the connection's socket.
            assert_eq!(c["dport"], server.port, "{c}");
            assert!(
                c["credential_fingerprint"]
                    .as_str()
                    .unwrap()
                    .starts_with("Bearer fp:"),
                "{c}"
            );
        }
    }
    let status = sensor.status_when("both Go binaries", |s| {
        [&plain, &stripped]
            .iter()
            .all(|e| s.contains(&format!("{} [Go crypto/tls]", e.display())))
    });
    for exe in [&plain, &stripped] {
        let block: Vec<&str> = status
            .lines()
            .skip_while(|l| l.trim() != format!("{} [Go crypto/tls]", exe.display()))
            .take(3)
            .collect();
        assert_eq!(block.len(), 3, "{status}");
        assert!(
            block[1]
                .trim()
                .starts_with("crypto/tls.(*Conn).Write: symbol at 0x")
                && block[1].ends_with("(gopclntab, captured at entry)"),
            "{status}"
        );
        assert!(
            block[2]
                .trim()
                .starts_with("crypto/tls.(*Conn).Read: symbol at 0x")
                && block[2].ends_with(" RET probes)"),
            "{status}"
        );
    }
    let (_, stderr, events) = sensor.stop_with_events();
    assert!(!stderr.contains("GOE2EPLANTED"));
    assert!(!status.contains("GOE2EPLANTED"));
    for e in &events {
        assert!(!e.to_string().contains("GOE2EPLANTED"), "{e}");
    }
}

#[test]
fn tls_skip_leaves_a_binary_unprobed() {
    let _g = serial();
    if !require_root("tls_skip_leaves_a_binary_unprobed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "gateway", &[]);
    let config = format!("[tls]\nskip = [\"{}/gate*\"]\n", dir.path().display());
    let sensor = Sensor::start_with(&["--json"], Some(&config));
    let server = HttpsServer::start("127.0.0.1");
    assert_eq!(call(&exe, &server, 1), "ok 1");
    let exe_name = exe.to_string_lossy().to_string();
    // Its connection is seen (named by its ClientHello), its calls are not.
    sensor.wait_for("the skipped binary's ClientHello", |v| {
        kind(v) == "tls_client_hello" && v["process"]["exe"] == exe_name.as_str()
    });
    let status = sensor.status_when("the skipped binary", |s| {
        s.contains(&format!("{} [-]", exe.display()))
    });
    assert!(
        status.contains(&format!("{} [-]", exe.display()))
            && status.contains(&format!(
                "skipped: tls.skip \"{}/gate*\"",
                dir.path().display()
            )),
        "{status}"
    );
    let (_, _, events) = sensor.stop_with_events();
    assert!(
        !events
            .iter()
            .any(|v| kind(v) == "api_call" && v["process"]["exe"] == exe_name.as_str()),
        "a skipped binary's call was captured"
    );
}

#[test]
fn a_go_agents_calls_over_http2_carry_model_and_usage() {
    let _g = serial();
    if !require_root("a_go_agents_calls_over_http2_carry_model_and_usage") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "go-agent-h2", &[]);
    let sensor = Sensor::start_with(&["--json"], None);
    // Offers h2 by ALPN: Go's client speaks HTTP/2 to it.
    let server = HttpsServer::start_h2("127.0.0.1");
    assert_eq!(call(&exe, &server, 2), "ok 1");
    let exe_name = exe.to_string_lossy().to_string();
    let calls = sensor.wait_for_n("the Go agent's HTTP/2 api_calls", 2, |v| {
        kind(v) == "api_call" && v["process"]["exe"] == exe_name.as_str()
    });
    for c in &calls {
        assert_eq!(c["http_version"], "HTTP/2", "{c}");
        assert_eq!(c["path"], "/v1/chat/completions", "{c}");
        assert_eq!(c["status"], 200, "{c}");
        assert_eq!(c["llm"]["model"], "gpt-e2e", "{c}");
        assert_eq!(c["llm"]["input_tokens"], 1, "{c}");
        assert_eq!(c["llm"]["output_tokens"], 1, "{c}");
        assert_eq!(c["llm"]["truncated"], false, "{c}");
    }
    let (_, stderr, events) = sensor.stop_with_events();
    assert!(!stderr.contains("GOE2EPLANTED"));
    for e in &events {
        assert!(!e.to_string().contains("GOE2EPLANTED"), "{e}");
    }
}
