//! Gemini CLI, the real package from npm (`@google/gemini-cli`, plain
//! JavaScript run by the system's Node, whose OpenSSL the sensor hooks;
//! pinned in tests/agents), run offline in a loopback-only network
//! namespace against a local HTTPS stand-in of the Gemini API
//! (tests/fixtures/gemini_server.py). Reached by address (no SNI), its
//! `streamGenerateContent` call is an `api_call` of an agent, named by its
//! path (`gemini-compatible`), with model and usage read from the streamed
//! answer and its API key (`x-goog-api-key`) only as a fingerprint.
//!
//! How it is run offline (measured on 0.61.0): `GOOGLE_GEMINI_BASE_URL`,
//! `GEMINI_API_KEY`, the stand-in's self-signed certificate through
//! `NODE_EXTRA_CA_CERTS`, `~/.gemini/settings.json` choosing API-key auth
//! (with a base URL it otherwise picks a gateway auth that `-p` refuses),
//! `GEMINI_CLI_TRUST_WORKSPACE=true`. `GEMINI_CLI_NO_RELAUNCH=true` keeps
//! the calls in the `gemini` process (by default it starts a second Node
//! with a larger heap, 1.2 s more), usage statistics off spares retried
//! DNS lookups of its telemetry, and `-m` skips the model router's call.
//! A run takes about 2.5 s, most of it loading the 16 MB bundle.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::Duration,
};

use e2e::{
    ChildLines, Netns, Sensor, kind, npm_binary, pid, python3, require_root, self_signed_cert,
    serial, start_fixture,
};

const ENTRY: &str = "@google/gemini-cli/bundle/gemini.js";
const KEY: &str = "gemini-e2e-secret-PLANTED-0123456789";
const MODEL: &str = "gemini-2.5-flash";
/// What the stand-in answers, and its usage.
const TEXT: &str = "Hello from the Gemini stand-in E2EMARKER";
const INPUT_TOKENS: u64 = 13;
const OUTPUT_TOKENS: u64 = 5;

struct Standin {
    port: u16,
    cert: PathBuf,
    child: Child,
    requests: ChildLines,
    _dir: tempfile::TempDir,
}

impl Standin {
    fn start_in(ns: &Netns) -> Standin {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed_cert(dir.path());
        let (child, port, requests) = start_fixture(
            ns.command(python3()),
            "gemini_server.py",
            &cert,
            &key,
            "127.0.0.1",
            &[],
        );
        Standin {
            port,
            cert,
            child,
            requests,
            _dir: dir,
        }
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `gemini -m MODEL -p "Say hi."` in `ns`, to its end; returns its pid.
fn run_gemini(ns: &Netns, server: &Standin) -> u32 {
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join(".gemini");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(
        settings.join("settings.json"),
        r#"{"security":{"auth":{"selectedType":"gemini-api-key"}},"privacy":{"usageStatisticsEnabled":false}}"#,
    )
    .unwrap();
    let child = ns
        .command("node")
        .arg(npm_binary(ENTRY))
        .args(["-m", MODEL, "-p", "Say hi."])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        // Its error reports go to TMPDIR (with the prompt): kept here.
        .env("TMPDIR", home.path())
        .env(
            "GOOGLE_GEMINI_BASE_URL",
            format!("https://127.0.0.1:{}", server.port),
        )
        .env("GEMINI_API_KEY", KEY)
        .env("NODE_EXTRA_CA_CERTS", &server.cert)
        .env("GEMINI_CLI_TRUST_WORKSPACE", "true")
        .env("GEMINI_CLI_NO_RELAUNCH", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gemini");
    let me = child.id();
    let (ok, out) = e2e::finish_within(child, Duration::from_secs(90));
    assert!(
        ok && out.contains(TEXT),
        "gemini: {out}\n{:?}",
        server.requests.lines()
    );
    me
}

#[test]
fn gemini_cli_calls_are_captured_with_model_and_usage() {
    let _g = serial();
    if !require_root("gemini_cli_calls_are_captured_with_model_and_usage") {
        return;
    }
    let sensor = Sensor::start_with(&["--json"], None);
    let ns = Netns::new("gemini");
    let server = Standin::start_in(&ns);
    let me = run_gemini(&ns, &server);
    let requests = server.requests.lines();
    let path = format!("/v1beta/models/{MODEL}:streamGenerateContent?alt=sse");
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0].starts_with(&format!("REQ POST {path} ")),
        "{requests:?}"
    );

    let c = sensor.wait_for("Gemini CLI's api_call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(me)
    });
    assert_eq!(c["method"], "POST", "{c}");
    assert_eq!(c["path"], path, "{c}");
    assert_eq!(c["status"], 200, "{c}");
    assert_eq!(c["transport"], "tls", "{c}");
    assert_eq!(c["tls_library"], "openssl", "{c}");
    // Reached by address: named by its method path.
    assert_eq!(c["provider"], "gemini-compatible", "{c}");
    assert_eq!(c["llm"]["model"], MODEL, "{c}");
    assert_eq!(c["llm"]["stream"], true, "{c}");
    assert_eq!(c["llm"]["input_tokens"], INPUT_TOKENS, "{c}");
    assert_eq!(c["llm"]["output_tokens"], OUTPUT_TOKENS, "{c}");
    assert!(
        c["credential_fingerprint"]
            .as_str()
            .unwrap_or_default()
            .contains("fp:"),
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
    let (_, stderr, events) = sensor.stop_with_events();
    assert!(!stderr.contains("PLANTED"), "the key in the log");
    for e in &events {
        assert!(!e.to_string().contains("PLANTED"), "the key in {e}");
    }
}
