//! Protocol classifiers: what a flow is, from its first packets, without
//! keys and on any port, the way Russia's TSPU tells VPNs and calls apart
//! since 2021 and the GFW flags fully encrypted proxies. One module per
//! protocol, each a checked view over the bytes (as in [`crate::wire`]);
//! nothing here allocates or keeps state: the engine feeds them a UDP
//! payload, the start of a reassembled TCP stream, or a TCP flow's first
//! client data packet, and asks only for the protocols some rule wants.
//!
//! TLS, QUIC, HTTP and DNS are classified where their names are read
//! ([`crate::tls`], [`crate::quic`], [`crate::http`], [`crate::dns`]).

pub mod bittorrent;
pub mod fully_encrypted;
pub mod openvpn;
pub mod ssh;
pub mod stun;
pub mod wireguard;

use chokepoint_ruleset::Protocol;

/// What a stream classifier made of the bytes so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sighting {
    /// It is the protocol.
    Yes,
    /// It is not.
    No,
    /// The bytes so far agree with it; more are needed to say.
    NeedMore,
}

/// What the start of a TCP stream is, among the protocols in `wanted`
/// (a [`Protocol::bit`] mask).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamClass {
    /// One of them.
    Is(Protocol),
    /// None of them.
    Unknown,
    /// Not yet known: a wanted protocol still agrees with the bytes.
    NeedMore,
}

/// A classifier of a TCP stream's start.
type StreamClassifier = (Protocol, fn(&[u8]) -> Sighting);
/// A classifier of one UDP payload.
type DatagramClassifier = (Protocol, fn(&[u8]) -> bool);

/// The classifiers of a TCP stream's start, in the order they are asked.
const STREAM: [StreamClassifier; 4] = [
    (Protocol::Ssh, ssh::stream),
    (Protocol::Bittorrent, bittorrent::stream),
    (Protocol::Openvpn, openvpn::stream),
    (Protocol::Stun, stun::stream),
];

/// The UDP classifiers, in the order they are asked.
const DATAGRAM: [DatagramClassifier; 3] = [
    (Protocol::Wireguard, |p| {
        wireguard::Message::new_checked(p).is_some()
    }),
    (Protocol::Openvpn, openvpn::datagram),
    (Protocol::Stun, stun::datagram),
];

/// The protocols a UDP flow can be classified as here.
pub const DATAGRAM_PROTOCOLS: u16 = bits(&[Protocol::Wireguard, Protocol::Openvpn, Protocol::Stun]);
/// The protocols a TCP stream's start can be classified as here.
pub const STREAM_PROTOCOLS: u16 = bits(&[
    Protocol::Ssh,
    Protocol::Bittorrent,
    Protocol::Openvpn,
    Protocol::Stun,
]);

const fn bits(ps: &[Protocol]) -> u16 {
    let mut m = 0;
    let mut i = 0;
    while i < ps.len() {
        m |= 1 << ps[i] as u16;
        i += 1;
    }
    m
}

/// The wanted protocol a UDP payload is, if any.
pub fn datagram(payload: &[u8], wanted: u16) -> Option<Protocol> {
    DATAGRAM
        .iter()
        .find(|(p, is)| wanted & p.bit() != 0 && is(payload))
        .map(|&(p, _)| p)
}

/// The wanted protocol a TCP stream starts with, if any yet.
pub fn stream(data: &[u8], wanted: u16) -> StreamClass {
    let mut more = false;
    for (p, sight) in STREAM {
        if wanted & p.bit() == 0 {
            continue;
        }
        match sight(data) {
            Sighting::Yes => return StreamClass::Is(p),
            Sighting::NeedMore => more = true,
            Sighting::No => {}
        }
    }
    if more {
        StreamClass::NeedMore
    } else {
        StreamClass::Unknown
    }
}

/// The GFW's verdict on a TCP flow's first client data packet, as this
/// engine labels it: fully encrypted when no exemption holds and no other
/// classifier recognises the packet (a BitTorrent or OpenVPN first packet
/// is that protocol, whatever its bytes).
pub fn first_packet_fully_encrypted(payload: &[u8]) -> bool {
    fully_encrypted::is_fully_encrypted(payload)
        && stream(payload, STREAM_PROTOCOLS) == StreamClass::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wanted_protocols_are_asked() {
        let mut wg = vec![1, 0, 0, 0];
        wg.resize(148, 0x55);
        assert_eq!(datagram(&wg, u16::MAX), Some(Protocol::Wireguard));
        assert_eq!(datagram(&wg, Protocol::Stun.bit()), None);
        assert_eq!(
            stream(b"SSH-2.0-x", Protocol::Ssh.bit()),
            StreamClass::Is(Protocol::Ssh)
        );
        assert_eq!(
            stream(b"SSH-2.0-x", Protocol::Bittorrent.bit()),
            StreamClass::Unknown
        );
        assert_eq!(stream(b"SS", STREAM_PROTOCOLS), StreamClass::NeedMore);
        assert_eq!(
            stream(b"\x00", STREAM_PROTOCOLS),
            StreamClass::NeedMore,
            "STUN or OpenVPN"
        );
        assert_eq!(
            stream(b"\x16\x03\x01\x02\x00", STREAM_PROTOCOLS),
            StreamClass::Unknown
        );
    }

    #[test]
    fn a_recognised_first_packet_is_not_fully_encrypted() {
        // An OpenVPN reset over TCP has random-looking session ids but is
        // OpenVPN; its zero bytes exempt it anyway (Ex1).
        let mut ovpn = vec![0, 14, 0x38, 0xe1, 0x9f, 0x3c, 0xa7, 0x5d, 0x92, 0xb6, 0xc3];
        ovpn.extend_from_slice(&[0, 0, 0, 0, 0]);
        assert!(!first_packet_fully_encrypted(&ovpn));
    }
}
