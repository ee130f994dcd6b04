//! Pod metadata, for real as far as a node without a cluster allows: the
//! sensor lists this node's pods from an API server (a local TLS stand-in
//! serving a real-shaped PodList, checking the bearer token and the node
//! field selector), and processes put in real-shaped kubepods cgroups
//! (cgroup v2 directories made here, named as containerd names them) are
//! events with their pod, namespace, workload, container and image; two
//! replicas of one Deployment are one agent.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use e2e::{
    HttpServer, HttpsServer, Sensor, Value, kind, pid, require_root, run, serial, venv_python,
};

fn openssl(args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl {args:?}");
}

/// A CA, and a server certificate for 127.0.0.1 it signed.
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-cluster-ca",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=kube-apiserver",
        "-keyout",
        &p("api.key"),
        "-out",
        &p("api.csr"),
    ]);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-in",
        &p("api.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-extfile",
        &p("ext"),
        "-out",
        &p("api.pem"),
    ]);
    (dir.join("ca.pem"), dir.join("api.pem"), dir.join("api.key"))
}

struct ApiServer {
    child: Child,
    port: u16,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn api_server(cert: &Path, key: &Path, pods: &Path, token: &str) -> ApiServer {
    let mut child = Command::new(e2e::python3())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/k8s_api.py"))
        .args([cert, key, pods])
        .arg(token)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
    ApiServer { child, port }
}

/// A container's cgroup as containerd makes it under the systemd driver,
/// removed (with its parents) when dropped.
struct ContainerCgroup {
    dirs: Vec<PathBuf>,
}

impl ContainerCgroup {
    fn new(root: &Path, pod_uid: &str, id: &str) -> ContainerCgroup {
        let uid_ = pod_uid.replace('-', "_");
        let mut dirs = Vec::new();
        let mut at = root.to_path_buf();
        for part in [
            "kubepods.slice".to_string(),
            "kubepods-besteffort.slice".to_string(),
            format!("kubepods-besteffort-pod{uid_}.slice"),
            format!("cri-containerd-{id}.scope"),
        ] {
            at = at.join(part);
            if std::fs::create_dir(&at).is_ok() {
                dirs.push(at.clone());
            }
        }
        assert!(
            at.join("cgroup.procs").exists(),
            "{} is not a cgroup",
            at.display()
        );
        ContainerCgroup { dirs }
    }

    fn leaf(&self) -> &Path {
        self.dirs.last().unwrap()
    }
}

impl Drop for ContainerCgroup {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("a cgroup2 mount")
}

#[test]
fn events_carry_their_pod_and_replicas_are_one_agent() {
    let _g = serial();
    if !require_root("events_carry_their_pod_and_replicas_are_one_agent") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(dir.path());
    // The recorded listing, with container ids of our own.
    let ids = [
        format!("{:064x}", 0xa11ce_u128 * 7919),
        format!("{:064x}", 0xb0b_u128 * 104729),
    ];
    let mut list: Value = serde_json::from_str(include_str!("../fixtures/k8s/pods.json")).unwrap();
    let items = list["items"].as_array_mut().unwrap();
    let mut uids = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let pod = &mut items[i];
        pod["status"]["containerStatuses"][0]["containerID"] = format!("containerd://{id}").into();
        uids.push(pod["metadata"]["uid"].as_str().unwrap().to_string());
    }
    // A pod of another node must not be listed to this one.
    items[4]["spec"]["nodeName"] = "node-2".into();
    let elsewhere = (
        items[4]["metadata"]["uid"].as_str().unwrap().to_string(),
        items[4]["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap()
            .trim_start_matches("containerd://")
            .to_string(),
    );
    let pods = dir.path().join("pods.json");
    std::fs::write(&pods, serde_json::to_vec(&list).unwrap()).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "sa-token-PLANTED\n").unwrap();
    let api = api_server(&cert, &key, &pods, "sa-token-PLANTED");

    let config = format!(
        "[kubernetes]\napi_server = \"https://127.0.0.1:{}\"\ntoken_file = {:?}\nca_file = {:?}\nnode_name = \"node-1\"\nrefresh_secs = 1\n",
        api.port,
        token.display().to_string(),
        ca.display().to_string()
    );
    let sensor = Sensor::start_with(&["--json"], Some(&config));
    // The first listing is in before any agent starts.
    sensor.wait_for_log("pod metadata from the Kubernetes API");
    let server = HttpsServer::start("127.0.0.1");
    let root = cgroup2_root();
    let mut agents = Vec::new();
    for (id, uid) in ids.iter().zip(&uids) {
        let cg = ContainerCgroup::new(&root, uid, id);
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec {} {} https://127.0.0.1:{}",
            cg.leaf().display(),
            venv_python().display(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fleet_agent.py"),
            server.port
        );
        let (child, status) = run(Command::new("sh")
            .args(["-c", &script])
            .env("FLEET_MODE", "catalog"));
        assert!(status.success());
        let call = sensor.wait_for("the replica's catalog call", |v| {
            kind(v) == "api_call" && pid(v) == u64::from(child) && v["path"] == "/v1/catalog"
        });
        agents.push(call);
    }
    for (call, id) in agents.iter().zip(&ids) {
        assert_eq!(call["process"]["container"]["id"], id.as_str(), "{call}");
        let pod = &call["pod"];
        assert_eq!(pod["namespace"], "shop", "{call}");
        assert_eq!(pod["workload"], "Deployment/orderer", "{call}");
        assert_eq!(pod["container"], "agent", "{call}");
        assert_eq!(
            pod["image"], "registry.example/shop/orderer:1.4.2",
            "{call}"
        );
        assert_eq!(pod["labels"]["app"], "orderer", "{call}");
        assert_eq!(call["agent"]["name"], "shop/orderer/agent", "{call}");
    }
    assert_ne!(agents[0]["pod"]["name"], agents[1]["pod"]["name"]);
    // A container of the pod on node-2: known as a container, in no pod
    // (the listing was this node's, in by now: the replicas have theirs).
    let plain = HttpServer::start("127.0.0.1");
    let cg = ContainerCgroup::new(&root, &elsewhere.0, &elsewhere.1);
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec curl -sS -m 5 http://127.0.0.1:{}/",
        cg.leaf().display(),
        plain.port
    );
    let (child, status) = run(Command::new("sh").args(["-c", &script]));
    assert!(status.success());
    let other = sensor.wait_for("the other node's container's connect", |v| {
        kind(v) == "connect" && pid(v) == u64::from(child)
    });
    assert_eq!(
        other["process"]["container"]["id"],
        elsewhere.1.as_str(),
        "{other}"
    );
    assert!(
        other.get("pod").is_none_or(Value::is_null),
        "a pod of node-2 was listed to node-1: {other}"
    );
    assert_eq!(
        agents[0]["agent"]["id"], agents[1]["agent"]["id"],
        "replicas are one agent"
    );
    // Through the API, filtered by namespace.
    let (ok, out, err) = sensor.cli(&[
        "events",
        "--namespace",
        "shop",
        "--kind",
        "api_call",
        "--json",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("\"workload\":\"Deployment/orderer\""), "{out}");
    let (ok, out, _) = sensor.cli(&[
        "events",
        "--namespace",
        "ledger",
        "--kind",
        "api_call",
        "--json",
    ]);
    assert!(ok && out.trim().is_empty(), "{out}");
    let (_, stderr, events) = sensor.stop_with_events();
    assert!(!stderr.contains("PLANTED"), "{stderr}");
    assert!(
        !stderr.contains("listing this node's pods failed"),
        "{stderr}"
    );
    for e in &events {
        assert!(!e.to_string().contains("PLANTED"), "{e}");
    }
}
