//! Tests of `h2`: frames, HPACK, streams, and the bounds a hostile peer meets.

use loona_hpack::Encoder;

use super::*;

const REQ: Direction = Direction::Request;
const RESP: Direction = Direction::Response;

fn fp(v: &[u8]) -> String {
    format!("fp:{}", v.len())
}

fn frame(ty: u8, flags: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&sid.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn block(enc: &mut Encoder, headers: &[(&str, &str)]) -> Vec<u8> {
    enc.encode(headers.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
}

fn client_start() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])); // SETTINGS
    v
}

fn get(enc: &mut Encoder, sid: u32, path: &str) -> Vec<u8> {
    let b = block(
        enc,
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "api.example"),
            (":path", path),
            ("authorization", "Bearer sk-secret-h2"),
            // Not in the static table: indexed on first use, so a
            // second request takes it from the dynamic table.
            ("x-api-key", "k-dyn"),
        ],
    );
    frame(HEADERS, END_HEADERS | END_STREAM, sid, &b)
}

fn ok(enc: &mut Encoder, sid: u32, status: &str, body: &[u8]) -> Vec<u8> {
    let b = block(
        enc,
        &[(":status", status), ("content-type", "application/json")],
    );
    let mut v = frame(HEADERS, END_HEADERS, sid, &b);
    v.extend(frame(DATA, END_STREAM, sid, body));
    v
}

fn feed_all(c: &mut H2Conn, dir: Direction, d: &[u8]) -> Vec<H2Message> {
    c.feed(dir, d, &fp)
}

fn request(m: &H2Message) -> (u32, &str, &str) {
    match m {
        H2Message::Request {
            stream_id,
            method,
            path,
            ..
        } => (*stream_id, method, path),
        other => panic!("not a request: {other:?}"),
    }
}

fn response(m: &H2Message) -> (u32, u16, u64) {
    match m {
        H2Message::Response {
            stream_id,
            status,
            body_bytes,
            ..
        } => (*stream_id, *status, *body_bytes),
        other => panic!("not a response: {other:?}"),
    }
}

#[test]
fn preface_detection() {
    assert!(is_client_preface(PREFACE));
    assert!(is_client_preface(&PREFACE[..16]));
    assert!(!is_client_preface(&PREFACE[..10]));
    assert!(!is_client_preface(b"GET / HTTP/1.1\r\nHost: x\r\n"));
    assert!(is_server_preface(&frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])));
    assert!(!is_server_preface(&frame(0x4, 1, 0, &[])), "an ACK");
    assert!(!is_server_preface(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn get_and_its_response() {
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    let mut c = H2Conn::new();
    let mut d = client_start();
    d.extend(get(&mut ce, 1, "/v1/orders/7"));
    let m = feed_all(&mut c, REQ, &d);
    assert_eq!(m.len(), 1);
    assert_eq!(request(&m[0]), (1, "GET", "/v1/orders/7"));
    let H2Message::Request {
        authority,
        credentials,
        head_bytes,
        ..
    } = &m[0]
    else {
        unreachable!()
    };
    assert_eq!(authority.as_deref(), Some("api.example"));
    assert_eq!(credentials, &["fp:19", "fp:5"]);
    assert!(*head_bytes > 9);
    assert!(!format!("{m:?}").contains("sk-secret"), "no secret kept");
    let mut s = frame(0x4, 0, 0, &[]);
    s.extend(ok(&mut se, 1, "200", b"{\"ok\":true}"));
    let m = feed_all(&mut c, RESP, &s);
    assert_eq!(m.len(), 1);
    assert_eq!(response(&m[0]), (1, 200, 11));
}

#[test]
fn post_body_over_several_data_frames_byte_by_byte() {
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    let mut c = H2Conn::new();
    let mut d = client_start();
    let b = block(
        &mut ce,
        &[
            (":method", "POST"),
            (":path", "/v1/orders"),
            (":authority", "a"),
        ],
    );
    d.extend(frame(HEADERS, END_HEADERS, 3, &b));
    d.extend(frame(DATA, 0, 3, b"{\"sku\":"));
    d.extend(frame(DATA, END_STREAM, 3, b"\"A-1\"}"));
    let mut m = Vec::new();
    for byte in &d {
        m.extend(feed_all(&mut c, REQ, std::slice::from_ref(byte)));
    }
    assert_eq!(m.len(), 1);
    let H2Message::Request { body_bytes, .. } = &m[0] else {
        panic!("{m:?}")
    };
    assert_eq!(*body_bytes, 13);
    let m = feed_all(&mut c, RESP, &ok(&mut se, 3, "201", b"{}"));
    assert_eq!(response(&m[0]), (3, 201, 2));
}

#[test]
fn bodies_of_selected_streams_are_kept_bounded() {
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    let mut c = H2Conn::new();
    c.keep_bodies(16, |authority, path| {
        authority == "llm" && path == "/v1/messages"
    });
    let mut d = client_start();
    for (sid, authority) in [(1, "llm"), (3, "other")] {
        let b = block(
            &mut ce,
            &[
                (":method", "POST"),
                (":path", "/v1/messages"),
                (":authority", authority),
            ],
        );
        d.extend(frame(HEADERS, END_HEADERS, sid, &b));
        // Padded: pad length 2, then the body, then the padding.
        d.extend(frame(DATA, PADDED, sid, b"\x02{\"model\":xx"));
        d.extend(frame(DATA, END_STREAM, sid, b"\"m\"}"));
    }
    let m = feed_all(&mut c, REQ, &d);
    let bodies: Vec<_> = m
        .iter()
        .map(|m| match m {
            H2Message::Request {
                stream_id, body, ..
            } => (*stream_id, body.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        bodies,
        [
            (
                1,
                Some(Kept {
                    bytes: b"{\"model\":\"m\"}".to_vec(),
                    truncated: false,
                    ..Kept::default()
                })
            ),
            (3, None)
        ]
    );
    // The response of a kept request: its body (over the limit: cut
    // and marked) and content type.
    let b = block(
        &mut se,
        &[(":status", "200"), ("content-type", "text/event-stream")],
    );
    let mut r = frame(HEADERS, END_HEADERS, 1, &b);
    r.extend(frame(DATA, END_STREAM, 1, b"data: {\"usage\":{}}\n\n"));
    let m = feed_all(&mut c, RESP, &r);
    let [
        H2Message::Response {
            body: Some(k),
            content_type,
            ..
        },
    ] = &m[..]
    else {
        panic!("{m:?}")
    };
    assert_eq!(k.bytes, b"data: {\"usage\":{");
    assert!(k.truncated);
    assert_eq!(content_type.as_deref(), Some("text/event-stream"));
}

#[test]
fn a_gap_in_a_kept_body_marks_it_truncated() {
    let mut ce = Encoder::new();
    let mut c = H2Conn::new();
    c.keep_bodies(1024, |_, _| true);
    let mut d = client_start();
    let b = block(
        &mut ce,
        &[(":method", "POST"), (":path", "/x"), (":authority", "a")],
    );
    d.extend(frame(HEADERS, END_HEADERS, 1, &b));
    let data = frame(DATA, END_STREAM, 1, b"0123456789");
    d.extend_from_slice(&data[..13]); // header + 4 body bytes
    let mut m = feed_all(&mut c, REQ, &d);
    m.extend(c.gap(REQ, 6));
    let [
        H2Message::Request {
            body: Some(k),
            body_bytes,
            ..
        },
    ] = &m[..]
    else {
        panic!("{m:?}")
    };
    assert_eq!(*body_bytes, 10);
    assert_eq!(k.bytes, b"0123");
    assert!(k.truncated);
}

#[test]
fn interleaved_streams_and_dynamic_table_reuse() {
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    let mut c = H2Conn::new();
    let mut d = client_start();
    d.extend(get(&mut ce, 1, "/a"));
    d.extend(get(&mut ce, 3, "/b"));
    let m = feed_all(&mut c, REQ, &d);
    assert_eq!(request(&m[0]), (1, "GET", "/a"));
    assert_eq!(request(&m[1]), (3, "GET", "/b"));
    // The second request's x-api-key came from the dynamic table.
    let H2Message::Request {
        authority,
        credentials,
        ..
    } = &m[1]
    else {
        unreachable!()
    };
    assert_eq!(authority.as_deref(), Some("api.example"));
    assert_eq!(credentials, &["fp:19", "fp:5"]);
    let mut s = ok(&mut se, 3, "404", b"no");
    s.extend(ok(&mut se, 1, "200", b"yes!"));
    let m = feed_all(&mut c, RESP, &s);
    assert_eq!(response(&m[0]), (3, 404, 2));
    assert_eq!(response(&m[1]), (1, 200, 4));
}

#[test]
fn continuation_padding_and_priority() {
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    let mut c = H2Conn::new();
    let b = block(
        &mut ce,
        &[
            (":method", "DELETE"),
            (":path", "/v1/customers/9"),
            ("x-api-key", "k"),
        ],
    );
    let (first, rest) = b.split_at(b.len() / 2);
    let mut p = vec![3]; // pad length
    p.extend([0, 0, 0, 0, 16]); // priority: dependency + weight
    p.extend_from_slice(first);
    p.extend([0, 0, 0]);
    let mut d = client_start();
    d.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 5, &p));
    d.extend(frame(CONTINUATION, END_HEADERS, 5, rest));
    let m = feed_all(&mut c, REQ, &d);
    assert_eq!(request(&m[0]), (5, "DELETE", "/v1/customers/9"));
    // Padded DATA: only the body counts.
    let hb = block(&mut se, &[(":status", "204")]);
    let mut s = frame(HEADERS, END_HEADERS, 5, &hb);
    let mut data = vec![4];
    data.extend(b"abc");
    data.extend([0; 4]);
    s.extend(frame(DATA, PADDED | END_STREAM, 5, &data));
    let m = feed_all(&mut c, RESP, &s);
    assert_eq!(response(&m[0]), (5, 204, 3));
}

#[test]
fn interim_1xx_then_final_status_and_reset() {
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    let mut c = H2Conn::new();
    let mut d = client_start();
    d.extend(get(&mut ce, 1, "/slow"));
    d.extend(get(&mut ce, 3, "/cancelled"));
    feed_all(&mut c, REQ, &d);
    let b100 = block(&mut se, &[(":status", "103")]);
    let mut s = frame(HEADERS, END_HEADERS, 1, &b100);
    s.extend(ok(&mut se, 1, "200", b"x"));
    let m = feed_all(&mut c, RESP, &s);
    assert_eq!(response(&m[0]), (1, 200, 1));
    // The client gives up on stream 3: it ends with no response.
    assert!(feed_all(&mut c, REQ, &frame(RST_STREAM, 0, 3, &[0, 0, 0, 8])).is_empty());
    let m = feed_all(&mut c, RESP, &ok(&mut se, 3, "200", b""));
    assert!(m.is_empty(), "{m:?}");
}

#[test]
fn gaps_in_data_are_counted_and_in_headers_are_fatal() {
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    let mut c = H2Conn::new();
    let mut d = client_start();
    d.extend(get(&mut ce, 1, "/big"));
    feed_all(&mut c, REQ, &d);
    let hb = block(&mut se, &[(":status", "200")]);
    let mut s = frame(HEADERS, END_HEADERS, 1, &hb);
    let body = vec![b'z'; 5000];
    let data = frame(DATA, END_STREAM, 1, &body);
    s.extend_from_slice(&data[..109]); // header + 100 body bytes
    assert!(feed_all(&mut c, RESP, &s).is_empty());
    assert!(c.gap(RESP, 4000).is_empty());
    let m = feed_all(&mut c, RESP, &data[4109..]);
    assert_eq!(response(&m[0]), (1, 200, 5000));
    // A gap in a header block: one error, then silence.
    let m = c.gap(REQ, 7);
    assert!(matches!(&m[..], [H2Message::Error(_)]), "{m:?}");
    assert!(feed_all(&mut c, REQ, &get(&mut ce, 3, "/x")).is_empty());
}

#[test]
fn garbage_and_oversized_blocks_are_errors() {
    let mut c = H2Conn::new();
    let m = feed_all(&mut c, REQ, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n");
    assert!(matches!(&m[..], [H2Message::Error(_)]), "{m:?}");
    // Server side: a HEADERS frame announcing a block beyond the bound.
    let mut c = H2Conn::new();
    let len = MAX_BLOCK + 1;
    let hdr = [
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        HEADERS,
        0,
        0,
        0,
        0,
        1,
    ];
    let m = feed_all(&mut c, RESP, &hdr);
    assert!(
        matches!(&m[..], [H2Message::Error(e)] if e.contains("header block")),
        "{m:?}"
    );
    // An undecodable HPACK block (index 127+ into an empty table).
    let mut c = H2Conn::new();
    let mut d = client_start();
    d.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0xff, 0x7f]));
    let m = feed_all(&mut c, REQ, &d);
    assert!(
        matches!(&m[..], [H2Message::Error(e)] if e.contains("HPACK")),
        "{m:?}"
    );
    // Errors say what, never the bytes.
    assert!(!format!("{m:?}").contains("\\u{ff}"));
}

#[test]
fn every_prefix_and_every_byte_never_panics() {
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    let mut d = client_start();
    d.extend(get(&mut ce, 1, "/a"));
    let s = ok(&mut se, 1, "200", b"body");
    for cut in 0..d.len() {
        let mut c = H2Conn::new();
        feed_all(&mut c, REQ, &d[..cut]);
        c.gap(REQ, 3);
        feed_all(&mut c, REQ, &d[cut..]);
        for flip in 0..s.len() {
            let mut bad = s.clone();
            bad[flip] ^= 0xa5;
            feed_all(&mut c, RESP, &bad);
        }
    }
}

#[test]
fn empty_continuation_ends_a_block_with_its_credentials() {
    let mut ce = Encoder::new();
    let mut c = H2Conn::new();
    let b = block(
        &mut ce,
        &[
            (":method", "GET"),
            (":path", "/me"),
            ("authorization", "Bearer sk-secret-cont"),
        ],
    );
    let mut d = client_start();
    d.extend(frame(HEADERS, END_STREAM, 1, &b));
    d.extend(frame(CONTINUATION, END_HEADERS, 1, &[]));
    let m = feed_all(&mut c, REQ, &d);
    let [H2Message::Request { credentials, .. }] = &m[..] else {
        panic!("{m:?}")
    };
    assert_eq!(credentials, &["fp:21"]);
    assert!(!format!("{m:?}").contains("sk-secret"));
}

#[test]
fn reset_reports_what_each_side_had_sent() {
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    let mut c = H2Conn::new();
    let b = block(&mut ce, &[(":method", "PUT"), (":path", "/upload")]);
    let mut d = client_start();
    d.extend(frame(HEADERS, END_HEADERS, 1, &b));
    d.extend(frame(DATA, 0, 1, b"12345"));
    assert!(feed_all(&mut c, REQ, &d).is_empty());
    // The client abandons the upload: the request is reported as far
    // as it got. The reset's payload is not needed, so a gap there is
    // harmless.
    let rst = frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]);
    let m = feed_all(&mut c, REQ, &rst[..10]);
    let [H2Message::Request { body_bytes: 5, .. }] = &m[..] else {
        panic!("{m:?}")
    };
    assert!(c.gap(REQ, 3).is_empty());
    // The server answered a second stream's head, then reset it.
    let b = block(&mut ce, &[(":method", "GET"), (":path", "/stream")]);
    let d = frame(HEADERS, END_HEADERS | END_STREAM, 3, &b);
    assert_eq!(
        request(&feed_all(&mut c, REQ, &d)[0]),
        (3, "GET", "/stream")
    );
    let hb = block(&mut se, &[(":status", "200")]);
    let mut s = frame(HEADERS, END_HEADERS, 3, &hb);
    s.extend(frame(DATA, 0, 3, b"partial"));
    s.extend(frame(RST_STREAM, 0, 3, &[0, 0, 0, 2]));
    let m = feed_all(&mut c, RESP, &s);
    assert_eq!(response(&m[0]), (3, 200, 7));
}

#[test]
fn push_promise_keeps_the_server_table_in_step() {
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    let mut c = H2Conn::new();
    let mut d = client_start();
    d.extend(get(&mut ce, 1, "/page"));
    feed_all(&mut c, REQ, &d);
    // The promise adds x-pushed to the server's dynamic table; the
    // response below refers to it by index only.
    let mut p = 2u32.to_be_bytes().to_vec();
    p.extend(block(
        &mut se,
        &[
            (":method", "GET"),
            (":path", "/style.css"),
            ("x-pushed", "1"),
        ],
    ));
    let mut s = frame(PUSH_PROMISE, END_HEADERS, 1, &p);
    let hb = block(&mut se, &[(":status", "200"), ("x-pushed", "1")]);
    assert!(hb.contains(&0xbe), "x-pushed indexed from the table");
    s.extend(frame(HEADERS, END_HEADERS, 1, &hb));
    s.extend(frame(HEADERS, END_HEADERS, 2, &hb));
    s.extend(frame(DATA, END_STREAM, 2, b"body{}"));
    s.extend(frame(DATA, END_STREAM, 1, b"<html>"));
    let m = feed_all(&mut c, RESP, &s);
    assert_eq!(m.len(), 1, "pushed streams are not the client's calls");
    assert_eq!(response(&m[0]), (1, 200, 6));
}

#[test]
fn table_size_updates_are_honoured_and_bounded() {
    let mut ce = Encoder::new();
    let mut c = H2Conn::new();
    // Shrinking to 0 evicts everything; the block still decodes.
    let mut b = vec![0x20];
    b.extend(block(&mut ce, &[(":method", "GET"), (":path", "/a")]));
    let mut d = client_start();
    d.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &b));
    assert_eq!(request(&feed_all(&mut c, REQ, &d)[0]), (1, "GET", "/a"));
    // Growing to 100000 bytes is beyond what this sensor keeps.
    let mut b = vec![0x3f, 0x81, 0x8d, 0x06];
    b.extend([0x82, 0x84]);
    let m = feed_all(&mut c, REQ, &frame(HEADERS, END_HEADERS, 3, &b));
    assert!(
        matches!(&m[..], [H2Message::Error(e)] if e.contains("HPACK")),
        "{m:?}"
    );
}

/// RFC 7541 appendix C.4: three requests as a real encoder writes them,
/// Huffman-coded, the second and third reusing the dynamic table.
#[test]
fn rfc7541_huffman_requests() {
    let blocks: [&[u8]; 3] = [
        &[
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ],
        &[
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ],
        &[
            0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f,
            0x89, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
        ],
    ];
    let mut c = H2Conn::new();
    let mut d = client_start();
    for (n, b) in (0u32..).zip(blocks) {
        d.extend(frame(HEADERS, END_HEADERS | END_STREAM, 2 * n + 1, b));
    }
    let m = feed_all(&mut c, REQ, &d);
    let got: Vec<_> = m
        .iter()
        .map(|m| match m {
            H2Message::Request {
                path, authority, ..
            } => (path.as_str(), authority.as_deref()),
            other => panic!("{other:?}"),
        })
        .collect();
    let host = Some("www.example.com");
    assert_eq!(got, [("/", host), ("/", host), ("/index.html", host)]);
}

#[test]
fn stream_count_is_bounded() {
    let mut ce = Encoder::new();
    let mut c = H2Conn::new();
    let mut d = client_start();
    for n in 0..=MAX_STREAMS as u32 {
        let b = block(&mut ce, &[(":method", "POST"), (":path", "/p")]);
        d.extend(frame(HEADERS, END_HEADERS, 2 * n + 1, &b));
    }
    let m = feed_all(&mut c, REQ, &d);
    assert!(
        matches!(&m[..], [H2Message::Error(e)] if e.contains("stream 1 ")),
        "{m:?}"
    );
    assert!(feed_all(&mut c, REQ, &frame(DATA, END_STREAM, 1, b"x")).is_empty());
    let m = feed_all(&mut c, REQ, &frame(DATA, END_STREAM, 3, b"x"));
    assert_eq!(request(&m[0]), (3, "POST", "/p"));
}

#[test]
fn empty_gaps_and_lost_pad_lengths_do_not_lose_the_side() {
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    let mut c = H2Conn::new();
    let mut d = client_start();
    d.extend(get(&mut ce, 1, "/a"));
    let cut = d.len() - 3;
    feed_all(&mut c, REQ, &d[..cut]);
    assert!(c.gap(REQ, 0).is_empty(), "nothing was lost");
    assert_eq!(request(&feed_all(&mut c, REQ, &d[cut..])[0]).0, 1);
    // The pad-length byte of a padded DATA frame is lost: its body is
    // still counted (padding included, as its size is unknown).
    let hb = block(&mut se, &[(":status", "200")]);
    let mut s = frame(HEADERS, END_HEADERS, 1, &hb);
    let mut data = vec![2];
    data.extend(b"abcd");
    data.extend([0; 2]);
    s.extend(frame(DATA, PADDED | END_STREAM, 1, &data));
    let (head, tail) = s.split_at(s.len() - data.len());
    assert!(feed_all(&mut c, RESP, head).is_empty());
    assert!(c.gap(RESP, 1).is_empty());
    let m = feed_all(&mut c, RESP, &tail[1..]);
    assert_eq!(response(&m[0]), (1, 200, 6));
}

/// Counts the credential bytes a connection makes the sensor HMAC.
#[derive(Default)]
struct Counting {
    calls: std::cell::Cell<usize>,
    bytes: std::cell::Cell<usize>,
}

impl Credentials for Counting {
    fn is_secret(&self, name: &str) -> bool {
        name == "authorization"
    }
    fn fingerprint(&self, value: &[u8]) -> String {
        self.calls.set(self.calls.get() + 1);
        self.bytes.set(self.bytes.get() + value.len());
        fp(value)
    }
}

/// An HPACK integer of `prefix` bits after the representation's
/// `first` bits (RFC 7541 §5.1).
fn hpack_int(first: u8, prefix: u32, mut n: usize, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if n < max {
        out.push(first | n as u8);
        return;
    }
    out.push(first | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// A GET of `/` whose authorization field is a literal added to the
/// dynamic table (index 62) of `len` bytes.
fn indexed_credential(len: usize) -> Vec<u8> {
    let mut b = vec![0x82, 0x84, 0x87, 0x40, 13];
    b.extend(b"authorization");
    hpack_int(0, 7, len, &mut b);
    b.extend(std::iter::repeat_n(b'k', len));
    b
}

#[test]
fn a_header_block_of_references_costs_what_its_bytes_allow() {
    // Issue 19, finding 2: one 4000-byte credential put in the table,
    // then 200,000 one-byte references to it. Each reference was
    // fingerprinted: 800 MB of HMAC for a 200 KB block.
    let creds = Counting::default();
    let mut c = H2Conn::new();
    c.feed(REQ, &client_start(), &creds);
    let mut b = indexed_credential(4000);
    b.extend(std::iter::repeat_n(0xbe, 200_000));
    let m = c.feed(
        REQ,
        &frame(HEADERS, END_HEADERS | END_STREAM, 1, &b),
        &creds,
    );
    assert_eq!(creds.calls.get(), MAX_CREDENTIALS);
    assert!(creds.bytes.get() <= MAX_LIST);
    let said = m
        .iter()
        .any(|m| matches!(m, H2Message::Error(e) if e.contains("199993 fields not read")));
    assert!(said, "no message says what was not read");
    assert_eq!(request(m.last().unwrap()), (1, "GET", "/"));

    // A small block may read 16 KiB and 16 bytes per byte of its own:
    // eight references of 4000 bytes in a 12-byte block read four.
    let creds = Counting::default();
    let mut b = vec![0x82, 0x84, 0x87];
    b.extend([0xbe; 8]);
    let m = c.feed(
        REQ,
        &frame(HEADERS, END_HEADERS | END_STREAM, 3, &b),
        &creds,
    );
    assert_eq!(creds.calls.get(), 4, "{m:?}");
    assert!(matches!(&m[0], H2Message::Error(e) if e.contains("4 fields not read")));
    assert_eq!(request(&m[1]), (3, "GET", "/"));
}

#[test]
fn the_table_grows_only_as_far_as_the_other_side_allowed() {
    // A table size update to 64 KiB before the server's SETTINGS said
    // so: the 4 KiB default holds and the client side is lost.
    let mut b = Vec::new();
    hpack_int(0x20, 5, 65536, &mut b);
    b.extend([0x82, 0x84, 0x87]);
    let mut c = H2Conn::new();
    feed_all(&mut c, REQ, &client_start());
    let m = feed_all(
        &mut c,
        REQ,
        &frame(HEADERS, END_HEADERS | END_STREAM, 1, &b),
    );
    assert!(
        matches!(&m[..], [H2Message::Error(e)] if e.contains("undecodable")),
        "{m:?}"
    );
    // After the server's SETTINGS_HEADER_TABLE_SIZE of 65536 it decodes.
    let mut c = H2Conn::new();
    feed_all(&mut c, REQ, &client_start());
    let settings = frame(SETTINGS, 0, 0, &[0, 1, 0, 1, 0, 0]);
    assert!(feed_all(&mut c, RESP, &settings).is_empty());
    let m = feed_all(
        &mut c,
        REQ,
        &frame(HEADERS, END_HEADERS | END_STREAM, 1, &b),
    );
    assert_eq!(request(&m[0]), (1, "GET", "/"));
}
