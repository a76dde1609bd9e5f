//! Replay of the bundled sample and of damaged captures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chokepoint_runtime::{capture, replay};
use chokepoint_testkit::sample;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn bundled_sample_is_the_generators_output() {
    let committed = std::fs::read(repo().join("tests/data/sample-telegram-2018.pcap")).unwrap();
    assert!(
        committed == sample::telegram_2018(),
        "run `chokepoint sample tests/data/sample-telegram-2018.pcap`"
    );
}

/// Replay the bundled sample under `rules`: the summary and the events.
fn sample_events(rules: chokepoint_rules::Ruleset) -> (replay::Summary, Vec<serde_json::Value>) {
    let mut out = Vec::new();
    let (s, res) = replay::replay(
        Arc::new(rules),
        &repo().join("tests/data/sample-telegram-2018.pcap"),
        replay::Outputs {
            events: Some(&mut out),
            ..Default::default()
        },
    );
    res.unwrap();
    let events = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (s, events)
}

#[test]
fn sample_replay_under_the_default_policy() {
    let (s, events) = sample_events(chokepoint_rules::compile_default().unwrap());
    let row = |e: &serde_json::Value| {
        format!(
            "{} {} {} {}",
            e["trigger"].as_str().unwrap(),
            e["name"].as_str().unwrap(),
            e["rule"].as_str().unwrap_or("-"),
            e["verdict"].as_str().unwrap()
        )
    };
    let rows: Vec<String> = events.iter().map(row).collect();
    assert_eq!(
        rows,
        [
            "dns_qname telegram.org telegram-names reset",
            "dns_qname web.telegram.org telegram-names reset",
            "dns_qname t.me telegram-names reset",
            "dns_qname example.com - pass",
            "dns_qname www.wikipedia.org - pass",
            "tls_sni web.telegram.org telegram-names reset",
            "quic_sni t.me telegram-names reset",
            "http_host telegram.me telegram-names reset",
            "ip  telegram-ips drop",
            "ip  telegram-ips drop",
            "ip  cloud-collateral-2018 drop",
            "tls_sni www.example.com - pass",
            "http_host www.wikipedia.org - pass",
            "tls_sni nott.me - pass",
        ]
    );
    for k in [
        "frame", "ts", "src", "dst", "sport", "dport", "proto", "trigger", "name", "ech", "rule",
        "verdict",
    ] {
        assert!(events.iter().all(|e| e.get(k).is_some()), "key {k}");
    }
    assert_eq!(
        events[5]["frame"], 10,
        "the second segment of the split hello decides"
    );
    assert_eq!(s.records, 50);
    assert_eq!(s.flows_created, 14);
    let text = replay::summary_text(&chokepoint_rules::compile_default().unwrap(), &s);
    assert!(text.contains("top blocked names"), "{text}");
}

#[test]
fn a_protocol_rules_event_says_which_protocol() {
    let rules = chokepoint_rules::compile_file(&repo().join("config/quic-2022.yaml")).unwrap();
    let (_, events) = sample_events(rules);
    let (by_protocol, others): (Vec<_>, Vec<_>) =
        events.iter().partition(|e| e["trigger"] == "protocol");
    assert!(!by_protocol.is_empty(), "{events:?}");
    for e in by_protocol {
        assert_eq!(
            (&e["protocol"], &e["rule"]),
            (&"quic".into(), &"quic-2022".into()),
            "{e}"
        );
    }
    assert!(!others.is_empty());
    assert!(
        others.iter().all(|e| e.get("protocol").is_none()),
        "only for trigger protocol"
    );
}

#[test]
fn damaged_captures_error_with_offset_and_keep_earlier_frames() {
    let good = sample::telegram_2018();
    let dir = std::env::temp_dir().join(format!("chokepoint-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &good[..good.len() - 10]).unwrap(); // inside the last record
    let mut n = 0;
    let err = capture::read(&cut, |_| n += 1).unwrap_err().to_string();
    assert!(err.contains("byte offset"), "{err}");
    assert!(err.contains("after 49 packet records"), "{err}");
    assert_eq!(n, 49);
    let rules = Arc::new(chokepoint_rules::compile_default().unwrap());
    let (s, res) = replay::replay(rules, &cut, replay::Outputs::default());
    assert!(res.is_err());
    assert_eq!(s.counters.packets, 49);
    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture at all, not even close").unwrap();
    let err = capture::read(&junk, |_| {}).unwrap_err().to_string();
    assert!(err.contains("not a pcap or pcapng"), "{err}");
}

/// Actions on the sample: resets, forged DNS, redirect, drops, throttling,
/// written as pcap and checked by decoding what was written.
#[test]
fn actions_write_pass_and_drop_files() {
    use chokepoint_core::decode::{decode, Decoded, L4};
    use chokepoint_core::LinkType;
    let policy = r#"
version: 1
lists:
  tg: {format: domains, entries: [telegram.org, t.me]}
  http: {format: domains, entries: [telegram.me]}
  ips: {format: cidr, entries: [149.154.160.0/20, "2001:67c:4e8::/48"]}
  cloud: {format: cidr, entries: [52.58.0.0/15]}
rules:
  - {name: dns, match: {list: tg, on: [dns_qname]}, action: {dns: {answer: nxdomain}}}
  - {name: sni, match: {list: tg, on: [tls_sni, quic_sni]}, action: {reset: {repeat: 3}}}
  - {name: stub, match: {list: http, on: [http_host]}, action: {redirect: {location: "http://stub.example/blocked"}}}
  - {name: ips, match: {list: ips, on: [ip]}, action: drop}
  - {name: slow, match: {list: cloud, on: [ip]}, action: {throttle: {kbps: 8}}}
"#;
    let rules = Arc::new(chokepoint_rules::compile_str(policy, "p.yaml", Path::new(".")).unwrap());
    let (mut pass, mut drop) = (Vec::new(), Vec::new());
    let (s, res) = replay::replay(
        rules,
        &repo().join("tests/data/sample-telegram-2018.pcap"),
        replay::Outputs {
            events: None,
            pass: Some(&mut pass),
            drop: Some(&mut drop),
            ..Default::default()
        },
    );
    res.unwrap();
    let a = &s.actions;
    assert_eq!(a.injected_dns, 3, "telegram.org, web.telegram.org, t.me");
    assert_eq!(
        a.injected_rst, 6,
        "3 resets each way for the TLS flow; QUIC is only dropped"
    );
    assert_eq!(a.injected_redirect, 1);
    // The cloud flow's ~2.3 KB fit in the policer's 3.2 KB burst: nothing is
    // throttled here (the token bucket's rate is tested in chokepoint-core,
    // real downloads in the namespace lab).
    assert_eq!(a.throttled, 0);
    assert_eq!(a.forwarded + a.dropped, 50);
    // Read back what was written.
    let dir = std::env::temp_dir().join(format!("chokepoint-actions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pp, dp) = (dir.join("pass.pcap"), dir.join("drop.pcap"));
    std::fs::write(&pp, &pass).unwrap();
    std::fs::write(&dp, &drop).unwrap();
    let mut nx = 0;
    let mut rst = 0;
    let mut redirect = 0;
    let passed = capture::read(&pp, |r| {
        let Decoded::Packet(p) = decode(LinkType::Ethernet, r.data) else {
            panic!("unreadable injected frame")
        };
        match p.l4 {
            L4::Udp(u) if u.sport == 53 => {
                assert_eq!(u.payload[3] & 0x0f, 3, "NXDOMAIN");
                nx += 1;
            }
            L4::Tcp(t) if t.flags & 0x04 != 0 => rst += 1,
            L4::Tcp(t)
                if t.payload.starts_with(
                    b"HTTP/1.1 302 Found\r\nLocation: http://stub.example/blocked\r\n",
                ) =>
            {
                redirect += 1
            }
            _ => {}
        }
    })
    .unwrap();
    let dropped = capture::read(&dp, |_| {}).unwrap();
    assert_eq!((nx, redirect), (3, 1));
    assert_eq!(
        rst,
        6 + 1,
        "resets to the TLS flow, and one to the HTTP server"
    );
    assert_eq!(passed + dropped, 50 + 3 + 6 + 2);
}

/// IP fragments that never complete: held up to the cap (4096 by default),
/// the oldest evicted for room, the rest timed out at the end; all three
/// outcomes are in the summary.
#[test]
fn incomplete_fragments_are_counted_in_the_summary() {
    use chokepoint_core::LinkType;
    use chokepoint_testkit::synth;
    const DATAGRAMS: u32 = 10_000;
    let dir = std::env::temp_dir().join(format!("chokepoint-frag-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fragments.pcap");
    let mut w = capture::Writer::new(Vec::new(), capture::Format::PcapNanos);
    for i in 0..DATAGRAMS {
        let (c, s) = (
            std::net::IpAddr::from([198, 18, (i >> 8) as u8, i as u8]),
            std::net::IpAddr::from([198, 19, 0, 1]),
        );
        let udp = synth::udp_datagram(c, s, 40_000, 53, &[0u8; 1200]);
        let frags = synth::ipv4_fragments(&synth::ip_packet(c, s, 17, &udp), 600);
        let ts = 1_000_000_000 + u64::from(i) * 1000;
        w.write(LinkType::Ethernet, ts, &synth::ethernet(&frags[0], &[]))
            .unwrap();
    }
    std::fs::write(&path, w.finish().unwrap()).unwrap();
    let rules = Arc::new(chokepoint_rules::compile_default().unwrap());
    let (s, res) = replay::replay(rules.clone(), &path, replay::Outputs::default());
    res.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(s.defrag.fragments, u64::from(DATAGRAMS));
    assert_eq!(s.defrag.evictions, u64::from(DATAGRAMS) - 4096);
    assert_eq!(s.defrag.timeouts, 4096);
    let text = replay::summary_text(&rules, &s);
    assert!(text.contains("IP fragments evicted"), "{text}");
    assert!(text.contains(&format!("{:>8}", DATAGRAMS - 4096)), "{text}");
}

/// A sink whose disk fills after `room` bytes.
struct FillsUp {
    room: usize,
}

impl std::io::Write for FillsUp {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_output_is_an_error_and_the_summary_is_still_made() {
    let rules = Arc::new(chokepoint_rules::compile_default().unwrap());
    let cap = repo().join("tests/data/sample-telegram-2018.pcap");
    for which in ["events", "pass", "drop"] {
        let mut sink = FillsUp { room: 10 };
        let mut out = replay::Outputs::default();
        match which {
            "events" => out.events = Some(&mut sink),
            "pass" => out.pass = Some(&mut sink),
            _ => out.drop = Some(&mut sink),
        }
        let (s, res) = replay::replay(rules.clone(), &cap, out);
        match res {
            Err(capture::CaptureError::Output { source }) => {
                assert_eq!(source.raw_os_error(), Some(28), "{which}")
            }
            other => panic!("{which}: {other:?}"),
        }
        assert_eq!(s.events, 14, "{which}");
    }
}

#[test]
fn events_say_when_a_wire_knob_changed_the_outcome() {
    use chokepoint_core::LinkType;
    use chokepoint_testkit::synth::{self, HelloShape};
    let (c, s) = (
        std::net::IpAddr::from([198, 18, 0, 10]),
        std::net::IpAddr::from([198, 18, 1, 20]),
    );
    let hello = |sni| {
        synth::tls_records(
            &synth::client_hello(Some(sni), HelloShape::default(), 1),
            16384,
        )
    };
    let frame = |flags, payload: &[u8], ttl| {
        let seg = synth::tcp_segment(c, s, 40_000, 443, 1001, 1, flags, payload);
        synth::ethernet(&synth::ip_packet_ttl(c, s, 6, &seg, ttl), &[])
    };
    let dir = std::env::temp_dir().join(format!("chokepoint-knobs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fake.pcap");
    let mut w = capture::Writer::new(Vec::new(), capture::Format::PcapNanos);
    let syn = {
        let seg = synth::tcp_segment(c, s, 40_000, 443, 1000, 0, 0x02, b"");
        synth::ethernet(&synth::ip_packet_ttl(c, s, 6, &seg, 60), &[])
    };
    for (i, f) in [
        syn,
        frame(0x18, &hello("allowed.example"), 3),
        frame(0x18, &hello("t.me"), 60),
    ]
    .iter()
    .enumerate()
    {
        w.write(LinkType::Ethernet, 1_000_000_000 * (i as u64 + 1), f)
            .unwrap();
    }
    std::fs::write(&path, w.finish().unwrap()).unwrap();
    let policy = "version: 1\nlists:\n  tg: {format: domains, entries: [t.me]}\nrules:\n  - {name: tg, match: {list: tg}, action: reset}\nprofile: {preset: hardened}\n";
    let rules = Arc::new(chokepoint_rules::compile_str(policy, "p.yaml", Path::new(".")).unwrap());
    let mut out = Vec::new();
    let (sum, res) = replay::replay(
        rules.clone(),
        &path,
        replay::Outputs {
            events: Some(&mut out),
            ..Default::default()
        },
    );
    res.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let events: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["name"], "t.me");
    assert_eq!(e["fake_ignored"], true);
    assert_eq!(e["fake_name"], "allowed.example");
    assert!(e.get("urgent_stripped").is_none(), "only what was set");
    let text = replay::summary_text(&rules, &sum);
    assert!(text.contains("TTL-limited fakes ignored"), "{text}");
}
