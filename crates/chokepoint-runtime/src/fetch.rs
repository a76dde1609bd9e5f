//! A small HTTP/1.1 client for artifact distribution (`chokepoint run
//! --artifact-url`): one `GET` over a plain `TcpStream`, with conditional
//! requests (`If-None-Match`, `If-Modified-Since`) so a poll of an
//! unchanged artifact costs a `304` and no body.
//!
//! Plain `http://` only, on purpose: what makes a downloaded artifact
//! trustworthy is its ed25519 signature, checked before it is loaded
//! (`chokepoint_rules::sign`), not the transport, so a TLS stack (and its
//! roots, and its updates) on every enforcement box buys no integrity the
//! signature does not already give. Where the rules themselves must stay
//! confidential, run the poll over the management network or a tunnel.
//!
//! Bounded everywhere: connect and each read or write time out, the whole
//! request has a deadline, headers are capped at 64 KiB and the body at
//! the caller's limit. Redirects are not followed (an error names the
//! `Location`). Bodies come by `Content-Length`, `chunked` encoding or
//! until the close.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The most header bytes read.
const MAX_HEADER: usize = 64 << 10;

/// Where to fetch from: `http://host[:port]/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// Host name or address (an IPv6 address without brackets).
    pub host: String,
    /// Port (80 when not given).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parse an `http://` URL.
    pub fn parse(s: &str) -> Result<Url, String> {
        let rest = match s.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "`{scheme}://` is not supported: artifacts are fetched over plain http:// and trusted by their signature (see --trust)"
                ))
            }
            None => return Err(format!("`{s}` is not an http:// URL")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("user names in the URL are not supported".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{authority}`: unclosed `[`"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{s}` names no host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("`{p}` is not a port"))?,
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("the path holds spaces or control characters".into());
        }
        Ok(Url {
            host: host.to_string(),
            port,
            path: path.split('#').next().unwrap_or("/").to_string(),
        })
    }

    /// The same URL with `suffix` appended to its path (`.sig`).
    pub fn with_suffix(&self, suffix: &str) -> Url {
        let (path, query) = match self.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.path.as_str(), None),
        };
        Url {
            path: match query {
                Some(q) => format!("{path}{suffix}?{q}"),
                None => format!("{path}{suffix}"),
            },
            ..self.clone()
        }
    }

    /// The `Host` header's value.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.host_header(), self.path)
    }
}

/// What identifies a version of a resource: sent back on the next poll.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    /// The `ETag` header.
    pub etag: Option<String>,
    /// The `Last-Modified` header.
    pub last_modified: Option<String>,
}

/// A response.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// `304 Not Modified`: what the validators name is still current.
    NotModified,
    /// `200 OK`: the body and its validators.
    Body {
        /// The body.
        bytes: Vec<u8>,
        /// For the next conditional request.
        validators: Validators,
    },
}

/// Limits of one request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connect, and each read and write.
    pub io_timeout: Duration,
    /// The whole request, from connect to the last byte.
    pub deadline: Duration,
    /// The largest body taken.
    pub max_body: u64,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Name resolution, connect, read or write failed, or a limit was hit.
    #[error("{url}: {reason}")]
    Io {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The server answered with a status other than 200 or 304.
    #[error("{url}: HTTP {status}{}", location.as_ref().map(|l| format!(" (redirect to {l}, not followed: give that URL)")).unwrap_or_default())]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// A redirect's target.
        location: Option<String>,
    },
    /// The response is not HTTP as this client reads it.
    #[error("{url}: bad response: {reason}")]
    Protocol {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

impl FetchError {
    /// The status code, for an HTTP error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `GET url`, conditional on `since` when given.
pub fn get(url: &Url, since: Option<&Validators>, limits: &Limits) -> Result<Fetched, FetchError> {
    let started = Instant::now();
    let io = |reason: String| FetchError::Io {
        url: url.to_string(),
        reason,
    };
    let proto = |reason: String| FetchError::Protocol {
        url: url.to_string(),
        reason,
    };
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| io(format!("resolving {}: {e}", url.host)))?
        .collect();
    let mut stream = None;
    let mut last = String::from("no address");
    for a in &addrs {
        match TcpStream::connect_timeout(a, limits.io_timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("connecting to {a}: {e}"),
        }
    }
    let mut s = stream.ok_or_else(|| io(last))?;
    s.set_read_timeout(Some(limits.io_timeout))
        .and_then(|()| s.set_write_timeout(Some(limits.io_timeout)))
        .map_err(|e| io(e.to_string()))?;
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: chokepoint/{}\r\nAccept: */*\r\nConnection: close\r\n",
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    if let Some(v) = since {
        for (name, value) in [
            ("If-None-Match", &v.etag),
            ("If-Modified-Since", &v.last_modified),
        ] {
            // A value with a line break would smuggle headers in.
            if let Some(value) = value.as_ref().filter(|x| !x.contains(['\r', '\n'])) {
                req.push_str(&format!("{name}: {value}\r\n"));
            }
        }
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| io(format!("sending the request: {e}")))?;

    let mut r = Reader {
        s,
        buf: Vec::new(),
        at: 0,
        started,
        deadline: limits.deadline,
    };
    let head = r.head().map_err(|e| e.into_error(url))?;
    let head = std::str::from_utf8(&head).map_err(|_| proto("headers are not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next(), parts.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(proto(format!("status line `{}`", cut(status_line))));
    }
    let status: u16 = code
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| proto(format!("status line `{}`", cut(status_line))))?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| proto(format!("header line `{}`", cut(l))))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    match status {
        200 => {}
        304 => return Ok(Fetched::NotModified),
        _ => {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
                location: header("location"),
            })
        }
    }
    let chunked = header("transfer-encoding").is_some_and(|t| {
        t.to_ascii_lowercase()
            .split(',')
            .any(|x| x.trim() == "chunked")
    });
    let bytes = if chunked {
        r.chunked(limits.max_body)
    } else if let Some(len) = header("content-length") {
        let len: u64 = len
            .parse()
            .map_err(|_| proto(format!("Content-Length `{}`", cut(&len))))?;
        if len > limits.max_body {
            return Err(io(format!(
                "the body is {len} bytes, over the limit of {}",
                limits.max_body
            )));
        }
        r.exactly(len as usize)
    } else {
        r.until_close(limits.max_body)
    }
    .map_err(|e| e.into_error(url))?;
    Ok(Fetched::Body {
        bytes,
        validators: Validators {
            etag: header("etag"),
            last_modified: header("last-modified"),
        },
    })
}

fn cut(s: &str) -> &str {
    let mut end = s.len().min(80);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A read failure, before the URL is put on it.
enum ReadError {
    Io(String),
    Protocol(String),
}

impl ReadError {
    fn into_error(self, url: &Url) -> FetchError {
        match self {
            ReadError::Io(reason) => FetchError::Io {
                url: url.to_string(),
                reason,
            },
            ReadError::Protocol(reason) => FetchError::Protocol {
                url: url.to_string(),
                reason,
            },
        }
    }
}

/// The response stream with what was read of it and not yet taken.
struct Reader {
    s: TcpStream,
    buf: Vec<u8>,
    at: usize,
    started: Instant,
    deadline: Duration,
}

impl Reader {
    /// Read more; false at the end of the stream.
    fn more(&mut self) -> Result<bool, ReadError> {
        if self.started.elapsed() > self.deadline {
            return Err(ReadError::Io(format!(
                "no complete response within {:.0} s",
                self.deadline.as_secs_f64()
            )));
        }
        if self.at > 0 && self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        }
        let mut chunk = [0u8; 64 << 10];
        match self.s.read(&mut chunk) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(ReadError::Io(format!("reading the response: {e}"))),
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.at..]
    }

    /// The status line and headers, without the blank line.
    fn head(&mut self) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(i) = memfind(self.pending(), b"\r\n\r\n") {
                let head = self.pending()[..i].to_vec();
                self.at += i + 4;
                return Ok(head);
            }
            if self.pending().len() > MAX_HEADER {
                return Err(ReadError::Protocol(format!(
                    "headers longer than {MAX_HEADER} bytes"
                )));
            }
            if !self.more()? {
                return Err(ReadError::Io(
                    "the connection closed before the headers ended".into(),
                ));
            }
        }
    }

    /// A line ending in CRLF (chunk sizes), without it.
    fn line(&mut self) -> Result<String, ReadError> {
        loop {
            if let Some(i) = memfind(self.pending(), b"\r\n") {
                let l = String::from_utf8_lossy(&self.pending()[..i]).into_owned();
                self.at += i + 2;
                return Ok(l);
            }
            if self.pending().len() > 1024 {
                return Err(ReadError::Protocol("a chunk-size line over 1 KiB".into()));
            }
            if !self.more()? {
                return Err(ReadError::Io(
                    "the connection closed inside a chunk header".into(),
                ));
            }
        }
    }

    fn exactly(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::with_capacity(n.min(64 << 20));
        while out.len() < n {
            if self.pending().is_empty() && !self.more()? {
                return Err(ReadError::Io(format!(
                    "the connection closed after {} of {n} body bytes",
                    out.len()
                )));
            }
            let take = (n - out.len()).min(self.pending().len());
            out.extend_from_slice(&self.pending()[..take]);
            self.at += take;
        }
        Ok(out)
    }

    fn until_close(&mut self, max: u64) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        loop {
            out.extend_from_slice(self.pending());
            self.at = self.buf.len();
            if out.len() as u64 > max {
                return Err(ReadError::Io(format!(
                    "the body is over the limit of {max} bytes"
                )));
            }
            if !self.more()? {
                return Ok(out);
            }
        }
    }

    fn chunked(&mut self, max: u64) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| ReadError::Protocol(format!("chunk size `{}`", cut(&line))))?;
            if size == 0 {
                // Trailers, if any, up to the blank line.
                while !self.line()?.is_empty() {}
                return Ok(out);
            }
            if out.len() as u64 + size > max {
                return Err(ReadError::Io(format!(
                    "the body is over the limit of {max} bytes"
                )));
            }
            let chunk = self.exactly(size as usize)?;
            out.extend_from_slice(&chunk);
            if !self.line()?.is_empty() {
                return Err(ReadError::Protocol("no CRLF after a chunk".into()));
            }
        }
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    const LIMITS: Limits = Limits {
        io_timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(10),
        max_body: 1 << 20,
    };

    /// A one-connection server on loopback that answers `response` and
    /// hands back the request it read; ends with its connection.
    fn serve(response: Vec<u8>) -> (Url, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 4096];
            while memfind(&req, b"\r\n\r\n").is_none() {
                let n = c.read(&mut b).unwrap();
                assert!(n > 0, "request cut short");
                req.extend_from_slice(&b[..n]);
            }
            c.write_all(&response).unwrap();
            String::from_utf8(req).unwrap()
        });
        (
            Url::parse(&format!("http://127.0.0.1:{port}/rules.chk")).unwrap(),
            h,
        )
    }

    #[test]
    fn urls_parse_and_the_rest_is_refused() {
        let u = Url::parse("http://dist.example:8080/a/rules.chk?v=1").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("dist.example", 8080));
        assert_eq!(u.with_suffix(".sig").path, "/a/rules.chk.sig?v=1");
        assert_eq!(u.to_string(), "http://dist.example:8080/a/rules.chk?v=1");
        let v6 = Url::parse("http://[fd00::1]/r").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("fd00::1", 80));
        assert_eq!(v6.to_string(), "http://[fd00::1]/r");
        assert_eq!(Url::parse("http://h").unwrap().path, "/");
        for bad in [
            "https://h/r",
            "h/r",
            "http://:80/r",
            "http://h:0/",
            "http://h:x/",
            "http://u@h/",
            "http://h/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_body_comes_with_its_validators_and_they_go_back() {
        let (url, h) = serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"v1\"\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\nhello"
                .to_vec(),
        );
        let got = get(&url, None, &LIMITS).unwrap();
        let Fetched::Body { bytes, validators } = got else {
            panic!("{got:?}")
        };
        assert_eq!(bytes, b"hello");
        assert_eq!(validators.etag.as_deref(), Some("\"v1\""));
        let req = h.join().unwrap();
        assert!(req.starts_with("GET /rules.chk HTTP/1.1\r\n"), "{req}");
        assert!(!req.contains("If-None-Match"));
        let (url, h) = serve(b"HTTP/1.1 304 Not Modified\r\n\r\n".to_vec());
        assert_eq!(
            get(&url, Some(&validators), &LIMITS).unwrap(),
            Fetched::NotModified
        );
        let req = h.join().unwrap();
        assert!(req.contains("If-None-Match: \"v1\"\r\n"), "{req}");
        assert!(req.contains("If-Modified-Since: Mon, 01 Jan 2024 00:00:00 GMT\r\n"));
    }

    #[test]
    fn chunked_and_close_delimited_bodies_are_read() {
        let (url, h) = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n".to_vec(),
        );
        let Fetched::Body { bytes, .. } = get(&url, None, &LIMITS).unwrap() else {
            panic!()
        };
        assert_eq!(bytes, b"abcde");
        h.join().unwrap();
        let (url, h) = serve(b"HTTP/1.0 200 OK\r\n\r\nuntil the end".to_vec());
        let Fetched::Body { bytes, .. } = get(&url, None, &LIMITS).unwrap() else {
            panic!()
        };
        assert_eq!(bytes, b"until the end");
        h.join().unwrap();
    }

    #[test]
    fn errors_say_what_went_wrong() {
        let (url, h) = serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec());
        let e = get(&url, None, &LIMITS).unwrap_err();
        assert_eq!(e.status(), Some(404));
        h.join().unwrap();
        let (url, h) = serve(b"HTTP/1.1 302 Found\r\nLocation: http://x/y\r\n\r\n".to_vec());
        assert!(get(&url, None, &LIMITS)
            .unwrap_err()
            .to_string()
            .contains("redirect to http://x/y"));
        h.join().unwrap();
        let (url, h) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec());
        assert!(get(&url, None, &LIMITS)
            .unwrap_err()
            .to_string()
            .contains("after 5 of 10"));
        h.join().unwrap();
        let small = Limits {
            max_body: 4,
            ..LIMITS
        };
        let (url, h) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec());
        assert!(get(&url, None, &small)
            .unwrap_err()
            .to_string()
            .contains("over the limit"));
        h.join().unwrap();
        let (url, h) = serve(b"SSH-2.0-OpenSSH\r\n\r\n".to_vec());
        assert!(matches!(
            get(&url, None, &LIMITS),
            Err(FetchError::Protocol { .. })
        ));
        h.join().unwrap();
        // Nobody listening: a connect error, not a hang.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
        assert!(matches!(
            get(&url, None, &LIMITS),
            Err(FetchError::Io { .. })
        ));
    }

    #[test]
    fn a_server_that_stalls_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (c, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            drop(c);
        });
        let url = Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
        let quick = Limits {
            io_timeout: Duration::from_millis(300),
            ..LIMITS
        };
        let t = Instant::now();
        assert!(matches!(
            get(&url, None, &quick),
            Err(FetchError::Io { .. })
        ));
        assert!(t.elapsed() < Duration::from_millis(1400));
        h.join().unwrap();
    }
}
