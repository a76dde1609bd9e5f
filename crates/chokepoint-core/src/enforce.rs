//! Actions the core enforces packet by packet: `freeze` (forward until a
//! byte count, then black-hole the flow) and `degrade` (drop a share of
//! the packets). Their state lives in the flow ([`Enforcer`]), so a decided
//! flow still costs one table lookup and a few arithmetic operations per
//! packet, and nothing is allocated.
//!
//! Randomness is a SplitMix64 stream per flow, seeded from the profile's
//! `seed` and the flow's serial number: the core has no clock and no
//! thread RNG, so replaying a capture drops exactly the same packets.

use chokepoint_ruleset::{Action, Chance, Packets, Way};

use crate::wire::l4::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

pub use chokepoint_ruleset::random::SplitMix64;

/// A flow's enforcement state, set up from its action on its first packet
/// after the decision (the deciding packet included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Enforcer {
    /// Counting towards the freeze.
    Freeze {
        /// Whose payload counts.
        way: Way,
        /// Payload bytes counted so far.
        counted: u64,
        /// The drawn threshold; `u64::MAX` for a flow the draw spared.
        after: u64,
    },
    /// Dropping a share.
    Degrade {
        way: Way,
        packets: Packets,
        loss: Chance,
        rng: SplitMix64,
    },
    /// The action is not enforced here (a reload changed it).
    Idle,
}

/// What the enforcer needs of a packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Observed {
    pub from_client: bool,
    /// Transport payload bytes (TCP or UDP).
    pub payload: usize,
    /// TCP flags (0 for UDP).
    pub flags: u8,
    pub tcp: bool,
}

impl Observed {
    /// A pure ACK: ACK set, no SYN, FIN or RST, no payload.
    fn pure_ack(&self) -> bool {
        self.tcp
            && self.payload == 0
            && self.flags & TCP_ACK != 0
            && self.flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0
    }
}

/// What happened to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    Forward,
    /// Dropped: the flow is frozen.
    Frozen,
    /// Dropped by the degrade's draw.
    Degraded,
}

impl Enforcer {
    /// The state for a flow decided with `action`.
    pub fn new(action: &Action, seed: u64, serial: u64) -> Enforcer {
        let mut rng = SplitMix64::for_flow(seed, serial);
        match *action {
            Action::Freeze {
                after_bytes,
                direction,
                probability,
            } => {
                // Both draws always happen, so a flow's threshold does not
                // depend on the probability.
                let n = rng.between(after_bytes.min, after_bytes.max);
                let spared = !probability.hit(rng.next_u64());
                Enforcer::Freeze {
                    way: direction,
                    counted: 0,
                    after: if spared { u64::MAX } else { u64::from(n) },
                }
            }
            Action::Degrade {
                loss,
                direction,
                packets,
            } => Enforcer::Degrade {
                way: direction,
                packets,
                loss,
                rng,
            },
            _ => Enforcer::Idle,
        }
    }

    /// The fate of one packet of the flow.
    ///
    /// A freeze lets the packet through if fewer than `after` bytes had
    /// been counted before it: the segment that reaches or crosses the
    /// threshold still passes (a box counting what it forwarded sees the
    /// threshold only once it is behind it), and every packet after it,
    /// either way, is dropped.
    #[inline]
    pub fn fate(&mut self, p: &Observed) -> Fate {
        match self {
            Enforcer::Freeze {
                way,
                counted,
                after,
            } => {
                if *counted >= *after {
                    return Fate::Frozen;
                }
                if way.covers(p.from_client) {
                    *counted += p.payload as u64;
                }
                Fate::Forward
            }
            Enforcer::Degrade {
                way,
                packets,
                loss,
                rng,
            } => {
                let chosen = way.covers(p.from_client)
                    && match packets {
                        Packets::All => true,
                        Packets::Acks => p.from_client && p.pure_ack(),
                    };
                // Only chosen packets draw, so the packets that are never
                // candidates (the server's, under `acks`) do not change
                // which of the candidates are dropped.
                if chosen && loss.hit(rng.next_u64()) {
                    Fate::Degraded
                } else {
                    Fate::Forward
                }
            }
            Enforcer::Idle => Fate::Forward,
        }
    }
}
