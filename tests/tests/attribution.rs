//! Process and connect attribution, end to end: the real kernel programs,
//! real curl / python3 / sh children, loopback servers.

use std::process::Command;

use e2e::{HttpServer, RefusedPort, Sensor, Value, kind, pid, python3, require_root, run, serial};

fn is_connect_of(v: &Value, child: u32, daddr: &str, port: u16) -> bool {
    kind(v) == "connect" && pid(v) == u64::from(child) && v["daddr"] == daddr && v["dport"] == port
}

fn url(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("http://[{addr}]:{port}/")
    } else {
        format!("http://{addr}:{port}/")
    }
}

#[test]
fn curl_connects_are_attributed() {
    let _g = serial();
    if !require_root("curl_connects_are_attributed") {
        return;
    }
    let sensor = Sensor::start();
    for addr in ["127.0.0.1", "::1"] {
        let server = HttpServer::start(addr);
        let (child, status) =
            run(Command::new("curl").args(["-sS", "-g", "-m", "5", &url(addr, server.port)]));
        assert!(status.success(), "curl to {addr} failed: {status}");
        let ev = sensor.wait_for(&format!("connect of curl {child} to {addr}"), |v| {
            is_connect_of(v, child, addr, server.port)
        });
        // curl connects non-blocking: the syscall returns EINPROGRESS.
        assert_eq!(ev["result"], -115, "{ev}");
        assert_eq!(ev["result_name"], "EINPROGRESS");
        assert_eq!(ev["family"], if addr == "::1" { "ipv6" } else { "ipv4" });
        assert_eq!(ev["process"]["exe"], "/usr/bin/curl", "{ev}");
        assert_eq!(ev["process"]["cmdline"][0], "curl", "{ev}");
        assert_eq!(ev["process"]["ppid"], std::process::id(), "{ev}");
        assert!(ev["fd"].as_i64().unwrap() >= 0);
        // Its exec is reported too, naming this test as the parent.
        let exec = sensor.wait_for(&format!("exec of curl {child}"), |v| {
            kind(v) == "exec" && pid(v) == u64::from(child)
        });
        assert_eq!(exec["filename"], "/usr/bin/curl");
        assert_eq!(exec["process"]["ppid"], std::process::id());
        assert_eq!(exec["process"]["uid"], 0);
    }
    sensor.stop();
}

#[test]
fn python_connects_are_attributed() {
    let _g = serial();
    if !require_root("python_connects_are_attributed") {
        return;
    }
    let sensor = Sensor::start();
    for (addr, family) in [("127.0.0.1", "AF_INET"), ("::1", "AF_INET6")] {
        let server = HttpServer::start(addr);
        let script = format!(
            "import socket\ns = socket.socket(socket.{family})\ns.connect(('{addr}', {}))\ns.sendall(b'GET / HTTP/1.1\\r\\n\\r\\n')\ns.recv(100)\n",
            server.port
        );
        let (child, status) = run(Command::new(python3()).args(["-c", &script]));
        assert!(status.success(), "python to {addr}: {status}");
        let ev = sensor.wait_for(&format!("connect of python {child} to {addr}"), |v| {
            is_connect_of(v, child, addr, server.port)
        });
        // A blocking connect completes in the syscall.
        assert_eq!(ev["result"], 0, "{ev}");
        assert_eq!(ev["result_name"], "ok");
        let exe = ev["process"]["exe"].as_str().unwrap();
        assert!(exe.contains("python3"), "{ev}");
        assert_eq!(ev["process"]["cmdline"][1], "-c", "{ev}");
        let exec = sensor.wait_for(&format!("exec of python {child}"), |v| {
            kind(v) == "exec" && pid(v) == u64::from(child)
        });
        assert_eq!(exec["process"]["ppid"], std::process::id());
    }
    sensor.stop();
}

#[test]
fn closed_port_reports_econnrefused() {
    let _g = serial();
    if !require_root("closed_port_reports_econnrefused") {
        return;
    }
    let sensor = Sensor::start();
    for (addr, family) in [("127.0.0.1", "AF_INET"), ("::1", "AF_INET6")] {
        // Held (bound, never listening) until the check is done: nobody
        // else can take the port meanwhile.
        let refused = RefusedPort::bind(addr);
        let port = refused.port;
        let script = format!(
            "import socket, sys\ns = socket.socket(socket.{family})\ntry:\n    s.connect(('{addr}', {port}))\nexcept ConnectionRefusedError:\n    sys.exit(3)\n"
        );
        let (child, status) = run(Command::new(python3()).args(["-c", &script]));
        assert_eq!(status.code(), Some(3), "python should see ECONNREFUSED");
        let ev = sensor.wait_for(&format!("refused connect of {child} to {addr}"), |v| {
            is_connect_of(v, child, addr, port)
        });
        assert_eq!(ev["result"], -111, "{ev}");
        assert_eq!(ev["result_name"], "ECONNREFUSED");
        // And its exit, with the status it chose.
        let exit = sensor.wait_for(&format!("exit of {child}"), |v| {
            kind(v) == "exit" && pid(v) == u64::from(child)
        });
        assert_eq!(exit["exit_code"], 3, "{exit}");
    }
    sensor.stop();
}

#[test]
fn fork_and_exec_chain_names_parents() {
    let _g = serial();
    if !require_root("fork_and_exec_chain_names_parents") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpServer::start("127.0.0.1");
    // sh forks curl (no exec shortcut: a second command follows).
    let script = format!(
        "curl -sS -m 5 {} >/dev/null; exit 0",
        url("127.0.0.1", server.port)
    );
    let (sh, status) = run(Command::new("/bin/sh").args(["-c", &script]));
    assert!(status.success());
    let fork = sensor.wait_for(&format!("fork by sh {sh}"), |v| {
        kind(v) == "fork" && pid(v) == u64::from(sh)
    });
    let curl = fork["child_pid"].as_u64().unwrap();
    let exec = sensor.wait_for(&format!("exec of curl {curl}"), |v| {
        kind(v) == "exec" && pid(v) == curl
    });
    assert_eq!(exec["process"]["ppid"], sh, "{exec}");
    assert_eq!(exec["filename"], "/usr/bin/curl");
    let conn = sensor.wait_for("connect of the forked curl", |v| {
        is_connect_of(v, curl as u32, "127.0.0.1", server.port)
    });
    assert_eq!(conn["process"]["ppid"], sh);
    sensor.stop();
}

#[test]
fn sensor_never_reports_itself() {
    let _g = serial();
    if !require_root("sensor_never_reports_itself") {
        return;
    }
    let sensor = Sensor::start();
    assert_ne!(
        sensor.probe_port, 0,
        "sensor did not run its self-exclusion probe"
    );
    // Traffic after the probe proves the pipeline was live when it ran.
    let server = HttpServer::start("127.0.0.1");
    let (child, _) =
        run(Command::new("curl").args(["-sS", "-m", "5", &url("127.0.0.1", server.port)]));
    sensor.wait_for("a later connect", |v| {
        is_connect_of(v, child, "127.0.0.1", server.port)
    });
    let own: Vec<Value> = sensor
        .events()
        .into_iter()
        .filter(|v| pid(v) == u64::from(sensor.pid) || v["dport"] == sensor.probe_port)
        .collect();
    assert!(own.is_empty(), "the sensor reported itself: {own:?}");
    let (_, stderr) = sensor.stop();
    assert!(stderr.contains("self_records_leaked=0"), "{stderr}");
}

#[test]
fn container_is_named_from_the_cgroup() {
    let _g = serial();
    if !require_root("container_is_named_from_the_cgroup") {
        return;
    }
    // A docker-style scope in the cgroup v2 hierarchy: the sensor must name
    // the container from the kernel's cgroup id, even for a process that is
    // gone by the time its events are read.
    let root = cgroup2_root();
    let id = "5e1f0c2d3b4a59687766554433221100ffeeddccbbaa99887766554433221100";
    let dir = root
        .join(format!("sensor-e2e-{}", std::process::id()))
        .join(format!("docker-{id}.scope"));
    std::fs::create_dir_all(&dir).expect("create test cgroup");
    let sensor = Sensor::start();
    let server = HttpServer::start("127.0.0.1");
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec curl -sS -m 5 {}",
        dir.display(),
        url("127.0.0.1", server.port)
    );
    let (child, status) = run(Command::new("/bin/sh").args(["-c", &script]));
    assert!(status.success());
    let ev = sensor.wait_for("connect from the container", |v| {
        is_connect_of(v, child, "127.0.0.1", server.port)
    });
    let _ = std::fs::remove_dir(&dir);
    let _ = std::fs::remove_dir(dir.parent().unwrap());
    assert_eq!(ev["process"]["container"]["id"], id, "{ev}");
    assert_eq!(ev["process"]["container"]["runtime"], "docker");
    assert!(
        ev["process"]["cgroup"]
            .as_str()
            .unwrap()
            .ends_with(&format!("docker-{id}.scope"))
    );
    sensor.stop();
}

fn cgroup2_root() -> std::path::PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
        })
        .expect("a cgroup2 mount")
}
