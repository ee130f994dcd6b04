//! A captured PostgreSQL connection: a StartupMessage, then the fuzzer's
//! bytes split at a fuzzer-chosen point between the client and server
//! directions, fed interleaved in small fuzzer-sized pieces (captures cut
//! messages anywhere), some pieces lost as gaps; every statement text
//! also goes through the normaliser.
#![no_main]
use sensor::db::{
    Message, Side,
    pg::PgConn,
    sql,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [cut, shape, rest @ ..] = data else {
        return;
    };
    let cut = (usize::from(*cut) * rest.len() / 255).min(rest.len());
    let piece = usize::from(shape & 0x0f) + 1;
    let gaps = shape & 0x80 != 0;
    let (client, server) = rest.split_at(cut);
    let mut c = PgConn::new();
    c.feed(
        Side::Client,
        b"\0\0\0\x17\0\x03\0\0user\0u\0database\0d\0\0",
    );
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
        }
    }
    let _ = sql::normalise(&String::from_utf8_lossy(rest), false);
});
