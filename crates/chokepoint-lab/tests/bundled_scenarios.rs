//! Every bundled scenario loads, names its sources, and every stage's
//! policy compiles; the QUIC and ECH timelines probe with their options; the Telegram timeline replays over the bundled sample
//! as the stages say.

use std::path::{Path, PathBuf};

use chokepoint_lab::scenario::{replay, Scenario};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_bundled_scenario_loads_and_compiles() {
    let mut seen = 0;
    for e in std::fs::read_dir(repo().join("scenarios")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let sc = Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        assert!(!sc.sources.is_empty(), "{}: no sources", path.display());
        assert!(
            !sc.description.is_empty(),
            "{}: no description",
            path.display()
        );
        for i in 0..sc.stages.len() {
            let p = sc.policy(&path, i).unwrap();
            p.compile()
                .unwrap_or_else(|e| panic!("{} stage {}: {e:#}", path.display(), i + 1));
            assert!(
                !sc.stages[i].expect.is_empty(),
                "{} stage {} expects nothing: a scenario doubles as a test",
                path.display(),
                i + 1
            );
        }
        seen += 1;
    }
    assert!(seen >= 6, "only {seen} scenarios");
}

#[test]
fn the_quic_and_ech_timelines_probe_with_their_options() {
    use chokepoint_probe::{Ech, QuicVersion};
    let quic = Scenario::load(&repo().join("scenarios/quic-2022.yaml")).unwrap();
    let versions: Vec<Option<QuicVersion>> = quic.targets.iter().map(|t| t.quic).collect();
    assert!(versions.contains(&Some(QuicVersion::V1)));
    assert!(versions.contains(&Some(QuicVersion::Draft29)));
    assert!(versions.contains(&None), "a target over TCP alone");
    let ech = Scenario::load(&repo().join("scenarios/ech-2024.yaml")).unwrap();
    let with_ech: Vec<&str> = ech
        .targets
        .iter()
        .filter(|t| t.ech == Some(Ech::Grease))
        .map(|t| t.url.as_str())
        .collect();
    assert_eq!(
        with_ech,
        ["https://cloudflare-ech.com/", "https://example.com/"]
    );
    // Every stage says what each target should show.
    for sc in [&quic, &ech] {
        for st in &sc.stages {
            assert_eq!(st.expect.len(), sc.targets.len(), "{} {}", sc.name, st.date);
        }
    }
}

#[test]
fn the_telegram_timeline_replays_stage_by_stage() {
    let stages = replay::replay(
        &repo().join("scenarios/telegram-2018.yaml"),
        &repo().join("tests/data/sample-telegram-2018.pcap"),
    )
    .unwrap();
    assert_eq!(stages.len(), 4);
    let v = |i: usize, name: &str| stages[i].names.get(name).cloned().unwrap_or_default();
    // Before the block everything passes.
    assert!(
        stages[0].names.values().all(|v| v == "pass"),
        "{:?}",
        stages[0].names
    );
    // Names, then Telegram's own addresses, then the cloud prefixes.
    assert_eq!(v(1, "web.telegram.org"), "reset");
    assert_eq!(v(1, "149.154.167.51"), "pass");
    assert_eq!(v(2, "149.154.167.51"), "drop");
    assert_eq!(v(2, "2001:67c:4e8:f004::a"), "drop");
    assert_eq!(v(2, "shop.example"), "pass");
    // An unrelated site on AWS goes down with the cloud prefixes.
    assert_eq!(v(3, "52.58.10.20"), "drop");
    assert_eq!(v(3, "example.com"), "pass");
}
