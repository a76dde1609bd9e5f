//! Signed artifacts: ed25519 keys and detached signatures, so a fleet of
//! enforcement nodes takes rules only from the one place that compiles them.
//!
//! A signature is a small text file beside the artifact (`rules.chk.sig`),
//! not a section inside it: the artifact format is unchanged, an artifact
//! can be signed (or re-signed with a new key) without recompiling, and a
//! node without `--trust` reads signed artifacts as before.
//!
//! ```text
//! chokepoint-signature v1
//! algorithm ed25519
//! key 0f1e…            (the signer's public key, 64 hex digits)
//! blake3 9a8b…         (BLAKE3 of the whole artifact file, 64 hex digits)
//! signature 77c2…      (128 hex digits)
//! ```
//!
//! The signed message is [`CONTEXT`] followed by the 32 bytes of the
//! file's BLAKE3, so verifying costs one hash of the file and one ed25519
//! check, and a signature can never be taken for one over other data.
//! Verification ([`verify`]) checks, in order: the file format, that the
//! signing key is one of the trusted keys, that the artifact's BLAKE3 is
//! the signed one (a byte changed after signing is caught here), and the
//! signature itself. The artifact is then loaded with every check of
//! [`crate::artifact::from_bytes`].
//!
//! Keys: the private key is PKCS#8 (v1 or v2) in PEM (`-----BEGIN PRIVATE
//! KEY-----`) or DER, as `chokepoint keygen` or `openssl genpkey -algorithm
//! ed25519` writes it; the public key is its 32 raw bytes in hex on one
//! line (`#` comments allowed).

use std::fmt::Write as _;

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// What the signature covers besides the artifact's hash: a label, so a
/// chokepoint signature means nothing in any other protocol.
pub const CONTEXT: &[u8] = b"chokepoint artifact signature v1\0";
/// The first line of a signature file.
pub const SIG_HEADER: &str = "chokepoint-signature v1";
/// The largest signature file read (a real one is under 300 bytes).
pub const MAX_SIG_BYTES: usize = 4096;

/// Why a key or signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    /// The private key does not parse.
    #[error("not an ed25519 private key (PKCS#8, PEM or DER): {0}")]
    BadPrivateKey(String),
    /// The public key does not parse.
    #[error("not an ed25519 public key (64 hex digits): {0}")]
    BadPublicKey(String),
    /// The signature file does not parse.
    #[error("not a chokepoint signature: {0}")]
    BadFormat(String),
    /// Signed by a key that is not trusted.
    #[error("signed by key {0}, which is not one of the trusted keys")]
    Untrusted(String),
    /// The artifact is not the one that was signed.
    #[error("the artifact's BLAKE3 is {actual}, the signature is for {signed}: the file changed after signing")]
    HashMismatch {
        /// The hash in the signature file.
        signed: String,
        /// The artifact's.
        actual: String,
    },
    /// The signature does not verify under its key.
    #[error("the signature does not verify under key {0}")]
    Invalid(String),
}

/// An ed25519 public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Parse the text of a public key file, or the key itself: 64 hex
    /// digits, with blank lines and `#` comments around it.
    pub fn parse(text: &str) -> Result<PublicKey, SignError> {
        let hex: String = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .collect();
        let bytes = from_hex(&hex).ok_or_else(|| {
            SignError::BadPublicKey(format!("expected 64 hex digits, found {:?}", cut(&hex, 80)))
        })?;
        Ok(PublicKey(bytes.try_into().map_err(|b: Vec<u8>| {
            SignError::BadPublicKey(format!("{} bytes, expected 32", b.len()))
        })?))
    }

    /// The key in hex, as public key files and signatures hold it.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

/// A private key that signs artifacts.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

/// A new key pair: the private key as PKCS#8 PEM, and its public key.
pub fn generate() -> (String, PublicKey) {
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).expect("the system RNG works");
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("a generated key parses");
    let public = PublicKey(pair.public_key().as_ref().try_into().expect("32-byte key"));
    (pem("PRIVATE KEY", doc.as_ref()), public)
}

impl SigningKey {
    /// A private key from a key file: PKCS#8 v1 or v2, PEM or DER.
    pub fn parse(bytes: &[u8]) -> Result<SigningKey, SignError> {
        let der = match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN") => unpem(text, "PRIVATE KEY")?,
            _ => bytes.to_vec(),
        };
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| SignError::BadPrivateKey(e.to_string()))?;
        Ok(SigningKey { pair })
    }

    /// The key's public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(
            self.pair
                .public_key()
                .as_ref()
                .try_into()
                .expect("32-byte key"),
        )
    }

    /// The signature file for `artifact` (the whole file's bytes).
    pub fn sign(&self, artifact: &[u8]) -> String {
        let hash = blake3::hash(artifact);
        let sig = self.pair.sign(&message(hash.as_bytes()));
        let mut o = String::new();
        let _ = writeln!(o, "{SIG_HEADER}");
        let _ = writeln!(o, "algorithm ed25519");
        let _ = writeln!(o, "key {}", self.public().to_hex());
        let _ = writeln!(o, "blake3 {}", hash.to_hex());
        let _ = writeln!(o, "signature {}", to_hex(sig.as_ref()));
        o
    }
}

/// A parsed signature file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The signer's public key.
    pub key: PublicKey,
    /// BLAKE3 of the signed artifact.
    pub blake3: [u8; 32],
    /// The ed25519 signature.
    pub sig: [u8; 64],
}

impl Signature {
    /// Parse a signature file: the header line, then `algorithm`, `key`,
    /// `blake3` and `signature`, each once, nothing else.
    pub fn parse(bytes: &[u8]) -> Result<Signature, SignError> {
        let bad = |m: String| SignError::BadFormat(m);
        if bytes.len() > MAX_SIG_BYTES {
            return Err(bad(format!(
                "{} bytes; a signature file is under {MAX_SIG_BYTES}",
                bytes.len()
            )));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        if lines.next().map(str::trim) != Some(SIG_HEADER) {
            return Err(bad(format!("the first line is not `{SIG_HEADER}`")));
        }
        let (mut alg, mut key, mut hash, mut sig) = (None, None, None, None);
        for l in lines {
            let (k, v) = l
                .trim()
                .split_once(' ')
                .ok_or_else(|| bad(format!("line `{}` has no value", cut(l, 40))))?;
            let slot = match k {
                "algorithm" => &mut alg,
                "key" => &mut key,
                "blake3" => &mut hash,
                "signature" => &mut sig,
                _ => return Err(bad(format!("unknown field `{}`", cut(k, 40)))),
            };
            if slot.replace(v.trim()).is_some() {
                return Err(bad(format!("field `{k}` appears twice")));
            }
        }
        if alg != Some("ed25519") {
            return Err(bad("`algorithm ed25519` is missing".into()));
        }
        let field = |v: Option<&str>, name: &str, len: usize| -> Result<Vec<u8>, SignError> {
            let v = v.ok_or_else(|| bad(format!("field `{name}` is missing")))?;
            from_hex(v)
                .filter(|b| b.len() == len)
                .ok_or_else(|| bad(format!("`{name}` is not {} hex digits", 2 * len)))
        };
        Ok(Signature {
            key: PublicKey(field(key, "key", 32)?.try_into().expect("32")),
            blake3: field(hash, "blake3", 32)?.try_into().expect("32"),
            sig: field(sig, "signature", 64)?.try_into().expect("64"),
        })
    }
}

/// Check that `sig_file` is a valid signature of `artifact` by one of
/// `trusted`; returns the key that signed.
pub fn verify(
    artifact: &[u8],
    sig_file: &[u8],
    trusted: &[PublicKey],
) -> Result<PublicKey, SignError> {
    let s = Signature::parse(sig_file)?;
    if !trusted.contains(&s.key) {
        return Err(SignError::Untrusted(s.key.to_hex()));
    }
    let actual = blake3::hash(artifact);
    if actual.as_bytes() != &s.blake3 {
        return Err(SignError::HashMismatch {
            signed: to_hex(&s.blake3),
            actual: actual.to_hex().to_string(),
        });
    }
    UnparsedPublicKey::new(&ED25519, s.key.0)
        .verify(&message(&s.blake3), &s.sig)
        .map_err(|_| SignError::Invalid(s.key.to_hex()))?;
    Ok(s.key)
}

/// The bytes signed for an artifact whose BLAKE3 is `hash`.
fn message(hash: &[u8; 32]) -> Vec<u8> {
    [CONTEXT, hash.as_slice()].concat()
}

fn to_hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// `s`, at most `n` bytes of it, for an error message.
fn cut(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut o = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        o.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        o.push('\n');
    }
    let _ = writeln!(o, "-----END {label}-----");
    o
}

fn unpem(text: &str, label: &str) -> Result<Vec<u8>, SignError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let bad = |m: &str| SignError::BadPrivateKey(m.to_string());
    let body = text
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(b, _)| b)
        .ok_or_else(|| bad(&format!("no `{begin}` ... `{end}` block")))?;
    let b64: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(&format!("bad base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (SigningKey, PublicKey) {
        let (pem, public) = generate();
        let k = SigningKey::parse(pem.as_bytes()).unwrap();
        assert_eq!(k.public(), public);
        (k, public)
    }

    #[test]
    fn a_signature_verifies_under_its_key_only() {
        let (k, public) = key();
        let (_, other) = key();
        let artifact = b"CHOKEPNT and a body".to_vec();
        let sig = k.sign(&artifact);
        assert_eq!(
            verify(&artifact, sig.as_bytes(), &[other, public]),
            Ok(public)
        );
        assert_eq!(
            verify(&artifact, sig.as_bytes(), &[other]),
            Err(SignError::Untrusted(public.to_hex()))
        );
    }

    #[test]
    fn a_changed_byte_or_signature_is_refused() {
        let (k, public) = key();
        let artifact = vec![7u8; 1000];
        let sig = k.sign(&artifact);
        let mut tampered = artifact.clone();
        tampered[500] ^= 1;
        assert!(matches!(
            verify(&tampered, sig.as_bytes(), &[public]),
            Err(SignError::HashMismatch { .. })
        ));
        // A signature edited to match the tampered file's hash fails the
        // ed25519 check.
        let forged = sig.replace(
            &blake3::hash(&artifact).to_hex().to_string(),
            blake3::hash(&tampered).to_hex().as_str(),
        );
        assert_eq!(
            verify(&tampered, forged.as_bytes(), &[public]),
            Err(SignError::Invalid(public.to_hex()))
        );
        let mut flipped = sig.clone().into_bytes();
        let at = sig.find("\nsignature ").unwrap() + 11;
        flipped[at] = if flipped[at] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            verify(&artifact, &flipped, &[public]),
            Err(SignError::Invalid(public.to_hex()))
        );
    }

    #[test]
    fn malformed_files_are_refused_with_a_reason() {
        let (k, public) = key();
        let sig = k.sign(b"x");
        for (text, want) in [
            ("", "first line"),
            ("chokepoint-signature v2\n", "first line"),
            (&sig.replace("algorithm ed25519\n", ""), "algorithm"),
            (&format!("{sig}key {}\n", public.to_hex()), "twice"),
            (&format!("{sig}comment hi\n"), "unknown field"),
            (
                &sig.replace("\nsignature ", "\nsignature 00"),
                "128 hex digits",
            ),
        ] {
            let e = verify(b"x", text.as_bytes(), &[public]).unwrap_err();
            assert!(e.to_string().contains(want), "{text:?}: {e}");
        }
        assert!(Signature::parse(&vec![b'a'; MAX_SIG_BYTES + 1]).is_err());
    }

    #[test]
    fn keys_read_back_in_every_documented_form() {
        let (pem, public) = generate();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let der = unpem(&pem, "PRIVATE KEY").unwrap();
        assert_eq!(SigningKey::parse(&der).unwrap().public(), public);
        let file = format!("# chokepoint signing key\n{}\n", public.to_hex());
        assert_eq!(PublicKey::parse(&file).unwrap(), public);
        assert!(PublicKey::parse("abcd").is_err());
        assert!(PublicKey::parse(&"zz".repeat(32)).is_err());
        assert!(SigningKey::parse(b"not a key").is_err());
        // openssl genpkey -algorithm ed25519 writes PKCS#8 v1 (no public
        // key inside); ring's v1 reader takes it.
        let v1 = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKfdinaoDxtL8kIbemON/bWi9sh/oDQhg1yUsuP9Mqc/\n-----END PRIVATE KEY-----\n";
        let k = SigningKey::parse(v1.as_bytes()).unwrap();
        let sig = k.sign(b"abc");
        assert!(verify(b"abc", sig.as_bytes(), &[k.public()]).is_ok());
    }
}
