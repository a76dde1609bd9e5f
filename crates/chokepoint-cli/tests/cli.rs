//! The `chokepoint` binary as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chokepoint"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard output read as one JSON value per line.
fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("chokepoint-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn compile_default_prints_stats_and_writes_artifact() {
    let out = tmp("default.chk");
    let o = run(&["compile", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("telegram-domains"), "{s}");
    assert!(s.contains("cloud-collateral-2018"), "{s}");
    // the stage-2 figure, in the millions
    assert!(s.contains("covered   16,"), "{s}");
    assert!(out.metadata().unwrap().len() > 64);

    let st = run(&["stats", out.to_str().unwrap()]);
    assert!(st.status.success(), "{}", stderr(&st));
    let v = format!("format v{}", chokepoint_rules::artifact::FORMAT_VERSION);
    assert!(stdout(&st).contains(&v));
}

#[test]
fn compile_json_has_counts() {
    let o = run(&["compile", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["meta"]["totals"]["v4_addresses"].as_u64().unwrap() > 15_000_000);
    assert_eq!(v["meta"]["rules"][0]["name"], "telegram-names");
    assert!(v["artifact"].is_null());
}

#[test]
fn explain_json_keys() {
    let out = tmp("explain.chk");
    assert!(run(&["compile", "-o", out.to_str().unwrap()])
        .status
        .success());
    let o = run(&[
        "explain",
        "--artifact",
        out.to_str().unwrap(),
        "--json",
        "web.telegram.org",
        "91.108.56.1",
        "https://t.me/durov",
        "example.com",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 4);
    for k in ["query", "verdict", "rule", "list", "entry", "source"] {
        assert!(lines.iter().all(|l| l.get(k).is_some()), "key {k}");
    }
    assert_eq!(lines[0]["verdict"], "reset");
    assert_eq!(lines[0]["rule"], "telegram-names");
    assert_eq!(lines[0]["entry"], "telegram.org");
    assert_eq!(lines[1]["verdict"], "drop");
    assert_eq!(lines[1]["entry"], "91.108.56.0/22");
    assert_eq!(lines[2]["kind"], "url");
    assert_eq!(lines[2]["entry"], "t.me");
    assert_eq!(lines[3]["verdict"], "pass");
    assert!(lines[3]["rule"].is_null());
}

#[test]
fn explain_with_policy_cites_file_and_line() {
    let policy = repo().join("tests/data/fixtures.yaml");
    let o = run(&[
        "explain",
        "--policy",
        policy.to_str().unwrap(),
        "a.wild.example.org",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("rule: doms"), "{s}");
    assert!(s.contains("*.wild.example.org (subdomains)"), "{s}");
    assert!(s.contains("domains.txt:3"), "{s}");
}

#[test]
fn bad_list_line_fails_with_file_line_reason() {
    let dir = tmp("bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("l.txt"), "ok.example\nnot ok.example\n").unwrap();
    std::fs::write(
        dir.join("p.yaml"),
        "version: 1\nlists: {l: {format: domains, path: l.txt}}\nrules: [{name: r, match: {list: l}, action: drop}]\n",
    )
    .unwrap();
    let o = run(&["compile", dir.join("p.yaml").to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("l.txt:2: bad domain `not ok.example`"), "{e}");
}

#[test]
fn bad_artifact_is_a_clear_error() {
    let p = tmp("garbage.chk");
    std::fs::write(&p, b"definitely not an artifact").unwrap();
    let o = run(&["stats", p.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not a chokepoint artifact"),
        "{}",
        stderr(&o)
    );
    let o = run(&["explain", "--artifact", p.to_str().unwrap(), "t.me"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bad magic"), "{}", stderr(&o));
}

#[test]
fn replay_prints_summary_and_writes_events() {
    let ev = tmp("events.jsonl");
    // Events are appended: start from none.
    let _ = std::fs::remove_file(&ev);
    let cap = repo().join("tests/data/sample-telegram-2018.pcap");
    let o = run(&[
        "replay",
        cap.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("decisions by rule and trigger"), "{s}");
    assert!(s.contains("cloud-collateral-2018"), "{s}");
    let lines = std::fs::read_to_string(&ev).unwrap();
    assert_eq!(lines.lines().count(), 14);
    // a damaged capture: error with an offset, non-zero exit, summary still printed
    let bytes = std::fs::read(&cap).unwrap();
    let cut = tmp("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let o = run(&["replay", cut.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("byte offset"), "{}", stderr(&o));
    assert!(stdout(&o).contains("packets   49"), "{}", stdout(&o));
}

/// The `policy` line of `stats` or a replay summary.
fn policy_line(text: &str) -> &str {
    text.lines()
        .find(|l| l.starts_with("policy "))
        .unwrap_or_else(|| panic!("no policy line in {text}"))
}

#[test]
fn replay_summary_names_the_policy_its_hash_and_what_dns_rows_count() {
    let cap = repo().join("tests/data/sample-telegram-2018.pcap");
    let hash_of = |line: &str| line.split("(blake3 ").nth(1).unwrap().to_string();
    // The bundled default, with the hash `stats` shows for its artifact.
    let art = tmp("summary-default.chk");
    assert!(run(&["compile", "-o", art.to_str().unwrap()])
        .status
        .success());
    let st = stdout(&run(&["stats", art.to_str().unwrap()]));
    let o = run(&["replay", cap.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    let line = policy_line(&s);
    assert!(line.contains("bundled default"), "{line}");
    assert_eq!(hash_of(line), hash_of(policy_line(&st)));
    assert!(
        s.contains("dns_qname rows count queries, not packets"),
        "{s}"
    );
    // A policy file is named by its path, from the policy or its artifact.
    let policy = repo().join("tests/data/fixtures.yaml");
    let art = tmp("summary-fixtures.chk");
    assert!(run(&[
        "compile",
        policy.to_str().unwrap(),
        "-o",
        art.to_str().unwrap()
    ])
    .status
    .success());
    let st = stdout(&run(&["stats", art.to_str().unwrap()]));
    for source in ["--policy", "--artifact"] {
        let file = if source == "--policy" { &policy } else { &art };
        let o = run(&[
            "replay",
            cap.to_str().unwrap(),
            source,
            file.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let s = stdout(&o);
        let line = policy_line(&s);
        assert!(line.contains("fixtures.yaml"), "{source}: {line}");
        assert_eq!(hash_of(line), hash_of(policy_line(&st)), "{source}");
        assert_ne!(
            hash_of(line),
            hash_of(policy_line(&stdout(&run(&[
                "replay",
                cap.to_str().unwrap()
            ]))))
        );
    }
}

/// An unreadable query still gets its answer printed, with the others, and
/// the command fails (2) so a script notices.
#[test]
fn explain_with_an_invalid_query_exits_2_after_every_answer() {
    let o = run(&["explain", "--json", "t.me", "http://[::1", "91.108.56.1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[1].contains("unterminated"), "{}", lines[1]);
    assert!(stderr(&o).contains("1 of 3 queries"), "{}", stderr(&o));
    assert!(run(&["explain", "t.me"]).status.success());
}

#[test]
fn run_refuses_one_interface_on_both_sides() {
    let o = run(&["run", "--inside", "cp-x0", "--outside", "cp-x0"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("same interface `cp-x0`"), "{e}");
}

#[test]
fn run_refuses_queue_and_worker_counts_out_of_range() {
    for (flag, value) in [
        ("--queue", "1000000000"),
        ("--queue", "0"),
        ("--workers", "0"),
        ("--workers", "100000"),
    ] {
        let o = run(&["run", "--tap", "cp-x0", flag, value]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(value) && e.contains("in "),
            "{flag} {value}: {e}"
        );
    }
}

#[test]
fn version_names_the_revision_and_the_artifact_format() {
    let o = run(&["--version"]);
    assert!(o.status.success());
    let v = stdout(&o);
    assert!(v.starts_with("chokepoint "), "{v}");
    assert!(v.contains("(git "), "{v}");
    assert!(
        v.contains(&format!(
            "artifact format v{}",
            chokepoint_rules::artifact::FORMAT_VERSION
        )),
        "{v}"
    );
}

#[test]
fn profile_show_prints_a_presets_knobs() {
    let o = run(&["profile", "show", "hardened"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for line in [
        "urgent: strip",
        "ttl_fakes: ignore",
        "ttl_margin: 1",
        "overlap: last",
        "checksums: verify",
        "tls_records: reassemble",
        // Sized for the machine at run time; the word a policy uses.
        "reassembly_memory_budget: auto",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    let o = run(&["profile", "show", "hardened", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["reassembly_memory_budget"], "auto");
    assert_eq!(v["urgent"], "strip");
    assert_eq!(v["overlap"], "last");
    assert_eq!(v["reassemble_client_hello"], true);
    let o = run(&["profile", "show", "tspu-2099"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown preset `tspu-2099`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn explain_says_where_an_allowlist_default_applies() {
    let p = repo().join("config/mobile-allowlist-2025.yaml");
    let o = run(&["explain", "--policy", p.to_str().unwrap(), "example.org"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("verdict: drop (policy default"), "{s}");
    assert!(
        s.contains("when:    at the flow's first data packet"),
        "{s}"
    );
}

#[test]
fn explain_says_what_decides_when_a_condition_fails() {
    let p = repo().join("config/gfw-quic-2025.yaml");
    let o = run(&["explain", "--policy", p.to_str().unwrap(), "www.google.com"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(
        s.contains("  only if: src_port_ge_dst_port: client port >= server port\n"),
        "{s}"
    );
    assert!(
        s.contains("  then:    every new flow on the 3-tuple is blocked for 180 s (drop)\n"),
        "{s}"
    );
    assert!(
        s.contains("  else:    a packet that fails a condition skips the rule; later rules decide: the policy default (pass)\n"),
        "{s}"
    );
    let o = run(&[
        "explain",
        "--policy",
        p.to_str().unwrap(),
        "--json",
        "www.google.com",
        "example.com",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(
        lines[0]["falls_through"],
        serde_json::json!(["the policy default (pass)"])
    );
    assert_eq!(lines[1]["falls_through"], serde_json::json!([]));
}

#[test]
fn scenario_replay_shows_what_each_stage_would_have_stopped() {
    let scenario = repo().join("scenarios/telegram-2018.yaml");
    let capture = repo().join("tests/data/sample-telegram-2018.pcap");
    let (scenario, capture) = (scenario.to_str().unwrap(), capture.to_str().unwrap());
    let o = run(&["scenario", "replay", scenario, capture, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stages: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stages.len(), 4);
    let name = |i: usize, n: &str| stages[i]["names"][n].as_str().unwrap_or("-").to_string();
    // The court order blocks nothing; then the names; then Telegram's
    // addresses; then a cloud address, and the shop behind it unseen.
    assert_eq!(name(0, "web.telegram.org"), "pass");
    assert_eq!(name(1, "web.telegram.org"), "reset");
    assert_eq!(name(1, "149.154.167.51"), "pass");
    assert_eq!(name(2, "149.154.167.51"), "drop");
    assert_eq!(name(2, "2001:67c:4e8:f004::a"), "drop");
    assert_eq!(name(3, "52.58.10.20"), "drop");
    assert_eq!(name(2, "shop.example"), "pass");
    assert_eq!(
        name(3, "shop.example"),
        "-",
        "dropped before its name was read"
    );
    for i in 0..4 {
        assert_eq!(name(i, "www.wikipedia.org"), "pass");
    }
    // The text form says the same, as a table.
    let o = run(&["scenario", "replay", scenario, capture]);
    let text = stdout(&o);
    let row = text
        .lines()
        .find(|l| l.starts_with("52.58.10.20"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["52.58.10.20", "-", "-", "-", "drop"]
    );
}

#[test]
fn colour_and_progress_only_on_a_terminal() {
    let policy = repo().join("config/default.yaml");
    let out = tmp("tty.chk");
    let (policy, out) = (policy.to_str().unwrap(), out.to_str().unwrap());
    // Piped: plain log lines, no escape codes, no spinner.
    let o = bin()
        .args(["compile", policy, "-o", out])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("INFO"), "the log line is there: {err}");
    assert!(
        !err.contains('\u{1b}') && !stdout(&o).contains('\u{1b}'),
        "{err:?}"
    );
    assert!(
        !err.contains("compiling"),
        "no spinner off a terminal: {err:?}"
    );
    // On a terminal (script(1) gives the command a pty): colour and the
    // spinner. bsdutils, which has script, is essential on Debian.
    let cmd = format!(
        "RUST_LOG=info {} compile {policy} -o {out}",
        env!("CARGO_BIN_EXE_chokepoint")
    );
    let Ok(o) = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
    else {
        panic!("script(1) is needed (bsdutils)");
    };
    let tty = stdout(&o);
    assert!(o.status.success(), "{tty}");
    assert!(
        tty.contains('\u{1b}'),
        "escape codes on a terminal: {tty:?}"
    );
    assert!(
        tty.contains("compiling"),
        "the spinner on a terminal: {tty:?}"
    );
}
