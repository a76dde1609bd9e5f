//! What the protocol classifiers cost, measured on a noisy machine: the
//! engine workloads of `core.rs` under the corpus policy and under the same
//! policy with every classifier asked for (`ruleset_with_classifiers`),
//! timed in pairs, one run of each back to back in alternating order
//! (ABBA), so that load which comes and goes hits both sides of a pair
//! alike. Prints each side's median throughput and the median of the
//! pairs' ratios, with its spread.
//!
//! `cargo bench -p chokepoint-benches --bench classifiers [-- PAIRS]` (60 by default)

use std::sync::Arc;

use chokepoint_rules::Ruleset;

mod common;

use common::*;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs per side of a pair: long enough that a scheduler tick is noise.
const RUNS: u64 = 3;

fn rate(rules: &Arc<Ruleset>, w: &Workload) -> f64 {
    (RUNS * w.elements) as f64 / per_packet(rules, &w.packets, RUNS, &w.warm).as_secs_f64()
}

fn main() {
    let pairs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(60);
    let (plain, classifiers) = (ruleset(), ruleset_with_classifiers());
    println!("{pairs} pairs per workload; throughput in elements/s (median); ratio = classifiers / none per pair");
    for w in workloads() {
        // Warm caches and the allocator for both.
        rate(&plain, &w);
        rate(&classifiers, &w);
        let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..pairs {
            let (x, y) = if i % 2 == 0 {
                let x = rate(&plain, &w);
                (x, rate(&classifiers, &w))
            } else {
                let y = rate(&classifiers, &w);
                (rate(&plain, &w), y)
            };
            a.push(x);
            b.push(y);
            r.push(y / x);
        }
        let mut sorted = r.clone();
        sorted.sort_by(|p, q| p.total_cmp(q));
        println!(
            "{:<70} none {:>11.0}  classifiers {:>11.0}  ratio {:.3} (quartiles {:.3}-{:.3})",
            w.name,
            median(&mut a),
            median(&mut b),
            median(&mut r),
            sorted[pairs / 4],
            sorted[pairs * 3 / 4],
        );
    }
}
