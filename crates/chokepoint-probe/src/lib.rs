//! # chokepoint-probe
//!
//! A measurement client in the style of OONI's Web Connectivity, and its
//! control test helper: what a subscriber's probe would report about a
//! site behind a censor, in OONI's own vocabulary.
//!
//! For each input (a URL, or a bare name meaning `https://name/`)
//! [`measure`] runs, from the probe's side:
//!
//! 1. DNS: A and AAAA to one resolver, over UDP (TCP when truncated)
//!    ([`dns`]);
//! 2. the control request to the helper, in the background, with the
//!    addresses found ([`control`]);
//! 3. a TCP connect to every address, at once ([`tcp`]), and on https a
//!    TLS handshake on each, SNI = the host, verified against
//!    [`ProbeConfig::ca`] ([`tls`]);
//! 4. one HTTP/1.1 GET over the first endpoint that worked, the response
//!    read to the end under one deadline ([`http`]);
//! 5. with [`ProbeConfig::quic`] and an https URL, a QUIC handshake (ALPN
//!    `h3`) to every address at once, beside the TCP steps ([`quic`]);
//! 6. the comparison with the control into `blocking`, `accessible`,
//!    `failure` and analysis keys ([`analysis`]).
//!
//! With [`ProbeConfig::ech`] the TLS ClientHello carries a GREASE ECH
//! extension, as a browser's does ([`ech`]).
//!
//! The helper ([`helper`], OONI's "th") runs the same steps from the
//! uncensored side when asked (QUIC and ECH too, when the request says
//! so) and answers OONI's control response.
//!
//! Design: std threads and blocking sockets with deadlines; the one async
//! part is quinn's, on a current-thread tokio runtime made for each QUIC
//! handshake; every step has a timeout ([`Timeouts`]), every loop a bound,
//! every server a lifetime. Crates: hickory-proto builds and parses DNS
//! messages, rustls (with ring) does TLS, quinn QUIC, httparse reads HTTP heads,
//! serde_json writes the measurement. Failures are OONI's strings
//! ([`failure`]).
//!
//! Why no resolver or HTTP client crate on top (hickory-resolver, ureq,
//! reqwest): Web Connectivity reports *which step* failed and *how*
//! (`dns_nxdomain_error` from the resolve, `connection_reset` from the TLS
//! handshake, `generic_timeout_error` from the body read), and OONI's own
//! probe gets them by doing each step itself over instrumented sockets
//! (probe-cli's netxlite). A client crate folds resolve, connect, handshake
//! and read into one call and one error type, retries and follows
//! redirects on its own, and would have to be unpicked to learn the step;
//! so the probe does the steps over std sockets with a deadline each, and
//! leaves to crates only what has no censorship-visible state: DNS message
//! encoding, TLS, QUIC and HTTP head parsing.
//!
//! Deliberate differences from OONI are listed in docs/USAGE.md
//! ("chokepoint probe"); the main one: redirects are not followed, so a
//! censor's 302 is a status code mismatch (`http-diff`).

#![warn(missing_docs)]

pub mod analysis;
mod bogon;
pub mod control;
mod deadline;
pub mod dns;
pub mod ech;
pub mod failure;
pub mod helper;
pub mod http;
mod observe;
pub mod quic;
pub mod target;
pub mod tcp;
pub mod tls;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub use rustls::pki_types::CertificateDer;
use serde::Serialize;

pub use crate::analysis::{Blocking, Comparison, DnsConsistency};
pub use crate::bogon::is_bogon;
pub use crate::control::{ControlRequest, ControlResponse};
pub use crate::dns::DnsResult;
pub use crate::ech::Ech;
pub use crate::helper::{serve_helper, Helper, HelperStats, StopHandle};
pub use crate::http::HttpResult;
pub use crate::observe::MAX_ENDPOINTS;
pub use crate::quic::{QuicResult, QuicVersion};
pub use crate::target::{InputError, Scheme, Target};
pub use crate::tcp::TcpConnect;
pub use crate::tls::TlsResult;

use crate::analysis::Evidence;
use crate::deadline::millis_since;
use crate::observe::{reported_quic, reported_tls, Prober};

/// How long each step may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// One DNS try (default 2 s).
    pub dns_per_try: Duration,
    /// DNS tries per query (default 2).
    pub dns_tries: u32,
    /// One TCP connect (default 5 s).
    pub connect: Duration,
    /// One TLS handshake (default 5 s).
    pub tls: Duration,
    /// One QUIC handshake (default 5 s).
    pub quic: Duration,
    /// The HTTP request and the whole response (default 10 s).
    pub http: Duration,
    /// The whole control request, the helper's measurement included
    /// (default 30 s: the helper's own steps take up to 24 s).
    pub control: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            dns_per_try: Duration::from_secs(2),
            dns_tries: 2,
            connect: Duration::from_secs(5),
            tls: Duration::from_secs(5),
            quic: Duration::from_secs(5),
            http: Duration::from_secs(10),
            control: Duration::from_secs(30),
        }
    }
}

/// The default body limit, 8 MiB.
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;

/// Where and how to measure.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The resolver asked for A and AAAA.
    pub resolver: SocketAddr,
    /// The control test helper; without one, `blocking` is null except
    /// for https pages fetched with a verified certificate.
    pub helper: Option<SocketAddr>,
    /// Trust anchors for TLS. Empty means none: every certificate fails
    /// as `ssl_unknown_authority` (the handshake still runs, so blocking
    /// of the ClientHello is still seen). There are no built-in roots; for
    /// public sites pass the system's bundle.
    pub ca: Vec<CertificateDer<'static>>,
    /// Step timeouts.
    pub timeouts: Timeouts,
    /// Body bytes kept; reading stops there (`body_truncated`).
    pub max_body: usize,
    /// Also measure https URLs over QUIC, offering this version; the
    /// verdict is then about QUIC (see [`analysis`]).
    pub quic: Option<QuicVersion>,
    /// The ECH extension the TLS ClientHello carries.
    pub ech: Option<Ech>,
}

impl ProbeConfig {
    /// Default timeouts and body limit, no helper, no trust anchors.
    pub fn new(resolver: SocketAddr) -> ProbeConfig {
        ProbeConfig {
            resolver,
            helper: None,
            ca: Vec::new(),
            timeouts: Timeouts::default(),
            max_body: DEFAULT_MAX_BODY,
            quic: None,
            ech: None,
        }
    }
}

/// Certificates from PEM text (other PEM sections are skipped).
pub fn load_ca_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// How long the parts took, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timings {
    /// The DNS step.
    pub dns_ms: Option<u64>,
    /// Connects and handshakes, all endpoints at once.
    pub connectivity_ms: Option<u64>,
    /// The HTTP step.
    pub http_ms: Option<u64>,
    /// The QUIC handshakes, all endpoints at once (null when not asked).
    pub quic_ms: Option<u64>,
    /// The control request, from sending to the answer.
    pub control_ms: Option<u64>,
    /// The whole measurement.
    pub total_ms: u64,
}

/// One measurement, as `chokepoint probe --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    /// The input as given.
    pub input: String,
    /// The URL measured (null when the input is not one).
    pub url: Option<String>,
    /// `"dns"`, `"tcp_ip"`, `"http-failure"`, `"http-diff"`, `false`, or
    /// null when nothing can be said.
    pub blocking: Option<Blocking>,
    /// Whether the page was reached as the control saw it; null when
    /// nothing can be said.
    pub accessible: Option<bool>,
    /// The failure of the step that decided (OONI's string).
    pub failure: Option<String>,
    /// Pipeline v5-style keys: what went wrong, and where.
    pub analysis: Vec<String>,
    /// The DNS step (null when the URL names an address).
    pub dns: Option<DnsResult>,
    /// One entry per endpoint.
    pub tcp_connect: Vec<TcpConnect>,
    /// The handshake on the endpoint fetched from, else the first.
    pub tls: Option<TlsResult>,
    /// The HTTP step (null when no endpoint was usable).
    pub http: Option<HttpResult>,
    /// The QUIC handshake that worked, else the first (null when QUIC was
    /// not asked for, or the URL is not https).
    pub quic: Option<QuicResult>,
    /// The helper's answer.
    pub control: Option<ControlResponse>,
    /// Why there is no helper answer (null when there is, or no helper).
    pub control_failure: Option<String>,
    /// OONI's comparison keys.
    pub comparison: Comparison,
    /// Step timings.
    pub timings: Timings,
}

/// Measures one input (see the crate docs for the steps).
pub fn measure(input: &str, cfg: &ProbeConfig) -> Measurement {
    let start = Instant::now();
    let target = match Target::parse(input) {
        Ok(t) => t,
        Err(e) => return invalid(input, &e, start),
    };
    let prober = Prober::new(cfg);
    let mut timings = Timings::default();

    let dns_start = Instant::now();
    let dns = prober.lookup(&target);
    if dns.is_some() {
        timings.dns_ms = Some(millis_since(dns_start));
    }
    let addrs: Vec<IpAddr> = match (target.ip(), &dns) {
        (Some(ip), _) => vec![ip],
        (None, Some(d)) => d.addrs.clone(),
        (None, None) => vec![],
    };
    let endpoints: Vec<SocketAddr> = addrs.iter().map(|&ip| target.endpoint(ip)).collect();
    let request = control_request(&target, &endpoints, cfg);

    let (mut connected, fetch, control, quic) = std::thread::scope(|s| {
        let control = cfg.helper.map(|helper| {
            let request = &request;
            s.spawn(move || {
                let t = Instant::now();
                let answer = control::ask(helper, request, cfg.timeouts.control);
                (answer, millis_since(t))
            })
        });
        let quic = s.spawn(|| {
            let t = Instant::now();
            let q = prober.quic_all(&target, &endpoints);
            (q, millis_since(t))
        });
        let t = Instant::now();
        let mut connected = prober.connect_all(&target, &endpoints);
        timings.connectivity_ms = (!endpoints.is_empty()).then(|| millis_since(t));
        let fetch = prober.fetch(&target, &mut connected, &http::default_headers());
        let control = control.map(|h| {
            h.join()
                .unwrap_or_else(|_| (Err(failure::unknown(&"control thread panicked")), 0))
        });
        let (quic, quic_ms) = quic.join().unwrap_or_default();
        timings.quic_ms = (!quic.is_empty()).then_some(quic_ms);
        (connected, fetch, control, quic)
    });

    let (control, control_failure) = match control {
        Some((Ok(c), ms)) => {
            timings.control_ms = Some(ms);
            (Some(c), None)
        }
        Some((Err(f), ms)) => {
            timings.control_ms = Some(ms);
            (None, Some(f))
        }
        None => (None, None),
    };
    timings.http_ms = fetch.as_ref().map(|f| f.record.elapsed_ms);
    let tcp_connect: Vec<TcpConnect> = connected.iter().map(|e| e.tcp.clone()).collect();
    let handshakes: Vec<TlsResult> = connected.iter().filter_map(|e| e.tls.clone()).collect();
    let tls = reported_tls(&connected, fetch.as_ref().map(|f| f.endpoint));
    // Close the connections before the analysis: the fetch is done.
    connected.clear();
    let http = fetch.map(|f| f.record);

    let verdict = analysis::analyze(
        &Evidence {
            target: &target,
            dns: dns.as_ref(),
            tcp: &tcp_connect,
            tls: &handshakes,
            http: http.as_ref(),
            quic: (cfg.quic.is_some() && target.scheme == Scheme::Https).then_some(&quic[..]),
        },
        control.as_ref(),
    );
    timings.total_ms = millis_since(start);
    Measurement {
        input: input.to_string(),
        url: Some(target.to_string()),
        blocking: verdict.blocking,
        accessible: verdict.accessible,
        failure: verdict.failure,
        analysis: verdict.analysis,
        dns,
        tcp_connect,
        tls,
        http,
        quic: reported_quic(&quic),
        control,
        control_failure,
        comparison: verdict.comparison,
        timings,
    }
}

/// OONI's control request for `target` and the probe's endpoints, asking
/// for QUIC and ECH as the probe measures them.
fn control_request(target: &Target, endpoints: &[SocketAddr], cfg: &ProbeConfig) -> ControlRequest {
    let headers: BTreeMap<String, Vec<String>> = http::REQUEST_HEADERS
        .iter()
        .map(|(n, v)| (n.to_string(), vec![v.to_string()]))
        .collect();
    ControlRequest {
        http_request: target.to_string(),
        http_request_headers: headers,
        tcp_connect: endpoints.iter().map(SocketAddr::to_string).collect(),
        quic: cfg.quic,
        ech: cfg.ech,
    }
}

/// The measurement of an input that is not a URL: nothing measured.
fn invalid(input: &str, e: &InputError, start: Instant) -> Measurement {
    Measurement {
        input: input.to_string(),
        url: None,
        blocking: None,
        accessible: None,
        failure: Some(failure::unknown(&e.why)),
        analysis: Vec::new(),
        dns: None,
        tcp_connect: Vec::new(),
        tls: None,
        http: None,
        quic: None,
        control: None,
        control_failure: None,
        comparison: Comparison::default(),
        timings: Timings {
            total_ms: millis_since(start),
            ..Timings::default()
        },
    }
}
