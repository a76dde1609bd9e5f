//! The bundled sample capture: a subscriber's traffic in April 2018 as the
//! default policy sees it. Generated (deterministically) rather than
//! recorded, so it carries only documentation addresses for the subscriber
//! and its own resolver, and real Telegram and cloud addresses as servers.
//!
//! `chokepoint sample FILE` writes it; `tests/data/sample-telegram-2018.pcap`
//! is this function's output, and a test keeps the two equal.

use std::net::IpAddr;

use chokepoint_core::{quic, LinkType};
use chokepoint_runtime::capture::{Format, Writer};

use crate::synth::{self, HelloShape};

fn a(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// Client and server of a TCP connection.
struct Conn {
    c: IpAddr,
    s: IpAddr,
    cport: u16,
    sport: u16,
}

struct Cap {
    frames: Vec<(u64, Vec<u8>)>,
    t: u64,
}

impl Cap {
    fn push(&mut self, ip: Vec<u8>) {
        self.t += 7_000_000; // 7 ms apart
        self.frames.push((self.t, synth::ethernet(&ip, &[])));
    }

    fn tcp(&mut self, k: &Conn, seq: u32, ack: u32, flags: u8, payload: &[u8], to_server: bool) {
        let (src, dst, sp, dp) = if to_server {
            (k.c, k.s, k.cport, k.sport)
        } else {
            (k.s, k.c, k.sport, k.cport)
        };
        self.push(synth::ip_packet(
            src,
            dst,
            6,
            &synth::tcp_segment(src, dst, sp, dp, seq, ack, flags, payload),
        ));
    }

    /// Handshake, then the client's first flight in segments of `mss`,
    /// then one server packet (which a censor's verdict also covers).
    fn tcp_flow(&mut self, c: IpAddr, s: IpAddr, cport: u16, sport: u16, first: &[u8], mss: usize) {
        let k = Conn { c, s, cport, sport };
        let (ci, si) = (1_000_000u32 + u32::from(cport), 7_000_000u32);
        self.tcp(&k, ci, 0, 0x02, b"", true);
        self.tcp(&k, si, ci + 1, 0x12, b"", false);
        self.tcp(&k, ci + 1, si + 1, 0x10, b"", true);
        let mut seq = ci + 1;
        for part in first.chunks(mss) {
            self.tcp(&k, seq, si + 1, 0x18, part, true);
            seq += part.len() as u32;
        }
        self.tcp(&k, si + 1, seq, 0x10, b"", false);
    }

    fn udp(&mut self, c: IpAddr, s: IpAddr, cport: u16, sport: u16, payload: &[u8]) {
        self.push(synth::ip_packet(
            c,
            s,
            17,
            &synth::udp_datagram(c, s, cport, sport, payload),
        ));
    }
}

/// The sample capture as pcap bytes.
pub fn telegram_2018() -> Vec<u8> {
    let mut cap = Cap {
        frames: Vec::new(),
        t: 1_523_862_000_000_000_000, // 2018-04-16 07:00 UTC
    };
    let sub = a("198.18.0.10");
    let sub6 = a("fd00:198:18::10");
    let resolver = a("198.18.0.53");
    let pq = HelloShape {
        post_quantum: true,
        grease: true,
        ..Default::default()
    };
    // DNS: Telegram names and an allowed one.
    for (i, n) in [
        "telegram.org",
        "web.telegram.org",
        "t.me",
        "example.com",
        "www.wikipedia.org",
    ]
    .iter()
    .enumerate()
    {
        cap.udp(
            sub,
            resolver,
            40_000 + i as u16,
            53,
            &synth::dns_query(0x100 + i as u16, n, 1),
        );
    }
    // TLS to Telegram Web through a CDN address not on any list: caught by
    // SNI, the 1.9 KB hello split over two segments.
    let hello = synth::tls_records(&synth::client_hello(Some("web.telegram.org"), pq, 1), 16384);
    cap.tcp_flow(sub, a("198.51.100.20"), 50_001, 443, &hello, 1448);
    // QUIC to t.me from the same CDN: caught by QUIC Initial SNI.
    let ch = synth::client_hello(Some("t.me"), pq, 2);
    let dcid = [0x51, 0x7e, 0x1e, 0x67, 0x2a, 0x18, 0x04, 0x16];
    let (p1, p2) = (
        synth::crypto_frame(0, &ch[..1100]),
        synth::crypto_frame(1100, &ch[1100..]),
    );
    cap.udp(
        sub,
        a("198.51.100.20"),
        50_002,
        443,
        &synth::quic_initial(quic::V1, &dcid, &[3; 8], 0, &p1, 1250),
    );
    cap.udp(
        sub,
        a("198.51.100.20"),
        50_002,
        443,
        &synth::quic_initial(quic::V1, &dcid, &[3; 8], 1, &p2, 1250),
    );
    // Plain HTTP to telegram.me.
    cap.tcp_flow(
        sub,
        a("198.51.100.21"),
        50_003,
        80,
        &synth::http_get("telegram.me", "/"),
        1448,
    );
    // Telegram's own addresses, IPv4 and IPv6: dropped by IP, no name needed.
    let tg_hello = synth::tls_records(&synth::client_hello(None, HelloShape::default(), 3), 16384);
    cap.tcp_flow(sub, a("149.154.167.51"), 50_004, 443, &tg_hello, 1448);
    cap.tcp_flow(
        sub6,
        a("2001:67c:4e8:f004::a"),
        50_005,
        443,
        &tg_hello,
        1448,
    );
    // Stage 2 collateral: an unrelated shop hosted on AWS Frankfurt.
    let shop = synth::tls_records(&synth::client_hello(Some("shop.example"), pq, 4), 16384);
    cap.tcp_flow(sub, a("52.58.10.20"), 50_006, 443, &shop, 1448);
    // Allowed traffic.
    let ok = synth::tls_records(&synth::client_hello(Some("www.example.com"), pq, 5), 16384);
    cap.tcp_flow(sub, a("198.51.100.80"), 50_007, 443, &ok, 1448);
    cap.tcp_flow(
        sub,
        a("198.51.100.81"),
        50_008,
        80,
        &synth::http_get("www.wikipedia.org", "/wiki/Telegram"),
        1448,
    );
    // A near miss: `nott.me` is not `t.me`.
    let near = synth::tls_records(
        &synth::client_hello(Some("nott.me"), HelloShape::default(), 6),
        16384,
    );
    cap.tcp_flow(sub, a("198.51.100.82"), 50_009, 443, &near, 1448);
    // Microsecond pcap, as the file has always been (every tool reads it,
    // and the 7 ms spacing loses nothing).
    let mut w = Writer::new(Vec::new(), Format::PcapMicros);
    for (ts, f) in &cap.frames {
        w.write(LinkType::Ethernet, *ts, f).expect("in memory");
    }
    w.finish().expect("in memory")
}
