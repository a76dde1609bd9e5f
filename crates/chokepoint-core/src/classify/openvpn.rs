//! OpenVPN's control channel (OpenVPN 2.x `ssl_pkt.h`; the wire format in
//! the OpenVPN protocol draft, openvpn/openvpn-rfc): every packet starts
//! with one byte, the opcode in its top five bits and the key id in the
//! low three, then the sender's 8-byte session id. A session opens with a
//! hard reset (`P_CONTROL_HARD_RESET_CLIENT_V2`, or `_V3` under
//! `--tls-crypt-v2`) whose first packet id is 0 and whose key id is 0;
//! over TCP each packet is preceded by its 16-bit length.
//!
//! What the options hide:
//! * none: the reset shows its acknowledgement array (empty) and message
//!   packet id (0) in clear: 14 bytes with five zero bytes in place.
//! * `--tls-auth`: an HMAC (16 to 64 bytes, by digest) follows the session
//!   id, then a replay packet id (1 on the first packet) and a Unix time,
//!   then the same empty array and message id 0.
//! * `--tls-crypt`: the opcode, key id, session id, replay packet id and
//!   time stay in clear (they are authenticated, not encrypted); the
//!   acknowledgements, the message id and the whole TLS handshake are
//!   encrypted. So the reset is still recognisable by its opcode, its
//!   packet id of 1 and a plausible time, and by its size (54 bytes here)
//!   and the request-answer rhythm of the handshake that follows; what
//!   `--tls-crypt` takes away is the certificates and anything a censor
//!   might read in the TLS handshake.

use super::Sighting;

/// Opcode of a client's first reset (key method 2).
pub const HARD_RESET_CLIENT_V2: u8 = 7;
/// Opcode of the server's answer to it.
pub const HARD_RESET_SERVER_V2: u8 = 8;
/// Opcode of a client's first reset under `--tls-crypt-v2` (a wrapped
/// client key follows).
pub const HARD_RESET_CLIENT_V3: u8 = 10;
/// Opcodes of key method 1 resets (OpenVPN 1.x, long obsolete).
pub const HARD_RESET_CLIENT_V1: u8 = 1;
/// See [`HARD_RESET_CLIENT_V1`].
pub const HARD_RESET_SERVER_V1: u8 = 2;

/// HMAC sizes `--tls-auth` uses: MD5, SHA-1, SHA-256, SHA-384, SHA-512.
const HMAC_SIZES: [usize; 5] = [16, 20, 32, 48, 64];
/// `--tls-crypt`'s authentication tag (HMAC-SHA-256).
const TLS_CRYPT_TAG: usize = 32;
/// 2015-01-01 and 2100-01-01, Unix time: the replay time of a live client.
/// A bound, not a clock: it only rejects bytes that cannot be a time.
const PLAUSIBLE_TIME: std::ops::Range<u32> = 1_420_070_400..4_102_444_800;

/// What protects a reset's control channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrapping {
    /// No `--tls-auth` or `--tls-crypt`.
    Plain,
    /// `--tls-auth` with an HMAC of this many bytes.
    TlsAuth(usize),
    /// `--tls-crypt` (or `--tls-crypt-v2`).
    TlsCrypt,
}

/// An OpenVPN packet, as read from a UDP payload or from the body of a TCP
/// length-prefixed record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    bytes: &'a [u8],
}

impl<'a> Packet<'a> {
    /// The packet in `bytes` if it holds an opcode byte and a session id.
    pub fn new_checked(bytes: &'a [u8]) -> Option<Packet<'a>> {
        (bytes.len() >= 9).then_some(Packet { bytes })
    }

    /// The opcode (top five bits of the first byte).
    pub fn opcode(&self) -> u8 {
        self.bytes[0] >> 3
    }

    /// The key id (low three bits).
    pub fn key_id(&self) -> u8 {
        self.bytes[0] & 7
    }

    /// The sender's session id.
    pub fn session_id(&self) -> u64 {
        let mut b = [0; 8];
        b.copy_from_slice(&self.bytes[1..9]);
        u64::from_be_bytes(b)
    }

    /// If this is a session's hard reset, how it is wrapped.
    pub fn reset(&self) -> Option<Wrapping> {
        let client = match self.opcode() {
            HARD_RESET_CLIENT_V2 | HARD_RESET_CLIENT_V3 | HARD_RESET_CLIENT_V1 => true,
            HARD_RESET_SERVER_V2 | HARD_RESET_SERVER_V1 => false,
            _ => return None,
        };
        if self.key_id() != 0 {
            return None;
        }
        let after_sid = &self.bytes[9..];
        if acks_then_first_id(after_sid, client) {
            return Some(Wrapping::Plain);
        }
        for h in HMAC_SIZES {
            if let Some(rest) = after_sid.get(h..).and_then(replay_id) {
                if acks_then_first_id(rest, client) {
                    return Some(Wrapping::TlsAuth(h));
                }
            }
        }
        // Under tls-crypt the rest is a tag and ciphertext; at least the
        // tag and the encrypted acknowledgement array and message id.
        match replay_id(after_sid) {
            Some(rest) if rest.len() >= TLS_CRYPT_TAG + 5 => Some(Wrapping::TlsCrypt),
            _ => None,
        }
    }
}

/// A first replay packet id (1) and a plausible time; what follows.
fn replay_id(b: &[u8]) -> Option<&[u8]> {
    let id = u32::from_be_bytes(b.get(..4)?.try_into().ok()?);
    let time = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
    (id == 1 && PLAUSIBLE_TIME.contains(&time)).then(|| &b[8..])
}

/// A reset's acknowledgement array and message packet id: a client's
/// acknowledges nothing (length 0), a server's acknowledges the client's
/// packet 0 and names the client's session; both are message 0.
fn acks_then_first_id(b: &[u8], client: bool) -> bool {
    if client {
        b.get(..5) == Some(&[0, 0, 0, 0, 0])
    } else {
        // 1 ack, packet id 0, the remote session id, message id 0.
        b.len() >= 17 && b[..5] == [1, 0, 0, 0, 0] && b[13..17] == [0, 0, 0, 0]
    }
}

/// Is this UDP payload an OpenVPN hard reset?
pub fn datagram(payload: &[u8]) -> bool {
    Packet::new_checked(payload).is_some_and(|p| p.reset().is_some())
}

/// Does this TCP stream start with an OpenVPN hard reset, behind its
/// 16-bit length? A length that cannot hold one, or a record that ends
/// before its length, says no; a record not yet whole asks for more.
pub fn stream(data: &[u8]) -> Sighting {
    let Some(len) = data
        .get(..2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    else {
        return Sighting::NeedMore;
    };
    // The smallest reset is 14 bytes; a reset fits in one MTU.
    if !(14..=1600).contains(&len) {
        return Sighting::No;
    }
    // Judge the opcode as soon as it is there: most streams are not
    // OpenVPN, and need not wait for a whole record to be told so.
    match data.get(2) {
        None => return Sighting::NeedMore,
        Some(b) if !matches!(b >> 3, 1 | 2 | 7 | 8 | 10) || b & 7 != 0 => return Sighting::No,
        Some(_) => {}
    }
    match data.get(2..2 + len) {
        None => Sighting::NeedMore,
        Some(p) if Packet::new_checked(p).is_some_and(|p| p.reset().is_some()) => Sighting::Yes,
        Some(_) => Sighting::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: [u8; 8] = [0x43, 0x31, 0x54, 0x9c, 0xea, 0x7b, 0x5e, 0xd5];
    const TIME: [u8; 4] = [0x6b, 0x11, 0x19, 0x8d];

    /// The client reset OpenVPN 2.6 sent in the lab, without tls-auth.
    fn plain_client() -> Vec<u8> {
        let mut p = vec![0x38];
        p.extend_from_slice(&SID);
        p.extend_from_slice(&[0, 0, 0, 0, 0]);
        p
    }

    fn auth_client(hmac: usize) -> Vec<u8> {
        let mut p = vec![0x38];
        p.extend_from_slice(&SID);
        p.extend(std::iter::repeat_n(0xc5, hmac));
        p.extend_from_slice(&[0, 0, 0, 1]);
        p.extend_from_slice(&TIME);
        p.extend_from_slice(&[0, 0, 0, 0, 0]);
        p
    }

    fn crypt_client() -> Vec<u8> {
        let mut p = vec![0x38];
        p.extend_from_slice(&SID);
        p.extend_from_slice(&[0, 0, 0, 1]);
        p.extend_from_slice(&TIME);
        p.extend(std::iter::repeat_n(0x9e, 37));
        p
    }

    #[test]
    fn resets_by_wrapping() {
        let p = plain_client();
        let pk = Packet::new_checked(&p).unwrap();
        assert_eq!((pk.opcode(), pk.key_id()), (HARD_RESET_CLIENT_V2, 0));
        assert_eq!(pk.session_id(), 0x4331_549c_ea7b_5ed5);
        assert_eq!(pk.reset(), Some(Wrapping::Plain));
        assert_eq!(p.len(), 14);
        for h in [16, 20, 32, 48, 64] {
            let p = auth_client(h);
            assert_eq!(
                Packet::new_checked(&p).unwrap().reset(),
                Some(Wrapping::TlsAuth(h))
            );
        }
        let p = crypt_client();
        assert_eq!(p.len(), 54, "the size the lab's tls-crypt reset had");
        assert_eq!(
            Packet::new_checked(&p).unwrap().reset(),
            Some(Wrapping::TlsCrypt)
        );
    }

    #[test]
    fn the_server_answer_acknowledges_the_client() {
        // From the lab: ack length 1, acked id 0, the client's session id,
        // message id 0.
        let mut p = vec![0x40, 0x75, 0x0c, 0xb4, 0x99, 0x8d, 0x83, 0x46, 0xf3];
        p.extend_from_slice(&[1, 0, 0, 0, 0]);
        p.extend_from_slice(&SID);
        p.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            Packet::new_checked(&p).unwrap().reset(),
            Some(Wrapping::Plain)
        );
        // Acknowledging nothing is a client's reset shape, not a server's.
        let mut q = p.clone();
        q[9] = 0;
        assert_eq!(Packet::new_checked(&q).unwrap().reset(), None);
    }

    #[test]
    fn opcodes_and_key_ids_that_are_not_a_reset() {
        for first in [0x39u8, 0x3f, 0x20, 0x28, 0x30, 0x48, 0x00, 0xff] {
            let mut p = plain_client();
            p[0] = first;
            assert_eq!(
                Packet::new_checked(&p).unwrap().reset(),
                None,
                "{first:#04x}"
            );
        }
        // tls-crypt-v2's client reset (opcode 10, 0x50) is one.
        let mut p = crypt_client();
        p[0] = 0x50;
        assert!(datagram(&p));
    }

    #[test]
    fn non_zero_ids_and_implausible_times_are_not_a_reset() {
        let mut p = plain_client();
        p[13] = 1;
        assert!(!datagram(&p), "message id 1 is not a session's first");
        let mut p = auth_client(20);
        p[9 + 20 + 3] = 2;
        assert!(!datagram(&p), "replay id 2");
        let mut p = crypt_client();
        p[13..17].copy_from_slice(&[0, 0, 0, 9]);
        assert!(!datagram(&p), "a time in 1970");
        let mut p = crypt_client();
        p.truncate(53);
        assert!(!datagram(&p), "too short for the tag");
        assert!(!datagram(&plain_client()[..13]));
    }

    #[test]
    fn over_tcp_with_the_length_prefix() {
        let inner = plain_client();
        let mut s = (inner.len() as u16).to_be_bytes().to_vec();
        s.extend_from_slice(&inner);
        assert_eq!(stream(&s), Sighting::Yes);
        assert_eq!(stream(&s[..1]), Sighting::NeedMore);
        assert_eq!(stream(&s[..10]), Sighting::NeedMore);
        let mut wrong = s.clone();
        wrong[1] = 20;
        assert_eq!(
            stream(&wrong),
            Sighting::NeedMore,
            "length says more is coming"
        );
        wrong[1] = 13;
        assert_eq!(stream(&wrong), Sighting::No, "too short for a reset");
        let mut tls = s.clone();
        tls[2] = 0x16;
        assert_eq!(stream(&tls[..3]), Sighting::No, "decided on the opcode");
        assert_eq!(stream(b"GET / HTTP/1.1\r\n"), Sighting::No);
    }
}
