//! Policy YAML → `Policy` → profile validation → (for policies without list
//! files) the whole compile, the artifact round trip and `explain`.
#![no_main]
use std::path::Path;

use chokepoint_rules::policy::{validate_profile, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = Policy::from_yaml(text, "fuzz.yaml") else {
        return;
    };
    let _ = validate_profile(&p.profile);
    // List files would be read from disk: only inline policies compile here
    // (the base directory does not exist, so nothing is read either way).
    if p.lists.values().any(|l| l.path.is_some()) {
        return;
    }
    let Ok(rs) = chokepoint_rules::compile_str(text, "fuzz.yaml", Path::new("/nonexistent/fuzz"))
    else {
        return;
    };
    // What the compiler writes, the loader must take back unchanged.
    let bytes = chokepoint_ruleset::artifact::to_bytes(&rs);
    let back = chokepoint_ruleset::artifact::from_bytes(&bytes).expect("own artifact loads");
    assert!(back == rs, "artifact round trip changed the ruleset");
    for q in ["t.me", "www.example.com", "198.51.100.7", "2001:db8::1", "xn--p1ai"] {
        let _ = chokepoint_rules::explain(&rs, q);
    }
});
