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

/// An engine under the policy `yaml`.
fn engine(yaml: &str) -> Engine {
    let rs = chokepoint_rules::compile_str(yaml, "t.yaml", std::path::Path::new(".")).unwrap();
    Engine::new(Arc::new(rs))
}

/// A ClientHello for `name` in TLS records.
fn hello(name: &str, shape: HelloShape) -> Vec<u8> {
    synth::tls_records(&synth::client_hello(Some(name), shape, 1), 16384)
}

#[test]
fn decided_flow_packets_do_not_allocate() {
    let yaml = "version: 1\nlists:\n  d: {format: domains, entries: [blocked.example]}\n  n: {format: cidr, entries: [198.19.0.0/24]}\n  f: {format: cidr, entries: [198.19.1.0/24]}\n  g: {format: cidr, entries: [198.19.2.0/24]}\nrules:\n  - {name: d, match: {list: d}, action: drop}\n  - {name: n, match: {list: n, on: [ip]}, action: drop}\n  - {name: f, match: {list: f, on: [ip]}, action: {freeze: {after_bytes: 100}}}\n  - {name: g, match: {list: g, on: [ip]}, action: {degrade: {loss: 0.5}}}\n";
    let mut e = engine(yaml);
    let hello = |n: &str| hello(n, HelloShape::default());
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

fn udp(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    synth::ethernet(
        &synth::ip_packet(s, d, 17, &synth::udp_datagram(s, d, sport, dport, payload)),
        &[],
    )
}

#[test]
fn flows_decided_by_a_classifier_or_learnt_do_not_allocate() {
    use chokepoint_testkit::vpn;
    const SEC: u64 = 1_000_000_000;
    let yaml = "version: 1\nlists:\n  vpn: {format: dynamic}\nrules:\n  - {name: vpn, match: {list: vpn, on: [ip]}, action: drop}\n  - {name: ovpn, match: {protocols: [openvpn]}, action: {learn: {list: vpn, key: server_port, ttl: 600, delay: 60}}}\n  - {name: wg, match: {protocols: [wireguard]}, action: drop}\n  - {name: fe, match: {protocols: [fully_encrypted]}, action: drop}\n";
    let rs = chokepoint_rules::compile_str(yaml, "t.yaml", std::path::Path::new(".")).unwrap();
    let mut e = Engine::new(Arc::new(rs));
    e.set_learn_store(Arc::new(chokepoint_runtime::learned::LearnedTable::new(64)));
    let wg = udp(
        "198.18.0.1",
        "198.18.0.2",
        40000,
        51820,
        &vpn::wireguard_initiation(1),
    );
    let ovpn = udp(
        "198.18.0.1",
        "198.18.0.3",
        40001,
        1194,
        &vpn::openvpn_reset(vpn::OpenVpnWrap::TlsCrypt, 2),
    );
    let fe = frame(
        "198.18.0.1",
        "198.18.0.4",
        40002,
        8388,
        1,
        &vpn::random_bytes(200, 3),
    );
    let verdicts: Vec<Verdict> = [&wg, &ovpn, &fe]
        .iter()
        .map(|f| e.process(1, LinkType::Ethernet, f).verdict)
        .collect();
    assert_eq!(verdicts, [Verdict::Drop, Verdict::Learn, Verdict::Drop]);
    let pkts = [
        udp("198.18.0.1", "198.18.0.2", 40000, 51820, &[4; 64]),
        udp("198.18.0.2", "198.18.0.1", 51820, 40000, &[4; 64]),
        udp("198.18.0.1", "198.18.0.3", 40001, 1194, &[0x48; 64]),
        frame("198.18.0.4", "198.18.0.1", 8388, 40002, 9, b"yy"),
    ];
    for (i, p) in pkts.iter().enumerate() {
        e.process(2 + i as u64, LinkType::Ethernet, p);
    }
    // Learnt and forwarded, then past its delay: cut by the learnt entry.
    let ((), allocs) = allocations_in(|| {
        for round in 0..20_000u64 {
            for p in &pkts {
                e.process(
                    SEC + round * 10_000,
                    LinkType::Ethernet,
                    std::hint::black_box(p),
                );
            }
        }
        for round in 0..5_000u64 {
            for p in &pkts {
                e.process(
                    61 * SEC + round,
                    LinkType::Ethernet,
                    std::hint::black_box(p),
                );
            }
        }
    });
    assert_eq!(allocs, 0, "{allocs} allocations in 100k packets");
    assert_eq!(e.counters.learned_hits, 1, "the learnt flow was cut once");
    assert!(e.counters.packets_by_verdict[Verdict::Learn as usize] > 20_000);
}

/// The flow table is sized at start (`max_flows`): new flows up to the cap,
/// each a SYN and a ClientHello read where it lies, allocate nothing, and
/// once each is decided or passed it holds no inspection.
#[test]
fn new_flows_up_to_the_cap_allocate_nothing() {
    const FLOWS: u32 = 4096;
    let yaml = "version: 1\nlists:\n  d: {format: domains, entries: [blocked.example]}\nrules:\n  - {name: d, match: {list: d}, action: reset}\nprofile: {max_flows: 4096}\n";
    let mut e = engine(yaml);
    let hello = |n: &str| hello(n, HelloShape::default());
    let (blocked, fine) = (hello("blocked.example"), hello("fine.example"));
    let frames: Vec<[Vec<u8>; 2]> = (0..FLOWS)
        .map(|i| {
            let client = format!("198.18.{}.{}", i >> 8, i & 0xff);
            let port = 10_000 + i as u16;
            let h = if i % 2 == 0 { &blocked } else { &fine };
            let syn = synth::ethernet(
                &synth::ip_packet(
                    client.parse().unwrap(),
                    "198.19.0.1".parse().unwrap(),
                    6,
                    &synth::tcp_segment(
                        client.parse().unwrap(),
                        "198.19.0.1".parse().unwrap(),
                        port,
                        443,
                        1,
                        0,
                        0x02,
                        b"",
                    ),
                ),
                &[],
            );
            [syn, frame(&client, "198.19.0.1", port, 443, 2, h)]
        })
        .collect();
    let ((), allocs) = allocations_in(|| {
        for (i, [syn, data]) in frames.iter().enumerate() {
            e.process(2 * i as u64, LinkType::Ethernet, std::hint::black_box(syn));
            e.process(
                2 * i as u64 + 1,
                LinkType::Ethernet,
                std::hint::black_box(data),
            );
        }
    });
    assert_eq!(allocs, 0, "{allocs} allocations for {FLOWS} new flows");
    assert_eq!(e.flows().len(), FLOWS as usize);
    assert_eq!(e.counters.packets_by_verdict[Verdict::Reset as usize], 2048);
    assert_eq!(e.flows().inspections(), 0, "decided flows hold none");
}

/// A flow holds an inspection only while it is being read: a SYN takes
/// none, a ClientHello's first half one, its second half gives it back.
#[test]
fn a_flow_holds_an_inspection_only_while_it_is_read() {
    let mut e = engine("version: 1\n");
    let h = hello(
        "two.example",
        HelloShape {
            post_quantum: true,
            ..Default::default()
        },
    );
    let (c, s) = ("198.18.0.1", "198.19.0.1");
    let syn = frame(c, s, 40000, 443, 0, b"");
    e.process(1, LinkType::Ethernet, &syn);
    assert_eq!(e.flows().inspections(), 0, "a SYN needs none");
    e.process(
        2,
        LinkType::Ethernet,
        &frame(c, s, 40000, 443, 1, &h[..1000]),
    );
    assert_eq!(e.flows().inspections(), 1, "half a hello is being read");
    e.process(
        3,
        LinkType::Ethernet,
        &frame(c, s, 40000, 443, 1001, &h[1000..]),
    );
    assert_eq!(e.events().len(), 1);
    assert_eq!(e.flows().inspections(), 0, "read: given back");
}
