//! HTTP/1.x requests: the Host header.

/// Methods that open a request line.
const METHODS: [&[u8]; 12] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
    b"TRACE ",
    b"PROPFIND ",
    b"MKCOL ",
    b"COPY ",
];

/// What the start of a stream holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Request headers complete in `..end` (body excluded), with the Host
    /// header's value if present, verbatim (port included). `body` is the
    /// Content-Length, if any.
    Complete {
        /// The `Host` header's value, if any.
        host: Option<&'a [u8]>,
        /// Where the headers end.
        end: usize,
        /// The body's length, from `Content-Length`.
        body: Option<usize>,
    },
    /// A request, not yet complete.
    NeedMore,
    /// Not an HTTP request.
    NotHttp,
}

/// Could this be the start of a request line?
pub fn looks_like_request(b: &[u8]) -> bool {
    METHODS.iter().any(|m| {
        let n = m.len().min(b.len());
        b[..n] == m[..n]
    }) && !b.is_empty()
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = v {
        v = rest;
    }
    v
}

/// Parse request headers at the start of `b`.
pub fn request(b: &[u8]) -> Request<'_> {
    if !looks_like_request(b) {
        return Request::NotHttp;
    }
    let mut host = None;
    let mut body = None;
    let mut at = 0;
    let mut first = true;
    loop {
        let Some(nl) = b[at..].iter().position(|&c| c == b'\n') else {
            return Request::NeedMore;
        };
        let line = &b[at..at + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += nl + 1;
        if first {
            first = false;
            continue;
        }
        if line.is_empty() {
            return Request::Complete {
                host,
                end: at,
                body,
            };
        }
        if let Some(colon) = line.iter().position(|&c| c == b':') {
            let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
            if host.is_none() && name.eq_ignore_ascii_case(b"host") {
                host = Some(value);
            } else if name.eq_ignore_ascii_case(b"content-length") {
                body = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
            }
        }
    }
}

/// The Host value without its port, for matching (`[v6]:80` → `v6`).
pub fn host_for_match(host: &[u8]) -> &[u8] {
    if let Some(inner) = host.strip_prefix(b"[") {
        return inner.split(|&c| c == b']').next().unwrap_or(inner);
    }
    match host.iter().rposition(|&c| c == b':') {
        Some(i)
            if host[i + 1..].iter().all(u8::is_ascii_digit)
                && host[..i].iter().all(|&c| c != b':') =>
        {
            &host[..i]
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_any_case_and_port() {
        let r = b"GET / HTTP/1.1\r\nUser-Agent: x\r\nhOsT:  Toni.Lan:31337 \r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(
            request(r),
            Request::Complete {
                host: Some(&b"Toni.Lan:31337"[..]),
                end: r.len() - 3,
                body: Some(3)
            }
        );
        assert_eq!(host_for_match(b"toni.lan:31337"), b"toni.lan");
        assert_eq!(host_for_match(b"[2001:db8::1]:80"), b"2001:db8::1");
        assert_eq!(host_for_match(b"example.com"), b"example.com");
    }

    #[test]
    fn split_and_not_http() {
        assert_eq!(request(b"GET / HTTP/1.1\r\nHo"), Request::NeedMore);
        assert_eq!(request(b"GE"), Request::NeedMore);
        assert_eq!(request(b"\x16\x03\x01"), Request::NotHttp);
        assert_eq!(
            request(b"GET / HTTP/1.0\n\n"),
            Request::Complete {
                host: None,
                end: 16,
                body: None
            }
        );
    }
}
