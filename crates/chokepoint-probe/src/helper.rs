//! The control test helper (OONI's "th"): an HTTP/1.1 server that takes
//! OONI's control request, measures the URL from its own side with the
//! same steps as the probe, and answers OONI's control response.
//!
//! Differences from OONI's helper, on purpose: it connects only to the
//! probe's endpoints on the URL's port (at most [`MAX_PROBE_ENDPOINTS`] of
//! them), so it cannot be used to scan other ports; it does not follow
//! redirects, as the probe does not; DNS failures other than NXDOMAIN are
//! passed on as the probe would write them. Every server here ends by
//! itself: `serve` returns after its lifetime, once the requests in flight
//! (each bounded by the step timeouts) are answered.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::{
    ControlDns, ControlHttpRequest, ControlQuicHandshake, ControlRequest, ControlResponse,
    ControlTcpConnect, ControlTlsHandshake,
};
use crate::deadline::Deadline;
use crate::dns::DnsResult;
use crate::failure;
use crate::http::{self, REQUEST_HEADERS};
use crate::observe::{Endpoint, Fetch, Prober};
use crate::target::Target;
use crate::tls::Stream;
use crate::ProbeConfig;

/// Requests handled at once; more are answered 503 straight away.
pub const MAX_CONNECTIONS: usize = 16;
/// Endpoints taken from the probe's request, beyond the helper's own.
pub const MAX_PROBE_ENDPOINTS: usize = 8;
/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request body read.
const MAX_REQUEST_BODY: usize = 64 * 1024;
/// How often the accept loop looks at the clock when idle.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// A bound helper, not yet serving.
pub struct Helper {
    listener: TcpListener,
    cfg: ProbeConfig,
    stop: StopHandle,
}

/// Ends a helper's [`Helper::serve`] before its lifetime is up (a test,
/// or a signal handler); the lifetime bounds it either way.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the helper to stop accepting; `serve` returns once the
    /// requests in flight are answered.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a helper did in its lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HelperStats {
    /// Control requests answered with a measurement.
    pub measured: u64,
    /// Requests refused (bad request, wrong method, too busy).
    pub refused: u64,
}

impl Helper {
    /// Binds `listen` (port 0 picks one; see [`Helper::local_addr`]).
    pub fn bind(listen: SocketAddr, cfg: &ProbeConfig) -> io::Result<Helper> {
        let listener = TcpListener::bind(listen)?;
        // Non-blocking accept lets the loop notice the end of its lifetime.
        listener.set_nonblocking(true)?;
        Ok(Helper {
            listener,
            cfg: cfg.clone(),
            stop: StopHandle::default(),
        })
    }

    /// A handle that ends [`Helper::serve`] early.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers control requests for `lifetime` (or until stopped), then
    /// returns once the requests in flight are answered.
    pub fn serve(&self, lifetime: Duration) -> HelperStats {
        let end = Instant::now() + lifetime;
        let active = AtomicUsize::new(0);
        let measured = AtomicUsize::new(0);
        let refused = AtomicUsize::new(0);
        let cfg = &self.cfg;
        std::thread::scope(|s| {
            while let Some(left) = end.checked_duration_since(Instant::now()) {
                if self.stop.stopped() {
                    break;
                }
                let sock = match self.listener.accept() {
                    Ok((sock, _)) => sock,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(ACCEPT_POLL.min(left));
                        continue;
                    }
                    // A client gone before accept, or out of descriptors:
                    // wait a moment rather than spin.
                    Err(_) => {
                        std::thread::sleep(ACCEPT_POLL.min(left));
                        continue;
                    }
                };
                if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    refused.fetch_add(1, Ordering::SeqCst);
                    let _ = answer(&sock, 503, b"{\"error\":\"busy\"}");
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let active = &active;
                let (measured, refused) = (&measured, &refused);
                s.spawn(move || {
                    match handle(sock, cfg) {
                        Outcome::Measured => measured.fetch_add(1, Ordering::SeqCst),
                        Outcome::Refused => refused.fetch_add(1, Ordering::SeqCst),
                        Outcome::Lost => 0,
                    };
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        HelperStats {
            measured: measured.into_inner() as u64,
            refused: refused.into_inner() as u64,
        }
    }
}

/// Binds `listen` and serves for `lifetime` (see [`Helper`]).
pub fn serve_helper(
    listen: SocketAddr,
    cfg: &ProbeConfig,
    lifetime: Duration,
) -> io::Result<HelperStats> {
    Ok(Helper::bind(listen, cfg)?.serve(lifetime))
}

/// How a connection went.
enum Outcome {
    /// Answered with a measurement.
    Measured,
    /// Answered with an error status (not a control request).
    Refused,
    /// No request came, or the client went away.
    Lost,
}

/// One connection: read the request, measure (with the QUIC and ECH it
/// asks for), answer.
fn handle(sock: TcpStream, cfg: &ProbeConfig) -> Outcome {
    // Accepted sockets do not inherit non-blocking mode on Linux, but say
    // so rather than rely on it.
    if sock.set_nonblocking(false).is_err() {
        return Outcome::Lost;
    }
    let mut stream = Stream::Plain(sock);
    let request = match http::read_request(
        &mut stream,
        Deadline::after(REQUEST_TIMEOUT),
        MAX_REQUEST_BODY,
    ) {
        Ok(r) => r,
        Err(_) => return Outcome::Lost,
    };
    let Stream::Plain(sock) = stream else {
        return Outcome::Lost;
    };
    if request.method != "POST" {
        let _ = answer(&sock, 405, b"{\"error\":\"POST a control request\"}");
        return Outcome::Refused;
    }
    if request.path != "/" {
        let _ = answer(&sock, 404, b"{\"error\":\"POST to /\"}");
        return Outcome::Refused;
    }
    let parsed = serde_json::from_slice::<ControlRequest>(&request.body)
        .map_err(|e| e.to_string())
        .and_then(|req| {
            Target::parse(&req.http_request)
                .map(|t| (req, t))
                .map_err(|e| e.to_string())
        });
    let (req, target) = match parsed {
        Ok(x) => x,
        Err(why) => {
            let body = serde_json::json!({ "error": why }).to_string();
            let _ = answer(&sock, 400, body.as_bytes());
            return Outcome::Refused;
        }
    };
    let cfg = ProbeConfig {
        quic: req.quic,
        ech: req.ech,
        ..cfg.clone()
    };
    let response = control_measurement(&Prober::new(&cfg), &target, &req);
    let body = serde_json::to_vec(&response).unwrap_or_default();
    match answer(&sock, 200, &body) {
        Ok(()) => Outcome::Measured,
        Err(_) => Outcome::Lost,
    }
}

/// Writes a whole response and closes.
fn answer(mut sock: &TcpStream, code: u16, body: &[u8]) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    sock.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes())?;
    sock.write_all(body)?;
    sock.flush()
}

/// The helper's own measurement of `target`.
pub(crate) fn control_measurement(
    prober: &Prober<'_>,
    target: &Target,
    req: &ControlRequest,
) -> ControlResponse {
    let dns = prober.lookup(target);
    let own: Vec<IpAddr> = match (&dns, target.ip()) {
        (_, Some(ip)) => vec![ip],
        (Some(d), None) => d.addrs.clone(),
        (None, None) => vec![],
    };
    let mut endpoints: Vec<SocketAddr> = own.iter().map(|&ip| target.endpoint(ip)).collect();
    let theirs = req
        .tcp_connect
        .iter()
        .filter_map(|e| e.parse::<SocketAddr>().ok())
        .filter(|e| e.port() == target.port)
        .take(MAX_PROBE_ENDPOINTS);
    for e in theirs {
        if !endpoints.contains(&e) {
            endpoints.push(e);
        }
    }
    let headers = forwarded_headers(req);
    let (mut connected, quic) = std::thread::scope(|s| {
        let quic = s.spawn(|| prober.quic_all(target, &endpoints));
        let connected = prober.connect_all(target, &endpoints);
        (connected, quic.join().unwrap_or_default())
    });
    let fetch = prober.fetch(target, &mut connected, &headers);
    ControlResponse {
        dns: control_dns(dns.as_ref(), &own),
        tcp_connect: connected
            .iter()
            .map(|e| {
                let c = ControlTcpConnect {
                    status: e.tcp.status,
                    failure: e.tcp.failure.clone(),
                };
                (e.tcp.addr.to_string(), c)
            })
            .collect(),
        tls_handshake: connected
            .iter()
            .filter_map(|e| e.tls.as_ref().map(|t| (e.tcp.addr, t)))
            .map(|(addr, t)| {
                let h = ControlTlsHandshake {
                    server_name: t.server_name.clone(),
                    status: t.failure.is_none(),
                    failure: t.failure.clone(),
                };
                (addr.to_string(), h)
            })
            .collect(),
        quic_handshake: quic
            .iter()
            .map(|q| {
                let h = ControlQuicHandshake {
                    server_name: q.server_name.clone(),
                    version: q.version,
                    status: q.failure.is_none(),
                    failure: q.failure.clone(),
                };
                (q.address.to_string(), h)
            })
            .collect(),
        http_request: control_http(fetch.as_ref(), dns.as_ref(), &connected),
    }
}

/// OONI's helper writes NXDOMAIN as `dns_name_error` and an empty answer
/// as no failure with no addresses.
fn control_dns(dns: Option<&DnsResult>, own: &[IpAddr]) -> ControlDns {
    let failure = dns
        .and_then(|d| d.failure.as_deref())
        .and_then(|f| match f {
            failure::DNS_NXDOMAIN => Some(failure::DNS_NAME_ERROR.to_string()),
            failure::DNS_NO_ANSWER => None,
            other => Some(other.to_string()),
        });
    ControlDns {
        failure,
        addrs: own.iter().map(IpAddr::to_string).collect(),
    }
}

/// The fetch as OONI's helper reports it (-1 and a failure when there is
/// no page), the failure being the step's or, with no endpoint to fetch
/// from, the one that stopped the connectivity steps.
fn control_http(
    fetch: Option<&Fetch>,
    dns: Option<&DnsResult>,
    connected: &[Endpoint],
) -> ControlHttpRequest {
    let Some(fetch) = fetch else {
        let failure = connected
            .iter()
            .find_map(|e| {
                e.tls
                    .as_ref()
                    .and_then(|t| t.failure.clone())
                    .or_else(|| e.tcp.failure.clone())
            })
            .or_else(|| dns.and_then(|d| d.failure.clone()))
            .unwrap_or_else(|| failure::DNS_NO_ANSWER.to_string());
        return ControlHttpRequest {
            failure: Some(failure),
            ..ControlHttpRequest::default()
        };
    };
    let r = &fetch.response;
    match (r.status, &r.failure) {
        (Some(code), None) => {
            let mut headers = std::collections::BTreeMap::new();
            for (name, value) in &r.headers {
                headers.entry(name.clone()).or_insert_with(|| value.clone());
            }
            ControlHttpRequest {
                body_length: r.body.len() as i64,
                failure: None,
                title: fetch.record.title.clone().unwrap_or_default(),
                headers,
                status_code: i64::from(code),
            }
        }
        (_, f) => ControlHttpRequest {
            failure: Some(f.clone().unwrap_or_else(|| failure::EOF.to_string())),
            ..ControlHttpRequest::default()
        },
    }
}

/// The probe's Accept, Accept-Language and User-Agent (what OONI's helper
/// passes on), the probe's defaults for those it did not send.
fn forwarded_headers(req: &ControlRequest) -> Vec<(String, String)> {
    REQUEST_HEADERS
        .iter()
        .map(|(name, default)| {
            let sent = req
                .http_request_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .and_then(|(_, values)| values.first())
                .filter(|v| !v.contains(['\r', '\n']));
            (
                name.to_string(),
                sent.map_or(default.to_string(), Clone::clone),
            )
        })
        .collect()
}
