use super::*;
use crate::db::tests::{requests, results};

fn packet(seq: u8, body: &[u8]) -> Vec<u8> {
    let mut p = (body.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend_from_slice(body);
    p
}

const CAPS: u32 = CLIENT_PROTOCOL_41
    | CLIENT_SECURE_CONNECTION
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PLUGIN_AUTH_LENENC_DATA;

/// A handshake response of `user` to `db`, its authentication data
/// holding a planted secret.
fn handshake(caps: u32, seq: u8, user: &str, db: &str) -> Vec<u8> {
    let mut b = caps.to_le_bytes().to_vec();
    b.extend_from_slice(&(1u32 << 24).to_le_bytes());
    b.push(45);
    b.extend_from_slice(&[0; 23]);
    b.extend_from_slice(user.as_bytes());
    b.push(0);
    let auth = b"PLANTED-scramble-0123";
    b.push(auth.len() as u8);
    b.extend_from_slice(auth);
    b.extend_from_slice(db.as_bytes());
    b.push(0);
    b.extend_from_slice(b"mysql_native_password\0");
    packet(seq, &b)
}

fn ok(seq: u8, affected: u8, status: u16) -> Vec<u8> {
    let mut b = vec![0x00, affected, 0];
    b.extend_from_slice(&status.to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    packet(seq, &b)
}

fn err(seq: u8, state: &str) -> Vec<u8> {
    let mut b = vec![0xff, 0x7a, 0x04, b'#'];
    b.extend_from_slice(state.as_bytes());
    b.extend_from_slice(b"Table 'PLANTED-value' doesn't exist");
    packet(seq, &b)
}

fn eof(seq: u8, status: u16) -> Vec<u8> {
    let mut b = vec![0xfe, 0, 0];
    b.extend_from_slice(&status.to_le_bytes());
    packet(seq, &b)
}

fn command(typ: u8, rest: &[u8]) -> Vec<u8> {
    let mut b = vec![typ];
    b.extend_from_slice(rest);
    packet(0, &b)
}

fn query(sql: &str) -> Vec<u8> {
    command(COM_QUERY, sql.as_bytes())
}

/// A text result set: `columns` definitions, `rows` rows of a planted
/// value, ended by EOF (or an OK with DEPRECATE_EOF).
fn result_set(columns: u8, rows: usize, deprecate_eof: bool) -> Vec<u8> {
    let mut seq = 1;
    let mut next = || {
        seq += 1;
        seq - 1
    };
    let mut out = packet(next(), &[columns]);
    for _ in 0..columns {
        out.extend(packet(next(), b"\x03def\x04prod\x01t\x01t\x02id\x02id\x0c"));
    }
    if !deprecate_eof {
        out.extend(eof(next(), 2));
    }
    for _ in 0..rows {
        out.extend(packet(next(), b"\x0fPLANTED-row-val"));
    }
    if deprecate_eof {
        out.extend(packet(next(), &[0xfe, 0, 0, 2, 0, 0, 0]));
    } else {
        out.extend(eof(next(), 2));
    }
    out
}

fn login(caps: u32) -> Vec<(Side, Vec<u8>)> {
    vec![
        (Side::Client, handshake(caps, 1, "verifier", "prod")),
        // An authentication switch and its answer: never read.
        (
            Side::Server,
            packet(2, b"\xfemysql_native_password\0PLANTED-nonce"),
        ),
        (Side::Client, packet(3, b"PLANTED-auth-response")),
        (Side::Server, ok(4, 0, 2)),
    ]
}

fn talk(turns: &[(Side, Vec<u8>)]) -> Vec<Message> {
    let mut c = MySqlConn::new();
    turns
        .iter()
        .flat_map(|(side, bytes)| c.feed(*side, bytes))
        .collect()
}

fn no_planted(out: &[Message]) {
    let all = format!("{out:?}");
    assert!(!all.contains("PLANTED"), "{all}");
}

#[test]
fn a_text_query_is_a_request_answered_by_its_rows() {
    let mut turns = login(CAPS);
    turns.push((
        Side::Client,
        query("SELECT count(*) FROM staging_sessions WHERE token = 'PLANTED-x'"),
    ));
    turns.push((Side::Server, result_set(2, 3, false)));
    turns.push((
        Side::Client,
        query("DELETE FROM staging_sessions WHERE id = 4"),
    ));
    turns.push((Side::Server, ok(1, 2, 2)));
    let out = talk(&turns);
    no_planted(&out);
    let reqs = requests(&out);
    assert_eq!(reqs.len(), 2, "{out:?}");
    assert_eq!(reqs[0].engine, "mysql");
    assert_eq!(reqs[0].user.as_deref(), Some("verifier"));
    assert_eq!(reqs[0].database.as_deref(), Some("prod"));
    assert_eq!(reqs[0].protocol, "text");
    assert_eq!(
        reqs[0].statement.template,
        "SELECT count(*) FROM staging_sessions WHERE token = ?"
    );
    assert_eq!(reqs[1].statement.kind, "delete");
    let res = results(&out);
    assert_eq!(res.len(), 2, "{out:?}");
    assert_eq!((res[0].outcome, res[0].rows), (Outcome::Ok, Some(3)));
    assert_eq!((res[1].outcome, res[1].rows), (Outcome::Ok, Some(2)));
}

#[test]
fn rows_end_with_an_ok_when_eof_is_deprecated() {
    let mut turns = login(CAPS | CLIENT_DEPRECATE_EOF);
    for rows in [4, 0] {
        turns.push((Side::Client, query("SELECT id FROM t")));
        turns.push((Side::Server, result_set(1, rows, true)));
    }
    let out = talk(&turns);
    let res = results(&out);
    assert_eq!(res.len(), 2, "{out:?}");
    assert_eq!(res[0].rows, Some(4));
    assert_eq!(res[1].rows, Some(0));
}

#[test]
fn an_error_keeps_its_sqlstate_never_its_message() {
    let mut turns = login(CAPS);
    turns.push((Side::Client, query("DROP TABLE no_such_table")));
    turns.push((Side::Server, err(1, "42S02")));
    let out = talk(&turns);
    no_planted(&out);
    let res = results(&out);
    assert_eq!(res[0].outcome, Outcome::Error);
    assert_eq!(res[0].sqlstate.as_deref(), Some("42S02"));
    assert_eq!(requests(&out)[0].statement.kind, "drop");
}

#[test]
fn prepared_statements_run_by_id_and_values_are_never_read() {
    let mut turns = login(CAPS);
    turns.push((
        Side::Client,
        command(
            COM_STMT_PREPARE,
            b"SELECT token FROM staging_sessions WHERE id = ?",
        ),
    ));
    // PREPARE_OK: id 7, one column, one parameter; then a parameter
    // definition and EOF, a column definition and EOF.
    let mut prep = packet(1, &[0, 7, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]);
    for seq in 2..6 {
        prep.extend(if seq % 2 == 0 {
            packet(seq, b"\x03def\x01?")
        } else {
            eof(seq, 2)
        });
    }
    turns.push((Side::Server, prep));
    // Execute 7 with a planted value, then the binary rows.
    let mut exec = vec![7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0xfe, 0];
    exec.extend_from_slice(b"\x0bPLANTED-val");
    turns.push((Side::Client, command(COM_STMT_EXECUTE, &exec)));
    let mut rows = packet(1, &[1]);
    rows.extend(packet(2, b"\x03def"));
    rows.extend(eof(3, 2));
    rows.extend(packet(4, b"\x00\x00\x03abc"));
    rows.extend(eof(5, 2));
    turns.push((Side::Server, rows));
    turns.push((Side::Client, command(COM_STMT_CLOSE, &[7, 0, 0, 0])));
    // Closed: an execute of 7 is of a statement not known.
    turns.push((Side::Client, command(COM_STMT_EXECUTE, &exec)));
    turns.push((Side::Server, ok(1, 0, 2)));
    let out = talk(&turns);
    no_planted(&out);
    let reqs = requests(&out);
    assert_eq!(reqs.len(), 2, "{out:?}");
    assert_eq!(reqs[0].protocol, "prepared");
    assert_eq!(
        reqs[0].statement.template,
        "SELECT token FROM staging_sessions WHERE id = ?"
    );
    assert!(reqs[1].statement.truncated);
    let res = results(&out);
    assert_eq!((res[0].outcome, res[0].rows), (Outcome::Ok, Some(1)));
}

#[test]
fn mariadb_pipelines_an_execute_of_the_statement_prepared_before_it() {
    let mut turns = login(CAPS | CLIENT_DEPRECATE_EOF);
    let mut both = command(COM_STMT_PREPARE, b"DELETE FROM t WHERE id = ?");
    both.extend(command(
        COM_STMT_EXECUTE,
        &[0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0, 0, 1, 3, 0, 9],
    ));
    turns.push((Side::Client, both));
    // PREPARE_OK with one parameter (no EOF: deprecated), then the OK.
    let mut answer = packet(1, &[0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    answer.extend(packet(2, b"\x03def"));
    answer.extend(ok(1, 1, 2));
    turns.push((Side::Server, answer));
    let out = talk(&turns);
    let reqs = requests(&out);
    assert_eq!(reqs.len(), 1, "{out:?}");
    assert_eq!(reqs[0].statement.template, "DELETE FROM t WHERE id = ?");
    assert_eq!(results(&out)[0].rows, Some(1));
}

#[test]
fn a_statement_the_server_refused_to_prepare_is_a_failed_request() {
    let mut turns = login(CAPS);
    turns.push((
        Side::Client,
        command(COM_STMT_PREPARE, b"DROP TABLE prod_orders"),
    ));
    turns.push((Side::Server, err(1, "42000")));
    let out = talk(&turns);
    let reqs = requests(&out);
    assert_eq!(reqs.len(), 1, "{out:?}");
    assert_eq!(reqs[0].statement.kind, "drop");
    assert_eq!(results(&out)[0].outcome, Outcome::Error);
}

#[test]
fn several_results_of_one_query_are_one_answer() {
    let mut turns = login(CAPS);
    turns.push((Side::Client, query("DELETE FROM a; SELECT id FROM b")));
    let mut answer = ok(1, 5, SERVER_MORE_RESULTS_EXIST | 2);
    let mut rs = result_set(1, 2, false);
    // Renumber: the second result continues the sequence (not checked).
    rs[3] = 2;
    answer.extend(rs);
    turns.push((Side::Server, answer));
    let out = talk(&turns);
    let res = results(&out);
    assert_eq!(res.len(), 1, "{out:?}");
    assert_eq!(res[0].rows, Some(7));
}

#[test]
fn the_database_changes_with_init_db_and_the_user_with_change_user() {
    let mut turns = login(CAPS);
    turns.push((Side::Client, command(COM_INIT_DB, b"staging")));
    turns.push((Side::Server, ok(1, 0, 2)));
    turns.push((Side::Client, query("SELECT 1")));
    turns.push((Side::Server, ok(1, 0, 2)));
    let mut change = b"migrator\0".to_vec();
    change.push(8);
    change.extend_from_slice(b"PLANTED8prod\0");
    turns.push((Side::Client, command(COM_CHANGE_USER, &change)));
    turns.push((Side::Server, ok(1, 0, 2)));
    turns.push((Side::Client, query("SELECT 2")));
    let out = talk(&turns);
    no_planted(&out);
    let reqs = requests(&out);
    assert_eq!(reqs[0].database.as_deref(), Some("staging"));
    assert_eq!(reqs[1].user.as_deref(), Some("migrator"));
    assert_eq!(reqs[1].database.as_deref(), Some("prod"));
}

#[test]
fn byte_by_byte_reads_as_whole() {
    let mut turns = login(CAPS);
    turns.push((Side::Client, query("UPDATE t SET a = 1")));
    turns.push((Side::Server, ok(1, 9, 2)));
    turns.push((Side::Client, query("SELECT a FROM t")));
    turns.push((Side::Server, result_set(3, 5, false)));
    let whole = talk(&turns);
    let mut c = MySqlConn::new();
    let mut split = Vec::new();
    for (side, bytes) in &turns {
        for b in bytes {
            split.extend(c.feed(*side, std::slice::from_ref(b)));
        }
    }
    assert_eq!(requests(&whole), requests(&split));
    assert_eq!(results(&whole), results(&split));
    assert_eq!(results(&whole).len(), 2);
}

#[test]
fn a_gap_in_an_answer_leaves_it_unknown_and_the_next_command_is_read() {
    let mut c = MySqlConn::new();
    for (side, bytes) in login(CAPS) {
        c.feed(side, &bytes);
    }
    let mut out = c.feed(Side::Client, &query("SELECT a FROM t"));
    let rs = result_set(1, 50, false);
    out.extend(c.feed(Side::Server, &rs[..40]));
    out.extend(c.gap(Side::Server, (rs.len() - 60) as u64));
    out.extend(c.feed(Side::Server, &rs[rs.len() - 20..]));
    out.extend(c.feed(Side::Client, &query("DROP TABLE t")));
    out.extend(c.feed(Side::Server, &ok(1, 0, 2)));
    let res = results(&out);
    assert_eq!(res.len(), 2, "{out:?}");
    assert_eq!(res[0].outcome, Outcome::Unknown);
    assert_eq!(res[1].outcome, Outcome::Ok);
    assert_eq!(requests(&out)[1].statement.kind, "drop");
    // A gap in the client's direction mid-command: its text is cut.
    let q = query("SELECT b FROM t WHERE c = 1");
    let mut out = c.feed(Side::Client, &q[..12]);
    out.extend(c.gap(Side::Client, (q.len() - 12) as u64));
    assert!(requests(&out)[0].statement.truncated, "{out:?}");
}

#[test]
fn the_compressed_protocol_is_named_not_misread() {
    let out = talk(&[
        (
            Side::Client,
            handshake(CAPS | CLIENT_COMPRESS, 1, "verifier", "prod"),
        ),
        (Side::Server, ok(2, 0, 2)),
        (Side::Client, query("SELECT 1")),
    ]);
    assert!(
        matches!(&out[..], [Message::Error(e)] if e.contains("compressed")),
        "{out:?}"
    );
}

#[test]
fn handshakes_are_told_from_ssl_requests_and_other_bytes() {
    let h = handshake(CAPS, 1, "verifier", "prod");
    assert!(is_handshake(&h));
    // Inside TLS, after SSLRequest.
    assert!(is_handshake(&handshake(CAPS | CLIENT_SSL, 2, "u", "")));
    let ssl_request = &handshake(CAPS | CLIENT_SSL, 1, "", "")[..36];
    let mut ssl_request = ssl_request.to_vec();
    ssl_request[0] = 32;
    assert!(!is_handshake(&ssl_request));
    assert!(!is_handshake(
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n0123456789"
    ));
    assert!(!is_handshake(&[0; 64]));
    // A client of the old protocol (no PROTOCOL_41).
    assert!(!is_handshake(&handshake(
        CLIENT_SECURE_CONNECTION,
        1,
        "u",
        "d"
    )));
}

#[test]
fn a_refused_login_reads_nothing_more() {
    let out = talk(&[
        (Side::Client, handshake(CAPS, 1, "verifier", "prod")),
        (Side::Server, err(2, "28000")),
        (Side::Client, query("SELECT 1")),
    ]);
    assert!(out.is_empty(), "{out:?}");
}
