//! State that reaches past one host pair, with two workers as the live
//! bridge runs them (frames given to `worker_for`'s worker): a residual
//! block of scope `server` or `client` armed on one worker blocks the new
//! flows another worker carries, and a `scope: client` throttle holds all
//! of a subscriber's flows, on whichever worker, to one rate. Each test
//! also runs the workers without the shared state, as the bridge did
//! before, and shows what was missed.

use std::net::IpAddr;
use std::sync::Arc;

use chokepoint_core::decode::worker_for;
use chokepoint_core::{Engine, LinkType, Verdict};
use chokepoint_rules::{compile_str, Ruleset};
use chokepoint_runtime::actions::{Actor, ClientBuckets};
use chokepoint_runtime::residual::SharedResidual;
use chokepoint_testkit::synth::{self, HelloShape};

const WORKERS: usize = 2;
const SEC: u64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn rules(yaml: &str) -> Arc<Ruleset> {
    Arc::new(compile_str(yaml, "t.yaml", std::path::Path::new(".")).unwrap())
}

/// A TCP frame from `src:sport` to `dst:dport`.
fn tcp(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    let seg = synth::tcp_segment(src, dst, sport, dport, seq, 1, flags, data);
    synth::ethernet(&synth::ip_packet(src, dst, 6, &seg), &[])
}

fn hello(name: &str) -> Vec<u8> {
    synth::tls_records(
        &synth::client_hello(Some(name), HelloShape::default(), 1),
        16384,
    )
}

fn worker(f: &[u8]) -> usize {
    worker_for(LinkType::Ethernet, f, WORKERS)
}

/// The box's workers: engines, with the shared residual table or without.
fn engines(rs: &Arc<Ruleset>, shared: bool) -> Vec<Engine> {
    let table = Arc::new(SharedResidual::new(64));
    (0..WORKERS)
        .map(|_| {
            let mut e = Engine::one_of(rs.clone(), WORKERS);
            if shared {
                e.set_residual_store(table.clone());
            }
            e
        })
        .collect()
}

/// A flow's SYN then its ClientHello, each to its worker: the hello's
/// verdict.
fn open(es: &mut [Engine], t: u64, (c, s, port): (IpAddr, IpAddr, u16), name: &str) -> Verdict {
    let syn = tcp(c, s, port, 443, 100, 0x02, b"");
    let w = worker(&syn);
    es[w].process(t, LinkType::Ethernet, &syn);
    let data = tcp(c, s, port, 443, 101, 0x18, &hello(name));
    assert_eq!(worker(&data), w, "one flow, one worker");
    es[w].process(t + 1_000, LinkType::Ethernet, &data).verdict
}

/// A client address whose flow to `server` goes to another worker than
/// `than`'s.
fn client_on_other_worker(server: IpAddr, than: (IpAddr, u16)) -> (IpAddr, u16) {
    let w = worker(&tcp(than.0, server, than.1, 443, 1, 0x02, b""));
    (20..250)
        .map(|i| (ip(&format!("198.18.0.{i}")), 41000))
        .find(|&(c, p)| worker(&tcp(c, server, p, 443, 1, 0x02, b"")) != w)
        .expect("some client hashes to the other worker")
}

const RESIDUAL: &str = "version: 1
lists: {d: {format: domains, entries: [t.me]}}
rules:
  - {name: sni, match: {list: d}, action: reset, residual: {seconds: 60, scope: SCOPE}}
";

#[test]
fn a_server_block_reaches_the_clients_other_workers_carry() {
    let rs = rules(&RESIDUAL.replace("SCOPE", "server"));
    let server = ip("198.18.1.20");
    let first = (ip("198.18.0.10"), 40000);
    let other = client_on_other_worker(server, first);
    for shared in [true, false] {
        let mut es = engines(&rs, shared);
        assert_eq!(
            open(&mut es, SEC, (first.0, server, first.1), "t.me"),
            Verdict::Reset
        );
        // Another subscriber, an innocent name, the same server:port, on
        // the other worker: inside the server's residual block (which
        // drops: a residual block's action defaults to drop).
        let v = open(&mut es, 2 * SEC, (other.0, server, other.1), "ok.example");
        if shared {
            assert_eq!(
                v,
                Verdict::Drop,
                "the block armed on one worker covers the other's flow"
            );
        } else {
            assert_eq!(
                v,
                Verdict::Pass,
                "per worker, the other worker never heard of it"
            );
        }
    }
}

#[test]
fn a_client_block_reaches_the_servers_other_workers_carry() {
    let rs = rules(&RESIDUAL.replace("SCOPE", "client"));
    let client = (ip("198.18.0.10"), 40000);
    let first = ip("198.18.1.20");
    let w = worker(&tcp(client.0, first, client.1, 443, 1, 0x02, b""));
    let other = (21..250)
        .map(|i| ip(&format!("198.18.1.{i}")))
        .find(|&s| worker(&tcp(client.0, s, client.1 + 1, 443, 1, 0x02, b"")) != w)
        .expect("some server hashes to the other worker");
    let mut es = engines(&rs, true);
    assert_eq!(
        open(&mut es, SEC, (client.0, first, client.1), "t.me"),
        Verdict::Reset
    );
    assert_eq!(
        open(
            &mut es,
            2 * SEC,
            (client.0, other, client.1 + 1),
            "ok.example"
        ),
        Verdict::Drop,
        "the subscriber's flow to another server, on the other worker"
    );
    // After the block's 60 seconds, the same flow passes.
    assert_eq!(
        open(
            &mut es,
            70 * SEC,
            (client.0, other, client.1 + 2),
            "ok.example"
        ),
        Verdict::Pass
    );
}

#[test]
fn a_client_throttle_holds_a_subscribers_flows_on_every_worker_to_one_rate() {
    let rs = rules(
        "version: 1
lists: {d: {format: domains, entries: [t.me, www.t.me]}}
rules:
  - {name: slow, match: {list: d}, action: {throttle: {kbps: 80, burst_bytes: 10000, scope: client}}}
",
    );
    let client = (ip("198.18.0.10"), 40000);
    let s1 = ip("198.18.1.20");
    let w1 = worker(&tcp(client.0, s1, client.1, 443, 1, 0x02, b""));
    let s2 = (21..250)
        .map(|i| ip(&format!("198.18.1.{i}")))
        .find(|&s| worker(&tcp(client.0, s, client.1 + 1, 443, 1, 0x02, b"")) != w1)
        .expect("some server hashes to the other worker");
    // Over 10 s each server sends 1,000 frames of 1,000 bytes: two flows
    // of 800 kbit/s each, policed together to 80 kbit/s.
    let forwarded = |shared: bool| -> usize {
        let mut es: Vec<Engine> = (0..WORKERS)
            .map(|_| Engine::one_of(rs.clone(), WORKERS))
            .collect();
        let buckets = Arc::new(ClientBuckets::default());
        let mut actors: Vec<Actor> = (0..WORKERS)
            .map(|_| {
                if shared {
                    Actor::default().sharing_clients(buckets.clone())
                } else {
                    Actor::default()
                }
            })
            .collect();
        let mut bytes = 0;
        let flows = [(s1, client.1, "t.me"), (s2, client.1 + 1, "www.t.me")];
        for &(s, port, name) in &flows {
            assert_eq!(
                open(&mut es, SEC, (client.0, s, port), name),
                Verdict::Throttle
            );
        }
        for k in 0..1000u32 {
            let t = SEC + u64::from(k) * 10_000_000;
            for &(s, port, _) in &flows {
                let f = tcp(s, client.0, 443, port, 1000 + k * 1000, 0x10, &[0u8; 946]);
                let w = worker(&f);
                let d = es[w].process(t, LinkType::Ethernet, &f);
                let events = es[w].events().to_vec();
                if actors[w]
                    .act(&rs, LinkType::Ethernet, &f, t, &d, &events)
                    .forward
                {
                    bytes += f.len();
                }
            }
        }
        bytes
    };
    // One bucket: the burst, plus 10 s at 10,000 bytes/s (a frame of
    // slack for the last refill).
    let limit = 10_000 + 10 * 10_000 + 1_000;
    let shared = forwarded(true);
    assert!(
        shared <= limit,
        "{shared} bytes through one client's bucket, over {limit}"
    );
    assert!(
        shared >= limit * 8 / 10,
        "{shared} bytes: the rate itself must get through"
    );
    let per_worker = forwarded(false);
    assert!(
        per_worker > limit * 3 / 2,
        "per worker each flow had its own client bucket: {per_worker} bytes"
    );
}

#[test]
fn a_reload_keeps_the_bridges_learnt_servers_and_residual_blocks() {
    use chokepoint_core::learn::{LearnStore, LearnedKey, Learning};
    use chokepoint_core::residual::{Arming, ResidualStore};
    use chokepoint_rules::conditions::{ResidualAction, ResidualScope};
    use chokepoint_runtime::bridge::{reload, Shared};

    let policy = |extra: &str| {
        compile_str(
            &format!(
                "version: 1
lists:
  vpn-servers: {{format: dynamic}}
rules:
{extra}  - {{name: learnt, match: {{list: vpn-servers, on: [ip]}}, action: drop}}
  - {{name: vpn, match: {{protocols: [wireguard]}}, action: {{learn: {{list: vpn-servers, key: server, ttl: 600, delay: 0}}}}}}
"
            ),
            "t.yaml",
            std::path::Path::new("."),
        )
        .unwrap()
    };
    let sh = Shared::new(policy(""), WORKERS, 0.0);
    let server = ip("198.18.1.20");
    let tag = chokepoint_rules::ruleset::list_tag("vpn-servers");
    let key = LearnedKey::server(tag, server);
    sh.learned.learn(&Learning {
        key,
        at: SEC,
        from: SEC,
        until: 600 * SEC,
    });
    sh.residual.arm(&Arming {
        now: SEC,
        scope: ResidualScope::Client,
        proto: 6,
        client: ip("198.18.0.10"),
        server,
        port: 443,
        seconds: 60,
        rule: chokepoint_rules::RuleId::new(0).unwrap(),
        action: ResidualAction::Drop,
    });
    // A reload that adds a rule in front (every id moves) keeps both.
    assert!(reload(&sh, || Ok(policy(
        "  - {name: first, match: {keywords: [casino]}, action: drop}\n"
    ))));
    assert!(sh.learned.holds_any(&[key], 2 * SEC));
    // The block armed by rule 0 (`learnt`) names `learnt` still: now id 1.
    let block = sh
        .residual
        .check(2 * SEC, 17, ip("198.18.0.10"), ip("198.18.1.99"), 53)
        .expect("the client's block is kept");
    assert_eq!(sh.rules.load().rule(block.rule).name, "learnt");
    assert_eq!(block.rule.index(), 1);
    // And a worker's engine made after the reload, as the bridge makes
    // them, blocks a new flow to the learnt server through the new rules.
    let mut e = Engine::one_of(sh.rules.load_full(), WORKERS);
    e.set_learn_store(sh.learned.clone());
    let syn = tcp(ip("198.18.0.50"), server, 40000, 8443, 1, 0x02, b"");
    let d = e.process(3 * SEC, LinkType::Ethernet, &syn);
    assert_eq!(d.verdict, Verdict::Drop);
    let rule = d
        .rule
        .map(|r| sh.rules.load().meta.rules[r.index()].name.clone());
    assert_eq!(rule.as_deref(), Some("learnt"));
}
