//! Capture files: pcap (micro- and nanosecond) and pcapng, told apart by
//! magic number, not by extension (several published `.pcap` files are
//! pcapng). Container parsing is `pcap-parser`'s.

use std::fs::File;
use std::path::Path;

use chokepoint_core::LinkType;
use pcap_parser::nom;
use pcap_parser::pcap::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_header};
use pcap_parser::pcapng::{parse_block_be, parse_block_le, Block};
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};

pub use crate::capture_writer::{Format, Writer};

/// One packet record.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// 1-based index among packet records.
    pub index: u64,
    /// Nanoseconds since the epoch.
    pub ts: u64,
    /// The record's link type (its interface's, in pcapng).
    pub link: LinkType,
    /// The captured bytes.
    pub data: &'a [u8],
    /// Length on the wire (may exceed `data` when the snaplen cut it).
    pub orig_len: u32,
}

/// Why a capture could not be read (to the end).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Open {
        /// The capture file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An output of the replay (events, pass or drop capture) could not
    /// be written; the writer's error names its file.
    #[error("{source}")]
    Output {
        /// The I/O error.
        source: std::io::Error,
    },
    /// Neither pcap nor pcapng.
    #[error("{path}: not a pcap or pcapng file (unknown magic number)")]
    NotCapture {
        /// The file.
        path: String,
    },
    /// A record or block does not parse.
    #[error("{path}: capture is truncated or corrupt at byte offset {offset}, after {records} packet records: {reason}")]
    Corrupt {
        /// The capture file.
        path: String,
        /// Byte offset of the bad record.
        offset: u64,
        /// Packet records read before it.
        records: u64,
        /// What the parser said, cut to [`MAX_REASON`] bytes.
        reason: String,
    },
    /// A block larger than the streaming reader holds: valid perhaps, but
    /// holding it would take more memory than any packet is worth.
    #[error("{path}: block of {size} bytes at byte offset {offset}, after {records} packet records, is larger than the {limit} bytes the reader holds for one block")]
    BlockTooLarge {
        /// The capture file.
        path: String,
        /// Byte offset of the block.
        offset: u64,
        /// Its length as its header gives it.
        size: u64,
        /// [`ReadOptions::max_block`].
        limit: usize,
        /// Packet records read before it.
        records: u64,
    },
}

/// Packet records passed over, each counted by why, so that no record a
/// capture holds goes unaccounted. A skipped record still takes its index:
/// indices stay the frame numbers other tools show.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// pcapng packets on an interface that no Interface Description Block
    /// of their section declared. Their link type is unknown, and guessing
    /// (Ethernet, say) would hand the policy garbage to decide on.
    pub undeclared_interface: u64,
}

impl Skipped {
    /// All skipped records.
    pub fn total(&self) -> u64 {
        self.undeclared_interface
    }
}

struct Iface {
    link: LinkType,
    /// Timestamp units per second.
    resol: u64,
    offset: i64,
}

/// Per-file state: link type of a legacy file, interfaces of a pcapng
/// section, records so far.
#[derive(Default)]
struct State {
    legacy: Option<(LinkType, bool)>,
    ifaces: Vec<Iface>,
    index: u64,
    skipped: Skipped,
}

impl State {
    fn block<'a>(&mut self, block: PcapBlockOwned<'a>, f: &mut dyn FnMut(&Record<'a>)) {
        match block {
            PcapBlockOwned::LegacyHeader(h) => {
                self.legacy = Some((
                    LinkType::from_dlt(h.network.0 as u32),
                    h.is_nanosecond_precision(),
                ));
            }
            PcapBlockOwned::Legacy(b) => {
                let (link, nano) = self.legacy.unwrap_or((LinkType::Ethernet, false));
                self.index += 1;
                let sub = if nano {
                    u64::from(b.ts_usec)
                } else {
                    u64::from(b.ts_usec) * 1000
                };
                let data = &b.data[..(b.caplen as usize).min(b.data.len())];
                f(&Record {
                    index: self.index,
                    ts: u64::from(b.ts_sec) * 1_000_000_000 + sub,
                    link,
                    data,
                    orig_len: b.origlen,
                });
            }
            PcapBlockOwned::NG(Block::SectionHeader(_)) => self.ifaces.clear(),
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => self.ifaces.push(Iface {
                link: LinkType::from_dlt(idb.linktype.0 as u32),
                resol: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                offset: idb.if_tsoffset,
            }),
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                self.index += 1;
                let Some(i) = self.ifaces.get(epb.if_id as usize) else {
                    self.skipped.undeclared_interface += 1;
                    return;
                };
                let (link, resol, toff) = (i.link, i.resol, i.offset);
                let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                let ns = (u128::from(units) * 1_000_000_000 / u128::from(resol)) as u64;
                let ts = ns.saturating_add_signed(toff.saturating_mul(1_000_000_000));
                let data = &epb.data[..(epb.caplen as usize).min(epb.data.len())];
                f(&Record {
                    index: self.index,
                    ts,
                    link,
                    data,
                    orig_len: epb.origlen,
                });
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                self.index += 1;
                // A Simple Packet Block is on interface 0.
                let Some(link) = self.ifaces.first().map(|i| i.link) else {
                    self.skipped.undeclared_interface += 1;
                    return;
                };
                let n = (spb.origlen as usize).min(spb.data.len());
                f(&Record {
                    index: self.index,
                    ts: 0,
                    link,
                    data: &spb.data[..n],
                    orig_len: spb.origlen,
                });
            }
            _ => {}
        }
    }
}

/// The largest block the streaming reader grows its buffer to by default.
/// Packet blocks are at most a snaplen (256 KiB in libpcap) plus options;
/// the big ones are Decryption Secrets Blocks holding a whole session's TLS
/// keys, megabytes at most. Past this a block is refused, not allocated:
/// a corrupt length field must not make the reader take gigabytes.
pub const MAX_BLOCK: usize = 64 << 20;

/// Captures up to this size are memory-mapped and parsed in place, with
/// exact error offsets and no copy (the default: every file that can be
/// mapped); larger ones, and what cannot be mapped (a pipe, stdin), are
/// streamed through a buffer of 1 MiB that grows for larger blocks.
pub const IN_MEMORY: u64 = u64::MAX;

/// The streaming reader's first buffer; it grows for bigger blocks.
const STREAM_BUFFER: usize = 1 << 20;

/// Error reasons are cut to this many bytes: a parser error can carry the
/// whole rest of the input, and a corrupt 22 MB capture once produced a
/// 22 MB message.
pub const MAX_REASON: usize = 200;

/// How [`read_with`] reads a capture; [`read`] uses the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Files up to this size are memory-mapped, larger ones streamed
    /// (default [`IN_MEMORY`]: every file; 0 streams every file, as tests
    /// do to take the streaming path).
    pub in_memory_max: u64,
    /// The largest block the streaming reader holds (default
    /// [`MAX_BLOCK`]); a larger one is [`CaptureError::BlockTooLarge`].
    pub max_block: usize,
}

impl Default for ReadOptions {
    fn default() -> ReadOptions {
        ReadOptions {
            in_memory_max: IN_MEMORY,
            max_block: MAX_BLOCK,
        }
    }
}

/// `reason` cut to [`MAX_REASON`] bytes at a character boundary.
fn cut(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut at = MAX_REASON;
        while !reason.is_char_boundary(at) {
            at -= 1;
        }
        let dropped = reason.len() - at;
        reason.truncate(at);
        reason.push_str(&format!("…({dropped} bytes cut)"));
    }
    reason
}

/// What a parser error says, without the input it carries (the rest of the
/// file, which is where the 22 MB came from).
fn describe<I>(e: &PcapError<I>) -> String {
    match e {
        PcapError::UnexpectedEof | PcapError::Incomplete(_) => {
            "the last record is cut short".to_string()
        }
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("parse error ({kind:?})")
        }
        PcapError::Eof => "unexpected end of file".to_string(),
        PcapError::BufferTooSmall => "a block is larger than the read buffer".to_string(),
        PcapError::ReadError => "read error".to_string(),
        PcapError::HeaderNotRecognized => "header not recognized as pcap or pcapng".to_string(),
    }
}

/// `reason`, and the first bytes at the failure (a block's type and
/// length, a record's header), which say more than the parser does.
fn with_head(reason: String, at: &[u8]) -> String {
    if at.is_empty() {
        return reason;
    }
    let shown: Vec<String> = at.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let more = if at.len() > 16 { " …" } else { "" };
    format!("{reason}; bytes there: {}{more}", shown.join(" "))
}

/// The path that means standard input (`replay -`).
pub const STDIN: &str = "-";

/// Read every packet record, calling `f` for each. Returns how many the
/// file holds (skipped ones included). On a corrupt or truncated file the
/// records before the damage have been delivered when the error comes back.
pub fn read(path: &Path, mut f: impl FnMut(&Record<'_>)) -> Result<u64, CaptureError> {
    read_with(
        path,
        &ReadOptions::default(),
        &mut Skipped::default(),
        &mut f,
    )
}

/// [`read`] with options, counting the records it passes over in `skipped`
/// (also when an error comes back).
pub fn read_with(
    path: &Path,
    opts: &ReadOptions,
    skipped: &mut Skipped,
    f: &mut dyn FnMut(&Record<'_>),
) -> Result<u64, CaptureError> {
    let p = path.display().to_string();
    let open = |e| CaptureError::Open {
        path: p.clone(),
        source: e,
    };
    let mut st = State::default();
    if path.as_os_str() == STDIN {
        // Standard input is streamed, like a large file: never held whole.
        let res = read_stream(&p, Box::new(std::io::stdin()), opts, &mut st, f);
        *skipped = st.skipped;
        return res;
    }
    let len = std::fs::metadata(path).map_err(open)?.len();
    let mapped = if len <= opts.in_memory_max {
        map(path)?
    } else {
        None
    };
    let res = match &mapped {
        // A record's bytes are done with when `f` returns.
        Some(m) => parse_slice(&p, m, &mut st, &mut |rec| {
            f(rec);
            m.release_before(m.offset_after(rec.data));
        }),
        None => match File::open(path) {
            Ok(file) => read_stream(&p, Box::new(file), opts, &mut st, f),
            Err(e) => Err(open(e)),
        },
    };
    *skipped = st.skipped;
    res
}

/// A capture file mapped into memory, read in place.
///
/// Pages come in as the reader reaches them (sequential read-ahead) and go
/// again once every record in them is done ([`Mapped::release_before`]),
/// so replaying a capture holds a window of it in memory, not the whole
/// file: memory follows what is being read, not the capture's size.
pub struct Mapped {
    map: memmap2::Mmap,
    /// Bytes from the start already let go of (a multiple of the page size).
    released: std::sync::atomic::AtomicUsize,
}

/// Bytes the reader moves past before [`Mapped::release_before`] lets go of
/// them: one system call per this much of the capture.
const RELEASE_STEP: usize = 8 << 20;

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl Mapped {
    /// The reader is done with every byte before `offset`: drop those
    /// pages from this process (they stay in the page cache; reading them
    /// again, which nothing does, would fault them back in unchanged).
    /// Acts once per [`RELEASE_STEP`].
    pub fn release_before(&self, offset: usize) {
        use std::sync::atomic::Ordering;
        let page = page_size();
        let upto = offset.min(self.map.len()) / page * page;
        let done = self.released.load(Ordering::Relaxed);
        if upto < done.saturating_add(RELEASE_STEP) {
            return;
        }
        // SAFETY: the mapping is a read-only private mapping of a file
        // (`Mmap`, never written through): MADV_DONTNEED only unmaps its
        // pages, and a later read faults the file's bytes back in, so no
        // reference into it ever sees other bytes than before (the zero
        // fill that makes DontNeed unsafe applies to anonymous or written
        // private pages, which this mapping has none of). `done` and
        // `upto` are page multiples within the mapping.
        let _ = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, done, upto - done)
        };
        self.released.store(upto, Ordering::Relaxed);
    }

    /// Where `data`, a record's bytes borrowed from this mapping, ends.
    pub fn offset_after(&self, data: &[u8]) -> usize {
        (data.as_ptr() as usize + data.len()).saturating_sub(self.map.as_ptr() as usize)
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Map `path` (`None` when it cannot be mapped: not a regular file, say;
/// it is then streamed).
pub fn map(path: &Path) -> Result<Option<Mapped>, CaptureError> {
    if path.as_os_str() == STDIN {
        return Ok(None);
    }
    let file = File::open(path).map_err(|e| CaptureError::Open {
        path: path.display().to_string(),
        source: e,
    })?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    // SAFETY: the mapping is only read. A capture truncated or rewritten
    // by another process while it is read would show changed bytes, or
    // fault (SIGBUS) past a truncation, as with any mmap reader; captures
    // are not files being written when they are replayed.
    // Not populated up front: that would make the whole file resident at
    // once. Read ahead sequentially instead, and released behind.
    match unsafe { memmap2::MmapOptions::new().map(&file) } {
        Ok(m) => {
            let _ = m.advise(memmap2::Advice::Sequential);
            Ok(Some(Mapped {
                map: m,
                released: Default::default(),
            }))
        }
        Err(_) => Ok(None),
    }
}

/// [`read_with`] over a capture already in memory (a [`Mapped`] file):
/// each record's bytes borrow `data` itself, so they may be kept (and
/// handed to other threads) for as long as `data` lives.
pub fn read_in_place<'a>(
    p: &str,
    data: &'a [u8],
    skipped: &mut Skipped,
    f: &mut dyn FnMut(&Record<'a>),
) -> Result<u64, CaptureError> {
    let mut st = State::default();
    let res = parse_slice(p, data, &mut st, f);
    *skipped = st.skipped;
    res
}

/// Parse a capture held in memory.
pub fn read_slice(
    p: &str,
    data: &[u8],
    f: &mut dyn FnMut(&Record<'_>),
) -> Result<u64, CaptureError> {
    parse_slice(p, data, &mut State::default(), f)
}

fn parse_slice<'a>(
    p: &str,
    data: &'a [u8],
    st: &mut State,
    f: &mut dyn FnMut(&Record<'a>),
) -> Result<u64, CaptureError> {
    let corrupt = |st: &State, rem: &[u8], reason: String| CaptureError::Corrupt {
        path: p.to_string(),
        offset: (data.len() - rem.len()) as u64,
        records: st.index,
        reason: cut(with_head(reason, rem)),
    };
    let describe = |e: nom::Err<PcapError<&[u8]>>| match e {
        nom::Err::Incomplete(_) => "the last record is cut short".to_string(),
        nom::Err::Error(e) | nom::Err::Failure(e) => describe(&e),
    };
    match data.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => {
            let mut rem = data;
            let mut be = false;
            while !rem.is_empty() {
                if rem.len() >= 12 && rem[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
                    be = rem[8..12] == [0x1a, 0x2b, 0x3c, 0x4d];
                }
                if let Some(len) = short_block(rem, be) {
                    return Err(corrupt(st, rem, format!("block length {len} is under 12")));
                }
                let parsed = if be {
                    parse_block_be(rem)
                } else {
                    parse_block_le(rem)
                };
                match parsed {
                    Ok((r, b)) => {
                        st.block(PcapBlockOwned::NG(b), f);
                        rem = r;
                    }
                    Err(e) => return Err(corrupt(st, rem, describe(e))),
                }
            }
        }
        Some(m)
            if [
                [0xd4, 0xc3, 0xb2, 0xa1],
                [0xa1, 0xb2, 0xc3, 0xd4],
                [0x4d, 0x3c, 0xb2, 0xa1],
                [0xa1, 0xb2, 0x3c, 0x4d],
            ]
            .iter()
            .any(|x| x == m) =>
        {
            let (mut rem, h) =
                parse_pcap_header(data).map_err(|e| corrupt(st, data, describe(e)))?;
            let be = h.is_bigendian();
            st.block(PcapBlockOwned::LegacyHeader(h), f);
            while !rem.is_empty() {
                let parsed = if be {
                    parse_pcap_frame_be(rem)
                } else {
                    parse_pcap_frame(rem)
                };
                match parsed {
                    Ok((r, b)) => {
                        st.block(PcapBlockOwned::Legacy(b), f);
                        rem = r;
                    }
                    Err(e) => return Err(corrupt(st, rem, describe(e))),
                }
            }
        }
        _ => {
            return Err(CaptureError::NotCapture {
                path: p.to_string(),
            })
        }
    }
    Ok(st.index)
}

/// The length field of the pcapng block at the start of `rem`, if it is
/// under the 12 bytes every block has. pcap-parser 0.17 subtracts 12 from
/// a Process Information Block's length before checking it (an overflow
/// panic where overflow checks are on, a misparse elsewhere), so such a
/// block is refused before it gets there.
fn short_block(rem: &[u8], be: bool) -> Option<u32> {
    let b: [u8; 4] = rem.get(4..8)?.try_into().ok()?;
    let len = if be {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    };
    (len < 12).then_some(len)
}

/// Stream a capture too large to hold (pcap-parser's buffered reader).
/// The buffer starts at 1 MiB and grows to hold a larger block, up to
/// `opts.max_block`.
fn read_stream(
    p: &str,
    file: Box<dyn std::io::Read + Send>,
    opts: &ReadOptions,
    st: &mut State,
    f: &mut dyn FnMut(&Record<'_>),
) -> Result<u64, CaptureError> {
    let p = p.to_string();
    let mut capacity = STREAM_BUFFER;
    let mut reader = match create_reader(capacity, file) {
        Ok(r) => r,
        Err(_) => return Err(CaptureError::NotCapture { path: p }),
    };
    let mut offset = 0u64;
    let mut stalled = 0;
    // How to read a block's length from its header when it does not fit:
    // legacy record or pcapng block, and the byte order.
    let (mut legacy, mut be) = (false, false);
    let corrupt = |st: &State, offset, reason: String| CaptureError::Corrupt {
        path: p.clone(),
        offset,
        records: st.index,
        reason: cut(reason),
    };
    let ng = reader.data().starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]);
    loop {
        if ng {
            let rem = reader.data();
            if rem.len() >= 12 && rem[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
                be = rem[8..12] == [0x1a, 0x2b, 0x3c, 0x4d];
            }
            if let Some(len) = short_block(rem, be) {
                return Err(corrupt(
                    st,
                    offset,
                    format!("block length {len} is under 12"),
                ));
            }
        }
        match reader.next() {
            Ok((len, block)) => {
                stalled = 0;
                match &block {
                    PcapBlockOwned::LegacyHeader(h) => (legacy, be) = (true, h.is_bigendian()),
                    PcapBlockOwned::NG(Block::SectionHeader(shb)) => be = shb.big_endian(),
                    _ => {}
                }
                st.block(block, f);
                offset += len as u64;
                reader.consume(len);
            }
            Err(PcapError::Eof) => return Ok(st.index),
            Err(PcapError::BufferTooSmall) => {
                // The next block does not fit: grow the buffer to hold it
                // (at least doubling, so odd sizes do not grow it in
                // steps), unless it is over the limit.
                let size = block_len(reader.data(), legacy, be);
                let want = (capacity * 2)
                    .max(size.map_or(0, |n| n as usize + 64))
                    .min(opts.max_block);
                if want <= capacity || size.is_some_and(|n| n >= want as u64) {
                    return Err(CaptureError::BlockTooLarge {
                        path: p,
                        offset,
                        size: size.unwrap_or(0),
                        limit: opts.max_block,
                        records: st.index,
                    });
                }
                reader.grow(want);
                capacity = want;
                if reader.refill().is_err() {
                    return Err(corrupt(st, offset, "read error".into()));
                }
            }
            Err(PcapError::Incomplete(_)) => {
                // More bytes are needed: read them; if none come, the file
                // ends inside a record. A read that brings some is
                // progress, however short (a large block may take several).
                let had = reader.data().len();
                let refilled = reader.refill().is_ok();
                stalled = if reader.data().len() > had {
                    0
                } else {
                    stalled + 1
                };
                if !refilled || stalled > 2 {
                    return Err(corrupt(st, offset, "the last record is cut short".into()));
                }
            }
            Err(e) => {
                let reason = with_head(describe(&e), reader.data());
                return Err(corrupt(st, offset, reason));
            }
        }
    }
}

/// The length of the block or record at the start of `data`, from its
/// header: a pcapng block's total length, or a legacy record's 16-byte
/// header plus its captured length.
fn block_len(data: &[u8], legacy: bool, be: bool) -> Option<u64> {
    let field = |at: usize| -> Option<u64> {
        let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }))
    };
    if legacy {
        field(8).map(|caplen| caplen + 16)
    } else {
        field(4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        assert_eq!(cut("short".into()), "short");
        let long = "я".repeat(150); // 300 bytes
        let c = cut(long);
        assert!(c.starts_with(&"я".repeat(100)), "{c}");
        assert!(c.ends_with("…(100 bytes cut)"), "{c}");
        let odd = format!("x{}", "я".repeat(150));
        assert!(cut(odd).ends_with("…(102 bytes cut)"));
    }
}
