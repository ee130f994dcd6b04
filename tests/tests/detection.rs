//! Learned baselines and the policy against real agents: an agent written
//! with the official Anthropic SDK whose tool is a `curl` it spawns, a
//! support bot (OpenAI SDK) that discovers a billing endpoint and is
//! stopped there once an operator puts it in enforce mode, and agents
//! named by the operator (a selector, a provider the catalogue lacks).

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::process::ExitStatusExt,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use e2e::{HttpsServer, Sensor, Value, kind, pid, require_root, run, serial, venv_python};

fn no_secret(stderr: &str, events: &[Value]) {
    assert!(!stderr.contains("PLANTED"), "a secret in the log");
    for e in events {
        assert!(!e.to_string().contains("PLANTED"), "a secret in {e}");
    }
}

const CLAUDE_AGENT: &str = r#"
import json, os, subprocess, sys
import anthropic

base = sys.argv[1]
# The SDK's own HTTP client (httpx2 over Python's ssl: OpenSSL's _ex calls).
client = anthropic.Anthropic(base_url=base, api_key="sk-ant-PLANTED-agent",
                             http_client=anthropic.DefaultHttpxClient(verify=False))

def curl(*args):
    # The agent's tool: a curl it runs, with the vendor's key.
    subprocess.run(["curl", "-sSk", "-m", "10", "-H", "Authorization: Bearer vendor-PLANTED", *args],
                   check=True, stdout=subprocess.DEVNULL)

if os.environ["MODE"] == "normal":
    client.messages.create(model="claude-e2e", max_tokens=64,
                           messages=[{"role": "user", "content": "restock?"}])
    curl(base + "/v1/inventory/" + os.environ["RUN"])
    curl("-d", '{"sku":"A-1"}', base + "/v1/recommendations")
else:
    tools = [{"name": "place_order", "description": "orders stock", "input_schema": {"type": "object"}}]
    reply = client.messages.create(model="claude-e2e", max_tokens=64, tools=tools,
                                   messages=[{"role": "user", "content": "restock!"}])
    use = next(b for b in reply.content if b.type == "tool_use")
    assert use.name == "place_order"
    for _ in range(int(os.environ["ORDERS"])):
        curl("-d", json.dumps(use.input), base + "/v1/orders")
"#;

#[test]
fn anthropic_sdk_agent_with_a_curl_tool_learns_then_is_flagged() {
    let _g = serial();
    if !require_root("anthropic_sdk_agent_with_a_curl_tool_learns_then_is_flagged") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    let base = format!("https://127.0.0.1:{}", server.port);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("claude_agent.py");
    std::fs::write(&script, CLAUDE_AGENT).unwrap();
    let agent = |mode: &str, n: usize| {
        let (child, status) = run(Command::new(venv_python())
            .arg(&script)
            .arg(&base)
            .env("MODE", mode)
            .env("ORDERS", "6")
            .env("RUN", (4410 + n).to_string()));
        assert!(status.success(), "agent {mode}: {status}");
        child
    };
    // The recommendation is the normal run's last call, made by a curl
    // child of the agent.
    let last_call = |child: u32| {
        move |v: &Value| {
            kind(v) == "api_call"
                && v["process"]["ppid"] == child
                && v["path"] == "/v1/recommendations"
        }
    };
    for n in 0..3 {
        let child = agent("normal", n);
        sensor.wait_for(&format!("learning run {n}"), last_call(child));
    }
    let normal = agent("normal", 3);
    sensor.wait_for("the checked normal run", last_call(normal));
    let runaway = agent("runaway", 4);
    let orders = sensor.wait_for_n("the curl tool's orders", 6, |v| {
        kind(v) == "api_call" && v["process"]["ppid"] == runaway && v["path"] == "/v1/orders"
    });
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);

    // The model's turn, read from the Anthropic Messages body.
    let turn = events
        .iter()
        .find(|v| {
            kind(v) == "api_call" && pid(v) == u64::from(runaway) && v["path"] == "/v1/messages"
        })
        .unwrap_or_else(|| panic!("no model turn of the runaway"));
    // The Messages path on a local host: the catalogue's any-host entry.
    assert_eq!(turn["provider"], "anthropic-compatible", "{turn}");
    assert_eq!(turn["llm"]["model"], "claude-e2e", "{turn}");
    assert_eq!(
        turn["llm"]["tool_calls"][0]["name"], "place_order",
        "{turn}"
    );
    assert!(
        turn["credential_fingerprint"]
            .as_str()
            .is_some_and(|f| f.contains("fp:")),
        "x-api-key fingerprinted: {turn}"
    );
    // The curl children are the agent's: same agent, same session, and
    // each order names the tool call that asked for it.
    let agent_tag = &turn["agent"];
    assert_eq!(agent_tag["name"], "claude_agent.py", "{turn}");
    for o in &orders {
        assert_eq!(o["process"]["comm"], "curl", "{o}");
        assert_eq!(o["agent"], *agent_tag, "{o}");
        assert_eq!(o["tool_call"]["name"], "place_order", "{o}");
        assert_eq!(o["tool_call"]["id"], "toolu_e2e_1", "{o}");
    }
    // This agent's findings (other agents on the host have theirs).
    let findings: Vec<&Value> = events
        .iter()
        .filter(|v| kind(v) == "finding" && v["agent"]["id"] == agent_tag["id"])
        .collect();
    let of_normal = |f: &&&Value| {
        f["agent"]["session"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("{normal}-")))
    };
    assert!(
        !findings.iter().any(|f| of_normal(&f)),
        "false positive on a normal run: {findings:?}"
    );
    let first = findings
        .iter()
        .find(|f| f["rule"] == "new_irreversible_endpoint")
        .unwrap_or_else(|| panic!("the first order was not flagged: {findings:?}"));
    assert_eq!(first["call_seq"], orders[0]["seq"], "{first}");
    assert_eq!(first["agent"], *agent_tag, "{first}");
    assert_eq!(first["tool_call"]["name"], "place_order", "{first}");
    assert_eq!(first["mode"], "monitor", "{first}");
    assert!(
        first["credential_fingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with("Bearer fp:")),
        "{first}"
    );
    let repetition = findings
        .iter()
        .find(|f| f["rule"] == "repetition")
        .unwrap_or_else(|| panic!("the loop was not flagged: {findings:?}"));
    assert_eq!(repetition["call_seq"], orders[4]["seq"], "{repetition}");
    assert_eq!(repetition["severity"], "critical", "{repetition}");
    // The identity learned for three runs, then was checked: both moves
    // were announced.
    let modes: Vec<(&str, &str)> = events
        .iter()
        .filter(|v| kind(v) == "mode" && v["agent_id"] == agent_tag["id"])
        .map(|v| (v["to"].as_str().unwrap(), v["why"].as_str().unwrap()))
        .collect();
    assert_eq!(modes.len(), 2, "{modes:?}");
    assert_eq!(modes[0].0, "learn", "{modes:?}");
    assert_eq!(modes[1], ("monitor", "learned 4 runs"), "{modes:?}");
    assert_eq!(
        server.posts("/v1/orders"),
        6,
        "monitor mode: every order was delivered"
    );
}

const SUPPORT_BOT: &str = r#"
import os, sys
import httpx, openai

base = sys.argv[1]
crm = httpx.Client(verify=False, headers={"authorization": "Bearer crm-PLANTED"})
client = openai.OpenAI(base_url=base + "/v1", api_key="sk-support-PLANTED",
                       http_client=httpx.Client(verify=False))
if os.environ["MODE"] == "normal":
    client.chat.completions.create(model="gpt-e2e", messages=[{"role": "user", "content": "where is my parcel?"}])
    # Which customers, and in which order, differs from run to run.
    for c in os.environ["CUSTOMERS"].split(","):
        crm.get(base + "/crm/customers/" + c)
else:
    tools = [{"type": "function", "function": {"name": "issue_credit", "parameters": {"type": "object"}}}]
    reply = client.chat.completions.create(
        model="gpt-e2e", messages=[{"role": "user", "content": "I want money back"}], tools=tools)
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "issue_credit"
    for _ in range(3):
        crm.post(base + "/billing/credits", content=call.function.arguments)
        print("credit issued", flush=True)
        # The next credit waits for the test's word: whether the sensor
        # stops it first is not a race against a timer.
        sys.stdin.readline()
"#;

const SUPPORT_POLICY: &str = r#"
policies:
  - name: support
    agents: ["support_bot.py"]
    deny: ["DELETE *"]
    respond:
      - { finding: new_irreversible_endpoint, action: kill }
"#;

#[test]
fn support_bot_is_flagged_at_its_first_credit_and_killed_once_enforced() {
    let _g = serial();
    if !require_root("support_bot_is_flagged_at_its_first_credit_and_killed_once_enforced") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, SUPPORT_POLICY).unwrap();
    let config = format!("[agents]\npolicy = {:?}\n", policy.display().to_string());
    let sensor = Sensor::start_with(&["--json"], Some(&config));
    let server = HttpsServer::start("127.0.0.1");
    let base = format!("https://127.0.0.1:{}", server.port);
    let script = dir.path().join("support_bot.py");
    std::fs::write(&script, SUPPORT_BOT).unwrap();
    let bot = |mode: &str, customers: &str| {
        run(Command::new(venv_python())
            .arg(&script)
            .arg(&base)
            .env("MODE", mode)
            .env("CUSTOMERS", customers))
    };
    for (n, customers) in ["101,102", "205", "330,101,7"].iter().enumerate() {
        let (child, status) = bot("normal", customers);
        assert!(status.success(), "learning run {n}: {status}");
        let last = customers.rsplit(',').next().unwrap();
        sensor.wait_for(&format!("learning run {n}"), |v| {
            kind(v) == "api_call"
                && pid(v) == u64::from(child)
                && v["path"] == format!("/crm/customers/{last}")
        });
    }
    let (normal, status) = bot("normal", "42");
    assert!(status.success());
    sensor.wait_for("the checked normal run", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(normal) && v["path"] == "/crm/customers/42"
    });
    // The responder decides to enforce for this agent.
    let (ok, out, err) = sensor.cli(&[
        "baseline",
        "mode",
        "support_bot.py",
        "enforce",
        "--why",
        "e2e: credits are not its job",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("enforce mode"), "{out}");
    let set = sensor.wait_for("the mode event", |v| {
        kind(v) == "mode" && v["to"] == "enforce"
    });
    assert_eq!(set["from"], "monitor", "{set}");
    assert!(
        set["why"]
            .as_str()
            .unwrap()
            .contains("e2e: credits are not its job"),
        "{set}"
    );
    let (ok, shown, err) = sensor.cli(&["baseline", "show", "support_bot.py"]);
    assert!(ok, "{err}");
    assert!(shown.contains("mode:         enforce"), "{shown}");

    let mut runaway = Command::new(venv_python())
        .arg(&script)
        .arg(&base)
        .env("MODE", "runaway")
        .env("CUSTOMERS", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut said = String::new();
    let mut out = BufReader::new(runaway.stdout.take().unwrap());
    out.read_line(&mut said).unwrap();
    assert_eq!(said.trim(), "credit issued");
    // It waits before its next credit until the sensor has acted on the
    // first; then it is told to go on (if it still can).
    let rpid = u64::from(runaway.id());
    sensor.wait_for("the kill", |v| {
        kind(v) == "action" && pid(v) == rpid && v["action"] == "kill" && v["outcome"] == "done"
    });
    let _ = writeln!(runaway.stdin.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = runaway.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the killed bot still runs");
        std::thread::sleep(Duration::from_millis(20));
    };
    let runaway = runaway.id();
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
    assert_eq!(
        status.signal(),
        Some(9),
        "killed at its first credit: {status}"
    );
    let findings: Vec<&Value> = events
        .iter()
        .filter(|v| kind(v) == "finding" && v["agent"]["name"] == "support_bot.py")
        .collect();
    assert!(
        !findings.iter().any(|f| pid(f) == u64::from(normal)),
        "false positive on a normal run: {findings:?}"
    );
    let credit = events
        .iter()
        .find(|v| {
            kind(v) == "api_call" && pid(v) == u64::from(runaway) && v["path"] == "/billing/credits"
        })
        .unwrap_or_else(|| panic!("the credit was not seen"));
    let first = findings
        .iter()
        .find(|f| f["rule"] == "new_irreversible_endpoint")
        .unwrap_or_else(|| panic!("the first credit was not flagged: {findings:?}"));
    assert_eq!(
        first["call_seq"], credit["seq"],
        "at the first call: {first}"
    );
    assert_eq!(first["agent"]["name"], "support_bot.py", "{first}");
    assert_eq!(first["mode"], "enforce", "{first}");
    assert_eq!(first["policy"], "support", "{first}");
    assert_eq!(first["response"], "kill", "{first}");
    assert_eq!(first["tool_call"]["name"], "issue_credit", "{first}");
    assert_eq!(
        first["credential_fingerprint"], credit["credential_fingerprint"],
        "the CRM key, by fingerprint: {first}"
    );
    let action = events
        .iter()
        .find(|v| kind(v) == "action" && v["finding_seq"] == first["seq"])
        .unwrap_or_else(|| panic!("no action for the finding"));
    assert_eq!(action["action"], "kill", "{action}");
    assert_eq!(action["outcome"], "done", "{action}");
    assert!(
        action["why"]
            .as_str()
            .unwrap()
            .contains("policy \"support\""),
        "{action}"
    );
    let credits = server.posts("/billing/credits");
    assert_eq!(credits, 1, "only the first credit went out");
}

const ETL_JOB: &str = r#"
import ssl, sys, urllib.request
ctx = ssl._create_unverified_context()
urllib.request.urlopen(sys.argv[1] + "/warehouse/tables", context=ctx).read()
"#;

const CORP_LLM_CLIENT: &str = r#"
import ssl, sys, urllib.request
ctx = ssl._create_unverified_context()
req = urllib.request.Request(sys.argv[1] + "/internal/llm/generate", data=b'{"prompt":"hi"}',
                             headers={"Content-Type": "application/json"})
urllib.request.urlopen(req, context=ctx).read()
"#;

#[test]
fn operators_name_agents_by_selector_and_provider() {
    let _g = serial();
    if !require_root("operators_name_agents_by_selector_and_provider") {
        return;
    }
    let config = r#"
[[agents.providers]]
name = "corp-llm"
paths = ["/internal/llm/"]
[[agents.selectors]]
name = "nightly-etl"
cmdline = "etl_job\\.py"
"#;
    let sensor = Sensor::start_with(&["--json"], Some(config));
    let server = HttpsServer::start("127.0.0.1");
    let base = format!("https://127.0.0.1:{}", server.port);
    let dir = tempfile::tempdir().unwrap();
    let etl = dir.path().join("etl_job.py");
    std::fs::write(&etl, ETL_JOB).unwrap();
    let corp = dir.path().join("corp_client.py");
    std::fs::write(&corp, CORP_LLM_CLIENT).unwrap();
    let (etl_pid, s1) = run(Command::new(venv_python()).arg(&etl).arg(&base));
    let (corp_pid, s2) = run(Command::new(venv_python()).arg(&corp).arg(&base));
    assert!(s1.success() && s2.success());
    let selected = sensor.wait_for("the selected job's call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(etl_pid)
    });
    // Never talked to a model: an agent because the operator says so.
    assert_eq!(selected["agent"]["name"], "nightly-etl", "{selected}");
    let corp_call = sensor.wait_for("the corp LLM call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(corp_pid)
    });
    assert_eq!(corp_call["provider"], "corp-llm", "{corp_call}");
    assert_eq!(corp_call["agent"]["name"], "corp_client.py", "{corp_call}");
    let (ok, out, err) = sensor.cli(&["agents", "--json"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("nightly-etl") && out.contains("corp-llm"),
        "{out}"
    );
    // Plain processes stay plain.
    let (other, s3) = run(Command::new("curl").args(["-sSk", "-o", "/dev/null", &base]));
    assert!(s3.success());
    let plain = sensor.wait_for("curl's call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(other)
    });
    assert!(plain.get("agent").is_none_or(Value::is_null), "{plain}");
    sensor.stop();
}

#[test]
fn a_bad_policy_file_stops_the_start_with_its_reason() {
    let _g = serial();
    if !require_root("a_bad_policy_file_stops_the_start_with_its_reason") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "policies:\n  - name: shop\n    agents: [buyer.py]\n    deny: [\"POST\"]\n",
    )
    .unwrap();
    let config = dir.path().join("sensor.toml");
    std::fs::write(
        &config,
        format!("[agents]\npolicy = {:?}\n", policy.display().to_string()),
    )
    .unwrap();
    let says_why = |err: &str| {
        err.contains("agents.policy") && err.contains("policy \"shop\"") && err.contains("POST")
    };
    // `sensor run` refuses to start: it exits with the reason and is
    // never ready.
    let log = dir.path().join("run.log");
    let mut daemon = Command::new(e2e::sensor_bin())
        .args(["run", "--json", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(dir.path().join("sensor.sock"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        if err.contains("sensor ready") || Instant::now() > deadline {
            let _ = daemon.kill();
            let _ = daemon.wait();
            panic!("sensor run started with the bad policy:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{status}: {err}");
    assert!(says_why(&err), "{err}");
    // And `sensor config check` says the same without starting anything.
    let out = Command::new(e2e::sensor_bin())
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(says_why(&err), "{err}");
}
