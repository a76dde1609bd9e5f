//! The HTTP step: one HTTP/1.1 request on an open connection and the
//! response read under one deadline, with httparse for the response head.
//!
//! `Connection: close`, no compression asked for, bodies framed by
//! `Content-Length`, chunked, or the end of the connection. Redirects are
//! not followed (a deliberate difference from OONI: a censor's 302 stays a
//! status code mismatch instead of becoming a fetch of its block page).

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;

use crate::deadline::Deadline;
use crate::failure;
use crate::tls::Stream;

/// The request headers a probe sends (and asks the helper to send), as
/// OONI sends a common browser's so the request looks like one.
pub const REQUEST_HEADERS: [(&str, &str); 3] = [
    (
        "Accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("Accept-Language", "en-US;q=0.8,en;q=0.5"),
    (
        "User-Agent",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    ),
];

/// The largest response head read (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed from a response head; a response with more fails.
const MAX_HEADERS: usize = 128;
/// Informational (1xx) heads skipped before the real one.
const MAX_INFORMATIONAL: usize = 4;
/// The longest chunk-size or trailer line.
const MAX_LINE: usize = 4096;
/// Trailer lines read after the last chunk.
const MAX_TRAILERS: usize = 64;
/// The longest title kept, in characters (OONI's `[^<]{1,128}`).
const MAX_TITLE: usize = 128;

/// What the HTTP step saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpResult {
    /// The response's status code, when a response head came.
    pub status_code: Option<u16>,
    /// Body bytes received (decoded from chunks), also when the body was
    /// cut short by a failure.
    pub body_length: Option<u64>,
    /// Whether the body was longer than the limit and reading stopped.
    pub body_truncated: bool,
    /// The page title, as OONI extracts it.
    pub title: Option<String>,
    /// Response header names, in the order received.
    pub headers: Vec<String>,
    /// OONI's failure string when the step failed (a timeout mid-body
    /// included).
    pub failure: Option<String>,
    /// How long the request and response took.
    pub elapsed_ms: u64,
}

/// A response as read: what came, and how reading ended.
#[derive(Debug, Default)]
pub(crate) struct Response {
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub truncated: bool,
    pub failure: Option<String>,
}

impl Response {
    fn failed(f: String) -> Response {
        Response {
            failure: Some(f),
            ..Response::default()
        }
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The HTTP step's record of this response.
    pub fn record(&self, elapsed_ms: u64) -> HttpResult {
        HttpResult {
            status_code: self.status,
            body_length: self.status.map(|_| self.body.len() as u64),
            body_truncated: self.truncated,
            title: self.status.and_then(|_| title(&self.body)),
            headers: self.headers.iter().map(|(n, _)| n.clone()).collect(),
            failure: self.failure.clone(),
            elapsed_ms,
        }
    }
}

/// What to send.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// The probe's headers as owned pairs.
pub(crate) fn default_headers() -> Vec<(String, String)> {
    REQUEST_HEADERS
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Sends `req` on `stream` and reads the response, all within `timeout`;
/// at most `max_body` body bytes are kept.
pub(crate) fn exchange(
    stream: &mut Stream,
    req: &Request<'_>,
    timeout: Duration,
    max_body: usize,
) -> Response {
    let deadline = Deadline::after(timeout);
    match send(stream, req, deadline) {
        Ok(()) => read_response(stream, deadline, max_body),
        Err(e) => Response::failed(failure::from_io(&e)),
    }
}

fn send(stream: &mut Stream, req: &Request<'_>, deadline: Deadline) -> io::Result<()> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        req.method, req.path, req.host
    );
    for (name, value) in req.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !req.body.is_empty() || req.method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(req.body);
    deadline.arm(stream.socket())?;
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Bytes read from the connection but not used yet, and the connection.
struct Reader<'s> {
    stream: &'s mut Stream,
    pending: Vec<u8>,
    deadline: Deadline,
}

impl Reader<'_> {
    /// Reads more into `pending`; 0 at the end of the connection. A TLS
    /// peer that closes without close_notify counts as the end too:
    /// servers often do, and the framing tells a short body apart.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read_by(&mut chunk, self.deadline) {
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Up to `want` bytes, taken from what is pending or read now; `None`
    /// at the end of the connection.
    fn take(&mut self, want: usize) -> io::Result<Option<Vec<u8>>> {
        if self.pending.is_empty() && self.fill()? == 0 {
            return Ok(None);
        }
        let n = want.min(self.pending.len());
        Ok(Some(self.pending.drain(..n).collect()))
    }

    /// One CRLF-terminated line, without the CRLF.
    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.pending.windows(2).position(|w| w == b"\r\n") {
                let line = self.pending.drain(..i + 2).take(i).collect();
                return Ok(line);
            }
            if self.pending.len() > MAX_LINE {
                return Err(protocol_error("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// A request as the helper reads it.
#[derive(Debug)]
pub(crate) struct IncomingRequest {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// Reads one request (head, and a `Content-Length` body of at most
/// `max_body` bytes) within `deadline`.
pub(crate) fn read_request(
    stream: &mut Stream,
    deadline: Deadline,
    max_body: usize,
) -> io::Result<IncomingRequest> {
    let mut r = Reader {
        stream,
        pending: Vec::new(),
        deadline,
    };
    let (method, path, headers) = read_until_head(&mut r, |buf| {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut slots);
        let status = parsed
            .parse(buf)
            .map_err(|e| format!("bad request head: {e}"))?;
        Ok(status.is_complete().then(|| {
            let method = parsed.method.unwrap_or("").to_string();
            let path = parsed.path.unwrap_or("").to_string();
            (
                status.unwrap(),
                (method, path, owned_headers(parsed.headers)),
            )
        }))
    })?;
    let length = match headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
    {
        None => 0,
        Some((_, v)) => v
            .trim()
            .parse::<u64>()
            .map_err(|_| protocol_error("bad Content-Length"))?,
    };
    if length > max_body as u64 {
        return Err(protocol_error("request body too large"));
    }
    let mut body = Response::default();
    read_length(&mut r, &mut body, length, max_body)?;
    Ok(IncomingRequest {
        method,
        path,
        body: body.body,
    })
}

/// Name and value pairs, owned (values decoded leniently).
fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// Reads until `parse` finds a whole head in what is pending (it returns
/// the head's length and what it made of it), and drops the head.
fn read_until_head<T>(
    r: &mut Reader<'_>,
    mut parse: impl FnMut(&[u8]) -> Result<Option<(usize, T)>, String>,
) -> io::Result<T> {
    loop {
        if let Some((len, head)) = parse(&r.pending).map_err(protocol_error)? {
            r.pending.drain(..len);
            return Ok(head);
        }
        if r.pending.len() > MAX_HEAD {
            return Err(protocol_error("head too large"));
        }
        if r.fill()? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// How the body is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads a response head and body. A failure part-way keeps what came.
pub(crate) fn read_response(stream: &mut Stream, deadline: Deadline, max_body: usize) -> Response {
    let mut r = Reader {
        stream,
        pending: Vec::new(),
        deadline,
    };
    let mut response = Response::default();
    let framing = match read_head(&mut r, &mut response) {
        Ok(f) => f,
        Err(e) => {
            response.failure = Some(io_or_protocol(&e));
            return response;
        }
    };
    let outcome = match framing {
        Framing::None => Ok(()),
        Framing::Length(n) => read_length(&mut r, &mut response, n, max_body),
        Framing::Chunked => read_chunked(&mut r, &mut response, max_body),
        Framing::UntilClose => read_until_close(&mut r, &mut response, max_body),
    };
    if let Err(e) = outcome {
        response.failure = Some(io_or_protocol(&e));
    }
    response
}

/// A failure string: OONI's for I/O, `unknown_failure` for a response
/// that does not parse.
fn io_or_protocol(e: &io::Error) -> String {
    if e.get_ref().is_some_and(|i| i.is::<ProtocolError>()) {
        return failure::unknown(e);
    }
    failure::from_io(e)
}

/// A response that breaks HTTP/1.1, as opposed to an I/O failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ProtocolError(String);

fn protocol_error(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, ProtocolError(what.into()))
}

fn read_head(r: &mut Reader<'_>, response: &mut Response) -> io::Result<Framing> {
    for _ in 0..=MAX_INFORMATIONAL {
        let (status, headers) = read_until_head(r, |buf| {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut slots);
            let status = parsed
                .parse(buf)
                .map_err(|e| format!("bad response head: {e}"))?;
            Ok(status.is_complete().then(|| {
                let code = parsed.code.unwrap_or(0);
                (status.unwrap(), (code, owned_headers(parsed.headers)))
            }))
        })?;
        // 101 switches protocols: it is the final answer to this request.
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        response.status = Some(status);
        response.headers = headers;
        return framing(response, status);
    }
    Err(protocol_error("too many informational responses"))
}

fn framing(response: &Response, status: u16) -> io::Result<Framing> {
    if status == 204 || status == 304 || status == 101 {
        return Ok(Framing::None);
    }
    let chunked = response.header("Transfer-Encoding").is_some_and(|te| {
        te.rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    });
    if chunked {
        return Ok(Framing::Chunked);
    }
    match response.header("Content-Length") {
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Framing::Length)
            .map_err(|_| protocol_error("bad Content-Length")),
        None => Ok(Framing::UntilClose),
    }
}

/// Appends up to `n` body bytes; false once the body limit is reached.
fn keep(response: &mut Response, bytes: &[u8], max_body: usize) -> bool {
    let room = max_body.saturating_sub(response.body.len());
    response
        .body
        .extend_from_slice(&bytes[..bytes.len().min(room)]);
    if bytes.len() > room {
        response.truncated = true;
        return false;
    }
    true
}

fn read_length(r: &mut Reader<'_>, resp: &mut Response, n: u64, max: usize) -> io::Result<()> {
    let mut left = n;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(64 * 1024);
        let Some(bytes) = r.take(want)? else {
            return Err(io::ErrorKind::UnexpectedEof.into());
        };
        left -= bytes.len() as u64;
        if !keep(resp, &bytes, max) {
            return Ok(());
        }
    }
    Ok(())
}

fn read_until_close(r: &mut Reader<'_>, resp: &mut Response, max: usize) -> io::Result<()> {
    while let Some(bytes) = r.take(64 * 1024)? {
        if !keep(resp, &bytes, max) {
            return Ok(());
        }
    }
    Ok(())
}

fn read_chunked(r: &mut Reader<'_>, resp: &mut Response, max: usize) -> io::Result<()> {
    loop {
        let line = r.line()?;
        let size_text = String::from_utf8_lossy(&line);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size =
            u64::from_str_radix(size_text, 16).map_err(|_| protocol_error("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line; a peer that closes here has
            // sent the whole body anyway.
            for _ in 0..MAX_TRAILERS {
                match r.line() {
                    Ok(l) if l.is_empty() => return Ok(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
        read_length(r, resp, size, max)?;
        if resp.truncated {
            return Ok(());
        }
        if !r.line()?.is_empty() {
            return Err(protocol_error("chunk not followed by CRLF"));
        }
    }
}

/// The page title as OONI's `WebGetTitle` finds it: the first
/// `<title>...</title>` (any case) holding 1 to 128 characters and no `<`.
pub fn title(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    // ASCII lower-casing keeps byte offsets, so positions found in `lower`
    // index `text` too.
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("<title>") {
        let start = from + at + "<title>".len();
        let inner: String = text[start..]
            .chars()
            .take_while(|&c| c != '<')
            .take(MAX_TITLE + 1)
            .collect();
        let count = inner.chars().count();
        let end = start + inner.len();
        if (1..=MAX_TITLE).contains(&count) && lower[end..].starts_with("</title>") {
            return Some(inner);
        }
        from = start;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// Serves `wire` to one client, then closes; what the reader made of it.
    fn read_served(wire: &'static [u8], max_body: usize) -> Response {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = s.write_all(wire);
        });
        let mut stream = Stream::Plain(TcpStream::connect(addr).unwrap());
        let r = read_response(
            &mut stream,
            Deadline::after(Duration::from_secs(5)),
            max_body,
        );
        server.join().unwrap();
        r
    }

    #[test]
    fn bodies_by_length_chunks_and_close() {
        let r = read_served(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
            99,
        );
        assert_eq!(
            (r.status, r.body.as_slice(), &r.failure),
            (Some(200), &b"hello"[..], &None)
        );
        assert_eq!(r.header("x-a"), Some("b"));

        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n";
        let r = read_served(chunked, 99);
        assert_eq!((r.body.as_slice(), r.failure), (&b"abcde"[..], None));

        let r = read_served(b"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\nmoved", 99);
        assert_eq!((r.status, r.body.as_slice()), (Some(302), &b"moved"[..]));

        let r = read_served(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            99,
        );
        assert_eq!((r.status, r.body.len(), r.failure), (Some(204), 0, None));
    }

    #[test]
    fn short_and_long_bodies() {
        let r = read_served(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 99);
        assert_eq!(
            (r.body.len(), r.failure.as_deref()),
            (3, Some(failure::EOF))
        );

        let r = read_served(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
            4,
        );
        assert_eq!((r.body.len(), r.truncated, r.failure), (4, true, None));

        let r = read_served(b"HTTP/1.1 200 OK\r\n", 99);
        assert_eq!((r.status, r.failure.as_deref()), (None, Some(failure::EOF)));

        let r = read_served(b"SSH-2.0-OpenSSH\r\n\r\n", 99);
        assert!(r.failure.unwrap().starts_with("unknown_failure"));
    }

    #[test]
    fn titles_like_ooni() {
        assert_eq!(
            title(b"<html><TITLE>Hello World</Title>").as_deref(),
            Some("Hello World")
        );
        assert_eq!(title(b"<title></title>"), None);
        assert_eq!(title(b"<title>a<b>c</title>"), None);
        assert_eq!(title(b"<title lang=en>x</title>"), None);
        assert_eq!(
            title(b"<title>x</title><title>y</title>").as_deref(),
            Some("x")
        );
        let long = format!("<title>{}</title>", "a".repeat(129));
        assert_eq!(title(long.as_bytes()), None);
        let edge = format!("<title>{}</title>", "é".repeat(128));
        assert_eq!(title(edge.as_bytes()).map(|t| t.chars().count()), Some(128));
        // A first candidate that fails does not hide a later one.
        assert_eq!(title(b"<title><title>ok</title>").as_deref(), Some("ok"));
    }
}
