//! Codex CLI, the real binary from npm (a static-pie Rust executable,
//! stripped, pinned in tests/agents), run offline in a loopback-only
//! network namespace against a local HTTPS stand-in of the OpenAI
//! Responses API (tests/fixtures/responses_server.py). Its TLS is rustls
//! with the aws-lc provider, linked in without symbols: the sensor finds
//! aws-lc's record cipher (`EVP_AEAD_CTX_seal`/`_open`) by signature, and
//! the plaintext of each record gives Codex's `POST /v1/responses` as an
//! `api_call` of an agent, with model and usage read from the streamed
//! answer, its API key never shown.
//! Before that capture, Codex was named only by its ClientHello.
//!
//! How Codex is run offline: the stand-in's certificate is a leaf signed
//! by a CA made for the test (rustls refuses a self-signed certificate
//! used as a server's, `CaUsedAsEndEntity`, which is what
//! [`e2e::HttpsServer`] has), trusted through `SSL_CERT_FILE`; it offers
//! HTTP/1.1 only (offered h2, Codex speaks HTTP/2). Codex is pointed at
//! it as a custom model provider without WebSockets: with
//! `openai_base_url` (the built-in provider) it first tries a WebSocket
//! upgrade of `GET /v1/responses` seven times, about 7 s against a 404,
//! before it falls back to the POST. Neither
//! `features.responses_websockets=false`,
//! `features.responses_websockets_v2=false` nor
//! `model_providers.openai.supports_websockets=false` stops that (tried on
//! 0.171.0); a provider of its own with `supports_websockets=false` does.
//! `analytics.enabled=false` spares 5 s at exit: its metrics exporter
//! resolves ab.chatgpt.com, and musl's resolver retries for 5 s in a
//! namespace without a route. A run then takes about 1 s.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use e2e::{
    ChildLines, Netns, Sensor, kind, npm_binary, pid, python3, record_ran, require_root,
    sensor_bin, serial, start_fixture, venv_python,
};

const BINARY: &str = "@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex";

/// The key Codex is given: it must appear in no output.
const KEY: &str = "sk-codex-e2e-secret-PLANTED0123456789abcdefghij";

/// The model it is told to use (the stand-in echoes the request's).
const MODEL: &str = "gpt-e2e-codex";

/// What the stand-in answers (tests/fixtures/responses_server.py), and
/// the usage its `response.completed` event carries.
const TEXT: &str = "Hello from the Codex stand-in E2EMARKER";
const INPUT_TOKENS: u64 = 11;
const OUTPUT_TOKENS: u64 = 7;

/// A CA and a leaf for 127.0.0.1 signed by it, made now with the openssl
/// CLI in `dir`; returns (CA certificate, leaf certificate, leaf key).
fn ca_and_leaf(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    // Each argument list is split at spaces.
    let openssl = |args: &str| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args.split_whitespace())
            .output()
            .expect("run openssl to make the test certificates");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(&format!(
        "req -x509 {ec} -days 1 -subj /CN=sensor-e2e-ca \
         -addext basicConstraints=critical,CA:TRUE \
         -addext keyUsage=critical,keyCertSign,cRLSign -keyout ca.key -out ca.pem"
    ));
    openssl(&format!(
        "req {ec} -subj /CN=127.0.0.1 -keyout leaf.key -out leaf.csr"
    ));
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 1 \
         -extfile leaf.ext -out leaf.pem",
    );
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

/// tests/fixtures/responses_server.py (HTTP/1.1) or h2_server.py (HTTP/2,
/// which Codex speaks to a server that offers it, as the real API does)
/// in a network namespace, with a CA-signed certificate made at start.
struct Standin {
    port: u16,
    /// The WebSocket stand-in: Codex is pointed at it with the built-in
    /// provider, which tries a WebSocket first.
    websocket: bool,
    /// The CA that signed its certificate, for Codex to trust.
    ca: PathBuf,
    child: Child,
    requests: ChildLines,
    _dir: tempfile::TempDir,
}

impl Standin {
    fn start_in(ns: &Netns) -> Standin {
        Self::start(ns, Path::new(python3()), "responses_server.py", None)
    }

    /// TLS 1.2 only: rustls seals its records with another function.
    fn start_tls12_in(ns: &Netns) -> Standin {
        Self::start(
            ns,
            Path::new(python3()),
            "responses_server.py",
            Some("tls1.2"),
        )
    }

    /// Over HTTP/2 (the `h2` package is in the test virtualenv).
    fn start_h2_in(ns: &Netns) -> Standin {
        Self::start(ns, &venv_python(), "h2_server.py", None)
    }

    /// The Responses API over WebSocket (tests/fixtures/responses_ws_server.py,
    /// the `websockets` package from the test virtualenv);
    /// `Some("no-deflate")` turns permessage-deflate off.
    fn start_ws_in(ns: &Netns, option: Option<&str>) -> Standin {
        let mut s = Self::start(ns, &venv_python(), "responses_ws_server.py", option);
        s.websocket = true;
        s
    }

    fn start(ns: &Netns, python: &Path, fixture: &str, option: Option<&str>) -> Standin {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, cert, key) = ca_and_leaf(dir.path());
        let extra: Vec<&str> = option.into_iter().collect();
        let (child, port, requests) = start_fixture(
            ns.command(python),
            fixture,
            &cert,
            &key,
            "127.0.0.1",
            &extra,
        );
        Standin {
            port,
            websocket: false,
            ca,
            child,
            requests,
            _dir: dir,
        }
    }

    /// "REQ <method> <path> <body bytes>" lines so far (each printed
    /// before its answer).
    fn requests(&self) -> Vec<String> {
        self.requests.lines()
    }

    /// Requests to the Responses API it answered.
    fn posts(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with("REQ POST /v1/responses "))
            .count()
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `codex exec` run in `ns` against `server`, not waited for. `home` is
/// its HOME and working directory (no repository, no AGENTS.md of ours).
fn codex(exe: &Path, ns: &Netns, server: &Standin, home: &Path) -> Child {
    let mut cmd = ns.command(exe);
    cmd.args(["exec", "--skip-git-repo-check"]);
    if server.websocket {
        // The built-in provider: a WebSocket first, as users get it.
        cmd.arg("-c").arg(format!(
            "openai_base_url=\"https://127.0.0.1:{}/v1\"",
            server.port
        ));
    } else {
        // A provider of its own: the built-in one tries WebSockets first,
        // 7 s against a server without them (module doc).
        cmd.arg("-c").arg(format!(
            "model_providers.e2e={{name=\"e2e\",base_url=\"https://127.0.0.1:{}/v1\",\
             env_key=\"CODEX_API_KEY\",wire_api=\"responses\",supports_websockets=false}}",
            server.port
        ));
        cmd.args(["-c", "model_provider=\"e2e\""]);
    }
    cmd.args(["-c", &format!("model=\"{MODEL}\"")])
        // No metrics exporter: 5 s of DNS retries at exit (module doc).
        .args(["-c", "analytics.enabled=false"])
        .arg("Say hi.")
        .current_dir(home)
        .env("HOME", home)
        .env("CODEX_API_KEY", KEY)
        .env("SSL_CERT_FILE", &server.ca)
        .env_remove("CODEX_HOME")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start codex")
}

/// Waits up to 90 s; returns (success, stdout + stderr).
fn finish(child: Child) -> (bool, String) {
    e2e::finish_within(child, Duration::from_secs(90))
}

/// Runs Codex once to its answer (checked); returns its pid.
fn run_codex(exe: &Path, ns: &Netns, server: &Standin) -> u64 {
    let home = tempfile::tempdir().unwrap();
    let child = codex(exe, ns, server, home.path());
    let me = u64::from(child.id());
    let (ok, out) = finish(child);
    assert!(ok, "codex exec failed: {out}\n{:?}", server.requests());
    assert!(out.contains(TEXT), "{out}");
    me
}

fn no_key(what: &str, text: &str) {
    assert!(!text.contains("codex-e2e-secret"), "the API key in {what}");
}

/// The lines `sensor status` lists under `exe` once it is resolved as
/// aws-lc: its line ("PATH [aws-lc]") and the functions found in it
/// ("EVP_AEAD_CTX_seal: signature at 0x…"); empty before.
fn status_block(status: &str, exe: &Path) -> Vec<String> {
    let mut lines = status
        .lines()
        .skip_while(|l| l.trim() != format!("{} [aws-lc]", exe.display()));
    let Some(head) = lines.next() else {
        return Vec::new();
    };
    std::iter::once(head)
        .chain(lines.take_while(|l| l.starts_with("    ")))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The stand-in and Codex work without the sensor: Codex prints the
/// stand-in's answer after one POST, and never tries the WebSocket. (When
/// the capture test fails, this says whether the harness or the sensor
/// is at fault.)
#[test]
fn codex_completes_against_the_responses_stand_in() {
    let _g = serial();
    if !require_root("codex_completes_against_the_responses_stand_in") {
        return;
    }
    let ns = Netns::new("codex-alone");
    let server = Standin::start_in(&ns);
    run_codex(&npm_binary(BINARY), &ns, &server);
    let requests = server.requests();
    assert_eq!(server.posts(), 1, "{requests:?}");
    // No WebSocket attempt (module doc): one POST and nothing else.
    assert_eq!(requests.len(), 1, "one POST and nothing else: {requests:?}");
}

#[test]
fn codex_calls_are_captured_with_model_and_usage() {
    let _g = serial();
    if !require_root("codex_calls_are_captured_with_model_and_usage") {
        return;
    }
    let exe = npm_binary(BINARY);
    let sensor = Sensor::start_with(&["--json"], None);
    let ns = Netns::new("codex");
    let server = Standin::start_in(&ns);
    // The daemon resolves an executable it has never seen when a process
    // execs it, and Codex's request may leave before that (as for Claude
    // Code): a first run, then wait until it is hooked.
    run_codex(&exe, &ns, &server);
    let shown = exe.canonicalize().unwrap();
    sensor.status_when("Codex hooked", |s| !status_block(s, &shown).is_empty());

    let before = server.posts();
    let me = run_codex(&exe, &ns, &server);
    let posts = server.posts() - before;
    assert_eq!(posts, 1, "{:?}", server.requests());

    let calls = sensor.wait_for_n("Codex's api_calls", posts, |v| {
        kind(v) == "api_call" && pid(v) == me
    });
    for c in &calls {
        assert_eq!(c["method"], "POST", "{c}");
        assert_eq!(c["path"], "/v1/responses", "{c}");
        assert_eq!(c["status"], 200, "{c}");
        assert_eq!(c["transport"], "tls", "{c}");
        // Reached by IP (no SNI): named by its path.
        assert_eq!(c["provider"], "openai-compatible", "{c}");
        // The model from the request (and echoed in the answer); usage
        // from the `response.completed` event of the stream.
        assert_eq!(c["llm"]["model"], MODEL, "{c}");
        assert_eq!(c["llm"]["stream"], true, "{c}");
        assert_eq!(c["llm"]["input_tokens"], INPUT_TOKENS, "{c}");
        assert_eq!(c["llm"]["output_tokens"], OUTPUT_TOKENS, "{c}");
        assert!(
            c["agent"]["id"]
                .as_str()
                .unwrap_or_default()
                .starts_with("agt-"),
            "{c}"
        );
        // `Authorization: Bearer <key>`, fingerprinted.
        assert!(
            c["credential_fingerprint"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Bearer fp:"),
            "{c}"
        );
        // The records went out on the connect's socket: the call names
        // the stand-in as its destination.
        assert_eq!(c["daddr"], "127.0.0.1", "{c}");
        assert_eq!(c["dport"], server.port, "{c}");
    }

    // Over HTTP/2, which Codex speaks to a server that offers it (as
    // api.openai.com does): the same call, from HPACK headers and DATA.
    let h2 = Standin::start_h2_in(&ns);
    let me = run_codex(&exe, &ns, &h2);
    assert_eq!(h2.posts(), 1, "{:?}", h2.requests());
    let c = sensor.wait_for("Codex's api_call over HTTP/2", |v| {
        kind(v) == "api_call" && pid(v) == me
    });
    assert_eq!(c["http_version"], "HTTP/2", "{c}");
    assert_eq!(
        (&c["method"], &c["path"], &c["status"]),
        (&"POST".into(), &"/v1/responses".into(), &200.into()),
        "{c}"
    );
    assert_eq!(c["llm"]["model"], MODEL, "{c}");
    assert_eq!(c["llm"]["input_tokens"], INPUT_TOKENS, "{c}");
    assert_eq!(c["llm"]["output_tokens"], OUTPUT_TOKENS, "{c}");
    assert_eq!(c["dport"], h2.port, "{c}");

    // Over TLS 1.2 (AES-GCM): sealed by EVP_AEAD_CTX_seal_scatter, with
    // the record's explicit nonce before the plaintext.
    let tls12 = Standin::start_tls12_in(&ns);
    let me = run_codex(&exe, &ns, &tls12);
    assert_eq!(tls12.posts(), 1, "{:?}", tls12.requests());
    let c = sensor.wait_for("Codex's api_call over TLS 1.2", |v| {
        kind(v) == "api_call" && pid(v) == me
    });
    assert_eq!(
        (&c["method"], &c["status"]),
        (&"POST".into(), &200.into()),
        "{c}"
    );
    assert_eq!(c["llm"]["model"], MODEL, "{c}");
    assert_eq!(c["llm"]["output_tokens"], OUTPUT_TOKENS, "{c}");
    assert_eq!(c["dport"], tls12.port, "{c}");

    // `sensor status` says how each function was found: aws-lc's record
    // cipher, by signature.
    let status = sensor.status_when("Codex's executable", |s| {
        !status_block(s, &shown).is_empty()
    });
    let block = status_block(&status, &shown);
    for f in ["EVP_AEAD_CTX_seal", "EVP_AEAD_CTX_open"] {
        assert!(
            block
                .iter()
                .any(|l| l.starts_with(&format!("{f}: signature at "))),
            "{f} not found by signature:\n{status}"
        );
    }
    no_key("status", &status);

    let (_, stderr, events) = sensor.stop_with_events();
    no_key("the sensor's log", &stderr);
    for e in &events {
        no_key("an event", &e.to_string());
    }
}

/// Codex's first transport with the built-in provider: `GET
/// /v1/responses` upgraded to a WebSocket (permessage-deflate when the
/// server accepts it, as the real API does), then a `response.create`
/// message per request: a warm-up (`generate: false`) and the turn, each
/// answered by the Responses API's events as messages. Each message is an
/// `api_call` (`WS /v1/responses`, version `websocket`) with the
/// upgrade's credential, the model, and the usage of its
/// `response.completed`; with compression and without.
#[test]
fn codex_websocket_calls_are_captured_with_model_and_usage() {
    let _g = serial();
    if !require_root("codex_websocket_calls_are_captured_with_model_and_usage") {
        return;
    }
    let exe = npm_binary(BINARY);
    let shown = exe.canonicalize().unwrap();
    let sensor = Sensor::start_with(&["--json"], None);
    let ns = Netns::new("codex-ws");
    for option in [None, Some("no-deflate")] {
        let server = Standin::start_ws_in(&ns, option);
        if option.is_none() {
            // Hooked once its executable was seen (as in the test above).
            run_codex(&exe, &ns, &server);
            sensor.status_when("Codex hooked", |s| !status_block(s, &shown).is_empty());
        }
        let before = server.requests().len();
        let me = run_codex(&exe, &ns, &server);
        let seen = server.requests()[before..].to_vec();
        // One upgrade, the warm-up and the turn, and no POST.
        let creates = seen
            .iter()
            .filter(|r| r.starts_with("WS response.create "))
            .count();
        assert_eq!(creates, 2, "{option:?}: {seen:?}");
        assert_eq!(server.posts(), 0, "{seen:?}");
        let calls = sensor.wait_for_n(&format!("Codex's WebSocket calls ({option:?})"), 3, |v| {
            kind(v) == "api_call" && pid(v) == me
        });
        let upgrade: Vec<_> = calls.iter().filter(|c| c["method"] == "GET").collect();
        assert_eq!(upgrade.len(), 1, "{calls:?}");
        assert_eq!(upgrade[0]["status"], 101, "{}", upgrade[0]);
        assert_eq!(upgrade[0]["path"], "/v1/responses", "{}", upgrade[0]);
        let ws: Vec<_> = calls.iter().filter(|c| c["method"] == "WS").collect();
        assert_eq!(ws.len(), 2, "{calls:?}");
        for c in &ws {
            assert_eq!(c["path"], "/v1/responses", "{c}");
            assert_eq!(c["http_version"], "websocket", "{c}");
            assert_eq!(c["transport"], "tls", "{c}");
            assert_eq!(c["tls_library"], "rustls", "{c}");
            assert_eq!(c["provider"], "openai-compatible", "{c}");
            assert_eq!(c["llm"]["model"], MODEL, "{c}");
            assert_eq!(c["llm"]["truncated"], false, "{c}");
            assert!(
                c["credential_fingerprint"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("Bearer fp:"),
                "{c}"
            );
            assert!(
                c["agent"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("agt-"),
                "{c}"
            );
            assert_eq!(c["dport"], server.port, "{c}");
        }
        // The warm-up's usage is 0; the turn's is the stand-in's.
        let usage: Vec<_> = ws
            .iter()
            .map(|c| {
                (
                    c["llm"]["input_tokens"].clone(),
                    c["llm"]["output_tokens"].clone(),
                )
            })
            .collect();
        assert!(usage.contains(&(0.into(), 0.into())), "{usage:?}");
        assert!(
            usage.contains(&(INPUT_TOKENS.into(), OUTPUT_TOKENS.into())),
            "{usage:?}"
        );
    }
    let (_, stderr, events) = sensor.stop_with_events();
    no_key("the sensor's log", &stderr);
    for e in &events {
        no_key("an event", &e.to_string());
        assert_ne!(e["kind"], "parse_error", "{e}");
    }
}

/// `sensor tls-resolve` (no daemon, no root) finds aws-lc in Codex and
/// its AEAD seal and open by signature, at the file offsets measured
/// with gdb and kernel uprobes on this very build (
/// `EVP_AEAD_CTX_seal` at VA 0x12629450, `_open` at 0x12629690, file
/// offset = VA - 0x1000).
#[test]
fn codex_aead_functions_are_found_by_signature() {
    let _g = serial();
    record_ran("codex_aead_functions_are_found_by_signature");
    let exe = npm_binary(BINARY);
    let out = Command::new(sensor_bin())
        .arg("tls-resolve")
        .arg(&exe)
        .output()
        .expect("run sensor tls-resolve");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}{err}");
    assert!(text.contains("aws-lc"), "{text}");
    assert!(text.contains("EVP_AEAD_CTX_seal: signature"), "{text}");
    assert!(text.contains("EVP_AEAD_CTX_open: signature"), "{text}");
    assert!(
        text.contains("EVP_AEAD_CTX_seal: signature at 0x12628450"),
        "{text}"
    );
    assert!(
        text.contains("EVP_AEAD_CTX_open: signature at 0x12628690"),
        "{text}"
    );
}

/// A hold on Codex keeps it at its connections: it speaks HTTP/2 to any
/// server that offers one, and the kernel matches HTTP/1.x request lines
/// at SSL_write, not at aws-lc's cipher. Reached by address (no SNI), its
/// connection is held before any request, until approved; the same once
/// its executable is hooked (when a hooked process used to be resumed and
/// no longer stopped at its connections, which would have let Codex by).
#[test]
fn a_held_codex_waits_at_its_connection_until_approved() {
    let _g = serial();
    if !require_root("a_held_codex_waits_at_its_connection_until_approved") {
        return;
    }
    let config =
        "[[response.hold]]\nagent = \"codex\"\npatterns = [\"POST 127.0.0.1/v1/responses\"]\n";
    let sensor = Sensor::start_with(&["--json"], Some(config));
    let ns = Netns::new("codex-hold");
    let server = Standin::start_in(&ns);
    let exe = npm_binary(BINARY);
    let shown = exe.canonicalize().unwrap();
    for round in ["first run", "hooked"] {
        let home = tempfile::tempdir().unwrap();
        let before = server.posts();
        let child = codex(&exe, &ns, &server, home.path());
        let me = child.id();
        let h = sensor.wait_for(&format!("Codex's hold ({round})"), |v| {
            kind(v) == "held" && pid(v) == u64::from(me)
        });
        assert_eq!(h["level"], "connection", "{round}: {h}");
        assert!(
            h["head"].as_str().unwrap_or_default().contains("no SNI"),
            "{h}"
        );
        e2e::wait_until("Codex to stop", || e2e::state(me) == 'T');
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(server.posts(), before, "{round}: {:?}", server.requests());
        let id = h["hold_id"].as_u64().unwrap().to_string();
        let (ok, _, err) = sensor.cli(&["approve", &id]);
        assert!(ok, "{err}");
        let (ok, out) = finish(child);
        assert!(ok && out.contains(TEXT), "{round}: {out}");
        assert_eq!(server.posts(), before + 1, "{round}");
        if round == "first run" {
            sensor.status_when("Codex hooked", |s| !status_block(s, &shown).is_empty());
        }
    }
    sensor.stop();
}
