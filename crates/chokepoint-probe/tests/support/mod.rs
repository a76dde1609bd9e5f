//! Local servers for the integration tests: a DNS server, web servers
//! (plain and TLS with a CA made by rcgen), a resetter, a black hole, a
//! freezer, a trickler, a QUIC server (quinn), a UDP black hole, a censor
//! that reads the ClientHello (with the engine's own parser) and the
//! helper. All on loopback (127.0.0.1 and
//! ::1), all stopped when dropped and all ending by themselves after
//! [`LIFETIME`] anyway.

#![allow(dead_code)] // each test file uses a part

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chokepoint_probe::{CertificateDer, Helper, ProbeConfig, StopHandle, Timeouts};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use rustls::pki_types::PrivateKeyDer;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// The longest any test server lives.
pub const LIFETIME: Duration = Duration::from_secs(30);
/// How often idle server loops look at their stop flag.
const POLL: Duration = Duration::from_millis(10);
/// Connections one test server handles over its life.
const MAX_CONNECTIONS: usize = 64;

pub const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Short timeouts so the failing rows finish fast.
pub fn timeouts() -> Timeouts {
    Timeouts {
        dns_per_try: Duration::from_millis(300),
        dns_tries: 2,
        connect: Duration::from_millis(500),
        tls: Duration::from_secs(1),
        quic: Duration::from_secs(1),
        http: Duration::from_millis(1500),
        control: Duration::from_secs(8),
    }
}

/// A probe (or helper) configuration for these tests.
pub fn config(
    resolver: SocketAddr,
    helper: Option<SocketAddr>,
    ca: &[CertificateDer<'static>],
) -> ProbeConfig {
    let mut cfg = ProbeConfig::new(resolver);
    cfg.helper = helper;
    cfg.ca = ca.to_vec();
    cfg.timeouts = timeouts();
    cfg
}

/// Server threads and their stop flag; dropping stops and joins them.
pub struct Running {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    helper: Option<StopHandle>,
    /// Sockets kept open for the server's life (the black hole's filler).
    _held: Vec<TcpStream>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = &self.helper {
            h.stop();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Running {
    /// One server thread with its stop flag.
    fn one(addr: SocketAddr, stop: Arc<AtomicBool>, thread: JoinHandle<()>) -> Running {
        Running {
            addr,
            stop,
            threads: vec![thread],
            helper: None,
            _held: vec![],
        }
    }
}

/// The verdict a row expects: blocking, failure and analysis keys.
#[track_caller]
pub fn expect(
    m: &chokepoint_probe::Measurement,
    blocking: Option<chokepoint_probe::Blocking>,
    failure: Option<&str>,
    analysis: &[&str],
) {
    let json = serde_json::to_string_pretty(m).unwrap();
    assert_eq!(m.blocking, blocking, "blocking in {json}");
    assert_eq!(m.failure.as_deref(), failure, "failure in {json}");
    assert_eq!(m.analysis, analysis, "analysis in {json}");
}

/// True until stopped or past the lifetime.
fn alive(stop: &AtomicBool, born: Instant) -> bool {
    !stop.load(Ordering::SeqCst) && born.elapsed() < LIFETIME
}

/// What the DNS server answers for a name.
#[derive(Clone)]
pub enum Answer {
    Addrs(Vec<IpAddr>),
    NxDomain,
}

/// A DNS server on 127.0.0.1 (UDP, and TCP on the same port). Names not
/// in `table` are NXDOMAIN. With `truncate_udp` every UDP answer is sent
/// empty with TC set, so the client must ask again over TCP.
pub fn dns_server(table: &[(&str, Answer)], truncate_udp: bool) -> Running {
    let table: Vec<(String, Answer)> = table
        .iter()
        .map(|(n, a)| (n.to_ascii_lowercase(), a.clone()))
        .collect();
    let (udp, tcp) = udp_and_tcp();
    let addr = udp.local_addr().unwrap();
    udp.set_read_timeout(Some(POLL)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let born = Instant::now();
    let udp_thread = {
        let (stop, table) = (Arc::clone(&stop), table.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while alive(&stop, born) {
                let Ok((n, from)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = dns_reply(&buf[..n], &table, truncate_udp) {
                    let _ = udp.send_to(&reply, from);
                }
            }
        })
    };
    let tcp_thread = accept_loop(tcp, Arc::clone(&stop), born, move |mut s, _| {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if s.read_exact(&mut q).is_err() {
            return;
        }
        if let Some(reply) = dns_reply(&q, &table, false) {
            let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            let _ = s.write_all(&framed);
        }
    });
    Running {
        addr,
        stop,
        threads: vec![udp_thread, tcp_thread],
        helper: None,
        _held: vec![],
    }
}

/// A UDP socket and a TCP listener on one 127.0.0.1 port (retried when
/// the TCP port is taken).
fn udp_and_tcp() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind((V4, 0)).unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

fn dns_reply(query: &[u8], table: &[(String, Answer)], truncate: bool) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries().first()?.clone();
    let name = question
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut r = Message::new();
    r.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(true)
        .set_recursion_available(true)
        .add_query(question.clone());
    match table.iter().find(|(n, _)| *n == name).map(|(_, a)| a) {
        None | Some(Answer::NxDomain) => {
            r.set_response_code(ResponseCode::NXDomain);
        }
        Some(Answer::Addrs(_)) if truncate => {
            r.set_truncated(true);
        }
        Some(Answer::Addrs(addrs)) => {
            for ip in addrs {
                let rdata = match (ip, question.query_type()) {
                    (IpAddr::V4(v4), RecordType::A) => RData::A((*v4).into()),
                    (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA((*v6).into()),
                    _ => continue,
                };
                r.add_answer(Record::from_rdata(question.name().clone(), 60, rdata));
            }
        }
    }
    r.to_vec().ok()
}

/// Accepts on `listener` until stopped, one thread per connection (at
/// most [`MAX_CONNECTIONS`]), all joined before the loop's thread ends.
fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    born: Instant,
    handle: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static,
) -> JoinHandle<()> {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        std::thread::scope(|s| {
            let mut served = 0;
            while alive(&stop, born) && served < MAX_CONNECTIONS {
                match listener.accept() {
                    Ok((sock, _)) => {
                        served += 1;
                        sock.set_nonblocking(false).unwrap();
                        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                        sock.set_write_timeout(Some(Duration::from_secs(3)))
                            .unwrap();
                        let (handle, stop) = (&handle, &*stop);
                        s.spawn(move || handle(sock, stop));
                    }
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        });
    })
}

/// Runs `handle` for every connection to `listener`.
pub fn serve(
    listener: TcpListener,
    handle: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static,
) -> Running {
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = accept_loop(listener, Arc::clone(&stop), Instant::now(), handle);
    Running::one(addr, stop, thread)
}

/// Binds `[::1]:0` and then `127.0.0.1` on the same port, so one URL
/// reaches a different server from each address (the probe is sent to one,
/// the helper to the other). Retries when the IPv4 port is taken.
pub fn twin<T>(bind_v4: impl Fn(SocketAddr) -> std::io::Result<T>) -> (TcpListener, T) {
    for _ in 0..20 {
        let v6 = TcpListener::bind((V6, 0)).unwrap();
        let port = v6.local_addr().unwrap().port();
        if let Ok(v4) = bind_v4(SocketAddr::new(V4, port)) {
            return (v6, v4);
        }
    }
    panic!("no port free on both ::1 and 127.0.0.1");
}

/// A CA and a server configuration for `names`, made by rcgen.
pub struct Pki {
    pub ca: CertificateDer<'static>,
    pub server: Arc<ServerConfig>,
}

pub fn pki(names: &[&str]) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    Pki {
        ca: ca_cert.der().clone(),
        server: Arc::new(server),
    }
}

/// Reads a request head (to the blank line), bounded in size.
fn read_head(s: &mut impl Read) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while head.len() < 64 * 1024 {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
        if head.ends_with(b"\r\n\r\n") {
            return true;
        }
    }
    false
}

/// An HTML page with a title and `len` bytes in all.
pub fn html(title: &str, len: usize) -> Vec<u8> {
    let mut page = format!("<html><head><title>{title}</title></head><body>").into_bytes();
    page.resize(len.max(page.len()), b'x');
    page
}

/// What a web server does once the request is read.
#[derive(Clone)]
pub enum Reply {
    /// A whole response: status, extra header lines, body.
    Page(u16, &'static str, Vec<u8>),
    /// 200 announcing `total` bytes, `sent` of them, then nothing until
    /// stopped (the "freeze").
    Freeze { total: usize, sent: usize },
    /// 200 with `total` bytes, `chunk` bytes every `every` (a throttle).
    Trickle {
        total: usize,
        chunk: usize,
        every: Duration,
    },
}

fn reply(s: &mut impl Write, r: &Reply, stop: &AtomicBool) {
    let born = Instant::now();
    let head = |status: u16, extra: &str, len: usize| {
        format!("HTTP/1.1 {status} X\r\n{extra}Content-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    match r {
        Reply::Page(status, extra, body) => {
            let _ = s.write_all(head(*status, extra, body.len()).as_bytes());
            let _ = s.write_all(body);
        }
        Reply::Freeze { total, sent } => {
            let _ = s.write_all(head(200, "Content-Type: text/html\r\n", *total).as_bytes());
            let _ = s.write_all(&html("Frozen", *total)[..*sent]);
            let _ = s.flush();
            while alive(stop, born) {
                std::thread::sleep(POLL);
            }
        }
        Reply::Trickle {
            total,
            chunk,
            every,
        } => {
            let _ = s.write_all(head(200, "Content-Type: text/html\r\n", *total).as_bytes());
            let body = html("Slow", *total);
            for piece in body.chunks(*chunk) {
                if !alive(stop, born) || s.write_all(piece).and_then(|()| s.flush()).is_err() {
                    return;
                }
                std::thread::sleep(*every);
            }
        }
    }
    let _ = s.flush();
}

/// A cleartext web server.
pub fn http_server(listener: TcpListener, r: Reply) -> Running {
    serve(listener, move |mut s, stop| {
        if read_head(&mut s) {
            reply(&mut s, &r, stop);
        }
    })
}

/// A TLS web server with `pki`'s certificate.
pub fn https_server(listener: TcpListener, pki: &Pki, r: Reply) -> Running {
    let config = Arc::clone(&pki.server);
    serve(listener, move |s, stop| serve_tls(s, &config, &r, stop))
}

/// One TLS connection: the handshake, a request, the reply.
fn serve_tls(s: TcpStream, config: &Arc<ServerConfig>, r: &Reply, stop: &AtomicBool) {
    let Ok(conn) = ServerConnection::new(Arc::clone(config)) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, s);
    if read_head(&mut tls) {
        reply(&mut tls, r, stop);
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
}

/// A TLS server whose response is one big record sent a few bytes at a
/// time: no record is whole until long after any deadline (a throttle
/// that holds back packets, seen from inside one record).
pub fn https_dribbler(listener: TcpListener, pki: &Pki) -> Running {
    let config = Arc::clone(&pki.server);
    serve(listener, move |s, stop| {
        let Ok(conn) = ServerConnection::new(Arc::clone(&config)) else {
            return;
        };
        let mut tls = StreamOwned::new(conn, s);
        if !read_head(&mut tls) {
            return;
        }
        let body = html("Dribbled", 12_000);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        let _ = tls
            .conn
            .writer()
            .write_all(&[head.as_bytes(), &body].concat());
        let mut wire = Vec::new();
        while tls.conn.wants_write() {
            if tls.conn.write_tls(&mut wire).is_err() {
                return;
            }
        }
        let born = Instant::now();
        for piece in wire.chunks(20) {
            if !alive(stop, born) || tls.sock.write_all(piece).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// Reads the ClientHello, then resets the connection (SO_LINGER 0 and
/// close send a RST), as a censor does on a forbidden SNI.
pub fn resetter(listener: TcpListener) -> Running {
    serve(listener, |mut s, _| {
        let mut hello = [0u8; 1024];
        if matches!(s.read(&mut hello), Ok(n) if n > 0) {
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        }
    })
}

/// A listener whose accept queue is full: SYNs to it are dropped, as a
/// censor dropping the SYN does, so connects time out.
pub fn black_hole(addr: SocketAddr) -> std::io::Result<Running> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.bind(&addr.into())?;
    // Backlog 0: the kernel queues one connection and drops SYNs beyond.
    sock.listen(0)?;
    let listener: TcpListener = sock.into();
    let mut held = Vec::new();
    for _ in 0..2 {
        let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            break;
        };
        held.push(s);
    }
    // Nothing accepts: the listener lives in the returned value.
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = std::thread::spawn({
        let stop = Arc::clone(&stop);
        let born = Instant::now();
        move || {
            let _listener = listener;
            while alive(&stop, born) {
                std::thread::sleep(POLL);
            }
        }
    });
    Ok(Running {
        addr,
        stop,
        threads: vec![keeper],
        helper: None,
        _held: held,
    })
}

/// The control helper on 127.0.0.1, resolving with `resolver`, trusting `ca`.
pub fn helper(resolver: SocketAddr, ca: &[CertificateDer<'static>]) -> Running {
    let cfg = config(resolver, None, ca);
    let helper = Helper::bind(SocketAddr::new(V4, 0), &cfg).unwrap();
    let addr = helper.local_addr().unwrap();
    let stop_handle = helper.stop_handle();
    let thread = std::thread::spawn(move || {
        helper.serve(LIFETIME);
    });
    Running {
        addr,
        stop: Arc::new(AtomicBool::new(false)),
        threads: vec![thread],
        helper: Some(stop_handle),
        _held: vec![],
    }
}

/// A QUIC server (quinn) on `socket` with `pki`'s certificate, ALPN `h3`
/// and `h3-29`, taking v1 and draft-29: it completes handshakes and
/// holds each connection until the client closes it.
pub fn quic_server(socket: UdpSocket, pki: &Pki) -> Running {
    let addr = socket.local_addr().unwrap();
    let mut tls = (*pki.server).clone();
    tls.alpn_protocols = vec![b"h3".to_vec(), b"h3-29".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::spawn({
        let stop = Arc::clone(&stop);
        let born = Instant::now();
        move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let runtime = quinn::default_runtime().unwrap();
                let endpoint = quinn::Endpoint::new(
                    quinn::EndpointConfig::default(),
                    Some(config),
                    socket,
                    runtime,
                )
                .unwrap();
                let mut served = 0;
                while alive(&stop, born) && served < MAX_CONNECTIONS {
                    let Ok(Some(incoming)) =
                        tokio::time::timeout(POLL * 5, endpoint.accept()).await
                    else {
                        continue;
                    };
                    served += 1;
                    tokio::spawn(async move {
                        if let Ok(conn) = incoming.await {
                            let _ = tokio::time::timeout(LIFETIME, conn.closed()).await;
                        }
                    });
                }
                endpoint.close(0u32.into(), b"");
            });
        }
    });
    Running::one(addr, stop, thread)
}

/// A UDP socket that reads and answers nothing: datagrams to it vanish,
/// as a censor dropping them makes them.
pub fn udp_black_hole(socket: UdpSocket) -> Running {
    let addr = socket.local_addr().unwrap();
    socket.set_read_timeout(Some(POLL)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::spawn({
        let stop = Arc::clone(&stop);
        let born = Instant::now();
        move || {
            let mut buf = [0u8; 2048];
            while alive(&stop, born) {
                let _ = socket.recv_from(&mut buf);
            }
        }
    });
    Running::one(addr, stop, thread)
}

/// What a ClientHello carried, as the engine's parser reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    pub sni: Option<String>,
    pub ech: bool,
}

/// Peeks at the first TLS record of `s` (leaving it to be read) and
/// parses the ClientHello in it with chokepoint-core's parser.
pub fn peek_hello(s: &TcpStream) -> Option<Hello> {
    let mut buf = vec![0u8; 16 * 1024];
    let born = Instant::now();
    // The hello can arrive in pieces: peek until the record is whole.
    while born.elapsed() < Duration::from_secs(2) {
        let n = s.peek(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(record) = chokepoint_core::tls::first_record(&buf[..n]) {
            let ch = chokepoint_core::tls::handshake(record)?;
            return Some(Hello {
                sni: ch.sni.map(|n| String::from_utf8_lossy(n).into_owned()),
                ech: ch.ech,
            });
        }
        std::thread::sleep(POLL);
    }
    None
}

/// A TLS web server that reads each ClientHello first, with the engine's
/// parser, and sends what it saw on `seen`. With `reset_ech` it is also a
/// censor: hellos with an ECH extension are reset (SO_LINGER 0), as a DPI
/// box blocking ECH does; the rest are served.
pub fn hello_reader(
    listener: TcpListener,
    pki: &Pki,
    r: Reply,
    seen: std::sync::mpsc::Sender<Hello>,
    reset_ech: bool,
) -> Running {
    let config = Arc::clone(&pki.server);
    let seen = std::sync::Mutex::new(seen);
    serve(listener, move |s, stop| {
        let Some(hello) = peek_hello(&s) else {
            return;
        };
        let _ = seen.lock().unwrap().send(hello.clone());
        if reset_ech && hello.ech {
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            return;
        }
        serve_tls(s, &config, &r, stop);
    })
}
