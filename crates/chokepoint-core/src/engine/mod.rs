//! [`Engine`]: `(timestamp, link type, frame)` in, [`Decision`] out.
//!
//! Order of work for a packet:
//! 1. decode to the innermost IP packet (reassembling IP fragments);
//! 2. find or create its flow; a decided flow costs that one lookup;
//! 3. on a new flow, IP-prefix rules on either address;
//! 4. inspect client data within the profile's budget: reassemble the TCP
//!    stream ([`tcp`]) or QUIC CRYPTO data ([`udp`]), extract the TLS SNI,
//!    QUIC SNI, HTTP Host or DNS question names, and match them;
//! 5. the first matching rule in policy order decides ([`decide`]); for
//!    TLS, QUIC and HTTP the decision sticks to the flow, for DNS it is per
//!    query (over TCP a blocking decision ends the connection, so it sticks).
//!
//! ## How the state is split
//! The way regex-automata keeps a `Regex` apart from its `Cache`, the
//! engine's state is in parts that can be borrowed apart:
//! * `Config`: the rules and profile; read-only while a packet is handled,
//!   replaced whole by a reload;
//! * the flow table and the IP defragmenter: state per flow and datagram;
//! * `Scratch`: buffers reused from packet to packet, so steady traffic
//!   does not allocate;
//! * `Output` and [`Counters`]: what packets produce besides decisions.
//!
//! Once a packet's flow is found, one `FlowCx` (the packet's five-tuple and
//! direction, its flow, and the parts a decision writes to) is built and
//! handed to the inspectors, instead of the packet and the engine.

mod arm;
mod counters;
mod decide;
mod tcp;
mod udp;

use std::net::IpAddr;
use std::sync::Arc;

use chokepoint_ruleset::profile::Checksums;
use chokepoint_ruleset::ruleset::DefaultAt;
use chokepoint_ruleset::{Direction, Facts, Match, Profile, Ruleset, Trigger, Verdict};

pub use counters::Counters;

use crate::decode::{decode, resume_ip, Decoded, Fragment, Packet, L4};
use crate::defrag::{Defrag, DefragStats};
use crate::enforce::{Enforcer, Fate, Observed};
use crate::event::{quirk, Decision, Event};
use crate::flow::{
    FiveTuple, Flow, FlowDecision, FlowId, FlowKey, FlowTable, Inspect, Inspections, State,
};
use crate::learn::LearnStore;
use crate::reasm::{Pool, Reassembly};
use crate::residual::{ResidualStore, ResidualTable};
use crate::tls;
use crate::wire::emit::transport_checksum_ok;
use crate::wire::l4::{Tcp, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use crate::wire::link::LinkType;

/// Frames [`Engine::process_batch`] prefetches for together: enough for the
/// cache misses of a burst to overlap, few enough that what the first
/// frames' prefetches brought in is still cached when they are processed.
pub const BURST: usize = 16;

/// Events kept per packet (a DNS-over-TCP segment may hold many queries).
const MAX_EVENTS_PER_PACKET: usize = 256;
/// Largest ClientHello gathered.
const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// What a reload replaces: the rules and the profile compiled with them.
struct Config {
    rules: Arc<Ruleset>,
    profile: Profile,
}

impl Config {
    fn default_verdict(&self) -> Verdict {
        self.verdict_of(None)
    }

    /// The verdict of a match, or of the default action.
    fn verdict_of(&self, m: Option<Match>) -> Verdict {
        Verdict::of(self.rules.action(m.as_ref()))
    }

    /// The IP rule for a packet's addresses: the earlier of the two matches,
    /// each rule's conditions checked against `f`.
    fn ip_match(&self, src: IpAddr, dst: IpAddr, f: &Facts<'_>) -> Option<Match> {
        decide::earlier(
            self.rules.match_ip_when(src, f),
            self.rules.match_ip_when(dst, f),
        )
    }

    fn port_inspected(&self, server_port: u16) -> bool {
        self.profile.inspect_ports.is_empty() || self.profile.inspect_ports.contains(&server_port)
    }
}

/// Buffers reused from packet to packet.
struct Scratch {
    /// A ClientHello gathered across TLS records.
    hello: Vec<u8>,
    /// QUIC Initial plaintext.
    crypt: Vec<u8>,
    /// A datagram reassembled from IP fragments.
    datagram: Vec<u8>,
    /// A segment inspected on its own (no reassembly).
    alone: Reassembly,
    /// A segment's payload with its urgent byte taken out.
    segment: Vec<u8>,
    /// Reassembly buffers lent to flows.
    pool: Pool,
}

/// What the current packet produced besides its decision.
struct Output {
    events: Vec<Event>,
    /// 1-based index of the current packet.
    index: u64,
    /// The latest timestamp seen: the core's only clock.
    now: u64,
}

/// The sans-IO packet core: one per worker.
pub struct Engine {
    cfg: Config,
    flows: FlowTable,
    defrag: Defrag,
    scratch: Scratch,
    out: Output,
    /// Blocks that outlive the flows that armed them.
    residual: ResidualTable,
    /// The dynamic lists `learn` actions fill, shared with other workers.
    learned: Option<Arc<dyn LearnStore>>,
    /// Whether the packet being processed came from the subscribers' side,
    /// when the caller knows ([`Engine::process_from`]).
    from_subscriber: Option<bool>,
    /// Engines sharing the box's flow capacity (see [`Engine::one_of`]).
    share: Share,
    /// Everything counted so far.
    pub counters: Counters,
}

/// What conditions need of the current packet beyond its five-tuple.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PacketFacts {
    /// Transport payload, bytes.
    payload_len: u32,
    /// The flow's first packet with payload.
    first_data: bool,
    /// A QUIC long header's version.
    quic_version: Option<u32>,
    /// The client's first packet with payload (the GFW's fully encrypted
    /// test reads it, even when the server spoke first).
    first_client_data: bool,
}

impl PacketFacts {
    fn of(p: &Packet<'_>, first_data: bool) -> PacketFacts {
        let payload = match p.l4 {
            L4::Tcp(t) => t.payload,
            L4::Udp(u) => u.payload,
            L4::Other(_) => &[],
        };
        let quic_version = match (p.l4, payload) {
            (L4::Udp(_), [b, v0, v1, v2, v3, ..]) if b & 0x80 != 0 => {
                Some(u32::from_be_bytes([*v0, *v1, *v2, *v3]))
            }
            _ => None,
        };
        PacketFacts {
            payload_len: payload.len() as u32,
            first_data: first_data && !payload.is_empty(),
            quic_version,
            first_client_data: false,
        }
    }
}

/// One packet's view of the engine, once its flow is known.
pub(crate) struct FlowCx<'e> {
    cfg: &'e Config,
    flow: &'e mut Flow,
    /// The slab the flow's inspection is lent from.
    insp: &'e mut Inspections,
    pool: &'e mut Pool,
    out: &'e mut Output,
    counters: &'e mut Counters,
    residual: &'e mut ResidualTable,
    learned: Option<&'e dyn LearnStore>,
    tuple: FiveTuple,
    from_client: bool,
    packet: PacketFacts,
}

impl FlowCx<'_> {
    /// No decision yet: a held `pass`/`log` match, or the default.
    fn undecided(&self) -> Decision {
        let hold = self.flow.hold;
        Decision {
            verdict: self.cfg.verdict_of(hold),
            rule: hold.map(|m| m.rule),
            decided_now: false,
            flow: Some(self.flow.serial),
            client: Some(self.flow.client()),
            dropped: false,
        }
    }

    /// The server's port, whichever way the packet goes.
    fn server_port(&self) -> u16 {
        if self.from_client {
            self.tuple.dport
        } else {
            self.tuple.sport
        }
    }

    /// Charge a data packet to the flow's inspection budget; false once spent.
    fn budget(&mut self, len: usize) -> bool {
        let p = &self.cfg.profile;
        let ins = self.flow.inspection(self.insp);
        if ins.packets >= p.max_inspect_packets || ins.bytes >= p.max_inspect_bytes {
            self.flow.stop_inspecting(self.insp, self.pool);
            self.counters.inspection_budget_exhausted += 1;
            return false;
        }
        ins.packets += 1;
        ins.bytes = ins.bytes.saturating_add(len as u32);
        true
    }

    /// Does the flow hold a reassembly buffer?
    fn buf_held(&mut self) -> bool {
        self.flow
            .inspection_held(self.insp)
            .is_some_and(|i| i.buf.is_some())
    }

    fn give_up(&mut self) {
        self.flow.stop_inspecting(self.insp, self.pool);
    }

    fn give_up_if_undecided(&mut self) {
        if self.flow.decision.is_none() {
            self.give_up();
        }
    }
}

impl Output {
    fn event(&mut self, counters: &mut Counters, e: Event) {
        if self.events.len() >= MAX_EVENTS_PER_PACKET {
            counters.events_dropped += 1;
        } else {
            self.events.push(e);
        }
    }
}

/// A new flow: decided by an IP rule at once, or open for inspection.
enum Opened {
    Decided(Decision),
    Open(FlowId),
}

/// Most buffers freed per packet under memory pressure.
const RELIEF_PER_PACKET: usize = 8;

/// Under memory pressure (reassembly buffers above 7/8 of the budget), free
/// the stalest holders' buffers until they are back under 3/4, a few per
/// packet, so the next insert finds room instead of being refused: a flood
/// that filled the budget first cannot make every later flow pass
/// uninspected. `keep` (this packet's flow) is never chosen.
#[inline]
fn relieve(flows: &mut FlowTable, keep: FlowId, pool: &mut Pool) {
    if pool.held() <= pool.budget - pool.budget / 8 {
        return;
    }
    let target = pool.budget - pool.budget / 4;
    for _ in 0..RELIEF_PER_PACKET {
        if pool.held() <= target || !flows.evict_buffer(keep, pool) {
            break;
        }
    }
}

/// One engine's part of a box. The profile's box-wide limits
/// (`max_flows`, `reassembly_memory_budget`) are split evenly over
/// `workers`; `memory` sizes a budget of `auto`. The core reads nothing of
/// the machine it runs on: the runtime tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Engines of the box (at least one).
    pub workers: usize,
    /// The machine's memory in bytes; `None`: not known.
    pub memory: Option<u64>,
}

impl Share {
    /// The only engine of a box whose machine is not known.
    pub const ALONE: Share = Share {
        workers: 1,
        memory: None,
    };

    /// The flows this engine holds: its part of `max_flows`.
    fn flows(self, p: &Profile) -> usize {
        (p.max_flows as usize).div_ceil(self.workers)
    }

    /// The bytes this engine's reassembly buffers may hold: its part of
    /// the box's budget.
    fn reassembly_budget(self, p: &Profile) -> usize {
        let box_budget = p.reassembly_budget_for(self.memory);
        usize::try_from(box_budget.div_ceil(self.workers as u64)).unwrap_or(usize::MAX)
    }
}

impl Engine {
    /// An engine enforcing `rules` with the profile compiled into them.
    pub fn new(rules: Arc<Ruleset>) -> Engine {
        Engine::sharing(rules, Share::ALONE)
    }

    /// One of `workers` engines of a box: the profile's `max_flows` is the
    /// box's, so this engine's flow table holds its share,
    /// `max_flows / workers` rounded up. The table is sized at start, so
    /// a box's flow memory is bounded by `max_flows` whatever its number
    /// of workers.
    pub fn one_of(rules: Arc<Ruleset>, workers: usize) -> Engine {
        Engine::sharing(
            rules,
            Share {
                workers,
                memory: None,
            },
        )
    }

    /// One engine of a box, its part given by `share`: the profile's flow
    /// capacity and reassembly budget are the box's, split evenly over
    /// its workers, and a budget of `auto` is sized from the machine's
    /// memory ([`Profile::reassembly_budget_for`]).
    pub fn sharing(rules: Arc<Ruleset>, share: Share) -> Engine {
        let profile = rules.meta.profile.clone();
        let share = Share {
            workers: share.workers.max(1),
            ..share
        };
        let budget = share.reassembly_budget(&profile);
        Engine {
            flows: FlowTable::new(share.flows(&profile), profile.timeouts.clone()),
            defrag: Defrag::new(
                profile.max_fragment_datagrams as usize,
                profile.fragment_timeout,
            ),
            scratch: Scratch {
                hello: Vec::with_capacity(MAX_CLIENT_HELLO),
                crypt: Vec::with_capacity(65_536),
                datagram: Vec::with_capacity(65_536),
                alone: Reassembly::default(),
                segment: Vec::with_capacity(65_536),
                pool: Pool::with_budget(1024, budget),
            },
            out: Output {
                events: Vec::with_capacity(MAX_EVENTS_PER_PACKET),
                index: 0,
                now: 0,
            },
            counters: Counters {
                reassembly_budget_bytes: budget as u64,
                ..Counters::default()
            },
            residual: ResidualTable::new(profile.max_residual_entries as usize),
            learned: None,
            from_subscriber: None,
            share,
            cfg: Config { rules, profile },
        }
    }

    /// Swap the rules (hot reload), with the profile compiled into them:
    /// inspection knobs apply from the next packet, new timeouts from the
    /// next sweep, a lower flow or fragment capacity as new ones arrive.
    /// Flows already decided keep their decision, unless the new profile
    /// says `reevaluate_on_reload`: then every flow is decided again from
    /// its addresses and the name it carried (see [`Counters::reevaluated`]).
    pub fn set_rules(&mut self, rules: Arc<Ruleset>) {
        let profile = rules.meta.profile.clone();
        self.flows
            .set_limits(self.share.flows(&profile), profile.timeouts.clone());
        self.defrag.set_limits(
            profile.max_fragment_datagrams as usize,
            profile.fragment_timeout,
        );
        self.scratch.pool.budget = self.share.reassembly_budget(&profile);
        self.counters.reassembly_budget_bytes = self.scratch.pool.budget as u64;
        self.residual.set_cap(profile.max_residual_entries as usize);
        // Residual blocks outlive the reload: they go on naming their rule
        // (events, decisions) as the new policy numbers it. (Allocates: a
        // reload is not the packet path.)
        self.residual.renumber(&self.cfg.rules.renumbering(&rules));
        self.cfg = Config { rules, profile };
        if self.cfg.profile.reevaluate_on_reload {
            self.reevaluate();
        } else {
            // A held match is an id of the old policy: it may name another
            // rule, or none, in the new one. Held matches only ever
            // forwarded, so dropping them keeps every flow forwarding.
            self.flows.for_each_mut(|f| f.hold = None);
        }
    }

    /// Give the engine the dynamic lists `learn` actions fill and IP rules
    /// on dynamic lists read (shared by workers; they outlive a reload).
    /// Without one, a `learn` rule's flows are counted in
    /// [`Counters::learn_unstored`] and nothing is learnt.
    pub fn set_learn_store(&mut self, store: Arc<dyn LearnStore>) {
        self.learned = Some(store);
    }

    /// Give the engine the store for residual blocks of scope `server` and
    /// `client`, shared by the box's workers: such a block covers flows of
    /// other host pairs, which other workers carry. Without one they stay
    /// in this engine (right for one worker, or for replay in order).
    pub fn set_residual_store(&mut self, store: Arc<dyn ResidualStore>) {
        self.residual.share_with(store);
    }

    /// The rules in force.
    pub fn rules(&self) -> &Arc<Ruleset> {
        &self.cfg.rules
    }

    /// The profile in force.
    pub fn profile(&self) -> &Profile {
        &self.cfg.profile
    }

    /// Events completed by the last [`Engine::process`] call.
    pub fn events(&self) -> &[Event] {
        &self.out.events
    }

    /// The flow table.
    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// What the IP defragmenter did.
    pub fn defrag_stats(&self) -> DefragStats {
        self.defrag.stats
    }

    /// Expire idle flows, fragments and residual blocks as of `now` (end of
    /// a capture, or a live worker's idle tick). A flow idle past its
    /// timeout is never matched again either way: a lookup that finds one
    /// expires it; this frees the state of flows nobody looks up.
    pub fn expire(&mut self, now: u64) {
        self.flows.expire_all(now, &mut self.scratch.pool);
        self.defrag.expire(now);
        self.residual.expire(now);
        self.count_residual();
    }

    /// Residual blocks this engine holds now (a shared store's, of the
    /// `server` and `client` scopes, are counted by its owner).
    pub fn residual_entries(&self) -> usize {
        self.residual.len()
    }

    fn count_residual(&mut self) {
        let s = self.residual.stats;
        let c = &mut self.counters;
        c.residual_armed = s.armed;
        c.residual_hits = s.hits;
        c.residual_evicted = s.evicted;
        c.residual_expired = s.expired;
    }

    /// [`Engine::process`] for a caller that knows which side the frame
    /// came from (a bridge's inside port faces the subscribers): a new UDP
    /// flow's client is then the subscriber, whichever side spoke first. A
    /// WireGuard server rekeying towards its peer, say, would otherwise be
    /// taken for the client, and a `learn` would learn the subscriber.
    pub fn process_from(
        &mut self,
        ts: u64,
        link: LinkType,
        frame: &[u8],
        from_subscriber: bool,
    ) -> Decision {
        self.from_subscriber = Some(from_subscriber);
        let d = self.process(ts, link, frame);
        self.from_subscriber = None;
        d
    }

    /// Run one frame through the core. `ts` is the capture or arrival time
    /// in nanoseconds; it is the only clock the core knows.
    pub fn process(&mut self, ts: u64, link: LinkType, frame: &[u8]) -> Decision {
        self.run(ts, frame.len(), decode(link, frame), None)
    }

    /// Run a burst of frames through the core: the same decisions, events,
    /// counters and state as [`Engine::process`] on each frame in order,
    /// with the memory the burst will read requested first, so that its
    /// cache misses overlap instead of queueing one frame after another.
    /// Per [`BURST`] frames: decode each and hash its flow key, prefetch
    /// the flow-table buckets; prefetch the domain-table slots of the
    /// names in ClientHellos that start in their segment; prefetch the flow
    /// entries the buckets name; then process the frames in order.
    ///
    /// `out[i]` receives frame `i`'s decision; `events(i, events)` is
    /// called right after frame `i`, in frame order, when it produced
    /// events (what [`Engine::events`] returns after a [`Engine::process`]
    /// of that frame). `out` must be at least as long as `frames`.
    pub fn process_batch(
        &mut self,
        frames: &[(u64, LinkType, &[u8])],
        out: &mut [Decision],
        mut events: impl FnMut(usize, &[Event]),
    ) {
        assert!(
            out.len() >= frames.len(),
            "process_batch: {} decisions for {} frames",
            out.len(),
            frames.len()
        );
        for (c, burst) in frames.chunks(BURST).enumerate() {
            let mut decoded = [Decoded::NotIp; BURST];
            let mut hashes = [None; BURST];
            for (i, &(_, link, frame)) in burst.iter().enumerate() {
                decoded[i] = decode(link, frame);
                if let Decoded::Packet(p) = &decoded[i] {
                    let (key, _) = FlowKey::new(p.ctx, &five_tuple(p).0);
                    let h = self.flows.hash(&key);
                    self.flows.prefetch_bucket(h);
                    hashes[i] = Some(h);
                }
            }
            if self.cfg.rules.has_domains() {
                for d in &decoded[..burst.len()] {
                    if let Decoded::Packet(Packet { l4: L4::Tcp(t), .. }) = d {
                        if let Some(name) = tls::sni_hint(t.payload) {
                            self.cfg.rules.prefetch_name(name);
                        }
                    }
                }
            }
            for h in hashes[..burst.len()].iter().flatten() {
                self.flows.prefetch_flow(*h);
            }
            for (i, &(ts, _, frame)) in burst.iter().enumerate() {
                let k = c * BURST + i;
                out[k] = self.run(ts, frame.len(), decoded[i], hashes[i]);
                if !self.out.events.is_empty() {
                    events(k, &self.out.events);
                }
            }
        }
    }

    /// One frame, decoded (and in a burst its flow key hashed).
    #[inline]
    fn run(&mut self, ts: u64, len: usize, decoded: Decoded<'_>, hash: Option<u64>) -> Decision {
        self.out.index += 1;
        self.out.now = self.out.now.max(ts);
        self.out.events.clear();
        self.counters.packets += 1;
        self.counters.bytes += len as u64;
        self.flows.sweep(self.out.now, &mut self.scratch.pool);
        let d = match decoded {
            Decoded::Packet(p) => self.packet(&p, hash),
            Decoded::NotIp => {
                self.counters.not_ip += 1;
                Decision::PASS
            }
            Decoded::Malformed(problem) => {
                self.counters.problems[problem as usize] += 1;
                self.ip_only(None)
            }
            Decoded::Fragment(f) => self.fragment(&f),
        };
        self.count_residual();
        let v = d.verdict as usize;
        self.counters.packets_by_verdict[v] += 1;
        self.counters.bytes_by_verdict[v] += len as u64;
        d
    }

    fn fragment(&mut self, f: &Fragment<'_>) -> Decision {
        let now = self.out.now;
        if !self.cfg.profile.defragment || !self.defrag.add(now, f, &mut self.scratch.datagram) {
            // A fragment on its own: the addresses are all there is.
            return self.ip_only(Some((f.src, f.dst)));
        }
        // The datagram is read while the engine is borrowed: lend it out.
        let datagram = std::mem::take(&mut self.scratch.datagram);
        let d = match resume_ip(f, &datagram) {
            Decoded::Packet(p) => self.packet(&p, None),
            Decoded::Malformed(problem) => {
                self.counters.problems[problem as usize] += 1;
                self.ip_only(Some((f.src, f.dst)))
            }
            _ => self.ip_only(Some((f.src, f.dst))),
        };
        self.scratch.datagram = datagram;
        d
    }

    /// IP rules for a packet whose transport layer is not available.
    fn ip_only(&self, addresses: Option<(IpAddr, IpAddr)>) -> Decision {
        let m = addresses.and_then(|(src, dst)| {
            // No transport header: conditions on ports and sizes see none.
            let f = Facts::endpoints(0, (src, 0), (dst, 0));
            self.cfg.ip_match(src, dst, &f)
        });
        Decision {
            verdict: self.cfg.verdict_of(m),
            rule: m.map(|m| m.rule),
            decided_now: false,
            flow: None,
            client: None,
            dropped: false,
        }
    }

    /// A packet with addresses: find or open its flow, then decide.
    /// `hash` is the flow key's hash when a burst computed it already.
    fn packet(&mut self, p: &Packet<'_>, hash: Option<u64>) -> Decision {
        if let Some(problem) = p.problem {
            self.counters.problems[problem as usize] += 1;
        }
        let (tuple, flags) = five_tuple(p);
        let (key, from_a) = FlowKey::new(p.ctx, &tuple);
        let hash = hash.unwrap_or_else(|| self.flows.hash(&key));
        // A flow idle past its timeout is gone: this packet opens a new one.
        let id = match self
            .flows
            .find_live_hashed(&key, hash, self.out.now, &mut self.scratch.pool)
        {
            Some(id) => id,
            None => match self.open(p, &tuple, (key, hash), from_a, flags) {
                Opened::Decided(d) if d.verdict.per_packet() => {
                    // An address rule froze or degraded the flow on its
                    // first packet, which counts too.
                    let Some(id) = self.flows.find_hashed(&key, hash) else {
                        return d;
                    };
                    let flow = self.flows.get_mut(id);
                    let seen = observed(p, flow.from_client(from_a));
                    return enforce(&self.cfg, flow, &mut self.counters, d, &seen);
                }
                Opened::Decided(d) => return d,
                Opened::Open(id) => id,
            },
        };
        let Engine {
            cfg,
            flows,
            scratch,
            out,
            counters,
            residual,
            learned,
            ..
        } = self;
        let learned = learned.as_deref();
        relieve(flows, id, &mut scratch.pool);
        let (flow, insp) = flows.get_with_inspections(id);
        flow.last_seen = out.now;
        if tuple.proto == PROTO_TCP {
            flow.track_tcp(flags);
        }
        let from_client = flow.from_client(from_a);
        // Rare flags only: the data path pays one test here.
        if flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 && flow.decision.is_none() {
            if let L4::Tcp(t) = p.l4 {
                tcb(&cfg.profile, flow, insp, &mut scratch.pool, &t, from_client);
            }
        }
        if from_client {
            if let (Some(ins), L4::Tcp(t)) = (flow.inspected(), p.l4) {
                if tcp::disagrees(ins, &t) {
                    // `overlap: reinspect`: the hello the flow was decided
                    // on came again with other bytes; read it afresh.
                    flow.set_inspected(None);
                    flow.decision = None;
                    flow.enforce = None;
                    flow.inspect = Inspect::Start;
                    counters.overlap_conflicts += 1;
                    flow.quirks |= quirk::OVERLAP_CONFLICT;
                }
            }
        }
        if let Some(fd) = flow.decision {
            let d = Decision {
                verdict: fd.verdict,
                rule: fd.rule,
                decided_now: false,
                flow: Some(flow.serial),
                client: Some(flow.client()),
                dropped: false,
            };
            // The one branch a plain drop or pass pays for freeze/degrade.
            if fd.verdict.per_packet() {
                return enforce(cfg, flow, counters, d, &observed(p, from_client));
            }
            // A learnt flow meets the block its own detection set up.
            if fd.verdict == Verdict::Learn && out.now >= flow.learn_at() {
                return arm::relearn(
                    cfg,
                    flow,
                    &tuple,
                    learned,
                    out,
                    counters,
                    (insp, &mut scratch.pool),
                )
                .unwrap_or(d);
            }
            return d;
        }
        let mut packet = PacketFacts::of(p, !flow.data_seen());
        let carries_data = packet.payload_len > 0;
        packet.first_client_data =
            from_client && !flow.client_data_seen() && packet.payload_len > 0;
        let handshake = !flow.data_seen() && packet.payload_len == 0 && tuple.proto == PROTO_TCP;
        flow.note_data(carries_data, packet.first_client_data);
        let mut cx = FlowCx {
            cfg,
            flow,
            insp,
            pool: &mut scratch.pool,
            out,
            counters,
            residual,
            learned,
            tuple,
            from_client,
            packet,
        };
        let mut d = if cx.flow.inspect == Inspect::Done
            || (!from_client && cx.cfg.profile.direction == Direction::ClientToServer)
        {
            cx.undecided()
        } else if cfg.profile.checksums == Checksums::Verify && !checksum_ok(p) {
            // The server's stack drops it: a verifying censor does not read it.
            cx.counters.bad_checksums += 1;
            cx.flow.quirks |= quirk::BAD_CHECKSUM;
            cx.undecided()
        } else {
            match p.l4 {
                L4::Tcp(t) => tcp::inspect(
                    &mut cx,
                    &mut scratch.hello,
                    &mut scratch.alone,
                    &mut scratch.segment,
                    &t,
                    p.ttl,
                ),
                L4::Udp(u) => udp::inspect(&mut cx, &mut scratch.crypt, &u),
                L4::Other(_) => cx.undecided(),
            }
        };
        // An inspection that ended with this packet goes back to the slab.
        cx.flow.settle(cx.insp, cx.pool);
        // `default_at: first_data`: a flow no rule has matched meets a
        // blocking default at its first data packet; the TCP handshake
        // before it passes (Russia's 2025 mobile allowlists: the SYN gets
        // through, the ClientHello does not).
        if handshake
            && d.rule.is_none()
            && !d.verdict.forwards()
            && cfg.rules.meta.default_at == DefaultAt::FirstData
        {
            d.verdict = Verdict::Pass;
        }
        // A DNS answer follows its question: under a blocking default (an
        // allowlist) the reply to a query that passed must reach the
        // client, though no rule reads the server's side.
        if tuple.sport == 53 || tuple.dport == 53 {
            let f = flows.get_mut(id);
            if from_client {
                if carries_data {
                    f.set_dns_answer_passes(d.verdict.forwards());
                }
            } else if d.rule.is_none() && !d.verdict.forwards() && f.dns_answer_passes() {
                d.verdict = Verdict::Pass;
            }
        }
        // The deciding packet of a freeze/degrade flow is enforced too (a
        // degrade may drop it; it counts towards a freeze), and so is every
        // packet under a freeze/degrade default, which never sticks.
        if d.verdict.per_packet() {
            return enforce(
                cfg,
                flows.get_mut(id),
                counters,
                d,
                &observed(p, from_client),
            );
        }
        d
    }

    /// Create a flow; a residual block or IP rules decide it now, or it
    /// holds a `pass`/`log` match.
    fn open(
        &mut self,
        p: &Packet<'_>,
        tuple: &FiveTuple,
        (key, hash): (FlowKey, u64),
        from_a: bool,
        flags: u8,
    ) -> Opened {
        let sender_is_client = client_is_sender(tuple, flags, self.from_subscriber);
        let client_is_a = from_a == sender_is_client;
        let state = if tuple.proto == PROTO_TCP {
            State::Syn
        } else {
            State::Udp
        };
        let mut f = Flow::new(key, client_is_a, self.out.now, state);
        let packet = PacketFacts::of(p, true);
        let draw = decide::flow_draw(self.cfg.profile.seed, self.flows.next_serial());
        let (client, server, client_port, server_port) = if sender_is_client {
            (tuple.src, tuple.dst, tuple.sport, tuple.dport)
        } else {
            (tuple.dst, tuple.src, tuple.dport, tuple.sport)
        };
        let facts = Facts {
            payload_len: packet.payload_len,
            first_packet: packet.first_data,
            quic_version: packet.quic_version,
            draw,
            ..Facts::endpoints(tuple.proto, (client, client_port), (server, server_port))
        };
        let residual = self
            .residual
            .check(self.out.now, tuple.proto, client, server, server_port)
            .map(decide::residual_judgement);
        let ip = arm::address_match(
            &self.cfg,
            self.learned.as_deref(),
            (tuple.src, tuple.dst),
            &facts,
            self.out.now,
        );
        let judged =
            residual.or_else(|| ip.map(|m| decide::judge(&self.cfg.rules, Some(m), None, &facts)));
        if let Some(j) = judged.filter(|j| j.by != Trigger::Residual) {
            if matches!(j.m, Some(m) if matches!(m.hit, chokepoint_ruleset::Hit::Learned(_))) {
                self.counters.learned_hits += 1;
            }
            let mut arm = arm::Arm {
                residual: &mut self.residual,
                learned: self.learned.as_deref(),
                counters: &mut self.counters,
            };
            if let Some(at) = arm.arm(&self.cfg.rules, &j, &facts, self.out.now) {
                f.set_learn_at(at);
            }
        }
        match judged {
            Some(j) if j.sticky => {
                f.decision = Some(FlowDecision {
                    verdict: j.verdict,
                    rule: j.rule(),
                    by: j.by,
                });
                f.inspect = Inspect::Done;
                if j.by == Trigger::Ip && self.cfg.profile.reevaluate_on_reload {
                    // The packet an IP rule's conditions saw, for a reload.
                    f.set_seen(decide::seen(&decide::Found::IP, &packet));
                }
            }
            _ => f.hold = ip,
        }
        let id = self.flows.insert_hashed(f, hash, &mut self.scratch.pool);
        let flow = self.flows.get_mut(id);
        match (judged, flow.decision) {
            (Some(j), Some(fd)) => {
                let found = if j.by == Trigger::Residual {
                    &decide::Found::RESIDUAL
                } else {
                    &decide::Found::IP
                };
                let e = decide::event(&self.out, tuple, found, &j);
                self.out.event(&mut self.counters, e);
                self.counters.decisions_by_trigger[j.by.index()] += 1;
                Opened::Decided(Decision {
                    verdict: fd.verdict,
                    rule: fd.rule,
                    decided_now: true,
                    flow: Some(flow.serial),
                    client: Some(flow.client()),
                    dropped: false,
                })
            }
            _ => Opened::Open(id),
        }
    }
}

/// What freeze and degrade look at in a packet.
#[inline]
fn observed(p: &Packet<'_>, from_client: bool) -> Observed {
    let (payload, flags, tcp) = match p.l4 {
        L4::Tcp(t) => (t.payload.len(), t.flags, true),
        L4::Udp(u) => (u.payload.len(), 0, false),
        L4::Other(_) => (0, 0, false),
    };
    Observed {
        from_client,
        payload,
        flags,
        tcp,
    }
}

/// Decide a freeze/degrade flow's packet: set `d.dropped` from the flow's
/// enforcement state, set up on its first packet from the action of the
/// decision's rule (or the default), the profile's seed and the flow's
/// serial number.
fn enforce(
    cfg: &Config,
    flow: &mut Flow,
    counters: &mut Counters,
    mut d: Decision,
    seen: &Observed,
) -> Decision {
    let serial = flow.serial;
    let e = flow.enforce.get_or_insert_with(|| {
        let action = d
            .rule
            // A decision from before a reload carries an id of the old
            // policy: an action of another kind there leaves it idle.
            .and_then(|r| cfg.rules.meta.rules.get(r.index()))
            .map_or(&cfg.rules.meta.default_action, |r| &r.action);
        Enforcer::new(action, cfg.profile.seed, serial)
    });
    match e.fate(seen) {
        Fate::Forward => {}
        Fate::Frozen => {
            d.dropped = true;
            counters.frozen += 1;
        }
        Fate::Degraded => {
            d.dropped = true;
            counters.degraded += 1;
        }
    }
    d
}

/// The packet's five-tuple and TCP flags.
#[inline]
/// The TCB knobs on a SYN, FIN or RST of an undecided flow.
fn tcb(
    profile: &Profile,
    flow: &mut Flow,
    insp: &mut Inspections,
    pool: &mut Pool,
    t: &Tcp<'_>,
    from_client: bool,
) {
    if t.flags & (TCP_FIN | TCP_RST) != 0 && profile.teardown_on_rst {
        // Geneva's mock censors forget the connection here, whichever side
        // closed it (and whether or not the server believed it).
        flow.stop_inspecting(insp, pool);
    }
    if !from_client
        && t.flags & TCP_SYN != 0
        && t.flags & TCP_ACK != 0
        && flow.data_seen()
        && profile.resync_on_syn
        && flow.seq_base() != Some(t.ack)
    {
        // A SYN-ACK in an established flow (Geneva's resync trigger): it
        // acknowledges a client ISN + 1, taken for the stream's new start.
        // Before data the client's SYN already set it; a retransmitted
        // SYN-ACK acknowledges the same start and changes nothing.
        flow.set_seq_base(t.ack);
        if let Some(b) = flow.inspection_held(insp).and_then(|i| i.buf.take()) {
            pool.give(b);
        }
    }
}

/// Does the packet's transport checksum hold? Truncated captures and
/// other protocols cannot be checked and pass.
fn checksum_ok(p: &Packet<'_>) -> bool {
    let proto = match p.l4 {
        L4::Tcp(_) => PROTO_TCP,
        L4::Udp(_) => PROTO_UDP,
        L4::Other(_) => return true,
    };
    p.l4_bytes.is_empty() || transport_checksum_ok(p.src, p.dst, proto, p.l4_bytes)
}

fn five_tuple(p: &Packet<'_>) -> (FiveTuple, u8) {
    let (proto, sport, dport, flags) = match p.l4 {
        L4::Tcp(t) => (PROTO_TCP, t.sport, t.dport, t.flags),
        L4::Udp(u) => (PROTO_UDP, u.sport, u.dport, 0),
        L4::Other(proto) => (proto, 0, 0, 0),
    };
    let tuple = FiveTuple {
        src: p.src,
        dst: p.dst,
        sport,
        dport,
        proto,
    };
    (tuple, flags)
}

/// Who opened the flow, judged from its first packet: a SYN's sender, a
/// SYN-ACK's receiver; otherwise the subscriber when the caller says which
/// side sent it; otherwise the sender, unless it sends from a well-known
/// port to an ephemeral one (a capture that starts mid-flow).
fn client_is_sender(t: &FiveTuple, flags: u8, from_subscriber: Option<bool>) -> bool {
    if t.proto == PROTO_TCP && flags & TCP_SYN != 0 {
        return flags & TCP_ACK == 0;
    }
    from_subscriber.unwrap_or(!(t.sport < 1024 && t.dport >= 1024))
}
