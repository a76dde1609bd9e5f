//! `Engine::process_batch` is `Engine::process` on each frame in order:
//! over the oracle's 80 published captures (../shared/testdata) and a
//! generated one, under a policy that decides nothing and one that blocks
//! names the capture carries, every frame gets the same decision and the
//! same events, in the same order, and the engine ends with the same
//! counters and flow statistics, whatever the burst sizes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chokepoint_core::{Decision, Engine, LinkType, Verdict};
use chokepoint_rules::Ruleset;
use proptest::prelude::*;

type Frames = Vec<(u64, LinkType, Vec<u8>)>;

fn compile(yaml: &str) -> Arc<Ruleset> {
    Arc::new(chokepoint_rules::compile_str(yaml, "t.yaml", Path::new(".")).unwrap())
}

/// What an engine did: per frame its decision and events, then its
/// counters, flow statistics and flows held. Events have no `PartialEq`;
/// their `Debug` form shows every field.
fn record(d: &Decision, events: &[chokepoint_core::Event], out: &mut Vec<String>) {
    out.push(format!("{d:?} {events:?}"));
}

fn finish(e: &Engine, out: &mut Vec<String>) {
    out.push(format!(
        "{:?} {:?} {}",
        e.counters,
        e.flows().stats,
        e.flows().len()
    ));
}

fn one_by_one(rules: &Arc<Ruleset>, frames: &Frames) -> Vec<String> {
    let mut e = Engine::new(rules.clone());
    let mut out = Vec::new();
    for (ts, link, f) in frames {
        let d = e.process(*ts, *link, f);
        record(&d, e.events(), &mut out);
    }
    finish(&e, &mut out);
    out
}

/// The frames in bursts of the sizes in `sizes` (cycled).
fn in_bursts(rules: &Arc<Ruleset>, frames: &Frames, sizes: &[usize]) -> Vec<String> {
    let mut e = Engine::new(rules.clone());
    let mut out = Vec::new();
    let mut at = 0;
    for &n in sizes.iter().cycle() {
        if at >= frames.len() {
            break;
        }
        let burst: Vec<(u64, LinkType, &[u8])> = frames[at..(at + n).min(frames.len())]
            .iter()
            .map(|(ts, link, f)| (*ts, *link, f.as_slice()))
            .collect();
        let mut ds = vec![Decision::PASS; burst.len()];
        let mut evs: Vec<Vec<chokepoint_core::Event>> = vec![Vec::new(); burst.len()];
        let mut last = None;
        e.process_batch(&burst, &mut ds, |i, ev| {
            assert!(last < Some(i), "events out of frame order");
            last = Some(i);
            evs[i] = ev.to_vec();
        });
        for (d, ev) in ds.iter().zip(&evs) {
            record(d, ev, &mut out);
        }
        at += burst.len();
    }
    finish(&e, &mut out);
    out
}

fn read(pcap: &Path) -> Frames {
    let mut frames = Vec::new();
    let _ =
        chokepoint_runtime::capture::read(pcap, |r| frames.push((r.ts, r.link, r.data.to_vec())));
    frames
}

/// A policy resetting every other name the capture's events carry (as a
/// domain list), so that flows are decided by name, mid-capture.
fn blocking(frames: &Frames) -> Arc<Ruleset> {
    let mut e = Engine::new(compile("version: 1\n"));
    let mut names = std::collections::BTreeSet::new();
    for (ts, link, f) in frames {
        e.process(*ts, *link, f);
        for ev in e.events() {
            let n = String::from_utf8_lossy(ev.name.as_bytes()).to_lowercase();
            let n = n.trim_end_matches('.');
            if !n.is_empty()
                && n.len() < 200
                && n.contains('.')
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                && !n.split('.').any(str::is_empty)
            {
                names.insert(n.to_string());
            }
        }
    }
    let listed: Vec<String> = names
        .iter()
        .step_by(2)
        .map(|n| format!("\"{n}\""))
        .collect();
    compile(&format!(
        "version: 1\nlists:\n  d: {{format: domains, on_error: skip, entries: [{}]}}\nrules:\n  - {{name: d, match: {{list: d}}, action: reset}}\n",
        listed.join(", ")
    ))
}

#[test]
fn the_oracle_captures_decide_the_same_in_bursts() {
    let mut pcaps: Vec<PathBuf> = std::fs::read_dir(chokepoint_testkit::testdata().join("pcaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pcaps.sort();
    assert!(pcaps.len() >= 80, "{} captures", pcaps.len());
    let plain = compile("version: 1\n");
    let (mut frames_seen, mut reset) = (0, 0);
    for pcap in &pcaps {
        let frames = read(pcap);
        frames_seen += frames.len();
        for rules in [plain.clone(), blocking(&frames)] {
            let want = one_by_one(&rules, &frames);
            reset += want.iter().filter(|l| l.contains("Reset")).count();
            for sizes in [&[16][..], &[1, 7, 32, 3]] {
                assert!(
                    in_bursts(&rules, &frames, sizes) == want,
                    "{}: bursts of {sizes:?} differ",
                    pcap.display()
                );
            }
        }
    }
    assert!(
        frames_seen > 5_000 && reset > 1_000,
        "{frames_seen} {reset}"
    );
}

/// A generated capture (TLS in one and two segments, QUIC split over
/// Initials, DNS over UDP and TCP, HTTP, IPv6), a tenth of its names
/// listed, interleaved 64 flows at a time.
fn generated() -> (Frames, Arc<Ruleset>) {
    let listed = chokepoint_testkit::gen::domain_list(200, 7);
    let spec = chokepoint_testkit::gen::Spec {
        flows: 400,
        data_packets: 4,
        listed: listed.clone(),
        seed: 11,
        ..Default::default()
    };
    let frames = chokepoint_testkit::gen::generate(&spec)
        .0
        .into_iter()
        .map(|(ts, f)| (ts, LinkType::Ethernet, f))
        .collect();
    let rules = compile(&format!(
        "version: 1\nlists:\n  d: {{format: domains, entries: [{}]}}\nrules:\n  - {{name: d, match: {{list: d}}, action: reset}}\n",
        listed.join(", ")
    ));
    (frames, rules)
}

#[test]
fn a_generated_capture_decides_the_same_in_bursts() {
    let (frames, rules) = generated();
    let want = one_by_one(&rules, &frames);
    assert!(want.iter().any(|l| l.contains("Reset")));
    assert!(in_bursts(&rules, &frames, &[16]) == want);
    assert!(in_bursts(&rules, &frames, &[frames.len()]) == want);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Bursts of random sizes, one frame to several bursts' worth.
    #[test]
    fn random_bursts_decide_the_same(sizes in proptest::collection::vec(1usize..70, 1..20)) {
        let (frames, rules) = GENERATED.with(|g| g.clone());
        let want = GENERATED_WANT.with(|w| w.clone());
        let got = in_bursts(&rules, &frames, &sizes);
        prop_assert!(got == want, "bursts of {:?} differ", sizes);
    }
}

thread_local! {
    static GENERATED: (Frames, Arc<Ruleset>) = generated();
    static GENERATED_WANT: Vec<String> = GENERATED.with(|(f, r)| one_by_one(r, f));
}

#[test]
fn a_burst_needs_room_for_every_decision() {
    let mut e = Engine::new(compile("version: 1\n"));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        e.process_batch(&[(0, LinkType::Ethernet, &[][..])], &mut [], |_, _| {})
    }));
    assert!(r.is_err());
    let mut d = [Decision::PASS];
    e.process_batch(
        &[(0, LinkType::Ethernet, &[0u8; 14][..])],
        &mut d,
        |_, _| {},
    );
    assert_eq!(d[0].verdict, Verdict::Pass);
}
