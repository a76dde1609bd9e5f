//! `chokepoint run`: the live inline bridge (or passive tap).
//!
//! ```text
//!  inside (subscribers) ──► rx thread ─┐            ┌─► forward out `outside`
//!                                      ├─ shard_key ─► worker k: Engine + Actor ──┤
//!  outside (Internet)  ──► rx thread ─┘   (bounded   └─► injected frames out the
//!                                          queues)        side they are meant for
//! ```
//! That is the socket backend ([`run`]). The ring backend ([`run_rings`],
//! the default) has no receive threads and no queues: the kernel's fanout
//! program writes each frame into the ring of the worker that owns it, and
//! the worker sends in `sendmmsg` batches (see [`crate::ring`]).
//!
//! Frames are spread over workers by the symmetric flow hash
//! ([`worker_for`]), so both directions of a flow meet one engine (as
//! TSPU's balancer does); a full worker queue (or ring) drops the frame and
//! counts it. In tap mode nothing is
//! forwarded and injections go out the tap interface, like an on-path
//! censor. Each worker publishes its counters in its own [`WorkerStats`];
//! readers sum them, so the packet path never contends on shared counters.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chokepoint_core::decode::worker_for;
use chokepoint_core::defrag::DefragStats;
use chokepoint_core::{Counters, Engine, LinkType, Verdict};
use chokepoint_rules::Ruleset;

use crate::actions::{ActionCounters, Actor};
use crate::port::Port;

/// Which side a frame came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The subscribers' side (the tap, in tap mode).
    Inside,
    /// The Internet's side.
    Outside,
}

impl Side {
    /// The label used in metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Inside => "inside",
            Side::Outside => "outside",
        }
    }
}

/// Decisions by (rule name, trigger, verdict); `None`: the policy default.
/// Keyed by the rule's name, not its index, so that a reload that reorders
/// or removes rules leaves past counts on the rule that made them.
pub type DecisionCounts =
    std::collections::HashMap<(Option<Arc<str>>, &'static str, &'static str), u64>;

/// One worker's published counters (written by that worker only).
#[derive(Default)]
pub struct WorkerStats {
    /// The worker's engine counters, as of its last publication.
    pub engine: Mutex<Counters>,
    /// What its actor did, as of its last publication.
    pub actions: Mutex<ActionCounters>,
    /// (rule name, trigger, verdict) → decisions.
    pub decisions: Mutex<DecisionCounts>,
    /// [side][verdict] packets.
    pub packets: [[AtomicU64; Verdict::COUNT]; 2],
    /// [side][verdict] bytes.
    pub bytes: [[AtomicU64; Verdict::COUNT]; 2],
    /// Frames dropped because this worker's queue was full.
    pub queue_drops: AtomicU64,
    /// Flows in this worker's table.
    pub flows: AtomicU64,
    /// Flows its table can hold (its share of the profile's `max_flows`).
    pub flows_capacity: AtomicU64,
    /// Flows created.
    pub flows_created: AtomicU64,
    /// Flows dropped from a full table.
    pub flows_evicted: AtomicU64,
    /// Flows expired after their idle timeout.
    pub flows_expired: AtomicU64,
    /// Reassembly buffers freed under memory pressure.
    pub buffers_evicted: AtomicU64,
    /// What this worker's IP defragmenter did.
    pub defrag: Mutex<DefragStats>,
    /// Ring backend, by side: frames the kernel offered this worker's
    /// socket (`PACKET_STATISTICS` `tp_packets`, drops included).
    pub kernel_packets: [AtomicU64; 2],
    /// Ring backend, by side: frames the kernel dropped because this
    /// worker's ring was full (`tp_drops`).
    pub kernel_drops: [AtomicU64; 2],
    /// Ring backend (TPACKET_V3), by side: times the ring froze full
    /// (`tp_freeze_q_cnt`).
    pub kernel_freeze_q: [AtomicU64; 2],
    /// Ring backend: frames cut short by their ring slot, not forwarded.
    pub ring_truncated: AtomicU64,
}

/// Shared state of a running bridge. Built by [`Shared::new`] only.
#[non_exhaustive]
pub struct Shared {
    /// The ruleset in force; swapped whole by [`reload`].
    pub rules: arc_swap::ArcSwap<Ruleset>,
    /// One entry per worker, in worker order.
    pub workers: Vec<Arc<WorkerStats>>,
    /// Set to stop the bridge (signals, a failed port).
    pub stop: Arc<AtomicBool>,
    /// Reloads that took over.
    pub reloads_ok: AtomicU64,
    /// Reloads refused (the previous rules kept serving).
    pub reloads_failed: AtomicU64,
    /// Time the ruleset in force took to load or compile.
    pub load_seconds: Mutex<f64>,
    /// Frames the ports failed to send.
    pub send_errors: AtomicU64,
    /// Whether the last reload attempt took over (true before any).
    pub last_reload_ok: AtomicBool,
    /// When rules last took over (a reload, or the start), unix seconds.
    pub last_reload_success_unix: AtomicU64,
    /// Threads of the bridge that died (each one stops the bridge).
    pub worker_failures: AtomicU64,
    /// A reload is reading its files (see [`reload_within`]).
    pub reload_in_flight: AtomicBool,
    /// The dynamic lists `learn` actions fill: every worker's engine reads
    /// and writes them, and a reload keeps them.
    pub learned: Arc<crate::learned::LearnedTable>,
    /// Residual blocks of scope `server` and `client`: they cover flows
    /// that other workers carry, so every worker's engine keeps them here
    /// (3-tuple and 2-tuple blocks stay in each engine). A reload keeps
    /// them.
    pub residual: Arc<crate::residual::SharedResidual>,
    /// `scope: client` throttles' buckets: a subscriber's flows are
    /// carried by several workers and spend one rate.
    pub client_buckets: Arc<crate::actions::ClientBuckets>,
    /// The memory the box may use, read once at start
    /// ([`crate::machine::memory`]): every worker sizes its part of an
    /// `auto` reassembly budget from the same figure.
    pub memory: Option<u64>,
    /// Polls of `--artifact-url`, by [`FetchResult`].
    pub fetches: [AtomicU64; FetchResult::ALL.len()],
    /// What the events writer did.
    pub events: Arc<crate::events::EventCounters>,
}

/// What a poll of `--artifact-url` came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchResult {
    /// A new artifact verified and took over.
    Updated,
    /// Nothing new (`304`, or the same bytes as in force).
    NotModified,
    /// The server could not be reached or answered an error.
    Error,
    /// An artifact came and was refused (signature, hash, validation, rollback).
    Refused,
}

impl FetchResult {
    /// Every result, in metric label order.
    pub const ALL: [FetchResult; 4] = [
        FetchResult::Updated,
        FetchResult::NotModified,
        FetchResult::Error,
        FetchResult::Refused,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FetchResult::Updated => "updated",
            FetchResult::NotModified => "not_modified",
            FetchResult::Error => "error",
            FetchResult::Refused => "refused",
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Say when a worker's part of the reassembly budget holds fewer than a
/// few flows' worth of `reassembly_max_bytes`: hellos split over segments
/// would then be refused (and pass uninspected) under ordinary load.
fn warn_if_budget_is_thin(rules: &Ruleset, workers: usize, memory: Option<u64>) {
    let p = &rules.meta.profile;
    if let Some((part, flows)) = thin_budget(p, workers, memory) {
        tracing::warn!(
            budget = p.reassembly_budget_for(memory),
            workers,
            per_worker = part,
            reassembly_max_bytes = p.reassembly_max_bytes,
            "each worker's part of reassembly_memory_budget holds only {flows} flows' worth of reassembly_max_bytes: raise the budget or lower the workers"
        );
    }
}

/// A worker's part of the reassembly budget, and how many flows of
/// `reassembly_max_bytes` it holds, when that is under 16.
fn thin_budget(
    p: &chokepoint_rules::Profile,
    workers: usize,
    memory: Option<u64>,
) -> Option<(u64, u64)> {
    let part = p
        .reassembly_budget_for(memory)
        .div_ceil(workers.max(1) as u64);
    let flows = part / u64::from(p.reassembly_max_bytes).max(1);
    (flows < 16).then_some((part, flows))
}

impl Shared {
    /// The state for `workers` workers (at least one) serving `rules`,
    /// which took `load_seconds` to load.
    pub fn new(rules: Ruleset, workers: usize, load_seconds: f64) -> Shared {
        let learned = Arc::new(crate::learned::LearnedTable::new(
            rules.meta.profile.max_learned_entries as usize,
        ));
        let residual = Arc::new(crate::residual::SharedResidual::new(
            rules.meta.profile.max_residual_entries as usize,
        ));
        let memory = crate::machine::memory();
        warn_if_budget_is_thin(&rules, workers, memory);
        Shared {
            learned,
            residual,
            client_buckets: Arc::default(),
            memory,
            rules: arc_swap::ArcSwap::from_pointee(rules),
            workers: (0..workers.max(1))
                .map(|_| Arc::new(WorkerStats::default()))
                .collect(),
            stop: Arc::new(AtomicBool::new(false)),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            load_seconds: Mutex::new(load_seconds),
            send_errors: AtomicU64::new(0),
            last_reload_ok: AtomicBool::new(true),
            last_reload_success_unix: AtomicU64::new(unix_now()),
            worker_failures: AtomicU64::new(0),
            reload_in_flight: AtomicBool::new(false),
            fetches: Default::default(),
            events: Arc::default(),
        }
    }

    /// Count a poll of `--artifact-url`.
    pub fn count_fetch(&self, r: FetchResult) {
        self.fetches[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every worker's counters summed: the one place they are added up,
    /// for the metrics endpoint and the final report alike.
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            learned: self.learned.stats(),
            events: self.events.load(),
            ..Totals::default()
        };
        for w in &self.workers {
            for side in 0..2 {
                for v in 0..Verdict::COUNT {
                    t.packets[side][v] += w.packets[side][v].load(Ordering::Relaxed);
                    t.bytes[side][v] += w.bytes[side][v].load(Ordering::Relaxed);
                }
            }
            t.engine
                .add(&w.engine.lock().unwrap_or_else(|p| p.into_inner()));
            t.reassembly_buffers_evicted += w.buffers_evicted.load(Ordering::Relaxed);
            t.defrag
                .add(&w.defrag.lock().unwrap_or_else(|p| p.into_inner()));
            for (k, n) in w.decisions.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                *t.decisions.entry(k.clone()).or_default() += n;
            }
            t.actions
                .add(&w.actions.lock().unwrap_or_else(|p| p.into_inner()));
            t.queue_drops.push(w.queue_drops.load(Ordering::Relaxed));
            let load = |a: &[AtomicU64; 2]| [0, 1].map(|i| a[i].load(Ordering::Relaxed));
            t.kernel.push(WorkerKernel {
                packets: load(&w.kernel_packets),
                drops: load(&w.kernel_drops),
                freeze_q: load(&w.kernel_freeze_q),
                truncated: w.ring_truncated.load(Ordering::Relaxed),
            });
            t.flows += w.flows.load(Ordering::Relaxed);
            t.flows_capacity += w.flows_capacity.load(Ordering::Relaxed);
            t.flows_created += w.flows_created.load(Ordering::Relaxed);
            t.flows_evicted += w.flows_evicted.load(Ordering::Relaxed);
            t.flows_expired += w.flows_expired.load(Ordering::Relaxed);
        }
        // The shared residual blocks count with the engines' own.
        let r = self.residual.stats();
        t.engine.residual_armed += r.armed;
        t.engine.residual_hits += r.hits;
        t.engine.residual_evicted += r.evicted;
        t.engine.residual_expired += r.expired;
        t
    }
}

/// What all workers of a bridge counted, summed (see [`Shared::totals`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// [side][verdict] packets received.
    pub packets: [[u64; Verdict::COUNT]; 2],
    /// [side][verdict] bytes received.
    pub bytes: [[u64; Verdict::COUNT]; 2],
    /// Every worker's engine counters, summed (parse problems, reassembly
    /// caps and budget, residual blocks with the shared ones, stream-reading
    /// knobs, ...).
    pub engine: Counters,
    /// Reassembly buffers freed under memory pressure.
    pub reassembly_buffers_evicted: u64,
    /// What the IP defragmenters did.
    pub defrag: DefragStats,
    /// (rule name, trigger, verdict) → decisions.
    pub decisions: DecisionCounts,
    /// What the actors did.
    pub actions: ActionCounters,
    /// Queue drops per worker, in worker order.
    pub queue_drops: Vec<u64>,
    /// The kernel's counters of each worker's rings, in worker order.
    pub kernel: Vec<WorkerKernel>,
    /// Flows in the flow tables.
    pub flows: u64,
    /// Flows the flow tables can hold.
    pub flows_capacity: u64,
    /// Flows created.
    pub flows_created: u64,
    /// Flows dropped from full tables.
    pub flows_evicted: u64,
    /// Flows expired after their idle timeout.
    pub flows_expired: u64,
    /// Reloads that took over.
    pub reloads_ok: u64,
    /// Reloads refused.
    pub reloads_failed: u64,
    /// Frames the ports failed to send.
    pub send_errors: u64,
    /// What the dynamic lists of `learn` actions did.
    pub learned: crate::learned::LearnedStats,
    /// What the events writer did.
    pub events: crate::events::EventStats,
}

/// The kernel's counters of one worker's rings, by side (ring backend).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerKernel {
    /// Frames offered to the worker's sockets (drops included).
    pub packets: [u64; 2],
    /// Frames dropped because a ring was full.
    pub drops: [u64; 2],
    /// TPACKET_V3: times a ring froze full.
    pub freeze_q: [u64; 2],
    /// Frames cut short by their slot, not forwarded.
    pub truncated: u64,
}

/// How a bridge runs.
pub struct Config {
    /// Worker threads (at least one).
    pub workers: usize,
    /// Forward between the two ports (bridge) or only observe (tap).
    pub forward: bool,
    /// Where to write one JSON line per decision (by a writer thread of
    /// its own, see [`crate::events`]).
    pub events: Option<Box<dyn Write + Send>>,
    /// The events' format.
    pub events_format: crate::eve::EventFormat,
    /// Frames queued per worker before drops.
    pub queue: usize,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

type Job = (Side, Vec<u8>);

/// Run until `shared.stop` is set. `outside` is `None` in tap mode.
pub fn run(
    shared: Arc<Shared>,
    inside: Arc<dyn Port>,
    outside: Option<Arc<dyn Port>>,
    cfg: Config,
) -> std::io::Result<()> {
    let n = cfg.workers.max(1);
    let mut senders: Vec<SyncSender<Job>> = Vec::new();
    let mut receivers: Vec<Receiver<Job>> = Vec::new();
    for _ in 0..n {
        let (tx, rx) = sync_channel(cfg.queue.max(16));
        senders.push(tx);
        receivers.push(rx);
    }
    std::thread::scope(|s| {
        let (events, writer) = events_writer(s, &shared, cfg.events, n);
        let mut workers = Vec::new();
        for ((k, rx), events) in receivers.into_iter().enumerate().zip(events) {
            let shared = shared.clone();
            let (inside, outside) = (inside.clone(), outside.clone());
            let forward = cfg.forward;
            let format = cfg.events_format;
            workers.push(s.spawn(move || {
                let _watch = DeathWatch(&shared);
                worker(k, rx, &shared, inside, outside, forward, (events, format))
            }));
        }
        let mut rx_threads = Vec::new();
        for (side, port) in [
            (Side::Inside, Some(inside.clone())),
            (Side::Outside, outside.clone()),
        ] {
            let Some(port) = port else { continue };
            let senders = senders.clone();
            let shared = shared.clone();
            rx_threads.push(s.spawn(move || -> std::io::Result<()> {
                let mut buf = vec![0u8; 65_536];
                while !shared.stop.load(Ordering::Relaxed) {
                    let Some(len) = port.recv(&mut buf)? else {
                        continue;
                    };
                    let frame = &buf[..len];
                    let k = worker_for(LinkType::Ethernet, frame, senders.len());
                    match senders[k].try_send((side, frame.to_vec())) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            shared.workers[k]
                                .queue_drops
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        // Its worker is gone: the bridge cannot go on with
                        // a share of the flows unserved.
                        Err(TrySendError::Disconnected(_)) => {
                            shared.stop.store(true, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                Ok(())
            }));
        }
        drop(senders);
        let mut res = Ok(());
        for t in rx_threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    shared.stop.store(true, Ordering::Relaxed);
                    res = Err(e);
                }
                Err(panic) => {
                    shared.stop.store(true, Ordering::Relaxed);
                    res = Err(died("a receive thread", &*panic));
                }
            }
        }
        // The receive threads are gone, so every queue is disconnected and
        // each worker ends once it has drained its own.
        let workers = join_workers(workers);
        join_writer(writer).and(workers).and(res)
    })
}

/// Start the events writer (when there is an output) in the bridge's scope;
/// one sender per worker. It ends, having flushed, once every worker has.
/// A writer that dies stops the bridge as a dead worker does: events lost
/// without end while forwarding looked healthy is no state to run in.
fn events_writer<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    shared: &Arc<Shared>,
    out: Option<Box<dyn Write + Send>>,
    workers: usize,
) -> (
    Vec<Option<crate::events::EventSender>>,
    Option<std::thread::ScopedJoinHandle<'scope, ()>>,
) {
    let Some(out) = out else {
        return ((0..workers).map(|_| None).collect(), None);
    };
    let (senders, writer) = crate::events::channel(
        out,
        workers,
        crate::events::QUEUE_LINES,
        shared.events.clone(),
    );
    let shared = shared.clone();
    let handle = s.spawn(move || {
        let _watch = DeathWatch(&shared);
        writer.run()
    });
    (senders.into_iter().map(Some).collect(), Some(handle))
}

/// Wait for the events writer (after the workers, whose senders it waits
/// for); the error it died with, if it did.
fn join_writer(writer: Option<std::thread::ScopedJoinHandle<'_, ()>>) -> std::io::Result<()> {
    match writer.map(|w| w.join()) {
        Some(Err(panic)) => {
            let e = died("the events writer", &*panic);
            tracing::error!(error = %e, "the events writer died; stopping the bridge");
            Err(e)
        }
        _ => Ok(()),
    }
}

/// Wait for every worker; the error of the last that died, if any did.
fn join_workers(workers: Vec<std::thread::ScopedJoinHandle<'_, ()>>) -> std::io::Result<()> {
    let mut res = Ok(());
    for (k, w) in workers.into_iter().enumerate() {
        if let Err(panic) = w.join() {
            let e = died(&format!("worker {k}"), &*panic);
            tracing::error!(error = %e, "a worker died; stopping the bridge");
            res = Err(e);
        }
    }
    res
}

/// Stops the whole bridge when the thread holding it unwinds: a dead
/// worker would leave its share of the flows unserved while the rest of
/// the process (and its metrics) looked healthy, so no supervisor would
/// restart it. Failing whole, with a non-zero exit, is the honest outcome.
struct DeathWatch<'a>(&'a Shared);

impl Drop for DeathWatch<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.worker_failures.fetch_add(1, Ordering::Relaxed);
            self.0.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// The error a panicked thread ends the bridge with.
fn died(who: &str, panic: &(dyn std::any::Any + Send)) -> std::io::Error {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    std::io::Error::other(format!("{who} panicked: {msg}"))
}

/// Where a worker's frames go: out one side or the other. The socket
/// backend sends at once; the ring backend stages them for `sendmmsg`.
trait Emit<'b> {
    /// Send a frame that outlives the emitter's batch.
    fn frame(&mut self, to: Side, f: &'b [u8]);
    /// Send a frame made here (an injected one).
    fn owned(&mut self, to: Side, f: Vec<u8>);
}

/// The socket backend's emitter: one `send` per frame.
struct PortEmit<'p> {
    inside: &'p dyn Port,
    outside: Option<&'p dyn Port>,
    errors: &'p AtomicU64,
}

impl<'b> Emit<'b> for PortEmit<'_> {
    fn frame(&mut self, to: Side, f: &'b [u8]) {
        let port = match to {
            Side::Inside => Some(self.inside),
            Side::Outside => self.outside,
        };
        if let Some(p) = port {
            if p.send(f).is_err() {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    fn owned(&mut self, to: Side, f: Vec<u8>) {
        self.frame(to, &f);
    }
}

impl<'b> Emit<'b> for crate::ring::Stage<'b, '_> {
    fn frame(&mut self, to: Side, f: &'b [u8]) {
        self.push(to as usize, f);
    }
    fn owned(&mut self, to: Side, f: Vec<u8>) {
        self.push_owned(to as usize, f);
    }
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        }
    }
}

/// One worker's engine, actor and bookkeeping, whatever feeds it frames.
struct WorkerCore<'s> {
    shared: &'s Shared,
    stats: &'s WorkerStats,
    rules: Arc<Ruleset>,
    engine: Engine,
    actor: Actor,
    forward: bool,
    /// The rules' names, by index, from the ruleset in force: what
    /// decisions are counted by.
    rule_names: Vec<Arc<str>>,
    events: Option<crate::events::EventSender>,
    format: crate::eve::EventFormat,
    /// Interface names, inside then outside, for the events.
    names: [Option<String>; 2],
    since_publish: u32,
    last_expire: u64,
}

/// Every rule's name, by index (one allocation per rule per reload, none
/// per decision).
fn rule_names(rules: &Ruleset) -> Vec<Arc<str>> {
    rules
        .meta
        .rules
        .iter()
        .map(|r| Arc::from(r.name.as_str()))
        .collect()
}

impl<'s> WorkerCore<'s> {
    fn new(
        k: usize,
        shared: &'s Shared,
        forward: bool,
        (events, format): (Option<crate::events::EventSender>, crate::eve::EventFormat),
        names: [Option<String>; 2],
    ) -> WorkerCore<'s> {
        let rules = shared.rules.load_full();
        let mut engine = Engine::sharing(
            rules.clone(),
            chokepoint_core::Share {
                workers: shared.workers.len(),
                memory: shared.memory,
            },
        );
        engine.set_learn_store(shared.learned.clone());
        engine.set_residual_store(shared.residual.clone());
        WorkerCore {
            shared,
            stats: &shared.workers[k],
            engine,
            rule_names: rule_names(&rules),
            rules,
            actor: if forward {
                Actor::default()
            } else {
                Actor::tap()
            }
            .sharing_clients(shared.client_buckets.clone()),
            forward,
            events,
            format,
            names,
            since_publish: 0,
            last_expire: 0,
        }
    }

    /// Hot reload: pick up a new ruleset between packets.
    fn reload(&mut self) {
        let current = self.shared.rules.load();
        if !Arc::ptr_eq(&current, &self.rules) {
            self.rules = current.clone();
            self.rule_names = rule_names(&self.rules);
            self.engine.set_rules(self.rules.clone());
        }
    }

    /// One frame, arrived at `ts` (ns since the epoch).
    fn handle<'b>(&mut self, ts: u64, side: Side, frame: &'b [u8], out: &mut dyn Emit<'b>) {
        // A tap sees both ways on one port: no side to tell.
        let d = if self.forward {
            self.engine
                .process_from(ts, LinkType::Ethernet, frame, side == Side::Inside)
        } else {
            self.engine.process(ts, LinkType::Ethernet, frame)
        };
        let (engine, rules) = (&self.engine, &self.rules);
        let o = self
            .actor
            .act(rules, LinkType::Ethernet, frame, ts, &d, engine.events());
        if o.forward && self.forward {
            out.frame(side.other(), frame);
        }
        // Injected frames addressed to this frame's sender go back out
        // the side it came from; the rest go the other way (in tap mode
        // everything goes out the tap).
        if !o.inject.is_empty() {
            let src = chokepoint_core::inject::trigger(LinkType::Ethernet, frame).map(|t| t.src);
            for f in &o.inject {
                let to_sender =
                    chokepoint_core::inject::trigger(LinkType::Ethernet, f).map(|t| t.dst) == src;
                let to = if !self.forward || to_sender {
                    if self.forward {
                        side
                    } else {
                        Side::Inside
                    }
                } else {
                    side.other()
                };
                out.owned(to, f.clone());
            }
        }
        let stats = self.stats;
        let si = (side == Side::Outside) as usize;
        let v = d.verdict as usize;
        stats.packets[si][v].fetch_add(1, Ordering::Relaxed);
        stats.bytes[si][v].fetch_add(frame.len() as u64, Ordering::Relaxed);
        if !self.engine.events().is_empty() {
            let mut dec = stats.decisions.lock().expect("stats");
            for e in self.engine.events() {
                // The engine decided under `self.rules`: its names.
                let rule = e.rule.and_then(|r| self.rule_names.get(r.index()).cloned());
                *dec.entry((rule, e.trigger.as_str(), e.verdict.as_str()))
                    .or_default() += 1;
            }
            drop(dec);
            // Formatted here, written by the events writer: a full queue
            // drops the line (counted) rather than stall forwarding.
            if let Some(q) = &self.events {
                let iface = self.names[si].as_deref();
                for e in self.engine.events() {
                    let mut line = String::with_capacity(512);
                    self.format.write_line(&self.rules, e, &o, iface, &mut line);
                    line.push('\n');
                    q.send(line);
                }
            }
        }
        self.since_publish += 1;
    }

    /// A quiet worker frees flows, fragments and residual blocks past
    /// their time, at most once a second (a busy one expires a flow it
    /// looks up, and sweeps a few slots per packet).
    fn idle(&mut self) {
        let now = now_ns();
        if now.saturating_sub(self.last_expire) >= 1_000_000_000 {
            self.engine.expire(now);
            self.last_expire = now;
            // What it freed shows in the counters published next.
            self.since_publish += 1;
        }
    }

    /// Publish every 256 frames, and when idle, so a quiet link still
    /// shows fresh counters. Returns whether it published.
    fn publish(&mut self, idle: bool) -> bool {
        if !(self.since_publish >= 256 || (idle && self.since_publish > 0)) {
            return false;
        }
        let stats = self.stats;
        *stats.engine.lock().expect("stats") = self.engine.counters.clone();
        *stats.actions.lock().expect("stats") = self.actor.counters.clone();
        let fs = self.engine.flows().stats;
        stats
            .flows
            .store(self.engine.flows().len() as u64, Ordering::Relaxed);
        stats
            .flows_capacity
            .store(self.engine.flows().capacity() as u64, Ordering::Relaxed);
        stats.flows_created.store(fs.created, Ordering::Relaxed);
        stats.flows_evicted.store(fs.evicted, Ordering::Relaxed);
        stats.flows_expired.store(fs.expired, Ordering::Relaxed);
        stats
            .buffers_evicted
            .store(fs.buffers_evicted, Ordering::Relaxed);
        *stats.defrag.lock().expect("stats") = self.engine.defrag_stats();
        self.since_publish = 0;
        true
    }

    fn finish(&mut self) {
        let stats = self.stats;
        *stats.engine.lock().expect("stats") = self.engine.counters.clone();
        *stats.actions.lock().expect("stats") = self.actor.counters.clone();
        *stats.defrag.lock().expect("stats") = self.engine.defrag_stats();
    }
}

/// The socket backend's worker: frames from its queue, sent one by one.
fn worker(
    k: usize,
    rx: Receiver<Job>,
    shared: &Shared,
    inside: Arc<dyn Port>,
    outside: Option<Arc<dyn Port>>,
    forward: bool,
    events: (Option<crate::events::EventSender>, crate::eve::EventFormat),
) {
    let names = [
        Some(inside.name().to_string()),
        outside.as_ref().map(|p| p.name().to_string()),
    ];
    let mut core = WorkerCore::new(k, shared, forward, events, names);
    let mut out = PortEmit {
        inside: &*inside,
        outside: outside.as_deref(),
        errors: &shared.send_errors,
    };
    loop {
        let job = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(j) => Some(j),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        core.reload();
        let idle = job.is_none();
        if let Some((side, frame)) = job {
            core.handle(now_ns(), side, &frame, &mut out);
        }
        if idle {
            core.idle();
        }
        core.publish(idle);
    }
    core.finish();
}

/// Frames a ring worker takes from one ring before turning to the other.
const RING_BATCH: usize = 64;

/// Run the ring backend until `shared.stop` is set: each worker reads its
/// own rings (the kernel's fanout program put its flows there) and sends
/// with `sendmmsg`. Returns the error of a worker that died.
pub fn run_rings(
    shared: Arc<Shared>,
    rings: crate::ring::RingSet,
    cfg: Config,
) -> std::io::Result<()> {
    let (forward, format) = (cfg.forward, cfg.events_format);
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        let spin = rings.spin;
        let (events, writer) = events_writer(s, &shared, cfg.events, rings.workers.len());
        for ((k, mut w), events) in rings.workers.into_iter().enumerate().zip(events) {
            let shared = &*shared;
            handles.push(s.spawn(move || {
                let _watch = DeathWatch(shared);
                let names = [
                    Some(w.inside.name().to_string()),
                    w.outside.as_ref().map(|o| o.name().to_string()),
                ];
                let mut core = WorkerCore::new(k, shared, forward, (events, format), names);
                ring_worker(&mut core, &mut w, spin);
                core.finish();
            }));
        }
        let workers = join_workers(handles);
        join_writer(writer).and(workers)
    })
}

fn ring_worker(core: &mut WorkerCore<'_>, w: &mut crate::ring::WorkerRings, spin: Duration) {
    let shared = core.shared;
    let stats = core.stats;
    let mut tx = crate::ring::Tx::new(w.inside.fd(), w.outside.as_ref().map(|o| o.fd()));
    let mut fds: Vec<libc::pollfd> = [Some(w.inside.fd()), w.outside.as_ref().map(|o| o.fd())]
        .into_iter()
        .flatten()
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut errors_seen = 0;
    let mut kernel_read = std::time::Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        core.reload();
        let mut got = 0;
        for side in [Side::Inside, Side::Outside] {
            let sock = match side {
                Side::Inside => &mut w.inside,
                Side::Outside => match &mut w.outside {
                    Some(o) => o,
                    None => continue,
                },
            };
            let batch = sock.rx.batch(RING_BATCH);
            if batch.is_empty() {
                continue;
            }
            got += batch.len();
            // One clock read per batch: its frames arrived together.
            let ts = now_ns();
            tx.stage(|st| {
                for f in batch.frames() {
                    if f.truncated {
                        // Cut short by its slot (an MTU above the ring's,
                        // or GRO left on): it cannot be forwarded whole.
                        stats.ring_truncated.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    core.handle(ts, side, f.data, st);
                }
            });
        }
        if tx.errors != errors_seen {
            shared
                .send_errors
                .fetch_add(tx.errors - errors_seen, Ordering::Relaxed);
            errors_seen = tx.errors;
        }
        let mut idle = false;
        if got == 0 && !spin.is_zero() {
            // Look again for a while before sleeping: a frame that comes
            // now is taken without a wake-up.
            let t = std::time::Instant::now();
            let ready = |w: &crate::ring::WorkerRings| {
                w.inside.rx.ready() || w.outside.as_ref().is_some_and(|o| o.rx.ready())
            };
            while !ready(w) && t.elapsed() < spin {
                std::hint::spin_loop();
            }
            got = usize::from(ready(w));
        }
        if got == 0 {
            // SAFETY: `fds` is a valid array of its length.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
            if r == 0 {
                idle = true;
                core.idle();
            }
        }
        if (core.publish(idle) || idle) && kernel_read.elapsed() >= Duration::from_millis(500) {
            kernel_read = std::time::Instant::now();
            for (si, sock) in [Some(&w.inside), w.outside.as_ref()]
                .into_iter()
                .enumerate()
            {
                if let Some(Ok(k)) = sock.map(|s| s.stats()) {
                    stats.kernel_packets[si].fetch_add(k.packets, Ordering::Relaxed);
                    stats.kernel_drops[si].fetch_add(k.drops, Ordering::Relaxed);
                    stats.kernel_freeze_q[si].fetch_add(k.freeze_q, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Load a new ruleset off the packet path and swap it in atomically; on
/// failure keep the old one serving. Workers pick the new one up between
/// two packets: a packet is always classified against one whole ruleset.
pub fn reload(shared: &Shared, load: impl FnOnce() -> Result<Ruleset, String>) -> bool {
    let t = std::time::Instant::now();
    take_over(shared, t, load())
}

/// [`reload`], giving up after `limit`: a list path on a stalled network
/// file system must not hold reloads up forever. The load goes on in a
/// thread of its own; until it ends, further reloads are refused (and
/// counted), so a stuck file never piles up threads. A result that comes
/// after the limit is dropped: the next reload reads the files again.
pub fn reload_within(
    shared: &Arc<Shared>,
    limit: Duration,
    load: impl FnOnce() -> Result<Ruleset, String> + Send + 'static,
) -> bool {
    if shared.reload_in_flight.swap(true, Ordering::AcqRel) {
        shared.reloads_failed.fetch_add(1, Ordering::Relaxed);
        shared.last_reload_ok.store(false, Ordering::Relaxed);
        tracing::error!(
            "a previous reload is still reading its files; this one is refused and the previous rules keep serving"
        );
        return false;
    }
    let t = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let flag = shared.clone();
    std::thread::spawn(move || {
        let _ = tx.send(load());
        flag.reload_in_flight.store(false, Ordering::Release);
    });
    match rx.recv_timeout(limit) {
        Ok(res) => take_over(shared, t, res),
        Err(_) => take_over(
            shared,
            t,
            Err(format!(
                "reading the rules took over {:.0} s (is a list path a FIFO or on a stalled file system?)",
                limit.as_secs_f64()
            )),
        ),
    }
}

fn take_over(shared: &Shared, t: std::time::Instant, res: Result<Ruleset, String>) -> bool {
    match res {
        Ok(rs) => {
            shared
                .learned
                .set_cap(rs.meta.profile.max_learned_entries as usize);
            shared
                .residual
                .set_cap(rs.meta.profile.max_residual_entries as usize);
            warn_if_budget_is_thin(&rs, shared.workers.len(), shared.memory);
            // The shared residual blocks name their rules as the new policy
            // numbers them, once, here (each engine renumbers its own).
            // Until a worker takes the new rules, its events may name a
            // shared block's rule by the new number; decisions are not
            // affected (a block carries its own action).
            chokepoint_core::residual::ResidualStore::renumber(
                &*shared.residual,
                &shared.rules.load().renumbering(&rs),
            );
            shared.rules.store(Arc::new(rs));
            *shared.load_seconds.lock().expect("stats") = t.elapsed().as_secs_f64();
            shared.reloads_ok.fetch_add(1, Ordering::Relaxed);
            shared.last_reload_ok.store(true, Ordering::Relaxed);
            shared
                .last_reload_success_unix
                .store(unix_now(), Ordering::Relaxed);
            tracing::info!(seconds = t.elapsed().as_secs_f64(), "rules reloaded");
            true
        }
        Err(e) => {
            shared.reloads_failed.fetch_add(1, Ordering::Relaxed);
            shared.last_reload_ok.store(false, Ordering::Relaxed);
            tracing::error!(error = %e, "reload failed; the previous rules keep serving");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_every_worker() {
        let rules = chokepoint_rules::compile_str(
            "version: 1\nrules: []\n",
            "t.yaml",
            std::path::Path::new("."),
        )
        .unwrap();
        let sh = Shared::new(rules, 2, 0.0);
        for (k, w) in sh.workers.iter().enumerate() {
            let n = k as u64 + 1;
            w.packets[1][Verdict::Reset as usize].store(n, Ordering::Relaxed);
            w.bytes[1][Verdict::Reset as usize].store(100 * n, Ordering::Relaxed);
            w.queue_drops.store(n, Ordering::Relaxed);
            w.flows.store(10 * n, Ordering::Relaxed);
            w.actions.lock().unwrap().injected_rst = n;
            w.engine.lock().unwrap().reassembly_cap_bytes = n;
            w.decisions
                .lock()
                .unwrap()
                .insert((Some(Arc::from("r")), "tls_sni", "reset"), n);
        }
        sh.send_errors.store(7, Ordering::Relaxed);
        let t = sh.totals();
        assert_eq!(t.packets[1][Verdict::Reset as usize], 3);
        assert_eq!(t.bytes[1][Verdict::Reset as usize], 300);
        assert_eq!(t.queue_drops, [1, 2]);
        assert_eq!(t.flows, 30);
        assert_eq!(t.actions.injected_rst, 3);
        assert_eq!(t.engine.reassembly_cap_bytes, 3);
        assert_eq!(t.decisions[&(Some(Arc::from("r")), "tls_sni", "reset")], 3);
        assert_eq!(t.send_errors, 7);
    }

    /// Frames sent nowhere.
    struct Discard;

    impl<'b> Emit<'b> for Discard {
        fn frame(&mut self, _: Side, _: &'b [u8]) {}
        fn owned(&mut self, _: Side, _: Vec<u8>) {}
    }

    /// Two rules on two lists, in `order`.
    fn two_rules(order: [(&str, &str, &str); 2]) -> Ruleset {
        let rules: String = order
            .iter()
            .map(|(name, list, action)| {
                format!("  - {{name: {name}, match: {{list: {list}}}, action: {action}}}\n")
            })
            .collect();
        let y = format!(
            "version: 1\nlists:\n  a: {{format: domains, entries: [a.test]}}\n  b: {{format: domains, entries: [b.test]}}\nrules:\n{rules}"
        );
        chokepoint_rules::compile_str(&y, "t.yaml", std::path::Path::new(".")).unwrap()
    }

    fn dns_query(name: &str, id: u16) -> Vec<u8> {
        use chokepoint_testkit::synth;
        let (src, dst) = ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
        let udp = synth::udp_datagram(src, dst, 40000 + id, 53, &synth::dns_query(id, name, 1));
        synth::ethernet(&synth::ip_packet(src, dst, 17, &udp), &[])
    }

    /// The decisions row of `rule` (DNS, under `action`) says `n`.
    fn assert_decisions(sh: &Shared, rule: &str, action: &str, n: u64) {
        let row = format!(
            "chokepoint_decisions_total{{action=\"{action}\",rule=\"{rule}\",trigger=\"dns_qname\"}} {n}"
        );
        let text = crate::metrics::render(sh);
        assert!(text.lines().any(|l| l == row), "{row} not in\n{text}");
    }

    /// Frames sent, counted by side.
    #[derive(Default)]
    struct Count([u64; 2]);

    impl<'b> Emit<'b> for Count {
        fn frame(&mut self, to: Side, _: &'b [u8]) {
            self.0[to as usize] += 1;
        }
        fn owned(&mut self, to: Side, _: Vec<u8>) {
            self.0[to as usize] += 1;
        }
    }

    fn tcp(c: &str, s: &str, cp: u16, from_client: bool, flags: u8, data: &[u8]) -> Vec<u8> {
        use chokepoint_testkit::synth;
        let (c, s): (std::net::IpAddr, std::net::IpAddr) = (c.parse().unwrap(), s.parse().unwrap());
        let (src, dst, sp, dp) = if from_client {
            (c, s, cp, 443)
        } else {
            (s, c, 443, cp)
        };
        // The SYN takes sequence number 1: data starts at 2.
        let seq = if flags & 0x02 != 0 { 1 } else { 2 };
        let seg = synth::tcp_segment(src, dst, sp, dp, seq, 1, flags, data);
        synth::ethernet(&synth::ip_packet(src, dst, 6, &seg), &[])
    }

    /// The first address `198.18.X.i` whose flow with `other` goes to a
    /// worker other than `not`'s.
    fn on_other_worker(prefix: &str, other: &str, not: usize, client_side: bool) -> String {
        (20..250)
            .map(|i| format!("{prefix}.{i}"))
            .find(|a| {
                let (c, s) = if client_side {
                    (a.as_str(), other)
                } else {
                    (other, a.as_str())
                };
                chokepoint_core::decode::worker_for(
                    LinkType::Ethernet,
                    &tcp(c, s, 1, true, 2, b""),
                    2,
                ) != not
            })
            .unwrap()
    }

    #[test]
    fn the_bridges_workers_share_server_blocks_and_client_throttles() {
        use chokepoint_testkit::synth::{self, HelloShape};
        let y = "version: 1
lists:
  names: {format: domains, entries: [t.me]}
  slow: {format: domains, entries: [slow.example]}
rules:
  - {name: sni, match: {list: names}, action: reset, residual: {seconds: 60, scope: server}}
  - {name: slow, match: {list: slow}, action: {throttle: {kbps: 80, burst_bytes: 10000, scope: client}}}
";
        let rs = chokepoint_rules::compile_str(y, "t.yaml", std::path::Path::new(".")).unwrap();
        let sh = Shared::new(rs, 2, 0.0);
        let mut cores: Vec<_> = (0..2)
            .map(|k| WorkerCore::new(k, &sh, true, (None, Default::default()), [None, None]))
            .collect();
        let mut out = Count::default();
        let mut feed = |ts: u64, side: Side, f: &[u8], out: &mut Count| {
            let w = chokepoint_core::decode::worker_for(LinkType::Ethernet, f, 2);
            cores[w].handle(ts, side, f, out);
        };
        let hello = |name: &str| {
            synth::tls_records(
                &synth::client_hello(Some(name), HelloShape::default(), 1),
                16384,
            )
        };
        // Client A's hello for t.me: reset, and the server is blocked.
        let (a, server) = ("198.18.0.10", "198.18.1.20");
        let wa = chokepoint_core::decode::worker_for(
            LinkType::Ethernet,
            &tcp(a, server, 40000, true, 2, b""),
            2,
        );
        feed(
            1_000,
            Side::Inside,
            &tcp(a, server, 40000, true, 2, b""),
            &mut out,
        );
        feed(
            2_000,
            Side::Inside,
            &tcp(a, server, 40000, true, 0x18, &hello("t.me")),
            &mut out,
        );
        // Client B, on the other worker: its SYN to the server is dropped.
        let b = on_other_worker("198.18.0", server, wa, true);
        let before = out.0[Side::Outside as usize];
        feed(
            3_000,
            Side::Inside,
            &tcp(&b, server, 41000, true, 2, b""),
            &mut out,
        );
        assert_eq!(
            out.0[Side::Outside as usize],
            before,
            "the other worker dropped the SYN of a blocked server's new flow"
        );
        // Client C's two throttled flows, to servers on different workers:
        // one rate for both. 10 s of 2 x 100 frames a second of 1,000 B.
        let c = "198.18.0.30";
        let s1 = "198.18.1.40";
        let w1 = chokepoint_core::decode::worker_for(
            LinkType::Ethernet,
            &tcp(c, s1, 42000, true, 2, b""),
            2,
        );
        // (Not 198.18.1.x: the server blocked above is one of them.)
        let s2 = on_other_worker("198.18.2", c, w1, false);
        for (s, port) in [(s1, 42000), (s2.as_str(), 42001)] {
            feed(
                4_000,
                Side::Inside,
                &tcp(c, s, port, true, 2, b""),
                &mut out,
            );
            feed(
                5_000,
                Side::Inside,
                &tcp(c, s, port, true, 0x18, &hello("slow.example")),
                &mut out,
            );
        }
        let before = out.0[Side::Inside as usize];
        let mut bytes = 0u64;
        let mut per = [0u64; 2];
        for k in 0..1000u64 {
            for (i, (s, port)) in [(s1, 42000), (s2.as_str(), 42001)].into_iter().enumerate() {
                let f = tcp(c, s, port, false, 0x10, &[0; 946]);
                let sent = out.0[Side::Inside as usize];
                feed(10_000_000 + k * 10_000_000, Side::Outside, &f, &mut out);
                if out.0[Side::Inside as usize] > sent {
                    bytes += f.len() as u64;
                    per[i] += f.len() as u64;
                }
            }
        }
        assert!(out.0[Side::Inside as usize] > before);
        let limit = 10_000 + 10 * 10_000 + 1_000;
        assert!(
            bytes <= limit,
            "{bytes} bytes through one client's rate, over {limit}"
        );
        assert!(
            per.iter().all(|&b| b > 0),
            "both flows got some through: {per:?}"
        );
    }

    #[test]
    fn a_budget_split_too_thin_is_told() {
        let mut p = chokepoint_rules::Profile {
            reassembly_memory_budget: 1 << 20,
            ..Default::default()
        };
        // 1 MiB over 2 workers: 16 flows of 32 KiB each, enough.
        assert_eq!(thin_budget(&p, 2, None), None);
        // Over 64 workers: 16 KiB each, not one flow's cap.
        assert_eq!(thin_budget(&p, 64, None), Some((16 << 10, 0)));
        // auto on a 2 GiB machine: 128 MiB, 4,096 flows for one worker.
        p.reassembly_memory_budget = chokepoint_rules::profile::AUTO;
        assert_eq!(thin_budget(&p, 1, Some(2 << 30)), None);
    }

    #[test]
    fn decisions_stay_on_their_rule_when_a_reload_reorders_rules() {
        let first = ("first", "a", "drop");
        let second = ("second", "b", "reset");
        let sh = Shared::new(two_rules([first, second]), 1, 0.0);
        let mut core = WorkerCore::new(0, &sh, true, (None, Default::default()), [None, None]);
        core.handle(1_000, Side::Inside, &dns_query("a.test", 1), &mut Discard);
        core.handle(2_000, Side::Inside, &dns_query("a.test", 2), &mut Discard);
        assert_decisions(&sh, "first", "drop", 2);
        // The same rules in the other order: `second` is now rule 0.
        assert!(reload(&sh, || Ok(two_rules([second, first]))));
        core.reload();
        assert_decisions(&sh, "first", "drop", 2);
        assert_decisions(&sh, "second", "reset", 0);
        // New decisions land on their rule under the new order.
        core.handle(3_000, Side::Inside, &dns_query("b.test", 3), &mut Discard);
        core.handle(4_000, Side::Inside, &dns_query("a.test", 4), &mut Discard);
        assert_decisions(&sh, "first", "drop", 3);
        assert_decisions(&sh, "second", "reset", 1);
        // A rule the policy dropped keeps its past count.
        assert!(reload(&sh, || Ok(two_rules([
            second,
            ("third", "a", "drop")
        ]))));
        core.reload();
        assert_decisions(&sh, "first", "drop", 3);
        assert_decisions(&sh, "third", "drop", 0);
    }
}
