//! The lab's QUIC endpoint, beside the web server: UDP on the HTTPS ports
//! (443 and 8443) of every server address, with the certificates the lab
//! CA mints per SNI and ALPN `h3` (and `h3-29`).
//!
//! It completes QUIC handshakes, v1 and draft-29 alike (quinn accepts
//! both by default, as the 2022 browsers offered both), and serves HTTP/3
//! on each connection (hyperium's `h3` over `h3-quinn`): the web server's
//! page for the request's authority, or `/NNk.bin` / `/NNm.bin` of zeros,
//! so an HTTP/3 client in the client namespace (a browser, or a curl built
//! with HTTP/3) loads the site over QUIC. A connection lasts until the client closes it or it is
//! idle for [`IDLE`]. (The probe's QUIC step measures the handshake, which
//! is where censors act on QUIC: the client's Initial.)
//!
//! quinn runs on a tokio current-thread runtime on a thread of its own;
//! the endpoint stops at the server's lifetime (the process ends then
//! too), and at most [`MAX_CONNECTIONS`] connections are held at once
//! (more are refused, counted in the log).

use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;

use crate::ca::MintingResolver;

/// Connections held at once, at most.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a connection may sit idle.
pub const IDLE: Duration = Duration::from_secs(30);
/// The ALPN protocols offered.
pub const ALPN: [&[u8]; 2] = [b"h3", b"h3-29"];

/// The server configuration: TLS 1.3 with ring, the minting resolver,
/// [`ALPN`], [`IDLE`].
pub fn server_config(resolver: Arc<MintingResolver>) -> Result<quinn::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    tls.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| anyhow::anyhow!("QUIC's TLS: {e}"))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(IDLE.try_into().context("idle timeout")?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Binds UDP `[::]:port` for each port (IPv4 too: a new namespace's
/// sockets are dual-stack) and serves them on a thread of its own for
/// `lifetime`.
pub fn spawn(config: quinn::ServerConfig, ports: &[u16], lifetime: Duration) -> Result<()> {
    let sockets = ports
        .iter()
        .map(|&port| {
            UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
                .with_context(|| format!("listening on UDP port {port}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("the QUIC runtime")?;
    // Endpoints are made on the runtime's thread, but failures to make
    // them are reported here.
    let endpoints = rt.block_on(async {
        let runtime = quinn::default_runtime().context("no async runtime for quinn")?;
        sockets
            .into_iter()
            .map(|s| {
                quinn::Endpoint::new(
                    quinn::EndpointConfig::default(),
                    Some(config.clone()),
                    s,
                    runtime.clone(),
                )
                .context("a QUIC endpoint")
            })
            .collect::<Result<Vec<_>>>()
    })?;
    std::thread::spawn(move || {
        rt.block_on(async move {
            let open = Arc::new(AtomicUsize::new(0));
            for endpoint in &endpoints {
                tokio::spawn(accept_loop(endpoint.clone(), open.clone()));
            }
            tokio::time::sleep(lifetime).await;
            for endpoint in &endpoints {
                endpoint.close(0u32.into(), b"lab server's lifetime is over");
            }
        });
    });
    Ok(())
}

/// Accepts until the endpoint closes; each connection is held until its
/// client closes it or it goes idle.
async fn accept_loop(endpoint: quinn::Endpoint, open: Arc<AtomicUsize>) {
    let mut refused: u64 = 0;
    while let Some(incoming) = endpoint.accept().await {
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::AcqRel);
            incoming.refuse();
            refused += 1;
            if refused.is_power_of_two() {
                eprintln!("lab QUIC server: {refused} connection(s) refused over the cap");
            }
            continue;
        }
        let open = open.clone();
        tokio::spawn(async move {
            if let Ok(conn) = incoming.await {
                // Bounded by the idle timeout: a silent client is dropped.
                serve_h3(conn.clone()).await;
                conn.closed().await;
            }
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Requests on one connection, each answered on a task of its own, until
/// the connection ends (quinn bounds the streams open at once).
async fn serve_h3(conn: quinn::Connection) {
    let Ok(mut h3) = h3::server::builder()
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await
    else {
        return;
    };
    while let Ok(Some(resolver)) = h3.accept().await {
        tokio::spawn(async move {
            if let Ok((req, stream)) = resolver.resolve_request().await {
                let _ = answer(&req, stream).await;
            }
        });
    }
}

/// The web server's answer, over HTTP/3.
async fn answer<S>(
    req: &http::Request<()>,
    mut stream: h3::server::RequestStream<S, Bytes>,
) -> std::result::Result<(), h3::error::StreamError>
where
    S: h3::quic::BidiStream<Bytes>,
{
    let host = req.uri().host().unwrap_or("lab");
    let head_only = req.method() == http::Method::HEAD;
    let (kind, body): (&str, Body) = match crate::web::bin_size(req.uri().path()) {
        Some(n) => ("application/octet-stream", Body::Zeros(n)),
        None => (
            "text/html; charset=utf-8",
            Body::Page(crate::web::page(host)),
        ),
    };
    let len = match &body {
        Body::Zeros(n) => *n,
        Body::Page(p) => p.len() as u64,
    };
    let resp = http::Response::builder()
        .status(http::StatusCode::OK)
        .header("server", "chokepoint-lab")
        .header("content-type", kind)
        .header("content-length", len)
        .body(())
        .expect("a response of fixed parts");
    stream.send_response(resp).await?;
    if !head_only {
        match body {
            Body::Page(p) => stream.send_data(Bytes::from(p)).await?,
            Body::Zeros(mut left) => {
                let chunk = Bytes::from_static(&[0u8; 16384]);
                while left > 0 {
                    let k = left.min(chunk.len() as u64) as usize;
                    stream.send_data(chunk.slice(..k)).await?;
                    left -= k as u64;
                }
            }
        }
    }
    stream.finish().await
}

/// What a request gets.
enum Body {
    Page(String),
    Zeros(u64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::LabCa;

    /// An HTTP/3 GET: the status and the body.
    async fn h3_get(
        send: &mut h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
        url: &str,
    ) -> (http::StatusCode, Vec<u8>) {
        use bytes::Buf;
        let req = http::Request::get(url).body(()).unwrap();
        let mut s = send.send_request(req).await.expect("request");
        s.finish().await.unwrap();
        let resp = s.recv_response().await.expect("response");
        let mut body = Vec::new();
        while let Some(mut chunk) = s.recv_data().await.unwrap() {
            while chunk.has_remaining() {
                let c = chunk.chunk();
                body.extend_from_slice(c);
                let n = c.len();
                chunk.advance(n);
            }
        }
        (resp.status(), body)
    }

    /// A handshake from quinn's client, v1 and draft-29, to a lab QUIC
    /// endpoint on loopback, verified against the lab CA for the name
    /// asked; then HTTP/3 requests (h3's client) for the page and a bin.
    #[test]
    fn completes_handshakes_and_serves_http3_for_any_name_in_both_versions() {
        let ca = LabCa::new("t").unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let resolver = Arc::new(MintingResolver::new(ca, &[]));
        let socket = UdpSocket::bind("[::]:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        drop(socket);
        spawn(
            server_config(resolver).unwrap(),
            &[port],
            Duration::from_secs(20),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (version, alpn) in [(1u32, "h3"), (0xff00_001d, "h3-29")] {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            tls.alpn_protocols = vec![alpn.as_bytes().to_vec()];
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
            let mut client = quinn::ClientConfig::new(Arc::new(crypto));
            client.version(version);
            let (got, page, bin) = rt.block_on(async {
                let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
                let connecting = ep
                    .connect_with(client, SocketAddr::from(([127, 0, 0, 1], port)), "t.me")
                    .unwrap();
                let conn = tokio::time::timeout(Duration::from_secs(5), connecting)
                    .await
                    .expect("handshake in time")
                    .expect("handshake");
                let hd = conn
                    .handshake_data()
                    .unwrap()
                    .downcast::<quinn::crypto::rustls::HandshakeData>()
                    .unwrap();
                // HTTP/3 over it: the page, and a bin.
                let (mut driver, mut send) =
                    h3::client::new(h3_quinn::Connection::new(conn.clone()))
                        .await
                        .expect("HTTP/3 settings");
                let drive = tokio::spawn(async move {
                    let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
                });
                let page = tokio::time::timeout(
                    Duration::from_secs(5),
                    h3_get(&mut send, "https://t.me/"),
                )
                .await
                .expect("page in time");
                let bin = tokio::time::timeout(
                    Duration::from_secs(5),
                    h3_get(&mut send, "https://t.me/100k.bin"),
                )
                .await
                .expect("bin in time");
                conn.close(0u32.into(), b"");
                drive.abort();
                (hd.protocol, page, bin)
            });
            // The handshake verified a certificate for t.me against the CA;
            // the server chose the ALPN of the version offered.
            assert_eq!(got.as_deref(), Some(alpn.as_bytes()), "{version:#x}");
            // And served the web server's page and bins over HTTP/3.
            assert_eq!(page.0, http::StatusCode::OK);
            assert_eq!(
                page.1,
                crate::web::page("t.me").into_bytes(),
                "{version:#x}"
            );
            assert_eq!(bin.0, http::StatusCode::OK);
            assert_eq!(bin.1, vec![0u8; 100_000]);
        }
    }
}
