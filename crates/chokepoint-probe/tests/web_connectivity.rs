//! Web Connectivity end to end on loopback: a site, a censor's action on
//! the probe's path, the helper beside the site, and the verdict OONI's
//! QA expects for that action.
//!
//! The probe and the helper reach different servers for the same URL: the
//! site listens on `[::1]:P`, the censor's stand-in on `127.0.0.1:P`, and
//! the two resolvers share an address so the DNS is consistent, as it is
//! behind a censor that does not touch DNS. Where the censor acts on the
//! connection (a dropped SYN, a reset handshake) the probe resolves only
//! `127.0.0.1` and the helper both, `::1` working for it. Where the censor
//! acts on HTTP (a 302, a freeze, a throttle) the probe resolves
//! `127.0.0.1` then `::1` and fetches from the first, while the helper
//! resolves `::1` only and fetches from it.

mod support;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::Duration;

use chokepoint_probe::{failure, measure, Blocking, Measurement, ProbeConfig};
use support::{expect, Answer, Reply, Running, V4, V6};

const NAME: &str = "site.test";
const SITE_HEADERS: &str = "Content-Type: text/html\r\nX-Site: 1\r\n";

fn home() -> Reply {
    Reply::Page(
        200,
        SITE_HEADERS,
        support::html("Welcome to the site", 5000),
    )
}

/// What each side's resolver says, and on which scheme.
struct Site {
    https: bool,
    probe_sees: Answer,
    helper_sees: Vec<IpAddr>,
}

/// Everything one row needs; dropping it stops every server.
struct Lab {
    port: u16,
    https: bool,
    ca: Vec<chokepoint_probe::CertificateDer<'static>>,
    probe_dns: Running,
    helper: Running,
    _servers: Vec<Running>,
}

/// The site on `[::1]:P`, and whatever `censor` puts on `127.0.0.1:P`
/// (nothing when it returns `None`: the port is then closed).
fn lab(site: Site, censor: impl Fn(TcpListener, &support::Pki) -> Option<Running>) -> Lab {
    let pki = support::pki(&[NAME]);
    let (v6, v4) = support::twin(TcpListener::bind);
    let port = v6.local_addr().unwrap().port();
    let mut servers = vec![web_server(site.https, v6, &pki, home())];
    servers.extend(censor(v4, &pki));
    let helper_dns = support::dns_server(&[(NAME, Answer::Addrs(site.helper_sees))], false);
    let probe_dns = support::dns_server(&[(NAME, site.probe_sees)], false);
    let ca = vec![pki.ca.clone()];
    let helper = support::helper(helper_dns.addr, &ca);
    servers.push(helper_dns);
    Lab {
        port,
        https: site.https,
        ca,
        probe_dns,
        helper,
        _servers: servers,
    }
}

impl Lab {
    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{NAME}:{}/", self.port)
    }

    fn config(&self) -> ProbeConfig {
        support::config(self.probe_dns.addr, Some(self.helper.addr), &self.ca)
    }

    fn measure(&self) -> Measurement {
        measure(&self.url(), &self.config())
    }
}

/// A censor on the connection: the probe resolves `127.0.0.1` only, the
/// helper `::1` (which works) and `127.0.0.1`.
fn connection_censor(
    https: bool,
    censor: impl Fn(TcpListener, &support::Pki) -> Option<Running>,
) -> Lab {
    let site = Site {
        https,
        probe_sees: Answer::Addrs(vec![V4]),
        helper_sees: vec![V6, V4],
    };
    lab(site, censor)
}

/// A censor on HTTP: the probe fetches from `127.0.0.1`, the helper from
/// `::1`; both resolve `::1`.
fn http_censor(https: bool, censor: impl Fn(TcpListener, &support::Pki) -> Option<Running>) -> Lab {
    let site = Site {
        https,
        probe_sees: Answer::Addrs(vec![V4, V6]),
        helper_sees: vec![V6],
    };
    lab(site, censor)
}

/// The site's server, over TLS or not.
fn web_server(https: bool, listener: TcpListener, pki: &support::Pki, reply: Reply) -> Running {
    if https {
        support::https_server(listener, pki, reply)
    } else {
        support::http_server(listener, reply)
    }
}

/// No censor: the same site on both addresses.
fn uncensored(https: bool) -> Lab {
    http_censor(https, move |v4, pki| {
        Some(web_server(https, v4, pki, home()))
    })
}

/// What OONI expects of a throttle or a freeze.
#[track_caller]
fn expect_http_timeout(m: &Measurement) {
    let (blocking, timeout) = (Some(Blocking::HttpFailure), Some(failure::GENERIC_TIMEOUT));
    expect(m, blocking, timeout, &["http.timeout"]);
}

#[test]
fn allowed_is_false_over_https_and_http() {
    for https in [true, false] {
        let lab = uncensored(https);
        let m = lab.measure();
        expect(&m, Some(Blocking::No), None, &[]);
        assert_eq!(m.accessible, Some(true));
        let http = m.http.as_ref().unwrap();
        assert_eq!(
            (http.status_code, http.body_length),
            (Some(200), Some(5000))
        );
        assert_eq!(http.title.as_deref(), Some("Welcome to the site"));
        let control = m.control.as_ref().expect("the helper answered");
        assert_eq!(control.http_request.status_code, 200);
        assert_eq!(control.dns.addrs, vec!["::1"]);
        if https {
            let tls = m.tls.as_ref().unwrap();
            assert_eq!(
                (tls.server_name.as_str(), tls.failure.as_deref()),
                (NAME, None)
            );
            assert!(tls.version.is_some());
            assert!(control.tls_ok());
        }
        // The JSON carries the keys the lab reads.
        let v = serde_json::to_value(&m).unwrap();
        for key in [
            "input",
            "blocking",
            "accessible",
            "failure",
            "analysis",
            "dns",
        ] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        assert_eq!(v["blocking"], serde_json::json!(false));
    }
}

#[test]
fn drop_at_the_syn_is_tcp_ip() {
    let lab = connection_censor(true, |v4, _| {
        let addr = v4.local_addr().unwrap();
        drop(v4);
        Some(support::black_hole(addr).unwrap())
    });
    let m = lab.measure();
    expect(
        &m,
        Some(Blocking::TcpIp),
        Some(failure::GENERIC_TIMEOUT),
        &["tcp.timeout"],
    );
    assert_eq!(m.accessible, Some(false));
}

#[test]
fn reset_on_the_client_hello_is_http_failure() {
    let lab = connection_censor(true, |v4, _| Some(support::resetter(v4)));
    let m = lab.measure();
    expect(
        &m,
        Some(Blocking::HttpFailure),
        Some(failure::CONNECTION_RESET),
        &["tls.connection_reset"],
    );
    assert!(m.tcp_connect.iter().all(|c| c.status));
}

#[test]
fn nxdomain_is_dns() {
    let site = Site {
        https: true,
        probe_sees: Answer::NxDomain,
        helper_sees: vec![V6],
    };
    let m = lab(site, |_, _| None).measure();
    expect(
        &m,
        Some(Blocking::Dns),
        Some(failure::DNS_NXDOMAIN),
        &["dns.nxdomain"],
    );
    assert_eq!(m.dns.as_ref().unwrap().rcode.as_deref(), Some("NXDOMAIN"));
    assert!(m.tcp_connect.is_empty());
}

#[test]
fn sinkhole_answer_is_dns() {
    // The probe is sent to 127.0.0.1, where nothing listens; the helper
    // resolves ::1 only. Both are loopback bogons, so no dns.bogon.
    let site = Site {
        https: true,
        probe_sees: Answer::Addrs(vec![V4]),
        helper_sees: vec![V6],
    };
    let m = lab(site, |_, _| None).measure();
    expect(
        &m,
        Some(Blocking::Dns),
        Some(failure::CONNECTION_REFUSED),
        &["dns.inconsistent", "tcp.connection_refused"],
    );
}

#[test]
fn a_302_stub_is_http_diff() {
    let stub = Reply::Page(302, "Location: http://block.example/\r\n", vec![]);
    let lab = http_censor(false, move |v4, _| {
        Some(support::http_server(v4, stub.clone()))
    });
    let m = lab.measure();
    expect(
        &m,
        Some(Blocking::HttpDiff),
        None,
        &["http.inconsistent.status_code_mismatch"],
    );
    assert_eq!(m.http.as_ref().unwrap().status_code, Some(302));
    assert_eq!(m.comparison.status_code_match, Some(false));
}

#[test]
fn freeze_mid_body_is_an_http_timeout() {
    let freeze = Reply::Freeze {
        total: 100_000,
        sent: 1000,
    };
    let lab = http_censor(true, move |v4, pki| {
        Some(support::https_server(v4, pki, freeze.clone()))
    });
    let m = lab.measure();
    expect_http_timeout(&m);
    let http = m.http.as_ref().unwrap();
    assert_eq!(
        (http.status_code, http.body_length),
        (Some(200), Some(1000))
    );
}

#[test]
fn throttle_is_an_http_timeout() {
    let slow = Reply::Trickle {
        total: 100_000,
        chunk: 1000,
        every: Duration::from_millis(100),
    };
    let lab = http_censor(false, move |v4, _| {
        Some(support::http_server(v4, slow.clone()))
    });
    let m = lab.measure();
    expect_http_timeout(&m);
    assert!(m.http.as_ref().unwrap().body_length.unwrap() < 100_000);
}

#[test]
fn a_record_trickled_in_pieces_is_held_to_the_deadline() {
    // 12 kB in 20-byte pieces every 20 ms: about 12 s for the record the
    // response starts with, against a 1.5 s limit for the HTTP step.
    let lab = http_censor(true, |v4, pki| Some(support::https_dribbler(v4, pki)));
    let m = lab.measure();
    expect_http_timeout(&m);
    let http = m.http.as_ref().unwrap();
    assert_eq!(http.status_code, None, "no record was whole");
    assert!(http.elapsed_ms < 2500, "took {} ms", http.elapsed_ms);
}

#[test]
fn untrusted_certificate_is_http_failure() {
    let lab = uncensored(true);
    let mut cfg = lab.config();
    // No trust anchors: the probe refuses every certificate.
    cfg.ca.clear();
    let m = measure(&lab.url(), &cfg);
    expect(
        &m,
        Some(Blocking::HttpFailure),
        Some(failure::SSL_UNKNOWN_AUTHORITY),
        &["tls.ssl_unknown_authority"],
    );
}

#[test]
fn without_a_control_only_https_success_is_judged() {
    for https in [true, false] {
        let lab = uncensored(https);
        let mut cfg = lab.config();
        cfg.helper = None;
        let m = measure(&lab.url(), &cfg);
        let want = https.then_some(Blocking::No);
        expect(&m, want, None, &[]);
        assert!(m.control.is_none() && m.control_failure.is_none());
    }
}

#[test]
fn an_unreachable_helper_leaves_blocking_null() {
    let lab = uncensored(false);
    let closed = {
        let l = TcpListener::bind((V4, 0)).unwrap();
        l.local_addr().unwrap()
    };
    let mut cfg = lab.config();
    cfg.helper = Some(closed);
    let m = measure(&lab.url(), &cfg);
    expect(&m, None, None, &[]);
    assert_eq!(
        m.control_failure.as_deref(),
        Some(failure::CONNECTION_REFUSED)
    );
}

#[test]
fn truncated_udp_answers_are_asked_again_over_tcp() {
    let (_, v4) = support::twin(TcpListener::bind);
    let port = v4.local_addr().unwrap().port();
    let _site = support::http_server(v4, home());
    let dns = support::dns_server(&[(NAME, Answer::Addrs(vec![V4]))], true);
    let cfg = support::config(dns.addr, None, &[]);
    let m = measure(&format!("http://{NAME}:{port}/"), &cfg);
    let d = m.dns.as_ref().unwrap();
    assert_eq!(
        (d.failure.as_deref(), d.addrs.as_slice()),
        (None, &[V4][..])
    );
    assert_eq!(m.http.as_ref().unwrap().status_code, Some(200));
}

#[test]
fn an_address_url_skips_dns() {
    let l = TcpListener::bind((V4, 0)).unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    let _site = support::http_server(l, home());
    let silent = support::dns_server(&[], false);
    let m = measure(
        &format!("http://{addr}/x"),
        &support::config(silent.addr, None, &[]),
    );
    assert!(m.dns.is_none());
    assert_eq!(m.tcp_connect.len(), 1);
    assert_eq!(m.url.as_deref(), Some(format!("http://{addr}/x").as_str()));
    assert_eq!(m.http.as_ref().unwrap().status_code, Some(200));
}

#[test]
fn a_bad_input_is_no_measurement() {
    let m = measure("ftp://x.test/", &ProbeConfig::new(SocketAddr::new(V4, 9)));
    assert!(m.url.is_none() && m.blocking.is_none());
    assert!(m.failure.unwrap().starts_with("unknown_failure"));
}
