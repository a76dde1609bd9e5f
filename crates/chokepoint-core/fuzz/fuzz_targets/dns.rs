//! DNS: headers, question names with compression.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chokepoint_core::dns::for_each_question(data, |n, _| {
        assert!(n.len() <= chokepoint_core::dns::MAX_NAME);
    });
    let mut buf = [0u8; chokepoint_core::dns::MAX_NAME];
    for at in 0..data.len().min(64) {
        let _ = chokepoint_core::dns::read_name(data, at, &mut buf);
    }
});
