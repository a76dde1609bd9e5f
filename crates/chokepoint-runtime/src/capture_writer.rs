//! Writing capture files: the one pcap/pcapng writer of the workspace,
//! beside the reader in [`capture`](crate::capture). Replay's pass/drop
//! files, the traffic generator and the bundled sample all go through it,
//! and `capture::read` (and tshark) read what it writes.
//!
//! Timestamps are nanoseconds since the epoch, as `capture::Record` gives
//! them. Nanosecond pcap and pcapng keep them exactly: injected frames
//! carry their trigger's time, and only exact times keep them in order.
//! Microsecond pcap, the format every old tool reads, truncates them.

use std::io::{self, Write};

use chokepoint_core::LinkType;

/// Which container to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap, microsecond timestamps (magic `a1b2c3d4`).
    PcapMicros,
    /// Classic pcap, nanosecond timestamps (magic `a1b23c4d`).
    PcapNanos,
    /// pcapng, one interface per link type, nanosecond timestamps
    /// (`if_tsresol` 9).
    Pcapng,
}

/// Snapshot length written in a pcap header: the largest a libpcap
/// capture uses, so no reader takes a frame for truncated.
const PCAP_SNAPLEN: u32 = 262_144;

/// A capture writer over `W`, little-endian. The file header is written
/// with the first frame (classic pcap takes its link type from it) or by
/// [`finish`](Writer::finish) if no frame came, so an empty capture is
/// still a valid file.
pub struct Writer<W: Write> {
    w: W,
    format: Format,
    /// Link types of the interfaces described so far: the pcap header's
    /// one, or pcapng's interface blocks in order (the index is the
    /// interface ID).
    links: Vec<LinkType>,
    /// The file header (pcap header, pcapng section header) is out.
    started: bool,
}

impl<W: Write> Writer<W> {
    /// A writer of `format` to `w`; nothing is written yet.
    pub fn new(w: W, format: Format) -> Writer<W> {
        Writer {
            w,
            format,
            links: Vec::new(),
            started: false,
        }
    }

    /// Append one frame captured on `link` at `ts` nanoseconds. Classic
    /// pcap holds one link type: a frame of another is refused
    /// (`InvalidInput`); pcapng describes a new interface for it.
    pub fn write(&mut self, link: LinkType, ts: u64, frame: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frame.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
        match self.format {
            Format::PcapMicros | Format::PcapNanos => {
                match self.links.first() {
                    None => self.pcap_header(link)?,
                    Some(&l) if l != link => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("a pcap file holds one link type: {link:?} after {l:?}"),
                        ))
                    }
                    Some(_) => {}
                }
                let sub = if self.format == Format::PcapNanos {
                    ts % 1_000_000_000
                } else {
                    ts % 1_000_000_000 / 1000
                };
                // The seconds field is 32 bits: good until 2106.
                self.w
                    .write_all(&((ts / 1_000_000_000) as u32).to_le_bytes())?;
                self.w.write_all(&(sub as u32).to_le_bytes())?;
                self.w.write_all(&len.to_le_bytes())?;
                self.w.write_all(&len.to_le_bytes())?;
                self.w.write_all(frame)
            }
            Format::Pcapng => {
                if !self.started {
                    self.pcapng_section()?;
                }
                let iface = match self.links.iter().position(|&l| l == link) {
                    Some(i) => i,
                    None => self.pcapng_interface(link)?,
                };
                // Enhanced Packet Block: interface, timestamp (high, low
                // 32 bits), captured and original length, data, padding.
                let pad = (4 - frame.len() % 4) % 4;
                let total = 32 + frame.len() + pad;
                let total = u32::try_from(total)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
                let mut head = [0u8; 28];
                head[..4].copy_from_slice(&6u32.to_le_bytes());
                head[4..8].copy_from_slice(&total.to_le_bytes());
                head[8..12].copy_from_slice(&(iface as u32).to_le_bytes());
                head[12..16].copy_from_slice(&((ts >> 32) as u32).to_le_bytes());
                head[16..20].copy_from_slice(&(ts as u32).to_le_bytes());
                head[20..24].copy_from_slice(&len.to_le_bytes());
                head[24..28].copy_from_slice(&len.to_le_bytes());
                self.w.write_all(&head)?;
                self.w.write_all(frame)?;
                self.w.write_all(&[0; 3][..pad])?;
                self.w.write_all(&total.to_le_bytes())
            }
        }
    }

    /// Write the header if no frame did (Ethernet then), flush, and give
    /// the inner writer back.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.started {
            match self.format {
                Format::PcapMicros | Format::PcapNanos => self.pcap_header(LinkType::Ethernet)?,
                Format::Pcapng => self.pcapng_section()?,
            }
        }
        self.w.flush()?;
        Ok(self.w)
    }

    fn pcap_header(&mut self, link: LinkType) -> io::Result<()> {
        let magic: u32 = match self.format {
            Format::PcapNanos => 0xa1b2_3c4d,
            _ => 0xa1b2_c3d4,
        };
        let mut h = [0u8; 24];
        h[..4].copy_from_slice(&magic.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs: zero, as every writer sets them.
        h[16..20].copy_from_slice(&PCAP_SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&link.to_dlt().to_le_bytes());
        self.w.write_all(&h)?;
        self.links.push(link);
        self.started = true;
        Ok(())
    }

    /// A Section Header Block: byte-order magic, version 1.0, section
    /// length unknown (-1).
    fn pcapng_section(&mut self) -> io::Result<()> {
        let mut b = [0u8; 28];
        b[..4].copy_from_slice(&0x0a0d_0d0au32.to_le_bytes());
        b[4..8].copy_from_slice(&28u32.to_le_bytes());
        b[8..12].copy_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        b[12..14].copy_from_slice(&1u16.to_le_bytes());
        b[16..24].copy_from_slice(&(-1i64).to_le_bytes());
        b[24..28].copy_from_slice(&28u32.to_le_bytes());
        self.w.write_all(&b)?;
        self.started = true;
        Ok(())
    }

    /// An Interface Description Block for `link`: snaplen 0 (no limit),
    /// option `if_tsresol` = 9 (nanoseconds), end of options. Returns the
    /// new interface's ID.
    fn pcapng_interface(&mut self, link: LinkType) -> io::Result<usize> {
        let dlt = u16::try_from(link.to_dlt())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "link type over 65535"))?;
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&1u32.to_le_bytes());
        b[4..8].copy_from_slice(&32u32.to_le_bytes());
        b[8..10].copy_from_slice(&dlt.to_le_bytes());
        // reserved (2) and snaplen (4) stay zero
        b[16..18].copy_from_slice(&9u16.to_le_bytes());
        b[18..20].copy_from_slice(&1u16.to_le_bytes());
        b[20] = 9;
        // 3 bytes of padding, then opt_endofopt (4 zero bytes)
        b[28..32].copy_from_slice(&32u32.to_le_bytes());
        self.w.write_all(&b)?;
        self.links.push(link);
        Ok(self.links.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::read_slice;

    /// Every record of a capture in memory: (link, ts, data).
    fn read_back(bytes: &[u8]) -> Vec<(LinkType, u64, Vec<u8>)> {
        let mut got = Vec::new();
        read_slice("mem", bytes, &mut |r| {
            assert_eq!(r.orig_len as usize, r.data.len());
            got.push((r.link, r.ts, r.data.to_vec()))
        })
        .unwrap();
        got
    }

    const TS: [u64; 3] = [1_700_000_000_123_456_789, 1_700_000_000_123_456_790, 5];

    #[test]
    fn each_format_reads_back_with_its_resolution() {
        let frames: Vec<Vec<u8>> = vec![vec![1; 60], vec![2; 61], vec![3; 1]];
        for format in [Format::PcapMicros, Format::PcapNanos, Format::Pcapng] {
            let mut w = Writer::new(Vec::new(), format);
            for (ts, f) in TS.iter().zip(&frames) {
                w.write(LinkType::Raw, *ts, f).unwrap();
            }
            let bytes = w.finish().unwrap();
            let got = read_back(&bytes);
            assert_eq!(got.len(), 3, "{format:?}");
            for ((link, ts, data), (want_ts, want)) in got.iter().zip(TS.iter().zip(&frames)) {
                assert_eq!((link, data), (&LinkType::Raw, want), "{format:?}");
                let want_ts = if format == Format::PcapMicros {
                    want_ts / 1000 * 1000
                } else {
                    *want_ts
                };
                assert_eq!(*ts, want_ts, "{format:?}");
            }
        }
    }

    #[test]
    fn pcapng_takes_several_link_types_pcap_refuses_them() {
        let mut w = Writer::new(Vec::new(), Format::Pcapng);
        w.write(LinkType::Ethernet, 1, &[0xee; 20]).unwrap();
        w.write(LinkType::LinuxSll2, 2, &[0x55; 30]).unwrap();
        w.write(LinkType::Ethernet, 3, &[0xef; 20]).unwrap();
        let got = read_back(&w.finish().unwrap());
        let links: Vec<LinkType> = got.iter().map(|g| g.0).collect();
        assert_eq!(
            links,
            [LinkType::Ethernet, LinkType::LinuxSll2, LinkType::Ethernet]
        );
        let mut p = Writer::new(Vec::new(), Format::PcapNanos);
        p.write(LinkType::Ethernet, 1, &[0; 20]).unwrap();
        let e = p.write(LinkType::Raw, 2, &[0x45; 20]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn an_empty_capture_is_still_a_valid_file() {
        for format in [Format::PcapMicros, Format::PcapNanos, Format::Pcapng] {
            let bytes = Writer::new(Vec::new(), format).finish().unwrap();
            assert!(!bytes.is_empty());
            assert!(read_back(&bytes).is_empty(), "{format:?}");
        }
    }
}
