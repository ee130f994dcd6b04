//! Stopping a runaway agent, for real: network isolation by the cgroup
//! programs (new connects refused, open keep-alive connections silenced,
//! children isolated at fork, nothing else touched), surviving a daemon
//! crash, pid-safe kill, and the automatic response to findings.

use std::process::{Command, Stdio};

use e2e::{
    HttpsServer, Puppet, Sensor, Value, assert_no_pins_left, kind, require_root, serial,
    venv_python,
};

/// tests/fixtures/puppet.py: a Python client steered line by line.
fn puppet(server: &HttpsServer) -> Puppet {
    Puppet::spawn(
        Command::new(venv_python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/puppet.py"))
            .arg(format!("https://127.0.0.1:{}", server.port)),
        "puppet.py",
    )
}

fn actions(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|v| kind(v) == "action").collect()
}

#[test]
fn isolation_cuts_new_and_open_connections_and_children_only() {
    let _g = serial();
    if !require_root("isolation_cuts_new_and_open_connections_and_children_only") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    let mut agent = puppet(&server);
    let mut bystander = puppet(&server);
    // The keep-alive connection exists before isolation.
    assert_eq!(agent.ask("get /warmup"), "ok 200");
    assert_eq!(agent.ask("connect"), "ok");

    let pid = agent.pid.to_string();
    let (ok, out, err) = sensor.cli(&["isolate", &pid, "--why", "e2e runaway"]);
    assert!(ok, "isolate failed: {err}");
    assert!(out.contains(&pid), "{out}");
    // Already isolated: a clear refusal.
    let (ok, _, err) = sensor.cli(&["isolate", &pid]);
    assert!(!ok);
    assert!(err.contains("already isolated"), "{err}");

    assert_eq!(agent.ask("connect"), "err EPERM", "new connect");
    assert_eq!(agent.ask("udp"), "err EPERM", "UDP send");
    assert_eq!(agent.ask("child"), "err EPERM", "a child forked after");
    let before = server.posts("/v1/orders");
    let r = agent.ask("post /v1/orders");
    assert!(r.starts_with("err "), "the open keep-alive connection: {r}");
    assert_eq!(
        server.posts("/v1/orders"),
        before,
        "the server received a request from an isolated process"
    );
    // Nobody else is touched.
    assert_eq!(bystander.ask("connect"), "ok");
    assert_eq!(bystander.ask("post /v1/orders"), "ok 201");

    let (ok, listing, err) = sensor.cli(&["isolated"]);
    assert!(ok, "{err}");
    assert!(
        listing.contains(&pid) && listing.contains("e2e runaway"),
        "{listing}"
    );

    let (ok, _, err) = sensor.cli(&["release", &pid]);
    assert!(ok, "release: {err}");
    assert_eq!(agent.ask("connect"), "ok");
    assert_eq!(agent.ask("udp"), "ok");
    assert_eq!(agent.ask("child"), "ok");
    assert_eq!(agent.ask("post /v1/orders"), "ok 201");
    let (ok, listing, _) = sensor.cli(&["isolated"]);
    assert!(
        ok && listing.contains("no process is isolated"),
        "{listing}"
    );
    let (ok, _, err) = sensor.cli(&["release", &pid]);
    assert!(!ok && err.contains("not isolated"), "{err}");

    // Bad requests get clear answers.
    let (ok, _, err) = sensor.cli(&["isolate", "1"]);
    assert!(!ok && err.contains("protected"), "{err}");
    let (ok, _, err) = sensor.cli(&["isolate", "4194000"]);
    assert!(!ok && err.contains("no process 4194000"), "{err}");
    let (ok, _, err) = sensor.cli(&["isolate", &pid, "--allow", "10.0.0.0/99"]);
    assert!(!ok && err.contains("prefix"), "{err}");

    let sensor_pid = sensor.pid;
    let (_, stderr, events) = sensor.stop_with_events();
    let acts = actions(&events);
    let done: Vec<&str> = acts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or(""))
        .collect();
    assert!(
        acts.iter().any(|a| a["action"] == "isolate"
            && a["outcome"] == "done"
            && a["why"] == "e2e runaway"
            && a["by"].as_str().unwrap().contains("uid 0")),
        "{acts:?}"
    );
    assert!(
        acts.iter()
            .any(|a| a["action"] == "isolate" && a["outcome"] == "refused"),
        "{done:?}"
    );
    assert!(
        acts.iter()
            .any(|a| a["action"] == "release" && a["outcome"] == "done"),
        "{acts:?}"
    );
    // Nothing isolated at a clean stop: nothing left in the kernel.
    assert_no_pins_left(sensor_pid, &stderr);
}

/// Issue 19, finding 9: `--tree` checked only the root against
/// `response.protect`, and protection went by process name, which any
/// process sets for itself (prctl). Protected by its executable, a
/// descendant is left alone and said so; a process that merely calls
/// itself by a protected name is not spared.
#[test]
fn a_tree_is_isolated_but_its_protected_descendants_and_names_do_not_count() {
    let _g = serial();
    if !require_root("a_tree_is_isolated_but_its_protected_descendants_and_names_do_not_count") {
        return;
    }
    let sleep = std::fs::canonicalize("/usr/bin/sleep").unwrap();
    let config = format!(
        "[response]\nprotect = [{:?}, \"sshd-lookalike\"]\n",
        sleep.display()
    );
    let sensor = Sensor::start_with(&["--json"], Some(&config));
    // A shell with a protected child (sleep) and another (python3 that
    // names itself after a protected entry).
    let mut sh = Command::new("sh")
        .args([
            "-c",
            "sleep 60 & python3 -c 'import ctypes,time; ctypes.CDLL(None).prctl(15, b\"sshd-lookalike\", 0, 0, 0); time.sleep(60)' & wait",
        ])
        .spawn()
        .unwrap();
    let root = sh.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (sleep_pid, lookalike) = loop {
        let kids: Vec<u32> = std::fs::read_to_string(format!("/proc/{root}/task/{root}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        let named = |c: &str| {
            kids.iter().copied().find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|n| n.trim() == c)
            })
        };
        if let (Some(s), Some(l)) = (named("sleep"), named("sshd-lookalike")) {
            break (s, l);
        }
        assert!(std::time::Instant::now() < deadline, "children: {kids:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };

    let (ok, out, err) = sensor.cli(&["isolate", &root.to_string(), "--tree"]);
    assert!(ok, "isolate --tree: {err}");
    assert!(
        out.contains(&format!("left alone: {sleep_pid}: on the protected list")),
        "{out}"
    );
    let (ok, listing, err) = sensor.cli(&["isolated"]);
    assert!(ok, "{err}");
    assert!(listing.contains(&root.to_string()), "{listing}");
    assert!(
        listing.contains(&lookalike.to_string()),
        "a name spared it: {listing}"
    );
    assert!(!listing.contains(&sleep_pid.to_string()), "{listing}");
    // The protected one itself is refused, with the reason.
    let (ok, _, err) = sensor.cli(&["isolate", &sleep_pid.to_string()]);
    assert!(!ok && err.contains("protected"), "{err}");

    let (ok, _, err) = sensor.cli(&["release", &root.to_string()]);
    assert!(ok, "release: {err}");
    let _ = sh.kill();
    for p in [sleep_pid, lookalike] {
        // SAFETY: plain kill(2) of the test's own children.
        unsafe { libc::kill(p as i32, libc::SIGKILL) };
    }
    let _ = sh.wait();
    sensor.stop();
}

/// The state letter of a thread in /proc (R, S, Z…), or None once gone.
fn thread_state(pid: u32, tid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Issue 19, finding 3: a process whose main thread exits lives on in its
/// other threads. The kernel programs used to forget its isolation at the
/// leader's exit, so the rest of the process connected freely.
#[test]
fn an_isolated_process_stays_isolated_after_its_main_thread_exits() {
    let _g = serial();
    if !require_root("an_isolated_process_stays_isolated_after_its_main_thread_exits") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    let mut agent = puppet(&server);
    let pid = agent.pid;
    let (ok, _, err) = sensor.cli(&["isolate", &pid.to_string(), "--why", "leader exit"]);
    assert!(ok, "isolate failed: {err}");
    assert_eq!(agent.ask("connect"), "err EPERM");

    assert_eq!(agent.ask("leader_exit"), "ok");
    let gone = std::time::Instant::now();
    while thread_state(pid, pid) != Some('Z') {
        assert!(
            gone.elapsed().as_secs() < 10,
            "the main thread did not exit: {:?}",
            thread_state(pid, pid)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The process goes on, in its other thread, still cut off.
    assert_eq!(agent.ask("connect"), "err EPERM", "after the leader exited");
    assert_eq!(agent.ask("udp"), "err EPERM", "after the leader exited");
    assert_eq!(agent.ask("child"), "err EPERM", "a child forked after");
    let (ok, listing, err) = sensor.cli(&["isolated"]);
    assert!(ok && listing.contains(&pid.to_string()), "{listing}{err}");

    // Its exit is reported once, when the whole process has ended: killed
    // by the test (the main thread's own exit status was 0).
    drop(agent);
    let (_, _, events) = sensor.stop_with_events();
    let exits: Vec<&Value> = events
        .iter()
        .filter(|v| kind(v) == "exit" && e2e::pid(v) == u64::from(pid))
        .collect();
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0]["signal"], 9, "{exits:?}");
}

#[test]
fn isolation_survives_a_daemon_crash_and_restart() {
    let _g = serial();
    if !require_root("isolation_survives_a_daemon_crash_and_restart") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let sensor = Sensor::start_in(state.path(), &["--json"], None);
    let server = HttpsServer::start("127.0.0.1");
    let mut agent = puppet(&server);
    let pid = agent.pid.to_string();
    let (ok, _, err) = sensor.cli(&["isolate", &pid, "--why", "before the crash"]);
    assert!(ok, "{err}");
    assert_eq!(agent.ask("connect"), "err EPERM");
    sensor.crash();
    // No daemon: the pinned programs and maps still enforce.
    assert_eq!(
        agent.ask("connect"),
        "err EPERM",
        "while the daemon is down"
    );
    let sensor = Sensor::start_in(state.path(), &["--json"], None);
    assert_eq!(agent.ask("connect"), "err EPERM", "after the restart");
    let (ok, listing, err) = sensor.cli(&["isolated"]);
    assert!(ok, "{err}");
    assert!(
        listing.contains(&pid) && listing.contains("before the crash"),
        "{listing}"
    );
    let (ok, _, err) = sensor.cli(&["release", &pid]);
    assert!(ok, "{err}");
    assert_eq!(agent.ask("connect"), "ok");
    let sensor_pid = sensor.pid;
    let (_, stderr) = sensor.stop();
    assert_no_pins_left(sensor_pid, &stderr);
}

/// The start time /proc gives `pid`, in clock ticks.
fn start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(19).unwrap().parse().unwrap()
}

#[test]
fn kill_is_pid_safe_and_takes_the_whole_tree() {
    let _g = serial();
    if !require_root("kill_is_pid_safe_and_takes_the_whole_tree") {
        return;
    }
    let sensor = Sensor::start();
    let mut tree = Command::new("sh")
        .args(["-c", "sh -c 'sleep 60 & wait' & sleep 60 & wait"])
        .spawn()
        .unwrap();
    let root = tree.id();
    let ticks = start_ticks(root);
    // A start time that is not this process's: refused, nothing killed.
    let (ok, _, err) = sensor.cli(&[
        "kill",
        &root.to_string(),
        "--tree",
        "--start-ticks",
        &(ticks + 1).to_string(),
    ]);
    assert!(!ok);
    assert!(err.contains("reused"), "{err}");
    assert!(std::path::Path::new(&format!("/proc/{root}")).exists());
    // Let the tree form: root → (sh → sleep, sleep).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let pids = loop {
        let out = Command::new("pgrep")
            .args(["-P", &root.to_string()])
            .output()
            .unwrap();
        let kids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect();
        let grandkids: Vec<String> = kids
            .iter()
            .flat_map(|k| {
                let out = Command::new("pgrep").args(["-P", k]).output().unwrap();
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        if kids.len() == 2 && grandkids.len() == 1 {
            break [kids, grandkids].concat();
        }
        assert!(std::time::Instant::now() < deadline, "tree did not form");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (ok, out, err) = sensor.cli(&[
        "kill",
        &root.to_string(),
        "--tree",
        "--start-ticks",
        &ticks.to_string(),
        "--why",
        "e2e",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains(&root.to_string()), "{out}");
    let status = tree.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    // Descendants are reaped by init once gone: each must be dead (gone
    // or a zombie) within the deadline; none may live on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for p in &pids {
        loop {
            let state = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z ") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "descendant {p} still alive 10 s after the kill: {state}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let (ok, _, err) = sensor.cli(&["kill", &root.to_string()]);
    assert!(!ok && err.contains("no process"), "{err}");
    let (_, _, events) = sensor.stop_with_events();
    let acts = actions(&events);
    assert!(
        acts.iter()
            .any(|a| a["action"] == "kill_tree" && a["outcome"] == "refused"),
        "{acts:?}"
    );
    let done = acts
        .iter()
        .find(|a| a["action"] == "kill_tree" && a["outcome"] == "done")
        .unwrap_or_else(|| panic!("{acts:?}"));
    assert_eq!(done["pids"].as_array().unwrap().len(), 4, "{done}");
}

#[test]
fn an_armed_agent_is_killed_at_its_first_order_before_it_leaves() {
    let _g = serial();
    if !require_root("an_armed_agent_is_killed_at_its_first_order_before_it_leaves") {
        return;
    }
    let config =
        "[[response.arm]]\nagent = \"orderer.py\"\ndeny = [\"POST /v1/orders\", \"DELETE /\"]\n";
    let sensor = Sensor::start_with(&["--json"], Some(config));
    let server = HttpsServer::start("127.0.0.1");
    // tests/fixtures/orderer.py: the ordering agent of the incident.
    let out = Command::new(venv_python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/orderer.py"))
        .arg(format!("https://127.0.0.1:{}", server.port))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "{:?}", out);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("all orders placed"));
    // What it did before the order went through; the order never left.
    let reqs = server.requests();
    assert!(
        reqs.iter().any(|r| r.starts_with("REQ GET /v1/catalog ")),
        "{reqs:?}"
    );
    assert_eq!(server.posts("/v1/orders"), 0, "{reqs:?}");
    let blocked = sensor.wait_for("the blocked order", |v| kind(v) == "blocked");
    assert_eq!(blocked["pattern"], "POST /v1/orders", "{blocked}");
    assert_eq!(blocked["agent"], "orderer.py", "{blocked}");
    assert_eq!(blocked["killed"], true, "{blocked}");
    let (_, stderr, events) = sensor.stop_with_events();
    assert!(!stderr.contains("PLANTED"));
    for e in &events {
        assert!(!e.to_string().contains("PLANTED"), "{e}");
    }
}
