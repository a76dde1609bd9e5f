//! From the probe's observations and the control to `blocking`,
//! `accessible`, `failure` and the analysis keys.
//!
//! The decision follows OONI Web Connectivity v0.4 (ooni/probe-cli
//! `webconnectivity/summary.go`), simplified:
//!
//! 1. an https page fetched with a verified certificate is accessible
//!    (`false`), whatever else was seen: the session proves the server;
//! 2. no control: `null`, nothing can be said;
//! 3. the first step that failed at the probe decides, against the same
//!    step at the control: DNS → `dns`; every connect → `tcp_ip`; when
//!    QUIC was asked for, every QUIC handshake → `http-failure` (a control
//!    that did not measure QUIC leaves `null`); every TLS handshake, or
//!    the HTTP fetch → `http-failure`. When the control
//!    failed the same step too, the site is down, not blocked: `false`
//!    with accessible `false`. A connect, TLS or HTTP failure after an
//!    inconsistent DNS answer is blamed on the DNS: `dns`;
//! 4. a cleartext page fetched by both: the same status code and a body
//!    length, header names or title that agree is accessible; otherwise
//!    `http-diff` (`dns` after an inconsistent DNS answer). A control that
//!    could not fetch the page leaves `null`.
//!
//! The keys name what went wrong at the probe, in the style of OONI's
//! pipeline v5 (`<step>.<reason>`, see [`crate::failure::reason`]), plus
//! `dns.inconsistent`, `dns.bogon` and the four `http.inconsistent.*`
//! mismatches.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

use crate::bogon::is_bogon;
use crate::control::ControlResponse;
use crate::dns::DnsResult;
use crate::failure;
use crate::http::HttpResult;
use crate::quic::QuicResult;
use crate::target::{Scheme, Target};
use crate::tcp::TcpConnect;
use crate::tls::TlsResult;

/// OONI's body proportion threshold: bodies within 70% of each other match.
pub const BODY_PROPORTION_FACTOR: f64 = 0.7;

/// Header names too common to say anything (OONI's list).
const COMMON_HEADERS: [&str; 25] = [
    "date",
    "content-type",
    "server",
    "cache-control",
    "vary",
    "set-cookie",
    "location",
    "expires",
    "x-powered-by",
    "content-encoding",
    "last-modified",
    "accept-ranges",
    "pragma",
    "x-frame-options",
    "etag",
    "x-content-type-options",
    "age",
    "via",
    "p3p",
    "x-xss-protection",
    "content-language",
    "cf-ray",
    "strict-transport-security",
    "link",
    "x-varnish",
];

/// Title words shorter than this are not compared (OONI's rule).
const MIN_TITLE_WORD: usize = 5;

/// Why a site is thought blocked, or `false` (serialised as `false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// Not blocked: serialised as JSON `false`.
    No,
    /// `"dns"`.
    Dns,
    /// `"tcp_ip"`.
    TcpIp,
    /// `"http-failure"`.
    HttpFailure,
    /// `"http-diff"`.
    HttpDiff,
}

impl Blocking {
    /// OONI's word, `false` for [`Blocking::No`].
    pub fn as_str(self) -> &'static str {
        match self {
            Blocking::No => "false",
            Blocking::Dns => "dns",
            Blocking::TcpIp => "tcp_ip",
            Blocking::HttpFailure => "http-failure",
            Blocking::HttpDiff => "http-diff",
        }
    }
}

impl Serialize for Blocking {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Blocking::No => s.serialize_bool(false),
            other => s.serialize_str(other.as_str()),
        }
    }
}

/// Whether the probe's DNS answer agrees with the control's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsConsistency {
    /// The same addresses (or some in common, or ones that passed a TLS
    /// check for the name), or the same failure.
    Consistent,
    /// Anything else.
    Inconsistent,
}

/// OONI's comparison test keys, null where a comparison does not apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Comparison {
    /// The DNS comparison.
    pub dns_consistency: Option<DnsConsistency>,
    /// The shorter body's length over the longer's.
    pub body_proportion: Option<f64>,
    /// `body_proportion > 0.7`.
    pub body_length_match: Option<bool>,
    /// The same status code (null when the control's is a 5xx).
    pub status_code_match: Option<bool>,
    /// The same header names, or an uncommon one in common.
    pub headers_match: Option<bool>,
    /// The same long words in the title.
    pub title_match: Option<bool>,
}

/// The outcome of the analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Null when nothing can be said.
    pub blocking: Option<Blocking>,
    /// Null when nothing can be said.
    pub accessible: Option<bool>,
    /// The failure of the step that decided.
    pub failure: Option<String>,
    /// The analysis keys.
    pub analysis: Vec<String>,
    /// The comparisons behind them.
    pub comparison: Comparison,
}

/// What the probe saw, borrowed from the measurement.
pub(crate) struct Evidence<'a> {
    pub target: &'a Target,
    pub dns: Option<&'a DnsResult>,
    pub tcp: &'a [TcpConnect],
    pub tls: &'a [TlsResult],
    pub http: Option<&'a HttpResult>,
    /// The QUIC handshakes when QUIC was asked for (https only).
    pub quic: Option<&'a [QuicResult]>,
}

/// The first step that failed at the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Dns,
    Tcp,
    Quic,
    Tls,
    Http,
}

impl Step {
    fn prefix(self) -> &'static str {
        match self {
            Step::Dns => "dns",
            Step::Tcp => "tcp",
            Step::Quic => "quic",
            Step::Tls => "tls",
            Step::Http => "http",
        }
    }
}

impl Evidence<'_> {
    /// The first failed step and its failure: DNS; every connect; every
    /// QUIC handshake (when asked for); every TLS handshake; the fetch.
    fn first_failure(&self) -> Option<(Step, &str)> {
        if let Some(f) = self.dns.and_then(|d| d.failure.as_deref()) {
            return Some((Step::Dns, f));
        }
        if self.tcp.iter().all(|c| !c.status) {
            let f = self.tcp.iter().find_map(|c| c.failure.as_deref());
            return Some((Step::Tcp, f.unwrap_or(failure::GENERIC_TIMEOUT)));
        }
        if let Some(quic) = self.quic.filter(|q| q.iter().all(|h| h.failure.is_some())) {
            let f = quic.iter().find_map(|h| h.failure.as_deref());
            return Some((Step::Quic, f.unwrap_or(failure::GENERIC_TIMEOUT)));
        }
        if self.target.scheme == Scheme::Https && self.tls.iter().all(|t| t.failure.is_some()) {
            let f = self.tls.iter().find_map(|t| t.failure.as_deref());
            return Some((Step::Tls, f.unwrap_or(failure::SSL_FAILED_HANDSHAKE)));
        }
        match self.http {
            Some(h) => h.failure.as_deref().map(|f| (Step::Http, f)),
            None => Some((Step::Http, failure::EOF)),
        }
    }

    fn page_fetched(&self) -> bool {
        self.first_failure().is_none() && self.http.is_some_and(|h| h.status_code.is_some())
    }
}

/// The verdict on `ev` given the control (`None` when there is none).
pub(crate) fn analyze(ev: &Evidence<'_>, control: Option<&ControlResponse>) -> Verdict {
    let failed = ev.first_failure();
    let mut analysis = Vec::new();
    if let Some((step, f)) = failed {
        analysis.push(format!("{}.{}", step.prefix(), failure::reason(f)));
    }
    let mut comparison = Comparison::default();
    let consistency = control.map(|c| dns_consistency(ev, c));
    comparison.dns_consistency = consistency;
    let inconsistent = consistency == Some(DnsConsistency::Inconsistent);
    if let (Some(c), Some(dns)) = (control, ev.dns) {
        if inconsistent && dns.failure.is_none() {
            analysis.insert(0, "dns.inconsistent".to_string());
            if unexpected_bogon(dns, c) {
                analysis.insert(1, "dns.bogon".to_string());
            }
        }
    }
    if let (Some(c), Some(h), None) = (control, ev.http, failed) {
        if c.http_ok() {
            comparison = Comparison {
                dns_consistency: consistency,
                ..compare_http(h, c)
            };
            // Over https the page is the server's (step 1): differences
            // are the site's own, not a censor's.
            if ev.target.scheme == Scheme::Http {
                analysis.extend(mismatch_keys(&comparison));
            }
        }
    }
    let mut verdict = Verdict {
        blocking: None,
        accessible: None,
        failure: failed.map(|(_, f)| f.to_string()),
        analysis,
        comparison,
    };
    let (blocking, accessible) = decide(ev, control, failed.map(|(s, _)| s), inconsistent);
    verdict.blocking = blocking;
    verdict.accessible = accessible;
    verdict
}

/// Steps 1 to 4 of the module's decision.
fn decide(
    ev: &Evidence<'_>,
    control: Option<&ControlResponse>,
    failed: Option<Step>,
    inconsistent: bool,
) -> (Option<Blocking>, Option<bool>) {
    let blocked = |b| (Some(b), Some(false));
    let down = (Some(Blocking::No), Some(false));
    let blame = |b| blocked(if inconsistent { Blocking::Dns } else { b });
    if ev.target.scheme == Scheme::Https && ev.page_fetched() {
        return (Some(Blocking::No), Some(true));
    }
    let Some(c) = control else {
        return (None, None);
    };
    match failed {
        Some(Step::Dns) if c.dns_failed() => down,
        Some(Step::Dns) => blocked(Blocking::Dns),
        Some(Step::Tcp) if c.tcp_ok() => blame(Blocking::TcpIp),
        Some(Step::Quic) if c.quic_ok() => blame(Blocking::HttpFailure),
        Some(Step::Quic) if c.quic_handshake.is_empty() => (None, None),
        Some(Step::Tls) if c.tls_ok() || (c.tls_handshake.is_empty() && c.http_ok()) => {
            blame(Blocking::HttpFailure)
        }
        Some(Step::Http) if c.http_ok() => blame(Blocking::HttpFailure),
        Some(_) => down,
        None if !c.http_ok() => (None, None),
        None if page_matches(&ev.http.map(|h| compare_http(h, c)).unwrap_or_default()) => {
            (Some(Blocking::No), Some(true))
        }
        None => blame(Blocking::HttpDiff),
    }
}

/// OONI v0.4's "expected page": the status code matches, and so does the
/// body length, the header names or the title.
fn page_matches(cmp: &Comparison) -> bool {
    cmp.status_code_match == Some(true)
        && (cmp.body_length_match == Some(true)
            || cmp.headers_match == Some(true)
            || cmp.title_match == Some(true))
}

fn mismatch_keys(cmp: &Comparison) -> Vec<String> {
    [
        (cmp.status_code_match, "status_code_mismatch"),
        (cmp.body_length_match, "body_length_mismatch"),
        (cmp.title_match, "title_mismatch"),
        (cmp.headers_match, "headers_mismatch"),
    ]
    .into_iter()
    .filter(|(m, _)| *m == Some(false))
    .map(|(_, key)| format!("http.inconsistent.{key}"))
    .collect()
}

/// The DNS comparison: an address in the URL is consistent; two failures
/// agree when both are NXDOMAIN or both found nothing; answers agree when
/// they share an address, or when every address only the probe got passed
/// a verified TLS handshake for the name (OONI v0.5's check). OONI also
/// accepts addresses in the same AS; there is no AS database here.
fn dns_consistency(ev: &Evidence<'_>, c: &ControlResponse) -> DnsConsistency {
    use DnsConsistency::{Consistent, Inconsistent};
    let Some(dns) = ev.dns else {
        return Consistent;
    };
    let control_addrs: BTreeSet<IpAddr> =
        c.dns.addrs.iter().filter_map(|a| a.parse().ok()).collect();
    match (dns.failure.as_deref(), c.dns_failed()) {
        (Some(probe), true) => {
            let both_nx = failure::is_nxdomain(probe)
                && c.dns.failure.as_deref().is_some_and(failure::is_nxdomain);
            let both_empty = probe == failure::DNS_NO_ANSWER && c.dns.failure.is_none();
            if both_nx || both_empty {
                Consistent
            } else {
                Inconsistent
            }
        }
        (Some(_), false) | (None, true) => Inconsistent,
        (None, false) => {
            let shared = dns.addrs.iter().any(|a| control_addrs.contains(a));
            let unexplained = dns
                .addrs
                .iter()
                .filter(|a| !control_addrs.contains(a))
                .any(|a| !tls_validated(ev, *a));
            if shared || !unexplained {
                Consistent
            } else {
                Inconsistent
            }
        }
    }
}

/// Whether a verified handshake for the URL's name succeeded at `addr`.
fn tls_validated(ev: &Evidence<'_>, addr: IpAddr) -> bool {
    ev.tls
        .iter()
        .any(|t| t.address.ip() == addr && t.failure.is_none() && t.server_name == ev.target.host)
}

/// A bogon among the probe's answers while the control's have none.
fn unexpected_bogon(dns: &DnsResult, c: &ControlResponse) -> bool {
    let control_bogon = c
        .dns
        .addrs
        .iter()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .any(is_bogon);
    !control_bogon && dns.addrs.iter().any(|a| is_bogon(*a))
}

/// OONI v0.4's HTTP comparisons of the probe's page with the control's.
fn compare_http(h: &HttpResult, c: &ControlResponse) -> Comparison {
    let ctl = &c.http_request;
    let status_code_match = match (h.status_code, ctl.status_code) {
        (Some(p), ctl) if ctl > 0 => {
            if i64::from(p) == ctl {
                Some(true)
            } else if ctl / 100 == 5 {
                // A failing control says nothing about the probe's page.
                None
            } else {
                Some(false)
            }
        }
        _ => None,
    };
    let body_proportion = match (h.body_length, h.body_truncated) {
        (Some(p), false) if p > 0 && ctl.body_length > 0 => {
            Some(body_proportion(p, ctl.body_length.unsigned_abs()))
        }
        _ => None,
    };
    let probe_names = h.headers.iter().map(String::as_str);
    let headers_match = (ctl.status_code > 0 && h.status_code.is_some())
        .then(|| headers_match(probe_names, ctl.headers.keys().map(String::as_str)));
    let title_match = match h.title.as_deref() {
        Some(t) if !h.body_truncated && ctl.status_code > 0 => Some(titles_match(t, &ctl.title)),
        _ => None,
    };
    Comparison {
        dns_consistency: None,
        body_proportion,
        body_length_match: body_proportion.map(|p| p > BODY_PROPORTION_FACTOR),
        status_code_match,
        headers_match,
        title_match,
    }
}

/// The shorter length over the longer (1.0 for two empty bodies).
pub fn body_proportion(a: u64, b: u64) -> f64 {
    let (small, large) = if a <= b { (a, b) } else { (b, a) };
    if large == 0 {
        return 1.0;
    }
    small as f64 / large as f64
}

/// OONI's header check: the same names, or at least one name outside the
/// common list seen on both sides.
fn headers_match<'a>(
    probe: impl Iterator<Item = &'a str>,
    control: impl Iterator<Item = &'a str>,
) -> bool {
    let ours: BTreeSet<String> = probe.map(str::to_ascii_lowercase).collect();
    let theirs: BTreeSet<String> = control.map(str::to_ascii_lowercase).collect();
    ours == theirs
        || ours
            .intersection(&theirs)
            .any(|name| !COMMON_HEADERS.contains(&name.as_str()))
}

/// OONI's title check: every word of 5 characters or more appears in both
/// titles (any order, any case).
fn titles_match(probe: &str, control: &str) -> bool {
    let words = |t: &str| -> BTreeSet<String> {
        t.split(' ')
            .filter(|w| w.chars().count() >= MIN_TITLE_WORD)
            .map(str::to_lowercase)
            .collect()
    };
    words(probe) == words(control)
}

#[cfg(test)]
#[path = "analysis_tests.rs"]
mod tests;
