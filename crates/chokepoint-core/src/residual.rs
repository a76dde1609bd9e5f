//! Residual blocking: state that outlives a connection.
//!
//! Censors remember a blocked connection and block what follows it: the
//! GFW blocks (client IP, server IP, server port) for 90 or 180 s after an
//! HTTP keyword, an ESNI ClientHello or a forbidden QUIC SNI; Iran blocks
//! an address for about a minute after a bad SNI. A rule with `residual:`
//! arms an entry here when it fires; every flow opened later inside the
//! entry's scope is blocked until the entry ends, whatever it carries.
//!
//! The table is bounded (`max_residual_entries`): when full, the entry armed
//! longest ago goes first, and is counted. Time is the caller's: entries
//! end by the timestamps passed in, the core has no clock.
//!
//! A box shards flows over its workers by host pair (the outermost
//! addresses: a tunnel's flows all go to one worker), so a 3-tuple or
//! 2-tuple block concerns the flows of the worker that armed it, and
//! lives in that engine's table. A `server` or `client` block covers flows that
//! other workers carry (other clients of the server, other servers of the
//! client): given a [`ResidualStore`], the table keeps those scopes there,
//! shared by every worker, as [`LearnStore`](crate::learn::LearnStore)
//! keeps learnt servers.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use chokepoint_ruleset::{ResidualAction, ResidualScope, RuleId};
use hashbrown::HashMap;

const NANOS: u64 = 1_000_000_000;

/// What residual blocking did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResidualStats {
    /// Entries armed (a rule fired again on a live entry's scope: counted
    /// again, the entry extended).
    pub armed: u64,
    /// New flows an entry blocked.
    pub hits: u64,
    /// Entries pushed out by a full table before their end.
    pub evicted: u64,
    /// Entries that ended.
    pub expired: u64,
}

/// Who an entry covers; fields a scope does not use are zero. A scope
/// with a port also names the transport: a port means nothing without
/// it, and the GFW's QUIC block covers UDP on the 3-tuple, not TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    scope: u8,
    proto: u8,
    client: IpAddr,
    server: IpAddr,
    port: u16,
}

const ZERO: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl Key {
    fn new(scope: ResidualScope, proto: u8, client: IpAddr, server: IpAddr, port: u16) -> Key {
        let (proto, client, server, port) = match scope {
            ResidualScope::ThreeTuple => (proto, client, server, port),
            ResidualScope::TwoTuple => (0, client, server, 0),
            ResidualScope::Server => (proto, ZERO, server, port),
            ResidualScope::Client => (0, client, ZERO, 0),
        };
        Key {
            scope: scope as u8,
            proto,
            client,
            server,
            port,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// When it ends, nanoseconds.
    until: u64,
    rule: RuleId,
    action: ResidualAction,
    /// Which arming put it in the age queue.
    seq: u64,
}

/// A block that applies to a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// The rule that armed it.
    pub rule: RuleId,
    /// What it does.
    pub action: ResidualAction,
}

/// One arming of a residual block: `scope` around (transport `proto`,
/// client, server, port), from `now` for `seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arming {
    /// When the rule fired, nanoseconds (the caller's clock).
    pub now: u64,
    /// Which new flows it covers.
    pub scope: ResidualScope,
    /// IP protocol number of the flow that fired it.
    pub proto: u8,
    /// That flow's client.
    pub client: IpAddr,
    /// Its server.
    pub server: IpAddr,
    /// Its server port.
    pub port: u16,
    /// How long the block lasts.
    pub seconds: u32,
    /// The rule that fired.
    pub rule: RuleId,
    /// What the block does to a new flow.
    pub action: ResidualAction,
}

impl Arming {
    /// Does the block reach past the worker that armed it?
    pub fn crosses_host_pairs(&self) -> bool {
        crosses_host_pairs(self.scope)
    }
}

/// `server` and `client` blocks cover other host pairs, and so flows other
/// workers carry.
pub fn crosses_host_pairs(scope: ResidualScope) -> bool {
    matches!(scope, ResidualScope::Server | ResidualScope::Client)
}

/// Where the blocks that cross host pairs live: a bounded structure outside
/// the core, shared by every worker of a box
/// (`chokepoint_runtime::residual::SharedResidual`). The engine asks it by
/// the caller's timestamps and holds no lock of its own.
pub trait ResidualStore: Send + Sync {
    /// Hold a block of scope `server` or `client`.
    fn arm(&self, a: &Arming);
    /// The block, if any, of scope `server` or `client` that a new flow
    /// falls in (as [`ResidualTable::check`]).
    fn check(
        &self,
        now: u64,
        proto: u8,
        client: IpAddr,
        server: IpAddr,
        port: u16,
    ) -> Option<Block>;
    /// End the blocks whose time is up by `now`.
    fn expire(&self, now: u64);
    /// After a reload: each block's rule as the new policy numbers it
    /// ([`ResidualTable::renumber`]). Called once per reload, by whoever
    /// owns the store.
    fn renumber(&self, renumbering: &[Option<RuleId>]);
}

const SCOPES: [ResidualScope; 4] = [
    ResidualScope::ThreeTuple,
    ResidualScope::TwoTuple,
    ResidualScope::Server,
    ResidualScope::Client,
];

/// The bounded table of residual blocks.
pub struct ResidualTable {
    entries: HashMap<Key, Entry>,
    /// Keys in arming order, with the arming's sequence number: the front
    /// is the oldest entry (or a stale item for one already gone).
    age: VecDeque<(u64, Key)>,
    cap: usize,
    seq: u64,
    /// Scopes some entry was armed in (bit per scope): a lookup only
    /// probes those, and none while nothing was ever armed.
    scopes: u8,
    /// Where `server` and `client` blocks go, when the engine is one of a
    /// box's workers.
    shared: Option<Arc<dyn ResidualStore>>,
    /// What happened so far (in this table; a shared store counts its own).
    pub stats: ResidualStats,
}

impl std::fmt::Debug for ResidualTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidualTable")
            .field("entries", &self.entries.len())
            .field("cap", &self.cap)
            .field("shared", &self.shared.is_some())
            .field("stats", &self.stats)
            .finish()
    }
}

impl ResidualTable {
    /// A table of at most `cap` entries (at least one).
    pub fn new(cap: usize) -> ResidualTable {
        ResidualTable {
            entries: HashMap::new(),
            age: VecDeque::new(),
            cap: cap.max(1),
            seq: 0,
            scopes: 0,
            shared: None,
            stats: ResidualStats::default(),
        }
    }

    /// Keep `server` and `client` blocks in `store`, shared with the box's
    /// other workers, from now on.
    pub fn share_with(&mut self, store: Arc<dyn ResidualStore>) {
        self.shared = Some(store);
    }

    /// A new capacity; a smaller one evicts as new entries arrive.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// None held?
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Hold the block `a` arms (in the shared store, if it crosses host
    /// pairs and there is one).
    pub fn arm(&mut self, a: &Arming) {
        if let (true, Some(store)) = (a.crosses_host_pairs(), &self.shared) {
            store.arm(a);
            return;
        }
        let &Arming {
            now,
            scope,
            proto,
            client,
            server,
            port,
            seconds,
            rule,
            action,
        } = a;
        self.stats.armed += 1;
        self.scopes |= 1 << scope as u8;
        let key = Key::new(scope, proto, client, server, port);
        let until = now.saturating_add(u64::from(seconds) * NANOS);
        if let Some(e) = self.entries.get_mut(&key) {
            // Fired again inside its own block (a flow opened before it):
            // the block runs from the latest firing.
            e.until = e.until.max(until);
            e.rule = rule;
            e.action = action;
            return;
        }
        self.drain_front(now);
        while self.entries.len() >= self.cap {
            let Some((seq, k)) = self.age.pop_front() else {
                break;
            };
            if self.entries.get(&k).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&k);
                self.stats.evicted += 1;
            }
        }
        self.seq += 1;
        self.entries.insert(
            key,
            Entry {
                until,
                rule,
                action,
                seq: self.seq,
            },
        );
        self.age.push_back((self.seq, key));
        // Items of entries that ended through `check` stay queued until
        // they reach the front; past twice the cap, drop them all at once.
        if self.age.len() > 2 * self.cap {
            let entries = &self.entries;
            self.age
                .retain(|(s, k)| entries.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    /// Front items that are stale or ended by `now`.
    fn drain_front(&mut self, now: u64) {
        while let Some(&(seq, k)) = self.age.front() {
            match self.entries.get(&k) {
                Some(e) if e.seq == seq && e.until > now => break,
                Some(e) if e.seq == seq => {
                    self.entries.remove(&k);
                    self.stats.expired += 1;
                }
                _ => {}
            }
            self.age.pop_front();
        }
    }

    /// The block, if any, a flow of transport `proto` opened `now` from
    /// `client` to `server:port` falls in. Checked in scope order: the
    /// narrowest first.
    #[inline]
    pub fn check(
        &mut self,
        now: u64,
        proto: u8,
        client: IpAddr,
        server: IpAddr,
        port: u16,
    ) -> Option<Block> {
        // The shared store holds only the two widest scopes: this table's
        // narrower ones come first.
        self.check_here(now, proto, client, server, port)
            .or_else(|| {
                self.shared
                    .as_ref()?
                    .check(now, proto, client, server, port)
            })
    }

    #[inline]
    fn check_here(
        &mut self,
        now: u64,
        proto: u8,
        client: IpAddr,
        server: IpAddr,
        port: u16,
    ) -> Option<Block> {
        if self.scopes == 0 || self.entries.is_empty() {
            return None;
        }
        for scope in SCOPES {
            if self.scopes & (1 << scope as u8) == 0 {
                continue;
            }
            let key = Key::new(scope, proto, client, server, port);
            let Some(e) = self.entries.get(&key) else {
                continue;
            };
            if e.until > now {
                self.stats.hits += 1;
                return Some(Block {
                    rule: e.rule,
                    action: e.action,
                });
            }
            self.entries.remove(&key);
            self.stats.expired += 1;
        }
        None
    }

    /// After a reload: each of this table's blocks names its rule as the
    /// new policy numbers it (`renumbering`, indexed by the old id: see
    /// `Ruleset::renumbering`); a block whose rule the new policy lacks
    /// ends (counted as expired). A shared store is renumbered by its
    /// owner, once per reload, not by each engine.
    pub fn renumber(&mut self, renumbering: &[Option<RuleId>]) {
        let before = self.entries.len();
        self.entries.retain(
            |_, e| match renumbering.get(e.rule.index()).copied().flatten() {
                Some(r) => {
                    e.rule = r;
                    true
                }
                None => false,
            },
        );
        self.stats.expired += (before - self.entries.len()) as u64;
    }

    /// End every entry whose time is up by `now` (the shared store's too).
    pub fn expire(&mut self, now: u64) {
        if let Some(store) = &self.shared {
            store.expire(now);
        }
        let before = self.entries.len();
        self.entries.retain(|_, e| e.until > now);
        self.stats.expired += (before - self.entries.len()) as u64;
        let entries = &self.entries;
        self.age
            .retain(|(s, k)| entries.get(k).is_some_and(|e| e.seq == *s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    const S: u64 = NANOS;

    #[test]
    fn three_tuple_window_ends_exactly() {
        let mut t = ResidualTable::new(8);
        let r = RuleId::new(0).unwrap();
        let (c, s) = (ip("10.0.0.1"), ip("192.0.2.1"));
        t.arm(&Arming {
            now: 10 * S,
            scope: ResidualScope::ThreeTuple,
            proto: 17,
            client: c,
            server: s,
            port: 443,
            seconds: 180,
            rule: r,
            action: ResidualAction::Drop,
        });
        assert!(t.check(190 * S - 1, 17, c, s, 443).is_some());
        assert!(t.check(100 * S, 17, c, s, 80).is_none(), "another port");
        assert!(t.check(100 * S, 6, c, s, 443).is_none(), "TCP on the port");
        assert!(
            t.check(100 * S, 17, ip("10.0.0.2"), s, 443).is_none(),
            "another client"
        );
        assert!(
            t.check(190 * S, 17, c, s, 443).is_none(),
            "the window is over"
        );
        assert_eq!(t.stats.hits, 1);
        assert_eq!(t.stats.expired, 1);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_evicts_the_oldest() {
        let mut t = ResidualTable::new(2);
        let r = RuleId::new(0).unwrap();
        let s = ip("192.0.2.1");
        for (i, c) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
            t.arm(&Arming {
                now: i as u64 * S,
                scope: ResidualScope::TwoTuple,
                proto: 17,
                client: ip(c),
                server: s,
                port: 0,
                seconds: 60,
                rule: r,
                action: ResidualAction::Drop,
            });
        }
        assert_eq!(t.len(), 2);
        assert_eq!(t.stats.evicted, 1);
        assert!(t.check(3 * S, 17, ip("10.0.0.1"), s, 1).is_none());
        assert!(t.check(3 * S, 17, ip("10.0.0.3"), s, 1).is_some());
        // A 2-tuple block covers every transport.
        assert!(t.check(3 * S, 6, ip("10.0.0.3"), s, 1).is_some());
    }
}
