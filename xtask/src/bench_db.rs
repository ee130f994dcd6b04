//! Database statements on one core (`sensor/examples/db_bench.rs`):
//! PostgreSQL parsing alone, and parsing with detection for an agent that
//! learned, side by side in each run, and MySQL parsing. Run three times (the machine is shared and
//! noisy); the medians and their ratio are printed.

use anyhow::{Context, Result, bail};

use crate::{
    bench::median,
    cmd::{self, cargo, root},
};

pub fn run() -> Result<()> {
    cmd::run(cargo().args([
        "build",
        "--release",
        "-p",
        "sensor",
        "--example",
        "db_bench",
    ]))?;
    let bin = root().join("target/release/examples/db_bench");
    println!();
    println!(
        "db: PostgreSQL statements (psycopg-like extended protocol, captured as 4 KiB records both ways) through PgConn (framing, template, kind, objects), then also the api_call event, Agents::observe (selector-named agent, 3 learned runs) and Event::to_json; MySQL statements (PyMySQL-like COM_QUERY) through MySqlConn; one thread, 3 runs"
    );
    let (mut parse, mut full, mut mysql) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let out = std::process::Command::new(&bin)
            .args(["--statements", "600000"])
            .output()
            .context("running the db bench")?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() {
            bail!(
                "db bench failed: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        println!("  {text}");
        let mut numbers = text
            .split(' ')
            .filter_map(|w| w.parse::<f64>().ok())
            .collect::<Vec<_>>()
            .into_iter();
        parse.push(
            numbers
                .next()
                .context("parse rate in the db bench output")?,
        );
        full.push(numbers.next().context("full rate in the db bench output")?);
        mysql.push(
            numbers
                .next()
                .context("MySQL rate in the db bench output")?,
        );
    }
    let (p, f, m) = (median(&mut parse), median(&mut full), median(&mut mysql));
    println!(
        "median: {p:.0} statements/s parsed, {f:.0} statements/s parsed and detected ({:.2} us + {:.2} us of detection per statement); MySQL {m:.0} statements/s parsed ({:.2} us each)",
        1e6 / p,
        (1e6 / f - 1e6 / p).max(0.0),
        1e6 / m
    );
    Ok(())
}
