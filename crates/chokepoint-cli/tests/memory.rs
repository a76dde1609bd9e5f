//! Replay memory follows the bytes held, not the offsets an attacker
//! picks: 40,000 flows, each a SYN and one 700-byte segment 32 KB into the
//! window, stay under 100 MB of peak RSS. (Before reassembly sized buffers
//! to the segment's end offset, this capture took 1.3 GB.)
//!
//! Its own test binary: peak RSS of children is a process-wide figure, so
//! no other test may spawn a child here.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use chokepoint_core::LinkType;
use chokepoint_runtime::capture;
use chokepoint_testkit::synth;

const FLOWS: u32 = 40_000;

fn frame(src: IpAddr, dst: IpAddr, sport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let seg = synth::tcp_segment(src, dst, sport, 443, seq, 1, flags, payload);
    synth::ethernet(&synth::ip_packet(src, dst, 6, &seg), &[])
}

fn write_capture(path: &Path) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut out = capture::Writer::new(file, capture::Format::PcapMicros);
    let server: IpAddr = "198.19.200.1".parse().unwrap();
    let junk = [0x41u8; 700];
    for i in 0..FLOWS {
        let client = IpAddr::from([198, 18, (i >> 8) as u8, i as u8]);
        let port = 20_000 + (i % 40_000) as u16;
        let isn = i.wrapping_mul(2_654_435_761);
        // Every flow within 40 s: none times out before the end.
        let ts = 1_000_000_000_000 + u64::from(i) * 1_000_000;
        out.write(
            LinkType::Ethernet,
            ts,
            &frame(client, server, port, isn, 0x02, b""),
        )
        .unwrap();
        let data = frame(client, server, port, isn.wrapping_add(32_001), 0x18, &junk);
        out.write(LinkType::Ethernet, ts + 1000, &data).unwrap();
    }
    out.finish().unwrap().flush().unwrap();
}

fn peak_rss_of_children_kib() -> i64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut u), 0);
        u.ru_maxrss
    }
}

#[test]
fn forty_thousand_out_of_window_flows_stay_under_100_mb() {
    let dir = std::env::temp_dir().join(format!("chokepoint-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cap = dir.join("flood.pcap");
    write_capture(&cap);
    let o = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["replay", cap.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains(&format!("{} created", FLOWS)), "{text}");
    let peak_mib = peak_rss_of_children_kib() / 1024;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        peak_mib < 100,
        "replay peaked at {peak_mib} MiB of RSS for {FLOWS} flows\n{text}"
    );
}
