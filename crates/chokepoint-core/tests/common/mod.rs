//! Frames and an engine for the engine's behaviour tests.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;

use chokepoint_core::{Engine, LinkType, Verdict};
use chokepoint_rules::Trigger;
use chokepoint_testkit::synth;

/// Names, nets and a watched net, as most tests need them.
pub const POLICY: &str = r#"
version: 1
lists:
  blocked: {format: domains, entries: [blocked.example, t.me]}
  nets: {format: cidr, entries: [198.19.0.0/24, "fd00:198:18::66/128"]}
  watched: {format: cidr, entries: [198.19.1.0/24]}
rules:
  - {name: names, match: {list: blocked}, action: reset}
  - {name: nets, match: {list: nets, on: [ip]}, action: drop}
  - {name: watched, match: {list: watched, on: [ip]}, action: log}
"#;

/// Compile a policy.
pub fn compile(yaml: &str) -> Arc<chokepoint_rules::Ruleset> {
    Arc::new(chokepoint_rules::compile_str(yaml, "t.yaml", std::path::Path::new(".")).unwrap())
}

pub fn engine_with(extra: &str) -> Engine {
    let rs = chokepoint_rules::compile_str(
        &format!("{POLICY}{extra}"),
        "t.yaml",
        std::path::Path::new("."),
    )
    .unwrap();
    Engine::new(Arc::new(rs))
}

pub fn engine() -> Engine {
    engine_with("")
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub const C: &str = "198.18.0.10";
pub const S: &str = "198.18.1.20";
pub const SEC: u64 = 1_000_000_000;

/// TCP frame client→server (or back with `rev`).
pub fn tcp(
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    synth::ethernet(
        &synth::ip_packet(
            s,
            d,
            6,
            &synth::tcp_segment(s, d, sport, dport, seq, 1, flags, payload),
        ),
        &[],
    )
}

pub fn udp(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    synth::ethernet(
        &synth::ip_packet(s, d, 17, &synth::udp_datagram(s, d, sport, dport, payload)),
        &[],
    )
}

pub fn run(e: &mut Engine, t: u64, f: &[u8]) -> (Verdict, Vec<(Trigger, String, Verdict, u64)>) {
    let d = e.process(t, LinkType::Ethernet, f);
    let ev = e
        .events()
        .iter()
        .map(|x| {
            (
                x.trigger,
                String::from_utf8_lossy(x.name.as_bytes()).into_owned(),
                x.verdict,
                x.packet,
            )
        })
        .collect();
    (d.verdict, ev)
}
