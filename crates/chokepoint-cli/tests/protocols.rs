//! The protocol lab (tests/lab/protocols.sh): real clients across the live
//! bridge, each classified and passed under `log` rules, then blocked by
//! its rule: wireguard-go, OpenVPN over UDP and TCP (--tls-crypt),
//! Shadowsocks (caught by the GFW's fully encrypted test), coturn's STUN
//! and TURN clients, OpenSSH; HTTPS, DNS and HTTP pass and are never
//! classified; then a `learn` rule turns a WireGuard handshake into an IP
//! block of the server's port after its delay. Needs root (network
//! namespaces), as CI runs; without root it says so and passes.

use std::process::Command;

mod labkit;

#[test]
fn real_vpn_proxy_and_call_clients_are_classified_and_blocked() {
    if !labkit::is_root() {
        eprintln!("skipped: the protocol lab needs root (ip netns); run ./scripts/test.sh as root");
        return;
    }
    let lab_dir = std::env::temp_dir().join(format!("chokepoint-protocols-{}", std::process::id()));
    let prefix = std::ffi::OsString::from(format!("cp12-{}", std::process::id()));
    let text = labkit::run_script(
        "tests/lab/protocols.sh",
        "test",
        &[("LAB_DIR", lab_dir.as_os_str()), ("PR_PREFIX", &prefix)],
    );
    assert!(
        text.contains("protocols: 28 passed, 0 failed"),
        "protocol lab: {text}"
    );
    for line in [
        "PASS  observe: shadowsocks gets through, classified fully_encrypted",
        "PASS  block: openvpn-tcp is blocked by its openvpn rule",
        "PASS  learn: a plain UDP packet to the server's port passes before the delay, is dropped after it",
    ] {
        assert!(text.contains(line), "missing `{line}`:\n{text}");
    }
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains(&*prefix.to_string_lossy()),
        "the lab left its namespaces behind"
    );
    let _ = std::fs::remove_dir_all(&lab_dir);
}
