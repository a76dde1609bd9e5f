//! Frame bytes → the innermost IP packet and its transport header.
//!
//! Walks link layer, VLAN tags, PPPoE, MPLS, then IP, through tunnels (GRE,
//! GTP-U, VXLAN, IP-in-IP) down to the innermost IP header and TCP/UDP.
//! Everything a flow needs to be told apart from another with the same
//! inner 5-tuple (VLAN IDs, PPPoE session, tunnel endpoints and IDs) is
//! folded into one `ctx` value. Fragments stop the walk: the engine
//! reassembles them and resumes with [`resume_ip`].

use std::net::IpAddr;

use crate::wire::ip::{self, Frag, IpError};
use crate::wire::l4::{self, Tcp, Udp, PROTO_GRE, PROTO_TCP, PROTO_UDP};
use crate::wire::link::{
    self, AfterMpls, LinkType, ETH_IPV4, ETH_IPV6, ETH_MPLS, ETH_MPLS_MC, ETH_PPPOE_SESSION,
    ETH_TEB,
};
use crate::wire::tunnel;

/// Why a frame could not be fully parsed. Counted per reason; a packet
/// with a problem still reaches the policy with what was parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Problem {
    /// The capture's link type is not one the decoder reads.
    UnsupportedLinkType,
    /// The link-layer header is cut short.
    LinkTruncated,
    /// The IP header is cut short.
    IpTruncated,
    /// The IP version is neither 4 nor 6.
    IpBadVersion,
    /// The IPv4 header length is impossible.
    IpBadHeaderLength,
    /// The IP total length is impossible.
    IpBadTotalLength,
    /// The IPv6 extension-header chain is too long or malformed.
    Ipv6ExtChain,
    /// The capture holds fewer bytes than the IP header says (snaplen).
    CaptureTruncated,
    /// The TCP header is cut short.
    TcpTruncated,
    /// The UDP header is cut short.
    UdpTruncated,
    /// A tunnel header is cut short.
    TunnelTruncated,
    /// More nested headers than the decoder peels.
    TooManyEncapsulations,
    /// A fragment could not be reassembled.
    FragmentDropped,
}

impl Problem {
    /// Every problem, in index order.
    pub const ALL: [Problem; 13] = [
        Problem::UnsupportedLinkType,
        Problem::LinkTruncated,
        Problem::IpTruncated,
        Problem::IpBadVersion,
        Problem::IpBadHeaderLength,
        Problem::IpBadTotalLength,
        Problem::Ipv6ExtChain,
        Problem::CaptureTruncated,
        Problem::TcpTruncated,
        Problem::UdpTruncated,
        Problem::TunnelTruncated,
        Problem::TooManyEncapsulations,
        Problem::FragmentDropped,
    ];
    /// How many problems there are.
    pub const COUNT: usize = Self::ALL.len();

    /// The name used in summaries and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::UnsupportedLinkType => "unsupported_link_type",
            Problem::LinkTruncated => "link_truncated",
            Problem::IpTruncated => "ip_truncated",
            Problem::IpBadVersion => "ip_bad_version",
            Problem::IpBadHeaderLength => "ip_bad_header_length",
            Problem::IpBadTotalLength => "ip_bad_total_length",
            Problem::Ipv6ExtChain => "ipv6_extension_chain",
            Problem::CaptureTruncated => "capture_truncated",
            Problem::TcpTruncated => "tcp_truncated",
            Problem::UdpTruncated => "udp_truncated",
            Problem::TunnelTruncated => "tunnel_truncated",
            Problem::TooManyEncapsulations => "too_many_encapsulations",
            Problem::FragmentDropped => "fragment_dropped",
        }
    }

    fn from_ip(e: IpError) -> Problem {
        match e {
            IpError::Truncated => Problem::IpTruncated,
            IpError::BadVersion => Problem::IpBadVersion,
            IpError::BadHeaderLength => Problem::IpBadHeaderLength,
            IpError::BadTotalLength => Problem::IpBadTotalLength,
            IpError::ExtChainTooLong => Problem::Ipv6ExtChain,
        }
    }
}

/// The transport layer of the innermost packet.
#[derive(Clone, Copy, Debug)]
pub enum L4<'a> {
    /// TCP.
    Tcp(Tcp<'a>),
    /// UDP.
    Udp(Udp<'a>),
    /// Another protocol, or a transport header that did not parse.
    Other(u8),
}

/// An innermost IP packet.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// VLAN, PPPoE session and tunnel context folded into one value.
    pub ctx: u64,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The transport layer.
    pub l4: L4<'a>,
    /// What could not be parsed, if anything (the packet still counts).
    pub problem: Option<Problem>,
    /// IPv4 TTL or IPv6 hop limit (of the first fragment, for a
    /// reassembled datagram).
    pub ttl: u8,
    /// The whole transport segment (header and payload) as captured, for
    /// checksum verification; empty when the capture is truncated.
    pub l4_bytes: &'a [u8],
}

/// A fragment to reassemble before the walk can go on.
#[derive(Clone, Copy, Debug)]
pub struct Fragment<'a> {
    /// VLAN, PPPoE session and tunnel context folded into one value.
    pub ctx: u64,
    /// Headers peeled off before this one.
    pub depth: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Protocol of the reassembled payload (IPv6: next header after the
    /// Fragment header, whose chain is walked again after reassembly).
    pub proto: u8,
    /// Offset, id and more-fragments flag.
    pub frag: Frag,
    /// The fragment's payload.
    pub data: &'a [u8],
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
}

#[derive(Clone, Copy, Debug)]
/// What a frame decodes to.
pub enum Decoded<'a> {
    /// An IP packet with its transport layer.
    Packet(Packet<'a>),
    /// An IP fragment, to reassemble first.
    Fragment(Fragment<'a>),
    /// Not IP (ARP, LLDP, PPPoE discovery, ...).
    NotIp,
    /// Nothing usable: no IP addresses could be read.
    Malformed(Problem),
}

/// Most headers peeled off one frame.
const MAX_DEPTH: u8 = 12;

#[inline]
fn mix(ctx: u64, v: u64) -> u64 {
    (ctx ^ v)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(29)
}

fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

/// Tunnel context: the same whichever direction the outer packet goes.
fn tunnel_ctx(ctx: u64, src: IpAddr, dst: IpAddr, kind: u64, id: u64) -> u64 {
    let (a, b) = (addr_bits(src), addr_bits(dst));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let h = (lo as u64)
        ^ ((lo >> 64) as u64).rotate_left(7)
        ^ (hi as u64).rotate_left(13)
        ^ ((hi >> 64) as u64).rotate_left(19);
    mix(mix(mix(ctx, kind), id), h)
}

/// Decode a captured frame.
pub fn decode(link: LinkType, frame: &[u8]) -> Decoded<'_> {
    let (et, rest, ctx) = match link {
        LinkType::Ethernet => return ethernet(frame, 0, 0),
        LinkType::Raw => match frame.first().map(|b| b >> 4) {
            Some(4) => (ETH_IPV4, frame, 0),
            Some(6) => (ETH_IPV6, frame, 0),
            Some(_) => return Decoded::Malformed(Problem::IpBadVersion),
            None => return Decoded::Malformed(Problem::LinkTruncated),
        },
        LinkType::Ipv4 => (ETH_IPV4, frame, 0),
        LinkType::Ipv6 => (ETH_IPV6, frame, 0),
        LinkType::LinuxSll => match link::sll(frame) {
            Some((et, r)) => (et, r, 0),
            None => return Decoded::Malformed(Problem::LinkTruncated),
        },
        LinkType::LinuxSll2 => match link::sll2(frame) {
            Some((et, r)) => (et, r, 0),
            None => return Decoded::Malformed(Problem::LinkTruncated),
        },
        LinkType::Null | LinkType::Loop => match link::null(frame, link == LinkType::Loop) {
            Some((et, r)) => (et, r, 0),
            None => return Decoded::NotIp,
        },
        LinkType::Ppp | LinkType::PppHdlc => match link::ppp(frame) {
            Some((et, r)) => (et, r, 0),
            None => return Decoded::NotIp,
        },
        LinkType::Other(_) => return Decoded::Malformed(Problem::UnsupportedLinkType),
    };
    ethertype(et, rest, ctx, 0)
}

fn ethernet(b: &[u8], ctx: u64, depth: u8) -> Decoded<'_> {
    match link::ethernet(b) {
        Some((et, rest, vlans)) => ethertype(
            et,
            rest,
            if vlans != 0 { mix(ctx, vlans) } else { ctx },
            depth + 1,
        ),
        None if b.len() < 14 => Decoded::Malformed(Problem::LinkTruncated),
        None => Decoded::NotIp,
    }
}

fn ethertype(et: u16, b: &[u8], ctx: u64, depth: u8) -> Decoded<'_> {
    if depth > MAX_DEPTH {
        return Decoded::Malformed(Problem::TooManyEncapsulations);
    }
    match et {
        ETH_IPV4 | ETH_IPV6 => ip_layer(et, b, ctx, depth + 1),
        ETH_PPPOE_SESSION => match link::pppoe(b) {
            Some((et, rest, session)) => ethertype(
                et,
                rest,
                mix(ctx, 0x5050_0000 | u64::from(session)),
                depth + 1,
            ),
            None if b.len() < 8 => Decoded::Malformed(Problem::LinkTruncated),
            None => Decoded::NotIp,
        },
        ETH_MPLS | ETH_MPLS_MC => match link::mpls(b) {
            // Labels differ per direction and hop: not part of the flow key.
            Some((AfterMpls::Ip(et, rest), _)) => ethertype(et, rest, ctx, depth + 1),
            Some((AfterMpls::Ethernet(rest), _)) => ethernet(rest, ctx, depth + 1),
            None => Decoded::Malformed(Problem::LinkTruncated),
        },
        ETH_TEB => ethernet(b, ctx, depth + 1),
        _ => Decoded::NotIp,
    }
}

fn ip_layer(et: u16, b: &[u8], ctx: u64, depth: u8) -> Decoded<'_> {
    let parsed = if et == ETH_IPV4 {
        ip::ipv4(b)
    } else {
        ip::ipv6(b)
    };
    let ip = match parsed {
        Ok(ip) => ip,
        Err(e) => return Decoded::Malformed(Problem::from_ip(e)),
    };
    if let Some(frag) = ip.frag {
        return Decoded::Fragment(Fragment {
            ctx,
            depth,
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            frag,
            data: ip.payload,
            ttl: ip.ttl,
        });
    }
    let problem = ip.truncated.then_some(Problem::CaptureTruncated);
    with_ttl(
        upper(ctx, depth, ip.src, ip.dst, ip.proto, ip.payload, problem),
        ip.ttl,
    )
}

/// Resume after reassembly: `payload` is the whole datagram's upper part.
/// For IPv6, `proto` is the Fragment header's next header and the rest of
/// the extension chain is walked here.
pub fn resume_ip<'a>(f: &Fragment<'_>, payload: &'a [u8]) -> Decoded<'a> {
    let (proto, payload) = if f.src.is_ipv6() {
        match ip::ipv6_ext_chain(f.proto, payload) {
            Ok((p, rest, None)) => (p, rest),
            Ok((_, _, Some(_))) | Err(_) => return Decoded::Malformed(Problem::Ipv6ExtChain),
        }
    } else {
        (f.proto, payload)
    };
    with_ttl(
        upper(f.ctx, f.depth, f.src, f.dst, proto, payload, None),
        f.ttl,
    )
}

/// The IP header's TTL (hop limit) on the packet it carried.
fn with_ttl(mut d: Decoded<'_>, ttl: u8) -> Decoded<'_> {
    if let Decoded::Packet(p) = &mut d {
        p.ttl = ttl;
    }
    d
}

fn upper<'a>(
    ctx: u64,
    depth: u8,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload: &'a [u8],
    problem: Option<Problem>,
) -> Decoded<'a> {
    // A truncated capture cannot be checked: no bytes, nothing to verify.
    let l4_bytes = if problem.is_some() { &[][..] } else { payload };
    let packet = |l4, problem| {
        Decoded::Packet(Packet {
            ctx,
            src,
            dst,
            l4,
            problem,
            ttl: 0,
            l4_bytes,
        })
    };
    if depth > MAX_DEPTH {
        return packet(L4::Other(proto), Some(Problem::TooManyEncapsulations));
    }
    match proto {
        PROTO_TCP => match l4::tcp(payload) {
            Some(t) => packet(L4::Tcp(t), problem),
            None => packet(L4::Other(proto), problem.or(Some(Problem::TcpTruncated))),
        },
        PROTO_UDP => match l4::udp(payload) {
            Some(u) => {
                if u.dport == tunnel::UDP_GTPU || u.sport == tunnel::UDP_GTPU {
                    if let Some((inner, teid)) = tunnel::gtpu(u.payload) {
                        let et = if inner[0] >> 4 == 4 {
                            ETH_IPV4
                        } else {
                            ETH_IPV6
                        };
                        let c = tunnel_ctx(ctx, src, dst, 2152, u64::from(teid));
                        return ip_layer(et, inner, c, depth + 1);
                    }
                }
                if u.dport == tunnel::UDP_VXLAN {
                    if let Some((inner, vni)) = tunnel::vxlan(u.payload) {
                        return ethernet(
                            inner,
                            tunnel_ctx(ctx, src, dst, 4789, u64::from(vni)),
                            depth + 1,
                        );
                    }
                }
                packet(L4::Udp(u), problem)
            }
            None => packet(L4::Other(proto), problem.or(Some(Problem::UdpTruncated))),
        },
        PROTO_GRE => match tunnel::gre(payload) {
            Some((et, rest, key)) => ethertype(
                et,
                rest,
                tunnel_ctx(ctx, src, dst, 47, u64::from(key)),
                depth + 1,
            ),
            None => packet(L4::Other(proto), problem.or(Some(Problem::TunnelTruncated))),
        },
        p => match tunnel::ip_in_ip(p) {
            Some(et) => ip_layer(
                et,
                payload,
                tunnel_ctx(ctx, src, dst, u64::from(p), 0),
                depth + 1,
            ),
            None => packet(L4::Other(p), problem),
        },
    }
}

/// A flow key for per-host-pair state (the actions' throttle buckets): a
/// hash of the innermost IP header's two addresses (in a fixed order, so
/// both directions agree) and the VLAN/tunnel context. Ports and protocol
/// are left out: IP fragments after the first carry none. Frames that do
/// not decode hash to 0. (Workers are chosen by [`worker_for`], which a
/// kernel fanout program can compute.)
pub fn shard_key(link: LinkType, frame: &[u8]) -> u64 {
    let (ctx, a, b) = match decode(link, frame) {
        Decoded::Packet(p) => (p.ctx, p.src, p.dst),
        Decoded::Fragment(f) => (f.ctx, f.src, f.dst),
        _ => return 0,
    };
    let (x, y) = (addr_bits(a), addr_bits(b));
    let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
    let mut h = mix(ctx, 0x0053_4841_5244);
    for v in [lo as u64, (lo >> 64) as u64, hi as u64, (hi >> 64) as u64] {
        h = mix(h, v);
    }
    h
}

/// The worker (of `workers`) that owns a frame: [`fanout_hash`] modulo
/// `workers`. The live bridge (whose kernel fanout program computes the
/// same function, `chokepoint_runtime::fanout`), `bench` and `replay` all
/// spread frames this way.
pub fn worker_for(link: LinkType, frame: &[u8], workers: usize) -> usize {
    (fanout_hash(link, frame) % workers.max(1) as u32) as usize
}

const FANOUT_K1: u32 = 0x9e37_79b1;
const FANOUT_K2: u32 = 0x85eb_ca6b;

/// The shard hash: a symmetric hash of the *outermost* IP header's two
/// addresses, so both directions of a flow and every fragment of a
/// datagram (which carry no ports) land on one worker, and so does all
/// traffic of a tunnel (whose flows the engine keys by the tunnel's
/// endpoints too): outer fragmentation cannot split a tunnelled flow.
/// Balancing is per host pair (per tunnel for tunnelled traffic).
///
/// It is written as the classic BPF program of the ring backend's
/// `PACKET_FANOUT_CBPF` computes it, load by load (a load past the frame's
/// end makes the program, and this function, return 0):
///
/// * link layer: Ethernet with up to two VLAN tags (802.1Q or 802.1ad),
///   then a PPPoE session (PPP IPv4 or IPv6) or an MPLS stack of up to 8
///   labels (IPv4 or IPv6 after the bottom label), then IPv4 or IPv6;
///   other link types start from their own header (Linux SLL, NULL, PPP,
///   raw IP);
/// * IPv4: each address is its 32-bit word; IPv6: each address is folded
///   `((w0·K1 ⊕ w1)·K1 ⊕ w2)·K1 ⊕ w3` (32-bit wrapping arithmetic);
/// * `lo, hi` = the smaller and larger folded address; `h = (lo·K2 ⊕ hi)·K1`;
///   the hash is `h ⊕ (h >> 16)`;
/// * anything else (ARP, other ethertypes, a third VLAN tag, MPLS deeper
///   than 8 labels, PPP that is not IP) hashes to 0: worker 0.
pub fn fanout_hash(link: LinkType, frame: &[u8]) -> u32 {
    let (et, net) = match link {
        LinkType::Ethernet => match frame.get(12..14) {
            Some(t) => (u16::from_be_bytes([t[0], t[1]]), &frame[14..]),
            None => return 0,
        },
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => match frame.first().map(|b| b >> 4) {
            Some(4) => (ETH_IPV4, frame),
            Some(6) => (ETH_IPV6, frame),
            _ => return 0,
        },
        LinkType::LinuxSll => match link::sll(frame) {
            Some((et, r)) => (et, r),
            None => return 0,
        },
        LinkType::LinuxSll2 => match link::sll2(frame) {
            Some((et, r)) => (et, r),
            None => return 0,
        },
        LinkType::Null | LinkType::Loop => match link::null(frame, link == LinkType::Loop) {
            Some((et, r)) => (et, r),
            None => return 0,
        },
        LinkType::Ppp | LinkType::PppHdlc => match link::ppp(frame) {
            Some((et, r)) => (et, r),
            None => return 0,
        },
        LinkType::Other(_) => return 0,
    };
    fanout_from(et, net).unwrap_or(0)
}

/// [`fanout_hash`] from an ethertype and the bytes after it: `None` where
/// the program returns 0.
fn fanout_from(mut et: u16, net: &[u8]) -> Option<u32> {
    let ld8 = |off: usize| net.get(off).copied();
    let ld16 = |off: usize| Some(u16::from_be_bytes(net.get(off..off + 2)?.try_into().ok()?));
    let ld32 = |off: usize| Some(u32::from_be_bytes(net.get(off..off + 4)?.try_into().ok()?));
    const VLAN: [u16; 2] = [0x8100, 0x88a8];
    let mut off = 0;
    // The kernel takes the outer tag off before the program runs; the
    // program skips one more.
    for _ in 0..2 {
        if VLAN.contains(&et) {
            et = ld16(off + 2)?;
            off += 4;
        }
    }
    if et == ETH_PPPOE_SESSION {
        et = match ld16(off + 6)? {
            0x0021 => ETH_IPV4,
            0x0057 => ETH_IPV6,
            _ => return None,
        };
        off += 8;
    } else if et == ETH_MPLS || et == ETH_MPLS_MC {
        let mut bottom = false;
        for _ in 0..8 {
            let s = ld8(off + 2)? & 1;
            off += 4;
            if s == 1 {
                bottom = true;
                break;
            }
        }
        if !bottom {
            return None;
        }
        et = match ld8(off)? >> 4 {
            4 => ETH_IPV4,
            6 => ETH_IPV6,
            _ => return None,
        };
    }
    let (a, b) = match et {
        ETH_IPV4 => (ld32(off + 12)?, ld32(off + 16)?),
        ETH_IPV6 => {
            let fold = |at: usize| -> Option<u32> {
                let mut acc = ld32(at)?.wrapping_mul(FANOUT_K1);
                acc = (acc ^ ld32(at + 4)?).wrapping_mul(FANOUT_K1);
                acc = (acc ^ ld32(at + 8)?).wrapping_mul(FANOUT_K1);
                Some(acc ^ ld32(at + 12)?)
            };
            (fold(off + 8)?, fold(off + 24)?)
        }
        _ => return None,
    };
    let (lo, hi) = if a > b { (b, a) } else { (a, b) };
    let h = (lo.wrapping_mul(FANOUT_K2) ^ hi).wrapping_mul(FANOUT_K1);
    Some(h ^ (h >> 16))
}
