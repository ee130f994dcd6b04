//! The credential audit, end to end: a pipeline of three real processes
//! (tests/fixtures/credential_pipeline.py: a runner, a migration step
//! given a database admin URL and a vendor admin key, and the verification
//! agent it starts with its own read and model keys). The agent reads with
//! its read key, then deletes with the admin key it inherited. The exec
//! event says what each process holds and where it came from; `sensor
//! credentials` maps every credential to who held it, along which chain,
//! and who used it for what (the irreversible call marked); `sensor agent`
//! gives the agent's blast radius, the database URL it never used named
//! ambient. After it learned (one run), its next run is found holding the
//! database URL it never used (`ambient_credential`) and using keys
//! across runs (`long_lived_credential`); another identity using the same
//! admin key makes it `shared_credential`. No value appears anywhere.

use std::process::Command;

use e2e::{HttpsServer, Sensor, Value, kind, pid, require_root, run, serial, venv_python};

const ADMIN: &str = "sk-admin-PLANTED-0001";
const READ: &str = "sk-read-PLANTED-0002";
const MODEL: &str = "sk-model-PLANTED-0003";
const DB_URL: &str = "postgresql://migrator:PLANTED-db-0004@127.0.0.1:5432/prod";

fn exec_of(sensor: &Sensor, role: &str) -> Value {
    sensor.wait_for(&format!("the {role} exec"), |v| {
        kind(v) == "exec"
            && v["process"]["cmdline"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == role))
    })
}

fn held<'a>(exec: &'a Value, var: &str) -> &'a Value {
    exec["credentials"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["var"] == var))
        .unwrap_or_else(|| panic!("{var} not held: {exec}"))
}

#[test]
fn every_credential_is_mapped_to_who_held_it_where_it_came_from_and_what_it_did() {
    let _g = serial();
    if !require_root("every_credential_is_mapped_to_who_held_it_where_it_came_from_and_what_it_did")
    {
        return;
    }
    let server = HttpsServer::start("127.0.0.1");
    let config = "[agents]\nlearn_sessions = 1\ncredential_max_sessions = 1\n";
    let state = tempfile::tempdir().unwrap();
    let sensor = Sensor::start_in(state.path(), &["--json"], Some(config));
    let pipeline = |variant: &[&str]| {
        let (runner, status) = run(Command::new(venv_python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/credential_pipeline.py"
            ))
            .args(["runner", &format!("https://127.0.0.1:{}", server.port)])
            .args(variant)
            .env("HANDOVER_ADMIN", ADMIN)
            .env("HANDOVER_DB", DB_URL)
            .env("HANDOVER_READ", READ)
            .env("HANDOVER_MODEL", MODEL));
        assert!(status.success());
        runner
    };
    let first = pipeline(&[]);

    // Held at exec, with their origin: the migration step introduced the
    // admin key and the database URL, the agent inherited them.
    let runner = exec_of(&sensor, "runner");
    assert_eq!(pid(&runner), u64::from(first));
    assert!(runner.get("credentials").is_none(), "{runner}");
    let migrate = exec_of(&sensor, "migrate");
    let admin_at_migrate = held(&migrate, "VENDOR_ADMIN_KEY");
    assert_eq!(admin_at_migrate["inherited"], false, "{migrate}");
    assert_eq!(admin_at_migrate["kind"], "api_key", "{migrate}");
    assert_eq!(
        held(&migrate, "DATABASE_URL")["kind"],
        "db_user",
        "{migrate}"
    );
    let verify = exec_of(&sensor, "verify");
    let admin = held(&verify, "VENDOR_ADMIN_KEY");
    assert_eq!(admin["inherited"], true, "{verify}");
    assert_eq!(admin["hops"], 1, "{verify}");
    assert_eq!(admin["origin"]["pid"], pid(&migrate), "{verify}");
    assert_eq!(admin["fingerprint"], admin_at_migrate["fingerprint"]);
    assert_eq!(
        held(&verify, "READ_API_KEY")["inherited"],
        false,
        "{verify}"
    );

    // The agent's delete was made with the inherited key: the same
    // fingerprint as the one held.
    let delete = sensor.wait_for("the delete", |v| {
        kind(v) == "api_call" && v["method"] == "DELETE" && pid(v) == pid(&verify)
    });
    let used = delete["credential_fingerprint"].as_str().unwrap();
    assert_eq!(
        used,
        format!("Bearer {}", admin["fingerprint"].as_str().unwrap()),
        "{delete}"
    );
    let agent_id = delete["agent"]["id"].as_str().unwrap().to_string();

    // The inventory.
    let (ok, out, err) = sensor.cli(&["credentials"]);
    assert!(ok, "{err}");
    let fp = admin["fingerprint"].as_str().unwrap();
    let block: String = out
        .split("\nfp:")
        .find(|b| b.starts_with(&fp[3..]) || b.starts_with(fp))
        .unwrap_or_else(|| panic!("{fp} not in:\n{out}"))
        .to_string();
    assert!(
        block.contains("as VENDOR_ADMIN_KEY: inherited from"),
        "{block}"
    );
    assert!(
        block.contains(&format!("[{}] (1 exec up)", pid(&migrate))),
        "{block}"
    );
    assert!(block.contains("IRREVERSIBLE"), "{block}");
    assert!(block.contains("DELETE 127.0.0.1"), "{block}");
    // JSON for machines.
    let (ok, json, err) = sensor.cli(&["credentials", "--json", "--agent", &agent_id]);
    assert!(ok, "{err}");
    let creds: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(creds.len() >= 4, "{json}");

    // The agent's blast radius: what it holds, the database URL ambient.
    let (ok, profile, err) = sensor.cli(&["agent", &agent_id]);
    assert!(ok, "{err}");
    assert!(profile.contains("credentials held:"), "{profile}");
    let db_line = profile
        .lines()
        .position(|l| l.trim_start().starts_with("DATABASE_URL "))
        .unwrap_or_else(|| panic!("{profile}"));
    let after: Vec<&str> = profile.lines().skip(db_line + 1).take(1).collect();
    assert!(after[0].contains("ambient credential"), "{profile}");
    assert!(profile.contains("VENDOR_ADMIN_KEY"), "{profile}");
    assert!(profile.contains("irreversible: DELETE"), "{profile}");
    sensor.wait_for("the first run's end", |v| {
        kind(v) == "exit" && pid(v) == pid(&verify)
    });
    // The run's story names where each call's credential came from.
    let session = delete["agent"]["session"].as_str().unwrap();
    let (ok, story, err) = sensor.cli(&["trace", session]);
    assert!(ok, "{err}");
    let delete_line = story
        .lines()
        .position(|l| l.contains(" DELETE ") && l.contains("cred=Bearer fp:"))
        .unwrap_or_else(|| panic!("{story}"));
    let source = story.lines().nth(delete_line + 1).unwrap_or_default();
    assert!(
        source.contains("credential held as VENDOR_ADMIN_KEY, inherited from")
            && source.contains(&format!("[{}]", pid(&migrate))),
        "{story}"
    );

    // Its second run, past learning: the database URL it holds and never
    // used is ambient; the keys it uses run after run are long-lived.
    pipeline(&[]);
    let finding = |rule: &str, about: &str| {
        sensor.wait_for(&format!("{rule} of {about}"), |v| {
            kind(v) == "finding"
                && v["rule"] == rule
                && v["agent"]["id"] == agent_id.as_str()
                && v["summary"].as_str().is_some_and(|s| s.contains(about))
        })
    };
    let db_fp = held(&verify, "DATABASE_URL")["fingerprint"]
        .as_str()
        .unwrap();
    let ambient = finding("ambient_credential", "DATABASE_URL");
    assert_eq!(ambient["credential_fingerprint"], db_fp, "{ambient}");
    assert!(
        ambient["summary"]
            .as_str()
            .unwrap()
            .contains("inherited from"),
        "{ambient}"
    );
    let long = finding("long_lived_credential", fp);
    assert_eq!(long["severity"], "low", "{long}");

    // Another identity (the same script, another command line, which
    // tries to clear the operator's line) deletes with the same admin
    // key: shared.
    pipeline(&["nightly\x1b[2K\r"]);
    let shared = sensor.wait_for("shared_credential", |v| {
        kind(v) == "finding"
            && v["rule"] == "shared_credential"
            && v["agent"]["id"] != agent_id.as_str()
            && v["summary"].as_str().is_some_and(|s| s.contains(fp))
    });
    assert!(
        shared["summary"].as_str().unwrap().contains(&agent_id),
        "{shared}"
    );
    // Its command line is shown to a person escaped, never acted on.
    let other = shared["agent"]["id"].as_str().unwrap();
    let (ok, other_profile, err) = sensor.cli(&["agent", other]);
    assert!(ok, "{err}");
    assert!(
        !other_profile.contains('\x1b') && !other_profile.contains('\r'),
        "{other_profile:?}"
    );
    assert!(
        other_profile.contains("nightly\\u{1b}[2K\\u{d}"),
        "{other_profile}"
    );

    let (_, stderr, events) = sensor.stop_with_events();
    for text in [&stderr, &out, &json, &profile, &story] {
        assert!(!text.contains("PLANTED"), "a value leaked:\n{text}");
    }
    for e in &events {
        assert!(!e.to_string().contains("PLANTED"), "{e}");
    }

    // A restart keeps the inventory: who held the admin key, where it
    // came from, and the irreversible call made with it.
    let again = Sensor::start_in(state.path(), &["--json"], Some(config));
    let (ok, after, err) = again.cli(&["credentials"]);
    assert!(ok, "{err}");
    let block = after
        .split("\nfp:")
        .find(|b| b.starts_with(&fp[3..]) || b.starts_with(fp))
        .unwrap_or_else(|| panic!("{fp} not in after a restart:\n{after}"));
    assert!(
        block.contains("as VENDOR_ADMIN_KEY: inherited from"),
        "{block}"
    );
    assert!(block.contains("IRREVERSIBLE"), "{block}");
    assert!(!after.contains("PLANTED"), "{after}");
    let saved = std::fs::read_to_string(state.path().join("credentials.json")).unwrap();
    assert!(!saved.contains("PLANTED"), "a value on disk");
    again.stop();
}
