//! A captured MySQL connection: a handshake response and the server's
//! OK, then the fuzzer's bytes split at a fuzzer-chosen point between the
//! client and server directions, fed interleaved in small fuzzer-sized
//! pieces (captures cut packets anywhere), some pieces lost as gaps.
#![no_main]
use sensor::db::{Message, Side, mysql::MySqlConn};

/// Capabilities: PROTOCOL_41, SECURE_CONNECTION, CONNECT_WITH_DB, and
/// DEPRECATE_EOF when the fuzzer says.
fn login(deprecate_eof: bool) -> Vec<u8> {
    let caps: u32 = 0x8208 | if deprecate_eof { 0x100_0000 } else { 0 };
    let mut b = caps.to_le_bytes().to_vec();
    b.extend_from_slice(&[0, 0, 0, 1, 45]);
    b.extend_from_slice(&[0; 23]);
    b.extend_from_slice(b"u\0\x02ab\0d\0");
    let mut p = (b.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(1);
    p.extend_from_slice(&b);
    p
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [cut, shape, rest @ ..] = data else {
        return;
    };
    let cut = (usize::from(*cut) * rest.len() / 255).min(rest.len());
    let piece = usize::from(shape & 0x0f) + 1;
    let gaps = shape & 0x80 != 0;
    let (client, server) = rest.split_at(cut);
    let mut c = MySqlConn::new();
    c.feed(Side::Client, &login(shape & 0x40 != 0));
    c.feed(Side::Server, b"\x07\0\0\x02\0\0\0\x02\0\0\0");
    let mut sides = [
        (Side::Client, client.chunks(piece)),
        (Side::Server, server.chunks(piece)),
    ];
    let mut n = 0u32;
    let mut out = Vec::new();
    loop {
        let mut fed = false;
        for (side, pieces) in &mut sides {
            if let Some(p) = pieces.next() {
                fed = true;
                n += 1;
                if gaps && n % 5 == 0 {
                    out.extend(c.gap(*side, p.len() as u64));
                } else {
                    out.extend(c.feed(*side, p));
                }
            }
        }
        if !fed {
            break;
        }
    }
    for m in out {
        if let Message::Request { request, .. } = m {
            assert!(request.statement.template.len() <= 4096 + 3);
            assert_eq!(request.engine, "mysql");
        }
    }
});
