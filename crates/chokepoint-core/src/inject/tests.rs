use super::*;
use crate::decode::{decode, Decoded, L4};
use crate::wire::emit::VlanTag;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// A client → server Ethernet frame carrying `transport`.
fn frame(src: IpAddr, dst: IpAddr, tags: &[VlanTag], transport: TransportRepr<'_>) -> Vec<u8> {
    let mut eth = EthernetRepr::new(SERVER_MAC, CLIENT_MAC, 0);
    for t in tags {
        eth = eth.with_tag(*t).unwrap();
    }
    FrameRepr::new(Some(eth), src, dst, 64, transport)
        .unwrap()
        .to_vec()
        .unwrap()
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    tags: &[VlanTag],
    payload: &[u8],
) -> Vec<u8> {
    let seg = TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq,
        ack,
        flags: TCP_PSH | TCP_ACK,
        window: 502,
        payload,
    };
    frame(src, dst, tags, TransportRepr::Tcp(seg))
}

fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let u = UdpRepr {
        src_port: sport,
        dst_port: dport,
        payload,
    };
    frame(src, dst, &[], TransportRepr::Udp(u))
}

/// A recursive query for `name`, type `qtype`.
fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0]);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m
}

#[test]
fn resets_carry_acceptable_sequence_numbers() {
    let (c, s) = (ip("198.18.0.1"), ip("198.18.0.2"));
    let tag = VlanTag {
        tpid: 0x8100,
        tci: 7,
    };
    let f = tcp(c, s, 40000, 443, 1000, 5000, &[tag], b"hello");
    let t = trigger(LinkType::Ethernet, &f).unwrap();
    let out = tcp_resets(&t, 2);
    assert_eq!(out.len(), 4);
    for (i, r) in out.iter().enumerate() {
        assert_eq!(&r[12..16], &[0x81, 0, 0, 7], "VLAN tag kept");
        let Decoded::Packet(p) = decode(LinkType::Ethernet, r) else {
            panic!()
        };
        let L4::Tcp(seg) = p.l4 else { panic!() };
        assert_eq!(seg.flags, TCP_RST | TCP_ACK);
        if i % 2 == 0 {
            assert_eq!(
                (p.src, p.dst, seg.sport, seg.seq, seg.ack),
                (s, c, 443, 5000, 1005),
                "to the client"
            );
            assert_eq!(&r[..6], &f[6..12], "MACs swapped");
        } else {
            assert_eq!(
                (p.src, p.dst, seg.sport, seg.seq, seg.ack),
                (c, s, 40000, 1000, 5000),
                "to the server: the dropped segment's own sequence number"
            );
            assert_eq!(&r[..12], &f[..12], "MACs as the trigger's");
        }
    }
}

#[test]
fn http_redirect_answers_with_a_302_and_fin_then_resets_the_server() {
    let (c, s) = (ip("fd00::1"), ip("fd00::80"));
    let req = b"GET / HTTP/1.1\r\nHost: blocked.example\r\n\r\n";
    let f = tcp(c, s, 40001, 80, 77, 9000, &[], req);
    let out = http_redirect(&trigger(LinkType::Ethernet, &f).unwrap(), "http://stub/");
    assert_eq!(out.len(), 2);
    let Decoded::Packet(p) = decode(LinkType::Ethernet, &out[0]) else {
        panic!()
    };
    let L4::Tcp(seg) = p.l4 else { panic!() };
    assert_eq!((p.src, seg.sport, seg.seq), (s, 80, 9000));
    assert_eq!(seg.ack, 77 + req.len() as u32);
    assert_eq!(seg.flags, TCP_FIN | TCP_PSH | TCP_ACK);
    assert!(seg
        .payload
        .starts_with(b"HTTP/1.1 302 Found\r\nLocation: http://stub/\r\n"));
    let Decoded::Packet(p) = decode(LinkType::Ethernet, &out[1]) else {
        panic!()
    };
    let L4::Tcp(seg) = p.l4 else { panic!() };
    assert_eq!((p.dst, seg.seq, seg.flags), (s, 77, TCP_RST | TCP_ACK));
}

#[test]
fn dns_nxdomain_and_sinkhole() {
    let (c, s) = (ip("198.18.0.1"), ip("198.18.0.53"));
    let q = dns_query(0xbeef, "t.me", 1);
    let f = udp(c, s, 5353, 53, &q);
    let t = trigger(LinkType::Ethernet, &f).unwrap();
    let nx = dns_answer(&t, &DnsAnswer::Nxdomain, 300).unwrap();
    let Decoded::Packet(p) = decode(LinkType::Ethernet, &nx) else {
        panic!()
    };
    let L4::Udp(u) = p.l4 else { panic!() };
    assert_eq!((p.src, u.sport, u.dport), (s, 53, 5353));
    assert_eq!(&u.payload[..2], &[0xbe, 0xef]);
    assert_eq!(u.payload[3] & 0x0f, 3, "NXDOMAIN");
    let sink = dns_answer(&t, &DnsAnswer::Sinkhole(ip("198.18.0.99")), 60).unwrap();
    assert!(sink.ends_with(&[0, 0, 0, 60, 0, 4, 198, 18, 0, 99]));
    // AAAA question, IPv4 sinkhole: empty NOERROR
    let q6 = dns_query(1, "t.me", 28);
    let f6 = udp(c, s, 5353, 53, &q6);
    let empty = dns_answer(
        &trigger(LinkType::Ethernet, &f6).unwrap(),
        &DnsAnswer::Sinkhole(ip("198.18.0.99")),
        60,
    )
    .unwrap();
    assert!(empty.ends_with(&q6[12..]), "question echoed, no answer");
    assert!(
        dns_answer_tcp(&t, &DnsAnswer::Nxdomain, 60).is_empty(),
        "UDP is not TCP"
    );
}

#[test]
fn dns_over_tcp_answer_is_length_prefixed_in_sequence_then_closes() {
    let (c, s) = (ip("198.18.0.1"), ip("198.18.0.53"));
    let q = dns_query(0x1234, "blocked-dns.example", 1);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    let (cseq, sseq) = (0xffff_fff0u32, 4242u32);
    let f = tcp(c, s, 45000, 53, cseq, sseq, &[], &framed);
    let t = trigger(LinkType::Ethernet, &f).unwrap();
    let out = dns_answer_tcp(&t, &DnsAnswer::Nxdomain, 300);
    assert_eq!(out.len(), 3);
    let parse = |fr: &[u8]| {
        let Decoded::Packet(p) = decode(LinkType::Ethernet, fr) else {
            panic!()
        };
        let L4::Tcp(seg) = p.l4 else { panic!() };
        (
            p.src,
            p.dst,
            seg.sport,
            seg.dport,
            seg.seq,
            seg.ack,
            seg.flags,
            seg.payload.to_vec(),
        )
    };
    // 1: the answer, at the server's next sequence number, acknowledging
    // the whole query (wrapping past 2^32).
    let (src, dst, sp, dp, seq, ack, flags, payload) = parse(&out[0]);
    assert_eq!((src, dst, sp, dp), (s, c, 53, 45000));
    assert_eq!((seq, ack), (sseq, cseq.wrapping_add(framed.len() as u32)));
    assert_eq!(flags, TCP_PSH | TCP_ACK);
    let len = usize::from(u16::from_be_bytes([payload[0], payload[1]]));
    assert_eq!(len, payload.len() - 2, "length prefix");
    let msg = &payload[2..];
    let h = crate::dns::header(msg).unwrap();
    assert_eq!((h.id, h.response, h.qdcount), (0x1234, true, 1));
    assert_eq!(msg[3] & 0x0f, 3, "NXDOMAIN");
    let mut name = [0u8; crate::dns::MAX_NAME];
    let (n, _) = crate::dns::read_name(msg, 12, &mut name).unwrap();
    assert_eq!(&name[..n], b"blocked-dns.example");
    assert_eq!(
        msg,
        &dns_message(&q, &DnsAnswer::Nxdomain, 300).unwrap()[..],
        "as over UDP"
    );
    // 2: the FIN right after the answer.
    let (src, _, _, _, fseq, fack, flags, payload) = parse(&out[1]);
    assert_eq!(src, s);
    assert_eq!((fseq, fack), (sseq + 2 + len as u32, ack));
    assert_eq!((flags, payload.len()), (TCP_FIN | TCP_ACK, 0));
    // 3: the server's side reset at the dropped query's sequence number.
    let (src, dst, sp, _, rseq, _, flags, _) = parse(&out[2]);
    assert_eq!(
        (src, dst, sp, rseq, flags),
        (c, s, 45000, cseq, TCP_RST | TCP_ACK)
    );
    // A segment without a whole query is not answered.
    let cut = tcp(
        c,
        s,
        45000,
        53,
        cseq,
        sseq,
        &[],
        &framed[..framed.len() - 1],
    );
    let t = trigger(LinkType::Ethernet, &cut).unwrap();
    assert!(dns_answer_tcp(&t, &DnsAnswer::Nxdomain, 300).is_empty());
}

#[test]
fn token_bucket_holds_the_rate() {
    let mut b = TokenBucket::new(140, 0);
    let mut sent = 0usize;
    // offer 1 Mbit/s of 1000-byte packets for 10 s
    for i in 0..1250u64 {
        if b.allow(i * 8_000_000, 1000) {
            sent += 1000;
        }
    }
    let kbps = sent as f64 * 8.0 / 10.0 / 1000.0;
    assert!((120.0..160.0).contains(&kbps), "{kbps}");
}
