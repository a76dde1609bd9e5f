//! The operations commands as an operator runs them: keygen and signed
//! artifacts, check, diff, export nftables, man pages and completions,
//! replay from standard input. (The live parts are in tests/ops.rs.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("chokepoint-ops-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn signed_artifacts_load_only_when_a_trusted_key_signed_these_bytes() {
    let d = dir("sign");
    let key = d.join("k");
    let o = run(&["keygen", s(&key)]);
    assert!(o.status.success(), "{}", out(&o));
    let (k, pubk) = (d.join("k.key"), d.join("k.pub"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // keygen never overwrites a key.
    let again = run(&["keygen", s(&key)]);
    assert!(!again.status.success() && out(&again).contains("never overwrites"));
    let art = d.join("rules.chk");
    let o = run(&["compile", "-o", s(&art), "--sign", s(&k)]);
    assert!(o.status.success(), "{}", out(&o));
    let sig = std::fs::read_to_string(d.join("rules.chk.sig")).unwrap();
    assert!(
        sig.starts_with("chokepoint-signature v1\nalgorithm ed25519\n"),
        "{sig}"
    );
    let hex = std::fs::read_to_string(&pubk)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    for trust in [s(&pubk), hex.as_str()] {
        let o = run(&["check", s(&art), "--trust", trust]);
        assert!(o.status.success(), "{}", out(&o));
    }
    // A byte flipped after signing, the signature kept: refused.
    let mut bytes = std::fs::read(&art).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let bad = d.join("tampered.chk");
    std::fs::write(&bad, &bytes).unwrap();
    std::fs::copy(d.join("rules.chk.sig"), d.join("tampered.chk.sig")).unwrap();
    let o = run(&["check", s(&bad), "--trust", s(&pubk)]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("changed after signing"), "{}", out(&o));
    // Unsigned, and signed by another key: refused.
    let unsigned = d.join("unsigned.chk");
    std::fs::copy(&art, &unsigned).unwrap();
    let o = run(&["check", s(&unsigned), "--trust", s(&pubk)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("unsigned"), "{}", out(&o));
    run(&["keygen", s(&d.join("other"))]);
    let o = run(&["check", s(&art), "--trust", s(&d.join("other.pub"))]);
    assert!(
        out(&o).contains("not one of the trusted keys"),
        "{}",
        out(&o)
    );
    // Either key of a rotation is accepted.
    let o = run(&[
        "check",
        s(&art),
        "--trust",
        s(&d.join("other.pub")),
        "--trust",
        s(&pubk),
    ]);
    assert!(o.status.success(), "{}", out(&o));
    // run refuses --artifact-url without a key, and https.
    let o = run(&[
        "run",
        "--tap",
        "lo",
        "--artifact-url",
        "http://127.0.0.1:1/r",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let o = run(&[
        "run",
        "--tap",
        "lo",
        "--artifact-url",
        "https://x/r",
        "--trust",
        s(&pubk),
    ]);
    assert!(out(&o).contains("not supported"), "{}", out(&o));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn check_reports_mistakes_and_exits_by_the_documented_codes() {
    let d = dir("check");
    let p = d.join("p.yaml");
    std::fs::write(
        &p,
        "version: 1
lists:
  a: {format: domains, entries: [t.me, web.t.me]}
  b: {format: domains, entries: [t.me, web.t.me]}
  wide: {format: cidr, entries: [10.0.0.0/8]}
  narrow: {format: cidr, entries: [10.1.0.0/16]}
  spare: {format: domains, entries: [x.org]}
rules:
  - {name: first, match: {list: a}, action: reset}
  - {name: again, match: {list: b}, action: drop}
  - {name: wide, match: {list: wide}, action: drop}
  - {name: narrow, match: {list: narrow}, action: reset}
",
    )
    .unwrap();
    let o = run(&["check", s(&p)]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    for want in [
        "list `spare` is used by no rule",
        "lists `a` and `b` hold the same 2 entries",
        "rule `narrow` never decides by address",
        "rule `again`: every one of its 2 names is decided by earlier rules",
        "list `a`: 1 entry already covered by a broader entry",
        "OK (4 rules",
    ] {
        assert!(text.contains(want), "missing `{want}` in {text}");
    }
    assert!(!text.contains("rule `first`"), "{text}");
    assert_eq!(run(&["check", "--strict", s(&p)]).status.code(), Some(1));
    let v: serde_json::Value =
        serde_json::from_slice(&run(&["check", "--json", s(&p)]).stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["warnings"].as_array().unwrap().len(), 6, "{v}");
    // Invalid: 1, with the reason; bad arguments: 2.
    std::fs::write(
        d.join("bad.yaml"),
        "version: 1\nrules: [{name: x, match: {list: nowhere}, action: drop}]\n",
    )
    .unwrap();
    let o = run(&["check", s(&d.join("bad.yaml"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("INVALID") && out(&o).contains("nowhere"),
        "{}",
        out(&o)
    );
    assert_eq!(run(&["check", "--no-such-flag"]).status.code(), Some(2));
    // The bundled policy and every shipped one are valid.
    assert_eq!(run(&["check"]).status.code(), Some(0));
    for f in std::fs::read_dir(repo().join("config")).unwrap() {
        let f = f.unwrap().path();
        let o = run(&["check", s(&f)]);
        assert!(o.status.success(), "{}: {}", f.display(), out(&o));
    }
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn diff_shows_entries_and_rule_changes_between_policies_and_artifacts() {
    let d = dir("diff");
    let old = d.join("old.yaml");
    let new = d.join("new.yaml");
    std::fs::write(
        &old,
        "version: 1
lists:
  ips: {format: cidr, entries: [10.0.0.0/24, 10.0.1.0/24]}
  names: {format: domains, entries: [t.me]}
rules:
  - {name: ips, match: {list: ips}, action: drop}
  - {name: names, match: {list: names}, action: reset}
  - {name: gone, match: {list: names}, action: drop}
",
    )
    .unwrap();
    std::fs::write(
        &new,
        "version: 1
lists:
  ips: {format: cidr, entries: [10.0.0.0/24, 10.0.2.0/24, \"2001:db8::/32\"]}
  names: {format: domains, entries: [t.me]}
rules:
  - {name: ips, match: {list: ips}, action: drop}
  - {name: names, match: {list: names}, action: drop}
  - {name: fresh, match: {list: names, on: [dns_qname]}, action: {dns: {answer: nxdomain}}}
",
    )
    .unwrap();
    let art = d.join("old.chk");
    assert!(run(&["compile", s(&old), "-o", s(&art)]).status.success());
    let o = run(&["diff", s(&art), s(&new)]);
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    for want in [
        "rule ips: entries",
        "list ips: +2 -1",
        "+ 10.0.2.0/24",
        "+ 2001:db8::/32",
        "- 10.0.1.0/24",
        "rule names: changed",
        "action: reset -> drop",
        "rule fresh: added",
        "rule gone: removed",
    ] {
        assert!(text.contains(want), "missing `{want}` in {text}");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&run(&["diff", "--json", s(&art), s(&new)]).stdout).unwrap();
    assert_eq!(v["changed"], true);
    assert_eq!(v["entries_added"], 3, "{v}");
    let ips = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "ips")
        .unwrap();
    assert_eq!(
        ips["lists"][0]["removed"],
        serde_json::json!(["10.0.1.0/24"])
    );
    // The same policy as artifact and as YAML: no change.
    let o = run(&["diff", s(&art), s(&old)]);
    assert!(out(&o).contains("no change"), "{}", out(&o));
    // Two artifacts, as a fleet's operator compares what is deployed with
    // what is about to be: the same changes.
    let art_new = d.join("new.chk");
    assert!(run(&["compile", s(&new), "-o", s(&art_new)])
        .status
        .success());
    let v2: serde_json::Value =
        serde_json::from_slice(&run(&["diff", "--json", s(&art), s(&art_new)]).stdout).unwrap();
    assert_eq!(v2["rules"], v["rules"], "{v2}");
    assert_eq!(v2["entries_added"], 3, "{v2}");
    let o = run(&["diff", s(&art_new), s(&art_new)]);
    assert!(out(&o).contains("no change"), "{}", out(&o));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn export_nftables_writes_the_ip_rules_and_strict_fails_on_what_it_cannot_say() {
    let d = dir("nft");
    let f = d.join("default.nft");
    let o = run(&["export", "nftables", "-o", s(&f)]);
    assert!(o.status.success(), "{}", out(&o));
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.contains("table inet chokepoint {"), "{text}");
    assert!(text.contains("149.154.160.0/20"), "{text}");
    assert!(
        text.contains("ip daddr @r1_v4 counter drop comment \"chokepoint rule telegram-ips\""),
        "{text}"
    );
    assert!(
        out(&o).contains("telegram-names"),
        "name rule reported: {}",
        out(&o)
    );
    let o = run(&[
        "export", "nftables", "--strict", "--table", "t1", "--hook", "input",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("hook input"));
    assert_eq!(
        run(&["export", "nftables", "--table", "bad name"])
            .status
            .code(),
        Some(1)
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn every_command_has_a_man_page_and_completions_name_them() {
    let d = dir("man");
    let o = run(&["man", s(&d)]);
    assert!(o.status.success(), "{}", out(&o));
    let help = out(&run(&["--help"]));
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 15, "{commands:?}");
    for c in &commands {
        let page = std::fs::read_to_string(d.join(format!("chokepoint-{c}.1")))
            .unwrap_or_else(|e| panic!("no page for {c}: {e}"));
        assert!(page.contains(".TH"), "{c}");
    }
    for nested in [
        "chokepoint-export-nftables.1",
        "chokepoint-lab-up.1",
        "chokepoint.1",
    ] {
        assert!(d.join(nested).exists(), "{nested}");
    }
    let run_page = std::fs::read_to_string(d.join("chokepoint-run.1")).unwrap();
    assert!(run_page.contains("artifact\\-url"), "{run_page}");
    for shell in ["bash", "zsh", "fish"] {
        let o = run(&["completions", shell]);
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("keygen") && text.contains("artifact-url"),
            "{shell}"
        );
    }
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn replay_reads_a_capture_from_standard_input() {
    let sample = repo().join("tests/data/sample-telegram-2018.pcap");
    let from_file = run(&["replay", s(&sample), "--events", "-"]);
    assert!(from_file.status.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["replay", "-", "--events", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(&sample).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let piped = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(piped.status.success(), "{}", out(&piped));
    assert!(!piped.stdout.is_empty());
    assert_eq!(
        piped.stdout, from_file.stdout,
        "the same events from a pipe"
    );
    // Not a capture on standard input: an error naming it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["replay", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"not a capture at all")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success());
    assert!(out(&o).contains("-"), "{}", out(&o));
}
