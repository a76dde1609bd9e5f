//! IPv4 (with options and fragments) and IPv6 (with its extension-header
//! chain: hop-by-hop, routing, destination options, fragment, AH).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Rd;

/// Where a fragment sits in its datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frag {
    /// Identification (IPv6: 32 bits).
    pub id: u32,
    /// Byte offset of this fragment's data.
    pub offset: u32,
    /// More fragments follow.
    pub more: bool,
}

/// A parsed IP header and its upper-layer payload.
#[derive(Clone, Copy, Debug)]
pub struct Ip<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Upper-layer bytes, trimmed to the header's length field.
    pub payload: &'a [u8],
    /// Set for a non-atomic fragment; `payload` is then fragment data.
    pub frag: Option<Frag>,
    /// The capture holds fewer bytes than the header says.
    pub truncated: bool,
    /// IPv4 TTL or IPv6 hop limit, as it reached the capture point.
    pub ttl: u8,
}

/// Why an IP header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpError {
    /// Shorter than its header.
    Truncated,
    /// Not version 4 or 6.
    BadVersion,
    /// IPv4 IHL below 5 or past the data.
    BadHeaderLength,
    /// Total length below the header length.
    BadTotalLength,
    /// More IPv6 extension headers than are walked.
    ExtChainTooLong,
}

/// Parse an IPv4 header.
pub fn ipv4(b: &[u8]) -> Result<Ip<'_>, IpError> {
    let mut r = Rd::new(b);
    let vihl = r.u8().ok_or(IpError::Truncated)?;
    if vihl >> 4 != 4 {
        return Err(IpError::BadVersion);
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < 20 {
        return Err(IpError::BadHeaderLength);
    }
    r.skip(1).ok_or(IpError::Truncated)?;
    let total = r.u16().ok_or(IpError::Truncated)? as usize;
    let id = r.u16().ok_or(IpError::Truncated)?;
    let ff = r.u16().ok_or(IpError::Truncated)?;
    let ttl = r.u8().ok_or(IpError::Truncated)?;
    let proto = r.u8().ok_or(IpError::Truncated)?;
    r.skip(2).ok_or(IpError::Truncated)?;
    let src = Ipv4Addr::from(r.u32().ok_or(IpError::Truncated)?);
    let dst = Ipv4Addr::from(r.u32().ok_or(IpError::Truncated)?);
    if b.len() < ihl {
        return Err(IpError::Truncated);
    }
    // TSO captures carry total length 0; trust the capture then.
    let total = if total == 0 { b.len() } else { total };
    if total < ihl {
        return Err(IpError::BadTotalLength);
    }
    let truncated = b.len() < total;
    let payload = &b[ihl..total.min(b.len())];
    let offset = u32::from(ff & 0x1fff) * 8;
    let more = ff & 0x2000 != 0;
    let frag = (more || offset > 0).then_some(Frag {
        id: u32::from(id),
        offset,
        more,
    });
    Ok(Ip {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        proto,
        payload,
        frag,
        truncated,
        ttl,
    })
}

/// IPv6 Hop-by-Hop Options.
pub const NH_HOPOPT: u8 = 0;
/// IPv6 Routing header.
pub const NH_ROUTING: u8 = 43;
/// IPv6 Fragment header.
pub const NH_FRAGMENT: u8 = 44;
/// Authentication Header.
pub const NH_AH: u8 = 51;
/// IPv6 Destination Options.
pub const NH_DSTOPTS: u8 = 60;
/// Mobility header.
pub const NH_MOBILITY: u8 = 135;
/// Host Identity Protocol.
pub const NH_HIP: u8 = 139;
/// Shim6.
pub const NH_SHIM6: u8 = 140;

/// Most extension headers followed.
const MAX_EXT: usize = 16;

/// Walk extension headers from `next` over `b` up to the upper layer or a
/// Fragment header. Returns (protocol, rest, fragment header if met).
pub fn ipv6_ext_chain(mut next: u8, b: &[u8]) -> Result<(u8, &[u8], Option<Frag>), IpError> {
    let mut r = Rd::new(b);
    for _ in 0..MAX_EXT {
        match next {
            NH_HOPOPT | NH_ROUTING | NH_DSTOPTS | NH_MOBILITY | NH_HIP | NH_SHIM6 => {
                let nh = r.u8().ok_or(IpError::Truncated)?;
                let len = (usize::from(r.u8().ok_or(IpError::Truncated)?) + 1) * 8;
                r.skip(len - 2).ok_or(IpError::Truncated)?;
                next = nh;
            }
            NH_AH => {
                let nh = r.u8().ok_or(IpError::Truncated)?;
                let len = (usize::from(r.u8().ok_or(IpError::Truncated)?) + 2) * 4;
                r.skip(len - 2).ok_or(IpError::Truncated)?;
                next = nh;
            }
            NH_FRAGMENT => {
                let nh = r.u8().ok_or(IpError::Truncated)?;
                r.skip(1).ok_or(IpError::Truncated)?;
                let om = r.u16().ok_or(IpError::Truncated)?;
                let id = r.u32().ok_or(IpError::Truncated)?;
                let offset = u32::from(om & 0xfff8);
                let more = om & 1 != 0;
                if offset == 0 && !more {
                    // Atomic fragment (RFC 6946): a whole datagram.
                    next = nh;
                    continue;
                }
                return Ok((nh, r.rest(), Some(Frag { id, offset, more })));
            }
            proto => return Ok((proto, r.rest(), None)),
        }
    }
    Err(IpError::ExtChainTooLong)
}

/// Parse an IPv6 header and its extension chain.
pub fn ipv6(b: &[u8]) -> Result<Ip<'_>, IpError> {
    let mut r = Rd::new(b);
    let v = r.u8().ok_or(IpError::Truncated)?;
    if v >> 4 != 6 {
        return Err(IpError::BadVersion);
    }
    r.skip(3).ok_or(IpError::Truncated)?;
    let plen = r.u16().ok_or(IpError::Truncated)? as usize;
    let next = r.u8().ok_or(IpError::Truncated)?;
    let ttl = r.u8().ok_or(IpError::Truncated)?;
    let src: [u8; 16] = r.take(16).ok_or(IpError::Truncated)?.try_into().unwrap();
    let dst: [u8; 16] = r.take(16).ok_or(IpError::Truncated)?.try_into().unwrap();
    let body = r.rest();
    // Payload length 0: jumbogram or TSO; trust the capture.
    let plen = if plen == 0 { body.len() } else { plen };
    let truncated = body.len() < plen;
    let body = &body[..plen.min(body.len())];
    let (proto, payload, frag) = ipv6_ext_chain(next, body)?;
    Ok(Ip {
        src: IpAddr::V6(Ipv6Addr::from(src)),
        dst: IpAddr::V6(Ipv6Addr::from(dst)),
        proto,
        payload,
        frag,
        truncated,
        ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(total: u16, ff: u16) -> Vec<u8> {
        let mut h = vec![
            0x45, 0, 0, 0, 0, 7, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[6..8].copy_from_slice(&ff.to_be_bytes());
        h.extend_from_slice(&[0xaa; 8]);
        h
    }

    #[test]
    fn ipv4_trims_padding_and_flags_fragments() {
        let a = v4(24, 0);
        let ip = ipv4(&a).unwrap();
        assert_eq!(ip.payload.len(), 4);
        assert!(ip.frag.is_none() && !ip.truncated);
        let b = v4(28, 0x2000 | 3);
        let ip = ipv4(&b).unwrap();
        assert_eq!(
            ip.frag,
            Some(Frag {
                id: 7,
                offset: 24,
                more: true
            })
        );
        assert!(ipv4(&v4(32, 0)).unwrap().truncated);
        assert_eq!(ipv4(&v4(10, 0)).unwrap_err(), IpError::BadTotalLength);
        assert_eq!(ipv4(&[0x45, 0]).unwrap_err(), IpError::Truncated);
        assert_eq!(ipv4(&[0x65; 20]).unwrap_err(), IpError::BadVersion);
    }

    #[test]
    fn ipv6_walks_extension_headers() {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, NH_HOPOPT, 64];
        p.extend_from_slice(&[0; 32]);
        // HBH (8 bytes) -> DstOpts (8) -> atomic Fragment -> UDP
        let ext = [
            NH_DSTOPTS,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            NH_FRAGMENT,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            17,
            0,
            0,
            0,
            0,
            0,
            0,
            9,
        ];
        p.extend_from_slice(&ext);
        p.extend_from_slice(&[1, 2, 3, 4]);
        let len = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&len.to_be_bytes());
        let ip = ipv6(&p).unwrap();
        assert_eq!(
            (ip.proto, ip.payload, ip.frag),
            (17, &[1u8, 2, 3, 4][..], None)
        );
        // a real fragment
        p[40 + 16 + 3] = 0x09; // offset 8, M=1
        let ip = ipv6(&p).unwrap();
        assert_eq!(
            ip.frag,
            Some(Frag {
                id: 9,
                offset: 8,
                more: true
            })
        );
    }
}
