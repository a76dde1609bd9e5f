//! `chokepoint gen`: realistic synthetic captures for benchmarks and labs,
//! and the SYN flood of `chokepoint bench --syn-flows`.
//!
//! Flows of a chosen protocol mix, interleaved the way a link interleaves
//! them (a window of concurrent flows, a packet from a random one at a
//! time): TLS with browser-shaped ClientHellos (a share of them ~1.9 KB
//! post-quantum hellos over two segments), QUIC v1 Initials that really
//! decrypt (a share of them split over two datagrams), DNS over UDP and
//! TCP, plain HTTP, and bulk data packets of a chosen size distribution.
//! Deterministic for a seed. Every name written is listed in a truth file
//! so the core's extraction can be checked against it.

use std::io::Write;
use std::net::IpAddr;

use chokepoint_core::{quic, LinkType};
use chokepoint_runtime::bench::Frames;
use chokepoint_runtime::capture::{Format, Writer};

use crate::synth::{self, HelloShape};

/// Frame sizes of bulk data packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    /// 64-byte frames.
    Small,
    /// Simple IMIX: 64, 594 and 1518-byte frames in the ratio 7:4:1.
    Imix,
    /// 1514-byte frames (full 1500-byte MTU).
    Large,
}

impl std::str::FromStr for Sizes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "64" | "small" => Ok(Sizes::Small),
            "imix" => Ok(Sizes::Imix),
            "1500" | "large" => Ok(Sizes::Large),
            _ => Err(format!("unknown size distribution `{s}` (64, imix, 1500)")),
        }
    }
}

/// Protocol weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    /// TLS over TCP 443.
    pub tls: u32,
    /// QUIC v1 over UDP 443.
    pub quic: u32,
    /// DNS queries (UDP, a share over TCP).
    pub dns: u32,
    /// Plain HTTP/1.1 over TCP 80.
    pub http: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            tls: 55,
            quic: 25,
            dns: 15,
            http: 5,
        }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;
    /// `tls=55,quic=25,dns=15,http=5` (missing ones are 0).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut m = Mix {
            tls: 0,
            quic: 0,
            dns: 0,
            http: 0,
        };
        for part in s.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected proto=weight"))?;
            let v: u32 = v
                .parse()
                .map_err(|_| format!("`{part}`: weight is not a number"))?;
            match k.trim() {
                "tls" => m.tls = v,
                "quic" => m.quic = v,
                "dns" => m.dns = v,
                "http" => m.http = v,
                other => return Err(format!("unknown protocol `{other}` (tls, quic, dns, http)")),
            }
        }
        if m.tls + m.quic + m.dns + m.http == 0 {
            return Err("all weights are 0".into());
        }
        Ok(m)
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Flows to generate.
    pub flows: u32,
    /// Protocol weights.
    pub mix: Mix,
    /// Sizes of the bulk data packets.
    pub sizes: Sizes,
    /// Bulk data packets per TLS/QUIC/HTTP flow after the handshake.
    pub data_packets: u32,
    /// Names to draw blocked flows from (a blocklist); may be empty.
    pub listed: Vec<String>,
    /// Share of flows whose name comes from `listed`.
    pub listed_share: f64,
    /// Share of flows whose name is a listed name with one letter in front
    /// (`xevil.test` for `evil.test`): not the listed domain, and a
    /// substring matcher's classic false positive.
    pub near_miss_share: f64,
    /// Share of flows over IPv6.
    pub ipv6_share: f64,
    /// Share of TLS hellos that are ~1.9 KB post-quantum ones (two segments).
    pub post_quantum_share: f64,
    /// Share of QUIC hellos cut over two Initial datagrams.
    pub quic_split_share: f64,
    /// Share of DNS queries sent over TCP.
    pub dns_tcp_share: f64,
    /// Concurrent flows interleaved.
    pub window: usize,
    /// Seed of the generator: the same seed, the same capture.
    pub seed: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            flows: 1000,
            mix: Mix::default(),
            sizes: Sizes::Imix,
            data_packets: 8,
            listed: Vec::new(),
            listed_share: 0.1,
            near_miss_share: 0.0,
            ipv6_share: 0.2,
            post_quantum_share: 0.5,
            quic_split_share: 0.5,
            dns_tcp_share: 0.1,
            window: 64,
            seed: 1,
        }
    }
}

/// One name the capture carries, with its flow.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Truth {
    /// What carries the name, as events name it (`tls_sni`, `quic_sni`,
    /// `dns_qname`, `http_host`).
    pub trigger: &'static str,
    /// The name.
    pub name: String,
    /// The client's address.
    pub src: IpAddr,
    /// The server's address.
    pub dst: IpAddr,
    /// The client's port.
    pub sport: u16,
    /// The server's port.
    pub dport: u16,
}

/// SplitMix64, as the benchmarks use.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

const TLDS: [&str; 6] = ["com", "net", "org", "io", "ru", "de"];

fn random_name(r: &mut Rng) -> String {
    let label = |r: &mut Rng, n: u64| -> String {
        (0..n).map(|_| (b'a' + r.below(26) as u8) as char).collect()
    };
    let sub = ["www", "api", "cdn", "static", "m"][r.below(5) as usize];
    let l1 = 3 + r.below(8);
    let base = label(r, l1);
    format!("{sub}.{base}.{}", TLDS[r.below(TLDS.len() as u64) as usize])
}

fn data_len(r: &mut Rng, s: Sizes) -> usize {
    // Frame sizes minus Ethernet (14), IPv4 (20) and TCP (20) headers.
    let frame: usize = match s {
        Sizes::Small => 64,
        Sizes::Large => 1514,
        Sizes::Imix => match r.below(12) {
            0..=6 => 64,
            7..=10 => 594,
            _ => 1518,
        },
    };
    frame.saturating_sub(54).max(6)
}

struct Flow {
    packets: Vec<Vec<u8>>,
    next: usize,
}

/// Generate frames (timestamp, Ethernet frame) and the truth.
pub fn generate(spec: &Spec) -> (Vec<(u64, Vec<u8>)>, Vec<Truth>) {
    let mut r = Rng(spec.seed);
    let mut truth = Vec::new();
    let total = spec.mix.tls + spec.mix.quic + spec.mix.dns + spec.mix.http;
    let mut make = |i: u32, r: &mut Rng| -> Flow {
        let v6 = r.chance(spec.ipv6_share);
        let (c, s): (IpAddr, IpAddr) = if v6 {
            (
                IpAddr::from([0xfd00, 0x198, 0x18, 0, 0, 0, (i >> 16) as u16, i as u16]),
                IpAddr::from([0xfd00, 0x198, 0x18, 1, 0, 0, 0, (i % 4096) as u16]),
            )
        } else {
            (
                IpAddr::from([198, 18, (i >> 8) as u8, i as u8]),
                IpAddr::from([198, 19, (i >> 12) as u8 & 0x0f, (i % 251) as u8 + 1]),
            )
        };
        // Linux's ephemeral range: well-known ports make dissectors guess.
        let cport = 32_768 + (i % 28_232) as u16;
        let name = if !spec.listed.is_empty() && r.chance(spec.listed_share) {
            spec.listed[r.below(spec.listed.len() as u64) as usize].clone()
        } else if !spec.listed.is_empty() && r.chance(spec.near_miss_share) {
            format!(
                "x{}",
                spec.listed[r.below(spec.listed.len() as u64) as usize]
            )
        } else {
            random_name(r)
        };
        let pick = r.below(u64::from(total)) as u32;
        let mut packets = Vec::new();
        let ip = |src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]| {
            synth::ethernet(&synth::ip_packet(src, dst, proto, l4), &[])
        };
        let tcp =
            |src: IpAddr, dst: IpAddr, sp: u16, dp: u16, seq: u32, ack: u32, fl: u8, pl: &[u8]| {
                ip(
                    src,
                    dst,
                    6,
                    &synth::tcp_segment(src, dst, sp, dp, seq, ack, fl, pl),
                )
            };
        let handshake = |packets: &mut Vec<Vec<u8>>, dport: u16, ci: u32, si: u32| {
            packets.push(tcp(c, s, cport, dport, ci, 0, 0x02, b""));
            packets.push(tcp(s, c, dport, cport, si, ci + 1, 0x12, b""));
            packets.push(tcp(c, s, cport, dport, ci + 1, si + 1, 0x10, b""));
        };
        let bulk =
            |packets: &mut Vec<Vec<u8>>, r: &mut Rng, dport: u16, mut cseq: u32, mut sseq: u32| {
                for k in 0..spec.data_packets {
                    let n = data_len(r, spec.sizes);
                    let payload: Vec<u8> = (0..n).map(|j| (j as u8) ^ (k as u8)).collect();
                    if k % 2 == 0 {
                        packets.push(tcp(s, c, dport, cport, sseq, cseq, 0x18, &payload));
                        sseq = sseq.wrapping_add(n as u32);
                    } else {
                        packets.push(tcp(c, s, cport, dport, cseq, sseq, 0x18, &payload));
                        cseq = cseq.wrapping_add(n as u32);
                    }
                }
            };
        let (ci, si) = (r.next() as u32, r.next() as u32);
        if pick < spec.mix.tls {
            let pq = r.chance(spec.post_quantum_share);
            let shape = HelloShape {
                post_quantum: pq,
                grease: true,
                ..Default::default()
            };
            let hello =
                synth::tls_records(&synth::client_hello(Some(&name), shape, i as u8), 16384);
            handshake(&mut packets, 443, ci, si);
            let mut seq = ci.wrapping_add(1);
            for part in hello.chunks(1448) {
                packets.push(tcp(c, s, cport, 443, seq, si.wrapping_add(1), 0x18, part));
                seq = seq.wrapping_add(part.len() as u32);
            }
            truth.push(Truth {
                trigger: "tls_sni",
                name,
                src: c,
                dst: s,
                sport: cport,
                dport: 443,
            });
            bulk(&mut packets, r, 443, seq, si.wrapping_add(1));
        } else if pick < spec.mix.tls + spec.mix.quic {
            let ch = synth::client_hello(
                Some(&name),
                HelloShape {
                    grease: true,
                    ..Default::default()
                },
                i as u8,
            );
            let dcid = r.next().to_be_bytes();
            let scid = r.next().to_be_bytes();
            let datagrams: Vec<Vec<u8>> = if r.chance(spec.quic_split_share) {
                let cut = ch.len() / 2;
                vec![
                    synth::crypto_frame(cut as u64, &ch[cut..]),
                    synth::crypto_frame(0, &ch[..cut]),
                ]
            } else {
                vec![synth::crypto_frame(0, &ch)]
            };
            for (pn, frames) in datagrams.iter().enumerate() {
                let pkt = synth::quic_initial(quic::V1, &dcid, &scid, pn as u32, frames, 1252);
                packets.push(ip(c, s, 17, &synth::udp_datagram(c, s, cport, 443, &pkt)));
            }
            truth.push(Truth {
                trigger: "quic_sni",
                name,
                src: c,
                dst: s,
                sport: cport,
                dport: 443,
            });
            for k in 0..spec.data_packets {
                // 1-RTT packets: short header, opaque to anyone on path.
                let n = data_len(r, spec.sizes).saturating_sub(8).max(24);
                let mut p = vec![0x40 | (k as u8 & 0x03)];
                p.extend_from_slice(&scid);
                p.extend((0..n - 9).map(|j| (j as u8).wrapping_mul(31) ^ k as u8));
                let (src, dst, sp, dp) = if k % 2 == 0 {
                    (s, c, 443, cport)
                } else {
                    (c, s, cport, 443)
                };
                packets.push(ip(src, dst, 17, &synth::udp_datagram(src, dst, sp, dp, &p)));
            }
        } else if pick < spec.mix.tls + spec.mix.quic + spec.mix.dns {
            let q = synth::dns_query(i as u16, &name, if v6 { 28 } else { 1 });
            if r.chance(spec.dns_tcp_share) {
                handshake(&mut packets, 53, ci, si);
                let mut msg = (q.len() as u16).to_be_bytes().to_vec();
                msg.extend_from_slice(&q);
                packets.push(tcp(
                    c,
                    s,
                    cport,
                    53,
                    ci.wrapping_add(1),
                    si.wrapping_add(1),
                    0x18,
                    &msg,
                ));
            } else {
                packets.push(ip(c, s, 17, &synth::udp_datagram(c, s, cport, 53, &q)));
            }
            truth.push(Truth {
                trigger: "dns_qname",
                name,
                src: c,
                dst: s,
                sport: cport,
                dport: 53,
            });
        } else {
            let req = synth::http_get(&name, "/index.html");
            handshake(&mut packets, 80, ci, si);
            packets.push(tcp(
                c,
                s,
                cport,
                80,
                ci.wrapping_add(1),
                si.wrapping_add(1),
                0x18,
                &req,
            ));
            truth.push(Truth {
                trigger: "http_host",
                name,
                src: c,
                dst: s,
                sport: cport,
                dport: 80,
            });
            bulk(
                &mut packets,
                r,
                80,
                ci.wrapping_add(1 + req.len() as u32),
                si.wrapping_add(1),
            );
        }
        Flow { packets, next: 0 }
    };
    // Interleave: a window of concurrent flows, one packet from a random one.
    let mut frames = Vec::new();
    let mut active: Vec<Flow> = Vec::new();
    let mut started = 0u32;
    let mut ts = 1_700_000_000_000_000_000u64;
    loop {
        while active.len() < spec.window.max(1) && started < spec.flows {
            active.push(make(started, &mut r));
            started += 1;
        }
        if active.is_empty() {
            break;
        }
        let k = r.below(active.len() as u64) as usize;
        let f = &mut active[k];
        ts += 5_000 + r.below(20_000);
        frames.push((ts, std::mem::take(&mut f.packets[f.next])));
        f.next += 1;
        if f.next == f.packets.len() {
            active.swap_remove(k);
        }
    }
    (frames, truth)
}

/// Write Ethernet frames as nanosecond pcap or pcapng, through the
/// runtime's capture writer (timestamps kept exactly either way).
pub fn write(out: &mut dyn Write, frames: &[(u64, Vec<u8>)], pcapng: bool) -> std::io::Result<()> {
    let format = if pcapng {
        Format::Pcapng
    } else {
        Format::PcapNanos
    };
    let mut w = Writer::new(out, format);
    for (ts, f) in frames {
        w.write(LinkType::Ethernet, *ts, f)?;
    }
    w.finish().map(|_| ())
}

/// `n` distinct generated domain names (registrable `label.tld`, some with a
/// subdomain), deterministic for a seed: blocklists for benchmarks.
pub fn domain_list(n: usize, seed: u64) -> Vec<String> {
    let mut r = Rng(seed ^ 0x5eed);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let len = 4 + r.below(9);
        let label: String = (0..len)
            .map(|_| (b'a' + r.below(26) as u8) as char)
            .collect();
        let tld = TLDS[r.below(TLDS.len() as u64) as usize];
        let name = if r.below(5) == 0 {
            format!(
                "{}.{label}.{tld}",
                ["www", "api", "cdn", "m"][r.below(4) as usize]
            )
        } else {
            format!("{label}.{tld}")
        };
        if seen.insert(name.clone()) {
            out.push(name);
        }
    }
    out
}

/// `n` distinct TCP SYNs (one per flow), for flow-table stress: IPv4
/// clients across 198.18.0.0/15, one server port each.
pub fn syn_flows(n: u32) -> Frames {
    // One template frame, patched per flow: building 10M frames through the
    // synthesiser would take longer than the run.
    let c: IpAddr = "198.18.0.1".parse().expect("ip");
    let s: IpAddr = "198.19.255.254".parse().expect("ip");
    let tmpl = synth::ethernet(
        &synth::ip_packet(
            c,
            s,
            6,
            &synth::tcp_segment(c, s, 40000, 443, 1, 0, 0x02, b""),
        ),
        &[],
    );
    (0..n)
        .map(|i| {
            let mut f = tmpl.clone();
            // client address 198.18.x.y (15 bits), source port from the rest
            let host = i & 0x7fff;
            f[28] = 198;
            f[29] = 18 + ((host >> 14) as u8 & 1);
            f[30] = (host >> 8) as u8 & 0x3f;
            f[31] = host as u8;
            let port = 1024 + (i >> 15) as u16;
            f[34..36].copy_from_slice(&port.to_be_bytes());
            (LinkType::Ethernet, u64::from(i) * 1000, f)
        })
        .collect()
}
