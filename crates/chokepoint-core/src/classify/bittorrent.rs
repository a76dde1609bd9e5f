//! The BitTorrent peer handshake (BEP 3): the byte 19, then
//! `BitTorrent protocol`, 8 reserved bytes, the 20-byte info hash and the
//! 20-byte peer id. Russia's TSPU briefly blocked BitTorrent in September
//! 2021 (net4people/bbs#83). Only the TCP handshake is classified: uTP and
//! the DHT over UDP are not, nor the message-stream encryption (MSE/PE)
//! some clients use, which looks like random bytes (and so like
//! `fully_encrypted`).

use super::Sighting;

const PSTR: &[u8; 20] = b"\x13BitTorrent protocol";
/// The whole handshake's size.
pub const HANDSHAKE_LEN: usize = 68;

/// Does the stream start with the peer handshake? Decided on its first
/// 20 bytes (the rest are hashes).
pub fn stream(data: &[u8]) -> Sighting {
    let n = data.len().min(PSTR.len());
    if data[..n] != PSTR[..n] {
        Sighting::No
    } else if n < PSTR.len() {
        Sighting::NeedMore
    } else {
        Sighting::Yes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake() {
        let mut h = PSTR.to_vec();
        h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 5]);
        h.extend_from_slice(&[0xab; 20]);
        h.extend_from_slice(b"-qB4630-abcdefghijkl");
        assert_eq!(h.len(), HANDSHAKE_LEN);
        assert_eq!(stream(&h), Sighting::Yes);
        assert_eq!(stream(&h[..20]), Sighting::Yes);
        assert_eq!(stream(&h[..7]), Sighting::NeedMore);
        assert_eq!(stream(b"\x13BitTorrent Protocol"), Sighting::No, "case");
        assert_eq!(
            stream(b"\x12BitTorrent protocol"),
            Sighting::No,
            "length byte"
        );
        assert_eq!(
            stream(b"BitTorrent protocol"),
            Sighting::No,
            "no length byte"
        );
    }
}
