use super::*;
use crate::db::{
    DbResult,
    tests::{requests, results},
};

fn msg(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![typ];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn startup(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut body = vec![0, 3, 0, 0];
    for (k, v) in pairs {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut m = (body.len() as u32 + 4).to_be_bytes().to_vec();
    m.extend_from_slice(&body);
    m
}

fn cstrs(parts: &[&[u8]]) -> Vec<u8> {
    parts
        .iter()
        .flat_map(|p| p.iter().copied().chain([0]))
        .collect()
}

fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', &cstrs(&[sql.as_bytes()]))
}

fn complete(tag: &str) -> Vec<u8> {
    msg(b'C', &cstrs(&[tag.as_bytes()]))
}

fn ready() -> Vec<u8> {
    msg(b'Z', b"I")
}

fn error(code: &str, message: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (f, v) in [(b'S', "ERROR"), (b'C', code), (b'M', message)] {
        b.push(f);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
    }
    b.push(0);
    msg(b'E', &b)
}

fn client_login() -> Vec<u8> {
    let mut c = startup(&[
        ("user", "verifier"),
        ("database", "prod"),
        ("options", "-c x=PLANTED"),
    ]);
    // SCRAM's client messages: never read.
    c.extend(msg(b'p', b"SCRAM-SHA-256\0\0\0\0\x20n,,n=,r=PLANTEDnonce"));
    c
}

fn server_login() -> Vec<u8> {
    let mut s = msg(b'R', &[0, 0, 0, 0]);
    s.extend(msg(b'S', b"server_version\x0016\0"));
    s.extend(msg(b'K', b"\0\0\x30\x39PLANTED!"));
    s.extend(ready());
    s
}

/// Runs a conversation (client bytes, then server bytes, in turns).
fn talk(turns: &[(Side, Vec<u8>)]) -> Vec<Message> {
    let mut pg = PgConn::new();
    turns
        .iter()
        .flat_map(|(side, bytes)| pg.feed(*side, bytes))
        .collect()
}

#[test]
fn startup_is_recognised_by_its_protocol_version() {
    assert!(is_startup(&startup(&[("user", "u")])));
    // SSLRequest, CancelRequest, HTTP: not a startup.
    assert!(!is_startup(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]));
    assert!(!is_startup(&[
        0, 0, 0, 16, 4, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2
    ]));
    assert!(!is_startup(b"GET / HTTP/1.1\r\n"));
}

#[test]
fn simple_query_is_a_request_answered_at_ready_for_query() {
    let out = talk(&[
        (Side::Client, client_login()),
        (Side::Server, server_login()),
        (
            Side::Client,
            query("DELETE FROM sessions WHERE user_id = 42"),
        ),
        (Side::Server, [complete("DELETE 3"), ready()].concat()),
    ]);
    let reqs = requests(&out);
    assert_eq!(reqs.len(), 1, "{out:?}");
    let r = reqs[0];
    assert_eq!(r.user.as_deref(), Some("verifier"));
    assert_eq!(r.database.as_deref(), Some("prod"));
    assert_eq!(r.protocol, "simple");
    assert_eq!(
        r.statement.template,
        "DELETE FROM sessions WHERE user_id = ?"
    );
    assert_eq!(r.statement.kind, "delete");
    let res = results(&out);
    assert_eq!(
        res,
        [&DbResult {
            outcome: Outcome::Ok,
            rows: Some(3),
            sqlstate: None
        }]
    );
    // Nothing secret read: the SCRAM nonce, the cancel key, the options.
    assert!(!format!("{out:?}").contains("PLANTED"), "{out:?}");
    // The request carries the bytes of its message, the response those
    // of its answer.
    match &out[0] {
        Message::Request { bytes, .. } => assert_eq!(
            *bytes,
            query("DELETE FROM sessions WHERE user_id = 42").len() as u64
                + client_login().len() as u64
        ),
        m => panic!("{m:?}"),
    }
}

#[test]
fn several_statements_in_one_query_sum_their_rows() {
    let out = talk(&[
        (Side::Client, client_login()),
        (
            Side::Client,
            query("UPDATE a SET x = 1 WHERE id = 2; DROP TABLE staging_sessions"),
        ),
        (
            Side::Server,
            [complete("UPDATE 2"), complete("DROP TABLE"), ready()].concat(),
        ),
    ]);
    assert_eq!(requests(&out)[0].statement.kind, "drop");
    assert_eq!(results(&out)[0].rows, Some(2));
}

#[test]
fn extended_query_executes_the_bound_statement() {
    let parse = msg(
        b'P',
        &cstrs(&[b"s1", b"SELECT * FROM accounts WHERE email = $1", b"\0\0"]),
    );
    let bind = msg(
        b'B',
        &cstrs(&[b"", b"s1", b"\0\0\0\x01\0\0\0\x0bPLANTED@x.y\0\0"]),
    );
    let exec = msg(b'E', b"\0\0\0\0\0");
    let sync = msg(b'S', b"");
    let out = talk(&[
        (Side::Client, client_login()),
        (
            Side::Client,
            [parse, bind, msg(b'D', b"P\0"), exec, sync].concat(),
        ),
        (
            Side::Server,
            [
                msg(b'1', b""),
                msg(b'2', b""),
                msg(b'T', b"\0\x01id\0..."),
                msg(b'D', b"\0\x01\0\0\0\x07PLANTED"),
                msg(b'D', b"\0\x01\0\0\0\x01x"),
                complete("SELECT 2"),
                ready(),
            ]
            .concat(),
        ),
    ]);
    let reqs = requests(&out);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].protocol, "extended");
    assert_eq!(
        reqs[0].statement.template,
        "SELECT * FROM accounts WHERE email = ?"
    );
    assert_eq!(results(&out)[0].rows, Some(2));
    assert!(!format!("{out:?}").contains("PLANTED"));
}

#[test]
fn an_error_fails_every_execute_up_to_sync() {
    let p = |sql: &str| msg(b'P', &cstrs(&[b"", sql.as_bytes(), b"\0\0"]));
    let b = msg(b'B', &cstrs(&[b"", b"", b"\0\0\0\0\0\0"]));
    let e = msg(b'E', b"\0\0\0\0\0");
    let client = [
        p("SELECT * FROM missing"),
        b.clone(),
        e.clone(),
        p("SELECT 1"),
        b,
        e,
        msg(b'S', b""),
    ]
    .concat();
    let out = talk(&[
        (Side::Client, client_login()),
        (Side::Client, client),
        (
            Side::Server,
            [error("42P01", "relation \"missing\" PLANTED"), ready()].concat(),
        ),
    ]);
    assert_eq!(requests(&out).len(), 2);
    let res = results(&out);
    assert_eq!(res.len(), 2, "{out:?}");
    for r in res {
        assert_eq!(r.outcome, Outcome::Error);
        assert_eq!(r.sqlstate.as_deref(), Some("42P01"));
    }
    assert!(!format!("{out:?}").contains("PLANTED"));
}

#[test]
fn byte_by_byte_is_the_same_as_whole() {
    let turns = [
        (
            Side::Client,
            [client_login(), query("SELECT 1 FROM t")].concat(),
        ),
        (
            Side::Server,
            [server_login(), complete("SELECT 1"), ready()].concat(),
        ),
    ];
    let whole = talk(&turns);
    let mut pg = PgConn::new();
    let mut bytewise = Vec::new();
    for (side, bytes) in &turns {
        for b in bytes {
            bytewise.extend(pg.feed(*side, std::slice::from_ref(b)));
        }
    }
    assert_eq!(whole, bytewise);
    assert_eq!(whole.len(), 2);
}

#[test]
fn a_gap_inside_a_message_is_skipped() {
    let mut pg = PgConn::new();
    pg.feed(Side::Client, &client_login());
    // A long statement whose end was not captured: the template is cut
    // and marked, the framing kept.
    let long = query(&format!("INSERT INTO t VALUES ('{}')", "x".repeat(5000)));
    let mut out = pg.feed(Side::Client, &long[..2000]);
    out.extend(pg.gap(Side::Client, (long.len() - 2000) as u64));
    out.extend(pg.feed(Side::Server, &[complete("INSERT 0 1"), ready()].concat()));
    let reqs = requests(&out);
    assert_eq!(reqs.len(), 1, "{out:?}");
    assert!(reqs[0].statement.truncated);
    assert_eq!(results(&out)[0].rows, Some(1));
}

#[test]
fn a_gap_across_answers_completes_them_unknown_and_the_next_statement_resyncs() {
    let mut pg = PgConn::new();
    pg.feed(Side::Client, &client_login());
    let mut out = pg.feed(Side::Client, &query("SELECT * FROM big"));
    // Thousands of rows: the capture kept a prefix, the complete tag and
    // ReadyForQuery were in what was not kept.
    let rows: Vec<u8> = (0..100)
        .flat_map(|_| msg(b'D', b"\0\x01\0\0\0\x01x"))
        .collect();
    out.extend(pg.feed(Side::Server, &rows[..500]));
    out.extend(pg.gap(Side::Server, 100_000));
    assert!(results(&out).is_empty());
    out.extend(pg.feed(Side::Client, &query("DROP TABLE t")));
    out.extend(pg.feed(Side::Server, &[complete("DROP TABLE"), ready()].concat()));
    let res = results(&out);
    assert_eq!(res.len(), 2, "{out:?}");
    assert_eq!(res[0].outcome, Outcome::Unknown);
    assert_eq!(res[1].outcome, Outcome::Ok);
    assert_eq!(requests(&out)[1].statement.kind, "drop");
}

#[test]
fn a_bad_length_is_one_error_then_silence() {
    let mut pg = PgConn::new();
    pg.feed(Side::Client, &client_login());
    let out = pg.feed(Side::Server, &[b'C', 0, 0, 0, 1]);
    assert!(matches!(&out[..], [Message::Error(e)] if e.contains("length")));
    assert!(pg.feed(Side::Server, &[b'C', 0, 0, 0, 1]).is_empty());
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let mut pg = PgConn::new();
        pg.feed(Side::Client, &client_login());
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (seed >> (i % 8 * 8)) as u8 ^ b"QPBECZDS"[i % 8])
                .collect();
            let side = if seed & 1 == 0 {
                Side::Client
            } else {
                Side::Server
            };
            pg.feed(side, &bytes);
            if seed & 6 == 0 {
                pg.gap(side, seed % 300);
            }
        }
    }
}

#[test]
fn a_suspended_execute_counts_the_rows_it_returned() {
    let p = msg(b'P', &cstrs(&[b"", b"SELECT id FROM t", b"\0\0"]));
    let b = msg(b'B', &cstrs(&[b"", b"", b"\0\0\0\0\0\0"]));
    // Execute with a row limit of 2.
    let e = msg(b'E', b"\0\0\0\0\x02");
    let out = talk(&[
        (Side::Client, client_login()),
        (Side::Client, [p, b, e, msg(b'S', b"")].concat()),
        (
            Side::Server,
            [
                msg(b'1', b""),
                msg(b'2', b""),
                msg(b'D', b"\0\x01\0\0\0\x01x"),
                msg(b'D', b"\0\x01\0\0\0\x01y"),
                msg(b's', b""),
                ready(),
            ]
            .concat(),
        ),
    ]);
    assert_eq!(results(&out)[0].rows, Some(2), "{out:?}");
}
