//! The metrics text: labels that cannot collide with rule names, and what
//! the last reload did.

use std::sync::atomic::Ordering;

use chokepoint_rules::{compile_str, RuleId};
use chokepoint_runtime::bridge::{reload, Shared};
use chokepoint_runtime::metrics::render;

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
        d.insert((RuleId::new(0), "tls_sni", "drop"), 5);
        d.insert((None, "tls_sni", "drop"), 7);
    }
    let text = render(&sh);
    let rows = line(&text, "chokepoint_decisions_total{");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .any(|l| l.contains("rule=\"none\"") && l.ends_with(" 5")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|l| l.contains("rule=\"\"") && l.ends_with(" 7")),
        "{rows:?}"
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
