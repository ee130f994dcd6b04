//! A captured HTTP/2 connection: the fuzzer's bytes after the client
//! preface, split at a fuzzer-chosen point between the client and server
//! directions, fed interleaved in small fuzzer-sized pieces (captures cut
//! frames and header blocks anywhere), some pieces lost as gaps; bodies
//! kept for some streams.
#![no_main]
use sensor::http::{
    h2::{H2Conn, PREFACE},
    stream::Direction,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [cut, shape, rest @ ..] = data else {
        return;
    };
    let cut = (usize::from(*cut) * rest.len() / 255).min(rest.len());
    let piece = usize::from(shape & 0x0f) + 1;
    // The high bit makes every fifth piece a gap: inside a DATA payload it
    // must be counted, anywhere else it must end that side quietly.
    let gaps = shape & 0x80 != 0;
    let (client, server) = rest.split_at(cut);
    let fp = |v: &[u8]| format!("fp:{}", v.len());
    let mut c = H2Conn::new();
    // Bodies kept (small limit, so the cut is exercised) for streams the
    // second byte's bit 6 selects: kept and counted bodies both run.
    if shape & 0x40 != 0 {
        c.keep_bodies(64, |_, path| path.len() % 2 == 0);
    }
    c.feed(Direction::Request, PREFACE, &fp);
    let mut sides = [
        (Direction::Request, client.chunks(piece)),
        (Direction::Response, server.chunks(piece)),
    ];
    let mut n = 0u32;
    loop {
        let mut fed = false;
        for (dir, pieces) in &mut sides {
            if let Some(p) = pieces.next() {
                fed = true;
                n += 1;
                if gaps && n % 5 == 0 {
                    c.gap(*dir, p.len() as u64);
                } else {
                    c.feed(*dir, p, &fp);
                }
            }
        }
        if !fed {
            break;
        }
    }
    c.gap(Direction::Response, u64::MAX);
    c.feed(Direction::Response, server, &fp);
});
