//! What the machine gives the box: the memory that sizes a profile's
//! `reassembly_memory_budget: auto` ([`Profile::reassembly_budget_for`]).
//! The core reads nothing of the machine; the runtime reads it here once,
//! at start, and hands it to each engine in its [`Share`].
//!
//! [`Profile::reassembly_budget_for`]: chokepoint_ruleset::Profile::reassembly_budget_for
//! [`Share`]: chokepoint_core::Share

use std::fs;

/// The memory the process may use: the machine's RAM, or the lowest
/// memory limit of its cgroup and the cgroups above it when that is lower
/// (a container, a systemd unit with `MemoryMax=`, a slice's limit):
/// cgroup v2's `memory.max`, or v1's `memory.limit_in_bytes`. `None` when
/// none can be read.
pub fn memory() -> Option<u64> {
    let cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let v2 = cgroup_path(&cgroup).and_then(|path| {
        ancestors(path)
            .filter_map(|p| fs::read_to_string(format!("/sys/fs/cgroup{p}/memory.max")).ok())
            .filter_map(|m| cgroup_limit(&m))
            .min()
    });
    // cgroup v1: the memory controller's own hierarchy.
    let v1 = || {
        let path = cgroup.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then_some(path)
        })?;
        ancestors(path.trim_end_matches('/'))
            .filter_map(|p| {
                fs::read_to_string(format!("/sys/fs/cgroup/memory{p}/memory.limit_in_bytes")).ok()
            })
            .filter_map(|m| cgroup_limit(&m))
            .min()
    };
    let limit = v2.or_else(v1);
    match (physical(), limit) {
        (Some(p), Some(l)) => Some(p.min(l)),
        (p, l) => p.or(l),
    }
}

/// `/a/b/c`, `/a/b`, `/a`, and the root (`""`).
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let p = next?;
        next = (!p.is_empty()).then(|| p.rsplit_once('/').map_or("", |(head, _)| head));
        Some(p)
    })
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
    fn a_cgroup_and_every_one_above_it() {
        let all: Vec<&str> = ancestors("/system.slice/chokepoint.service").collect();
        assert_eq!(
            all,
            ["/system.slice/chokepoint.service", "/system.slice", ""]
        );
        assert_eq!(ancestors("").collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn memory_max_is_bytes_or_no_limit() {
        assert_eq!(cgroup_limit("536870912\n"), Some(512 << 20));
        assert_eq!(cgroup_limit("max\n"), None);
        // v1's "no limit" is a huge number: taken, and the RAM is lower.
        assert_eq!(
            cgroup_limit("9223372036854771712\n"),
            Some(9_223_372_036_854_771_712)
        );
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
