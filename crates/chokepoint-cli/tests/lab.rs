//! The namespace lab with real clients (tests/lab/lab.sh): curl, dig,
//! openssl s_server, dnsmasq and python's http.server in network
//! namespaces, `chokepoint run` bridging between them. Needs root, as CI
//! runs; scripts/test.sh installs the tools.

use std::process::Command;

mod labkit;

#[test]
fn live_bridge_enforces_every_action_on_real_clients() {
    let repo = labkit::repo();
    let lab_dir = std::env::temp_dir().join(format!("chokepoint-lab-{}", std::process::id()));
    std::fs::create_dir_all(&lab_dir).unwrap();
    // The hardening phase swaps this in under traffic: the lab policy with
    // its IPv4 prefixes moved to a list no IP rule uses, hash recomputed.
    let rules = chokepoint_rules::compile_file(&repo.join("tests/lab/policy.yaml")).unwrap();
    let names = rules
        .meta
        .lists
        .iter()
        .position(|l| l.name == "reset-names")
        .unwrap() as u16;
    let crafted = chokepoint_testkit::craft::prefixes_on_list(
        &chokepoint_rules::artifact::to_bytes(&rules),
        names,
    );
    std::fs::write(lab_dir.join("crafted.chk"), crafted).unwrap();
    let text = labkit::run_script(
        "tests/lab/lab.sh",
        "test",
        &[("LAB_DIR", lab_dir.as_os_str())],
    );
    // The inline bridge twice: the ring backend with two workers (one
    // check more: the kernel's ring counters), then the socket backend.
    assert!(
        text.contains("lab: 19 passed, 0 failed"),
        "inline bridge, ring backend: {text}"
    );
    assert!(
        text.contains("lab: 18 passed, 0 failed"),
        "inline bridge, socket backend: {text}"
    );
    assert_eq!(
        text.matches("lab: 4 passed, 0 failed").count(),
        2,
        "tap mode and censor behaviour: {text}"
    );
    assert!(
        text.contains("lab: 5 passed, 0 failed"),
        "hardening: {text}"
    );
    // The namespaces are gone afterwards.
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("cp-censor"),
        "lab left its namespaces behind"
    );
}
