//! `chokepoint probe` and `chokepoint probe-helper`: OONI Web
//! Connectivity-style measurements, and the control helper they compare
//! with (the work is in `chokepoint-probe`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use chokepoint_probe::{
    measure, CertificateDer, Ech, Helper, Measurement, ProbeConfig, QuicVersion, Target,
};
use clap::error::ErrorKind;

use crate::cmd::print_out;

/// The longest `--timeout` or `--lifetime` taken, in seconds (a day).
const MAX_SECS: f64 = 86_400.0;

#[derive(clap::Args)]
pub struct ProbeArgs {
    /// The resolver asked for A and AAAA, IP or IP:PORT (port 53 when
    /// none). Default: the first nameserver in /etc/resolv.conf.
    #[arg(long, value_name = "IP[:PORT]", value_parser = parse_resolver)]
    resolver: Option<SocketAddr>,
    /// The control test helper (`chokepoint probe-helper`) to compare with.
    /// Without one `blocking` is null, except for an https page fetched
    /// with a trusted certificate (false).
    #[arg(long, value_name = "ADDR:PORT")]
    helper: Option<SocketAddr>,
    /// Trust anchors for TLS, PEM. Without it no certificate is trusted
    /// (`ssl_unknown_authority`); for public sites pass the system bundle,
    /// e.g. /etc/ssl/certs/ca-certificates.crt.
    #[arg(long, value_name = "FILE.pem")]
    ca: Option<PathBuf>,
    /// One JSON object per input, one per line, as each is measured.
    #[arg(long)]
    json: bool,
    /// Seconds the HTTP step may take (default 10); connects and TLS and
    /// QUIC handshakes wait at most the lesser of 5 and SECS, a DNS try the
    /// lesser of 2 and SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    timeout: Option<Duration>,
    /// Also measure https inputs over QUIC: a handshake with ALPN h3 to
    /// every address, by the probe and the helper; the verdict is then
    /// about QUIC.
    #[arg(long)]
    quic: bool,
    /// The QUIC version offered: v1 (the default) or draft-29 (ALPN
    /// h3-29); implies --quic.
    #[arg(long, value_name = "VERSION", value_parser = parse_quic)]
    quic_version: Option<QuicVersion>,
    /// Put an ECH extension in the TLS ClientHello: `grease` (a GREASE ECH
    /// extension beside the real SNI, as browsers send without an ECH
    /// configuration; TLS 1.3 only).
    #[arg(long, value_name = "MODE", value_parser = parse_ech)]
    ech: Option<Ech>,
    /// URLs (http:// or https://, with an optional port and path) or bare
    /// names, meaning https://NAME/.
    #[arg(required = true, value_name = "INPUT", value_parser = parse_input)]
    inputs: Vec<String>,
}

#[derive(clap::Args)]
pub struct HelperArgs {
    /// Where to listen, ADDR:PORT (port 0 picks one; the address is
    /// printed on stderr).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// The resolver the helper asks, IP or IP:PORT (port 53 when none).
    /// Default: the first nameserver in /etc/resolv.conf.
    #[arg(long, value_name = "IP[:PORT]", value_parser = parse_resolver)]
    resolver: Option<SocketAddr>,
    /// Trust anchors for the helper's TLS handshakes, PEM (as for probe).
    #[arg(long, value_name = "FILE.pem")]
    ca: Option<PathBuf>,
    /// Seconds to serve before exiting by itself.
    #[arg(long, value_name = "SECS", default_value = "600", value_parser = parse_secs)]
    lifetime: Duration,
}

/// `chokepoint probe`: measures every input, in order.
pub fn run(a: ProbeArgs) -> Result<()> {
    let mut cfg = ProbeConfig::new(resolver_or_system(a.resolver));
    cfg.helper = a.helper;
    cfg.ca = a.ca.as_deref().map(load_ca).unwrap_or_default();
    cfg.quic = a.quic_version.or(a.quic.then_some(QuicVersion::V1));
    cfg.ech = a.ech;
    if let Some(t) = a.timeout {
        scale_timeouts(&mut cfg, t);
    }
    let mut measured = Vec::new();
    for input in &a.inputs {
        let m = measure(input, &cfg);
        if a.json {
            print_out(&format!("{}\n", serde_json::to_string(&m)?))?;
        } else {
            measured.push(m);
        }
    }
    if !a.json {
        print_out(&table(&measured))?;
    }
    Ok(())
}

/// `chokepoint probe-helper`: serves until its lifetime is up.
pub fn run_helper(a: HelperArgs) -> Result<()> {
    let mut cfg = ProbeConfig::new(resolver_or_system(a.resolver));
    cfg.ca = a.ca.as_deref().map(load_ca).unwrap_or_default();
    let helper =
        Helper::bind(a.listen, &cfg).with_context(|| format!("listening on {}", a.listen))?;
    let addr = helper.local_addr()?;
    eprintln!(
        "chokepoint probe-helper: listening on {addr} for {:?}",
        a.lifetime
    );
    let stats = helper.serve(a.lifetime);
    eprintln!(
        "chokepoint probe-helper: done, {} measured, {} refused",
        stats.measured, stats.refused
    );
    Ok(())
}

/// `--timeout SECS`: the HTTP limit, and a cap on the others.
fn scale_timeouts(cfg: &mut ProbeConfig, t: Duration) {
    let limits = &mut cfg.timeouts;
    limits.http = t;
    limits.connect = limits.connect.min(t);
    limits.tls = limits.tls.min(t);
    limits.quic = limits.quic.min(t);
    limits.dns_per_try = limits.dns_per_try.min(t);
}

/// Ends the command with clap's "bad argument" status (2).
fn bad_argument(msg: String) -> ! {
    clap::Error::raw(ErrorKind::InvalidValue, format!("{msg}\n")).exit()
}

fn parse_input(s: &str) -> Result<String, String> {
    Target::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.why.to_string())
}

fn parse_quic(s: &str) -> Result<QuicVersion, String> {
    QuicVersion::parse(s).ok_or_else(|| "expected v1 or draft-29".to_string())
}

fn parse_ech(s: &str) -> Result<Ech, String> {
    Ech::parse(s).ok_or_else(|| "expected grease".to_string())
}

fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| "expected IP or IP:PORT ([IPv6]:PORT)".to_string())
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| "expected seconds".to_string())?;
    if !(secs > 0.0 && secs <= MAX_SECS) {
        return Err(format!(
            "expected more than 0 and at most {MAX_SECS} seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The resolver given, or the system's first one.
fn resolver_or_system(given: Option<SocketAddr>) -> SocketAddr {
    if let Some(r) = given {
        return r;
    }
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|rest| parse_resolver(rest.trim()).ok())
        .unwrap_or_else(|| {
            bad_argument("no --resolver given and no nameserver in /etc/resolv.conf".into())
        })
}

/// The certificates in a PEM file; an unreadable file or one without any
/// is a bad argument.
fn load_ca(path: &Path) -> Vec<CertificateDer<'static>> {
    let pem = std::fs::read(path)
        .unwrap_or_else(|e| bad_argument(format!("--ca {}: {e}", path.display())));
    match chokepoint_probe::load_ca_pem(&pem) {
        Ok(certs) if !certs.is_empty() => certs,
        Ok(_) => bad_argument(format!("--ca {}: no certificates in it", path.display())),
        Err(e) => bad_argument(format!("--ca {}: {e}", path.display())),
    }
}

/// The text report: input, blocking, failure, analysis, aligned.
fn table(measured: &[Measurement]) -> String {
    let rows: Vec<[String; 4]> = measured
        .iter()
        .map(|m| {
            let blocking = m.blocking.map_or("null", |b| b.as_str()).to_string();
            let failure = m.failure.clone().unwrap_or_else(|| "-".into());
            let analysis = if m.analysis.is_empty() {
                "-".to_string()
            } else {
                m.analysis.join(",")
            };
            [m.input.clone(), blocking, failure, analysis]
        })
        .collect();
    let header = ["INPUT", "BLOCKING", "FAILURE", "ANALYSIS"].map(String::from);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
