//! IPv4 and IPv6 fragment reassembly, bounded in datagrams held, bytes per
//! datagram and time.

use std::collections::HashMap;
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
    first_seen: u64,
}

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

/// IP fragment reassembly, bounded in datagrams and time.
pub struct Defrag {
    pending: HashMap<Key, Pending>,
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
        if !self.pending.contains_key(&key) && self.pending.len() >= self.max_datagrams {
            // Make room: drop the oldest datagram in progress.
            if let Some(old) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.first_seen)
                .map(|(k, _)| *k)
            {
                if let Some(p) = self.pending.remove(&old) {
                    self.pool.give(p.data);
                }
                self.stats.evictions += 1;
            }
        }
        let pool = &mut self.pool;
        let p = self.pending.entry(key).or_insert_with(|| Pending {
            data: pool.take(),
            total: None,
            first_seen: now,
        });
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
        if self.pending.is_empty() {
            return;
        }
        let timeout = self.timeout_ns;
        let pool = &mut self.pool;
        let before = self.pending.len();
        self.pending.retain(|_, p| {
            let keep = now.saturating_sub(p.first_seen) <= timeout;
            if !keep {
                pool.give(std::mem::take(&mut p.data));
            }
            keep
        });
        self.stats.timeouts += (before - self.pending.len()) as u64;
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
}
