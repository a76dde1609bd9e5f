//! Protocol signatures through the censor: a VPN's, a proxy's or a call's
//! first packet sent from the client to the lab's echo service, to see
//! whether a censor that recognises the protocol lets it through.
//!
//! The lab cannot hold a WireGuard or OpenVPN server for every class, and
//! it does not need one to show signature blocking: the censor decides on
//! the client's first packet, before any server could answer. So the
//! server runs an echo service (RFC 862) on the protocols' usual ports,
//! and a signature target sends the first packet a real client sends (the
//! shapes of `chokepoint_testkit::vpn`, taken from the protocol lab's
//! captures of wireguard-go, OpenVPN 2.6, turnutils and OpenSSH) and waits
//! for it to come back. Echoed: the packet passed (`blocking: false`).
//! Nothing back, or a reset: `blocking: "blocked"`, with OONI's failure
//! string. It says what a censor does with the first packet, not whether a
//! whole tunnel would work; the protocol lab (tests/lab/protocols.sh) runs
//! the real clients.
//!
//! Targets are URLs: `wireguard://HOST[:51820]`, `openvpn://HOST[:1194]`
//! (UDP, `--tls-crypt`), `openvpn+tcp://HOST[:1194]`, `stun://HOST[:3478]`,
//! `ssh://HOST[:22]`, `bittorrent://HOST[:6881]`,
//! `fully-encrypted://HOST[:8388]` (random bytes, as Shadowsocks sends).

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chokepoint_testkit::vpn;

/// UDP ports the echo service answers on.
pub const ECHO_UDP: [u16; 4] = [7, 1194, 3478, 51820];
/// TCP ports the echo service answers on.
pub const ECHO_TCP: [u16; 5] = [7, 22, 1194, 6881, 8388];
/// TCP connections echoed at once, at most.
const MAX_TCP: usize = 64;
/// Bytes echoed per TCP connection, at most.
const MAX_ECHO: usize = 64 * 1024;

/// A protocol whose first packet a target sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// A WireGuard handshake initiation (UDP).
    Wireguard,
    /// An OpenVPN hard reset with `--tls-crypt` (UDP).
    Openvpn,
    /// The same over TCP, behind its length.
    OpenvpnTcp,
    /// A STUN binding request (UDP).
    Stun,
    /// An OpenSSH client banner (TCP).
    Ssh,
    /// A BitTorrent peer handshake (TCP).
    Bittorrent,
    /// 300 random bytes, a fully encrypted proxy's first packet (TCP).
    FullyEncrypted,
}

impl Signature {
    /// Every signature, with its URL scheme and default port.
    pub const ALL: [(Signature, &'static str, u16); 7] = [
        (Signature::Wireguard, "wireguard", 51820),
        (Signature::Openvpn, "openvpn", 1194),
        (Signature::OpenvpnTcp, "openvpn+tcp", 1194),
        (Signature::Stun, "stun", 3478),
        (Signature::Ssh, "ssh", 22),
        (Signature::Bittorrent, "bittorrent", 6881),
        (Signature::FullyEncrypted, "fully-encrypted", 8388),
    ];

    fn udp(self) -> bool {
        matches!(
            self,
            Signature::Wireguard | Signature::Openvpn | Signature::Stun
        )
    }

    /// The first packet, from `seed`.
    pub fn payload(self, seed: u64) -> Vec<u8> {
        match self {
            Signature::Wireguard => vpn::wireguard_initiation(seed),
            Signature::Openvpn => vpn::openvpn_reset(vpn::OpenVpnWrap::TlsCrypt, seed),
            Signature::OpenvpnTcp => {
                vpn::openvpn_tcp(&vpn::openvpn_reset(vpn::OpenVpnWrap::TlsCrypt, seed))
            }
            Signature::Stun => vpn::stun_binding_request(seed),
            Signature::Ssh => vpn::ssh_banner(),
            Signature::Bittorrent => vpn::bittorrent_handshake(seed),
            Signature::FullyEncrypted => vpn::random_bytes(300, seed),
        }
    }
}

/// A signature target: what to send, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureTarget {
    /// The protocol.
    pub signature: Signature,
    /// The echo service's address and port.
    pub to: SocketAddr,
}

/// Read a signature URL; `None` if its scheme is not a signature's, an
/// error if it is one but the rest is wrong.
pub fn parse(url: &str) -> Option<Result<SignatureTarget, String>> {
    let (scheme, rest) = url.split_once("://")?;
    let &(signature, _, default_port) = Signature::ALL.iter().find(|(_, s, _)| *s == scheme)?;
    let hostport = rest.trim_end_matches('/');
    let parsed = if let Ok(a) = hostport.parse::<SocketAddr>() {
        Ok(a)
    } else if let Ok(ip) = hostport.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(SocketAddr::new(ip, default_port))
    } else {
        Err(format!(
            "{url:?}: a signature target is {scheme}://ADDRESS[:PORT] (an IP address: it is the lab's echo service)"
        ))
    };
    Some(parsed.map(|to| SignatureTarget { signature, to }))
}

/// Send the target's first packet (three tries for UDP, each from a new
/// port, so each is a flow's first packet) and wait for the echo.
pub fn measure(input: &str, t: SignatureTarget, timeout: Duration) -> serde_json::Value {
    let started = Instant::now();
    let mut failure = None;
    for attempt in 0..if t.signature.udp() { 3 } else { 1 } {
        let payload = t.signature.payload(0x5eed + attempt);
        let r = if t.signature.udp() {
            udp_echo(t.to, &payload, timeout)
        } else {
            tcp_echo(t.to, &payload, timeout)
        };
        match r {
            Ok(()) => {
                failure = None;
                break;
            }
            Err(e) => failure = Some(e),
        }
    }
    let blocked = failure.is_some();
    serde_json::json!({
        "input": input,
        "signature": Signature::ALL.iter().find(|(s, _, _)| *s == t.signature).map(|x| x.1),
        "blocking": if blocked { serde_json::Value::from("blocked") } else { false.into() },
        "accessible": !blocked,
        "failure": failure,
        "analysis": if blocked { vec!["signature.blocked"] } else { vec![] },
        "elapsed_ms": started.elapsed().as_millis() as u64,
    })
}

/// OONI's failure string for an I/O error.
fn failure_of(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionReset => "connection_reset",
        ErrorKind::ConnectionRefused => "connection_refused",
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "generic_timeout_error",
        ErrorKind::UnexpectedEof => "eof_error",
        _ => "unknown_failure",
    }
    .to_string()
}

fn udp_echo(to: SocketAddr, payload: &[u8], timeout: Duration) -> Result<(), String> {
    let io = |e: std::io::Error| failure_of(&e);
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    let s = UdpSocket::bind(bind).map_err(io)?;
    s.connect(to).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.send(payload).map_err(io)?;
    let mut buf = [0u8; 2048];
    let n = s.recv(&mut buf).map_err(io)?;
    if buf[..n] == *payload {
        Ok(())
    } else {
        Err("unexpected_reply".into())
    }
}

fn tcp_echo(to: SocketAddr, payload: &[u8], timeout: Duration) -> Result<(), String> {
    let io = |e: std::io::Error| failure_of(&e);
    let mut s = TcpStream::connect_timeout(&to, timeout).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.write_all(payload).map_err(io)?;
    let mut got = vec![0u8; payload.len()];
    s.read_exact(&mut got).map_err(io)?;
    if got == payload {
        Ok(())
    } else {
        Err("unexpected_reply".into())
    }
}

/// Serve echo on [`ECHO_UDP`] and [`ECHO_TCP`] of every address given, from
/// threads of their own; returns once all are bound.
pub fn serve_echo(addrs: &[IpAddr]) -> Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    for &ip in addrs {
        for port in ECHO_UDP {
            let at = SocketAddr::new(ip, port);
            let s = UdpSocket::bind(at).with_context(|| format!("echo on udp {at}"))?;
            std::thread::spawn(move || {
                let mut buf = [0u8; 65_536];
                loop {
                    if let Ok((n, from)) = s.recv_from(&mut buf) {
                        let _ = s.send_to(&buf[..n], from);
                    }
                }
            });
        }
        for port in ECHO_TCP {
            let at = SocketAddr::new(ip, port);
            let l = TcpListener::bind(at).with_context(|| format!("echo on tcp {at}"))?;
            let open = open.clone();
            std::thread::spawn(move || {
                for c in l.incoming() {
                    let Ok(c) = c else { continue };
                    if open.fetch_add(1, Ordering::AcqRel) >= MAX_TCP {
                        open.fetch_sub(1, Ordering::AcqRel);
                        continue;
                    }
                    let open = open.clone();
                    std::thread::spawn(move || {
                        echo_stream(c);
                        open.fetch_sub(1, Ordering::AcqRel);
                    });
                }
            });
        }
    }
    Ok(())
}

fn echo_stream(mut c: TcpStream) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = c.set_write_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < MAX_ECHO {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                total += n;
                if c.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_urls() {
        let t = parse("wireguard://198.18.1.2").unwrap().unwrap();
        assert_eq!(t.signature, Signature::Wireguard);
        assert_eq!(t.to, "198.18.1.2:51820".parse().unwrap());
        let t = parse("openvpn+tcp://198.18.1.2:443/").unwrap().unwrap();
        assert_eq!((t.signature, t.to.port()), (Signature::OpenvpnTcp, 443));
        assert!(parse("ssh://[fd00:198:18::1:2]").unwrap().is_ok());
        assert!(parse("https://t.me/").is_none());
        assert!(parse("stun://example.com").unwrap().is_err());
    }

    #[test]
    fn the_payloads_have_their_protocols_shapes() {
        assert_eq!(Signature::Wireguard.payload(1).len(), 148);
        assert_eq!(Signature::Openvpn.payload(1)[0] >> 3, 7);
        assert!(Signature::Ssh.payload(1).starts_with(b"SSH-2.0-"));
        assert_eq!(
            &Signature::Stun.payload(1)[4..8],
            &0x2112_a442u32.to_be_bytes()
        );
    }

    #[test]
    fn echoed_is_false_silence_and_resets_are_blocked() {
        let t = Duration::from_millis(300);
        // A UDP echo on loopback.
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut b = [0u8; 2048];
            for _ in 0..3 {
                if let Ok((n, from)) = echo.recv_from(&mut b) {
                    let _ = echo.send_to(&b[..n], from);
                }
            }
        });
        let target = SignatureTarget {
            signature: Signature::Wireguard,
            to: at,
        };
        let m = measure("wireguard://x", target, t);
        assert_eq!(m["blocking"], false, "{m}");
        // A port where nothing answers (a bound socket that never reads).
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = SignatureTarget {
            signature: Signature::Stun,
            to: silent.local_addr().unwrap(),
        };
        let m = measure("stun://x", target, t);
        assert_eq!(m["blocking"], "blocked", "{m}");
        assert_eq!(m["failure"], "generic_timeout_error");
        // A TCP listener that resets the connection once it has read.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut c, _)) = l.accept() {
                let mut b = [0u8; 64];
                let _ = c.read(&mut b);
                let _ = socket_linger_zero(&c);
            }
        });
        let target = SignatureTarget {
            signature: Signature::Ssh,
            to: at,
        };
        let m = measure("ssh://x", target, Duration::from_secs(2));
        assert_eq!(m["blocking"], "blocked", "{m}");
        assert_eq!(m["failure"], "connection_reset", "{m}");
    }

    /// Close with SO_LINGER 0: an RST, as a censor's reset looks.
    fn socket_linger_zero(c: &TcpStream) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a descriptor we own with a valid struct.
        unsafe {
            libc::setsockopt(
                c.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        Ok(())
    }
}
