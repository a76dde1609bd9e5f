//! The core's side of two-stage blocking: a rule with a `learn` action adds
//! the server of a flow it detected to a dynamic list, and IP rules on that
//! list block new flows to it, for everyone, from `delay` seconds later and
//! for `ttl` seconds (Russia's TSPU turns detections into IP:port block
//! lists within minutes; DanielLavrushin/tspu-docs, unverified).
//!
//! The lists are shared by every worker and outlive a reload, so they do
//! not live in the engine: the engine asks a [`LearnStore`] the runtime
//! gives it, by the caller's timestamps, and holds no lock of its own.

use std::net::IpAddr;

/// One entry of a dynamic list: a server address, and for a
/// `key: server_port` learn its transport and port (both 0 otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LearnedKey {
    /// The dynamic list, by its name's
    /// [`list_tag`](chokepoint_ruleset::ruleset::list_tag): a reload that
    /// adds or reorders lists finds the same entries.
    pub list: u64,
    /// The server's address.
    pub server: IpAddr,
    /// IP protocol number, or 0 for any.
    pub proto: u8,
    /// Server port, or 0 for any.
    pub port: u16,
}

impl LearnedKey {
    /// The whole address.
    pub fn server(list: u64, server: IpAddr) -> LearnedKey {
        LearnedKey {
            list,
            server,
            proto: 0,
            port: 0,
        }
    }

    /// One transport and port of the address.
    pub fn server_port(list: u64, server: IpAddr, proto: u8, port: u16) -> LearnedKey {
        LearnedKey {
            list,
            server,
            proto,
            port,
        }
    }
}

/// What a learn action asks to be held: the key, active from `from` until
/// `until` (nanoseconds, the caller's clock, as the engine is given it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Learning {
    /// The entry.
    pub key: LearnedKey,
    /// When the detection happened: entries whose time is up by then may
    /// be dropped.
    pub at: u64,
    /// When it starts to block.
    pub from: u64,
    /// When it ends.
    pub until: u64,
}

/// Where learnt entries live: a bounded structure outside the core, shared
/// by every worker (`chokepoint_runtime::learned::LearnedTable`).
pub trait LearnStore: Send + Sync {
    /// Hold `l`. An entry already held is extended (the earlier start, the
    /// later end), never shortened.
    fn learn(&self, l: &Learning);
    /// Does any of `keys` block at `now`? (A new flow asks for its server
    /// whole and by port in one call.)
    fn holds_any(&self, keys: &[LearnedKey], now: u64) -> bool;
}
