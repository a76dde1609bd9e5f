//! Operations: artifact distribution and the nftables export in network
//! namespaces (tests/lab/ops.sh; root, as CI runs), and the systemd unit
//! and logrotate snippet checked by the tools that read them.

use std::path::PathBuf;
use std::process::Command;

mod labkit;

fn lab_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("chokepoint-ops-{name}-{}", std::process::id()))
}

fn namespaces() -> String {
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&ns.stdout).into_owned()
}

#[test]
fn a_fleet_node_takes_only_signed_artifacts_and_keeps_the_old_rules_otherwise() {
    let dir = lab_dir("dist");
    let text = labkit::run_script("tests/lab/ops.sh", "dist", &[("LAB_DIR", dir.as_os_str())]);
    assert!(text.contains("ops dist: 9 passed, 0 failed"), "{text}");
    assert!(
        !namespaces().contains("cpops-censor"),
        "left its namespaces"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_kernel_enforces_the_nftables_export() {
    let dir = lab_dir("nft");
    let text = labkit::run_script("tests/lab/ops.sh", "nft", &[("LAB_DIR", dir.as_os_str())]);
    assert!(text.contains("ops nft: 12 passed, 0 failed"), "{text}");
    assert!(
        !namespaces().contains("cpops-router"),
        "left its namespaces"
    );
    // The figure for docs/SCALING.md, in the test's output.
    if let Some(l) = text.lines().find(|l| l.contains("nft -f took")) {
        println!("{l}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `systemd-analyze verify` on the unit as shipped, with only the binary's
/// path pointed at the one just built (verify checks that it exists). It
/// exits 0 even on unknown keys and bad values, so its output must be empty.
#[test]
fn the_systemd_unit_verifies_cleanly() {
    let repo = labkit::repo();
    let unit = std::fs::read_to_string(repo.join("deploy/systemd/chokepoint.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/chokepoint run "));
    let dir = lab_dir("systemd");
    std::fs::create_dir_all(&dir).unwrap();
    let verify = |text: &str| {
        let path = dir.join("chokepoint.service");
        std::fs::write(&path, text).unwrap();
        let o = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze (Debian package systemd, installed by scripts/test.sh)");
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), out)
    };
    let built = unit.replace(
        "/usr/local/bin/chokepoint",
        env!("CARGO_BIN_EXE_chokepoint"),
    );
    let (ok, out) = verify(&built);
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify: {out}");
    // The oracle sees mistakes: a misspelt value is reported.
    let (_, out) = verify(&built.replace("ProtectSystem=strict", "ProtectSystem=strickt"));
    assert!(
        out.contains("ProtectSystem") || out.contains("protect system"),
        "{out}"
    );
    // What the unit must keep: one capability, the sandbox, the paths.
    for want in [
        "AmbientCapabilities=CAP_NET_RAW\n",
        "CapabilityBoundingSet=CAP_NET_RAW\n",
        "NoNewPrivileges=yes\n",
        "ProtectSystem=strict\n",
        "RestrictAddressFamilies=AF_PACKET AF_INET AF_INET6 AF_UNIX\n",
        "--artifact /var/lib/chokepoint/rules.chk",
        "--events /var/log/chokepoint/events.jsonl",
        "ExecReload=/bin/kill -HUP $MAINPID\n",
    ] {
        assert!(unit.contains(want), "unit lacks {want}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The logrotate snippet parses (`logrotate --debug` reads it and does
/// nothing) and signals the bridge with SIGUSR1, which reopens events.
#[test]
fn the_logrotate_snippet_parses_and_signals_usr1() {
    let repo = labkit::repo();
    let snippet = repo.join("deploy/logrotate/chokepoint");
    let text = std::fs::read_to_string(&snippet).unwrap();
    assert!(text.contains("--signal=SIGUSR1"), "{text}");
    let dir = lab_dir("logrotate");
    std::fs::create_dir_all(&dir).unwrap();
    let o = Command::new("logrotate")
        .arg("--debug")
        .arg("--state")
        .arg(dir.join("state"))
        .arg(&snippet)
        .output()
        .expect("logrotate (Debian package logrotate, installed by scripts/test.sh)");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    assert!(out.contains("/var/log/chokepoint/events.jsonl"), "{out}");
    assert!(!out.to_lowercase().contains("error"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}
