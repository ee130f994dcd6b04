//! Database calls are calls: a real PostgreSQL server (Debian's, on a
//! loopback port, TLS on) and real clients (psql through libpq, psycopg 3
//! from PyPI with its own libpq and OpenSSL). Each statement is an
//! `api_call` with a `db` section (verb, template without literals,
//! objects, user, database, rows, outcome), over plain TCP and through
//! the TLS library hooks; a verification agent that learned its checks
//! and then drops a table is flagged (`new_irreversible_endpoint`, its
//! database user named by fingerprint) and killed before its next
//! statement. No password, literal or planted secret in any output.

use std::process::Command;

use e2e::{
    HttpsServer, PG_PASSWORD, PgServer, Sensor, Value, kind, pid, require_root, run, serial,
    venv_python,
};

/// No secret in the daemon's log or in any event: the role's password,
/// the literals of the statements, the planted keys.
fn no_secret(stderr: &str, events: &[Value]) {
    for needle in [PG_PASSWORD, "PLANTED"] {
        assert!(!stderr.contains(needle), "{needle} in the log");
        for e in events {
            assert!(!e.to_string().contains(needle), "{needle}: {e}");
        }
    }
}

/// asyncpg (its own protocol code; TLS through asyncio's memory BIOs over
/// the system's OpenSSL): a prepared statement with a parameter, then a
/// statement with an inline literal.
const ASYNCPG: &str = r#"
import asyncio, os, sys
import asyncpg

async def main():
    conn = await asyncpg.connect(dsn=os.environ["PG_DSN"], ssl=sys.argv[1])
    n = await conn.fetchval("SELECT count(*) FROM staging_sessions WHERE id > $1", 0)
    await conn.execute("DELETE FROM staging_sessions WHERE token = 'PLANTED-literal'")
    await conn.close()
    print("rows", n)

asyncio.run(main())
"#;

fn statements_of(sensor: &Sensor, child: u32, n: usize) -> Vec<Value> {
    sensor.wait_for_n("the statements", n, |v| {
        kind(v) == "api_call" && pid(v) == u64::from(child) && v.get("db").is_some()
    })
}

/// psql runs `sql` (a simple query) as the test role.
fn psql(pg: &PgServer, sslmode: &str, sql: &str) -> u32 {
    let (child, status) = run(Command::new(pg.psql())
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .arg(pg.conninfo(sslmode))
        .env("PGPASSWORD", PG_PASSWORD));
    assert!(status.success(), "psql {sslmode}: {sql}");
    child
}

#[test]
fn statements_are_calls_over_plain_tcp_and_tls() {
    let _g = serial();
    if !require_root("statements_are_calls_over_plain_tcp_and_tls") {
        return;
    }
    let pg = PgServer::start();
    let sensor = Sensor::start_with(&["--json"], None);

    // Plain TCP, a simple query with a literal.
    let plain = psql(
        &pg,
        "disable",
        "SELECT count(*) FROM staging_sessions WHERE token = 'PLANTED-literal'",
    );
    let ev = &statements_of(&sensor, plain, 1)[0];
    assert_eq!(ev["method"], "SELECT", "{ev}");
    assert_eq!(
        ev["path"], "SELECT count(*) FROM staging_sessions WHERE token = ?",
        "{ev}"
    );
    assert_eq!(ev["path_template"], ev["path"], "{ev}");
    assert_eq!(ev["authority"], format!("127.0.0.1:{}", pg.port), "{ev}");
    assert_eq!(ev["transport"], "plain", "{ev}");
    assert_eq!(ev["http_version"], "postgresql", "{ev}");
    assert!(ev.get("status").is_none(), "{ev}");
    let db = &ev["db"];
    assert_eq!(db["engine"], "postgresql", "{db}");
    assert_eq!(db["user"], "verifier", "{db}");
    assert_eq!(db["database"], "prod", "{db}");
    assert_eq!(db["protocol"], "simple", "{db}");
    assert_eq!(db["kind"], "select", "{db}");
    assert_eq!(db["class"], "read", "{db}");
    assert_eq!(
        db["objects"],
        serde_json::json!(["staging_sessions"]),
        "{db}"
    );
    assert_eq!(db["outcome"], "ok", "{db}");
    assert_eq!(db["rows"], 1, "{db}");
    let plain_fp = ev["credential_fingerprint"].as_str().unwrap().to_string();
    assert!(plain_fp.starts_with("fp:"), "{ev}");

    // TLS (libpq over the system's OpenSSL): an UPDATE of every row.
    let tls = psql(
        &pg,
        "require",
        "UPDATE staging_sessions SET token = 'PLANTED-new'",
    );
    let ev = &statements_of(&sensor, tls, 1)[0];
    assert_eq!(ev["transport"], "tls", "{ev}");
    assert_eq!(ev["tls_library"], "openssl", "{ev}");
    assert_eq!(ev["path"], "UPDATE staging_sessions SET token = ?", "{ev}");
    assert_eq!(ev["db"]["kind"], "update", "{ev}");
    assert_eq!(ev["db"]["unbounded_write"], true, "{ev}");
    assert_eq!(ev["db"]["rows"], 2, "{ev}");
    // The same user is the same credential, whatever the transport.
    assert_eq!(ev["credential_fingerprint"], plain_fp.as_str(), "{ev}");

    // psycopg's extended protocol over TLS (its wheel's own libpq and
    // OpenSSL), a statement that fails: its SQLSTATE, not its message.
    let server = HttpsServer::start("127.0.0.1");
    let (child, status) = run(Command::new(venv_python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/db_agent.py"))
        .arg(format!("https://127.0.0.1:{}", server.port))
        .arg("missing")
        .env("PG_CONNINFO", pg.conninfo("require"))
        .env("PGPASSWORD", PG_PASSWORD));
    assert!(status.success());
    let ev = &statements_of(&sensor, child, 1)[0];
    assert_eq!(ev["transport"], "tls", "{ev}");
    assert_eq!(ev["db"]["protocol"], "extended", "{ev}");
    assert_eq!(
        ev["path"], "SELECT * FROM no_such_table WHERE id = ?",
        "{ev}"
    );
    assert_eq!(ev["db"]["outcome"], "error", "{ev}");
    assert_eq!(ev["db"]["sqlstate"], "42P01", "{ev}");
    // The agent's model call made it an agent; its statements are its.
    assert!(ev["agent"]["id"].is_string(), "{ev}");

    // asyncpg, plain and over TLS.
    for (ssl, transport) in [("disable", "plain"), ("require", "tls")] {
        let (child, status) = run(Command::new(venv_python())
            .args(["-c", ASYNCPG, ssl])
            .env(
                "PG_DSN",
                format!("postgresql://verifier@127.0.0.1:{}/prod", pg.port),
            )
            .env("PGPASSWORD", PG_PASSWORD));
        assert!(status.success(), "asyncpg {ssl}");
        let evs = statements_of(&sensor, child, 2);
        let find = |kind: &str| {
            evs.iter()
                .find(|e| e["db"]["kind"] == kind)
                .unwrap_or_else(|| panic!("no {kind} in {evs:?}"))
        };
        let select = find("select");
        assert_eq!(
            select["path"], "SELECT count(*) FROM staging_sessions WHERE id > ?",
            "{select}"
        );
        assert_eq!(select["transport"], transport, "{select}");
        assert_eq!(select["db"]["rows"], 1, "{select}");
        let delete = find("delete");
        assert_eq!(
            delete["path"], "DELETE FROM staging_sessions WHERE token = ?",
            "{delete}"
        );
        assert_eq!(delete["db"]["outcome"], "ok", "{delete}");
    }

    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}

#[test]
fn a_verifier_that_drops_a_table_is_flagged_and_killed_before_its_next_statement() {
    let _g = serial();
    if !require_root(
        "a_verifier_that_drops_a_table_is_flagged_and_killed_before_its_next_statement",
    ) {
        return;
    }
    let pg = PgServer::start();
    let server = HttpsServer::start("127.0.0.1");
    let config = "[agents]\nlearn_sessions = 3\n[response]\nmode = \"enforce\"\n\
                  [[response.rules]]\nrule = \"new_irreversible_endpoint\"\naction = \"kill_tree\"\n";
    let sensor = Sensor::start_with(&["--json"], Some(config));
    // A run to its end, and until the sensor saw it end (a learning run
    // counts once its session is over).
    let agent = |mode: &str| {
        let child = Command::new(venv_python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/db_agent.py"))
            .arg(format!("https://127.0.0.1:{}", server.port))
            .env("DB_AGENT_MODE", mode)
            .env("PG_CONNINFO", pg.conninfo("disable"))
            .env("PGPASSWORD", PG_PASSWORD)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let me = child.id();
        let out = child.wait_with_output().unwrap();
        sensor.wait_for(&format!("the {mode} run's exit"), |v| {
            kind(v) == "exit" && pid(v) == u64::from(me)
        });
        out
    };
    for _ in 0..3 {
        let out = agent("check");
        assert!(out.status.success(), "{out:?}");
    }
    let out = agent("cleanup");
    let finding = sensor.wait_for("the DROP's finding", |v| {
        kind(v) == "finding" && v["rule"] == "new_irreversible_endpoint"
    });
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Its two checks ran, not the statement after the DROP (the kill may
    // land before the DROP's line is printed).
    assert_eq!(stdout.matches("ran SELECT").count(), 2, "{stdout}");
    assert!(!stdout.contains("done"), "{stdout}");
    // The DROP ran (nothing held it: see the README), nothing after it.
    assert!(!pg.table_exists());
    let endpoint = finding["endpoint"].as_str().unwrap();
    assert!(
        endpoint.starts_with("DROP ") && endpoint.ends_with("DROP TABLE staging_sessions"),
        "{finding}"
    );
    assert_eq!(finding["mode"], "enforce", "{finding}");
    assert!(
        finding["credential_fingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with("fp:")),
        "{finding}"
    );
    let action = sensor.wait_for("the kill", |v| {
        kind(v) == "action" && v["action"] == "kill_tree" && v["outcome"] == "done"
    });
    assert_eq!(pid(&action), pid(&finding), "{action}");
    // The session's story shows its statements beside its model call.
    let session = finding["agent"]["session"].as_str().unwrap();
    let (ok, story, err) = sensor.cli(&["trace", session]);
    assert!(ok, "{err}");
    let drop_line = format!(
        "postgresql verifier@127.0.0.1:{}/prod: DROP TABLE staging_sessions -> ok",
        pg.port
    );
    assert!(story.contains(&drop_line), "{story}");
    assert!(story.contains("/v1/chat/completions"), "{story}");
    let (_, stderr, events) = sensor.stop_with_events();
    let after: Vec<&Value> = events
        .iter()
        .filter(|v| {
            kind(v) == "api_call"
                && pid(v) == pid(&finding)
                && v["path"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("after_drop")
        })
        .collect();
    assert!(after.is_empty(), "{after:?}");
    no_secret(&stderr, &events);
}

/// The incident's inheritance: a second agent identity logs in as the
/// database user the first one learned; its statements are flagged
/// `borrowed_credential`, both identities named.
#[test]
fn a_database_user_learned_by_one_agent_is_borrowed_by_another() {
    let _g = serial();
    if !require_root("a_database_user_learned_by_one_agent_is_borrowed_by_another") {
        return;
    }
    let pg = PgServer::start();
    let server = HttpsServer::start("127.0.0.1");
    let sensor = Sensor::start_with(&["--json"], Some("[agents]\nlearn_sessions = 3\n"));
    // `extra` arguments make another agent identity of the same script.
    let agent = |extra: &[&str]| {
        let (child, status) = run(Command::new(venv_python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/db_agent.py"))
            .arg(format!("https://127.0.0.1:{}", server.port))
            .args(extra)
            .env("DB_AGENT_MODE", "check")
            .env("PG_CONNINFO", pg.conninfo("disable"))
            .env("PGPASSWORD", PG_PASSWORD));
        assert!(status.success());
        sensor.wait_for("the run's exit", |v| {
            kind(v) == "exit" && pid(v) == u64::from(child)
        });
        child
    };
    let mut owner = 0;
    for _ in 0..3 {
        owner = agent(&[]);
    }
    let owner_id = statements_of(&sensor, owner, 2)[0]["agent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = agent(&["check"]);
    let finding = sensor.wait_for("the borrowed database user", |v| {
        kind(v) == "finding"
            && pid(v) == u64::from(other)
            && v["rule"] == "borrowed_credential"
            && v["endpoint"]
                .as_str()
                .is_some_and(|e| e.starts_with("SELECT "))
    });
    let statement = &statements_of(&sensor, other, 1)[0];
    assert_ne!(statement["agent"]["id"], owner_id.as_str(), "{statement}");
    assert_eq!(
        finding["credential_fingerprint"], statement["credential_fingerprint"],
        "{finding}"
    );
    assert!(
        finding["summary"].as_str().unwrap().contains(&owner_id),
        "{finding}"
    );
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}
