//! A network client steered line by line on stdin, for the isolation
//! tests that must also run in the 6.1 kernel guest (no Python there).
//! Prints `ready <pid>`, then answers each command with one line: `ok`,
//! `ok <http status>` or `err <errno name>`.
//!
//! - `connect ADDR PORT`: a new TCP connection, closed at once.
//! - `udp ADDR PORT`: one datagram from a new unconnected socket (sendto).
//! - `open ADDR PORT`: a TCP connection kept for `request`.
//! - `request METHOD PATH`: one HTTP/1.1 request on the kept connection,
//!   answered with the response's status.
//! - `child ADDR PORT`: a child process (this program again) does
//!   `connect` and exits with its answer, which is printed.
//!
//! `e2e-puppet --once connect ADDR PORT` runs one command and exits.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--once") {
        let mut p = Puppet::default();
        println!("{}", p.answer(&args[1..].join(" ")));
        return;
    }
    println!("ready {}", std::process::id());
    let mut p = Puppet::default();
    for line in io::stdin().lock().lines().map_while(Result::ok) {
        println!("{}", p.answer(line.trim()));
    }
}

#[derive(Default)]
struct Puppet {
    kept: Option<TcpStream>,
}

/// How long a request waits for its answer: an isolated socket whose
/// packets are dropped (cgroup method) never answers.
const TIMEOUT: Duration = Duration::from_secs(3);

impl Puppet {
    fn answer(&mut self, cmd: &str) -> String {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let addr = |i: usize| -> Option<SocketAddr> {
            let ip: IpAddr = words.get(i)?.parse().ok()?;
            let port: u16 = words.get(i + 1)?.parse().ok()?;
            Some(SocketAddr::new(ip, port))
        };
        let r = match (words.first().copied(), addr(1)) {
            (Some("connect"), Some(a)) => {
                TcpStream::connect_timeout(&a, TIMEOUT).map(|_| "ok".into())
            }
            (Some("udp"), Some(a)) => udp(a),
            (Some("open"), Some(a)) => TcpStream::connect_timeout(&a, TIMEOUT).map(|s| {
                self.kept = Some(s);
                "ok".into()
            }),
            (Some("child"), Some(_)) => child(&words[1..]),
            (Some("request"), _) if words.len() == 3 => self.request(words[1], words[2]),
            _ => return format!("bad command {cmd:?}"),
        };
        r.unwrap_or_else(|e| format!("err {}", errno_name(&e)))
    }

    fn request(&mut self, method: &str, path: &str) -> io::Result<String> {
        let s = self
            .kept
            .as_mut()
            .ok_or_else(|| io::Error::other("no connection is open"))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: puppet\r\nContent-Length: 0\r\n\r\n"
        )?;
        // The response: status line, headers, Content-Length bytes.
        let mut r = BufReader::new(s.try_clone()?);
        let mut status = String::new();
        if r.read_line(&mut status)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        r.read_exact(&mut vec![0; len])?;
        let code = status.split_whitespace().nth(1).unwrap_or("?");
        Ok(format!("ok {code}"))
    }
}

fn udp(to: SocketAddr) -> io::Result<String> {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    UdpSocket::bind(bind)?.send_to(b"puppet", to)?;
    Ok("ok".into())
}

fn child(args: &[&str]) -> io::Result<String> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--once")
        .arg("connect")
        .args(args)
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn errno_name(e: &io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::EACCES) => "EACCES",
        Some(libc::ECONNREFUSED) => "ECONNREFUSED",
        Some(libc::ECONNRESET) => "ECONNRESET",
        Some(libc::ECONNABORTED) => "ECONNABORTED",
        Some(libc::ETIMEDOUT) => "ETIMEDOUT",
        Some(libc::EPIPE) => "EPIPE",
        Some(libc::EAGAIN) => "EAGAIN",
        Some(n) => return format!("errno {n}"),
        None => return format!("{:?}", e.kind()),
    };
    name.into()
}
