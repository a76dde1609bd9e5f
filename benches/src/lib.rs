//! Deterministic generators for benchmark corpora: domain lists, prefix
//! lists and lookup queries shaped like registry data (mostly two-label
//! registrable names, IPv4 mostly /32 with aggregated /19–/24s).

#![warn(missing_docs)]

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// SplitMix64: tiny, fast, and the same sequence on every machine.
pub struct Rng(u64);

impl Rng {
    /// A generator for a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

const TLDS: &[&str] = &[
    "com", "net", "org", "ru", "info", "io", "xyz", "de", "su", "top",
];
const SUBS: &[&str] = &[
    "www", "cdn", "api", "m", "static", "img", "mail", "edge", "s3", "app",
];

fn label(r: &mut Rng, min: u64, max: u64) -> String {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let len = min + r.below(max - min + 1);
    (0..len)
        .map(|_| ALPHA[r.below(26 + 10 * u64::from(len > 5)) as usize] as char)
        .collect()
}

/// `n` distinct names: 80% `label.tld`, 20% `label.label.tld`.
pub fn domains(n: usize, seed: u64) -> Vec<String> {
    let mut r = Rng::new(seed);
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let tld = TLDS[r.below(TLDS.len() as u64) as usize];
        let base = label(&mut r, 4, 12);
        let name = if r.below(5) == 0 {
            format!("{}.{base}.{tld}", label(&mut r, 2, 8))
        } else {
            format!("{base}.{tld}")
        };
        if seen.insert(name.clone()) {
            out.push(name);
        }
    }
    out
}

/// Queries of 3–6 labels that end in a listed name (suffix hits).
pub fn hit_queries(listed: &[String], n: usize, seed: u64) -> Vec<String> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| {
            let base = &listed[r.below(listed.len() as u64) as usize];
            let mut q = base.clone();
            while q.split('.').count() < 3 + r.below(4) as usize {
                q = format!("{}.{q}", SUBS[r.below(SUBS.len() as u64) as usize]);
            }
            q
        })
        .collect()
}

/// Queries of 3–6 labels that are not listed (with overwhelming odds).
pub fn miss_queries(n: usize, seed: u64) -> Vec<String> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| {
            let labels = 3 + r.below(4);
            let mut parts: Vec<String> = (1..labels).map(|_| label(&mut r, 3, 10)).collect();
            parts.push(TLDS[r.below(TLDS.len() as u64) as usize].to_string());
            parts.join(".")
        })
        .collect()
}

/// IPv4 prefixes shaped like the registry's ipban list: 85% /32, the rest
/// /19–/24 aggregates.
pub fn v4_prefixes(n: usize, seed: u64) -> Vec<(u32, u8)> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| {
            let len = if r.below(100) < 85 {
                32
            } else {
                19 + r.below(6) as u8
            };
            let a = (r.next_u64() as u32) & (u32::MAX << (32 - u32::from(len)));
            (a, len)
        })
        .collect()
}

/// IPv6 prefixes in 2000::/3: half /128 hosts, the rest /32–/64.
pub fn v6_prefixes(n: usize, seed: u64) -> Vec<(u128, u8)> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| {
            let len = if r.below(2) == 0 {
                128
            } else {
                32 + r.below(33) as u8
            };
            let raw = (u128::from(r.next_u64()) << 64 | u128::from(r.next_u64()))
                & !(0b111u128 << 125)
                | (1u128 << 125);
            let a = if len == 128 {
                raw
            } else {
                raw & (u128::MAX << (128 - u32::from(len)))
            };
            (a, len)
        })
        .collect()
}

/// Sizes of a generated corpus.
#[derive(Clone, Copy, Debug)]
pub struct Corpus {
    /// Domains listed.
    pub domains: usize,
    /// IPv4 prefixes listed.
    pub v4: usize,
    /// IPv6 prefixes listed.
    pub v6: usize,
}

impl Corpus {
    /// The size the targets are stated for.
    pub const TARGET: Corpus = Corpus {
        domains: 1_000_000,
        v4: 100_000,
        v6: 10_000,
    };
}

/// Write `domains.txt`, `v4.txt`, `v6.txt` and `policy.yaml` into `dir`;
/// returns the policy path.
pub fn write_corpus(dir: &Path, c: Corpus, seed: u64) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("domains.txt"))?);
    for d in domains(c.domains, seed) {
        writeln!(f, "{d}")?;
    }
    f.flush()?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("v4.txt"))?);
    for (a, l) in v4_prefixes(c.v4, seed ^ 4) {
        writeln!(f, "{}/{l}", std::net::Ipv4Addr::from(a))?;
    }
    f.flush()?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("v6.txt"))?);
    for (a, l) in v6_prefixes(c.v6, seed ^ 6) {
        writeln!(f, "{}/{l}", std::net::Ipv6Addr::from(a))?;
    }
    f.flush()?;
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "version: 1\nlists:\n  names: {format: domains, path: domains.txt}\n  v4: {format: cidr, path: v4.txt}\n  v6: {format: cidr, path: v6.txt}\nrules:\n  - {name: names, match: {list: names}, action: reset}\n  - {name: nets, match: {lists: [v4, v6], on: [ip]}, action: drop}\n",
    )?;
    Ok(policy)
}
