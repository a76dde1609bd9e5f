//! Synthetic traffic: well-formed frames (checksums included), ClientHellos
//! shaped like current browsers', QUIC Initials that really decrypt, DNS
//! queries, HTTP requests, IP fragments. Used by tests, benchmarks and the
//! traffic generator; never by the packet path.

use std::net::IpAddr;

use chokepoint_core::quic;
use chokepoint_core::wire::emit::{
    self, EthernetRepr, IpRepr, Ipv4Repr, Ipv6Repr, TcpRepr, UdpRepr, VlanTag,
};
use chokepoint_core::wire::link::{ETH_IPV4, ETH_IPV6};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

/// Ethernet addresses used for every synthetic frame (locally administered).
const MAC_A: [u8; 6] = [0x02, 0, 0x5e, 0, 0, 1];
const MAC_B: [u8; 6] = [0x02, 0, 0x5e, 0, 0, 2];

/// Hop limit of every synthetic packet.
const TTL: u8 = 64;

/// An IP packet (header + `l4`), IPv4 or IPv6 by the addresses.
///
/// # Panics
/// On mixed address families or a payload over 64 KiB (test input).
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    ip_packet_ext(src, dst, proto, l4, &[])
}

/// Like [`ip_packet`], with IPv6 extension headers before `l4`: each
/// `(next-header code of this header, body)`; bodies are padded to 8-byte
/// multiples. Ignored for IPv4.
///
/// # Panics
/// As [`ip_packet`].
pub fn ip_packet_ext(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4: &[u8],
    ext: &[(u8, &[u8])],
) -> Vec<u8> {
    let mut chain = Vec::new();
    let header = match IpRepr::new(src, dst, proto, l4.len(), TTL).expect("one address family") {
        // A fixed identification with DF, as the sample capture has always
        // carried: keeps its bytes stable.
        IpRepr::V4(h) => IpRepr::V4(Ipv4Repr { ident: 0x1234, ..h }),
        IpRepr::V6(h) => {
            for (i, (_, body)) in ext.iter().enumerate() {
                let next = ext.get(i + 1).map_or(proto, |e| e.0);
                let mut h = vec![next, 0];
                h.extend_from_slice(body);
                while h.len() % 8 != 0 {
                    h.push(0);
                }
                h[1] = (h.len() / 8 - 1) as u8;
                chain.extend_from_slice(&h);
            }
            IpRepr::V6(Ipv6Repr {
                next_header: ext.first().map_or(proto, |e| e.0),
                payload_len: chain.len() + l4.len(),
                ..h
            })
        }
    };
    let mut p = vec![0; header.buffer_len()];
    header.emit(&mut p).expect("payload fits");
    p.extend_from_slice(&chain);
    p.extend_from_slice(l4);
    p
}

/// A TCP segment with a correct checksum.
///
/// # Panics
/// On mixed address families.
#[allow(clippy::too_many_arguments)]
pub fn tcp_segment(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq,
        ack,
        flags,
        window: 0xffff,
        payload,
    };
    let mut t = vec![0; repr.buffer_len()];
    repr.emit(src, dst, &mut t).expect("one address family");
    t
}

/// Like [`ip_packet`], with the IPv4 TTL or IPv6 hop limit `ttl` (a
/// TTL-limited fake that dies before the server).
///
/// # Panics
/// As [`ip_packet`].
pub fn ip_packet_ttl(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8], ttl: u8) -> Vec<u8> {
    let mut p = ip_packet(src, dst, proto, l4);
    if src.is_ipv4() {
        let old = u16::from_be_bytes([p[8], p[9]]);
        p[8] = ttl;
        let new = u16::from_be_bytes([p[8], p[9]]);
        let c = adjust_checksum(u16::from_be_bytes([p[10], p[11]]), old, new);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        p[7] = ttl;
    }
    p
}

/// Like [`tcp_segment`], with URG set and the urgent pointer `urgent`
/// (ByeDPI's and zapret's `oob`: one byte sent "out of band").
///
/// # Panics
/// As [`tcp_segment`].
#[allow(clippy::too_many_arguments)]
pub fn tcp_segment_urgent(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    urgent: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = tcp_segment(src, dst, sport, dport, seq, ack, flags | 0x20, payload);
    let c = adjust_checksum(u16::from_be_bytes([t[16], t[17]]), 0, urgent);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t[18..20].copy_from_slice(&urgent.to_be_bytes());
    t
}

/// Spoil a TCP or UDP segment's checksum (a fake the server's stack drops).
/// `proto` says where the field is.
pub fn break_checksum(segment: &mut [u8], proto: u8) {
    let at = if proto == 6 { 16 } else { 6 };
    segment[at] ^= 0x5a;
}

/// RFC 1624: the checksum after one 16-bit word changed from `old` to `new`.
fn adjust_checksum(sum: u16, old: u16, new: u16) -> u16 {
    let mut acc = u32::from(!sum) + u32::from(!old) + u32::from(new);
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// A UDP datagram with a correct checksum.
///
/// # Panics
/// On mixed address families or a payload over 64 KiB.
pub fn udp_datagram(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: sport,
        dst_port: dport,
        payload,
    };
    let mut u = vec![0; repr.buffer_len()];
    repr.emit(src, dst, &mut u).expect("one address family");
    u
}

/// An Ethernet frame around an IP packet, with optional VLAN tags
/// `(TPID, VLAN ID)` outermost first.
///
/// # Panics
/// On more tags than `wire::link::MAX_VLAN_TAGS`.
pub fn ethernet(ip: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let et = if ip.first().is_some_and(|b| b >> 4 == 6) {
        ETH_IPV6
    } else {
        ETH_IPV4
    };
    let mut eth = EthernetRepr::new(MAC_B, MAC_A, et);
    for &(tpid, vid) in tags {
        eth = eth
            .with_tag(VlanTag {
                tpid,
                tci: vid & 0x0fff,
            })
            .expect("few enough tags");
    }
    let mut f = vec![0; eth.buffer_len()];
    eth.emit(&mut f).expect("sized");
    f.extend_from_slice(ip);
    f
}

/// Split an IPv4 packet into fragments of at most `mtu` bytes of IP.
pub fn ipv4_fragments(packet: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let data = &packet[ihl..];
    let step = ((mtu - ihl) / 8) * 8;
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let end = (off + step).min(data.len());
        let mut h = packet[..ihl].to_vec();
        h[2..4].copy_from_slice(&((ihl + end - off) as u16).to_be_bytes());
        let more = if end < data.len() { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&(more | (off / 8) as u16).to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let c = emit::checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(&data[off..end]);
        out.push(h);
        off = end;
    }
    out
}

/// How a ClientHello should look.
#[derive(Clone, Copy, Debug, Default)]
pub struct HelloShape {
    /// A 1216-byte X25519MLKEM768 key share, as Chromium ≥ 124 sends: the
    /// hello grows to ~1.9 KB and needs two segments at MTU 1500.
    pub post_quantum: bool,
    /// GREASE cipher suite and extensions (Chromium sends them).
    pub grease: bool,
    /// An encrypted_client_hello extension (0xfe0d).
    pub ech: bool,
    /// Pad with a padding extension to this many bytes of handshake.
    pub pad_to: usize,
}

fn ext(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// A ClientHello handshake message (type 1, u24 length, body).
pub fn client_hello(sni: Option<&str>, shape: HelloShape, seed: u8) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend((0..32).map(|i| seed.wrapping_mul(31).wrapping_add(i)));
    body.push(32);
    body.extend((0..32).map(|i| seed ^ i));
    let mut suites: Vec<u16> = vec![
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
        0x009c, 0x009d, 0x002f, 0x0035,
    ];
    if shape.grease {
        suites.insert(0, 0x3a3a);
    }
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]);
    let mut e = Vec::new();
    if shape.grease {
        ext(&mut e, 0x0a0a, &[]);
    }
    if let Some(n) = sni {
        let mut d = ((n.len() + 3) as u16).to_be_bytes().to_vec();
        d.push(0);
        d.extend_from_slice(&(n.len() as u16).to_be_bytes());
        d.extend_from_slice(n.as_bytes());
        ext(&mut e, 0x0000, &d);
    }
    ext(&mut e, 0x0017, &[]);
    ext(&mut e, 0xff01, &[0]);
    ext(
        &mut e,
        0x000a,
        &[0, 8, 0x11, 0xec, 0, 0x1d, 0, 0x17, 0, 0x18],
    );
    ext(&mut e, 0x000b, &[1, 0]);
    ext(&mut e, 0x0023, &[]);
    ext(
        &mut e,
        0x0010,
        &[
            0, 12, 2, b'h', b'2', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
        ],
    );
    ext(&mut e, 0x0005, &[1, 0, 0, 0, 0]);
    ext(
        &mut e,
        0x000d,
        &[0, 16, 4, 3, 8, 4, 4, 1, 5, 3, 8, 5, 5, 1, 8, 6, 6, 1],
    );
    ext(&mut e, 0x0012, &[]);
    // key_share: optionally X25519MLKEM768 (0x11ec, 1216 bytes), then X25519.
    let mut ks = Vec::new();
    if shape.post_quantum {
        ks.extend_from_slice(&0x11ecu16.to_be_bytes());
        ks.extend_from_slice(&1216u16.to_be_bytes());
        ks.extend((0..1216).map(|i| (i as u8) ^ seed));
    }
    ks.extend_from_slice(&0x001du16.to_be_bytes());
    ks.extend_from_slice(&32u16.to_be_bytes());
    ks.extend((0..32).map(|i| (i as u8).wrapping_add(seed)));
    let mut d = (ks.len() as u16).to_be_bytes().to_vec();
    d.extend_from_slice(&ks);
    ext(&mut e, 0x0033, &d);
    ext(&mut e, 0x002d, &[1, 1]);
    ext(&mut e, 0x002b, &[4, 3, 4, 3, 3]);
    ext(&mut e, 0x001b, &[2, 0, 2]);
    if shape.ech {
        ext(&mut e, 0xfe0d, &[0, 0, 1, 0, 1, 0x2a, 0, 0x20, 0, 0]);
    }
    if shape.grease {
        ext(&mut e, 0x1a1a, &[0]);
    }
    // Chromium's post-quantum hellos come to ~1.85 KB (its GREASE ECH
    // payload and extension set are larger than this skeleton's).
    let pad_to = if shape.pad_to == 0 && shape.post_quantum {
        1850
    } else {
        shape.pad_to
    };
    let fixed = 4 + body.len() + 2 + e.len();
    if pad_to > fixed + 4 {
        ext(&mut e, 0x0015, &vec![0; pad_to - fixed - 4]);
    }
    body.extend_from_slice(&(e.len() as u16).to_be_bytes());
    body.extend_from_slice(&e);
    let mut msg = vec![1];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    msg
}

/// Wrap a handshake message in TLS records of at most `max` bytes each.
pub fn tls_records(msg: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in msg.chunks(max.max(1)) {
        out.extend_from_slice(&[0x16, 3, 1]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// A DNS query message.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.trim_end_matches('.').split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m
}

/// An HTTP/1.1 GET request.
pub fn http_get(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: chokepoint-synth/1\r\nAccept: */*\r\n\r\n").into_bytes()
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=63 => out.push(v as u8),
        64..=16_383 => out.extend_from_slice(&(0x4000 | v as u16).to_be_bytes()),
        _ => out.extend_from_slice(&(0x8000_0000 | v as u32).to_be_bytes()),
    }
}

/// A CRYPTO frame.
pub fn crypto_frame(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    put_varint(&mut f, offset);
    put_varint(&mut f, data.len() as u64);
    f.extend_from_slice(data);
    f
}

/// An encrypted, header-protected client Initial packet carrying `frames`
/// (PADDING appended up to `datagram_len` bytes of packet).
pub fn quic_initial(
    version: u32,
    dcid: &[u8],
    scid: &[u8],
    pn: u32,
    frames: &[u8],
    datagram_len: usize,
) -> Vec<u8> {
    let s = quic::scheme(version).expect("known version");
    let (key, iv, hp) = quic::client_key_material(&s, dcid).expect("keys");
    let pn_len = 4;
    let mut hdr = vec![0xc0 | (s.initial_type << 4) | (pn_len - 1) as u8];
    hdr.extend_from_slice(&version.to_be_bytes());
    hdr.push(dcid.len() as u8);
    hdr.extend_from_slice(dcid);
    hdr.push(scid.len() as u8);
    hdr.extend_from_slice(scid);
    hdr.push(0); // token length
                 // Length field: two-byte varint, fixed so the header size is known.
    let fixed_hdr = hdr.len() + 2 + pn_len;
    let payload_len = datagram_len
        .saturating_sub(fixed_hdr + 16)
        .max(frames.len())
        .max(20);
    let length = (pn_len + payload_len + 16) as u16;
    hdr.extend_from_slice(&(0x4000 | length).to_be_bytes());
    let pn_offset = hdr.len();
    hdr.extend_from_slice(&pn.to_be_bytes());
    let mut payload = frames.to_vec();
    payload.resize(payload_len, 0);
    let mut nonce = iv;
    for (i, b) in u64::from(pn).to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= b;
    }
    let k = LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, &key).expect("key"));
    k.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&hdr[..]),
        &mut payload,
    )
    .expect("seal");
    let mut pkt = hdr;
    pkt.extend_from_slice(&payload);
    let hpk = aead::quic::HeaderProtectionKey::new(&aead::quic::AES_128, &hp).expect("hp key");
    let mask = hpk
        .new_mask(&pkt[pn_offset + 4..pn_offset + 20])
        .expect("mask");
    pkt[0] ^= mask[0] & 0x0f;
    for i in 0..pn_len {
        pkt[pn_offset + i] ^= mask[1 + i];
    }
    pkt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        let s: IpAddr = "198.18.0.1".parse().unwrap();
        let d: IpAddr = "198.18.0.2".parse().unwrap();
        let ip = ip_packet(s, d, 6, &tcp_segment(s, d, 1, 2, 3, 4, 0x18, b"hello"));
        assert_eq!(emit::checksum(&ip[..20]), 0, "IPv4 header");
        // TCP over its pseudo-header: addresses, protocol, length.
        let mut pseudo = ip[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6, 0, 25]);
        pseudo.extend_from_slice(&ip[20..]);
        assert_eq!(emit::checksum(&pseudo), 0, "TCP");
        for frag in ipv4_fragments(&ip, 28) {
            assert_eq!(emit::checksum(&frag[..20]), 0, "fragment header");
        }
    }

    #[test]
    fn post_quantum_hello_is_chromium_sized() {
        let ch = client_hello(
            Some("www.example.com"),
            HelloShape {
                post_quantum: true,
                grease: true,
                ..Default::default()
            },
            1,
        );
        assert!((1700..2000).contains(&ch.len()), "{}", ch.len());
        let parsed = chokepoint_core::tls::handshake(&ch).unwrap();
        assert_eq!(parsed.sni, Some(&b"www.example.com"[..]));
        assert!(parsed.grease);
    }

    #[test]
    fn quic_initial_round_trips() {
        let ch = client_hello(Some("quic.example"), HelloShape::default(), 2);
        let dcid = [1, 2, 3, 4, 5, 6, 7, 8];
        for v in [quic::V1, quic::V2, 0xff00_001d] {
            let pkt = quic_initial(v, &dcid, &[9; 4], 0, &crypto_frame(0, &ch), 1200);
            assert_eq!(pkt.len(), 1200);
            let (lp, rest) = quic::long_packet(&pkt).unwrap();
            assert!(rest.is_empty() && lp.is_initial());
            let keys = quic::Keys::client(&quic::scheme(v).unwrap(), &dcid).unwrap();
            let mut out = Vec::new();
            let plain = quic::decrypt(&lp, &keys, &mut out).unwrap().to_vec();
            let mut got = Vec::new();
            assert!(quic::crypto_frames(&plain, false, |off, d| got.push((off, d.to_vec()))));
            assert_eq!(got, vec![(0, ch.clone())]);
        }
    }
}
