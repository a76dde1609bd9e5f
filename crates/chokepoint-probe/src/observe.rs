//! The steps in order, shared by the probe and the helper: look up,
//! connect (and shake hands) to every endpoint at once, fetch over the
//! first endpoint that worked; and when asked, QUIC handshakes to every
//! endpoint at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rustls::ClientConfig;

use crate::deadline::millis_since;
use crate::dns::{self, DnsResult, DnsTimeouts};
use crate::http::{self, HttpResult, Request, Response};
use crate::quic::{self, QuicResult};
use crate::target::{Scheme, Target};
use crate::tcp::{self, TcpConnect};
use crate::tls::{self, Stream, TlsResult};
use crate::ProbeConfig;

/// Endpoints connected to per measurement; further addresses are left out
/// (a name with dozens of addresses would otherwise mean dozens of
/// threads and handshakes).
pub const MAX_ENDPOINTS: usize = 8;

/// One endpoint after the connectivity steps.
pub(crate) struct Endpoint {
    pub tcp: TcpConnect,
    pub tls: Option<TlsResult>,
    /// Ready for the request: connected, and for https shaken hands.
    pub stream: Option<Stream>,
}

/// The fetch, with the response as read.
pub(crate) struct Fetch {
    pub record: HttpResult,
    pub response: Response,
    /// Index of the endpoint used.
    pub endpoint: usize,
}

/// Runs the steps with one configuration.
pub(crate) struct Prober<'c> {
    pub cfg: &'c ProbeConfig,
    tls: Result<Arc<ClientConfig>, String>,
    /// The QUIC client, when QUIC was asked for.
    quic: Option<Result<quinn::ClientConfig, String>>,
}

impl<'c> Prober<'c> {
    pub fn new(cfg: &'c ProbeConfig) -> Prober<'c> {
        Prober {
            cfg,
            tls: tls::client_config(&cfg.ca, cfg.ech),
            quic: cfg.quic.map(|v| quic::client_config(&cfg.ca, v)),
        }
    }

    /// The DNS step; `None` when the URL names an address.
    pub fn lookup(&self, target: &Target) -> Option<DnsResult> {
        if target.ip().is_some() {
            return None;
        }
        let t = DnsTimeouts {
            per_try: self.cfg.timeouts.dns_per_try,
            tries: self.cfg.timeouts.dns_tries,
        };
        Some(dns::lookup(&target.host, self.cfg.resolver, t))
    }

    /// Connects (and for https shakes hands) to each endpoint at once, one
    /// thread each, at most [`MAX_ENDPOINTS`]; results in input order.
    pub fn connect_all(&self, target: &Target, endpoints: &[SocketAddr]) -> Vec<Endpoint> {
        std::thread::scope(|s| {
            let workers: Vec<_> = endpoints
                .iter()
                .take(MAX_ENDPOINTS)
                .map(|&addr| s.spawn(move || self.connect_one(target, addr)))
                .collect();
            workers
                .into_iter()
                .zip(endpoints)
                .map(|(w, &addr)| {
                    w.join().unwrap_or_else(|_| Endpoint {
                        tcp: TcpConnect {
                            addr,
                            status: false,
                            failure: Some(crate::failure::unknown(&"connect thread panicked")),
                            elapsed_ms: 0,
                        },
                        tls: None,
                        stream: None,
                    })
                })
                .collect()
        })
    }

    fn connect_one(&self, target: &Target, addr: SocketAddr) -> Endpoint {
        let (tcp, sock) = tcp::connect(addr, self.cfg.timeouts.connect);
        let Some(sock) = sock else {
            return Endpoint {
                tcp,
                tls: None,
                stream: None,
            };
        };
        if target.scheme == Scheme::Http {
            return Endpoint {
                tcp,
                tls: None,
                stream: Some(Stream::Plain(sock)),
            };
        }
        let (record, stream) = match &self.tls {
            Ok(config) => tls::handshake(
                sock,
                &target.host,
                config,
                self.cfg.ech,
                self.cfg.timeouts.tls,
            ),
            Err(e) => {
                let record = TlsResult {
                    address: addr,
                    server_name: target.host.clone(),
                    failure: Some(crate::failure::unknown(e)),
                    version: None,
                    ech: self.cfg.ech,
                    elapsed_ms: 0,
                };
                (record, None)
            }
        };
        Endpoint {
            tcp,
            tls: Some(record),
            stream,
        }
    }

    /// QUIC handshakes to each endpoint at once (at most
    /// [`MAX_ENDPOINTS`]), for https URLs when QUIC was asked for; results
    /// in input order, empty otherwise.
    pub fn quic_all(&self, target: &Target, endpoints: &[SocketAddr]) -> Vec<QuicResult> {
        let (Some(version), Some(config)) = (self.cfg.quic, &self.quic) else {
            return Vec::new();
        };
        if target.scheme != Scheme::Https {
            return Vec::new();
        }
        let timeout = self.cfg.timeouts.quic;
        std::thread::scope(|s| {
            let workers: Vec<_> = endpoints
                .iter()
                .take(MAX_ENDPOINTS)
                .map(|&addr| {
                    let host = target.host.as_str();
                    let w = s.spawn(move || quic::handshake(addr, host, version, config, timeout));
                    (addr, w)
                })
                .collect();
            workers
                .into_iter()
                .map(|(addr, w)| {
                    w.join().unwrap_or_else(|_| QuicResult {
                        address: addr,
                        server_name: target.host.clone(),
                        version,
                        alpn: None,
                        failure: Some(crate::failure::unknown(&"QUIC thread panicked")),
                        elapsed_ms: 0,
                    })
                })
                .collect()
        })
    }

    /// The HTTP step over the first usable endpoint; `None` when there is
    /// none.
    pub fn fetch(
        &self,
        target: &Target,
        endpoints: &mut [Endpoint],
        headers: &[(String, String)],
    ) -> Option<Fetch> {
        let (index, stream) = endpoints
            .iter_mut()
            .enumerate()
            .find_map(|(i, e)| e.stream.as_mut().map(|s| (i, s)))?;
        let host = target.host_header();
        let request = Request {
            method: "GET",
            path: &target.path,
            host: &host,
            headers,
            body: &[],
        };
        let start = Instant::now();
        let response = http::exchange(stream, &request, self.cfg.timeouts.http, self.cfg.max_body);
        Some(Fetch {
            record: response.record(millis_since(start)),
            response,
            endpoint: index,
        })
    }
}

/// The handshake to report: the one on the endpoint the fetch used, else
/// the first that failed.
pub(crate) fn reported_tls(endpoints: &[Endpoint], used: Option<usize>) -> Option<TlsResult> {
    used.and_then(|i| endpoints.get(i))
        .and_then(|e| e.tls.clone())
        .or_else(|| endpoints.iter().find_map(|e| e.tls.clone()))
}

/// The QUIC handshake to report: the first that worked, else the first.
pub(crate) fn reported_quic(handshakes: &[QuicResult]) -> Option<QuicResult> {
    handshakes
        .iter()
        .find(|q| q.failure.is_none())
        .or_else(|| handshakes.first())
        .cloned()
}
