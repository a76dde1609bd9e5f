//! A pcapng block whose length field is under 12 bytes is refused as
//! corrupt. Found by the `capture` fuzz target: pcap-parser 0.17 computes
//! a Process Information Block's content length as `len - 12` before
//! checking it, which overflowed (a panic where overflow checks are on).

use chokepoint_runtime::capture::{read, read_slice, CaptureError};

/// A section header block, little- or big-endian, then a Process
/// Information Block (type 0x80000001) claiming 8 bytes.
fn capture(be: bool) -> Vec<u8> {
    let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut f = vec![0x0a, 0x0d, 0x0d, 0x0a];
    f.extend_from_slice(&u32b(28));
    f.extend_from_slice(&u32b(0x1a2b_3c4d));
    f.extend_from_slice(&[0; 2]);
    f[12..14].copy_from_slice(&if be {
        1u16.to_be_bytes()
    } else {
        1u16.to_le_bytes()
    });
    f.extend_from_slice(&[0; 2]);
    f.extend_from_slice(&(-1i64).to_le_bytes());
    f.extend_from_slice(&u32b(28));
    f.extend_from_slice(&u32b(0x8000_0001));
    f.extend_from_slice(&u32b(8));
    f.extend_from_slice(&[0; 8]);
    f
}

#[test]
fn short_block_is_corrupt_in_memory() {
    for be in [false, true] {
        let err = read_slice("short.pcapng", &capture(be), &mut |_| {}).unwrap_err();
        match err {
            CaptureError::Corrupt { offset, reason, .. } => {
                assert_eq!(offset, 28, "{reason}");
                assert!(reason.contains("under 12"), "{reason}");
            }
            other => panic!("{other}"),
        }
    }
}

#[test]
fn short_block_is_corrupt_when_streamed() {
    // Over the 8 MiB a capture is read whole below, so it is streamed.
    let path = std::env::temp_dir().join(format!("chokepoint-short-{}.pcapng", std::process::id()));
    for be in [false, true] {
        let mut f = capture(be);
        f.resize(9 << 20, 0);
        std::fs::write(&path, &f).unwrap();
        let err = read(&path, |_| {}).unwrap_err();
        assert!(
            matches!(&err, CaptureError::Corrupt { reason, .. } if reason.contains("under 12")),
            "{err}"
        );
    }
    std::fs::remove_file(&path).unwrap();
}
