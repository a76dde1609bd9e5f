//! The lab's resolver: every name resolves to the server, so any URL can
//! be tried, except the names a scenario gives an address of their own.
//!
//! Those hosts get an A record only (their AAAA query is answered with no
//! records), so an IPv4 prefix rule in a scenario cannot be walked around
//! over IPv6; every other name gets the server's A and AAAA. A host's
//! subdomains share its address (`www.t.me` is `t.me`), as dnsmasq's
//! `--address` would have it. UDP and TCP, on the server's addresses;
//! hickory-proto reads and writes the messages.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// TCP connections served at once, at most.
const MAX_TCP: usize = 64;
/// The TTL of every answer: short, so a policy change in class shows soon.
const TTL: u32 = 60;

/// What the resolver answers.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The server's IPv4 address: every other name's A.
    pub default_v4: Ipv4Addr,
    /// The server's IPv6 address: every other name's AAAA.
    pub default_v6: Ipv6Addr,
    /// Names (and their subdomains) with an address of their own.
    pub hosts: BTreeMap<String, Ipv4Addr>,
}

impl Zone {
    /// The host entry covering `name` (itself or its nearest listed
    /// parent), if any.
    fn host(&self, name: &str) -> Option<Ipv4Addr> {
        let mut n = name;
        loop {
            if let Some(a) = self.hosts.get(n) {
                return Some(*a);
            }
            n = n.split_once('.')?.1;
        }
    }

    /// The answer to one query, as wire bytes; `None` for what is not a
    /// query.
    pub fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        let q = Message::from_vec(query).ok()?;
        if q.message_type() != MessageType::Query {
            return None;
        }
        let mut r = Message::new();
        r.set_id(q.id())
            .set_message_type(MessageType::Response)
            .set_op_code(q.op_code())
            .set_recursion_desired(q.recursion_desired())
            .set_recursion_available(true)
            .set_authoritative(true);
        let Some(question) = q.queries().first() else {
            r.set_response_code(ResponseCode::FormErr);
            return r.to_vec().ok();
        };
        r.add_query(question.clone());
        let owner: Name = question.name().clone();
        let name = owner.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        let rdata = match (question.query_type(), self.host(&name)) {
            (RecordType::A, Some(a)) => Some(RData::A(a.into())),
            (RecordType::A, None) => Some(RData::A(self.default_v4.into())),
            (RecordType::AAAA, None) => Some(RData::AAAA(self.default_v6.into())),
            // A host's AAAA, and every other type: no records.
            _ => None,
        };
        if let Some(d) = rdata {
            r.add_answer(Record::from_rdata(owner, TTL, d));
        }
        r.to_vec().ok()
    }
}

/// Serve `zone` on UDP and TCP port 53 of each address, from threads of
/// their own; returns once all are bound.
pub fn serve(zone: Zone, addrs: &[IpAddr]) -> Result<()> {
    let zone = Arc::new(zone);
    let open = Arc::new(AtomicUsize::new(0));
    for &ip in addrs {
        let at = SocketAddr::new(ip, 53);
        let udp = UdpSocket::bind(at).with_context(|| format!("DNS on udp {at}"))?;
        let tcp = TcpListener::bind(at).with_context(|| format!("DNS on tcp {at}"))?;
        let z = zone.clone();
        std::thread::spawn(move || serve_udp(udp, &z));
        let (z, open) = (zone.clone(), open.clone());
        std::thread::spawn(move || serve_tcp(tcp, z, open));
    }
    Ok(())
}

fn serve_udp(sock: UdpSocket, zone: &Zone) {
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if let Some(reply) = zone.answer(&buf[..n]) {
            let _ = sock.send_to(&reply, from);
        }
    }
}

fn serve_tcp(listener: TcpListener, zone: Arc<Zone>, open: Arc<AtomicUsize>) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_TCP {
            open.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let (zone, open) = (zone.clone(), open.clone());
        std::thread::spawn(move || {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
            // Length-prefixed messages until the client closes (RFC 7766).
            let mut len = [0u8; 2];
            while s.read_exact(&mut len).is_ok() {
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if s.read_exact(&mut q).is_err() {
                    break;
                }
                let Some(reply) = zone.answer(&q) else { break };
                let Ok(n) = u16::try_from(reply.len()) else {
                    break;
                };
                if s.write_all(&n.to_be_bytes())
                    .and_then(|()| s.write_all(&reply))
                    .is_err()
                {
                    break;
                }
            }
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn zone() -> Zone {
        Zone {
            default_v4: Ipv4Addr::new(198, 18, 1, 2),
            default_v6: "fd00:198:18::1:2".parse().unwrap(),
            hosts: [("t.me".to_string(), Ipv4Addr::new(198, 18, 1, 10))].into(),
        }
    }

    fn ask(z: &Zone, name: &str, t: RecordType) -> Message {
        let mut q = Message::new();
        q.set_id(7).set_recursion_desired(true);
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        Message::from_vec(&z.answer(&q.to_vec().unwrap()).unwrap()).unwrap()
    }

    fn addrs(m: &Message) -> Vec<String> {
        m.answers()
            .iter()
            .map(|r| match r.data() {
                RData::A(a) => a.to_string(),
                RData::AAAA(a) => a.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn every_name_is_the_server_but_hosts_are_their_own() {
        let z = zone();
        assert_eq!(
            addrs(&ask(&z, "example.com.", RecordType::A)),
            ["198.18.1.2"]
        );
        assert_eq!(
            addrs(&ask(&z, "example.com.", RecordType::AAAA)),
            ["fd00:198:18::1:2"]
        );
        assert_eq!(addrs(&ask(&z, "T.me.", RecordType::A)), ["198.18.1.10"]);
        assert_eq!(addrs(&ask(&z, "web.t.me.", RecordType::A)), ["198.18.1.10"]);
        // A host is IPv4 only: no way around an IPv4 rule over IPv6.
        let aaaa = ask(&z, "t.me.", RecordType::AAAA);
        assert_eq!(aaaa.response_code(), ResponseCode::NoError);
        assert!(aaaa.answers().is_empty());
        // Not a suffix on a label boundary: the default.
        assert_eq!(addrs(&ask(&z, "nott.me.", RecordType::A)), ["198.18.1.2"]);
        let m = ask(&z, "example.com.", RecordType::MX);
        assert!(m.answers().is_empty());
        assert_eq!(m.id(), 7);
        assert!(m.recursion_desired());
    }

    #[test]
    fn garbage_gets_no_answer() {
        assert!(zone().answer(b"\x00\x01").is_none());
    }
}
