//! The ring capture backend: `AF_PACKET` sockets with a memory-mapped
//! receive ring (`PACKET_RX_RING`, `TPACKET_V2` slots or `TPACKET_V3`
//! blocks), one per worker and interface, joined into one fanout group per
//! interface whose classic BPF program ([`crate::fanout`]) puts every frame
//! in the ring of the worker that owns its flow. A worker reads its own
//! rings where the kernel wrote the frames (no copy, no channel, no shared
//! queue) and sends with `sendmmsg` straight from the ring memory, one
//! system call per batch and interface.
//!
//! Written by hand on `libc` (no crate offers fanout programs, both ring
//! versions and batched transmit from the ring; see docs/PERFORMANCE.md).
//! Every `unsafe` block says why it is sound; the rest of the runtime sees
//! safe types: [`RingSocket`], [`Batch`] (frames borrowed from the ring,
//! released when it drops) and [`Tx`].
//!
//! `TPACKET_V2` is the default: the kernel hands each frame over as it
//! lands, so a lone packet waits for nothing. `TPACKET_V3` hands over whole
//! blocks, when full or when the block timer fires (1 ms at the least): fewer
//! wake-ups under load, a millisecond added to a quiet link's packets.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::fanout;

/// Which ring layout to ask the kernel for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `TPACKET_V2`: one fixed-size slot per frame, handed over per frame.
    V2,
    /// `TPACKET_V3`: variable-size frames packed in blocks, handed over per
    /// block (when full, or after the block timeout).
    V3,
}

/// How rings are laid out.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The layout.
    pub version: Version,
    /// About how many frames each ring holds (V2: slots; V3: the same
    /// memory in blocks).
    pub frames: usize,
    /// V3: milliseconds before the kernel hands over a block that is not
    /// full.
    pub block_timeout_ms: u32,
    /// Microseconds a worker keeps looking at its rings after the last
    /// frame before it sleeps in `poll`: a frame that comes meanwhile is
    /// taken without a wake-up (tens of microseconds on a virtual
    /// machine), at the price of that much CPU per quiet spell.
    pub spin_us: u32,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            version: Version::V2,
            frames: 4096,
            block_timeout_ms: 1,
            spin_us: 0,
        }
    }
}

// linux/if_packet.h
const ETH_P_ALL: u16 = 0x0003;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: u16 = 1;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_FANOUT_DATA: libc::c_int = 22;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_FANOUT_CBPF: u32 = 6;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
/// Linux ≥ 6.2; older kernels keep the bit without acting on it.
const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000;
const TPACKET_V2: libc::c_int = 1;
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// V2 slot header fields (struct tpacket2_hdr).
mod v2 {
    pub const STATUS: usize = 0;
    pub const LEN: usize = 4;
    pub const SNAPLEN: usize = 8;
    pub const MAC: usize = 12;
    pub const VLAN_TCI: usize = 24;
    pub const VLAN_TPID: usize = 26;
}

/// V3 block descriptor and frame header fields (struct
/// tpacket_block_desc, struct tpacket3_hdr).
mod v3 {
    pub const BLOCK_STATUS: usize = 8;
    pub const NUM_PKTS: usize = 12;
    pub const FIRST: usize = 16;
    pub const NEXT: usize = 0;
    pub const SNAPLEN: usize = 12;
    pub const LEN: usize = 16;
    pub const STATUS: usize = 20;
    pub const MAC: usize = 24;
    pub const VLAN_TCI: usize = 32;
    pub const VLAN_TPID: usize = 36;
}

fn check(r: libc::c_int, what: &str) -> io::Result<()> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

fn setsockopt<T>(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: &T,
    what: &str,
) -> io::Result<()> {
    // SAFETY: `v` is a valid, initialised value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            v as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(r, what)
}

/// The memory a ring lives in: the kernel's mapping, or (in tests) a
/// buffer laid out the same way.
enum Region {
    Mapped {
        ptr: *mut u8,
        len: usize,
    },
    #[cfg(test)]
    Owned(Vec<u64>),
}

impl Region {
    fn ptr(&self) -> *mut u8 {
        match self {
            Region::Mapped { ptr, .. } => *ptr,
            #[cfg(test)]
            Region::Owned(v) => v.as_ptr() as *mut u8,
        }
    }
    fn len(&self) -> usize {
        match self {
            Region::Mapped { len, .. } => *len,
            #[cfg(test)]
            Region::Owned(v) => v.len() * 8,
        }
    }
}

impl Drop for Region {
    #[allow(irrefutable_let_patterns)]
    fn drop(&mut self) {
        if let Region::Mapped { ptr, len } = *self {
            // SAFETY: the mapping was made by `mmap` with this length and
            // nothing borrows it any more (borrows end with the ring).
            unsafe { libc::munmap(ptr as *mut libc::c_void, len) };
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Layout {
    V2 { frame_size: usize, frames: usize },
    V3 { block_size: usize, blocks: usize },
}

/// One frame's place in the ring.
#[derive(Clone, Copy, Debug)]
struct Desc {
    /// Offset of the frame's first byte in the region, or, with `retag`,
    /// the index of its copy in `Rx::retagged`.
    at: usize,
    len: usize,
    retag: bool,
    /// Cut short by the slot (snaplen under the wire length).
    truncated: bool,
}

/// A receive ring: walks V2 slots or V3 blocks, hands out [`Batch`]es.
pub struct Rx {
    region: Region,
    layout: Layout,
    /// Next slot (V2) or block (V3) to read.
    next: usize,
    /// The current batch: its frames, and the slots or blocks it holds.
    pending: Vec<Desc>,
    held: Vec<usize>,
    /// Frames whose VLAN tag the kernel took off, with the tag put back.
    retagged: Vec<Vec<u8>>,
    retag_used: usize,
}

// SAFETY: the region is owned by the ring (a mapping or a buffer); it is
// only read through `&self`/`&mut self`, so moving the ring to another
// thread moves the only access to it.
unsafe impl Send for Rx {}

/// One frame of a [`Batch`].
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// The frame, from its Ethernet header on (a VLAN tag the kernel took
    /// off put back).
    pub data: &'a [u8],
    /// The slot cut it short: it must not be forwarded.
    pub truncated: bool,
}

/// The frames ready in a ring when it was asked; their slots go back to
/// the kernel when the batch drops.
pub struct Batch<'r> {
    rx: &'r mut Rx,
}

impl Batch<'_> {
    /// The frames, in arrival order.
    pub fn frames(&self) -> impl Iterator<Item = Frame<'_>> + '_ {
        let rx = &*self.rx;
        rx.pending.iter().map(move |d| Frame {
            data: if d.retag {
                &rx.retagged[d.at][..]
            } else {
                // SAFETY: `at..at+len` was checked against the region when
                // the frame was taken, and its slot stays the user's until
                // this batch drops (which needs the batch back, so no frame
                // outlives it).
                unsafe { std::slice::from_raw_parts(rx.region.ptr().add(d.at), d.len) }
            },
            truncated: d.truncated,
        })
    }
    /// How many frames the batch holds.
    pub fn len(&self) -> usize {
        self.rx.pending.len()
    }
    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.rx.pending.is_empty()
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.rx.release();
    }
}

impl Rx {
    fn word(&self, at: usize) -> &AtomicU32 {
        assert!(
            at % 4 == 0 && at + 4 <= self.region.len(),
            "ring offset {at}"
        );
        // SAFETY: in bounds and 4-aligned (checked above; the region is
        // page- or 8-aligned); the kernel writes these words concurrently,
        // so they are only accessed atomically.
        unsafe { &*(self.region.ptr().add(at) as *const AtomicU32) }
    }
    fn u32_at(&self, at: usize) -> u32 {
        self.word(at).load(Ordering::Relaxed)
    }
    fn u16_at(&self, at: usize) -> u16 {
        let w = self.u32_at(at & !3);
        // Little-endian layout: the low half is the lower address.
        if at & 2 == 0 {
            w as u16
        } else {
            (w >> 16) as u16
        }
    }

    /// Whether a frame (V2) or block (V3) is ready to be taken.
    pub fn ready(&self) -> bool {
        let at = match self.layout {
            Layout::V2 { frame_size, .. } => self.next * frame_size + v2::STATUS,
            Layout::V3 { block_size, .. } => self.next * block_size + v3::BLOCK_STATUS,
        };
        self.word(at).load(Ordering::Relaxed) & TP_STATUS_USER != 0
    }

    /// Take up to `max` ready frames (V3: the ready block, whole).
    pub fn batch(&mut self, max: usize) -> Batch<'_> {
        self.pending.clear();
        self.held.clear();
        self.retag_used = 0;
        match self.layout {
            Layout::V2 { frame_size, frames } => {
                // At most one lap: slots taken stay the user's until the
                // batch drops, and must not be read twice.
                while self.pending.len() < max && self.held.len() < frames {
                    let slot = self.next * frame_size;
                    // Acquire: the frame's bytes are visible once its
                    // status says they are the user's.
                    let status = self.word(slot + v2::STATUS).load(Ordering::Acquire);
                    if status & TP_STATUS_USER == 0 {
                        break;
                    }
                    let hdr = (
                        self.u32_at(slot + v2::LEN),
                        self.u32_at(slot + v2::SNAPLEN),
                        self.u16_at(slot + v2::MAC),
                        self.u16_at(slot + v2::VLAN_TCI),
                        self.u16_at(slot + v2::VLAN_TPID),
                    );
                    self.take(slot, frame_size, status, hdr);
                    self.held.push(self.next);
                    self.next = (self.next + 1) % frames;
                }
            }
            Layout::V3 { block_size, blocks } => {
                let block = self.next * block_size;
                let status = self.word(block + v3::BLOCK_STATUS).load(Ordering::Acquire);
                if status & TP_STATUS_USER != 0 {
                    let n = self.u32_at(block + v3::NUM_PKTS);
                    let mut at = self.u32_at(block + v3::FIRST) as usize;
                    for _ in 0..n {
                        if at % 4 != 0 || at + 48 > block_size {
                            break;
                        }
                        let h = block + at;
                        let hdr = (
                            self.u32_at(h + v3::LEN),
                            self.u32_at(h + v3::SNAPLEN),
                            self.u16_at(h + v3::MAC),
                            self.u32_at(h + v3::VLAN_TCI) as u16,
                            self.u16_at(h + v3::VLAN_TPID),
                        );
                        let fstatus = self.u32_at(h + v3::STATUS);
                        self.take(h, block_size - at, fstatus, hdr);
                        let next = self.u32_at(h + v3::NEXT) as usize;
                        if next == 0 {
                            break;
                        }
                        at += next;
                    }
                    self.held.push(self.next);
                    self.next = (self.next + 1) % blocks;
                }
            }
        }
        Batch { rx: self }
    }

    /// Record the frame whose header starts at `hdr_at` (its slot or the
    /// rest of its block `room` bytes long).
    fn take(&mut self, hdr_at: usize, room: usize, status: u32, hdr: (u32, u32, u16, u16, u16)) {
        let (len, snap, mac, tci, tpid) = hdr;
        let (mac, snap) = (usize::from(mac), snap as usize);
        if mac + snap > room {
            // A header pointing outside its slot: not the kernel's doing;
            // skip the frame rather than read past it.
            return;
        }
        let at = hdr_at + mac;
        let truncated = snap < len as usize;
        if status & TP_STATUS_VLAN_VALID != 0 && snap >= 12 {
            let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
                tpid
            } else {
                0x8100
            };
            // SAFETY: `at..at+snap` lies in the frame's slot (checked above)
            // and the slot is the user's until released.
            let data = unsafe { std::slice::from_raw_parts(self.region.ptr().add(at), snap) };
            if self.retag_used == self.retagged.len() {
                self.retagged.push(Vec::new());
            }
            let buf = &mut self.retagged[self.retag_used];
            buf.clear();
            buf.extend_from_slice(&data[..12]);
            buf.extend_from_slice(&tpid.to_be_bytes());
            buf.extend_from_slice(&tci.to_be_bytes());
            buf.extend_from_slice(&data[12..]);
            self.pending.push(Desc {
                at: self.retag_used,
                len: buf.len(),
                retag: true,
                truncated,
            });
            self.retag_used += 1;
        } else {
            self.pending.push(Desc {
                at,
                len: snap,
                retag: false,
                truncated,
            });
        }
    }

    /// Hand the batch's slots or blocks back to the kernel.
    fn release(&mut self) {
        for i in std::mem::take(&mut self.held) {
            let at = match self.layout {
                Layout::V2 { frame_size, .. } => i * frame_size + v2::STATUS,
                Layout::V3 { block_size, .. } => i * block_size + v3::BLOCK_STATUS,
            };
            // Release: our reads of the frame are done before the kernel
            // may write the slot again.
            self.word(at).store(0, Ordering::Release);
        }
        self.pending.clear();
    }

    fn new(region: Region, layout: Layout) -> Rx {
        Rx {
            region,
            layout,
            next: 0,
            pending: Vec::new(),
            held: Vec::new(),
            retagged: Vec::new(),
            retag_used: 0,
        }
    }
}

/// Kernel counters of one socket (`PACKET_STATISTICS`), since the last
/// read (reading resets them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames the socket was offered (drops included).
    pub packets: u64,
    /// Frames dropped because the ring was full.
    pub drops: u64,
    /// V3: times the ring was frozen (full) and frames were dropped.
    pub freeze_q: u64,
}

/// One `AF_PACKET` socket with its receive ring, on one interface.
pub struct RingSocket {
    fd: OwnedFd,
    name: String,
    version: Version,
    /// The receive ring.
    pub rx: Rx,
}

impl RingSocket {
    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The socket, for `poll`.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
    /// The kernel's counters since the last call.
    pub fn stats(&self) -> io::Result<KernelStats> {
        let mut st = [0u32; 3];
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: `st` is writable for `len` bytes; the kernel writes at
        // most that many and says how many in `len`.
        let r = unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                st.as_mut_ptr() as *mut libc::c_void,
                &mut len,
            )
        };
        check(r, "PACKET_STATISTICS")?;
        Ok(KernelStats {
            packets: u64::from(st[0]),
            drops: u64::from(st[1]),
            freeze_q: if self.version == Version::V3 && len >= 12 {
                u64::from(st[2])
            } else {
                0
            },
        })
    }

    /// Open a ring on `name`, bound but blind (a filter that takes no
    /// frame) until [`RingSet::open`] has joined every socket to its group.
    fn open(name: &str, opts: &Options) -> io::Result<RingSocket> {
        let cname = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
        // SAFETY: a C string, valid for the call.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface `{name}`"),
            ));
        }
        // SAFETY: plain socket(2); the descriptor is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        check(fd, "socket(AF_PACKET) (needs CAP_NET_RAW)")?;
        // SAFETY: `fd` was just returned by socket(2) and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        // No frame until the fanout groups are complete (see RingSet::open).
        let drop_all = [libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: drop_all.as_ptr() as *mut libc::sock_filter,
        };
        setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &prog,
            "SO_ATTACH_FILTER",
        )?;
        let mtu = mtu(raw, &cname)?;
        let (version, layout, req) = match opts.version {
            Version::V2 => {
                // Room for the header (~80 bytes), a VLAN tag and the MTU.
                let frame_size = (mtu + 14 + 4 + 128).next_power_of_two().max(2048);
                let block_size = frame_size.max(4096) * 8;
                let per_block = block_size / frame_size;
                let blocks = opts.frames.div_ceil(per_block).max(1);
                (
                    TPACKET_V2,
                    Layout::V2 {
                        frame_size,
                        frames: blocks * per_block,
                    },
                    [
                        block_size as u32,
                        blocks as u32,
                        frame_size as u32,
                        (blocks * per_block) as u32,
                        0,
                        0,
                        0,
                    ],
                )
            }
            Version::V3 => {
                let block_size = 128 << 10;
                let frame_size = 2048;
                let blocks = (opts.frames * frame_size).div_ceil(block_size).max(2);
                (
                    TPACKET_V3,
                    Layout::V3 { block_size, blocks },
                    [
                        block_size as u32,
                        blocks as u32,
                        frame_size as u32,
                        (blocks * block_size / frame_size) as u32,
                        opts.block_timeout_ms.max(1),
                        0,
                        0,
                    ],
                )
            }
        };
        setsockopt(
            raw,
            libc::SOL_PACKET,
            PACKET_VERSION,
            &version,
            "PACKET_VERSION",
        )?;
        // struct tpacket_req is the first four words of tpacket_req3.
        let r = if version == TPACKET_V3 {
            setsockopt(
                raw,
                libc::SOL_PACKET,
                PACKET_RX_RING,
                &req,
                "PACKET_RX_RING",
            )
        } else {
            let req2: [u32; 4] = [req[0], req[1], req[2], req[3]];
            setsockopt(
                raw,
                libc::SOL_PACKET,
                PACKET_RX_RING,
                &req2,
                "PACKET_RX_RING",
            )
        };
        r?;
        let len = req[0] as usize * req[1] as usize;
        // SAFETY: mapping the ring the kernel just allocated for this
        // socket, with its exact size; the mapping is owned by `Region`,
        // which unmaps it once, on drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::new(
                io::Error::last_os_error().kind(),
                format!(
                    "mmap of the {len}-byte ring: {}",
                    io::Error::last_os_error()
                ),
            ));
        }
        let region = Region::Mapped {
            ptr: ptr as *mut u8,
            len,
        };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields set below
        // make it a bind address.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                raw,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        check(r, "bind")?;
        setsockopt(
            raw,
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            &1i32,
            "PACKET_IGNORE_OUTGOING (needs Linux 4.20)",
        )?;
        // SAFETY: an all-zero packet_mreq is valid.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = ifindex as i32;
        mreq.mr_type = PACKET_MR_PROMISC;
        setsockopt(
            raw,
            libc::SOL_PACKET,
            PACKET_ADD_MEMBERSHIP,
            &mreq,
            "promiscuous mode",
        )?;
        // Frames sent here skip the queueing discipline: the bridge is the
        // only sender, and a qdisc would only add a queue.
        setsockopt(
            raw,
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            &1i32,
            "PACKET_QDISC_BYPASS",
        )?;
        Ok(RingSocket {
            fd,
            name: name.to_string(),
            version: opts.version,
            rx: Rx::new(region, layout),
        })
    }

    /// Join the fanout group `id` (`None`: make a new one, with the
    /// program, and return its id).
    fn join(&self, id: Option<u16>) -> io::Result<u16> {
        let flags = PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
        let arg: u32 = match id {
            Some(id) => u32::from(id) | (flags << 16),
            None => (flags | PACKET_FANOUT_FLAG_UNIQUEID) << 16,
        };
        setsockopt(
            self.fd(),
            libc::SOL_PACKET,
            PACKET_FANOUT,
            &arg,
            "PACKET_FANOUT",
        )?;
        if let Some(id) = id {
            return Ok(id);
        }
        let prog: Vec<libc::sock_filter> = fanout::program()
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        setsockopt(
            self.fd(),
            libc::SOL_PACKET,
            PACKET_FANOUT_DATA,
            &fprog,
            "PACKET_FANOUT_DATA (the fanout program)",
        )?;
        let mut v: u32 = 0;
        let mut len = 4 as libc::socklen_t;
        // SAFETY: `v` is writable for 4 bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_PACKET,
                PACKET_FANOUT,
                &mut v as *mut u32 as *mut libc::c_void,
                &mut len,
            )
        };
        check(r, "PACKET_FANOUT (reading the group id)")?;
        Ok(v as u16)
    }

    fn open_eyes(&self) -> io::Result<()> {
        setsockopt(
            self.fd(),
            libc::SOL_SOCKET,
            libc::SO_DETACH_FILTER,
            &0i32,
            "SO_DETACH_FILTER",
        )
    }
}

/// The interface's MTU.
fn mtu(fd: RawFd, name: &std::ffi::CStr) -> io::Result<usize> {
    // SAFETY: an all-zero ifreq is valid; the name is copied in bounds
    // (at most IFNAMSIZ - 1 bytes, NUL-terminated by the zeroing).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr
        .ifr_name
        .iter_mut()
        .zip(name.to_bytes().iter().take(libc::IFNAMSIZ - 1))
    {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the name and writes ifru_mtu of `ifr`.
    let r = unsafe { libc::ioctl(fd, libc::SIOCGIFMTU as _, &mut ifr) };
    check(r, "SIOCGIFMTU")?;
    // SAFETY: the union member SIOCGIFMTU wrote.
    Ok(unsafe { ifr.ifr_ifru.ifru_mtu }.max(68) as usize)
}

/// One worker's sockets: inside (or the tap) and outside.
pub struct WorkerRings {
    /// The inside interface (the tap, in tap mode).
    pub inside: RingSocket,
    /// The outside interface; `None` on a tap.
    pub outside: Option<RingSocket>,
}

/// Every worker's rings, with the fanout groups formed.
pub struct RingSet {
    /// In worker order.
    pub workers: Vec<WorkerRings>,
    /// How long a worker spins on its rings before sleeping
    /// ([`Options::spin_us`]).
    pub spin: std::time::Duration,
}

impl RingSet {
    /// Open `workers` rings on `inside` (and on `outside`, unless a tap),
    /// one fanout group per interface, socket `k` of each group being
    /// worker `k`'s. No frame enters a ring before every group is whole,
    /// so none reaches a worker that does not own its flow.
    pub fn open(
        inside: &str,
        outside: Option<&str>,
        workers: usize,
        opts: &Options,
    ) -> io::Result<RingSet> {
        let mut set = Vec::new();
        for _ in 0..workers.max(1) {
            set.push(WorkerRings {
                inside: RingSocket::open(inside, opts)
                    .map_err(|e| io::Error::new(e.kind(), format!("{inside}: {e}")))?,
                outside: outside
                    .map(|o| {
                        RingSocket::open(o, opts)
                            .map_err(|e| io::Error::new(e.kind(), format!("{o}: {e}")))
                    })
                    .transpose()?,
            });
        }
        let (mut gi, mut go) = (None, None);
        for w in &set {
            gi = Some(w.inside.join(gi)?);
            if let Some(o) = &w.outside {
                go = Some(o.join(go)?);
            }
        }
        for w in &set {
            w.inside.open_eyes()?;
            if let Some(o) = &w.outside {
                o.open_eyes()?;
            }
        }
        Ok(RingSet {
            workers: set,
            spin: std::time::Duration::from_micros(opts.spin_us.into()),
        })
    }
}

/// Frames staged for `sendmmsg`, per interface, and sent in one call per
/// interface when [`Tx::flush`] runs (or the stage fills).
pub struct Tx {
    queues: [Queue; 2],
    /// Frames the kernel refused.
    pub errors: u64,
    /// Frames sent.
    pub sent: u64,
    /// One `sendmmsg` call's vectors, kept from call to call.
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

#[derive(Default)]
struct Queue {
    fd: Option<RawFd>,
    /// (pointer, length) of staged frames: borrowed from a live batch or
    /// from `owned`, valid until the next flush.
    frames: Vec<(*const u8, usize)>,
    owned: Vec<Vec<u8>>,
}

// SAFETY: the raw pointers are only dereferenced (by the kernel, in
// sendmmsg) within `Tx::stage`'s scope, during which what they point to is
// borrowed; a `Tx` between scopes holds none.
unsafe impl Send for Tx {}

/// Most frames one `sendmmsg` carries.
pub const TX_BATCH: usize = 256;

impl Tx {
    /// A transmitter on socket `fds[0]` (inside) and `fds[1]` (outside).
    pub fn new(inside: RawFd, outside: Option<RawFd>) -> Tx {
        let mut queues: [Queue; 2] = Default::default();
        queues[0].fd = Some(inside);
        queues[1].fd = outside;
        Tx {
            queues,
            errors: 0,
            sent: 0,
            iov: Vec::with_capacity(TX_BATCH),
            msgs: Vec::with_capacity(TX_BATCH),
        }
    }

    /// Run `f` with a stage whose frames may borrow anything that outlives
    /// this call; everything staged is sent before it returns.
    pub fn stage<'b, R>(&mut self, f: impl FnOnce(&mut Stage<'b, '_>) -> R) -> R {
        let mut s = Stage {
            tx: self,
            _b: std::marker::PhantomData,
        };
        let r = f(&mut s);
        s.tx.flush();
        r
    }

    fn flush(&mut self) {
        for q in 0..2 {
            self.flush_queue(q);
        }
    }

    fn flush_queue(&mut self, q: usize) {
        let Tx {
            queues,
            errors,
            sent,
            iov,
            msgs,
        } = self;
        let queue = &mut queues[q];
        let Some(fd) = queue.fd else {
            queue.frames.clear();
            queue.owned.clear();
            return;
        };
        let mut done = 0;
        while done < queue.frames.len() {
            let chunk = &queue.frames[done..(done + TX_BATCH).min(queue.frames.len())];
            iov.clear();
            iov.extend(chunk.iter().map(|&(p, n)| libc::iovec {
                iov_base: p as *mut libc::c_void,
                iov_len: n,
            }));
            msgs.clear();
            msgs.extend(iov.iter_mut().map(|v| {
                // SAFETY: an all-zero mmsghdr is valid (no name, no control).
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            }));
            // SAFETY: every iovec points at bytes that stay borrowed for
            // the whole stage (see `Stage`), and `msgs` at those iovecs,
            // which do not move until the call returns.
            let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as u32, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first frame is refused (too long, the link is down):
                // count it and go on with the rest.
                *errors += 1;
                done += 1;
            } else {
                *sent += n as u64;
                done += (n as usize).max(1);
                if n == 0 {
                    *errors += 1;
                }
            }
        }
        queue.frames.clear();
        queue.owned.clear();
    }
}

/// The frames of one [`Tx::stage`] call; `'b` is what they may borrow.
pub struct Stage<'b, 't> {
    tx: &'t mut Tx,
    _b: std::marker::PhantomData<&'b [u8]>,
}

impl<'b> Stage<'b, '_> {
    /// Send `frame` out interface `to` (0 inside, 1 outside).
    pub fn push(&mut self, to: usize, frame: &'b [u8]) {
        let q = &mut self.tx.queues[to];
        q.frames.push((frame.as_ptr(), frame.len()));
        if q.frames.len() >= TX_BATCH {
            self.tx.flush_queue(to);
        }
    }
    /// Send a frame made here (an injected one).
    pub fn push_owned(&mut self, to: usize, frame: Vec<u8>) {
        let q = &mut self.tx.queues[to];
        // The heap buffer does not move when `owned` grows.
        q.frames.push((frame.as_ptr(), frame.len()));
        q.owned.push(frame);
        if q.frames.len() >= TX_BATCH {
            self.tx.flush_queue(to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put32(r: &mut [u8], at: usize, v: u32) {
        r[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put16(r: &mut [u8], at: usize, v: u16) {
        r[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn owned(bytes: Vec<u8>) -> Region {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: test setup; the word buffer is at least as long.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                words.as_mut_ptr() as *mut u8,
                bytes.len(),
            )
        };
        Region::Owned(words)
    }
    fn bytes_of(rx: &Rx) -> Vec<u8> {
        // SAFETY: test: reading the whole region.
        unsafe { std::slice::from_raw_parts(rx.region.ptr(), rx.region.len()).to_vec() }
    }

    #[test]
    fn v2_slots_are_read_in_order_and_handed_back() {
        let (fs, n) = (256usize, 4usize);
        let mut r = vec![0u8; fs * n];
        // slots 0 and 1 ready, 2 not, 3 ready (read after 2 only)
        for (slot, ready, payload) in [
            (0, true, b"first".as_ref()),
            (1, true, b"second"),
            (2, false, b"x"),
            (3, true, b"fourth"),
        ] {
            let h = slot * fs;
            put32(&mut r, h + v2::STATUS, u32::from(ready));
            put32(&mut r, h + v2::LEN, payload.len() as u32);
            put32(&mut r, h + v2::SNAPLEN, payload.len() as u32);
            put16(&mut r, h + v2::MAC, 66);
            r[h + 66..h + 66 + payload.len()].copy_from_slice(payload);
        }
        let mut rx = Rx::new(
            owned(r),
            Layout::V2 {
                frame_size: fs,
                frames: n,
            },
        );
        {
            let b = rx.batch(64);
            let got: Vec<&[u8]> = b.frames().map(|f| f.data).collect();
            assert_eq!(got, [b"first".as_ref(), b"second"]);
        }
        let after = bytes_of(&rx);
        assert_eq!(
            u32::from_le_bytes(after[0..4].try_into().unwrap()),
            0,
            "slot 0 back to the kernel"
        );
        assert_eq!(u32::from_le_bytes(after[fs..fs + 4].try_into().unwrap()), 0);
        assert!(rx.batch(64).is_empty(), "slot 2 is still the kernel's");
        // a batch of at most one frame
        let mut r = vec![0u8; fs * n];
        for slot in 0..n {
            put32(&mut r, slot * fs, 1);
            put32(&mut r, slot * fs + v2::LEN, 1);
            put32(&mut r, slot * fs + v2::SNAPLEN, 1);
            put16(&mut r, slot * fs + v2::MAC, 66);
        }
        let mut rx = Rx::new(
            owned(r),
            Layout::V2 {
                frame_size: fs,
                frames: n,
            },
        );
        assert_eq!(rx.batch(1).len(), 1);
        assert_eq!(rx.batch(10).len(), 3, "the ring wraps after the last slot");
    }

    #[test]
    fn v2_truncated_frames_and_vlan_tags() {
        let fs = 256usize;
        let mut r = vec![0u8; fs * 2];
        let frame: Vec<u8> = (0..40u8).collect();
        // slot 0: cut short (snaplen 40 of 1500), VLAN 0x8100/7 in metadata
        put32(&mut r, v2::STATUS, 1 | TP_STATUS_VLAN_VALID);
        put32(&mut r, v2::LEN, 1500);
        put32(&mut r, v2::SNAPLEN, 40);
        put16(&mut r, v2::MAC, 66);
        put16(&mut r, v2::VLAN_TCI, 7);
        r[66..106].copy_from_slice(&frame);
        // slot 1: a header pointing past its slot is skipped
        put32(&mut r, fs, 1);
        put32(&mut r, fs + v2::SNAPLEN, 250);
        put16(&mut r, fs + v2::MAC, 66);
        let mut rx = Rx::new(
            owned(r),
            Layout::V2 {
                frame_size: fs,
                frames: 2,
            },
        );
        let b = rx.batch(8);
        let got: Vec<Frame<'_>> = b.frames().collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].truncated);
        let mut want = frame[..12].to_vec();
        want.extend_from_slice(&[0x81, 0x00, 0, 7]);
        want.extend_from_slice(&frame[12..]);
        assert_eq!(got[0].data, &want[..]);
    }

    #[test]
    fn v3_blocks_are_walked_frame_by_frame() {
        let bs = 1024usize;
        let mut r = vec![0u8; bs * 2];
        // block 0: three frames chained by tp_next_offset
        put32(&mut r, v3::BLOCK_STATUS, 1);
        put32(&mut r, v3::NUM_PKTS, 3);
        put32(&mut r, v3::FIRST, 48);
        let mut at = 48;
        for (i, p) in [b"alpha".as_ref(), b"beta", b"gamma"].iter().enumerate() {
            let next = if i < 2 { 128 } else { 0 };
            put32(&mut r, at + v3::NEXT, next);
            put32(&mut r, at + v3::LEN, p.len() as u32);
            put32(&mut r, at + v3::SNAPLEN, p.len() as u32);
            put16(&mut r, at + v3::MAC, 80);
            r[at + 80..at + 80 + p.len()].copy_from_slice(p);
            at += 128;
        }
        // block 1: not ready
        let mut rx = Rx::new(
            owned(r),
            Layout::V3 {
                block_size: bs,
                blocks: 2,
            },
        );
        {
            let b = rx.batch(usize::MAX);
            let got: Vec<&[u8]> = b.frames().map(|f| f.data).collect();
            assert_eq!(got, [b"alpha".as_ref(), b"beta", b"gamma"]);
        }
        let after = bytes_of(&rx);
        assert_eq!(
            u32::from_le_bytes(after[8..12].try_into().unwrap()),
            0,
            "block back to the kernel"
        );
        assert!(rx.batch(usize::MAX).is_empty());
        assert_eq!(rx.next, 1);
    }
}
