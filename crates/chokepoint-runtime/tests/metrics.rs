//! The metrics text: labels that cannot collide with rule names, series
//! from 0, both formats, what the last reload did, and the HTTP server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chokepoint_rules::compile_str;
use chokepoint_runtime::bridge::{reload, Shared};
use chokepoint_runtime::metrics::{render, render_as, serve_listener, BuildInfo, Format};

fn rules() -> chokepoint_rules::Ruleset {
    let y = "version: 1\nlists:\n  l: {format: domains, entries: [a.test]}\nrules:\n  - {name: none, match: {list: l}, action: drop}\n";
    compile_str(y, "t.yaml", std::path::Path::new(".")).unwrap()
}

fn line<'a>(text: &'a str, starts: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(starts)).collect()
}

#[test]
fn no_rule_does_not_share_a_label_with_a_rule_named_none() {
    let sh = Shared::new(rules(), 1, 0.0);
    {
        let mut d = sh.workers[0].decisions.lock().unwrap();
        d.insert((Some(Arc::from("none")), "tls_sni", "drop"), 5);
        d.insert((None, "tls_sni", "drop"), 7);
    }
    let text = render(&sh);
    let rows = line(&text, "chokepoint_decisions_total{");
    assert!(
        rows.contains(
            &r#"chokepoint_decisions_total{action="drop",rule="none",trigger="tls_sni"} 5"#
        ),
        "{rows:?}"
    );
    assert!(
        rows.contains(&r#"chokepoint_decisions_total{action="drop",rule="",trigger="tls_sni"} 7"#),
        "{rows:?}"
    );
}

#[test]
fn known_label_sets_start_at_zero() {
    let sh = Shared::new(rules(), 2, 0.0);
    let text = render(&sh);
    // Every side and verdict, every parse problem, every worker's rings.
    assert_eq!(line(&text, "chokepoint_packets_total{").len(), 2 * 10);
    assert_eq!(line(&text, "chokepoint_bytes_total{").len(), 2 * 10);
    assert_eq!(
        line(&text, "chokepoint_parse_problems_total{").len(),
        chokepoint_core::decode::Problem::ALL.len()
    );
    assert_eq!(line(&text, "chokepoint_kernel_drops_total{").len(), 2 * 2);
    assert_eq!(line(&text, "chokepoint_worker_queue_drops_total{").len(), 2);
    // The policy's rule under each trigger it applies to, with its action,
    // and the default (rule "") under each name trigger.
    let decisions = line(&text, "chokepoint_decisions_total{");
    for t in ["tls_sni", "quic_sni", "http_host", "dns_qname"] {
        for rule in [r#"action="drop",rule="none""#, r#"action="pass",rule="""#] {
            let row = format!("chokepoint_decisions_total{{{rule},trigger=\"{t}\"}} 0");
            assert!(decisions.contains(&row.as_str()), "{row} in {decisions:?}");
        }
    }
    for m in [
        "chokepoint_events_dropped_total{reason=\"queue_full\"} 0",
        "chokepoint_events_written_total 0",
        "chokepoint_flows_created_total 0",
        "chokepoint_artifact_fetches_total{result=\"refused\"} 0",
    ] {
        assert!(text.lines().any(|l| l == m), "{m} missing");
    }
    let build = line(&text, "chokepoint_build_info{");
    assert_eq!(build.len(), 1, "{build:?}");
    assert!(build[0].contains(&format!(
        "artifact_format=\"{}\"",
        chokepoint_rules::artifact::FORMAT_VERSION
    )));
    for m in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert_eq!(line(&text, m).len(), 1, "{m}");
    }
}

#[test]
fn openmetrics_names_match_the_prometheus_text() {
    let sh = Shared::new(rules(), 1, 0.0);
    let om = render_as(&sh, &BuildInfo::default(), Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE chokepoint_packets counter\n"));
    assert!(om.contains("# TYPE chokepoint_build info\n"));
    // The same series, whichever the format.
    let series = |t: &str| -> Vec<String> {
        let mut v: Vec<String> = t
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(series(&om), series(&render(&sh)));
}

/// One request, its whole answer.
fn get(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_metrics_server_answers_get_metrics_only() {
    let sh = Arc::new(Shared::new(rules(), 1, 0.0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve_listener(sh.clone(), listener, BuildInfo::default()).unwrap();
    let r = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
    assert!(r.contains("Connection: close\r\n"), "{r}");
    assert!(r.contains("\nchokepoint_build_info{"), "{r}");
    let r = get(
        addr,
        "GET /metrics HTTP/1.0\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
    );
    assert!(
        r.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{r}"
    );
    assert!(r.ends_with("# EOF\n"), "{r}");
    assert!(get(addr, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
    assert!(get(addr, "nonsense\r\n\r\n").starts_with("HTTP/1.1 400 "));
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    assert!(get(addr, &huge).starts_with("HTTP/1.1 431 "));
    // A client that never sends its request holds the one thread for at
    // most the time bound; the next scrape is answered after it.
    let stalled = TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    let r = get(addr, "GET /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    drop(stalled);
    sh.stop.store(true, Ordering::Relaxed);
    let t = Instant::now();
    server.join().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the server did not stop with the bridge"
    );
}

#[test]
fn last_reload_success_and_its_time() {
    let sh = Shared::new(rules(), 1, 0.0);
    let started = sh.last_reload_success_unix.load(Ordering::Relaxed);
    assert!(started > 1_700_000_000);
    let text = render(&sh);
    assert_eq!(
        line(&text, "chokepoint_last_reload_success "),
        ["chokepoint_last_reload_success 1"]
    );
    assert!(!reload(&sh, || Err("bad file".into())));
    let text = render(&sh);
    assert_eq!(
        line(&text, "chokepoint_last_reload_success "),
        ["chokepoint_last_reload_success 0"]
    );
    // A refused reload leaves the time of the last success alone.
    assert_eq!(
        line(&text, "chokepoint_last_reload_success_timestamp_seconds "),
        [format!("chokepoint_last_reload_success_timestamp_seconds {started}").as_str()]
    );
    assert!(reload(&sh, || Ok(rules())));
    let text = render(&sh);
    assert_eq!(
        line(&text, "chokepoint_last_reload_success "),
        ["chokepoint_last_reload_success 1"]
    );
    assert!(sh.last_reload_success_unix.load(Ordering::Relaxed) >= started);
}

#[test]
fn residual_blocks_are_counted_by_outcome_summed_over_workers() {
    let sh = Shared::new(rules(), 2, 0.0);
    for (w, n) in sh.workers.iter().zip([1u64, 10]) {
        let mut e = w.engine.lock().unwrap();
        e.residual_armed = 3 * n;
        e.residual_hits = 5 * n;
        e.residual_evicted = n;
        e.residual_expired = 2 * n;
    }
    let t = sh.totals();
    assert_eq!(
        (
            t.engine.residual_armed,
            t.engine.residual_hits,
            t.engine.residual_evicted,
            t.engine.residual_expired
        ),
        (33, 55, 11, 22)
    );
    let text = render(&sh);
    let mut rows = line(&text, "chokepoint_residual_total{");
    rows.sort_unstable();
    assert_eq!(
        rows,
        [
            "chokepoint_residual_total{outcome=\"armed\"} 33",
            "chokepoint_residual_total{outcome=\"evicted\"} 11",
            "chokepoint_residual_total{outcome=\"expired\"} 22",
            "chokepoint_residual_total{outcome=\"hit\"} 55",
        ]
    );
}

#[test]
fn stream_reading_knobs_are_counted_summed_over_workers() {
    let sh = Shared::new(rules(), 2, 0.0);
    for (w, n) in sh.workers.iter().zip([1u64, 10]) {
        let mut e = w.engine.lock().unwrap();
        e.ttl_fakes_ignored = n;
        e.urgent_bytes_stripped = 2 * n;
        e.overlap_conflicts = 3 * n;
        e.bad_checksums = 4 * n;
    }
    let text = render(&sh);
    let mut rows = line(&text, "chokepoint_stream_reading_total{");
    rows.sort_unstable();
    assert_eq!(
        rows,
        [
            "chokepoint_stream_reading_total{event=\"bad_checksum\"} 44",
            "chokepoint_stream_reading_total{event=\"overlap_conflict\"} 33",
            "chokepoint_stream_reading_total{event=\"ttl_fake_ignored\"} 11",
            "chokepoint_stream_reading_total{event=\"urgent_stripped\"} 22",
        ]
    );
}

#[test]
fn classified_flows_are_counted_by_protocol_summed_over_workers() {
    use chokepoint_rules::conditions::Protocol;
    let sh = Shared::new(rules(), 2, 0.0);
    let before = render(&sh);
    let mut rows = line(&before, "chokepoint_protocol_flows_total{");
    rows.sort_unstable();
    // The six classifiers' protocols from 0; the named ones (counted as
    // decisions) only once some flow was classified as one.
    assert_eq!(
        rows,
        [
            "chokepoint_protocol_flows_total{protocol=\"bittorrent\"} 0",
            "chokepoint_protocol_flows_total{protocol=\"fully_encrypted\"} 0",
            "chokepoint_protocol_flows_total{protocol=\"openvpn\"} 0",
            "chokepoint_protocol_flows_total{protocol=\"ssh\"} 0",
            "chokepoint_protocol_flows_total{protocol=\"stun\"} 0",
            "chokepoint_protocol_flows_total{protocol=\"wireguard\"} 0",
        ]
    );
    for (w, n) in sh.workers.iter().zip([1u64, 10]) {
        let mut e = w.engine.lock().unwrap();
        e.protocols[Protocol::Wireguard.index()] = 2 * n;
        e.protocols[Protocol::Quic.index()] = n;
    }
    let text = render(&sh);
    for row in [
        "chokepoint_protocol_flows_total{protocol=\"wireguard\"} 22",
        "chokepoint_protocol_flows_total{protocol=\"quic\"} 11",
        "chokepoint_protocol_flows_total{protocol=\"stun\"} 0",
    ] {
        assert!(text.lines().any(|l| l == row), "{row} missing");
    }
}

#[test]
fn fragments_and_reassembly_budget_are_summed_over_workers() {
    let sh = Shared::new(rules(), 2, 0.0);
    for (w, n) in sh.workers.iter().zip([1u64, 10]) {
        let mut d = w.defrag.lock().unwrap();
        d.datagrams = n;
        d.timeouts = 2 * n;
        d.evictions = 3 * n;
        d.refused = 4 * n;
        w.engine.lock().unwrap().reassembly_budget_bytes = 64 << 20;
    }
    let text = render(&sh);
    let mut rows = line(&text, "chokepoint_fragment_datagrams_total{");
    rows.sort_unstable();
    assert_eq!(
        rows,
        [
            "chokepoint_fragment_datagrams_total{outcome=\"evicted\"} 33",
            "chokepoint_fragment_datagrams_total{outcome=\"reassembled\"} 11",
            "chokepoint_fragment_datagrams_total{outcome=\"refused\"} 44",
            "chokepoint_fragment_datagrams_total{outcome=\"timed_out\"} 22",
        ]
    );
    let budget = 128u64 << 20;
    assert!(
        text.lines()
            .any(|l| l == format!("chokepoint_reassembly_budget_bytes {budget}")),
        "the box's budget is its workers' parts"
    );
}

#[test]
fn the_bridges_shared_residual_blocks_count_with_the_workers() {
    use chokepoint_core::residual::{Arming, ResidualStore};
    use chokepoint_rules::conditions::{ResidualAction, ResidualScope};
    let sh = Shared::new(rules(), 2, 0.0);
    sh.workers[0].engine.lock().unwrap().residual_armed = 1;
    sh.residual.arm(&Arming {
        now: 0,
        scope: ResidualScope::Server,
        proto: 6,
        client: "198.18.0.1".parse().unwrap(),
        server: "198.18.1.1".parse().unwrap(),
        port: 443,
        seconds: 60,
        rule: chokepoint_rules::RuleId::new(0).unwrap(),
        action: ResidualAction::Drop,
    });
    let text = render(&sh);
    assert!(
        text.lines()
            .any(|l| l == "chokepoint_residual_total{outcome=\"armed\"} 2"),
        "one armed in a worker's engine, one in the shared table"
    );
}
