//! What to measure: an input (a URL or a bare name) read into its parts.
//!
//! A small parser of its own rather than a URL crate: only `http` and
//! `https`, a host (name, IPv4 or `[IPv6]`), an optional port and a path.
//! Anything else (user info, other schemes, spaces) is refused, since the
//! same text is sent to the test helper and written into the Host header.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Cleartext HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The port used when the URL names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A measurement target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The host, lower case; an IPv6 address without brackets.
    pub host: String,
    /// The port (the scheme's when the URL names none).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Why an input is not something to measure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?}: {why}")]
pub struct InputError {
    /// The input as given.
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl Target {
    /// Reads an input: `http(s)://host[:port][/path]`, or a bare name (or
    /// address) meaning `https://name/`.
    pub fn parse(input: &str) -> Result<Target, InputError> {
        let bad = |why| InputError {
            input: input.to_string(),
            why,
        };
        let text = input.trim();
        if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("empty, or has spaces or control characters"));
        }
        let (scheme, rest) = match text.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("http") => (Scheme::Http, rest),
            Some((s, rest)) if s.eq_ignore_ascii_case("https") => (Scheme::Https, rest),
            Some(_) => return Err(bad("only http:// and https:// URLs are measured")),
            None => (Scheme::Https, text),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad("user information in a URL is not supported"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
        if !valid_host(&host) {
            return Err(bad("bad host"));
        }
        // The fragment never goes on the wire.
        let tail = tail.split('#').next().unwrap_or("");
        let path = match tail {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        Ok(Target {
            scheme,
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(scheme.default_port()),
            path,
        })
    }

    /// The host as an address, when the URL names an address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The endpoint `addr` with this target's port.
    pub fn endpoint(&self, addr: IpAddr) -> SocketAddr {
        SocketAddr::new(addr, self.port)
    }

    /// The value of the Host header: the host, with the port when it is
    /// not the scheme's.
    pub fn host_header(&self) -> String {
        let host = match self.ip() {
            Some(IpAddr::V6(_)) => format!("[{}]", self.host),
            _ => self.host.clone(),
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Target {
    /// The normalised URL (sent to the helper as `http_request`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.host_header(),
            self.path
        )
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (v6, None),
            p => (v6, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|&n| n != 0)?),
    };
    Some((host.to_string(), port))
}

/// A DNS name (letters, digits, `-`, `_`, dots) or an address.
fn valid_host(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    #[test]
    fn bare_name_means_https_root() {
        let x = t("Example.ORG");
        assert_eq!(x.scheme, Scheme::Https);
        assert_eq!(
            (x.host.as_str(), x.port, x.path.as_str()),
            ("example.org", 443, "/")
        );
        assert_eq!(x.to_string(), "https://example.org/");
    }

    #[test]
    fn urls_keep_port_path_and_query() {
        let x = t("http://a.test:8080/p/q?x=1#frag");
        assert_eq!((x.port, x.path.as_str()), (8080, "/p/q?x=1"));
        assert_eq!(x.host_header(), "a.test:8080");
        assert_eq!(t("http://a.test?x").path, "/?x");
        assert_eq!(t("http://a.test").port, 80);
        assert_eq!(t("https://a.test:443/").host_header(), "a.test");
    }

    #[test]
    fn addresses_are_hosts_too() {
        let x = t("https://[::1]:8443/");
        assert_eq!(x.host, "::1");
        assert_eq!(x.ip(), Some("::1".parse().unwrap()));
        assert_eq!(x.host_header(), "[::1]:8443");
        assert_eq!(x.to_string(), "https://[::1]:8443/");
        assert_eq!(t("192.0.2.1").ip(), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(t("http://a.test").ip(), None);
    }

    #[test]
    fn refuses_what_it_cannot_measure() {
        for bad in [
            "",
            "ftp://a.test/",
            "http://user@a.test/",
            "http://a b/",
            "http://a.test:0/",
            "http://a.test:99999/",
            "http://[::1/",
            "http://-a..b/",
            "http:///",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
