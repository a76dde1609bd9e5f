//! The control measurement: OONI's test helper protocol (ooni/spec
//! ts-017, "Example control request and response") and the probe's side
//! of it, one POST of JSON over HTTP/1.1.
//!
//! Two extensions, both left out of a request that does not use them so
//! it stays OONI's: `quic` asks the helper for QUIC handshakes too, which
//! it answers in `quic_handshake` (by `ip:port`, as `tls_handshake`, in
//! the spirit of OONI's HTTP/3 measurements); `ech` asks for its TLS
//! handshakes to carry the same ECH extension as the probe's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ech::Ech;
use crate::failure;
use crate::http::{self, Request};
use crate::quic::QuicVersion;
use crate::tcp;
use crate::tls::Stream;

/// The largest control response read.
const MAX_CONTROL_BODY: usize = 1024 * 1024;

/// What the probe asks the helper to measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// The URL.
    pub http_request: String,
    /// Headers for the helper's GET, name to values.
    pub http_request_headers: BTreeMap<String, Vec<String>>,
    /// The endpoints the probe resolved, `ip:port`.
    pub tcp_connect: Vec<String>,
    /// QUIC handshakes too, offering this version (an extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<QuicVersion>,
    /// TLS handshakes with this ECH extension (an extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ech: Option<Ech>,
}

/// The helper's DNS lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlDns {
    /// `dns_name_error` for NXDOMAIN, as OONI's helper writes it.
    pub failure: Option<String>,
    /// The addresses, as text.
    pub addrs: Vec<String>,
}

/// One of the helper's connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlTcpConnect {
    /// Whether it connected.
    pub status: bool,
    /// Why not.
    pub failure: Option<String>,
}

/// One of the helper's TLS handshakes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlTlsHandshake {
    /// The SNI it sent.
    pub server_name: String,
    /// Whether the handshake (with certificate checks) worked.
    pub status: bool,
    /// Why not.
    pub failure: Option<String>,
}

/// One of the helper's QUIC handshakes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlQuicHandshake {
    /// The SNI it sent.
    pub server_name: String,
    /// The version it offered.
    pub version: QuicVersion,
    /// Whether the handshake (with certificate checks) worked.
    pub status: bool,
    /// Why not.
    pub failure: Option<String>,
}

/// The helper's fetch of the URL. `-1` for the numbers when it failed, as
/// OONI's helper writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlHttpRequest {
    /// Body bytes, or -1.
    pub body_length: i64,
    /// Why the fetch failed.
    pub failure: Option<String>,
    /// The page title, empty when none.
    pub title: String,
    /// Response headers, name to (first) value.
    pub headers: BTreeMap<String, String>,
    /// Status code, or -1.
    pub status_code: i64,
}

impl Default for ControlHttpRequest {
    fn default() -> Self {
        ControlHttpRequest {
            body_length: -1,
            failure: None,
            title: String::new(),
            headers: BTreeMap::new(),
            status_code: -1,
        }
    }
}

/// What the helper answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlResponse {
    /// Its DNS lookup.
    pub dns: ControlDns,
    /// Its connects, by `ip:port`.
    pub tcp_connect: BTreeMap<String, ControlTcpConnect>,
    /// Its TLS handshakes, by `ip:port` (https URLs only).
    #[serde(default)]
    pub tls_handshake: BTreeMap<String, ControlTlsHandshake>,
    /// Its QUIC handshakes, by `ip:port` (when asked, https URLs only).
    #[serde(default)]
    pub quic_handshake: BTreeMap<String, ControlQuicHandshake>,
    /// Its fetch.
    pub http_request: ControlHttpRequest,
}

impl ControlResponse {
    /// Whether any of the helper's connects worked.
    pub fn tcp_ok(&self) -> bool {
        self.tcp_connect.values().any(|c| c.status)
    }

    /// Whether any of the helper's handshakes worked.
    pub fn tls_ok(&self) -> bool {
        self.tls_handshake.values().any(|t| t.status)
    }

    /// Whether any of the helper's QUIC handshakes worked.
    pub fn quic_ok(&self) -> bool {
        self.quic_handshake.values().any(|q| q.status)
    }

    /// Whether the helper fetched the page.
    pub fn http_ok(&self) -> bool {
        self.http_request.failure.is_none() && self.http_request.status_code > 0
    }

    /// Whether the helper's lookup failed (no addresses).
    pub fn dns_failed(&self) -> bool {
        self.dns.failure.is_some() || self.dns.addrs.is_empty()
    }
}

/// Asks the helper at `helper`; OONI's failure string when that fails (a
/// response that is not the helper's JSON is `json_parse_error`).
pub(crate) fn ask(
    helper: SocketAddr,
    req: &ControlRequest,
    timeout: Duration,
) -> Result<ControlResponse, String> {
    let body = serde_json::to_vec(req).map_err(|e| failure::unknown(&e))?;
    let (connect, sock) = tcp::connect(helper, timeout);
    let Some(sock) = sock else {
        return Err(connect.failure.unwrap_or_default());
    };
    let mut stream = Stream::Plain(sock);
    let headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    let host = helper.to_string();
    let request = Request {
        method: "POST",
        path: "/",
        host: &host,
        headers: &headers,
        body: &body,
    };
    let response = http::exchange(&mut stream, &request, timeout, MAX_CONTROL_BODY);
    if let Some(f) = response.failure {
        return Err(f);
    }
    match response.status {
        Some(200) => {}
        Some(code) => return Err(format!("unknown_failure: helper answered {code}")),
        None => return Err(failure::EOF.to_string()),
    }
    serde_json::from_slice(&response.body).map_err(|_| "json_parse_error".to_string())
}
