//! Protocol classifiers in the engine, on synthetic traffic with synthetic
//! time: each protocol blocked by its rule on any port, the conditions
//! beside it (ports, sizes, first packet, transport), banners cut across
//! segments, the GFW's fully encrypted test with its probability drawn
//! per flow from the seed, and controls (TLS, HTTP, DNS) that no VPN rule
//! touches.

use chokepoint_core::{Engine, Verdict};
use chokepoint_rules::{Protocol, Trigger};
use chokepoint_testkit::synth::{self, HelloShape};
use chokepoint_testkit::vpn::{self, OpenVpnWrap};

mod common;

use common::*;

fn engine_of(yaml: &str) -> Engine {
    Engine::new(compile(yaml))
}

/// One rule per protocol, each dropping what it names.
const EVERY: &str = r#"
version: 1
rules:
  - {name: wg, match: {protocols: [wireguard]}, action: drop}
  - {name: ovpn, match: {protocols: [openvpn]}, action: drop}
  - {name: calls, match: {protocols: [stun]}, action: drop}
  - {name: ssh, match: {protocols: [ssh]}, action: reset}
  - {name: bt, match: {protocols: [bittorrent]}, action: reset}
  - {name: fe, match: {protocols: [fully_encrypted]}, action: drop}
"#;

/// The events' (trigger, protocol) of the last packet.
fn classified(e: &Engine) -> Vec<(Trigger, Option<Protocol>)> {
    e.events().iter().map(|x| (x.trigger, x.protocol)).collect()
}

/// SYN, SYN-ACK, ACK, then `segments` from the client: each data
/// segment's verdict.
fn tcp_flow(e: &mut Engine, t: u64, port: u16, segments: &[&[u8]]) -> Vec<Verdict> {
    let (sport, isn) = (40000 + port % 1000, 1000u32);
    run(e, t, &tcp(C, S, sport, port, isn, 0x02, b""));
    run(e, t + 1, &tcp(S, C, port, sport, 7000, 0x12, b""));
    run(e, t + 2, &tcp(C, S, sport, port, isn + 1, 0x10, b""));
    let mut seq = isn + 1;
    let mut out = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        out.push(run(e, t + 3 + i as u64, &tcp(C, S, sport, port, seq, 0x18, s)).0);
        seq += s.len() as u32;
    }
    out
}

#[test]
fn wireguard_on_any_port_and_only_at_its_exact_sizes() {
    let mut e = engine_of(EVERY);
    for (i, port) in [51820u16, 53, 443, 4500].into_iter().enumerate() {
        let (v, _) = run(
            &mut e,
            i as u64 * SEC,
            &udp(
                C,
                S,
                40000 + i as u16,
                port,
                &vpn::wireguard_initiation(i as u64),
            ),
        );
        assert_eq!(v, Verdict::Drop, "port {port}");
        assert_eq!(
            classified(&e),
            [(Trigger::Protocol, Some(Protocol::Wireguard))]
        );
    }
    // 147 bytes is not an initiation; the flow passes and is not read again.
    let mut short = vpn::wireguard_initiation(9);
    short.pop();
    let (v, ev) = run(&mut e, 10 * SEC, &udp(C, S, 41000, 51820, &short));
    assert_eq!((v, ev.len()), (Verdict::Pass, 0));
    let (v, _) = run(
        &mut e,
        11 * SEC,
        &udp(C, S, 41000, 51820, &vpn::wireguard_initiation(1)),
    );
    assert_eq!(v, Verdict::Pass, "only the first packets are classified");
    // A keepalive (transport, 32 bytes) of a tunnel seen mid-flow.
    let (v, _) = run(
        &mut e,
        12 * SEC,
        &udp(C, S, 41001, 51820, &vpn::wireguard(4, 32, 3)),
    );
    assert_eq!(v, Verdict::Drop);
    assert_eq!(e.counters.protocols[Protocol::Wireguard.index()], 5);
}

#[test]
fn openvpn_over_udp_and_tcp_in_each_wrapping() {
    let mut e = engine_of(EVERY);
    for (i, wrap) in [
        OpenVpnWrap::Plain,
        OpenVpnWrap::TlsAuth,
        OpenVpnWrap::TlsCrypt,
    ]
    .into_iter()
    .enumerate()
    {
        let reset = vpn::openvpn_reset(wrap, i as u64);
        let (v, _) = run(&mut e, i as u64, &udp(C, S, 50000 + i as u16, 1194, &reset));
        assert_eq!(v, Verdict::Drop, "{wrap:?} over UDP");
        assert_eq!(
            classified(&e),
            [(Trigger::Protocol, Some(Protocol::Openvpn))]
        );
        let v = tcp_flow(
            &mut e,
            10 + i as u64,
            443 + i as u16,
            &[&vpn::openvpn_tcp(&reset)],
        );
        assert_eq!(v, [Verdict::Drop], "{wrap:?} over TCP");
    }
    // The length prefix and the reset in two segments.
    let framed = vpn::openvpn_tcp(&vpn::openvpn_reset(OpenVpnWrap::TlsAuth, 7));
    let v = tcp_flow(&mut e, 20, 1194, &[&framed[..5], &framed[5..]]);
    assert_eq!(v, [Verdict::Pass, Verdict::Drop]);
    // Key id 1 is a renegotiation, not a session's start.
    let mut rekey = vpn::openvpn_reset(OpenVpnWrap::Plain, 8);
    rekey[0] |= 1;
    assert_eq!(
        run(&mut e, 30, &udp(C, S, 50100, 1194, &rekey)).0,
        Verdict::Pass
    );
}

#[test]
fn stun_with_ports_as_tspu_blocked_calls_in_2025() {
    // Flowseal/zapret-discord-youtube#4569: STUN on 3478, 1400, 50000-50100.
    let mut e = engine_of(
        r#"
version: 1
rules:
  - {name: calls, match: {protocols: [stun], proto: udp, dst_ports: [3478, 1400, "50000-50100"]}, action: drop}
"#,
    );
    let req = vpn::stun_binding_request(1);
    for (i, port) in [3478u16, 1400, 50000, 50100].into_iter().enumerate() {
        assert_eq!(
            run(&mut e, i as u64, &udp(C, S, 40000 + i as u16, port, &req)).0,
            Verdict::Drop
        );
    }
    assert_eq!(
        run(&mut e, 9, &udp(C, S, 40009, 19302, &req)).0,
        Verdict::Pass,
        "Google's STUN port"
    );
    let mut no_cookie = req.clone();
    no_cookie[4] = 0;
    assert_eq!(
        run(&mut e, 10, &udp(C, S, 40010, 3478, &no_cookie)).0,
        Verdict::Pass
    );
}

#[test]
fn ssh_banner_split_across_segments_and_bittorrent() {
    let mut e = engine_of(EVERY);
    let banner = vpn::ssh_banner();
    assert_eq!(tcp_flow(&mut e, 0, 22, &[&banner]), [Verdict::Reset]);
    assert_eq!(
        tcp_flow(&mut e, 10, 2222, &[&banner[..4], &banner[4..]]),
        [Verdict::Pass, Verdict::Reset],
        "`SSH-` then the rest"
    );
    assert_eq!(classified(&e), [(Trigger::Protocol, Some(Protocol::Ssh))]);
    let bt = vpn::bittorrent_handshake(1);
    assert_eq!(tcp_flow(&mut e, 20, 6881, &[&bt]), [Verdict::Reset]);
    assert_eq!(
        classified(&e),
        [(Trigger::Protocol, Some(Protocol::Bittorrent))]
    );
}

#[test]
fn controls_are_no_vpn() {
    let mut e = engine_of(EVERY);
    let hello = synth::tls_records(
        &synth::client_hello(Some("allowed.example"), HelloShape::default(), 1),
        16384,
    );
    assert_eq!(tcp_flow(&mut e, 0, 443, &[&hello]), [Verdict::Pass]);
    let get = synth::http_get("allowed.example", "/");
    assert_eq!(tcp_flow(&mut e, 10, 80, &[&get]), [Verdict::Pass]);
    let q = synth::dns_query(7, "allowed.example", 1);
    assert_eq!(run(&mut e, 20, &udp(C, S, 40053, 53, &q)).0, Verdict::Pass);
    let initial = synth::quic_initial(
        1,
        &[1, 2, 3, 4, 5, 6, 7, 8],
        &[9; 8],
        0,
        &synth::crypto_frame(
            0,
            &synth::client_hello(Some("a.example"), HelloShape::default(), 2),
        ),
        1250,
    );
    assert_eq!(
        run(&mut e, 30, &udp(C, S, 40443, 443, &initial)).0,
        Verdict::Pass
    );
    assert_eq!(
        e.counters.protocols,
        [0; Protocol::COUNT],
        "nothing classified"
    );
}

/// The GFW's probabilistic block (Wu et al. 2023): a random first packet
/// flagged, a quarter of such flows blocked, the draw fixed by the seed.
const GFW_FE: &str = r#"
version: 1
rules:
  - name: fully-encrypted
    match: {protocols: [fully_encrypted], proto: tcp, first_packet: true, probability: 0.26}
    action: drop
    residual: {seconds: 180, scope: 3-tuple}
profile: {seed: SEED}
"#;

fn blocked_of(seed: u64, flows: u16) -> Vec<u16> {
    let mut e = engine_of(&GFW_FE.replace("SEED", &seed.to_string()));
    (0..flows)
        .filter(|&i| {
            let c = format!("198.18.2.{}", i % 250);
            let first = vpn::random_bytes(300, u64::from(i));
            let sport = 30000 + i;
            run(
                &mut e,
                u64::from(i) * SEC,
                &tcp(&c, S, sport, 8388, 1, 0x02, b""),
            );
            run(
                &mut e,
                u64::from(i) * SEC + 1,
                &tcp(&c, S, sport, 8388, 2, 0x18, &first),
            )
            .0 == Verdict::Drop
        })
        .collect()
}

#[test]
fn fully_encrypted_is_blocked_with_the_papers_probability() {
    let a = blocked_of(0, 1000);
    assert!((200..320).contains(&a.len()), "{} of 1000 blocked", a.len());
    assert_eq!(
        a,
        blocked_of(0, 1000),
        "the same seed blocks the same flows"
    );
    assert_ne!(a, blocked_of(1, 1000), "another seed, another sample");
}

#[test]
fn fully_encrypted_reads_the_first_client_packet_only() {
    let mut e = engine_of(EVERY);
    let random = vpn::random_bytes(200, 5);
    assert_eq!(tcp_flow(&mut e, 0, 8388, &[&random]), [Verdict::Drop]);
    assert_eq!(
        classified(&e),
        [(Trigger::Protocol, Some(Protocol::FullyEncrypted))]
    );
    // Printable first, random after: the first packet is exempt (Ex2),
    // and later packets are not the first.
    assert_eq!(
        tcp_flow(&mut e, 10, 8389, &[b"hello!", &random]),
        [Verdict::Pass, Verdict::Pass]
    );
    // A server that speaks first: the client's first packet is still read.
    let (sport, port) = (40555u16, 9999u16);
    run(&mut e, 20, &tcp(C, S, sport, port, 1, 0x02, b""));
    run(&mut e, 21, &tcp(S, C, port, sport, 7000, 0x12, b""));
    run(
        &mut e,
        22,
        &tcp(S, C, port, sport, 7001, 0x18, b"220 welcome\r\n"),
    );
    assert_eq!(
        run(&mut e, 23, &tcp(C, S, sport, port, 2, 0x18, &random)).0,
        Verdict::Drop
    );
}

#[test]
fn a_log_rule_reports_the_protocol_once_and_forwards() {
    let mut e = engine_of(
        "version: 1\nrules:\n  - {name: seen, match: {protocols: [wireguard, openvpn]}, action: log}\n",
    );
    let (v, ev) = run(
        &mut e,
        0,
        &udp(C, S, 40000, 51820, &vpn::wireguard_initiation(1)),
    );
    assert_eq!(v, Verdict::Log);
    assert_eq!(ev.len(), 1);
    assert_eq!(e.events()[0].protocol, Some(Protocol::Wireguard));
    let (v, ev) = run(
        &mut e,
        1,
        &udp(C, S, 40000, 51820, &vpn::wireguard(4, 64, 2)),
    );
    assert_eq!((v, ev.len()), (Verdict::Log, 0), "held, not reported again");
}

#[test]
fn classifiers_run_only_for_protocols_a_rule_names() {
    let mut e = engine_of(
        "version: 1\nrules:\n  - {name: ssh, match: {protocols: [ssh]}, action: reset}\n",
    );
    run(
        &mut e,
        0,
        &udp(C, S, 40000, 51820, &vpn::wireguard_initiation(1)),
    );
    tcp_flow(&mut e, 1, 8388, &[&vpn::random_bytes(200, 1)]);
    assert_eq!(e.counters.protocols, [0; Protocol::COUNT]);
}

#[test]
fn a_list_rule_may_not_name_a_protocol_without_names() {
    let err = chokepoint_rules::compile_str(
        "version: 1\nlists:\n  l: {format: domains, entries: [a.example]}\nrules:\n  - {name: r, match: {list: l, protocols: [wireguard]}, action: drop}\n",
        "t.yaml",
        std::path::Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("the protocol its names come in"), "{err}");
}

#[test]
fn address_lists_and_exceptions_restrict_a_protocol_rule() {
    // WireGuard to hosting ranges only, one server exempt.
    let mut e = engine_of(
        r#"
version: 1
lists:
  hosting: {format: cidr, entries: [198.18.1.0/24]}
  exempt: {format: cidr, entries: [198.18.1.99]}
rules:
  - {name: wg-hosting, match: {protocols: [wireguard], dst_list: hosting, except: [exempt]}, action: drop}
"#,
    );
    let init = vpn::wireguard_initiation(1);
    assert_eq!(
        run(&mut e, 0, &udp(C, S, 40000, 51820, &init)).0,
        Verdict::Drop
    );
    assert_eq!(
        run(&mut e, 1, &udp(C, "198.18.1.99", 40000, 51820, &init)).0,
        Verdict::Pass,
        "exempt"
    );
    assert_eq!(
        run(&mut e, 2, &udp(C, "198.18.9.9", 40000, 51820, &init)).0,
        Verdict::Pass,
        "not hosting"
    );
}

#[test]
fn size_bounds_select_which_packets_of_a_protocol_a_rule_takes() {
    // Handshakes only (>= 100 bytes: the 148-byte initiation), or
    // keepalives only (<= 100: a 32-byte transport packet seen first).
    let handshakes = engine_of(
        "version: 1\nrules:\n  - {name: wg-hs, match: {protocols: [wireguard], min_bytes: 100}, action: drop}\n",
    );
    let keepalives = engine_of(
        "version: 1\nrules:\n  - {name: wg-ka, match: {protocols: [wireguard], max_bytes: 100}, action: drop}\n",
    );
    for (mut e, init, ka) in [
        (handshakes, Verdict::Drop, Verdict::Pass),
        (keepalives, Verdict::Pass, Verdict::Drop),
    ] {
        let (v, _) = run(
            &mut e,
            SEC,
            &udp(C, S, 40000, 51820, &vpn::wireguard_initiation(1)),
        );
        assert_eq!(v, init, "initiation");
        let (v, _) = run(
            &mut e,
            SEC,
            &udp(C, S, 40001, 51820, &vpn::wireguard(4, 32, 3)),
        );
        assert_eq!(v, ka, "keepalive");
        // Both were recognised as WireGuard; the size decided.
        assert_eq!(e.counters.protocols[Protocol::Wireguard.index()], 2);
    }
}
