//! TLS: record gathering and ClientHello parsing.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chokepoint_core::tls::handshake(data);
    let mut scratch = Vec::new();
    if let chokepoint_core::tls::Progress::Complete { len, in_stream } = chokepoint_core::tls::gather(data, &mut scratch, 65536) {
        let msg = if in_stream { &data[5..len] } else { &scratch[..len] };
        let _ = chokepoint_core::tls::handshake(msg);
    }
});
