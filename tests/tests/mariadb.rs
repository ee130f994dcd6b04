//! MySQL-protocol database calls: a real MariaDB server (Debian's, on a
//! loopback port, TLS on) and real clients: the `mariadb` command-line
//! client (libmariadb over the system's OpenSSL), PyMySQL (pure Python,
//! the text protocol, TLS through the ssl module) and MySQL's own
//! connector from PyPI (its wheel's libmysqlclient and OpenSSL, server-side
//! prepared statements). Each statement is an `api_call` with a `db`
//! section, over plain TCP and through the TLS hooks; a verification agent
//! that learned its checks and then drops a table is flagged and killed
//! before its next statement. No password, literal or planted secret in
//! any output.

use std::process::Command;

use e2e::{
    HttpsServer, MY_DATABASE, MY_PASSWORD, MY_USER, MariaDb, Sensor, Value, kind, pid,
    require_root, run, serial, venv_python,
};

fn no_secret(stderr: &str, events: &[Value]) {
    for needle in [MY_PASSWORD, "PLANTED"] {
        assert!(!stderr.contains(needle), "{needle} in the log");
        for e in events {
            assert!(!e.to_string().contains(needle), "{needle}: {e}");
        }
    }
}

fn statements_of(sensor: &Sensor, child: u32, n: usize) -> Vec<Value> {
    sensor.wait_for_n("the statements", n, |v| {
        kind(v) == "api_call" && pid(v) == u64::from(child) && v.get("db").is_some()
    })
}

/// The `mariadb` client runs `sql` as the test user; the password by
/// MYSQL_PWD, never on its command line.
fn cli(db: &MariaDb, tls: bool, sql: &str) -> u32 {
    let (child, status) = run(db
        .client()
        .args(["-h", "127.0.0.1", "-P", &db.port.to_string(), "-u", MY_USER])
        .arg(if tls { "--ssl" } else { "--skip-ssl" })
        .args([MY_DATABASE, "-e", sql])
        .env("MYSQL_PWD", MY_PASSWORD));
    assert!(status.success(), "mariadb tls={tls}: {sql}");
    child
}

/// MySQL's connector (its C extension over the wheel's libmysqlclient and
/// OpenSSL): a server-side prepared SELECT, then one of a missing table
/// (the server refuses to prepare it).
const CONNECTOR: &str = r#"
import os, sys
import mysql.connector

conn = mysql.connector.connect(
    host="127.0.0.1", port=int(os.environ["MY_PORT"]), user=os.environ["MY_USER"],
    password=os.environ["MYSQL_PWD"], database=os.environ["MY_DATABASE"],
    ssl_disabled=sys.argv[1] == "plain", ssl_verify_cert=False,
)
cur = conn.cursor(prepared=True)
cur.execute("SELECT token FROM staging_sessions WHERE id = %s", (1,))
print(cur.fetchall())
try:
    cur.execute("SELECT * FROM no_such_table WHERE token = %s", ("PLANTED-x",))
except mysql.connector.errors.ProgrammingError as e:
    print("missing", e.errno)
conn.close()
"#;

/// PyMySQL: a query its parameters are quoted into, and a DELETE.
const PYMYSQL: &str = r#"
import os, ssl, sys
import pymysql

tls = None
if sys.argv[1] == "tls":
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
conn = pymysql.connect(
    host="127.0.0.1", port=int(os.environ["MY_PORT"]), user=os.environ["MY_USER"],
    password=os.environ["MYSQL_PWD"], database=os.environ["MY_DATABASE"],
    autocommit=True, ssl=tls, ssl_disabled=tls is None,
)
with conn.cursor() as cur:
    cur.execute("SELECT count(*) FROM staging_sessions WHERE token <> %s", ("PLANTED-literal",))
    print(cur.fetchone())
    cur.execute("DELETE FROM staging_sessions WHERE token = %s", ("PLANTED-gone",))
conn.close()
"#;

fn python(db: &MariaDb, script: &str, arg: &str) -> u32 {
    let (child, status) = run(Command::new(venv_python())
        .args(["-c", script, arg])
        .env("MY_PORT", db.port.to_string())
        .env("MY_USER", MY_USER)
        .env("MY_DATABASE", MY_DATABASE)
        .env("MYSQL_PWD", MY_PASSWORD));
    assert!(status.success(), "python {arg}");
    child
}

fn find<'a>(evs: &'a [Value], kind: &str) -> &'a Value {
    evs.iter()
        .find(|e| e["db"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {evs:?}"))
}

#[test]
fn mysql_statements_are_calls_over_plain_tcp_and_tls() {
    let _g = serial();
    if !require_root("mysql_statements_are_calls_over_plain_tcp_and_tls") {
        return;
    }
    let db = MariaDb::start();
    let sensor = Sensor::start_with(&["--json"], None);
    let server = format!("127.0.0.1:{}", db.port);

    // The command-line client, plain: a query with a literal.
    let plain = cli(
        &db,
        false,
        "SELECT count(*) FROM staging_sessions WHERE token = 'PLANTED-literal'",
    );
    let evs = statements_of(&sensor, plain, 1);
    let ev = find(&evs, "select");
    assert_eq!(
        ev["path"], "SELECT count(*) FROM staging_sessions WHERE token = ?",
        "{ev}"
    );
    assert_eq!(ev["path_template"], ev["path"], "{ev}");
    assert_eq!(ev["method"], "SELECT", "{ev}");
    assert_eq!(ev["authority"], server.as_str(), "{ev}");
    assert_eq!(ev["transport"], "plain", "{ev}");
    assert_eq!(ev["http_version"], "mysql", "{ev}");
    let d = &ev["db"];
    assert_eq!(d["engine"], "mysql", "{d}");
    assert_eq!(d["user"], MY_USER, "{d}");
    assert_eq!(d["database"], MY_DATABASE, "{d}");
    assert_eq!(d["protocol"], "text", "{d}");
    assert_eq!(d["objects"], serde_json::json!(["staging_sessions"]), "{d}");
    assert_eq!(d["outcome"], "ok", "{d}");
    assert_eq!(d["rows"], 1, "{d}");
    let fp = ev["credential_fingerprint"].as_str().unwrap().to_string();
    assert!(fp.starts_with("fp:"), "{ev}");

    // The command-line client over TLS: an UPDATE of every row.
    let tls = cli(
        &db,
        true,
        "UPDATE staging_sessions SET token = 'PLANTED-new'",
    );
    let evs = statements_of(&sensor, tls, 1);
    let ev = find(&evs, "update");
    assert_eq!(ev["transport"], "tls", "{ev}");
    assert_eq!(ev["path"], "UPDATE staging_sessions SET token = ?", "{ev}");
    assert_eq!(ev["db"]["unbounded_write"], true, "{ev}");
    assert_eq!(ev["db"]["rows"], 2, "{ev}");
    assert_eq!(ev["credential_fingerprint"], fp.as_str(), "{ev}");

    // PyMySQL, plain and TLS.
    for (arg, transport) in [("plain", "plain"), ("tls", "tls")] {
        let child = python(&db, PYMYSQL, arg);
        let evs = statements_of(&sensor, child, 2);
        let select = find(&evs, "select");
        assert_eq!(
            select["path"], "SELECT count(*) FROM staging_sessions WHERE token <> ?",
            "{select}"
        );
        assert_eq!(select["transport"], transport, "{select}");
        assert_eq!(select["db"]["rows"], 1, "{select}");
        let delete = find(&evs, "delete");
        assert_eq!(
            delete["path"], "DELETE FROM staging_sessions WHERE token = ?",
            "{delete}"
        );
        assert_eq!(delete["db"]["outcome"], "ok", "{delete}");
        assert_eq!(delete["db"]["rows"], 0, "{delete}");
    }

    // MySQL's connector, prepared statements, plain and over its own
    // OpenSSL.
    for (arg, transport) in [("plain", "plain"), ("tls", "tls")] {
        let child = python(&db, CONNECTOR, arg);
        // Its session setup (`SET NAMES`) comes first, by COM_QUERY.
        let evs: Vec<Value> = statements_of(&sensor, child, 3)
            .into_iter()
            .filter(|e| e["db"]["protocol"] == "prepared")
            .collect();
        let select = evs
            .iter()
            .find(|e| e["db"]["outcome"] == "ok")
            .unwrap_or_else(|| panic!("{evs:?}"));
        assert_eq!(
            select["path"], "SELECT token FROM staging_sessions WHERE id = ?",
            "{select}"
        );
        assert_eq!(select["db"]["protocol"], "prepared", "{select}");
        assert_eq!(select["db"]["rows"], 1, "{select}");
        assert_eq!(select["transport"], transport, "{select}");
        let missing = evs
            .iter()
            .find(|e| e["db"]["outcome"] == "error")
            .unwrap_or_else(|| panic!("{evs:?}"));
        assert_eq!(
            missing["path"], "SELECT * FROM no_such_table WHERE token = ?",
            "{missing}"
        );
        assert_eq!(missing["db"]["sqlstate"], "42S02", "{missing}");
    }

    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}

/// The incident, over MySQL: a verification agent (PyMySQL) learns its
/// checks over three runs, then drops a table; enforce mode kills it
/// before its next statement.
#[test]
fn a_mysql_verifier_that_drops_a_table_is_flagged_and_killed() {
    let _g = serial();
    if !require_root("a_mysql_verifier_that_drops_a_table_is_flagged_and_killed") {
        return;
    }
    let db = MariaDb::start();
    let server = HttpsServer::start("127.0.0.1");
    let config = "[agents]\nlearn_sessions = 3\n[response]\nmode = \"enforce\"\n\
                  [[response.rules]]\nrule = \"new_irreversible_endpoint\"\naction = \"kill_tree\"\n";
    let sensor = Sensor::start_with(&["--json"], Some(config));
    let agent = |mode: &str, tls: bool| {
        let child = Command::new(venv_python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/db_agent.py"))
            .arg(format!("https://127.0.0.1:{}", server.port))
            .env("DB_AGENT_MODE", mode)
            .env("DB_ENGINE", "mysql")
            .env("MY_HOST", "127.0.0.1")
            .env("MY_PORT", db.port.to_string())
            .env("MY_USER", MY_USER)
            .env("MY_DATABASE", MY_DATABASE)
            .env("MY_TLS", if tls { "1" } else { "0" })
            .env("MYSQL_PWD", MY_PASSWORD)
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
    // Learning runs over plain TCP and TLS: one agent, one baseline.
    for tls in [false, true, false] {
        let out = agent("check", tls);
        assert!(out.status.success(), "{out:?}");
    }
    let out = agent("cleanup", true);
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
    assert!(!db.table_exists());
    let endpoint = finding["endpoint"].as_str().unwrap();
    assert!(
        endpoint.starts_with("DROP ") && endpoint.ends_with("DROP TABLE staging_sessions"),
        "{finding}"
    );
    sensor.wait_for("the kill", |v| {
        kind(v) == "action" && v["action"] == "kill_tree" && v["outcome"] == "done"
    });
    let session = finding["agent"]["session"].as_str().unwrap();
    let (ok, story, err) = sensor.cli(&["trace", session]);
    assert!(ok, "{err}");
    let drop_line = format!(
        "mysql verifier@127.0.0.1:{}/prod: DROP TABLE staging_sessions -> ok",
        db.port
    );
    assert!(story.contains(&drop_line), "{story}");
    let (_, stderr, events) = sensor.stop_with_events();
    let after = events.iter().any(|v| {
        kind(v) == "api_call"
            && pid(v) == pid(&finding)
            && v["path"]
                .as_str()
                .unwrap_or_default()
                .contains("after_drop")
    });
    assert!(!after, "a statement ran after the DROP");
    no_secret(&stderr, &events);
}
