//! The capture reader on hand-built pcapng files: a block over the
//! streaming buffer, corrupt files (short error messages), and packets on
//! interfaces no Interface Description Block declared.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chokepoint_runtime::capture::{self, CaptureError, ReadOptions, Skipped};
use chokepoint_runtime::replay;

/// Little-endian pcapng, block by block.
#[derive(Default)]
struct Ng(Vec<u8>);

impl Ng {
    fn block(&mut self, kind: u32, body: &[u8]) -> &mut Ng {
        let pad = (4 - body.len() % 4) % 4;
        let len = (12 + body.len() + pad) as u32;
        self.0.extend_from_slice(&kind.to_le_bytes());
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(body);
        self.0.extend(std::iter::repeat_n(0, pad));
        self.0.extend_from_slice(&len.to_le_bytes());
        self
    }

    fn shb(&mut self) -> &mut Ng {
        let mut b = Vec::new();
        b.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(-1i64).to_le_bytes());
        self.block(0x0a0d_0d0a, &b)
    }

    /// An Ethernet interface.
    fn idb(&mut self) -> &mut Ng {
        let mut b = Vec::new();
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        self.block(1, &b)
    }

    fn epb(&mut self, iface: u32, n: u32) -> &mut Ng {
        let frame = frame(n);
        let mut b = Vec::new();
        b.extend_from_slice(&iface.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(&frame);
        self.block(6, &b)
    }

    fn spb(&mut self, n: u32) -> &mut Ng {
        let frame = frame(n);
        let mut b = (frame.len() as u32).to_le_bytes().to_vec();
        b.extend_from_slice(&frame);
        self.block(3, &b)
    }

    /// A Decryption Secrets Block (TLS key log) of `len` bytes of secrets.
    fn dsb(&mut self, len: usize) -> &mut Ng {
        let mut b = Vec::new();
        b.extend_from_slice(&0x544c_534bu32.to_le_bytes());
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend(std::iter::repeat_n(b'k', len));
        self.block(0x0a, &b)
    }
}

/// A 60-byte Ethernet frame carrying `n` in its payload.
fn frame(n: u32) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[56..60].copy_from_slice(&n.to_be_bytes());
    f
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "chokepoint-capture-hardening-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

const STREAM: ReadOptions = ReadOptions {
    in_memory_max: 0,
    max_block: capture::MAX_BLOCK,
};

/// The `n`s of the frames read, and the count `read_with` returned.
fn numbers(path: &Path, opts: &ReadOptions) -> (Vec<u32>, Result<u64, CaptureError>) {
    let mut got = Vec::new();
    let res = capture::read_with(path, opts, &mut Skipped::default(), &mut |r| {
        got.push(u32::from_be_bytes(r.data[56..60].try_into().unwrap()))
    });
    (got, res)
}

#[test]
fn a_block_over_the_stream_buffer_is_read_whole() {
    let mut ng = Ng::default();
    ng.shb().idb();
    for n in 0..3000 {
        ng.epb(0, n);
    }
    // 2 MiB of TLS keys between packets: twice the streaming buffer
    ng.dsb(2 << 20);
    for n in 3000..6000 {
        ng.epb(0, n);
    }
    let p = write("big-dsb.pcapng", &ng.0);
    let want: Vec<u32> = (0..6000).collect();
    for opts in [STREAM, ReadOptions::default()] {
        let (got, res) = numbers(&p, &opts);
        assert_eq!(res.unwrap(), 6000, "{opts:?}");
        assert!(got == want, "{opts:?}: {} frames", got.len());
    }

    // over the limit: a clear error naming the block's offset and size,
    // after every packet before it
    let small = ReadOptions {
        in_memory_max: 0,
        max_block: 3 << 19,
    };
    let (got, res) = numbers(&p, &small);
    assert_eq!(got.len(), 3000);
    let dsb_at = 28 + 20 + 3000 * 92;
    match res {
        Err(CaptureError::BlockTooLarge {
            offset,
            size,
            limit,
            records,
            ..
        }) => assert_eq!(
            (offset, size, limit, records),
            (dsb_at, 20 + (2 << 20), 3 << 19, 3000)
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_corrupt_length_is_refused_not_allocated() {
    // a header claiming a 1 GiB block, in a 3 MB file: over the default
    // limit, refused without taking the memory
    let mut ng = Ng::default();
    ng.shb().idb().epb(0, 1);
    let at = ng.0.len() as u64;
    ng.0.extend_from_slice(&6u32.to_le_bytes());
    ng.0.extend_from_slice(&(1u32 << 30).to_le_bytes());
    ng.0.resize(3 << 20, 0x5a);
    let p = write("huge-length.pcapng", &ng.0);
    let err = numbers(&p, &STREAM).1.unwrap_err();
    assert!(
        matches!(err, CaptureError::BlockTooLarge { offset, size, .. } if offset == at && size == 1 << 30),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("block of 1073741824 bytes at byte offset {at}")),
        "{msg}"
    );
}

#[test]
fn corrupt_captures_give_short_messages() {
    // After two good packets, a block declaring 8 bytes (12 is the least a
    // block can have), or one whose trailing length disagrees with its
    // leading one; then 3 MB of noise. The parser's error for the first
    // carries the rest of the input, 450 KB of message per 100 KB of file
    // before the fix; none of it may reach the message.
    let noise: Vec<u8> = (0..3_000_000u64).map(|i| (i * 7919 % 251) as u8).collect();
    let mut files = Vec::new();
    for (name, len2) in [
        ("short-block.pcapng", None),
        ("mismatch.pcapng", Some(7u32)),
    ] {
        let mut ng = Ng::default();
        ng.shb().idb().epb(0, 1).epb(0, 2);
        let at = ng.0.len();
        match len2 {
            None => {
                ng.0.extend_from_slice(&6u32.to_le_bytes());
                ng.0.extend_from_slice(&8u32.to_le_bytes());
            }
            Some(len2) => {
                ng.epb(0, 3);
                let end = ng.0.len();
                ng.0[end - 4..end].copy_from_slice(&len2.to_le_bytes());
            }
        }
        ng.0.extend_from_slice(&noise);
        files.push((write(name, &ng.0), at));
    }
    for (p, at) in &files {
        for opts in [ReadOptions::default(), STREAM] {
            let (got, res) = numbers(p, &opts);
            assert_eq!(got, vec![1, 2], "{opts:?}");
            let msg = res.unwrap_err().to_string();
            let show = &msg[..msg.len().min(300)];
            assert!(msg.len() < 1024, "{opts:?}: {} bytes: {show}", msg.len());
            assert!(msg.contains("after 2 packet records"), "{show}");
            assert!(
                msg.contains(&format!("byte offset {at}")),
                "{opts:?}: {show}"
            );
            // A block length under 12 is refused before the parser sees it.
            assert!(
                msg.contains("parse error") || msg.contains("is under 12"),
                "{opts:?}: {show}"
            );
        }
        // the plain entry point too, as replay and the CLI use it
        let msg = capture::read(p, |_| {}).unwrap_err().to_string();
        assert!(msg.len() < 1024, "{} bytes", msg.len());
    }
}

#[test]
fn packets_on_undeclared_interfaces_are_counted_and_skipped() {
    let mut ng = Ng::default();
    // interface 1 was never declared; a new section forgets interface 0,
    // and a Simple Packet Block there has no interface either
    ng.shb()
        .idb()
        .epb(0, 1)
        .epb(1, 2)
        .epb(0, 3)
        .shb()
        .spb(4)
        .idb()
        .spb(5);
    let p = write("undeclared.pcapng", &ng.0);
    for opts in [ReadOptions::default(), STREAM] {
        let mut skipped = Skipped::default();
        let mut got = Vec::new();
        let n = capture::read_with(&p, &opts, &mut skipped, &mut |r| {
            got.push((
                r.index,
                u32::from_be_bytes(r.data[56..60].try_into().unwrap()),
            ))
        })
        .unwrap();
        assert_eq!(n, 5);
        // skipped records keep their frame numbers
        assert_eq!(got, vec![(1, 1), (3, 3), (5, 5)], "{opts:?}");
        assert_eq!(skipped.undeclared_interface, 2);
    }
    let rules = Arc::new(chokepoint_rules::compile_default().unwrap());
    let (s, res) = replay::replay(rules.clone(), &p, replay::Outputs::default());
    res.unwrap();
    assert_eq!((s.records, s.counters.packets), (5, 3));
    assert_eq!(s.skipped.undeclared_interface, 2);
    let text = replay::summary_text(&rules, &s);
    assert!(
        text.contains("skipped   2 records on a pcapng interface"),
        "{text}"
    );
}

#[test]
fn a_legacy_record_over_the_stream_buffer_is_read_whole() {
    // a classic pcap with one 2 MiB frame between small ones (a jumbo
    // reassembled by the capturing tool, say), written by the project's
    // own writer
    let mut bytes = Vec::new();
    let mut w = capture::Writer::new(&mut bytes, capture::Format::PcapNanos);
    let link = chokepoint_core::LinkType::Ethernet;
    let mut big = frame(1);
    big.resize(2 << 20, 0);
    w.write(link, 1, &frame(0)).unwrap();
    w.write(link, 2, &big).unwrap();
    w.write(link, 3, &frame(2)).unwrap();
    w.finish().unwrap();
    let p = write("big-frame.pcap", &bytes);
    let mut lens = Vec::new();
    let res = capture::read_with(&p, &STREAM, &mut Skipped::default(), &mut |r| {
        lens.push(r.data.len())
    });
    assert_eq!(res.unwrap(), 3);
    assert_eq!(lens, vec![60, 2 << 20, 60]);
}
