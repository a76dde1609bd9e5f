//! Giving up privileges once the sockets are open.
//!
//! `run` needs `CAP_NET_RAW` for one thing: opening its `AF_PACKET`
//! sockets. Receiving, sending and reading its own files need nothing, so
//! once the ports (and the metrics listener) are open the process switches
//! to an unprivileged user if told to, then empties every capability set
//! (effective, permitted, inheritable, ambient) and sets `no_new_privs`, so
//! a bug in a parser can never be turned into root on an ISP's box. The
//! calls are a handful of libc ones (setgroups, setgid, setuid, capset,
//! prctl), written here rather than pulled in as a dependency.

use std::ffi::CString;
use std::io;

/// What the process runs as after [`drop_privileges`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Real and effective user id.
    pub uid: u32,
    /// Real and effective group id.
    pub gid: u32,
    /// The effective capability mask read back from `/proc/thread-self/status`.
    pub cap_eff: u64,
    /// The permitted capability mask read back.
    pub cap_prm: u64,
}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// The uid and primary gid of `name`.
pub fn lookup_user(name: &str) -> io::Result<(u32, u32)> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "user name has a NUL byte"))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getpwnam_r writes into `pwd` and `buf` (whose length is
    // passed) and sets `found` to `&pwd` or null; nothing is kept past the
    // call except the two integers copied out.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let r = libc::getpwnam_r(
            c.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        if found.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no user `{name}`"),
            ));
        }
        Ok((pwd.pw_uid, pwd.pw_gid))
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_CLEAR_ALL: libc::c_ulong = 4;

/// Switch to `user` (its uid and primary gid, no supplementary groups) if
/// given, then drop every capability and forbid gaining new ones. Call it
/// after every privileged open; it cannot be undone.
pub fn drop_privileges(user: Option<&str>) -> io::Result<Dropped> {
    // SAFETY: each call takes plain integers or pointers to live locals
    // of the layout the kernel expects (capset's v3 header and two data
    // words); none keeps a pointer past the call.
    unsafe {
        if let Some(name) = user {
            let (uid, gid) = lookup_user(name)?;
            if libc::setgroups(0, std::ptr::null()) != 0 {
                return Err(os_err("setgroups (needs CAP_SETGID)"));
            }
            if libc::setgid(gid) != 0 {
                return Err(os_err("setgid (needs CAP_SETGID)"));
            }
            if libc::setuid(uid) != 0 {
                return Err(os_err("setuid (needs CAP_SETUID)"));
            }
        }
        if libc::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 {
            // Kernels before 4.3 have no ambient set: nothing to clear.
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(os_err("clearing ambient capabilities"));
            }
        }
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
            return Err(os_err("capset"));
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(os_err("prctl(PR_SET_NO_NEW_PRIVS)"));
        }
    }
    // This thread's sets: capabilities are per thread, and the threads
    // spawned after this call inherit them.
    let status = std::fs::read_to_string("/proc/thread-self/status")?;
    let cap = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(u64::MAX)
    };
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let d = Dropped {
        uid,
        gid,
        cap_eff: cap("CapEff:"),
        cap_prm: cap("CapPrm:"),
    };
    if d.cap_eff != 0 || d.cap_prm != 0 {
        return Err(io::Error::other(format!(
            "capabilities remain after dropping them (effective {:#x}, permitted {:#x})",
            d.cap_eff, d.cap_prm
        )));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_nobody_resolve() {
        assert_eq!(lookup_user("root").unwrap(), (0, 0));
        assert!(lookup_user("no-such-user-chokepoint").is_err());
    }

    /// Dropping is irreversible for the whole process, so it runs in a
    /// child: the test binary re-executes itself on this test alone.
    #[test]
    fn a_dropped_process_holds_no_capabilities() {
        if std::env::var_os("CHOKEPOINT_PRIVS_CHILD").is_some() {
            // As root (as CI runs), also switch user, as `--user` does.
            // SAFETY: geteuid cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            let d = drop_privileges(root.then_some("nobody")).unwrap();
            assert_eq!((d.cap_eff, d.cap_prm), (0, 0));
            if root {
                let (uid, gid) = lookup_user("nobody").unwrap();
                assert_eq!((d.uid, d.gid), (uid, gid));
                assert_ne!(d.uid, 0);
            }
            // A raw socket needs CAP_NET_RAW, which is gone.
            // SAFETY: a plain socket(2) call; a returned fd is closed.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            assert!(fd < 0, "a raw socket was opened after dropping");
            return;
        }
        let st = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "privs::tests::a_dropped_process_holds_no_capabilities",
                "--nocapture",
            ])
            .env("CHOKEPOINT_PRIVS_CHILD", "1")
            .status()
            .unwrap();
        assert!(st.success());
    }
}
