use flate2::{Compress, Compression, FlushCompress};

use super::*;

const LIMIT: usize = 256 * 1024;

/// A frame as a client (masked) or a server (not) sends it.
fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n <= 0xffff => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// permessage-deflate as a sender does it: sync flush, tail stripped.
fn deflate(c: &mut Compress, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    c.compress_vec(msg, &mut out, FlushCompress::Sync).unwrap();
    while out.capacity() - out.len() < 64 {
        out.reserve(1024);
        c.compress_vec(&[], &mut out, FlushCompress::Sync).unwrap();
    }
    assert!(
        out.ends_with(&DEFLATE_TAIL),
        "sync flush ends with the tail"
    );
    out.truncate(out.len() - 4);
    out
}

fn data(m: &WsMessage) -> (bool, &[u8], bool) {
    match m {
        WsMessage::Data {
            from_client,
            payload,
            truncated,
            ..
        } => (*from_client, payload, *truncated),
        other => panic!("not a data message: {other:?}"),
    }
}

fn feed_bytewise(c: &mut WsConn, from_client: bool, bytes: &[u8]) -> Vec<WsMessage> {
    bytes
        .iter()
        .flat_map(|b| c.feed(from_client, std::slice::from_ref(b)))
        .collect()
}

#[test]
fn masked_client_and_plain_server_messages() {
    let mut c = WsConn::new(None, LIMIT);
    let req = br#"{"type":"response.create","model":"gpt-5"}"#;
    let mut bytes = frame(true, false, 1, req, Some(KEY));
    bytes.extend(frame(true, false, 1, b"second", Some(KEY)));
    let out = c.feed(true, &bytes);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(data(&out[0]), (true, &req[..], false));
    assert_eq!(data(&out[1]), (true, &b"second"[..], false));
    let WsMessage::Data { wire_bytes, .. } = &out[0] else {
        unreachable!()
    };
    assert_eq!(*wire_bytes, 2 + 4 + req.len() as u64);

    // A 300-byte server message (16-bit length), split anywhere.
    let big = vec![b'x'; 300];
    let out = feed_bytewise(&mut c, false, &frame(true, false, 1, &big, None));
    assert_eq!(out.len(), 1);
    assert_eq!(data(&out[0]), (false, &big[..], false));
}

#[test]
fn fragments_join_around_control_frames() {
    let mut c = WsConn::new(None, LIMIT);
    let mut bytes = frame(false, false, 1, b"hel", Some(KEY));
    bytes.extend(frame(true, false, 9, b"ping", Some(KEY)));
    bytes.extend(frame(false, false, 0, b"lo ", Some(KEY)));
    bytes.extend(frame(true, false, 0, b"world", Some(KEY)));
    bytes.extend(frame(true, false, 8, &[0x03, 0xe8], Some(KEY)));
    let out = feed_bytewise(&mut c, true, &bytes);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(data(&out[0]), (true, &b"hello world"[..], false));
    assert_eq!(out[1], WsMessage::Close { from_client: true });
}

#[test]
fn compressed_messages_share_their_window() {
    let d = Deflate::accepted(Some("permessage-deflate; client_max_window_bits=15")).unwrap();
    assert_eq!(d, Deflate::default());
    let mut c = WsConn::new(Some(d), LIMIT);
    let mut z = Compress::new(Compression::default(), false);
    let first = br#"{"type":"response.completed","response":{"usage":{"input_tokens":11}}}"#;
    // The second refers back into the first's window.
    let second = br#"{"type":"response.completed","response":{"usage":{"input_tokens":12}}}"#;
    let mut bytes = Vec::new();
    for msg in [&first[..], &second[..]] {
        let z = deflate(&mut z, msg);
        // Split in two frames, the first with RSV1.
        let (a, b) = z.split_at(z.len() / 2);
        bytes.extend(frame(false, true, 1, a, None));
        bytes.extend(frame(true, false, 0, b, None));
    }
    for split in [false, true] {
        let mut c2 = WsConn::new(Some(d), LIMIT);
        let out = if split {
            feed_bytewise(&mut c2, false, &bytes)
        } else {
            c.feed(false, &bytes)
        };
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(data(&out[0]), (false, &first[..], false));
        assert_eq!(data(&out[1]), (false, &second[..], false));
    }
}

#[test]
fn no_context_takeover_starts_each_message_afresh_even_after_a_hole() {
    let d = Deflate::accepted(Some(
        "x-other, permessage-deflate; client_no_context_takeover",
    ))
    .unwrap();
    assert!(d.client_no_context_takeover && !d.server_no_context_takeover);
    let mut c = WsConn::new(Some(d), LIMIT);
    let msg = br#"{"type":"response.create","model":"gpt-e2e"}"#;
    let z = deflate(&mut Compress::new(Compression::default(), false), msg);
    let f = frame(true, true, 1, &z, Some(KEY));
    // The first message loses its last 5 payload bytes.
    let out = c.feed(true, &f[..f.len() - 5]);
    assert!(out.is_empty(), "{out:?}");
    let out = c.gap(true, 5);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(data(&out[0]).2, "truncated: {out:?}");
    // The next, with a fresh window, reads whole.
    let out = c.feed(true, &f);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(data(&out[0]), (true, &msg[..], false));
}

#[test]
fn a_hole_in_a_shared_window_stops_that_side_and_says_so() {
    let mut c = WsConn::new(Some(Deflate::default()), LIMIT);
    let mut z = Compress::new(Compression::default(), false);
    let a = frame(true, true, 1, &deflate(&mut z, b"first message"), None);
    let b = frame(true, true, 1, &deflate(&mut z, b"second message"), None);
    let out = c.feed(false, &a[..a.len() - 3]);
    assert!(out.is_empty());
    let out = c.gap(false, 3);
    assert!(
        matches!(&out[0], WsMessage::Error(e) if e.contains("not captured")),
        "{out:?}"
    );
    assert!(data(&out[1]).2);
    let out = c.feed(false, &b);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(data(&out[0]), (false, &b""[..], true));
    // The other side is not affected.
    let out = c.feed(true, &frame(true, false, 1, b"plain", Some(KEY)));
    assert_eq!(data(&out[0]), (true, &b"plain"[..], false));
}

#[test]
fn a_bomb_is_cut_off_at_its_limit() {
    let mut c = WsConn::new(Some(Deflate::default()), 1024);
    let zeros = vec![0u8; (MAX_INFLATED as usize) + (1 << 20)];
    let z = deflate(&mut Compress::new(Compression::best(), false), &zeros);
    assert!(z.len() < 64 * 1024, "{} bytes", z.len());
    let out = c.feed(false, &frame(true, true, 2, &z, None));
    assert!(
        matches!(&out[0], WsMessage::Error(e) if e.contains("16 MiB")),
        "{out:?}"
    );
    let (_, payload, truncated) = data(&out[1]);
    assert_eq!(payload.len(), 1024);
    assert!(truncated);
}

#[test]
fn kept_payloads_are_bounded() {
    let mut c = WsConn::new(None, 10);
    let out = c.feed(false, &frame(true, false, 1, &[b'a'; 100], None));
    assert_eq!(data(&out[0]), (false, &[b'a'; 10][..], true));
}

#[test]
fn bad_frames_lose_the_framing_of_their_side_only() {
    for (bytes, says) in [
        (vec![0x83, 0x00], "reserved opcode"),
        (vec![0x81 | 0x20, 0x00], "RSV2/RSV3"),
        (vec![0x80, 0x00], "continuation frame outside"),
        (vec![0x09, 0x00], "control frame"),
        (vec![0xc1, 0x00], "RSV1 set without permessage-deflate"),
        (vec![0x81, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0], "top bit"),
    ] {
        let mut c = WsConn::new(None, LIMIT);
        let out = c.feed(false, &bytes);
        assert!(
            matches!(&out[..], [WsMessage::Error(e)] if e.contains(says) && e.contains("no longer read")),
            "{says}: {out:?}"
        );
        // Nothing more from that side, and no panic.
        assert!(c.feed(false, &frame(true, false, 1, b"x", None)).is_empty());
        assert_eq!(
            c.feed(true, &frame(true, false, 1, b"y", Some(KEY))).len(),
            1
        );
    }
    let mut c = WsConn::new(None, LIMIT);
    let out = c.gap(true, 10);
    assert!(matches!(&out[..], [WsMessage::Error(e)] if e.contains("outside a frame")));
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let mut c = WsConn::new(Some(Deflate::default()), 64);
        let n = (next() % 64) as usize;
        let bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        c.feed(next() & 1 == 0, &bytes);
        c.gap(next() & 1 == 0, next() % 8);
        c.feed(next() & 1 == 0, &bytes);
    }
}
