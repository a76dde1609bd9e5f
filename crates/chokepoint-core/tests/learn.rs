//! Two-stage blocking (`learn`): a detection adds the server to a dynamic
//! list after `delay`, for `ttl`; IP rules on the list then block new
//! flows to it, and the detected flow itself, for everyone. The lists live
//! in the runtime's shared table (`LearnedTable`), so they survive
//! `set_rules`, are bounded, and run on synthetic time here as a replay's
//! capture time drives them.

use std::sync::Arc;

use chokepoint_core::{Engine, Verdict};
use chokepoint_rules::{Hit, Trigger};
use chokepoint_runtime::learned::LearnedTable;
use chokepoint_testkit::vpn;

mod common;

use common::*;

/// TSPU's cycle, shortened: a WireGuard handshake is let through and its
/// server:port learnt; 10 s later it is blocked for 60 s.
const TWO_STAGE: &str = r#"
version: 1
lists:
  vpn-servers: {format: dynamic}
rules:
  - name: vpn-servers
    match: {list: vpn-servers, on: [ip]}
    action: drop
  - name: detect-wireguard
    match: {protocols: [wireguard]}
    action: {learn: {list: vpn-servers, key: server_port, ttl: 60, delay: 10}}
"#;

fn engine_with_table(yaml: &str, table: &Arc<LearnedTable>) -> Engine {
    let mut e = Engine::new(compile(yaml));
    e.set_learn_store(table.clone());
    e
}

fn table() -> Arc<LearnedTable> {
    Arc::new(LearnedTable::new(1024))
}

#[test]
fn a_handshake_then_a_plain_packet_to_the_same_port_is_dropped_after_the_delay() {
    let t = table();
    let mut e = engine_with_table(TWO_STAGE, &t);
    let (v, _) = run(
        &mut e,
        0,
        &udp(C, S, 40000, 51820, &vpn::wireguard_initiation(1)),
    );
    assert_eq!(v, Verdict::Learn, "detected, forwarded, learnt");
    assert_eq!(e.events()[0].verdict, Verdict::Learn);
    assert_eq!(t.len(), 1);
    // A plain UDP packet from another port: a new flow to the server:port.
    let plain = |e: &mut Engine, at: u64, sport: u16, port: u16| {
        run(e, at, &udp("198.18.0.77", S, sport, port, b"hello")).0
    };
    assert_eq!(
        plain(&mut e, 9 * SEC, 41000, 51820),
        Verdict::Pass,
        "before the delay"
    );
    assert_eq!(
        plain(&mut e, 10 * SEC, 41001, 51820),
        Verdict::Drop,
        "at the delay"
    );
    let ev = &e.events()[0];
    assert_eq!(ev.trigger, Trigger::Ip);
    assert!(matches!(ev.hit, Some(Hit::Learned(_))));
    assert_eq!(e.rules().describe(ev.hit.unwrap()).list, "vpn-servers");
    assert_eq!(
        plain(&mut e, 11 * SEC, 41002, 51821),
        Verdict::Pass,
        "another port"
    );
    assert_eq!(plain(&mut e, 69 * SEC, 41003, 51820), Verdict::Drop);
    assert_eq!(
        plain(&mut e, 70 * SEC, 41004, 51820),
        Verdict::Pass,
        "after the ttl"
    );
    assert_eq!(e.counters.learned, 1);
    assert_eq!(e.counters.learned_hits, 2);
}

#[test]
fn the_learnt_tunnel_itself_is_cut_once_its_entry_blocks() {
    let t = table();
    let mut e = engine_with_table(TWO_STAGE, &t);
    let flow =
        |e: &mut Engine, at: u64, payload: &[u8]| run(e, at, &udp(C, S, 40000, 51820, payload)).0;
    assert_eq!(
        flow(&mut e, 0, &vpn::wireguard_initiation(1)),
        Verdict::Learn
    );
    assert_eq!(
        flow(&mut e, 5 * SEC, &vpn::wireguard(4, 128, 2)),
        Verdict::Learn
    );
    assert_eq!(
        flow(&mut e, 10 * SEC, &vpn::wireguard(4, 128, 3)),
        Verdict::Drop
    );
    assert_eq!(e.events()[0].rule.map(|r| r.index()), Some(0));
    assert_eq!(
        flow(&mut e, 11 * SEC, &vpn::wireguard(4, 128, 4)),
        Verdict::Drop
    );
}

#[test]
fn key_server_blocks_every_port_and_transport() {
    let t = table();
    let mut e = engine_with_table(&TWO_STAGE.replace("server_port", "server"), &t);
    run(
        &mut e,
        0,
        &udp(C, S, 40000, 51820, &vpn::wireguard_initiation(1)),
    );
    let syn = tcp("198.18.0.78", S, 45000, 443, 1, 0x02, b"");
    assert_eq!(run(&mut e, 10 * SEC, &syn).0, Verdict::Drop);
}

#[test]
fn learnt_entries_survive_a_reload_that_reorders_the_lists() {
    let t = table();
    let mut e = engine_with_table(TWO_STAGE, &t);
    run(
        &mut e,
        0,
        &udp(C, S, 40000, 51820, &vpn::wireguard_initiation(1)),
    );
    // Lists are numbered by name: `aaa` now comes before `vpn-servers`.
    let reloaded = TWO_STAGE.replace(
        "lists:\n",
        "lists:\n  aaa: {format: cidr, entries: [192.0.2.0/24]}\n",
    );
    e.set_rules(compile(&reloaded));
    let (v, _) = run(&mut e, 10 * SEC, &udp("198.18.0.77", S, 41000, 51820, b"x"));
    assert_eq!(v, Verdict::Drop);
    // A second engine (another worker) sharing the table sees it too.
    let mut other = engine_with_table(TWO_STAGE, &t);
    let (v, _) = run(
        &mut other,
        11 * SEC,
        &udp("198.18.0.79", S, 41000, 51820, b"x"),
    );
    assert_eq!(v, Verdict::Drop);
}

#[test]
fn the_table_is_bounded_and_counts_what_it_drops() {
    let t = Arc::new(LearnedTable::new(2));
    let mut e = engine_with_table(TWO_STAGE, &t);
    for i in 0..3u8 {
        let server = format!("198.19.5.{i}");
        run(
            &mut e,
            u64::from(i),
            &udp(C, &server, 40000, 51820, &vpn::wireguard_initiation(1)),
        );
    }
    assert_eq!(t.len(), 2);
    assert_eq!(t.stats().evicted, 1);
    let probe = |e: &mut Engine, server: &str| {
        run(e, 20 * SEC, &udp("198.18.0.9", server, 42000, 51820, b"x")).0
    };
    assert_eq!(
        probe(&mut e, "198.19.5.0"),
        Verdict::Pass,
        "the oldest was evicted"
    );
    assert_eq!(probe(&mut e, "198.19.5.2"), Verdict::Drop);
}

#[test]
fn without_a_table_nothing_is_learnt_and_it_is_counted() {
    let mut e = Engine::new(compile(TWO_STAGE));
    let (v, _) = run(
        &mut e,
        0,
        &udp(C, S, 40000, 51820, &vpn::wireguard_initiation(1)),
    );
    assert_eq!(v, Verdict::Learn);
    assert_eq!((e.counters.learned, e.counters.learn_unstored), (0, 1));
    let (v, _) = run(&mut e, 20 * SEC, &udp("198.18.0.77", S, 41000, 51820, b"x"));
    assert_eq!(v, Verdict::Pass);
}

#[test]
fn learn_needs_a_dynamic_list_and_sane_times() {
    let compile_err = |yaml: &str| {
        chokepoint_rules::compile_str(yaml, "t.yaml", std::path::Path::new("."))
            .unwrap_err()
            .to_string()
    };
    let e = compile_err(
        &TWO_STAGE.replace("{format: dynamic}", "{format: cidr, entries: [192.0.2.1]}"),
    );
    assert!(e.contains("not a `format: dynamic` list"), "{e}");
    let e = compile_err(&TWO_STAGE.replace("ttl: 60", "ttl: 0"));
    assert!(e.contains("learn.ttl must be within"), "{e}");
    let e = compile_err(&TWO_STAGE.replace("delay: 10", "delay: 100000"));
    assert!(e.contains("learn.delay must be within"), "{e}");
    let e = compile_err(&TWO_STAGE.replace(
        "{format: dynamic}",
        "{format: dynamic, entries: [192.0.2.1]}",
    ));
    assert!(e.contains("learn` actions fill it"), "{e}");
    let e = compile_err(
        "version: 1\nrules:\n  - {name: r, match: {protocols: [ssh]}, action: learn}\n",
    );
    assert!(e.contains("learn needs its list and ttl"), "{e}");
}

#[test]
fn a_server_that_speaks_first_is_still_the_server_when_the_side_is_known() {
    // The WireGuard server rekeys towards its peer: its initiation is the
    // flow's first packet. A bridge knows it came from outside.
    let t = table();
    let mut e = engine_with_table(TWO_STAGE, &t);
    // The server's packets are not read (`direction: client_to_server`);
    // the subscriber's response is.
    let init = udp(S, C, 51820, 40000, &vpn::wireguard_initiation(1));
    let response = udp(C, S, 40000, 51820, &vpn::wireguard(2, 92, 2));
    let eth = chokepoint_core::LinkType::Ethernet;
    let d = e.process_from(0, eth, &init, false);
    assert_eq!(d.verdict, Verdict::Pass);
    let d = e.process_from(1, eth, &response, true);
    assert_eq!(d.verdict, Verdict::Learn);
    let (v, _) = run(&mut e, 11 * SEC, &udp("198.18.0.77", S, 41000, 51820, b"x"));
    assert_eq!(v, Verdict::Drop, "the server's port was learnt");
    // Without the side, the sender is taken for the client: it is its
    // initiation that is read, and the subscriber's port that is learnt
    // (what a replay of a capture starting there does).
    let t = table();
    let mut e = engine_with_table(TWO_STAGE, &t);
    assert_eq!(run(&mut e, 0, &init).0, Verdict::Learn);
    let (v, _) = run(&mut e, 11 * SEC, &udp("198.18.0.77", S, 41000, 51820, b"x"));
    assert_eq!(v, Verdict::Pass);
}
