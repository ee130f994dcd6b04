//! A held process's request, read from its memory, parsed and redacted
//! for the `held` event: whatever the bytes, a result and no panic, and
//! the redacted view never longer than a bounded multiple of the input.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let r = sensor::respond::hold::parse_request(data);
    assert!(r.head.len() <= 64 * data.len() + 4096);
});
