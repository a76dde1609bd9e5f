//! Packet-core benchmarks: per stage (parse, SNI extraction, QUIC Initial
//! decryption) and end to end through `Engine::process` with a policy of
//! 1M domains + 100k IPv4 + 10k IPv6 prefixes.
//!
//! `cargo bench -p chokepoint-benches --bench core`

use std::hint::black_box;
use std::sync::Arc;

use chokepoint_core::{decode, quic, tls, Engine, LinkType};
use chokepoint_rules::{Ruleset, Trigger};
use chokepoint_testkit::synth::{self, HelloShape};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod common;

use common::*;

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

fn end_to_end(c: &mut Criterion) {
    let loads = workloads();
    let rules = ruleset();
    engine_group(c, "engine", &rules, &loads, per_packet);
    // The same frames through `Engine::process_batch` (bursts of
    // `engine::BURST`), beside them one by one in `engine/`.
    engine_group(c, "engine-burst", &rules, &loads, per_burst);
    engine_group(
        c,
        "engine+conditions+residual",
        &ruleset_with_conditions(),
        &loads,
        per_packet,
    );
    engine_group(
        c,
        "engine+hardened",
        &ruleset_hardened(),
        &loads,
        per_packet,
    );
    engine_group(
        c,
        "engine+classifiers",
        &ruleset_with_classifiers(),
        &loads,
        per_packet,
    );
}

/// Times `iters` runs of a workload's frames (see `per_packet`).
type Timer = fn(&Arc<Ruleset>, &[Vec<u8>], u64, &[Vec<u8>]) -> std::time::Duration;

fn engine_group(
    c: &mut Criterion,
    group: &str,
    rules: &Arc<Ruleset>,
    loads: &[Workload],
    time: Timer,
) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    for w in loads {
        g.throughput(Throughput::Elements(w.elements));
        g.bench_function(w.name, |b| {
            b.iter_custom(|n| time(rules, &w.packets, n, &w.warm))
        });
    }
    g.finish();
}

/// A policy whose one rule applies `action` to every server of the
/// benchmark ranges (198.19.0.0/16), with `extra` lines after the rule.
fn address_policy(action: &str, extra: &str) -> Arc<Ruleset> {
    let yaml = format!(
        "version: 1\nlists:\n  hosting: {{format: cidr, entries: [198.19.0.0/16]}}\nrules:\n  - name: hosting\n    match: {{list: hosting, on: [ip]}}\n    action: {action}\n{extra}"
    );
    Arc::new(chokepoint_rules::compile_str(&yaml, "bench.yaml", std::path::Path::new(".")).unwrap())
}

/// The counters of a fresh engine after `frames`.
fn counters_after<'a>(
    rules: &Arc<Ruleset>,
    frames: impl Iterator<Item = &'a Vec<u8>>,
) -> chokepoint_core::Counters {
    let mut e = Engine::new(rules.clone());
    for f in frames {
        e.process(0, LinkType::Ethernet, f);
    }
    e.counters.clone()
}

/// What the per-packet actions of issue 10 cost. Decided flows: 1,000
/// flows an address rule decided on their SYN, then 64-byte frames both
/// ways (the server's carrying 10 bytes of payload, which a freeze counts),
/// under `drop` (the plain decided path), `freeze` (counting; no flow
/// reaches its threshold within a run) and `degrade` (a draw per packet).
/// New flows: SYNs that each arm a 3-tuple residual block in a table held
/// full (1,024 entries, warmed with 5,000 blocks), so every one probes the
/// table, arms and evicts the oldest; beside the same flows without
/// `residual`.
fn actions(c: &mut Criterion) {
    let mut g = c.benchmark_group("actions");
    g.sample_size(10);
    const FLOWS: u32 = 1000;
    let mut warm = Vec::new();
    let mut data = Vec::new();
    for i in 0..FLOWS {
        let (cl, sv, port) = addrs(i);
        warm.push(frame(cl, sv, port, 443, 1, 0x02, b""));
        data.push(frame(cl, sv, port, 443, 2, 0x10, b""));
        data.push(frame(sv, cl, 443, port, 9000, 0x18, &[0; 10]));
    }
    let packets: Vec<Vec<u8>> = (0..100).flat_map(|_| data.iter().cloned()).collect();
    assert!(packets.iter().all(|p| p.len() <= 64));
    g.throughput(Throughput::Elements(packets.len() as u64));
    for (name, action) in [
        ("decided-flow 64-byte packets, drop", "drop"),
        ("decided-flow 64-byte packets, freeze", "freeze"),
        (
            "decided-flow 64-byte packets, degrade 0.5",
            "{degrade: {loss: 0.5}}",
        ),
    ] {
        let rules = address_policy(action, "");
        // Untimed: the case measures what it says (decided by address, no
        // flow frozen, about half the packets degraded).
        let c = counters_after(&rules, warm.iter().chain(&packets));
        assert_eq!(
            c.decisions_by_trigger[Trigger::Ip.index()],
            u64::from(FLOWS),
            "{name}"
        );
        assert_eq!(c.frozen, 0, "{name}");
        assert_eq!(c.degraded > 0, action.contains("degrade"), "{name}");
        g.bench_function(name, |b| {
            b.iter_custom(|n| per_packet(&rules, &packets, n, &warm))
        });
    }

    const NEW: u32 = 5000;
    let syns = |from: u32| -> Vec<Vec<u8>> {
        (from..from + NEW)
            .map(|i| {
                let (cl, sv, port) = addrs(i);
                frame(cl, sv, port, 443, 1, 0x02, b"")
            })
            .collect()
    };
    let (new_flows, warm_flows) = (syns(0), syns(100_000));
    g.throughput(Throughput::Elements(u64::from(NEW)));
    let plain = address_policy("drop", "");
    g.bench_function("new flows (SYN) decided by address, no residual", |b| {
        b.iter_custom(|n| per_packet(&plain, &new_flows, n, &warm_flows))
    });
    let residual = address_policy(
        "drop",
        "    residual: {seconds: 90, scope: 3-tuple}\nprofile: {max_residual_entries: 1024}\n",
    );
    let c = counters_after(&residual, warm_flows.iter().chain(&new_flows));
    assert_eq!(c.residual_evicted, u64::from(2 * NEW) - 1024);
    g.bench_function(
        "new flows (SYN) arming a residual block, table full and evicting",
        |b| b.iter_custom(|n| per_packet(&residual, &new_flows, n, &warm_flows)),
    );
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

criterion_group!(benches, stages, end_to_end, actions, fragments);
criterion_main!(benches);
