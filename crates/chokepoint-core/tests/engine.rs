//! Engine behaviour on synthetic traffic with synthetic time, including
//! what the published captures lack (IP-fragmented ClientHello, IPv6
//! extension headers before a ClientHello, 802.1ad tags, MPLS).

use std::sync::Arc;

use chokepoint_core::{Engine, LinkType, Verdict};
use chokepoint_rules::Trigger;
use chokepoint_testkit::synth::{self, HelloShape};

mod common;

use common::*;

#[test]
fn split_post_quantum_hello_out_of_order_with_retransmission() {
    let mut e = engine();
    let ch = synth::tls_records(
        &synth::client_hello(
            Some("www.blocked.example"),
            HelloShape {
                post_quantum: true,
                grease: true,
                ..Default::default()
            },
            3,
        ),
        16384,
    );
    assert!(ch.len() > 1460);
    let (a, b) = ch.split_at(1200);
    let isn = 1000u32;
    assert_eq!(
        run(&mut e, 0, &tcp(C, S, 40000, 443, isn, 0x02, b"")).0,
        Verdict::Pass
    );
    run(&mut e, 1, &tcp(S, C, 443, 40000, 5000, 0x12, b""));
    run(&mut e, 2, &tcp(C, S, 40000, 443, isn + 1, 0x10, b""));
    // second half first, then the first half twice (retransmission)
    let (v, ev) = run(
        &mut e,
        3,
        &tcp(C, S, 40000, 443, isn + 1 + a.len() as u32, 0x18, b),
    );
    assert_eq!(
        (v, ev.len()),
        (Verdict::Pass, 0),
        "nothing decided on half a hello"
    );
    let (v, ev) = run(&mut e, 4, &tcp(C, S, 40000, 443, isn + 1, 0x18, a));
    assert_eq!(v, Verdict::Reset);
    assert_eq!(
        ev,
        vec![(
            Trigger::TlsSni,
            "www.blocked.example".into(),
            Verdict::Reset,
            5
        )]
    );
    let (v, ev) = run(&mut e, 5, &tcp(C, S, 40000, 443, isn + 1, 0x18, a));
    assert_eq!((v, ev.len()), (Verdict::Reset, 0), "sticky, reported once");
    // the server's packets of the flow share the verdict
    assert_eq!(
        run(&mut e, 6, &tcp(S, C, 443, 40000, 5001, 0x10, b"")).0,
        Verdict::Reset
    );
}

#[test]
fn allowed_names_are_reported_and_pass() {
    let mut e = engine();
    let ch = synth::tls_records(
        &synth::client_hello(Some("notblocked.example"), HelloShape::default(), 1),
        16384,
    );
    run(&mut e, 0, &tcp(C, S, 40001, 443, 7, 0x02, b""));
    let (v, ev) = run(&mut e, 1, &tcp(C, S, 40001, 443, 8, 0x18, &ch));
    assert_eq!(v, Verdict::Pass);
    assert_eq!(
        ev,
        vec![(
            Trigger::TlsSni,
            "notblocked.example".into(),
            Verdict::Pass,
            2
        )]
    );
    // xexample-style near misses never match
    let ch = synth::tls_records(
        &synth::client_hello(Some("xt.me"), HelloShape::default(), 1),
        16384,
    );
    assert_eq!(
        run(&mut e, 2, &tcp(C, S, 40002, 443, 8, 0x18, &ch)).0,
        Verdict::Pass
    );
}

#[test]
fn reassembly_cap_is_counted_and_passes() {
    let mut e = engine_with("profile: {reassembly_max_bytes: 1024}\n");
    let ch = synth::tls_records(
        &synth::client_hello(
            Some("blocked.example"),
            HelloShape {
                post_quantum: true,
                ..Default::default()
            },
            3,
        ),
        16384,
    );
    run(&mut e, 0, &tcp(C, S, 40003, 443, 1, 0x02, b""));
    let (v, _) = run(&mut e, 1, &tcp(C, S, 40003, 443, 2, 0x18, &ch[..1400]));
    assert_eq!(v, Verdict::Pass);
    assert!(e.counters.reassembly_cap_bytes >= 1);
}

#[test]
fn without_reassembly_a_split_hello_escapes() {
    let mut e = engine_with("profile: {reassemble_client_hello: false}\n");
    let ch = synth::tls_records(
        &synth::client_hello(
            Some("blocked.example"),
            HelloShape {
                post_quantum: true,
                ..Default::default()
            },
            3,
        ),
        16384,
    );
    run(&mut e, 0, &tcp(C, S, 40004, 443, 1, 0x02, b""));
    assert_eq!(
        run(&mut e, 1, &tcp(C, S, 40004, 443, 2, 0x18, &ch[..1000])).0,
        Verdict::Pass
    );
    assert_eq!(
        run(&mut e, 2, &tcp(C, S, 40004, 443, 1002, 0x18, &ch[1000..])).0,
        Verdict::Pass
    );
    // but a hello in one segment is still caught
    let small = synth::tls_records(
        &synth::client_hello(Some("blocked.example"), HelloShape::default(), 3),
        16384,
    );
    assert_eq!(
        run(&mut e, 3, &tcp(C, S, 40005, 443, 2, 0x18, &small)).0,
        Verdict::Reset
    );
}

#[test]
fn inspect_ports_knob() {
    let mut e = engine_with("profile: {inspect_ports: [443]}\n");
    let ch = synth::tls_records(
        &synth::client_hello(Some("blocked.example"), HelloShape::default(), 3),
        16384,
    );
    assert_eq!(
        run(&mut e, 0, &tcp(C, S, 40006, 8443, 2, 0x18, &ch)).0,
        Verdict::Pass
    );
    assert_eq!(
        run(&mut e, 1, &tcp(C, S, 40007, 443, 2, 0x18, &ch)).0,
        Verdict::Reset
    );
}

#[test]
fn quic_hello_over_two_datagrams_out_of_order() {
    let mut e = engine();
    let ch = synth::client_hello(
        Some("t.me"),
        HelloShape {
            post_quantum: true,
            grease: true,
            ..Default::default()
        },
        5,
    );
    let dcid = [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4];
    // Chromium style: pieces in shuffled order, PING/PADDING between
    let cut = [0, 300, 700, 1100, 1500, ch.len()];
    let pieces: Vec<Vec<u8>> = cut
        .windows(2)
        .map(|w| synth::crypto_frame(w[0] as u64, &ch[w[0]..w[1]]))
        .collect();
    let mut d1 = pieces[3].clone();
    d1.push(0x01);
    d1.extend_from_slice(&pieces[0]);
    d1.extend_from_slice(&[0, 0, 0]);
    d1.extend_from_slice(&pieces[4]);
    let mut d2 = pieces[2].clone();
    d2.extend_from_slice(&pieces[1]);
    let p1 = synth::quic_initial(chokepoint_core::quic::V1, &dcid, &[7; 8], 0, &d1, 1250);
    let p2 = synth::quic_initial(chokepoint_core::quic::V1, &dcid, &[7; 8], 1, &d2, 1250);
    let (v, ev) = run(&mut e, 0, &udp(C, S, 50000, 443, &p1));
    assert_eq!((v, ev.len()), (Verdict::Pass, 0));
    let (v, ev) = run(&mut e, 1, &udp(C, S, 50000, 443, &p2));
    assert_eq!(
        v,
        Verdict::Reset,
        "QUIC under a reset rule: the runtime drops it"
    );
    assert_eq!(ev[0].0, Trigger::QuicSni);
    assert_eq!(ev[0].1, "t.me");
    assert_eq!(e.counters.quic_initials, 2);
}

#[test]
fn dns_is_decided_per_query_over_udp_and_tcp() {
    let mut e = engine();
    let (v, ev) = run(
        &mut e,
        0,
        &udp(C, S, 53000, 53, &synth::dns_query(1, "api.t.me", 1)),
    );
    assert_eq!(
        (v, ev[0].0, ev[0].2),
        (Verdict::Reset, Trigger::DnsQname, Verdict::Reset)
    );
    // same flow, allowed name: not sticky
    let (v, ev) = run(
        &mut e,
        1,
        &udp(C, S, 53000, 53, &synth::dns_query(2, "example.org", 1)),
    );
    assert_eq!((v, ev[0].1.as_str()), (Verdict::Pass, "example.org"));
    // TCP: two messages in one segment, then one split over two segments
    let mut stream = Vec::new();
    for (i, n) in ["a.example", "b.example", "c.example"].iter().enumerate() {
        let q = synth::dns_query(i as u16, n, 28);
        stream.extend_from_slice(&(q.len() as u16).to_be_bytes());
        stream.extend_from_slice(&q);
    }
    let split = stream.len() - 10;
    run(&mut e, 2, &tcp(C, S, 40010, 53, 100, 0x02, b""));
    let (_, ev) = run(
        &mut e,
        3,
        &tcp(C, S, 40010, 53, 101, 0x18, &stream[..split]),
    );
    let names: Vec<&str> = ev.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(names, ["a.example", "b.example"]);
    let (_, ev) = run(
        &mut e,
        4,
        &tcp(C, S, 40010, 53, 101 + split as u32, 0x18, &stream[split..]),
    );
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].1, "c.example");
    // A blocked query ends the conversation: the decision sticks to the
    // connection, so the client's retransmission meets it too.
    let q = synth::dns_query(9, "blocked.example", 1);
    let mut msg = (q.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(&q);
    let seq = 101 + stream.len() as u32;
    let (v, ev) = run(&mut e, 5, &tcp(C, S, 40010, 53, seq, 0x18, &msg));
    assert_eq!((v, ev.len()), (Verdict::Reset, 1));
    let (v, ev) = run(&mut e, 6, &tcp(C, S, 40010, 53, seq, 0x18, &msg));
    assert_eq!((v, ev.len()), (Verdict::Reset, 0), "retransmission");
}

#[test]
fn http_host_with_port_and_keep_alive() {
    let mut e = engine();
    let mut reqs = synth::http_get("ok.example:8080", "/");
    reqs.extend_from_slice(&synth::http_get("Blocked.Example:8080", "/x"));
    run(&mut e, 0, &tcp(C, S, 40020, 80, 1, 0x02, b""));
    let (v, ev) = run(&mut e, 1, &tcp(C, S, 40020, 80, 2, 0x18, &reqs));
    assert_eq!(v, Verdict::Reset);
    let hosts: Vec<(&str, Verdict)> = ev.iter().map(|x| (x.1.as_str(), x.2)).collect();
    assert_eq!(
        hosts,
        [
            ("ok.example:8080", Verdict::Pass),
            ("Blocked.Example:8080", Verdict::Reset)
        ]
    );
}

#[test]
fn ip_rules_first_and_log_rules_defer_to_earlier_name_rules() {
    let mut e = engine();
    let (v, ev) = run(&mut e, 0, &tcp(C, "198.19.0.5", 40030, 443, 1, 0x02, b""));
    assert_eq!(v, Verdict::Drop);
    assert_eq!(ev[0].0, Trigger::Ip);
    // IPv6 prefix
    let (v, _) = run(
        &mut e,
        1,
        &udp("fd00:198:18::1", "fd00:198:18::66", 5000, 443, b"x"),
    );
    assert_eq!(v, Verdict::Drop);
    // a log rule on the address, a reset rule (earlier) on the name
    let ch = synth::tls_records(
        &synth::client_hello(Some("blocked.example"), HelloShape::default(), 3),
        16384,
    );
    assert_eq!(
        run(&mut e, 2, &tcp(C, "198.19.1.5", 40031, 443, 1, 0x02, b"")).0,
        Verdict::Log
    );
    assert_eq!(
        run(&mut e, 3, &tcp(C, "198.19.1.5", 40031, 443, 2, 0x18, &ch)).0,
        Verdict::Reset
    );
    // a log-only flow with an allowed name stays log
    let ch = synth::tls_records(
        &synth::client_hello(Some("fine.example"), HelloShape::default(), 3),
        16384,
    );
    assert_eq!(
        run(&mut e, 4, &tcp(C, "198.19.1.6", 40032, 443, 2, 0x18, &ch)).0,
        Verdict::Log
    );
}

#[test]
fn ip_fragmented_hello_is_reassembled() {
    let mut e = engine();
    let (s, d) = (ip(C), ip(S));
    let ch = synth::tls_records(
        &synth::client_hello(Some("blocked.example"), HelloShape::default(), 9),
        16384,
    );
    let pkt = synth::ip_packet(
        s,
        d,
        6,
        &synth::tcp_segment(s, d, 40040, 443, 1, 1, 0x18, &ch),
    );
    let frags = synth::ipv4_fragments(&pkt, 120);
    assert!(frags.len() >= 3);
    let mut last = Verdict::Pass;
    // last fragment first
    let mut order: Vec<usize> = (0..frags.len()).collect();
    order.rotate_right(1);
    for (t, i) in order.into_iter().enumerate() {
        last = run(&mut e, t as u64, &synth::ethernet(&frags[i], &[])).0;
    }
    assert_eq!(last, Verdict::Reset);
    assert_eq!(e.defrag_stats().datagrams, 1);
}

#[test]
fn ipv6_extension_headers_before_a_hello() {
    let mut e = engine();
    let (s, d) = (ip("fd00:198:18::10"), ip("fd00:198:18::20"));
    let ch = synth::tls_records(
        &synth::client_hello(Some("blocked.example"), HelloShape::default(), 9),
        16384,
    );
    let seg = synth::tcp_segment(s, d, 40050, 443, 1, 1, 0x18, &ch);
    // hop-by-hop (0), destination options (60), routing (43)
    let pkt = synth::ip_packet_ext(s, d, 6, &seg, &[(0, &[1, 0]), (60, &[1, 0]), (43, &[0, 0])]);
    assert_eq!(
        run(&mut e, 0, &synth::ethernet(&pkt, &[])).0,
        Verdict::Reset
    );
}

#[test]
fn qinq_8021ad_and_mpls_carry_names_and_separate_flows() {
    let mut e = engine();
    let (s, d) = (ip(C), ip(S));
    let ch = synth::tls_records(
        &synth::client_hello(Some("blocked.example"), HelloShape::default(), 9),
        16384,
    );
    let pkt = synth::ip_packet(
        s,
        d,
        6,
        &synth::tcp_segment(s, d, 40060, 443, 1, 1, 0x18, &ch),
    );
    let tagged = synth::ethernet(&pkt, &[(0x88a8, 100), (0x8100, 7)]);
    assert_eq!(run(&mut e, 0, &tagged).0, Verdict::Reset);
    // the same 5-tuple in another VLAN is another flow, not yet decided
    let syn = synth::ip_packet(
        s,
        d,
        6,
        &synth::tcp_segment(s, d, 40060, 443, 0, 0, 0x02, b""),
    );
    assert_eq!(
        run(
            &mut e,
            1,
            &synth::ethernet(&syn, &[(0x88a8, 100), (0x8100, 8)])
        )
        .0,
        Verdict::Pass
    );
    // MPLS: two labels, bottom of stack on the second
    let mut f = synth::ethernet(&pkt, &[]);
    f[12..14].copy_from_slice(&0x8847u16.to_be_bytes());
    let mut labeled = f[..14].to_vec();
    labeled.extend_from_slice(&[0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40]);
    labeled.extend_from_slice(&f[14..]);
    let (v, ev) = run(&mut e, 2, &labeled);
    assert_eq!((v, ev[0].1.as_str()), (Verdict::Reset, "blocked.example"));
}

#[test]
fn malformed_packets_are_counted_and_still_meet_ip_rules() {
    let mut e = engine();
    let (s, d) = (ip(C), ip("198.19.0.9"));
    let mut pkt = synth::ip_packet(
        s,
        d,
        6,
        &synth::tcp_segment(s, d, 1, 2, 3, 4, 0x18, b"payload"),
    );
    pkt.truncate(30); // cut by the snaplen inside the TCP header
    let (v, _) = run(&mut e, 0, &synth::ethernet(&pkt, &[]));
    assert_eq!(v, Verdict::Drop, "IP rule applies to a truncated packet");
    assert_eq!(
        e.counters.problems[chokepoint_core::decode::Problem::CaptureTruncated as usize],
        1
    );
    // an IP header that says 30 bytes, around 10 bytes of TCP header
    pkt[2..4].copy_from_slice(&30u16.to_be_bytes());
    let (v, _) = run(&mut e, 1, &synth::ethernet(&pkt, &[]));
    assert_eq!(v, Verdict::Drop);
    assert_eq!(
        e.counters.problems[chokepoint_core::decode::Problem::TcpTruncated as usize],
        1
    );
    // garbage of every length never panics
    for n in 0..80 {
        let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
        e.process(n as u64, LinkType::Ethernet, &junk);
        e.process(n as u64, LinkType::Raw, &junk);
    }
}

#[test]
fn flow_table_capacity_and_timeouts() {
    let mut e = engine_with("profile: {max_flows: 8, timeouts: {udp: 5}}\n");
    for i in 0..20u16 {
        run(&mut e, u64::from(i), &udp(C, S, 10000 + i, 9999, b"x"));
    }
    assert_eq!(e.flows().len(), 8);
    assert_eq!(e.flows().stats.evicted, 12);
    e.expire(100 * SEC);
    assert_eq!(e.flows().len(), 0);
    assert_eq!(e.flows().stats.expired, 8);
}

#[test]
fn inspection_budget() {
    let mut e = engine_with("profile: {max_inspect_packets: 2}\n");
    let ch = synth::tls_records(
        &synth::client_hello(Some("blocked.example"), HelloShape::default(), 9),
        16384,
    );
    run(&mut e, 0, &tcp(C, S, 40070, 443, 1, 0x02, b""));
    run(
        &mut e,
        1,
        &tcp(C, S, 40070, 443, 2, 0x18, b"\x16\x03\x01\x00"),
    );
    run(&mut e, 2, &tcp(C, S, 40070, 443, 6, 0x18, b"\x01"));
    // the hello arrives after two inspected packets: too late
    assert_eq!(
        run(&mut e, 3, &tcp(C, S, 40070, 443, 2, 0x18, &ch)).0,
        Verdict::Pass
    );
    assert_eq!(e.counters.inspection_budget_exhausted, 1);
}

#[test]
fn ech_flag_is_reported() {
    let mut e = engine();
    let ch = synth::tls_records(
        &synth::client_hello(
            Some("cloudflare-ech.com"),
            HelloShape {
                ech: true,
                ..Default::default()
            },
            9,
        ),
        16384,
    );
    run(&mut e, 0, &tcp(C, S, 40080, 443, 2, 0x18, &ch));
    assert!(e.events()[0].ech);
}

#[test]
fn ech_condition_reproduces_november_2024() {
    let yaml = "version: 1\nlists: {ech: {format: domains, exact: true, entries: [cloudflare-ech.com]}}\nrules: [{name: ech-2024, match: {list: ech, on: [tls_sni, quic_sni], ech: true}, action: drop}]\n";
    let rs = chokepoint_rules::compile_str(yaml, "t.yaml", std::path::Path::new(".")).unwrap();
    let mut e = Engine::new(Arc::new(rs));
    let with = synth::tls_records(
        &synth::client_hello(
            Some("cloudflare-ech.com"),
            HelloShape {
                ech: true,
                ..Default::default()
            },
            1,
        ),
        16384,
    );
    let without = synth::tls_records(
        &synth::client_hello(Some("cloudflare-ech.com"), HelloShape::default(), 1),
        16384,
    );
    assert_eq!(
        run(&mut e, 0, &tcp(C, S, 41000, 443, 2, 0x18, &with)).0,
        Verdict::Drop
    );
    assert_eq!(
        run(&mut e, 1, &tcp(C, S, 41001, 443, 2, 0x18, &without)).0,
        Verdict::Pass
    );
    // `ech` on a trigger without a ClientHello is refused
    let bad = "version: 1\nlists: {d: {format: domains, entries: [a.example]}}\nrules: [{name: r, match: {list: d, on: [dns_qname], ech: true}, action: drop}]\n";
    let err = chokepoint_rules::compile_str(bad, "t.yaml", std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`ech` applies to tls_sni and quic_sni only"),
        "{err}"
    );
}
