//! Capture files: pcap (micro- and nanosecond) and pcapng, told apart by
//! magic number, not by extension (several published `.pcap` files are
//! pcapng). Container parsing is `pcap-parser`'s.

use std::fs::File;
use std::path::Path;

use chokepoint_core::LinkType;
use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};

/// One packet record.
pub struct Record<'a> {
    /// 1-based index among packet records.
    pub index: u64,
    /// Nanoseconds since the epoch.
    pub ts: u64,
    pub link: LinkType,
    pub data: &'a [u8],
    /// Length on the wire (may exceed `data` when the snaplen cut it).
    pub orig_len: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file (unknown magic number)")]
    NotCapture { path: String },
    #[error("{path}: capture is truncated or corrupt at byte offset {offset}, after {records} packet records: {reason}")]
    Corrupt {
        path: String,
        offset: u64,
        records: u64,
        reason: String,
    },
}

struct Iface {
    link: LinkType,
    /// Timestamp units per second.
    resol: u64,
    offset: i64,
}

/// Read every packet record, calling `f` for each. Returns how many were
/// read. On a corrupt or truncated file the records before the damage have
/// been delivered when the error comes back.
pub fn read(path: &Path, mut f: impl FnMut(&Record<'_>)) -> Result<u64, CaptureError> {
    let p = path.display().to_string();
    let file = File::open(path).map_err(|e| CaptureError::Open {
        path: p.clone(),
        source: e,
    })?;
    let mut reader = match create_reader(1 << 20, file) {
        Ok(r) => r,
        Err(_) => return Err(CaptureError::NotCapture { path: p }),
    };
    let mut legacy: Option<(LinkType, bool)> = None;
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut index = 0u64;
    let mut offset = 0u64;
    let mut stalled = 0;
    loop {
        match reader.next() {
            Ok((len, block)) => {
                stalled = 0;
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy = Some((
                            LinkType::from_dlt(h.network.0 as u32),
                            h.is_nanosecond_precision(),
                        ));
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let (link, nano) = legacy.unwrap_or((LinkType::Ethernet, false));
                        index += 1;
                        let sub = if nano {
                            u64::from(b.ts_usec)
                        } else {
                            u64::from(b.ts_usec) * 1000
                        };
                        let data = &b.data[..(b.caplen as usize).min(b.data.len())];
                        f(&Record {
                            index,
                            ts: u64::from(b.ts_sec) * 1_000_000_000 + sub,
                            link,
                            data,
                            orig_len: b.origlen,
                        });
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => ifaces.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => ifaces.push(Iface {
                        link: LinkType::from_dlt(idb.linktype.0 as u32),
                        resol: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                        offset: idb.if_tsoffset,
                    }),
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        index += 1;
                        let (link, resol, toff) = match ifaces.get(epb.if_id as usize) {
                            Some(i) => (i.link, i.resol, i.offset),
                            None => (LinkType::Ethernet, 1_000_000, 0),
                        };
                        let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                        let ns = (u128::from(units) * 1_000_000_000 / u128::from(resol)) as u64;
                        let ts = ns.saturating_add_signed(toff.saturating_mul(1_000_000_000));
                        let data = &epb.data[..(epb.caplen as usize).min(epb.data.len())];
                        f(&Record {
                            index,
                            ts,
                            link,
                            data,
                            orig_len: epb.origlen,
                        });
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        index += 1;
                        let link = ifaces.first().map_or(LinkType::Ethernet, |i| i.link);
                        let n = (spb.origlen as usize).min(spb.data.len());
                        f(&Record {
                            index,
                            ts: 0,
                            link,
                            data: &spb.data[..n],
                            orig_len: spb.origlen,
                        });
                    }
                    _ => {}
                }
                offset += len as u64;
                reader.consume(len);
            }
            Err(PcapError::Eof) => return Ok(index),
            Err(PcapError::Incomplete(_)) => {
                // More bytes are needed: read them; if none come, the file
                // ends inside a record.
                stalled += 1;
                if reader.refill().is_err() || stalled > 2 {
                    return Err(CaptureError::Corrupt {
                        path: p,
                        offset,
                        records: index,
                        reason: "the last record is cut short".into(),
                    });
                }
            }
            Err(e) => {
                return Err(CaptureError::Corrupt {
                    path: p,
                    offset,
                    records: index,
                    reason: format!("{e:?}"),
                })
            }
        }
    }
}
