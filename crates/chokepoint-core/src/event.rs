//! What the core reports: a [`Verdict`] per packet and an [`Event`] per
//! decision (one per TLS/QUIC/HTTP flow, one per DNS query, and also for
//! `pass` when a name was seen: labs want to see all the censor saw).

use std::net::IpAddr;

use chokepoint_ruleset::{Hit, RuleId, Trigger};

pub use chokepoint_ruleset::Verdict;

/// A name as extracted, kept inline so events never allocate.
#[derive(Clone, Copy)]
pub struct NameBuf {
    bytes: [u8; 255],
    len: u8,
}

impl NameBuf {
    pub const EMPTY: NameBuf = NameBuf {
        bytes: [0; 255],
        len: 0,
    };

    pub fn new(b: &[u8]) -> NameBuf {
        let mut n = NameBuf::EMPTY;
        let len = b.len().min(255);
        n.bytes[..len].copy_from_slice(&b[..len]);
        n.len = len as u8;
        n
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for NameBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// One decision, with everything needed to explain it.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// 1-based index of the packet that completed the decision.
    pub packet: u64,
    /// Its timestamp (nanoseconds, caller's clock).
    pub ts: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub trigger: Trigger,
    /// The name as sent (empty for `ip`, and for a ClientHello without SNI).
    pub name: NameBuf,
    pub ech: bool,
    pub grease: bool,
    pub rule: Option<RuleId>,
    pub hit: Option<Hit>,
    pub verdict: Verdict,
}

/// The core's answer for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub rule: Option<RuleId>,
    /// Set when this packet completed the flow's (or query's) decision.
    pub decided_now: bool,
}
