//! Every packet of a flow, its IP fragments included, reaches the worker
//! that holds the flow: with two workers a fragmented ClientHello under
//! `reset` is reset, and under `throttle` is policed.

use std::net::IpAddr;
use std::sync::Arc;

use chokepoint_core::decode::worker_for;
use chokepoint_core::{Engine, LinkType};
use chokepoint_rules::{compile_str, Ruleset};
use chokepoint_runtime::actions::{ActionCounters, Actor};
use chokepoint_testkit::synth::{self, HelloShape};

const WORKERS: usize = 2;
const FLOWS: u8 = 16;
const SEC: u64 = 1_000_000_000;

fn ip(s: String) -> IpAddr {
    s.parse().unwrap()
}

/// One flow: handshake, a ClientHello for t.me in IPv4 fragments, then
/// 20 full-size segments from the server.
fn flow(i: u8) -> Vec<(u64, Vec<u8>)> {
    let (c, s) = (ip(format!("198.18.0.{}", 10 + i)), ip("198.18.1.20".into()));
    let cp = 40000 + u16::from(i);
    let hello = synth::tls_records(
        &synth::client_hello(Some("t.me"), HelloShape::default(), i),
        16384,
    );
    let eth = |p: &[u8]| synth::ethernet(p, &[]);
    // An IP packet of the flow: from the client, or from the server.
    let tcp = |from_client: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]| {
        let (src, dst, sp, dp) = if from_client {
            (c, s, cp, 443)
        } else {
            (s, c, 443, cp)
        };
        let seg = synth::tcp_segment(src, dst, sp, dp, seq, ack, flags, payload);
        synth::ip_packet(src, dst, 6, &seg)
    };
    let mut out = vec![
        (0, eth(&tcp(true, 100, 0, 0x02, b""))),
        (1, eth(&tcp(false, 900, 101, 0x12, b""))),
        (2, eth(&tcp(true, 101, 901, 0x10, b""))),
    ];
    for f in synth::ipv4_fragments(&tcp(true, 101, 901, 0x18, &hello), 200) {
        out.push((3, eth(&f)));
    }
    for k in 0..20u32 {
        let seg = tcp(false, 901 + k * 1400, 101, 0x10, &[0u8; 1400]);
        out.push((4 + u64::from(k), eth(&seg)));
    }
    out.into_iter()
        .map(|(t, f)| (SEC + t * 1_000_000, f))
        .collect()
}

fn rules(action: &str) -> Arc<Ruleset> {
    let yaml = format!("version: 1\nlists: {{d: {{format: domains, entries: [t.me]}}}}\nrules: [{{name: r, match: {{list: d}}, action: {action}}}]\n");
    Arc::new(compile_str(&yaml, "t.yaml", std::path::Path::new(".")).unwrap())
}

/// Run every flow through two workers, each an engine and an actor fed the
/// frames the live bridge would give it; per flow, what the actors did.
fn two_workers(action: &str) -> Vec<ActionCounters> {
    let rs = rules(action);
    (0..FLOWS)
        .map(|i| {
            let mut workers: Vec<(Engine, Actor)> = (0..WORKERS)
                .map(|_| (Engine::new(rs.clone()), Actor::default()))
                .collect();
            for (ts, f) in flow(i) {
                let (e, a) = &mut workers[worker_for(LinkType::Ethernet, &f, WORKERS)];
                let d = e.process(ts, LinkType::Ethernet, &f);
                let events = e.events().to_vec();
                a.act(&rs, LinkType::Ethernet, &f, ts, &d, &events);
            }
            let mut sum = ActionCounters::default();
            for (_, a) in &workers {
                sum.add(&a.counters);
            }
            sum
        })
        .collect()
}

#[test]
fn every_packet_of_a_flow_has_one_worker() {
    for i in 0..FLOWS {
        let frames = flow(i);
        let owner = worker_for(LinkType::Ethernet, &frames[0].1, WORKERS);
        for (k, (_, f)) in frames.iter().enumerate() {
            assert_eq!(
                worker_for(LinkType::Ethernet, f, WORKERS),
                owner,
                "flow {i} frame {k}"
            );
        }
    }
}

#[test]
fn a_fragmented_hello_under_reset_is_reset() {
    for (i, c) in two_workers("reset").iter().enumerate() {
        assert!(c.injected_rst >= 2, "flow {i}: {c:?}");
        assert_eq!(
            c.answered_late, 1,
            "flow {i}: answered on the packet after the hello"
        );
    }
}

#[test]
fn a_fragmented_hello_under_throttle_is_policed() {
    for (i, c) in two_workers("{throttle: {kbps: 8}}").iter().enumerate() {
        assert!(c.throttled > 0, "flow {i}: {c:?}");
    }
}
