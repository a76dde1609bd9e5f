//! Tunnels a censor meets between subscribers and the Internet: GRE,
//! GTP-U (mobile networks), VXLAN. IP-in-IP needs no header of its own.

use super::link::{ETH_IPV4, ETH_IPV6};
use super::Rd;

/// UDP port of GTP-U.
pub const UDP_GTPU: u16 = 2152;
/// UDP port of VXLAN.
pub const UDP_VXLAN: u16 = 4789;

/// GRE: (EtherType of the payload, payload, key for flow keying).
pub fn gre(b: &[u8]) -> Option<(u16, &[u8], u32)> {
    let mut r = Rd::new(b);
    let flags = r.u16()?;
    let proto = r.u16()?;
    let version = flags & 7;
    let mut key = 0;
    if flags & 0x8000 != 0 || flags & 0x4000 != 0 {
        r.skip(4)?; // checksum (+ reserved), or routing offset
    }
    if flags & 0x2000 != 0 {
        key = r.u32()?;
    }
    if flags & 0x1000 != 0 {
        r.skip(4)?; // sequence number
    }
    if version == 1 && flags & 0x0080 != 0 {
        r.skip(4)?; // PPTP acknowledgment number
    }
    if flags & 0x4000 != 0 {
        return None; // source routing (deprecated): not followed
    }
    let proto = if version == 1 && proto == 0x880b {
        // PPTP carries PPP.
        let (et, rest) = super::link::ppp(r.rest())?;
        return Some((et, rest, key));
    } else {
        proto
    };
    Some((proto, r.rest(), key))
}

/// GTP-U (version 1, message type 255 = T-PDU): (inner IP bytes, TEID).
pub fn gtpu(b: &[u8]) -> Option<(&[u8], u32)> {
    let mut r = Rd::new(b);
    let flags = r.u8()?;
    if flags >> 5 != 1 || flags & 0x10 == 0 {
        return None;
    }
    let msg = r.u8()?;
    let len = r.u16()? as usize;
    let teid = r.u32()?;
    if msg != 0xff {
        return None;
    }
    let body = r.rest();
    let body = &body[..len.min(body.len())];
    let mut r = Rd::new(body);
    if flags & 0x07 != 0 {
        r.skip(3)?; // sequence number, N-PDU number
        let mut next = r.u8()?;
        let mut hops = 0;
        while next != 0 {
            hops += 1;
            if hops > 8 {
                return None;
            }
            let n = usize::from(r.u8()?) * 4;
            if n == 0 {
                return None;
            }
            r.skip(n - 2)?;
            next = r.u8()?;
        }
    }
    let inner = r.rest();
    match inner.first()? >> 4 {
        4 | 6 => Some((inner, teid)),
        _ => None,
    }
}

/// VXLAN: (inner Ethernet frame, VNI).
pub fn vxlan(b: &[u8]) -> Option<(&[u8], u32)> {
    let mut r = Rd::new(b);
    let flags = r.u8()?;
    if flags & 0x08 == 0 {
        return None;
    }
    r.skip(3)?;
    let vni = r.u32()? >> 8;
    Some((r.rest(), vni))
}

/// IP protocol numbers that carry IP.
pub fn ip_in_ip(proto: u8) -> Option<u16> {
    match proto {
        4 => Some(ETH_IPV4),
        41 => Some(ETH_IPV6),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtpu_with_extension_header() {
        let mut p = vec![
            0x34, 0xff, 0, 0, 0, 0, 0, 42, 0, 0, 0, 0x85, 1, 0x10, 0, 0, 0x45, 0,
        ];
        let len = (p.len() - 8) as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        let (inner, teid) = gtpu(&p).unwrap();
        assert_eq!((inner, teid), (&[0x45u8, 0][..], 42));
        assert!(gtpu(&p[..10]).is_none());
    }

    #[test]
    fn gre_with_key() {
        let p = [0x20, 0, 0x08, 0, 0, 0, 0, 9, 0x45];
        assert_eq!(gre(&p).unwrap(), (ETH_IPV4, &[0x45u8][..], 9));
    }
}
