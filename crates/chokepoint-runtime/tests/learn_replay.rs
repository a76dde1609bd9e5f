//! A replay drives `learn` by the capture's own timestamps: a WireGuard
//! handshake teaches the dynamic list, and flows to the server's port are
//! dropped from the delay on, until the ttl, one worker, no clock.

use std::net::IpAddr;
use std::sync::Arc;

use chokepoint_core::LinkType;
use chokepoint_runtime::{capture, replay};
use chokepoint_testkit::{synth, vpn};

const SEC: u64 = 1_000_000_000;

fn udp(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    synth::ethernet(
        &synth::ip_packet(s, d, 17, &synth::udp_datagram(s, d, sport, dport, payload)),
        &[],
    )
}

#[test]
fn capture_time_drives_the_delay_and_the_ttl() {
    let (client, server) = ("198.18.12.1", "198.18.12.2");
    // The handshake at 1000 s; then a plain packet from a new port every
    // 10 s for two minutes.
    let mut frames = vec![(
        1000 * SEC,
        udp(client, server, 40000, 51820, &vpn::wireguard_initiation(1)),
    )];
    for i in 1..=12u16 {
        let at = 1000 * SEC + u64::from(i) * 10 * SEC;
        frames.push((at, udp(client, server, 41000 + i, 51820, b"plain")));
    }
    let path = std::env::temp_dir().join(format!("chokepoint-learn-{}.pcap", std::process::id()));
    let mut w = capture::Writer::new(
        std::fs::File::create(&path).unwrap(),
        capture::Format::PcapNanos,
    );
    for (ts, f) in &frames {
        w.write(LinkType::Ethernet, *ts, f).unwrap();
    }
    w.finish().unwrap();
    let policy = "version: 1\nlists:\n  vpn: {format: dynamic}\nrules:\n  - {name: vpn, match: {list: vpn, on: [ip]}, action: drop}\n  - {name: wg, match: {protocols: [wireguard]}, action: {learn: {list: vpn, key: server_port, ttl: 60, delay: 30}}}\n";
    let rules = Arc::new(
        chokepoint_rules::compile_str(policy, "t.yaml", std::path::Path::new(".")).unwrap(),
    );
    let mut out = Vec::new();
    let (s, res) = replay::replay(
        rules.clone(),
        &path,
        replay::Outputs {
            events: Some(&mut out),
            ..Default::default()
        },
    );
    res.unwrap();
    let _ = std::fs::remove_file(&path);
    // Blocking from 1030 s until 1090 s: the packets at 1030..=1080 s.
    let dropped: Vec<u64> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["verdict"] == "drop" && e["list"] == "vpn")
        .map(|e| e["sport"].as_u64().unwrap() - 41000)
        .collect();
    assert_eq!(dropped, [3, 4, 5, 6, 7, 8]);
    assert_eq!((s.counters.learned, s.counters.learned_hits), (1, 6));
    assert_eq!(s.learned.learned, 1);
    assert_eq!(
        s.learned.expired, 1,
        "ended by the time the replay expired everything"
    );
    let text = replay::summary_text(&rules, &s);
    assert!(text.contains("servers learnt"), "{text}");
    assert!(text.contains("wireguard"), "{text}");
}
