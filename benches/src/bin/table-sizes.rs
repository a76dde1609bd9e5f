//! Memory of the lookup tables for the target corpus (1M domains + 100k
//! IPv4 + 10k IPv6 prefixes), per component and per domain.
//!
//! `cargo run --release -p chokepoint-benches --bin table-sizes [DOMAINS V4 V6]`

use chokepoint_benches::{write_corpus, Corpus};
use chokepoint_rules::{artifact, compile_file};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("counts"))
        .collect();
    let c = match args.as_slice() {
        [d, v4, v6] => Corpus {
            domains: *d,
            v4: *v4,
            v6: *v6,
        },
        _ => Corpus::TARGET,
    };
    let dir =
        std::env::temp_dir().join(format!("chokepoint-sizes-{}-{}-{}", c.domains, c.v4, c.v6));
    let policy = write_corpus(&dir, c, 42).unwrap();
    let t = std::time::Instant::now();
    let rs = compile_file(&policy).unwrap();
    let compile = t.elapsed();
    let bytes = artifact::to_bytes(&rs);
    let d = rs.domain_table();
    let n = d.len();
    let name_bytes: usize = d.indices().map(|i| d.name(i).len()).sum();
    println!(
        "corpus: {} domains, {} IPv4, {} IPv6 prefixes",
        c.domains, c.v4, c.v6
    );
    println!("compile (one run): {:.2} s", compile.as_secs_f64());
    println!("artifact: {} bytes", bytes.len());
    println!(
        "domain table: {} bytes = {:.1} bytes/domain (names themselves {:.1} bytes/domain on average)",
        d.memory_bytes(),
        d.memory_bytes() as f64 / n as f64,
        name_bytes as f64 / n as f64
    );
    println!(
        "ipv4 table: {} bytes, {} ranges",
        rs.v4_table().memory_bytes(),
        rs.v4_table().ranges()
    );
    println!(
        "ipv6 table: {} bytes, {} ranges",
        rs.v6_table().memory_bytes(),
        rs.v6_table().ranges()
    );
    println!("all tables: {} bytes", rs.memory_bytes());
}
