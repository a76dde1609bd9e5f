use super::*;
use crate::decode::{decode, Decoded, L4};
use crate::wire::link::LinkType;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn tcp_over_tagged_ipv4_parses_back_with_valid_checksums() {
    let eth = EthernetRepr::new([2; 6], [4; 6], 0)
        .with_tag(VlanTag {
            tpid: ETH_QINQ,
            tci: 100,
        })
        .unwrap()
        .with_tag(VlanTag {
            tpid: ETH_VLAN,
            tci: 7,
        })
        .unwrap();
    let seg = TcpRepr {
        src_port: 443,
        dst_port: 40000,
        seq: 7,
        ack: 9,
        flags: 0x18,
        window: 1000,
        payload: b"hello",
    };
    let f = FrameRepr::new(
        Some(eth),
        ip("198.18.0.2"),
        ip("198.18.0.1"),
        64,
        TransportRepr::Tcp(seg),
    )
    .unwrap();
    let mut buf = [0xaa; 128];
    let n = f.emit(&mut buf).unwrap();
    assert_eq!(n, 14 + 8 + 20 + 25);
    let frame = &buf[..n];
    assert_eq!(&frame[12..16], &[0x88, 0xa8, 0, 100]);
    assert_eq!(
        &frame[20..22],
        &[0x08, 0x00],
        "EtherType set from the IP version"
    );
    let iph = &frame[22..42];
    assert_eq!(checksum(iph), 0, "IPv4 header checksum");
    let pseudo = pseudo_header(ip("198.18.0.2"), ip("198.18.0.1"), 6, 25).unwrap();
    assert_eq!(fold(sum(pseudo, &frame[42..])), 0, "TCP checksum");
    let Decoded::Packet(p) = decode(LinkType::Ethernet, frame) else {
        panic!()
    };
    let L4::Tcp(t) = p.l4 else { panic!() };
    assert_eq!(
        (p.src, p.dst, t.sport, t.dport, t.seq, t.ack, t.flags, t.window),
        (
            ip("198.18.0.2"),
            ip("198.18.0.1"),
            443,
            40000,
            7,
            9,
            0x18,
            1000
        )
    );
    assert_eq!(t.payload, b"hello");
    let (back, len) = EthernetRepr::parse(frame).unwrap();
    assert_eq!((back, len), (f.link.unwrap(), 22));
    assert_eq!(back.reply().reply(), back);
    assert_eq!((back.reply().dst, back.reply().src), ([4; 6], [2; 6]));
}

#[test]
fn udp_over_ipv6_parses_back_with_a_valid_checksum() {
    let (s, d) = (ip("fd00::53"), ip("fd00::1"));
    let dgram = UdpRepr {
        src_port: 53,
        dst_port: 5353,
        payload: b"odd",
    };
    let f = FrameRepr::new(None, s, d, 64, TransportRepr::Udp(dgram)).unwrap();
    let v = f.to_vec().unwrap();
    assert_eq!(v.len(), 40 + 8 + 3);
    let pseudo = pseudo_header(s, d, 17, 11).unwrap();
    assert_eq!(fold(sum(pseudo, &v[40..])), 0, "UDP checksum");
    let Decoded::Packet(p) = decode(LinkType::Raw, &v) else {
        panic!()
    };
    let L4::Udp(u) = p.l4 else { panic!() };
    assert_eq!(
        (p.src, u.sport, u.dport, u.payload),
        (s, 53, 5353, &b"odd"[..])
    );
}

#[test]
fn refuses_short_buffers_and_mixed_families() {
    let t = TransportRepr::Udp(UdpRepr {
        src_port: 1,
        dst_port: 2,
        payload: &[0; 10],
    });
    let f = FrameRepr::new(None, ip("10.0.0.1"), ip("10.0.0.2"), 64, t).unwrap();
    let mut short = [0u8; 37];
    assert_eq!(
        f.emit(&mut short),
        Err(EmitError::BufferTooSmall { need: 38, have: 37 })
    );
    assert_eq!(
        FrameRepr::new(None, ip("10.0.0.1"), ip("fd00::2"), 64, t).unwrap_err(),
        EmitError::MixedFamilies
    );
    let big = vec![0u8; 70_000];
    let huge = TransportRepr::Udp(UdpRepr {
        src_port: 1,
        dst_port: 2,
        payload: &big,
    });
    let f = FrameRepr::new(None, ip("10.0.0.1"), ip("10.0.0.2"), 64, huge).unwrap();
    assert_eq!(f.to_vec(), Err(EmitError::TooLong));
    let mut e = EthernetRepr::new([0; 6], [0; 6], ETH_IPV4);
    for _ in 0..MAX_VLAN_TAGS {
        e = e.with_tag(VlanTag::default()).unwrap();
    }
    assert_eq!(e.with_tag(VlanTag::default()), Err(EmitError::TooManyTags));
}
