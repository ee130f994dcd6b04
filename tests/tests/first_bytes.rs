//! First bytes sent with any send syscall: a client's runtime, not its
//! protocol, decides whether its ClientHello goes out with write, writev,
//! sendmsg or sendmmsg (tokio, and so every rustls client such as Codex,
//! uses writev). Each is named by its ClientHello all the same, and a
//! plain HTTP request gathered from pieces (hyper: head, then body) is
//! one request.

use std::process::Command;

use e2e::{HttpServer, HttpsServer, Sensor, Value, kind, pid, python3, require_root, serial};

/// A real TLS client (Python's OpenSSL through memory BIOs) whose every
/// socket send is made with the syscall named by argv[1]: `writev`,
/// `sendmsg` or `sendmmsg` (by ctypes; Python has no wrapper). Its
/// ClientHello is split in three pieces (record header, then the body in
/// two), so the capture must gather them. Then `GET /v1/models`; prints
/// the response's status line.
const TLS_CLIENT: &str = r#"
import ctypes, os, socket, ssl, sys

how, host, port, sni = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

class msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]

class mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]

libc = ctypes.CDLL(None, use_errno=True)

def send(sock, data, pieces):
    cuts = [0, 5, 5 + (len(data) - 5) // 2, len(data)] if pieces == 3 else [0, len(data)]
    parts = [data[a:b] for a, b in zip(cuts, cuts[1:])]
    if how == "writev":
        sent = os.writev(sock.fileno(), parts)
    elif how == "sendmsg":
        sent = sock.sendmsg(parts)
    elif how == "sendmmsg":
        bufs = [ctypes.create_string_buffer(p, len(p)) for p in parts]
        iov = (iovec * len(parts))(*[iovec(ctypes.cast(b, ctypes.c_void_p), len(p)) for b, p in zip(bufs, parts)])
        m = mmsghdr()
        m.hdr.iov = iov
        m.hdr.iovlen = len(parts)
        if libc.sendmmsg(sock.fileno(), ctypes.byref(m), 1, 0) != 1:
            raise OSError(ctypes.get_errno(), "sendmmsg")
        sent = m.len
    else:
        raise SystemExit("unknown send call " + how)
    assert sent == len(data), (sent, len(data))

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_hostname=sni)
sock = socket.create_connection((host, port))
first = True
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        pass
    data = out.read()
    if data:
        send(sock, data, 3 if first else 1)
        first = False
    chunk = sock.recv(65536)
    if not chunk:
        raise SystemExit("server closed during the handshake")
    inc.write(chunk)
data = out.read()
if data:
    send(sock, data, 1)
tls.write(b"GET /v1/models HTTP/1.1\r\nHost: " + sni.encode() + b"\r\nConnection: close\r\n\r\n")
send(sock, out.read(), 1)
# Read to the server's close: the head and body may come apart, and a
# response read only in part is no exchange.
resp = b""
done = False
while not done:
    chunk = sock.recv(65536)
    if not chunk:
        break
    inc.write(chunk)
    while True:
        try:
            resp += tls.read(65536)
        except ssl.SSLWantReadError:
            break
        except ssl.SSLZeroReturnError:
            done = True
            break
print(resp.split(b"\r\n")[0].decode())
"#;

/// Runs a Python script to its end; returns its pid and what it printed.
fn python(script: &str, args: &[&str]) -> (u32, String) {
    e2e::run_printing(Command::new(python3()).args(["-c", script]).args(args))
}

/// Runs the TLS client with `how`; returns its pid once it has its answer.
fn tls_client(how: &str, addr: &str, port: u16, sni: &str) -> u32 {
    let (child, line) = python(TLS_CLIENT, &[how, addr, &port.to_string(), sni]);
    assert!(
        line.starts_with("HTTP/1.1 200"),
        "{how} client got {line:?}"
    );
    child
}

fn hello_of(sensor: &Sensor, how: &str, child: u32) -> Value {
    sensor.wait_for(&format!("the ClientHello sent with {how}"), |v| {
        kind(v) == "tls_client_hello" && pid(v) == u64::from(child)
    })
}

#[test]
fn client_hello_sent_with_any_send_call_names_the_destination() {
    let _g = serial();
    if !require_root("client_hello_sent_with_any_send_call_names_the_destination") {
        return;
    }
    let sensor = Sensor::start();
    for addr in ["127.0.0.1", "::1"] {
        let server = HttpsServer::start(addr);
        for how in ["writev", "sendmsg", "sendmmsg"] {
            let sni = format!("{how}.vendor.example");
            let child = tls_client(how, addr, server.port, &sni);
            let ev = hello_of(&sensor, how, child);
            assert_eq!(ev["sni"], sni.as_str(), "{ev}");
            assert_eq!(ev["alpn"][0], "http/1.1", "{ev}");
            assert_eq!(ev["daddr"], addr, "{ev}");
            assert_eq!(ev["dport"], server.port, "{ev}");
            // The plaintext (SSL_write_ex into a memory BIO) is tied to the
            // socket by the thread's next send, whichever call made it.
            let call = sensor.wait_for(&format!("the api_call of the {how} client"), |v| {
                kind(v) == "api_call" && pid(v) == u64::from(child)
            });
            assert_eq!(call["path"], "/v1/models", "{call}");
            assert_eq!(call["status"], 200, "{call}");
            assert_eq!(call["sni"], sni.as_str(), "{call}");
            assert_eq!(call["dport"], server.port, "{call}");
        }
        assert_eq!(server.requests().len(), 3, "{:?}", server.requests());
    }
    sensor.stop();
}

/// A plain HTTP POST whose head and body go out as two pieces of one
/// writev (as hyper sends them), then as two of one sendmsg.
const PLAIN_CLIENT: &str = r#"
import os, socket, sys
how, port = sys.argv[1], int(sys.argv[2])
body = b'{"model":"llama3","prompt":"' + b"x" * 300 + b'"}'
head = (b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (port, len(body)))
sock = socket.create_connection(("127.0.0.1", port))
if how == "writev":
    sent = os.writev(sock.fileno(), [head, body])
else:
    sent = sock.sendmsg([head, body])
assert sent == len(head) + len(body)
resp = b""
while True:
    chunk = sock.recv(4096)
    if not chunk:
        break
    resp += chunk
print(len(head) + len(body), resp.split(b"\r\n")[0].decode())
"#;

#[test]
fn plain_request_gathered_from_pieces_is_one_request() {
    let _g = serial();
    if !require_root("plain_request_gathered_from_pieces_is_one_request") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpServer::start("127.0.0.1");
    for how in ["writev", "sendmsg"] {
        let (child, out) = python(PLAIN_CLIENT, &[how, &server.port.to_string()]);
        let (sent, status) = out.split_once(' ').unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{out}");
        let ev = sensor.wait_for(&format!("the plain POST sent with {how}"), |v| {
            kind(v) == "api_call" && pid(v) == u64::from(child)
        });
        assert_eq!(ev["transport"], "plain", "{ev}");
        assert_eq!(ev["path"], "/api/generate", "{ev}");
        assert_eq!(ev["method"], "POST", "{ev}");
        assert_eq!(ev["status"], 200, "{ev}");
        // The head and the body, both pieces, as one request.
        assert_eq!(ev["request_bytes"].as_u64(), sent.parse().ok(), "{ev}");
        assert_eq!(ev["dport"], u64::from(server.port), "{ev}");
    }
    sensor.stop();
}
