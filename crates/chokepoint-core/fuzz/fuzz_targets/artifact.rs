//! The artifact loader, structure-aware: a compiled artifact (the bundled
//! default policy, or a small policy that fills every table) is patched
//! section by section, its header's length and BLAKE3 hash recomputed
//! exactly as the writer does, and loaded; whatever loads is queried
//! through every lookup and must write back to an artifact that loads.
//!
//! Byte 0, bits 0-1: 0 patch the default artifact, 1 patch the rich one,
//! 2 the rest of the input is a body under a valid header, 3 the whole
//! input is the artifact; bit 2 runs `explain` on what loaded, bit 3 the
//! write-back check. Byte 1: `0x80 | n` appends `n * 8` zero bytes to
//! the body, `1..=0x7f` cuts that many bytes off its end. Then 4-byte
//! patches `[section, offset lo, offset hi, value]`: the section's low 5
//! bits pick a section (its 16-byte header included), the high 3 bits the
//! operation (xor, set byte, write an edge-case u32/u64 at the offset).
#![no_main]
use std::net::IpAddr;
use std::sync::OnceLock;

use chokepoint_ruleset::artifact::{self, HEADER_LEN};
use chokepoint_ruleset::{Ruleset, Trigger};
use libfuzzer_sys::fuzz_target;

const RICH: &str = r#"
version: 1
lists:
  d: {format: domains, entries: [t.me, "*.sub.example", exact.example, "пример.рф"], exact: false}
  h: {format: hosts, entries: ["0.0.0.0 hosts.example", "127.0.0.1 localhost"]}
  k: {format: keywords, entries: [tele, "t.co"]}
  n: {format: cidr, entries: [149.154.160.0/20, 10.0.0.0/8, 10.1.0.0/16, "2001:db8::/32", "2001:db8:1::/48", "::ffff:192.0.2.0/120"]}
  v: {format: dynamic}
  r:
    format: registry
    entries:
      - "1.2.3.4 | 5.6.7.0/24;reg.example | *.wild.example;http://url.example/a|b;\"Org; Ltd\";2971-18;2018-04-13"
      - "2a00::1;other.example;;Org2;27-31;2019-01-01"
rules:
  - {name: d, match: {list: d}, action: reset}
  - {name: ech, match: {list: h, on: [tls_sni], ech: true}, action: drop}
  - {name: k, match: {lists: [k]}, action: log}
  - {name: n, match: {list: n, on: [ip]}, action: drop}
  - {name: r, match: {list: r}, action: {dns: {answer: 192.0.2.53}}}
  - {name: inline, match: {keywords: [casino]}, action: {redirect: {location: "http://stub.example/"}}}
  - {name: quic, match: {protocols: [quic], quic_versions: [1, v2, draft-29], dst_ports: [443, "8000-8100"], min_bytes: 1001, first_packet: true}, action: drop, residual: {seconds: 180, scope: 3-tuple}}
  - {name: freeze, match: {protocols: [tls], dst_list: n, except: [h]}, action: {freeze: {after_bytes: [15000, 20000], direction: server_to_client, probability: 0.8}}}
  - {name: degrade, match: {list: d, on: [http_host], src_list: n, max_bytes: 900, proto: tcp}, action: {degrade: {loss: 0.5, direction: both}}, residual: {seconds: 60, scope: client, action: reset}}
  - {name: slow, match: {protocols: [dns], src_ports: [53]}, action: {throttle: {kbps: 64, burst_bytes: 3200, scope: client}}}
  - {name: rst, match: {protocols: [http]}, action: {reset: {to: server}}, residual: {seconds: 30, scope: server}}
  - {name: learnt, match: {list: v, on: [ip]}, action: drop}
  - {name: vpn, match: {protocols: [wireguard, openvpn, stun, ssh, bittorrent]}, action: {learn: {list: v, key: server_port, ttl: 60, delay: 5}}}
  - {name: fe, match: {protocols: [fully_encrypted], probability: 0.26}, action: reset, residual: {seconds: 180, scope: 2-tuple}}
default: pass
"#;

struct Base {
    body: Vec<u8>,
    /// The header's creation time, which must match the metadata's.
    created: u64,
    /// (start, length) of each section in `body`, its header included.
    sections: Vec<(usize, usize)>,
}

fn base(yaml: &str) -> Base {
    let rs = chokepoint_rules::compile_str(yaml, "fuzz.yaml", std::path::Path::new(".")).unwrap();
    let bytes = artifact::to_bytes(&rs);
    let body = bytes[HEADER_LEN..].to_vec();
    let created = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    let mut sections = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let size = u32::from_le_bytes(body[at + 4..at + 8].try_into().unwrap()) as usize;
        let count = u64::from_le_bytes(body[at + 8..at + 16].try_into().unwrap()) as usize;
        let len = 16 + size * count;
        sections.push((at, len));
        at = (at + len + 7) & !7;
    }
    Base {
        body,
        created,
        sections,
    }
}

static BASES: OnceLock<[Base; 2]> = OnceLock::new();

/// The header exactly as `artifact::to_bytes` writes it, with `created`
/// (the loader checks it against the hashed metadata's copy).
fn with_header(body: &[u8], created: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(artifact::MAGIC);
    out.extend_from_slice(&artifact::FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    out.extend_from_slice(&created.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    // The loader does not compare the hash under `cfg(fuzzing)`; a zero
    // hash keeps each execution on the checks behind it.
    out.extend_from_slice(&[0u8; 32]);
    out.extend_from_slice(body);
    out
}

const EDGES: [u64; 12] = [
    0,
    1,
    2,
    7,
    0xff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX / 2,
    u64::MAX,
];

fn patched(b: &Base, resize: u8, patches: &[u8]) -> Vec<u8> {
    let mut body = b.body.clone();
    for p in patches.chunks_exact(4) {
        let (start, len) = b.sections[usize::from(p[0] & 31) % b.sections.len()];
        let at = start + usize::from(u16::from_le_bytes([p[1], p[2]])) % len;
        let v = p[3];
        match p[0] >> 5 {
            0..=3 => body[at] ^= v.max(1),
            4 => body[at] = v,
            5 => {
                let e = (EDGES[usize::from(v) % EDGES.len()] as u32).to_le_bytes();
                let n = e.len().min(body.len() - at);
                body[at..at + n].copy_from_slice(&e[..n]);
            }
            _ => {
                let e = EDGES[usize::from(v) % EDGES.len()].to_le_bytes();
                let n = e.len().min(body.len() - at);
                body[at..at + n].copy_from_slice(&e[..n]);
            }
        }
    }
    if resize & 0x80 != 0 {
        body.resize(body.len() + usize::from(resize & 0x7f) * 8, 0);
    } else {
        body.truncate(body.len().saturating_sub(usize::from(resize)));
    }
    with_header(&body, b.created)
}

fn probe_names(rs: &Ruleset) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        &b"t.me"[..],
        b"www.t.me",
        b"telegram.org",
        b"a.sub.example",
        b"sub.example",
        b"exact.example",
        b"www.exact.example",
        b"xn--e1afmkfd.xn--p1ai",
        b"hosts.example",
        b"reg.example",
        b"x.wild.example",
        b"url.example",
        b"bigcasino.example",
        b"t.co",
        b"example.com",
        b"",
        b".",
        b"....................",
        &[b'a'; 253],
        &[0xff, b'.', 0x80],
    ]
    .iter()
    .map(|n| n.to_vec())
    .collect();
    for i in rs.domain_table().indices().take(32) {
        let n = rs.domain_table().name(i).to_vec();
        v.push([b"www.".as_slice(), &n].concat());
        v.push(n);
    }
    v
}

fn use_match(rs: &Ruleset, m: Option<chokepoint_ruleset::Match>) {
    let _ = rs.action(m.as_ref());
    if let Some(m) = m {
        let r = rs.rule(m.rule);
        let _ = r.triggers().count();
        let list = rs.list_of(m.hit);
        let info = rs.describe(m.hit);
        let _ = rs.record(list, 1);
        let _ = info.source.len();
    }
}

fn query(rs: &Ruleset, tail: &[u8]) {
    let _ = rs.memory_bytes();
    let _ = rs.action(None);
    for n in probe_names(rs).iter().chain([tail.to_vec()].iter()) {
        for t in Trigger::ALL {
            use_match(rs, rs.match_name(t, n));
            use_match(rs, rs.match_hello(t, true, n));
        }
        for h in rs.name_entries(n) {
            let _ = rs.describe(h);
        }
    }
    let mut v4: Vec<u32> = vec![0, u32::MAX, 0x959a_a001, 0x0a01_0203, 0x0102_0304, 0x0506_0701];
    v4.extend(rs.v4_table().entries().iter().take(32).map(|e| e.addr));
    let mut v6: Vec<u128> = vec![0, u128::MAX, 0x2001_0db8 << 96, (0x2001_0db8_0001u128 << 80) | 1, 0xffff_c000_0201, 0x2a00 << 112 | 1];
    v6.extend(rs.v6_table().entries().iter().take(32).map(|e| e.addr));
    if let Some(t) = tail.get(..16) {
        v6.push(u128::from_le_bytes(t.try_into().unwrap()));
        v4.push(u32::from_le_bytes(t[..4].try_into().unwrap()));
    }
    for a in v4 {
        use_match(rs, rs.match_v4(a));
        use_match(rs, rs.match_v4(a.wrapping_add(1)));
        use_match(rs, rs.match_ip(IpAddr::from(a.to_be_bytes())));
    }
    for a in v6 {
        use_match(rs, rs.match_v6(a));
        use_match(rs, rs.match_v6(a.wrapping_sub(1)));
        use_match(rs, rs.match_ip(IpAddr::from(a.to_be_bytes())));
    }
    for i in 0..rs.meta.rules.len().min(64) {
        let _ = rs.meta.rules[i].triggers().count();
    }
}

fn explain(rs: &Ruleset) {
    for q in ["t.me", "www.telegram.org", "149.154.167.99", "2001:db8::1", "reg.example", "casino.example"] {
        let _ = chokepoint_rules::explain(rs, q);
    }
}

fuzz_target!(|data: &[u8]| {
    let bases = BASES.get_or_init(|| [base(chokepoint_rules::DEFAULT_POLICY), base(RICH)]);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = match mode & 3 {
        m @ (0 | 1) => {
            let Some((&resize, patches)) = rest.split_first() else {
                return;
            };
            patched(&bases[usize::from(m)], resize, patches)
        }
        2 => with_header(rest, 1_700_000_000),
        _ => rest.to_vec(),
    };
    let _ = artifact::read_header(&bytes);
    let Ok(rs) = artifact::from_bytes(&bytes) else {
        return;
    };
    query(&rs, &data[data.len().saturating_sub(16)..]);
    // The costlier checks (each hashes and copies the whole artifact again)
    // on the inputs that ask for them, so the loader itself runs faster.
    if mode & 4 != 0 {
        explain(&rs);
    }
    if mode & 8 != 0 {
        // Whatever the loader accepts, the writer writes back to an
        // artifact the loader accepts again, unchanged.
        let again =
            artifact::from_bytes(&artifact::to_bytes(&rs)).expect("rewritten artifact loads");
        assert!(again == rs, "rewrite changed the ruleset");
    }
});
