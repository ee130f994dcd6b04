//! Issue 19, finding 4: the kernel's table of watched sockets, keyed by
//! (process, fd), can neither be filled by a local user nor outlive the
//! socket it names. Before the fix, entries were removed only by close(2):
//! sockets closed by exit, by close-on-exec at exec, or by dup2 stayed, so
//! `nobody` could fill the table (no later connection was watched: no SNI,
//! no plain HTTP, no TLS tie), and a file written at a stale fd number was
//! captured as if it were the socket's traffic.

use std::process::Command;

use e2e::{HttpServer, HttpsServer, Sensor, Value, kind, pid, python3, require_root, serial};

const NOBODY: &str = "65534";

/// Forks `argv[1]` children one after the other; each connects `argv[2]`
/// UDP sockets (a connect that succeeds at once, with no packet sent) and
/// exits without closing them: the kernel closes them, no close(2) runs.
const FLOOD: &str = r#"
import os, socket, sys
procs, per = int(sys.argv[1]), int(sys.argv[2])
for _ in range(procs):
    child = os.fork()
    if child == 0:
        socks = []
        for _ in range(per):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect(("127.0.0.1", 9))
            socks.append(s)
        os._exit(0)
    os.waitpid(child, 0)
print("done")
"#;

/// A TLS client naming `argv[3]` in its ClientHello; prints the status line.
const TLS_CLIENT: &str = r#"
import socket, ssl, sys
host, port, sni = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection((host, port)) as raw, ctx.wrap_socket(raw, server_hostname=sni) as s:
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: " + sni.encode() + b"\r\nConnection: close\r\n\r\n")
    resp = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        resp += chunk
print(resp.split(b"\r\n")[0].decode())
"#;

/// Sends a plain HTTP request on a socket (which the sensor then watches as
/// HTTP), reads the answer, then loses the socket without close(2), by
/// `argv[1]`: `exec` (close-on-exec; the new image opens a file, which
/// takes the lowest free fd, the socket's) or `dup2` (a file's fd copied
/// over the socket's). It then writes what looks like a request to the
/// file at the socket's old fd number.
const STALE: &str = r#"
import os, socket, sys
how, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
leak = b"POST /leaked-file-%s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" % how.encode()
if how == "after-exec":
    fd = int(sys.argv[4])
    opened = [os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)]
    while opened[-1] < fd:
        opened.append(os.open(path, os.O_WRONLY))
    assert opened[-1] == fd, (opened, fd)
    os.write(fd, leak)
    print("wrote", flush=True)
    raise SystemExit
# A high fd, as in any busy process: the new image's loader and startup
# open and close the low ones (a close(2) clears the entry), not this one.
fillers = [os.open("/dev/null", os.O_RDONLY) for _ in range(40)]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /before-%s HTTP/1.1\r\nHost: x\r\n\r\n" % how.encode())
s.recv(65536)
fd = s.fileno()
if how == "exec":
    # Python's sockets are close-on-exec: the exec closes it.
    os.execv(sys.executable, [sys.executable, "-c", sys.orig_argv[2], "after-exec", str(port), path, str(fd)])
f = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
os.dup2(f, fd)
os.write(fd, leak)
print("wrote", flush=True)
"#;

/// Runs a Python script to its end (as `nobody` if asked); returns its
/// pid and what it printed.
fn python(script: &str, args: &[&str], nobody: bool) -> (u32, String) {
    let mut cmd = if nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
            .arg(python3());
        c
    } else {
        Command::new(python3())
    };
    e2e::run_printing(cmd.args(["-c", script]).args(args))
}

#[test]
fn sockets_closed_by_exit_cannot_fill_the_watch_table() {
    let _g = serial();
    if !require_root("sockets_closed_by_exit_cannot_fill_the_watch_table") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    // 70 × 1,000 sockets closed by exit: more than the table holds (65,536).
    let (_, out) = python(FLOOD, &["70", "1000"], true);
    assert_eq!(out, "done");
    // The flood's 70,000 connect events keep a debug daemon busy for a
    // while (the ring buffer drops, and counts, part of them).
    sensor.wait_quiet(std::time::Duration::from_secs(120));

    let (client, line) = python(
        TLS_CLIENT,
        &[
            "127.0.0.1",
            &server.port.to_string(),
            "after-the-flood.example",
        ],
        false,
    );
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let hello = sensor.wait_for("the ClientHello after the flood", |v| {
        kind(v) == "tls_client_hello" && pid(v) == u64::from(client)
    });
    assert_eq!(hello["sni"], "after-the-flood.example", "{hello}");
    let call = sensor.wait_for("the api_call after the flood", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(client)
    });
    assert_eq!(call["path"], "/v1/models", "{call}");
    sensor.stop();
}

#[test]
fn a_file_at_a_stale_socket_fd_is_never_captured() {
    let _g = serial();
    if !require_root("a_file_at_a_stale_socket_fd_is_never_captured") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpServer::start("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let port = server.port.to_string();
    let mut pids = Vec::new();
    for how in ["exec", "dup2"] {
        let file = dir.path().join(how);
        let (child, out) = python(STALE, &[how, &port, file.to_str().unwrap()], false);
        assert_eq!(out, "wrote", "{how}");
        // The file got the bytes; the socket's request was seen.
        let written = std::fs::read_to_string(&file).unwrap();
        assert!(written.starts_with("POST /leaked-file-"), "{written}");
        sensor.wait_for(&format!("the request before {how}"), |v| {
            kind(v) == "api_call" && v["path"] == format!("/before-{how}").as_str()
        });
        pids.push(child);
    }
    let (_, _, events) = sensor.stop_with_events();
    // Any event but the process's own (its command line holds the script).
    let leaked: Vec<Value> = events
        .iter()
        .map(|v| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("process");
            v
        })
        .filter(|v| v.to_string().contains("leaked-file"))
        .collect();
    assert!(
        leaked.is_empty(),
        "a file's bytes were reported: {leaked:?}"
    );
    assert_eq!(pids.len(), 2);
}

/// Parks `argv[2]` threads in recv(2) on one plain HTTP connection (a
/// request sent, to a server that never answers: a socket the sensor
/// watches), prints "parked", and keeps them there until stdin closes.
const PARK: &str = r#"
import socket, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /never-answered HTTP/1.1\r\nHost: x\r\n\r\n")
threading.stack_size(64 * 1024)
for _ in range(n):
    threading.Thread(target=s.recv, args=(1,), daemon=True).start()
print("parked", flush=True)
sys.stdin.readline()
"#;

/// The kernel keeps one entry per thread inside a receive on a watched
/// socket (PENDING_RECV, 16,384 entries). A local user's 16,500 threads
/// parked in recv(2) filled it for good: every other reader on the host
/// then went uncaptured (a plain HTTP call had no response, so no
/// status). The table now evicts its oldest entries.
#[test]
fn threads_parked_in_recv_cannot_blind_other_readers() {
    let _g = serial();
    if !require_root("threads_parked_in_recv_cannot_blind_other_readers") {
        return;
    }
    let sensor = Sensor::start();
    // A server that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port().to_string();
    let mut park = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .arg(python3())
        .args(["-c", PARK, &silent_port, "16500"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the parked threads");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(park.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "parked");
    let (_conn, _) = silent.accept().unwrap();

    let server = HttpServer::start("127.0.0.1");
    let (client, out) = python(
        "import sys, urllib.request\n\
         r = urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/v1/after-the-park')\n\
         print(r.status)",
        &[&server.port.to_string()],
        false,
    );
    assert_eq!(out, "200");
    let call = sensor.wait_for("the api_call beside the parked threads", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(client)
    });
    assert_eq!(call["path"], "/v1/after-the-park", "{call}");
    // Its response was read: the receive was captured.
    assert_eq!(call["status"], 200, "{call}");
    drop(park.stdin.take());
    let _ = park.kill();
    let _ = park.wait();
    sensor.stop();
}
