//! Unit tests that cannot run here say so in a record, never by returning
//! early in silence: `cargo xtask test` points `SENSOR_SKIP_LOG` at
//! `target/unit-skips.txt`, prints what is there and fails a run as root
//! (CI) that has any.

use std::io::Write;

/// Records that `test` did not run (all or part of it) and why.
pub fn record_skip(test: &str, why: &str) {
    eprintln!("skipped {test}: {why}");
    if let Some(path) = std::env::var_os("SENSOR_SKIP_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "skipped {test}: {why}");
    }
}
