//! TCP and UDP headers.

use super::Rd;

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of GRE.
pub const PROTO_GRE: u8 = 47;

/// TCP FIN flag.
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP RST flag.
pub const TCP_RST: u8 = 0x04;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;
/// TCP URG flag.
pub const TCP_URG: u8 = 0x20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// A TCP header and its payload.
pub struct Tcp<'a> {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags (FIN, SYN, RST, PSH, ACK, URG...).
    pub flags: u8,
    /// Receive window.
    pub window: u16,
    /// Urgent pointer (meaningful with URG set).
    pub urgent: u16,
    /// What follows the header.
    pub payload: &'a [u8],
}

/// Parse a TCP header; `None` if truncated.
pub fn tcp(b: &[u8]) -> Option<Tcp<'_>> {
    let mut r = Rd::new(b);
    let sport = r.u16()?;
    let dport = r.u16()?;
    let seq = r.u32()?;
    let ack = r.u32()?;
    let off = usize::from(r.u8()? >> 4) * 4;
    let flags = r.u8()?;
    let window = r.u16()?;
    r.skip(2)?;
    let urgent = r.u16()?;
    if off < 20 || b.len() < off {
        return None;
    }
    Some(Tcp {
        sport,
        dport,
        seq,
        ack,
        flags,
        window,
        urgent,
        payload: &b[off..],
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// A UDP header and its payload.
pub struct Udp<'a> {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// What follows the header.
    pub payload: &'a [u8],
}

/// Parse a UDP header; `None` if truncated.
pub fn udp(b: &[u8]) -> Option<Udp<'_>> {
    let mut r = Rd::new(b);
    let sport = r.u16()?;
    let dport = r.u16()?;
    let len = r.u16()? as usize;
    r.skip(2)?;
    let body = r.rest();
    // Length 0 happens with jumbograms and some offloads: use the capture.
    let n = if len >= 8 {
        (len - 8).min(body.len())
    } else {
        body.len()
    };
    Some(Udp {
        sport,
        dport,
        payload: &body[..n],
    })
}
