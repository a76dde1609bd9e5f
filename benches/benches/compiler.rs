//! Compiler, artifact and matcher benchmarks on a generated 1M-domain +
//! 100k-IPv4 + 10k-IPv6 policy (and the real registry lists when
//! ../shared/testdata is present).
//!
//! `cargo bench -p chokepoint-benches --bench compiler`

use std::hint::black_box;
use std::path::PathBuf;

use chokepoint_benches::{
    hit_queries, miss_queries, v4_prefixes, v6_prefixes, write_corpus, Corpus, Rng,
};
use chokepoint_rules::{artifact, compile_file, compile_str, Trigger};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn corpus_dir() -> PathBuf {
    std::env::temp_dir().join("chokepoint-bench-corpus")
}

fn policy() -> PathBuf {
    let p = corpus_dir().join("policy.yaml");
    if !p.exists() {
        write_corpus(&corpus_dir(), Corpus::TARGET, 42).unwrap();
    }
    p
}

fn compile(c: &mut Criterion) {
    let p = policy();
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    g.bench_function("1M domains + 100k v4 + 10k v6", |b| {
        b.iter(|| black_box(compile_file(&p).unwrap()))
    });
    let real = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata");
    if real.join("lists").is_dir() {
        let yaml = "version: 1\nlists:\n  rkn: {format: registry, path: lists/registry-dump-2014-04-22.csv}\n  v4: {format: cidr, path: lists/reestr_ipban4.txt}\n  v6: {format: cidr, path: lists/reestr_ipban6.txt}\nrules:\n  - {name: rkn, match: {list: rkn}, action: reset}\n  - {name: ipban, match: {lists: [v4, v6], on: [ip]}, action: drop}\n";
        g.bench_function("real: registry 2014 + ipban v4/v6", |b| {
            b.iter(|| black_box(compile_str(yaml, "real.yaml", &real).unwrap()))
        });
    }
    g.finish();
}

fn load(c: &mut Criterion) {
    let rs = compile_file(&policy()).unwrap();
    let path = corpus_dir().join("policy.chk");
    artifact::save(&rs, &path).unwrap();
    let mut g = c.benchmark_group("artifact");
    g.sample_size(20);
    g.bench_function("load 1M+100k+10k (read + verify + decode)", |b| {
        b.iter(|| black_box(artifact::load(&path).unwrap()))
    });
    g.finish();
}

fn lookups(c: &mut Criterion) {
    let rs = compile_file(&policy()).unwrap();
    let listed = chokepoint_benches::domains(Corpus::TARGET.domains, 42);
    const BATCH: usize = 4096;
    let hits = hit_queries(&listed, BATCH, 7);
    let misses = miss_queries(BATCH, 8);
    assert!(hits
        .iter()
        .all(|q| rs.match_name(Trigger::TlsSni, q.as_bytes()).is_some()));
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (label, qs) in [
        ("domain hit (3-6 labels)", &hits),
        ("domain miss (3-6 labels)", &misses),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| {
                qs.iter()
                    .filter(|q| {
                        rs.match_name(Trigger::TlsSni, black_box(q.as_bytes()))
                            .is_some()
                    })
                    .count()
            })
        });
    }
    // The same queries against a 10k-name table that fits in cache: what a
    // lookup costs when memory latency is out of the picture.
    let small_dir = std::env::temp_dir().join("chokepoint-bench-corpus-10k");
    let small_policy = write_corpus(
        &small_dir,
        Corpus {
            domains: 10_000,
            v4: 1,
            v6: 1,
        },
        42,
    )
    .unwrap();
    let small = compile_file(&small_policy).unwrap();
    let small_hits = hit_queries(&chokepoint_benches::domains(10_000, 42), BATCH, 7);
    for (label, qs) in [
        ("domain hit, 10k-name table", &small_hits),
        ("domain miss, 10k-name table", &misses),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| {
                qs.iter()
                    .filter(|q| {
                        small
                            .match_name(Trigger::TlsSni, black_box(q.as_bytes()))
                            .is_some()
                    })
                    .count()
            })
        });
    }
    let mut r = Rng::new(9);
    let p4 = v4_prefixes(Corpus::TARGET.v4, 42 ^ 4);
    let v4_hits: Vec<u32> = (0..BATCH)
        .map(|_| {
            let (a, l) = p4[r.below(p4.len() as u64) as usize];
            a | (r.next_u64() as u32 & (u32::MAX.checked_shr(u32::from(l)).unwrap_or(0)))
        })
        .collect();
    let v4_rand: Vec<u32> = (0..BATCH).map(|_| r.next_u64() as u32).collect();
    let p6 = v6_prefixes(Corpus::TARGET.v6, 42 ^ 6);
    let v6_hits: Vec<u128> = (0..BATCH)
        .map(|_| {
            let (a, l) = p6[r.below(p6.len() as u64) as usize];
            a | ((u128::from(r.next_u64()) << 64 | u128::from(r.next_u64()))
                & u128::MAX.checked_shr(u32::from(l)).unwrap_or(0))
        })
        .collect();
    assert!(v4_hits.iter().all(|&a| rs.match_v4(a).is_some()));
    for (label, qs) in [
        ("ipv4 hit", &v4_hits),
        ("ipv4 random (mostly miss)", &v4_rand),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| {
                qs.iter()
                    .filter(|&&a| rs.match_v4(black_box(a)).is_some())
                    .count()
            })
        });
    }
    g.bench_function("ipv6 hit", |b| {
        b.iter(|| {
            v6_hits
                .iter()
                .filter(|&&a| rs.match_v6(black_box(a)).is_some())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, compile, load, lookups);
criterion_main!(benches);
