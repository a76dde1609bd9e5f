//! TCP and UDP headers.

use super::Rd;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_GRE: u8 = 47;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcp<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload: &'a [u8],
}

pub fn tcp(b: &[u8]) -> Option<Tcp<'_>> {
    let mut r = Rd::new(b);
    let sport = r.u16()?;
    let dport = r.u16()?;
    let seq = r.u32()?;
    let ack = r.u32()?;
    let off = usize::from(r.u8()? >> 4) * 4;
    let flags = r.u8()?;
    let window = r.u16()?;
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
        payload: &b[off..],
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Udp<'a> {
    pub sport: u16,
    pub dport: u16,
    pub payload: &'a [u8],
}

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
