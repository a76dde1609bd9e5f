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
        /// What the parser said.
        reason: String,
    },
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
}

impl State {
    fn block(&mut self, block: PcapBlockOwned<'_>, f: &mut dyn FnMut(&Record<'_>)) {
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
                let (link, resol, toff) = match self.ifaces.get(epb.if_id as usize) {
                    Some(i) => (i.link, i.resol, i.offset),
                    None => (LinkType::Ethernet, 1_000_000, 0),
                };
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
                let link = self.ifaces.first().map_or(LinkType::Ethernet, |i| i.link);
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

/// Captures up to this size are read whole and parsed in place, with exact
/// error offsets; larger ones are streamed through a 1 MiB buffer (for a
/// 124 MB capture, reading it whole cost as much in page faults as it saved
/// in copying).
const IN_MEMORY: u64 = 8 << 20;

/// Read every packet record, calling `f` for each. Returns how many were
/// read. On a corrupt or truncated file the records before the damage have
/// been delivered when the error comes back.
pub fn read(path: &Path, mut f: impl FnMut(&Record<'_>)) -> Result<u64, CaptureError> {
    let p = path.display().to_string();
    let open = |e| CaptureError::Open {
        path: p.clone(),
        source: e,
    };
    let len = std::fs::metadata(path).map_err(open)?.len();
    if len > IN_MEMORY {
        return read_stream(path, &mut f);
    }
    let data = std::fs::read(path).map_err(open)?;
    read_slice(&p, &data, &mut f)
}

/// Parse a capture held in memory.
pub fn read_slice(
    p: &str,
    data: &[u8],
    f: &mut dyn FnMut(&Record<'_>),
) -> Result<u64, CaptureError> {
    let mut st = State::default();
    let corrupt = |st: &State, rem: &[u8], reason: String| CaptureError::Corrupt {
        path: p.to_string(),
        offset: (data.len() - rem.len()) as u64,
        records: st.index,
        reason,
    };
    let describe = |e: nom::Err<PcapError<&[u8]>>| match e {
        nom::Err::Incomplete(_) => "the last record is cut short".to_string(),
        nom::Err::Error(e) | nom::Err::Failure(e) => match e {
            PcapError::UnexpectedEof | PcapError::Incomplete(_) => {
                "the last record is cut short".to_string()
            }
            other => format!("{other:?}"),
        },
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
                    return Err(corrupt(&st, rem, format!("block length {len} is under 12")));
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
                    Err(e) => return Err(corrupt(&st, rem, describe(e))),
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
                parse_pcap_header(data).map_err(|e| corrupt(&st, data, describe(e)))?;
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
                    Err(e) => return Err(corrupt(&st, rem, describe(e))),
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
fn read_stream(path: &Path, f: &mut dyn FnMut(&Record<'_>)) -> Result<u64, CaptureError> {
    let p = path.display().to_string();
    let file = File::open(path).map_err(|e| CaptureError::Open {
        path: p.clone(),
        source: e,
    })?;
    let mut reader = match create_reader(1 << 20, file) {
        Ok(r) => r,
        Err(_) => return Err(CaptureError::NotCapture { path: p }),
    };
    let mut st = State::default();
    let mut offset = 0u64;
    let mut stalled = 0;
    let ng = reader.data().starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]);
    let mut be = false;
    loop {
        if ng {
            let rem = reader.data();
            if rem.len() >= 12 && rem[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
                be = rem[8..12] == [0x1a, 0x2b, 0x3c, 0x4d];
            }
            if let Some(len) = short_block(rem, be) {
                return Err(CaptureError::Corrupt {
                    path: p,
                    offset,
                    records: st.index,
                    reason: format!("block length {len} is under 12"),
                });
            }
        }
        match reader.next() {
            Ok((len, block)) => {
                stalled = 0;
                st.block(block, f);
                offset += len as u64;
                reader.consume(len);
            }
            Err(PcapError::Eof) => return Ok(st.index),
            Err(PcapError::Incomplete(_)) => {
                // More bytes are needed: read them; if none come, the file
                // ends inside a record.
                stalled += 1;
                if reader.refill().is_err() || stalled > 2 {
                    return Err(CaptureError::Corrupt {
                        path: p,
                        offset,
                        records: st.index,
                        reason: "the last record is cut short".into(),
                    });
                }
            }
            Err(e) => {
                return Err(CaptureError::Corrupt {
                    path: p,
                    offset,
                    records: st.index,
                    reason: format!("{e:?}"),
                })
            }
        }
    }
}
