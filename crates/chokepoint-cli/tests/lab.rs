//! The namespace lab with real clients (tests/lab/lab.sh): curl, dig,
//! openssl s_server, dnsmasq and python's http.server in network
//! namespaces, `chokepoint run` bridging between them. Needs root, as CI
//! runs; scripts/test.sh installs the tools.

use std::path::Path;
use std::process::Command;

#[test]
fn live_bridge_enforces_every_action_on_real_clients() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc_geteuid() } == 0;
    assert!(
        root,
        "the namespace lab needs root (ip netns): run ./scripts/test.sh as root"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("timeout")
        .arg("240")
        .arg(repo.join("tests/lab/lab.sh"))
        .arg("test")
        .current_dir(&repo)
        .env("CHOKEPOINT", env!("CARGO_BIN_EXE_chokepoint"))
        .env(
            "LAB_DIR",
            std::env::temp_dir().join(format!("chokepoint-lab-{}", std::process::id())),
        )
        .output()
        .expect("lab script runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "lab failed:\n{text}");
    assert!(
        text.contains("lab: 18 passed, 0 failed"),
        "inline bridge: {text}"
    );
    assert!(text.contains("lab: 4 passed, 0 failed"), "tap mode: {text}");
    // The namespaces are gone afterwards.
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("cp-censor"),
        "lab left its namespaces behind"
    );
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
