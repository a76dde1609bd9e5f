//! Residual blocks that cross host pairs ([`SharedResidual`]): a rule's
//! `residual: {scope: server}` or `{scope: client}` block covers flows of
//! other host pairs, which a box with several workers carries on other
//! workers (flows are sharded by host pair). One table per bridge, shared
//! by every worker's engine through the core's [`ResidualStore`] trait;
//! 3-tuple and 2-tuple blocks stay in each engine, lock-free.
//!
//! The table is the core's own [`ResidualTable`] (bounded by
//! `max_residual_entries`, oldest armed evicted first, counted) behind a
//! mutex. New flows look it up only while it holds a block (a count read
//! without the lock), so a policy without such blocks, or a box with none
//! armed now, pays nothing, and one with live blocks pays a lock per new
//! flow, not per packet.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use chokepoint_core::residual::{Arming, Block, ResidualStats, ResidualStore, ResidualTable};

/// The box's residual blocks of scope `server` and `client`.
#[derive(Debug)]
pub struct SharedResidual {
    table: Mutex<ResidualTable>,
    /// Blocks held, as of the last change (written under the lock): none,
    /// and a lookup takes no lock.
    held: AtomicUsize,
}

impl SharedResidual {
    /// A table of at most `cap` blocks.
    pub fn new(cap: usize) -> SharedResidual {
        SharedResidual {
            table: Mutex::new(ResidualTable::new(cap)),
            held: AtomicUsize::new(0),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, ResidualTable> {
        // A worker that panicked holding the lock left at worst a stale
        // age-queue item or a block counted twice, which the table's own
        // checks skip: keep using it.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on the table and publish how many blocks it holds after.
    fn with<T>(&self, f: impl FnOnce(&mut ResidualTable) -> T) -> T {
        let mut t = self.table();
        let out = f(&mut t);
        self.held.store(t.len(), Ordering::Release);
        out
    }

    /// A new capacity (a reload's `max_residual_entries`).
    pub fn set_cap(&self, cap: usize) {
        self.table().set_cap(cap);
    }

    /// What the table did so far.
    pub fn stats(&self) -> ResidualStats {
        self.table().stats
    }

    /// Blocks held now.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// None held?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ResidualStore for SharedResidual {
    fn arm(&self, a: &Arming) {
        self.with(|t| t.arm(a));
    }

    fn check(
        &self,
        now: u64,
        proto: u8,
        client: IpAddr,
        server: IpAddr,
        port: u16,
    ) -> Option<Block> {
        if self.held.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.with(|t| t.check(now, proto, client, server, port))
    }

    fn expire(&self, now: u64) {
        if self.held.load(Ordering::Acquire) > 0 {
            self.with(|t| t.expire(now));
        }
    }

    fn renumber(&self, renumbering: &[Option<chokepoint_rules::RuleId>]) {
        self.with(|t| t.renumber(renumbering));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chokepoint_rules::conditions::{ResidualAction, ResidualScope};
    use chokepoint_rules::RuleId;

    const S: u64 = 1_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn arming(scope: ResidualScope, client: &str, server: &str) -> Arming {
        Arming {
            now: 10 * S,
            scope,
            proto: 6,
            client: ip(client),
            server: ip(server),
            port: 443,
            seconds: 60,
            rule: RuleId::new(3).unwrap(),
            action: ResidualAction::Reset,
        }
    }

    #[test]
    fn a_server_block_covers_every_client_until_its_end() {
        let t = SharedResidual::new(8);
        assert!(t
            .check(11 * S, 6, ip("10.0.0.9"), ip("192.0.2.1"), 443)
            .is_none());
        t.arm(&arming(ResidualScope::Server, "10.0.0.1", "192.0.2.1"));
        let b = t
            .check(11 * S, 6, ip("10.0.0.9"), ip("192.0.2.1"), 443)
            .unwrap();
        assert_eq!(b.rule, RuleId::new(3).unwrap());
        assert_eq!(b.action, ResidualAction::Reset);
        assert!(t
            .check(11 * S, 6, ip("10.0.0.9"), ip("192.0.2.1"), 80)
            .is_none());
        t.expire(70 * S);
        assert!(t.is_empty());
        // Nothing held: a lookup takes no lock (and finds nothing).
        assert_eq!(t.held.load(Ordering::Relaxed), 0);
        assert!(t
            .check(71 * S, 6, ip("10.0.0.9"), ip("192.0.2.1"), 443)
            .is_none());
        assert_eq!(t.stats().hits, 1);
        assert_eq!(t.stats().expired, 1);
    }

    #[test]
    fn it_is_bounded_and_counts_what_it_evicts() {
        let t = SharedResidual::new(2);
        for c in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            t.arm(&arming(ResidualScope::Client, c, "192.0.2.1"));
        }
        assert_eq!(t.len(), 2);
        assert_eq!(t.stats().evicted, 1);
        assert_eq!(t.stats().armed, 3);
    }
}
