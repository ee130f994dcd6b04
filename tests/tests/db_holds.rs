//! DDL held before it leaves: an agent named by a selector, with the hold
//! pattern `DROP *`, sends `DROP TABLE staging_sessions` over TLS to a
//! real PostgreSQL (psql, libpq over the system's OpenSSL) and a real
//! MariaDB (the `mariadb` client). The kernel stops the process at the
//! statement's TLS write, before it is encrypted: the table is still there
//! while it waits; `sensor approve` lets that very write go on (the table
//! is dropped), `sensor deny` kills the process (the table stays). The
//! held view shows the statement's template and objects, never a literal.

use std::process::{Child, Command, Stdio};

use e2e::{
    MY_DATABASE, MY_PASSWORD, MY_USER, MariaDb, PG_PASSWORD, PgServer, Sensor, Value, kind, pid,
    require_root, serial, state, wait_until,
};

/// The migrator: any process whose command line drops the staging table.
const CONFIG: &str = "[[agents.selectors]]\nname = \"migrator\"\ncmdline = \"DROP TABLE staging\"\n\
                      [[response.hold]]\nagent = \"migrator\"\npatterns = [\"DROP *\"]\n";

/// With a comment, which the held view leaves out (it shows templates).
const DROP: &str = "DROP TABLE staging_sessions /* cleanup-step-7 */";

fn no_secret(stderr: &str, events: &[Value]) {
    for needle in [PG_PASSWORD, MY_PASSWORD] {
        assert!(!stderr.contains(needle), "{needle} in the log");
        for e in events {
            assert!(!e.to_string().contains(needle), "{needle}: {e}");
        }
    }
}

fn spawn(c: &mut Command) -> Child {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {c:?}: {e}"))
}

/// Waits for the hold of `child`, checks what it shows and that the
/// process is stopped with the table still there; returns the hold's id.
fn held(sensor: &Sensor, child: u32, engine: &str, exists: &dyn Fn() -> bool) -> String {
    let h = sensor.wait_for("the held DROP", |v| {
        kind(v) == "held" && pid(v) == u64::from(child)
    });
    assert_eq!(h["agent"], "migrator", "{h}");
    assert_eq!(h["pattern"], "DROP *", "{h}");
    assert_eq!(h["method"], "DROP", "{h}");
    assert_eq!(h["path"], "DROP TABLE staging_sessions", "{h}");
    let head = h["head"].as_str().unwrap();
    assert!(
        head.starts_with(&format!("{engine} statement: DROP TABLE staging_sessions")),
        "{h}"
    );
    assert!(head.contains("objects: staging_sessions"), "{h}");
    assert!(!head.contains("cleanup-step-7"), "{h}");
    wait_until("the client to stop", || state(child) == 'T');
    // Stopped before its statement was encrypted: nothing was dropped.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(exists(), "the table went while the statement was held");
    h["hold_id"].as_u64().unwrap().to_string()
}

/// Approve: the statement goes on and the table goes; deny: the client is
/// killed and the table stays.
fn approve_then_deny(
    sensor: &Sensor,
    engine: &str,
    client: &dyn Fn() -> Child,
    exists: &dyn Fn() -> bool,
    reset: &dyn Fn(),
) {
    let mut c = client();
    let id = held(sensor, c.id(), engine, exists);
    let (ok, _, err) = sensor.cli(&["approve", &id]);
    assert!(ok, "{err}");
    let status = c.wait().unwrap();
    assert!(status.success(), "{engine} approved: {status:?}");
    assert!(!exists(), "{engine}: approved, the table should be gone");

    reset();
    let mut c = client();
    let id = held(sensor, c.id(), engine, exists);
    let (ok, _, err) = sensor.cli(&["deny", &id]);
    assert!(ok, "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(c.wait().unwrap().signal(), Some(9), "{engine} denied");
    assert!(exists(), "{engine}: denied, the table should stay");
}

#[test]
fn a_drop_over_tls_is_held_until_approved_and_denied_leaves_the_table() {
    let _g = serial();
    if !require_root("a_drop_over_tls_is_held_until_approved_and_denied_leaves_the_table") {
        return;
    }
    let pg = PgServer::start();
    let my = MariaDb::start();
    let sensor = Sensor::start_with(&["--json"], Some(CONFIG));

    approve_then_deny(
        &sensor,
        "postgresql",
        &|| {
            spawn(
                Command::new(pg.psql())
                    .args(["-X", "-v", "ON_ERROR_STOP=1", "-c", DROP])
                    .arg(pg.conninfo("require"))
                    .env("PGPASSWORD", PG_PASSWORD),
            )
        },
        &|| pg.table_exists(),
        &|| pg.reset_table(),
    );
    approve_then_deny(
        &sensor,
        "mysql",
        &|| {
            spawn(
                my.client()
                    .args(["-h", "127.0.0.1", "-P", &my.port.to_string(), "-u", MY_USER])
                    .args(["--ssl", MY_DATABASE, "-e", DROP])
                    .env("MYSQL_PWD", MY_PASSWORD),
            )
        },
        &|| my.table_exists(),
        &|| my.reset_table(),
    );
    let (_, stderr, events) = sensor.stop_with_events();
    no_secret(&stderr, &events);
}
