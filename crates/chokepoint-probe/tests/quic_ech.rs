//! The QUIC step and the GREASE ECH hello end to end on loopback, with
//! the helper beside the site, as web_connectivity.rs does for the other
//! steps.
//!
//! One URL reaches different servers from each address: the probe
//! resolves `127.0.0.1` (where the "censor" is), the helper `::1` (the
//! site as it is) and `127.0.0.1`; both addresses have the site over TCP and, for QUIC,
//! a quinn server or a UDP black hole on the same port.

mod support;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use chokepoint_probe::{failure, measure, Blocking, Ech, Measurement, ProbeConfig, QuicVersion};
use support::{expect, Answer, Hello, Reply, Running, V4, V6};

const NAME: &str = "site.test";

fn home() -> Reply {
    Reply::Page(
        200,
        "Content-Type: text/html\r\nX-Site: 1\r\n",
        support::html("Welcome to the site", 5000),
    )
}

/// TCP and UDP on `[::1]:P` and `127.0.0.1:P`, one port for all four.
struct Sockets {
    tcp6: TcpListener,
    tcp4: TcpListener,
    udp6: UdpSocket,
    udp4: UdpSocket,
}

fn sockets() -> Sockets {
    for _ in 0..20 {
        let (tcp6, tcp4) = support::twin(TcpListener::bind);
        let port = tcp6.local_addr().unwrap().port();
        let (Ok(udp6), Ok(udp4)) = (UdpSocket::bind((V6, port)), UdpSocket::bind((V4, port)))
        else {
            continue;
        };
        return Sockets {
            tcp6,
            tcp4,
            udp6,
            udp4,
        };
    }
    panic!("no port free for TCP and UDP on both loopbacks");
}

/// The servers, the resolvers and the helper; dropping it stops them.
struct Lab {
    port: u16,
    ca: Vec<chokepoint_probe::CertificateDer<'static>>,
    probe_dns: Running,
    helper: Running,
    _servers: Vec<Running>,
}

impl Lab {
    /// The site on `::1`; on `127.0.0.1` what `censor` makes of the TCP
    /// and UDP sockets.
    fn new(censor: impl FnOnce(TcpListener, UdpSocket, &support::Pki) -> Vec<Running>) -> Lab {
        let pki = support::pki(&[NAME]);
        let s = sockets();
        let port = s.tcp6.local_addr().unwrap().port();
        let mut servers = vec![
            support::https_server(s.tcp6, &pki, home()),
            support::quic_server(s.udp6, &pki),
        ];
        servers.extend(censor(s.tcp4, s.udp4, &pki));
        // The helper resolves both, as it does behind a censor that leaves
        // DNS alone: the site works for it on ::1.
        let helper_dns = support::dns_server(&[(NAME, Answer::Addrs(vec![V6, V4]))], false);
        let probe_dns = support::dns_server(&[(NAME, Answer::Addrs(vec![V4]))], false);
        let ca = vec![pki.ca.clone()];
        let helper = support::helper(helper_dns.addr, &ca);
        servers.push(helper_dns);
        Lab {
            port,
            ca,
            probe_dns,
            helper,
            _servers: servers,
        }
    }

    fn config(&self) -> ProbeConfig {
        support::config(self.probe_dns.addr, Some(self.helper.addr), &self.ca)
    }

    fn measure(&self, cfg: &ProbeConfig) -> Measurement {
        measure(&format!("https://{NAME}:{}/", self.port), cfg)
    }
}

/// The site as it is on both addresses, over TCP and QUIC.
fn uncensored() -> Lab {
    Lab::new(|tcp, udp, pki| {
        vec![
            support::https_server(tcp, pki, home()),
            support::quic_server(udp, pki),
        ]
    })
}

#[test]
fn a_quic_handshake_that_works_is_false() {
    let lab = uncensored();
    for version in [QuicVersion::V1, QuicVersion::Draft29] {
        let mut cfg = lab.config();
        cfg.quic = Some(version);
        let m = lab.measure(&cfg);
        expect(&m, Some(Blocking::No), None, &[]);
        assert_eq!(m.accessible, Some(true));
        let q = m.quic.as_ref().expect("a QUIC record");
        assert_eq!(q.address, SocketAddr::new(V4, lab.port));
        assert_eq!((q.version, q.failure.as_deref()), (version, None));
        assert_eq!(q.alpn.as_deref(), Some(version.alpn()));
        assert_eq!(q.server_name, NAME);
        let control = m.control.as_ref().unwrap();
        assert!(control.quic_ok(), "{control:?}");
        assert!(control
            .quic_handshake
            .values()
            .all(|h| h.version == version));
        assert!(m.timings.quic_ms.is_some());
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["quic"]["version"], version.as_str());
    }
    // Not asked for: no QUIC record, none asked of the helper.
    let m = lab.measure(&lab.config());
    assert!(m.quic.is_none());
    assert!(m.control.unwrap().quic_handshake.is_empty());
}

#[test]
fn quic_dropped_while_tcp_works_is_http_failure() {
    // The censor drops every datagram to 127.0.0.1:P and leaves TCP be,
    // as TSPU did to QUIC in March 2022.
    let lab = Lab::new(|tcp, udp, pki| {
        vec![
            support::https_server(tcp, pki, home()),
            support::udp_black_hole(udp),
        ]
    });
    let mut cfg = lab.config();
    cfg.quic = Some(QuicVersion::V1);
    let m = lab.measure(&cfg);
    expect(
        &m,
        Some(Blocking::HttpFailure),
        Some(failure::GENERIC_TIMEOUT),
        &["quic.timeout"],
    );
    assert_eq!(m.accessible, Some(false));
    let q = m.quic.as_ref().unwrap();
    assert_eq!(q.failure.as_deref(), Some(failure::GENERIC_TIMEOUT));
    assert!(q.elapsed_ms >= 900, "gave up after {} ms", q.elapsed_ms);
    // The page still came over TCP: a browser falls back.
    assert_eq!(m.http.as_ref().unwrap().status_code, Some(200));
    assert!(m.control.as_ref().unwrap().quic_ok());
    // Without --quic the same site is not blocked.
    let m = lab.measure(&lab.config());
    expect(&m, Some(Blocking::No), None, &[]);
}

#[test]
fn an_untrusted_quic_certificate_has_its_tls_name() {
    let lab = uncensored();
    let mut cfg = lab.config();
    cfg.quic = Some(QuicVersion::V1);
    cfg.ca.clear();
    let m = lab.measure(&cfg);
    expect(
        &m,
        Some(Blocking::HttpFailure),
        Some(failure::SSL_UNKNOWN_AUTHORITY),
        &["quic.ssl_unknown_authority"],
    );
}

/// Every hello the reader saw within a moment.
fn hellos(rx: &mpsc::Receiver<Hello>) -> Vec<Hello> {
    let mut seen = Vec::new();
    while let Ok(h) = rx.recv_timeout(Duration::from_millis(200)) {
        seen.push(h);
    }
    seen
}

#[test]
fn ech_grease_puts_the_extension_in_the_hello() {
    let (tx, rx) = mpsc::channel();
    let lab = Lab::new(move |tcp, _, pki| vec![support::hello_reader(tcp, pki, home(), tx, false)]);
    let mut cfg = lab.config();
    cfg.ech = Some(Ech::Grease);
    let m = lab.measure(&cfg);
    expect(&m, Some(Blocking::No), None, &[]);
    let tls = m.tls.as_ref().unwrap();
    assert_eq!(tls.ech, Some(Ech::Grease));
    assert_eq!(tls.version.as_deref(), Some("TLSv1.3"));
    let seen = hellos(&rx);
    assert!(!seen.is_empty());
    for h in &seen {
        // The engine's parser finds the extension and the real SNI.
        assert!(h.ech, "{h:?}");
        assert_eq!(h.sni.as_deref(), Some(NAME));
    }
    // Without --ech there is none.
    let m = lab.measure(&lab.config());
    assert_eq!(m.tls.unwrap().ech, None);
    let seen = hellos(&rx);
    assert!(!seen.is_empty() && seen.iter().all(|h| !h.ech), "{seen:?}");
}

#[test]
fn a_censor_resetting_ech_hellos_is_http_failure_only_with_ech() {
    let (tx, rx) = mpsc::channel();
    let lab = Lab::new(move |tcp, _, pki| vec![support::hello_reader(tcp, pki, home(), tx, true)]);
    let mut cfg = lab.config();
    cfg.ech = Some(Ech::Grease);
    let m = lab.measure(&cfg);
    expect(
        &m,
        Some(Blocking::HttpFailure),
        Some(failure::CONNECTION_RESET),
        &["tls.connection_reset"],
    );
    assert_eq!(m.tls.as_ref().unwrap().ech, Some(Ech::Grease));
    assert!(hellos(&rx).iter().any(|h| h.ech));
    // The same name without ECH passes the censor.
    let m = lab.measure(&lab.config());
    expect(&m, Some(Blocking::No), None, &[]);
}
