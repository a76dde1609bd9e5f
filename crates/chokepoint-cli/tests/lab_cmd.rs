//! `chokepoint lab`, `lab probe` and `scenario run` with real servers and
//! clients in network namespaces. Needs root, as CI runs.
//!
//! The probe's outcome for each censor action is checked against what
//! OONI's own QA expects of that behaviour (ooni/probe-cli
//! internal/webconnectivityqa): drop at the SYN → tcp_ip; reset on the SNI
//! → http-failure with connection_reset; NXDOMAIN and a sinkhole → dns;
//! the 302 stub → http-diff; throttle and freeze → http-failure with a
//! timeout; allowed → false; and beyond OONI's QA, the probe's own steps:
//! QUIC Initials dropped by SNI → http-failure with a timeout (`--quic`),
//! a ClientHello dropped for its ECH extension → http-failure with a
//! timeout (`--ech grease`). Every bundled scenario runs as its stages
//! expect: freeze 2025, QUIC 2022, ECH 2024, VPNs 2021-2025, Telegram 2018
//! and Twitter 2021 with their collateral, and the 2025 mobile allowlist.
//! Two labs run side by side, each enforcing its own policy, and one goes
//! down without touching the other.

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

/// The JSON objects a `--json` command printed, one a line.
fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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

/// The lab makes namespaces: without root the test fails, saying so.
fn need_root() {
    assert!(
        labkit::is_root(),
        "the lab needs root (ip netns): run ./scripts/test.sh as root"
    );
}

#[test]
fn lab_up_probe_exec_status_and_down() {
    need_root();
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
    let results = json_lines(&probe);
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

    // The probe's QUIC and ECH steps, each against its rule; the same
    // options on an allowed name find nothing.
    for (option, blocked, key) in [
        (
            &["--quic"][..],
            "https://quic-blocked.example/",
            "quic.timeout",
        ),
        (
            &["--ech", "grease"][..],
            "https://ech-blocked.example/",
            "tls.timeout",
        ),
    ] {
        let o = cp(&[
            &["lab", "probe", "--name", &name, "--json", "--timeout", "3"][..],
            option,
            &[blocked, "https://allowed.example/"],
        ]
        .concat());
        assert!(o.status.success(), "probe {option:?}: {}", text(&o));
        let lines = json_lines(&o);
        assert_eq!(lines.len(), 2, "{}", text(&o));
        let (b, a) = (&lines[0], &lines[1]);
        assert_eq!(b["blocking"], "http-failure", "{option:?}: {b}");
        assert_eq!(b["failure"], "generic_timeout_error", "{option:?}: {b}");
        assert_eq!(b["analysis"], serde_json::json!([key]), "{b}");
        assert_eq!(a["blocking"], false, "{option:?}: {a}");
        if option[0] == "--quic" {
            // The page still came over TCP, and the helper's QUIC worked.
            assert_eq!(b["http"]["status_code"], 200, "{b}");
            assert_eq!(a["quic"]["alpn"], "h3", "{a}");
        } else {
            assert_eq!(b["tls"]["ech"], "grease", "{b}");
        }
    }

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
    for rule in ["drop-ip drop", "quic-sni drop", "ech drop"] {
        assert!(
            decisions[rule].as_f64().unwrap_or(0.0) >= 1.0,
            "{rule}: {decisions}"
        );
    }

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
    need_root();
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
    need_root();
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

/// `scenario run FILE --json` in a lab of its own: the report.
fn run_scenario(file: &str, name: &str) -> serde_json::Value {
    let _lab = Lab(name.to_string());
    let o = cp(&["scenario", "run", file, "--name", name, "--json"]);
    assert!(o.status.success(), "{file}: {}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["as_expected"], true, "{file}: {v}");
    assert!(!namespaces().contains(&format!("cp-{name}-")));
    v
}

/// The outcome for `label` at stage `i`.
fn cell<'a>(v: &'a serde_json::Value, i: usize, label: &str) -> &'a serde_json::Value {
    v["stages"][i]["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["target"] == label)
        .unwrap_or_else(|| panic!("stage {i}: no {label}"))
}

#[test]
fn the_quic_and_ech_scenarios_run_as_expected() {
    need_root();
    let id = std::process::id() % 100_000;
    let quic = run_scenario("scenarios/quic-2022.yaml", &format!("q{id}"));
    assert_eq!(quic["stages"].as_array().unwrap().len(), 3);
    // 4 March: QUIC v1 times out while TCP and draft-29 pass.
    let v1 = cell(&quic, 1, "https://youtube.com/ (quic)");
    assert_eq!(v1["blocking"], "http-failure", "{v1}");
    assert_eq!(v1["failure"], "generic_timeout_error", "{v1}");
    assert_eq!(v1["analysis"], serde_json::json!(["quic.timeout"]), "{v1}");
    assert_eq!(cell(&quic, 1, "https://youtube.com/")["blocking"], false);
    let d29 = "https://youtube.com/ (quic draft-29)";
    assert_eq!(cell(&quic, 1, d29)["blocking"], false);
    // 19 March: draft-29 too.
    assert_eq!(cell(&quic, 2, d29)["blocking"], "http-failure");
    assert_eq!(cell(&quic, 2, "https://youtube.com/")["blocking"], false);

    let ech = run_scenario("scenarios/ech-2024.yaml", &format!("e{id}"));
    let with = cell(&ech, 1, "https://cloudflare-ech.com/ (ech)");
    assert_eq!(with["blocking"], "http-failure", "{with}");
    assert_eq!(with["failure"], "generic_timeout_error", "{with}");
    assert_eq!(
        with["analysis"],
        serde_json::json!(["tls.timeout"]),
        "{with}"
    );
    assert_eq!(
        cell(&ech, 1, "https://cloudflare-ech.com/")["blocking"],
        false
    );
    assert_eq!(
        cell(&ech, 1, "https://example.com/ (ech)")["blocking"],
        false
    );
    assert_eq!(
        cell(&ech, 0, "https://cloudflare-ech.com/ (ech)")["blocking"],
        false
    );
}

#[test]
fn the_vpn_scenario_blocks_each_protocol_by_its_first_packet() {
    need_root();
    let id = std::process::id() % 100_000;
    let vpn = run_scenario("scenarios/vpn-2021-2025.yaml", &format!("v{id}"));
    assert_eq!(vpn["as_expected"], true, "{vpn}");
    // Before: every first packet comes back from the echo service.
    for t in [
        "wireguard://198.18.1.2",
        "openvpn+tcp://198.18.1.2",
        "stun://198.18.1.2",
    ] {
        assert_eq!(cell(&vpn, 0, t)["blocking"], false, "{t}");
    }
    // 2023: the VPNs, on UDP and TCP; SSH and HTTPS untouched.
    let ovpn = cell(&vpn, 2, "openvpn+tcp://198.18.1.2");
    assert_eq!(ovpn["blocking"], "blocked", "{ovpn}");
    assert_eq!(ovpn["failure"], "generic_timeout_error", "{ovpn}");
    assert_eq!(cell(&vpn, 2, "ssh://198.18.1.2")["blocking"], false);
    // 2025: calls too.
    assert_eq!(cell(&vpn, 4, "stun://198.18.1.2")["blocking"], "blocked");
    assert_eq!(cell(&vpn, 4, "https://example.com/")["blocking"], false);
}

#[test]
fn the_telegram_twitter_and_allowlist_scenarios_break_what_they_broke() {
    need_root();
    let id = std::process::id() % 100_000;
    let tg = run_scenario("scenarios/telegram-2018.yaml", &format!("t{id}"));
    // 16 April: the names reset, then Telegram's own addresses dropped;
    // the relay on a cloud address still works.
    assert_eq!(cell(&tg, 1, "https://t.me/")["blocking"], "http-failure");
    assert_eq!(cell(&tg, 2, "https://t.me/")["blocking"], "tcp_ip");
    assert_eq!(
        cell(&tg, 2, "https://telegram-relay.example/")["blocking"],
        false
    );
    // 18 April: the cloud prefixes, and with them unrelated sites.
    for t in [
        "https://telegram-relay.example/",
        "https://shop-on-aws.example/",
        "https://app-on-gcloud.example/",
    ] {
        assert_eq!(cell(&tg, 3, t)["blocking"], "tcp_ip", "{t}");
    }
    assert_eq!(cell(&tg, 3, "https://example.com/")["blocking"], false);

    let tw = run_scenario("scenarios/twitter-2021.yaml", &format!("w{id}"));
    // March 2021: the `*t.co*` substring throttled reddit.com and
    // microsoft.com with twitter.com; fixed within days.
    for t in [
        "https://twitter.com/1m.bin",
        "https://reddit.com/1m.bin",
        "https://microsoft.com/1m.bin",
    ] {
        let c = cell(&tw, 1, t);
        assert_eq!(c["blocking"], "http-failure", "{t}: {c}");
        assert_eq!(c["failure"], "generic_timeout_error", "{t}: {c}");
    }
    assert_eq!(
        cell(&tw, 1, "https://example.com/1m.bin")["blocking"],
        false
    );
    assert_eq!(cell(&tw, 2, "https://reddit.com/1m.bin")["blocking"], false);
    assert_eq!(
        cell(&tw, 2, "https://twitter.com/1m.bin")["blocking"],
        "http-failure"
    );

    let mobile = run_scenario("scenarios/mobile-allowlist-2025.yaml", &format!("m{id}"));
    // A shutdown with an allowlist: what is on it works, the rest dies at
    // its first data (the handshake passes).
    for (t, want) in [
        ("https://yandex.ru/", serde_json::json!(false)),
        ("https://vk.com/", serde_json::json!(false)),
        ("https://t.me/", serde_json::json!("http-failure")),
        ("https://example.com/", serde_json::json!("http-failure")),
    ] {
        assert_eq!(cell(&mobile, 0, t)["blocking"], false, "{t} before");
        assert_eq!(cell(&mobile, 1, t)["blocking"], want, "{t}");
    }
}

/// `lab exec curl` of `url` in lab `name`: curl's exit status and the HTTP
/// status it got.
fn fetch(name: &str, url: &str) -> (Option<i32>, String) {
    let o = cp(&[
        "lab",
        "exec",
        "--name",
        name,
        "--",
        "curl",
        "-s",
        "-m",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url,
    ]);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn two_labs_run_side_by_side_and_go_down_one_at_a_time() {
    need_root();
    let id = std::process::id() % 100_000;
    let (a, b) = (format!("a{id}"), format!("b{id}"));
    let lab_a = Lab(a.clone());
    let lab_b = Lab(b.clone());
    // A blocks reset.example; B, started second with a policy of its own
    // and a scenario's hosts, does not.
    let up = cp(&[
        "lab",
        "up",
        "--name",
        &a,
        "--policy",
        "tests/lab/probe.yaml",
        "--hours",
        "1",
    ]);
    assert!(up.status.success(), "lab up {a}: {}", text(&up));
    let up = cp(&[
        "lab",
        "up",
        "--name",
        &b,
        "--scenario",
        "scenarios/freeze-2025.yaml",
        "--hours",
        "1",
    ]);
    assert!(up.status.success(), "lab up {b}: {}", text(&up));
    let all = namespaces();
    for role in ["client", "censor", "router", "server", "control"] {
        assert!(all.contains(&format!("cp-{a}-{role}")), "{a} {role}");
        assert!(all.contains(&format!("cp-{b}-{role}")), "{b} {role}");
    }
    let (rc, _) = fetch(&a, "https://reset.example/");
    assert!(
        matches!(rc, Some(35) | Some(56)),
        "lab {a} resets the name: curl {rc:?}"
    );
    assert_eq!(
        fetch(&b, "https://reset.example/"),
        (Some(0), "200".into()),
        "lab {b}"
    );
    // Each lab's status is its own: its policy, its processes alive.
    let status = |name: &str| -> serde_json::Value {
        let o = cp(&["lab", "status", "--name", name, "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
        v[0].clone()
    };
    // A worker publishes its counters every 256 frames or when idle: give
    // lab A's a moment (at most 5 s) to show its reset.
    let mut sa = status(&a);
    for _ in 0..25 {
        if sa["engine"]["decisions"]["reset-sni reset"] == 1.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        sa = status(&a);
    }
    let sb = status(&b);
    assert_eq!(sa["policy"], "tests/lab/probe.yaml", "{sa}");
    assert_eq!(sb["scenario"], "freeze-2025", "{sb}");
    // Each engine counted its own traffic: only A reset a flow.
    assert_eq!(sa["engine"]["decisions"]["reset-sni reset"], 1.0, "{sa}");
    assert!(
        sb["engine"]["decisions"].get("reset-sni reset").is_none(),
        "{sb}"
    );
    for s in [&sa, &sb] {
        let procs = s["processes"].as_array().unwrap();
        assert!(
            !procs.is_empty() && procs.iter().all(|p| p["alive"] == true),
            "{s}"
        );
    }
    // A down leaves B whole.
    drop(lab_a);
    let all = namespaces();
    assert!(!all.contains(&format!("cp-{a}-")), "{a} is gone");
    assert!(all.contains(&format!("cp-{b}-client")), "{b} stays");
    assert_eq!(
        fetch(&b, "https://allowed.example/"),
        (Some(0), "200".into())
    );
    drop(lab_b);
    assert!(!namespaces().contains(&format!("cp-{b}-")));
}
