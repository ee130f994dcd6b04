//! A captured WebSocket connection after its 101 (Codex's Responses API
//! transport): the fuzzer's bytes split at a fuzzer-chosen point between
//! the client and server directions, fed interleaved in fuzzer-sized
//! pieces, some lost as gaps, with permessage-deflate negotiated or not
//! (and each side's window shared or not) as the fuzzer says.
#![no_main]
use sensor::{
    flows::RequestSummary,
    ws_calls::{WsCalls, WsParsed},
};

const LIMIT: usize = 4096;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [cut, shape, rest @ ..] = data else {
        return;
    };
    let cut = (usize::from(*cut) * rest.len() / 255).min(rest.len());
    let piece = usize::from(shape & 0x0f) * 7 + 1;
    let gaps = shape & 0x80 != 0;
    let extensions = match (shape >> 4) & 0x07 {
        0 => None,
        1 => Some("permessage-deflate; client_no_context_takeover"),
        2 => Some("permessage-deflate; server_no_context_takeover"),
        _ => Some("permessage-deflate"),
    };
    let upgrade = RequestSummary {
        method: "GET".into(),
        target: "/v1/responses".into(),
        authority: "127.0.0.1".into(),
        http_version: "HTTP/1.1".into(),
        credential_fingerprint: None,
        body_bytes: 0,
        head_bytes: 0,
        llm: None,
        db: None,
    };
    let mut w = WsCalls::new(&upgrade, extensions, LIMIT);
    let (client, server) = rest.split_at(cut);
    let mut sides = [(true, client.chunks(piece)), (false, server.chunks(piece))];
    let mut n = 0u32;
    loop {
        let mut fed = false;
        for (writing, pieces) in &mut sides {
            if let Some(p) = pieces.next() {
                fed = true;
                n += 1;
                let out = if gaps && n % 5 == 0 {
                    w.feed(*writing, &[], p.len() as u64)
                } else {
                    w.feed(*writing, p, 0)
                };
                for m in out {
                    match m {
                        WsParsed::Request(r) => assert_eq!(r.method, "WS"),
                        WsParsed::Response(r) => {
                            assert!(r.body.is_none_or(|b| b.bytes.len() <= LIMIT));
                        }
                        WsParsed::Error(e) => assert!(e.len() < 200),
                    }
                }
            }
        }
        if !fed {
            break;
        }
    }
});
