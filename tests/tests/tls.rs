//! TLS: destinations named from the ClientHello, plaintext captured from the
//! libraries, and no secret from that plaintext ever in the output.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use e2e::{
    ChildLines, HttpsServer, Sensor, kind, pid, python3, require_root, run, serial, summary_counter,
};

#[test]
fn client_hello_names_the_destination() {
    let _g = serial();
    if !require_root("client_hello_names_the_destination") {
        return;
    }
    let sensor = Sensor::start();
    for addr in ["127.0.0.1", "::1"] {
        let server = HttpsServer::start(addr);
        let script = format!(
            "import socket, ssl\nctx = ssl.create_default_context()\nctx.check_hostname = False\nctx.verify_mode = ssl.CERT_NONE\nctx.set_alpn_protocols(['http/1.1'])\ns = ctx.wrap_socket(socket.create_connection(('{addr}', {})), server_hostname='api.vendor.example')\ns.sendall(b'GET /v1/models HTTP/1.1\\r\\nHost: api.vendor.example\\r\\nConnection: close\\r\\n\\r\\n')\ns.recv(4096)\n",
            server.port
        );
        let (child, status) = run(Command::new(python3()).args(["-c", &script]));
        assert!(status.success(), "python TLS client to {addr}: {status}");
        let ev = sensor.wait_for(&format!("ClientHello of {child}"), |v| {
            kind(v) == "tls_client_hello" && pid(v) == u64::from(child)
        });
        assert_eq!(ev["sni"], "api.vendor.example", "{ev}");
        assert_eq!(ev["alpn"][0], "http/1.1", "{ev}");
        assert_eq!(ev["daddr"], addr, "{ev}");
        assert_eq!(ev["dport"], server.port, "{ev}");
        assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
    }
    sensor.stop();
}

#[test]
fn curl_hello_carries_its_sni() {
    let _g = serial();
    if !require_root("curl_hello_carries_its_sni") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    let url = format!("https://localhost:{}/v1/chat/completions", server.port);
    let (child, status) = run(Command::new("curl").args(["-sSk", "-m", "10", "--http1.1", &url]));
    assert!(status.success());
    let ev = sensor.wait_for("curl's ClientHello", |v| {
        kind(v) == "tls_client_hello" && pid(v) == u64::from(child)
    });
    assert_eq!(ev["sni"], "localhost", "{ev}");
    assert_eq!(ev["process"]["exe"], "/usr/bin/curl");
    sensor.stop();
}

#[test]
fn secrets_in_tls_plaintext_never_reach_the_output() {
    let _g = serial();
    if !require_root("secrets_in_tls_plaintext_never_reach_the_output") {
        return;
    }
    const SECRET: &str = "sk-live-PLANTED-e2e-7f3a9c1b5d";
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    let url = format!(
        "https://127.0.0.1:{}/v1/orders?api_key={SECRET}",
        server.port
    );
    let auth = format!("Authorization: Bearer {SECRET}");
    let key = format!("x-api-key: {SECRET}");
    // curl: SSL_write/SSL_read; python: SSL_write_ex/SSL_read_ex.
    let (curl, status) = run(Command::new("curl").args([
        "-sSk",
        "-m",
        "10",
        "--http1.1",
        "-H",
        &auth,
        "-H",
        &key,
        "-d",
        "{\"qty\":1}",
        &url,
    ]));
    assert!(status.success());
    let script = format!(
        "import ssl, urllib.request\nctx = ssl.create_default_context()\nctx.check_hostname = False\nctx.verify_mode = ssl.CERT_NONE\nreq = urllib.request.Request('{url}', data=b'{{}}', headers={{'Authorization': 'Bearer {SECRET}', 'Cookie': 'session={SECRET}'}})\nurllib.request.urlopen(req, context=ctx).read()\n"
    );
    let (py, status) = run(Command::new(python3()).args(["-c", &script]));
    assert!(status.success());
    for child in [curl, py] {
        sensor.wait_for("the client's exit", |v| {
            kind(v) == "exit" && pid(v) == u64::from(child)
        });
    }
    assert_eq!(server.requests().len(), 2, "{:?}", server.requests());
    // A request that is never answered is reported only when the sensor
    // stops: what it writes while shutting down is checked too.
    let dir = tempfile::tempdir().unwrap();
    let mut silent = OneShotTlsServer::start(dir.path(), "time.sleep(60)");
    let mut unanswered = Command::new("curl")
        .args(["-sSk", "-m", "30", "--http1.1", "-H", &auth, "-d", "{}"])
        .arg(format!(
            "https://127.0.0.1:{}/v1/payments?api_key={SECRET}",
            silent.port
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    silent.wait_received();
    let (_, stderr, events) = sensor.stop_with_events();
    let _ = unanswered.kill();
    let _ = unanswered.wait();
    // The plaintext was captured and understood (so this check is not
    // vacuous)...
    assert!(summary_counter(&stderr, "tls_records") >= 5, "{stderr}");
    let calls = events.iter().filter(|v| kind(v) == "api_call").count();
    assert!(
        calls >= 3,
        "expected the three calls as events, got {calls}"
    );
    let at_stop = events
        .iter()
        .find(|v| kind(v) == "api_call" && pid(v) == u64::from(unanswered.id()))
        .unwrap_or_else(|| panic!("the unanswered call was not reported at stop:\n{stderr}"));
    assert_eq!(
        at_stop["path"], "/v1/payments?api_key=<redacted>",
        "{at_stop}"
    );
    // ...and appears in no event and no log line.
    for v in &events {
        assert!(
            !v.to_string().contains("PLANTED"),
            "secret in an event: {v}"
        );
    }
    assert!(!stderr.contains("PLANTED"), "secret in the log:\n{stderr}");
}

fn api_call_of(sensor: &Sensor, child: u32, method: &str) -> e2e::Value {
    sensor.wait_for(&format!("{method} api_call of {child}"), |v| {
        kind(v) == "api_call" && pid(v) == u64::from(child) && v["method"] == method
    })
}

#[test]
fn curl_calls_become_api_calls() {
    let _g = serial();
    if !require_root("curl_calls_become_api_calls") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    let base = format!("https://localhost:{}", server.port);
    let started = Instant::now();
    let (get, status) = run(Command::new("curl").args([
        "-sSk",
        "-m",
        "10",
        "--http1.1",
        "-H",
        "Authorization: Bearer tok-e2e-123",
        &format!("{base}/v1/orders/8812?limit=5"),
    ]));
    let get_run = started.elapsed();
    assert!(status.success());
    let (post, status) = run(Command::new("curl").args([
        "-sSk",
        "-m",
        "10",
        "--http1.1",
        "-H",
        "Content-Type: application/json",
        "-H",
        "Authorization: Bearer tok-e2e-456",
        "-d",
        "{\"sku\":\"A-1\",\"qty\":2}",
        &format!("{base}/v1/orders"),
    ]));
    assert!(status.success());

    let g = api_call_of(&sensor, get, "GET");
    assert_eq!(g["authority"], format!("localhost:{}", server.port), "{g}");
    assert_eq!(g["path"], "/v1/orders/8812?limit=5");
    assert_eq!(g["path_template"], "/v1/orders/{id}?limit");
    assert_eq!(g["status"], 200);
    assert_eq!(g["http_version"], "HTTP/1.1");
    assert_eq!(g["transport"], "tls");
    assert_eq!(g["tls_library"], "openssl");
    // The stream is tied to its socket: destination and SNI from connect
    // and the ClientHello.
    assert_eq!(g["daddr"], "127.0.0.1", "{g}");
    assert_eq!(g["dport"], u64::from(server.port), "{g}");
    assert_eq!(g["sni"], "localhost", "{g}");
    let fp = g["credential_fingerprint"].as_str().unwrap();
    assert!(
        fp.starts_with("Bearer fp:") && !fp.contains("tok-e2e"),
        "{fp}"
    );
    assert!(g["response_bytes"].as_u64().unwrap() > 20, "{g}");
    // From the request to the response: some time, less than curl's run.
    let latency = g["latency_ms"].as_f64().unwrap();
    assert!(
        latency > 0.0 && latency < get_run.as_secs_f64() * 1e3,
        "latency {latency} ms of a call inside a {get_run:?} run: {g}"
    );

    let p = api_call_of(&sensor, post, "POST");
    assert_eq!(p["status"], 201, "{p}");
    assert_eq!(p["path_template"], "/v1/orders");
    assert!(
        p["request_bytes"].as_u64().unwrap() >= 21,
        "body counted: {p}"
    );
    // The same kind of credential, another value: another fingerprint.
    let pfp = p["credential_fingerprint"].as_str().unwrap();
    assert!(pfp.starts_with("Bearer fp:") && pfp != fp, "{pfp} vs {fp}");

    // The server saw exactly these two requests.
    let reqs = server.requests();
    assert_eq!(
        reqs,
        [
            "REQ GET /v1/orders/8812?limit=5 0",
            "REQ POST /v1/orders 21"
        ],
        "{reqs:?}"
    );
    sensor.stop();
}

#[test]
fn python_ex_calls_become_api_calls() {
    let _g = serial();
    if !require_root("python_ex_calls_become_api_calls") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    // urllib over Python's ssl module: SSL_write_ex / SSL_read_ex.
    let script = format!(
        "import ssl, urllib.request\nctx = ssl.create_default_context()\nctx.check_hostname = False\nctx.verify_mode = ssl.CERT_NONE\nbase = 'https://127.0.0.1:{}'\nurllib.request.urlopen(base + '/crm/customers/42', context=ctx).read()\nreq = urllib.request.Request(base + '/billing/credits', data=b'{{\"amount\": 50}}', headers={{'x-api-key': 'crm-key-e2e'}})\nurllib.request.urlopen(req, context=ctx).read()\n",
        server.port
    );
    let (child, status) = run(Command::new(python3()).args(["-c", &script]));
    assert!(status.success());
    let g = api_call_of(&sensor, child, "GET");
    assert_eq!(g["path_template"], "/crm/customers/{id}", "{g}");
    assert_eq!(g["status"], 200);
    let p = api_call_of(&sensor, child, "POST");
    assert_eq!(p["path"], "/billing/credits", "{p}");
    assert_eq!(p["dport"], u64::from(server.port), "{p}");
    assert_eq!(p["status"], 201);
    let fp = p["credential_fingerprint"].as_str().unwrap();
    assert!(fp.starts_with("fp:") && fp.len() == 15, "{fp}");
    assert_eq!(server.requests().len(), 2);
    // The test server's own side of the connections is not reported.
    assert!(
        !sensor
            .events()
            .iter()
            .any(|v| kind(v) == "api_call" && pid(v) == u64::from(server.pid)),
        "server-side exchanges must not be reported as calls"
    );
    sensor.stop();
}

#[test]
fn gnutls_calls_become_api_calls() {
    let _g = serial();
    if !require_root("gnutls_calls_become_api_calls") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    // Debian's wget links GnuTLS: gnutls_record_send / gnutls_record_recv.
    let url = format!("https://127.0.0.1:{}/v1/inventory/items", server.port);
    let (child, status) = run(Command::new("wget").args([
        "-q",
        "--no-check-certificate",
        "-O",
        "/dev/null",
        "--header",
        "Authorization: Bearer w-e2e",
        &url,
    ]));
    assert!(status.success(), "wget: {status}");
    let g = api_call_of(&sensor, child, "GET");
    assert_eq!(g["tls_library"], "gnutls", "{g}");
    assert_eq!(g["path"], "/v1/inventory/items");
    assert_eq!(g["status"], 200);
    assert!(
        g["credential_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("Bearer fp:")
    );
    let (post, status) = run(Command::new("wget").args([
        "-q",
        "--no-check-certificate",
        "-O",
        "/dev/null",
        "--header",
        "Authorization: Bearer w-e2e",
        "--post-data",
        "{\"sku\":\"A-1\"}",
        &url,
    ]));
    assert!(status.success(), "wget: {status}");
    let p = api_call_of(&sensor, post, "POST");
    assert_eq!(p["status"], 201, "{p}");
    assert!(p["request_bytes"].as_u64().unwrap() > 13, "{p}");
    assert!(
        p["credential_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("Bearer fp:")
    );
    assert!(!p.to_string().contains("w-e2e"), "{p}");
    sensor.stop();
}

#[test]
fn node_fetch_becomes_an_api_call() {
    let _g = serial();
    if !require_root("node_fetch_becomes_an_api_call") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    // Node links OpenSSL statically and exports SSL_*; its TLS runs over a
    // memory BIO.
    let script = format!(
        "const base = 'https://127.0.0.1:{}'; const auth = {{authorization: 'Bearer node-e2e'}}; fetch(base + '/v1/models/42', {{headers: auth}}).then(r => r.text()).then(() => fetch(base + '/v1/chat/completions', {{method: 'POST', body: JSON.stringify({{model: 'm'}}), headers: {{...auth, 'content-type': 'application/json'}}}})).then(r => r.text()).then(() => process.exit(0), e => {{ console.error(e); process.exit(1); }})",
        server.port
    );
    let (child, status) = run(Command::new("node")
        .args(["-e", &script])
        .env("NODE_TLS_REJECT_UNAUTHORIZED", "0"));
    assert!(status.success(), "node: {status}");
    let g = api_call_of(&sensor, child, "GET");
    assert_eq!(g["path_template"], "/v1/models/{id}", "{g}");
    assert_eq!(g["status"], 200, "{g}");
    assert!(g["credential_fingerprint"].as_str().is_some(), "{g}");
    let p = api_call_of(&sensor, child, "POST");
    assert_eq!(p["path"], "/v1/chat/completions", "{p}");
    assert_eq!(p["status"], 200);
    assert_eq!(p["process"]["exe"], "/usr/bin/node");
    // Memory BIO: the socket is the thread's next write after SSL_write.
    assert_eq!(p["dport"], u64::from(server.port), "{p}");
    assert!(
        p["credential_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("Bearer fp:")
    );
    sensor.stop();
}

#[test]
fn go_client_is_named_by_its_sni() {
    let _g = serial();
    if !require_root("go_client_is_named_by_its_sni") {
        return;
    }
    // Go's crypto/tls has no symbols to hook: the ClientHello it writes on
    // the socket is what names its destination.
    let dir = tempfile::tempdir().unwrap();
    let bin = e2e::go_build(
        dir.path(),
        "goclient",
        r#"package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
	tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "agent-api.vendor.example"}}
	resp, err := (&http.Client{Transport: tr}).Get(os.Args[1])
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	io.Copy(io.Discard, resp.Body)
}
"#,
    );
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    let (child, status) =
        run(Command::new(&bin).arg(format!("https://127.0.0.1:{}/v1/orders", server.port)));
    assert!(status.success(), "go client: {status}");
    let ev = sensor.wait_for("the Go client's ClientHello", |v| {
        kind(v) == "tls_client_hello" && pid(v) == u64::from(child)
    });
    assert_eq!(ev["sni"], "agent-api.vendor.example", "{ev}");
    assert_eq!(ev["dport"], server.port);
    assert_eq!(ev["alpn"][0], "h2", "Go offers h2 first: {ev}");
    sensor.stop();
}

#[test]
fn unanswered_request_is_still_reported() {
    let _g = serial();
    if !require_root("unanswered_request_is_still_reported") {
        return;
    }
    // A TLS server that reads the request and never answers.
    let dir = tempfile::tempdir().unwrap();
    let mut server = OneShotTlsServer::start(dir.path(), "time.sleep(60)");
    let url = format!("https://127.0.0.1:{}/v1/payments", server.port);

    let sensor = Sensor::start();
    let mut client = Command::new("curl")
        .args([
            "-sSk",
            "-m",
            "30",
            "--http1.1",
            "-d",
            "{\"amount\":1}",
            &url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cpid = u64::from(client.id());
    server.wait_received();
    // The request was written before the server read it; a process that
    // starts after that is reported after it (one ring, read in order).
    let (later, _) = run(&mut Command::new("/bin/true"));
    sensor.wait_for("a later process's exec", |v| {
        kind(v) == "exec" && pid(v) == u64::from(later)
    });
    assert!(
        !sensor
            .events()
            .iter()
            .any(|v| kind(v) == "api_call" && pid(v) == cpid),
        "a call is reported once answered or abandoned, not before"
    );
    // Stopping the sensor ends every stream: the request is still reported.
    let (_, stderr, events) = sensor.stop_with_events();
    let _ = client.kill();
    let _ = client.wait();
    let call = events
        .iter()
        .find(|v| kind(v) == "api_call" && pid(v) == cpid)
        .unwrap_or_else(|| panic!("the unanswered POST was lost:\n{stderr}"));
    assert_eq!(call["method"], "POST", "{call}");
    assert_eq!(call["path"], "/v1/payments");
    assert!(call.get("status").is_none(), "no response was seen: {call}");
}

#[test]
fn a_response_read_until_close_is_paired_when_the_client_exits() {
    let _g = serial();
    if !require_root("a_response_read_until_close_is_paired_when_the_client_exits") {
        return;
    }
    // An HTTP/1.0 server that sends no length: the body ends when the
    // connection does (openssl s_server -www answers like this).
    let dir = tempfile::tempdir().unwrap();
    let server = OneShotTlsServer::start(
        dir.path(),
        "s.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nuntil the end')\ns.close()",
    );
    let sensor = Sensor::start();
    let url = format!("https://127.0.0.1:{}/v1/report", server.port);
    let (child, status) =
        run(Command::new("curl").args(["-sSk", "-m", "10", "-o", "/dev/null", &url]));
    assert!(status.success(), "curl: {status}");
    // Reported once the client is gone (the next sweep, within seconds),
    // with the response's status: not left for the idle timeout.
    let call = sensor.wait_for("the close-delimited call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(child)
    });
    assert_eq!(call["path"], "/v1/report", "{call}");
    assert_eq!(call["status"], 200, "{call}");
    assert!(call["response_bytes"].as_u64().unwrap() > 0, "{call}");
    sensor.stop();
}

/// A Python TLS server on loopback that accepts one connection, reads the
/// request (as `s`), says so, then runs `then`.
struct OneShotTlsServer {
    child: Child,
    port: u16,
    lines: ChildLines,
}

impl OneShotTlsServer {
    fn start(dir: &std::path::Path, then: &str) -> OneShotTlsServer {
        let (cert, key) = e2e::self_signed_cert(dir);
        let src = format!(
            "import socket, ssl, time\nctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\nctx.load_cert_chain('{}', '{}')\nl = socket.create_server(('127.0.0.1', 0))\nprint(l.getsockname()[1], flush=True)\nc, _ = l.accept()\ns = ctx.wrap_socket(c, server_side=True)\ns.recv(4096)\nprint('received', flush=True)\n{then}\n",
            cert.display(),
            key.display()
        );
        let mut child = Command::new(python3())
            .args(["-c", &src])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (port, lines) = ChildLines::start(child.stdout.take().unwrap());
        let port = port.trim().parse().expect("the server's port");
        OneShotTlsServer { child, port, lines }
    }

    /// Waits up to 15 s until the server has read the request.
    fn wait_received(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.lines.lines().iter().any(|l| l == "received") {
            assert!(
                Instant::now() < deadline,
                "the server never received the request"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for OneShotTlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
