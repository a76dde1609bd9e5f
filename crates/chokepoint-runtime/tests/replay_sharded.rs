//! Replay over several workers, sharded as the live bridge shards, gives
//! one worker's outputs byte for byte (events, pass and drop captures) and
//! the same summary: on the bundled sample under the bundled policy, on the
//! 80 oracle captures (../shared/testdata) under a policy that extracts
//! every name and under one that resets some, and on generated captures
//! (pcap and pcapng) under a policy with every action.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chokepoint_rules::Ruleset;
use chokepoint_runtime::eve::EventFormat;
use chokepoint_runtime::replay::{self, Outputs};
use chokepoint_testkit::gen;

fn testdata() -> PathBuf {
    let p = std::env::var_os("CHOKEPOINT_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"));
    assert!(
        p.join("pcaps").is_dir(),
        "test data not found at {} (set CHOKEPOINT_TESTDATA)",
        p.display()
    );
    p
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cp-sharded-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn policy(yaml: &str) -> Arc<Ruleset> {
    Arc::new(chokepoint_rules::compile_str(yaml, "t.yaml", Path::new(".")).unwrap())
}

/// (events, pass, drop, summary text, error) of one replay.
fn run(
    rules: &Arc<Ruleset>,
    cap: &Path,
    workers: usize,
    format: EventFormat,
) -> (Vec<u8>, Vec<u8>, Vec<u8>, String, Option<String>) {
    let (mut ev, mut pass, mut drop) = (Vec::new(), Vec::new(), Vec::new());
    let (s, res) = replay::replay_with(
        rules.clone(),
        cap,
        Outputs {
            events: Some(&mut ev),
            pass: Some(&mut pass),
            drop: Some(&mut drop),
            progress: None,
            format,
        },
        workers,
    );
    let text = replay::summary_text(rules, &s);
    (ev, pass, drop, text, res.err().map(|e| e.to_string()))
}

fn same(rules: &Arc<Ruleset>, cap: &Path, format: EventFormat) -> usize {
    let one = run(rules, cap, 1, format);
    for n in [2, 3] {
        let many = run(rules, cap, n, format);
        let what = format!("{} with {n} workers", cap.display());
        assert!(one.0 == many.0, "{what}: events differ");
        assert!(one.1 == many.1, "{what}: pass capture differs");
        assert!(one.2 == many.2, "{what}: drop capture differs");
        assert_eq!(one.3, many.3, "{what}: summary differs");
        assert_eq!(one.4, many.4, "{what}: error differs");
    }
    one.0.iter().filter(|&&b| b == b'\n').count()
}

#[test]
fn the_sample_under_the_bundled_policy() {
    let rules = Arc::new(chokepoint_rules::compile_default().unwrap());
    let cap = tmp("sample.pcap", &chokepoint_testkit::sample::telegram_2018());
    for format in [EventFormat::Native, EventFormat::Eve] {
        assert!(same(&rules, &cap, format) > 5);
    }
}

#[test]
fn the_oracle_captures() {
    let extract = policy("version: 1\n");
    let reset = policy(
        "version: 1\nlists: {d: {format: domains, entries: [com, org, net]}}\n\
         rules: [{name: r, match: {list: d}, action: reset}]\n",
    );
    let mut events = 0;
    let mut n = 0;
    for e in std::fs::read_dir(testdata().join("pcaps")).unwrap() {
        let p = e.unwrap().path();
        events += same(&extract, &p, EventFormat::Native);
        events += same(&reset, &p, EventFormat::Native);
        n += 1;
    }
    assert!(n >= 80 && events > 500, "{n} captures, {events} events");
}

#[test]
fn generated_captures_under_every_action() {
    let names = gen::domain_list(300, 7);
    let spec = gen::Spec {
        flows: 1500,
        listed: names.clone(),
        listed_share: 0.3,
        data_packets: 6,
        seed: 3,
        ..gen::Spec::default()
    };
    let (frames, _) = gen::generate(&spec);
    let list = |r: std::ops::Range<usize>| names[r].join(", ");
    let rules = policy(&format!(
        "version: 1\nlists:\n  a: {{format: domains, entries: [{}]}}\n  b: {{format: domains, entries: [{}]}}\n  \
         c: {{format: domains, entries: [{}]}}\n  d: {{format: domains, entries: [{}]}}\n\
         rules:\n  - {{name: reset, match: {{list: a}}, action: reset}}\n  \
         - {{name: drop, match: {{list: b}}, action: drop}}\n  \
         - {{name: dns, match: {{list: c}}, action: {{dns: {{answer: nxdomain}}}}}}\n  \
         - {{name: slow, match: {{list: d}}, action: {{throttle: {{kbps: 64}}}}}}\n",
        list(0..75),
        list(75..150),
        list(150..225),
        list(225..300)
    ));
    for pcapng in [false, true] {
        let mut bytes = Vec::new();
        gen::write(&mut bytes, &frames, pcapng).unwrap();
        let cap = tmp(if pcapng { "gen.pcapng" } else { "gen.pcap" }, &bytes);
        assert!(same(&rules, &cap, EventFormat::Native) > 200);
    }
}
