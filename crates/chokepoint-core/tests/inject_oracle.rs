//! An independent oracle for the injected frames of `chokepoint_core::inject`:
//! every reset, DNS answer (UDP and TCP) and HTTP redirect built from a
//! trigger must parse with etherparse, carry correct IPv4 header, TCP and
//! UDP checksums (recomputed by etherparse), consistent lengths, the right
//! addresses, ports, sequence numbers and flags, and a well-formed payload.
//! The token bucket never lets through more than its burst plus its rate.
//!
//! Trigger frames are built with etherparse's `PacketBuilder`, not the
//! crate's own emitter. The same checks run under cargo-fuzz
//! (`fuzz/fuzz_targets/inject.rs` includes this file); here they run over
//! a few hundred seeded cases, and over the same frames with bytes changed.
#![allow(dead_code)]

use std::net::IpAddr;

use chokepoint_core::inject::{self, TokenBucket, Trigger};
use chokepoint_core::LinkType;
use chokepoint_ruleset::{DnsAnswer, ResetTo};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpSlice, TransportSlice, UdpSlice};

/// What a trigger frame is made of.
#[derive(Clone, Debug)]
pub struct Case {
    /// IPv6 instead of IPv4.
    pub v6: bool,
    /// Client and server addresses (the first 4 bytes for IPv4).
    pub client: [u8; 16],
    /// Server address.
    pub server: [u8; 16],
    /// Ports.
    pub sport: u16,
    /// Server port.
    pub dport: u16,
    /// TCP sequence and acknowledgment numbers.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// TCP flags: bit 0 FIN, 1 SYN, 3 PSH (ACK is always set).
    pub flags: u8,
    /// UDP instead of TCP.
    pub udp: bool,
    /// 0 Ethernet, 1 one VLAN tag, 2 two tags, 3 raw IP, 4 the IPv4/IPv6 link type.
    pub link: u8,
    /// VLAN ids.
    pub vlan: (u16, u16),
    /// MAC addresses of client and server.
    pub macs: ([u8; 6], [u8; 6]),
    /// The transport payload (a DNS query, an HTTP request, anything).
    pub payload: Vec<u8>,
    /// Where a redirect points.
    pub location: String,
    /// The DNS answer to forge.
    pub answer: DnsAnswer,
    /// Its TTL.
    pub ttl: u32,
    /// Reset repetitions.
    pub repeat: u8,
}

/// A DNS query message for `name` (labels as given, no compression).
pub fn dns_query(id: u16, name: &str, qtype: u16, rd: bool) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[u8::from(rd), 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.').filter(|l| !l.is_empty()) {
        let l = &l.as_bytes()[..l.len().min(63)];
        m.push(l.len() as u8);
        m.extend_from_slice(l);
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m
}

/// The trigger frame of a case and its link type, built with etherparse.
pub fn frame(c: &Case) -> (LinkType, Vec<u8>) {
    let src4: [u8; 4] = c.client[..4].try_into().unwrap();
    let dst4: [u8; 4] = c.server[..4].try_into().unwrap();
    let vlan = |v: u16| etherparse::VlanId::try_new(v & 0x0fff).unwrap();
    let (link, step) = match c.link % 5 {
        l @ 0..=2 => {
            let eth = PacketBuilder::ethernet2(c.macs.0, c.macs.1);
            let step = match (l, c.v6) {
                (0, false) => eth.ipv4(src4, dst4, 64),
                (0, true) => eth.ipv6(c.client, c.server, 64),
                (1, false) => eth.single_vlan(vlan(c.vlan.0)).ipv4(src4, dst4, 64),
                (1, true) => eth.single_vlan(vlan(c.vlan.0)).ipv6(c.client, c.server, 64),
                (_, false) => eth
                    .double_vlan(vlan(c.vlan.0), vlan(c.vlan.1))
                    .ipv4(src4, dst4, 64),
                (_, true) => eth
                    .double_vlan(vlan(c.vlan.0), vlan(c.vlan.1))
                    .ipv6(c.client, c.server, 64),
            };
            (LinkType::Ethernet, step)
        }
        l => {
            let link = match (l, c.v6) {
                (3, _) => LinkType::Raw,
                (_, false) => LinkType::Ipv4,
                (_, true) => LinkType::Ipv6,
            };
            let step = if c.v6 {
                PacketBuilder::ipv6(c.client, c.server, 64)
            } else {
                PacketBuilder::ipv4(src4, dst4, 64)
            };
            (link, step)
        }
    };
    let mut out = Vec::new();
    if c.udp {
        step.udp(c.sport, c.dport)
            .write(&mut out, &c.payload)
            .unwrap();
    } else {
        let mut t = step.tcp(c.sport, c.dport, c.seq, 0xfaf0).ack(c.ack);
        if c.flags & 1 != 0 {
            t = t.fin();
        }
        if c.flags & 2 != 0 {
            t = t.syn();
        }
        if c.flags & 8 != 0 {
            t = t.psh();
        }
        t.write(&mut out, &c.payload).unwrap();
    }
    (link, out)
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Which way an injected frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Toward {
    Client,
    Server,
}

/// One injected frame as etherparse read it.
struct Seen<'a> {
    sport: u16,
    dport: u16,
    /// seq, ack, flags (TCP only).
    tcp: Option<(u32, u32, u8)>,
    payload: &'a [u8],
}

fn tcp_flags(t: &TcpSlice<'_>) -> u8 {
    u8::from(t.fin())
        | u8::from(t.syn()) << 1
        | u8::from(t.rst()) << 2
        | u8::from(t.psh()) << 3
        | u8::from(t.ack()) << 4
        | u8::from(t.urg()) << 5
}

/// Parse one injected frame and check everything below the payload.
fn check_frame<'a>(
    t: &Trigger<'_>,
    trigger_frame: &[u8],
    out: &'a [u8],
    toward: Toward,
) -> Seen<'a> {
    let l2 = t.l2.len();
    assert!(out.len() > l2, "frame shorter than its link header");
    if t.link == LinkType::Ethernet {
        // MACs swapped going back, kept going on; tags and type kept.
        let (want_dst, want_src) = match toward {
            Toward::Client => (&t.l2[6..12], &t.l2[..6]),
            Toward::Server => (&t.l2[..6], &t.l2[6..12]),
        };
        assert_eq!(&out[..6], want_dst, "destination MAC");
        assert_eq!(&out[6..12], want_src, "source MAC");
        assert_eq!(&out[12..l2], &t.l2[12..], "VLAN tags and EtherType kept");
        // If etherparse reads the trigger's link layer, it reads the reply's.
        if SlicedPacket::from_ethernet(trigger_frame).is_ok_and(|p| p.net.is_some()) {
            let p = SlicedPacket::from_ethernet(out).expect("etherparse reads the Ethernet frame");
            assert!(p.net.is_some());
        }
    } else {
        assert_eq!(l2, 0);
    }
    let ipb = &out[l2..];
    let p = SlicedPacket::from_ip(ipb).expect("etherparse reads the IP packet");
    let (want_src, want_dst) = match toward {
        Toward::Client => (t.dst, t.src),
        Toward::Server => (t.src, t.dst),
    };
    let (src, dst, pseudo) = match p.net.expect("an IP layer") {
        NetSlice::Ipv4(v4) => {
            let h = v4.header();
            assert_eq!(h.ihl(), 5, "no options");
            assert_eq!(usize::from(h.total_len()), ipb.len(), "IPv4 total length");
            assert_eq!(
                h.header_checksum(),
                h.to_header().calc_header_checksum(),
                "IPv4 header checksum"
            );
            assert!(!h.more_fragments() && h.fragments_offset().value() == 0);
            assert_eq!(h.ttl(), 64);
            (
                IpAddr::from(h.source()),
                IpAddr::from(h.destination()),
                Pseudo::V4(h.source(), h.destination()),
            )
        }
        NetSlice::Ipv6(v6) => {
            let h = v6.header();
            assert_eq!(
                usize::from(h.payload_length()) + 40,
                ipb.len(),
                "IPv6 payload length"
            );
            assert_eq!(h.hop_limit(), 64);
            (
                IpAddr::from(h.source()),
                IpAddr::from(h.destination()),
                Pseudo::V6(h.source(), h.destination()),
            )
        }
        NetSlice::Arp(_) => panic!("ARP"),
    };
    assert_eq!((src, dst), (want_src, want_dst), "addresses");
    match p.transport.expect("a transport layer") {
        TransportSlice::Tcp(tcp) => {
            assert_eq!(t.proto, 6);
            let want = match pseudo {
                Pseudo::V4(s, d) => tcp.calc_checksum_ipv4(s, d).unwrap(),
                Pseudo::V6(s, d) => tcp.calc_checksum_ipv6(s, d).unwrap(),
            };
            assert_eq!(tcp.checksum(), want, "TCP checksum");
            assert_eq!(tcp.data_offset(), 5, "no TCP options");
            Seen {
                sport: tcp.source_port(),
                dport: tcp.destination_port(),
                tcp: Some((
                    tcp.sequence_number(),
                    tcp.acknowledgment_number(),
                    tcp_flags(&tcp),
                )),
                payload: tcp.payload(),
            }
        }
        TransportSlice::Udp(udp) => {
            assert_eq!(t.proto, 17);
            assert_eq!(usize::from(udp.length()), udp.slice().len(), "UDP length");
            let h = udp.to_header();
            let want = match pseudo {
                Pseudo::V4(s, d) => h.calc_checksum_ipv4_raw(s, d, udp.payload()).unwrap(),
                Pseudo::V6(s, d) => h.calc_checksum_ipv6_raw(s, d, udp.payload()).unwrap(),
            };
            let v4_none = matches!(pseudo, Pseudo::V4(..)) && udp.checksum() == 0;
            assert!(udp.checksum() == want || v4_none, "UDP checksum");
            Seen {
                sport: udp.source_port(),
                dport: udp.destination_port(),
                tcp: None,
                payload: udp.payload(),
            }
        }
        other => panic!("unexpected transport {other:?}"),
    }
}

enum Pseudo {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

/// The trigger's TCP header as etherparse reads it: ports, seq, ack, the
/// sequence number after it, its payload.
struct TrigTcp<'a> {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    next: u32,
    payload: &'a [u8],
}

fn trig_tcp<'a>(t: &Trigger<'a>) -> Option<TrigTcp<'a>> {
    if t.proto != 6 {
        return None;
    }
    let s = TcpSlice::from_slice(t.l4).ok()?;
    let n = s.payload().len() as u32 + u32::from(s.syn()) + u32::from(s.fin());
    Some(TrigTcp {
        sport: s.source_port(),
        dport: s.destination_port(),
        seq: s.sequence_number(),
        ack: s.acknowledgment_number(),
        next: s.sequence_number().wrapping_add(n),
        payload: s.payload(),
    })
}

fn check_tcp(
    seen: &Seen<'_>,
    tt: Option<&TrigTcp<'_>>,
    toward: Toward,
    seq: u32,
    ack: u32,
    flags: u8,
) {
    let (s_seq, s_ack, s_flags) = seen.tcp.expect("TCP");
    assert_eq!(s_flags, flags, "TCP flags");
    if let Some(tt) = tt {
        let ports = match toward {
            Toward::Client => (tt.dport, tt.sport),
            Toward::Server => (tt.sport, tt.dport),
        };
        assert_eq!((seen.sport, seen.dport), ports, "ports");
        assert_eq!((s_seq, s_ack), (seq, ack), "sequence numbers");
    }
}

/// Check a forged DNS message against the query it answers.
fn check_dns(m: &[u8], q: &[u8], answer: &DnsAnswer, ttl: u32) {
    assert!(m.len() >= 12 + 5, "DNS message too short");
    assert_eq!(m[..2], q[..2], "DNS id");
    assert_eq!(m[2] & 0xfe, 0x80 | 0x04, "QR, opcode 0, AA, not truncated");
    assert_eq!(m[2] & 1, q[2] & 1, "RD as asked");
    assert_eq!(m[4..6], [0, 1], "one question");
    assert_eq!(m[8..12], [0, 0, 0, 0], "no authority or additional records");
    let an = u16::from_be_bytes([m[6], m[7]]);
    let rr_len = match an {
        0 => 0,
        1 => match answer {
            DnsAnswer::Sinkhole(IpAddr::V4(_)) => 12 + 4,
            DnsAnswer::Sinkhole(IpAddr::V6(_)) => 12 + 16,
            DnsAnswer::Nxdomain => panic!("an answer record with NXDOMAIN"),
        },
        n => panic!("{n} answers"),
    };
    assert!(m.len() >= 12 + rr_len + 5);
    let qlen = m.len() - 12 - rr_len;
    assert_eq!(&m[12..12 + qlen], &q[12..12 + qlen], "question verbatim");
    let qtype = u16::from_be_bytes([m[12 + qlen - 4], m[12 + qlen - 3]]);
    match answer {
        DnsAnswer::Nxdomain => {
            assert_eq!(m[3] & 0x0f, 3, "NXDOMAIN");
            assert_eq!(an, 0);
        }
        DnsAnswer::Sinkhole(ip) => {
            assert_eq!(m[3] & 0x0f, 0, "NOERROR");
            let data: Option<Vec<u8>> = match (ip, qtype) {
                (IpAddr::V4(a), 1) => Some(a.octets().to_vec()),
                (IpAddr::V6(a), 28) => Some(a.octets().to_vec()),
                _ => None,
            };
            assert_eq!(
                an,
                u16::from(data.is_some()),
                "an answer exactly for A/AAAA of its family"
            );
            if let Some(d) = data {
                let rr = &m[12 + qlen..];
                assert_eq!(rr[..2], [0xc0, 0x0c], "name points at the question");
                assert_eq!(rr[2..4], qtype.to_be_bytes());
                assert_eq!(rr[4..6], [0, 1]);
                assert_eq!(rr[6..10], ttl.to_be_bytes());
                assert_eq!(rr[10..12], (d.len() as u16).to_be_bytes());
                assert_eq!(&rr[12..], &d[..]);
            }
        }
    }
}

/// Does `q` start like a query the injector must answer (a header, QR
/// clear, at least one question whose first name is uncompressed)?
fn plain_query(q: &[u8]) -> bool {
    if q.len() < 12 || q[2] & 0x80 != 0 || q[4..6] == [0, 0] {
        return false;
    }
    let mut at = 12;
    let mut total = 0;
    loop {
        let Some(&l) = q.get(at) else { return false };
        if l == 0 {
            return at + 5 <= q.len() && total <= 253;
        }
        if l > 63 {
            return false;
        }
        total += usize::from(l) + 1;
        at += 1 + usize::from(l);
    }
}

/// Run every injector on a trigger frame and check what comes out.
/// `strict`: the frame is a well-formed case, so the injectors must answer
/// (a DNS answer for a plain query, a redirect for any TCP trigger).
pub fn check(
    link: LinkType,
    frame: &[u8],
    answer: &DnsAnswer,
    ttl: u32,
    location: &str,
    repeat: u8,
    strict: bool,
) {
    let Some(t) = inject::trigger(link, frame) else {
        assert!(!strict, "no trigger from a well-formed frame");
        return;
    };
    let tt = trig_tcp(&t);
    let is_tcp = t.proto == 6 && chokepoint_core::inject::tcp_flags(&t).is_some();

    // Resets: to the client at its ack, to the server at its seq, `repeat` times.
    let resets = inject::tcp_resets(&t, repeat);
    if strict && t.proto == 6 {
        assert_eq!(resets.len(), 2 * usize::from(repeat.max(1)));
    }
    assert_eq!(resets.len() % 2, 0);
    for (i, f) in resets.iter().enumerate() {
        let toward = if i % 2 == 0 {
            Toward::Client
        } else {
            Toward::Server
        };
        let s = check_frame(&t, frame, f, toward);
        assert!(s.payload.is_empty());
        let (seq, ack) = match (toward, &tt) {
            (Toward::Client, Some(tt)) => (tt.ack, tt.next),
            (_, Some(tt)) => (tt.seq, tt.ack),
            _ => (0, 0),
        };
        check_tcp(&s, tt.as_ref(), toward, seq, ack, RST | ACK);
    }
    // Resets to one end only (`reset: {to: ...}`): those same frames,
    // only the ones toward that end.
    let toward =
        |keep: usize| -> Vec<Vec<u8>> { resets.iter().skip(keep).step_by(2).cloned().collect() };
    assert_eq!(
        inject::tcp_resets_to(&t, repeat, ResetTo::Client),
        toward(0)
    );
    assert_eq!(
        inject::tcp_resets_to(&t, repeat, ResetTo::Server),
        toward(1)
    );

    // HTTP redirect: a 302 with FIN to the client, a reset to the server.
    let redirect = inject::http_redirect(&t, location);
    if strict && t.proto == 6 {
        assert_eq!(redirect.len(), 2);
    }
    if let [reply, reset] = &redirect[..] {
        let s = check_frame(&t, frame, reply, Toward::Client);
        let (seq, ack) = tt.as_ref().map_or((0, 0), |tt| (tt.ack, tt.next));
        check_tcp(&s, tt.as_ref(), Toward::Client, seq, ack, ACK | FIN | PSH);
        let text = std::str::from_utf8(s.payload).expect("ASCII reply");
        let head = format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\n");
        assert!(text.starts_with(&head), "{text:?}");
        let (headers, body) = text.split_once("\r\n\r\n").expect("end of headers");
        let cl = headers
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("Content-Length");
        assert_eq!(cl.parse::<usize>().unwrap(), body.len(), "Content-Length");
        let s = check_frame(&t, frame, reset, Toward::Server);
        let (seq, ack) = tt.as_ref().map_or((0, 0), |tt| (tt.seq, tt.ack));
        check_tcp(&s, tt.as_ref(), Toward::Server, seq, ack, RST | ACK);
    } else {
        assert!(redirect.len() <= 1);
        for f in &redirect {
            check_frame(&t, frame, f, Toward::Server);
        }
    }

    // DNS over UDP: one answer to the client, ports swapped.
    // (Exact checks when etherparse reads the same datagram: its length
    // field spans the IP payload.)
    let udp = UdpSlice::from_slice(t.l4)
        .ok()
        .filter(|u| usize::from(u.length()) == t.l4.len());
    if let Some(a) = inject::dns_answer(&t, answer, ttl) {
        let s = check_frame(&t, frame, &a, Toward::Client);
        if let Some(u) = &udp {
            assert_eq!((s.sport, s.dport), (u.destination_port(), u.source_port()));
            check_dns(s.payload, u.payload(), answer, ttl);
        }
    } else if strict && t.proto == 17 {
        let u = UdpSlice::from_slice(t.l4).unwrap();
        assert!(!plain_query(u.payload()), "no answer to a plain query");
    }

    // DNS over TCP: the answer, a FIN after it, a reset to the server.
    let tcp_dns = inject::dns_answer_tcp(&t, answer, ttl);
    match &tcp_dns[..] {
        [] => {
            if let (true, Some(tt)) = (strict, &tt) {
                // The message is the length prefix's worth of bytes.
                let q = tt.payload;
                let msg = q
                    .get(2..)
                    .and_then(|m| m.get(..usize::from(u16::from_be_bytes([q[0], q[1]]))));
                assert!(
                    !msg.is_some_and(plain_query),
                    "no TCP answer to a plain query"
                );
            }
        }
        [data, fin, rst] => {
            assert!(is_tcp);
            let s = check_frame(&t, frame, data, Toward::Client);
            let (seq, ack) = tt.as_ref().map_or((0, 0), |tt| (tt.ack, tt.next));
            check_tcp(&s, tt.as_ref(), Toward::Client, seq, ack, PSH | ACK);
            let m = s.payload;
            assert!(m.len() >= 2);
            assert_eq!(
                usize::from(u16::from_be_bytes([m[0], m[1]])),
                m.len() - 2,
                "DNS length prefix"
            );
            if let Some(tt) = &tt {
                check_dns(&m[2..], &tt.payload[2..], answer, ttl);
            }
            let data_len = m.len() as u32;
            let s = check_frame(&t, frame, fin, Toward::Client);
            assert!(s.payload.is_empty());
            check_tcp(
                &s,
                tt.as_ref(),
                Toward::Client,
                seq.wrapping_add(data_len),
                ack,
                FIN | ACK,
            );
            let s = check_frame(&t, frame, rst, Toward::Server);
            let (seq, ack) = tt.as_ref().map_or((0, 0), |tt| (tt.seq, tt.ack));
            check_tcp(&s, tt.as_ref(), Toward::Server, seq, ack, RST | ACK);
        }
        other => panic!("{} frames for a TCP DNS answer", other.len()),
    }
}

/// Drive a token bucket, of the default burst or of `burst_bytes`:
/// `steps` are (nanoseconds later, packet length). It never passes more
/// than burst + rate × elapsed, a fresh bucket takes a packet up to its
/// burst, and a packet over the burst never passes.
pub fn check_bucket(kbps: u32, burst_bytes: Option<u32>, start: u64, steps: &[(u64, u16)]) {
    let rate = u128::from(kbps) * 1000 / 8;
    let (mut b, burst) = match burst_bytes {
        None => (TokenBucket::new(kbps, start), (rate / 2).max(3200)),
        Some(n) => (TokenBucket::with_burst(kbps, n, start), u128::from(n)),
    };
    let mut now = start;
    let mut passed: u128 = 0;
    for (i, &(dt, len)) in steps.iter().enumerate() {
        now = now.saturating_add(dt);
        let ok = b.allow(now, usize::from(len));
        if u128::from(len) > burst {
            assert!(!ok, "a packet over the burst passed");
        }
        if i == 0 && dt == 0 {
            assert_eq!(
                ok,
                u128::from(len) <= burst,
                "a fresh bucket holds its burst"
            );
        }
        if ok {
            passed += u128::from(len);
        }
        let allowed = burst + u128::from(now - start) * rate / 1_000_000_000;
        assert!(
            passed <= allowed,
            "{passed} bytes passed, at most {allowed} allowed"
        );
    }
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.next_u64() as u8)
    }
}

const NAMES: [&str; 6] = [
    "t.me",
    "www.example.com",
    "a",
    "xn--e1afmkfd.xn--p1ai",
    "_dmarc.mail.example",
    "x.y.z.w.v",
];

/// A seeded case: half DNS queries, the rest HTTP requests and noise.
pub fn case(r: &mut Rng) -> Case {
    let udp = r.below(3) == 0;
    let kind = r.below(4);
    let name = NAMES[r.below(NAMES.len() as u64) as usize];
    let qtype = [1, 28, 16, 255][r.below(4) as usize];
    let payload = match kind {
        0 | 1 => {
            let q = dns_query(r.next_u64() as u16, name, qtype, r.below(2) == 0);
            if udp {
                q
            } else {
                let mut p = (q.len() as u16).to_be_bytes().to_vec();
                p.extend_from_slice(&q);
                p
            }
        }
        2 => format!("GET / HTTP/1.1\r\nHost: {name}\r\n\r\n").into_bytes(),
        _ => (0..r.below(64)).map(|_| r.next_u64() as u8).collect(),
    };
    let answer = match r.below(3) {
        0 => DnsAnswer::Nxdomain,
        1 => DnsAnswer::Sinkhole(IpAddr::from(r.bytes::<4>())),
        _ => DnsAnswer::Sinkhole(IpAddr::from(r.bytes::<16>())),
    };
    Case {
        v6: r.below(2) == 0,
        client: r.bytes(),
        server: r.bytes(),
        sport: r.next_u64() as u16,
        dport: [53, 80, 443, r.next_u64() as u16][r.below(4) as usize],
        seq: r.next_u64() as u32,
        ack: r.next_u64() as u32,
        flags: r.next_u64() as u8 & (FIN | SYN | PSH),
        udp,
        link: r.below(5) as u8,
        vlan: (r.next_u64() as u16, r.next_u64() as u16),
        macs: (r.bytes(), r.bytes()),
        payload,
        location: [
            "http://stub.example/",
            "https://warning.rt.ru/?id=1&x=ü",
            "",
        ][r.below(3) as usize]
            .to_string(),
        answer,
        ttl: r.next_u64() as u32,
        repeat: r.below(4) as u8,
    }
}

#[test]
fn injected_frames_parse_and_check_out() {
    let mut r = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..400 {
        let c = case(&mut r);
        let (link, f) = frame(&c);
        check(link, &f, &c.answer, c.ttl, &c.location, c.repeat, true);
    }
}

#[test]
fn damaged_triggers_still_give_valid_frames() {
    let mut r = Rng(0x5eed_1234_abcd_0002);
    for _ in 0..400 {
        let c = case(&mut r);
        let (link, mut f) = frame(&c);
        for _ in 0..1 + r.below(3) {
            let i = r.below(f.len() as u64) as usize;
            f[i] ^= (r.next_u64() as u8).max(1);
        }
        check(link, &f, &c.answer, c.ttl, &c.location, c.repeat, false);
    }
}

#[test]
fn token_bucket_holds_its_rate() {
    let mut r = Rng(0x5eed_1234_abcd_0003);
    for _ in 0..300 {
        let kbps = [1, 150, 10_000, u32::MAX, r.next_u64() as u32][r.below(5) as usize];
        let start = [0, 1 << 40, u64::MAX - 1_000_000, r.next_u64()][r.below(4) as usize];
        let steps: Vec<(u64, u16)> = (0..r.below(50))
            .map(|_| {
                let dt = [0, 1, 1_000, 1_000_000, 1_000_000_000, r.next_u64()][r.below(6) as usize];
                (dt, r.next_u64() as u16)
            })
            .collect();
        let burst = [
            None,
            Some(0),
            Some(1514),
            Some(16_000),
            Some(r.next_u64() as u32),
        ][r.below(5) as usize];
        check_bucket(kbps, burst, start, &steps);
    }
}
