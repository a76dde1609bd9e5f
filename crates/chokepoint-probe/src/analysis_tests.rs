//! The analysis table, row by row, from synthetic observations.

use super::*;
use crate::control::{
    ControlDns, ControlHttpRequest, ControlQuicHandshake, ControlTcpConnect, ControlTlsHandshake,
};
use crate::failure::*;
use crate::quic::QuicVersion;

/// What the probe saw, owned, for building [`Evidence`].
struct Probe {
    target: Target,
    dns: Option<DnsResult>,
    tcp: Vec<TcpConnect>,
    tls: Vec<TlsResult>,
    http: Option<HttpResult>,
    /// QUIC handshakes, when QUIC was asked for.
    quic: Option<Vec<QuicResult>>,
}

impl Probe {
    fn verdict(&self, control: Option<&ControlResponse>) -> Verdict {
        let ev = Evidence {
            target: &self.target,
            dns: self.dns.as_ref(),
            tcp: &self.tcp,
            tls: &self.tls,
            http: self.http.as_ref(),
            quic: self.quic.as_deref(),
        };
        analyze(&ev, control)
    }

    /// The verdict against a control that saw the site whole.
    fn against_the_site(&self) -> Verdict {
        self.verdict(Some(&control(&[SITE], Some(HOME))))
    }
}

/// A page: status, body length, title, header names.
#[derive(Clone, Copy)]
struct Page {
    status: u16,
    len: u64,
    title: &'static str,
    headers: &'static [&'static str],
}

const HOME: Page = Page {
    status: 200,
    len: 5000,
    title: "Welcome to Example Domain",
    headers: &["Content-Type", "X-Site"],
};
const STUB_302: Page = Page {
    status: 302,
    len: 0,
    title: "",
    headers: &["Location"],
};

fn page(p: Page, failure: Option<&str>) -> HttpResult {
    HttpResult {
        status_code: Some(p.status),
        body_length: Some(p.len),
        body_truncated: false,
        title: (!p.title.is_empty()).then(|| p.title.to_string()),
        headers: p.headers.iter().map(|h| h.to_string()).collect(),
        failure: failure.map(str::to_string),
        elapsed_ms: 1,
    }
}

fn http_failed(f: &str) -> HttpResult {
    HttpResult {
        status_code: None,
        body_length: None,
        body_truncated: false,
        title: None,
        headers: vec![],
        failure: Some(f.to_string()),
        elapsed_ms: 1,
    }
}

fn dns(addrs: &[&str], failure: Option<&str>) -> Option<DnsResult> {
    Some(DnsResult {
        query: "site.test".into(),
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        failure: failure.map(str::to_string),
        rcode: None,
    })
}

fn endpoint(ip: &str, port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::new(ip.parse().unwrap(), port)
}

fn tcp(ip: &str, port: u16, failure: Option<&str>) -> TcpConnect {
    TcpConnect {
        addr: endpoint(ip, port),
        status: failure.is_none(),
        failure: failure.map(str::to_string),
        elapsed_ms: 1,
    }
}

fn tls(ip: &str, failure: Option<&str>) -> TlsResult {
    TlsResult {
        address: endpoint(ip, 443),
        server_name: "site.test".into(),
        failure: failure.map(str::to_string),
        version: failure.is_none().then(|| "TLSv1.3".into()),
        ech: None,
        elapsed_ms: 1,
    }
}

/// A probe that got as far as its arguments say, on `url`.
fn probe(url: &str, addrs: &[&str]) -> Probe {
    let target = Target::parse(url).unwrap();
    let port = target.port;
    let https = target.scheme == Scheme::Https;
    Probe {
        dns: dns(addrs, None),
        tcp: addrs.iter().map(|a| tcp(a, port, None)).collect(),
        tls: if https {
            addrs.iter().map(|a| tls(a, None)).collect()
        } else {
            vec![]
        },
        http: Some(page(HOME, None)),
        quic: None,
        target,
    }
}

fn quic(ip: &str, failure: Option<&str>) -> QuicResult {
    QuicResult {
        address: endpoint(ip, 443),
        server_name: "site.test".into(),
        version: QuicVersion::V1,
        alpn: failure.is_none().then(|| "h3".into()),
        failure: failure.map(str::to_string),
        elapsed_ms: 1,
    }
}

/// `c` with a QUIC handshake to each of `addrs` that worked or not.
fn with_quic(mut c: ControlResponse, addrs: &[&str], ok: bool) -> ControlResponse {
    for a in addrs {
        let hs = ControlQuicHandshake {
            server_name: "site.test".into(),
            version: QuicVersion::V1,
            status: ok,
            failure: (!ok).then(|| GENERIC_TIMEOUT.into()),
        };
        c.quic_handshake.insert(format!("{a}:443"), hs);
    }
    c
}

/// A control that resolved `addrs`, connected, shook hands and fetched
/// `fetched` (or failed with `generic_timeout_error`).
fn control(addrs: &[&str], fetched: Option<Page>) -> ControlResponse {
    let mut c = ControlResponse {
        dns: ControlDns {
            failure: None,
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
        },
        ..ControlResponse::default()
    };
    for a in addrs {
        let ok = ControlTcpConnect {
            status: true,
            failure: None,
        };
        c.tcp_connect.insert(format!("{a}:443"), ok);
        let hs = ControlTlsHandshake {
            server_name: "site.test".into(),
            status: true,
            failure: None,
        };
        c.tls_handshake.insert(format!("{a}:443"), hs);
    }
    c.http_request = match fetched {
        Some(p) => ControlHttpRequest {
            body_length: p.len as i64,
            failure: None,
            title: p.title.into(),
            headers: p
                .headers
                .iter()
                .map(|h| (h.to_string(), "v".into()))
                .collect(),
            status_code: i64::from(p.status),
        },
        None => ControlHttpRequest {
            failure: Some(GENERIC_TIMEOUT.into()),
            ..ControlHttpRequest::default()
        },
    };
    c
}

const SITE: &str = "93.184.216.34";

#[track_caller]
fn expect(
    v: &Verdict,
    blocking: Option<Blocking>,
    accessible: Option<bool>,
    failure: Option<&str>,
    keys: &[&str],
) {
    assert_eq!(v.blocking, blocking, "blocking in {v:?}");
    assert_eq!(v.accessible, accessible, "accessible in {v:?}");
    assert_eq!(v.failure.as_deref(), failure, "failure in {v:?}");
    assert_eq!(v.analysis, keys, "analysis in {v:?}");
}

#[test]
fn allowed_is_false_and_accessible() {
    let c = control(&[SITE], Some(HOME));
    for url in ["https://site.test/", "http://site.test/"] {
        let v = probe(url, &[SITE]).verdict(Some(&c));
        expect(&v, Some(Blocking::No), Some(true), None, &[]);
        assert_eq!(
            v.comparison.dns_consistency,
            Some(DnsConsistency::Consistent)
        );
    }
}

#[test]
fn no_control_says_nothing_but_lists_what_failed() {
    let mut p = probe("http://site.test/", &[SITE]);
    p.http = Some(http_failed(CONNECTION_RESET));
    let v = p.verdict(None);
    expect(
        &v,
        None,
        None,
        Some(CONNECTION_RESET),
        &["http.connection_reset"],
    );
}

#[test]
fn https_success_needs_no_control() {
    let v = probe("https://site.test/", &[SITE]).verdict(None);
    assert_eq!((v.blocking, v.accessible), (Some(Blocking::No), Some(true)));
}

#[test]
fn nxdomain_is_dns() {
    let mut p = probe("https://site.test/", &[]);
    p.dns = dns(&[], Some(DNS_NXDOMAIN));
    let v = p.against_the_site();
    expect(
        &v,
        Some(Blocking::Dns),
        Some(false),
        Some(DNS_NXDOMAIN),
        &["dns.nxdomain"],
    );
    assert_eq!(
        v.comparison.dns_consistency,
        Some(DnsConsistency::Inconsistent)
    );
}

#[test]
fn nxdomain_for_both_is_a_missing_site() {
    let mut p = probe("https://gone.test/", &[]);
    p.dns = dns(&[], Some(DNS_NXDOMAIN));
    let mut c = control(&[], None);
    c.dns.failure = Some(DNS_NAME_ERROR.into());
    let v = p.verdict(Some(&c));
    expect(
        &v,
        Some(Blocking::No),
        Some(false),
        Some(DNS_NXDOMAIN),
        &["dns.nxdomain"],
    );
    assert_eq!(
        v.comparison.dns_consistency,
        Some(DnsConsistency::Consistent)
    );
}

#[test]
fn dns_timeout_and_refused_are_dns() {
    for (f, key) in [
        (GENERIC_TIMEOUT, "dns.timeout"),
        (DNS_REFUSED, "dns.refused"),
    ] {
        let mut p = probe("https://site.test/", &[]);
        p.dns = dns(&[], Some(f));
        let v = p.against_the_site();
        expect(&v, Some(Blocking::Dns), Some(false), Some(f), &[key]);
    }
}

#[test]
fn sinkhole_answer_is_dns() {
    // The sinkhole takes the connection and resets the handshake.
    let sink = "192.0.2.1";
    let mut p = probe("https://site.test/", &[sink]);
    p.tls = vec![tls(sink, Some(CONNECTION_RESET))];
    p.http = None;
    let v = p.against_the_site();
    expect(
        &v,
        Some(Blocking::Dns),
        Some(false),
        Some(CONNECTION_RESET),
        &["dns.inconsistent", "dns.bogon", "tls.connection_reset"],
    );
}

#[test]
fn sinkhole_in_the_lab_is_inconsistent_not_bogon() {
    // The lab lives in 198.18.0.0/15: the control's answer is a bogon too.
    let mut p = probe("http://site.test/", &["198.18.0.66"]);
    p.tcp = vec![tcp("198.18.0.66", 80, Some(GENERIC_TIMEOUT))];
    p.http = None;
    let v = p.verdict(Some(&control(&["198.18.2.10"], Some(HOME))));
    expect(
        &v,
        Some(Blocking::Dns),
        Some(false),
        Some(GENERIC_TIMEOUT),
        &["dns.inconsistent", "tcp.timeout"],
    );
}

#[test]
fn sinkhole_serving_a_block_page_is_dns() {
    let mut p = probe("http://site.test/", &["10.0.0.1"]);
    p.http = Some(page(STUB_302, None));
    let v = p.against_the_site();
    assert_eq!(v.blocking, Some(Blocking::Dns));
    assert_eq!(v.failure, None);
    assert!(v
        .analysis
        .starts_with(&["dns.inconsistent".into(), "dns.bogon".into()]));
    assert!(v
        .analysis
        .contains(&"http.inconsistent.status_code_mismatch".into()));
}

#[test]
fn other_addresses_serving_the_same_page_are_not_blocking() {
    // A transparent proxy or another CDN node: OONI's QA calls this accessible.
    let v =
        probe("http://site.test/", &["198.51.100.7"]).verdict(Some(&control(&[SITE], Some(HOME))));
    expect(
        &v,
        Some(Blocking::No),
        Some(true),
        None,
        &["dns.inconsistent", "dns.bogon"],
    );
}

#[test]
fn addresses_that_pass_tls_are_consistent() {
    let mut p = probe("https://site.test/", &["8.8.4.4"]);
    // The fetch failed, so step 1 does not apply; the handshake did work.
    p.http = Some(http_failed(GENERIC_TIMEOUT));
    let v = p.against_the_site();
    assert_eq!(
        v.comparison.dns_consistency,
        Some(DnsConsistency::Consistent)
    );
    expect(
        &v,
        Some(Blocking::HttpFailure),
        Some(false),
        Some(GENERIC_TIMEOUT),
        &["http.timeout"],
    );
}

#[test]
fn connects_failing_is_tcp_ip() {
    for (f, key) in [
        (GENERIC_TIMEOUT, "tcp.timeout"),
        (CONNECTION_REFUSED, "tcp.connection_refused"),
        (CONNECTION_RESET, "tcp.connection_reset"),
        (HOST_UNREACHABLE, "tcp.host_unreachable"),
    ] {
        let mut p = probe("https://site.test/", &[SITE]);
        p.tcp = vec![tcp(SITE, 443, Some(f))];
        p.tls = vec![];
        p.http = None;
        let v = p.against_the_site();
        expect(&v, Some(Blocking::TcpIp), Some(false), Some(f), &[key]);
    }
}

#[test]
fn connects_failing_at_the_control_too_is_a_site_down() {
    let mut p = probe("https://site.test/", &[SITE]);
    p.tcp = vec![tcp(SITE, 443, Some(GENERIC_TIMEOUT))];
    p.tls = vec![];
    p.http = None;
    let mut c = control(&[SITE], None);
    for t in c.tcp_connect.values_mut() {
        *t = ControlTcpConnect {
            status: false,
            failure: Some(GENERIC_TIMEOUT.into()),
        };
    }
    c.tls_handshake.clear();
    let v = p.verdict(Some(&c));
    expect(
        &v,
        Some(Blocking::No),
        Some(false),
        Some(GENERIC_TIMEOUT),
        &["tcp.timeout"],
    );
}

#[test]
fn tls_or_http_failing_is_http_failure() {
    for (f, key) in [
        (CONNECTION_RESET, "tls.connection_reset"),
        (GENERIC_TIMEOUT, "tls.timeout"),
        (EOF, "tls.eof"),
        (SSL_UNKNOWN_AUTHORITY, "tls.ssl_unknown_authority"),
        (GENERIC_TIMEOUT, "http.timeout"),
        (CONNECTION_RESET, "http.connection_reset"),
        (EOF, "http.eof"),
    ] {
        let p = if key.starts_with("tls.") {
            let mut p = probe("https://site.test/", &[SITE]);
            p.tls = vec![tls(SITE, Some(f))];
            p.http = None;
            p
        } else {
            let mut p = probe("http://site.test/", &[SITE]);
            p.http = Some(http_failed(f));
            p
        };
        let v = p.against_the_site();
        expect(
            &v,
            Some(Blocking::HttpFailure),
            Some(false),
            Some(f),
            &[key],
        );
    }
}

#[test]
fn frozen_body_is_an_http_timeout() {
    // Headers came, the body stopped: a status code and a failure.
    let mut p = probe("https://site.test/", &[SITE]);
    p.http = Some(page(
        Page {
            len: 16_000,
            ..HOME
        },
        Some(GENERIC_TIMEOUT),
    ));
    let v = p.against_the_site();
    expect(
        &v,
        Some(Blocking::HttpFailure),
        Some(false),
        Some(GENERIC_TIMEOUT),
        &["http.timeout"],
    );
}

#[test]
fn http_failing_at_the_control_too_is_a_site_down() {
    let mut p = probe("http://site.test/", &[SITE]);
    p.http = Some(http_failed(GENERIC_TIMEOUT));
    let v = p.verdict(Some(&control(&[SITE], None)));
    expect(
        &v,
        Some(Blocking::No),
        Some(false),
        Some(GENERIC_TIMEOUT),
        &["http.timeout"],
    );
}

#[test]
fn a_302_stub_is_http_diff() {
    let mut p = probe("http://site.test/", &[SITE]);
    p.http = Some(page(STUB_302, None));
    let v = p.against_the_site();
    expect(
        &v,
        Some(Blocking::HttpDiff),
        Some(false),
        None,
        &[
            "http.inconsistent.status_code_mismatch",
            "http.inconsistent.headers_mismatch",
        ],
    );
    // An empty body is not compared (OONI: no proportion for a zero length).
    assert_eq!(v.comparison.body_length_match, None);
}

#[test]
fn a_block_page_with_200_is_http_diff() {
    let mut p = probe("http://site.test/", &[SITE]);
    let block = Page {
        status: 200,
        len: 900,
        title: "Access restricted by order",
        headers: &["Content-Type", "X-Censor"],
    };
    p.http = Some(page(block, None));
    let v = p.against_the_site();
    expect(
        &v,
        Some(Blocking::HttpDiff),
        Some(false),
        None,
        &[
            "http.inconsistent.body_length_mismatch",
            "http.inconsistent.title_mismatch",
            "http.inconsistent.headers_mismatch",
        ],
    );
}

#[test]
fn a_shorter_page_with_the_same_title_is_the_page() {
    let mut p = probe("http://site.test/", &[SITE]);
    p.http = Some(page(Page { len: 1000, ..HOME }, None));
    let v = p.against_the_site();
    // The body differs but title and headers agree: OONI v0.4 calls it accessible.
    expect(
        &v,
        Some(Blocking::No),
        Some(true),
        None,
        &["http.inconsistent.body_length_mismatch"],
    );
}

#[test]
fn https_differences_are_the_sites_own() {
    let mut p = probe("https://site.test/", &[SITE]);
    p.http = Some(page(STUB_302, None));
    let v = p.against_the_site();
    expect(&v, Some(Blocking::No), Some(true), None, &[]);
    assert_eq!(v.comparison.status_code_match, Some(false));
}

#[test]
fn a_control_that_cannot_fetch_leaves_a_fetched_page_unjudged() {
    let v = probe("http://site.test/", &[SITE]).verdict(Some(&control(&[SITE], None)));
    expect(&v, None, None, None, &[]);
}

#[test]
fn a_5xx_control_does_not_count_as_a_status_mismatch() {
    let broken = Page {
        status: 503,
        ..HOME
    };
    let v = probe("http://site.test/", &[SITE]).verdict(Some(&control(&[SITE], Some(broken))));
    assert_eq!(v.comparison.status_code_match, None);
    // Without a status match the page is not the expected one.
    assert_eq!(v.blocking, Some(Blocking::HttpDiff));
}

#[test]
fn an_address_url_has_consistent_dns() {
    let mut p = probe("https://93.184.216.34/", &[SITE]);
    p.dns = None;
    p.tls = vec![tls(SITE, Some(CONNECTION_RESET))];
    p.http = None;
    let v = p.verdict(Some(&control(&[], Some(HOME))));
    assert_eq!(
        v.comparison.dns_consistency,
        Some(DnsConsistency::Consistent)
    );
    expect(
        &v,
        Some(Blocking::HttpFailure),
        Some(false),
        Some(CONNECTION_RESET),
        &["tls.connection_reset"],
    );
}

#[test]
fn blocking_serialises_like_ooni() {
    let json = |b: Option<Blocking>| serde_json::to_string(&b).unwrap();
    assert_eq!(json(Some(Blocking::No)), "false");
    assert_eq!(json(Some(Blocking::TcpIp)), "\"tcp_ip\"");
    assert_eq!(json(Some(Blocking::HttpFailure)), "\"http-failure\"");
    assert_eq!(json(None), "null");
}

#[test]
fn body_proportions() {
    assert_eq!(body_proportion(50, 100), 0.5);
    assert_eq!(body_proportion(100, 50), 0.5);
    assert_eq!(body_proportion(0, 0), 1.0);
    assert!(body_proportion(71, 100) > BODY_PROPORTION_FACTOR);
    assert!(body_proportion(70, 100) <= BODY_PROPORTION_FACTOR);
}

#[test]
fn header_and_title_rules() {
    let names = |v: &'static [&'static str]| v.iter().copied();
    assert!(headers_match(
        names(&["Date", "X-A"]),
        names(&["date", "x-a"])
    ));
    assert!(headers_match(
        names(&["Date", "X-A"]),
        names(&["X-A", "Server"])
    ));
    assert!(!headers_match(
        names(&["Date", "Server"]),
        names(&["Date", "Vary"])
    ));
    assert!(titles_match("Example Domain", "example domain"));
    assert!(
        titles_match("The Domain", "Domain of it"),
        "short words are ignored"
    );
    assert!(!titles_match("Example Domain", "Blocked Domain"));
}

#[test]
fn quic_failing_while_the_control_shakes_hands_is_http_failure() {
    let mut p = probe("https://site.test/", &[SITE]);
    p.quic = Some(vec![quic(SITE, Some(GENERIC_TIMEOUT))]);
    let c = with_quic(control(&[SITE], Some(HOME)), &[SITE], true);
    // The page came over TCP with a good certificate: over QUIC it did not.
    let v = p.verdict(Some(&c));
    expect(
        &v,
        Some(Blocking::HttpFailure),
        Some(false),
        Some(GENERIC_TIMEOUT),
        &["quic.timeout"],
    );
    // The control failing QUIC too: the site does not speak it.
    let down = with_quic(control(&[SITE], Some(HOME)), &[SITE], false);
    let v = p.verdict(Some(&down));
    expect(
        &v,
        Some(Blocking::No),
        Some(false),
        Some(GENERIC_TIMEOUT),
        &["quic.timeout"],
    );
    // A control that did not measure QUIC cannot say.
    let v = p.verdict(Some(&control(&[SITE], Some(HOME))));
    assert_eq!((v.blocking, v.accessible), (None, None));
    // Nor can no control at all, even with the page fetched over TCP.
    assert_eq!(p.verdict(None).blocking, None);
}

#[test]
fn quic_that_works_leaves_the_verdict_to_the_other_steps() {
    let mut p = probe("https://site.test/", &[SITE, "2001:db8::1"]);
    // One address answering is enough.
    p.quic = Some(vec![
        quic(SITE, Some(GENERIC_TIMEOUT)),
        quic("2001:db8::1", None),
    ]);
    let c = with_quic(control(&[SITE, "2001:db8::1"], Some(HOME)), &[SITE], true);
    expect(
        &p.verdict(Some(&c)),
        Some(Blocking::No),
        Some(true),
        None,
        &[],
    );
    // A connect that failed everywhere still comes first: tcp_ip.
    p.tcp = vec![
        tcp(SITE, 443, Some(GENERIC_TIMEOUT)),
        tcp("2001:db8::1", 443, Some(GENERIC_TIMEOUT)),
    ];
    p.tls.clear();
    p.http = None;
    let v = p.verdict(Some(&c));
    expect(
        &v,
        Some(Blocking::TcpIp),
        Some(false),
        Some(GENERIC_TIMEOUT),
        &["tcp.timeout"],
    );
}
