//! Packets of decided flows must not allocate: proven with a counting
//! allocator over many packets of flows decided by name and by address,
//! and of flows that passed.

use chokepoint_testkit::alloc::{allocations_in, Counting};
use std::net::IpAddr;
use std::sync::Arc;

use chokepoint_core::{Engine, LinkType, Verdict};
use chokepoint_testkit::synth::{self, HelloShape};

#[global_allocator]
static A: Counting = Counting;

#[test]
fn the_counter_counts() {
    let ((), n) = allocations_in(|| drop(std::hint::black_box(vec![1u8; 10])));
    assert_eq!(n, 1);
}

fn frame(src: &str, dst: &str, sport: u16, dport: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    synth::ethernet(
        &synth::ip_packet(
            s,
            d,
            6,
            &synth::tcp_segment(s, d, sport, dport, seq, 1, 0x18, payload),
        ),
        &[],
    )
}

#[test]
fn decided_flow_packets_do_not_allocate() {
    let yaml = "version: 1\nlists:\n  d: {format: domains, entries: [blocked.example]}\n  n: {format: cidr, entries: [198.19.0.0/24]}\n  f: {format: cidr, entries: [198.19.1.0/24]}\n  g: {format: cidr, entries: [198.19.2.0/24]}\nrules:\n  - {name: d, match: {list: d}, action: drop}\n  - {name: n, match: {list: n, on: [ip]}, action: drop}\n  - {name: f, match: {list: f, on: [ip]}, action: {freeze: {after_bytes: 100}}}\n  - {name: g, match: {list: g, on: [ip]}, action: {degrade: {loss: 0.5}}}\n";
    let rs = chokepoint_rules::compile_str(yaml, "t.yaml", std::path::Path::new(".")).unwrap();
    let mut e = Engine::new(Arc::new(rs));
    let hello = |n: &str| {
        synth::tls_records(
            &synth::client_hello(Some(n), HelloShape::default(), 1),
            16384,
        )
    };
    // Decide three flows: by name (drop), passed (allowed name), by address.
    let by_name = frame(
        "198.18.0.1",
        "198.18.0.2",
        40000,
        443,
        1,
        &hello("blocked.example"),
    );
    let passed = frame(
        "198.18.0.1",
        "198.18.0.3",
        40001,
        443,
        1,
        &hello("fine.example"),
    );
    let by_ip = frame("198.18.0.1", "198.19.0.7", 40002, 443, 1, b"");
    assert_eq!(
        e.process(1, LinkType::Ethernet, &by_name).verdict,
        Verdict::Drop
    );
    assert_eq!(
        e.process(2, LinkType::Ethernet, &passed).verdict,
        Verdict::Pass
    );
    assert_eq!(
        e.process(3, LinkType::Ethernet, &by_ip).verdict,
        Verdict::Drop
    );
    // Flows enforced packet by packet: their state is in the flow.
    let frozen = frame("198.18.0.1", "198.19.1.7", 40003, 443, 1, b"");
    let degraded = frame("198.18.0.1", "198.19.2.7", 40004, 443, 1, b"");
    assert_eq!(
        e.process(4, LinkType::Ethernet, &frozen).verdict,
        Verdict::Freeze
    );
    assert_eq!(
        e.process(5, LinkType::Ethernet, &degraded).verdict,
        Verdict::Degrade
    );
    // 64-byte-class data packets of those flows, both directions.
    let pkts = [
        frame("198.18.0.1", "198.18.0.2", 40000, 443, 500, b"xx"),
        frame("198.18.0.2", "198.18.0.1", 443, 40000, 9, b"yy"),
        frame("198.18.0.1", "198.18.0.3", 40001, 443, 500, b"zz"),
        frame("198.18.0.3", "198.18.0.1", 443, 40001, 9, b"ww"),
        frame("198.18.0.1", "198.19.0.7", 40002, 443, 2, b"vv"),
        frame("198.19.1.7", "198.18.0.1", 443, 40003, 2, &[0; 64]),
        frame("198.19.2.7", "198.18.0.1", 443, 40004, 2, b"uu"),
    ];
    // Warm up (the sweep cursor, lazily sized internals), then count.
    for (i, p) in pkts.iter().enumerate() {
        e.process(10 + i as u64, LinkType::Ethernet, p);
    }
    let ((), allocs) = allocations_in(|| {
        for round in 0..20_000u64 {
            for p in &pkts {
                e.process(100 + round, LinkType::Ethernet, std::hint::black_box(p));
            }
        }
    });
    assert_eq!(allocs, 0, "{allocs} allocations in 140k packets");
    assert_eq!(e.counters.packets, 5 + 7 + 140_000);
    assert!(e.counters.frozen > 0 && e.counters.degraded > 0);
}
