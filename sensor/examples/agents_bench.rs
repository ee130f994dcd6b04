//! How fast API calls go through agent discovery and detection on one
//! core, with many agents: `cargo xtask bench --only agents` runs it.
//!
//! 1,000 agent identities learn from 3 runs each; then 10,000 sessions
//! (10 per identity, all open at once) make calls round-robin: a model
//! turn that asks for a tool, the tool's reads and writes, and now and
//! then an endpoint or credential the identity never used (so findings are
//! raised and reported along the way, as on a real host). Each call's
//! event is built just before it goes through, as the HTTP stage hands it
//! on (its building is timed too: the figure is conservative); what is
//! measured is what the daemon's `emit()` does for each call before it
//! writes anything: `Agents::observe` (attribution, session steps,
//! baselines, policy and detection) with an operator's policy and
//! selectors in force, `take_mode_changes` after every call, and the
//! event's JSON serialisation (`Event::to_json`, once per call and per
//! finding). Not measured: writing stdout, the audit store, the exports,
//! the API bus and the responder's decision. Memory is the process's
//! peak resident set (VmHWM).
//!
//! It checks itself: every stray session must have raised a finding,
//! and it exits non-zero otherwise.

use std::{sync::Arc, time::Instant};

use sensor::{
    agents::{
        Agents, Settings,
        llm::{LlmSummary, ToolCall},
        policy::Policy,
        selectors::{Naming, Selector},
    },
    config::SelectorConfig,
    event::{Detail, Event},
    procs::Process,
};

/// Half the identities have a policy entry (by selector): what they may
/// call, a deny rule and quotas, all checked on every call of theirs.
const POLICY: &str = r#"
policies:
  - name: bench
    selector: { cmdline: 'agent_[0-4][0-9][0-9]\.py' }
    allow:
      - "POST */v1/chat/completions"
      - "GET vendor.example/v1/inventory/*"
      - "POST vendor.example/v1/recommendations"
      - "GET vendor.example/v1/catalog/*"
    deny: ["DELETE *"]
    quotas:
      - { endpoint: "*", per_minute: 1000000 }
"#;

const LEARN_RUNS: usize = 3;

fn arg(name: &str, default: usize) -> usize {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn process(pid: u32, identity: usize) -> Arc<Process> {
    Arc::new(Process {
        pid,
        start_ticks: 1000 + u64::from(pid),
        ppid: 1,
        uid: 1000,
        comm: "python3".into(),
        exe: "/usr/bin/python3.11".into(),
        cmdline: vec!["python3".into(), format!("/srv/agents/agent_{identity}.py")],
        cgroup: Some("/system.slice/agents.service".into()),
        cgroup_id: 1,
        container: None,
        partial: false,
        held: Vec::new(),
    })
}

fn call(p: &Arc<Process>, method: &str, path: &str, cred: &str, tools: &[&str]) -> Event {
    let llm = (!tools.is_empty()).then(|| {
        Box::new(LlmSummary {
            tool_calls: tools
                .iter()
                .enumerate()
                .map(|(i, t)| ToolCall {
                    id: format!("call_{i}"),
                    name: t.to_string(),
                    arguments_bytes: 40,
                })
                .collect(),
            ..Default::default()
        })
    });
    let template = sensor::http::template::path_template(path);
    Event {
        seq: 0,
        time: String::new(),
        ts_unix_ns: 0,
        tid: p.pid,
        process: p.clone(),
        detail: Detail::ApiCall {
            provider: None,
            llm,
            tool_call: None,
            unrequested: false,
            method: method.into(),
            authority: if path.starts_with("/v1/chat") {
                "llm.internal:8443".into()
            } else {
                "vendor.example".into()
            },
            path: path.into(),
            path_template: template,
            status: Some(200),
            request_bytes: 420,
            response_bytes: 900,
            latency_ms: Some(3.0),
            http_version: "HTTP/1.1".into(),
            transport: "tls",
            tls_library: Some("openssl"),
            credential_fingerprint: Some(cred.into()),
            connection: "0x55d2b479f1f0".into(),
            daddr: Some("10.0.0.7".parse().unwrap()),
            dport: Some(443),
            sni: Some("vendor.example".into()),
            db: None,
        },
        agent: None,
        pod: None,
    }
}

/// Step `step` of a session, built as the HTTP stage builds it (fresh
/// strings), or None past the session's last step.
fn session_call(
    p: &Arc<Process>,
    identity: usize,
    run: usize,
    odd: bool,
    step: usize,
) -> Option<Event> {
    let cred = format!("Bearer fp:{identity:012x}");
    Some(match step {
        0 => call(p, "POST", "/v1/chat/completions", &cred, &["check_stock"]),
        1 => call(
            p,
            "GET",
            &format!("/v1/inventory/{}", 8800 + run),
            &cred,
            &[],
        ),
        2 => call(p, "POST", "/v1/recommendations", &cred, &[]),
        3 => call(p, "GET", &format!("/v1/catalog/{}", run % 7), &cred, &[]),
        // What learning never saw: an irreversible write, a new key.
        4 if odd => call(p, "POST", "/v1/orders", &cred, &[]),
        5 if odd => call(p, "GET", "/v1/inventory/1", "Bearer fp:borrowed000000", &[]),
        _ => return None,
    })
}

/// One session's calls, in the order it makes them.
fn session_calls(p: &Arc<Process>, identity: usize, run: usize, odd: bool) -> Vec<Event> {
    (0..6)
        .filter_map(|step| session_call(p, identity, run, odd, step))
        .collect()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

fn main() {
    pin_to_cpu0();
    let calls_wanted = arg("--calls", 3_000_000);
    // `--json 0`: the same calls without serialising them, to show what
    // the serialisation costs beside the rest.
    let serialise = arg("--json", 1) != 0;
    let identities = arg("--identities", 1_000);
    let sessions_per_identity = arg("--sessions-per-identity", 10);
    // Operator-named agents too: a selector every process is checked
    // against at its first event.
    let selectors = vec![
        Selector::new(&SelectorConfig {
            cmdline: Some(r"/srv/agents/agent_9[0-9][0-9]\.py$".into()),
            ..Default::default()
        })
        .expect("bench selector"),
    ];
    let settings = Settings {
        policy: Arc::new(Policy::parse(POLICY).expect("bench policy")),
        naming: Naming::new(selectors),
        ..Default::default()
    };
    let mut agents = Agents::load_with(None, settings).expect("agents in memory");
    let mut pid = 10_000u32;
    let mut ts = 1_700_000_000_000_000_000u64;
    let exit = |p: &Arc<Process>, ts: u64| Event {
        seq: 0,
        time: String::new(),
        ts_unix_ns: ts,
        tid: p.pid,
        process: p.clone(),
        detail: Detail::Exit {
            exit_code: Some(0),
            signal: None,
        },
        agent: None,
        pod: None,
    };
    // Learning: every identity's first runs, one after the other.
    let t_learn = Instant::now();
    for run in 0..LEARN_RUNS {
        for identity in 0..identities {
            pid += 1;
            let p = process(pid, identity);
            for mut ev in session_calls(&p, identity, run, false) {
                ts += 50_000;
                ev.ts_unix_ns = ts;
                agents.observe(&mut ev);
            }
            agents.observe(&mut exit(&p, ts));
        }
    }
    let learned = t_learn.elapsed();
    let _ = agents.take_mode_changes();

    // 10,000 sessions open at once.
    let mut sessions: Vec<(Arc<Process>, usize, usize, bool)> =
        Vec::with_capacity(identities * sessions_per_identity);
    for s in 0..sessions_per_identity {
        for identity in 0..identities {
            pid += 1;
            let p = process(pid, identity);
            // One session in 100 strays.
            let odd = (s * identities + identity) % 100 == 7;
            sessions.push((p, identity, LEARN_RUNS + s, odd));
        }
    }
    let mut findings = 0usize;
    let mut modes = 0usize;
    let mut json_bytes = 0usize;
    let mut made = 0usize;
    let mut strays_found = std::collections::HashSet::new();
    // Every session's first call (its model turn) starts it; then rounds.
    let start = Instant::now();
    'outer: loop {
        for step in 0..6 {
            for (i, (p, identity, run, odd)) in sessions.iter().enumerate() {
                if let Some(mut ev) = session_call(p, *identity, *run, *odd, step) {
                    // 5 us apart: 200,000 calls per second of event time.
                    ts += 5_000;
                    ev.ts_unix_ns = ts;
                    let found = agents.observe(&mut ev);
                    // As emit(): mode changes after every event, the event
                    // serialised once, each finding serialised too.
                    modes += agents.take_mode_changes().len();
                    if serialise {
                        json_bytes += ev.to_json().len();
                        for f in &found {
                            json_bytes += f.summary.len() + ev.to_json().len();
                        }
                    }
                    if *odd && !found.is_empty() {
                        strays_found.insert(i);
                    }
                    findings += found.len();
                    made += 1;
                    if made >= calls_wanted {
                        break 'outer;
                    }
                }
            }
        }
    }
    let elapsed = start.elapsed();
    let rate = made as f64 / elapsed.as_secs_f64();
    let strays = sessions.iter().filter(|s| s.3).count();
    println!(
        "agents: {identities} identities learned from {} runs in {:.2} s; then {made} calls over {} open sessions on one core in {:.2} s: {:.0} calls/s ({:.2} us per call), {findings} findings ({} of {strays} stray sessions found), {modes} mode changes, {:.0} MiB of JSON; peak memory {:.0} MiB (VmHWM, the whole process)",
        identities * LEARN_RUNS,
        learned.as_secs_f64(),
        sessions.len(),
        elapsed.as_secs_f64(),
        rate,
        1e6 / rate,
        strays_found.len(),
        json_bytes as f64 / 1048576.0,
        peak_rss_mib()
    );
    if strays == 0 || strays_found.len() != strays {
        eprintln!(
            "agents bench: {} of {strays} stray sessions raised a finding: detection did not do what is measured",
            strays_found.len()
        );
        std::process::exit(1);
    }
}
