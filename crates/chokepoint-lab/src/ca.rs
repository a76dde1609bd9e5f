//! The lab's certificate authority: made when the web server starts (its
//! key never leaves that process), it signs a certificate for whatever
//! name a client asks for, so `https://any.name/` works in the lab with
//! certificate checks on. Clients trust the CA's certificate, written to
//! the lab's state directory.
//!
//! Keys are ECDSA P-256 (rcgen's default, with ring); minting one costs a
//! key generation and a signature, well under a millisecond, and minted
//! certificates are cached per name (a bounded map, cleared when full).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Minted certificates kept at most; the cache is cleared when full.
const CACHE_CAP: usize = 4096;

/// A certificate authority for one lab.
pub struct LabCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

impl std::fmt::Debug for LabCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabCa").finish_non_exhaustive()
    }
}

impl LabCa {
    /// A new CA named after the lab.
    pub fn new(lab: &str) -> Result<LabCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("chokepoint lab CA ({lab})"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, "chokepoint lab");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().context("generating the CA key")?;
        let cert = params.self_signed(&key).context("signing the CA")?;
        Ok(LabCa {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA's certificate, DER.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// A certificate and key for `names` (DNS names or IP addresses),
    /// signed by this CA.
    pub fn mint(&self, names: &[String]) -> Result<CertifiedKey> {
        let mut params = CertificateParams::new(names.to_vec())
            .with_context(|| format!("a certificate for {names:?}"))?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| anyhow::anyhow!("the minted key: {e}"))?;
        Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
    }
}

/// Serves a certificate for the name in each ClientHello, minted on first
/// use; a hello without a name gets one for `fallback` (the server's own
/// addresses).
#[derive(Debug)]
pub struct MintingResolver {
    ca: LabCa,
    fallback: Vec<String>,
    cache: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl MintingResolver {
    /// A resolver signing with `ca`; nameless hellos get a certificate for
    /// `fallback` addresses.
    pub fn new(ca: LabCa, fallback: &[IpAddr]) -> MintingResolver {
        MintingResolver {
            ca,
            fallback: fallback.iter().map(|a| a.to_string()).collect(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The certificate for `name` (or the fallback when `None`).
    pub fn certificate(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let key = name.unwrap_or("").to_ascii_lowercase();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&key) {
            return Some(c.clone());
        }
        let names = if key.is_empty() {
            self.fallback.clone()
        } else {
            vec![key.clone()]
        };
        let minted = Arc::new(self.ca.mint(&names).ok()?);
        if cache.len() >= CACHE_CAP {
            cache.clear();
        }
        cache.insert(key, minted.clone());
        Some(minted)
    }
}

impl ResolvesServerCert for MintingResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certificate(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_certificates_verify_against_the_ca() {
        use rustls::client::danger::ServerCertVerifier;
        let ca = LabCa::new("t").unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let resolver = MintingResolver::new(ca, &["198.18.1.2".parse().unwrap()]);
        let now = rustls::pki_types::UnixTime::now();
        for (asked, name) in [(Some("t.me"), "t.me"), (None, "198.18.1.2")] {
            let cert = resolver.certificate(asked).unwrap();
            let server = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&cert.cert[0], &[], &server, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // A certificate is for its own name only.
        let cert = resolver.certificate(Some("t.me")).unwrap();
        let other = rustls::pki_types::ServerName::try_from("example.com").unwrap();
        assert!(verifier
            .verify_server_cert(&cert.cert[0], &[], &other, &[], now)
            .is_err());
    }

    #[test]
    fn certificates_are_cached_per_name() {
        let r = MintingResolver::new(LabCa::new("t").unwrap(), &[]);
        let a = r.certificate(Some("A.example")).unwrap();
        let b = r.certificate(Some("a.example")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
