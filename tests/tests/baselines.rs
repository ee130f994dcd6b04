//! Fleet-wide baselines, for real: an agent learned on one node is checked
//! from its first run on another that imported the export (the same
//! credential recognised through a shared fingerprint key); baselines
//! learned on two nodes merge, and a runtime import survives a restart.

use std::{path::Path, process::Command};

use e2e::{HttpsServer, Sensor, Value, kind, pid, require_root, run_fleet_agent, serial};

/// A fleet agent run (see `run_fleet_agent`): its exit is reported, so
/// are its calls and their findings (a finding is written right after
/// the call it is about).
fn agent(sensor: &Sensor, server: &HttpsServer, mode: &str) -> u32 {
    run_fleet_agent(sensor, server, mode)
}

fn findings_of(events: &[Value], child: u32) -> Vec<&Value> {
    events
        .iter()
        .filter(|v| kind(v) == "finding" && pid(v) == u64::from(child))
        .collect()
}

/// A config sharing `key` as the fingerprint key, plus `extra`.
fn config(key: &Path, extra: &str) -> String {
    format!(
        "[http]\nfingerprint_key = {:?}\n{extra}",
        key.display().to_string()
    )
}

/// The identity the sensor gave the agent that ran as `child` (other
/// agents on the host, another test's, are in its baselines too).
fn agent_id(sensor: &Sensor, child: u32) -> String {
    let call = sensor.wait_for("the agent's model call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(child) && v["agent"]["id"].is_string()
    });
    call["agent"]["id"].as_str().unwrap().to_string()
}

/// Three runs on a fresh node, exported to `out`; returns the agent's id.
fn learn(state: &Path, key: &Path, server: &HttpsServer, mode: &str, out: &Path) -> String {
    let sensor = Sensor::start_in(state, &["--json"], Some(&config(key, "")));
    let mut id = String::new();
    for _ in 0..3 {
        let child = agent(&sensor, server, mode);
        id = agent_id(&sensor, child);
    }
    let (ok, _, err) = sensor.cli(&["baseline", "export", "-o", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (_, stderr) = sensor.stop();
    assert!(!stderr.contains("PLANTED"));
    id
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_node_checks_an_agent_from_its_first_run_with_an_imported_baseline() {
    let _g = serial();
    if !require_root("a_node_checks_an_agent_from_its_first_run_with_an_imported_baseline") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let server = HttpsServer::start("127.0.0.1");
    let (a, b) = (dir.path().join("node-a"), dir.path().join("node-b"));
    let exported = dir.path().join("a.json");
    let id = learn(&a, &key, &server, "catalog", &exported);
    let file = read(&exported);
    assert_eq!(file["format"], "sensor-baselines/1", "{file}");
    let learned = &file["baselines"][&id];
    assert!(learned.is_object(), "{id} not in {file}");
    assert_eq!(learned["sessions"], 3, "{file}");
    assert!(
        learned["endpoints"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.ends_with(" /v1/catalog")),
        "{file}"
    );
    assert!(!file.to_string().contains("PLANTED"));

    // Node B never saw the agent: with the import it is checked at once.
    let sensor = Sensor::start_in(
        &b,
        &["--json"],
        Some(&config(
            &key,
            &format!(
                "[baselines]\nimport = [{:?}]\n",
                exported.display().to_string()
            ),
        )),
    );
    let normal = agent(&sensor, &server, "catalog");
    let order = agent(&sensor, &server, "order");
    let (_, stderr, events) = sensor.stop_with_events();
    assert!(stderr.contains("baselines imported"), "{stderr}");
    let quiet = findings_of(&events, normal);
    assert!(quiet.is_empty(), "the learned run raised {quiet:?}");
    let found = findings_of(&events, order);
    let rules: Vec<&str> = found.iter().filter_map(|f| f["rule"].as_str()).collect();
    assert_eq!(rules, ["new_irreversible_endpoint"], "{found:?}");
    assert_eq!(found[0]["agent"]["id"], id.as_str(), "{}", found[0]);
    // The same vendor key is the same fingerprint on both nodes: no
    // new_credential finding above, and the one it learned is in the file.
    let seen: Vec<&Value> = events
        .iter()
        .filter(|v| kind(v) == "api_call" && v["path"] == "/v1/catalog")
        .collect();
    let fp = seen[0]["credential_fingerprint"].as_str().unwrap();
    assert!(
        learned["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == fp),
        "{fp} not in {learned}"
    );
    for e in &events {
        assert!(!e.to_string().contains("PLANTED"), "{e}");
    }
}

#[test]
fn baselines_from_two_nodes_merge_and_a_runtime_import_is_kept() {
    let _g = serial();
    if !require_root("baselines_from_two_nodes_merge_and_a_runtime_import_is_kept") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.key");
    std::fs::write(&key, [9u8; 32]).unwrap();
    let server = HttpsServer::start("127.0.0.1");
    let (a, c) = (dir.path().join("a.json"), dir.path().join("c.json"));
    let id = learn(&dir.path().join("node-a"), &key, &server, "catalog", &a);
    let same = learn(&dir.path().join("node-c"), &key, &server, "inventory", &c);
    assert_eq!(id, same, "one agent, one identity on both nodes");
    let merged = dir.path().join("merged.json");
    let out = Command::new(e2e::sensor_bin())
        .args(["baseline", "merge"])
        .arg(&a)
        .arg(&c)
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let m = read(&merged);
    let b = &m["baselines"][&id];
    assert_eq!(b["sessions"], 6, "{m}");
    let endpoints: Vec<&String> = b["endpoints"].as_object().unwrap().keys().collect();
    assert!(
        endpoints.iter().any(|e| e.ends_with(" /v1/catalog")),
        "{endpoints:?}"
    );
    assert!(
        endpoints.iter().any(|e| e.ends_with(" /v1/inventory/{id}")),
        "{endpoints:?}"
    );
    // A wrong file is refused with its name, offline and through the API.
    let bogus = dir.path().join("bogus.json");
    std::fs::write(&bogus, b"{\"baselines\": {}}").unwrap();
    let out = Command::new(e2e::sensor_bin())
        .args(["baseline", "merge"])
        .arg(&bogus)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bogus.json") && err.contains("format"),
        "{err}"
    );

    // Node D imports the merge at run time: both kinds of run are known.
    let d = dir.path().join("node-d");
    let sensor = Sensor::start_in(&d, &["--json"], Some(&config(&key, "")));
    let (ok, _, err) = sensor.cli(&["baseline", "import", bogus.to_str().unwrap()]);
    assert!(!ok && err.contains("format"), "{err}");
    let (ok, out, err) = sensor.cli(&["baseline", "import", merged.to_str().unwrap()]);
    assert!(
        ok && out.contains("imported baselines of 1 agents"),
        "{out}{err}"
    );
    let both = agent(&sensor, &server, "both");
    let (_, _, events) = sensor.stop_with_events();
    assert!(
        findings_of(&events, both).is_empty(),
        "{:?}",
        findings_of(&events, both)
    );
    // Restarted: the import was kept; an order is still new.
    let sensor = Sensor::start_in(&d, &["--json"], Some(&config(&key, "")));
    let both = agent(&sensor, &server, "both");
    let order = agent(&sensor, &server, "order");
    let (_, _, events) = sensor.stop_with_events();
    assert!(
        findings_of(&events, both).is_empty(),
        "{:?}",
        findings_of(&events, both)
    );
    let rules: Vec<&str> = findings_of(&events, order)
        .iter()
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert_eq!(rules, ["new_irreversible_endpoint"]);
}

#[test]
fn the_baselines_service_through_the_cli_and_a_generated_grpc_client() {
    let _g = serial();
    if !require_root("the_baselines_service_through_the_cli_and_a_generated_grpc_client") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.key");
    std::fs::write(&key, [5u8; 32]).unwrap();
    let server = HttpsServer::start("127.0.0.1");
    let sensor = Sensor::start_in(
        &dir.path().join("node"),
        &["--json"],
        Some(&config(&key, "")),
    );
    let first = agent(&sensor, &server, "catalog");
    let id = agent_id(&sensor, first);
    let (ok, out, err) = sensor.cli(&["agents", "--json"]);
    assert!(ok, "{err}");
    let listed: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|a| a["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {out}"));
    let (id, name) = (
        listed["id"].as_str().unwrap().to_string(),
        listed["name"].as_str().unwrap().to_string(),
    );
    let t = sensor.api_target();

    // After one run it is learning; the generated client sees what it learned.
    let (ok, out, err) = e2e::api_client(&t, &["baseline-get", "--agent", &id]);
    assert!(ok, "{err}");
    let b = &out[0];
    assert_eq!(b["agent_id"], id.as_str(), "{b}");
    assert_eq!(b["agent_name"], name.as_str(), "{b}");
    assert_eq!(b["learning"], true, "{b}");
    assert_eq!(b["sessions"], "1", "{b}");
    assert_eq!(b["learn_sessions"], "3", "{b}");
    let endpoints = b["endpoints"].as_array().unwrap();
    let catalog = endpoints
        .iter()
        .find(|e| e["method"] == "GET" && e["path_template"] == "/v1/catalog")
        .unwrap_or_else(|| panic!("no GET /v1/catalog in {b}"));
    assert_eq!(catalog["calls"], "1", "{b}");
    // The model call, then the catalog: one transition between them.
    let tr = b["transitions"].as_array().unwrap();
    assert!(
        tr.iter().any(
            |t| t["to_endpoint"].as_str().unwrap().ends_with(" /v1/catalog")
                && t["from_endpoint"].as_str().unwrap().starts_with("POST ")
        ),
        "{b}"
    );
    assert_eq!(b["credentials"].as_array().unwrap().len(), 2, "{b}");
    assert!(
        b["destinations"].as_array().is_some_and(|d| !d.is_empty()),
        "{b}"
    );
    assert!(!b.to_string().contains("PLANTED"), "{b}");
    let (ok, _, err) = e2e::api_client(&t, &["baseline-get", "--agent", "agt-nobody"]);
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");

    // Exported through the generated client, raised to three runs as if
    // learned on other nodes, imported through it again.
    let (ok, out, err) = e2e::api_client(&t, &["baseline-export", "--agent", &id]);
    assert!(ok, "{err}");
    let mut file = out[0].clone();
    assert_eq!(file["format"], "sensor-baselines/1", "{file}");
    file["baselines"][&id]["sessions"] = 3.into();
    file["nodes"] = serde_json::json!(["node-x"]);
    let path = dir.path().join("x.json");
    std::fs::write(&path, file.to_string()).unwrap();
    let (ok, out, err) =
        e2e::api_client(&t, &["baseline-import", "--file", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out[0]["agents"], 1, "{out:?}");

    // The CLI shows it, by name: checked now, runs here and imported.
    let (ok, text, err) = sensor.cli(&["baseline", "show", &name]);
    assert!(ok, "{err}");
    assert!(
        text.contains(&id)
            && text.contains("checking")
            && text.contains("4 (1 here, 3 imported)")
            && text.contains("/v1/catalog"),
        "{text}"
    );
    let (ok, json, err) = sensor.cli(&["baseline", "show", &id, "--json"]);
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(shown["learning"], false, "{shown}");
    assert_eq!(shown["imported_sessions"], "3", "{shown}");
    // And the detector uses it: the next run's order is new.
    let order = agent(&sensor, &server, "order");
    // `sensor history <agent>`: both runs' calls, by name, in order, and
    // the finding; a limit keeps the most recent matches (the store holds
    // far more events of other processes).
    let (ok, text, err) =
        sensor.cli(&["history", &name, "--kind", "api_call", "--kind", "finding"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = text.lines().collect();
    let catalog = lines
        .iter()
        .position(|l| l.contains("/v1/catalog"))
        .unwrap_or(usize::MAX);
    let ordered = lines
        .iter()
        .position(|l| l.contains("/v1/orders"))
        .unwrap_or(usize::MAX);
    assert!(catalog < ordered && ordered < lines.len(), "{text}");
    assert!(text.contains("new_irreversible_endpoint"), "{text}");
    let (ok, text, err) = sensor.cli(&["history", &id, "--kind", "api_call", "--limit", "1"]);
    assert!(ok, "{err}");
    assert!(
        text.lines().count() == 1 && text.contains("/v1/orders"),
        "{text}"
    );
    // The model traffic alone: `llm_call` selects the calls to providers.
    let (ok, text, err) = sensor.cli(&["events", "--kind", "llm_call", "--agent", &id, "--json"]);
    assert!(ok, "{err}");
    let llm: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(llm.len(), 2, "one model call per run: {text}");
    for e in &llm {
        assert_eq!(e["kind"], "api_call", "{e}");
        // A chat completion on a local host: the any-host entry.
        assert_eq!(e["api_call"]["provider"], "openai-compatible", "{e}");
        assert_eq!(e["api_call"]["path"], "/v1/chat/completions", "{e}");
    }
    let (ok, _, err) = sensor.cli(&["history", "no-such-agent"]);
    assert!(!ok && err.contains("no agent"), "{err}");
    let (_, _, events) = sensor.stop_with_events();
    let rules: Vec<&str> = findings_of(&events, order)
        .iter()
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert_eq!(rules, ["new_irreversible_endpoint"]);
}
