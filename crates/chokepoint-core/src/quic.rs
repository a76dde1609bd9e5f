//! QUIC Initial packets: version, keys, header protection, decryption,
//! frames. IETF QUIC v1 (RFC 9000/9001), v2 (RFC 9369), drafts 22–34,
//! mvfst, and Google QUIC (Q0xx in clear, Q050/T050/T051 Initials).
//!
//! Keys come from the client's Destination Connection ID and a per-version
//! salt (HKDF-SHA256); the payload is AES-128-GCM; the header is protected
//! with AES-128-ECB over a 16-byte sample. All of it with `ring`.

use ring::aead::{self, quic as hp, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

use crate::wire::Rd;

const SALT_DRAFT22: [u8; 20] = [
    0x7f, 0xbc, 0xdb, 0x0e, 0x7c, 0x66, 0xbb, 0xe9, 0x19, 0x3a, 0x96, 0xcd, 0x21, 0x51, 0x9e, 0xbd,
    0x7a, 0x02, 0x64, 0x4a,
];
const SALT_DRAFT23: [u8; 20] = [
    0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65,
    0xbe, 0xf9, 0xf5, 0x02,
];
const SALT_DRAFT29: [u8; 20] = [
    0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0,
    0x43, 0x90, 0xa8, 0x99,
];
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];
/// draft-ietf-quic-v2-00 (version 0x709a50c4).
const SALT_V2_DRAFT: [u8; 20] = [
    0xa7, 0x07, 0xc2, 0x03, 0xa5, 0x9b, 0x47, 0x18, 0x4a, 0x1d, 0x62, 0xca, 0x57, 0x04, 0x06, 0xea,
    0x7a, 0xe3, 0xe5, 0xd3,
];
const SALT_Q050: [u8; 20] = [
    0x50, 0x45, 0x74, 0xef, 0xd0, 0x66, 0xfe, 0x2f, 0x9d, 0x94, 0x5c, 0xfc, 0xdb, 0xd3, 0xa7, 0xf0,
    0xd3, 0xb5, 0x6b, 0x45,
];
const SALT_T050: [u8; 20] = [
    0x7f, 0xf5, 0x79, 0xe5, 0xac, 0xd0, 0x72, 0x91, 0x55, 0x80, 0x30, 0x4c, 0x43, 0xa2, 0x36, 0x7c,
    0x60, 0x48, 0x83, 0x10,
];
const SALT_T051: [u8; 20] = [
    0x7a, 0x4e, 0xde, 0xf4, 0xe7, 0xcc, 0xee, 0x5f, 0xa4, 0x50, 0x6c, 0x19, 0x12, 0x4f, 0xc8, 0xcc,
    0xda, 0x6e, 0x03, 0x3d,
];

/// QUIC v1 (RFC 9000).
pub const V1: u32 = 0x0000_0001;
/// QUIC v2 (RFC 9369).
pub const V2: u32 = 0x6b33_43cf;
/// draft-ietf-quic-v2-00.
pub const V2_DRAFT: u32 = 0x709a_50c4;
/// Google QUIC Q046 (CHLO in clear).
pub const Q046: u32 = 0x5130_3436;
/// Google QUIC Q050 (encrypted Initials).
pub const Q050: u32 = 0x5130_3530;
/// Google QUIC T050 (TLS, draft-style Initials).
pub const T050: u32 = 0x5430_3530;
/// Google QUIC T051.
pub const T051: u32 = 0x5430_3531;

/// How a version protects its Initial packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheme {
    /// The Initial salt.
    pub salt: &'static [u8; 20],
    /// RFC 9369 labels (`quicv2 key`...) instead of `quic key`...
    pub v2_labels: bool,
    /// Initial packet type bits in the first byte.
    pub initial_type: u8,
    /// Google QUIC: the crypto stream holds CHLO (Q050) or TLS (T05x),
    /// carried in frame type 0x08.
    pub google: bool,
}

/// The Initial protection of a version, if it has one we know.
pub fn scheme(version: u32) -> Option<Scheme> {
    let s = |salt, v2_labels, initial_type, google| {
        Some(Scheme {
            salt,
            v2_labels,
            initial_type,
            google,
        })
    };
    match version {
        V1 => s(&SALT_V1, false, 0, false),
        V2 => s(&SALT_V2, true, 1, false),
        V2_DRAFT => s(&SALT_V2_DRAFT, true, 1, false),
        Q050 => s(&SALT_Q050, false, 0, true),
        T050 => s(&SALT_T050, false, 0, true),
        T051 => s(&SALT_T051, false, 0, true),
        0xfaceb001 => s(&SALT_DRAFT22, false, 0, false),
        0xfaceb002 | 0xfaceb00e => s(&SALT_DRAFT23, false, 0, false),
        v if v >> 8 == 0x00ff_0000 => match v & 0xff {
            0..=22 => s(&SALT_DRAFT22, false, 0, false),
            23..=28 => s(&SALT_DRAFT23, false, 0, false),
            29..=32 => s(&SALT_DRAFT29, false, 0, false),
            _ => s(&SALT_V1, false, 0, false),
        },
        // Version-negotiation forcing values: drafts of that era.
        v if v & 0x0f0f_0f0f == 0x0a0a_0a0a => s(&SALT_DRAFT29, false, 0, false),
        _ => None,
    }
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) -> Option<()> {
    let mut info = [0u8; 64];
    let n = out.len() as u16;
    info[..2].copy_from_slice(&n.to_be_bytes());
    info[2] = (6 + label.len()) as u8;
    info[3..9].copy_from_slice(b"tls13 ");
    info[9..9 + label.len()].copy_from_slice(label);
    let info_len = 9 + label.len() + 1; // context length byte = 0
    prk.expand(&[&info[..info_len]], Len(out.len()))
        .ok()?
        .fill(out)
        .ok()
}

/// Client Initial keys for one Destination Connection ID.
pub struct Keys {
    aead: LessSafeKey,
    iv: [u8; 12],
    hp: hp::HeaderProtectionKey,
}

/// The client's Initial key, IV and header-protection key for a DCID.
pub fn client_key_material(s: &Scheme, dcid: &[u8]) -> Option<([u8; 16], [u8; 12], [u8; 16])> {
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, s.salt).extract(dcid);
    let mut secret = [0u8; 32];
    expand_label(&initial, b"client in", &mut secret)?;
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
    let (kl, il, hl): (&[u8], &[u8], &[u8]) = if s.v2_labels {
        (b"quicv2 key", b"quicv2 iv", b"quicv2 hp")
    } else {
        (b"quic key", b"quic iv", b"quic hp")
    };
    let mut key = [0u8; 16];
    let mut iv = [0u8; 12];
    let mut hpk = [0u8; 16];
    expand_label(&prk, kl, &mut key)?;
    expand_label(&prk, il, &mut iv)?;
    expand_label(&prk, hl, &mut hpk)?;
    Some((key, iv, hpk))
}

impl Keys {
    /// The client's Initial keys for a Destination Connection ID.
    pub fn client(s: &Scheme, dcid: &[u8]) -> Option<Keys> {
        let (key, iv, hpk) = client_key_material(s, dcid)?;
        Some(Keys {
            aead: LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, &key).ok()?),
            iv,
            hp: hp::HeaderProtectionKey::new(&hp::AES_128, &hpk).ok()?,
        })
    }
}

/// One long-header packet inside a datagram.
#[derive(Clone, Copy, Debug)]
pub struct LongPacket<'a> {
    /// The first byte (protected).
    pub first: u8,
    /// The version.
    pub version: u32,
    /// Destination Connection ID.
    pub dcid: &'a [u8],
    /// Source Connection ID.
    pub scid: &'a [u8],
    /// Offset of the packet number from the start of the packet.
    pub pn_offset: usize,
    /// The packet, from its first byte to the end of its payload.
    pub bytes: &'a [u8],
}

/// Parse the long-header packet at the start of `b` (an Initial if its
/// type bits say so for `version`). Returns the packet and what follows it
/// in the datagram (coalesced packets).
pub fn long_packet(b: &[u8]) -> Option<(LongPacket<'_>, &[u8])> {
    let mut r = Rd::new(b);
    let first = r.u8()?;
    if first & 0x80 == 0 {
        return None;
    }
    let version = r.u32()?;
    if version == 0 {
        return None; // version negotiation
    }
    let dcid = r.vec8()?;
    let scid = r.vec8()?;
    if dcid.len() > 20 || scid.len() > 20 {
        return None;
    }
    let s = scheme(version)?;
    let ty = (first >> 4) & 3;
    if ty == s.initial_type {
        let tok = r.varint()? as usize;
        r.skip(tok)?;
    } else if ty == (if s.initial_type == 0 { 3 } else { 0 }) {
        // Retry: no length field, runs to the end of the datagram.
        let end = b.len();
        return Some((
            LongPacket {
                first,
                version,
                dcid,
                scid,
                pn_offset: end,
                bytes: b,
            },
            &b[end..],
        ));
    }
    let len = r.varint()? as usize;
    let pn_offset = r.pos();
    let end = pn_offset.checked_add(len)?;
    if end > b.len() {
        return None;
    }
    Some((
        LongPacket {
            first,
            version,
            dcid,
            scid,
            pn_offset,
            bytes: &b[..end],
        },
        &b[end..],
    ))
}

impl LongPacket<'_> {
    /// Is it an Initial of its version?
    pub fn is_initial(&self) -> bool {
        scheme(self.version).is_some_and(|s| (self.first >> 4) & 3 == s.initial_type)
    }
}

/// Remove header protection and decrypt an Initial into `out`; returns the
/// plaintext frames. `out` is the caller's reused buffer.
pub fn decrypt<'o>(p: &LongPacket<'_>, keys: &Keys, out: &'o mut Vec<u8>) -> Option<&'o [u8]> {
    let b = p.bytes;
    let sample = b.get(p.pn_offset + 4..p.pn_offset + 20)?;
    let mask = keys.hp.new_mask(sample).ok()?;
    let first = b[0] ^ (mask[0] & 0x0f);
    let pn_len = usize::from(first & 3) + 1;
    let hdr_len = p.pn_offset + pn_len;
    if b.len() < hdr_len + 16 {
        return None;
    }
    out.clear();
    out.extend_from_slice(b);
    out[0] = first;
    let mut pn: u64 = 0;
    for i in 0..pn_len {
        out[p.pn_offset + i] ^= mask[1 + i];
        pn = (pn << 8) | u64::from(out[p.pn_offset + i]);
    }
    let mut nonce = keys.iv;
    for (i, byte) in pn.to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= byte;
    }
    let (hdr, body) = out.split_at_mut(hdr_len);
    let plain = keys
        .aead
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&hdr[..]),
            body,
        )
        .ok()?;
    Some(plain)
}

/// Walk Initial frames, calling `f(offset, data)` for each CRYPTO frame.
/// `google` selects Q050/T05x numbering (CRYPTO is 0x08). Returns false on
/// a frame that cannot appear in an Initial (the packet is then ignored
/// past it).
pub fn crypto_frames(plain: &[u8], google: bool, mut f: impl FnMut(u64, &[u8])) -> bool {
    let crypto = if google { 0x08 } else { 0x06 };
    let mut r = Rd::new(plain);
    while r.left() > 0 {
        // PADDING runs to hundreds of bytes: skip the run in one scan.
        let rest = r.rest();
        if rest[0] == 0 {
            let n = rest.iter().position(|&b| b != 0).unwrap_or(rest.len());
            let _ = r.skip(n);
            continue;
        }
        let Some(ty) = r.varint() else { return false };
        match ty {
            0x01 => {}
            t if t == crypto => {
                let (Some(off), Some(len)) = (r.varint(), r.varint()) else {
                    return false;
                };
                let Some(data) = r.take(len as usize) else {
                    return false;
                };
                f(off, data);
            }
            0x02 | 0x03 if !google => {
                // ACK: largest, delay, range count, first range, ranges, [ECN]
                let parse = |r: &mut Rd| -> Option<()> {
                    r.varint()?;
                    r.varint()?;
                    let n = r.varint()?;
                    r.varint()?;
                    for _ in 0..n.min(1024) {
                        r.varint()?;
                        r.varint()?;
                    }
                    if ty == 0x03 {
                        r.varint()?;
                        r.varint()?;
                        r.varint()?;
                    }
                    Some(())
                };
                if parse(&mut r).is_none() {
                    return false;
                }
            }
            0x1c if !google => {
                let parse = |r: &mut Rd| -> Option<()> {
                    r.varint()?;
                    r.varint()?;
                    let n = r.varint()? as usize;
                    r.skip(n)
                };
                if parse(&mut r).is_none() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// Google QUIC before Q050 carries the CHLO in clear: find it in the
/// packet and read its `SNI` tag. Returns `Some(None)` for a CHLO without
/// SNI.
pub fn gquic_clear_chlo(datagram: &[u8]) -> Option<Option<&[u8]>> {
    let at = datagram.windows(4).position(|w| w == b"CHLO")?;
    chlo_sni(&datagram[at..])
}

/// Is this the public header of Google QUIC ≤ Q046 with a version?
pub fn gquic_version(b: &[u8]) -> Option<u32> {
    let first = *b.first()?;
    if first & 0x80 != 0 {
        // Q046 uses the IETF-invariant long header.
        let v = u32::from_be_bytes(b.get(1..5)?.try_into().ok()?);
        return (v >> 8 == 0x51_3034 && v & 0xff >= b'6' as u32).then_some(v);
    }
    // Public header: flags with the version bit, then an 8-byte CID.
    if first & 0x01 == 0 || first & 0x08 == 0 {
        return None;
    }
    let v = u32::from_be_bytes(b.get(9..13)?.try_into().ok()?);
    (v >> 16 == 0x5130).then_some(v)
}

/// The `SNI` of a QUIC-crypto CHLO message: `CHLO`, u16 tag count (LE),
/// u16 padding, (tag, end offset u32 LE) pairs, then the values.
pub fn chlo_sni(m: &[u8]) -> Option<Option<&[u8]>> {
    let mut r = Rd::new(m);
    if r.take(4)? != b"CHLO" {
        return None;
    }
    let n = u16::from_le_bytes(r.take(2)?.try_into().ok()?) as usize;
    r.skip(2)?;
    let values = 8 + 8 * n;
    let mut prev = 0usize;
    for _ in 0..n.min(512) {
        let tag = r.take(4)?;
        let end = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
        if end < prev {
            return None;
        }
        if tag == b"SNI\0" {
            return Some(Some(m.get(values + prev..values + end)?));
        }
        prev = end;
    }
    Some(None)
}

/// What one datagram's Initial packets gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Initial packets of a known version.
    pub initials: u32,
    /// Of those, how many failed to decrypt.
    pub failures: u32,
    /// Google QUIC numbering (Q050/T05x): the CRYPTO data is a CHLO.
    pub google: bool,
}

/// What the CRYPTO stream assembled so far holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hello<'a> {
    /// A whole TLS ClientHello handshake message.
    Tls(&'a [u8]),
    /// A Google CHLO, and its SNI if it has one.
    Chlo(Option<&'a [u8]>),
    /// Not whole yet.
    NeedMore,
    /// Not a ClientHello, or larger than allowed: stop looking.
    NotHello,
}

/// The client's Initial packets of one flow, decrypted, their CRYPTO
/// frames handed on for assembly. The state is what the first Initial
/// fixed: the client's first Destination Connection ID, from which the
/// keys of every later client Initial derive (RFC 9001 §5.2), even after
/// the client switches to the server's chosen DCID.
#[derive(Clone, Copy, Debug, Default)]
pub struct InitialDecoder {
    dcid: [u8; 20],
    dcid_len: u8,
}

impl InitialDecoder {
    /// Decrypt every client Initial coalesced in `datagram`, calling
    /// `crypto(offset, data)` for each CRYPTO frame. `crypt` is the caller's
    /// scratch buffer for the plaintext (reused, so nothing allocates once
    /// it has grown).
    pub fn feed(
        &mut self,
        datagram: &[u8],
        crypt: &mut Vec<u8>,
        mut crypto: impl FnMut(u64, &[u8]),
    ) -> Fed {
        let mut fed = Fed::default();
        let mut rest = datagram;
        while let Some((pkt, next)) = long_packet(rest) {
            rest = next;
            if !pkt.is_initial() {
                continue;
            }
            let Some(scheme) = scheme(pkt.version) else {
                continue;
            };
            fed.initials += 1;
            fed.google = scheme.google;
            if self.dcid_len == 0 {
                self.dcid[..pkt.dcid.len()].copy_from_slice(pkt.dcid);
                self.dcid_len = pkt.dcid.len() as u8;
            }
            match self.open(&pkt, &scheme, crypt) {
                Some(plain) => {
                    crypto_frames(plain, scheme.google, &mut crypto);
                }
                None => fed.failures += 1,
            }
        }
        fed
    }

    /// Keys from this packet's DCID first, then from the first one.
    fn open<'o>(
        &self,
        pkt: &LongPacket<'_>,
        scheme: &Scheme,
        crypt: &'o mut Vec<u8>,
    ) -> Option<&'o [u8]> {
        let first = &self.dcid[..usize::from(self.dcid_len)];
        let with_own =
            Keys::client(scheme, pkt.dcid).is_some_and(|k| decrypt(pkt, &k, crypt).is_some());
        if !with_own {
            if pkt.dcid == first {
                return None;
            }
            let keys = Keys::client(scheme, first)?;
            decrypt(pkt, &keys, crypt)?;
        }
        // `decrypt` left header + plaintext + tag in `crypt`.
        let hdr = pkt.pn_offset + usize::from(crypt[0] & 3) + 1;
        crypt.get(hdr..crypt.len().checked_sub(16)?)
    }
}

/// Read the assembled CRYPTO stream: a TLS ClientHello (at most `max`
/// bytes) or, for Google QUIC, a CHLO.
pub fn hello(data: &[u8], google: bool, max: usize) -> Hello<'_> {
    if google && data.starts_with(b"CHLO") {
        return match chlo_sni(data) {
            Some(sni) => Hello::Chlo(sni),
            None => Hello::NeedMore,
        };
    }
    if data.len() < 4 {
        return Hello::NeedMore;
    }
    let n = u32::from_be_bytes([0, data[1], data[2], data[3]]) as usize + 4;
    if data[0] != 1 || n > max {
        Hello::NotHello
    } else if data.len() >= n {
        Hello::Tls(&data[..n])
    } else {
        Hello::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 9001 Appendix A: the client Initial keys for DCID 8394c8f03e515708.
    #[test]
    fn rfc9001_appendix_a_keys() {
        let s = scheme(V1).unwrap();
        let k = Keys::client(&s, &hex("8394c8f03e515708")).unwrap();
        assert_eq!(k.iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
        // header protection: sample from A.2 gives mask 437b9aec36
        let mask =
            k.hp.new_mask(&hex("d1b1c98dd7689fb8ec11d242b123dc9b"))
                .unwrap();
        assert_eq!(mask.to_vec(), hex("437b9aec36"));
    }

    /// RFC 9369 Appendix A: QUIC v2 client keys for the same DCID.
    #[test]
    fn rfc9369_appendix_a_keys() {
        let s = scheme(V2).unwrap();
        let k = Keys::client(&s, &hex("8394c8f03e515708")).unwrap();
        assert_eq!(k.iv.to_vec(), hex("91f73e2351d8fa91660e909f"));
    }

    #[test]
    fn chlo_tags() {
        let mut m = b"CHLO".to_vec();
        m.extend_from_slice(&2u16.to_le_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(b"PAD\0");
        m.extend_from_slice(&3u32.to_le_bytes());
        m.extend_from_slice(b"SNI\0");
        m.extend_from_slice(&14u32.to_le_bytes());
        m.extend_from_slice(b"...www.example");
        assert_eq!(chlo_sni(&m), Some(Some(&b"www.example"[..])));
        assert_eq!(chlo_sni(&m[..m.len() - 1]), None);
    }
}
