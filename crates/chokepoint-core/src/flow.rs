//! The flow table: bidirectional flows keyed by the inner 5-tuple plus the
//! VLAN/tunnel context, with per-state idle timeouts and a hard capacity.
//!
//! Both directions map to one entry (the key orders its endpoints); the
//! side that opened the flow is the client. A flow idle past its state's
//! timeout is gone: a lookup that finds one removes it and the packet opens
//! a new flow ([`FlowTable::find_live`]), and idle flows nobody looks up
//! are found by a cursor that visits a couple of slots per packet, so
//! expiry costs a constant amount of work per packet and no timer. When
//! the table is full, the least recently seen of a sample of flows is
//! evicted.

use std::net::IpAddr;

// hashbrown's default hasher (foldhash) is several times faster than std's
// SipHash on a flow key and still seeded at random per process, so crafted
// 5-tuples cannot be aimed at one bucket.
use hashbrown::HashMap;

use chokepoint_ruleset::{Match, Protocol, RuleId, Timeouts, Trigger, Verdict};

use crate::enforce::Enforcer;
use crate::event::NameBuf;
use crate::quic::InitialDecoder;
use crate::reasm::{Pool, Reassembly};
use crate::wire::l4::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// A packet's transport endpoints as sent (source first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 when the protocol has none).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
}

/// A flow's identity: the tuple with its endpoints in a fixed order, so
/// both directions of a flow share one key, plus the VLAN/tunnel context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// VLAN, PPPoE session and tunnel context (see [`crate::decode`]).
    pub ctx: u64,
    /// IP protocol number.
    pub proto: u8,
    /// The lower endpoint's address.
    pub a: IpAddr,
    /// The lower endpoint's port.
    pub pa: u16,
    /// The higher endpoint's address.
    pub b: IpAddr,
    /// The higher endpoint's port.
    pub pb: u16,
}

impl FlowKey {
    /// The key for a packet, and whether the packet's source is side `a`.
    #[inline]
    pub fn new(ctx: u64, t: &FiveTuple) -> (FlowKey, bool) {
        let from_a = (t.src, t.sport) <= (t.dst, t.dport);
        let ((a, pa), (b, pb)) = if from_a {
            ((t.src, t.sport), (t.dst, t.dport))
        } else {
            ((t.dst, t.dport), (t.src, t.sport))
        };
        let key = FlowKey {
            ctx,
            proto: t.proto,
            a,
            pa,
            b,
            pb,
        };
        (key, from_a)
    }
}

/// Where a TCP flow is in its life (it picks the idle timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// TCP, handshake not complete.
    Syn,
    /// TCP, handshake seen.
    Established,
    /// TCP FIN or RST seen.
    Closing,
    /// A UDP flow, or another protocol.
    Udp,
}

/// What the inspector is doing with the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inspect {
    /// Nothing seen yet.
    Start,
    /// Gathering a TLS ClientHello.
    Tls,
    /// Reading HTTP requests (keep-alive: one after another).
    Http,
    /// Reading length-prefixed DNS messages.
    DnsTcp,
    /// Reading QUIC Initial packets.
    Quic,
    /// Finished or given up: later packets are not looked at.
    Done,
}

/// The decision that sticks to a flow: every later packet gets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowDecision {
    /// What happens to the flow's packets.
    pub verdict: Verdict,
    /// The rule that decided (none: the policy default).
    pub rule: Option<RuleId>,
    /// What decided it: `Ip`, or the trigger whose name matched.
    pub by: Trigger,
}

/// The name a flow carried, kept so a reload can decide the flow again.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// Where the name came from.
    pub trigger: Trigger,
    /// Whether the ClientHello carried ECH.
    pub ech: bool,
    /// The name as sent.
    pub name: NameBuf,
    /// The protocol it came in (the trigger's, or a protocol rule's).
    pub protocol: Option<Protocol>,
    /// What rule conditions saw of the deciding packet: its transport
    /// payload, whether it was the flow's first data packet, its QUIC
    /// version. A reload checks conditions against these again.
    pub payload_len: u32,
    /// See `payload_len`.
    pub first_packet: bool,
    /// See `payload_len`.
    pub quic_version: Option<u32>,
}

/// One bidirectional flow.
///
/// Invariants, kept by the engine:
/// * `decision.is_some()` ⇒ `inspect == Done` and `buf.is_none()`: a decided
///   flow is never inspected again, so its packets cost one table lookup;
/// * `hold` is a match whose action forwards (`pass`/`log`): a rule before it
///   in the policy may still decide the flow on a name;
/// * `buf` holds data only while `inspect` is `Tls`, `Http`, `DnsTcp` or
///   `Quic`; it goes back to the pool when inspection ends;
/// * `seen` is kept only when the profile asks to re-evaluate on reload.
pub struct Flow {
    pub(crate) key: FlowKey,
    /// Unique within the table's lifetime (see [`crate::Decision::flow`]).
    pub(crate) serial: u64,
    client_is_a: bool,
    pub(crate) last_seen: u64,
    pub(crate) state: State,
    pub(crate) decision: Option<FlowDecision>,
    pub(crate) hold: Option<Match>,
    pub(crate) inspect: Inspect,
    /// Client data packets and bytes inspected so far.
    pub(crate) inspected_packets: u32,
    pub(crate) inspected_bytes: u32,
    /// Client stream offset 0 in sequence space (ISN + 1), once known.
    pub(crate) seq_base: Option<u32>,
    /// Client stream or QUIC CRYPTO data being reassembled.
    pub(crate) buf: Option<Box<Reassembly>>,
    /// QUIC: what the client's first Initial fixed for the handshake.
    pub(crate) quic: InitialDecoder,
    pub(crate) seen: Option<Box<Seen>>,
    /// `freeze`/`degrade`: the per-packet state, from the first packet
    /// enforced; cleared when the flow is decided again.
    pub(crate) enforce: Option<Enforcer>,
    /// A packet with transport payload was seen (either way): the next
    /// one is not the flow's first data packet.
    pub(crate) data_seen: bool,
    /// TTL (hop limit) of the client's first packet, under `ttl_fakes:
    /// ignore`; 0 until seen.
    pub(crate) first_ttl: u8,
    /// What the profile's wire-reading knobs changed (`event::quirk` bits).
    pub(crate) quirks: u8,
    /// Urgent bytes stripped from the client stream, and the sequence
    /// number of the last one: later bytes sit that many offsets earlier.
    pub(crate) urgent_count: u16,
    pub(crate) urgent_seq: u32,
    /// The name an ignored fake ClientHello carried (boxed: rare, and a
    /// flow without one stays small).
    pub(crate) fake_name: Option<Box<NameBuf>>,
    /// `overlap: reinspect`: the ClientHello the flow was decided on.
    pub(crate) inspected: Option<Box<Inspected>>,
    /// The client sent data (the next client data packet is not its first).
    pub(crate) client_data_seen: bool,
    /// Decided by a `learn` rule: when the entry it learnt starts to block
    /// (the flow then meets it too); `u64::MAX` otherwise.
    pub(crate) learn_at: u64,
    /// A DNS flow: the client's last query passed, so the server's answer
    /// does too (the censor reads the client's side only).
    pub(crate) dns_answer_passes: bool,
}

/// Where a decided ClientHello lay in sequence space, and a digest of its
/// bytes, so a retransmission that disagrees can be told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Inspected {
    pub(crate) seq: u32,
    pub(crate) len: u32,
    pub(crate) digest: u64,
}

impl Inspected {
    /// FNV-1a: not a defence against a chosen collision, only a cheap
    /// "same bytes?" for one message per flow.
    pub(crate) fn digest(b: &[u8]) -> u64 {
        b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
            (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

impl Flow {
    /// A flow seen for the first time now.
    pub fn new(key: FlowKey, client_is_a: bool, now: u64, state: State) -> Flow {
        Flow {
            key,
            serial: 0,
            client_is_a,
            last_seen: now,
            state,
            decision: None,
            hold: None,
            inspect: Inspect::Start,
            inspected_packets: 0,
            inspected_bytes: 0,
            seq_base: None,
            buf: None,
            quic: InitialDecoder::default(),
            seen: None,
            enforce: None,
            data_seen: false,
            first_ttl: 0,
            quirks: 0,
            urgent_count: 0,
            urgent_seq: 0,
            fake_name: None,
            inspected: None,
            client_data_seen: false,
            learn_at: u64::MAX,
            dns_answer_passes: false,
        }
    }

    /// The flow's two addresses, from the key.
    pub fn addresses(&self) -> (IpAddr, IpAddr) {
        (self.key.a, self.key.b)
    }

    /// (client address, client port, server address, server port).
    pub fn client_server(&self) -> (IpAddr, u16, IpAddr, u16) {
        let k = &self.key;
        if self.client_is_a {
            (k.a, k.pa, k.b, k.pb)
        } else {
            (k.b, k.pb, k.a, k.pa)
        }
    }

    /// Is a packet whose source is side `a` (`from_a`) from the client?
    #[inline]
    pub fn from_client(&self, from_a: bool) -> bool {
        from_a == self.client_is_a
    }

    /// The client's address (the side that opened the flow).
    #[inline]
    pub fn client(&self) -> IpAddr {
        if self.client_is_a {
            self.key.a
        } else {
            self.key.b
        }
    }

    /// Make `d` stick and stop inspecting; the buffer goes back to `pool`.
    pub(crate) fn decide(&mut self, d: FlowDecision, pool: &mut Pool) {
        self.decision = Some(d);
        // A new decision (a reload's) starts its own enforcement.
        self.enforce = None;
        self.hold = None;
        self.stop_inspecting(pool);
    }

    /// Inspection is over (finished, given up, or out of budget).
    pub(crate) fn stop_inspecting(&mut self, pool: &mut Pool) {
        self.inspect = Inspect::Done;
        if let Some(b) = self.buf.take() {
            pool.give(b);
        }
    }

    /// Track the TCP state machine far enough to pick a timeout.
    #[inline]
    pub(crate) fn track_tcp(&mut self, flags: u8) {
        if flags & (TCP_FIN | TCP_RST) != 0 {
            self.state = State::Closing;
        } else if flags & TCP_ACK != 0 && self.state == State::Syn && flags & TCP_SYN == 0 {
            self.state = State::Established;
        }
    }
}

/// Idle timeouts in nanoseconds, indexed by [`State`] as `usize`.
fn idle_limits(t: &Timeouts) -> [u64; 4] {
    let ns = |s: u32| u64::from(s) * 1_000_000_000;
    let mut l = [0; 4];
    l[State::Syn as usize] = ns(t.syn);
    l[State::Established as usize] = ns(t.established);
    l[State::Closing as usize] = ns(t.fin);
    l[State::Udp as usize] = ns(t.udp);
    l
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
/// What the flow table did.
pub struct FlowStats {
    /// Flows created.
    pub created: u64,
    /// Flows removed after their idle timeout.
    pub expired: u64,
    /// Flows dropped from a full table before their timeout.
    pub evicted: u64,
    /// Reassembly buffers freed under memory pressure (their flows passed
    /// uninspected).
    pub buffers_evicted: u64,
}

/// A live flow's slot in the table. Valid until the flow is removed (by
/// expiry or eviction, which only happen between packets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowId(u32);

/// The flows, bounded by a capacity, with idle timeouts per state.
pub struct FlowTable {
    map: HashMap<FlowKey, u32>,
    slots: Vec<Option<Flow>>,
    free: Vec<u32>,
    cap: usize,
    cursor: usize,
    holder_cursor: usize,
    /// Idle timeout per state, nanoseconds (see [`idle_limits`]).
    idle: [u64; 4],
    /// What the table did.
    pub stats: FlowStats,
}

/// Slots visited per packet looking for idle flows.
const SWEEP_PER_PACKET: usize = 2;
/// Flows sampled to pick an eviction victim.
const EVICTION_SAMPLE: usize = 32;
/// Most flows evicted to insert one: after a reload lowered the capacity,
/// the table shrinks to it over several packets, never all in one.
const EVICT_PER_INSERT: usize = 8;
/// Slots visited looking for the oldest reassembly buffer holder.
const HOLDER_SCAN: usize = 1024;

impl FlowTable {
    /// An empty table for at most `cap` flows.
    pub fn new(cap: usize, timeouts: Timeouts) -> FlowTable {
        FlowTable {
            map: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            cap: cap.max(1),
            cursor: 0,
            holder_cursor: 0,
            idle: idle_limits(&timeouts),
            stats: FlowStats::default(),
        }
    }

    /// Live flows.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No live flows?
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Most flows held at once.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// New limits (a reload): a smaller capacity evicts down to it as new
    /// flows arrive; new timeouts apply to every flow from its next lookup
    /// or sweep.
    pub fn set_limits(&mut self, cap: usize, timeouts: Timeouts) {
        self.cap = cap.max(1);
        self.idle = idle_limits(&timeouts);
    }

    /// The flow with this key, idle or not (see [`FlowTable::find_live`]).
    #[inline]
    pub fn find(&self, key: &FlowKey) -> Option<FlowId> {
        self.map.get(key).map(|&i| FlowId(i))
    }

    /// Has `f` been idle past its state's timeout as of `now`?
    #[inline]
    fn idle_past(&self, f: &Flow, now: u64) -> bool {
        now.saturating_sub(f.last_seen) > self.idle[f.state as usize]
    }

    /// The flow with this key, unless it has been idle past its state's
    /// timeout as of `now`: then it is gone, whether or not the sweep has
    /// reached it yet. It is removed (counted as expired, its buffer back
    /// in `pool`) and `None` returned, so the packet opens a new flow and is
    /// inspected afresh, as a censor that forgot the flow would (the GFW
    /// tracks a QUIC 4-tuple for 60 s, then inspects its next packet as a
    /// first one: Zohaib et al., USENIX Security 2025). One comparison more
    /// than [`FlowTable::find`] on a live flow.
    #[inline]
    pub fn find_live(&mut self, key: &FlowKey, now: u64, pool: &mut Pool) -> Option<FlowId> {
        let i = *self.map.get(key)?;
        if self.expire_if_idle(i as usize, now, pool) {
            return None;
        }
        Some(FlowId(i))
    }

    /// Remove the flow in slot `i` if it is idle past its timeout as of
    /// `now`, counting it as expired; true if it was.
    #[inline]
    fn expire_if_idle(&mut self, i: usize, now: u64, pool: &mut Pool) -> bool {
        let idle = self.slots[i]
            .as_ref()
            .is_some_and(|f| self.idle_past(f, now));
        if idle {
            self.remove(i, pool);
            self.stats.expired += 1;
        }
        idle
    }

    /// A live flow. Panics on a stale id, which the engine never keeps
    /// across packets.
    #[inline]
    pub fn get_mut(&mut self, id: FlowId) -> &mut Flow {
        self.slots[id.0 as usize].as_mut().expect("live flow")
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

    /// The serial number the next flow inserted will get.
    #[inline]
    pub fn next_serial(&self) -> u64 {
        self.stats.created
    }

    /// Insert a new flow, evicting one if the table is full.
    pub fn insert(&mut self, mut flow: Flow, pool: &mut Pool) -> FlowId {
        flow.serial = self.stats.created;
        // A loop, not one eviction: after a reload lowered the capacity the
        // table shrinks to it, a few flows per new one.
        let mut evicted = 0;
        while self.map.len() >= self.cap && evicted < EVICT_PER_INSERT {
            if !self.evict_one(pool) {
                break;
            }
            evicted += 1;
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
        FlowId(idx)
    }

    /// Evict the least recently seen of a sample; false if the table is empty.
    fn evict_one(&mut self, pool: &mut Pool) -> bool {
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
        match victim {
            Some((_, i)) => {
                self.remove(i, pool);
                self.stats.evicted += 1;
                true
            }
            None => false,
        }
    }

    /// Free the reassembly buffer of the least recently seen flow holding
    /// one, among those in the next [`HOLDER_SCAN`] slots (never `keep`'s).
    /// That flow stops being inspected and passes: under memory pressure
    /// the censor fails open on its stalest half-read streams (an
    /// out-of-window flood's flows), so that fresh ones can still be read.
    /// False if no holder was found.
    pub(crate) fn evict_buffer(&mut self, keep: FlowId, pool: &mut Pool) -> bool {
        let n = self.slots.len();
        if n == 0 {
            return false;
        }
        let mut victim: Option<(u64, usize)> = None;
        let mut i = self.holder_cursor % n;
        for _ in 0..HOLDER_SCAN.min(n) {
            i = (i + 1) % n;
            if let Some(f) = &self.slots[i] {
                if f.buf.is_some()
                    && i != keep.0 as usize
                    && victim.is_none_or(|v| f.last_seen < v.0)
                {
                    victim = Some((f.last_seen, i));
                }
            }
        }
        self.holder_cursor = i;
        let Some((_, i)) = victim else {
            return false;
        };
        if let Some(f) = self.slots[i].as_mut() {
            f.stop_inspecting(pool);
        }
        self.stats.buffers_evicted += 1;
        true
    }

    /// Visit a few slots and expire those idle past their state's timeout.
    #[inline]
    pub fn sweep(&mut self, now: u64, pool: &mut Pool) {
        let n = self.slots.len();
        if n == 0 {
            return;
        }
        for _ in 0..SWEEP_PER_PACKET.min(n) {
            self.cursor = (self.cursor + 1) % n;
            self.expire_if_idle(self.cursor, now, pool);
        }
    }

    /// Expire every idle flow now (end of a capture, or a timer tick).
    pub fn expire_all(&mut self, now: u64, pool: &mut Pool) {
        for i in 0..self.slots.len() {
            self.expire_if_idle(i, now, pool);
        }
    }

    /// Every live flow, mutably.
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

    fn tuple(src: &str, sport: u16, dst: &str, dport: u16, proto: u8) -> FiveTuple {
        FiveTuple {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport,
            dport,
            proto,
        }
    }

    fn key(i: u16) -> (FlowKey, bool) {
        FlowKey::new(0, &tuple("198.18.0.1", 1000 + i, "198.18.0.2", 53, 17))
    }

    #[test]
    fn both_directions_share_a_key() {
        let (k1, a1) = FlowKey::new(7, &tuple("198.18.0.9", 40000, "198.18.0.2", 443, 6));
        let (k2, a2) = FlowKey::new(7, &tuple("198.18.0.2", 443, "198.18.0.9", 40000, 6));
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
        assert!(t.find(&key(9).0).is_some(), "newest kept");
        assert!(t.find(&key(0).0).is_none(), "oldest evicted");
        let late = 61 * 1_000_000_000 + 10;
        for _ in 0..8 {
            t.sweep(late, &mut pool);
        }
        assert_eq!(t.len(), 0);
        assert_eq!(t.stats.expired, 4);
    }

    #[test]
    fn a_lookup_past_the_idle_timeout_finds_no_flow_and_counts_it_expired() {
        let mut pool = Pool::new(4);
        let mut t = FlowTable::new(8, Timeouts::default());
        let (k, a) = key(1);
        t.insert(Flow::new(k, a, 0, State::Udp), &mut pool);
        let limit = u64::from(Timeouts::default().udp) * 1_000_000_000;
        assert!(
            t.find_live(&k, limit, &mut pool).is_some(),
            "at the timeout"
        );
        assert_eq!(t.stats.expired, 0);
        assert!(t.find_live(&k, limit + 1, &mut pool).is_none(), "past it");
        assert_eq!((t.len(), t.stats.expired), (0, 1));
        assert!(t.find(&k).is_none(), "removed, not only hidden");
    }

    #[test]
    fn a_lower_capacity_evicts_down_to_it() {
        let mut pool = Pool::new(4);
        let mut t = FlowTable::new(8, Timeouts::default());
        for i in 0..8u16 {
            let (k, a) = key(i);
            t.insert(Flow::new(k, a, u64::from(i), State::Udp), &mut pool);
        }
        t.set_limits(3, Timeouts::default());
        let (k, a) = key(100);
        t.insert(Flow::new(k, a, 100, State::Udp), &mut pool);
        assert_eq!(t.len(), 3);
        assert_eq!(t.stats.evicted, 6);
    }
}
