//! `--ech grease`: a TLS ClientHello that carries a GREASE Encrypted
//! Client Hello extension (type 0xfe0d), as Chrome and Firefox send when
//! they have no ECH configuration for a site.
//!
//! rustls builds the extension itself (`EchMode::Grease`): the outer
//! hello keeps the real SNI, and the extension holds an HPKE encapsulated
//! key and a random payload of an inner hello's length. rustls needs an
//! HPKE sender for the encapsulated key, and ships one only with the
//! aws-lc-rs provider; rather than build aws-lc (a C library, minutes of
//! compiling on the project's machines) for one key agreement, this module
//! is that sender on ring, which the probe already uses: RFC 9180 base
//! mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, the suite
//! browsers use for GREASE ECH. Only the sender side is here (ring cannot
//! load a static X25519 private key, and a GREASE client never opens
//! anything); the key schedule and sealing are checked against RFC 9180's
//! test vectors (A.1.1).
//!
//! The suite's code points come from rustls's `internal` module: rustls
//! 0.23 exports them nowhere else.

use std::fmt;
use std::sync::Arc;

use ring::aead::{self, LessSafeKey, UnboundKey};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::hmac;
use ring::rand::SystemRandom;
use rustls::client::{EchGreaseConfig, EchMode};
use rustls::crypto::hpke::{
    EncapsulatedSecret, Hpke, HpkeOpener, HpkePrivateKey, HpkePublicKey, HpkeSealer, HpkeSuite,
};
use rustls::internal::msgs::enums::{HpkeAead, HpkeKdf, HpkeKem};
use rustls::internal::msgs::handshake::HpkeSymmetricCipherSuite;
use serde::{Deserialize, Serialize};

/// How the probe's ClientHello offers ECH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ech {
    /// A GREASE ECH extension, the real SNI outside (`grease`).
    Grease,
}

impl Ech {
    /// `grease`.
    pub fn as_str(self) -> &'static str {
        match self {
            Ech::Grease => "grease",
        }
    }

    /// `grease`.
    pub fn parse(s: &str) -> Option<Ech> {
        s.eq_ignore_ascii_case("grease").then_some(Ech::Grease)
    }
}

impl fmt::Display for Ech {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// rustls's GREASE mode with this module's HPKE sender and a fresh
/// placeholder X25519 key.
pub(crate) fn grease_mode() -> Result<EchMode, String> {
    let rng = SystemRandom::new();
    let placeholder = EphemeralPrivateKey::generate(&X25519, &rng)
        .and_then(|k| k.compute_public_key())
        .map_err(|_| "no X25519 key for the GREASE ECH placeholder".to_string())?;
    let key = HpkePublicKey(placeholder.as_ref().to_vec());
    Ok(EchMode::Grease(EchGreaseConfig::new(&SENDER, key)))
}

/// The HPKE suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM.
static SENDER: X25519Aes128 = X25519Aes128;

/// `"KEM" || I2OSP(kem_id, 2)`.
const KEM_SUITE_ID: &[u8] = b"KEM\x00\x20";
/// `"HPKE" || kem_id || kdf_id || aead_id`.
const HPKE_SUITE_ID: &[u8] = b"HPKE\x00\x20\x00\x01\x00\x01";
/// Nh, Nk, Nn of the suite.
const HASH_LEN: usize = 32;
const KEY_LEN: usize = 16;
const NONCE_LEN: usize = 12;

/// The sender side of the suite, on ring.
#[derive(Debug)]
struct X25519Aes128;

fn hpke_error(what: &str) -> rustls::Error {
    rustls::Error::General(format!("HPKE: {what}"))
}

impl Hpke for X25519Aes128 {
    fn seal(
        &self,
        info: &[u8],
        aad: &[u8],
        plaintext: &[u8],
        pub_key: &HpkePublicKey,
    ) -> Result<(EncapsulatedSecret, Vec<u8>), rustls::Error> {
        let (enc, mut sealer) = self.setup_sealer(info, pub_key)?;
        Ok((enc, sealer.seal(aad, plaintext)?))
    }

    fn setup_sealer(
        &self,
        info: &[u8],
        pub_key: &HpkePublicKey,
    ) -> Result<(EncapsulatedSecret, Box<dyn HpkeSealer + 'static>), rustls::Error> {
        let (enc, shared) = encap(&pub_key.0)?;
        let sealer = key_schedule(&shared, info)?;
        Ok((EncapsulatedSecret(enc), Box::new(sealer)))
    }

    fn open(
        &self,
        _enc: &EncapsulatedSecret,
        _info: &[u8],
        _aad: &[u8],
        _ciphertext: &[u8],
        _secret_key: &HpkePrivateKey,
    ) -> Result<Vec<u8>, rustls::Error> {
        Err(hpke_error("this suite only seals (GREASE)"))
    }

    fn setup_opener(
        &self,
        _enc: &EncapsulatedSecret,
        _info: &[u8],
        _secret_key: &HpkePrivateKey,
    ) -> Result<Box<dyn HpkeOpener + 'static>, rustls::Error> {
        Err(hpke_error("this suite only seals (GREASE)"))
    }

    fn generate_key_pair(&self) -> Result<(HpkePublicKey, HpkePrivateKey), rustls::Error> {
        Err(hpke_error("ring keeps X25519 private keys to itself"))
    }

    fn suite(&self) -> HpkeSuite {
        HpkeSuite {
            kem: HpkeKem::DHKEM_X25519_HKDF_SHA256,
            sym: HpkeSymmetricCipherSuite {
                kdf_id: HpkeKdf::HKDF_SHA256,
                aead_id: HpkeAead::AES_128_GCM,
            },
        }
    }
}

/// DHKEM Encap: an ephemeral key, its public half (`enc`) and the shared
/// secret.
fn encap(pk_r: &[u8]) -> Result<(Vec<u8>, Vec<u8>), rustls::Error> {
    let rng = SystemRandom::new();
    let sk_e = EphemeralPrivateKey::generate(&X25519, &rng).map_err(|_| hpke_error("keygen"))?;
    let enc = sk_e
        .compute_public_key()
        .map_err(|_| hpke_error("public key"))?
        .as_ref()
        .to_vec();
    let dh =
        agreement::agree_ephemeral(sk_e, &UnparsedPublicKey::new(&X25519, pk_r), |s| s.to_vec())
            .map_err(|_| hpke_error("X25519 with the recipient's key"))?;
    let kem_context = [enc.as_slice(), pk_r].concat();
    let shared = extract_and_expand(&dh, &kem_context);
    Ok((enc, shared))
}

/// DHKEM's ExtractAndExpand.
fn extract_and_expand(dh: &[u8], kem_context: &[u8]) -> Vec<u8> {
    let eae_prk = labeled_extract(KEM_SUITE_ID, b"", b"eae_prk", dh);
    labeled_expand(
        KEM_SUITE_ID,
        &eae_prk,
        b"shared_secret",
        kem_context,
        HASH_LEN,
    )
}

/// The base-mode key schedule: a sealing context.
fn key_schedule(shared: &[u8], info: &[u8]) -> Result<Sealer, rustls::Error> {
    let psk_id_hash = labeled_extract(HPKE_SUITE_ID, b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(HPKE_SUITE_ID, b"", b"info_hash", info);
    let context = [&[0u8][..], &psk_id_hash, &info_hash].concat();
    let secret = labeled_extract(HPKE_SUITE_ID, shared, b"secret", b"");
    let key = labeled_expand(HPKE_SUITE_ID, &secret, b"key", &context, KEY_LEN);
    let nonce = labeled_expand(HPKE_SUITE_ID, &secret, b"base_nonce", &context, NONCE_LEN);
    let unbound =
        UnboundKey::new(&aead::AES_128_GCM, &key).map_err(|_| hpke_error("AES-128 key"))?;
    let mut base_nonce = [0u8; NONCE_LEN];
    base_nonce.copy_from_slice(&nonce);
    Ok(Sealer {
        key: Arc::new(LessSafeKey::new(unbound)),
        base_nonce,
        seq: 0,
    })
}

/// HKDF-Extract with HPKE's label: HMAC(salt, "HPKE-v1" || suite || label || ikm).
fn labeled_extract(suite: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> Vec<u8> {
    let zeros = [0u8; HASH_LEN];
    let salt = if salt.is_empty() { &zeros[..] } else { salt };
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    let mut ctx = hmac::Context::with_key(&key);
    for part in [&b"HPKE-v1"[..], suite, label, ikm] {
        ctx.update(part);
    }
    ctx.sign().as_ref().to_vec()
}

/// HKDF-Expand with HPKE's label, `len` ≤ 255 × 32 bytes.
fn labeled_expand(suite: &[u8], prk: &[u8], label: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, prk);
    let len16 = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    let mut out = Vec::with_capacity(len);
    let mut prev: Vec<u8> = Vec::new();
    for i in 1..=255u8 {
        if out.len() >= len {
            break;
        }
        let mut ctx = hmac::Context::with_key(&key);
        for part in [&prev[..], &len16, b"HPKE-v1", suite, label, info, &[i]] {
            ctx.update(part);
        }
        prev = ctx.sign().as_ref().to_vec();
        out.extend_from_slice(&prev);
    }
    out.truncate(len);
    out
}

/// A sealing context: the key, the base nonce and the sequence number.
struct Sealer {
    key: Arc<LessSafeKey>,
    base_nonce: [u8; NONCE_LEN],
    seq: u64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").field("seq", &self.seq).finish()
    }
}

impl HpkeSealer for Sealer {
    fn seal(&mut self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let mut nonce = self.base_nonce;
        for (n, s) in nonce[NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *n ^= s;
        }
        self.seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| hpke_error("sequence number overflow"))?;
        let mut out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut out,
            )
            .map_err(|_| hpke_error("seal"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 9180 A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
    /// AES-128-GCM, base mode.
    #[test]
    fn key_schedule_and_sealing_match_rfc_9180() {
        let info = hex("4f6465206f6e2061204772656369616e2055726e");
        let shared = hex("fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc");
        let mut sealer = key_schedule(&shared, &info).unwrap();
        assert_eq!(sealer.base_nonce.to_vec(), hex("56d890e5accaaf011cff4b7d"));
        let pt = hex("4265617574792069732074727574682c20747275746820626561757479");
        let ct0 = sealer.seal(&hex("436f756e742d30"), &pt).unwrap();
        assert_eq!(
            ct0,
            hex("f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a")
        );
        // The second message uses the next nonce.
        let ct1 = sealer.seal(&hex("436f756e742d31"), &pt).unwrap();
        assert_eq!(sealer.seq, 2);
        assert_ne!(ct1, ct0);
        assert_eq!(ct1.len(), pt.len() + 16);
    }

    #[test]
    fn the_secret_of_the_key_schedule_matches_rfc_9180() {
        let shared = hex("fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc");
        let secret = labeled_extract(HPKE_SUITE_ID, &shared, b"secret", b"");
        assert_eq!(
            secret,
            hex("12fff91991e93b48de37e7daddb52981084bd8aa64289c3788471d9a9712f397")
        );
        let info = hex("4f6465206f6e2061204772656369616e2055726e");
        let context = [
            &[0u8][..],
            &labeled_extract(HPKE_SUITE_ID, b"", b"psk_id_hash", b""),
            &labeled_extract(HPKE_SUITE_ID, b"", b"info_hash", &info),
        ]
        .concat();
        let key = labeled_expand(HPKE_SUITE_ID, &secret, b"key", &context, KEY_LEN);
        assert_eq!(key, hex("4531685d41d65f03dc48f6b8302c05b0"));
    }

    #[test]
    fn encapsulation_gives_a_fresh_x25519_key_each_time() {
        let pk_r = hex("3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d");
        let (a, sa) = encap(&pk_r).unwrap();
        let (b, sb) = encap(&pk_r).unwrap();
        assert_eq!((a.len(), sa.len()), (32, 32));
        assert_ne!(a, b);
        assert_ne!(sa, sb);
        assert!(SENDER
            .setup_sealer(b"", &HpkePublicKey(pk_r.clone()))
            .is_ok());
        // A key of the wrong length is refused, not panicked on.
        assert!(encap(&pk_r[..31]).is_err());
    }
}
