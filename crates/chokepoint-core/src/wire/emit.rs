//! The write side of `wire`: frames built into a caller's buffer.
//!
//! Modelled on smoltcp's `Repr::emit`: each `*Repr` is a plain description
//! of one header, [`buffer_len`](TcpRepr::buffer_len) says how many bytes
//! it needs, and `emit` writes it at the front of a buffer the caller owns
//! (checksums included) and returns the bytes written. Nothing here
//! allocates; a short buffer is an error, never a panic, so the live
//! injection path can reuse one scratch buffer for every frame.
//!
//! [`FrameRepr`] stacks the layers (optional Ethernet with its VLAN tags,
//! IPv4 or IPv6, TCP or UDP) so that a caller describes a whole frame once
//! and emits it in one call.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::l4::{PROTO_TCP, PROTO_UDP};
use super::link::{ETH_IPV4, ETH_IPV6, ETH_QINQ, ETH_QINQ_OLD, ETH_VLAN, MAX_VLAN_TAGS};

/// Why a frame could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmitError {
    /// The buffer holds fewer bytes than [`buffer_len`](FrameRepr::buffer_len).
    BufferTooSmall {
        /// Bytes the header (and payload) need.
        need: usize,
        /// Bytes the buffer holds.
        have: usize,
    },
    /// Source and destination are of different address families.
    MixedFamilies,
    /// The payload does not fit the header's 16-bit length field.
    TooLong,
    /// More VLAN tags than [`MAX_VLAN_TAGS`].
    TooManyTags,
}

impl std::fmt::Display for EmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmitError::BufferTooSmall { need, have } => {
                write!(f, "buffer of {have} bytes, {need} needed")
            }
            EmitError::MixedFamilies => f.write_str("IPv4 and IPv6 addresses mixed"),
            EmitError::TooLong => f.write_str("payload too long for the length field"),
            EmitError::TooManyTags => write!(f, "more than {MAX_VLAN_TAGS} VLAN tags"),
        }
    }
}

impl std::error::Error for EmitError {}

/// The first `need` bytes of `buf`, or why not.
fn room(buf: &mut [u8], need: usize) -> Result<&mut [u8], EmitError> {
    let have = buf.len();
    buf.get_mut(..need)
        .ok_or(EmitError::BufferTooSmall { need, have })
}

/// One's-complement sum of `data` as big-endian 16-bit words (RFC 1071),
/// an odd last byte padded with zero. Not folded.
fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = words.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

/// Fold carries back in and complement.
fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum (RFC 1071) of `data`: what an IPv4 header's
/// checksum field holds when computed over the header with that field
/// zero. A buffer that already carries a correct checksum sums to 0.
pub fn checksum(data: &[u8]) -> u16 {
    fold(sum(0, data))
}

/// Does a received TCP or UDP segment (header and payload, as captured)
/// carry a correct checksum? A UDP checksum of zero over IPv4 means none
/// was computed (RFC 768) and passes.
pub fn transport_checksum_ok(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> bool {
    if proto == crate::wire::l4::PROTO_UDP && src.is_ipv4() && segment.get(6..8) == Some(&[0, 0]) {
        return true;
    }
    match pseudo_header(src, dst, proto, segment.len()) {
        Ok(acc) => fold(sum(acc, segment)) == 0,
        Err(_) => true,
    }
}

/// Sum of the pseudo-header a TCP or UDP checksum covers (RFC 793 for
/// IPv4, RFC 8200 §8.1 for IPv6).
fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Result<u32, EmitError> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = u16::try_from(len).map_err(|_| EmitError::TooLong)?;
            let acc = sum(sum(0, &s.octets()), &d.octets());
            Ok(sum(sum(acc, &[0, proto]), &len.to_be_bytes()))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = u32::try_from(len).map_err(|_| EmitError::TooLong)?;
            let acc = sum(sum(0, &s.octets()), &d.octets());
            Ok(sum(sum(acc, &len.to_be_bytes()), &[0, 0, 0, proto]))
        }
        _ => Err(EmitError::MixedFamilies),
    }
}

/// One 802.1Q/802.1ad tag: the tag protocol identifier and the tag
/// control information (priority, DEI, VLAN ID) as on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VlanTag {
    /// 0x8100 (802.1Q), 0x88a8 (802.1ad) or a pre-standard 0x9100..0x9300.
    pub tpid: u16,
    /// Priority (3 bits), DEI (1 bit), VLAN ID (12 bits).
    pub tci: u16,
}

/// An Ethernet II header with its VLAN tag stack, outermost tag first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Destination MAC address.
    pub dst: [u8; 6],
    /// Source MAC address.
    pub src: [u8; 6],
    /// EtherType after the tags (what the payload is).
    pub ethertype: u16,
    tags: [VlanTag; MAX_VLAN_TAGS],
    n_tags: u8,
}

impl EthernetRepr {
    /// An untagged header.
    pub fn new(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> EthernetRepr {
        EthernetRepr {
            dst,
            src,
            ethertype,
            tags: [VlanTag::default(); MAX_VLAN_TAGS],
            n_tags: 0,
        }
    }

    /// The same header with `tag` added inside the existing ones.
    pub fn with_tag(mut self, tag: VlanTag) -> Result<EthernetRepr, EmitError> {
        let slot = self
            .tags
            .get_mut(usize::from(self.n_tags))
            .ok_or(EmitError::TooManyTags)?;
        *slot = tag;
        self.n_tags += 1;
        Ok(self)
    }

    /// The VLAN tags, outermost first.
    pub fn tags(&self) -> &[VlanTag] {
        &self.tags[..usize::from(self.n_tags)]
    }

    /// Read the header at the front of `frame`: the description and the
    /// header's length. `None` when truncated, an 802.3 length field, or
    /// more than [`MAX_VLAN_TAGS`] tags (the same frames
    /// [`link::ethernet`](super::link::ethernet) refuses).
    pub fn parse(frame: &[u8]) -> Option<(EthernetRepr, usize)> {
        let mut r = super::Rd::new(frame);
        let dst: [u8; 6] = r.take(6)?.try_into().ok()?;
        let src: [u8; 6] = r.take(6)?.try_into().ok()?;
        let mut e = EthernetRepr::new(dst, src, r.u16()?);
        while e.ethertype == ETH_VLAN
            || e.ethertype == ETH_QINQ
            || ETH_QINQ_OLD.contains(&e.ethertype)
        {
            let tag = VlanTag {
                tpid: e.ethertype,
                tci: r.u16()?,
            };
            e = e.with_tag(tag).ok()?;
            e.ethertype = r.u16()?;
        }
        (e.ethertype >= 0x0600).then_some((e, r.pos()))
    }

    /// The header of a frame going back the other way on the same
    /// segment: addresses swapped, tags and EtherType kept.
    pub fn reply(&self) -> EthernetRepr {
        EthernetRepr {
            dst: self.src,
            src: self.dst,
            ..*self
        }
    }

    /// Bytes the header takes.
    pub fn buffer_len(&self) -> usize {
        14 + 4 * usize::from(self.n_tags)
    }

    /// Write the header at the front of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let n = self.buffer_len();
        let b = room(buf, n)?;
        b[..6].copy_from_slice(&self.dst);
        b[6..12].copy_from_slice(&self.src);
        let mut at = 12;
        for t in self.tags() {
            b[at..at + 2].copy_from_slice(&t.tpid.to_be_bytes());
            b[at + 2..at + 4].copy_from_slice(&t.tci.to_be_bytes());
            at += 4;
        }
        b[at..at + 2].copy_from_slice(&self.ethertype.to_be_bytes());
        Ok(n)
    }
}

/// An IPv4 header without options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Upper-layer protocol.
    pub protocol: u8,
    /// Bytes after the header (the total length field is 20 more).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Identification field.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
    /// More-fragments flag.
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// Bytes the header takes.
    pub const HEADER_LEN: usize = 20;

    /// A whole (unfragmented) datagram's header, don't-fragment set, as
    /// hosts doing path-MTU discovery send.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload_len: usize, ttl: u8) -> Self {
        Ipv4Repr {
            src,
            dst,
            protocol,
            payload_len,
            ttl,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    /// Bytes the header takes.
    pub fn buffer_len(&self) -> usize {
        Self::HEADER_LEN
    }

    /// Write the header (checksum included) at the front of `buf`; the
    /// payload is the caller's to put after it.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let total =
            u16::try_from(Self::HEADER_LEN + self.payload_len).map_err(|_| EmitError::TooLong)?;
        let b = room(buf, Self::HEADER_LEN)?;
        let flags = (u16::from(self.dont_frag) << 14) | (u16::from(self.more_frags) << 13);
        b[0] = 0x45;
        b[1] = 0;
        b[2..4].copy_from_slice(&total.to_be_bytes());
        b[4..6].copy_from_slice(&self.ident.to_be_bytes());
        b[6..8].copy_from_slice(&(flags | ((self.frag_offset / 8) & 0x1fff)).to_be_bytes());
        b[8] = self.ttl;
        b[9] = self.protocol;
        b[10..12].fill(0);
        b[12..16].copy_from_slice(&self.src.octets());
        b[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum(b);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        Ok(Self::HEADER_LEN)
    }
}

/// An IPv6 fixed header (extension headers, if any, are payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// The first header after this one.
    pub next_header: u8,
    /// Bytes after the fixed header.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Bytes the header takes.
    pub const HEADER_LEN: usize = 40;

    /// Bytes the header takes.
    pub fn buffer_len(&self) -> usize {
        Self::HEADER_LEN
    }

    /// Write the header at the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let plen = u16::try_from(self.payload_len).map_err(|_| EmitError::TooLong)?;
        let b = room(buf, Self::HEADER_LEN)?;
        b[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        b[4..6].copy_from_slice(&plen.to_be_bytes());
        b[6] = self.next_header;
        b[7] = self.hop_limit;
        b[8..24].copy_from_slice(&self.src.octets());
        b[24..40].copy_from_slice(&self.dst.octets());
        Ok(Self::HEADER_LEN)
    }
}

/// An IPv4 or IPv6 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpRepr {
    /// IPv4.
    V4(Ipv4Repr),
    /// IPv6.
    V6(Ipv6Repr),
}

impl IpRepr {
    /// The header for `payload_len` bytes of `protocol` from `src` to
    /// `dst`, IPv4 or IPv6 by the addresses (IPv4 with don't-fragment).
    pub fn new(
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        payload_len: usize,
        hop_limit: u8,
    ) -> Result<IpRepr, EmitError> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Ok(IpRepr::V4(Ipv4Repr::new(
                s,
                d,
                protocol,
                payload_len,
                hop_limit,
            ))),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Ok(IpRepr::V6(Ipv6Repr {
                src,
                dst,
                next_header: protocol,
                payload_len,
                hop_limit,
            })),
            _ => Err(EmitError::MixedFamilies),
        }
    }

    /// Source address.
    pub fn src(&self) -> IpAddr {
        match self {
            IpRepr::V4(h) => h.src.into(),
            IpRepr::V6(h) => h.src.into(),
        }
    }

    /// Destination address.
    pub fn dst(&self) -> IpAddr {
        match self {
            IpRepr::V4(h) => h.dst.into(),
            IpRepr::V6(h) => h.dst.into(),
        }
    }

    /// The EtherType that announces this header.
    pub fn ethertype(&self) -> u16 {
        match self {
            IpRepr::V4(_) => ETH_IPV4,
            IpRepr::V6(_) => ETH_IPV6,
        }
    }

    /// Bytes the header takes.
    pub fn buffer_len(&self) -> usize {
        match self {
            IpRepr::V4(h) => h.buffer_len(),
            IpRepr::V6(h) => h.buffer_len(),
        }
    }

    /// Write the header at the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        match self {
            IpRepr::V4(h) => h.emit(buf),
            IpRepr::V6(h) => h.emit(buf),
        }
    }
}

/// A TCP segment without options, payload included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful with ACK set).
    pub ack: u32,
    /// Flag bits (`wire::l4::TCP_*`, PSH 0x08, URG 0x20...).
    pub flags: u8,
    /// Receive window.
    pub window: u16,
    /// Segment data.
    pub payload: &'a [u8],
}

impl TcpRepr<'_> {
    /// Bytes of the header alone.
    pub const HEADER_LEN: usize = 20;

    /// Bytes the segment takes, payload included.
    pub fn buffer_len(&self) -> usize {
        Self::HEADER_LEN + self.payload.len()
    }

    /// Write the segment at the front of `buf`, its checksum over the
    /// pseudo-header of `src` → `dst`.
    pub fn emit(&self, src: IpAddr, dst: IpAddr, buf: &mut [u8]) -> Result<usize, EmitError> {
        let n = self.buffer_len();
        let acc = pseudo_header(src, dst, PROTO_TCP, n)?;
        let b = room(buf, n)?;
        b[..2].copy_from_slice(&self.src_port.to_be_bytes());
        b[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        b[4..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..12].copy_from_slice(&self.ack.to_be_bytes());
        b[12] = (Self::HEADER_LEN as u8 / 4) << 4;
        b[13] = self.flags;
        b[14..16].copy_from_slice(&self.window.to_be_bytes());
        b[16..20].fill(0);
        b[20..].copy_from_slice(self.payload);
        let c = fold(sum(acc, b));
        b[16..18].copy_from_slice(&c.to_be_bytes());
        Ok(n)
    }
}

/// A UDP datagram, payload included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Datagram data.
    pub payload: &'a [u8],
}

impl UdpRepr<'_> {
    /// Bytes of the header alone.
    pub const HEADER_LEN: usize = 8;

    /// Bytes the datagram takes, payload included.
    pub fn buffer_len(&self) -> usize {
        Self::HEADER_LEN + self.payload.len()
    }

    /// Write the datagram at the front of `buf`, its checksum over the
    /// pseudo-header of `src` → `dst`.
    pub fn emit(&self, src: IpAddr, dst: IpAddr, buf: &mut [u8]) -> Result<usize, EmitError> {
        let n = self.buffer_len();
        let len = u16::try_from(n).map_err(|_| EmitError::TooLong)?;
        let acc = pseudo_header(src, dst, PROTO_UDP, n)?;
        let b = room(buf, n)?;
        b[..2].copy_from_slice(&self.src_port.to_be_bytes());
        b[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        b[4..6].copy_from_slice(&len.to_be_bytes());
        b[6..8].fill(0);
        b[8..].copy_from_slice(self.payload);
        // A computed 0 is sent as 0xffff: 0 means "no checksum" (RFC 768),
        // which IPv6 forbids.
        let c = match fold(sum(acc, b)) {
            0 => 0xffff,
            c => c,
        };
        b[6..8].copy_from_slice(&c.to_be_bytes());
        Ok(n)
    }
}

/// The transport part of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportRepr<'a> {
    /// A TCP segment.
    Tcp(TcpRepr<'a>),
    /// A UDP datagram.
    Udp(UdpRepr<'a>),
}

impl TransportRepr<'_> {
    /// The IP protocol number.
    pub fn protocol(&self) -> u8 {
        match self {
            TransportRepr::Tcp(_) => PROTO_TCP,
            TransportRepr::Udp(_) => PROTO_UDP,
        }
    }

    /// Bytes it takes, payload included.
    pub fn buffer_len(&self) -> usize {
        match self {
            TransportRepr::Tcp(t) => t.buffer_len(),
            TransportRepr::Udp(u) => u.buffer_len(),
        }
    }

    /// Write it at the front of `buf` (see [`TcpRepr::emit`]).
    pub fn emit(&self, src: IpAddr, dst: IpAddr, buf: &mut [u8]) -> Result<usize, EmitError> {
        match self {
            TransportRepr::Tcp(t) => t.emit(src, dst, buf),
            TransportRepr::Udp(u) => u.emit(src, dst, buf),
        }
    }
}

/// A whole frame: an optional Ethernet header (absent on raw-IP links),
/// the IP header, the transport header and its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRepr<'a> {
    /// The link header; its EtherType is set to the IP version's.
    pub link: Option<EthernetRepr>,
    /// The IP header, its protocol and length matching `transport`.
    pub ip: IpRepr,
    /// The transport header and payload.
    pub transport: TransportRepr<'a>,
}

impl<'a> FrameRepr<'a> {
    /// Describe `transport` from `src` to `dst` with `hop_limit`, behind
    /// `link` if given. The IP header's protocol, length and the link's
    /// EtherType follow from the parts, so they cannot disagree.
    pub fn new(
        link: Option<EthernetRepr>,
        src: IpAddr,
        dst: IpAddr,
        hop_limit: u8,
        transport: TransportRepr<'a>,
    ) -> Result<FrameRepr<'a>, EmitError> {
        let ip = IpRepr::new(
            src,
            dst,
            transport.protocol(),
            transport.buffer_len(),
            hop_limit,
        )?;
        let link = link.map(|l| EthernetRepr {
            ethertype: ip.ethertype(),
            ..l
        });
        Ok(FrameRepr {
            link,
            ip,
            transport,
        })
    }

    /// Bytes the frame takes.
    pub fn buffer_len(&self) -> usize {
        self.link.map_or(0, |l| l.buffer_len()) + self.ip.buffer_len() + self.transport.buffer_len()
    }

    /// Write the frame at the front of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let n = self.buffer_len();
        let b = room(buf, n)?;
        let mut at = match &self.link {
            Some(l) => l.emit(b)?,
            None => 0,
        };
        at += self.ip.emit(&mut b[at..])?;
        at += self
            .transport
            .emit(self.ip.src(), self.ip.dst(), &mut b[at..])?;
        Ok(at)
    }

    /// The frame in a new buffer of exactly its length.
    pub fn to_vec(&self) -> Result<Vec<u8>, EmitError> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests;
