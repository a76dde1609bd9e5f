//! Frame → decision: every link type, through the whole engine, with state
//! carried between inputs (flows, reassembly, fragments).
#![no_main]
use std::sync::{Arc, Mutex, OnceLock};

use chokepoint_core::{Engine, LinkType};
use libfuzzer_sys::fuzz_target;

static ENGINE: OnceLock<Mutex<Engine>> = OnceLock::new();

const LINKS: [LinkType; 10] = [
    LinkType::Ethernet,
    LinkType::Raw,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Null,
    LinkType::Loop,
    LinkType::Ppp,
    LinkType::PppHdlc,
];

fuzz_target!(|data: &[u8]| {
    let e = ENGINE.get_or_init(|| {
        let yaml = "version: 1\nlists:\n  d: {format: domains, entries: [a.example]}\n  k: {format: keywords, entries: [b]}\n  n: {format: cidr, entries: [10.0.0.0/8, '2001:db8::/32']}\nrules:\n  - {name: d, match: {lists: [d, k]}, action: reset}\n  - {name: n, match: {list: n, on: [ip]}, action: log}\nprofile: {max_flows: 4096}\n";
        let rs = chokepoint_rules::compile_str(yaml, "fuzz.yaml", std::path::Path::new(".")).unwrap();
        Mutex::new(Engine::new(Arc::new(rs)))
    });
    let Some((&sel, frame)) = data.split_first() else { return };
    let mut e = e.lock().unwrap();
    let ts = u64::from(sel) * 1_000_000;
    e.process(ts, LINKS[sel as usize % LINKS.len()], frame);
});
