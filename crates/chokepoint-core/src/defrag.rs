//! IPv4 and IPv6 fragment reassembly, bounded in datagrams held, bytes per
//! datagram and time.
//!
//! Datagrams in progress sit in a hash map and, in order of arrival, in a
//! FIFO of [`Arrival`]s, so expiry and eviction take the oldest from the
//! front in amortised O(1) rather than scanning every datagram on every
//! fragment (a flood of distinct fragmented datagrams would make each
//! fragment cost O(datagrams held)). Completed or refused datagrams leave
//! stale arrivals behind; they are skipped when reached and the FIFO is
//! compacted once it holds twice the cap, which keeps it bounded and the
//! compaction amortised. Arrivals are in packet order: a capture whose
//! timestamps go backwards expires a datagram only once those before it
//! have gone (or when the cap evicts it).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::decode::Fragment;
use crate::reasm::{Pool, Reassembly};

/// Largest datagram reassembled (the IPv4/IPv6 length fields' limit).
const MAX_DATAGRAM: usize = 65_535;
/// Most fragments one datagram may arrive in.
const MAX_PIECES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    ctx: u64,
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

struct Pending {
    data: Box<Reassembly>,
    /// Known once the last fragment (more = false) has arrived.
    total: Option<usize>,
    /// Tells this datagram's arrival from a stale one with the same key.
    serial: u64,
}

/// A datagram's first fragment, in arrival order.
#[derive(Clone, Copy)]
struct Arrival {
    key: Key,
    serial: u64,
    first_seen: u64,
}

/// At most this many datagrams are dropped for room on one fragment, so a
/// lowered cap after a reload shrinks the table over several packets.
const EVICT_PER_FRAGMENT: usize = 8;

/// Counters of the reassembler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefragStats {
    /// Fragments received.
    pub fragments: u64,
    /// Datagrams completed.
    pub datagrams: u64,
    /// Incomplete datagrams dropped at the timeout.
    pub timeouts: u64,
    /// Incomplete datagrams dropped to make room.
    pub evictions: u64,
    /// Fragments refused (too large, too many pieces, overlap beyond size).
    pub refused: u64,
}

impl DefragStats {
    /// Add another reassembler's counters (workers summed for reports).
    pub fn add(&mut self, o: &DefragStats) {
        let DefragStats {
            fragments,
            datagrams,
            timeouts,
            evictions,
            refused,
        } = *o;
        self.fragments += fragments;
        self.datagrams += datagrams;
        self.timeouts += timeouts;
        self.evictions += evictions;
        self.refused += refused;
    }
}

/// IP fragment reassembly, bounded in datagrams and time.
pub struct Defrag {
    pending: HashMap<Key, Pending>,
    arrivals: VecDeque<Arrival>,
    next_serial: u64,
    pool: Pool,
    max_datagrams: usize,
    timeout_ns: u64,
    /// What it did.
    pub stats: DefragStats,
}

impl Defrag {
    /// At most `max_datagrams` in progress, each kept `timeout_secs`.
    pub fn new(max_datagrams: usize, timeout_secs: u32) -> Defrag {
        Defrag {
            pending: HashMap::new(),
            arrivals: VecDeque::new(),
            next_serial: 0,
            pool: Pool::new(64),
            max_datagrams: max_datagrams.max(1),
            timeout_ns: u64::from(timeout_secs) * 1_000_000_000,
            stats: DefragStats::default(),
        }
    }

    /// New limits (a reload); a lower cap applies as new datagrams arrive.
    pub fn set_limits(&mut self, max_datagrams: usize, timeout_secs: u32) {
        self.max_datagrams = max_datagrams.max(1);
        self.timeout_ns = u64::from(timeout_secs) * 1_000_000_000;
    }

    /// Datagrams in progress.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Nothing in progress?
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Add a fragment. When it completes its datagram, the reassembled upper
    /// layer bytes are moved into `out` (whose old contents are dropped) and
    /// `true` is returned.
    pub fn add(&mut self, now: u64, f: &Fragment<'_>, out: &mut Vec<u8>) -> bool {
        self.stats.fragments += 1;
        self.expire(now);
        let key = Key {
            ctx: f.ctx,
            src: f.src,
            dst: f.dst,
            id: f.frag.id,
            proto: f.proto,
        };
        if !self.pending.contains_key(&key) {
            // Make room: drop the oldest datagrams in progress.
            let mut dropped = 0;
            while self.pending.len() >= self.max_datagrams && dropped < EVICT_PER_FRAGMENT {
                if !self.drop_oldest() {
                    break;
                }
                self.stats.evictions += 1;
                dropped += 1;
            }
            let serial = self.next_serial;
            self.next_serial += 1;
            self.arrivals.push_back(Arrival {
                key,
                serial,
                first_seen: now,
            });
            self.pending.insert(
                key,
                Pending {
                    data: self.pool.take(),
                    total: None,
                    serial,
                },
            );
            self.compact();
        }
        let p = self.pending.get_mut(&key).expect("inserted above");
        let end = f.frag.offset as usize + f.data.len();
        if !f.frag.more {
            p.total = Some(end);
        }
        let bad = end > MAX_DATAGRAM
            || p.total.is_some_and(|t| end > t)
            || p.data
                .insert(u64::from(f.frag.offset), f.data, MAX_DATAGRAM, MAX_PIECES)
                .is_err();
        if bad {
            self.stats.refused += 1;
            if let Some(p) = self.pending.remove(&key) {
                self.pool.give(p.data);
            }
            return false;
        }
        match p.total {
            Some(t) if p.data.contiguous().len() >= t => {
                let p = self.pending.remove(&key).expect("present");
                out.clear();
                out.extend_from_slice(&p.data.contiguous()[..t]);
                self.pool.give(p.data);
                self.stats.datagrams += 1;
                true
            }
            _ => false,
        }
    }

    /// Drop datagrams older than the timeout.
    pub fn expire(&mut self, now: u64) {
        while let Some(a) = self.arrivals.front() {
            if now.saturating_sub(a.first_seen) <= self.timeout_ns {
                break;
            }
            if self.drop_oldest() {
                self.stats.timeouts += 1;
            }
        }
    }

    /// Whether `a` is the arrival of a datagram still in progress.
    fn live(&self, a: &Arrival) -> bool {
        self.pending
            .get(&a.key)
            .is_some_and(|p| p.serial == a.serial)
    }

    /// Take the front arrival off, skipping stale ones, and drop its
    /// datagram; `false` if none was left.
    fn drop_oldest(&mut self) -> bool {
        while let Some(a) = self.arrivals.pop_front() {
            if self.live(&a) {
                if let Some(p) = self.pending.remove(&a.key) {
                    self.pool.give(p.data);
                }
                return true;
            }
        }
        false
    }

    /// Forget stale arrivals once they outnumber the cap: O(cap) work at
    /// most once per cap arrivals.
    fn compact(&mut self) {
        let bound = 2 * self.max_datagrams.max(self.pending.len()) + 64;
        if self.arrivals.len() > bound {
            let pending = &self.pending;
            self.arrivals
                .retain(|a| pending.get(&a.key).is_some_and(|p| p.serial == a.serial));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip::Frag;

    fn frag(id: u32, offset: u32, more: bool, data: &[u8]) -> Fragment<'_> {
        Fragment {
            ctx: 0,
            depth: 0,
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.2".parse().unwrap(),
            proto: 17,
            frag: Frag { id, offset, more },
            data,
            ttl: 64,
        }
    }

    #[test]
    fn reassembles_in_any_order_and_times_out() {
        let mut d = Defrag::new(8, 30);
        let mut out = Vec::new();
        assert!(!d.add(0, &frag(1, 8, false, b"89abcdef"), &mut out));
        assert!(d.add(1, &frag(1, 0, true, b"01234567"), &mut out));
        assert_eq!(out, b"0123456789abcdef");
        assert!(!d.add(0, &frag(2, 0, true, b"01234567"), &mut out));
        d.expire(31_000_000_001);
        assert_eq!(d.stats.timeouts, 1);
        assert!(d.is_empty());
    }

    #[test]
    fn bounded() {
        let mut d = Defrag::new(2, 30);
        let mut out = Vec::new();
        for id in 0..5 {
            d.add(id as u64, &frag(id, 0, true, b"x"), &mut out);
        }
        assert_eq!(d.len(), 2);
        assert_eq!(d.stats.evictions, 3);
        assert!(!d.add(9, &frag(9, 65_530, false, b"0123456789"), &mut out));
        assert_eq!(d.stats.refused, 1);
    }

    #[test]
    fn evicts_and_expires_oldest_first() {
        let mut d = Defrag::new(3, 30);
        let mut out = Vec::new();
        let s = 1_000_000_000;
        for id in 0..4 {
            d.add(id as u64 * s, &frag(id, 0, true, b"01234567"), &mut out);
        }
        // Datagram 0 went for room; 1, 2 and 3 remain.
        assert_eq!(d.stats.evictions, 1);
        assert!(d.add(5 * s, &frag(1, 8, false, b"y"), &mut out));
        // At 32 s datagram 2 (first seen at 2 s) is past the timeout; 3 is not.
        d.expire(32 * s + 1);
        assert_eq!((d.stats.timeouts, d.len()), (1, 1));
        d.expire(33 * s + 1);
        assert_eq!((d.stats.timeouts, d.len()), (2, 0));
    }

    #[test]
    fn stale_arrivals_stay_bounded() {
        // Many datagrams completing at once leave arrivals behind: the
        // FIFO is compacted, never grows with the traffic.
        let mut d = Defrag::new(4, 30);
        let mut out = Vec::new();
        for id in 0..10_000 {
            assert!(!d.add(0, &frag(id, 8, false, b"b"), &mut out));
            assert!(d.add(0, &frag(id, 0, true, b"abcdefgh"), &mut out));
        }
        assert_eq!(d.stats.datagrams, 10_000);
        assert!(d.arrivals.len() <= 2 * 4 + 64 + 1, "{}", d.arrivals.len());
    }

    #[test]
    fn a_lowered_cap_shrinks_over_several_fragments() {
        let mut d = Defrag::new(100, 30);
        let mut out = Vec::new();
        for id in 0..100 {
            d.add(0, &frag(id, 0, true, b"x"), &mut out);
        }
        d.set_limits(10, 30);
        d.add(0, &frag(1000, 0, true, b"x"), &mut out);
        assert_eq!(d.len(), 100 - EVICT_PER_FRAGMENT + 1);
        for id in 1001..1020 {
            d.add(0, &frag(id, 0, true, b"x"), &mut out);
        }
        assert_eq!(d.len(), 10);
    }
}
