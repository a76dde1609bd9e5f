//! The DNS step: A and AAAA queries to one resolver, over UDP with a TCP
//! retry when the answer is truncated.
//!
//! hickory-proto builds and parses the messages; the transport is a plain
//! blocking socket so the step's timeouts are ours (per try, a fixed number
//! of tries), not a resolver library's.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde::Serialize;

use crate::deadline::Deadline;
use crate::failure;

/// Replies with another id (late answers to an earlier try, strays) read
/// and dropped per try before the try counts as lost.
const STRAY_REPLIES_PER_TRY: usize = 8;

/// What the DNS step saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsResult {
    /// The name looked up.
    pub query: String,
    /// A then AAAA answers, without repeats.
    pub addrs: Vec<IpAddr>,
    /// OONI's failure string, null when some address came back.
    pub failure: Option<String>,
    /// The response code of the A answer (of the AAAA one when the A query
    /// had none), as its RFC 1035 mnemonic; null when no answer came.
    pub rcode: Option<String>,
}

/// How long the DNS step may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DnsTimeouts {
    pub per_try: Duration,
    pub tries: u32,
}

/// One query's outcome.
#[derive(Debug, Default)]
struct Answer {
    rcode: Option<ResponseCode>,
    addrs: Vec<IpAddr>,
    failure: Option<String>,
}

/// Looks `name` up (A and AAAA at once) at `resolver`.
pub(crate) fn lookup(name: &str, resolver: SocketAddr, t: DnsTimeouts) -> DnsResult {
    let (a, aaaa) = std::thread::scope(|s| {
        let aaaa = s.spawn(|| query(name, RecordType::AAAA, resolver, t));
        let a = query(name, RecordType::A, resolver, t);
        (a, aaaa.join().unwrap_or_default())
    });
    combine(name, a, aaaa)
}

/// One answer for the two queries: NXDOMAIN on either is NXDOMAIN; any
/// address is success (a missing AAAA is not a failure, as in netxlite);
/// otherwise the A query's failure.
fn combine(name: &str, a: Answer, aaaa: Answer) -> DnsResult {
    let rcode = a.rcode.or(aaaa.rcode).map(mnemonic);
    let nxdomain = [&a, &aaaa]
        .iter()
        .any(|x| x.rcode == Some(ResponseCode::NXDomain));
    let mut addrs: Vec<IpAddr> = Vec::new();
    for ip in a.addrs.iter().chain(&aaaa.addrs) {
        if !addrs.contains(ip) {
            addrs.push(*ip);
        }
    }
    let failure = if nxdomain {
        addrs.clear();
        Some(failure::DNS_NXDOMAIN.to_string())
    } else if addrs.is_empty() {
        a.failure
            .or(aaaa.failure)
            .or_else(|| Some(failure::DNS_NO_ANSWER.to_string()))
    } else {
        None
    };
    DnsResult {
        query: name.to_string(),
        addrs,
        failure,
        rcode,
    }
}

/// The RFC 1035 / 6895 mnemonic of a response code.
fn mnemonic(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

fn query(name: &str, rtype: RecordType, resolver: SocketAddr, t: DnsTimeouts) -> Answer {
    let fail = |f: String| Answer {
        failure: Some(f),
        ..Answer::default()
    };
    let id = random_id();
    let packet = match encode_query(name, rtype, id) {
        Ok(p) => p,
        Err(e) => return fail(failure::unknown(&e)),
    };
    let reply = match exchange_udp(&packet, id, resolver, t) {
        Ok(m) if m.truncated() => exchange_tcp(&packet, id, resolver, t.per_try),
        other => other,
    };
    match reply {
        Ok(m) => read_answer(&m),
        Err(e) => fail(e),
    }
}

/// A random query id, so that an off-path guess is as hard as usual.
fn random_id() -> u16 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    // SystemRandom only fails where the OS has no random source at all;
    // a fixed id then still works against an honest resolver.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u16::from_be_bytes(b)
}

fn encode_query(name: &str, rtype: RecordType, id: u16) -> Result<Vec<u8>, String> {
    let name = Name::from_ascii(name).map_err(|e| e.to_string())?;
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name, rtype));
    msg.to_vec().map_err(|e| e.to_string())
}

/// The addresses, or the failure the response code stands for.
fn read_answer(m: &Message) -> Answer {
    let rcode = m.response_code();
    let addrs: Vec<IpAddr> = m
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    let failure = match rcode {
        ResponseCode::NoError if addrs.is_empty() => Some(failure::DNS_NO_ANSWER),
        ResponseCode::NoError => None,
        ResponseCode::NXDomain => Some(failure::DNS_NXDOMAIN),
        ResponseCode::Refused => Some(failure::DNS_REFUSED),
        ResponseCode::ServFail => Some(failure::DNS_SERVFAIL),
        _ => Some(failure::DNS_SERVER_MISBEHAVING),
    };
    Answer {
        rcode: Some(rcode),
        addrs,
        failure: failure.map(str::to_string),
    }
}

/// Is this datagram the answer to our query?
fn our_reply(bytes: &[u8], id: u16) -> Option<Message> {
    let m = Message::from_vec(bytes).ok()?;
    (m.id() == id && m.message_type() == MessageType::Response).then_some(m)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn exchange_udp(
    packet: &[u8],
    id: u16,
    resolver: SocketAddr,
    t: DnsTimeouts,
) -> Result<Message, String> {
    let io_fail = |e: io::Error| failure::from_io(&e);
    let local: SocketAddr = if resolver.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).map_err(io_fail)?;
    sock.connect(resolver).map_err(io_fail)?;
    let mut buf = vec![0u8; 65_535];
    for _ in 0..t.tries.max(1) {
        sock.send(packet).map_err(io_fail)?;
        let deadline = Deadline::after(t.per_try);
        for _ in 0..STRAY_REPLIES_PER_TRY {
            let Ok(left) = deadline.remaining() else {
                break;
            };
            sock.set_read_timeout(Some(left)).map_err(io_fail)?;
            match sock.recv(&mut buf) {
                Ok(n) => {
                    if let Some(m) = our_reply(&buf[..n], id) {
                        return Ok(m);
                    }
                }
                Err(e) if is_timeout(&e) => break,
                // ICMP port unreachable shows up here as connection_refused.
                Err(e) => return Err(io_fail(e)),
            }
        }
    }
    Err(failure::GENERIC_TIMEOUT.to_string())
}

/// The same query over TCP (RFC 7766), when the UDP answer was truncated.
fn exchange_tcp(
    packet: &[u8],
    id: u16,
    resolver: SocketAddr,
    timeout: Duration,
) -> Result<Message, String> {
    let io_fail = |e: io::Error| failure::from_io(&e);
    let deadline = Deadline::after(timeout);
    let mut sock = TcpStream::connect_timeout(&resolver, timeout).map_err(io_fail)?;
    deadline.arm(&sock).map_err(io_fail)?;
    let len = u16::try_from(packet.len()).map_err(|_| failure::unknown(&"query too long"))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    sock.write_all(&framed).map_err(io_fail)?;
    let mut len = [0u8; 2];
    deadline.arm(&sock).map_err(io_fail)?;
    sock.read_exact(&mut len).map_err(io_fail)?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    deadline.arm(&sock).map_err(io_fail)?;
    sock.read_exact(&mut reply).map_err(io_fail)?;
    our_reply(&reply, id).ok_or_else(|| failure::DNS_SERVER_MISBEHAVING.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(rcode: ResponseCode, addrs: &[&str]) -> Answer {
        let mut m = Message::new();
        m.set_response_code(rcode);
        for a in addrs {
            let ip: IpAddr = a.parse().unwrap();
            let rdata = match ip {
                IpAddr::V4(v4) => RData::A(v4.into()),
                IpAddr::V6(v6) => RData::AAAA(v6.into()),
            };
            m.add_answer(hickory_proto::rr::Record::from_rdata(
                Name::root(),
                60,
                rdata,
            ));
        }
        read_answer(&m)
    }

    #[test]
    fn answers_map_to_failures() {
        let ok = combine("a.test", answer(ResponseCode::NoError, &["192.0.2.1"]), {
            answer(ResponseCode::NoError, &[])
        });
        assert_eq!(ok.failure, None);
        assert_eq!(ok.addrs, vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(ok.rcode.as_deref(), Some("NOERROR"));

        let nx = combine(
            "a.test",
            answer(ResponseCode::NXDomain, &[]),
            answer(ResponseCode::NXDomain, &[]),
        );
        assert_eq!(nx.failure.as_deref(), Some(failure::DNS_NXDOMAIN));
        assert_eq!(nx.rcode.as_deref(), Some("NXDOMAIN"));

        let empty = combine(
            "a.test",
            answer(ResponseCode::NoError, &[]),
            answer(ResponseCode::NoError, &[]),
        );
        assert_eq!(empty.failure.as_deref(), Some(failure::DNS_NO_ANSWER));

        let refused = combine(
            "a.test",
            answer(ResponseCode::Refused, &[]),
            answer(ResponseCode::Refused, &[]),
        );
        assert_eq!(refused.failure.as_deref(), Some(failure::DNS_REFUSED));
    }

    #[test]
    fn only_aaaa_is_still_an_answer() {
        let r = combine(
            "a.test",
            answer(ResponseCode::NoError, &[]),
            answer(ResponseCode::NoError, &["2001:db8::1"]),
        );
        assert_eq!(r.failure, None);
        assert_eq!(r.addrs.len(), 1);
    }

    #[test]
    fn a_silent_resolver_times_out() {
        // A bound socket that never answers: every try runs out.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let t = DnsTimeouts {
            per_try: Duration::from_millis(50),
            tries: 2,
        };
        let r = lookup("a.test", silent.local_addr().unwrap(), t);
        assert_eq!(r.failure.as_deref(), Some(failure::GENERIC_TIMEOUT));
        assert_eq!(r.rcode, None);
    }
}
