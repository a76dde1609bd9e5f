//! Packet-core benchmarks: per stage (parse, SNI extraction, QUIC Initial
//! decryption) and end to end through `Engine::process` with a policy of
//! 1M domains + 100k IPv4 + 10k IPv6 prefixes.
//!
//! `cargo bench -p chokepoint-benches --bench core`

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chokepoint_benches::{domains, write_corpus, Corpus};
use chokepoint_core::{decode, quic, tls, Engine, LinkType};
use chokepoint_rules::{compile_file, Ruleset};
use chokepoint_runtime::learned::LearnedTable;
use chokepoint_testkit::synth::{self, HelloShape};
use chokepoint_testkit::vpn;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn ruleset() -> Arc<Ruleset> {
    let dir = std::env::temp_dir().join("chokepoint-bench-corpus");
    let p = dir.join("policy.yaml");
    if !p.exists() {
        write_corpus(&dir, Corpus::TARGET, 42).unwrap();
    }
    Arc::new(compile_file(&p).unwrap())
}

/// Client and server addresses for flow `i` (distinct flows, all in the
/// benchmark ranges, none in the policy's prefixes).
fn addrs(i: u32) -> (IpAddr, IpAddr, u16) {
    let c = IpAddr::from([198, 18, (i >> 8) as u8, i as u8]);
    let s = IpAddr::from([198, 19, (i >> 16) as u8 & 0x7f, (i >> 8) as u8]);
    (c, s, 10_000 + (i % 50_000) as u16)
}

fn frame(
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

fn stages(c: &mut Criterion) {
    let mut g = c.benchmark_group("stage");
    let (cl, sv, port) = addrs(1);
    let small = frame(cl, sv, port, 443, 1, 0x10, b"");
    assert!(small.len() <= 64);
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse 64-byte Ethernet/IPv4/TCP frame", |b| {
        b.iter(|| {
            matches!(
                decode::decode(LinkType::Ethernet, black_box(&small)),
                decode::Decoded::Packet(_)
            )
        })
    });
    let chrome = synth::tls_records(
        &synth::client_hello(
            Some("www.example.com"),
            HelloShape {
                post_quantum: true,
                grease: true,
                ..Default::default()
            },
            1,
        ),
        16384,
    );
    let mut scratch = Vec::with_capacity(65536);
    g.bench_function("SNI from a 1.9 KB post-quantum ClientHello", |b| {
        b.iter(
            || match tls::gather(black_box(&chrome), &mut scratch, 65536) {
                tls::Progress::Complete {
                    len,
                    in_stream: true,
                } => tls::handshake(&chrome[5..len])
                    .and_then(|c| c.sni)
                    .map(|s| s.len()),
                _ => None,
            },
        )
    });
    let ch = synth::client_hello(
        Some("www.example.com"),
        HelloShape {
            post_quantum: true,
            grease: true,
            ..Default::default()
        },
        2,
    );
    let dcid = [9u8, 8, 7, 6, 5, 4, 3, 2];
    let first = synth::crypto_frame(0, &ch[..1100]);
    let initial = synth::quic_initial(quic::V1, &dcid, &[1; 8], 0, &first, 1250);
    let mut out = Vec::with_capacity(65536);
    g.bench_function(
        "QUIC Initial: derive keys + remove HP + decrypt 1250 B + frames",
        |b| {
            b.iter(|| {
                let (p, _) = quic::long_packet(black_box(&initial)).unwrap();
                let keys = quic::Keys::client(&quic::scheme(p.version).unwrap(), p.dcid).unwrap();
                let plain = quic::decrypt(&p, &keys, &mut out).unwrap();
                let mut n = 0;
                quic::crypto_frames(plain, false, |_, d| n += d.len());
                n
            })
        },
    );
    let keys = quic::Keys::client(&quic::scheme(quic::V1).unwrap(), &dcid).unwrap();
    g.bench_function("QUIC Initial: decrypt only (keys cached)", |b| {
        b.iter(|| {
            let (p, _) = quic::long_packet(black_box(&initial)).unwrap();
            quic::decrypt(&p, &keys, &mut out).map(|p| p.len())
        })
    });
    g.finish();
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
fn per_packet(rules: &Arc<Ruleset>, packets: &[Vec<u8>], iters: u64, warm: &[Vec<u8>]) -> Duration {
    let ring = Ring::new(packets);
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut e = Engine::new(rules.clone());
        if rules.has_learned_rules() {
            e.set_learn_store(learned_table());
        }
        for p in warm {
            e.process(0, LinkType::Ethernet, p);
        }
        let t = Instant::now();
        for (i, &(a, b)) in ring.spans.iter().enumerate() {
            black_box(e.process(i as u64, LinkType::Ethernet, &ring.bytes[a..b]));
        }
        total += t.elapsed();
    }
    total
}

/// The same corpus under rules with conditions (ports, protocol, an
/// `except` list, a protocol rule that never matches these flows) and a
/// residual block armed by every name match: what the issue-10 model costs.
fn ruleset_with_conditions() -> Arc<Ruleset> {
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

/// The corpus policy with every protocol classifier asked for (issue 12),
/// none of them matching the benchmark's TLS and QUIC flows, and an IP
/// rule on a dynamic list that a `learn` rule fills: every new flow runs
/// the classifiers of its transport and asks the (empty) list.
fn ruleset_with_classifiers() -> Arc<Ruleset> {
    ruleset();
    let dir = std::env::temp_dir().join("chokepoint-bench-corpus");
    let plain = std::fs::read_to_string(dir.join("policy.yaml")).unwrap();
    let p = dir.join("policy-classifiers.yaml");
    let extra = r#"  - {name: vpn-servers, match: {list: vpn-servers, on: [ip]}, action: drop}
  - {name: vpn, match: {protocols: [wireguard, openvpn]}, action: {learn: {list: vpn-servers, key: server_port, ttl: 600, delay: 300}}}
  - {name: calls, match: {protocols: [stun], proto: udp}, action: drop}
  - {name: ssh-bt, match: {protocols: [ssh, bittorrent]}, action: reset}
  - {name: fully-encrypted, match: {protocols: [fully_encrypted], probability: 0.26}, action: drop}
"#;
    let policy = plain
        .replacen("lists:\n", "lists:\n  vpn-servers: {format: dynamic}\n", 1)
        .replacen("rules:\n", &format!("rules:\n{extra}"), 1);
    assert!(policy.contains("vpn-servers: {format"), "{policy}");
    std::fs::write(&p, policy).unwrap();
    Arc::new(compile_file(&p).unwrap())
}

/// The corpus policy read the way the `hardened` preset reads the wire
/// (urgent data stripped, TTL-limited fakes ignored, the retransmitted
/// copy wins, checksums verified): what seeing what the server sees costs.
fn ruleset_hardened() -> Arc<Ruleset> {
    ruleset();
    let dir = std::env::temp_dir().join("chokepoint-bench-corpus");
    let plain = std::fs::read_to_string(dir.join("policy.yaml")).unwrap();
    let p = dir.join("policy-hardened.yaml");
    std::fs::write(&p, format!("{plain}profile: {{preset: hardened}}\n")).unwrap();
    Arc::new(compile_file(&p).unwrap())
}

fn end_to_end(c: &mut Criterion) {
    engine_group(c, "engine", ruleset());
    engine_group(c, "engine+conditions+residual", ruleset_with_conditions());
    engine_group(c, "engine+hardened", ruleset_hardened());
    engine_group(c, "engine+classifiers", ruleset_with_classifiers());
}

fn engine_group(c: &mut Criterion, group: &str, rules: Arc<Ruleset>) {
    let listed = domains(Corpus::TARGET.domains, 42);
    let mut g = c.benchmark_group(group);
    g.sample_size(10);

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
    g.throughput(Throughput::Elements(packets.len() as u64));
    g.bench_function("decided-flow 64-byte packets", |b| {
        b.iter_custom(|n| per_packet(&rules, &packets, n, &warm))
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
    g.throughput(Throughput::Elements(u64::from(NEW)));
    g.bench_function(
        "new TLS flows (5 packets, 1.9 KB hello in 2 segments), per flow",
        |b| b.iter_custom(|n| per_packet(&rules, &new_flows, n, &warm_flows)),
    );
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
    g.bench_function(
        "new TLS flows (4 packets, classic hello in 1 segment), per flow",
        |b| b.iter_custom(|n| per_packet(&rules, &small_flows, n, &warm_flows)),
    );

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
    g.bench_function(
        "new QUIC flows (one Initial: keys, decrypt, SNI, lookup), per flow",
        |b| b.iter_custom(|n| per_packet(&rules, &quic_flows, n, &warm_flows)),
    );

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
    g.bench_function("new WireGuard flows (one initiation), per flow", |b| {
        b.iter_custom(|n| per_packet(&rules, &wg_flows, n, &warm_flows))
    });
    g.finish();
}

/// IP fragment reassembly under a flood of distinct datagrams that never
/// complete (first fragments only), with 65,536 datagrams allowed in
/// progress: the cost of holding, expiring and evicting them.
fn fragments(c: &mut Criterion) {
    let rules = Arc::new(
        chokepoint_rules::compile_str(
            "version: 1\nprofile: {max_fragment_datagrams: 65536}\nrules: []\n",
            "bench.yaml",
            std::path::Path::new("."),
        )
        .unwrap(),
    );
    const DATAGRAMS: u32 = 100_000;
    let mut first = Vec::new();
    for i in 0..DATAGRAMS {
        let (cl, sv, port) = addrs(i);
        let udp = synth::udp_datagram(cl, sv, port, 53, &[0u8; 1200]);
        let mut pkt = synth::ip_packet(cl, sv, 17, &udp);
        pkt[4..6].copy_from_slice(&(i as u16).to_be_bytes());
        let frags = synth::ipv4_fragments(&pkt, 600);
        first.push(synth::ethernet(&frags[0], &[]));
    }
    let mut g = c.benchmark_group("defrag");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(DATAGRAMS)));
    g.bench_function(
        "100k distinct incomplete datagrams, 64k in progress, per fragment",
        |b| b.iter_custom(|n| per_packet(&rules, &first, n, &[])),
    );
    g.finish();
}

criterion_group!(benches, stages, end_to_end, fragments);
criterion_main!(benches);
