//! Loopback servers for real clients to reach, a port that refuses, and
//! the lines a server child prints (read so that a count is exact).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use crate::{python3, venv_python};

/// A tiny HTTP/1.1 server on loopback that answers every request with 200
/// and counts the connections it accepted.
pub struct HttpServer {
    pub port: u16,
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    /// `addr` is "127.0.0.1" or "::1".
    pub fn start(addr: &str) -> HttpServer {
        let listener = TcpListener::bind((addr, 0)).expect("bind loopback server");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        {
            let stop = stop.clone();
            let accepted = accepted.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            thread::spawn(move || serve(s));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        HttpServer {
            port,
            accepted,
            stop,
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut s: TcpStream) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
}

/// A loopback port where connects are refused: a TCP socket bound to it
/// and never listening, held for as long as this value lives, so no other
/// process can take the port meanwhile (a port bound, closed and assumed
/// free could be anyone's by the time the test uses it).
pub struct RefusedPort {
    pub port: u16,
    socket: OwnedFd,
}

impl RefusedPort {
    /// `addr` is "127.0.0.1" or "::1".
    pub fn bind(addr: &str) -> RefusedPort {
        Self::bind_with(addr, false)
    }

    /// Also with SO_REUSEPORT, so that a server of this test that sets it
    /// too (gRPC servers do) can listen on the port while it is held: the
    /// port stays this test's from the outage to the server's start.
    pub fn bind_shared(addr: &str) -> RefusedPort {
        Self::bind_with(addr, true)
    }

    fn bind_with(addr: &str, reuseport: bool) -> RefusedPort {
        let ip: std::net::IpAddr = addr.parse().expect("an IP address");
        let family = if ip.is_ipv6() {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        // SAFETY: plain socket(2); the fd is owned from here on.
        let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: fd is a new socket nobody else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        if reuseport {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt with a c_int option value of the right size.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_REUSEPORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0, "SO_REUSEPORT: {}", std::io::Error::last_os_error());
        }
        // SAFETY: sockaddr_storage is plain data; zeroed is a valid value.
        let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match ip {
            std::net::IpAddr::V4(v4) => {
                // SAFETY: sockaddr_storage is large and aligned enough for
                // any sockaddr.
                let sin = unsafe { &mut *(&mut sa as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
                std::mem::size_of::<libc::sockaddr_in>()
            }
            std::net::IpAddr::V6(v6) => {
                // SAFETY: as above.
                let sin6 = unsafe { &mut *(&mut sa as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_addr.s6_addr = v6.octets();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        // SAFETY: sa holds a sockaddr of `len` bytes.
        let r = unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_storage).cast(), len as _) };
        assert_eq!(r, 0, "bind {addr}:0: {}", std::io::Error::last_os_error());
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: getsockname writes at most `len` bytes into sa.
        let r = unsafe {
            libc::getsockname(
                fd,
                (&mut sa as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "getsockname: {}", std::io::Error::last_os_error());
        // sin_port and sin6_port sit at the same offset, in network order.
        // SAFETY: as above.
        let port =
            u16::from_be(unsafe { (*(&sa as *const _ as *const libc::sockaddr_in)).sin_port });
        RefusedPort { port, socket }
    }
}

impl std::fmt::Debug for RefusedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RefusedPort({}, fd {})",
            self.port,
            self.socket.as_raw_fd()
        )
    }
}

/// What a child prints on stdout, line by line, without ever blocking it.
/// A background thread and every call of [`ChildLines::lines`] take what
/// the pipe holds under one lock, so a call returns every line the child
/// had written before it: a server that prints a line before it answers
/// is counted exactly once its client has the answer (a reader thread
/// alone may not have caught up by then).
#[derive(Clone)]
pub struct ChildLines(Arc<Mutex<Pipe>>);

struct Pipe {
    out: ChildStdout,
    partial: Vec<u8>,
    lines: Vec<String>,
    eof: bool,
}

impl Pipe {
    /// Takes what the pipe holds now (non-blocking).
    fn drain(&mut self) {
        let mut buf = [0u8; 65536];
        while !self.eof {
            match self.out.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    if !self.partial.is_empty() {
                        let rest = std::mem::take(&mut self.partial);
                        self.lines.push(String::from_utf8_lossy(&rest).into_owned());
                    }
                }
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = self.partial.drain(..=i).collect();
                        self.lines
                            .push(String::from_utf8_lossy(&line[..i]).into_owned());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // WouldBlock: nothing more for now.
                Err(_) => return,
            }
        }
    }
}

impl ChildLines {
    /// Reads the first line (blocking, a byte at a time so nothing after
    /// it is taken), then follows the rest. Returns that first line.
    pub fn start(mut out: ChildStdout) -> (String, ChildLines) {
        let mut first = Vec::new();
        let mut b = [0u8; 1];
        while let Ok(1) = out.read(&mut b) {
            if b[0] == b'\n' {
                break;
            }
            first.push(b[0]);
        }
        let fd = out.as_raw_fd();
        // SAFETY: fcntl on a pipe fd this value owns.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        let lines = ChildLines(Arc::new(Mutex::new(Pipe {
            out,
            partial: Vec::new(),
            lines: Vec::new(),
            eof: false,
        })));
        let follower = lines.clone();
        thread::spawn(move || {
            loop {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one pollfd; the fd lives as long as the Pipe,
                // which this thread keeps alive.
                unsafe { libc::poll(&mut pfd, 1, 200) };
                let mut p = follower.0.lock().unwrap();
                p.drain();
                if p.eof {
                    return;
                }
            }
        });
        (String::from_utf8_lossy(&first).into_owned(), lines)
    }

    /// Every line after the first that the child has written so far.
    pub fn lines(&self) -> Vec<String> {
        let mut p = self.0.lock().unwrap();
        p.drain();
        p.lines.clone()
    }
}

/// Starts `tests/fixtures/<fixture>` with `python` (a command, perhaps in
/// a namespace), given a certificate, its key, an address and `extra`
/// arguments. Such a stand-in prints "PORT <n>" once listening, then a
/// line per request; returns the child, its port and those lines.
pub fn start_fixture(
    mut python: Command,
    fixture: &str,
    cert: &Path,
    key: &Path,
    addr: &str,
    extra: &[&str],
) -> (Child, u16, ChildLines) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(fixture);
    let mut child = python
        .arg(script)
        .arg(cert)
        .arg(key)
        .arg(addr)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {fixture}: {e}"));
    let (first, lines) = ChildLines::start(child.stdout.take().expect("stdout"));
    let port = first
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{fixture} reports its port: {first:?}"));
    (child, port, lines)
}

/// A local HTTPS (HTTP/1.1 keep-alive, or HTTP/2) server in Python with a
/// self-signed certificate made at start; it reports each request it gets.
pub struct HttpsServer {
    pub port: u16,
    pub pid: u32,
    /// Its self-signed certificate, for clients to trust (`SSL_CERT_FILE`).
    pub cert: PathBuf,
    child: Child,
    requests: ChildLines,
    _dir: tempfile::TempDir,
}

impl HttpsServer {
    /// `addr` is "127.0.0.1" or "::1".
    pub fn start(addr: &str) -> HttpsServer {
        Self::spawn(Path::new(python3()), "https_server.py", true, addr)
    }

    /// The same server inside network namespace `ns` (reachable from its
    /// loopback only).
    pub fn start_in(ns: &crate::Netns, addr: &str) -> HttpsServer {
        Self::spawn_command(ns.command(python3()), "https_server.py", true, addr)
    }

    /// An HTTP/2 server over TLS (ALPN h2), in Python with the `h2` package.
    pub fn start_h2(addr: &str) -> HttpsServer {
        Self::spawn(&venv_python(), "h2_server.py", true, addr)
    }

    /// A cleartext HTTP/2 server (prior knowledge, no upgrade).
    pub fn start_h2c(addr: &str) -> HttpsServer {
        Self::spawn(&venv_python(), "h2_server.py", false, addr)
    }

    fn spawn(python: &Path, fixture: &str, tls: bool, addr: &str) -> HttpsServer {
        Self::spawn_command(Command::new(python), fixture, tls, addr)
    }

    fn spawn_command(python: Command, fixture: &str, tls: bool, addr: &str) -> HttpsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = if tls {
            self_signed_cert(dir.path())
        } else {
            ("-".into(), "-".into())
        };
        let (child, port, requests) = start_fixture(python, fixture, &cert, &key, addr, &[]);
        let pid = child.id();
        HttpsServer {
            port,
            pid,
            cert,
            child,
            requests,
            _dir: dir,
        }
    }

    /// "REQ <method> <path> <body bytes>" lines received so far: every
    /// request answered by now is among them (the server prints the line
    /// before it answers).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lines()
    }

    /// POSTs to `path` received so far.
    pub fn posts(&self, path: &str) -> usize {
        let line = format!("REQ POST {path} ");
        self.requests()
            .iter()
            .filter(|r| r.starts_with(&line))
            .count()
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for localhost / 127.0.0.1 / ::1 in `dir`,
/// made now with `openssl req`; returns (cert, key) paths.
pub fn self_signed_cert(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl to make a test certificate");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// A keep-alive HTTP/1.1 server on loopback that records every request
/// line it receives ("POST /v1/orders"): answers POST with 201, anything
/// else with 200, and keeps the connection open for the next request.
pub struct RecordingServer {
    pub addr: String,
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl RecordingServer {
    /// `addr` is a loopback address ("127.0.0.1", "127.0.0.2", "::1").
    pub fn start(addr: &str) -> RecordingServer {
        let listener = TcpListener::bind((addr, 0)).expect("bind loopback server");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        {
            let (stop, requests) = (stop.clone(), requests.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let requests = requests.clone();
                            thread::spawn(move || serve_keep_alive(s, &requests));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        RecordingServer {
            addr: addr.to_string(),
            port,
            requests,
            stop,
        }
    }

    /// Request lines received so far, e.g. "POST /v1/orders" (recorded
    /// before the answer is written).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for RecordingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_keep_alive(s: TcpStream, requests: &Mutex<Vec<String>>) {
    let _ = s.set_nonblocking(false);
    let Ok(mut out) = s.try_clone() else {
        return;
    };
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        if r.read_exact(&mut vec![0; len]).is_err() {
            return;
        }
        let request: Vec<&str> = line.split_whitespace().take(2).collect();
        let request = request.join(" ");
        let status = if request.starts_with("POST ") {
            "201 Created"
        } else {
            "200 OK"
        };
        requests.lock().unwrap().push(request);
        if write!(out, "HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok").is_err() {
            return;
        }
    }
}
