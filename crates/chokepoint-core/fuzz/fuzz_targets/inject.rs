//! Injected frames (resets, DNS answers over UDP and TCP, HTTP 302) built
//! from fuzzed triggers, checked by an independent oracle: etherparse must
//! read every frame, with IPv4/TCP/UDP checksums, lengths, addresses,
//! ports, sequence numbers and payloads as they should be. The oracle is
//! `tests/inject_oracle.rs`, which also runs it over seeded cases in
//! `cargo test`. And the token bucket, under fuzzed rates and clocks.
#![no_main]
use std::net::IpAddr;

use arbitrary::Arbitrary;
use chokepoint_core::LinkType;
use chokepoint_ruleset::DnsAnswer;
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/inject_oracle.rs"]
mod oracle;

#[derive(Arbitrary, Debug)]
enum Answer {
    Nxdomain,
    V4([u8; 4]),
    V6([u8; 16]),
}

#[derive(Arbitrary, Debug)]
enum Payload {
    /// A DNS query for labels of these bytes (UDP as is, TCP length-prefixed).
    Query { id: u16, name: String, qtype: u16, rd: bool },
    /// Anything.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Built {
    v6: bool,
    client: [u8; 16],
    server: [u8; 16],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    udp: bool,
    link: u8,
    vlan: (u16, u16),
    macs: ([u8; 6], [u8; 6]),
    payload: Payload,
}

#[derive(Arbitrary, Debug)]
enum Input {
    /// A well-formed trigger: the injectors must answer it.
    Built(Built, Answer, u32, String, u8),
    /// A trigger frame of arbitrary bytes on one of the answerable links.
    Raw(u8, Vec<u8>, Answer, u32, String, u8),
    /// A token bucket: rate, burst (default or set), start, (time step,
    /// packet length)s.
    Bucket(u32, Option<u32>, u64, Vec<(u64, u16)>),
}

fn answer(a: Answer) -> DnsAnswer {
    match a {
        Answer::Nxdomain => DnsAnswer::Nxdomain,
        Answer::V4(a) => DnsAnswer::Sinkhole(IpAddr::from(a)),
        Answer::V6(a) => DnsAnswer::Sinkhole(IpAddr::from(a)),
    }
}

/// Policies refuse CR/LF in a location; keep it a header-sized line.
fn location(mut s: String) -> String {
    s.retain(|c| c != '\r' && c != '\n');
    s.chars().take(512).collect()
}

fuzz_target!(|input: Input| {
    match input {
        Input::Built(b, a, ttl, loc, repeat) => {
            let udp = b.udp;
            let payload = match b.payload {
                Payload::Query { id, name, qtype, rd } => {
                    let q = oracle::dns_query(id, &name, qtype, rd);
                    if udp {
                        q
                    } else {
                        let mut p = (q.len() as u16).to_be_bytes().to_vec();
                        p.extend_from_slice(&q);
                        p
                    }
                }
                Payload::Raw(mut p) => {
                    p.truncate(1400);
                    p
                }
            };
            let c = oracle::Case {
                v6: b.v6,
                client: b.client,
                server: b.server,
                sport: b.sport,
                dport: b.dport,
                seq: b.seq,
                ack: b.ack,
                flags: b.flags,
                udp,
                link: b.link,
                vlan: b.vlan,
                macs: b.macs,
                payload,
                location: location(loc),
                answer: answer(a),
                ttl,
                repeat: repeat % 101,
            };
            let (link, f) = oracle::frame(&c);
            oracle::check(link, &f, &c.answer, c.ttl, &c.location, c.repeat, true);
        }
        Input::Raw(l, frame, a, ttl, loc, repeat) => {
            let link = [LinkType::Ethernet, LinkType::Raw, LinkType::Ipv4, LinkType::Ipv6][usize::from(l % 4)];
            oracle::check(link, &frame, &answer(a), ttl, &location(loc), repeat % 101, false);
        }
        Input::Bucket(kbps, burst, start, steps) => oracle::check_bucket(kbps, burst, start, &steps),
    }
});
