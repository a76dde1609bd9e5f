//! The lab's processes: started detached inside a namespace under a
//! lifetime (`timeout`), recorded by PID and start time, ended by that PID.
//!
//! A PID alone can be reused once its process is gone (a lab's processes
//! end by themselves when their lifetime runs out), so a record also keeps
//! the process's start time from /proc, and nothing is signalled unless
//! both still match.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// A process a lab started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proc {
    /// What it is (`engine`, `web`, `dns`, `helper`).
    pub what: String,
    /// The namespace it runs in.
    pub netns: String,
    /// Its PID: the leader of a session of its own (the `timeout` that
    /// runs the program; the program is its child).
    pub pid: i32,
    /// Its start time in clock ticks since boot (/proc/PID/stat field 22).
    pub start: u64,
    /// Its output.
    pub log: PathBuf,
    /// The command line.
    pub argv: Vec<String>,
}

/// Start `argv` in namespace `netns` under `timeout LIFETIME`, in a session
/// of its own (so it outlives the command that starts it), stdin closed,
/// stdout and stderr appended to `log`.
pub fn spawn(
    what: &str,
    netns: &str,
    lifetime: Duration,
    argv: &[String],
    log: &Path,
    env: &[(&str, &str)],
) -> Result<Proc> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "timeout", "--kill-after=5"])
        .arg(format!("{}s", lifetime.as_secs().max(1)))
        .args(argv)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {what}: ip netns exec {netns} ..."))?;
    let pid = child.id() as i32;
    // The child is not waited for here: `stop` reaps it when it is ours,
    // and init does once the starting command has exited.
    std::mem::forget(child);
    let start = start_time(pid).unwrap_or(0);
    Ok(Proc {
        what: what.to_string(),
        netns: netns.to_string(),
        pid,
        start,
        log: log.to_path_buf(),
        argv: argv.to_vec(),
    })
}

/// The start time of `pid` (clock ticks since boot), if it exists.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields
    // count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // `rest` starts at field 3 (state); the start time is field 22.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

impl Proc {
    /// Whether the recorded process still runs (same PID, same start time,
    /// not a zombie).
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start) && state_of(self.pid) != Some('Z')
    }

    /// End it: SIGTERM to its session's process group, then SIGKILL after
    /// `grace`. Only if it is still the process recorded.
    pub fn stop(&self, grace: Duration) {
        if !self.alive() {
            reap(self.pid);
            return;
        }
        // SAFETY: signals to the process group this record started (its
        // leader is the recorded, still-matching PID).
        unsafe { libc::kill(-self.pid, libc::SIGTERM) };
        let until = Instant::now() + grace;
        while Instant::now() < until {
            reap(self.pid);
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.alive() {
            // SAFETY: as above.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        }
        for _ in 0..20 {
            reap(self.pid);
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send `sig` to the program the record runs (the child of its
    /// `timeout`), e.g. SIGHUP for a reload.
    pub fn signal_program(&self, sig: i32) -> bool {
        if !self.alive() {
            return false;
        }
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children", pid = self.pid))
                .unwrap_or_default();
        match children
            .split_whitespace()
            .next()
            .and_then(|c| c.parse::<i32>().ok())
        {
            // SAFETY: a child of the recorded process.
            Some(child) => unsafe { libc::kill(child, sig) == 0 },
            None => false,
        }
    }
}

/// Collect `pid`'s exit status if it is our child (a lab started and
/// stopped in one process); nothing otherwise.
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: WNOHANG never blocks; ECHILD for a process that is not ours.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_reads_this_process() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some_and(|t| t > 0));
        assert!(matches!(state_of(me), Some(c) if c != 'Z'));
    }

    #[test]
    fn a_record_whose_start_time_differs_is_not_alive() {
        let me = std::process::id() as i32;
        let p = Proc {
            what: "x".into(),
            netns: "none".into(),
            pid: me,
            start: start_time(me).unwrap() + 1,
            log: PathBuf::new(),
            argv: vec![],
        };
        assert!(
            !p.alive(),
            "a reused PID must not count as the recorded process"
        );
    }
}
