//! Actions the core enforces packet by packet: `freeze` (the TSPU's 2025
//! "16-20 KB freeze") and `degrade` (the 2024 YouTube slowdown), on
//! synthetic traffic and synthetic time. Every random draw is seeded, so
//! each scenario is run twice and must come out the same.

mod common;

use chokepoint_core::{Decision, Engine, LinkType, Verdict};
use chokepoint_testkit::synth::{self, HelloShape};
use common::{compile, tcp, C, S, SEC};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

/// An engine whose only rule applies `action` to the server's address.
fn engine(action: &str, seed: u64) -> Engine {
    Engine::new(compile(&format!(
        r#"
version: 1
lists:
  hosting: {{format: cidr, entries: ["{S}/32"]}}
rules:
  - {{name: hosting, match: {{list: hosting, on: [ip]}}, action: {action}}}
profile: {{seed: {seed}}}
"#
    )))
}

/// One TCP connection from client port `port`, fed packet by packet.
struct Conn<'e> {
    e: &'e mut Engine,
    port: u16,
    t: u64,
    /// The client's next sequence number.
    seq: u32,
    /// What the opening SYN got.
    opened: Option<Decision>,
}

impl<'e> Conn<'e> {
    /// Open with a SYN (which the address rule decides).
    fn open(e: &'e mut Engine, port: u16) -> Conn<'e> {
        let mut c = Conn::new(e, port);
        let d = c.client(SYN, b"");
        assert!(d.decided_now, "{d:?}");
        c.opened = Some(d);
        c
    }
    fn new(e: &'e mut Engine, port: u16) -> Conn<'e> {
        Conn {
            e,
            port,
            t: SEC,
            seq: 1,
            opened: None,
        }
    }
    fn send(&mut self, f: Vec<u8>) -> Decision {
        self.t += 1_000_000;
        self.e.process(self.t, LinkType::Ethernet, &f)
    }
    fn client(&mut self, flags: u8, payload: &[u8]) -> Decision {
        let seq = self.seq;
        self.seq = seq.wrapping_add(payload.len() as u32 + u32::from(flags & SYN != 0));
        self.send(tcp(C, S, self.port, 443, seq, flags, payload))
    }
    fn server(&mut self, flags: u8, payload: &[u8]) -> Decision {
        self.send(tcp(S, C, 443, self.port, 1, flags, payload))
    }
}

#[test]
fn a_freeze_passes_the_segment_that_reaches_the_threshold_and_drops_all_after_it() {
    let mut e = engine("{freeze: {after_bytes: 5000}}", 0);
    let mut c = Conn::open(&mut e, 40000);
    // The client's request does not count (server_to_client).
    assert!(c.client(PSH_ACK, &[b'G'; 600]).forwards());
    // 4 x 1200 = 4800 < 5000: all pass; the fifth reaches 6000 and still
    // passes, because only 4800 bytes had gone before it.
    for i in 0..5 {
        let d = c.server(PSH_ACK, &[0; 1200]);
        assert_eq!(d.verdict, Verdict::Freeze);
        assert!(d.forwards(), "segment {i}: {d:?}");
    }
    // From here the flow is frozen, both ways, and nothing is sent.
    for _ in 0..3 {
        let d = c.server(PSH_ACK, &[0; 1200]);
        assert!(d.dropped && !d.forwards(), "{d:?}");
        assert!(c.client(ACK, b"").dropped);
    }
    assert_eq!(e.counters.frozen, 6);
    assert!(e.events().is_empty(), "one event, at the decision");
}

#[test]
fn a_freeze_at_exactly_the_threshold_drops_the_next_segment() {
    let mut e = engine("{freeze: {after_bytes: 3000}}", 0);
    let mut c = Conn::open(&mut e, 40000);
    assert!(c.server(PSH_ACK, &[0; 1000]).forwards());
    assert!(c.server(PSH_ACK, &[0; 1000]).forwards());
    assert!(c.server(PSH_ACK, &[0; 1000]).forwards(), "byte 3000 passes");
    assert!(c.server(PSH_ACK, &[0; 1]).dropped, "byte 3001 does not");
}

#[test]
fn a_freeze_counts_only_its_direction() {
    let mut e = engine(
        "{freeze: {after_bytes: 1000, direction: client_to_server}}",
        0,
    );
    let mut c = Conn::open(&mut e, 40000);
    for _ in 0..20 {
        assert!(
            c.server(PSH_ACK, &[0; 1400]).forwards(),
            "server bytes do not count"
        );
    }
    assert!(c.client(PSH_ACK, &[1; 999]).forwards());
    assert!(c.client(PSH_ACK, &[1; 1]).forwards(), "byte 1000");
    assert!(c.server(PSH_ACK, &[0; 10]).dropped, "frozen both ways");

    let mut e = engine("{freeze: {after_bytes: 1000, direction: both}}", 0);
    let mut c = Conn::open(&mut e, 40000);
    assert!(c.client(PSH_ACK, &[1; 500]).forwards());
    assert!(c.server(PSH_ACK, &[0; 500]).forwards());
    assert!(c.client(ACK, b"").dropped, "500 + 500 counted");
}

#[test]
fn a_freeze_decided_by_name_counts_the_deciding_hello() {
    let mut e = Engine::new(compile(
        r#"
version: 1
lists:
  cdn: {format: domains, entries: [cdn.example]}
rules:
  - {name: cdn, match: {list: cdn}, action: {freeze: {after_bytes: 10, direction: client_to_server}}}
"#,
    ));
    let mut c = Conn::new(&mut e, 40001);
    assert!(c.client(SYN, b"").forwards());
    assert!(c.server(SYN | ACK, b"").forwards());
    let hello = synth::tls_records(
        &synth::client_hello(Some("www.cdn.example"), HelloShape::default(), 1),
        16384,
    );
    let d = c.client(PSH_ACK, &hello);
    assert!(d.decided_now && d.verdict == Verdict::Freeze, "{d:?}");
    assert!(d.forwards(), "the hello crosses the threshold, and passes");
    assert!(c.server(PSH_ACK, &[0; 100]).dropped);
}

/// Per flow, how many one-byte server segments pass before the freeze.
fn thresholds(action: &str, seed: u64, flows: u16) -> Vec<u32> {
    let mut e = engine(action, seed);
    (0..flows)
        .map(|i| {
            let mut c = Conn::open(&mut e, 20000 + i);
            let mut n = 0;
            while c.server(PSH_ACK, b"x").forwards() {
                n += 1;
                assert!(n <= 1000, "never froze");
            }
            n
        })
        .collect()
}

#[test]
fn a_freeze_range_draws_each_flows_threshold_within_it_the_same_way_every_run() {
    let action = "{freeze: {after_bytes: [100, 300]}}";
    let a = thresholds(action, 7, 60);
    assert!(a.iter().all(|n| (100..=300).contains(n)), "{a:?}");
    let distinct: std::collections::BTreeSet<_> = a.iter().collect();
    assert!(distinct.len() > 30, "drawn, not fixed: {a:?}");
    assert_eq!(a, thresholds(action, 7, 60), "a replay draws the same");
    assert_ne!(a, thresholds(action, 8, 60), "the seed is used");
    let fixed = thresholds("{freeze: {after_bytes: [150, 150]}}", 7, 5);
    assert_eq!(fixed, [150; 5]);
}

/// Of `flows` connections, how many froze after 100 server bytes.
fn frozen_flows(probability: &str, seed: u64, flows: u16) -> usize {
    let mut e = engine(
        &format!("{{freeze: {{after_bytes: 100, probability: {probability}}}}}"),
        seed,
    );
    (0..flows)
        .filter(|i| {
            let mut c = Conn::open(&mut e, 10000 + i);
            assert!(c.server(PSH_ACK, &[0; 200]).forwards());
            c.server(PSH_ACK, &[0; 200]).dropped
        })
        .count()
}

#[test]
fn a_freeze_probability_picks_that_share_of_flows() {
    assert_eq!(frozen_flows("0", 1, 500), 0);
    assert_eq!(frozen_flows("1.0", 1, 500), 500);
    let half = frozen_flows("0.5", 1, 2000);
    // Binomial(2000, 0.5): sd 22; 150 is almost 7 of them.
    assert!((850..=1150).contains(&half), "{half}");
    assert_eq!(
        half,
        frozen_flows("0.5", 1, 2000),
        "the same flows each run"
    );
    let tenth = frozen_flows("0.1", 1, 2000);
    assert!((120..=280).contains(&tenth), "{tenth}");
}

/// Which of `n` server segments a degrade drops.
fn degraded(action: &str, seed: u64, n: usize) -> Vec<bool> {
    let mut e = engine(action, seed);
    let mut c = Conn::open(&mut e, 40000);
    let v: Vec<bool> = (0..n)
        .map(|_| c.server(PSH_ACK, &[0; 100]).dropped)
        .collect();
    let syn = u64::from(c.opened.unwrap().dropped);
    assert_eq!(
        e.counters.degraded,
        v.iter().filter(|d| **d).count() as u64 + syn
    );
    v
}

#[test]
fn a_degrade_drops_its_share_of_10000_packets_the_same_way_every_run() {
    let a = degraded("{degrade: {loss: 0.5}}", 3, 10_000);
    let dropped = a.iter().filter(|d| **d).count();
    // Binomial(10000, 0.5): sd 50.
    assert!((4700..=5300).contains(&dropped), "{dropped}");
    assert_eq!(a, degraded("{degrade: {loss: 0.5}}", 3, 10_000));
    assert_ne!(a, degraded("{degrade: {loss: 0.5}}", 4, 10_000));
    assert!(degraded("{degrade: {loss: 0}}", 3, 1000).iter().all(|d| !d));
    assert!(degraded("{degrade: {loss: 1}}", 3, 1000).iter().all(|d| *d));
    let light = degraded("{degrade: {loss: 0.05}}", 3, 10_000);
    let n = light.iter().filter(|d| **d).count();
    assert!((350..=650).contains(&n), "{n}");
}

#[test]
fn a_degrade_keeps_to_its_direction() {
    let mut e = engine("{degrade: {loss: 1, direction: client_to_server}}", 0);
    let mut c = Conn::open(&mut e, 40000);
    for _ in 0..100 {
        assert!(c.server(PSH_ACK, &[0; 100]).forwards());
        assert!(c.client(ACK, b"").dropped);
    }
}

#[test]
fn a_degrade_of_acks_drops_only_the_clients_pure_acks() {
    let mut e = engine("{degrade: {loss: 0.5, packets: acks}}", 5);
    let mut c = Conn::open(&mut e, 40000);
    let mut acks_dropped = 0;
    for _ in 0..2000 {
        assert!(c.server(PSH_ACK, &[0; 1000]).forwards(), "server data");
        assert!(c.server(ACK, b"").forwards(), "the server's pure ACK");
        assert!(c.client(PSH_ACK, b"more").forwards(), "client data");
        assert!(
            c.client(ACK | 0x01, b"").forwards(),
            "a FIN is not a pure ACK"
        );
        if c.client(ACK, b"").dropped {
            acks_dropped += 1;
        }
    }
    assert!((850..=1150).contains(&acks_dropped), "{acks_dropped}");
}

#[test]
fn plain_verdicts_are_never_marked_dropped() {
    let mut e = engine("drop", 0);
    let mut c = Conn::open(&mut e, 40000);
    let d = c.server(PSH_ACK, &[0; 100]);
    assert_eq!(
        (d.verdict, d.dropped, d.forwards()),
        (Verdict::Drop, false, false)
    );
    let mut e = engine("log", 0);
    let mut c = Conn::new(&mut e, 1);
    let d = c.server(PSH_ACK, &[0; 100]);
    assert_eq!(
        (d.verdict, d.dropped, d.forwards()),
        (Verdict::Log, false, true)
    );
}

#[test]
fn a_freeze_default_is_enforced_on_undecided_flows() {
    let mut e = Engine::new(compile(
        "version: 1\ndefault: {freeze: {after_bytes: 10}}\nprofile: {seed: 1}\n",
    ));
    let mut c = Conn::new(&mut e, 40000);
    assert!(c.client(SYN, b"").forwards());
    assert!(c.server(PSH_ACK, &[0; 10]).forwards());
    let d = c.server(PSH_ACK, &[0; 10]);
    assert_eq!((d.verdict, d.dropped), (Verdict::Freeze, true));
}
