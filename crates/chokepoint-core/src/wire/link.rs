//! Link layers and what sits between a subscriber and the IP header:
//! Ethernet II with stacked 802.1Q/802.1ad tags, Linux cooked capture (SLL,
//! SLL2), BSD loopback, PPP, PPPoE sessions and MPLS label stacks.

use super::Rd;

/// Capture link types (the pcap `LINKTYPE_*` / DLT numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II (DLT 1).
    Ethernet,
    /// IPv4 or IPv6, told apart by the version nibble.
    Raw,
    /// Raw IPv4 (DLT 228).
    Ipv4,
    /// Raw IPv6 (DLT 229).
    Ipv6,
    /// Linux cooked capture v1 (DLT 113).
    LinuxSll,
    /// Linux cooked capture v2 (DLT 276).
    LinuxSll2,
    /// BSD loopback: 4-byte address family in host byte order.
    Null,
    /// OpenBSD loopback: 4-byte address family, big-endian.
    Loop,
    /// PPP (DLT 9).
    Ppp,
    /// PPP in HDLC framing (DLT 50).
    PppHdlc,
    /// Any other DLT, kept to report it.
    Other(u32),
}

impl LinkType {
    /// The link type of a pcap DLT / pcapng link type number.
    pub fn from_dlt(dlt: u32) -> LinkType {
        match dlt {
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            9 => LinkType::Ppp,
            50 => LinkType::PppHdlc,
            other => LinkType::Other(other),
        }
    }

    /// The DLT number a capture file records for this link type (the
    /// inverse of [`from_dlt`](LinkType::from_dlt); `Raw` is 101,
    /// `LINKTYPE_RAW`).
    pub fn to_dlt(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Null => 0,
            LinkType::Loop => 108,
            LinkType::Ppp => 9,
            LinkType::PppHdlc => 50,
            LinkType::Other(d) => d,
        }
    }
}

/// Ethertype IPv4.
pub const ETH_IPV4: u16 = 0x0800;
/// Ethertype IPv6.
pub const ETH_IPV6: u16 = 0x86dd;
/// Ethertype 802.1Q VLAN tag.
pub const ETH_VLAN: u16 = 0x8100;
/// Ethertype 802.1ad service tag.
pub const ETH_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ ethertypes.
pub const ETH_QINQ_OLD: [u16; 3] = [0x9100, 0x9200, 0x9300];
/// Ethertype PPPoE session.
pub const ETH_PPPOE_SESSION: u16 = 0x8864;
/// Ethertype MPLS unicast.
pub const ETH_MPLS: u16 = 0x8847;
/// Ethertype MPLS multicast.
pub const ETH_MPLS_MC: u16 = 0x8848;
/// Ethertype transparent Ethernet bridging (inside GRE).
pub const ETH_TEB: u16 = 0x6558;

/// Most VLAN tags followed in one frame.
pub const MAX_VLAN_TAGS: usize = 8;

/// An Ethernet II header with its tag stack: (EtherType, payload, VLAN IDs
/// folded into one value for flow keying). `None` when truncated or when
/// the frame is 802.3 with a length field.
pub fn ethernet(b: &[u8]) -> Option<(u16, &[u8], u64)> {
    let mut r = Rd::new(b);
    r.skip(12)?;
    let mut et = r.u16()?;
    let mut vlans = 0u64;
    let mut tags = 0;
    while et == ETH_VLAN || et == ETH_QINQ || ETH_QINQ_OLD.contains(&et) {
        tags += 1;
        if tags > MAX_VLAN_TAGS {
            return None;
        }
        let tci = r.u16()?;
        // The ID only: priority bits change per packet on some links.
        vlans = vlans.wrapping_mul(0x1_0001) ^ u64::from(tci & 0x0fff) ^ (1 << 40);
        et = r.u16()?;
    }
    if et < 0x0600 {
        return None;
    }
    Some((et, r.rest(), vlans))
}

/// Linux cooked capture v1: 16 bytes, protocol in the last two.
pub fn sll(b: &[u8]) -> Option<(u16, &[u8])> {
    let mut r = Rd::new(b);
    r.skip(14)?;
    let proto = r.u16()?;
    Some((proto, r.rest()))
}

/// Linux cooked capture v2: 20 bytes, protocol first.
pub fn sll2(b: &[u8]) -> Option<(u16, &[u8])> {
    let mut r = Rd::new(b);
    let proto = r.u16()?;
    r.skip(18)?;
    Some((proto, r.rest()))
}

/// IP version of a loopback family value (BSDs disagree on IPv6's number).
fn family(f: u32) -> Option<u16> {
    match f {
        2 => Some(ETH_IPV4),
        10 | 24 | 28 | 30 => Some(ETH_IPV6),
        _ => None,
    }
}

/// BSD loopback (DLT_NULL/LOOP): a 4-byte address family, then IP.
pub fn null(b: &[u8], big_endian: bool) -> Option<(u16, &[u8])> {
    let h: [u8; 4] = b.get(..4)?.try_into().ok()?;
    let f = if big_endian {
        u32::from_be_bytes(h)
    } else {
        // Host order of the capturing machine: try both.
        let le = u32::from_le_bytes(h);
        if family(le).is_some() {
            le
        } else {
            u32::from_be_bytes(h)
        }
    };
    Some((family(f)?, &b[4..]))
}

/// PPP protocol numbers as EtherTypes; others are not followed.
pub fn ppp_proto_to_ethertype(p: u16) -> Option<u16> {
    match p {
        0x0021 => Some(ETH_IPV4),
        0x0057 => Some(ETH_IPV6),
        0x0281 => Some(ETH_MPLS),
        _ => None,
    }
}

/// A PPP frame, with or without the HDLC address/control bytes and with a
/// one- or two-byte protocol field.
pub fn ppp(b: &[u8]) -> Option<(u16, &[u8])> {
    let b = b.strip_prefix(&[0xff, 0x03]).unwrap_or(b);
    ppp_protocol(b)
}

/// A PPPoE session frame (EtherType 0x8864): version/type, code, session,
/// length, then PPP. Returns the session ID for flow keying.
pub fn pppoe(b: &[u8]) -> Option<(u16, &[u8], u16)> {
    let mut r = Rd::new(b);
    let vt = r.u8()?;
    if vt != 0x11 {
        return None;
    }
    let _code = r.u8()?;
    let session = r.u16()?;
    let len = r.u16()? as usize;
    let body = r.take(len.min(r.left()))?;
    let (et, rest) = ppp_protocol(body)?;
    Some((et, rest, session))
}

/// A PPP protocol field, one byte when compressed (RFC 1661 PFC: an odd
/// first byte), else two.
fn ppp_protocol(b: &[u8]) -> Option<(u16, &[u8])> {
    let mut r = Rd::new(b);
    let first = r.u8()?;
    let proto = if first & 1 == 1 {
        u16::from(first)
    } else {
        u16::from(first) << 8 | u16::from(r.u8()?)
    };
    Some((ppp_proto_to_ethertype(proto)?, r.rest()))
}

/// What follows an MPLS label stack.
pub enum AfterMpls<'a> {
    /// An IP packet (its ethertype, its bytes).
    Ip(u16, &'a [u8]),
    /// Pseudowire control word then Ethernet.
    Ethernet(&'a [u8]),
}

/// Pop the label stack; guess the payload from its first nibble (MPLS does
/// not say), as every MPLS-aware analyser does.
pub fn mpls(b: &[u8]) -> Option<(AfterMpls<'_>, u64)> {
    let mut r = Rd::new(b);
    let mut labels = 0u64;
    for _ in 0..16 {
        let e = r.u32()?;
        labels = labels.wrapping_mul(0x10_0001) ^ u64::from(e >> 12);
        if e & 0x100 != 0 {
            let rest = r.rest();
            let next = match rest.first()? >> 4 {
                4 => AfterMpls::Ip(ETH_IPV4, rest),
                6 => AfterMpls::Ip(ETH_IPV6, rest),
                0 => AfterMpls::Ethernet(rest.get(4..)?),
                _ => return None,
            };
            return Some((next, labels));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qinq_tags_are_keyed_and_stripped() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[
            0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x14, 0x08, 0x00, 0x45,
        ]);
        let (et, rest, v) = ethernet(&f).unwrap();
        assert_eq!((et, rest), (ETH_IPV4, &[0x45u8][..]));
        let mut g = f.clone();
        g[15] = 0x0b;
        assert_ne!(
            ethernet(&g).unwrap().2,
            v,
            "different VLAN, different context"
        );
        assert!(ethernet(&f[..15]).is_none());
    }

    #[test]
    fn pppoe_with_compressed_protocol() {
        let f = [0x11, 0, 0, 0x2d, 0, 3, 0x21, 0x45, 0];
        assert_eq!(pppoe(&f).unwrap(), (ETH_IPV4, &[0x45u8, 0][..], 0x2d));
        let f = [0x11, 0, 0, 0x2d, 0, 4, 0, 0x57, 0x60, 0];
        assert_eq!(pppoe(&f).unwrap().0, ETH_IPV6);
    }

    #[test]
    fn ppp_forms() {
        assert_eq!(ppp(&[0xff, 0x03, 0x00, 0x21, 0x45]).unwrap().0, ETH_IPV4);
        assert_eq!(ppp(&[0x00, 0x57, 0x60]).unwrap().0, ETH_IPV6);
        assert_eq!(ppp(&[0x21, 0x45]).unwrap().0, ETH_IPV4);
        assert!(ppp(&[0xc0, 0x21]).is_none());
    }
}
