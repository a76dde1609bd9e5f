//! `chokepoint bench`: the whole per-packet path (parse, flow table,
//! extraction, lookup, decision) over a capture held in memory, with N
//! workers sharded as the live runtime shards them, and no I/O.
//!
//! Frames are spread by [`chokepoint_core::decode::shard_key`] (symmetric:
//! both directions of a flow reach one worker). Each worker owns an engine
//! and walks its own contiguous ring of frames; all start together behind a
//! barrier and the wall time is taken from the barrier to the last worker.
//!
//! Workers hand their frames to the engine one by one ([`Engine::process`]),
//! or in bursts ([`Feed::Batch`]: [`Engine::process_batch`], which
//! prefetches a burst's flow-table and domain-table slots before
//! processing it).

use std::sync::{Arc, Barrier};
use std::time::Instant;

use chokepoint_core::decode::worker_for;
use chokepoint_core::{Engine, LinkType};
use chokepoint_rules::Ruleset;
use serde::Serialize;

/// Frames of one worker, end to end in one buffer (as in a capture ring).
pub struct Ring {
    bytes: Vec<u8>,
    spans: Vec<(u32, u32, LinkType, u64)>,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            bytes: Vec::new(),
            spans: Vec::new(),
        }
    }
    fn push(&mut self, link: LinkType, ts: u64, f: &[u8]) {
        let a = self.bytes.len() as u32;
        self.bytes.extend_from_slice(f);
        self.spans.push((a, self.bytes.len() as u32, link, ts));
    }
    /// Frames in the ring.
    pub fn packets(&self) -> usize {
        self.spans.len()
    }
    /// Bytes in the ring.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// How workers hand frames to their engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feed {
    /// [`Engine::process_batch`] over [`FEED_CHUNK`] frames at a time.
    Batch,
    /// [`Engine::process`] per frame.
    OneByOne,
}

/// Frames a worker hands to [`Engine::process_batch`] per call (the engine
/// prefetches within its own bursts of `chokepoint_core::engine::BURST`).
pub const FEED_CHUNK: usize = 256;

/// A capture in memory: (link, timestamp, frame).
pub type Frames = Vec<(LinkType, u64, Vec<u8>)>;

/// Spread frames over `n` rings by flow hash.
pub fn shard(frames: &Frames, n: usize) -> Vec<Ring> {
    let mut rings: Vec<Ring> = (0..n.max(1)).map(|_| Ring::new()).collect();
    for (link, ts, f) in frames {
        let w = worker_for(*link, f, rings.len());
        rings[w].push(*link, *ts, f);
    }
    rings
}

#[derive(Clone, Debug, Serialize)]
/// What one worker did in a run.
pub struct WorkerResult {
    /// Packets processed.
    pub packets: u64,
    /// Bytes processed.
    pub bytes: u64,
    /// Flows created.
    pub flows_created: u64,
    /// Flows evicted from a full table.
    pub flows_evicted: u64,
    /// Its own time.
    pub seconds: f64,
    /// Packets per second.
    pub packets_per_sec: f64,
    /// Nanoseconds per packet.
    pub ns_per_packet: f64,
    /// Flows in the table at the end, and the table's memory.
    pub flows_held: usize,
    /// Memory of the flow table.
    pub flow_table_bytes: usize,
    /// Capacity of the flow table.
    pub flow_table_capacity: usize,
}

#[derive(Clone, Debug, Serialize)]
/// One run with a number of workers.
pub struct RunResult {
    /// Workers (threads).
    pub workers: usize,
    /// Packets processed.
    pub packets: u64,
    /// Bytes processed.
    pub bytes: u64,
    /// Wall time from the start barrier to the last worker.
    pub wall_seconds: f64,
    /// Packets per second.
    pub packets_per_sec: f64,
    /// Throughput in Gbit/s of frame bytes.
    pub gbit_per_sec: f64,
    /// Nanoseconds per packet.
    pub ns_per_packet: f64,
    /// Flows created per second.
    pub new_flows_per_sec: f64,
    /// Each worker.
    pub per_worker: Vec<WorkerResult>,
}

/// Run `passes` passes over the rings, one thread per ring, frames handed
/// over as `feed` says.
pub fn run(rules: &Arc<Ruleset>, rings: &[Ring], passes: u32, feed: Feed) -> RunResult {
    let barrier = Barrier::new(rings.len());
    let started = std::sync::Mutex::new(None::<Instant>);
    // The workers share their dynamic lists, as a bridge's do.
    let learned = Arc::new(crate::learned::LearnedTable::new(
        rules.meta.profile.max_learned_entries as usize,
    ));
    let results: Vec<(WorkerResult, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = rings
            .iter()
            .map(|ring| {
                let rules = rules.clone();
                let barrier = &barrier;
                let started = &started;
                let learned = learned.clone();
                s.spawn(move || {
                    let mut e = Engine::sharing(rules, crate::machine::share(rings.len()));
                    e.set_learn_store(learned);
                    barrier.wait();
                    let t0 = Instant::now();
                    started.lock().expect("lock").get_or_insert(t0);
                    // Later passes replay the same flows just after the
                    // capture ends, so they are still in the table.
                    let span = match (ring.spans.first(), ring.spans.last()) {
                        (Some(a), Some(b)) => b.3.saturating_sub(a.3) + 1_000_000,
                        _ => 0,
                    };
                    let mut burst: Vec<(u64, LinkType, &[u8])> = Vec::with_capacity(FEED_CHUNK);
                    let mut out = vec![chokepoint_core::Decision::PASS; FEED_CHUNK];
                    for pass in 0..passes {
                        let shift = u64::from(pass) * span;
                        let frame = |&(a, b, link, ts): &(u32, u32, LinkType, u64)| {
                            (ts + shift, link, &ring.bytes[a as usize..b as usize])
                        };
                        match feed {
                            Feed::OneByOne => {
                                for (ts, link, f) in ring.spans.iter().map(frame) {
                                    std::hint::black_box(e.process(ts, link, f));
                                }
                            }
                            Feed::Batch => {
                                for chunk in ring.spans.chunks(FEED_CHUNK) {
                                    burst.clear();
                                    burst.extend(chunk.iter().map(frame));
                                    e.process_batch(&burst, &mut out, |_, ev| {
                                        std::hint::black_box(ev);
                                    });
                                    std::hint::black_box(&out);
                                }
                            }
                        }
                    }
                    let secs = t0.elapsed().as_secs_f64();
                    let fs = e.flows().stats;
                    let packets = e.counters.packets;
                    (
                        WorkerResult {
                            packets,
                            bytes: e.counters.bytes,
                            flows_created: fs.created,
                            flows_evicted: fs.evicted,
                            seconds: secs,
                            packets_per_sec: packets as f64 / secs.max(1e-9),
                            ns_per_packet: secs * 1e9 / (packets.max(1) as f64),
                            flows_held: e.flows().len(),
                            flow_table_bytes: e.flows().memory_bytes(),
                            flow_table_capacity: e.flows().capacity(),
                        },
                        Instant::now(),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let t0 = started
        .into_inner()
        .expect("lock")
        .unwrap_or_else(Instant::now);
    let end = results.iter().map(|r| r.1).max().unwrap_or(t0);
    let wall = end.duration_since(t0).as_secs_f64().max(1e-9);
    let per_worker: Vec<WorkerResult> = results.into_iter().map(|r| r.0).collect();
    let packets: u64 = per_worker.iter().map(|w| w.packets).sum();
    let bytes: u64 = per_worker.iter().map(|w| w.bytes).sum();
    let flows: u64 = per_worker.iter().map(|w| w.flows_created).sum();
    RunResult {
        workers: rings.len(),
        packets,
        bytes,
        wall_seconds: wall,
        packets_per_sec: packets as f64 / wall,
        gbit_per_sec: bytes as f64 * 8.0 / wall / 1e9,
        ns_per_packet: wall * 1e9 / packets.max(1) as f64,
        new_flows_per_sec: flows as f64 / wall,
        per_worker,
    }
}

/// A report over 1..=N workers.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Frames in the capture.
    pub packets_in_capture: usize,
    /// Bytes of those frames.
    pub bytes_in_capture: usize,
    /// Passes over the capture per run.
    pub passes: u32,
    /// How frames were handed to the engines.
    pub feed: Feed,
    /// Size of the artifact.
    pub artifact_bytes: usize,
    /// Memory the loaded ruleset holds.
    pub ruleset_memory_bytes: usize,
    /// One run per worker count.
    pub runs: Vec<RunResult>,
    /// Throughput with N workers over N × throughput with one.
    pub scaling_efficiency: Option<f64>,
}

/// Run with 1, 2, ... `max_workers` workers and report each, frames fed
/// as `feed` says.
pub fn report(
    rules: &Arc<Ruleset>,
    frames: &Frames,
    max_workers: usize,
    passes: u32,
    scaling: bool,
    feed: Feed,
) -> Report {
    let counts: Vec<usize> = if scaling {
        (1..=max_workers.max(1)).collect()
    } else {
        vec![max_workers.max(1)]
    };
    let runs: Vec<RunResult> = counts
        .iter()
        .map(|&n| run(rules, &shard(frames, n), passes, feed))
        .collect();
    let scaling_efficiency = match (runs.first(), runs.last()) {
        (Some(a), Some(b)) if runs.len() > 1 => {
            Some(b.packets_per_sec / (a.packets_per_sec * b.workers as f64))
        }
        _ => None,
    };
    Report {
        packets_in_capture: frames.len(),
        bytes_in_capture: frames.iter().map(|f| f.2.len()).sum(),
        passes,
        feed,
        artifact_bytes: chokepoint_rules::artifact::to_bytes(rules).len(),
        ruleset_memory_bytes: rules.memory_bytes(),
        runs,
        scaling_efficiency,
    }
}

/// The report as a table.
pub fn report_text(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "capture   {} packets, {} bytes (mean frame {:.0} B), {} pass(es), {}",
        r.packets_in_capture,
        r.bytes_in_capture,
        r.bytes_in_capture as f64 / r.packets_in_capture.max(1) as f64,
        r.passes,
        match r.feed {
            Feed::Batch => "in bursts",
            Feed::OneByOne => "one frame at a time",
        }
    );
    let _ = writeln!(
        o,
        "rules     artifact {} bytes, {} bytes of lookup tables in memory",
        r.artifact_bytes, r.ruleset_memory_bytes
    );
    let _ = writeln!(o, "\nworkers   packets/s     Gbit/s  ns/packet  new flows/s   flows held  flow table    evicted");
    for run in &r.runs {
        let held: usize = run.per_worker.iter().map(|w| w.flows_held).sum();
        let mem: usize = run.per_worker.iter().map(|w| w.flow_table_bytes).sum();
        let evicted: u64 = run.per_worker.iter().map(|w| w.flows_evicted).sum();
        let _ = writeln!(
            o,
            "{:>7} {:>11.0} {:>10.2} {:>10.1} {:>12.0} {:>12} {:>9.1} MiB {:>10}",
            run.workers,
            run.packets_per_sec,
            run.gbit_per_sec,
            run.ns_per_packet,
            run.new_flows_per_sec,
            held,
            mem as f64 / (1u64 << 20) as f64,
            evicted
        );
        if run.workers > 1 {
            for (i, w) in run.per_worker.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "   w{i:<3} {:>11.0} {:>10} {:>10.1} {:>12.0} {:>12}",
                    w.packets_per_sec,
                    "",
                    w.ns_per_packet,
                    w.flows_created as f64 / w.seconds.max(1e-9),
                    w.flows_held
                );
            }
        }
    }
    if let Some(e) = r.scaling_efficiency {
        let n = r.runs.last().map_or(1, |x| x.workers);
        let _ = writeln!(
            o,
            "\nscaling   1 → {n} workers: {:.2}× ({:.0}% of linear)",
            e * n as f64,
            e * 100.0
        );
    }
    o
}

/// Load a capture into memory.
pub fn load(path: &std::path::Path) -> Result<Frames, crate::capture::CaptureError> {
    let mut frames = Vec::new();
    crate::capture::read(path, |r| frames.push((r.link, r.ts, r.data.to_vec())))?;
    Ok(frames)
}
