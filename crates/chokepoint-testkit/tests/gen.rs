//! The generator against two oracles: the core's own extraction, and
//! tshark (installed by scripts/test.sh).

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;

use chokepoint_core::Engine;
use chokepoint_testkit::gen::{self, Mix, Sizes, Spec};

fn spec(seed: u64) -> Spec {
    Spec {
        flows: 600,
        listed: vec!["t.me".into(), "web.telegram.org".into()],
        listed_share: 0.2,
        seed,
        ..Default::default()
    }
}

type Row = (String, String, String, String, u16, u16);

fn truth_rows(t: &[gen::Truth]) -> BTreeSet<Row> {
    t.iter()
        .map(|x| {
            (
                x.trigger.to_string(),
                x.name.clone(),
                x.src.to_string(),
                x.dst.to_string(),
                x.sport,
                x.dport,
            )
        })
        .collect()
}

#[test]
fn core_extracts_exactly_the_names_written() {
    let s = spec(7);
    let (frames, truth) = gen::generate(&s);
    assert_eq!(truth.len(), 600);
    let rules = Arc::new(
        chokepoint_rules::compile_str("version: 1\n", "e.yaml", std::path::Path::new(".")).unwrap(),
    );
    let mut e = Engine::new(rules);
    let mut seen = BTreeSet::new();
    for (ts, f) in &frames {
        e.process(*ts, chokepoint_core::LinkType::Ethernet, f);
        for ev in e.events() {
            seen.insert((
                ev.trigger.as_str().to_string(),
                String::from_utf8_lossy(ev.name.as_bytes()).into_owned(),
                ev.src.to_string(),
                ev.dst.to_string(),
                ev.sport,
                ev.dport,
            ));
        }
    }
    assert_eq!(seen, truth_rows(&truth));
    assert_eq!(e.counters.quic_decrypt_failures, 0);
    // every protocol of the mix is there, IPv6 too
    for k in ["tls_sni", "quic_sni", "dns_qname", "http_host"] {
        assert!(truth.iter().any(|t| t.trigger == k), "{k}");
    }
    assert!(truth.iter().any(|t| t.src.is_ipv6()));
    assert!(
        truth
            .iter()
            .filter(|t| t.name == "t.me" || t.name == "web.telegram.org")
            .count()
            > 60
    );
}

#[test]
fn deterministic_for_a_seed_and_sizes_follow_the_distribution() {
    assert_eq!(gen::generate(&spec(3)).0, gen::generate(&spec(3)).0);
    assert_ne!(gen::generate(&spec(3)).0, gen::generate(&spec(4)).0);
    let only_tls = Spec {
        mix: Mix {
            tls: 1,
            quic: 0,
            dns: 0,
            http: 0,
        },
        sizes: Sizes::Small,
        data_packets: 20,
        ipv6_share: 0.0,
        ..spec(5)
    };
    let (frames, _) = gen::generate(&only_tls);
    let small = frames.iter().filter(|f| f.1.len() == 64).count();
    assert!(small > 600 * 20 / 2, "{small}");
    let imix = Spec {
        sizes: Sizes::Imix,
        ..only_tls
    };
    let (frames, _) = gen::generate(&imix);
    let n = |len: usize| frames.iter().filter(|f| f.1.len() == len).count() as f64;
    let ratio = n(64) / n(1518);
    assert!((4.0..11.0).contains(&ratio), "64:1518 = {ratio} (IMIX 7:1)");
}

#[test]
fn tshark_reads_it_cleanly_and_sees_the_same_names() {
    let tshark = Command::new("tshark").arg("-v").output();
    assert!(
        tshark.is_ok_and(|o| o.status.success()),
        "tshark is needed: run ./scripts/test.sh, which installs it"
    );
    let dir = std::env::temp_dir().join(format!("chokepoint-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (frames, truth) = gen::generate(&spec(11));
    for pcapng in [false, true] {
        let path = dir.join(if pcapng { "g.pcapng" } else { "g.pcap" });
        let mut f = std::fs::File::create(&path).unwrap();
        gen::write(&mut f, &frames, pcapng).unwrap();
        drop(f);
        let bad = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&path)
            .args(["-Y", "_ws.malformed || _ws.expert.severity >= error"])
            .output()
            .unwrap();
        assert!(
            bad.status.success(),
            "{}",
            String::from_utf8_lossy(&bad.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&bad.stdout).lines().count(),
            0,
            "malformed: {}",
            String::from_utf8_lossy(&bad.stdout)
        );
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&path)
            .args([
                "-T",
                "fields",
                "-e",
                "tls.handshake.extensions_server_name",
                "-e",
                "dns.qry.name",
                "-e",
                "http.host",
            ])
            .output()
            .unwrap();
        let names: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .split(['\t', '\n'])
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let want: BTreeSet<String> = truth.iter().map(|t| t.name.clone()).collect();
        assert_eq!(names, want, "pcapng={pcapng}");
        let records = Command::new("capinfos")
            .args(["-c", "-M"])
            .arg(&path)
            .output();
        if let Ok(r) = records {
            let text = String::from_utf8_lossy(&r.stdout);
            assert!(text.contains(&frames.len().to_string()), "{text}");
        }
    }
}
