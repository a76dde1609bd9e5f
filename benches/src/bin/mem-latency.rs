//! Latency of one dependent random memory access over buffers of growing
//! size (a pointer chase): the floor under any lookup into a table that
//! does not fit in cache.
//!
//! `cargo run --release -p chokepoint-benches --bin mem-latency`

use chokepoint_benches::Rng;
use std::time::Instant;

fn main() {
    for mib in [1usize, 4, 16, 32, 64] {
        let n = mib * 1024 * 1024 / 8;
        // One random cycle through all slots (Sattolo's shuffle).
        let mut order: Vec<usize> = (0..n).collect();
        let mut r = Rng::new(1);
        for i in (1..n).rev() {
            let j = r.below(i as u64) as usize;
            order.swap(i, j);
        }
        let mut next = vec![0usize; n];
        for w in 0..n {
            next[order[w]] = order[(w + 1) % n];
        }
        let steps = 4_000_000;
        let t = Instant::now();
        let mut p = 0;
        for _ in 0..steps {
            p = next[p];
        }
        let ns = t.elapsed().as_nanos() as f64 / steps as f64;
        println!("{mib:>3} MiB: {ns:6.1} ns per dependent random access (end {p})");
    }
}
