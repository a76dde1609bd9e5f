//! The Grafana dashboard (deploy/grafana/chokepoint.json) against a real
//! Prometheus (Debian's `prometheus`) scraping a real bridge in the
//! namespace lab (tests/lab/grafana.sh): every query of every panel
//! returns data. Needs root, as CI runs; scripts/test.sh installs the tools.

use std::process::Command;

mod labkit;

/// Every panel's queries (rows hold panels of their own).
fn queries(panels: &[serde_json::Value]) -> usize {
    panels
        .iter()
        .map(|p| {
            let targets = p["targets"]
                .as_array()
                .map_or(0, |t| t.iter().filter(|t| t["expr"].is_string()).count());
            targets + p["panels"].as_array().map_or(0, |ps| queries(ps))
        })
        .sum()
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let repo = labkit::repo();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo.join("deploy/grafana/chokepoint.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(dashboard["schemaVersion"], 39);
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    let panels = dashboard["panels"].as_array().unwrap();
    let n = queries(panels);
    assert!(n >= 20, "{n} queries");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for t in [
        "Packets by verdict",
        "Bits by verdict",
        "Decisions by rule and trigger",
        "New flows",
        "Flow table fill",
        "Reassembly caps and budget",
        "Drops",
        "Reload status",
        "Policy per box",
        "Boxes per policy",
    ] {
        assert!(titles.contains(&t), "no panel {t}: {titles:?}");
    }
    let lab_dir = std::env::temp_dir().join(format!("chokepoint-grafana-{}", std::process::id()));
    std::fs::create_dir_all(&lab_dir).unwrap();
    let text = labkit::run_script(
        "tests/lab/grafana.sh",
        "test",
        &[("LAB_DIR", lab_dir.as_os_str())],
    );
    assert!(
        text.contains(&format!("grafana: {n} queries returned data, 0 failed")),
        "{text}"
    );
    assert!(text.contains("grafana lab: 5 passed, 0 failed"), "{text}");
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("cpmet-"),
        "the lab left its namespaces behind"
    );
    let _ = std::fs::remove_dir_all(&lab_dir);
}
