//! Claude Code, the real binary from npm (a Bun executable with BoringSSL
//! linked in and no TLS symbols, pinned in tests/agents), run offline in a
//! loopback-only network namespace against a local HTTPS stand-in of the
//! Anthropic API: its calls are `api_call` events of an agent, with model
//! and usage, its API key never shown; a hold stops it before its request
//! leaves and an approval lets it go on; armed, it is killed at its
//! request; a copy it installs for itself is covered from its first run.

use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use e2e::{HttpsServer, Netns, Sensor, Value, kind, npm_binary, pid, require_root, serial, state};

const BINARY: &str = "@anthropic-ai/claude-code-linux-x64/claude";

/// The key Claude Code is given: it must appear in no output.
const KEY: &str = "sk-ant-api03-E2EPLANTEDSECRET0123456789abcdefghij";

/// The model it is told to use (the stand-in echoes the request's).
const MODEL: &str = "claude-e2e-model";

/// Claude Code's `-p` run in `ns` against `server`, not waited for.
fn claude(ns: &Netns, server: &HttpsServer, home: &std::path::Path) -> Child {
    claude_at(&npm_binary(BINARY), ns, server, home)
}

fn claude_at(
    exe: &std::path::Path,
    ns: &Netns,
    server: &HttpsServer,
    home: &std::path::Path,
) -> Child {
    ns.command(exe)
        .args(["-p", "Say ok."])
        .env("HOME", home)
        .env(
            "ANTHROPIC_BASE_URL",
            format!("https://127.0.0.1:{}", server.port),
        )
        .env("ANTHROPIC_API_KEY", KEY)
        .env("ANTHROPIC_MODEL", MODEL)
        .env("ANTHROPIC_SMALL_FAST_MODEL", MODEL)
        .env("SSL_CERT_FILE", &server.cert)
        .env("NODE_EXTRA_CA_CERTS", &server.cert)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start claude")
}

/// Waits up to 90 s; returns (success, stdout + stderr).
fn finish(child: Child) -> (bool, String) {
    e2e::finish_within(child, Duration::from_secs(90))
}

/// Runs `exe` once and waits until the daemon shows it hooked. The daemon
/// reads a never-seen executable when it starts (Claude Code's 400 MB:
/// 0.15-0.5 s), and this run's first requests may leave before that:
/// they are seen by their connection only (README, the gap named under
/// Claude Code). What the runs after it send is captured whole.
fn first_run(sensor: &Sensor, exe: &std::path::Path, ns: &Netns, server: &HttpsServer) {
    let home = tempfile::tempdir().unwrap();
    let (ok, out) = finish(claude_at(exe, ns, server, home.path()));
    assert!(ok, "{} failed: {out}", exe.display());
    let shown = format!("{} [BoringSSL]", exe.canonicalize().unwrap().display());
    sensor.status_when("Claude Code hooked", |s| s.contains(&shown));
}

/// Requests to the Messages API the stand-in answered.
fn messages_posts(server: &HttpsServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.starts_with("REQ POST /v1/messages"))
        .count()
}

fn no_key(what: &str, text: &str) {
    assert!(!text.contains("E2EPLANTEDSECRET"), "the API key in {what}");
}

#[test]
fn claude_codes_calls_are_api_calls_of_an_agent_with_model_and_usage() {
    let _g = serial();
    if !require_root("claude_codes_calls_are_api_calls_of_an_agent_with_model_and_usage") {
        return;
    }
    let sensor = Sensor::start_with(&["--json"], None);
    let ns = Netns::new("claude");
    let server = HttpsServer::start_in(&ns, "127.0.0.1");
    // What is captured once Claude Code is hooked: a first run makes the
    // daemon read its executable (see `first_run`).
    first_run(&sensor, &npm_binary(BINARY), &ns, &server);
    let before = messages_posts(&server);
    let home = tempfile::tempdir().unwrap();
    let child = claude(&ns, &server, home.path());
    let me = u64::from(child.id());
    let (ok, out) = finish(child);
    assert!(ok, "claude -p failed: {out}");
    assert!(out.contains("ok"), "{out}");
    let posts = messages_posts(&server) - before;
    assert!(posts >= 1, "{:?}", server.requests());

    let calls = sensor.wait_for_n("Claude Code's api_calls", posts, |v| {
        kind(v) == "api_call" && pid(v) == me
    });
    for c in &calls {
        assert_eq!(c["method"], "POST", "{c}");
        assert!(
            c["path"].as_str().unwrap().starts_with("/v1/messages"),
            "{c}"
        );
        assert_eq!(c["status"], 200, "{c}");
        assert_eq!(c["transport"], "tls", "{c}");
        // Bun's BoringSSL, found without symbols: named as what it is.
        assert_eq!(c["tls_library"], "boringssl", "{c}");
        // Reached by IP (no SNI): named by its path.
        assert_eq!(c["provider"], "anthropic-compatible", "{c}");
        assert_eq!(c["llm"]["model"], MODEL, "{c}");
        assert_eq!(c["llm"]["input_tokens"], 3, "{c}");
        assert_eq!(c["llm"]["output_tokens"], 5, "{c}");
        assert_eq!(c["llm"]["stream"], true, "{c}");
        assert!(
            c["agent"]["id"].as_str().unwrap().starts_with("agt-"),
            "{c}"
        );
        assert!(
            c["credential_fingerprint"]
                .as_str()
                .unwrap()
                .starts_with("fp:"),
            "{c}"
        );
        // Ciphertext went out on the connect's socket: the call names the
        // stand-in as its destination.
        assert_eq!(c["dport"], server.port, "{c}");
    }

    // `sensor status` says how each function of the executable was found.
    let exe = npm_binary(BINARY).canonicalize().unwrap();
    let status = sensor.status_when("Claude Code's executable", |s| {
        s.contains(&format!("{} [BoringSSL]", exe.display()))
    });
    let block: Vec<&str> = status
        .lines()
        .skip_while(|l| !l.contains(&*exe.to_string_lossy()))
        .take(4)
        .collect();
    assert_eq!(block.len(), 4, "{status}");
    assert!(block[0].ends_with("[BoringSSL]"), "{status}");
    assert!(
        block[1]
            .trim()
            .starts_with("SSL_write: signature at 0x3330300"),
        "{status}"
    );
    assert!(
        block[2]
            .trim()
            .starts_with("SSL_read: signature at 0x33304b0"),
        "{status}"
    );
    assert!(
        block[3]
            .trim()
            .starts_with("SSL_do_handshake: derived at 0x3367bf0"),
        "{status}"
    );
    no_key("status", &status);

    let (_, stderr, events) = sensor.stop_with_events();
    no_key("the sensor's log", &stderr);
    for e in &events {
        no_key("an event", &e.to_string());
    }
}

const HOLD: &str = "\
[[agents.selectors]]
name = \"claude-code\"
exe = \"*/claude-code-linux-x64/claude\"

[[response.hold]]
agent = \"claude-code\"
patterns = [\"POST /v1/messages\"]
";

#[test]
fn a_hold_stops_claude_code_before_its_request_leaves_until_approved() {
    let _g = serial();
    if !require_root("a_hold_stops_claude_code_before_its_request_leaves_until_approved") {
        return;
    }
    let sensor = Sensor::start_with(&["--json"], Some(HOLD));
    let ns = Netns::new("claude-hold");
    let server = HttpsServer::start_in(&ns, "127.0.0.1");
    let home = tempfile::tempdir().unwrap();
    let child = claude(&ns, &server, home.path());
    let me = child.id();

    let held = sensor.wait_for("Claude Code's request held", |v| {
        kind(v) == "held" && pid(v) == u64::from(me)
    });
    assert_eq!(held["method"], "POST", "{held}");
    assert!(
        held["path"].as_str().unwrap().starts_with("/v1/messages"),
        "{held}"
    );
    assert_eq!(held["agent"], "claude-code", "{held}");
    assert_eq!(held["stopped"], true, "{held}");
    no_key("the held event", &held.to_string());
    // Stopped, and not a byte of the request reached the stand-in.
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(me) != 'T' {
        assert!(Instant::now() < deadline, "claude was not stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(me), 'T');
    assert_eq!(messages_posts(&server), 0, "{:?}", server.requests());

    // Approving each hold lets it go on, to its answer.
    let approve = |h: &Value| {
        let id = h["hold_id"].as_u64().unwrap().to_string();
        let (ok, _, err) = sensor.cli(&["approve", &id, "--why", "e2e"]);
        assert!(ok, "{err}");
    };
    approve(&held);
    let mut approved = 1;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut child = child;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let holds: Vec<Value> = sensor
            .events()
            .into_iter()
            .filter(|v| kind(v) == "held" && pid(v) == u64::from(me))
            .collect();
        if holds.len() > approved {
            approve(&holds[approved]);
            approved += 1;
        }
        assert!(Instant::now() < deadline, "claude did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, out) = finish(child);
    assert!(ok, "claude -p failed after approval: {out}");
    assert!(out.contains("ok"), "{out}");
    assert_eq!(messages_posts(&server), approved, "{:?}", server.requests());
    let (_, stderr, events) = sensor.stop_with_events();
    no_key("the sensor's log", &stderr);
    for e in &events {
        no_key("an event", &e.to_string());
    }
}

#[test]
fn a_new_copy_of_claude_code_is_resolved_when_it_first_runs() {
    let _g = serial();
    if !require_root("a_new_copy_of_claude_code_is_resolved_when_it_first_runs") {
        return;
    }
    let sensor = Sensor::start_with(&["--json"], None);
    // Claude Code updates itself into the user's home: a file the sensor
    // has never seen (new inode), run after the sensor started.
    let home = tempfile::tempdir().unwrap();
    let versions = home.path().join(".local/share/claude/versions");
    std::fs::create_dir_all(&versions).unwrap();
    let copy = versions.join("9.9.9");
    std::fs::copy(npm_binary(BINARY), &copy).unwrap();
    let (ok, status, err) = sensor.cli(&["status"]);
    assert!(ok, "{err}");
    assert!(!status.contains(&*copy.to_string_lossy()), "{status}");

    let ns = Netns::new("claude-copy");
    let server = HttpsServer::start_in(&ns, "127.0.0.1");
    // Its first run gets it resolved and attached, without a restart.
    first_run(&sensor, &copy, &ns, &server);
    // From then on every request is seen.
    let before = messages_posts(&server);
    let child = claude_at(&copy, &ns, &server, home.path());
    let me = u64::from(child.id());
    let (ok, out) = finish(child);
    assert!(ok, "the copy failed: {out}");
    let posts = messages_posts(&server) - before;
    assert!(posts >= 1, "{:?}", server.requests());
    let calls = sensor.wait_for_n("the copy's api_calls", posts, |v| {
        kind(v) == "api_call" && pid(v) == me
    });
    assert!(
        calls.iter().all(|c| c["llm"]["model"] == MODEL),
        "{calls:?}"
    );
    sensor.stop();
}

const ARM: &str = "\
[[agents.selectors]]
name = \"claude-code\"
exe = \"*/claude-code-linux-x64/claude\"

[[response.arm]]
agent = \"claude-code\"
deny = [\"POST /v1/messages\"]
";

/// The race CI met: a daemon that reads the exec event after the agent's
/// first request (here frozen with SIGSTOP while Claude Code starts). The
/// kernel arms the process at its exec by the selector's file name, stops
/// it at its first TLS connection (its library not yet known to be
/// hooked), and the request is denied once the daemon catches up.
#[test]
fn armed_claude_code_is_killed_even_when_the_daemon_reads_its_exec_late() {
    let _g = serial();
    if !require_root("armed_claude_code_is_killed_even_when_the_daemon_reads_its_exec_late") {
        return;
    }
    let sensor = Sensor::start_with(&["--json"], Some(ARM));
    let ns = Netns::new("claude-late");
    let server = HttpsServer::start_in(&ns, "127.0.0.1");
    let home = tempfile::tempdir().unwrap();
    let frozen = sensor.freeze();
    let child = claude(&ns, &server, home.path());
    let me = child.id();
    // Until Claude Code is stopped at its connection, or (without arming
    // at exec) its request reached the stand-in.
    e2e::wait_until("Claude Code stopped or its request sent", || {
        state(me) == 'T' || !server.requests().is_empty()
    });
    let sent = messages_posts(&server);
    drop(frozen);
    assert_eq!(
        sent,
        0,
        "sent while the daemon was frozen: {:?}",
        server.requests()
    );
    let blocked = sensor.wait_for("Claude Code's request blocked", |v| {
        kind(v) == "blocked" && pid(v) == u64::from(me)
    });
    assert_eq!(blocked["pattern"], "POST /v1/messages", "{blocked}");
    assert_eq!(blocked["killed"], true, "{blocked}");
    let (ok, out) = finish(child);
    assert!(!ok, "claude was not killed: {out}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(messages_posts(&server), 0, "{:?}", server.requests());
}

#[test]
fn armed_claude_code_is_killed_at_its_request_before_it_leaves() {
    let _g = serial();
    if !require_root("armed_claude_code_is_killed_at_its_request_before_it_leaves") {
        return;
    }
    let sensor = Sensor::start_with(&["--json"], Some(ARM));
    let ns = Netns::new("claude-arm");
    let server = HttpsServer::start_in(&ns, "127.0.0.1");
    let home = tempfile::tempdir().unwrap();
    let child = claude(&ns, &server, home.path());
    let me = u64::from(child.id());
    let blocked = sensor.wait_for("Claude Code's request blocked", |v| {
        kind(v) == "blocked" && pid(v) == me
    });
    assert_eq!(blocked["pattern"], "POST /v1/messages", "{blocked}");
    assert_eq!(blocked["agent"], "claude-code", "{blocked}");
    assert_eq!(blocked["killed"], true, "{blocked}");
    let (ok, out) = finish(child);
    assert!(!ok, "claude was not killed: {out}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(messages_posts(&server), 0, "{:?}", server.requests());
    let (_, stderr, events) = sensor.stop_with_events();
    no_key("the sensor's log", &stderr);
    for e in &events {
        no_key("an event", &e.to_string());
    }
}
