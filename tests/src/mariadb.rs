//! A throwaway MariaDB server (Debian's `mariadb-server`, installed by
//! `cargo xtask test`): its own data directory, on a loopback port, TLS
//! on with a self-signed certificate, password logins over TCP. Stopped
//! and removed when dropped.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// The user the tests' clients log in as, its password, the database.
pub const MY_USER: &str = "verifier";
pub const MY_PASSWORD: &str = "PLANTED-my-password-0123";
pub const MY_DATABASE: &str = "prod";

pub struct MariaDb {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

fn ok(c: &mut Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl MariaDb {
    /// A server with user `MY_USER` owning database `MY_DATABASE`, which
    /// holds `staging_sessions` (two rows).
    pub fn start() -> MariaDb {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // Runs as root (`--user=root`): the data directory stays ours.
        ok(
            Command::new("mariadb-install-db")
                .args(["--no-defaults", "--user=root", "--skip-test-db"])
                .args(["--auth-root-authentication-method=socket"])
                .arg(format!("--datadir={}", data.display())),
            "mariadb-install-db (the mariadb-server package: cargo xtask test installs it)",
        );
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        ok(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=127.0.0.1", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
            "openssl req",
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let d = dir.path();
        let child = Command::new("mariadbd")
            .args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", d.join("error.log").display()))
            .arg(format!("--ssl-key={}", key.display()))
            .arg(format!("--ssl-cert={}", cert.display()))
            .args(["--innodb-buffer-pool-size=16M", "--skip-name-resolve"])
            .args(["--innodb-flush-log-at-trx-commit=0", "--skip-log-bin"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
        let server = MariaDb { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.admin("SELECT 1").0 {
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start: {}",
                std::fs::read_to_string(server.dir.path().join("error.log")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(100));
        }
        let setup = format!(
            "CREATE USER '{MY_USER}'@'127.0.0.1' IDENTIFIED BY '{MY_PASSWORD}'; \
             CREATE DATABASE {MY_DATABASE}; \
             GRANT ALL ON {MY_DATABASE}.* TO '{MY_USER}'@'127.0.0.1'"
        );
        let (done, err) = server.admin(&setup);
        assert!(done, "{setup}: {err}");
        server.reset_table();
        server
    }

    /// (re)creates `staging_sessions` with two rows.
    pub fn reset_table(&self) {
        let (done, err) = self.admin(&format!(
            "DROP TABLE IF EXISTS {MY_DATABASE}.staging_sessions; \
             CREATE TABLE {MY_DATABASE}.staging_sessions (id int, token text); \
             INSERT INTO {MY_DATABASE}.staging_sessions VALUES (1, 'a'), (2, 'b')"
        ));
        assert!(done, "{err}");
    }

    /// Whether `staging_sessions` exists.
    pub fn table_exists(&self) -> bool {
        let out = self
            .client()
            .arg(format!(
                "--socket={}",
                self.dir.path().join("sock").display()
            ))
            .args(["-u", "root", "-N", "-B", "-e"])
            .arg(format!(
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = '{MY_DATABASE}' AND table_name = 'staging_sessions'"
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    /// The `mariadb` client, reading no option file.
    pub fn client(&self) -> Command {
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults");
        c
    }

    /// SQL as root over the server's unix socket (not on the loopback
    /// port the tests watch).
    fn admin(&self, sql: &str) -> (bool, String) {
        let out = self
            .client()
            .arg(format!(
                "--socket={}",
                self.dir.path().join("sock").display()
            ))
            .args(["-u", "root", "-e", sql])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The server's certificate (self-signed).
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // SIGTERM: a normal shutdown.
        crate::stop_server(&mut self.child, libc::SIGTERM, Duration::from_secs(20));
    }
}
