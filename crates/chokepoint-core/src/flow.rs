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
//!
//! ## Memory: sized at start, compact entries
//! Everything is allocated when the table is made (or when a reload changes
//! `max_flows`), never grown on the packet path, so a box filling up to its
//! cap meets no rehash or reallocation stall:
//! * slots: one [`Flow`] of [`FLOW_ENTRY_BYTES`] (two cache lines) per flow,
//!   holding what a flow needs once decided; reserved for the cap, so
//!   memory becomes resident as slots are first used;
//! * the index: open addressing with linear probing over 8-byte buckets
//!   (a 32-bit tag of the key's hash and the slot number), two buckets per
//!   flow of the cap (at most half full): 16 bytes a flow of the cap,
//!   allocated zeroed, so its pages become resident as flows are filed in
//!   them (a page fault per 4 KiB page, once, instead of a rehash);
//! * a free list of slot numbers (4 bytes a flow at most);
//! * [`Inspection`]s: what a flow needs only while it is being read
//!   (budget counters, reassembly buffer, QUIC decoder, urgent-data
//!   offsets), in a slab lent to a flow when its inspection first needs
//!   one and given back when inspection ends, so decided flows, and flows
//!   that never carried data (a SYN flood), hold none. Room for one per
//!   flow is reserved; memory becomes resident up to the most lent at once.
//!
//! At the default cap (1,048,576 flows) that is 128 MiB of slots, 16 MiB of
//! index and 4 MiB of free list: 148 bytes a flow of the cap.
//!
//! The index's hash is seeded at random per table (hashbrown's foldhash),
//! so crafted 5-tuples cannot be aimed at one cluster. A burst of packets
//! can hash its keys and prefetch their buckets and slots before any is
//! looked up ([`FlowTable::prefetch_bucket`], [`FlowTable::prefetch_flow`]).

use std::net::IpAddr;

use std::hash::BuildHasher;

// hashbrown's default hasher (foldhash) is several times faster than std's
// SipHash on a flow key and still seeded at random per process, so crafted
// 5-tuples cannot be aimed at one bucket.
use hashbrown::DefaultHashBuilder;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// Hashed as five fixed-width words (addresses as 128-bit numbers, IPv4
/// mapped into IPv6) rather than field by field through `IpAddr`'s enum:
/// one hash per packet, on every lookup, so its few nanoseconds count.
/// Keys equal under `Eq` hash equal; an IPv4 key and its IPv4-mapped IPv6
/// twin share a hash and are told apart by `Eq`.
impl std::hash::Hash for FlowKey {
    #[inline(always)]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        #[inline]
        fn bits(a: IpAddr) -> u128 {
            match a {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
                IpAddr::V6(v6) => v6.to_bits(),
            }
        }
        state.write_u64(self.ctx);
        state.write_u128(bits(self.a));
        state.write_u128(bits(self.b));
        state
            .write_u64(u64::from(self.proto) << 32 | u64::from(self.pa) << 16 | u64::from(self.pb));
    }
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
#[repr(u8)]
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
#[repr(u8)]
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

/// Bytes of one [`Flow`] entry in the table: two cache lines. A test keeps
/// it there (`size_of::<Option<Flow>>()`), so the per-flow cost cannot grow
/// unnoticed.
pub const FLOW_ENTRY_BYTES: usize = 128;

/// The flow's boolean facts, one bit each (`Flow::bits`).
mod bit {
    /// The client is side `a` of the key.
    pub const CLIENT_IS_A: u8 = 1;
    /// A packet with transport payload was seen (either way): the next
    /// one is not the flow's first data packet.
    pub const DATA_SEEN: u8 = 2;
    /// The client sent data (the next client data packet is not its first).
    pub const CLIENT_DATA_SEEN: u8 = 4;
    /// A DNS flow: the client's last query passed, so the server's answer
    /// does too (the censor reads the client's side only).
    pub const DNS_ANSWER_PASSES: u8 = 8;
    /// `Flow::seq_base` holds the client stream's start.
    pub const SEQ_BASE: u8 = 16;
}

/// One bidirectional flow, in [`FLOW_ENTRY_BYTES`]: what every packet of a
/// decided flow needs, and the little an undecided one needs before it
/// carries data. What only inspection needs is in an [`Inspection`] lent
/// for the time being; what few flows carry is in a boxed [`Rare`].
///
/// Invariants, kept by the engine:
/// * `decision.is_some()` ⇒ `inspect == Done` and no reassembly buffer: a
///   decided flow is never inspected again, so its packets cost one table
///   lookup;
/// * `hold` is a match whose action forwards (`pass`/`log`): a rule before it
///   in the policy may still decide the flow on a name;
/// * `insp` names an [`Inspection`] only while the flow is being inspected
///   (lent at the first need, given back at the end of the packet that ended
///   inspection), or while `overlap: reinspect` keeps the ClientHello it was
///   decided on ([`Rare::inspected`]): a retransmission with other bytes
///   resumes inspection where it stood (budget spent, urgent bytes). Any
///   other flow whose inspection is `Done`, decided or not, holds none;
/// * the reassembly buffer (in the inspection) holds data only while
///   `inspect` is `Tls`, `Http`, `DnsTcp` or `Quic`; it goes back to the pool
///   when inspection ends;
/// * `rare` is allocated only for a flow that carries one of its fields, and
///   lives as long as the flow; its `seen` is kept only when the profile
///   asks to re-evaluate on reload.
///
/// The first cache line holds what a lookup compares and every packet
/// updates (key, last seen, serial); the second the decision and what it
/// needs (enforcement, held match, state).
#[repr(C, align(64))]
pub struct Flow {
    pub(crate) key: FlowKey,
    pub(crate) last_seen: u64,
    /// Unique within the table's lifetime (see [`crate::Decision::flow`]).
    pub(crate) serial: u64,
    /// `freeze`/`degrade`: the per-packet state, from the first packet
    /// enforced; cleared when the flow is decided again.
    pub(crate) enforce: Option<Enforcer>,
    /// What few flows carry (see [`Rare`]).
    rare: Option<Box<Rare>>,
    pub(crate) hold: Option<Match>,
    /// The flow's [`Inspection`] in the table's slab, or [`NO_INSPECTION`].
    insp: u32,
    /// Client stream offset 0 in sequence space (ISN + 1), once known
    /// ([`bit::SEQ_BASE`]).
    seq_base: u32,
    pub(crate) decision: Option<FlowDecision>,
    pub(crate) state: State,
    pub(crate) inspect: Inspect,
    /// What the profile's wire-reading knobs changed (`event::quirk` bits).
    pub(crate) quirks: u8,
    /// TTL (hop limit) of the client's first packet, under `ttl_fakes:
    /// ignore`; 0 until seen.
    pub(crate) first_ttl: u8,
    /// [`bit`] flags.
    bits: u8,
}

/// What few flows carry, boxed so that the others stay compact.
#[derive(Debug)]
pub(crate) struct Rare {
    /// Decided by a `learn` rule: when the entry it learnt starts to block
    /// (the flow then meets it too); `u64::MAX` otherwise.
    learn_at: u64,
    /// The name the flow carried, kept so a reload can decide it again.
    seen: Option<Seen>,
    /// `overlap: reinspect`: the ClientHello the flow was decided on.
    inspected: Option<Inspected>,
    /// The name an ignored fake ClientHello carried.
    fake_name: Option<Box<NameBuf>>,
}

impl Default for Rare {
    fn default() -> Rare {
        Rare {
            learn_at: u64::MAX,
            seen: None,
            inspected: None,
            fake_name: None,
        }
    }
}

/// What a flow needs only while it is being inspected: lent from the
/// table's slab ([`Inspections`]) at the first need, given back when
/// inspection ends (see the invariants on [`Flow`]).
#[derive(Debug, Default)]
pub(crate) struct Inspection {
    /// Client data packets inspected so far.
    pub(crate) packets: u32,
    /// Client data bytes inspected so far.
    pub(crate) bytes: u32,
    /// The sequence number of the last urgent byte stripped from the
    /// client stream.
    pub(crate) urgent_seq: u32,
    /// Urgent bytes stripped: later bytes sit that many offsets earlier.
    pub(crate) urgent_count: u16,
    /// QUIC: what the client's first Initial fixed for the handshake.
    pub(crate) quic: InitialDecoder,
    /// Client stream or QUIC CRYPTO data being reassembled.
    pub(crate) buf: Option<Box<Reassembly>>,
}

/// `Flow::insp` of a flow that holds no [`Inspection`].
const NO_INSPECTION: u32 = u32::MAX;

/// The inspections lent to flows: a slab with a free list, its room
/// reserved for the table's capacity (one per flow at most), so lending
/// never grows it on the packet path. Memory is touched only up to the
/// most inspections lent at once.
#[derive(Debug, Default)]
pub(crate) struct Inspections {
    entries: Vec<Inspection>,
    free: Vec<u32>,
}

impl Inspections {
    /// A fresh inspection's number.
    fn lend(&mut self) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = Inspection::default();
                i
            }
            None => {
                self.entries.push(Inspection::default());
                (self.entries.len() - 1) as u32
            }
        }
    }

    /// Take inspection `i` back; its buffer goes to `pool`.
    fn give(&mut self, i: u32, pool: &mut Pool) {
        if let Some(b) = self.entries[i as usize].buf.take() {
            pool.give(b);
        }
        self.free.push(i);
    }

    fn get(&self, i: u32) -> &Inspection {
        &self.entries[i as usize]
    }

    fn get_mut(&mut self, i: u32) -> &mut Inspection {
        &mut self.entries[i as usize]
    }

    /// Room for `n` inspections lent at once.
    fn try_reserve(&mut self, n: usize) -> Result<(), std::collections::TryReserveError> {
        self.entries
            .try_reserve_exact(n.saturating_sub(self.entries.len()))?;
        self.free
            .try_reserve_exact(n.saturating_sub(self.free.len()))
    }

    /// Inspections lent now.
    pub(crate) fn lent(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// Bytes touched: the most inspections lent at once, and their free list.
    fn memory_bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<Inspection>() + self.free.len() * 4
    }
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
            last_seen: now,
            serial: 0,
            enforce: None,
            rare: None,
            hold: None,
            insp: NO_INSPECTION,
            seq_base: 0,
            decision: None,
            state,
            inspect: Inspect::Start,
            quirks: 0,
            first_ttl: 0,
            bits: if client_is_a { bit::CLIENT_IS_A } else { 0 },
        }
    }

    #[inline]
    fn has(&self, b: u8) -> bool {
        self.bits & b != 0
    }

    #[inline]
    fn set(&mut self, b: u8, on: bool) {
        if on {
            self.bits |= b;
        } else {
            self.bits &= !b;
        }
    }

    #[inline]
    fn client_is_a(&self) -> bool {
        self.has(bit::CLIENT_IS_A)
    }

    /// The flow's two addresses, from the key.
    pub fn addresses(&self) -> (IpAddr, IpAddr) {
        (self.key.a, self.key.b)
    }

    /// (client address, client port, server address, server port).
    pub fn client_server(&self) -> (IpAddr, u16, IpAddr, u16) {
        let k = &self.key;
        if self.client_is_a() {
            (k.a, k.pa, k.b, k.pb)
        } else {
            (k.b, k.pb, k.a, k.pa)
        }
    }

    /// Is a packet whose source is side `a` (`from_a`) from the client?
    #[inline]
    pub fn from_client(&self, from_a: bool) -> bool {
        from_a == self.client_is_a()
    }

    /// The client's address (the side that opened the flow).
    #[inline]
    pub fn client(&self) -> IpAddr {
        if self.client_is_a() {
            self.key.a
        } else {
            self.key.b
        }
    }

    /// Has a packet with transport payload been seen, either way?
    #[inline]
    pub(crate) fn data_seen(&self) -> bool {
        self.has(bit::DATA_SEEN)
    }

    /// Has the client sent data?
    #[inline]
    pub(crate) fn client_data_seen(&self) -> bool {
        self.has(bit::CLIENT_DATA_SEEN)
    }

    /// Note that a packet carried data (`any`), from the client (`client`).
    #[inline]
    pub(crate) fn note_data(&mut self, any: bool, client: bool) {
        if any {
            self.bits |= bit::DATA_SEEN;
        }
        if client {
            self.bits |= bit::CLIENT_DATA_SEEN;
        }
    }

    /// A DNS flow whose client's last query passed.
    #[inline]
    pub(crate) fn dns_answer_passes(&self) -> bool {
        self.has(bit::DNS_ANSWER_PASSES)
    }

    #[inline]
    pub(crate) fn set_dns_answer_passes(&mut self, on: bool) {
        self.set(bit::DNS_ANSWER_PASSES, on);
    }

    /// Client stream offset 0 in sequence space, once known.
    #[inline]
    pub(crate) fn seq_base(&self) -> Option<u32> {
        self.has(bit::SEQ_BASE).then_some(self.seq_base)
    }

    #[inline]
    pub(crate) fn set_seq_base(&mut self, seq: u32) {
        self.seq_base = seq;
        self.bits |= bit::SEQ_BASE;
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// When a `learn` decision's entry starts to block; `u64::MAX` if none.
    #[inline]
    pub(crate) fn learn_at(&self) -> u64 {
        self.rare.as_ref().map_or(u64::MAX, |r| r.learn_at)
    }

    pub(crate) fn set_learn_at(&mut self, at: u64) {
        if at == u64::MAX && self.rare.is_none() {
            return;
        }
        self.rare_mut().learn_at = at;
    }

    /// The name kept for a reload, if any.
    pub(crate) fn seen(&self) -> Option<&Seen> {
        self.rare.as_ref().and_then(|r| r.seen.as_ref())
    }

    pub(crate) fn set_seen(&mut self, s: Seen) {
        self.rare_mut().seen = Some(s);
    }

    /// `overlap: reinspect`: the ClientHello the flow was decided on.
    #[inline]
    pub(crate) fn inspected(&self) -> Option<&Inspected> {
        self.rare.as_ref().and_then(|r| r.inspected.as_ref())
    }

    pub(crate) fn set_inspected(&mut self, i: Option<Inspected>) {
        if i.is_some() || self.rare.is_some() {
            self.rare_mut().inspected = i;
        }
    }

    /// The name an ignored fake ClientHello carried.
    pub(crate) fn fake_name(&self) -> Option<&NameBuf> {
        self.rare.as_ref().and_then(|r| r.fake_name.as_deref())
    }

    pub(crate) fn set_fake_name(&mut self, n: NameBuf) {
        match &mut self.rare_mut().fake_name {
            Some(b) => **b = n,
            slot => *slot = Some(Box::new(n)),
        }
    }

    /// The flow's inspection, lent from `insp` at the first need.
    #[inline]
    pub(crate) fn inspection<'i>(&mut self, insp: &'i mut Inspections) -> &'i mut Inspection {
        if self.insp == NO_INSPECTION {
            self.insp = insp.lend();
        }
        insp.get_mut(self.insp)
    }

    /// The flow's inspection, if it holds one.
    #[inline]
    pub(crate) fn inspection_held<'i>(
        &self,
        insp: &'i mut Inspections,
    ) -> Option<&'i mut Inspection> {
        (self.insp != NO_INSPECTION).then(|| insp.get_mut(self.insp))
    }

    /// Does the flow hold a reassembly buffer?
    fn holds_buffer(&self, insp: &Inspections) -> bool {
        self.insp != NO_INSPECTION && insp.get(self.insp).buf.is_some()
    }

    /// Make `d` stick and stop inspecting; the buffer goes back to `pool`.
    pub(crate) fn decide(&mut self, d: FlowDecision, insp: &mut Inspections, pool: &mut Pool) {
        self.decision = Some(d);
        // A new decision (a reload's) starts its own enforcement.
        self.enforce = None;
        self.hold = None;
        self.stop_inspecting(insp, pool);
    }

    /// Inspection is over (finished, given up, or out of budget): the
    /// buffer goes back to `pool` now, the inspection at [`Flow::settle`].
    pub(crate) fn stop_inspecting(&mut self, insp: &mut Inspections, pool: &mut Pool) {
        self.inspect = Inspect::Done;
        if let Some(b) = self.inspection_held(insp).and_then(|i| i.buf.take()) {
            pool.give(b);
        }
    }

    /// Give the inspection back once inspection is over, unless
    /// `overlap: reinspect` may resume it (see the invariants above).
    #[inline]
    pub(crate) fn settle(&mut self, insp: &mut Inspections, pool: &mut Pool) {
        if self.insp != NO_INSPECTION && self.inspect == Inspect::Done && self.inspected().is_none()
        {
            insp.give(self.insp, pool);
            self.insp = NO_INSPECTION;
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

/// The flows, bounded by a capacity, with idle timeouts per state; all
/// memory allocated for the capacity up front (see the module docs).
pub struct FlowTable {
    /// Open addressing, linear probing: `tag << 32 | slot + 1` per bucket,
    /// [`EMPTY`] where none; at most half full (see [`buckets_for`]).
    index: Box<[u64]>,
    slots: Vec<Option<Flow>>,
    free: Vec<u32>,
    insp: Inspections,
    hasher: DefaultHashBuilder,
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
/// Most flows a table makes room for: the compiler's bound on `max_flows`
/// (an artifact asking for more gets this many).
pub const MAX_CAPACITY: usize = 1 << 26;

/// An index bucket with nothing in it.
const EMPTY: u64 = 0;

/// Buckets for `flows` flows: two per flow, so the index is at most half
/// full (a miss, which every new flow is, reads ~2.5 buckets) and always
/// has an empty bucket to end a probe.
fn buckets_for(flows: usize) -> usize {
    flows * 2 + 2
}

/// The tag a key's hash leaves in its bucket.
#[inline]
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// The bucket a probe for `tag` starts at, among `n`: a monotone map of
/// the tag (so a bucket's own tag says where its probe began, which the
/// removal needs).
#[inline]
fn home(tag: u32, n: usize) -> usize {
    ((u64::from(tag) * n as u64) >> 32) as usize
}

#[inline]
fn next(i: usize, n: usize) -> usize {
    if i + 1 == n {
        0
    } else {
        i + 1
    }
}

impl FlowTable {
    /// An empty table for at most `cap` flows (at most [`MAX_CAPACITY`]),
    /// its memory allocated now.
    pub fn new(cap: usize, timeouts: Timeouts) -> FlowTable {
        let mut t = FlowTable {
            index: Box::default(),
            slots: Vec::new(),
            free: Vec::new(),
            insp: Inspections::default(),
            hasher: DefaultHashBuilder::default(),
            cap: 1,
            cursor: 0,
            holder_cursor: 0,
            idle: idle_limits(&timeouts),
            stats: FlowStats::default(),
        };
        t.size_for(cap);
        t
    }

    /// Live flows.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// No live flows?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most flows held at once.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// New limits (a reload): the table is sized for the new capacity now
    /// (a larger one allocated, a smaller one freed as far as the live
    /// flows allow); a smaller capacity evicts down to it as new flows
    /// arrive; new timeouts apply to every flow from its next lookup or
    /// sweep.
    pub fn set_limits(&mut self, cap: usize, timeouts: Timeouts) {
        self.size_for(cap);
        self.idle = idle_limits(&timeouts);
    }

    /// Make room for `cap` flows and set the capacity. The live flows keep
    /// their room whatever the capacity (the index is rebuilt for both);
    /// when memory for `cap` cannot be had, the capacity is halved until
    /// it can, rather than failing later on the packet path.
    fn size_for(&mut self, cap: usize) {
        let live = self.len();
        let asked = cap.clamp(1, MAX_CAPACITY);
        let mut room = asked.max(live);
        while !self.try_size(room) {
            if room <= live.max(1) {
                // Not even room for the live flows: keep the index in place
                // (it holds them) and take no more flows than it can.
                room = (self.index.len() / 2).saturating_sub(1);
                break;
            }
            room = (room / 2).max(live).max(1);
        }
        self.cap = asked.min(room).max(1);
    }

    /// Allocate for `n` flows and rebuild the index; false if the memory
    /// cannot be had (nothing is changed then but spare room).
    fn try_size(&mut self, n: usize) -> bool {
        let buckets = buckets_for(n);
        // Zeroed by the allocator (EMPTY is 0): a large index comes as
        // untouched zero pages, resident only as flows are filed in them, so
        // memory follows the flows held, not the capacity, while no
        // lookup ever waits for a rehash.
        let Ok(index) = bytemuck::allocation::try_zeroed_slice_box::<u64>(buckets) else {
            return false;
        };
        if self
            .slots
            .try_reserve_exact(n.saturating_sub(self.slots.len()))
            .is_err()
            || self
                .free
                .try_reserve_exact(n.saturating_sub(self.free.len()))
                .is_err()
            || self.insp.try_reserve(n).is_err()
        {
            return false;
        }
        self.index = index;
        for (i, f) in self.slots.iter().enumerate() {
            if let Some(f) = f {
                let h = self.hasher.hash_one(f.key);
                index_insert(&mut self.index, h, i as u32);
            }
        }
        true
    }

    /// The hash the table files `key` under (seeded at random per table).
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Start loading the index bucket where a lookup of `hash` begins.
    #[inline]
    pub fn prefetch_bucket(&self, hash: u64) {
        chokepoint_ruleset::hint::prefetch(&self.index, home(tag(hash), self.index.len()));
    }

    /// Start loading the slot of the flow filed under `hash`, if the index
    /// names one (the first bucket of the probe with the key's tag: a
    /// hint, not a lookup). Reads the index: call it once
    /// [`FlowTable::prefetch_bucket`] has had time to bring it in.
    #[inline]
    pub fn prefetch_flow(&self, hash: u64) {
        let (t, n) = (tag(hash), self.index.len());
        let mut i = home(t, n);
        for _ in 0..4 {
            let b = self.index[i];
            if b == EMPTY {
                return;
            }
            if (b >> 32) as u32 == t {
                chokepoint_ruleset::hint::prefetch(&self.slots, (b as u32 - 1) as usize);
                return;
            }
            i = next(i, n);
        }
    }

    /// The slot of the flow with this key and hash.
    #[inline]
    fn lookup(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        let (t, n) = (tag(hash), self.index.len());
        let mut i = home(t, n);
        loop {
            let b = self.index[i];
            if b == EMPTY {
                return None;
            }
            if (b >> 32) as u32 == t {
                let s = b as u32 - 1;
                if self.slots[s as usize]
                    .as_ref()
                    .is_some_and(|f| f.key == *key)
                {
                    return Some(s);
                }
            }
            i = next(i, n);
        }
    }

    /// The flow with this key, idle or not (see [`FlowTable::find_live`]).
    #[inline]
    pub fn find(&self, key: &FlowKey) -> Option<FlowId> {
        self.find_hashed(key, self.hash(key))
    }

    /// [`FlowTable::find`] with the key's [`FlowTable::hash`] at hand.
    #[inline]
    pub fn find_hashed(&self, key: &FlowKey, hash: u64) -> Option<FlowId> {
        self.lookup(key, hash).map(FlowId)
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
        self.find_live_hashed(key, self.hash(key), now, pool)
    }

    /// [`FlowTable::find_live`] with the key's [`FlowTable::hash`] at hand.
    #[inline]
    pub fn find_live_hashed(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now: u64,
        pool: &mut Pool,
    ) -> Option<FlowId> {
        let i = self.lookup(key, hash)?;
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

    /// A live flow and the slab its inspection is lent from.
    #[inline]
    pub(crate) fn get_with_inspections(&mut self, id: FlowId) -> (&mut Flow, &mut Inspections) {
        let f = self.slots[id.0 as usize].as_mut().expect("live flow");
        (f, &mut self.insp)
    }

    /// Inspections lent to flows now.
    pub fn inspections(&self) -> usize {
        self.insp.lent()
    }

    fn remove(&mut self, idx: usize, pool: &mut Pool) {
        if let Some(f) = self.slots[idx].take() {
            let h = self.hasher.hash_one(f.key);
            index_remove(&mut self.index, h, idx as u32);
            if f.insp != NO_INSPECTION {
                self.insp.give(f.insp, pool);
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
    pub fn insert(&mut self, flow: Flow, pool: &mut Pool) -> FlowId {
        let h = self.hash(&flow.key);
        self.insert_hashed(flow, h, pool)
    }

    /// [`FlowTable::insert`] with the key's [`FlowTable::hash`] at hand.
    pub fn insert_hashed(&mut self, mut flow: Flow, hash: u64, pool: &mut Pool) -> FlowId {
        flow.serial = self.stats.created;
        // A loop, not one eviction: after a reload lowered the capacity the
        // table shrinks to it, a few flows per new one.
        let mut evicted = 0;
        while self.len() >= self.cap && evicted < EVICT_PER_INSERT {
            if !self.evict_one(pool) {
                break;
            }
            evicted += 1;
        }
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(flow);
                i
            }
            None => {
                // Within the room reserved for the capacity (see `size_for`).
                self.slots.push(Some(flow));
                (self.slots.len() - 1) as u32
            }
        };
        index_insert(&mut self.index, hash, idx);
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
                if f.holds_buffer(&self.insp)
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
            f.stop_inspecting(&mut self.insp, pool);
            f.settle(&mut self.insp, pool);
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

    /// Every live flow, mutably, with the slab inspections are lent from.
    pub(crate) fn for_each_with(&mut self, mut f: impl FnMut(&mut Flow, &mut Inspections)) {
        for fl in self.slots.iter_mut().flatten() {
            f(fl, &mut self.insp);
        }
    }

    /// Memory the table has allocated: index, slots and free list reserved
    /// for the capacity (resident as slots are first used), and the
    /// inspections up to the most lent at once. Reassembly buffers are
    /// counted by their pool.
    pub fn memory_bytes(&self) -> usize {
        self.index.len() * std::mem::size_of::<u64>()
            + self.slots.capacity() * std::mem::size_of::<Option<Flow>>()
            + self.free.capacity() * std::mem::size_of::<u32>()
            + self.insp.memory_bytes()
    }
}

/// File slot `slot` under `hash`: the first empty bucket of its probe.
#[inline]
fn index_insert(index: &mut [u64], hash: u64, slot: u32) {
    let (t, n) = (tag(hash), index.len());
    let mut i = home(t, n);
    while index[i] != EMPTY {
        i = next(i, n);
    }
    index[i] = u64::from(t) << 32 | u64::from(slot + 1);
}

/// Take slot `slot`, filed under `hash`, out of the index, and close the
/// gap (backward shift: no tombstones, so probes stay as short as the
/// load makes them, whatever the churn).
fn index_remove(index: &mut [u64], hash: u64, slot: u32) {
    let (t, n) = (tag(hash), index.len());
    let want = u64::from(t) << 32 | u64::from(slot + 1);
    let mut hole = home(t, n);
    while index[hole] != want {
        if index[hole] == EMPTY {
            debug_assert!(false, "flow {slot} not in the index");
            return;
        }
        hole = next(hole, n);
    }
    let mut j = hole;
    loop {
        j = next(j, n);
        let b = index[j];
        if b == EMPTY {
            break;
        }
        // An entry may fill the hole if its probe began at or before it:
        // its distance from home is at least the hole's distance from it.
        let k = home((b >> 32) as u32, n);
        if (j + n - k) % n >= (j + n - hole) % n {
            index[hole] = b;
            hole = j;
        }
    }
    index[hole] = EMPTY;
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
        fill(&mut t, &mut pool, 10);
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
    fn a_flow_entry_is_two_cache_lines() {
        assert_eq!(FLOW_ENTRY_BYTES, 128);
        assert_eq!(std::mem::size_of::<Option<Flow>>(), FLOW_ENTRY_BYTES);
        assert_eq!(std::mem::align_of::<Flow>(), 64);
    }

    /// Insert UDP flows `0..n`, flow `i` seen at time `i`.
    fn fill(t: &mut FlowTable, pool: &mut Pool, n: u16) {
        for i in 0..n {
            let (k, a) = key(i);
            t.insert(Flow::new(k, a, u64::from(i), State::Udp), pool);
        }
    }

    #[test]
    fn the_table_is_sized_at_start_and_never_grows() {
        let mut pool = Pool::new(4);
        let mut t = FlowTable::new(1000, Timeouts::default());
        let reserved = t.memory_bytes();
        assert!(reserved >= 1000 * (FLOW_ENTRY_BYTES + 16), "{reserved}");
        assert!(
            reserved <= 1000 * (FLOW_ENTRY_BYTES + 16 + 4) + 64,
            "{reserved}"
        );
        fill(&mut t, &mut pool, 3000);
        assert_eq!((t.len(), t.stats.evicted), (1000, 2000));
        assert_eq!(t.memory_bytes(), reserved, "nothing grew");
        let found: Vec<u16> = (0..3000u16)
            .filter(|&i| t.find(&key(i).0).is_some())
            .collect();
        assert_eq!(found.len(), 1000, "every live flow is found");
        for i in found {
            let id = t.find(&key(i).0).unwrap();
            assert_eq!(t.get_mut(id).key, key(i).0);
        }
    }

    #[test]
    fn a_reload_resizes_the_index_around_the_live_flows() {
        let mut pool = Pool::new(4);
        let mut t = FlowTable::new(64, Timeouts::default());
        fill(&mut t, &mut pool, 64);
        // Smaller than the live flows: they keep their room until evicted.
        t.set_limits(8, Timeouts::default());
        assert!((0..64u16).all(|i| t.find(&key(i).0).is_some()));
        t.set_limits(4096, Timeouts::default());
        assert_eq!(t.capacity(), 4096);
        assert!((0..64u16).all(|i| t.find(&key(i).0).is_some()));
        assert!(t.memory_bytes() >= 4096 * (FLOW_ENTRY_BYTES + 16));
    }

    /// Is `slot`, filed under `hash`, reachable by a probe from its home?
    fn filed(index: &[u64], hash: u64, slot: u32) -> bool {
        let n = index.len();
        let want = u64::from(tag(hash)) << 32 | u64::from(slot + 1);
        let mut i = home(tag(hash), n);
        while index[i] != EMPTY {
            if index[i] == want {
                return true;
            }
            i = next(i, n);
        }
        false
    }

    proptest::proptest! {
        /// Inserts and removals in any order, tags crowded on a few homes
        /// (the last bucket among them, so probes wrap and runs merge):
        /// the index holds exactly the live slots, each reachable from its
        /// home, which is what the backward-shift removal must keep.
        #[test]
        fn the_index_agrees_with_a_set(
            ops in proptest::collection::vec((proptest::bool::ANY, 0u32..24, 0usize..4), 1..300)
        ) {
            let n = buckets_for(24);
            let mut index = vec![EMPTY; n];
            let mut live = std::collections::HashMap::new();
            for (insert, slot, pick) in ops {
                let b = [0, n / 2, n - 2, n - 1][pick] as u64;
                let t = ((b << 32).div_ceil(n as u64)) as u32 + slot;
                let hash = u64::from(t) << 32;
                proptest::prop_assert_eq!(home(t, n), b as usize);
                if insert {
                    if let std::collections::hash_map::Entry::Vacant(v) = live.entry(slot) {
                        index_insert(&mut index, hash, slot);
                        v.insert(hash);
                    }
                } else if let Some(h) = live.remove(&slot) {
                    index_remove(&mut index, h, slot);
                }
                for (&s, &h) in &live {
                    proptest::prop_assert!(filed(&index, h, s), "slot {} lost", s);
                }
                proptest::prop_assert_eq!(index.iter().filter(|&&b| b != EMPTY).count(), live.len());
            }
        }
    }

    #[test]
    fn a_lower_capacity_evicts_down_to_it() {
        let mut pool = Pool::new(4);
        let mut t = FlowTable::new(8, Timeouts::default());
        fill(&mut t, &mut pool, 8);
        t.set_limits(3, Timeouts::default());
        let (k, a) = key(100);
        t.insert(Flow::new(k, a, 100, State::Udp), &mut pool);
        assert_eq!(t.len(), 3);
        assert_eq!(t.stats.evicted, 6);
    }
}
