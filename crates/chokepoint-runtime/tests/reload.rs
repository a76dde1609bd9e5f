//! Hot reload: rules swapped while packets are classified never mix, and a
//! bad artifact leaves the old rules serving.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chokepoint_core::{Engine, LinkType, Verdict};
use chokepoint_rules::{compile_str, Ruleset};
use chokepoint_runtime::bridge::{reload, Shared};
use chokepoint_testkit::synth::{self, HelloShape};

fn rules(tag: &str, action: &str) -> Ruleset {
    let yaml = format!("version: 1\nlists: {{{tag}-list: {{format: domains, entries: [t.me]}}}}\nrules: [{{name: {tag}-rule, match: {{list: {tag}-list}}, action: {action}}}]\n");
    compile_str(&yaml, &format!("{tag}.yaml"), std::path::Path::new(".")).unwrap()
}

fn shared(r: Ruleset) -> Arc<Shared> {
    Arc::new(Shared::new(r, 1, 0.0))
}

#[test]
fn swaps_never_mix_two_rulesets() {
    let (a, b) = (rules("a", "reset"), rules("b", "drop"));
    let sh = shared(a.clone());
    let done = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (sh, done) = (sh.clone(), done.clone());
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !done.load(Ordering::Relaxed) && i < 20_000 {
                let next = if i % 2 == 0 { b.clone() } else { a.clone() };
                assert!(reload(&sh, || Ok(next)));
                i += 1;
            }
            i
        })
    };
    let (c, s): (IpAddr, IpAddr) = ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
    let hello = synth::tls_records(
        &synth::client_hello(Some("t.me"), HelloShape::default(), 1),
        16384,
    );
    let mut current = sh.rules.load_full();
    let mut engine = Engine::new(current.clone());
    let mut seen = [0u32; 2];
    for i in 0..5000u32 {
        // As a worker does: pick up the rules in force between packets.
        let now = sh.rules.load_full();
        if !Arc::ptr_eq(&now, &current) {
            current = now;
            engine.set_rules(current.clone());
        }
        let port = 10_000 + (i % 50_000) as u16;
        let f = synth::ethernet(
            &synth::ip_packet(
                c,
                s,
                6,
                &synth::tcp_segment(c, s, port, 443, 1, 1, 0x18, &hello),
            ),
            &[],
        );
        let d = engine.process(u64::from(i), LinkType::Ethernet, &f);
        let e = engine.events()[0];
        let name = &current.rule(e.rule.unwrap()).name;
        match (name.as_str(), d.verdict) {
            ("a-rule", Verdict::Reset) => seen[0] += 1,
            ("b-rule", Verdict::Drop) => seen[1] += 1,
            other => panic!("mixed rulesets: {other:?}"),
        }
        assert_eq!(
            current.describe(e.hit.unwrap()).list,
            format!("{}-list", &name[..1])
        );
    }
    done.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 10, "rules were swapped while classifying ({swaps})");
    assert!(seen[0] + seen[1] == 5000);
}

#[test]
fn a_bad_artifact_is_refused_and_the_old_rules_keep_serving() {
    let sh = shared(rules("a", "reset"));
    let before = sh.rules.load_full();
    let dir = std::env::temp_dir().join(format!("chokepoint-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.chk");
    let mut bytes = chokepoint_rules::artifact::to_bytes(&rules("b", "drop"));
    let n = bytes.len();
    bytes[n - 3] ^= 0xff; // corrupt the body: the hash no longer matches
    std::fs::write(&bad, &bytes).unwrap();
    let ok = reload(&sh, || {
        chokepoint_rules::artifact::load(&bad).map_err(|e| e.to_string())
    });
    assert!(!ok);
    assert_eq!(sh.reloads_failed.load(Ordering::Relaxed), 1);
    assert!(
        Arc::ptr_eq(&before, &sh.rules.load_full()),
        "old rules still in force"
    );
    // a half-written file (truncated) is refused too
    std::fs::write(&bad, &bytes[..n / 2]).unwrap();
    assert!(!reload(&sh, || chokepoint_rules::artifact::load(&bad)
        .map_err(|e| e.to_string())));
    assert_eq!(sh.reloads_failed.load(Ordering::Relaxed), 2);
    assert_eq!(sh.rules.load().meta.rules[0].name, "a-rule");
}

/// A reload stuck reading a list (a FIFO, a stalled NFS mount) gives up at
/// its limit, keeps the old rules, refuses reloads while the stuck read
/// lasts, and works again once it has ended.
#[test]
fn a_stuck_reload_times_out_and_the_old_rules_keep_serving() {
    use chokepoint_runtime::bridge::reload_within;
    use std::sync::mpsc;
    use std::time::Duration;

    let sh = shared(rules("a", "reset"));
    let (release, stuck) = mpsc::channel::<()>();
    let b = rules("b", "drop");
    let late = b.clone();
    let t = std::time::Instant::now();
    let ok = reload_within(&sh, Duration::from_millis(200), move || {
        let _ = stuck.recv_timeout(Duration::from_secs(30));
        Ok(late)
    });
    assert!(!ok, "a reload past its limit must fail");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(sh.reloads_failed.load(Ordering::Relaxed), 1);
    assert_eq!(sh.rules.load().meta.rules[0].name, "a-rule");
    // While the stuck read lasts, another reload is refused at once.
    let again = b.clone();
    assert!(!reload_within(&sh, Duration::from_secs(5), move || Ok(
        again
    )));
    assert_eq!(sh.reloads_failed.load(Ordering::Relaxed), 2);
    // The stuck read ends; its late result is dropped, not applied.
    release.send(()).unwrap();
    for _ in 0..500 {
        if !sh.reload_in_flight.load(Ordering::Acquire) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(sh.rules.load().meta.rules[0].name, "a-rule");
    assert!(reload_within(&sh, Duration::from_secs(5), move || Ok(b)));
    assert_eq!(sh.rules.load().meta.rules[0].name, "b-rule");
}
