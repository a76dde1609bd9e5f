//! Running the namespace lab scripts (tests/lab/*.sh) from a test: they
//! need root, as CI runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run `script ARG` under a 600 s timeout with the built binary and `env`;
/// panics with its output unless it succeeds. Returns stdout and stderr.
pub fn run_script(script: &str, arg: &str, env: &[(&str, &std::ffi::OsStr)]) -> String {
    assert!(
        is_root(),
        "the namespace lab needs root (ip netns): run ./scripts/test.sh as root"
    );
    let repo = repo();
    let mut cmd = Command::new("timeout");
    cmd.arg("600")
        .arg(repo.join(script))
        .arg(arg)
        .current_dir(&repo)
        .env("CHOKEPOINT", env!("CARGO_BIN_EXE_chokepoint"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("lab script runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed:\n{text}");
    text
}

/// Does the test run as root (network namespaces need it)?
#[allow(dead_code)]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
