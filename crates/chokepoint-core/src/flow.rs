//! The flow table: bidirectional flows keyed by the inner 5-tuple plus the
//! VLAN/tunnel context, with per-state idle timeouts and a hard capacity.
//!
//! Both directions map to one entry (the key orders its endpoints); the
//! side that opened the flow is the client. Idle flows are found by a
//! cursor that visits a couple of slots per packet, so expiry costs a
//! constant amount of work per packet and no timer. When the table is
//! full, the least recently seen of a sample of flows is evicted.

use std::net::IpAddr;

// hashbrown's default hasher (foldhash) is several times faster than std's
// SipHash on a flow key and still seeded at random per process, so crafted
// 5-tuples cannot be aimed at one bucket.
use hashbrown::HashMap;

use chokepoint_ruleset::Match;
use chokepoint_ruleset::Timeouts;

use crate::event::Verdict;
use crate::reasm::{Pool, Reassembly};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ctx: u64,
    pub proto: u8,
    pub a: IpAddr,
    pub pa: u16,
    pub b: IpAddr,
    pub pb: u16,
}

impl FlowKey {
    /// The key for a packet, and whether the packet's source is side `a`.
    pub fn new(
        ctx: u64,
        proto: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
    ) -> (FlowKey, bool) {
        if (src, sport) <= (dst, dport) {
            (
                FlowKey {
                    ctx,
                    proto,
                    a: src,
                    pa: sport,
                    b: dst,
                    pb: dport,
                },
                true,
            )
        } else {
            (
                FlowKey {
                    ctx,
                    proto,
                    a: dst,
                    pa: dport,
                    b: src,
                    pb: sport,
                },
                false,
            )
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// TCP, handshake not complete.
    Syn,
    Established,
    /// TCP FIN or RST seen.
    Closing,
    Udp,
}

/// What the inspector is doing with the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inspect {
    /// Nothing seen yet.
    Start,
    Tls,
    Http,
    DnsTcp,
    Quic,
    /// Finished or given up: later packets are not looked at.
    Done,
}

pub struct Flow {
    pub key: FlowKey,
    pub client_is_a: bool,
    pub first_seen: u64,
    pub last_seen: u64,
    pub state: State,
    /// The sticky decision: (verdict, rule).
    pub verdict: Option<(Verdict, Option<chokepoint_ruleset::RuleId>)>,
    /// A `pass`/`log` IP rule that matched: a name rule before it in the
    /// policy may still decide.
    pub ip_hold: Option<Match>,
    pub inspect: Inspect,
    /// Client data packets and bytes inspected so far.
    pub inspected_packets: u32,
    pub inspected_bytes: u32,
    /// Client stream offset 0 in sequence space (ISN + 1), once known.
    pub seq_base: Option<u32>,
    /// Client stream or QUIC CRYPTO data being reassembled.
    pub buf: Option<Box<Reassembly>>,
    /// QUIC: the client's first Destination Connection ID (keys derive
    /// from it for the whole handshake).
    pub dcid: [u8; 20],
    pub dcid_len: u8,
    pub packets: u64,
    pub bytes: u64,
    /// The name the flow was decided on (trigger, ECH flag, name), kept only
    /// when the profile asks to re-evaluate flows on reload.
    pub seen: Option<Box<(chokepoint_ruleset::Trigger, bool, crate::event::NameBuf)>>,
}

impl Flow {
    pub fn new(key: FlowKey, client_is_a: bool, now: u64, state: State) -> Flow {
        Flow {
            key,
            client_is_a,
            first_seen: now,
            last_seen: now,
            state,
            verdict: None,
            ip_hold: None,
            inspect: Inspect::Start,
            inspected_packets: 0,
            inspected_bytes: 0,
            seq_base: None,
            buf: None,
            dcid: [0; 20],
            dcid_len: 0,
            packets: 0,
            bytes: 0,
            seen: None,
        }
    }

    /// The flow's two addresses, from the key.
    pub fn addresses(&self) -> (IpAddr, IpAddr) {
        (self.key.a, self.key.b)
    }

    /// Is a packet whose source is side `a` (`from_a`) from the client?
    pub fn from_client(&self, from_a: bool) -> bool {
        from_a == self.client_is_a
    }

    fn timeout(&self, t: &Timeouts) -> u64 {
        let s = match self.state {
            State::Syn => t.syn,
            State::Established => t.established,
            State::Closing => t.fin,
            State::Udp => t.udp,
        };
        u64::from(s) * 1_000_000_000
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub created: u64,
    pub expired: u64,
    /// Flows dropped from a full table before their timeout.
    pub evicted: u64,
}

pub struct FlowTable {
    map: HashMap<FlowKey, u32>,
    slots: Vec<Option<Flow>>,
    free: Vec<u32>,
    cap: usize,
    cursor: usize,
    timeouts: Timeouts,
    pub stats: FlowStats,
}

/// Slots visited per packet looking for idle flows.
const SWEEP_PER_PACKET: usize = 2;
/// Flows sampled to pick an eviction victim.
const EVICTION_SAMPLE: usize = 32;

impl FlowTable {
    pub fn new(cap: usize, timeouts: Timeouts) -> FlowTable {
        FlowTable {
            map: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            cap: cap.max(1),
            cursor: 0,
            timeouts,
            stats: FlowStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn get(&mut self, key: &FlowKey) -> Option<u32> {
        self.map.get(key).copied()
    }

    pub fn flow(&mut self, idx: u32) -> &mut Flow {
        self.slots[idx as usize].as_mut().expect("live flow")
    }

    fn remove(&mut self, idx: usize, pool: &mut Pool) {
        if let Some(f) = self.slots[idx].take() {
            self.map.remove(&f.key);
            if let Some(b) = f.buf {
                pool.give(b);
            }
            self.free.push(idx as u32);
        }
    }

    /// Insert a new flow, evicting one if the table is full.
    pub fn insert(&mut self, flow: Flow, pool: &mut Pool) -> u32 {
        if self.map.len() >= self.cap {
            self.evict_one(pool);
        }
        let key = flow.key;
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(flow);
                i
            }
            None => {
                self.slots.push(Some(flow));
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(key, idx);
        self.stats.created += 1;
        idx
    }

    fn evict_one(&mut self, pool: &mut Pool) {
        let n = self.slots.len();
        let mut victim: Option<(u64, usize)> = None;
        let mut seen = 0;
        let mut i = self.cursor;
        for _ in 0..n {
            i = (i + 1) % n;
            if let Some(f) = &self.slots[i] {
                if victim.is_none_or(|v| f.last_seen < v.0) {
                    victim = Some((f.last_seen, i));
                }
                seen += 1;
                if seen >= EVICTION_SAMPLE {
                    break;
                }
            }
        }
        self.cursor = i;
        if let Some((_, i)) = victim {
            self.remove(i, pool);
            self.stats.evicted += 1;
        }
    }

    /// Visit a few slots and expire those idle past their state's timeout.
    pub fn sweep(&mut self, now: u64, pool: &mut Pool) {
        let n = self.slots.len();
        if n == 0 {
            return;
        }
        for _ in 0..SWEEP_PER_PACKET.min(n) {
            self.cursor = (self.cursor + 1) % n;
            let expired = match &self.slots[self.cursor] {
                Some(f) => now.saturating_sub(f.last_seen) > f.timeout(&self.timeouts),
                None => false,
            };
            if expired {
                self.remove(self.cursor, pool);
                self.stats.expired += 1;
            }
        }
    }

    /// Expire every idle flow now (end of a capture, or a timer tick).
    pub fn expire_all(&mut self, now: u64, pool: &mut Pool) {
        for i in 0..self.slots.len() {
            let expired = match &self.slots[i] {
                Some(f) => now.saturating_sub(f.last_seen) > f.timeout(&self.timeouts),
                None => false,
            };
            if expired {
                self.remove(i, pool);
                self.stats.expired += 1;
            }
        }
    }

    /// Every live flow.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut Flow)) {
        for fl in self.slots.iter_mut().flatten() {
            f(fl);
        }
    }

    /// Approximate memory held by the table (entries, not buffers).
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Option<Flow>>()
            + self.map.capacity() * (std::mem::size_of::<FlowKey>() + 4 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u16) -> (FlowKey, bool) {
        FlowKey::new(
            0,
            17,
            "198.18.0.1".parse().unwrap(),
            1000 + i,
            "198.18.0.2".parse().unwrap(),
            53,
        )
    }

    #[test]
    fn both_directions_share_a_key() {
        let (k1, a1) = FlowKey::new(
            7,
            6,
            "198.18.0.9".parse().unwrap(),
            40000,
            "198.18.0.2".parse().unwrap(),
            443,
        );
        let (k2, a2) = FlowKey::new(
            7,
            6,
            "198.18.0.2".parse().unwrap(),
            443,
            "198.18.0.9".parse().unwrap(),
            40000,
        );
        assert_eq!(k1, k2);
        assert_ne!(a1, a2);
    }

    #[test]
    fn capacity_evicts_oldest_and_timeouts_expire() {
        let mut pool = Pool::new(4);
        let mut t = FlowTable::new(4, Timeouts::default());
        for i in 0..10u16 {
            let (k, a) = key(i);
            t.insert(Flow::new(k, a, u64::from(i), State::Udp), &mut pool);
        }
        assert_eq!(t.len(), 4);
        assert_eq!(t.stats.evicted, 6);
        assert!(t.get(&key(9).0).is_some(), "newest kept");
        assert!(t.get(&key(0).0).is_none(), "oldest evicted");
        let late = 61 * 1_000_000_000 + 10;
        for _ in 0..8 {
            t.sweep(late, &mut pool);
        }
        assert_eq!(t.len(), 0);
        assert_eq!(t.stats.expired, 4);
    }
}
