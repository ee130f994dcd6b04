//! Keyed fingerprints that stand for credentials in every output: the same
//! credential gives the same short fingerprint on this host (so an analyst
//! can follow it), and nobody without the host's key can test a guess.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub struct Fingerprinter {
    key: [u8; 32],
}

/// What the HTTP parsers ask about headers: is this one a credential, and
/// what stands for its value in output.
pub trait Credentials {
    /// `name` is lowercase.
    fn is_secret(&self, name: &str) -> bool;
    fn fingerprint(&self, value: &[u8]) -> String;
}

/// A fingerprint function, with the process's credential header list
/// (built-in and operator-added, see `redact`).
impl<F: Fn(&[u8]) -> String> Credentials for F {
    fn is_secret(&self, name: &str) -> bool {
        crate::redact::is_secret_header(name)
    }

    fn fingerprint(&self, value: &[u8]) -> String {
        self(value)
    }
}

impl Fingerprinter {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// Reads the key at `path`, which must exist.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading fingerprint key {}", path.display()))?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!(
                "fingerprint key {} is {} bytes, expected 32",
                path.display(),
                bytes.len()
            )
        })?;
        Ok(Self::new(key))
    }

    /// Reads the host key at `path`, or creates it (0600) if absent.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(_) => Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                if let Err(e) = getrandom::fill(&mut key) {
                    bail!("no randomness for the fingerprint key: {e}");
                }
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("creating fingerprint key {}", path.display()))?;
                f.write_all(&key)?;
                Ok(Self::new(key))
            }
            Err(e) => Err(e).with_context(|| format!("reading fingerprint key {}", path.display())),
        }
    }

    /// `fp:` and 12 hex digits of HMAC-SHA256(key, credential). For
    /// `Bearer x` / `Basic x` the token is fingerprinted and the scheme kept.
    pub fn fingerprint(&self, value: &[u8]) -> String {
        let value = trim(value);
        let (scheme, token) = match value.iter().position(|&b| b == b' ') {
            Some(i) if is_scheme(&value[..i]) => (Some(&value[..i]), trim(&value[i + 1..])),
            _ => (None, value),
        };
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(token);
        let digest = mac.finalize().into_bytes();
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        match scheme {
            Some(s) => format!("{} fp:{hex}", String::from_utf8_lossy(s)),
            None => format!("fp:{hex}"),
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end]
}

fn is_scheme(s: &[u8]) -> bool {
    matches!(
        s.to_ascii_lowercase().as_slice(),
        b"bearer" | b"basic" | b"token" | b"digest"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_keyed_and_secret_free() {
        let a = Fingerprinter::new([1; 32]);
        let b = Fingerprinter::new([2; 32]);
        let s = b"Bearer sk-live-PLANTED-123";
        assert_eq!(
            a.fingerprint(s),
            a.fingerprint(b"  Bearer   sk-live-PLANTED-123 ")
        );
        assert_ne!(
            a.fingerprint(s),
            b.fingerprint(s),
            "another host, another fingerprint"
        );
        let f = a.fingerprint(s);
        assert!(
            f.starts_with("Bearer fp:") && f.len() == "Bearer fp:".len() + 12,
            "{f}"
        );
        assert!(!f.contains("PLANTED"));
        assert!(a.fingerprint(b"raw-api-key").starts_with("fp:"));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/fingerprint.key");
        let a = Fingerprinter::load_or_create(&path).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let b = Fingerprinter::load_or_create(&path).unwrap();
        assert_eq!(a.fingerprint(b"k"), b.fingerprint(b"k"));
        std::fs::write(&path, b"short").unwrap();
        assert!(Fingerprinter::load_or_create(&path).is_err());
    }
}
