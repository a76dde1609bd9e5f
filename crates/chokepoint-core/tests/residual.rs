//! Residual blocking on synthetic traffic with synthetic time: the GFW's
//! QUIC SNI filter (Zohaib et al., USENIX Security 2025: the first packet
//! of a flow only, source port >= destination port, 180 s on the 3-tuple),
//! each scope, the window's last second, and the table's cap.

use chokepoint_core::quic::V1;
use chokepoint_core::{Engine, Verdict};
use chokepoint_rules::Trigger;
use chokepoint_testkit::synth::{self, HelloShape};

mod common;

use common::*;

const GFW_QUIC: &str = r#"
version: 1
lists:
  gfw-names: {format: domains, entries: [blocked.example]}
rules:
  - name: gfw-quic-sni
    match: {list: gfw-names, on: [quic_sni], proto: udp, first_packet: true, src_port_ge_dst_port: true}
    action: drop
    residual: {seconds: 180, scope: 3-tuple, action: drop}
profile: {timeouts: {udp: 60}}
"#;

#[test]
fn gfw_quic_blocks_the_3_tuple_for_180_seconds() {
    let mut e = engine_of(GFW_QUIC);
    let (v, ev) = run(
        &mut e,
        0,
        &udp(C, S, 50000, 443, &initial(V1, "www.blocked.example", 1200)),
    );
    assert_eq!(v, Verdict::Drop);
    assert_eq!(ev[0].0, Trigger::QuicSni);
    assert_eq!(e.counters.residual_armed, 1);
    // An innocent Initial on a new flow of the 3-tuple, a second before
    // the end: blocked, by the residual trigger and the arming rule.
    let (v, ev) = run(
        &mut e,
        179 * SEC,
        &udp(C, S, 50001, 443, &initial(V1, "innocent.example", 1200)),
    );
    assert_eq!(v, Verdict::Drop);
    assert_eq!(ev[0].0, Trigger::Residual);
    assert_eq!(e.events()[0].rule.map(|r| r.index()), Some(0));
    assert_eq!(e.counters.residual_hits, 1);
    assert_eq!(
        e.counters.decisions_by_trigger[Trigger::Residual.index()],
        1
    );
    // Same client and server, another port; another client: not covered.
    let (v, _) = run(
        &mut e,
        179 * SEC,
        &udp(C, S, 50002, 8443, &initial(V1, "innocent.example", 1200)),
    );
    assert_eq!(v, Verdict::Pass);
    let (v, _) = run(
        &mut e,
        179 * SEC,
        &udp(
            "198.18.0.11",
            S,
            50003,
            443,
            &initial(V1, "innocent.example", 1200),
        ),
    );
    assert_eq!(v, Verdict::Pass);
    // The window ends at 180 s exactly; a second after it, all passes.
    let (v, _) = run(
        &mut e,
        180 * SEC,
        &udp(C, S, 50004, 443, &initial(V1, "innocent.example", 1200)),
    );
    assert_eq!(v, Verdict::Pass);
    let (v, _) = run(
        &mut e,
        181 * SEC,
        &udp(C, S, 50005, 443, &initial(V1, "innocent.example", 1200)),
    );
    assert_eq!(v, Verdict::Pass);
    assert_eq!(e.counters.residual_expired, 1);
}

#[test]
fn gfw_quic_needs_source_port_at_least_destination_port() {
    let mut e = engine_of(GFW_QUIC);
    // Client port 400 < server port 443: not inspected, nothing armed.
    let (v, _) = run(
        &mut e,
        0,
        &udp(C, S, 400, 443, &initial(V1, "www.blocked.example", 1200)),
    );
    assert_eq!(v, Verdict::Pass);
    assert_eq!(e.counters.residual_armed, 0);
    // Only the first packet of a flow: a blocked Initial second passes.
    run(&mut e, 1, &udp(C, S, 50010, 443, &[0x08; 40]));
    let (v, _) = run(
        &mut e,
        2,
        &udp(C, S, 50010, 443, &initial(V1, "www.blocked.example", 1200)),
    );
    assert_eq!(v, Verdict::Pass);
}

/// A rule that fires on `nets` to port 443 only, leaving `scope` behind.
fn scoped(scope: &str, action: &str) -> Engine {
    engine_of(&format!(
        r#"
version: 1
lists:
  nets: {{format: cidr, entries: [198.51.100.0/24]}}
rules:
  - name: https-to-nets
    match: {{list: nets, on: [ip], dst_ports: [443]}}
    action: drop
    residual: {{seconds: 90, scope: {scope}, action: {action}}}
"#
    ))
}

const NET: &str = "198.51.100.1";
const OTHER_CLIENT: &str = "198.18.0.99";

fn syn(e: &mut Engine, t: u64, client: &str, server: &str, sport: u16, dport: u16) -> Verdict {
    run(e, t, &tcp(client, server, sport, dport, 1, 0x02, b"")).0
}

#[test]
fn each_scope_covers_what_it_says() {
    // (scope, same pair other port, same client other server); the server
    // scope's own case needs a server the rule does not cover: below.
    for (scope, pair, client) in [
        ("3-tuple", false, false),
        ("2-tuple", true, false),
        ("server", false, false),
        ("client", true, true),
    ] {
        let mut e = scoped(scope, "drop");
        assert_eq!(
            syn(&mut e, 0, C, NET, 40000, 443),
            Verdict::Drop,
            "{scope}: the rule"
        );
        let blocked = |v: Verdict| v == Verdict::Drop;
        assert!(
            blocked(syn(&mut e, SEC, C, NET, 40001, 443)),
            "{scope} 3-tuple"
        );
        // Port 80 to NET: the rule itself does not fire there.
        assert_eq!(
            blocked(syn(&mut e, SEC, C, NET, 40002, 80)),
            pair,
            "{scope} 2-tuple"
        );
        assert!(
            !blocked(syn(&mut e, SEC, OTHER_CLIENT, NET, 40003, 8080)),
            "{scope} other client other port"
        );
        assert_eq!(
            blocked(syn(&mut e, SEC, C, "203.0.113.1", 40004, 443)),
            client,
            "{scope} client"
        );
    }
    // The server scope, with a server the rule itself does not cover.
    let mut e = engine_of(
        r#"
version: 1
lists:
  names: {format: domains, entries: [blocked.example]}
rules:
  - name: sni
    match: {list: names, on: [tls_sni]}
    action: reset
    residual: {seconds: 120, scope: server, action: reset}
"#,
    );
    let ch = synth::tls_records(
        &synth::client_hello(Some("blocked.example"), HelloShape::default(), 1),
        16384,
    );
    run(&mut e, 0, &tcp(C, S, 40000, 443, 1, 0x02, b""));
    let (v, _) = run(&mut e, 1, &tcp(C, S, 40000, 443, 2, 0x18, &ch));
    assert_eq!(v, Verdict::Reset);
    assert_eq!(
        syn(&mut e, 2 * SEC, OTHER_CLIENT, S, 40001, 443),
        Verdict::Reset,
        "other client, same server:port"
    );
    assert_eq!(
        syn(&mut e, 2 * SEC, OTHER_CLIENT, S, 40002, 80),
        Verdict::Pass,
        "other port"
    );
    assert_eq!(
        syn(&mut e, 121 * SEC, OTHER_CLIENT, S, 40003, 443),
        Verdict::Pass,
        "after 120 s"
    );
}

#[test]
fn residual_reset_gives_reset() {
    let mut e = scoped("2-tuple", "reset");
    assert_eq!(syn(&mut e, 0, C, NET, 40000, 443), Verdict::Drop);
    assert_eq!(syn(&mut e, SEC, C, NET, 40001, 80), Verdict::Reset);
}

#[test]
fn a_full_table_evicts_the_oldest_block_and_counts_it() {
    let mut e = engine_of(
        r#"
version: 1
lists:
  nets: {format: cidr, entries: [198.51.100.0/24]}
rules:
  - name: https-to-nets
    match: {list: nets, on: [ip], dst_ports: [443]}
    action: drop
    residual: {seconds: 90, scope: 2-tuple, action: drop}
profile: {max_residual_entries: 2}
"#,
    );
    for (i, c) in ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            syn(&mut e, i as u64 * SEC, c, NET, 40000, 443),
            Verdict::Drop
        );
    }
    assert_eq!(e.counters.residual_armed, 3);
    assert_eq!(e.counters.residual_evicted, 1);
    assert_eq!(e.residual_entries(), 2);
    assert_eq!(
        syn(&mut e, 5 * SEC, "198.18.0.1", NET, 40001, 80),
        Verdict::Pass,
        "evicted"
    );
    assert_eq!(
        syn(&mut e, 5 * SEC, "198.18.0.3", NET, 40001, 80),
        Verdict::Drop,
        "kept"
    );
    e.expire(200 * SEC);
    assert_eq!(e.residual_entries(), 0);
    assert_eq!(e.counters.residual_expired, 2);
}

#[test]
fn a_policy_without_residual_arms_nothing() {
    let mut e = engine();
    run(&mut e, 0, &tcp(C, "198.19.0.1", 40000, 443, 1, 0x02, b""));
    assert_eq!(e.counters.residual_armed, 0);
    assert_eq!(e.residual_entries(), 0);
}

#[test]
fn a_reload_keeps_blocks_on_their_rule_by_name_and_ends_those_of_gone_rules() {
    let policy = |before: &str, residual_rule: bool| {
        compile(&format!(
            r#"
version: 1
lists:
  nets: {{format: cidr, entries: [198.51.100.0/24]}}
  names: {{format: domains, entries: [casino.example]}}
rules:
{before}{}"#,
            if residual_rule {
                "  - {name: https-to-nets, match: {list: nets, on: [ip], dst_ports: [443]}, action: drop, residual: {seconds: 90, scope: 2-tuple}}\n"
            } else {
                ""
            }
        ))
    };
    let mut e = Engine::new(policy("", true));
    assert_eq!(syn(&mut e, SEC, C, NET, 40_000, 443), Verdict::Drop);
    assert_eq!(e.residual_entries(), 1);
    // Two rules now come first: the block's rule is id 2, and a new flow
    // of the pair, to a port the rule does not cover, is blocked by it.
    e.set_rules(policy(
        "  - {name: a, match: {list: names}, action: drop}\n  - {name: b, match: {keywords: [poker]}, action: drop}\n",
        true,
    ));
    let t = 2 * SEC;
    let v = syn(&mut e, t, C, NET, 40_001, 80);
    assert_eq!(v, Verdict::Drop);
    let rule = e.events()[0].rule.expect("the block's rule");
    assert_eq!(e.rules().rule(rule).name, "https-to-nets");
    // A policy without that rule: its block ends with it.
    e.set_rules(policy(
        "  - {name: a, match: {list: names}, action: drop}\n",
        false,
    ));
    assert_eq!(e.residual_entries(), 0);
    assert_eq!(syn(&mut e, 3 * SEC, C, NET, 40_002, 80), Verdict::Pass);
}
