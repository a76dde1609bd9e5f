//! Output files as a user meets them: no output destroys an input, follows
//! a symbolic link or lands on a device, events are appended, files are
//! 0640, and every write error (a closed pipe aside) fails the command.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_chokepoint");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("binary runs")
}

/// A shell line with `$BIN` set to the binary.
fn sh(line: &str) -> Output {
    Command::new("bash")
        .args(["-c", line])
        .env("BIN", BIN)
        .output()
        .expect("bash runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh directory for one test.
fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("chokepoint-files-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The bundled sample capture, copied into `d`.
fn capture_in(d: &Path) -> PathBuf {
    let cap = d.join("sample.pcap");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::copy(repo.join("tests/data/sample-telegram-2018.pcap"), &cap).unwrap();
    cap
}

/// A policy with one list file, in `d`: (policy, list).
fn policy_in(d: &Path) -> (PathBuf, PathBuf) {
    let list = d.join("doms.txt");
    std::fs::write(&list, "telegram.org\nt.me\n").unwrap();
    let policy = d.join("policy.yaml");
    std::fs::write(
        &policy,
        "version: 1\nlists:\n  doms:\n    format: domains\n    path: doms.txt\n\
         rules:\n  - name: doms\n    match: {list: doms}\n    action: drop\ndefault: pass\n",
    )
    .unwrap();
    (policy, list)
}

fn refused(o: &Output, names: &[&str]) {
    assert!(!o.status.success(), "not refused");
    let e = stderr(o);
    for n in names {
        assert!(e.contains(n), "{n} not named: {e}");
    }
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn replay_refuses_to_write_onto_its_capture() {
    let d = dir("onto-capture");
    let cap = capture_in(&d);
    let before = std::fs::read(&cap).unwrap();
    let alias = d.join("./sample.pcap");
    for flag in ["--pass-out", "--drop-out", "--events"] {
        let o = run(&["replay", s(&cap), flag, s(&alias)]);
        refused(&o, &["sample.pcap", "input"]);
        assert_eq!(std::fs::read(&cap).unwrap(), before, "{flag}");
    }
    // Through a hard link too: the same file under another name.
    let hard = d.join("hard.pcap");
    std::fs::hard_link(&cap, &hard).unwrap();
    let o = run(&["replay", s(&cap), "--pass-out", s(&hard)]);
    refused(&o, &["hard.pcap", "sample.pcap"]);
    assert_eq!(std::fs::read(&cap).unwrap(), before);
}

#[test]
fn replay_refuses_the_policy_its_lists_and_two_outputs_in_one_file() {
    let d = dir("onto-policy");
    let cap = capture_in(&d);
    let (policy, list) = policy_in(&d);
    for target in [&policy, &list] {
        let before = std::fs::read(target).unwrap();
        let o = run(&[
            "replay",
            s(&cap),
            "--policy",
            s(&policy),
            "--events",
            s(target),
        ]);
        refused(&o, &[s(target), "input"]);
        assert_eq!(std::fs::read(target).unwrap(), before);
    }
    let out = d.join("out.pcap");
    let o = run(&[
        "replay",
        s(&cap),
        "--pass-out",
        s(&out),
        "--drop-out",
        s(&d.join("./out.pcap")),
    ]);
    refused(&o, &["out.pcap", "same file"]);
    assert!(!out.exists());
}

#[test]
fn compile_refuses_to_write_onto_its_policy_or_lists() {
    let d = dir("compile-onto-policy");
    let (policy, list) = policy_in(&d);
    for target in [&policy, &list] {
        let before = std::fs::read(target).unwrap();
        let o = run(&["compile", s(&policy), "-o", s(target)]);
        refused(&o, &[s(target), "input"]);
        assert_eq!(std::fs::read(target).unwrap(), before);
    }
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 2, "no temp left");
}

#[test]
fn compile_refuses_a_symlink_and_leaves_its_target_alone() {
    let d = dir("compile-symlink");
    let victim = d.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let link = d.join("rules.chk");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let o = run(&["compile", "-o", s(&link)]);
    refused(&o, &["rules.chk", "symbolic link"]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 2, "no temp left");
}

#[test]
fn compile_refuses_a_fifo_and_a_device() {
    let d = dir("compile-fifo");
    let fifo = d.join("rules.chk");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let o = run(&["compile", "-o", s(&fifo)]);
    refused(&o, &["rules.chk", "FIFO"]);
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::symlink_metadata(&fifo).unwrap().file_type()
    ));
    let o = run(&["compile", "-o", "/dev/null"]);
    refused(&o, &["/dev/null", "character device"]);
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &std::fs::metadata("/dev/null").unwrap().file_type()
    ));
}

#[test]
fn events_are_appended_across_replays() {
    let d = dir("append");
    let cap = capture_in(&d);
    let ev = d.join("events.jsonl");
    for _ in 0..2 {
        let o = run(&["replay", s(&cap), "--events", s(&ev)]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let text = std::fs::read_to_string(&ev).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // The sample makes 14 decisions: both runs' are there, in order.
    assert_eq!(lines.len(), 28);
    assert_eq!(lines[..14], lines[14..]);
}

#[test]
fn outputs_are_created_0640() {
    let d = dir("mode");
    let cap = capture_in(&d);
    let (ev, pass, art) = (d.join("ev.jsonl"), d.join("pass.pcap"), d.join("r.chk"));
    let o = sh(&format!(
        "umask 022 && \"$BIN\" replay '{}' --events '{}' --pass-out '{}' && \"$BIN\" compile -o '{}'",
        s(&cap),
        s(&ev),
        s(&pass),
        s(&art)
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    for p in [&ev, &pass, &art] {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{}: {mode:o}", p.display());
    }
}

#[test]
fn an_unwritable_events_file_fails_with_its_name() {
    let d = dir("full");
    let cap = capture_in(&d);
    let o = run(&["replay", s(&cap), "--events", "/dev/full"]);
    refused(&o, &["/dev/full"]);
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let d = dir("pipe");
    let cap = capture_in(&d);
    // `true` is gone before the replay writes: every write meets a pipe
    // with no reader.
    for args in ["--events -", ""] {
        let o = sh(&format!(
            "{{ sleep 0.3; \"$BIN\" replay '{}' {args}; echo \"status $?\" >&2; }} | true",
            s(&cap)
        ));
        let e = stderr(&o);
        assert!(!e.contains("panicked"), "{args}: {e}");
        assert!(!e.contains("error"), "{args}: {e}");
        assert!(e.contains("status 0"), "{args}: {e}");
    }
}
