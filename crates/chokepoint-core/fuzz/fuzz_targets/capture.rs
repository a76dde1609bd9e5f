//! Capture files from bytes: pcap (both byte orders, µs and ns) and pcapng
//! (blocks of either byte order, interfaces, timestamp resolutions and
//! offsets), as `capture::read_in_place` reads them (records on undeclared
//! interfaces skipped and counted). Whatever was read is
//! written back as pcapng and as pcap and must read back the same.
#![no_main]
use chokepoint_core::LinkType;
use chokepoint_runtime::capture::{read_in_place, Format, Skipped, Writer};
use libfuzzer_sys::fuzz_target;

struct Rec {
    ts: u64,
    link: LinkType,
    data: Vec<u8>,
}

fn read_all(data: &[u8]) -> (Vec<Rec>, bool) {
    let mut v = Vec::new();
    let mut skipped = Skipped::default();
    // Records are numbered as tshark numbers frames: a packet on an
    // interface no block declared is skipped (counted), keeping its number.
    let mut last = 0;
    let ok = read_in_place("fuzz.pcap", data, &mut skipped, &mut |r| {
        assert!(r.index > last, "record numbers rise");
        last = r.index;
        v.push(Rec {
            ts: r.ts,
            link: r.link,
            data: r.data.to_vec(),
        });
    });
    if let Ok(n) = ok {
        assert_eq!(n, v.len() as u64 + skipped.undeclared_interface);
    }
    (v, ok.is_ok())
}

fn write(recs: &[Rec], format: Format) -> Option<Vec<u8>> {
    let mut w = Writer::new(Vec::new(), format);
    for r in recs {
        w.write(r.link, r.ts, &r.data).ok()?;
    }
    w.finish().ok()
}

fuzz_target!(|data: &[u8]| {
    let (recs, _) = read_all(data);
    // pcapng keeps everything: link types per interface (16-bit in an
    // interface block: larger ones from a pcap header are refused),
    // nanoseconds.
    let Some(out) = write(&recs, Format::Pcapng) else {
        assert!(recs.iter().any(|r| r.link.to_dlt() > 0xffff), "pcapng refused a record");
        return;
    };
    let (back, ok) = read_all(&out);
    assert!(ok, "own pcapng reads");
    assert_eq!(back.len(), recs.len());
    for (a, b) in recs.iter().zip(&back) {
        assert_eq!(a.data, b.data);
        assert_eq!(a.link, b.link);
        assert_eq!(a.ts, b.ts);
    }
    // Classic pcap: one link type, seconds in 32 bits.
    if let Some(out) = write(&recs, Format::PcapNanos) {
        let (back, ok) = read_all(&out);
        assert!(ok, "own pcap reads");
        assert_eq!(back.len(), recs.len());
        for (a, b) in recs.iter().zip(&back) {
            assert_eq!(a.data, b.data);
            assert_eq!(a.link, b.link);
            if a.ts / 1_000_000_000 < 1 << 32 {
                assert_eq!(a.ts, b.ts);
            }
        }
    }
});
