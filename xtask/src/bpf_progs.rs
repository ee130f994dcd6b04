//! The kernel's loaded BPF programs, as `bpftool` lists them: what the
//! benches check is gone before an "off" round, and with
//! `kernel.bpf_stats_enabled` what each program cost.
//!
//! bpftool rather than aya: xtask is built by rustup's default stable
//! before it installs the pinned toolchain, and aya needs a newer rustc.

use std::{collections::BTreeMap, path::Path, process::Command};

use anyhow::{Context, Result, bail};

use crate::cmd::root;

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Where the sensor pins its isolation programs and maps.
pub const SENSOR_PIN_DIR: &str = "/sys/fs/bpf/sensor";

#[derive(Clone, Debug, PartialEq)]
pub struct Prog {
    pub id: u64,
    pub name: String,
    pub kind: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// Every loaded program (run time and count are 0 unless stats are on).
pub fn loaded() -> Result<Vec<Prog>> {
    let out = Command::new("bpftool")
        .args(["--json", "prog", "show"])
        .output()
        .context("running bpftool (apt package bpftool)")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn parse(json: &str) -> Result<Vec<Prog>> {
    let v: serde_json::Value = serde_json::from_str(json).context("bpftool's JSON")?;
    let list = v.as_array().context("bpftool prog show: not a list")?;
    Ok(list
        .iter()
        .map(|p| Prog {
            id: p["id"].as_u64().unwrap_or(0),
            name: p["name"].as_str().unwrap_or("").to_string(),
            kind: p["type"].as_str().unwrap_or("").to_string(),
            run_time_ns: p["run_time_ns"].as_u64().unwrap_or(0),
            run_cnt: p["run_cnt"].as_u64().unwrap_or(0),
        })
        .collect())
}

/// Run time and count per program id between two snapshots, with the
/// program's name and type; programs loaded in between count from zero.
pub fn delta(before: &[Prog], after: &[Prog]) -> Vec<Prog> {
    let base: BTreeMap<u64, &Prog> = before.iter().map(|p| (p.id, p)).collect();
    after
        .iter()
        .map(|p| {
            let (t, n) = base
                .get(&p.id)
                .map(|b| (b.run_time_ns, b.run_cnt))
                .unwrap_or((0, 0));
            Prog {
                run_time_ns: p.run_time_ns.saturating_sub(t),
                run_cnt: p.run_cnt.saturating_sub(n),
                ..p.clone()
            }
        })
        .collect()
}

/// kernel.bpf_stats_enabled on while this lives; the previous value is put
/// back when it is dropped. Stats time every program run, which biases
/// what they measure, so only profiled rounds take it.
pub struct Stats {
    previous: String,
}

impl Stats {
    pub fn enable() -> Result<Self> {
        let previous = std::fs::read_to_string(STATS_SYSCTL)
            .with_context(|| format!("reading {STATS_SYSCTL}"))?;
        std::fs::write(STATS_SYSCTL, "1").with_context(|| format!("writing {STATS_SYSCTL}"))?;
        Ok(Self { previous })
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        let _ = std::fs::write(STATS_SYSCTL, self.previous.trim());
    }
}

/// The names the kernel gives the sensor's programs: each program's
/// function name in sensor-ebpf, cut to the kernel's 15 bytes.
pub fn sensor_program_names() -> Result<Vec<String>> {
    let dir = root().join("sensor-ebpf/src");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let text = std::fs::read_to_string(entry?.path())?;
        names.extend(program_fns(&text).map(|n| n.chars().take(15).collect::<String>()));
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Functions under an aya program attribute (`#[tracepoint]`,
/// `#[uprobe]`, `#[cgroup_skb(...)]`, …): the attribute's line is
/// followed, after any further attributes, by `pub fn NAME(`.
fn program_fns(text: &str) -> impl Iterator<Item = String> + '_ {
    const KINDS: [&str; 12] = [
        "tracepoint",
        "raw_tracepoint",
        "btf_tracepoint",
        "uprobe",
        "uretprobe",
        "kprobe",
        "kretprobe",
        "fentry",
        "fexit",
        "lsm",
        "cgroup_skb",
        "cgroup_sock_addr",
    ];
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    (0..lines.len()).filter_map(move |i| {
        let attr = lines[i].strip_prefix("#[")?;
        let kind = attr.split(['(', ']']).next()?;
        if !KINDS.contains(&kind) {
            return None;
        }
        lines[i + 1..]
            .iter()
            .find(|l| !l.starts_with("#[") && !l.starts_with("//"))
            .and_then(|l| l.strip_prefix("pub fn "))
            .and_then(|l| l.split('(').next())
            .map(str::to_string)
    })
}

/// Fails when a sensor is loaded (its programs, or its pinned isolation
/// links that outlive a killed sensor): "off" rounds would not be off.
pub fn ensure_no_sensor() -> Result<()> {
    if Path::new(SENSOR_PIN_DIR).exists() {
        bail!(
            "{SENSOR_PIN_DIR} exists: a sensor's pinned isolation programs may still be attached \
             (a sensor killed without cleanup leaves them); stop every sensor and remove it \
             (rm -r {SENSOR_PIN_DIR}) before benchmarking"
        );
    }
    let names = sensor_program_names()?;
    let found: Vec<String> = loaded()?
        .into_iter()
        .filter(|p| names.contains(&p.name))
        .map(|p| format!("{} (id {}, {})", p.name, p.id, p.kind))
        .collect();
    if !found.is_empty() {
        bail!(
            "the sensor's programs are loaded ({}): another sensor runs, so \"off\" rounds would not be off; stop it first",
            found.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_program_names_are_found_in_the_ebpf_crate() {
        let names = sensor_program_names().unwrap();
        for n in ["sys_enter_conne", "sched_process_f"] {
            assert!(names.contains(&n.to_string()), "{n} not in {names:?}");
        }
        assert!(
            names.len() >= 20,
            "only {} programs found: {names:?}",
            names.len()
        );
        assert!(names.iter().all(|n| n.len() <= 15));
    }

    #[test]
    fn program_fns_skips_other_attributes() {
        let src = "#[tracepoint]\n#[inline(never)]\npub fn sys_enter_connect(ctx: X) -> u32 {\n}\n#[inline]\npub fn helper() {}\n#[cgroup_skb(egress)]\npub fn egress(c: C) -> i32 {}";
        let got: Vec<String> = program_fns(src).collect();
        assert_eq!(got, ["sys_enter_connect", "egress"]);
    }

    #[test]
    fn parses_bpftool_and_takes_deltas() {
        let a = parse(r#"[{"id":7,"type":"tracepoint","name":"sys_enter_conne","run_time_ns":100,"run_cnt":2},{"id":9,"type":"cgroup_skb","name":"x"}]"#).unwrap();
        let b = parse(r#"[{"id":7,"type":"tracepoint","name":"sys_enter_conne","run_time_ns":350,"run_cnt":5},{"id":11,"type":"kprobe","name":"new","run_time_ns":40,"run_cnt":1}]"#).unwrap();
        let d = delta(&a, &b);
        assert_eq!((d[0].run_time_ns, d[0].run_cnt), (250, 3));
        assert_eq!(
            (d[1].name.as_str(), d[1].run_time_ns, d[1].run_cnt),
            ("new", 40, 1)
        );
        assert_eq!(a[1].run_cnt, 0);
    }
}
