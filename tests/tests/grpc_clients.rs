//! A SOC engineer's first script: stock gRPC clients on the API's unix
//! socket with no options. gRPC Python (C-core) sends the socket path as
//! `:authority`, which the server's HTTP/2 stack refused with
//! `RST_STREAM PROTOCOL_ERROR` until the socket's connections were
//! normalised (sensor/src/api/authority.rs).

use std::process::Command;

use e2e::{Sensor, require_root, serial, venv_python};

/// A script as a user would write it: grpcio's own health stub, then
/// calls of the sensor's API by method name (raw bytes, no generated
/// code), control RPCs among them, over both `unix:` spellings gRPC
/// documents. Prints one line per call.
const SCRIPT: &str = r#"
import os, subprocess, sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([b])
        out += bytes([b | 0x80])

path = sys.argv[1]
for target in ("unix://" + path, "unix:" + path):
    with grpc.insecure_channel(target) as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        print(target, "health", health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
        status = ch.unary_unary("/sensor.v1.Sensor/Status")(b"", timeout=10)
        print(target, "status", len(status))
        # Control RPCs: isolate a process of ours and list it. The server
        # must still see this caller's credentials (uid and pid of the
        # real socket) for the audit trail's "by".
        victim = subprocess.Popen(["sleep", "60"])
        pid = varint(victim.pid)
        ch.unary_unary("/sensor.v1.Response/Isolate")(b"\x08" + pid, timeout=10)
        listed = ch.unary_unary("/sensor.v1.Response/ListIsolated")(b"", timeout=10)
        by = "uid %d, pid %d" % (os.getuid(), os.getpid())
        print(target, "isolated-by-caller", by.encode() in listed)
        ch.unary_unary("/sensor.v1.Response/Release")(b"\x08" + pid, timeout=10)
        victim.kill()
"#;

#[test]
fn stock_grpcio_works_on_the_unix_socket_with_no_options() {
    let _g = serial();
    if !require_root("stock_grpcio_works_on_the_unix_socket_with_no_options") {
        return;
    }
    let sensor = Sensor::start();
    let out = Command::new(venv_python())
        .args(["-c", SCRIPT])
        .arg(&sensor.socket)
        .output()
        .expect("run Python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "stock grpcio failed:\n{stdout}\n{stderr}"
    );
    let sock = sensor.socket.display().to_string();
    for target in [format!("unix://{sock}"), format!("unix:{sock}")] {
        let lines: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{target} ")))
            .collect();
        assert_eq!(lines.first(), Some(&"health SERVING"), "{stdout}");
        let status_len: usize = lines
            .get(1)
            .and_then(|l| l.strip_prefix("status "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no status reply for {target}:\n{stdout}"));
        assert!(status_len > 20, "an empty Status for {target}: {stdout}");
        assert_eq!(
            lines.get(2),
            Some(&"isolated-by-caller True"),
            "the isolation was not recorded as by this caller ({target}): {stdout}"
        );
    }
    sensor.stop();
}
