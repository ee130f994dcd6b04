//! Credentials a process holds in its environment, read at its exec: the
//! secret-named variables, each fingerprinted with the host's keyed HMAC
//! (the one traffic credentials get, so a held key and the same key used
//! in a request have one fingerprint), and where it came from: introduced
//! at this exec, or inherited from the process that had it before.
//!
//! Values are read from `/proc/PID/environ`, fingerprinted and dropped:
//! never stored, logged or printed.

use serde::{Deserialize, Serialize};

/// Most bytes of an environment read.
const ENVIRON_MAX: usize = 256 * 1024;
/// Most credentials kept per process.
const HELD_MAX: usize = 32;

/// Where a held credential entered the process tree: the first process
/// that held it whose parent did not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub pid: u32,
    pub exe: String,
    /// Its command line (redacted), cut to 160 characters.
    pub cmdline: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeldCredential {
    /// The variable's name (never its value).
    pub var: String,
    pub fingerprint: String,
    /// `api_key`, `token`, `password`, `secret`, `db_user` (a database
    /// URL's user: the credential its connections log in with).
    pub kind: &'static str,
    /// False when introduced at this process's exec.
    pub inherited: bool,
    /// Execs it passed through since its origin (0: introduced here).
    pub hops: u32,
    pub origin: Origin,
}

/// The credential kind a variable's name says it holds, if any.
/// `extra`: operator-named variables (exact names, or prefixes ending in
/// `*`).
pub fn kind_of(name: &str, extra: &[String]) -> Option<&'static str> {
    let n = name.to_ascii_uppercase();
    if n.ends_with("DATABASE_URL") || n.ends_with("_DSN") || n == "DSN" {
        return Some("db_user");
    }
    if n.ends_with("API_KEY") || n.ends_with("APIKEY") || n.ends_with("_KEY") {
        return Some("api_key");
    }
    if n.ends_with("TOKEN") {
        return Some("token");
    }
    if n.contains("PASSWORD") || n.ends_with("PASSWD") || n.ends_with("_PWD") {
        return Some("password");
    }
    if n.contains("SECRET") || n.contains("CREDENTIAL") {
        return Some("secret");
    }
    let named = extra.iter().any(|e| match e.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => e == name,
    });
    named.then_some("secret")
}

/// What a database URL's credential is, as the database parsers name it:
/// `engine:user` (the engine its connections report).
fn db_user(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let engine = match scheme.split('+').next()? {
        "postgres" | "postgresql" => "postgresql",
        "mysql" | "mariadb" => "mysql",
        _ => return None,
    };
    let (userinfo, _) = rest.split_once('@')?;
    let user = userinfo.split(':').next()?;
    (!user.is_empty()).then(|| format!("{engine}:{user}"))
}

/// The secret-named variables of an environment block (`NAME=value\0`…):
/// (name, kind, the bytes to fingerprint). A database URL stands for its
/// user (`postgresql:app`), as connections do; a URL of another kind is
/// fingerprinted whole.
pub fn secrets(environ: &[u8], extra: &[String]) -> Vec<(String, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in environ[..environ.len().min(ENVIRON_MAX)].split(|&b| b == 0) {
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (&entry[..eq], &entry[eq + 1..]);
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if value.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Some(mut kind) = kind_of(name, extra) else {
            continue;
        };
        let mut value = value.to_vec();
        if kind == "db_user" {
            match db_user(&String::from_utf8_lossy(&value)) {
                Some(u) => value = u.into_bytes(),
                None => kind = "secret",
            }
        }
        out.push((name.to_string(), kind, value));
        if out.len() >= HELD_MAX {
            break;
        }
    }
    out
}

/// The credentials a process holds after exec, given its environment and
/// what the process it came from held (its image before exec, or its
/// parent): one with the same fingerprint there is inherited, with that
/// one's origin.
pub fn held(
    environ: &[u8],
    extra: &[String],
    fingerprint: &dyn Fn(&[u8]) -> String,
    from: &[HeldCredential],
    here: Origin,
) -> Vec<HeldCredential> {
    secrets(environ, extra)
        .into_iter()
        .map(|(var, kind, value)| {
            let fingerprint = fingerprint(&value);
            match from.iter().find(|h| h.fingerprint == fingerprint) {
                Some(h) => HeldCredential {
                    var,
                    fingerprint,
                    kind,
                    inherited: true,
                    hops: h.hops.saturating_add(1),
                    origin: h.origin.clone(),
                },
                None => HeldCredential {
                    var,
                    fingerprint,
                    kind,
                    inherited: false,
                    hops: 0,
                    origin: here.clone(),
                },
            }
        })
        .collect()
}

/// Reads a process's environment (as it was at exec), bounded.
pub fn read_environ(proc_root: &std::path::Path, pid: u32) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(proc_root.join(pid.to_string()).join("environ")).ok()?;
    let mut buf = Vec::new();
    f.take(ENVIRON_MAX as u64).read_to_end(&mut buf).ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(v: &[u8]) -> String {
        format!("fp:{}", String::from_utf8_lossy(v).len())
    }

    fn origin(pid: u32) -> Origin {
        Origin {
            pid,
            exe: "/usr/bin/python3".into(),
            cmdline: "python3 step.py".into(),
        }
    }

    #[test]
    fn secret_named_variables_are_kept_by_kind_and_others_not() {
        let env = b"PATH=/usr/bin\0OPENAI_API_KEY=sk-PLANTED\0GITHUB_TOKEN=ghp_x\0\
                    PGPASSWORD=PLANTED\0DATABASE_URL=postgresql://admin:PLANTED@db:5432/prod\0\
                    AWS_SECRET_ACCESS_KEY=abc\0EMPTY_TOKEN=\0HOME=/root\0MY_VAR=v\0\
                    REDIS_URL_DSN=redis://x\0";
        let s = secrets(env, &["MY_*".into()]);
        let names: Vec<(&str, &str)> = s.iter().map(|(n, k, _)| (n.as_str(), *k)).collect();
        assert_eq!(
            names,
            [
                ("OPENAI_API_KEY", "api_key"),
                ("GITHUB_TOKEN", "token"),
                ("PGPASSWORD", "password"),
                ("DATABASE_URL", "db_user"),
                ("AWS_SECRET_ACCESS_KEY", "api_key"),
                ("MY_VAR", "secret"),
                ("REDIS_URL_DSN", "secret"),
            ]
        );
        // A database URL stands for its user, as its connections do.
        assert_eq!(s[3].2, b"postgresql:admin");
        assert_eq!(
            db_user("mysql+pymysql://app@h/d").as_deref(),
            Some("mysql:app")
        );
    }

    #[test]
    fn a_credential_the_parent_held_is_inherited_with_its_origin() {
        let step = held(b"ADMIN_TOKEN=t-PLANTED-1\0", &[], &fp, &[], origin(10));
        assert!(!step[0].inherited);
        let agent = held(
            b"ADMIN_TOKEN=t-PLANTED-1\0READ_KEY=r-PLANTED\0",
            &[],
            &fp,
            &step,
            origin(11),
        );
        assert!(agent[0].inherited);
        assert_eq!((agent[0].hops, agent[0].origin.pid), (1, 10));
        assert!(!agent[1].inherited);
        assert_eq!(agent[1].origin.pid, 11);
        assert!(!format!("{agent:?}").contains("PLANTED"));
    }
}
