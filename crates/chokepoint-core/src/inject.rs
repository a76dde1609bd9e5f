//! What a censor sends: TCP resets, forged DNS answers, HTTP redirects to a
//! stub page, built from the frame that triggered the decision, and the
//! token bucket that throttles. Sans-IO: frames in, frames out; the runtime
//! puts them on the wire or in a file.
//!
//! Injected frames reuse the trigger's link-layer header (MAC addresses
//! swapped for the reverse direction, VLAN tags kept), so they go out on
//! the same segment a real on-path box would use. Tunnelled traffic
//! (GRE, GTP-U, VXLAN...) is not answered: the runtime drops it instead.

use std::net::IpAddr;

use chokepoint_ruleset::DnsAnswer;

use crate::synth;
use crate::wire::l4::{self, Tcp, TCP_ACK, TCP_FIN, TCP_RST};
use crate::wire::link::{self, LinkType, ETH_IPV4, ETH_IPV6};
use crate::wire::{ip, Rd};

/// The parts of a plain (untunnelled) frame a reply needs.
#[derive(Clone, Copy, Debug)]
pub struct Trigger<'a> {
    /// Link-layer header up to the IP header (empty for raw-IP links).
    pub l2: &'a [u8],
    pub link: LinkType,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Upper-layer bytes (TCP or UDP header and payload).
    pub l4: &'a [u8],
    pub proto: u8,
}

/// Split a frame into link header, addresses and transport bytes, if it
/// is IP directly on Ethernet (tags allowed) or a raw-IP link.
pub fn trigger(link: LinkType, frame: &[u8]) -> Option<Trigger<'_>> {
    let (l2_len, et) = match link {
        LinkType::Ethernet => {
            let (et, rest, _) = link::ethernet(frame)?;
            (frame.len() - rest.len(), et)
        }
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => (
            0,
            if frame.first()? >> 4 == 6 {
                ETH_IPV6
            } else {
                ETH_IPV4
            },
        ),
        _ => return None,
    };
    let ipb = &frame[l2_len..];
    let p = match et {
        ETH_IPV4 => ip::ipv4(ipb).ok()?,
        ETH_IPV6 => ip::ipv6(ipb).ok()?,
        _ => return None,
    };
    if p.frag.is_some() {
        return None;
    }
    Some(Trigger {
        l2: &frame[..l2_len],
        link,
        src: p.src,
        dst: p.dst,
        l4: p.payload,
        proto: p.proto,
    })
}

/// The link header for a frame going the other way: MACs swapped.
fn reverse_l2(t: &Trigger<'_>) -> Vec<u8> {
    let mut h = t.l2.to_vec();
    if t.link == LinkType::Ethernet && h.len() >= 12 {
        let (dst, src) = h.split_at_mut(6);
        dst.swap_with_slice(&mut src[..6]);
    }
    h
}

fn frame(l2: &[u8], ip_packet: &[u8]) -> Vec<u8> {
    let mut f = l2.to_vec();
    f.extend_from_slice(ip_packet);
    f
}

/// TCP resets for the trigger's connection: one to the client (spoofed
/// from the server, sequence = the client's acknowledgment number) and one
/// to the server (spoofed from the client, sequence = the trigger's own
/// sequence number: the trigger is dropped, so that is exactly what the
/// server expects next), each `repeat` times. Both sides then see a RST at
/// exactly `rcv_nxt`; RFC 5961 stacks (Linux) ignore an in-window RST at
/// any other sequence number and only send a challenge ACK. The trigger
/// must be client → server TCP.
pub fn tcp_resets(t: &Trigger<'_>, repeat: u8) -> Vec<Vec<u8>> {
    let Some(seg) = (t.proto == 6).then(|| l4::tcp(t.l4)).flatten() else {
        return Vec::new();
    };
    let next = next_seq(&seg);
    let to_client = synth::ip_packet(
        t.dst,
        t.src,
        6,
        &synth::tcp_segment(
            t.dst,
            t.src,
            seg.dport,
            seg.sport,
            seg.ack,
            next,
            TCP_RST | TCP_ACK,
            b"",
        ),
    );
    let to_server = reset_to_server(t, &seg);
    let (rev, fwd) = (reverse_l2(t), t.l2);
    let mut out = Vec::new();
    for _ in 0..repeat.max(1) {
        out.push(frame(&rev, &to_client));
        out.push(frame(fwd, &to_server));
    }
    out
}

/// The RST to the server, spoofed from the client. The trigger is dropped,
/// so the server still expects its first byte: that is the sequence number
/// (exactly `rcv_nxt`, which RFC 5961 stacks require of a RST).
fn reset_to_server(t: &Trigger<'_>, seg: &Tcp<'_>) -> Vec<u8> {
    let rst = synth::tcp_segment(
        t.src,
        t.dst,
        seg.sport,
        seg.dport,
        seg.seq,
        seg.ack,
        TCP_RST | TCP_ACK,
        b"",
    );
    synth::ip_packet(t.src, t.dst, 6, &rst)
}

/// Sequence number after this segment (SYN and FIN count one).
fn next_seq(seg: &Tcp<'_>) -> u32 {
    let mut n = seg.payload.len() as u32;
    if seg.flags & crate::wire::l4::TCP_SYN != 0 {
        n += 1;
    }
    if seg.flags & TCP_FIN != 0 {
        n += 1;
    }
    seg.seq.wrapping_add(n)
}

/// Answer an HTTP request with `302 Found` to `location` and close: the
/// reply (with FIN) to the client, a reset to the server.
pub fn http_redirect(t: &Trigger<'_>, location: &str) -> Vec<Vec<u8>> {
    let Some(seg) = (t.proto == 6).then(|| l4::tcp(t.l4)).flatten() else {
        return Vec::new();
    };
    let body = format!(
        "<html><head><title>Blocked</title></head><body><p>Access to this resource is restricted.</p><p><a href=\"{location}\">{location}</a></p></body></html>\n"
    );
    let reply = format!(
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let next = next_seq(&seg);
    let to_client = synth::ip_packet(
        t.dst,
        t.src,
        6,
        &synth::tcp_segment(
            t.dst,
            t.src,
            seg.dport,
            seg.sport,
            seg.ack,
            next,
            TCP_ACK | TCP_FIN | 0x08,
            reply.as_bytes(),
        ),
    );
    let to_server = reset_to_server(t, &seg);
    vec![frame(&reverse_l2(t), &to_client), frame(t.l2, &to_server)]
}

/// A forged answer to a DNS query over UDP: NXDOMAIN, or the sinkhole
/// address for A/AAAA questions of its family (other question types get
/// an empty NOERROR answer, as a sinkholing resolver gives).
pub fn dns_answer(t: &Trigger<'_>, answer: &DnsAnswer, ttl: u32) -> Option<Vec<u8>> {
    let u = (t.proto == 17).then(|| l4::udp(t.l4)).flatten()?;
    let q = u.payload;
    let h = crate::dns::header(q)?;
    if h.response || h.qdcount == 0 {
        return None;
    }
    // The first question, verbatim.
    let mut name = [0u8; crate::dns::MAX_NAME];
    let (_, end) = crate::dns::read_name(q, 12, &mut name)?;
    let qtype = u16::from_be_bytes(q.get(end..end + 2)?.try_into().ok()?);
    let question = q.get(12..end + 4)?;
    let rd = q[2] & 0x01;
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&q[..2]);
    let (rcode, rr): (u8, Option<Vec<u8>>) = match answer {
        DnsAnswer::Nxdomain => (3, None),
        DnsAnswer::Sinkhole(ip) => {
            let data: Option<Vec<u8>> = match (ip, qtype) {
                (IpAddr::V4(a), 1) => Some(a.octets().to_vec()),
                (IpAddr::V6(a), 28) => Some(a.octets().to_vec()),
                _ => None,
            };
            (
                0,
                data.map(|d| {
                    let mut rr = vec![0xc0, 0x0c];
                    rr.extend_from_slice(&qtype.to_be_bytes());
                    rr.extend_from_slice(&[0, 1]);
                    rr.extend_from_slice(&ttl.to_be_bytes());
                    rr.extend_from_slice(&(d.len() as u16).to_be_bytes());
                    rr.extend_from_slice(&d);
                    rr
                }),
            )
        }
    };
    // QR, opcode 0, AA, RD as asked; RA; rcode.
    m.push(0x84 | rd);
    m.push(0x80 | rcode);
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&(u16::from(rr.is_some())).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(question);
    if let Some(rr) = rr {
        m.extend_from_slice(&rr);
    }
    let ipp = synth::ip_packet(
        t.dst,
        t.src,
        17,
        &synth::udp_datagram(t.dst, t.src, u.dport, u.sport, &m),
    );
    Some(frame(&reverse_l2(t), &ipp))
}

/// A token-bucket policer: `rate` bytes per second, `burst` bytes deep,
/// driven by packet timestamps (nanoseconds). Russia throttled Twitter in
/// March 2021 this way, dropping what exceeded ~130–150 kbit/s.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    last: u64,
}

impl TokenBucket {
    /// `kbps` kilobits per second, with a burst of half a second (at least
    /// two full-size packets): with less, TCP backs off so hard after each
    /// drop that it settles well below the policed rate.
    pub fn new(kbps: u32, now: u64) -> TokenBucket {
        let rate = u64::from(kbps) * 1000 / 8;
        let burst = (rate / 2).max(3200);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// May a packet of `len` bytes pass at `now`? Takes its tokens if so.
    pub fn allow(&mut self, now: u64, len: usize) -> bool {
        if now > self.last {
            let add = (u128::from(now - self.last) * u128::from(self.rate) / 1_000_000_000) as u64;
            if add > 0 {
                self.tokens = (self.tokens + add).min(self.burst);
                self.last = now;
            }
        }
        if self.tokens >= len as u64 {
            self.tokens -= len as u64;
            true
        } else {
            false
        }
    }
}

/// Read the TCP flags of a frame built here (for tests and summaries).
pub fn tcp_flags(t: &Trigger<'_>) -> Option<u8> {
    let mut r = Rd::new(t.l4);
    r.skip(13)?;
    r.u8()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, Decoded, L4};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn resets_carry_acceptable_sequence_numbers() {
        let (c, s) = (ip("198.18.0.1"), ip("198.18.0.2"));
        let f = synth::ethernet(
            &synth::ip_packet(
                c,
                s,
                6,
                &synth::tcp_segment(c, s, 40000, 443, 1000, 5000, 0x18, b"hello"),
            ),
            &[(0x8100, 7)],
        );
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
            }
        }
    }

    #[test]
    fn dns_nxdomain_and_sinkhole() {
        let (c, s) = (ip("198.18.0.1"), ip("198.18.0.53"));
        let q = synth::dns_query(0xbeef, "t.me", 1);
        let f = synth::ethernet(
            &synth::ip_packet(c, s, 17, &synth::udp_datagram(c, s, 5353, 53, &q)),
            &[],
        );
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
        let q6 = synth::dns_query(1, "t.me", 28);
        let f6 = synth::ethernet(
            &synth::ip_packet(c, s, 17, &synth::udp_datagram(c, s, 5353, 53, &q6)),
            &[],
        );
        let empty = dns_answer(
            &trigger(LinkType::Ethernet, &f6).unwrap(),
            &DnsAnswer::Sinkhole(ip("198.18.0.99")),
            60,
        )
        .unwrap();
        assert!(empty.ends_with(&q6[12..]), "question echoed, no answer");
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
}
