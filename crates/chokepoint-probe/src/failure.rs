//! OONI's failure strings, and the mapping from Rust's errors onto them.
//!
//! The strings are those of ooni/probe-cli `internal/netxlite` (the list in
//! ooni/spec `data-formats/df-007-errors.md`), so a measurement reads the same
//! as one taken by OONI Probe. What netxlite does not name becomes
//! `unknown_failure: <text>`, as netxlite writes it.

use std::io;

/// NXDOMAIN from the resolver.
pub const DNS_NXDOMAIN: &str = "dns_nxdomain_error";
/// What OONI's test helper writes for NXDOMAIN (the legacy name it keeps).
pub const DNS_NAME_ERROR: &str = "dns_name_error";
/// The resolver answered, without any address.
pub const DNS_NO_ANSWER: &str = "dns_no_answer";
/// The resolver answered REFUSED.
pub const DNS_REFUSED: &str = "dns_refused_error";
/// The resolver answered SERVFAIL.
pub const DNS_SERVFAIL: &str = "dns_servfail_error";
/// An answer that could not be parsed or made no sense.
pub const DNS_SERVER_MISBEHAVING: &str = "dns_server_misbehaving";
/// A step did not finish before its deadline.
pub const GENERIC_TIMEOUT: &str = "generic_timeout_error";
/// The peer (or a box on the path) sent a TCP RST.
pub const CONNECTION_RESET: &str = "connection_reset";
/// The SYN was answered with a RST.
pub const CONNECTION_REFUSED: &str = "connection_refused";
/// The connection was aborted locally.
pub const CONNECTION_ABORTED: &str = "connection_aborted";
/// ICMP host unreachable.
pub const HOST_UNREACHABLE: &str = "host_unreachable";
/// ICMP network unreachable, or no route.
pub const NETWORK_UNREACHABLE: &str = "network_unreachable";
/// The peer closed the connection before the step was done.
pub const EOF: &str = "eof_error";
/// The certificate chain does not lead to a trusted anchor.
pub const SSL_UNKNOWN_AUTHORITY: &str = "ssl_unknown_authority";
/// The certificate is not valid for the name asked for.
pub const SSL_INVALID_HOSTNAME: &str = "ssl_invalid_hostname";
/// The certificate is invalid otherwise (expired, bad signature, ...).
pub const SSL_INVALID_CERTIFICATE: &str = "ssl_invalid_certificate";
/// The handshake failed for a reason other than the certificate.
pub const SSL_FAILED_HANDSHAKE: &str = "ssl_failed_handshake";
/// The QUIC server speaks none of the versions offered.
pub const QUIC_INCOMPATIBLE_VERSION: &str = "quic_incompatible_version";

/// The OONI failure string for an I/O error.
///
/// A read or connect past its deadline shows up as `TimedOut` or (a socket
/// read timeout, on Linux) `WouldBlock`: both are `generic_timeout_error`, as
/// netxlite writes for a Go deadline. netxlite keeps `timed_out` for the
/// kernel's own ETIMEDOUT; the project asked for one timeout string, so a
/// kernel timeout is `generic_timeout_error` here too.
pub fn from_io(e: &io::Error) -> String {
    use io::ErrorKind as K;
    let known = match e.kind() {
        K::ConnectionReset => CONNECTION_RESET,
        K::ConnectionRefused => CONNECTION_REFUSED,
        K::ConnectionAborted => CONNECTION_ABORTED,
        K::TimedOut | K::WouldBlock => GENERIC_TIMEOUT,
        K::HostUnreachable => HOST_UNREACHABLE,
        K::NetworkUnreachable => NETWORK_UNREACHABLE,
        K::UnexpectedEof => EOF,
        _ => {
            // rustls wraps its own errors in InvalidData; they keep their
            // TLS meaning.
            if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return from_tls(tls).to_string();
            }
            return unknown(e);
        }
    };
    known.to_string()
}

/// The OONI failure string for a rustls error, as netxlite's TLS classifier
/// maps Go's x509 errors.
pub fn from_tls(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => SSL_UNKNOWN_AUTHORITY,
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            SSL_INVALID_HOSTNAME
        }
        rustls::Error::InvalidCertificate(_) => SSL_INVALID_CERTIFICATE,
        _ => SSL_FAILED_HANDSHAKE,
    }
}

/// `unknown_failure: TEXT`, netxlite's form for what it cannot classify.
pub fn unknown(e: &dyn std::fmt::Display) -> String {
    format!("unknown_failure: {e}")
}

/// Whether a DNS failure means "no such name" (the probe's or the helper's
/// spelling).
pub fn is_nxdomain(failure: &str) -> bool {
    failure == DNS_NXDOMAIN || failure == DNS_NAME_ERROR
}

/// The short reason used in analysis keys: `generic_timeout_error` →
/// `timeout`, `dns_nxdomain_error` → `nxdomain`, `eof_error` → `eof`;
/// other strings lose a `dns_` prefix and an `_error` suffix and otherwise
/// stay as they are (`connection_reset`, `ssl_unknown_authority`).
pub fn reason(failure: &str) -> String {
    if failure == GENERIC_TIMEOUT {
        return "timeout".to_string();
    }
    if failure.starts_with("unknown_failure") {
        return "unknown_failure".to_string();
    }
    let s = failure.strip_prefix("dns_").unwrap_or(failure);
    let s = s.strip_suffix("_error").unwrap_or(s);
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_ooni_strings() {
        use io::ErrorKind as K;
        let cases = [
            (K::ConnectionReset, CONNECTION_RESET),
            (K::ConnectionRefused, CONNECTION_REFUSED),
            (K::TimedOut, GENERIC_TIMEOUT),
            (K::WouldBlock, GENERIC_TIMEOUT),
            (K::HostUnreachable, HOST_UNREACHABLE),
            (K::NetworkUnreachable, NETWORK_UNREACHABLE),
            (K::UnexpectedEof, EOF),
        ];
        for (kind, want) in cases {
            assert_eq!(from_io(&io::Error::from(kind)), want, "{kind:?}");
        }
        let other = io::Error::other("boom");
        assert_eq!(from_io(&other), "unknown_failure: boom");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn raw_errnos_map_like_their_kinds() {
        let cases = [
            (libc_errno::ECONNRESET, CONNECTION_RESET),
            (libc_errno::ECONNREFUSED, CONNECTION_REFUSED),
            (libc_errno::ETIMEDOUT, GENERIC_TIMEOUT),
            (libc_errno::EHOSTUNREACH, HOST_UNREACHABLE),
            (libc_errno::ENETUNREACH, NETWORK_UNREACHABLE),
        ];
        for (errno, want) in cases {
            assert_eq!(
                from_io(&io::Error::from_raw_os_error(errno)),
                want,
                "{errno}"
            );
        }
    }

    /// Linux errno values, written out so the test needs no libc crate.
    #[cfg(target_os = "linux")]
    mod libc_errno {
        pub const ECONNRESET: i32 = 104;
        pub const ECONNREFUSED: i32 = 111;
        pub const ETIMEDOUT: i32 = 110;
        pub const EHOSTUNREACH: i32 = 113;
        pub const ENETUNREACH: i32 = 101;
    }

    #[test]
    fn tls_errors_map_like_netxlite() {
        use rustls::CertificateError as C;
        let e = |c| rustls::Error::InvalidCertificate(c);
        assert_eq!(from_tls(&e(C::UnknownIssuer)), SSL_UNKNOWN_AUTHORITY);
        assert_eq!(from_tls(&e(C::NotValidForName)), SSL_INVALID_HOSTNAME);
        assert_eq!(from_tls(&e(C::Expired)), SSL_INVALID_CERTIFICATE);
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
        assert_eq!(from_tls(&alert), SSL_FAILED_HANDSHAKE);
        // Wrapped in io::Error, as rustls's stream hands it over.
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, e(C::UnknownIssuer));
        assert_eq!(from_io(&wrapped), SSL_UNKNOWN_AUTHORITY);
    }

    #[test]
    fn reasons_are_short() {
        assert_eq!(reason(GENERIC_TIMEOUT), "timeout");
        assert_eq!(reason(DNS_NXDOMAIN), "nxdomain");
        assert_eq!(reason(DNS_NO_ANSWER), "no_answer");
        assert_eq!(reason(DNS_REFUSED), "refused");
        assert_eq!(reason(EOF), "eof");
        assert_eq!(reason(CONNECTION_RESET), "connection_reset");
        assert_eq!(reason(CONNECTION_REFUSED), "connection_refused");
        assert_eq!(reason(SSL_UNKNOWN_AUTHORITY), "ssl_unknown_authority");
        assert_eq!(reason("unknown_failure: x y"), "unknown_failure");
    }
}
