//! Replay of the bundled sample and of damaged captures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chokepoint_runtime::{capture, replay, sample};

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

#[test]
fn sample_replay_under_the_default_policy() {
    let rules = Arc::new(chokepoint_rules::compile_default().unwrap());
    let mut out = Vec::new();
    let (s, res) = replay::replay(
        rules,
        &repo().join("tests/data/sample-telegram-2018.pcap"),
        Some(&mut out),
    );
    res.unwrap();
    let events: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
    let (s, res) = replay::replay(rules, &cut, None);
    assert!(res.is_err());
    assert_eq!(s.counters.packets, 49);
    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture at all, not even close").unwrap();
    let err = capture::read(&junk, |_| {}).unwrap_err().to_string();
    assert!(err.contains("not a pcap or pcapng"), "{err}");
}
