//! How fast database statements go through the sensor on one core:
//! `cargo xtask bench --only db` runs it.
//!
//! A psycopg-like session (extended protocol: Parse, Bind, Describe,
//! Execute, Sync per statement, literals as parameters and some inline;
//! the server answering with rows, CommandComplete and ReadyForQuery) is
//! captured as the kernel hands it over (a record per send or receive, at
//! most 4 KiB each). Timed side by side:
//! - parse: `PgConn` framing both directions and normalising each
//!   statement (template, kind, objects);
//! - parse + detection: the same, then each statement's `api_call` event
//!   built as the HTTP stage builds it and put through `Agents::observe`
//!   (attribution, session, baseline, detection) for an agent named by a
//!   selector that learned 3 runs, and its JSON (`Event::to_json`);
//! - MySQL parse: a PyMySQL-like session (COM_QUERY, literals quoted into
//!   the text; result sets of 3 rows or OKs) through `MySqlConn`.
//!
//! It checks itself: every statement must come out, and the run's DROP
//! must raise a finding.

use std::{sync::Arc, time::Instant};

use sensor::{
    agents::{
        Agents, Settings,
        selectors::{Naming, Selector},
    },
    config::SelectorConfig,
    db::{DbCall, Message, Side, mysql::MySqlConn, pg::PgConn},
    event::{Detail, Event},
    procs::Process,
};

fn arg(name: &str, default: usize) -> usize {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn msg(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![typ];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstrs(parts: &[&[u8]]) -> Vec<u8> {
    parts
        .iter()
        .flat_map(|p| p.iter().copied().chain([0]))
        .collect()
}

/// The statements a verification agent runs, with their answers' tags.
const STATEMENTS: [(&str, &str); 6] = [
    (
        "SELECT count(*) FROM staging_sessions WHERE token <> $1 AND created_at > now() - interval '1 day'",
        "SELECT 1",
    ),
    (
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
        "SELECT 3",
    ),
    (
        "INSERT INTO audit_log (agent, action, at) VALUES ($1, 'verify', now())",
        "INSERT 0 1",
    ),
    (
        "UPDATE staging_sessions SET checked = true WHERE id IN (17, 18, 19, 20)",
        "UPDATE 4",
    ),
    (
        "SELECT s.id, s.token FROM staging_sessions s JOIN users u ON u.id = s.user_id WHERE u.email = $1 LIMIT 10",
        "SELECT 3",
    ),
    (
        "DELETE FROM staging_sessions WHERE expires_at < $1",
        "DELETE 2",
    ),
];

/// One statement's client records (one send) and server records (one
/// receive), as captured.
fn exchange(sql: &str, tag: &str) -> (Vec<u8>, Vec<u8>) {
    let client = [
        msg(b'P', &cstrs(&[b"", sql.as_bytes(), b"\0\0"])),
        msg(
            b'B',
            &cstrs(&[b"", b"", b"\0\0\0\x01\0\0\0\x10PLANTED-0123456\0\0"]),
        ),
        msg(b'D', b"P\0"),
        msg(b'E', b"\0\0\0\0\0"),
        msg(b'S', b""),
    ]
    .concat();
    let mut server = [msg(b'1', b""), msg(b'2', b""), msg(b'T', b"\0\x01id\0....")].concat();
    for _ in 0..3 {
        server.extend(msg(b'D', b"\0\x01\0\0\0\x08abcdefgh"));
    }
    server.extend(msg(b'C', &cstrs(&[tag.as_bytes()])));
    server.extend(msg(b'Z', b"I"));
    (client, server)
}

fn process(pid: u32) -> Arc<Process> {
    Arc::new(Process {
        pid,
        start_ticks: 1000 + u64::from(pid),
        ppid: 1,
        uid: 1000,
        comm: "python3".into(),
        exe: "/usr/bin/python3.11".into(),
        cmdline: vec!["python3".into(), "/srv/agents/verifier.py".into()],
        cgroup: None,
        cgroup_id: 1,
        container: None,
        partial: false,
        held: Vec::new(),
    })
}

/// The event the HTTP stage makes of a statement and its answer.
fn event(p: &Arc<Process>, ts: u64, pair: (Message, Message)) -> Event {
    let (
        Message::Request { request, bytes },
        Message::Response {
            result,
            bytes: answer,
        },
    ) = pair
    else {
        panic!("a request, then its answer")
    };
    let db = DbCall::new(&request, Some(&result));
    Event {
        seq: 0,
        time: String::new(),
        ts_unix_ns: ts,
        tid: p.pid,
        process: p.clone(),
        detail: Detail::ApiCall {
            provider: None,
            llm: None,
            tool_call: None,
            unrequested: false,
            method: request.statement.kind.to_ascii_uppercase(),
            authority: "10.0.0.5:5432".into(),
            path: request.statement.template.clone(),
            path_template: request.statement.template.clone(),
            status: None,
            request_bytes: bytes,
            response_bytes: answer,
            latency_ms: Some(0.4),
            http_version: "postgresql".into(),
            transport: "plain",
            tls_library: None,
            credential_fingerprint: Some("fp:0123456789ab".into()),
            connection: "fd 7".into(),
            daddr: Some("10.0.0.5".parse().unwrap()),
            dport: Some(5432),
            sni: None,
            db: Some(Box::new(db)),
        },
        agent: None,
        pod: None,
    }
}

/// Feeds `rounds` of the statements through a fresh connection (each
/// record at most 4 KiB, as captured); calls `each` with every statement
/// and its answer. Returns the statements seen.
fn session(rounds: usize, extra: Option<&str>, mut each: impl FnMut((Message, Message))) -> usize {
    let mut pg = PgConn::new();
    pg.feed(
        Side::Client,
        b"\0\0\0\x1f\0\x03\0\0user\0verifier\0database\0prod\0\0",
    );
    pg.feed(
        Side::Server,
        &[msg(b'R', &[0, 0, 0, 0]), msg(b'Z', b"I")].concat(),
    );
    let exchanges: Vec<(Vec<u8>, Vec<u8>)> = STATEMENTS
        .iter()
        .map(|(s, t)| exchange(s, t))
        .chain(extra.map(|s| exchange(s, "DROP TABLE")))
        .collect();
    let mut seen = 0;
    for round in 0..rounds {
        for (i, (c, s)) in exchanges.iter().enumerate() {
            if i == STATEMENTS.len() && round + 1 != rounds {
                continue;
            }
            let mut out = Vec::with_capacity(2);
            for chunk in c.chunks(4096) {
                out.extend(pg.feed(Side::Client, chunk));
            }
            for chunk in s.chunks(4096) {
                out.extend(pg.feed(Side::Server, chunk));
            }
            let mut it = out.into_iter();
            while let (Some(q), Some(a)) = (it.next(), it.next()) {
                seen += 1;
                each((q, a));
            }
        }
    }
    seen
}

fn my_packet(seq: u8, body: &[u8]) -> Vec<u8> {
    let mut p = (body.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend_from_slice(body);
    p
}

/// The statements as PyMySQL sends them (its parameters quoted in), with
/// an OK (rows affected) or a result set of 3 rows.
fn my_exchange(sql: &str, rows: bool) -> (Vec<u8>, Vec<u8>) {
    let text = sql.replace("$1", "'PLANTED-0123456'");
    let client = my_packet(0, &[&[3u8][..], text.as_bytes()].concat());
    let server = if rows {
        let mut s = my_packet(1, &[1]);
        s.extend(my_packet(2, b"\x03def\x04prod\x01t\x01t\x02id\x02id\x0c"));
        s.extend(my_packet(3, &[0xfe, 0, 0, 2, 0]));
        for seq in 4..7 {
            s.extend(my_packet(seq, b"\x08abcdefgh"));
        }
        s.extend(my_packet(7, &[0xfe, 0, 0, 2, 0]));
        s
    } else {
        my_packet(1, &[0, 2, 0, 2, 0, 0, 0])
    };
    (client, server)
}

/// `rounds` of the statements through one MySQL connection; returns the
/// answers seen.
fn my_session(rounds: usize) -> usize {
    let mut c = MySqlConn::new();
    let mut login = 0x8208u32.to_le_bytes().to_vec();
    login.extend_from_slice(&[0, 0, 0, 1, 45]);
    login.extend_from_slice(&[0; 23]);
    login.extend_from_slice(b"verifier\0\x02ab\0prod\0");
    c.feed(Side::Client, &my_packet(1, &login));
    c.feed(Side::Server, &my_packet(2, &[0, 0, 0, 2, 0, 0, 0]));
    let exchanges: Vec<(Vec<u8>, Vec<u8>)> = STATEMENTS
        .iter()
        .map(|(s, _)| my_exchange(s, s.starts_with("SELECT")))
        .collect();
    let mut seen = 0;
    for _ in 0..rounds {
        for (q, a) in &exchanges {
            for chunk in q.chunks(4096) {
                c.feed(Side::Client, chunk);
            }
            for chunk in a.chunks(4096) {
                seen += c.feed(Side::Server, chunk).len();
            }
        }
    }
    seen
}

fn main() {
    let statements = arg("--statements", 600_000);
    let rounds = statements / STATEMENTS.len();

    // Parse only.
    let start = Instant::now();
    let parsed = session(rounds, None, |_| {});
    let parse_rate = parsed as f64 / start.elapsed().as_secs_f64();
    assert_eq!(
        parsed,
        rounds * STATEMENTS.len(),
        "every statement comes out"
    );

    // Parse + detection, for an agent that learned 3 runs.
    let selector = Selector::new(&SelectorConfig {
        cmdline: Some(r"/srv/agents/verifier\.py$".into()),
        name: Some("verifier".into()),
        ..Default::default()
    })
    .expect("bench selector");
    let settings = Settings {
        naming: Naming::new(vec![selector]),
        ..Default::default()
    };
    let mut agents = Agents::load_with(None, settings).expect("agents in memory");
    let mut ts = 1_700_000_000_000_000_000u64;
    for run in 0..3u32 {
        let p = process(100 + run);
        session(2, None, |pair| {
            ts += 50_000;
            agents.observe(&mut event(&p, ts, pair));
        });
        let mut exit = Event {
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
        agents.observe(&mut exit);
    }
    let _ = agents.take_mode_changes();
    let p = process(200);
    let mut findings = 0usize;
    let mut json = 0usize;
    let start = Instant::now();
    let seen = session(rounds, Some("DROP TABLE staging_sessions"), |pair| {
        ts += 50_000;
        let mut ev = event(&p, ts, pair);
        let out = agents.observe(&mut ev);
        json += ev.to_json().len();
        findings += out.len();
    });
    let full_rate = seen as f64 / start.elapsed().as_secs_f64();
    assert!(findings >= 1, "the DROP raised no finding");
    assert!(json > 0);

    // MySQL, parse only.
    let start = Instant::now();
    let answered = my_session(rounds);
    let my_rate = answered as f64 / start.elapsed().as_secs_f64();
    assert_eq!(
        answered,
        rounds * STATEMENTS.len(),
        "every answer comes out"
    );
    println!(
        "{parse_rate:.0} statements/s parsed; {full_rate:.0} statements/s parsed and detected; {my_rate:.0} MySQL statements/s parsed ({findings} findings, {seen} statements)"
    );
}
