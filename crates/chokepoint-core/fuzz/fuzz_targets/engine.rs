//! The whole engine, structure-aware: a profile, then a sequence of frames
//! with time steps of up to ±5 minutes (flow timeouts, fragment expiry and
//! sweeps fire), built from the input as raw bytes on any link type or
//! through the testkit's synthesisers (TCP segments cut from a ClientHello,
//! an HTTP request or a DNS query at fuzzed offsets, UDP datagrams with DNS
//! or QUIC Initials, first packets of VPNs, proxies and calls for the
//! protocol classifiers, IPv4 fragments in fuzzed order), with explicit expiry
//! and `set_rules` reloads to the same or another compiled ruleset: the
//! classifier policy under six profiles, a policy of the censor's
//! behaviours (conditions, freeze, degrade, residual blocking in every
//! scope, throttles, directed resets) and every bundled preset, with the
//! learnt-server and residual stores a bridge shares between workers. A second
//! engine takes the same frames through `process_batch` and must decide
//! each as `process` did. A fresh engine per input, so every crash replays
//! from its input alone.
#![no_main]
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use chokepoint_core::{Decision, Engine, LinkType, Share};
use chokepoint_rules::Ruleset;
use chokepoint_runtime::learned::LearnedTable;
use chokepoint_runtime::residual::SharedResidual;
use chokepoint_testkit::synth::{self, HelloShape};
use chokepoint_testkit::vpn;
use libfuzzer_sys::fuzz_target;

const POLICY: &str = r#"
version: 1
lists:
  blocked: {format: domains, entries: [blocked.example, t.me]}
  dnsnames: {format: domains, entries: [telegram.org]}
  web: {format: domains, entries: [sub.example]}
  kw: {format: keywords, entries: [casino]}
  nets: {format: cidr, entries: [198.19.0.0/24, "fd00:198:18::66/128"]}
  slow: {format: cidr, entries: [149.154.160.0/20]}
  vpn-servers: {format: dynamic}
rules:
  - {name: names, match: {list: blocked}, action: reset}
  - {name: dns, match: {list: dnsnames, on: [dns_qname]}, action: {dns: {answer: 192.0.2.1}}}
  - {name: web, match: {list: web, on: [http_host]}, action: {redirect: {location: "http://stub.example/"}}}
  - {name: kw, match: {list: kw}, action: log}
  - {name: nets, match: {list: nets, on: [ip]}, action: drop}
  - {name: slow, match: {list: slow, on: [ip]}, action: {throttle: {kbps: 150}}}
  - {name: vpn-servers, match: {list: vpn-servers, on: [ip]}, action: drop}
  - {name: vpn, match: {protocols: [wireguard, openvpn]}, action: {learn: {list: vpn-servers, key: server_port, ttl: 60, delay: 5}}}
  - {name: calls, match: {protocols: [stun], dst_ports: [3478, "50000-50100"]}, action: drop}
  - {name: tunnels, match: {protocols: [ssh, bittorrent]}, action: log}
  - {name: fe, match: {protocols: [fully_encrypted], probability: 0.5}, action: reset}
"#;

const PROFILES: [&str; 6] = [
    "",
    "profile: {direction: both}\n",
    "profile: {reassemble_client_hello: false}\n",
    "profile: {inspect_ports: [80, 8443, 53]}\n",
    "profile: {direction: both, max_flows: 8, max_inspect_packets: 4, reassembly_max_segments: 4, reassembly_max_bytes: 4096, max_fragment_datagrams: 4, fragment_timeout: 1, timeouts: {syn: 1, established: 5, fin: 1, udp: 2}, reevaluate_on_reload: true}\n",
    "profile: {defragment: false, reevaluate_on_reload: true}\n",
];

/// The censor's behaviours: conditions, freeze, degrade, residual
/// blocking in every scope, throttles, directed resets.
const BEHAVIOUR: &str = r#"
version: 1
lists:
  blocked: {format: domains, entries: [blocked.example, t.me]}
  hosting: {format: cidr, entries: [198.18.1.0/24, "fd00:198:18::/64"]}
  exempt: {format: domains, entries: [ok.example]}
  subscribers: {format: cidr, entries: [198.18.0.11/32]}
rules:
  - {name: quic-2022, match: {protocols: [quic], quic_versions: [1, v2, draft-29], dst_ports: [443], min_bytes: 1001, first_packet: true}, action: drop, residual: {seconds: 180, scope: 3-tuple}}
  - {name: ech, match: {list: blocked, on: [tls_sni, quic_sni], ech: true}, action: drop, residual: {seconds: 60, scope: server, action: reset}}
  - {name: freeze, match: {protocols: [tls], dst_list: hosting, except: [exempt]}, action: {freeze: {after_bytes: [150, 2000], direction: server_to_client, probability: 0.8}}}
  - {name: small, match: {list: blocked, on: [http_host], max_bytes: 200, src_list: subscribers}, action: {reset: {to: client}}, residual: {seconds: 30, scope: client}}
  - {name: degrade, match: {list: blocked, on: [http_host]}, action: {degrade: {loss: 0.5, direction: both}}, residual: {seconds: 90, scope: 2-tuple, action: drop}}
  - {name: slow, match: {protocols: [dns], src_ports: ["42000-42001"]}, action: {throttle: {kbps: 64, burst_bytes: 3200, scope: client}}}
  - {name: quiet, match: {protocols: [http], proto: tcp}, action: {reset: {to: server}}}
default: log
"#;

/// The bundled presets, as shipped.
const PRESETS: [&str; 10] = [
    "calls-2025", "ech-2024", "freeze-2025", "gfw-fe-2023", "gfw-quic-2025",
    "mobile-allowlist-2025", "quic-2022", "twitter-2021", "vpn-2023", "youtube-2024",
];

const OTHER: &str = "version: 1\nlists: {d: {format: domains, entries: [t.me, ok.example]}}\nrules: [{name: r, match: {list: d}, action: drop}]\ndefault: log\nprofile: {max_flows: 16, reevaluate_on_reload: true}\n";

static RULES: OnceLock<Vec<Arc<Ruleset>>> = OnceLock::new();

fn rules() -> &'static [Arc<Ruleset>] {
    RULES.get_or_init(|| {
        let c = |y: &str| {
            Arc::new(chokepoint_rules::compile_str(y, "fuzz.yaml", std::path::Path::new(".")).unwrap())
        };
        let mut v: Vec<_> = PROFILES.iter().map(|p| c(&format!("{POLICY}{p}"))).collect();
        v.push(c(OTHER));
        v.push(c(BEHAVIOUR));
        v.push(c(&format!("{BEHAVIOUR}profile: {{max_flows: 8, timeouts: {{syn: 1, established: 5, fin: 1, udp: 2}}}}\n")));
        let config = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../config"));
        for name in PRESETS {
            let file = config.join(format!("{name}.yaml"));
            let yaml = std::fs::read_to_string(&file).unwrap();
            v.push(Arc::new(chokepoint_rules::compile_str(&yaml, &file.to_string_lossy(), config).unwrap()));
        }
        v
    })
}

const LINKS: [LinkType; 10] = [
    LinkType::Ethernet,
    LinkType::Raw,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Null,
    LinkType::Loop,
    LinkType::Ppp,
    LinkType::PppHdlc,
];

const NAMES: [&str; 8] = [
    "t.me",
    "www.t.me",
    "blocked.example",
    "ok.example",
    "telegram.org",
    "big.casino.example",
    "a.sub.example",
    "",
];

fn name(i: u8) -> &'static str {
    NAMES[usize::from(i) % NAMES.len()]
}

#[derive(Arbitrary, Debug)]
enum Payload {
    Bytes(Vec<u8>),
    Hello { sni: u8, ech: bool, pq: bool, grease: bool, pad: u8, seed: u8, record: u16 },
    Http { host: u8 },
    Dns { name: u8, qtype: u16 },
    Quic { v2: bool, dcid: [u8; 8], sni: u8, pn: u8, offset: u8 },
    Vpn { kind: u8, seed: u8, cut: u8 },
}

impl Payload {
    fn bytes(&self, tcp: bool) -> Vec<u8> {
        match self {
            Payload::Bytes(b) => b.clone(),
            &Payload::Hello { sni, ech, pq, grease, pad, seed, record } => {
                let shape = HelloShape {
                    post_quantum: pq,
                    grease,
                    ech,
                    pad_to: usize::from(pad) * 8,
                };
                let n = name(sni);
                let h = synth::client_hello((!n.is_empty()).then_some(n), shape, seed);
                synth::tls_records(&h, usize::from(record).max(16))
            }
            &Payload::Http { host } => synth::http_get(name(host), "/"),
            &Payload::Dns { name: n, qtype } => {
                let q = synth::dns_query(7, name(n), qtype);
                if tcp {
                    let mut p = (q.len() as u16).to_be_bytes().to_vec();
                    p.extend_from_slice(&q);
                    p
                } else {
                    q
                }
            }
            &Payload::Quic { v2, dcid, sni, pn, offset } => {
                let n = name(sni);
                let h = synth::client_hello((!n.is_empty()).then_some(n), HelloShape::default(), pn);
                let frames = synth::crypto_frame(u64::from(offset) * 64, &h);
                let version = if v2 { 0x6b33_43cf } else { 1 };
                synth::quic_initial(version, &dcid, &[1, 2, 3, 4], u32::from(pn), &frames, 1200)
            }
            &Payload::Vpn { kind, seed, cut } => {
                let seed = u64::from(seed);
                let wrap = [vpn::OpenVpnWrap::Plain, vpn::OpenVpnWrap::TlsAuth, vpn::OpenVpnWrap::TlsCrypt];
                let mut p = match kind % 8 {
                    0 => vpn::wireguard_initiation(seed),
                    1 => vpn::wireguard(2 + kind % 3, [92, 64, 48][usize::from(kind % 3)], seed),
                    2 => vpn::openvpn_reset(wrap[usize::from(kind / 8) % 3], seed),
                    3 => vpn::stun_binding_request(seed),
                    4 => vpn::ssh_banner(),
                    5 => vpn::bittorrent_handshake(seed),
                    _ => vpn::random_bytes(usize::from(cut) + 1, seed),
                };
                if tcp && kind % 8 == 2 {
                    p = vpn::openvpn_tcp(&p);
                }
                // A prefix: a banner or a reset cut short.
                if kind & 0x80 != 0 {
                    p.truncate(usize::from(cut) % (p.len() + 1));
                }
                p
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Ends {
    v6: bool,
    client: u8,
    server: u8,
    sport: u8,
    dport: u8,
    /// Server → client.
    reverse: bool,
    vlan: Option<u16>,
}

const PORTS: [u16; 8] = [443, 80, 53, 8443, 8080, 5000, 51820, 3478];

impl Ends {
    fn addrs(&self) -> (IpAddr, IpAddr, u16, u16) {
        let (c, s): (&[&str], &[&str]) = if self.v6 {
            (&["fd00::10", "fd00::11"], &["fd00:198:18::66", "2001:db8::1"])
        } else {
            (
                &["198.18.0.10", "198.18.0.11"],
                &["198.18.1.20", "198.19.0.5", "149.154.167.99"],
            )
        };
        let c: IpAddr = c[usize::from(self.client) % c.len()].parse().unwrap();
        let s: IpAddr = s[usize::from(self.server) % s.len()].parse().unwrap();
        let cp = 42000 + u16::from(self.sport % 4);
        let sp = PORTS[usize::from(self.dport) % PORTS.len()];
        if self.reverse {
            (s, c, sp, cp)
        } else {
            (c, s, cp, sp)
        }
    }
    fn frame(&self, ip: &[u8]) -> Vec<u8> {
        match self.vlan {
            Some(v) => synth::ethernet(ip, &[(0x8100, v)]),
            None => synth::ethernet(ip, &[]),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Step {
    Raw { link: u8, bytes: Vec<u8> },
    Tcp { ends: Ends, seq: u16, wrap: bool, ack: u32, flags: u8, payload: Payload, cut: Option<(u16, u16)> },
    Udp { ends: Ends, payload: Payload },
    Frags { ends: Ends, udp: bool, payload: Payload, mtu: u8, order: Vec<u8> },
    Expire,
    Reload(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// The starting ruleset: any of them.
    profile: u8,
    steps: Vec<(i16, Step)>,
}

/// A second engine fed the same frames through `process_batch`, in bursts
/// cut at every `expire` and reload: its decisions must be the first's.
struct Twin {
    engine: Engine,
    frames: Vec<(u64, LinkType, Vec<u8>)>,
    want: Vec<Decision>,
}

impl Twin {
    fn flush(&mut self) {
        let frames: Vec<_> = self.frames.iter().map(|(t, l, f)| (*t, *l, &f[..])).collect();
        let mut got = vec![Decision::PASS; frames.len()];
        self.engine.process_batch(&frames, &mut got, |_, _| {});
        assert_eq!(got, self.want, "process_batch decided otherwise than process");
        self.frames.clear();
        self.want.clear();
    }
}

fuzz_target!(|input: Input| {
    let rules = rules();
    let first = rules[usize::from(input.profile) % rules.len()].clone();
    // One of 256 workers: the box's limits split 256 ways (a default
    // profile's 1M flows is a 4,096-flow table, its 256 MiB reassembly
    // budget 1 MiB), so that the table sized at start is small enough to
    // make per input and the budget is reached.
    let share = Share { workers: 256, memory: None };
    // Each engine with the stores a bridge gives it (learnt servers, and
    // residual blocks of the server and client scopes), small enough to
    // fill.
    let engine = || {
        let mut e = Engine::sharing(first.clone(), share);
        e.set_learn_store(Arc::new(LearnedTable::new(8)));
        e.set_residual_store(Arc::new(SharedResidual::new(4)));
        e
    };
    let mut e = engine();
    let mut twin = Twin { engine: engine(), frames: Vec::new(), want: Vec::new() };
    let mut ts: u64 = 1_700_000_000 * 1_000_000_000;
    let mut reloaded = false;
    for (dt, step) in input.steps.iter().take(64) {
        // Steps of 10 ms, up to about 5.5 minutes either way.
        ts = ts.saturating_add_signed(i64::from(*dt) * 10_000_000);
        let mut one = |link: LinkType, f: &[u8]| {
            let d = e.process(ts, link, f);
            twin.frames.push((ts, link, f.to_vec()));
            twin.want.push(d);
            // Until a reload, every rule a decision names exists. (After
            // one, a flow decided before it keeps its decision and the
            // old policy's rule id: consumers resolve ids with `get`.)
            if let (Some(r), false) = (d.rule, reloaded) {
                let _ = e.rules().meta.rules.get(r.index()).expect("a rule of the ruleset");
            }
        };
        match step {
            Step::Raw { link, bytes } => one(LINKS[usize::from(*link) % LINKS.len()], bytes),
            Step::Tcp { ends, seq, wrap, ack, flags, payload, cut } => {
                let (s, d, sp, dp) = ends.addrs();
                let full = payload.bytes(true);
                let (start, data) = match *cut {
                    Some((a, n)) => {
                        let a = usize::from(a).min(full.len());
                        let n = usize::from(n).min(full.len() - a);
                        (a, &full[a..a + n])
                    }
                    None => (0, &full[..]),
                };
                let base: u32 = if *wrap { 0xffff_ff00 } else { 1000 };
                let seq = base.wrapping_add(u32::from(*seq)).wrapping_add(start as u32);
                let l4 = synth::tcp_segment(s, d, sp, dp, seq, *ack, *flags, data);
                one(LinkType::Ethernet, &ends.frame(&synth::ip_packet(s, d, 6, &l4)));
            }
            Step::Udp { ends, payload } => {
                let (s, d, sp, dp) = ends.addrs();
                let p = payload.bytes(false);
                let p = &p[..p.len().min(60_000)];
                let l4 = synth::udp_datagram(s, d, sp, dp, p);
                one(LinkType::Ethernet, &ends.frame(&synth::ip_packet(s, d, 17, &l4)));
            }
            Step::Frags { ends, udp, payload, mtu, order } => {
                let (s, d, sp, dp) = ends.addrs();
                if s.is_ipv6() {
                    continue;
                }
                let p = payload.bytes(!udp);
                let p = &p[..p.len().min(16_000)];
                let (proto, l4) = if *udp {
                    (17, synth::udp_datagram(s, d, sp, dp, p))
                } else {
                    (6, synth::tcp_segment(s, d, sp, dp, 1000, 1, 0x18, p))
                };
                let frags = synth::ipv4_fragments(&synth::ip_packet(s, d, proto, &l4), 68 + usize::from(*mtu) * 8);
                if order.is_empty() {
                    for f in &frags {
                        one(LinkType::Ethernet, &ends.frame(f));
                    }
                } else {
                    for &i in order.iter().take(32) {
                        one(LinkType::Ethernet, &ends.frame(&frags[usize::from(i) % frags.len()]));
                    }
                }
            }
            Step::Expire => {
                twin.flush();
                e.expire(ts);
                twin.engine.expire(ts);
            }
            Step::Reload(i) => {
                twin.flush();
                reloaded = true;
                let r = &rules[usize::from(*i) % rules.len()];
                e.set_rules(r.clone());
                twin.engine.set_rules(r.clone());
            }
        }
    }
    twin.flush();
    let _ = e.flows();
    let _ = e.defrag_stats();
});
