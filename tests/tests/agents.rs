//! Agent discovery: an agent written with the official OpenAI SDK becomes
//! an agent at its first LLM call; the curl it spawns as a tool is its too;
//! its identity is the same on every run; the inventory (blast radius)
//! survives a restart and reads the same through the CLI and a generated
//! gRPC client.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use e2e::{HttpsServer, Sensor, Value, kind, pid, require_root, run, serial, venv_python};

const AGENT: &str = r#"
import subprocess, sys
import httpx, openai

base = sys.argv[1]
client = openai.OpenAI(
    base_url=base + "/v1",
    api_key="sk-PLANTED-agent-key",
    http_client=httpx.Client(verify=False),
)
tools = [{"type": "function", "function": {"name": "place_order", "parameters": {"type": "object"}}}]
messages = [{"role": "user", "content": "order 2 of A-1"}]
reply = client.chat.completions.create(model="gpt-e2e", messages=messages, tools=tools)
call = reply.choices[0].message.tool_calls[0]
assert call.function.name == "place_order"
# The tool the model asked for, run as a child process.
subprocess.run(
    ["curl", "-sSk", "-m", "10", "-H", "Authorization: Bearer vendor-PLANTED",
     "-d", call.function.arguments, base + "/v1/orders"],
    check=True, stdout=subprocess.DEVNULL,
)
messages += [reply.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": "{\"order\":\"7\"}"}]
reply = client.chat.completions.create(model="gpt-e2e", messages=messages, tools=tools)
assert reply.choices[0].message.content == "ok"
# A call no tool call asked for.
httpx.get(base + "/v1/inventory/5", verify=False)
"#;

fn calls(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|v| kind(v) == "api_call").collect()
}

#[test]
fn openai_sdk_agent_and_its_tool_child() {
    let _g = serial();
    if !require_root("openai_sdk_agent_and_its_tool_child") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let scripts = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let sensor = Sensor::start_in(state.path(), &["--json"], None);
    let server = HttpsServer::start("127.0.0.1");
    let base = format!("https://127.0.0.1:{}", server.port);
    let mut runs = Vec::new();
    // Two runs from two temporary directories: one identity, two sessions.
    for dir in &scripts {
        let script = dir.path().join("ordering_agent.py");
        std::fs::write(&script, AGENT).unwrap();
        let (child, status) = run(Command::new(venv_python()).arg(&script).arg(&base));
        assert!(status.success(), "agent: {status}");
        runs.push(child);
    }
    // Each run's last call: everything before it has been reported.
    for &child in &runs {
        sensor.wait_for("the agent's last call", |v| {
            kind(v) == "api_call" && pid(v) == u64::from(child) && v["path"] == "/v1/inventory/5"
        });
    }
    let order = sensor.wait_for("the tool's order", |v| {
        kind(v) == "api_call" && v["path"] == "/v1/orders" && v["process"]["ppid"] == runs[0]
    });
    let events = sensor.events();
    // The two runs' model calls (other agents on the host make theirs).
    let llm: Vec<&Value> = calls(&events)
        .into_iter()
        .filter(|v| {
            v["path"] == "/v1/chat/completions" && runs.iter().any(|&r| pid(v) == u64::from(r))
        })
        .collect();
    assert_eq!(llm.len(), 4, "two model turns per run");
    // What the model said, read from the captured bodies.
    let first = llm
        .iter()
        .find(|v| {
            pid(v) == u64::from(runs[0]) && !v["llm"]["tool_calls"].as_array().unwrap().is_empty()
        })
        .unwrap_or_else(|| panic!("no tool-calling turn: {llm:?}"));
    assert_eq!(first["provider"], "openai-compatible", "{first}");
    assert_eq!(first["llm"]["model"], "gpt-e2e", "{first}");
    assert_eq!(
        first["llm"]["tool_calls"][0]["name"], "place_order",
        "{first}"
    );
    assert_eq!(first["llm"]["tool_calls"][0]["id"], "call_e2e_1", "{first}");
    assert_eq!(first["llm"]["input_tokens"], 1, "{first}");
    assert!(
        llm.iter().any(|v| v["llm"]["tool_results"] == 1),
        "the answer went back"
    );
    let of_run = |r: u32| {
        llm.iter()
            .find(|v| pid(v) == u64::from(r))
            .unwrap_or_else(|| panic!("no LLM call of {r}"))
    };
    let tag = &of_run(runs[0])["agent"];
    assert_eq!(tag["name"], "ordering_agent.py", "{tag}");
    let id = tag["id"].as_str().unwrap();
    assert!(id.starts_with("agt-"), "{tag}");
    let other = &of_run(runs[1])["agent"];
    assert_eq!(other["id"], id, "same identity on every run");
    assert_ne!(other["session"], tag["session"], "two sessions");
    // The curl child is the agent's, in the same session.
    assert_eq!(order["process"]["comm"], "curl");
    assert_eq!(order["agent"]["id"], id, "{order}");
    assert_eq!(order["agent"]["session"], tag["session"], "{order}");
    // The model asked for it: the trace reads place_order -> POST /v1/orders.
    assert_eq!(order["tool_call"]["name"], "place_order", "{order}");
    assert_eq!(order["tool_call"]["id"], "call_e2e_1", "{order}");
    let stray = events
        .iter()
        .find(|v| {
            kind(v) == "api_call" && pid(v) == u64::from(runs[0]) && v["path"] == "/v1/inventory/5"
        })
        .unwrap();
    assert_eq!(stray["unrequested"], true, "{stray}");
    assert!(stray.get("tool_call").is_none(), "{stray}");
    // The analyst's view of the first run: its story, in order, and only
    // its own (the second run is another session).
    let session = tag["session"].as_str().unwrap();
    let (ok, out, err) = sensor.cli(&["trace", session]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!(
            "session {session} of agent ordering_agent.py ({id})"
        )),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    let asked = lines
        .iter()
        .position(|l| l.contains("/v1/chat/completions") && l.contains("asks for place_order"))
        .unwrap_or_else(|| panic!("no model turn asking for place_order:\n{out}"));
    let placed = lines
        .iter()
        .position(|l| {
            l.contains("POST 127.0.0.1")
                && l.contains("/v1/orders")
                && l.contains("<- tool call place_order")
        })
        .unwrap_or_else(|| panic!("no order linked to its tool call:\n{out}"));
    assert!(asked < placed, "{out}");
    assert!(
        out.contains(&format!("curl[{}]", order["process"]["pid"])),
        "{out}"
    );
    assert!(
        !out.contains(&format!("[{}]", runs[1])),
        "another session's events:\n{out}"
    );
    assert!(!out.contains("PLANTED"), "{out}");
    let (ok, _, err) = sensor.cli(&["trace", "1-1"]);
    assert!(!ok && err.contains("no events of session 1-1"), "{err}");
    let (ok, _, err) = sensor.cli(&["trace", "yesterday"]);
    assert!(!ok && err.contains("is not a session"), "{err}");
    sensor.stop();

    // The inventory outlives the daemon.
    let sensor = Sensor::start_in(state.path(), &["--json"], None);
    let (ok, out, err) = sensor.cli(&["agents", "--json"]);
    assert!(ok, "{err}");
    let agents: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let a = agents
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {out}"));
    assert_eq!(a["name"], "ordering_agent.py");
    // proto3 JSON: 64-bit counts are strings.
    assert_eq!(a["sessions"], "2", "{a}");
    let providers = a["providers"].to_string();
    assert!(providers.contains("openai-compatible"), "{a}");
    let irreversible = a["irreversible"].as_array().unwrap();
    assert!(
        irreversible
            .iter()
            .any(|e| e["method"] == "POST" && e["path_template"] == "/v1/orders"),
        "{a}"
    );
    assert_eq!(
        a["credentials"].as_array().unwrap().len(),
        2,
        "agent key and vendor key: {a}"
    );
    assert!(!out.contains("PLANTED"), "{out}");
    let (ok, text, err) = sensor.cli(&["agent", "ordering_agent.py"]);
    assert!(ok, "{err}");
    assert!(
        text.contains("POST 127.0.0.1:") && text.contains("/v1/orders"),
        "{text}"
    );
    let (ok, _, err) = sensor.cli(&["agent", "no-such-agent"]);
    assert!(!ok);
    assert!(err.contains("no agent"), "{err}");
    // A client generated from the proto sees the same inventory.
    let out = Command::new(venv_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/api_client.py"
        ))
        .arg(format!("unix://{}", sensor.socket.display()))
        .arg("agents")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(id));
    let (_, stderr, events) = sensor.stop_with_events();
    for e in &events {
        assert!(!e.to_string().contains("PLANTED"), "{e}");
    }
    assert!(!stderr.contains("PLANTED"));
}

const BUYER: &str = r#"
import os, sys, time
import httpx, openai

base = sys.argv[1]
http = httpx.Client(verify=False, headers={"authorization": "Bearer buyer-vendor-PLANTED"})
client = openai.OpenAI(base_url=base + "/v1", api_key="sk-buyer-PLANTED",
                       http_client=httpx.Client(verify=False))
if os.environ["BUYER_MODE"] == "normal":
    client.chat.completions.create(model="gpt-e2e", messages=[{"role": "user", "content": "restock?"}])
    http.get(base + "/v1/inventory/" + os.environ["BUYER_RUN"])
    http.post(base + "/v1/recommendations", json={"sku": "A-1"})
else:
    tools = [{"type": "function", "function": {"name": "place_order", "parameters": {"type": "object"}}}]
    reply = client.chat.completions.create(
        model="gpt-e2e", messages=[{"role": "user", "content": "restock!"}], tools=tools)
    call = reply.choices[0].message.tool_calls[0]
    # The runaway: the same order, again and again, at machine speed (a
    # model turn per order would take far longer); or, gated, each order
    # when the test says so. Once isolated (enforce mode), the orders
    # fail; it keeps trying, like a real runaway.
    gated = os.environ.get("BUYER_GATED") == "1"
    for _ in range(int(os.environ.get("BUYER_ORDERS", "6"))):
        if gated:
            sys.stdin.readline()
        else:
            time.sleep(0.05)
        try:
            http.post(base + "/v1/orders", content=call.function.arguments,
                      timeout=10 if gated else 3)
            print("order placed", flush=True)
        except httpx.HTTPError as e:
            print("order failed:", type(e).__name__, flush=True)
"#;

/// BUYER, written out to run against a server.
struct Buyer {
    script: std::path::PathBuf,
    base: String,
    _dir: tempfile::TempDir,
}

impl Buyer {
    fn command(&self, mode: &str, n: usize, orders: usize) -> Command {
        let mut cmd = Command::new(venv_python());
        cmd.arg(&self.script)
            .arg(&self.base)
            .env("BUYER_MODE", mode)
            .env("BUYER_ORDERS", orders.to_string())
            .env("BUYER_RUN", (8810 + n).to_string());
        cmd
    }

    /// Runs it to its end; returns its pid.
    fn run(&self, mode: &str, n: usize, orders: usize) -> u32 {
        let (child, status) = run(&mut self.command(mode, n, orders));
        assert!(status.success(), "buyer {mode}: {status}");
        child
    }
}

/// Runs BUYER three times to learn, then once more normally; returns it
/// and the pid of that normal run, once its last call is reported.
fn learn_buyer(sensor: &Sensor, server: &HttpsServer) -> (Buyer, u32) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("buyer.py");
    std::fs::write(&script, BUYER).unwrap();
    let buyer = Buyer {
        script,
        base: format!("https://127.0.0.1:{}", server.port),
        _dir: dir,
    };
    // Learning: three normal runs. Then a normal run must raise nothing.
    for n in 0..3 {
        let child = buyer.run("normal", n, 0);
        sensor.wait_for(&format!("buyer normal run {n}"), |v| {
            kind(v) == "api_call"
                && pid(v) == u64::from(child)
                && v["path"] == "/v1/recommendations"
        });
    }
    let normal = buyer.run("normal", 3, 0);
    sensor.wait_for("the last normal run", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(normal) && v["path"] == "/v1/recommendations"
    });
    (buyer, normal)
}

#[test]
fn learned_baseline_flags_the_first_order_and_the_loop() {
    let _g = serial();
    if !require_root("learned_baseline_flags_the_first_order_and_the_loop") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    let (buyer, normal) = learn_buyer(&sensor, &server);
    let runaway = buyer.run("runaway", 4, 6);
    sensor.wait_for_n("the runaway's orders", 6, |v| {
        kind(v) == "api_call" && pid(v) == u64::from(runaway) && v["path"] == "/v1/orders"
    });
    let (_, stderr, events) = sensor.stop_with_events();
    // Its findings: other agents on the host (another test's) have theirs.
    let findings: Vec<&Value> = events
        .iter()
        .filter(|v| kind(v) == "finding" && v["agent"]["name"] == "buyer.py")
        .collect();
    assert!(
        !findings.iter().any(|f| pid(f) == u64::from(normal)),
        "false positive on a normal run: {findings:?}"
    );
    let first = findings
        .iter()
        .find(|f| f["rule"] == "new_irreversible_endpoint")
        .unwrap_or_else(|| panic!("no finding for the first order: {findings:?}"));
    assert_eq!(pid(first), u64::from(runaway), "{first}");
    assert_eq!(first["severity"], "high", "{first}");
    assert!(
        first["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("POST 127.0.0.1:"),
        "{first}"
    );
    assert!(
        first["endpoint"].as_str().unwrap().ends_with(" /v1/orders"),
        "{first}"
    );
    assert_eq!(first["agent"]["name"], "buyer.py", "{first}");
    assert!(
        first["agent"]["session"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{runaway}-"))
    );
    assert!(
        first["credential_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("Bearer fp:"),
        "{first}"
    );
    assert_eq!(first["tool_call"]["name"], "place_order", "{first}");
    assert!(
        first["summary"].as_str().unwrap().contains("never called"),
        "{first}"
    );
    // It is about the first order, not a later one.
    let orders: Vec<&Value> = events
        .iter()
        .filter(|v| {
            kind(v) == "api_call" && pid(v) == u64::from(runaway) && v["path"] == "/v1/orders"
        })
        .collect();
    assert_eq!(first["call_seq"], orders[0]["seq"], "{first}");
    let lp = findings
        .iter()
        .find(|f| f["rule"] == "repetition")
        .unwrap_or_else(|| panic!("no repetition finding: {findings:?}"));
    assert_eq!(lp["severity"], "critical", "{lp}");
    assert_eq!(lp["count"], 5, "{lp}");
    assert_eq!(
        lp["call_seq"], orders[4]["seq"],
        "flagged at the fifth order: {lp}"
    );
    // Monitor mode (the default): the policy's action is reported, not
    // taken; every order reached the vendor.
    let would = events
        .iter()
        .find(|v| kind(v) == "action" && pid(v) == u64::from(runaway))
        .unwrap_or_else(|| panic!("no action reported for the loop"));
    assert_eq!(would["action"], "isolate_tree", "{would}");
    assert_eq!(would["outcome"], "would", "{would}");
    assert_eq!(would["by"], "policy", "{would}");
    assert_eq!(would["finding_seq"], lp["seq"], "{would}");
    assert_eq!(pid(would), u64::from(runaway), "{would}");
    assert_eq!(server.posts("/v1/orders"), 6);
    assert!(!stderr.contains("PLANTED"));
    for e in &events {
        assert!(!e.to_string().contains("PLANTED"), "{e}");
    }
}

#[test]
fn enforce_mode_isolates_the_runaway_on_its_finding() {
    let _g = serial();
    if !require_root("enforce_mode_isolates_the_runaway_on_its_finding") {
        return;
    }
    let sensor = Sensor::start_with(&["--json"], Some("[response]\nmode = \"enforce\"\n"));
    let server = HttpsServer::start("127.0.0.1");
    let attempts = 8;
    let (buyer, _) = learn_buyer(&sensor, &server);
    // Each order goes when the test says so: the finding comes at the
    // fifth; the test lets the sixth go only once the sensor has acted, so
    // what is checked is that it acts on the finding, not how fast.
    let mut child = buyer
        .command("runaway", 4, attempts)
        .env("BUYER_GATED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runaway = child.id();
    let mut gate = child.stdin.take().unwrap();
    let mut said = BufReader::new(child.stdout.take().unwrap());
    let mut outcomes = Vec::new();
    for n in 1..=attempts {
        if n == 6 {
            assert!(outcomes.iter().all(|o| o == "order placed"), "{outcomes:?}");
            sensor.wait_for("the isolation", |v| {
                kind(v) == "action"
                    && pid(v) == u64::from(runaway)
                    && v["action"] == "isolate_tree"
                    && v["outcome"] == "done"
            });
        }
        writeln!(gate).unwrap();
        let mut line = String::new();
        said.read_line(&mut line).unwrap();
        outcomes.push(line.trim().to_string());
    }
    assert!(child.wait().unwrap().success());
    let (_, stderr, events) = sensor.stop_with_events();
    assert!(
        outcomes[..5].iter().all(|o| o == "order placed"),
        "{outcomes:?}"
    );
    assert!(
        outcomes[5..].iter().all(|o| o.starts_with("order failed")),
        "isolated, yet: {outcomes:?}"
    );
    let loop_finding = events
        .iter()
        .find(|v| kind(v) == "finding" && pid(v) == u64::from(runaway) && v["rule"] == "repetition")
        .unwrap_or_else(|| panic!("no repetition finding:\n{stderr}"));
    let action = events
        .iter()
        .find(|v| kind(v) == "action" && pid(v) == u64::from(runaway))
        .unwrap_or_else(|| panic!("no action:\n{stderr}"));
    assert_eq!(action["action"], "isolate_tree", "{action}");
    assert_eq!(action["outcome"], "done", "{action}");
    assert_eq!(action["finding_seq"], loop_finding["seq"], "{action}");
    assert_eq!(action["pids"][0][0], runaway, "{action}");
    let orders: Vec<&Value> = events
        .iter()
        .filter(|v| {
            kind(v) == "api_call" && pid(v) == u64::from(runaway) && v["path"] == "/v1/orders"
        })
        .collect();
    assert_eq!(loop_finding["call_seq"], orders[4]["seq"], "{loop_finding}");
    // How quickly it acted, for the record (the pipeline's reaction time:
    // a loop faster than that outruns detection, which is what arming,
    // in-kernel matching, is for).
    let ms = |v: &Value| v["ts_unix_ns"].as_u64().unwrap_or(0) as f64 / 1e6;
    eprintln!(
        "the action {:.1} ms after the 5th order",
        ms(action) - ms(orders[4])
    );
    assert_eq!(
        server.posts("/v1/orders"),
        5,
        "orders reached the vendor; the vendor saw {:?}",
        server.requests()
    );
}
