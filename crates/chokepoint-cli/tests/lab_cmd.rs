//! `chokepoint lab`, `lab probe` and `scenario run` with real servers and
//! clients in network namespaces. Needs root, as CI runs.
//!
//! The probe's outcome for each censor action is checked against what
//! OONI's own QA expects of that behaviour (ooni/probe-cli
//! internal/webconnectivityqa): drop at the SYN → tcp_ip; reset on the SNI
//! → http-failure with connection_reset; NXDOMAIN and a sinkhole → dns;
//! the 302 stub → http-diff; throttle and freeze → http-failure with a
//! timeout; allowed → false.

use std::path::PathBuf;
use std::process::{Command, Output};

mod labkit;

/// Every lab of this test process keeps its state under one directory.
fn state_dir() -> PathBuf {
    std::env::temp_dir().join(format!("chokepoint-labcmd-{}", std::process::id()))
}

fn cp(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("300")
        .arg(env!("CARGO_BIN_EXE_chokepoint"))
        .args(args)
        .current_dir(labkit::repo())
        .env("CHOKEPOINT_LAB_DIR", state_dir())
        .output()
        .expect("chokepoint runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn namespaces() -> String {
    let o = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A lab that goes down when the test ends, whatever happens.
struct Lab(String);

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = cp(&["lab", "down", "--name", &self.0]);
    }
}

fn root() -> bool {
    labkit::is_root()
}

#[test]
fn lab_up_probe_exec_status_and_down() {
    assert!(
        root(),
        "the lab needs root (ip netns): run ./scripts/test.sh as root"
    );
    let name = format!("p{}", std::process::id() % 100_000);
    let lab = Lab(name.clone());
    let up = cp(&[
        "lab",
        "up",
        "--name",
        &name,
        "--policy",
        "tests/lab/probe.yaml",
        "--host",
        "dropped-ip.example=198.18.1.20",
        "--hours",
        "1",
    ]);
    assert!(up.status.success(), "lab up: {}", text(&up));
    for role in ["client", "censor", "router", "server", "control"] {
        assert!(
            namespaces().contains(&format!("cp-{name}-{role}")),
            "no {role} namespace"
        );
    }

    // The same lab cannot be made twice, and the refusal touches nothing.
    let again = cp(&["lab", "up", "--name", &name, "--hours", "1"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("is up already"), "{}", text(&again));

    // A client trusts the lab's CA: curl with certificate checks on, any name.
    let curl = cp(&[
        "lab",
        "exec",
        "--name",
        &name,
        "--",
        "curl",
        "-sS",
        "-m",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "https://allowed.example/",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "200",
        "{}",
        text(&curl)
    );
    // The router is a real hop: the server sees the client's TTL minus one.
    let ttl = cp(&[
        "lab",
        "exec",
        "--name",
        &name,
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "198.18.1.2",
    ]);
    assert!(text(&ttl).contains("ttl=63"), "{}", text(&ttl));

    let probe = cp(&[
        "lab",
        "probe",
        "--name",
        &name,
        "--json",
        "--timeout",
        "3",
        "https://allowed.example/",
        "https://dropped-ip.example/",
        "https://reset.example/",
        "https://nx.example/",
        "https://sinkhole.example/",
        "http://stub.example/",
        "https://slow.example/1m.bin",
        "https://frozen.example/",
    ]);
    assert!(probe.status.success(), "probe: {}", text(&probe));
    let results: Vec<serde_json::Value> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 8, "{}", text(&probe));
    let by = |input: &str| {
        results
            .iter()
            .find(|m| m["input"] == input)
            .unwrap_or_else(|| panic!("no result for {input}"))
    };
    // (input, blocking, failure)
    let table: [(&str, serde_json::Value, Option<&str>); 8] = [
        ("https://allowed.example/", false.into(), None),
        (
            "https://dropped-ip.example/",
            "tcp_ip".into(),
            Some("generic_timeout_error"),
        ),
        (
            "https://reset.example/",
            "http-failure".into(),
            Some("connection_reset"),
        ),
        (
            "https://nx.example/",
            "dns".into(),
            Some("dns_nxdomain_error"),
        ),
        ("https://sinkhole.example/", "dns".into(), None),
        ("http://stub.example/", "http-diff".into(), None),
        (
            "https://slow.example/1m.bin",
            "http-failure".into(),
            Some("generic_timeout_error"),
        ),
        (
            "https://frozen.example/",
            "http-failure".into(),
            Some("generic_timeout_error"),
        ),
    ];
    for (input, blocking, failure) in table {
        let m = by(input);
        assert_eq!(m["blocking"], blocking, "{input}: {m}");
        if let Some(f) = failure {
            assert_eq!(m["failure"], f, "{input}: {m}");
        }
    }
    assert_eq!(by("https://allowed.example/")["accessible"], true);
    assert_eq!(by("https://reset.example/")["accessible"], false);

    // status: every process runs and the engine counted the decisions.
    let st = cp(&["lab", "status", "--name", &name, "--json"]);
    assert!(st.status.success(), "{}", text(&st));
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let st = &st[0];
    for p in st["processes"].as_array().unwrap() {
        assert_eq!(p["alive"], true, "{p}");
    }
    let decisions = &st["engine"]["decisions"];
    assert!(
        decisions["reset-sni reset"].as_f64().unwrap_or(0.0) >= 1.0,
        "{decisions}"
    );
    assert!(
        decisions["drop-ip drop"].as_f64().unwrap_or(0.0) >= 1.0,
        "{decisions}"
    );

    // apply: a broken policy is refused (the old one keeps serving), a good
    // one takes over.
    let bad = state_dir().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nrules: [{name: x, match: {list: nowhere}, action: drop}]\n",
    )
    .unwrap();
    let refused = cp(&["lab", "apply", "--name", &name, bad.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("nowhere"), "{}", text(&refused));
    let applied = cp(&["lab", "apply", "--name", &name, "config/twitter-2021.yaml"]);
    assert!(applied.status.success(), "{}", text(&applied));
    let after = cp(&[
        "lab",
        "probe",
        "--name",
        &name,
        "--json",
        "--timeout",
        "3",
        "https://reset.example/",
    ]);
    assert!(
        String::from_utf8_lossy(&after.stdout).contains("\"blocking\":false"),
        "{}",
        text(&after)
    );

    let pids: Vec<i64> = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_i64().unwrap())
        .collect();
    let down = cp(&["lab", "down", "--name", &name]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(
        !namespaces().contains(&format!("cp-{name}-")),
        "namespaces left behind"
    );
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "process {pid} still runs"
        );
    }
    std::mem::forget(lab);
}

#[test]
fn lab_up_never_takes_over_a_namespace_it_did_not_make() {
    assert!(
        root(),
        "the lab needs root (ip netns): run ./scripts/test.sh as root"
    );
    let name = format!("f{}", std::process::id() % 100_000);
    let foreign = format!("cp-{name}-router");
    assert!(Command::new("ip")
        .args(["netns", "add", &foreign])
        .status()
        .unwrap()
        .success());
    let up = cp(&["lab", "up", "--name", &name, "--hours", "1"]);
    let exists = namespaces().contains(&foreign);
    let _ = Command::new("ip").args(["netns", "del", &foreign]).status();
    assert!(!up.status.success());
    assert!(
        text(&up).contains("has no record of making it"),
        "{}",
        text(&up)
    );
    assert!(exists, "lab up deleted a namespace it did not make");
    assert!(!namespaces().contains(&format!("cp-{name}-client")));
}

#[test]
fn a_scenario_runs_stage_by_stage_as_expected() {
    assert!(
        root(),
        "the lab needs root (ip netns): run ./scripts/test.sh as root"
    );
    let name = format!("s{}", std::process::id() % 100_000);
    let _lab = Lab(name.clone());
    let o = cp(&[
        "scenario",
        "run",
        "scenarios/freeze-2025.yaml",
        "--name",
        &name,
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["as_expected"], true, "{v}");
    let stages = v["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    let frozen = &stages[1]["outcomes"][0];
    assert_eq!(frozen["target"], "https://site-on-hetzner.example/");
    assert_eq!(frozen["blocking"], "http-failure", "{frozen}");
    assert_eq!(stages[0]["outcomes"][0]["blocking"], false);
    // The lab is gone afterwards.
    assert!(!namespaces().contains(&format!("cp-{name}-")));
}
