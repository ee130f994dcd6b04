//! A captured byte stream, split at a fuzzer-chosen point, fed to both
//! HTTP/1.1 directions with a gap and a close; also templates and target
//! redaction of the same bytes.
#![no_main]
use sensor::http::stream::{Direction, H1Stream};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = (cut as usize).min(rest.len());
    let fp = |v: &[u8]| format!("fp:{}", v.len());
    for dir in [Direction::Request, Direction::Response] {
        let mut s = H1Stream::new(dir);
        s.expect_response_to("GET");
        s.feed(&rest[..cut], &fp);
        s.gap(cut as u64);
        s.feed(&rest[cut..], &fp);
        s.close();
    }
    let text = String::from_utf8_lossy(rest);
    let _ = sensor::http::template::path_template(&text);
    let _ = sensor::redact::target(&text);
    let _ = sensor::redact::argv(&[text.into_owned()]);
});
