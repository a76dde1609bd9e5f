//! Lookups must not allocate: the packet path calls them per packet.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn lookups_do_not_allocate() {
    let yaml = "version: 1\nlists:\n  d: {format: domains, entries: [telegram.org, t.me, '*.wild.example']}\n  k: {format: keywords, entries: [t.co]}\n  n: {format: cidr, entries: [149.154.160.0/20, '2001:67c:4e8::/48']}\nrules:\n  - {name: d, match: {lists: [d, k]}, action: drop}\n  - {name: n, match: {list: n}, action: drop}\n";
    let rs = chokepoint_rules::compile_str(yaml, "t.yaml", std::path::Path::new(".")).unwrap();
    let names: [&[u8]; 5] = [
        b"web.telegram.org",
        b"reddit.com",
        b"a.wild.example",
        b"example.com",
        b"t.me",
    ];
    let v4: u32 = u32::from(std::net::Ipv4Addr::new(149, 154, 167, 99));
    let v6: u128 = "2001:67c:4e8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .into();
    let mapped: u128 = "::ffff:149.154.167.99"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .into();
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut hits = 0;
    for _ in 0..1000 {
        for n in names {
            for t in chokepoint_rules::Trigger::NAMES {
                hits += usize::from(rs.match_name(t, std::hint::black_box(n)).is_some());
            }
        }
        hits += usize::from(rs.match_v4(std::hint::black_box(v4)).is_some());
        hits += usize::from(rs.match_v6(std::hint::black_box(v6)).is_some());
        hits += usize::from(rs.match_v6(std::hint::black_box(mapped)).is_some());
    }
    let after = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(hits, 1000 * (4 * 4 + 3));
    assert_eq!(
        after - before,
        0,
        "lookups allocated {} times",
        after - before
    );
}
