//! Conditions on rules, on synthetic traffic with synthetic time: TSPU's
//! 2022 QUIC filter (version 1, udp/443, payload >= 1001 bytes, the first
//! packet only), its 2024 ECH rule (the name AND the extension), the 2025
//! hosting freeze (TLS to hosting ranges, an allowlist exempt), the 2025
//! mobile allowlists (`default: drop`, the SYN passing), and the edges of
//! each: 1000 vs 1001 bytes, source port 443, draft-29 and v2 Initials.

use std::sync::Arc;

use chokepoint_core::quic::V1;
use chokepoint_core::{Engine, Verdict};
use chokepoint_rules::Trigger;
use chokepoint_testkit::synth;

mod common;

use common::*;

const V2: u32 = 0x6b33_43cf;
const DRAFT_29: u32 = 0xff00_001d;

const QUIC_2022: &str = r#"
version: 1
rules:
  - name: quic-2022
    match: {protocols: [quic], quic_versions: [1], dst_ports: [443], min_bytes: 1001, first_packet: true}
    action: drop
"#;

#[test]
fn quic_2022_drops_v1_initials_of_1001_bytes_and_more() {
    let mut e = engine_of(QUIC_2022);
    let (v, ev) = run(
        &mut e,
        0,
        &udp(C, S, 50000, 443, &initial(V1, "any.example", 1001)),
    );
    assert_eq!(v, Verdict::Drop);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].0, Trigger::Protocol, "no name needed: {ev:?}");
    assert_eq!(e.events()[0].rule.map(|r| r.index()), Some(0));
    // The flow stays decided.
    let (v, _) = run(
        &mut e,
        1,
        &udp(C, S, 50000, 443, &initial(V1, "any.example", 1200)),
    );
    assert_eq!(v, Verdict::Drop);
}

#[test]
fn quic_2022_passes_1000_bytes() {
    let mut e = engine_of(QUIC_2022);
    let (v, ev) = run(
        &mut e,
        0,
        &udp(C, S, 50001, 443, &initial(V1, "any.example", 1000)),
    );
    assert_eq!((v, ev.len()), (Verdict::Pass, 1), "{ev:?}");
    assert_eq!(
        ev[0].0,
        Trigger::QuicSni,
        "the SNI was judged, nothing matched"
    );
}

#[test]
fn quic_2022_is_not_triggered_from_source_port_443() {
    let mut e = engine_of(QUIC_2022);
    // From :443 to an ephemeral port: the server's side of a flow.
    let (v, _) = run(
        &mut e,
        0,
        &udp(C, S, 443, 50002, &initial(V1, "any.example", 1200)),
    );
    assert_eq!(v, Verdict::Pass);
    // From :443 to :444: the sender is the client, the server port is 444.
    let (v, _) = run(
        &mut e,
        1,
        &udp(C, S, 443, 444, &initial(V1, "any.example", 1200)),
    );
    assert_eq!(v, Verdict::Pass);
}

#[test]
fn quic_2022_passes_draft_29_and_v2() {
    let mut e = engine_of(QUIC_2022);
    for (i, version) in [DRAFT_29, V2].into_iter().enumerate() {
        let (v, ev) = run(
            &mut e,
            i as u64,
            &udp(
                C,
                S,
                50010 + i as u16,
                443,
                &initial(version, "any.example", 1200),
            ),
        );
        assert_eq!(v, Verdict::Pass, "version {version:#x}");
        assert!(ev.iter().all(|x| x.0 != Trigger::Protocol), "{ev:?}");
    }
    assert_eq!(
        e.counters.decisions_by_trigger[Trigger::Protocol.index()],
        0
    );
}

#[test]
fn first_packet_a_flow_that_did_not_start_as_quic_is_never_checked_again() {
    let mut e = engine_of(QUIC_2022);
    // A first datagram that is not a QUIC long header (the 0x08 bit keeps
    // the flow open to inspection, as a Google QUIC public header would).
    let (v, _) = run(&mut e, 0, &udp(C, S, 50020, 443, &[0x08; 40]));
    assert_eq!(v, Verdict::Pass);
    let (v, ev) = run(
        &mut e,
        1,
        &udp(C, S, 50020, 443, &initial(V1, "any.example", 1200)),
    );
    assert_eq!(v, Verdict::Pass, "{ev:?}");
    // A first Initial too small, then a big one: the same.
    run(
        &mut e,
        2,
        &udp(C, S, 50021, 443, &initial(V1, "any.example", 900)),
    );
    let (v, _) = run(
        &mut e,
        3,
        &udp(C, S, 50021, 443, &initial(V1, "any.example", 1200)),
    );
    assert_eq!(v, Verdict::Pass);
    // Without `first_packet`, the Initial after the odd first datagram
    // would have been dropped.
    let mut e = engine_of(&QUIC_2022.replace(", first_packet: true", ""));
    run(&mut e, 0, &udp(C, S, 50020, 443, &[0x08; 40]));
    let (v, _) = run(
        &mut e,
        1,
        &udp(C, S, 50020, 443, &initial(V1, "any.example", 1200)),
    );
    assert_eq!(v, Verdict::Drop);
}

const ECH_2024: &str = r#"
version: 1
lists:
  cf-ech: {format: domains, entries: [cloudflare-ech.com]}
rules:
  - name: ech-2024
    match: {list: cf-ech, on: [tls_sni, quic_sni], ech: true}
    action: drop
"#;

#[test]
fn ech_2024_needs_both_the_name_and_the_extension() {
    let mut e = engine_of(ECH_2024);
    let v = tls_flow(&mut e, 0, S, 40000, &hello("cloudflare-ech.com", true));
    assert_eq!(v[3], Verdict::Drop);
    let v = tls_flow(&mut e, 10, S, 40001, &hello("cloudflare-ech.com", false));
    assert_eq!(v[3], Verdict::Pass, "the name alone passes");
    let v = tls_flow(&mut e, 20, S, 40002, &hello("other.example", true));
    assert_eq!(v[3], Verdict::Pass, "the extension alone passes");
    // ech: false is the other half.
    let mut e = engine_of(&ECH_2024.replace("ech: true", "ech: false"));
    assert_eq!(
        tls_flow(&mut e, 0, S, 40000, &hello("cloudflare-ech.com", true))[3],
        Verdict::Pass
    );
    assert_eq!(
        tls_flow(&mut e, 10, S, 40001, &hello("cloudflare-ech.com", false))[3],
        Verdict::Drop
    );
}

const FREEZE_2025: &str = r#"
version: 1
lists:
  hosting: {format: cidr, entries: [203.0.113.0/24]}
  allow-sites: {format: domains, entries: [allowed.example]}
  allow-nets: {format: cidr, entries: [203.0.113.77/32]}
rules:
  - name: freeze-2025
    match: {protocols: [tls], dst_list: hosting, except: [allow-sites, allow-nets]}
    action: drop
"#;

#[test]
fn dst_list_with_except() {
    let mut e = engine_of(FREEZE_2025);
    let v = tls_flow(
        &mut e,
        0,
        "203.0.113.5",
        40000,
        &hello("site.example", false),
    );
    assert_eq!(
        v,
        [Verdict::Pass, Verdict::Pass, Verdict::Pass, Verdict::Drop]
    );
    assert_eq!(e.events()[0].trigger, Trigger::Protocol);
    let v = tls_flow(
        &mut e,
        10,
        "203.0.113.5",
        40001,
        &hello("www.allowed.example", false),
    );
    assert_eq!(v[3], Verdict::Pass, "an excepted name");
    let v = tls_flow(
        &mut e,
        20,
        "203.0.113.77",
        40002,
        &hello("site.example", false),
    );
    assert_eq!(v[3], Verdict::Pass, "an excepted address");
    let v = tls_flow(&mut e, 30, S, 40003, &hello("site.example", false));
    assert_eq!(v[3], Verdict::Pass, "not a hosting address");
    // Plain HTTP to hosting is not TLS.
    let http = synth::http_get("site.example", "/");
    let v = tls_flow(&mut e, 40, "203.0.113.5", 40004, &http);
    assert_eq!(v[3], Verdict::Pass);
}

#[test]
fn ip_rule_conditions_fall_through_to_a_later_rule_on_another_list() {
    let mut e = engine_of(
        r#"
version: 1
lists:
  a: {format: cidr, entries: [198.51.100.0/24]}
  b: {format: cidr, entries: [198.51.100.0/25]}
rules:
  - {name: a-tcp-8000s, match: {list: a, on: [ip], proto: tcp, dst_ports: ["8000-8100", 9443]}, action: drop}
  - {name: b, match: {list: b, on: [ip]}, action: reset}
"#,
    );
    let server = "198.51.100.9";
    assert_eq!(
        run(&mut e, 0, &tcp(C, server, 40000, 8000, 1, 0x02, b"")).0,
        Verdict::Drop
    );
    assert_eq!(
        run(&mut e, 1, &tcp(C, server, 40001, 8100, 1, 0x02, b"")).0,
        Verdict::Drop
    );
    assert_eq!(
        run(&mut e, 2, &tcp(C, server, 40002, 9443, 1, 0x02, b"")).0,
        Verdict::Drop
    );
    assert_eq!(
        run(&mut e, 3, &tcp(C, server, 40003, 8101, 1, 0x02, b"")).0,
        Verdict::Reset
    );
    assert_eq!(
        run(&mut e, 4, &udp(C, server, 40004, 8000, b"x")).0,
        Verdict::Reset,
        "udp"
    );
    // Outside b, a's failed conditions leave the default.
    assert_eq!(
        run(
            &mut e,
            5,
            &tcp(C, "198.51.100.200", 40005, 80, 1, 0x02, b"")
        )
        .0,
        Verdict::Pass
    );
}

#[test]
fn size_bounds_and_source_port_conditions() {
    let mut e = engine_of(
        r#"
version: 1
lists:
  names: {format: domains, entries: [q.example]}
rules:
  - {name: small, match: {list: names, on: [quic_sni], max_bytes: 1250, src_port_ge_dst_port: true, src_ports: ["1024-65535"]}, action: drop}
"#,
    );
    let (v, _) = run(
        &mut e,
        0,
        &udp(C, S, 50000, 443, &initial(V1, "q.example", 1250)),
    );
    assert_eq!(v, Verdict::Drop);
    let (v, _) = run(
        &mut e,
        1,
        &udp(C, S, 50001, 443, &initial(V1, "q.example", 1251)),
    );
    assert_eq!(v, Verdict::Pass, "one byte over max_bytes");
    let (v, _) = run(
        &mut e,
        2,
        &udp(C, S, 1024, 1500, &initial(V1, "q.example", 1200)),
    );
    assert_eq!(v, Verdict::Pass, "source port below destination port");
    let (v, _) = run(
        &mut e,
        3,
        &udp(C, S, 1500, 1500, &initial(V1, "q.example", 1200)),
    );
    assert_eq!(v, Verdict::Drop, "equal ports trigger");
}

const ALLOWLIST: &str = r#"
version: 1
lists:
  allowed: {format: domains, entries: [allowed.example]}
  allowed-nets: {format: cidr, entries: [198.51.100.0/24]}
rules:
  - {name: allowed-names, match: {list: allowed}, action: pass}
  - {name: allowed-nets, match: {list: allowed-nets, on: [ip]}, action: pass}
default: drop
"#;

#[test]
fn allowlist_first_data_lets_the_handshake_through() {
    let mut e = engine_of(&format!("{ALLOWLIST}default_at: first_data\n"));
    let v = tls_flow(&mut e, 0, S, 40000, &hello("other.example", false));
    assert_eq!(
        v,
        [Verdict::Pass, Verdict::Pass, Verdict::Pass, Verdict::Drop]
    );
    // Once data was seen, an empty ACK meets the default too.
    assert_eq!(
        run(&mut e, 5, &tcp(S, C, 443, 40000, 9001, 0x10, b"")).0,
        Verdict::Drop
    );
    // An allowlisted name passes, and keeps passing.
    let v = tls_flow(&mut e, 10, S, 40001, &hello("www.allowed.example", false));
    assert_eq!(v, [Verdict::Pass; 4]);
    assert_eq!(
        run(&mut e, 15, &tcp(C, S, 40001, 443, 500, 0x18, b"more")).0,
        Verdict::Pass
    );
    // Any name towards an allowlisted address.
    let v = tls_flow(
        &mut e,
        20,
        "198.51.100.1",
        40002,
        &hello("other.example", false),
    );
    assert_eq!(v, [Verdict::Pass; 4]);
}

#[test]
fn allowlist_first_packet_drops_the_syn() {
    for yaml in [
        ALLOWLIST.to_string(),
        format!("{ALLOWLIST}default_at: first_packet\n"),
    ] {
        let mut e = engine_of(&yaml);
        let v = tls_flow(&mut e, 0, S, 40000, &hello("other.example", false));
        assert_eq!(v, [Verdict::Drop; 4]);
        let v = tls_flow(&mut e, 10, S, 40001, &hello("allowed.example", false));
        assert_eq!(v[0], Verdict::Drop, "the SYN carries no name");
        assert_eq!(v[3], Verdict::Pass);
    }
}

#[test]
fn conditions_survive_the_artifact() {
    let rs = compile(FREEZE_2025);
    let bytes = chokepoint_rules::artifact::to_bytes(&rs);
    let back = Arc::new(chokepoint_rules::artifact::from_bytes(&bytes).unwrap());
    assert_eq!(back.meta.rules, rs.meta.rules);
    let mut e = Engine::new(back);
    let v = tls_flow(
        &mut e,
        0,
        "203.0.113.5",
        40000,
        &hello("site.example", false),
    );
    assert_eq!(v[3], Verdict::Drop);
}

#[test]
fn a_reload_checks_conditions_against_the_packet_that_decided() {
    let yaml = r#"
version: 1
lists:
  nets: {format: cidr, entries: [198.51.100.0/24]}
  names: {format: domains, entries: [blocked.example]}
rules:
  - {name: nets, match: {list: nets, on: [ip], proto: tcp, dst_ports: [8000]}, action: drop}
  - {name: names, match: {list: names, on: [tls_sni], min_bytes: 100, dst_ports: [443]}, action: drop}
  - {name: quic, match: {protocols: [quic], quic_versions: [1], min_bytes: 1001, first_packet: true}, action: drop}
profile: {reevaluate_on_reload: true}
"#;
    let mut e = engine_of(yaml);
    assert_eq!(
        run(
            &mut e,
            0,
            &tcp(C, "198.51.100.1", 40000, 8000, 1, 0x02, b"")
        )
        .0,
        Verdict::Drop
    );
    assert_eq!(
        tls_flow(&mut e, 1, S, 40001, &hello("blocked.example", false))[3],
        Verdict::Drop
    );
    assert_eq!(
        run(
            &mut e,
            9,
            &udp(C, S, 50000, 443, &initial(V1, "any.example", 1200))
        )
        .0,
        Verdict::Drop
    );
    e.set_rules(compile(yaml));
    assert_eq!(e.counters.reevaluated, 3);
    assert_eq!(
        run(
            &mut e,
            10,
            &tcp(C, "198.51.100.1", 40000, 8000, 1, 0x10, b"")
        )
        .0,
        Verdict::Drop
    );
    assert_eq!(
        run(&mut e, 11, &tcp(C, S, 40001, 443, 500, 0x10, b"")).0,
        Verdict::Drop
    );
    assert_eq!(
        run(&mut e, 12, &udp(C, S, 50000, 443, b"\x40short")).0,
        Verdict::Drop
    );
}

#[test]
fn src_ports_alone_decides_on_the_clients_port() {
    let mut e = engine_of(
        r#"
version: 1
lists:
  nets: {format: cidr, entries: [198.51.100.0/24]}
rules:
  - {name: src-ports, match: {list: nets, on: [ip], src_ports: ["1000-2000"]}, action: drop}
"#,
    );
    let server = "198.51.100.9";
    let syn = |e: &mut Engine, t: u64, sport: u16, dport: u16| {
        run(e, t, &tcp(C, server, sport, dport, 1, 0x02, b"")).0
    };
    assert_eq!(syn(&mut e, 0, 1500, 443), Verdict::Drop, "inside");
    assert_eq!(syn(&mut e, 1, 1000, 443), Verdict::Drop, "the low edge");
    assert_eq!(syn(&mut e, 2, 2000, 443), Verdict::Drop, "the high edge");
    assert_eq!(syn(&mut e, 3, 999, 443), Verdict::Pass, "one below");
    assert_eq!(syn(&mut e, 4, 2001, 443), Verdict::Pass, "one above");
    // The server's port in the range does not count: it is the client's.
    assert_eq!(syn(&mut e, 5, 40000, 1500), Verdict::Pass, "server port");
    // UDP 80 -> 53: both ports well known, the sender is the client, and
    // its port 80 is not in the range.
    let (v, _) = run(&mut e, 6, &udp(C, server, 80, 53, b"x"));
    assert_eq!(v, Verdict::Pass, "80 -> 53");
    let (v, _) = run(&mut e, 7, &udp(C, server, 1999, 53, b"x"));
    assert_eq!(v, Verdict::Drop, "UDP from 1999");
}

#[test]
fn src_list_alone_decides_on_the_clients_address() {
    let mut e = engine_of(
        r#"
version: 1
lists:
  subscribers: {format: cidr, entries: [198.18.0.0/28]}
  names: {format: domains, entries: [blocked.example]}
rules:
  - {name: src-list, match: {list: names, src_list: subscribers}, action: reset}
"#,
    );
    let blocked = hello("blocked.example", false);
    // C is 198.18.0.10, inside the /28.
    assert_eq!(tls_flow(&mut e, 0, S, 40000, &blocked)[3], Verdict::Reset);
    let from = |e: &mut Engine, t: u64, client: &str, server: &str, port: u16| {
        run(e, t, &tcp(client, server, port, 443, 1, 0x02, b""));
        run(e, t + 1, &tcp(client, server, port, 443, 2, 0x18, &blocked)).0
    };
    assert_eq!(
        from(&mut e, 10, "198.18.0.15", S, 40001),
        Verdict::Reset,
        "the last address of the /28"
    );
    assert_eq!(
        from(&mut e, 20, "198.18.0.16", S, 40002),
        Verdict::Pass,
        "the first address past it"
    );
    assert_eq!(
        from(&mut e, 30, "198.18.0.99", "198.18.0.5", 40003),
        Verdict::Pass,
        "the server in the list does not count: it is the client's address"
    );
}

const HTTP_DNS: &str = r#"
version: 1
rules:
  - {name: http, match: {protocols: [http]}, action: reset}
  - {name: dns, match: {protocols: [dns]}, action: drop}
"#;

#[test]
fn a_protocol_rule_fires_on_a_plain_http_request() {
    let mut e = engine_of(HTTP_DNS);
    let v = tcp_flow(
        &mut e,
        0,
        S,
        40000,
        80,
        &synth::http_get("site.example", "/"),
    );
    assert_eq!(
        v,
        [Verdict::Pass, Verdict::Pass, Verdict::Pass, Verdict::Reset]
    );
    let ev = e.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].trigger, Trigger::Protocol);
    assert_eq!(ev[0].protocol, Some(chokepoint_rules::Protocol::Http));
    assert_eq!(ev[0].rule.map(|r| r.index()), Some(0));
    // On another port, by what it carries; and without a Host header.
    let v = tcp_flow(&mut e, 10, S, 40001, 8080, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(v[3], Verdict::Reset, "HTTP/1.0 without a Host");
    assert_eq!(e.events()[0].trigger, Trigger::Protocol);
    // Not HTTP: a ClientHello, and bytes that are no request.
    let v = tls_flow(&mut e, 20, S, 40002, &hello("site.example", false));
    assert_eq!(v, [Verdict::Pass; 4], "TLS");
    let v = tcp_flow(&mut e, 30, S, 40003, 80, b"SSH-2.0-OpenSSH_9.6\r\n");
    assert_eq!(v, [Verdict::Pass; 4], "not a request");
    assert_eq!(
        e.counters.decisions_by_trigger[Trigger::Protocol.index()],
        2
    );
}

#[test]
fn a_protocol_rule_fires_on_a_dns_query() {
    let mut e = engine_of(HTTP_DNS);
    let (v, ev) = run(
        &mut e,
        0,
        &udp(C, S, 40000, 53, &synth::dns_query(7, "any.example", 1)),
    );
    assert_eq!(v, Verdict::Drop);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (ev[0].0, ev[0].1.as_str()),
        (Trigger::Protocol, "any.example")
    );
    assert_eq!(
        e.events()[0].protocol,
        Some(chokepoint_rules::Protocol::Dns)
    );
    assert_eq!(e.events()[0].rule.map(|r| r.index()), Some(1));
    // Not DNS: another UDP port, and a QUIC Initial.
    let (v, ev) = run(&mut e, 1, &udp(C, S, 40001, 9, b"hello"));
    assert_eq!((v, ev.len()), (Verdict::Pass, 0));
    let (v, _) = run(
        &mut e,
        2,
        &udp(C, S, 40002, 443, &initial(V1, "any.example", 1200)),
    );
    assert_eq!(v, Verdict::Pass, "QUIC");
}

#[test]
fn quic_versions_by_name_select_their_versions_only() {
    let mut e = engine_of(
        r#"
version: 1
rules:
  - {name: new-quic, match: {protocols: [quic], quic_versions: [v2, draft-29]}, action: drop}
"#,
    );
    for (port, version, want) in [
        (50_010, V2, Verdict::Drop),
        (50_011, DRAFT_29, Verdict::Drop),
        (50_012, V1, Verdict::Pass),
    ] {
        let (v, ev) = run(
            &mut e,
            0,
            &udp(C, S, port, 443, &initial(version, "any.example", 1200)),
        );
        assert_eq!(v, want, "version {version:#x}: {ev:?}");
    }
}
