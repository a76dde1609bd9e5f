//! The QUIC step (`--quic`): a QUIC handshake with ALPN `h3` to each
//! endpoint of an https URL, the host as SNI, verified against the
//! configured trust anchors, in the spirit of OONI's `quic_handshake`
//! measurements of HTTP/3.
//!
//! The measurement is the handshake, not an HTTP/3 fetch: a censor that
//! blocks QUIC (Russia's TSPU in March 2022, the GFW's SNI filter) acts on
//! the client's Initial, so whether the handshake completes is what shows
//! the block; the page itself is fetched over TCP by the HTTP step.
//!
//! quinn (with rustls and the ring provider) does the work, inside a small
//! tokio current-thread runtime made for each handshake and dropped after
//! it; the rest of the probe stays on std threads. quinn's client pads its
//! first datagram to 1200 bytes and sends it from an ephemeral port, as
//! browsers do, so the Initial has the shape censors match on. QUIC v1 is
//! the default; draft-29 (0xff00001d, ALPN `h3-29`), what Chrome still
//! sent in early 2022, can be asked for.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use serde::{Deserialize, Serialize};

use crate::deadline::millis_since;
use crate::failure;

/// How long a finished handshake waits for its CONNECTION_CLOSE to leave.
const CLOSE_WAIT: Duration = Duration::from_millis(300);

/// The QUIC version the client offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuicVersion {
    /// QUIC v1, RFC 9000 (`v1`), with ALPN `h3`.
    #[default]
    #[serde(rename = "v1")]
    V1,
    /// draft-ietf-quic-transport-29 (`draft-29`), with ALPN `h3-29`.
    #[serde(rename = "draft-29")]
    Draft29,
}

impl QuicVersion {
    /// The version number on the wire.
    pub fn wire(self) -> u32 {
        match self {
            QuicVersion::V1 => 0x0000_0001,
            QuicVersion::Draft29 => 0xff00_001d,
        }
    }

    /// The ALPN offered with it.
    pub fn alpn(self) -> &'static str {
        match self {
            QuicVersion::V1 => "h3",
            QuicVersion::Draft29 => "h3-29",
        }
    }

    /// `v1` or `draft-29`.
    pub fn as_str(self) -> &'static str {
        match self {
            QuicVersion::V1 => "v1",
            QuicVersion::Draft29 => "draft-29",
        }
    }

    /// `v1` (or `1`) and `draft-29` (or `29`).
    pub fn parse(s: &str) -> Option<QuicVersion> {
        match s.to_ascii_lowercase().as_str() {
            "v1" | "1" => Some(QuicVersion::V1),
            "draft-29" | "29" => Some(QuicVersion::Draft29),
            _ => None,
        }
    }
}

impl fmt::Display for QuicVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the QUIC step saw on one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuicResult {
    /// The endpoint (`ip:port`, UDP).
    pub address: SocketAddr,
    /// The SNI sent (empty for an address).
    pub server_name: String,
    /// The version offered.
    pub version: QuicVersion,
    /// The ALPN the server chose, when the handshake worked.
    pub alpn: Option<String>,
    /// OONI's failure string when the handshake failed.
    pub failure: Option<String>,
    /// How long the handshake took.
    pub elapsed_ms: u64,
}

/// The client configuration for `version`: ring, TLS 1.3 (QUIC has no
/// other), the version's ALPN, `ca` as the only trust anchors.
pub(crate) fn client_config(
    ca: &[CertificateDer<'static>],
    version: QuicVersion,
) -> Result<quinn::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(ca.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![version.alpn().as_bytes().to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.version(version.wire());
    Ok(config)
}

/// Runs one handshake to `addr` with `host` as SNI, within `timeout`.
pub(crate) fn handshake(
    addr: SocketAddr,
    host: &str,
    version: QuicVersion,
    config: &Result<quinn::ClientConfig, String>,
    timeout: Duration,
) -> QuicResult {
    let start = Instant::now();
    let is_ip = host.parse::<IpAddr>().is_ok();
    let mut record = QuicResult {
        address: addr,
        server_name: if is_ip { String::new() } else { host.into() },
        version,
        alpn: None,
        failure: None,
        elapsed_ms: 0,
    };
    let outcome = config
        .as_ref()
        .map_err(|e| failure::unknown(e))
        .and_then(|config| run(addr, host, config, timeout));
    record.elapsed_ms = millis_since(start);
    match outcome {
        Ok(alpn) => record.alpn = alpn,
        Err(f) => record.failure = Some(f),
    }
    record
}

/// The handshake on a runtime of its own; the ALPN chosen.
fn run(
    addr: SocketAddr,
    host: &str,
    config: &quinn::ClientConfig,
    timeout: Duration,
) -> Result<Option<String>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failure::unknown(&e))?;
    rt.block_on(async {
        let local = match addr {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let endpoint = quinn::Endpoint::client(local).map_err(|e| failure::from_io(&e))?;
        // rustls puts no address in SNI; quinn wants a name to verify
        // against all the same, and an address is one.
        let connecting = endpoint
            .connect_with(config.clone(), addr, host)
            .map_err(|e| failure::unknown(&e))?;
        let outcome = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => Err(failure::GENERIC_TIMEOUT.to_string()),
            Ok(Err(e)) => Err(from_connection_error(&e)),
            Ok(Ok(conn)) => {
                let alpn = conn
                    .handshake_data()
                    .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                    .and_then(|d| d.protocol)
                    .map(|p| String::from_utf8_lossy(&p).into_owned());
                conn.close(0u32.into(), b"measured");
                Ok(alpn)
            }
        };
        endpoint.close(0u32.into(), b"");
        let _ = tokio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await;
        outcome
    })
}

/// OONI's failure string for a QUIC connection error: a handshake that
/// never finished is a timeout, a TLS failure has its TLS name (a
/// certificate's problem from the text rustls gave quinn).
pub fn from_connection_error(e: &quinn::ConnectionError) -> String {
    use quinn::ConnectionError as E;
    match e {
        E::TimedOut => failure::GENERIC_TIMEOUT.to_string(),
        E::Reset => failure::CONNECTION_RESET.to_string(),
        E::VersionMismatch => failure::QUIC_INCOMPATIBLE_VERSION.to_string(),
        E::TransportError(t) if is_crypto(u64::from(t.code)) => tls_reason(&t.reason).to_string(),
        E::ConnectionClosed(c) if is_crypto(u64::from(c.error_code)) => {
            failure::SSL_FAILED_HANDSHAKE.to_string()
        }
        other => failure::unknown(other),
    }
}

/// QUIC's CRYPTO_ERROR range: 0x100 plus a TLS alert.
fn is_crypto(code: u64) -> bool {
    (0x100..=0x1ff).contains(&code)
}

/// The TLS failure in rustls's message for it.
fn tls_reason(text: &str) -> &'static str {
    if text.contains("UnknownIssuer") {
        failure::SSL_UNKNOWN_AUTHORITY
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        failure::SSL_INVALID_HOSTNAME
    } else if text.contains("invalid peer certificate") {
        failure::SSL_INVALID_CERTIFICATE
    } else {
        failure::SSL_FAILED_HANDSHAKE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_and_name_themselves() {
        assert_eq!(QuicVersion::parse("v1"), Some(QuicVersion::V1));
        assert_eq!(QuicVersion::parse("Draft-29"), Some(QuicVersion::Draft29));
        assert_eq!(QuicVersion::parse("v2"), None);
        assert_eq!(QuicVersion::Draft29.wire(), 0xff00_001d);
        assert_eq!(QuicVersion::Draft29.alpn(), "h3-29");
        assert_eq!(
            serde_json::to_string(&QuicVersion::Draft29).unwrap(),
            "\"draft-29\""
        );
    }

    #[test]
    fn connection_errors_map_to_ooni_strings() {
        use quinn::ConnectionError as E;
        assert_eq!(
            from_connection_error(&E::TimedOut),
            failure::GENERIC_TIMEOUT
        );
        assert_eq!(from_connection_error(&E::Reset), failure::CONNECTION_RESET);
        assert_eq!(
            from_connection_error(&E::VersionMismatch),
            "quic_incompatible_version"
        );
        assert!(from_connection_error(&E::LocallyClosed).starts_with("unknown_failure"));
        assert_eq!(
            tls_reason("invalid peer certificate: UnknownIssuer"),
            failure::SSL_UNKNOWN_AUTHORITY
        );
        assert_eq!(
            tls_reason("invalid peer certificate: Expired"),
            failure::SSL_INVALID_CERTIFICATE
        );
        assert_eq!(tls_reason("peer sent alert"), failure::SSL_FAILED_HANDSHAKE);
    }
}
