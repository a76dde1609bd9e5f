//! The lab's web server (`chokepoint lab serve`, run in the server
//! namespace, with the resolver of [`crate::dns`] and the QUIC endpoint of
//! [`crate::quic`] beside it): HTTP and HTTPS for any name, with
//! certificates minted by the lab's CA (the same for QUIC).
//!
//! Every name gets the same site, so any URL a class wants to try works:
//! `/` is an HTML page titled with the name asked for (about 40 KB, the
//! size of a modest real page and more than the 15–20 KB after which the
//! 2025 freeze stops a connection), `/NNk.bin` and `/NNm.bin` are that many
//! kilobytes or megabytes (at most 100 MB) of zeros for download tests, and
//! every other path is the page again. The page depends only on the name,
//! so a probe and its control fetching the same name get the same bytes.
//!
//! One thread per connection, at most [`MAX_CONNECTIONS`] at once (more
//! are closed at once and counted in the log), each with read and write
//! timeouts; the server exits by itself after its lifetime.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::ca::{LabCa, MintingResolver};

/// Connections served at once, at most.
pub const MAX_CONNECTIONS: usize = 512;
/// Request head size accepted, at most.
const MAX_HEAD: usize = 16 * 1024;
/// The size of the HTML page, about.
pub const PAGE_BYTES: usize = 40_000;
/// The largest `/NN{k,m}.bin` served.
const MAX_BIN: u64 = 100_000_000;
/// How long a connection may sit idle.
const IDLE: Duration = Duration::from_secs(30);

/// What the web server serves and for how long.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The lab's name (for the CA's name).
    pub lab: String,
    /// Plain HTTP ports (all addresses, both families).
    pub http_ports: Vec<u16>,
    /// HTTPS ports.
    pub https_ports: Vec<u16>,
    /// QUIC (UDP) ports, handshakes only (see [`crate::quic`]).
    pub quic_ports: Vec<u16>,
    /// The addresses a nameless ClientHello gets a certificate for.
    pub addresses: Vec<IpAddr>,
    /// Where to write the CA's certificate (PEM).
    pub ca_out: PathBuf,
    /// The resolver to serve beside the web server, and where.
    pub dns: Option<(crate::dns::Zone, Vec<IpAddr>)>,
    /// Where to serve the echo service signature targets send to.
    pub echo: Vec<IpAddr>,
    /// When to exit.
    pub lifetime: Duration,
}

/// Run the server until its lifetime ends.
pub fn serve(cfg: WebConfig) -> Result<()> {
    let ca = LabCa::new(&cfg.lab)?;
    let tmp = cfg.ca_out.with_extension("tmp");
    std::fs::write(&tmp, ca.pem()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &cfg.ca_out)
        .with_context(|| format!("writing {}", cfg.ca_out.display()))?;
    let resolver = Arc::new(MintingResolver::new(ca, &cfg.addresses));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = Arc::new(tls);
    let open = Arc::new(AtomicUsize::new(0));
    let ports = cfg
        .http_ports
        .iter()
        .map(|&p| (p, None))
        .chain(cfg.https_ports.iter().map(|&p| (p, Some(tls.clone()))));
    for (port, tls) in ports {
        // [::] takes IPv4 too (net.ipv6.bindv6only is 0 in a new namespace).
        let listener =
            TcpListener::bind(("::", port)).with_context(|| format!("listening on port {port}"))?;
        let open = open.clone();
        std::thread::spawn(move || accept_loop(listener, tls, open));
    }
    if !cfg.quic_ports.is_empty() {
        let quic = crate::quic::server_config(resolver)?;
        crate::quic::spawn(quic, &cfg.quic_ports, cfg.lifetime)?;
    }
    if let Some((zone, addrs)) = cfg.dns.clone() {
        crate::dns::serve(zone, &addrs)?;
    }
    crate::signature::serve_echo(&cfg.echo)?;
    eprintln!(
        "lab servers: HTTP on {:?}, HTTPS on {:?}, QUIC on {:?}, DNS: {}, for {} s",
        cfg.http_ports,
        cfg.https_ports,
        cfg.quic_ports,
        cfg.dns
            .as_ref()
            .map_or("none".into(), |(_, a)| format!("{a:?}")),
        cfg.lifetime.as_secs()
    );
    std::thread::sleep(cfg.lifetime);
    Ok(())
}

fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    open: Arc<AtomicUsize>,
) {
    let mut refused: u64 = 0;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::AcqRel);
            refused += 1;
            if refused.is_power_of_two() {
                eprintln!("lab web server: {refused} connection(s) refused over the cap");
            }
            continue;
        }
        let tls = tls.clone();
        let open = open.clone();
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(IDLE));
            let _ = stream.set_write_timeout(Some(IDLE));
            let _ = stream.set_nodelay(true);
            match tls {
                None => serve_http(stream),
                Some(cfg) => {
                    if let Ok(conn) = rustls::ServerConnection::new(cfg) {
                        serve_http(rustls::StreamOwned::new(conn, stream));
                    }
                }
            }
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Serve requests on one connection until the client closes it, asks for
/// it to be closed, or sends something that is not a request.
fn serve_http(mut s: impl Read + Write) {
    let mut buf = Vec::with_capacity(2048);
    loop {
        let Some(head_len) = read_head(&mut s, &mut buf) else {
            return;
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(_)) = req.parse(&buf[..head_len]) else {
            let _ = s.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        };
        let host = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .map(|h| host_name(&String::from_utf8_lossy(h.value)))
            .unwrap_or_else(|| "lab".to_string());
        let close = req.version == Some(0)
            || req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close")
            });
        let head_only = req.method == Some("HEAD");
        let path = req.path.unwrap_or("/").to_string();
        buf.drain(..head_len);
        if respond(&mut s, &host, &path, head_only, close).is_err() || close {
            let _ = s.flush();
            return;
        }
    }
}

/// Read until the end of a request head; its length, or `None` at EOF,
/// timeout or an oversized head.
fn read_head(s: &mut impl Read, buf: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The name in a Host header, without its port, lowercased.
fn host_name(h: &str) -> String {
    let h = h.trim();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        h.rsplit_once(':').map_or(h, |(n, _)| n)
    };
    name.to_ascii_lowercase()
}

fn respond(
    s: &mut impl Write,
    host: &str,
    path: &str,
    head_only: bool,
    close: bool,
) -> std::io::Result<()> {
    let conn = if close { "close" } else { "keep-alive" };
    let path = path.split('?').next().unwrap_or("/");
    if let Some(n) = bin_size(path) {
        write!(
            s,
            "HTTP/1.1 200 OK\r\nServer: chokepoint-lab\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\nConnection: {conn}\r\n\r\n"
        )?;
        if !head_only {
            let zeros = [0u8; 16384];
            let mut left = n;
            while left > 0 {
                let k = left.min(zeros.len() as u64) as usize;
                s.write_all(&zeros[..k])?;
                left -= k as u64;
            }
        }
        return s.flush();
    }
    let body = page(host);
    write!(
        s,
        "HTTP/1.1 200 OK\r\nServer: chokepoint-lab\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
        body.len()
    )?;
    if !head_only {
        s.write_all(body.as_bytes())?;
    }
    s.flush()
}

/// `/NNk.bin` → NN × 1000 bytes, `/NNm.bin` → NN × 1,000,000 (capped).
pub(crate) fn bin_size(path: &str) -> Option<u64> {
    let stem = path.strip_prefix('/')?.strip_suffix(".bin")?;
    let (num, unit) = stem.split_at(stem.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    let size = match unit {
        "k" => n.checked_mul(1000)?,
        "m" => n.checked_mul(1_000_000)?,
        _ => return None,
    };
    (size <= MAX_BIN).then_some(size)
}

/// The HTML page for `host`: the same bytes for the same name.
pub fn page(host: &str) -> String {
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        .take(253)
        .collect();
    let mut p = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{host}</title></head>\n<body>\n<h1>{host}</h1>\n<p>This page stands for {host} in the chokepoint lab. Every name the lab's resolver answers reaches this server, which serves the same site for each.</p>\n"
    );
    let mut i = 1;
    while p.len() < PAGE_BYTES - 200 {
        p.push_str(&format!(
            "<p>Paragraph {i} of {host}. A real page of this size takes a few dozen TCP segments from the server, more than a censor that freezes a connection after fifteen to twenty kilobytes lets through.</p>\n"
        ));
        i += 1;
    }
    p.push_str("</body></html>\n");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_sizes() {
        assert_eq!(bin_size("/100k.bin"), Some(100_000));
        assert_eq!(bin_size("/1m.bin"), Some(1_000_000));
        assert_eq!(bin_size("/200k.bin"), Some(200_000));
        assert_eq!(bin_size("/101m.bin"), None);
        assert_eq!(bin_size("/k.bin"), None);
        assert_eq!(bin_size("/.bin"), None);
        assert_eq!(bin_size("/index.html"), None);
    }

    #[test]
    fn host_header_names() {
        assert_eq!(host_name("T.me:443"), "t.me");
        assert_eq!(host_name("[fd00:198:18::1:2]:8443"), "fd00:198:18::1:2");
        assert_eq!(host_name("example.com"), "example.com");
    }

    #[test]
    fn the_page_is_deterministic_and_past_the_freeze_window() {
        let a = page("t.me");
        assert_eq!(a, page("t.me"));
        assert_ne!(a, page("example.com"));
        assert!(a.len() > 20_000 && a.len() <= PAGE_BYTES, "{}", a.len());
        assert!(a.contains("<title>t.me</title>"));
        assert!(!page("<script>").contains("<script>"));
    }

    #[test]
    fn serves_a_keep_alive_exchange_and_a_bin() {
        let mut out = Vec::new();
        let input = b"GET / HTTP/1.1\r\nHost: t.me\r\n\r\nGET /1k.bin HTTP/1.1\r\nHost: t.me\r\nConnection: close\r\n\r\n".to_vec();
        struct Duplex<'a>(std::io::Cursor<Vec<u8>>, &'a mut Vec<u8>);
        impl Read for Duplex<'_> {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                self.0.read(b)
            }
        }
        impl Write for Duplex<'_> {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.1.write(b)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        serve_http(Duplex(std::io::Cursor::new(input), &mut out));
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
        assert!(text.contains("Connection: keep-alive"));
        assert!(text.contains("Content-Length: 1000\r\nConnection: close"));
        assert!(text.contains("<title>t.me</title>"));
    }
}
