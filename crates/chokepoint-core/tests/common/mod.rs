//! Frames and an engine for the engine's behaviour tests.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;

use chokepoint_core::{Engine, LinkType, Verdict};
use chokepoint_rules::Trigger;
use chokepoint_testkit::synth::{self, HelloShape};

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

/// An engine for a policy given whole.
pub fn engine_of(yaml: &str) -> Engine {
    Engine::new(compile(yaml))
}

/// A client Initial carrying a whole ClientHello for `sni`, `len` bytes of
/// UDP payload.
pub fn initial(version: u32, sni: &str, len: usize) -> Vec<u8> {
    initial_shaped(version, sni, HelloShape::default(), len)
}

/// The same, with the hello shaped by `shape` (ECH, ...).
pub fn initial_shaped(version: u32, sni: &str, shape: HelloShape, len: usize) -> Vec<u8> {
    let ch = synth::client_hello(Some(sni), shape, 1);
    let p = synth::quic_initial(
        version,
        &[1, 2, 3, 4, 5, 6, 7, 8],
        &[9; 8],
        0,
        &synth::crypto_frame(0, &ch),
        len,
    );
    assert_eq!(p.len(), len, "the Initial fills the datagram");
    p
}

/// A ClientHello for `sni` in TLS records, with or without ECH.
pub fn hello(sni: &str, ech: bool) -> Vec<u8> {
    synth::tls_records(
        &synth::client_hello(
            Some(sni),
            HelloShape {
                ech,
                ..Default::default()
            },
            2,
        ),
        16384,
    )
}

/// SYN, SYN-ACK, ACK from client `C`, then `payload` to `server`:`dport`:
/// each packet's verdict.
pub fn tcp_flow(
    e: &mut Engine,
    t: u64,
    server: &str,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<Verdict> {
    let isn = 100;
    vec![
        run(e, t, &tcp(C, server, sport, dport, isn, 0x02, b"")).0,
        run(e, t + 1, &tcp(server, C, dport, sport, 9000, 0x12, b"")).0,
        run(e, t + 2, &tcp(C, server, sport, dport, isn + 1, 0x10, b"")).0,
        run(
            e,
            t + 3,
            &tcp(C, server, sport, dport, isn + 1, 0x18, payload),
        )
        .0,
    ]
}

/// [`tcp_flow`] to port 443 (a ClientHello, usually).
pub fn tls_flow(e: &mut Engine, t: u64, server: &str, sport: u16, payload: &[u8]) -> Vec<Verdict> {
    tcp_flow(e, t, server, sport, 443, payload)
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
