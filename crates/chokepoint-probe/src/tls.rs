//! The TLS step: a rustls handshake on a connected socket, with the host as
//! SNI, verified against the configured trust anchors.
//!
//! The handshake is driven by hand (write what rustls wants written, read
//! one record, process) rather than with `complete_io`, so that the whole
//! handshake, not each read, is held to the deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde::Serialize;

use crate::deadline::{millis_since, Deadline};
use crate::ech::{self, Ech};
use crate::failure;

/// What the TLS step saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsResult {
    /// The endpoint the handshake ran on.
    pub address: SocketAddr,
    /// The SNI sent (the URL's host; empty for an address, which rustls
    /// does not put in SNI).
    pub server_name: String,
    /// OONI's failure string when the handshake failed.
    pub failure: Option<String>,
    /// The negotiated version (`TLSv1.3`, `TLSv1.2`) when it worked.
    pub version: Option<String>,
    /// The ECH extension the ClientHello carried (`grease`), if any.
    pub ech: Option<Ech>,
    /// How long the handshake took.
    pub elapsed_ms: u64,
}

/// A connection the HTTP step can use: plain TCP, or TLS over it.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// The socket underneath, to set timeouts on.
    pub fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Stream {
    /// Reads what has arrived, within `deadline`. For TLS that can take
    /// several socket reads (a record arrives in pieces), each armed with
    /// the time left, so a peer trickling bytes cannot stretch the step:
    /// rustls's own `Read` loops until a whole record is in, with no
    /// deadline of its own. 0 at a clean end (close_notify, or the end of
    /// a plain connection); `UnexpectedEof` when a TLS peer just closes.
    pub fn read_by(&mut self, buf: &mut [u8], deadline: Deadline) -> io::Result<usize> {
        let tls = match self {
            Stream::Plain(s) => {
                deadline.arm(s)?;
                return s.read(buf);
            }
            Stream::Tls(tls) => &mut **tls,
        };
        let StreamOwned { conn, sock } = tls;
        loop {
            match conn.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            deadline.arm(sock)?;
            let eof = conn.read_tls(sock)? == 0;
            conn.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            while conn.wants_write() {
                deadline.arm(sock)?;
                conn.write_tls(sock)?;
            }
            if eof {
                // rustls now knows the end came; its reader says how.
                return conn.reader().read(buf);
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// The client configuration: ring as the crypto provider, rustls's safe
/// default versions (TLS 1.2 and 1.3), ALPN `http/1.1` only (the HTTP step
/// speaks nothing else), and `ca` as the only trust anchors. With no
/// anchors every certificate fails as `ssl_unknown_authority`: the
/// handshake still runs, so blocking of the ClientHello is still seen.
/// Certificates that do not parse as anchors are skipped. With `ech` the
/// hello carries that ECH extension, and TLS 1.3 is the only version
/// offered (ECH has no other).
pub(crate) fn client_config(
    ca: &[CertificateDer<'static>],
    ech: Option<Ech>,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(ca.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider);
    let builder = match ech {
        None => builder.with_safe_default_protocol_versions(),
        Some(Ech::Grease) => builder.with_ech(ech::grease_mode()?),
    };
    let mut config = builder
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Runs the handshake on `sock`; the stream when it worked.
pub(crate) fn handshake(
    sock: TcpStream,
    host: &str,
    config: &Arc<ClientConfig>,
    ech: Option<Ech>,
    timeout: Duration,
) -> (TlsResult, Option<Stream>) {
    let start = Instant::now();
    let address = sock
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut record = TlsResult {
        address,
        server_name: if host.parse::<std::net::IpAddr>().is_ok() {
            String::new()
        } else {
            host.to_string()
        },
        failure: None,
        version: None,
        ech,
        elapsed_ms: 0,
    };
    let outcome = ServerName::try_from(host.to_string())
        .map_err(|e| failure::unknown(&e))
        .and_then(|name| {
            ClientConnection::new(Arc::clone(config), name)
                .map_err(|e| failure::from_tls(&e).into())
        })
        .and_then(|conn| drive(conn, sock, Deadline::after(timeout)));
    record.elapsed_ms = millis_since(start);
    match outcome {
        Ok(stream) => {
            record.version = stream.conn.protocol_version().map(version_name);
            (record, Some(Stream::Tls(Box::new(stream))))
        }
        Err(f) => {
            record.failure = Some(f);
            (record, None)
        }
    }
}

/// Moves the handshake on until it is done, fails, or runs out of time.
fn drive(
    mut conn: ClientConnection,
    mut sock: TcpStream,
    deadline: Deadline,
) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
    let io_fail = |e: io::Error| failure::from_io(&e);
    // Each pass reads at least one record or fails, and the deadline
    // bounds the passes in time.
    while conn.is_handshaking() {
        deadline.arm(&sock).map_err(io_fail)?;
        while conn.wants_write() {
            conn.write_tls(&mut sock).map_err(io_fail)?;
        }
        if !conn.is_handshaking() {
            break;
        }
        deadline.arm(&sock).map_err(io_fail)?;
        if conn.read_tls(&mut sock).map_err(io_fail)? == 0 {
            return Err(failure::EOF.to_string());
        }
        if let Err(e) = conn.process_new_packets() {
            // Tell the server why (an alert), as a browser would.
            let _ = conn.write_tls(&mut sock);
            return Err(failure::from_tls(&e).to_string());
        }
    }
    // The client's Finished may still be queued.
    while conn.wants_write() {
        deadline.arm(&sock).map_err(io_fail)?;
        conn.write_tls(&mut sock).map_err(io_fail)?;
    }
    Ok(StreamOwned::new(conn, sock))
}

fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        other => format!("{other:?}"),
    }
}
