//! WireGuard (Donenfeld, "WireGuard: Next Generation Kernel Network
//! Tunnel", NDSS 2017, §5.4): four message types, each a little-endian
//! type byte, three reserved zero bytes and a fixed layout. The handshake
//! messages have fixed sizes and transport data is padded to 16 bytes, so
//! a censor needs neither keys nor a port to tell WireGuard apart; Russia's
//! TSPU did so on any port from September 2021 (net4people/bbs#76).

/// What a WireGuard message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    /// Type 1: the initiator's first message, 148 bytes.
    Initiation,
    /// Type 2: the responder's answer, 92 bytes.
    Response,
    /// Type 3: a cookie reply under load, 64 bytes.
    CookieReply,
    /// Type 4: transport data, 16-byte header + ciphertext padded to 16
    /// bytes + 16-byte tag (32 bytes for a keepalive).
    Transport,
}

/// Size of a handshake initiation.
pub const INITIATION_LEN: usize = 148;
/// Size of a handshake response.
pub const RESPONSE_LEN: usize = 92;
/// Size of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 64;
/// The smallest transport message: header and tag around no data (a
/// keepalive).
pub const TRANSPORT_MIN_LEN: usize = 32;

/// A UDP payload that is a well-formed WireGuard message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    bytes: &'a [u8],
    kind: MessageType,
}

impl<'a> Message<'a> {
    /// The message in `bytes`, if its type, reserved bytes and length are
    /// WireGuard's: any other length for a type is not WireGuard (a
    /// datagram carries exactly one message).
    pub fn new_checked(bytes: &'a [u8]) -> Option<Message<'a>> {
        let (&ty, rest) = bytes.split_first()?;
        if rest.get(..3)? != [0, 0, 0] {
            return None;
        }
        let n = bytes.len();
        let kind = match ty {
            1 if n == INITIATION_LEN => MessageType::Initiation,
            2 if n == RESPONSE_LEN => MessageType::Response,
            3 if n == COOKIE_REPLY_LEN => MessageType::CookieReply,
            // The plaintext is padded to a multiple of 16 before the
            // 16-byte tag is added.
            4 if n >= TRANSPORT_MIN_LEN && (n - 16) % 16 == 0 => MessageType::Transport,
            _ => return None,
        };
        Some(Message { bytes, kind })
    }

    /// Its type.
    pub fn kind(&self) -> MessageType {
        self.kind
    }

    /// The sender's index (initiation, response), or the receiver's
    /// (cookie reply, transport): the 32-bit session handle after the
    /// reserved bytes.
    pub fn index(&self) -> u32 {
        let b = &self.bytes[4..8];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u8, len: usize) -> Vec<u8> {
        let mut m = vec![0xa5; len];
        m[..4].copy_from_slice(&[ty, 0, 0, 0]);
        m[4..8].copy_from_slice(&0x0102_0304u32.to_le_bytes());
        m
    }

    #[test]
    fn the_handshake_sizes_are_exact() {
        let init = msg(1, 148);
        let m = Message::new_checked(&init).unwrap();
        assert_eq!(m.kind(), MessageType::Initiation);
        assert_eq!(m.index(), 0x0102_0304);
        assert_eq!(
            Message::new_checked(&msg(2, 92)).unwrap().kind(),
            MessageType::Response
        );
        assert_eq!(
            Message::new_checked(&msg(3, 64)).unwrap().kind(),
            MessageType::CookieReply
        );
        for (ty, len) in [(1, 147), (1, 149), (2, 91), (2, 93), (3, 63), (3, 65)] {
            assert_eq!(
                Message::new_checked(&msg(ty, len)),
                None,
                "type {ty}, {len} B"
            );
        }
        // An initiation's size with a response's type, and back.
        assert_eq!(Message::new_checked(&msg(2, 148)), None);
        assert_eq!(Message::new_checked(&msg(1, 92)), None);
    }

    #[test]
    fn transport_is_padded_to_16() {
        assert_eq!(
            Message::new_checked(&msg(4, 32)).unwrap().kind(),
            MessageType::Transport,
            "a keepalive"
        );
        assert!(Message::new_checked(&msg(4, 32 + 16 * 80)).is_some());
        for len in [16, 31, 33, 40, 47] {
            assert_eq!(Message::new_checked(&msg(4, len)), None, "{len} B");
        }
    }

    #[test]
    fn wrong_type_or_reserved_bytes_are_not_wireguard() {
        for ty in [0u8, 5, 0x41, 0xff] {
            assert_eq!(Message::new_checked(&msg(ty, 148)), None, "type {ty}");
        }
        for i in 1..4 {
            let mut m = msg(1, 148);
            m[i] = 1;
            assert_eq!(Message::new_checked(&m), None, "reserved byte {i} set");
        }
        assert_eq!(Message::new_checked(&[1, 0, 0]), None);
        assert_eq!(Message::new_checked(&[]), None);
    }
}
