//! What the core reports: a [`Verdict`] per packet and an [`Event`] per
//! decision (one per TLS/QUIC/HTTP flow, one per DNS query, and also for
//! `pass` when a name was seen: labs want to see all the censor saw).

use std::net::IpAddr;

use chokepoint_ruleset::{Hit, Protocol, RuleId, Trigger};

pub use chokepoint_ruleset::Verdict;

/// A name as extracted, kept inline so events never allocate.
#[derive(Clone, Copy)]
pub struct NameBuf {
    bytes: [u8; 255],
    len: u8,
}

impl NameBuf {
    /// The empty name.
    pub const EMPTY: NameBuf = NameBuf {
        bytes: [0; 255],
        len: 0,
    };

    /// A copy of `b`, cut at 255 bytes.
    pub fn new(b: &[u8]) -> NameBuf {
        let mut n = NameBuf::EMPTY;
        let len = b.len().min(255);
        n.bytes[..len].copy_from_slice(&b[..len]);
        n.len = len as u8;
        n
    }
    /// The name's bytes.
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
    /// Source address of the deciding packet.
    pub src: IpAddr,
    /// Its destination address.
    pub dst: IpAddr,
    /// Its source port.
    pub sport: u16,
    /// Its destination port.
    pub dport: u16,
    /// Its IP protocol.
    pub proto: u8,
    /// Where the name came from (`ip` for an address rule).
    pub trigger: Trigger,
    /// The protocol the flow was classified as, when known: the one a
    /// protocol rule fired on (trigger `protocol`), or the one a name came
    /// in.
    pub protocol: Option<Protocol>,
    /// The name as sent (empty for `ip`, and for a ClientHello without SNI).
    pub name: NameBuf,
    /// The ClientHello carried Encrypted Client Hello.
    pub ech: bool,
    /// The ClientHello carried GREASE values.
    pub grease: bool,
    /// The deciding rule (none: the policy default).
    pub rule: Option<RuleId>,
    /// The list entry that matched.
    pub hit: Option<Hit>,
    /// What the rule (or default) says to do.
    pub verdict: Verdict,
    /// A client segment with a TTL too low to reach the server was skipped
    /// in this flow (`ttl_fakes: ignore`).
    pub fake_ignored: bool,
    /// The name that fake carried, if it held a whole ClientHello.
    pub fake_name: NameBuf,
    /// An urgent byte was taken out of the stream (`urgent: strip`).
    pub urgent_stripped: bool,
    /// Segments overlapped with different bytes (`overlap` picked a copy).
    pub overlap_conflict: bool,
    /// A segment with a bad checksum was skipped (`checksums: verify`).
    pub bad_checksum: bool,
}

/// What the wire-reading knobs of the profile changed in a flow: bits of
/// `Flow::quirks`, copied into its event.
pub(crate) mod quirk {
    pub const FAKE_IGNORED: u8 = 1;
    pub const URGENT_STRIPPED: u8 = 2;
    pub const OVERLAP_CONFLICT: u8 = 4;
    pub const BAD_CHECKSUM: u8 = 8;
}

/// The core's answer for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What to do with the packet.
    pub verdict: Verdict,
    /// The rule that decided (none: the policy default, or no flow rule).
    pub rule: Option<RuleId>,
    /// Set when this packet completed the flow's (or query's) decision.
    pub decided_now: bool,
    /// The flow the packet belongs to: a number unique within this engine
    /// for the flow's lifetime, so per-flow state outside the core (a
    /// throttle's token bucket) can follow the flow, IP fragments included.
    /// `None` for packets the engine keeps no flow for (non-IP frames,
    /// fragments of an incomplete datagram, malformed packets).
    pub flow: Option<u64>,
    /// The flow's client (the side that opened it), so a throttle can
    /// share one bucket among a subscriber's flows. `None` with `flow`.
    pub client: Option<IpAddr>,
    /// Under [`Verdict::Freeze`] and [`Verdict::Degrade`], which the core
    /// enforces packet by packet: this packet is to be discarded (the flow
    /// is frozen, or the degrade's draw fell on it). Always `false` for
    /// other verdicts.
    pub dropped: bool,
}

impl Decision {
    /// Forward, nothing decided, no flow: what a frame that is not IP
    /// gets (and a value to fill a decision buffer with).
    pub const PASS: Decision = Decision {
        verdict: Verdict::Pass,
        rule: None,
        decided_now: false,
        flow: None,
        client: None,
        dropped: false,
    };

    /// Does the packet go on unchanged? The verdict's answer, except under
    /// freeze and degrade, where the core decided for this packet.
    #[inline]
    pub fn forwards(&self) -> bool {
        if self.verdict.per_packet() {
            !self.dropped
        } else {
            self.verdict.forwards()
        }
    }
}
