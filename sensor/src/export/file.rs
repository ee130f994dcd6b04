//! JSON lines to a file for log shippers (Filebeat, Fluent Bit, Vector),
//! rotated by size: `path` → `path.1` → … → `path.N`, the oldest deleted.
//!
//! Written on the pipeline's thread like stdout, through a buffer flushed
//! with each batch of events. A write error is counted and logged, the
//! event is lost from this file only, and the file is reopened at the next
//! event: a full or read-only disk never stops the daemon.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileStats {
    pub lines: u64,
    pub write_errors: u64,
    pub rotations: u64,
}

pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    out: Option<BufWriter<File>>,
    /// Bytes in the current file, written or buffered.
    size: u64,
    pub stats: FileStats,
    last_warning: Option<Instant>,
}

/// Errors are logged at most this often (the count is in the status).
const WARN_EVERY: Duration = Duration::from_secs(60);

impl RotatingFile {
    /// Opens (appending to) `path`; its directory is created if missing.
    /// An error here stops the start: the path is wrong, not the disk full.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> Result<Self> {
        let mut f = Self {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            out: None,
            size: 0,
            stats: FileStats::default(),
            last_warning: None,
        };
        f.reopen()
            .with_context(|| format!("export.file.path: cannot open {}", path.display()))?;
        Ok(f)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        // 0600: events name processes, command lines and destinations.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.out = Some(BufWriter::new(file));
        Ok(())
    }

    /// Appends one event (its JSON, without the newline).
    pub fn write_line(&mut self, json: &str) {
        let len = json.len() as u64 + 1;
        let r = (|| {
            if self.size > 0 && self.size + len > self.max_bytes {
                self.rotate()?;
            }
            if self.out.is_none() {
                self.reopen()?;
            }
            let out = self.out.as_mut().expect("opened above");
            out.write_all(json.as_bytes())?;
            out.write_all(b"\n")?;
            self.size += len;
            Ok::<_, std::io::Error>(())
        })();
        match r {
            Ok(()) => self.stats.lines += 1,
            Err(e) => self.failed("write", &e),
        }
    }

    pub fn flush(&mut self) {
        if let Some(out) = &mut self.out
            && let Err(e) = out.flush()
        {
            self.failed("flush", &e);
        }
    }

    /// `path.{N-1}` → `path.N`, …, `path` → `path.1`, then a new `path`.
    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
        }
        let numbered = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            remove_if_present(&self.path)?;
        } else {
            remove_if_present(&numbered(self.keep))?;
            for i in (1..self.keep).rev() {
                rename_if_present(&numbered(i), &numbered(i + 1))?;
            }
            rename_if_present(&self.path, &numbered(1))?;
        }
        self.stats.rotations += 1;
        self.reopen()
    }

    fn failed(&mut self, what: &str, e: &std::io::Error) {
        self.stats.write_errors += 1;
        // Reopened at the next event: the disk may have room again, or
        // the directory may be back.
        self.out = None;
        if self.last_warning.is_none_or(|t| t.elapsed() > WARN_EVERY) {
            tracing::warn!(
                path = %self.path.display(),
                error = %e,
                errors = self.stats.write_errors,
                "file export {what} failed: events are missing from the file"
            );
            self.last_warning = Some(Instant::now());
        }
    }
}

fn remove_if_present(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/events.jsonl");
        // Each line is 100 bytes with its newline: 3 fit in 350 bytes.
        let mut f = RotatingFile::open(&path, 350, 2).unwrap();
        let line = |i: usize| format!("{{\"seq\":{i:04}}}{}", "x".repeat(100 - 12 - 1));
        assert_eq!(line(1).len() + 1, 100);
        for i in 0..10 {
            f.write_line(&line(i));
        }
        f.flush();
        // 0-2 went to a file rotated away twice (deleted: keep = 2),
        // 3-5 → .2, 6-8 → .1, 9 current.
        assert_eq!(lines(&path), vec![line(9)]);
        assert_eq!(lines(&dir.path().join("sub/events.jsonl.1")).len(), 3);
        assert_eq!(
            lines(&dir.path().join("sub/events.jsonl.2")),
            vec![line(3), line(4), line(5)]
        );
        assert!(!dir.path().join("sub/events.jsonl.3").exists());
        assert_eq!(f.stats.rotations, 3);
        assert_eq!(f.stats.lines, 10);
        assert_eq!(f.stats.write_errors, 0);
        for name in ["events.jsonl", "events.jsonl.1", "events.jsonl.2"] {
            let mode = std::fs::metadata(dir.path().join("sub").join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn appends_to_an_existing_file_and_counts_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        std::fs::write(&path, "a".repeat(95) + "\n").unwrap();
        let mut f = RotatingFile::open(&path, 150, 1).unwrap();
        f.write_line(&"b".repeat(99));
        f.flush();
        // 96 + 100 > 150: the old content was rotated away first.
        assert_eq!(lines(&path), vec!["b".repeat(99)]);
        assert_eq!(lines(&dir.path().join("e.jsonl.1")), vec!["a".repeat(95)]);
    }

    #[test]
    fn keep_zero_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let mut f = RotatingFile::open(&path, 150, 0).unwrap();
        for _ in 0..3 {
            f.write_line(&"c".repeat(99));
        }
        f.flush();
        assert_eq!(lines(&path).len(), 1);
        assert!(!dir.path().join("e.jsonl.1").exists());
    }

    #[test]
    fn write_errors_are_counted_and_the_file_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        let path = sub.join("e.jsonl");
        let mut f = RotatingFile::open(&path, 150, 1).unwrap();
        f.write_line(&"d".repeat(99));
        f.flush();
        // The directory disappears: rotation (rename) fails, then the
        // reopen does too, as long as the directory is not there.
        std::fs::remove_dir_all(&sub).unwrap();
        std::fs::write(&sub, "not a directory").unwrap();
        f.write_line(&"e".repeat(99));
        f.write_line(&"f".repeat(99));
        assert_eq!(f.stats.write_errors, 2);
        assert_eq!(f.stats.lines, 1);
        std::fs::remove_file(&sub).unwrap();
        f.write_line(&"g".repeat(99));
        f.flush();
        assert_eq!(lines(&path), vec!["g".repeat(99)]);
        assert_eq!(f.stats.write_errors, 2);
    }

    #[test]
    fn an_unusable_path_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let e = RotatingFile::open(&blocker.join("e.jsonl"), 4096, 1)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("export.file.path"), "{e:#}");
    }
}
