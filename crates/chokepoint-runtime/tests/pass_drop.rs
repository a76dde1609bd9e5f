//! Replay's --pass-out/--drop-out files against tshark (installed by
//! scripts/test.sh).

use std::process::Command;
use std::sync::Arc;

/// The files replay writes with --pass-out/--drop-out read cleanly in
/// tshark, which sees the injected resets, forged NXDOMAIN and the 302.
#[test]
fn tshark_reads_pass_and_drop_files() {
    use chokepoint_runtime::replay;
    let policy = "version: 1\nlists:\n  tg: {format: domains, entries: [telegram.org, t.me]}\n  http: {format: domains, entries: [telegram.me]}\nrules:\n  - {name: dns, match: {list: tg, on: [dns_qname]}, action: {dns: {answer: nxdomain}}}\n  - {name: sni, match: {list: tg, on: [tls_sni, quic_sni]}, action: {reset: {repeat: 2}}}\n  - {name: stub, match: {list: http, on: [http_host]}, action: {redirect: {location: \"http://stub.example/blocked\"}}}\n";
    let rules = Arc::new(
        chokepoint_rules::compile_str(policy, "p.yaml", std::path::Path::new(".")).unwrap(),
    );
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/sample-telegram-2018.pcap");
    let (mut pass, mut drop) = (Vec::new(), Vec::new());
    let (_, res) = replay::replay(
        rules,
        &sample,
        replay::Outputs {
            events: None,
            pass: Some(&mut pass),
            drop: Some(&mut drop),
            ..Default::default()
        },
    );
    res.unwrap();
    let dir = std::env::temp_dir().join(format!("chokepoint-passdrop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pp, dp) = (dir.join("pass.pcap"), dir.join("drop.pcap"));
    std::fs::write(&pp, &pass).unwrap();
    std::fs::write(&dp, &drop).unwrap();
    for f in [&pp, &dp] {
        let bad = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(f)
            .args(["-Y", "_ws.malformed || _ws.expert.severity >= error"])
            .output()
            .unwrap();
        assert!(
            bad.status.success() && bad.stdout.is_empty(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&bad.stdout)
        );
    }
    let count = |filter: &str| tshark_count(&pp, filter);
    assert_eq!(
        count("tcp.flags.reset == 1"),
        4 + 1,
        "2 resets each way, 1 to the HTTP server"
    );
    assert_eq!(count("dns.flags.rcode == 3"), 3);
    assert_eq!(
        count("http.response.code == 302 && http.location == \"http://stub.example/blocked\""),
        1
    );
}

/// A DNS query over TCP under a `dns` action is answered in the stream:
/// tshark reads every forged answer as a well-formed NXDOMAIN over TCP,
/// each followed by the FIN to the client and the reset to the server.
#[test]
fn dns_over_tcp_queries_get_forged_answers() {
    use chokepoint_runtime::replay;
    use chokepoint_testkit::gen;
    let spec = gen::Spec {
        flows: 40,
        mix: gen::Mix {
            tls: 0,
            quic: 0,
            dns: 1,
            http: 0,
        },
        listed: vec!["blocked-dns.example".into()],
        listed_share: 0.5,
        dns_tcp_share: 1.0,
        seed: 9,
        ..Default::default()
    };
    let (frames, truth) = gen::generate(&spec);
    let blocked = truth
        .iter()
        .filter(|t| t.name == "blocked-dns.example")
        .count();
    assert!(blocked > 5, "{blocked}");
    let dir = std::env::temp_dir().join(format!("chokepoint-dnstcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.pcap");
    gen::write(&mut std::fs::File::create(&input).unwrap(), &frames, false).unwrap();
    let policy = "version: 1\nlists:\n  d: {format: domains, entries: [blocked-dns.example]}\nrules:\n  - {name: nx, match: {list: d, on: [dns_qname]}, action: {dns: {answer: nxdomain}}}\n";
    let rules = Arc::new(
        chokepoint_rules::compile_str(policy, "p.yaml", std::path::Path::new(".")).unwrap(),
    );
    let mut pass = Vec::new();
    let (_, res) = replay::replay(
        rules,
        &input,
        replay::Outputs {
            events: None,
            pass: Some(&mut pass),
            drop: None,
            ..Default::default()
        },
    );
    res.unwrap();
    let pp = dir.join("pass.pcap");
    std::fs::write(&pp, &pass).unwrap();
    let count = |filter: &str| tshark_count(&pp, filter);
    assert_eq!(count("_ws.malformed || _ws.expert.severity >= error"), 0);
    assert_eq!(
        count("tcp.srcport == 53 && dns.flags.response == 1 && dns.flags.rcode == 3"),
        blocked
    );
    assert_eq!(
        count("tcp.srcport == 53 && tcp.flags.fin == 1 && tcp.len == 0"),
        blocked
    );
    assert_eq!(count("tcp.dstport == 53 && tcp.flags.reset == 1"), blocked);
}

/// Packets of a capture that tshark's display filter selects.
fn tshark_count(capture: &std::path::Path, filter: &str) -> usize {
    let o = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(capture)
        .args(["-Y", filter])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().count()
}
