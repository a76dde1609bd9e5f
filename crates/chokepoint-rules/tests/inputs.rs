//! The compiler reads only regular files: a FIFO or a device as a list
//! path is refused at once, never read (a FIFO with no writer would block
//! a reload forever; `/dev/zero` would never end).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chokepoint_rules::{artifact, compile_file};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("chokepoint-inputs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn policy_with_list(d: &std::path::Path, list: &str) -> PathBuf {
    let p = d.join("policy.yaml");
    std::fs::write(
        &p,
        format!("version: 1\nlists: {{l: {{format: domains, path: {list}}}}}\nrules: [{{name: r, match: {{list: l}}, action: reset}}]\n"),
    )
    .unwrap();
    p
}

#[test]
fn a_fifo_as_a_list_is_refused_without_blocking() {
    let d = dir("fifo");
    let fifo = d.join("list.txt");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let p = policy_with_list(&d, "list.txt");
    let t = Instant::now();
    let e = compile_file(&p).unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(e.contains("list.txt") && e.contains("FIFO"), "{e}");
}

#[test]
fn a_device_or_directory_as_a_list_is_refused() {
    let d = dir("dev");
    let e = compile_file(&policy_with_list(&d, "/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/dev/zero") && e.contains("character device"),
        "{e}"
    );
    std::fs::create_dir(d.join("sub")).unwrap();
    let e = compile_file(&policy_with_list(&d, "sub"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("directory"), "{e}");
}

#[test]
fn an_artifact_must_be_a_regular_file() {
    let e = artifact::load(std::path::Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a regular file"), "{e}");
}
