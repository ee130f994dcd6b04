//! First bytes of a connection, parsed as a ClientHello.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sensor::tls::client_hello::parse(data);
});
