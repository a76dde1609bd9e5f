//! The dynamic lists `learn` actions fill ([`LearnedTable`]): one per
//! bridge or replay, shared by every worker's engine through the core's
//! [`LearnStore`] trait, kept outside the ruleset so a reload keeps what
//! was learnt.
//!
//! Bounded by the profile's `max_learned_entries`: when full, the entry
//! learnt longest ago goes first (counted as expired if its time was up,
//! else as evicted). Time is the caller's: entries start and end by the
//! timestamps the engines are given (capture time in a replay, arrival
//! time on a live bridge).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::RwLock;

// foldhash, as the flow table: several times faster than SipHash on an
// address key, and seeded at random per process.
use hashbrown::HashMap;

use chokepoint_core::learn::{LearnStore, LearnedKey, Learning};

/// What the table did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LearnedStats {
    /// Entries added.
    pub learned: u64,
    /// Learns of an entry already held (its time extended).
    pub refreshed: u64,
    /// Lookups an active entry answered (new flows blocked by it).
    pub hits: u64,
    /// Entries pushed out by a full table before their end.
    pub evicted: u64,
    /// Entries dropped after their end.
    pub expired: u64,
    /// Entries held now.
    pub entries: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    from: u64,
    until: u64,
    /// Which learn put it in the age queue.
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<LearnedKey, Entry>,
    /// Keys in the order first learnt; an item whose entry is gone or was
    /// learnt again under a later sequence number is stale and skipped.
    age: VecDeque<(u64, LearnedKey)>,
    cap: usize,
    seq: u64,
    learned: u64,
    refreshed: u64,
    evicted: u64,
    expired: u64,
}

impl Inner {
    /// Drop the oldest entry; `now` says whether it expired or is evicted.
    /// False when nothing is left.
    fn pop_oldest(&mut self, now: Option<u64>) -> bool {
        while let Some((seq, key)) = self.age.pop_front() {
            match self.entries.get(&key) {
                Some(e) if e.seq == seq => {
                    let done = now.is_some_and(|n| e.until <= n);
                    self.entries.remove(&key);
                    if done {
                        self.expired += 1;
                    } else {
                        self.evicted += 1;
                    }
                    return true;
                }
                _ => continue,
            }
        }
        false
    }

    /// Drop entries at the front of the age queue whose time is up.
    fn expire_front(&mut self, now: u64) {
        while let Some(&(seq, key)) = self.age.front() {
            match self.entries.get(&key) {
                Some(e) if e.seq == seq && e.until > now => break,
                Some(e) if e.seq == seq => {
                    self.entries.remove(&key);
                    self.expired += 1;
                }
                _ => {}
            }
            self.age.pop_front();
        }
    }

    fn shrink_to_cap(&mut self, now: Option<u64>) {
        while self.entries.len() > self.cap && self.pop_oldest(now) {}
    }
}

/// The bounded, shared table of learnt entries.
#[derive(Debug)]
pub struct LearnedTable {
    inner: RwLock<Inner>,
    hits: AtomicU64,
    /// Entries held, readable without the lock: while nothing was learnt
    /// a lookup costs one load.
    held: AtomicUsize,
}

impl LearnedTable {
    /// A table of at most `cap` entries (at least one).
    pub fn new(cap: usize) -> LearnedTable {
        LearnedTable {
            inner: RwLock::new(Inner {
                cap: cap.max(1),
                ..Inner::default()
            }),
            hits: AtomicU64::new(0),
            held: AtomicUsize::new(0),
        }
    }

    /// A new cap (a reload's profile): a lower one drops the oldest
    /// entries at once, counted as evicted.
    pub fn set_cap(&self, cap: usize) {
        let mut t = self.write();
        t.cap = cap.max(1);
        t.shrink_to_cap(None);
        self.held.store(t.entries.len(), Ordering::Relaxed);
    }

    /// Drop the entries whose time is up by `now` (the end of a capture,
    /// or a quiet bridge's tick); only ever lets traffic through sooner.
    pub fn expire(&self, now: u64) {
        let mut t = self.write();
        let stale: Vec<LearnedKey> = t
            .entries
            .iter()
            .filter(|(_, e)| e.until <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            t.entries.remove(&k);
            t.expired += 1;
        }
        let Inner { entries, age, .. } = &mut *t;
        age.retain(|(seq, k)| entries.get(k).is_some_and(|e| e.seq == *seq));
        self.held.store(t.entries.len(), Ordering::Relaxed);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Is nothing held?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the table did so far.
    pub fn stats(&self) -> LearnedStats {
        let t = self.read();
        LearnedStats {
            learned: t.learned,
            refreshed: t.refreshed,
            hits: self.hits.load(Ordering::Relaxed),
            evicted: t.evicted,
            expired: t.expired,
            entries: t.entries.len() as u64,
        }
    }

    // A worker that panicked while holding the lock left the table as it
    // was between two operations (each completes before unlocking): keep
    // serving it rather than take every other worker down too.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl LearnStore for LearnedTable {
    fn learn(&self, l: &Learning) {
        let mut t = self.write();
        t.expire_front(l.at);
        if let Some(e) = t.entries.get_mut(&l.key) {
            e.from = e.from.min(l.from);
            e.until = e.until.max(l.until);
            t.refreshed += 1;
            self.held.store(t.entries.len(), Ordering::Relaxed);
            return;
        }
        while t.entries.len() >= t.cap && t.pop_oldest(Some(l.at)) {}
        t.seq += 1;
        let seq = t.seq;
        t.entries.insert(
            l.key,
            Entry {
                from: l.from,
                until: l.until,
                seq,
            },
        );
        t.age.push_back((seq, l.key));
        t.learned += 1;
        self.held.store(t.entries.len(), Ordering::Relaxed);
    }

    fn holds_any(&self, keys: &[LearnedKey], now: u64) -> bool {
        if self.held.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let t = self.read();
        let on = keys.iter().any(|k| {
            t.entries
                .get(k)
                .is_some_and(|e| e.from <= now && now < e.until)
        });
        if on {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    impl LearnedTable {
        fn holds(&self, key: &LearnedKey, now: u64) -> bool {
            self.holds_any(std::slice::from_ref(key), now)
        }
    }

    fn key(i: u8) -> LearnedKey {
        LearnedKey::server_port(7, format!("198.18.12.{i}").parse().unwrap(), 17, 51820)
    }

    fn learning(i: u8, at: u64, delay: u64, ttl: u64) -> Learning {
        Learning {
            key: key(i),
            at,
            from: at + delay,
            until: at + delay + ttl,
        }
    }

    #[test]
    fn an_entry_blocks_from_its_start_to_its_end() {
        let t = LearnedTable::new(16);
        t.learn(&learning(1, 10 * S, 5 * S, 60 * S));
        assert!(!t.holds(&key(1), 14 * S), "not before the delay");
        assert!(t.holds(&key(1), 15 * S));
        assert!(t.holds(&key(1), 74 * S));
        assert!(!t.holds(&key(1), 75 * S), "not after the ttl");
        assert!(!t.holds(&key(2), 20 * S));
        let other_port = LearnedKey {
            port: 51821,
            ..key(1)
        };
        assert!(!t.holds(&other_port, 20 * S));
        assert_eq!(t.stats().hits, 2);
        t.expire(75 * S);
        assert_eq!((t.len(), t.stats().expired), (0, 1));
    }

    #[test]
    fn learning_again_extends_never_shortens() {
        let t = LearnedTable::new(16);
        t.learn(&learning(1, 0, 10 * S, 100 * S));
        t.learn(&learning(1, 5 * S, 0, 10 * S));
        assert!(t.holds(&key(1), 5 * S), "the earlier start");
        assert!(t.holds(&key(1), 109 * S), "the later end");
        let s = t.stats();
        assert_eq!((s.learned, s.refreshed, s.entries), (1, 1, 1));
    }

    #[test]
    fn the_cap_holds_and_evictions_are_counted() {
        let t = LearnedTable::new(3);
        for i in 1..=5 {
            t.learn(&learning(i, u64::from(i) * S, 0, 1000 * S));
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.stats().evicted, 2);
        assert!(!t.holds(&key(1), 10 * S), "the oldest went first");
        assert!(t.holds(&key(5), 10 * S));
        // A full table whose oldest entry's time is up counts it expired.
        t.learn(&learning(6, 2000 * S, 0, 10 * S));
        assert_eq!(t.stats().expired, 3, "all three had ended by then");
        t.set_cap(1);
        assert_eq!(t.len(), 1);
    }
}
