//! What the engine benchmarks share: the corpus policies, the end-to-end
//! workloads, and the timing of a ring of frames through a fresh engine.
//! Used by `core.rs` (criterion) and `classifiers.rs` (paired A/B runs);
//! each uses only part of it.
#![allow(dead_code)]

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chokepoint_benches::{domains, write_corpus, Corpus};
use chokepoint_core::{quic, Engine, LinkType};
use chokepoint_rules::{compile_file, Ruleset};
use chokepoint_runtime::learned::LearnedTable;
use chokepoint_testkit::synth::{self, HelloShape};
use chokepoint_testkit::vpn;

/// Frames to time through an engine warmed with `warm`.
pub struct Workload {
    /// The bench's name.
    pub name: &'static str,
    /// What a run's throughput counts (packets or flows).
    pub elements: u64,
    /// The timed frames.
    pub packets: Vec<Vec<u8>>,
    /// Frames the engine sees first, untimed.
    pub warm: Vec<Vec<u8>>,
}

pub fn ruleset() -> Arc<Ruleset> {
    let dir = std::env::temp_dir().join("chokepoint-bench-corpus");
    let p = dir.join("policy.yaml");
    if !p.exists() {
        write_corpus(&dir, Corpus::TARGET, 42).unwrap();
    }
    Arc::new(compile_file(&p).unwrap())
}

/// Client and server addresses for flow `i` (distinct flows, all in the
/// benchmark ranges, none in the policy's prefixes).
pub fn addrs(i: u32) -> (IpAddr, IpAddr, u16) {
    let c = IpAddr::from([198, 18, (i >> 8) as u8, i as u8]);
    let s = IpAddr::from([198, 19, (i >> 16) as u8 & 0x7f, (i >> 8) as u8]);
    (c, s, 10_000 + (i % 50_000) as u16)
}

pub fn frame(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    synth::ethernet(
        &synth::ip_packet(
            src,
            dst,
            6,
            &synth::tcp_segment(src, dst, sport, dport, seq, 1, flags, payload),
        ),
        &[],
    )
}

/// Frames laid end to end in one buffer, as in a capture ring (the NIC
/// writes packets into contiguous memory; separate heap allocations would
/// make every packet a pointer chase the real path does not have).
struct Ring {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Ring {
    fn new(frames: &[Vec<u8>]) -> Ring {
        let mut bytes = Vec::new();
        let mut spans = Vec::new();
        for f in frames {
            spans.push((bytes.len(), bytes.len() + f.len()));
            bytes.extend_from_slice(f);
        }
        Ring { bytes, spans }
    }
}

/// A dynamic list already holding 10,000 servers, none of the benchmark's:
/// every new flow's lookup finds a populated table and misses, as most
/// flows would on a box that has learnt some VPN servers.
fn learned_table() -> Arc<LearnedTable> {
    use chokepoint_core::learn::{LearnStore, LearnedKey, Learning};
    let t = LearnedTable::new(65_536);
    let tag = chokepoint_rules::ruleset::list_tag("vpn-servers");
    for i in 0..10_000u32 {
        let server = IpAddr::from([203, 0, (i >> 8) as u8, i as u8]);
        t.learn(&Learning {
            key: LearnedKey::server_port(tag, server, 17, 51820),
            at: 0,
            from: 0,
            until: u64::MAX,
        });
    }
    Arc::new(t)
}

/// Time `iters` runs of the whole ring, each through a fresh engine that
/// first sees `warm` (untimed).
pub fn per_packet(
    rules: &Arc<Ruleset>,
    packets: &[Vec<u8>],
    iters: u64,
    warm: &[Vec<u8>],
) -> Duration {
    let ring = Ring::new(packets);
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut e = fresh(rules, warm);
        let t = Instant::now();
        for (i, &(a, b)) in ring.spans.iter().enumerate() {
            black_box(e.process(i as u64, LinkType::Ethernet, &ring.bytes[a..b]));
        }
        total += t.elapsed();
    }
    total
}

/// [`per_packet`] through [`Engine::process_batch`]: the ring handed over
/// whole, the engine taking it [`chokepoint_core::engine::BURST`] frames
/// at a time (decode, hash and prefetch a burst, then process it).
pub fn per_burst(
    rules: &Arc<Ruleset>,
    packets: &[Vec<u8>],
    iters: u64,
    warm: &[Vec<u8>],
) -> Duration {
    let ring = Ring::new(packets);
    let frames: Vec<(u64, LinkType, &[u8])> = ring
        .spans
        .iter()
        .enumerate()
        .map(|(i, &(a, b))| (i as u64, LinkType::Ethernet, &ring.bytes[a..b]))
        .collect();
    let mut out = vec![chokepoint_core::Decision::PASS; frames.len()];
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut e = fresh(rules, warm);
        let t = Instant::now();
        e.process_batch(&frames, &mut out, |_, ev| {
            black_box(ev);
        });
        total += t.elapsed();
        black_box(&out);
    }
    total
}

/// A fresh engine under `rules` that has seen `warm`.
fn fresh(rules: &Arc<Ruleset>, warm: &[Vec<u8>]) -> Engine {
    let mut e = Engine::new(rules.clone());
    if rules.has_learned_rules() {
        e.set_learn_store(learned_table());
    }
    for p in warm {
        e.process(0, LinkType::Ethernet, p);
    }
    e
}

/// The same corpus under rules with conditions (ports, protocol, an
/// `except` list, a protocol rule that never matches these flows) and a
/// residual block armed by every name match: what the issue-10 model costs.
pub fn ruleset_with_conditions() -> Arc<Ruleset> {
    ruleset();
    let dir = std::env::temp_dir().join("chokepoint-bench-corpus");
    let p = dir.join("policy-conditions.yaml");
    std::fs::write(
        &p,
        r#"version: 1
lists:
  names: {format: domains, path: domains.txt}
  v4: {format: cidr, path: v4.txt}
  v6: {format: cidr, path: v6.txt}
  allow: {format: domains, entries: [allowed.example]}
rules:
  - {name: quic-v2, match: {protocols: [quic], quic_versions: [v2], dst_ports: [443], min_bytes: 1001, first_packet: true}, action: drop}
  - name: names
    match: {list: names, dst_ports: ["1-65535"], except: [allow]}
    action: reset
    residual: {seconds: 90, scope: 3-tuple, action: drop}
  - {name: nets, match: {lists: [v4, v6], on: [ip], proto: tcp}, action: drop}
"#,
    )
    .unwrap();
    Arc::new(compile_file(&p).unwrap())
}

/// The corpus policy, rewritten by `edit`, compiled from `file` beside it.
fn corpus_variant(file: &str, edit: impl FnOnce(&str) -> String) -> Arc<Ruleset> {
    ruleset();
    let dir = std::env::temp_dir().join("chokepoint-bench-corpus");
    let plain = std::fs::read_to_string(dir.join("policy.yaml")).unwrap();
    let p = dir.join(file);
    std::fs::write(&p, edit(&plain)).unwrap();
    Arc::new(compile_file(&p).unwrap())
}

/// The corpus policy with every protocol classifier asked for (issue 12),
/// none of them matching the benchmark's TLS and QUIC flows, and an IP
/// rule on a dynamic list that a `learn` rule fills: every new flow runs
/// the classifiers of its transport and asks the list (which
/// [`per_packet`] fills with 10,000 other servers).
pub fn ruleset_with_classifiers() -> Arc<Ruleset> {
    let extra = r#"  - {name: vpn-servers, match: {list: vpn-servers, on: [ip]}, action: drop}
  - {name: vpn, match: {protocols: [wireguard, openvpn]}, action: {learn: {list: vpn-servers, key: server_port, ttl: 600, delay: 300}}}
  - {name: calls, match: {protocols: [stun], proto: udp}, action: drop}
  - {name: ssh-bt, match: {protocols: [ssh, bittorrent]}, action: reset}
  - {name: fully-encrypted, match: {protocols: [fully_encrypted], probability: 0.26}, action: drop}
"#;
    corpus_variant("policy-classifiers.yaml", |plain| {
        let policy = plain
            .replacen("lists:\n", "lists:\n  vpn-servers: {format: dynamic}\n", 1)
            .replacen("rules:\n", &format!("rules:\n{extra}"), 1);
        assert!(policy.contains("vpn-servers: {format"), "{policy}");
        policy
    })
}

/// The corpus policy read the way the `hardened` preset reads the wire
/// (urgent data stripped, TTL-limited fakes ignored, the retransmitted
/// copy wins, checksums verified): what seeing what the server sees costs.
pub fn ruleset_hardened() -> Arc<Ruleset> {
    corpus_variant("policy-hardened.yaml", |plain| {
        format!("{plain}profile: {{preset: hardened}}\n")
    })
}

/// The end-to-end workloads, each a ring of frames and the frames that
/// warm an engine first (untimed).
pub fn workloads() -> Vec<Workload> {
    let listed = domains(Corpus::TARGET.domains, 42);
    let mut out = Vec::new();

    // Decided flows: 1,000 flows decided (half blocked by name, half
    // passed), then 64-byte packets of those flows, both directions.
    const FLOWS: u32 = 1000;
    let mut warm = Vec::new();
    let mut data = Vec::new();
    for i in 0..FLOWS {
        let (cl, sv, port) = addrs(i);
        let name = if i % 2 == 0 {
            format!("www.{}", listed[i as usize])
        } else {
            format!("www.notlisted{i}.example")
        };
        let hello = synth::tls_records(
            &synth::client_hello(Some(&name), HelloShape::default(), i as u8),
            16384,
        );
        warm.push(frame(cl, sv, port, 443, 1, 0x02, b""));
        warm.push(frame(cl, sv, port, 443, 2, 0x18, &hello));
        data.push(frame(cl, sv, port, 443, 5000, 0x10, b""));
        data.push(frame(sv, cl, 443, port, 9000, 0x10, b""));
    }
    let packets: Vec<Vec<u8>> = (0..100).flat_map(|_| data.iter().cloned()).collect();
    assert!(packets.iter().all(|p| p.len() <= 64));
    out.push(Workload {
        name: "decided-flow 64-byte packets",
        elements: packets.len() as u64,
        packets,
        warm,
    });

    // New TLS flows: SYN, SYN-ACK, ACK, then a Chromium-size ClientHello in
    // two segments (MTU 1500). The engine is warmed first with as many
    // other flows, so its tables are sized as on a running box.
    const NEW: u32 = 5000;
    let mut new_flows = Vec::new();
    let mut warm_flows = Vec::new();
    for i in 0..NEW {
        let (cl, sv, port) = addrs(i + 100_000);
        let hello = synth::tls_records(
            &synth::client_hello(Some("warm.example"), HelloShape::default(), 0),
            16384,
        );
        warm_flows.push(frame(cl, sv, port, 443, 100, 0x02, b""));
        warm_flows.push(frame(cl, sv, port, 443, 101, 0x18, &hello));
    }
    for i in 0..NEW {
        let (cl, sv, port) = addrs(i);
        let name = if i % 4 == 0 {
            format!("cdn.{}", listed[(i * 7) as usize])
        } else {
            format!("api{i}.example.net")
        };
        let hello = synth::tls_records(
            &synth::client_hello(
                Some(&name),
                HelloShape {
                    post_quantum: true,
                    grease: true,
                    ..Default::default()
                },
                i as u8,
            ),
            16384,
        );
        new_flows.push(frame(cl, sv, port, 443, 100, 0x02, b""));
        new_flows.push(frame(sv, cl, 443, port, 700, 0x12, b""));
        new_flows.push(frame(cl, sv, port, 443, 101, 0x10, b""));
        new_flows.push(frame(cl, sv, port, 443, 101, 0x18, &hello[..1400]));
        new_flows.push(frame(cl, sv, port, 443, 1501, 0x18, &hello[1400..]));
    }
    out.push(Workload {
        name: "new TLS flows (5 packets, 1.9 KB hello in 2 segments), per flow",
        elements: u64::from(NEW),
        packets: new_flows,
        warm: warm_flows.clone(),
    });
    let mut small_flows = Vec::new();
    for i in 0..NEW {
        let (cl, sv, port) = addrs(i);
        let name = if i % 4 == 0 {
            format!("cdn.{}", listed[(i * 7) as usize])
        } else {
            format!("api{i}.example.net")
        };
        let shape = HelloShape {
            grease: true,
            ..Default::default()
        };
        let hello = synth::tls_records(&synth::client_hello(Some(&name), shape, i as u8), 16384);
        small_flows.push(frame(cl, sv, port, 443, 100, 0x02, b""));
        small_flows.push(frame(sv, cl, 443, port, 700, 0x12, b""));
        small_flows.push(frame(cl, sv, port, 443, 101, 0x10, b""));
        small_flows.push(frame(cl, sv, port, 443, 101, 0x18, &hello));
    }
    out.push(Workload {
        name: "new TLS flows (4 packets, classic hello in 1 segment), per flow",
        elements: u64::from(NEW),
        packets: small_flows,
        warm: warm_flows.clone(),
    });

    // New QUIC flows: one 1250-byte Initial carrying the whole hello.
    let mut quic_flows = Vec::new();
    for i in 0..NEW {
        let (cl, sv, port) = addrs(i);
        let name = format!("q{i}.example.org");
        let ch = synth::client_hello(Some(&name), HelloShape::default(), i as u8);
        let dcid = (i as u64).to_be_bytes();
        let pkt = synth::quic_initial(
            quic::V1,
            &dcid,
            &[1; 8],
            0,
            &synth::crypto_frame(0, &ch),
            1250,
        );
        quic_flows.push(synth::ethernet(
            &synth::ip_packet(cl, sv, 17, &synth::udp_datagram(cl, sv, port, 443, &pkt)),
            &[],
        ));
    }
    out.push(Workload {
        name: "new QUIC flows (one Initial: keys, decrypt, SNI, lookup), per flow",
        elements: u64::from(NEW),
        packets: quic_flows,
        warm: warm_flows.clone(),
    });

    // New WireGuard flows: one handshake initiation each, to port 51820
    // (passed uninspected without a wireguard rule, learnt with one).
    let wg_flows: Vec<Vec<u8>> = (0..NEW)
        .map(|i| {
            let (cl, sv, port) = addrs(i);
            let init = vpn::wireguard_initiation(u64::from(i));
            synth::ethernet(
                &synth::ip_packet(cl, sv, 17, &synth::udp_datagram(cl, sv, port, 51820, &init)),
                &[],
            )
        })
        .collect();
    out.push(Workload {
        name: "new WireGuard flows (one initiation), per flow",
        elements: u64::from(NEW),
        packets: wg_flows,
        warm: warm_flows,
    });
    out
}
