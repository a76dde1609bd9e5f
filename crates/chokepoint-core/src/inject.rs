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

use chokepoint_ruleset::{Action, DnsAnswer, ResetTo};

use crate::wire::emit::{EthernetRepr, FrameRepr, TcpRepr, TransportRepr, UdpRepr};
use crate::wire::l4::{self, Tcp, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use crate::wire::link::{LinkType, ETH_IPV4, ETH_IPV6};
use crate::wire::{ip, Rd};

/// TCP PSH: the data is to be delivered now (not in `wire::l4`, which only
/// names the flags the decoder looks at).
const TCP_PSH: u8 = 0x08;

/// Hop limit of injected packets: a host's usual default, so they look
/// like the peer's own.
const HOP_LIMIT: u8 = 64;

/// Receive window advertised in injected segments.
const WINDOW: u16 = 0xffff;

/// The parts of a plain (untunnelled) frame a reply needs.
#[derive(Clone, Copy, Debug)]
pub struct Trigger<'a> {
    /// Link-layer header up to the IP header (empty for raw-IP links).
    pub l2: &'a [u8],
    /// The Ethernet header of `l2`, parsed (`None` on raw-IP links).
    pub eth: Option<EthernetRepr>,
    /// The capture's link type.
    pub link: LinkType,
    /// Source address (the client, for a client → server trigger).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Upper-layer bytes (TCP or UDP header and payload).
    pub l4: &'a [u8],
    /// Upper-layer protocol number.
    pub proto: u8,
}

/// Split a frame into link header, addresses and transport bytes, if it
/// is IP directly on Ethernet (tags allowed) or a raw-IP link.
pub fn trigger(link: LinkType, frame: &[u8]) -> Option<Trigger<'_>> {
    let (l2_len, et, eth) = match link {
        LinkType::Ethernet => {
            let (eth, len) = EthernetRepr::parse(frame)?;
            (len, eth.ethertype, Some(eth))
        }
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => (
            0,
            if frame.first()? >> 4 == 6 {
                ETH_IPV6
            } else {
                ETH_IPV4
            },
            None,
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
        eth,
        link,
        src: p.src,
        dst: p.dst,
        l4: p.payload,
        proto: p.proto,
    })
}

/// Which way an injected frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Toward {
    /// Back to the trigger's sender, spoofed from its destination.
    Client,
    /// On to the trigger's destination, spoofed from its sender.
    Server,
}

/// Build one frame of the trigger's connection into a buffer of its own
/// length. The link header is the trigger's (MACs swapped going back), so
/// the frame leaves on the segment a real on-path box would use.
fn emit(t: &Trigger<'_>, toward: Toward, transport: TransportRepr<'_>) -> Option<Vec<u8>> {
    let (src, dst, link) = match toward {
        Toward::Client => (t.dst, t.src, t.eth.map(|e| e.reply())),
        Toward::Server => (t.src, t.dst, t.eth),
    };
    FrameRepr::new(link, src, dst, HOP_LIMIT, transport)
        .and_then(|f| f.to_vec())
        .ok()
}

/// A TCP segment of the trigger's connection `toward` one end, ports
/// taken from `seg` in that direction.
fn tcp_frame(
    t: &Trigger<'_>,
    seg: &Tcp<'_>,
    toward: Toward,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let (src_port, dst_port) = match toward {
        Toward::Client => (seg.dport, seg.sport),
        Toward::Server => (seg.sport, seg.dport),
    };
    let repr = TcpRepr {
        src_port,
        dst_port,
        seq,
        ack,
        flags,
        window: WINDOW,
        payload,
    };
    emit(t, toward, TransportRepr::Tcp(repr))
}

/// The trigger's TCP segment, if it is TCP.
fn tcp_of<'a>(t: &Trigger<'a>) -> Option<Tcp<'a>> {
    (t.proto == PROTO_TCP).then(|| l4::tcp(t.l4)).flatten()
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
    tcp_resets_to(t, repeat, ResetTo::Both)
}

/// [`tcp_resets`] sent only `to` one end (or both): a box that resets
/// only the client leaves the server's side to time out, one that resets
/// only the server lets the client find out by its own timeout.
pub fn tcp_resets_to(t: &Trigger<'_>, repeat: u8, to: ResetTo) -> Vec<Vec<u8>> {
    let Some(seg) = tcp_of(t) else {
        return Vec::new();
    };
    let to_client = tcp_frame(
        t,
        &seg,
        Toward::Client,
        seg.ack,
        next_seq(&seg),
        TCP_RST | TCP_ACK,
        b"",
    );
    let (Some(to_client), Some(to_server)) = (to_client, reset_to_server(t, &seg)) else {
        return Vec::new();
    };
    let (client, server) = match to {
        ResetTo::Client => (true, false),
        ResetTo::Server => (false, true),
        ResetTo::Both => (true, true),
    };
    let mut out = Vec::new();
    for _ in 0..repeat.max(1) {
        if client {
            out.push(to_client.clone());
        }
        if server {
            out.push(to_server.clone());
        }
    }
    out
}

/// The RST to the server, spoofed from the client. The trigger is dropped,
/// so the server still expects its first byte: that is the sequence number
/// (exactly `rcv_nxt`, which RFC 5961 stacks require of a RST).
fn reset_to_server(t: &Trigger<'_>, seg: &Tcp<'_>) -> Option<Vec<u8>> {
    tcp_frame(
        t,
        seg,
        Toward::Server,
        seg.seq,
        seg.ack,
        TCP_RST | TCP_ACK,
        b"",
    )
}

/// Sequence number after this segment (SYN and FIN count one).
fn next_seq(seg: &Tcp<'_>) -> u32 {
    let mut n = seg.payload.len() as u32;
    if seg.flags & TCP_SYN != 0 {
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
    let Some(seg) = tcp_of(t) else {
        return Vec::new();
    };
    let body = format!(
        "<html><head><title>Blocked</title></head><body><p>Access to this resource is restricted.</p><p><a href=\"{location}\">{location}</a></p></body></html>\n"
    );
    let reply = format!(
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let to_client = tcp_frame(
        t,
        &seg,
        Toward::Client,
        seg.ack,
        next_seq(&seg),
        TCP_ACK | TCP_FIN | TCP_PSH,
        reply.as_bytes(),
    );
    to_client
        .into_iter()
        .chain(reset_to_server(t, &seg))
        .collect()
}

/// The forged answer message to the DNS query `q`: NXDOMAIN, or the
/// sinkhole address for A/AAAA questions of its family (other question
/// types get an empty NOERROR answer, as a sinkholing resolver gives).
fn dns_message(q: &[u8], answer: &DnsAnswer, ttl: u32) -> Option<Vec<u8>> {
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
    Some(m)
}

/// A forged answer to a DNS query over UDP (see [`dns_answer_tcp`] for
/// TCP): NXDOMAIN, or the sinkhole address for A/AAAA questions of its
/// family (other question types get an empty NOERROR answer, as a
/// sinkholing resolver gives).
pub fn dns_answer(t: &Trigger<'_>, answer: &DnsAnswer, ttl: u32) -> Option<Vec<u8>> {
    let u = (t.proto == PROTO_UDP).then(|| l4::udp(t.l4)).flatten()?;
    let m = dns_message(u.payload, answer, ttl)?;
    let repr = UdpRepr {
        src_port: u.dport,
        dst_port: u.sport,
        payload: &m,
    };
    emit(t, Toward::Client, TransportRepr::Udp(repr))
}

/// A forged answer to a DNS query over TCP (RFC 7766), the query's whole
/// length-prefixed message in the trigger segment. Three frames:
///
/// 1. to the client, from the server: the answer (as [`dns_answer`]
///    builds it) behind its two-byte length, PSH|ACK, at the server's next
///    sequence number (the query's acknowledgment number) and
///    acknowledging the whole query segment;
/// 2. to the client: a FIN right after the answer. A resolver may keep a
///    TCP connection open for more queries, but here nobody would answer
///    them: the real server never saw this query, so its byte stream no
///    longer lines up with the client's. Closing, as a resolver that is
///    done with the connection does, makes the client open a fresh one
///    for its next query instead of waiting out a timeout on this one;
/// 3. to the server, from the client: a reset at the dropped query's
///    sequence number (as for [`http_redirect`]), so the orphaned
///    connection is freed now rather than when it times out.
///
/// Empty when the trigger is not TCP or its segment does not start with a
/// whole query message.
pub fn dns_answer_tcp(t: &Trigger<'_>, answer: &DnsAnswer, ttl: u32) -> Vec<Vec<u8>> {
    let Some(seg) = tcp_of(t) else {
        return Vec::new();
    };
    let mut r = Rd::new(seg.payload);
    let Some(q) = r.vec16() else {
        return Vec::new();
    };
    let Some(m) = dns_message(q, answer, ttl) else {
        return Vec::new();
    };
    let Ok(len) = u16::try_from(m.len()) else {
        return Vec::new();
    };
    let mut framed = Vec::with_capacity(2 + m.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&m);
    let (seq, ack) = (seg.ack, next_seq(&seg));
    let data = tcp_frame(
        t,
        &seg,
        Toward::Client,
        seq,
        ack,
        TCP_PSH | TCP_ACK,
        &framed,
    );
    let fin_seq = seq.wrapping_add(framed.len() as u32);
    let fin = tcp_frame(
        t,
        &seg,
        Toward::Client,
        fin_seq,
        ack,
        TCP_FIN | TCP_ACK,
        b"",
    );
    match (data, fin, reset_to_server(t, &seg)) {
        (Some(d), Some(f), Some(r)) => vec![d, f, r],
        _ => Vec::new(),
    }
}

/// A token-bucket policer: `rate` bytes per second, `burst` bytes deep,
/// driven by packet timestamps (nanoseconds). Russia throttled Twitter in
/// March 2021 this way, dropping what exceeded ~130–150 kbit/s (Xue et
/// al., "Throttling Twitter", IMC 2021).
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    last: u64,
}

impl TokenBucket {
    /// `kbps` kilobits per second, with the default burst
    /// ([`Action::default_burst`]: half a second, at least two full-size
    /// packets).
    pub fn new(kbps: u32, now: u64) -> TokenBucket {
        TokenBucket::with_burst(kbps, Action::default_burst(kbps), now)
    }

    /// `kbps` kilobits per second, `burst_bytes` deep; it starts full.
    pub fn with_burst(kbps: u32, burst_bytes: u32, now: u64) -> TokenBucket {
        let rate = u64::from(kbps) * 1000 / 8;
        let burst = u64::from(burst_bytes);
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
mod tests;
