//! A captured HTTP/2 connection: the fuzzer's bytes after the client
//! preface, split at a fuzzer-chosen point between the client and server
//! directions, with a gap in each.
#![no_main]
use sensor::http::{
    h2::{H2Conn, PREFACE},
    stream::Direction,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = (cut as usize * rest.len() / 255).min(rest.len());
    let (client, server) = rest.split_at(cut);
    let fp = |v: &[u8]| format!("fp:{}", v.len());
    let mut c = H2Conn::new();
    c.feed(Direction::Request, PREFACE, &fp);
    let half = client.len() / 2;
    c.feed(Direction::Request, &client[..half], &fp);
    c.feed(Direction::Response, server, &fp);
    c.gap(Direction::Response, server.len() as u64 % 7);
    c.feed(Direction::Request, &client[half..], &fp);
    c.gap(Direction::Request, 1);
    c.feed(Direction::Response, server, &fp);
});
