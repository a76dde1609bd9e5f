//! HTTP: request headers and Host handling.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let chokepoint_core::http::Request::Complete { host: Some(h), end, .. } = chokepoint_core::http::request(data) {
        assert!(end <= data.len());
        let _ = chokepoint_core::http::host_for_match(h);
    }
});
