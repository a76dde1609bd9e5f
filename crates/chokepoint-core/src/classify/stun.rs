//! STUN (RFC 8489, formerly 5389) and TURN (RFC 8656): a 20-byte header,
//! the message type in 14 bits (its two top bits zero), the length of the
//! attributes (a multiple of 4: attributes are padded to 4 bytes), the
//! magic cookie `0x2112A442` and a 96-bit transaction id. WebRTC,
//! WhatsApp and Telegram calls find their way through NATs with it, which
//! is how Russia found the calls in August 2025 (STUN/UDP on 3478, 1400
//! and 50000-50100: Flowseal/zapret-discord-youtube#4569, #4580).
//! RFC 3489's classic STUN has no cookie and is not recognised.

use super::Sighting;

/// The magic cookie every RFC 5389 message carries at bytes 4..8.
pub const MAGIC_COOKIE: u32 = 0x2112_a442;
/// The header's size.
pub const HEADER_LEN: usize = 20;

/// A message's class (bits C1 C0 of the type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A request.
    Request,
    /// An indication (no answer expected).
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

/// Methods STUN and TURN define (RFC 8489 §18.2, RFC 8656 §17): binding,
/// allocate, refresh, send, data, create-permission, channel-bind.
const METHODS: [u16; 7] = [0x001, 0x003, 0x004, 0x006, 0x007, 0x008, 0x009];

/// The method in a message type: bits M11..M0, which share the type's 14
/// bits with the class bits C1 (bit 8) and C0 (bit 4).
fn method_of(ty: u16) -> u16 {
    (ty & 0x000f) | ((ty & 0x00e0) >> 1) | ((ty & 0x3e00) >> 2)
}

/// A STUN message header, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    bytes: &'a [u8],
}

impl<'a> Message<'a> {
    /// The header at the start of `bytes`, if it is a STUN header of a
    /// known method with the cookie and a length that is a multiple of 4.
    /// The attributes it announces need not be in `bytes` (a TCP segment
    /// may end first); [`Message::whole_in`] says whether they are.
    pub fn new_checked(bytes: &'a [u8]) -> Option<Message<'a>> {
        let h = bytes.get(..HEADER_LEN)?;
        let ty = u16::from_be_bytes([h[0], h[1]]);
        let len = u16::from_be_bytes([h[2], h[3]]);
        let cookie = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let m = Message { bytes };
        (ty & 0xc000 == 0
            && cookie == MAGIC_COOKIE
            && len % 4 == 0
            && METHODS.contains(&m.method()))
        .then_some(m)
    }

    fn ty(&self) -> u16 {
        u16::from_be_bytes([self.bytes[0], self.bytes[1]])
    }

    /// The method (binding is 1).
    pub fn method(&self) -> u16 {
        method_of(self.ty())
    }

    /// The class.
    pub fn class(&self) -> Class {
        match ((self.ty() >> 7) & 2) | ((self.ty() >> 4) & 1) {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::Success,
            _ => Class::Error,
        }
    }

    /// Bytes of attributes after the header.
    pub fn length(&self) -> usize {
        usize::from(u16::from_be_bytes([self.bytes[2], self.bytes[3]]))
    }

    /// Does `bytes` end exactly where the message does (one message per
    /// datagram)?
    pub fn whole_in(&self, bytes: &[u8]) -> bool {
        bytes.len() == HEADER_LEN + self.length()
    }
}

/// Is this UDP payload one STUN message?
pub fn datagram(payload: &[u8]) -> bool {
    Message::new_checked(payload).is_some_and(|m| m.whole_in(payload))
}

/// Does this TCP stream start with a STUN message (TURN over TCP)? Decided
/// on the header, field by field as its bytes arrive: the type alone rules
/// most streams out.
pub fn stream(data: &[u8]) -> Sighting {
    if let [t0, t1, ..] = data {
        let ty = u16::from_be_bytes([*t0, *t1]);
        if ty & 0xc000 != 0 || !METHODS.contains(&method_of(ty)) {
            return Sighting::No;
        }
    }
    if data.first().is_some_and(|b| b & 0xc0 != 0)
        || data.get(3).is_some_and(|b| b % 4 != 0)
        || data
            .get(4..8)
            .is_some_and(|c| c != MAGIC_COOKIE.to_be_bytes())
    {
        return Sighting::No;
    }
    if data.len() < HEADER_LEN {
        return Sighting::NeedMore;
    }
    match Message::new_checked(data) {
        Some(_) => Sighting::Yes,
        None => Sighting::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding request with one 4-byte attribute (as
    /// turnutils_stunclient sends, less its attributes).
    fn binding(ty: u16, attrs: usize) -> Vec<u8> {
        let mut m = ty.to_be_bytes().to_vec();
        m.extend_from_slice(&(attrs as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        m.extend_from_slice(&[7; 12]);
        m.extend(std::iter::repeat_n(0, attrs));
        m
    }

    #[test]
    fn message_types_methods_and_classes() {
        let m = binding(0x0001, 8);
        let h = Message::new_checked(&m).unwrap();
        assert_eq!((h.method(), h.class(), h.length()), (1, Class::Request, 8));
        assert!(datagram(&m));
        let ok = binding(0x0101, 12);
        let h = Message::new_checked(&ok).unwrap();
        assert_eq!((h.method(), h.class()), (1, Class::Success));
        let err = binding(0x0111, 0);
        assert_eq!(Message::new_checked(&err).unwrap().class(), Class::Error);
        // TURN: allocate request 0x0003, its success 0x0103, a send
        // indication 0x0016, a channel-bind request 0x0009.
        for (ty, method, class) in [
            (0x0003, 3, Class::Request),
            (0x0103, 3, Class::Success),
            (0x0016, 6, Class::Indication),
            (0x0009, 9, Class::Request),
        ] {
            let m = binding(ty, 4);
            let h = Message::new_checked(&m).unwrap();
            assert_eq!((h.method(), h.class()), (method, class), "{ty:#06x}");
        }
    }

    #[test]
    fn the_cookie_the_top_bits_and_the_length_must_hold() {
        let mut m = binding(0x0001, 8);
        m[7] ^= 1;
        assert!(!datagram(&m), "cookie");
        let mut m = binding(0x0001, 8);
        m[0] = 0x40;
        assert!(
            !datagram(&m),
            "a TURN ChannelData header is not a STUN message"
        );
        for len in [1, 2, 3, 5, 6] {
            let m = binding(0x0001, len);
            assert!(!datagram(&m), "length {len} is not a multiple of 4");
        }
        let mut m = binding(0x0001, 8);
        m.push(0);
        assert!(!datagram(&m), "a byte past the announced length");
        assert!(!datagram(&binding(0x0001, 8)[..27]), "cut short");
        assert!(
            !datagram(&binding(0x0002, 0)),
            "method 2 was RFC 3489's shared secret"
        );
        assert!(!datagram(&binding(0x0001, 0)[..19]));
    }

    #[test]
    fn over_tcp() {
        let m = binding(0x0003, 8);
        assert_eq!(stream(&m), Sighting::Yes);
        assert_eq!(stream(&m[..20]), Sighting::Yes, "the header decides");
        assert_eq!(stream(&m[..10]), Sighting::NeedMore);
        assert_eq!(stream(b"\x16\x03\x01"), Sighting::No);
        assert_eq!(stream(b"SSH-2.0-x"), Sighting::No);
    }
}
