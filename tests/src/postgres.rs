//! A throwaway PostgreSQL server (Debian's `postgresql`, installed by
//! `cargo xtask test`): its own data directory, on a loopback port, TLS
//! on with a self-signed certificate, password (SCRAM) logins over TCP.
//! Stopped and removed when dropped.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// The role the tests' clients log in as, its password, and the database.
pub const PG_USER: &str = "verifier";
pub const PG_PASSWORD: &str = "PLANTED-pg-password-0123";
pub const PG_DATABASE: &str = "prod";

pub struct PgServer {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// The newest installed server's programs (Debian keeps them per major
/// version, off PATH).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql: the postgresql package (cargo xtask test installs it)")
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
        .1
}

/// Runs `prog` as the `postgres` user (the server refuses to run as
/// root); setpriv execs it, so a signal to the child reaches the server.
fn as_postgres(bin: &Path, prog: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(bin.join(prog))
        .env("HOME", "/tmp");
    c
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

impl PgServer {
    /// A server with role `PG_USER` owning database `PG_DATABASE`, which
    /// holds `staging_sessions` (two rows).
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        for d in [&data, &sock] {
            std::fs::create_dir(d).unwrap();
        }
        ok(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()),
            "chown",
        );
        ok(
            as_postgres(&bin, "initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth-local=trust"])
                .args(["--auth-host=scram-sha-256", "--no-sync"]),
            "initdb",
        );
        ok(
            as_postgres(Path::new("/usr/bin"), "openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=127.0.0.1", "-keyout"])
                .arg(data.join("server.key"))
                .arg("-out")
                .arg(data.join("server.crt")),
            "openssl req",
        );
        ok(
            Command::new("chmod")
                .arg("600")
                .arg(data.join("server.key")),
            "chmod",
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = as_postgres(&bin, "postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&sock)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on"])
            .args(["-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres");
        let server = PgServer {
            port,
            child,
            dir,
            bin,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.admin(&["-c", "SELECT 1"]).0 {
            assert!(Instant::now() < deadline, "postgres did not start");
            thread::sleep(Duration::from_millis(100));
        }
        let setup = [
            format!("CREATE ROLE {PG_USER} LOGIN PASSWORD '{PG_PASSWORD}'"),
            format!("CREATE DATABASE {PG_DATABASE} OWNER {PG_USER}"),
        ];
        for sql in &setup {
            let (done, err) = server.admin(&["-c", sql]);
            assert!(done, "{sql}: {err}");
        }
        server.reset_table();
        server
    }

    /// (re)creates `staging_sessions` with two rows, as its owner.
    pub fn reset_table(&self) {
        let (done, err) = self.admin(&[
            "-d",
            PG_DATABASE,
            "-c",
            &format!(
                "DROP TABLE IF EXISTS staging_sessions; \
                 CREATE TABLE staging_sessions (id int, token text); \
                 INSERT INTO staging_sessions VALUES (1, 'a'), (2, 'b'); \
                 ALTER TABLE staging_sessions OWNER TO {PG_USER}"
            ),
        ]);
        assert!(done, "{err}");
    }

    /// Whether `staging_sessions` exists.
    pub fn table_exists(&self) -> bool {
        let out = as_postgres(&self.bin, "psql")
            .arg("-h")
            .arg(self.dir.path().join("sock"))
            .args([
                "-X",
                "-p",
                &self.port.to_string(),
                "-d",
                PG_DATABASE,
                "-tAc",
            ])
            .arg("SELECT to_regclass('staging_sessions') IS NOT NULL")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "t"
    }

    /// psql as the superuser over the server's unix socket (not on the
    /// loopback port the tests watch).
    fn admin(&self, args: &[&str]) -> (bool, String) {
        let out = as_postgres(&self.bin, "psql")
            .arg("-h")
            .arg(self.dir.path().join("sock"))
            .args(["-X", "-p", &self.port.to_string(), "-U", "postgres", "-v"])
            .arg("ON_ERROR_STOP=1")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A libpq connection string for the test role over TCP; `sslmode`
    /// `disable` or `require`. The password goes by PGPASSWORD, never on a
    /// command line.
    pub fn conninfo(&self, sslmode: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={PG_USER} dbname={PG_DATABASE} sslmode={sslmode}",
            self.port
        )
    }

    /// The server's psql.
    pub fn psql(&self) -> PathBuf {
        self.bin.join("psql")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown.
        crate::stop_server(&mut self.child, libc::SIGINT, Duration::from_secs(10));
    }
}
