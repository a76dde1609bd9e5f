//! The bundled scenarios, as files: each `config/*.yaml` is compiled from
//! the repository and drives an engine with synthetic traffic and
//! synthetic time, and must show the behaviour its header documents.

use std::path::Path;
use std::sync::Arc;

use chokepoint_core::quic::V1;
use chokepoint_core::{Engine, LinkType, Verdict};
use chokepoint_rules::Trigger;
use chokepoint_testkit::synth::{self, HelloShape};

mod common;

use common::*;

/// An engine for `config/NAME`, compiled from the file.
fn bundled(name: &str) -> Engine {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(name);
    let rs = chokepoint_rules::compile_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    Engine::new(Arc::new(rs))
}

const DRAFT_29: u32 = 0xff00_001d;

#[test]
fn gfw_quic_2025_needs_source_port_at_least_destination_port() {
    let mut e = bundled("gfw-quic-2025.yaml");
    let blocked = initial(V1, "www.google.com", 1200);
    let (v, _) = run(&mut e, 0, &udp(C, S, 442, 443, &blocked));
    assert_eq!(v, Verdict::Pass, "442 < 443: not inspected");
    let (v, ev) = run(&mut e, SEC, &udp(C, S, 443, 443, &blocked));
    assert_eq!((v, ev[0].0), (Verdict::Drop, Trigger::QuicSni), "443 = 443");
    // The same name over TCP: the rule is `proto: udp`, `on: [quic_sni]`.
    let v = tls_flow(
        &mut e,
        2 * SEC,
        "198.18.1.21",
        40000,
        &hello("www.google.com", false),
    );
    assert_eq!(v, [Verdict::Pass; 4], "TLS");
}

#[test]
fn gfw_quic_2025_blocks_the_udp_3_tuple_for_180_seconds() {
    let mut e = bundled("gfw-quic-2025.yaml");
    let (v, _) = run(
        &mut e,
        0,
        &udp(C, S, 50000, 443, &initial(V1, "en.wikipedia.org", 1200)),
    );
    assert_eq!(v, Verdict::Drop);
    assert_eq!(e.counters.residual_armed, 1);
    let innocent = initial(V1, "innocent.example", 1200);
    let (v, ev) = run(&mut e, 179 * SEC, &udp(C, S, 50001, 443, &innocent));
    assert_eq!((v, ev[0].0), (Verdict::Drop, Trigger::Residual), "179 s");
    // Outside the 3-tuple: TCP to the same port, UDP to another port.
    let v = tls_flow(
        &mut e,
        179 * SEC,
        S,
        50002,
        &hello("innocent.example", false),
    );
    assert_eq!(v[0], Verdict::Pass, "TCP to :443");
    let (v, _) = run(&mut e, 179 * SEC, &udp(C, S, 50003, 8443, &innocent));
    assert_eq!(v, Verdict::Pass, "UDP to :8443");
    let (v, _) = run(&mut e, 181 * SEC, &udp(C, S, 50004, 443, &innocent));
    assert_eq!(v, Verdict::Pass, "181 s");
}

#[test]
fn gfw_quic_2025_tracks_a_4_tuple_for_60_seconds_then_inspects_it_afresh() {
    let mut e = bundled("gfw-quic-2025.yaml");
    // Other flows in the table, so that the per-packet sweep (two slots a
    // packet) does not happen to reach the flow under test: only its own
    // lookup can find it idle.
    for i in 0..500u16 {
        run(&mut e, 0, &udp("198.18.2.1", S, 20000 + i, 9, b"x"));
    }
    // A first packet that is no Initial: the flow is not the rule's (the
    // paper's "random first packet" evasion).
    let (v, _) = run(&mut e, 0, &udp(C, S, 50000, 443, &[0x08; 40]));
    assert_eq!(v, Verdict::Pass);
    for i in 500..1000u16 {
        run(&mut e, 0, &udp("198.18.2.1", S, 20000 + i, 9, b"x"));
    }
    let blocked = udp(C, S, 50000, 443, &initial(V1, "www.youtube.com", 1200));
    // 59 s later the 4-tuple is still tracked: its Initial is not the
    // flow's first packet and is not inspected.
    let d = e.process(59 * SEC, LinkType::Ethernet, &blocked);
    assert_eq!(d.verdict, Verdict::Pass, "59 s idle");
    let tracked = d.flow;
    // 61 s after that the tracking has lapsed: the Initial opens a new
    // flow, is its first packet, and is blocked.
    let expired = e.flows().stats.expired;
    let d = e.process(120 * SEC, LinkType::Ethernet, &blocked);
    assert_eq!(d.verdict, Verdict::Drop, "61 s idle");
    assert_ne!(d.flow, tracked, "a new flow");
    assert_eq!(e.events()[0].trigger, Trigger::QuicSni);
    assert!(e.flows().stats.expired > expired, "the old flow expired");
}

/// Open a TLS connection from `C`:`port` to `server`:443 with a hello for
/// `sni`, then send 1000-byte server segments until one is dropped (or
/// `max` were sent): the hello's verdict and the server bytes that passed.
fn download(
    e: &mut Engine,
    t: u64,
    server: &str,
    port: u16,
    sni: &str,
    max: u32,
) -> (Verdict, u32) {
    let v = tls_flow(e, t, server, port, &hello(sni, false));
    let mut passed = 0;
    for i in 0..max {
        let seg = tcp(server, C, 443, port, 9001 + i * 1000, 0x18, &[0; 1000]);
        if !e
            .process(t + 10 + u64::from(i), LinkType::Ethernet, &seg)
            .forwards()
        {
            // Frozen both ways: the client's ACK goes no further.
            let ack = tcp(C, server, port, 443, 5000, 0x10, b"");
            assert!(!e.process(t + 9999, LinkType::Ethernet, &ack).forwards());
            break;
        }
        passed += 1000;
    }
    (v[3], passed)
}

#[test]
fn freeze_2025_freezes_tls_to_hosting_after_15_to_20_kb_server_to_client() {
    let mut e = bundled("freeze-2025.yaml");
    let mut frozen = Vec::new();
    let flows: u16 = 100;
    for i in 0..flows {
        let (v, passed) = download(
            &mut e,
            u64::from(i) * SEC,
            "104.16.0.1",
            40000 + i,
            "site.example",
            40,
        );
        assert_eq!(v, Verdict::Freeze, "flow {i}");
        if passed < 40_000 {
            // The segment that reaches the drawn threshold passes, the next
            // does not: with 1000-byte segments and a threshold in
            // [15000, 20000], 15 to 20 segments get through.
            assert!((15_000..=20_000).contains(&passed), "flow {i}: {passed}");
            frozen.push(passed);
        }
    }
    // probability: 0.8 (the header's guess); the draws are seeded, so this
    // is the same every run.
    assert!(
        (65..=95).contains(&frozen.len()),
        "{} of {flows} frozen",
        frozen.len()
    );
    let distinct: std::collections::BTreeSet<_> = frozen.iter().collect();
    assert!(
        distinct.len() >= 4,
        "thresholds drawn, not fixed: {frozen:?}"
    );
    // Another hosting network of the list freezes too.
    let (v, _) = download(&mut e, 200 * SEC, "88.198.10.1", 41000, "site.example", 1);
    assert_eq!(v, Verdict::Freeze, "Hetzner");
}

#[test]
fn freeze_2025_spares_the_exempt_site_other_networks_and_plain_http() {
    let mut e = bundled("freeze-2025.yaml");
    let (v, passed) = download(&mut e, 0, "104.16.0.1", 40000, "www.gosuslugi.ru", 40);
    assert_eq!((v, passed), (Verdict::Pass, 40_000), "the exempt site");
    let (v, passed) = download(&mut e, SEC, S, 40001, "site.example", 40);
    assert_eq!(
        (v, passed),
        (Verdict::Pass, 40_000),
        "not a hosting address"
    );
    let v = tcp_flow(
        &mut e,
        2 * SEC,
        "104.16.0.1",
        40002,
        80,
        &synth::http_get("site.example", "/"),
    );
    assert_eq!(v, [Verdict::Pass; 4], "HTTP is not TLS");
}

#[test]
fn youtube_2024_degrades_googlevideo_over_tls_and_quic() {
    let mut e = bundled("youtube-2024.yaml");
    let port = 40000;
    let v = tls_flow(
        &mut e,
        0,
        S,
        port,
        &hello("rr3---sn-abc.googlevideo.com", false),
    );
    assert_eq!(v[3], Verdict::Degrade);
    assert_eq!(e.events()[0].trigger, Trigger::TlsSni);
    let dropped = (0..2000u32)
        .filter(|&i| {
            let seg = tcp(S, C, 443, port, 9001 + i * 1000, 0x18, &[0; 1000]);
            !e.process(SEC + u64::from(i), LinkType::Ethernet, &seg)
                .forwards()
        })
        .count();
    // loss: 0.5; Binomial(2000, 0.5) has an sd of 22.
    assert!((850..=1150).contains(&dropped), "{dropped} of 2000 dropped");
    let (v, ev) = run(
        &mut e,
        10 * SEC,
        &udp(C, S, 50000, 443, &initial(V1, "i.ytimg.com", 1200)),
    );
    assert_eq!((v, ev[0].0), (Verdict::Degrade, Trigger::QuicSni));
    let v = tls_flow(&mut e, 20 * SEC, S, 40001, &hello("www.youtube.com", false));
    assert_eq!(v[3], Verdict::Pass, "the page itself is not on the list");
}

#[test]
fn ech_2024_needs_the_name_and_the_extension_over_tls_and_quic() {
    let mut e = bundled("ech-2024.yaml");
    let cases = [
        ("cloudflare-ech.com", true, Verdict::Drop),
        ("cloudflare-ech.com", false, Verdict::Pass),
        ("other.example", true, Verdict::Pass),
        // `exact: true`: the outer name only.
        ("www.cloudflare-ech.com", true, Verdict::Pass),
    ];
    for (i, (sni, ech, want)) in cases.into_iter().enumerate() {
        let t = i as u64 * SEC;
        let v = tls_flow(&mut e, t, S, 40000 + i as u16, &hello(sni, ech));
        assert_eq!(v[3], want, "TLS {sni} ech {ech}");
        let shape = HelloShape {
            ech,
            ..Default::default()
        };
        let (v, _) = run(
            &mut e,
            t,
            &udp(
                C,
                S,
                50000 + i as u16,
                443,
                &initial_shaped(V1, sni, shape, 1200),
            ),
        );
        assert_eq!(v, want, "QUIC {sni} ech {ech}");
    }
}

#[test]
fn quic_2022_drops_v1_initials_of_1001_bytes_to_443_only() {
    let mut e = bundled("quic-2022.yaml");
    let cases = [
        (50000, 443, V1, 1001, Verdict::Drop),
        (50001, 443, V1, 1000, Verdict::Pass),
        (50002, 443, DRAFT_29, 1200, Verdict::Pass),
        (443, 444, V1, 1200, Verdict::Pass),
        (50003, 8443, V1, 1200, Verdict::Pass),
    ];
    for (i, (sport, dport, version, len, want)) in cases.into_iter().enumerate() {
        let (v, _) = run(
            &mut e,
            i as u64,
            &udp(C, S, sport, dport, &initial(version, "any.example", len)),
        );
        assert_eq!(
            v, want,
            "{sport} -> {dport}, version {version:#x}, {len} bytes"
        );
    }
    assert_eq!(
        e.counters.decisions_by_trigger[Trigger::Protocol.index()],
        1
    );
}

#[test]
fn twitter_2021_throttles_by_substring_reddit_and_microsoft_too() {
    let mut e = bundled("twitter-2021.yaml");
    let names = [
        ("t.co", Verdict::Throttle),
        ("pbs.twimg.com", Verdict::Throttle),
        ("reddit.com", Verdict::Throttle),
        ("www.microsoft.com", Verdict::Throttle),
        ("example.org", Verdict::Pass),
    ];
    for (i, (sni, want)) in names.into_iter().enumerate() {
        let v = tls_flow(
            &mut e,
            i as u64 * SEC,
            S,
            40000 + i as u16,
            &hello(sni, false),
        );
        assert_eq!(v[3], want, "{sni}");
    }
    let rule = &e.rules().meta.rules[0];
    let action = rule.action.to_string();
    assert!(action.starts_with("throttle(140 kbit/s,"), "{action}");
}

#[test]
fn mobile_allowlist_2025_lets_the_syn_through_and_drops_the_hello() {
    let mut e = bundled("mobile-allowlist-2025.yaml");
    let v = tls_flow(&mut e, 0, S, 40000, &hello("example.com", false));
    assert_eq!(
        v,
        [Verdict::Pass, Verdict::Pass, Verdict::Pass, Verdict::Drop],
        "handshake passes, the hello to an address not allowed does not"
    );
    let v = tls_flow(
        &mut e,
        SEC,
        "77.88.8.8",
        40001,
        &hello("example.com", false),
    );
    assert_eq!(v, [Verdict::Pass; 4], "any name to an allowlisted address");
    let v = tls_flow(&mut e, 2 * SEC, S, 40002, &hello("music.yandex.ru", false));
    assert_eq!(v, [Verdict::Pass; 4], "an allowlisted name anywhere");
    let query = synth::dns_query(1, "example.com", 1);
    let (v, _) = run(&mut e, 3 * SEC, &udp(C, "198.18.0.2", 40003, 53, &query));
    assert_eq!(v, Verdict::Pass, "the ISP's resolver");
    let (v, _) = run(&mut e, 3 * SEC, &udp(C, "8.8.8.8", 40004, 53, &query));
    assert_eq!(v, Verdict::Drop, "a public resolver");
}

#[test]
fn mobile_allowlist_2025_answers_reach_the_client_of_a_query_that_passed() {
    let mut e = bundled("mobile-allowlist-2025.yaml");
    // Any resolver: the question decides, and its answer follows it.
    let query = synth::dns_query(7, "yandex.ru", 1);
    let mut answer = query.clone();
    answer[2] |= 0x80; // QR: a response
    let (v, _) = run(&mut e, 0, &udp(C, "8.8.8.8", 40010, 53, &query));
    assert_eq!(v, Verdict::Pass, "an allowlisted name's query");
    let (v, _) = run(&mut e, SEC / 10, &udp("8.8.8.8", C, 53, 40010, &answer));
    assert_eq!(v, Verdict::Pass, "its answer");
    // A name off the list: the query dies, and so would any answer.
    let query = synth::dns_query(8, "example.com", 1);
    let mut answer = query.clone();
    answer[2] |= 0x80;
    let (v, _) = run(&mut e, SEC, &udp(C, "8.8.8.8", 40011, 53, &query));
    assert_eq!(v, Verdict::Drop);
    let (v, _) = run(
        &mut e,
        SEC + SEC / 10,
        &udp("8.8.8.8", C, 53, 40011, &answer),
    );
    assert_eq!(
        v,
        Verdict::Drop,
        "no answer to a question that did not pass"
    );
}
