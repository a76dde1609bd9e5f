//! What the actor does with the censors' actions: throttle buckets per
//! client and their burst, resets to one end only, and freeze/degrade
//! carried out as the core decided per packet.

use std::net::IpAddr;
use std::sync::Arc;

use chokepoint_core::inject;
use chokepoint_core::{Engine, LinkType};
use chokepoint_rules::{compile_str, Ruleset};
use chokepoint_runtime::actions::{Actor, Applied, Outcome};
use chokepoint_testkit::synth::{self, HelloShape};

const C: &str = "198.18.0.10";
const C2: &str = "198.18.0.11";
const S: &str = "198.18.1.20";
const SEC: u64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(src: &str, dst: &str, sport: u16, dport: u16, seq: u32, flags: u8, p: &[u8]) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    synth::ethernet(
        &synth::ip_packet(
            s,
            d,
            6,
            &synth::tcp_segment(s, d, sport, dport, seq, 1, flags, p),
        ),
        &[],
    )
}

/// An engine and an actor under one policy.
struct Censor {
    rules: Arc<Ruleset>,
    engine: Engine,
    actor: Actor,
}

impl Censor {
    fn new(policy: &str) -> Censor {
        let rules = Arc::new(compile_str(policy, "t.yaml", std::path::Path::new(".")).unwrap());
        Censor {
            engine: Engine::new(rules.clone()),
            rules,
            actor: Actor::default(),
        }
    }
    /// A policy whose one rule applies `action` to the server's address.
    fn on_server(action: &str) -> Censor {
        Censor::new(&format!(
            "version: 1\nlists:\n  s: {{format: cidr, entries: [\"{S}/32\"]}}\nrules:\n  - {{name: s, match: {{list: s, on: [ip]}}, action: {action}}}\n"
        ))
    }
    fn frame(&mut self, ts: u64, f: &[u8]) -> Outcome {
        let d = self.engine.process(ts, LinkType::Ethernet, f);
        let ev = self.engine.events().to_vec();
        self.actor
            .act(&self.rules, LinkType::Ethernet, f, ts, &d, &ev)
    }
}

/// 1000 payload bytes: a 1054-byte frame.
const DATA: [u8; 1000] = [0; 1000];

#[test]
fn a_client_scoped_throttle_shares_one_bucket_among_a_clients_flows() {
    // 8 kbit/s = 1000 B/s: over a few nanoseconds nothing refills.
    for (scope, second_flow_passes) in [("client", false), ("flow", true)] {
        let mut b = Censor::on_server(&format!(
            "{{throttle: {{kbps: 8, burst_bytes: 3000, scope: {scope}}}}}"
        ));
        let mut t = SEC;
        let mut send = |b: &mut Censor, src: &str, port: u16, flags: u8, p: &[u8]| {
            t += 1;
            b.frame(t, &tcp(src, S, port, 443, 1, flags, p)).forward
        };
        // Flow 1: SYN (54) + 2 x 1054 = 2162 of the 3000.
        assert!(send(&mut b, C, 1001, 0x02, b""));
        assert!(send(&mut b, C, 1001, 0x18, &DATA));
        assert!(send(&mut b, C, 1001, 0x18, &DATA));
        // Flow 2 of the same client: its SYN fits (2216), its data does not
        // when the bucket is the client's.
        assert!(send(&mut b, C, 1002, 0x02, b""));
        assert_eq!(
            send(&mut b, C, 1002, 0x18, &DATA),
            second_flow_passes,
            "{scope}"
        );
        // Another client has a bucket of its own either way.
        assert!(send(&mut b, C2, 1003, 0x02, b""));
        assert!(send(&mut b, C2, 1003, 0x18, &DATA), "{scope}");
        assert!(send(&mut b, C2, 1003, 0x18, &DATA), "{scope}");
        assert_eq!(b.actor.counters.throttled, u64::from(!second_flow_passes));
    }
}

#[test]
fn a_throttle_polices_each_direction_on_its_own() {
    let mut b = Censor::on_server("{throttle: {kbps: 8, burst_bytes: 3000}}");
    let mut t = SEC;
    let mut send = |b: &mut Censor, up: bool, p: &[u8]| {
        t += 1;
        let f = if up {
            tcp(C, S, 1001, 443, 1, 0x18, p)
        } else {
            tcp(S, C, 443, 1001, 1, 0x18, p)
        };
        b.frame(t, &f).forward
    };
    assert!(b.frame(SEC, &tcp(C, S, 1001, 443, 1, 0x02, b"")).forward);
    // Upstream: SYN (54) + 2 x 1054 of 3000; a third does not fit.
    assert!(send(&mut b, true, &DATA));
    assert!(send(&mut b, true, &DATA));
    assert!(!send(&mut b, true, &DATA));
    // Downstream has its bucket, full: two frames pass, the third not.
    assert!(send(&mut b, false, &DATA));
    assert!(send(&mut b, false, &DATA));
    assert!(!send(&mut b, false, &DATA));
    // A bare ACK upstream still fits (54 <= 3000 - 2162): the client's
    // ACKs of a download never wait on the download's tokens.
    assert!(send(&mut b, true, b""));
    assert_eq!(b.actor.counters.throttled, 2);
}

/// How many 1054-byte frames pass at one instant under `action`.
fn burst_frames(action: &str) -> usize {
    let mut b = Censor::on_server(action);
    assert!(b.frame(SEC, &tcp(C, S, 1001, 443, 1, 0x02, b"")).forward);
    (0..20)
        .filter(|i| {
            b.frame(SEC + 1 + i, &tcp(C, S, 1001, 443, 2, 0x18, &DATA))
                .forward
        })
        .count()
}

#[test]
fn a_throttles_burst_bytes_is_how_much_passes_at_once() {
    // 54 + 4 x 1054 = 4270 <= 5000 < 5324.
    assert_eq!(burst_frames("{throttle: {kbps: 8, burst_bytes: 5000}}"), 4);
    // The default: half a second of the rate, at least 3200 bytes.
    assert_eq!(burst_frames("{throttle: {kbps: 8}}"), 2);
    assert_eq!(
        burst_frames("{throttle: {kbps: 8, burst_bytes: 20000}}"),
        18
    );
}

/// The destinations of the frames a `reset` injects on a blocked hello.
fn reset_destinations(action: &str) -> Vec<IpAddr> {
    let mut b = Censor::new(&format!(
        "version: 1\nlists:\n  n: {{format: domains, entries: [blocked.example]}}\nrules:\n  - {{name: n, match: {{list: n}}, action: {action}}}\n"
    ));
    assert!(b.frame(SEC, &tcp(C, S, 40000, 443, 1, 0x02, b"")).forward);
    assert!(
        b.frame(SEC + 1, &tcp(S, C, 443, 40000, 9, 0x12, b""))
            .forward
    );
    let hello = synth::tls_records(
        &synth::client_hello(Some("blocked.example"), HelloShape::default(), 1),
        16384,
    );
    let o = b.frame(SEC + 2, &tcp(C, S, 40000, 443, 2, 0x18, &hello));
    assert_eq!((o.forward, o.applied), (false, Applied::Reset), "{action}");
    assert_eq!(b.actor.counters.injected_rst, o.inject.len() as u64);
    o.inject
        .iter()
        .map(|f| {
            let t = inject::trigger(LinkType::Ethernet, f).unwrap();
            assert_eq!(inject::tcp_flags(&t).unwrap() & 0x04, 0x04, "a RST");
            t.dst
        })
        .collect()
}

#[test]
fn a_reset_goes_to_the_ends_it_names() {
    let (c, s) = (ip(C), ip(S));
    assert_eq!(reset_destinations("{reset: {to: client}}"), [c]);
    assert_eq!(reset_destinations("{reset: {to: server}}"), [s]);
    assert_eq!(reset_destinations("{reset: {to: both}}"), [c, s]);
    assert_eq!(reset_destinations("reset"), [c, s], "both by default");
    assert_eq!(
        reset_destinations("{reset: {to: client, repeat: 3}}"),
        [c, c, c]
    );
}

#[test]
fn a_freeze_is_carried_out_and_counted() {
    let mut b = Censor::on_server("{freeze: {after_bytes: 2000}}");
    let o = b.frame(SEC, &tcp(C, S, 40000, 443, 1, 0x02, b""));
    assert_eq!((o.forward, o.applied), (true, Applied::Freeze));
    for i in 0..2 {
        let o = b.frame(SEC + 1 + i, &tcp(S, C, 443, 40000, 1, 0x18, &DATA));
        assert_eq!((o.forward, o.applied), (true, Applied::Freeze));
    }
    for i in 0..3 {
        let o = b.frame(SEC + 10 + i, &tcp(S, C, 443, 40000, 1, 0x18, &DATA));
        assert_eq!((o.forward, o.applied), (false, Applied::Freeze));
        assert!(o.inject.is_empty(), "a freeze sends nothing");
    }
    let a = &b.actor.counters;
    assert_eq!((a.forwarded, a.dropped, a.frozen, a.degraded), (3, 3, 3, 0));
}

#[test]
fn a_degrade_is_carried_out_and_counted() {
    let mut b = Censor::on_server("{degrade: {loss: 1, direction: server_to_client}}");
    assert!(b.frame(SEC, &tcp(C, S, 40000, 443, 1, 0x02, b"")).forward);
    let o = b.frame(SEC + 1, &tcp(S, C, 443, 40000, 1, 0x18, &DATA));
    assert_eq!((o.forward, o.applied), (false, Applied::Degrade));
    assert_eq!(b.actor.counters.degraded, 1);
}

/// Replay the bundled sample under `action` for every address; what
/// passed (as a pcap), the events and the action counters.
fn replay_sample(
    action: &str,
    seed: u64,
) -> (
    Vec<u8>,
    Vec<u8>,
    chokepoint_runtime::actions::ActionCounters,
) {
    let rules = compile_str(
        &format!(
            "version: 1\nlists:\n  all: {{format: cidr, entries: [0.0.0.0/1, 128.0.0.0/1]}}\nrules:\n  - {{name: all, match: {{list: all, on: [ip]}}, action: {action}}}\nprofile: {{seed: {seed}}}\n"
        ),
        "t.yaml",
        std::path::Path::new("."),
    )
    .unwrap();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/sample-telegram-2018.pcap");
    let (mut pass, mut events) = (Vec::new(), Vec::new());
    let (s, res) = chokepoint_runtime::replay::replay(
        Arc::new(rules),
        &sample,
        chokepoint_runtime::replay::Outputs {
            events: Some(&mut events),
            pass: Some(&mut pass),
            ..Default::default()
        },
    );
    res.unwrap();
    (pass, events, s.actions)
}

#[test]
fn a_replay_under_degrade_drops_the_same_frames_twice() {
    let a = replay_sample("{degrade: {loss: 0.5}}", 11);
    assert!(a.2.degraded > 0 && a.2.forwarded > 0, "{:?}", a.2);
    assert_eq!(a.2.degraded, a.2.dropped);
    let b = replay_sample("{degrade: {loss: 0.5}}", 11);
    assert!(a == b, "a replay gives the same result twice");
    let other = replay_sample("{degrade: {loss: 0.5}}", 12);
    assert_ne!(a.0, other.0, "another seed drops other frames");
    let events = String::from_utf8(a.1).unwrap();
    let decided: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["trigger"] == "ip")
        .collect();
    assert!(!decided.is_empty());
    for e in decided {
        assert_eq!(
            (&e["verdict"], &e["action"]),
            (&"degrade".into(), &"degrade".into())
        );
    }
}

/// `residual: {action: reset}` under a rule that itself only drops: the
/// next flow in the window is answered with resets (the residual block's
/// own action), not silently dropped.
#[test]
fn a_residual_reset_sends_resets_whatever_the_arming_action() {
    let mut c = Censor::new(
        "version: 1\nlists: {r: {format: domains, entries: [residual.example]}}\nrules:\n  - {name: r, match: {list: r, on: [tls_sni]}, action: drop, residual: {seconds: 60, scope: 3-tuple, action: reset}}\n",
    );
    let hello = synth::tls_records(
        &synth::client_hello(Some("residual.example"), HelloShape::default(), 1),
        16384,
    );
    c.frame(SEC, &tcp(C, S, 40_000, 443, 100, 0x02, b""));
    let o = c.frame(SEC, &tcp(C, S, 40_000, 443, 101, 0x18, &hello));
    assert_eq!(o.applied, Applied::Drop);
    assert!(o.inject.is_empty(), "the arming rule only drops");
    // A new connection to the same server and port, inside the window.
    let o = c.frame(2 * SEC, &tcp(C, S, 40_001, 443, 500, 0x02, b""));
    assert_eq!(o.applied, Applied::Reset);
    assert!(!o.forward);
    assert!(!o.inject.is_empty());
    for f in &o.inject {
        let t = inject::trigger(LinkType::Ethernet, f).expect("a TCP frame");
        assert_eq!(t.proto, 6);
    }
}
