//! Network namespaces: made and removed with iproute2 (`ip netns`), so
//! they appear in `ip netns list` like any other; code runs inside one on
//! a thread of its own that `setns(2)` moved there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Where iproute2 keeps the namespaces it names.
pub const NETNS_DIR: &str = "/run/netns";
/// Where `ip netns exec` finds per-namespace files (a `resolv.conf` it
/// mounts over /etc/resolv.conf).
pub const ETC_NETNS_DIR: &str = "/etc/netns";

/// Whether a namespace called `name` exists.
pub fn exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// Run `ip ARGS`, failing with its error output.
pub fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

/// Run `ip netns exec NS PROGRAM ARGS` to completion.
pub fn exec(ns: &str, program: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Make the namespace `name`, with its loopback up.
pub fn add(name: &str) -> Result<()> {
    ip(&["netns", "add", name])?;
    exec(name, "ip", &["link", "set", "lo", "up"])
}

/// Remove the namespace `name` (its interfaces go with it) and the
/// per-namespace files made for it under /etc/netns.
pub fn del(name: &str) -> Result<()> {
    let etc = etc_dir(name);
    if etc.exists() {
        std::fs::remove_dir_all(&etc).with_context(|| format!("removing {}", etc.display()))?;
    }
    if exists(name) {
        ip(&["netns", "del", name])?;
    }
    Ok(())
}

/// /etc/netns/NAME: files `ip netns exec NAME` mounts over /etc.
pub fn etc_dir(name: &str) -> PathBuf {
    Path::new(ETC_NETNS_DIR).join(name)
}

/// Give the namespace its own /etc/resolv.conf (used by every program
/// started with `ip netns exec`).
pub fn set_resolver(name: &str, resolver: std::net::IpAddr) -> Result<()> {
    let dir = etc_dir(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join("resolv.conf"),
        format!(
            "# written by chokepoint lab\nnameserver {resolver}\noptions timeout:2 attempts:2\n"
        ),
    )
    .with_context(|| format!("writing {}/resolv.conf", dir.display()))
}

/// Run `f` on a thread that has entered the namespace `name`: sockets it
/// opens belong to that namespace. The calling thread stays where it is.
pub fn within<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let path = Path::new(NETNS_DIR).join(name);
    let file =
        std::fs::File::open(&path).with_context(|| format!("no namespace {}", path.display()))?;
    let handle = std::thread::spawn(move || -> std::io::Result<T> {
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a descriptor we own; it changes this thread's
        // network namespace only.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(f())
    });
    match handle.join() {
        Ok(r) => r.with_context(|| format!("entering namespace {name}")),
        Err(_) => bail!("the thread inside namespace {name} panicked"),
    }
}
