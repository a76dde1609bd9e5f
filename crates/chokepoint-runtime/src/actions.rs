//! From a decision to what happens on the wire: forward or not, and what
//! to inject. Shared by replay (which writes pass/drop files) and the live
//! bridge.
//!
//! | verdict | the deciding packet | later packets of the flow | injected |
//! |---|---|---|---|
//! | pass, log | forwarded | forwarded | nothing |
//! | drop | dropped | dropped | nothing |
//! | reset | dropped | dropped | `repeat` RSTs each way (TCP); UDP is just dropped |
//! | dns | dropped | (per query) | a forged answer (UDP; TCP: answer, FIN, RST to the server) |
//! | redirect | dropped | dropped | HTTP: 302 to the stub page + FIN, RST to the server; TLS: resets |
//! | throttle | policed | policed | nothing; packets over the rate are dropped |
//! | freeze | forwarded | forwarded until the byte count, then dropped (both ways) | nothing |
//! | degrade | forwarded or dropped | each dropped with the loss probability | nothing |
//!
//! Freeze and degrade are decided packet by packet in the core
//! ([`Decision::dropped`]); here they are only carried out and counted.
//! A `reset` sends its resets `to` the client, the server or both.
//!
//! Tunnelled packets are never answered (a reply would need the tunnel's
//! headers rebuilt): they are dropped.
//!
//! [`Outcome::applied`] says what was done, which events report beside the
//! verdict: where the action cannot apply (a UDP query under `reset`, a
//! TLS name under `dns`, an unanswerable frame) it is a plain drop. On a
//! tap ([`Actor::tap`]) nothing can be dropped or policed: such frames are
//! observed, and only the injections happen.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use chokepoint_core::inject::{self, TokenBucket};
use chokepoint_core::{Decision, Event, LinkType, Verdict};
use chokepoint_rules::vocab::Scope;
use chokepoint_rules::{Action, Ruleset, Trigger};

/// What was actually done with a frame, which is not always what the
/// rule asked for: a UDP query under `reset` can only be dropped, a TLS
/// name under `dns` has no query to answer, and a tap cannot drop at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Applied {
    /// Forwarded: no rule stopped it.
    Pass,
    /// Forwarded, under a `log` rule.
    Log,
    /// Stopped, with nothing injected.
    Drop,
    /// Stopped, TCP resets injected (also HTTPS under `redirect`).
    Reset,
    /// Stopped, a forged DNS answer injected.
    Dns,
    /// Stopped, an HTTP redirect injected.
    Redirect,
    /// Policed: forwarded within the rate, dropped over it.
    Throttle,
    /// Under a freeze: forwarded before the byte count, dropped after it.
    Freeze,
    /// Under a degrade: forwarded, or dropped by the draw.
    Degrade,
    /// Forwarded; the flow's server was learnt.
    Learn,
    /// Tap mode: the rule would stop the frame, but a tap sees a copy and
    /// can only watch (it still injects where the action answers).
    Observe,
}

impl Applied {
    /// The name in event JSON (`action`).
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Pass => "pass",
            Applied::Log => "log",
            Applied::Drop => "drop",
            Applied::Reset => "reset",
            Applied::Dns => "dns",
            Applied::Redirect => "redirect",
            Applied::Throttle => "throttle",
            Applied::Freeze => "freeze",
            Applied::Degrade => "degrade",
            Applied::Learn => "learn",
            Applied::Observe => "observe",
        }
    }
}

/// What to do with one frame.
#[derive(Debug)]
pub struct Outcome {
    /// Send the frame on (always true on a tap: the link carries it anyway).
    pub forward: bool,
    /// Frames to send (resets, forged answers, redirects), in order.
    pub inject: Vec<Vec<u8>>,
    /// What this amounts to, for events.
    pub applied: Applied,
}

/// Counters of what the actions did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActionCounters {
    /// Frames let through (throttled frames within their rate included).
    pub forwarded: u64,
    /// Frames stopped (throttling drops included).
    pub dropped: u64,
    /// TCP resets injected.
    pub injected_rst: u64,
    /// DNS answers forged.
    pub injected_dns: u64,
    /// HTTP redirects sent.
    pub injected_redirect: u64,
    /// Frames dropped for going over a throttle's rate.
    pub throttled: u64,
    /// Answers that could not be built (tunnelled or unparsable frames).
    pub not_answerable: u64,
    /// Tap mode: frames a rule would have stopped, left alone.
    pub observed: u64,
    /// Answers sent on a flow's next packet because the deciding frame
    /// could not carry one (an IP fragment).
    pub answered_late: u64,
    /// Frames dropped because their flow is frozen.
    pub frozen: u64,
    /// Frames dropped by a degrade's draw.
    pub degraded: u64,
    /// Throttle buckets forgotten because the bucket map was full (their
    /// flows or clients start again with a full bucket).
    pub buckets_evicted: u64,
}

impl ActionCounters {
    /// Add another actor's counters to these (workers are summed this way).
    pub fn add(&mut self, o: &ActionCounters) {
        // Destructured, so a new counter cannot be forgotten here.
        let ActionCounters {
            forwarded,
            dropped,
            injected_rst,
            injected_dns,
            injected_redirect,
            throttled,
            not_answerable,
            observed,
            answered_late,
            frozen,
            degraded,
            buckets_evicted,
        } = o;
        self.forwarded += forwarded;
        self.dropped += dropped;
        self.injected_rst += injected_rst;
        self.injected_dns += injected_dns;
        self.injected_redirect += injected_redirect;
        self.throttled += throttled;
        self.not_answerable += not_answerable;
        self.observed += observed;
        self.answered_late += answered_late;
        self.frozen += frozen;
        self.degraded += degraded;
        self.buckets_evicted += buckets_evicted;
    }
}

/// Applies decisions: policers (per engine flow, or per client address)
/// and the injections, inline or on a tap.
#[derive(Default)]
pub struct Actor {
    /// `scope: flow` policers, by engine flow number and direction.
    buckets: HashMap<(u64, Upstream), TokenBucket>,
    /// `scope: client` policers, by the client's address and direction: one
    /// subscriber's flows share one rate, as a per-subscriber shaper does.
    client_buckets: HashMap<(IpAddr, Upstream), TokenBucket>,
    /// The same, shared by a box's workers: a subscriber's flows to
    /// different servers are carried by different workers.
    shared_clients: Option<Arc<ClientBuckets>>,
    /// Flows decided on a frame that could not be answered (the last IP
    /// fragment of a ClientHello carries no TCP header): the next packet
    /// of the flow is answered instead, with the trigger that decided.
    owed: HashMap<u64, Option<Trigger>>,
    /// On a tap: never drop or police, only inject.
    tap: bool,
    /// What this actor did so far.
    pub counters: ActionCounters,
}

/// Policers kept at most (per scope); beyond it they are all forgotten at
/// once (counted in [`ActionCounters::buckets_evicted`]), which costs
/// nothing per packet and only ever refills buckets.
const MAX_BUCKETS: usize = 1 << 20;
/// Owed answers kept at most; beyond it they are forgotten (the flow's
/// packets are still dropped).
const MAX_OWED: usize = 1 << 16;

/// `scope: client` policers shared by a box's workers (one per bridge): the
/// flows of one subscriber are sharded over the workers by host pair, and
/// all of them must spend one bucket. A throttled frame takes the lock of
/// its client's shard (one of [`CLIENT_SHARDS`], by a hash of the address,
/// so workers policing different subscribers rarely meet); throttled flows
/// are slow by design, and no other frame takes any.
#[derive(Debug)]
pub struct ClientBuckets([Mutex<HashMap<(IpAddr, Upstream), TokenBucket>>; CLIENT_SHARDS]);

/// Locks [`ClientBuckets`] is split over.
pub const CLIENT_SHARDS: usize = 64;

impl Default for ClientBuckets {
    fn default() -> ClientBuckets {
        ClientBuckets(std::array::from_fn(|_| Mutex::default()))
    }
}

impl ClientBuckets {
    /// The shard of `client`'s buckets. A worker that panicked holding
    /// the lock left the map whole or cleared: keep using it.
    fn shard(
        &self,
        client: IpAddr,
    ) -> std::sync::MutexGuard<'_, HashMap<(IpAddr, Upstream), TokenBucket>> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        // A fixed hasher: the shard only spreads lock contention.
        let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(client);
        self.0[h as usize % CLIENT_SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

impl Actor {
    /// An actor for a tap (a mirrored link): frames are copies, so nothing
    /// can be dropped or policed; resets and forged answers still go out.
    pub fn tap() -> Actor {
        Actor {
            tap: true,
            ..Actor::default()
        }
    }

    /// Police `scope: client` throttles in `buckets`, which the box's other
    /// workers share, instead of in this actor alone.
    pub fn sharing_clients(self, buckets: Arc<ClientBuckets>) -> Actor {
        Actor {
            shared_clients: Some(buckets),
            ..self
        }
    }

    /// Apply the decision `d` the engine made for `frame` (its `events`
    /// say which trigger decided), and say what was done.
    pub fn act(
        &mut self,
        rules: &Ruleset,
        link: LinkType,
        frame: &[u8],
        ts: u64,
        d: &Decision,
        events: &[Event],
    ) -> Outcome {
        // No rule matched: the policy's default action applies.
        let action = d
            .rule
            // A flow decided before a reload carries an id of the old
            // policy, which the new one may not have.
            .and_then(|r| rules.meta.rules.get(r.index()))
            .map_or(&rules.meta.default_action, |r| &r.action);
        if d.verdict.forwards() {
            self.counters.forwarded += 1;
            let applied = match d.verdict {
                Verdict::Log => Applied::Log,
                Verdict::Learn => Applied::Learn,
                _ => Applied::Pass,
            };
            return Outcome {
                forward: true,
                inject: Vec::new(),
                applied,
            };
        }
        if d.verdict.per_packet() {
            return self.per_packet(d);
        }
        if let (
            false,
            Verdict::Throttle,
            &Action::Throttle {
                kbps,
                burst_bytes,
                scope,
            },
        ) = (self.tap, d.verdict, action)
        {
            let ok = self.police(d, link, frame, ts, kbps, burst_bytes, scope);
            self.count(ok);
            return Outcome {
                forward: ok,
                inject: Vec::new(),
                applied: Applied::Throttle,
            };
        }
        // Only the deciding packet is answered (or the first answerable
        // one after it); later ones are just stopped.
        let owed = d.flow.and_then(|f| self.owed.get(&f).copied());
        let (answered, inject) = if d.decided_now || owed.is_some() {
            let trigger = match owed {
                Some(t) => t,
                None => decided_by(events),
            };
            let r = self.answer(d.verdict, action, link, frame, trigger);
            if let Some(f) = d.flow {
                self.settle(f, d.decided_now, trigger, r.0.is_some() || r.2);
            }
            (r.0, r.1)
        } else {
            (None, Vec::new())
        };
        let (forward, stopped) = if self.tap {
            self.counters.observed += 1;
            (true, Applied::Observe)
        } else {
            self.count(false);
            (false, Applied::Drop)
        };
        Outcome {
            forward,
            inject,
            applied: answered.unwrap_or(stopped),
        }
    }

    fn count(&mut self, forwarded: bool) {
        if forwarded {
            self.counters.forwarded += 1;
        } else {
            self.counters.dropped += 1;
        }
    }

    /// Carry out what the core decided for a freeze/degrade packet.
    fn per_packet(&mut self, d: &Decision) -> Outcome {
        let applied = if d.verdict == Verdict::Freeze {
            Applied::Freeze
        } else {
            Applied::Degrade
        };
        let (forward, applied) = if !d.dropped {
            self.counters.forwarded += 1;
            (true, applied)
        } else if self.tap {
            self.counters.observed += 1;
            (true, Applied::Observe)
        } else {
            self.counters.dropped += 1;
            if d.verdict == Verdict::Freeze {
                self.counters.frozen += 1;
            } else {
                self.counters.degraded += 1;
            }
            (false, applied)
        };
        Outcome {
            forward,
            inject: Vec::new(),
            applied,
        }
    }

    /// Whether the policer of the frame's flow (or client) lets it through now.
    #[allow(clippy::too_many_arguments)]
    fn police(
        &mut self,
        d: &Decision,
        link: LinkType,
        frame: &[u8],
        ts: u64,
        kbps: u32,
        burst_bytes: u32,
        scope: Scope,
    ) -> bool {
        let fresh = || TokenBucket::with_burst(kbps, burst_bytes, ts);
        // Each direction has its own bucket, as Twitter's throttle held each
        // way to the rate on its own (Xue et al., IMC 2021). One shared
        // bucket would also spend the download's tokens on its ACKs and drop
        // them, and a lost ACK stalls the sender for a whole RTO.
        let up = Upstream(d.client.is_some_and(|c| source(link, frame) == Some(c)));
        let ok = match (scope, d.client, &self.shared_clients) {
            (Scope::Client, Some(client), Some(shared)) => {
                let mut map = shared.shard(client);
                // The bridge's 2^20 client buckets, split over the shards.
                let cap = MAX_BUCKETS / CLIENT_SHARDS;
                bucket((&mut map, cap), (client, up), &mut self.counters, fresh)
                    .allow(ts, frame.len())
            }
            (Scope::Client, Some(client), None) => bucket(
                (&mut self.client_buckets, MAX_BUCKETS),
                (client, up),
                &mut self.counters,
                fresh,
            )
            .allow(ts, frame.len()),
            // The engine's flow number follows the flow through IP
            // fragments; frames it keeps no flow for (and so no client)
            // share one bucket per host pair.
            _ => {
                let key = d
                    .flow
                    .unwrap_or_else(|| chokepoint_core::decode::shard_key(link, frame));
                bucket(
                    (&mut self.buckets, MAX_BUCKETS),
                    (key, up),
                    &mut self.counters,
                    fresh,
                )
                .allow(ts, frame.len())
            }
        };
        if !ok {
            self.counters.throttled += 1;
        }
        ok
    }

    /// Keep or clear a flow's owed answer after trying to answer a frame.
    fn settle(&mut self, flow: u64, decided_now: bool, trigger: Option<Trigger>, parsed: bool) {
        if parsed {
            if self.owed.remove(&flow).is_some() {
                self.counters.answered_late += 1;
            }
        } else if decided_now {
            if self.owed.len() >= MAX_OWED {
                self.owed.clear();
            }
            self.owed.insert(flow, trigger);
        }
    }

    /// The frames answering a stopped packet, what kind of answer they are
    /// (`None` when the action has no answer for this packet), and whether
    /// the frame could be read for an answer at all.
    fn answer(
        &mut self,
        v: Verdict,
        a: &Action,
        link: LinkType,
        frame: &[u8],
        trigger: Option<Trigger>,
    ) -> (Option<Applied>, Vec<Vec<u8>>, bool) {
        let Some(t) = inject::trigger(link, frame) else {
            self.counters.not_answerable += 1;
            return (None, Vec::new(), false);
        };
        let resets = |this: &mut Self, repeat: u8| {
            let r = inject::tcp_resets(&t, repeat);
            this.counters.injected_rst += r.len() as u64;
            r
        };
        let (kind, frames) = match (v, a) {
            (Verdict::Reset, Action::Reset { repeat, to }) if t.proto == 6 => {
                let r = inject::tcp_resets_to(&t, *repeat, *to);
                self.counters.injected_rst += r.len() as u64;
                (Applied::Reset, r)
            }
            // A residual block's own action (`residual: {action: reset}`),
            // whatever the arming rule's action was: one reset each way.
            (Verdict::Reset, _) if trigger == Some(Trigger::Residual) && t.proto == 6 => {
                (Applied::Reset, resets(self, 1))
            }
            (Verdict::Dns, Action::Dns { answer, ttl }) if trigger == Some(Trigger::DnsQname) => {
                let frames = if t.proto == 6 {
                    inject::dns_answer_tcp(&t, answer, *ttl)
                } else {
                    inject::dns_answer(&t, answer, *ttl).into_iter().collect()
                };
                if frames.is_empty() {
                    self.counters.not_answerable += 1;
                } else {
                    self.counters.injected_dns += 1;
                }
                (Applied::Dns, frames)
            }
            (Verdict::Redirect, Action::Redirect { location }) if t.proto == 6 => {
                if trigger == Some(Trigger::HttpHost) {
                    let r = inject::http_redirect(&t, location);
                    self.counters.injected_redirect += 1;
                    (Applied::Redirect, r)
                } else {
                    // HTTPS cannot be answered with a page: reset it.
                    (Applied::Reset, resets(self, 1))
                }
            }
            _ => (Applied::Drop, Vec::new()),
        };
        // An answer that sent nothing was a plain drop.
        ((!frames.is_empty()).then_some(kind), frames, true)
    }
}

/// Whether a policed frame goes from the flow's client to its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Upstream(bool);

/// The frame's IP source address, fragments included.
fn source(link: LinkType, frame: &[u8]) -> Option<IpAddr> {
    match chokepoint_core::decode::decode(link, frame) {
        chokepoint_core::decode::Decoded::Packet(p) => Some(p.src),
        chokepoint_core::decode::Decoded::Fragment(f) => Some(f.src),
        _ => None,
    }
}

/// The bucket under `key`, made with `fresh` if there is none. A full map
/// is cleared first: bounded memory whatever the number of flows or
/// clients, and a forgotten bucket only starts full again.
fn bucket<'m, K: Hash + Eq>(
    (map, cap): (&'m mut HashMap<K, TokenBucket>, usize),
    key: K,
    counters: &mut ActionCounters,
    fresh: impl FnOnce() -> TokenBucket,
) -> &'m mut TokenBucket {
    if map.len() >= cap && !map.contains_key(&key) {
        counters.buckets_evicted += map.len() as u64;
        map.clear();
    }
    map.entry(key).or_insert_with(fresh)
}

/// The trigger of the event that decided: it picks the answer (a DNS
/// query gets a forged answer, HTTP a redirect page).
fn decided_by(events: &[Event]) -> Option<Trigger> {
    events
        .iter()
        .rev()
        .find(|e| e.rule.is_some())
        .map(|e| e.trigger)
}
