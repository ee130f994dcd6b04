//! Ring-buffer records as the kernel might hand them over, corrupted.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sensor::decode::decode(data);
});
