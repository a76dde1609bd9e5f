//! Where frames come from and go to on a live link.
//!
//! [`Port`] is the capture backend's interface; [`AfPacket`] is the Linux
//! one: a raw `AF_PACKET` socket bound to one interface, in promiscuous
//! mode, that ignores the frames it sends itself (`PACKET_IGNORE_OUTGOING`,
//! Linux ≥ 4.20: without it a bridge re-reads and re-forwards every frame
//! it transmits). One `recv` per frame, through a receive thread and a
//! queue: `--capture socket`, the fallback for interfaces without packet
//! rings. The default backend is [`crate::ring`]: per-worker rings, kernel
//! fanout, batched transmit.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// A link the bridge reads from and writes to.
pub trait Port: Send + Sync {
    /// One frame into `buf`; `Ok(None)` when the read timeout passed.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Send one frame.
    fn send(&self, frame: &[u8]) -> io::Result<()>;
    /// The interface name, for logs and metrics.
    fn name(&self) -> &str;
}

/// `AF_PACKET` raw socket on one interface.
pub struct AfPacket {
    fd: OwnedFd,
    name: String,
}

const ETH_P_ALL: u16 = 0x0003;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

fn check(r: libc::c_int, what: &str) -> io::Result<()> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

impl AfPacket {
    /// Open `name` with a read timeout (so threads can notice a stop).
    pub fn open(name: &str, timeout: Duration) -> io::Result<AfPacket> {
        let cname = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
        // SAFETY: plain libc calls with valid arguments; the fd is owned
        // from here on and closed on drop.
        unsafe {
            let ifindex = libc::if_nametoindex(cname.as_ptr());
            if ifindex == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no interface `{name}`"),
                ));
            }
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            );
            check(fd, "socket(AF_PACKET) (needs CAP_NET_RAW)")?;
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = ETH_P_ALL.to_be();
            sll.sll_ifindex = ifindex as i32;
            check(
                libc::bind(
                    fd.as_raw_fd(),
                    &sll as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                ),
                "bind",
            )?;
            let one: libc::c_int = 1;
            check(
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    PACKET_IGNORE_OUTGOING,
                    &one as *const _ as *const libc::c_void,
                    4,
                ),
                "PACKET_IGNORE_OUTGOING (needs Linux 4.20)",
            )?;
            let mut mreq: libc::packet_mreq = std::mem::zeroed();
            mreq.mr_ifindex = ifindex as i32;
            mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
            check(
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_ADD_MEMBERSHIP,
                    &mreq as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::packet_mreq>() as u32,
                ),
                "promiscuous mode",
            )?;
            let tv = libc::timeval {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_usec: timeout.subsec_micros() as libc::suseconds_t,
            };
            check(
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as u32,
                ),
                "SO_RCVTIMEO",
            )?;
            Ok(AfPacket {
                fd,
                name: name.to_string(),
            })
        }
    }
}

impl Port for AfPacket {
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: buf is valid for its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(n as usize))
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: frame is valid for its length; the socket is bound to
        // its interface, so no destination address is needed.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }
}
