//! What the machine gives the box: the memory that sizes a profile's
//! `reassembly_memory_budget: auto` ([`Profile::reassembly_budget_for`]).
//! The core reads nothing of the machine; the runtime reads it here once,
//! at start, and hands it to each engine in its [`Share`].
//!
//! [`Profile::reassembly_budget_for`]: chokepoint_ruleset::Profile::reassembly_budget_for
//! [`Share`]: chokepoint_core::Share

use std::fs;

/// The memory the process may use: the machine's RAM, or its cgroup's
/// `memory.max` when that is lower (a container, or a systemd unit with
/// `MemoryMax=`). `None` when neither can be read.
pub fn memory() -> Option<u64> {
    let limit = fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|c| cgroup_path(&c).map(str::to_owned))
        .and_then(|path| fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).ok())
        .and_then(|m| cgroup_limit(&m));
    match (physical(), limit) {
        (Some(p), Some(l)) => Some(p.min(l)),
        (p, l) => p.or(l),
    }
}

/// One of `workers` engines' part of this machine's box.
pub fn share(workers: usize) -> chokepoint_core::Share {
    chokepoint_core::Share {
        workers,
        memory: memory(),
    }
}

/// The machine's RAM in bytes.
fn physical() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let pages = u64::try_from(pages).ok()?;
    let size = u64::try_from(size).ok()?;
    pages.checked_mul(size).filter(|&b| b > 0)
}

/// The process's cgroup v2 path from `/proc/self/cgroup` (`0::/path`).
fn cgroup_path(cgroup: &str) -> Option<&str> {
    cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .filter(|p| p.starts_with('/') && !p.contains(".."))
        .map(|p| p.trim_end_matches('/'))
}

/// A cgroup v2 `memory.max`: bytes, or `max` for none.
fn cgroup_limit(max: &str) -> Option<u64> {
    max.trim().parse().ok().filter(|&b| b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup_v2_line_gives_the_path() {
        let c = "12:pids:/old\n0::/system.slice/chokepoint.service\n";
        assert_eq!(cgroup_path(c), Some("/system.slice/chokepoint.service"));
        assert_eq!(cgroup_path("0::/\n"), Some(""));
        assert_eq!(cgroup_path("3:memory:/docker/x\n"), None);
        assert_eq!(cgroup_path("0::/../../etc\n"), None);
    }

    #[test]
    fn memory_max_is_bytes_or_no_limit() {
        assert_eq!(cgroup_limit("536870912\n"), Some(512 << 20));
        assert_eq!(cgroup_limit("max\n"), None);
        assert_eq!(cgroup_limit("0\n"), None);
    }

    #[test]
    fn this_machine_has_memory_and_the_limit_is_at_most_its_ram() {
        let ram = physical().expect("sysconf gives the RAM");
        let m = memory().expect("some memory");
        assert!(m <= ram, "{m} above the RAM's {ram}");
        // Far above any budget's floor on any machine that runs the tests.
        assert!(m >= 256 << 20, "{m} bytes");
    }
}
