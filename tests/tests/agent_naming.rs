//! One agent, named three ways, answered three ways. The same database
//! agent (official `openai` SDK for the model, `httpx` for the database's
//! HTTPS API) asks its model, reads a customer and then deletes customers;
//! it is named by an operator selector (`[[agents.selectors]] name =
//! "dba"`), by its LLM call (its script, `dba_agent.py`), or picked out by
//! a policy entry's selector (its user and command line; it has no other
//! name than its script's and its id). Each naming is held
//! (`[[response.hold]]`), armed (`[[response.arm]]`) and answered by its
//! policy (`respond`), and every place that looks the agent up by name
//! (`sensor agent`, `sensor baseline mode`, `response.agents`, policy
//! entries) finds the one the events show.

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use e2e::{
    HttpsServer, Sensor, Value, kind, pid, require_root, serial, state, venv_python, wait_until,
};

const DBA_AGENT: &str = r#"
import os, sys, time
import httpx, openai

base = sys.argv[1]
if os.environ.get("ASK_MODEL", "1") == "1":
    client = openai.OpenAI(base_url=base + "/v1", api_key="sk-dba-PLANTED",
                           http_client=httpx.Client(verify=False))
    tools = [{"type": "function", "function": {"name": "drop_customer", "parameters": {"type": "object"}}}]
    reply = client.chat.completions.create(
        model="gpt-e2e", messages=[{"role": "user", "content": "clean up old customers"}], tools=tools)
    assert reply.choices[0].message.tool_calls[0].function.name == "drop_customer"
db = httpx.Client(verify=False, headers={"authorization": "Bearer db-PLANTED"})
db.get(base + "/v1/customers/7")
for c in os.environ["CUSTOMERS"].split(","):
    db.delete(base + "/v1/customers/" + c)
    print("deleted", c, flush=True)
    time.sleep(0.5)
print("done", flush=True)
"#;

/// Every sensor here: metrics on a free port (other sensors may run).
fn config(rest: &str) -> String {
    format!("[metrics]\nlisten = \"127.0.0.1:0\"\n{rest}")
}

/// The operator's name for it.
const SELECTOR: &str = "[[agents.selectors]]\nname = \"dba\"\ncmdline = \"dba_agent\\\\.py\"\n";

/// The unprivileged user the policy selector picks it out by.
const NOBODY: u32 = 65534;

/// A run of tests/…/dba_agent.py (written to a temporary directory, as an
/// operator's script would be anywhere), deleting `customers`.
struct Dba {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Dba {
    fn start(server: &HttpsServer, customers: &str, uid: Option<u32>) -> Dba {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("dba_agent.py");
        std::fs::write(&script, DBA_AGENT).unwrap();
        // Readable by the unprivileged runs too.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut cmd = Command::new(venv_python());
        cmd.arg(&script);
        Self::spawn(cmd, dir, server, customers, uid)
    }

    /// Started by a launcher script (as a service's ExecStart may be)
    /// that execs it, without asking a model: only the operator's selector
    /// makes it an agent, and only once it is the script.
    fn launched(server: &HttpsServer, customers: &str) -> Dba {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("dba_agent.py");
        std::fs::write(&script, DBA_AGENT).unwrap();
        let launcher = dir.path().join("run_job.sh");
        std::fs::write(
            &launcher,
            format!(
                "exec {} {} \"$1\"\n",
                venv_python().display(),
                script.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg(&launcher).env("ASK_MODEL", "0");
        Self::spawn(cmd, dir, server, customers, None)
    }

    fn spawn(
        mut cmd: Command,
        dir: tempfile::TempDir,
        server: &HttpsServer,
        customers: &str,
        uid: Option<u32>,
    ) -> Dba {
        cmd.arg(format!("https://127.0.0.1:{}", server.port))
            .env("CUSTOMERS", customers)
            .env("HOME", "/tmp")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        Dba {
            child: cmd.spawn().unwrap(),
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its output and how it ended, within 60 s.
    fn finish(mut self) -> (String, ExitStatus) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut out = String::new();
                use std::io::Read;
                let _ = self.child.stdout.take().unwrap().read_to_string(&mut out);
                return (out, status);
            }
            assert!(Instant::now() < deadline, "the dba agent did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dba {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// DELETEs that reached the database.
fn deletes(server: &HttpsServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.starts_with("REQ DELETE /v1/customers/"))
        .count()
}

/// Neither of its keys (the model's, the database's) in the log or any
/// event (by their whole value: other processes on the host may say
/// "PLANTED").
fn no_secret(stderr: &str, events: &[Value]) {
    for key in ["sk-dba-PLANTED", "db-PLANTED"] {
        assert!(!stderr.contains(key), "{key} in the log");
        for e in events {
            assert!(!e.to_string().contains(key), "{key} in {e}");
        }
    }
}

/// The agent tag of `run`'s model call.
fn tag_of(sensor: &Sensor, run: u32) -> Value {
    sensor.wait_for("the agent's model call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(run) && v["path"] == "/v1/chat/completions"
    })["agent"]
        .clone()
}

/// A policy file in `dir` with one entry, "dba-guard", for `who` (a YAML
/// `agents:` or `selector:` line): DELETEs are denied, and a denied call
/// kills the agent.
fn policy(dir: &Path, who: &str, mode: Option<&str>) -> PathBuf {
    let path = dir.join("policy.yaml");
    let mode = mode.map_or(String::new(), |m| format!("    mode: {m}\n"));
    std::fs::write(
        &path,
        format!(
            "policies:\n  - name: dba-guard\n    {who}\n{mode}    deny: [\"DELETE *\"]\n    respond:\n      - {{ finding: denied_endpoint, action: kill }}\n"
        ),
    )
    .unwrap();
    path
}

/// The selector of the policy entry that picks the agent out by what it
/// is: its (unprivileged) user and its script's path.
fn policy_selector() -> String {
    format!("selector: {{ uid: {NOBODY}, cmdline: \"/dba_agent\\\\.py\" }}")
}

fn agents_policy(path: &Path) -> String {
    format!("[agents]\npolicy = {:?}\n", path.display().to_string())
}

/// Held at its first DELETE: a `held` event for `agent`, stopped, nothing
/// deleted; denied, it is killed and nothing is ever deleted.
fn assert_held(sensor: &Sensor, server: &HttpsServer, agent: Dba, label: &str) {
    let me = agent.pid();
    let h = sensor.wait_for("the held DELETE", |v| {
        kind(v) == "held" && pid(v) == u64::from(me)
    });
    assert_eq!(h["agent"], label, "{h}");
    assert_eq!(h["method"], "DELETE", "{h}");
    assert_eq!(h["path"], "/v1/customers/7", "{h}");
    assert_eq!(h["level"], "request", "{h}");
    assert_eq!(h["stopped"], true, "{h}");
    assert!(
        h["tool_call"]
            .as_str()
            .unwrap_or("")
            .starts_with("drop_customer"),
        "{h}"
    );
    wait_until("the agent to stop", || state(me) == 'T');
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state(me), 'T');
    assert_eq!(deletes(server), 0, "{:?}", server.requests());
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.starts_with("REQ GET /v1/customers/7 ")),
        "the read went through: {:?}",
        server.requests()
    );
    let id = h["hold_id"].as_u64().unwrap().to_string();
    let (ok, out, err) = sensor.cli(&["holds"]);
    assert!(ok && out.contains(&me.to_string()), "{out}{err}");
    let (ok, _, err) = sensor.cli(&["deny", &id, "--why", "e2e: not this one"]);
    assert!(ok, "{err}");
    let (out, status) = agent.finish();
    assert_eq!(status.signal(), Some(9), "{out}");
    assert!(!out.contains("deleted"), "{out}");
    assert_eq!(deletes(server), 0, "{:?}", server.requests());
}

/// Killed in the kernel at its first DELETE, before it left: a `blocked`
/// event for `agent`.
fn assert_armed(sensor: &Sensor, server: &HttpsServer, agent: Dba, label: &str) {
    let me = agent.pid();
    let (out, status) = agent.finish();
    assert_eq!(status.signal(), Some(9), "{out}");
    assert!(!out.contains("deleted"), "{out}");
    assert_eq!(deletes(server), 0, "{:?}", server.requests());
    let b = sensor.wait_for("the blocked DELETE", |v| {
        kind(v) == "blocked" && pid(v) == u64::from(me)
    });
    assert_eq!(b["agent"], label, "{b}");
    assert_eq!(b["pattern"], "DELETE /v1/customers/", "{b}");
    assert_eq!(b["killed"], true, "{b}");
}

/// Its policy answers its first DELETE (the database had `before`
/// DELETEs already): a `denied_endpoint` finding of "dba-guard" in enforce
/// mode for the agent `name`, and the kill it asks for, done; the second
/// DELETE never comes.
fn assert_answered(sensor: &Sensor, server: &HttpsServer, agent: Dba, name: &str, before: usize) {
    let me = agent.pid();
    let (out, status) = agent.finish();
    assert_eq!(
        status.signal(),
        Some(9),
        "killed at its first DELETE: {out}"
    );
    assert_eq!(out.trim(), "deleted 7", "{out}");
    assert_eq!(deletes(server), before + 1, "{:?}", server.requests());
    let f = sensor.wait_for("the denied DELETE's finding", |v| {
        kind(v) == "finding" && pid(v) == u64::from(me) && v["rule"] == "denied_endpoint"
    });
    assert_eq!(f["agent"]["name"], name, "{f}");
    assert_eq!(f["policy"], "dba-guard", "{f}");
    assert_eq!(f["mode"], "enforce", "{f}");
    assert_eq!(f["response"], "kill", "{f}");
    let a = sensor.wait_for("the kill", |v| {
        kind(v) == "action" && v["finding_seq"] == f["seq"]
    });
    assert_eq!(a["action"], "kill", "{a}");
    assert_eq!(a["outcome"], "done", "{a}");
}

/// `sensor baseline show AGENT` finds it, in `mode`, for `why`.
fn assert_mode(sensor: &Sensor, agent: &str, mode: &str, why: &str) {
    let (ok, out, err) = sensor.cli(&["baseline", "show", agent]);
    assert!(ok, "{agent}: {err}");
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("mode:"))
        .unwrap_or_else(|| panic!("no mode in {out}"));
    assert!(
        line.contains(&format!(" {mode} (")) && line.contains(why),
        "{agent}: {line}"
    );
}

#[test]
fn an_agent_named_by_a_selector_is_held() {
    let _g = serial();
    if !require_root("an_agent_named_by_a_selector_is_held") {
        return;
    }
    let cfg = format!(
        "{SELECTOR}[[response.hold]]\nagent = \"dba\"\npatterns = [\"DELETE */v1/customers/\"]\n"
    );
    let sensor = Sensor::start_with(&["--json"], Some(&config(&cfg)));
    let server = HttpsServer::start("127.0.0.1");
    let agent = Dba::start(&server, "7,8", None);
    let me = agent.pid();
    assert_held(&sensor, &server, agent, "dba");
    assert_eq!(tag_of(&sensor, me)["name"], "dba");
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}

#[test]
fn an_agent_named_by_a_selector_is_armed() {
    let _g = serial();
    if !require_root("an_agent_named_by_a_selector_is_armed") {
        return;
    }
    let cfg = format!(
        "{SELECTOR}[[response.arm]]\nagent = \"dba\"\ndeny = [\"DELETE /v1/customers/\"]\n"
    );
    let sensor = Sensor::start_with(&["--json"], Some(&config(&cfg)));
    let server = HttpsServer::start("127.0.0.1");
    let agent = Dba::start(&server, "7,8", None);
    let me = agent.pid();
    assert_armed(&sensor, &server, agent, "dba");
    assert_eq!(tag_of(&sensor, me)["name"], "dba");
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}

/// The selector is checked again at each exec: a launcher that execs the
/// agent is not it, the agent is, from its first call (its events, its
/// hold and what the hold shows of its session).
#[test]
fn an_agent_a_launcher_execs_is_named_by_its_selector_from_the_exec() {
    let _g = serial();
    if !require_root("an_agent_a_launcher_execs_is_named_by_its_selector_from_the_exec") {
        return;
    }
    let cfg = format!(
        "{SELECTOR}[[response.hold]]\nagent = \"dba\"\npatterns = [\"DELETE */v1/customers/\"]\n"
    );
    let sensor = Sensor::start_with(&["--json"], Some(&config(&cfg)));
    let server = HttpsServer::start("127.0.0.1");
    let agent = Dba::launched(&server, "7");
    let me = agent.pid();
    let read = sensor.wait_for("its read", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(me) && v["method"] == "GET"
    });
    assert!(
        read["process"]["comm"]
            .as_str()
            .is_some_and(|c| c.starts_with("python")),
        "{read}"
    );
    assert_eq!(read["agent"]["name"], "dba", "{read}");
    let h = sensor.wait_for("the held DELETE", |v| {
        kind(v) == "held" && pid(v) == u64::from(me)
    });
    assert_eq!(h["agent"], "dba", "{h}");
    assert!(
        h["trail"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .any(|t| t.starts_with("GET ") && t.ends_with("/v1/customers/{id}")),
        "{h}"
    );
    wait_until("the agent to stop", || state(me) == 'T');
    assert_eq!(deletes(&server), 0, "{:?}", server.requests());
    let id = h["hold_id"].as_u64().unwrap().to_string();
    let (ok, _, err) = sensor.cli(&["deny", &id]);
    assert!(ok, "{err}");
    let (out, status) = agent.finish();
    assert_eq!(status.signal(), Some(9), "{out}");
    assert_eq!(deletes(&server), 0, "{:?}", server.requests());
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}

/// The operator names an agent the sensor had already discovered (the
/// usual order: seen in `sensor agents`, then named); from then on every
/// lookup by its new name finds it: `sensor agent`, `response.agents`,
/// the policy entry naming it and `sensor baseline mode`.
#[test]
fn an_agent_named_by_a_selector_after_its_discovery_is_answered_by_its_policy() {
    let _g = serial();
    if !require_root("an_agent_named_by_a_selector_after_its_discovery_is_answered_by_its_policy") {
        return;
    }
    let kept = tempfile::tempdir().unwrap();
    let server = HttpsServer::start("127.0.0.1");
    let sensor = Sensor::start_in(kept.path(), &["--json"], Some(&config("")));
    let first = Dba::start(&server, "7", None);
    let run1 = first.pid();
    let (out, status) = first.finish();
    assert!(status.success(), "{out}");
    let id = tag_of(&sensor, run1)["id"].as_str().unwrap().to_string();
    sensor.stop();

    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{}learn_sessions = 1\n{SELECTOR}[response.agents]\ndba = \"enforce\"\n",
        agents_policy(&policy(dir.path(), "agents: [\"dba\"]", None))
    );
    let sensor = Sensor::start_in(kept.path(), &["--json"], Some(&config(&cfg)));
    let agent = Dba::start(&server, "7,8", None);
    let run2 = agent.pid();
    assert_answered(&sensor, &server, agent, "dba", 1);
    let tag = tag_of(&sensor, run2);
    assert_eq!(tag["id"], id.as_str(), "the same identity: {tag}");
    let (ok, out, err) = sensor.cli(&["agent", "dba"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&id) && out.contains("mode:         enforce"),
        "{out}"
    );
    assert_mode(&sensor, "dba", "enforce", "learned 2 runs");
    let (ok, out, err) = sensor.cli(&["baseline", "mode", "dba", "monitor", "--why", "e2e"]);
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("monitor mode"), "{out}");
    assert_mode(&sensor, "dba", "monitor", "e2e");
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}

#[test]
fn an_agent_named_by_its_llm_call_is_held() {
    let _g = serial();
    if !require_root("an_agent_named_by_its_llm_call_is_held") {
        return;
    }
    let cfg =
        "[[response.hold]]\nagent = \"dba_agent.py\"\npatterns = [\"DELETE */v1/customers/\"]\n";
    let sensor = Sensor::start_with(&["--json"], Some(&config(cfg)));
    let server = HttpsServer::start("127.0.0.1");
    let agent = Dba::start(&server, "7,8", None);
    let me = agent.pid();
    assert_held(&sensor, &server, agent, "dba_agent.py");
    assert_eq!(tag_of(&sensor, me)["name"], "dba_agent.py");
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}

#[test]
fn an_agent_named_by_its_llm_call_is_armed() {
    let _g = serial();
    if !require_root("an_agent_named_by_its_llm_call_is_armed") {
        return;
    }
    let cfg = "[[response.arm]]\nagent = \"dba_agent.py\"\ndeny = [\"DELETE /v1/customers/\"]\n";
    let sensor = Sensor::start_with(&["--json"], Some(&config(cfg)));
    let server = HttpsServer::start("127.0.0.1");
    let agent = Dba::start(&server, "7,8", None);
    let me = agent.pid();
    assert_armed(&sensor, &server, agent, "dba_agent.py");
    assert_eq!(tag_of(&sensor, me)["name"], "dba_agent.py");
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}

#[test]
fn an_agent_named_by_its_llm_call_is_answered_by_its_policy() {
    let _g = serial();
    if !require_root("an_agent_named_by_its_llm_call_is_answered_by_its_policy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = policy(dir.path(), "agents: [\"dba_agent.py\"]", Some("enforce"));
    let sensor = Sensor::start_with(&["--json"], Some(&config(&agents_policy(&path))));
    let server = HttpsServer::start("127.0.0.1");
    let agent = Dba::start(&server, "7,8", None);
    assert_answered(&sensor, &server, agent, "dba_agent.py", 0);
    assert_mode(&sensor, "dba_agent.py", "enforce", "policy \"dba-guard\"");
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}

/// An agent the policy picks out by what it is (its user, its script's
/// path) rather than by a name: answered by that entry, and shown in the
/// mode that entry gives it wherever it is looked up.
#[test]
fn an_agent_picked_out_by_a_policy_selector_is_answered_by_its_policy() {
    let _g = serial();
    if !require_root("an_agent_picked_out_by_a_policy_selector_is_answered_by_its_policy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = policy(dir.path(), &policy_selector(), Some("enforce"));
    let sensor = Sensor::start_with(&["--json"], Some(&config(&agents_policy(&path))));
    let server = HttpsServer::start("127.0.0.1");
    // The same script as root is not the one the policy picks out.
    let root = Dba::start(&server, "5", None);
    let (out, status) = root.finish();
    assert!(status.success(), "{out}");
    assert_eq!(deletes(&server), 1);
    let agent = Dba::start(&server, "7,8", Some(NOBODY));
    let me = agent.pid();
    // Before its first DELETE, it is shown in the mode its entry gives it.
    tag_of(&sensor, me);
    assert_mode(&sensor, "dba_agent.py", "enforce", "policy \"dba-guard\"");
    assert_answered(&sensor, &server, agent, "dba_agent.py", 1);
    assert_mode(&sensor, "dba_agent.py", "enforce", "policy \"dba-guard\"");
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}

/// The id of the agent a policy selector picks out, from a first run
/// under a sensor with that policy only (state kept in `state`).
fn policy_selected_id(state: &Path, server: &HttpsServer, policy: &str) -> String {
    let sensor = Sensor::start_in(state, &["--json"], Some(&config(policy)));
    let first = Dba::start(server, "1", Some(NOBODY));
    let run1 = first.pid();
    let _ = first.finish();
    let f = sensor.wait_for("the first run's finding", |v| {
        kind(v) == "finding" && pid(v) == u64::from(run1) && v["rule"] == "denied_endpoint"
    });
    assert_eq!(f["policy"], "dba-guard", "{f}");
    let id = f["agent"]["id"].as_str().unwrap().to_string();
    sensor.stop();
    id
}

/// An agent only a policy selector picks out has no name but its
/// script's; a hold names it by its id, as the events show it.
#[test]
fn an_agent_picked_out_by_a_policy_selector_is_held_by_its_id() {
    let _g = serial();
    if !require_root("an_agent_picked_out_by_a_policy_selector_is_held_by_its_id") {
        return;
    }
    let kept = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = HttpsServer::start("127.0.0.1");
    let policy = agents_policy(&policy(dir.path(), &policy_selector(), Some("monitor")));
    let id = policy_selected_id(kept.path(), &server, &policy);
    let cfg = format!(
        "{policy}[[response.hold]]\nagent = \"{id}\"\npatterns = [\"DELETE */v1/customers/\"]\n"
    );
    let sensor = Sensor::start_in(kept.path(), &["--json"], Some(&config(&cfg)));
    let before = deletes(&server);
    assert_eq!(
        before, 1,
        "the first run's DELETE went through (monitor mode)"
    );
    let agent = Dba::start(&server, "7,8", Some(NOBODY));
    let me = agent.pid();
    let h = sensor.wait_for("the held DELETE", |v| {
        kind(v) == "held" && pid(v) == u64::from(me)
    });
    assert_eq!(h["agent"], id.as_str(), "{h}");
    assert_eq!(h["path"], "/v1/customers/7", "{h}");
    wait_until("the agent to stop", || state(me) == 'T');
    assert_eq!(deletes(&server), before, "{:?}", server.requests());
    let hold = h["hold_id"].as_u64().unwrap().to_string();
    let (ok, _, err) = sensor.cli(&["deny", &hold]);
    assert!(ok, "{err}");
    let (out, status) = agent.finish();
    assert_eq!(status.signal(), Some(9), "{out}");
    assert_eq!(deletes(&server), before, "{:?}", server.requests());
    assert_eq!(tag_of(&sensor, me)["id"], id.as_str());
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}

#[test]
fn an_agent_picked_out_by_a_policy_selector_is_armed_by_its_id() {
    let _g = serial();
    if !require_root("an_agent_picked_out_by_a_policy_selector_is_armed_by_its_id") {
        return;
    }
    let kept = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = HttpsServer::start("127.0.0.1");
    let policy = agents_policy(&policy(dir.path(), &policy_selector(), Some("monitor")));
    let id = policy_selected_id(kept.path(), &server, &policy);
    let cfg =
        format!("{policy}[[response.arm]]\nagent = \"{id}\"\ndeny = [\"DELETE /v1/customers/\"]\n");
    let sensor = Sensor::start_in(kept.path(), &["--json"], Some(&config(&cfg)));
    assert_eq!(deletes(&server), 1, "the first run's DELETE went through");
    let agent = Dba::start(&server, "7,8", Some(NOBODY));
    let me = agent.pid();
    let (out, status) = agent.finish();
    assert_eq!(status.signal(), Some(9), "{out}");
    assert_eq!(deletes(&server), 1, "{:?}", server.requests());
    let b = sensor.wait_for("the blocked DELETE", |v| {
        kind(v) == "blocked" && pid(v) == u64::from(me)
    });
    assert_eq!(b["agent"], id.as_str(), "{b}");
    assert_eq!(b["killed"], true, "{b}");
    assert_eq!(tag_of(&sensor, me)["id"], id.as_str());
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}
