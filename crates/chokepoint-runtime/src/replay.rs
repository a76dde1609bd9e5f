//! Offline replay: every frame of a capture through the core, with a
//! summary and, optionally, one JSON line per decision.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use chokepoint_core::decode::worker_for;
use chokepoint_core::{Counters, Engine, Event, Verdict};
use chokepoint_rules::{Ruleset, Trigger};

use crate::actions::{Actor, Outcome};
use crate::capture::{self, CaptureError};

/// What a replay saw.
#[derive(Debug, Default)]
pub struct Summary {
    /// Packet records read, skipped ones included.
    pub records: u64,
    /// Records the capture reader passed over, by why.
    pub skipped: capture::Skipped,
    /// The engine's counters.
    pub counters: Counters,
    /// Flows created.
    pub flows_created: u64,
    /// Flows expired.
    pub flows_expired: u64,
    /// Flows evicted from a full table.
    pub flows_evicted: u64,
    /// Flow decisions (TLS, QUIC, HTTP, IP) by verdict.
    pub flows_by_verdict: [u64; Verdict::COUNT],
    /// DNS query decisions by verdict.
    pub dns_by_verdict: [u64; Verdict::COUNT],
    /// Decisions by (rule, trigger); rule `None` = no rule matched.
    pub by_rule: HashMap<(Option<chokepoint_rules::RuleId>, Trigger), u64>,
    /// Names of decisions that did not forward the traffic.
    pub blocked_names: HashMap<String, u64>,
    /// Events written.
    pub events: u64,
    /// IP datagrams reassembled from fragments.
    pub fragments_reassembled: u64,
    /// What the IP defragmenter did (timeouts, evictions, refusals).
    pub defrag: chokepoint_core::defrag::DefragStats,
    /// Reassembly buffers freed under memory pressure.
    pub reassembly_buffers_evicted: u64,
    /// What the actions did.
    pub actions: crate::actions::ActionCounters,
    /// What the dynamic lists of `learn` actions did.
    pub learned: crate::learned::LearnedStats,
}

/// Where replay writes: JSON events, and the frames that would pass (with
/// injected resets, forged answers and redirects) or be dropped.
#[derive(Default)]
pub struct Outputs<'a> {
    /// JSON events, one per line.
    pub events: Option<&'a mut dyn Write>,
    /// Frames that pass, with injected ones (pcap).
    pub pass: Option<&'a mut dyn Write>,
    /// Frames that are dropped (pcap).
    pub drop: Option<&'a mut dyn Write>,
    /// Told, every [`PROGRESS_EVERY`] records, about how many bytes of the
    /// capture have been read (record headers counted at 16 bytes).
    pub progress: Option<&'a mut dyn FnMut(u64)>,
    /// The events' format.
    pub format: crate::eve::EventFormat,
}

/// Records between calls of [`Outputs::progress`].
pub const PROGRESS_EVERY: u64 = 16_384;

/// The JSON line for one event: `frame`, `ts`, `src`, `dst`, `sport`,
/// `dport`, `proto`, `trigger`, `name`, `ech`, `grease`, `rule`, `list`,
/// `entry`, `verdict` (what the rule asked for), and from `done`, the
/// outcome of the packet that completed the decision: `action` (what was
/// actually done, see [`Applied`](crate::actions::Applied)) and `injected`
/// (frames sent for it).
pub fn event_json(rs: &Ruleset, e: &Event, done: &Outcome) -> serde_json::Value {
    let mut name = String::new();
    chokepoint_core::dns::escape(e.name.as_bytes(), &mut name);
    let hit = e.hit.map(|h| rs.describe(h));
    let mut v = serde_json::json!({
        "frame": e.packet,
        "ts": format!("{}.{:09}", e.ts / 1_000_000_000, e.ts % 1_000_000_000),
        "src": e.src.to_string(),
        "dst": e.dst.to_string(),
        "sport": e.sport,
        "dport": e.dport,
        "proto": match e.proto { 6 => "tcp", 17 => "udp", _ => "other" },
        "trigger": e.trigger.as_str(),
        "name": name,
        "ech": e.ech,
        "grease": e.grease,
        "rule": e.rule.and_then(|r| rs.meta.rules.get(r.index())).map(|m| m.name.clone()),
        "list": hit.as_ref().map(|h| h.list.clone()),
        "entry": hit.as_ref().map(|h| h.entry.clone()),
        "verdict": e.verdict.as_str(),
        "action": done.applied.as_str(),
        "injected": done.inject.len(),
    });
    // What the profile's wire-reading knobs changed, only where one did:
    // the usual event stays as it was.
    if let Some(o) = v.as_object_mut() {
        // A protocol rule fired: on which protocol (the name alone may
        // not say, and there may be none).
        if let (Trigger::Protocol, Some(p)) = (e.trigger, e.protocol) {
            o.insert("protocol".into(), p.as_str().into());
        }
        if e.fake_ignored {
            o.insert("fake_ignored".into(), true.into());
            let mut fake = String::new();
            chokepoint_core::dns::escape(e.fake_name.as_bytes(), &mut fake);
            o.insert("fake_name".into(), fake.into());
        }
        for (key, set) in [
            ("urgent_stripped", e.urgent_stripped),
            ("overlap_conflict", e.overlap_conflict),
            ("bad_checksum", e.bad_checksum),
        ] {
            if set {
                o.insert(key.into(), true.into());
            }
        }
    }
    v
}

/// [`event_json`]'s line, written straight into `out` (no newline): the
/// same bytes as `serde_json` prints that value (its keys in sorted order,
/// its string escapes), without building a map per event. Replay writes
/// one per decision, so this is most of what events cost
/// (docs/PERFORMANCE.md); a test holds the two equal on real captures.
pub fn write_event_line(rs: &Ruleset, e: &Event, done: &Outcome, out: &mut String) {
    use std::fmt::Write as _;
    let hit = e.hit.map(|h| rs.describe(h));
    let protocol = match (e.trigger, e.protocol) {
        (Trigger::Protocol, Some(p)) => Some(p.as_str()),
        _ => None,
    };
    let _ = write!(out, "{{\"action\":\"{}\"", done.applied.as_str());
    if e.bad_checksum {
        out.push_str(",\"bad_checksum\":true");
    }
    let _ = write!(
        out,
        ",\"dport\":{},\"dst\":\"{}\",\"ech\":{},\"entry\":",
        e.dport, e.dst, e.ech
    );
    json_opt(out, hit.as_ref().map(|h| h.entry.as_str()));
    if e.fake_ignored {
        out.push_str(",\"fake_ignored\":true,\"fake_name\":");
        let mut fake = String::new();
        chokepoint_core::dns::escape(e.fake_name.as_bytes(), &mut fake);
        json_str(out, &fake);
    }
    let _ = write!(
        out,
        ",\"frame\":{},\"grease\":{},\"injected\":{},\"list\":",
        e.packet,
        e.grease,
        done.inject.len()
    );
    json_opt(out, hit.as_ref().map(|h| h.list.as_str()));
    out.push_str(",\"name\":");
    let mut name = String::new();
    chokepoint_core::dns::escape(e.name.as_bytes(), &mut name);
    json_str(out, &name);
    if e.overlap_conflict {
        out.push_str(",\"overlap_conflict\":true");
    }
    let proto = match e.proto {
        6 => "tcp",
        17 => "udp",
        _ => "other",
    };
    let _ = write!(out, ",\"proto\":\"{proto}\"");
    if let Some(p) = protocol {
        let _ = write!(out, ",\"protocol\":\"{p}\"");
    }
    out.push_str(",\"rule\":");
    // `get`: an id of a policy before a reload may be past this one's
    // rules (see Ruleset::renumbering).
    json_opt(
        out,
        e.rule
            .and_then(|r| rs.meta.rules.get(r.index()))
            .map(|m| m.name.as_str()),
    );
    let _ = write!(
        out,
        ",\"sport\":{},\"src\":\"{}\",\"trigger\":\"{}\",\"ts\":\"{}.{:09}\"",
        e.sport,
        e.src,
        e.trigger.as_str(),
        e.ts / 1_000_000_000,
        e.ts % 1_000_000_000
    );
    if e.urgent_stripped {
        out.push_str(",\"urgent_stripped\":true");
    }
    let _ = write!(out, ",\"verdict\":\"{}\"}}", e.verdict.as_str());
}

/// A JSON string, escaped as `serde_json` escapes it: `"`, `\\` and the
/// control characters; everything else as it is.
fn json_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_opt(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
}

/// Replay a capture with one worker. Events go to `events` as JSON lines.
/// The summary is complete for every record read, also when the capture
/// turns out to be damaged (the error is returned beside it). The first
/// write error of any output is returned too ([`CaptureError::Output`]),
/// so no output is taken for complete when it is not; the summary is still
/// made.
pub fn replay(
    rules: Arc<Ruleset>,
    path: &Path,
    out: Outputs<'_>,
) -> (Summary, Result<(), CaptureError>) {
    replay_with(rules, path, out, 1)
}

/// [`replay`] with `workers` engines, frames spread over them by
/// [`worker_for`] as the live bridge's fanout spreads them, and every
/// output merged back into frame order: events, pass and drop captures are
/// byte for byte those of one worker, and the summary's counters are the
/// workers' sums. (A policy whose state spans host pairs, a per-client
/// throttle or a residual block of a whole server or client, then decides
/// as a live bridge with that many workers would, which may differ from one
/// worker: see [`shares_state_across_hosts`].) A capture that cannot be
/// memory-mapped (a pipe) is replayed by one worker.
pub fn replay_with(
    rules: Arc<Ruleset>,
    path: &Path,
    out: Outputs<'_>,
    workers: usize,
) -> (Summary, Result<(), CaptureError>) {
    let opts = capture::ReadOptions::default();
    let mapped = if workers > 1 {
        match capture::map(path) {
            Ok(m) => m,
            Err(e) => return (Summary::default(), Err(e)),
        }
    } else {
        None
    };
    let Outputs {
        events,
        pass,
        drop,
        progress,
        format,
    } = out;
    let mut sink = Direct {
        // An event is written in many small pieces: gather them here
        // rather than hand each to the writer.
        events: events.map(|w| std::io::BufWriter::with_capacity(1 << 16, w)),
        pass: pass.map(|w| capture::Writer::new(w, capture::Format::PcapNanos)),
        drop: drop.map(|w| capture::Writer::new(w, capture::Format::PcapNanos)),
        err: None,
    };
    let want = Wants {
        frames: sink.pass.is_some() || sink.drop.is_some(),
        events: sink.events.is_some(),
    };
    let mut reader = Reader {
        progress,
        bytes_read: 0,
        seq: 0,
        last_ts: 0,
        records: 0,
    };
    let mut skipped = capture::Skipped::default();
    let (mut s, res) = match &mapped {
        Some(map) => sharded(
            &rules,
            path,
            map,
            workers,
            format,
            want,
            &mut reader,
            &mut skipped,
            &mut sink,
        ),
        None => {
            let mut w = Worker::new(&rules, 1, format, want);
            let res = capture::read_with(path, &opts, &mut skipped, &mut |rec| {
                let seq = reader.next(rec);
                w.frame(seq, rec, &mut sink);
            });
            (w.finish(reader.last_ts), res)
        }
    };
    let mut write_err = sink.err.take();
    let flushed = sink.events.as_mut().map(|w| w.flush());
    for w in [
        flushed,
        sink.pass.map(|p| p.finish().map(|_| ())),
        sink.drop.map(|d| d.finish().map(|_| ())),
    ]
    .into_iter()
    .flatten()
    {
        if let (Err(e), None) = (w, &write_err) {
            write_err = Some(e);
        }
    }
    s.skipped = skipped;
    s.records = reader.records;
    match &res {
        Ok(n) => s.records = *n,
        Err(
            CaptureError::Corrupt { records, .. } | CaptureError::BlockTooLarge { records, .. },
        ) => s.records = *records,
        Err(_) => {}
    }
    let res = match (res, write_err) {
        (Err(e), _) => Err(e),
        (Ok(_), Some(e)) => Err(CaptureError::Output { source: e }),
        (Ok(_), None) => Ok(()),
    };
    (s, res)
}

/// Whether the policy keeps state that spans host pairs (a throttle shared
/// by a client's flows, a residual block of a whole server or client, the
/// dynamic lists of `learn` actions):
/// with several workers a replay keeps such state per worker (its workers
/// read parts of the file in parallel, with no common order to share it
/// in; a live bridge shares it), so it may decide differently from one
/// worker's.
pub fn shares_state_across_hosts(rs: &Ruleset) -> bool {
    rs.meta.rules.iter().any(|r| {
        matches!(r.action, chokepoint_rules::Action::Learn { .. })
            || matches!(
                r.action,
                chokepoint_rules::Action::Throttle {
                    scope: chokepoint_rules::vocab::Scope::Client,
                    ..
                }
            )
            || r.residual
                .is_some_and(|x| chokepoint_core::residual::crosses_host_pairs(x.scope))
    })
}

/// What the outputs need from each frame.
#[derive(Clone, Copy)]
struct Wants {
    frames: bool,
    events: bool,
}

/// The reading side: record numbers, progress, the last timestamp.
struct Reader<'p> {
    progress: Option<&'p mut dyn FnMut(u64)>,
    bytes_read: u64,
    /// Records delivered so far: the engine's packet number of the next.
    seq: u64,
    last_ts: u64,
    records: u64,
}

impl Reader<'_> {
    /// Count a record; returns its packet number (1-based among the
    /// records the engine sees, as one engine numbers them).
    fn next(&mut self, rec: &capture::Record<'_>) -> u64 {
        self.records = rec.index;
        self.last_ts = rec.ts;
        self.bytes_read += rec.data.len() as u64 + 16;
        if rec.index % PROGRESS_EVERY == 0 {
            if let Some(p) = self.progress.as_deref_mut() {
                p(self.bytes_read);
            }
        }
        self.seq += 1;
        self.seq
    }
}

/// Where one frame's outputs go.
trait Sink {
    /// The frame passes (`forward`) or is dropped; `inject` are the frames
    /// sent for it.
    fn frame(&mut self, rec: &capture::Record<'_>, forward: bool, inject: &[Vec<u8>]);
    /// One event line (without its newline).
    fn event(&mut self, line: &dyn std::fmt::Display);
}

/// One worker's outputs, written as they come.
struct Direct<'a> {
    events: Option<std::io::BufWriter<&'a mut dyn Write>>,
    pass: Option<capture::Writer<&'a mut dyn Write>>,
    drop: Option<capture::Writer<&'a mut dyn Write>>,
    /// The first write error.
    err: Option<std::io::Error>,
}

impl Sink for Direct<'_> {
    fn frame(&mut self, rec: &capture::Record<'_>, forward: bool, inject: &[Vec<u8>]) {
        let r = (|| -> std::io::Result<()> {
            match (forward, &mut self.pass, &mut self.drop) {
                (true, Some(p), _) => p.write(rec.link, rec.ts, rec.data)?,
                (false, _, Some(dw)) => dw.write(rec.link, rec.ts, rec.data)?,
                _ => {}
            }
            if let Some(p) = &mut self.pass {
                for f in inject {
                    p.write(rec.link, rec.ts, f)?;
                }
            }
            Ok(())
        })();
        if let (Err(e), None) = (r, &self.err) {
            self.err = Some(e);
        }
    }
    fn event(&mut self, line: &dyn std::fmt::Display) {
        if let (Some(w), None) = (self.events.as_mut(), &self.err) {
            if let Err(e) = writeln!(w, "{line}") {
                self.err = Some(e);
            }
        }
    }
}

/// An engine and an actor, and what they saw.
struct Worker {
    rules: Arc<Ruleset>,
    engine: Engine,
    /// The dynamic lists of `learn` actions: each worker's own, driven by
    /// the capture's timestamps.
    learned: Arc<crate::learned::LearnedTable>,
    actor: Actor,
    s: Summary,
    format: crate::eve::EventFormat,
    want: Wants,
    /// The event line being written (reused from event to event).
    line: String,
}

impl Worker {
    /// One of `workers` (see [`Engine::one_of`]).
    fn new(
        rules: &Arc<Ruleset>,
        workers: usize,
        format: crate::eve::EventFormat,
        want: Wants,
    ) -> Worker {
        let mut engine = Engine::sharing(
            rules.clone(),
            // Not the host's memory: a replay decides the same on any
            // machine (an `auto` budget is then 256 MiB, split).
            chokepoint_core::Share {
                workers,
                memory: None,
            },
        );
        let learned = Arc::new(crate::learned::LearnedTable::new(
            rules.meta.profile.max_learned_entries as usize,
        ));
        engine.set_learn_store(learned.clone());
        Worker {
            rules: rules.clone(),
            engine,
            learned,
            // The actor runs on every frame, outputs or not: events report
            // what it did.
            actor: Actor::default(),
            s: Summary::default(),
            format,
            want,
            line: String::with_capacity(512),
        }
    }

    /// Run one record; `seq` is its packet number in the whole capture.
    fn frame(&mut self, seq: u64, rec: &capture::Record<'_>, sink: &mut dyn Sink) {
        let d = self.engine.process(rec.ts, rec.link, rec.data);
        let o = self.actor.act(
            &self.rules,
            rec.link,
            rec.data,
            rec.ts,
            &d,
            self.engine.events(),
        );
        if self.want.frames {
            sink.frame(rec, o.forward, &o.inject);
        }
        let s = &mut self.s;
        for e in self.engine.events() {
            s.events += 1;
            *s.by_rule.entry((e.rule, e.trigger)).or_default() += 1;
            let v = e.verdict as usize;
            if e.trigger == Trigger::DnsQname {
                s.dns_by_verdict[v] += 1;
            } else {
                s.flows_by_verdict[v] += 1;
            }
            if !e.verdict.forwards() && !e.name.as_bytes().is_empty() {
                *s.blocked_names
                    .entry(String::from_utf8_lossy(e.name.as_bytes()).into_owned())
                    .or_default() += 1;
            }
            if self.want.events {
                // Numbered in the whole capture, not in this engine's share.
                let mut e = *e;
                e.packet = seq;
                self.line.clear();
                self.format
                    .write_line(&self.rules, &e, &o, None, &mut self.line);
                sink.event(&self.line);
            }
        }
    }

    /// The summary's share of this worker, its flows expired at the end.
    fn finish(mut self, last_ts: u64) -> Summary {
        let mut s = std::mem::take(&mut self.s);
        s.actions = self.actor.counters.clone();
        let end = last_ts.saturating_add(3600 * 1_000_000_000);
        self.engine.expire(end);
        self.learned.expire(end);
        s.learned = self.learned.stats();
        s.counters = self.engine.counters.clone();
        let fs = self.engine.flows().stats;
        s.flows_created = fs.created;
        s.flows_expired = fs.expired;
        s.flows_evicted = fs.evicted;
        s.fragments_reassembled = self.engine.defrag_stats().datagrams;
        s.defrag = self.engine.defrag_stats();
        s.reassembly_buffers_evicted = fs.buffers_evicted;
        s
    }
}

impl Summary {
    /// Add another worker's share.
    fn add(&mut self, o: &Summary) {
        self.counters.add(&o.counters);
        self.flows_created += o.flows_created;
        self.flows_expired += o.flows_expired;
        self.flows_evicted += o.flows_evicted;
        for v in 0..Verdict::COUNT {
            self.flows_by_verdict[v] += o.flows_by_verdict[v];
            self.dns_by_verdict[v] += o.dns_by_verdict[v];
        }
        for (k, n) in &o.by_rule {
            *self.by_rule.entry(*k).or_default() += n;
        }
        for (k, n) in &o.blocked_names {
            *self.blocked_names.entry(k.clone()).or_default() += n;
        }
        self.events += o.events;
        self.fragments_reassembled += o.fragments_reassembled;
        self.defrag.add(&o.defrag);
        self.reassembly_buffers_evicted += o.reassembly_buffers_evicted;
        self.actions.add(&o.actions);
        let l = &mut self.learned;
        l.learned += o.learned.learned;
        l.refreshed += o.learned.refreshed;
        l.hits += o.learned.hits;
        l.evicted += o.learned.evicted;
        l.expired += o.learned.expired;
        l.entries += o.learned.entries;
    }
}

/// Records per chunk: the unit the reader hands out and the merge puts
/// back in order.
const CHUNK: usize = 512;
/// Chunks read ahead of the merge.
const IN_FLIGHT: usize = 32;

/// One record for a worker: its place in the chunk and in the capture.
struct Rec<'a> {
    pos: u32,
    seq: u64,
    ts: u64,
    link: chokepoint_core::LinkType,
    data: &'a [u8],
}

enum Job<'a> {
    Chunk(Vec<Rec<'a>>),
    /// The capture's last timestamp: finish.
    End(u64),
}

/// A worker's outputs for its share of one chunk, in its order.
#[derive(Default)]
struct ChunkOut {
    /// (position in the chunk, forwarded) per record, when frames are wanted.
    frames: Vec<(u32, bool)>,
    /// (position, frame) of injected frames.
    inject: Vec<(u32, Vec<u8>)>,
    /// Event lines, and (position, end in `text`) of each.
    text: String,
    events: Vec<(u32, usize)>,
}

/// Collects a worker's outputs for the merge.
struct Collect<'o> {
    out: &'o mut ChunkOut,
    pos: u32,
}

impl Sink for Collect<'_> {
    fn frame(&mut self, _rec: &capture::Record<'_>, forward: bool, inject: &[Vec<u8>]) {
        self.out.frames.push((self.pos, forward));
        for f in inject {
            self.out.inject.push((self.pos, f.clone()));
        }
    }
    fn event(&mut self, line: &dyn std::fmt::Display) {
        use std::fmt::Write as _;
        let _ = writeln!(self.out.text, "{line}");
        self.out.events.push((self.pos, self.out.text.len()));
    }
}

/// Start loading the first bytes of `b` into the cache.
#[inline]
fn prefetch(b: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults and reads nothing into
    // the program, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(b.as_ptr() as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().wrapping_add(64) as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = b;
}

/// Replay a mapped capture over `n` workers (see [`replay_with`]).
#[allow(clippy::too_many_arguments)]
fn sharded<'a>(
    rules: &Arc<Ruleset>,
    path: &Path,
    map: &'a capture::Mapped,
    n: usize,
    format: crate::eve::EventFormat,
    want: Wants,
    reader: &mut Reader<'_>,
    skipped: &mut capture::Skipped,
    sink: &mut Direct<'_>,
) -> (Summary, Result<u64, CaptureError>) {
    use std::sync::mpsc::{channel, sync_channel};
    std::thread::scope(|sc| {
        let mut jobs = Vec::new();
        let mut results = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..n {
            let (jtx, jrx) = sync_channel::<Job<'a>>(2);
            let (rtx, rrx) = channel::<ChunkOut>();
            jobs.push(jtx);
            results.push(rrx);
            let rules = rules.clone();
            handles.push(sc.spawn(move || {
                let mut w = Worker::new(&rules, n, format, want);
                while let Ok(job) = jrx.recv() {
                    match job {
                        Job::Chunk(recs) => {
                            let mut out = ChunkOut::default();
                            for (i, r) in recs.iter().enumerate() {
                                // The reader touched these bytes a while
                                // ago, on another core: ask for them early.
                                if let Some(ahead) = recs.get(i + 4) {
                                    prefetch(ahead.data);
                                }
                                let rec = capture::Record {
                                    index: 0,
                                    ts: r.ts,
                                    link: r.link,
                                    data: r.data,
                                    orig_len: r.data.len() as u32,
                                };
                                let mut c = Collect {
                                    out: &mut out,
                                    pos: r.pos,
                                };
                                w.frame(r.seq, &rec, &mut c);
                            }
                            if rtx.send(out).is_err() {
                                break;
                            }
                        }
                        Job::End(last_ts) => return w.finish(last_ts),
                    }
                }
                w.finish(0)
            }));
        }
        // Chunks handed out and not merged yet: each record's worker and
        // the record itself, in capture order.
        let mut pending: std::collections::VecDeque<Vec<(u16, capture::Record<'a>)>> =
            std::collections::VecDeque::new();
        let mut shares: Vec<Vec<Rec<'a>>> = (0..n).map(|_| Vec::new()).collect();
        let mut order: Vec<(u16, capture::Record<'a>)> = Vec::with_capacity(CHUNK);
        let merge = |pending: &mut std::collections::VecDeque<Vec<(u16, capture::Record<'a>)>>,
                     sink: &mut Direct<'_>| {
            let Some(chunk) = pending.pop_front() else {
                return;
            };
            let outs: Vec<ChunkOut> = results
                .iter()
                .map(|r| r.recv().unwrap_or_default())
                .collect();
            merge_chunk(&chunk, &outs, sink);
            // Every record up to this chunk's last is done with.
            if let Some((_, last)) = chunk.last() {
                map.release_before(map.offset_after(last.data));
            }
        };
        let dispatch = |order: &mut Vec<(u16, capture::Record<'a>)>,
                        shares: &mut Vec<Vec<Rec<'a>>>,
                        pending: &mut std::collections::VecDeque<_>,
                        sink: &mut Direct<'_>| {
            if pending.len() >= IN_FLIGHT {
                merge(pending, sink);
            }
            for (k, share) in shares.iter_mut().enumerate() {
                // A worker that is gone (it panicked) shows when joined.
                let _ = jobs[k].send(Job::Chunk(std::mem::take(share)));
            }
            pending.push_back(std::mem::replace(order, Vec::with_capacity(CHUNK)));
        };
        let p = path.display().to_string();
        let res = capture::read_in_place(&p, map, skipped, &mut |rec| {
            let seq = reader.next(rec);
            let k = worker_for(rec.link, rec.data, n);
            shares[k].push(Rec {
                pos: order.len() as u32,
                seq,
                ts: rec.ts,
                link: rec.link,
                data: rec.data,
            });
            order.push((k as u16, *rec));
            if order.len() == CHUNK {
                dispatch(&mut order, &mut shares, &mut pending, sink);
            }
        });
        if !order.is_empty() {
            dispatch(&mut order, &mut shares, &mut pending, sink);
        }
        while !pending.is_empty() {
            merge(&mut pending, sink);
        }
        for j in &jobs {
            let _ = j.send(Job::End(reader.last_ts));
        }
        drop(jobs);
        let mut s = Summary::default();
        for h in handles {
            match h.join() {
                Ok(part) => s.add(&part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        (s, res)
    })
}

/// Write one chunk's outputs in capture order.
fn merge_chunk(chunk: &[(u16, capture::Record<'_>)], outs: &[ChunkOut], sink: &mut Direct<'_>) {
    let mut at: Vec<(usize, usize, usize, usize)> = vec![(0, 0, 0, 0); outs.len()];
    for (pos, (k, rec)) in chunk.iter().enumerate() {
        let (k, pos) = (usize::from(*k), pos as u32);
        let o = &outs[k];
        let (fi, ii, ei, ti) = &mut at[k];
        if o.frames.get(*fi).is_some_and(|f| f.0 == pos) {
            let forward = o.frames[*fi].1;
            *fi += 1;
            let from = *ii;
            while o.inject.get(*ii).is_some_and(|f| f.0 == pos) {
                *ii += 1;
            }
            let inject: Vec<Vec<u8>> = o.inject[from..*ii].iter().map(|f| f.1.clone()).collect();
            sink.frame(rec, forward, &inject);
        }
        while o.events.get(*ei).is_some_and(|e| e.0 == pos) {
            let end = o.events[*ei].1;
            // Each line was written with its newline; the sink adds one.
            let line = &o.text[*ti..end - 1];
            sink.event(&line);
            *ti = end;
            *ei += 1;
        }
    }
}

/// Which policy ran: its file (as compiled, also when loaded from an
/// artifact) or the bundled default, and the policy's blake3 as
/// `chokepoint stats` prints it, so a summary can be matched to an artifact.
pub fn policy_line(rs: &Ruleset) -> String {
    let p = &rs.meta.policy;
    let name = if p.path == chokepoint_rules::DEFAULT_POLICY_ORIGIN {
        "bundled default"
    } else {
        p.path.as_str()
    };
    format!(
        "policy    {name} (blake3 {})",
        &p.blake3[..16.min(p.blake3.len())]
    )
}

/// The summary as text.
pub fn summary_text(rs: &Ruleset, s: &Summary) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let c = &s.counters;
    let _ = writeln!(o, "{}", policy_line(rs));
    let _ = writeln!(
        o,
        "packets   {} ({} bytes) in {} records; {} not IP",
        c.packets, c.bytes, s.records, c.not_ip
    );
    if s.skipped.undeclared_interface > 0 {
        let _ = writeln!(
            o,
            "skipped   {} records on a pcapng interface no Interface Description Block declared (link type unknown)",
            s.skipped.undeclared_interface
        );
    }
    let _ = writeln!(
        o,
        "flows     {} created, {} evicted at capacity",
        s.flows_created, s.flows_evicted
    );
    let _ = writeln!(
        o,
        "\nby verdict        packets        bytes    flows  dns queries"
    );
    for v in Verdict::ALL {
        let i = v as usize;
        if c.packets_by_verdict[i] + s.flows_by_verdict[i] + s.dns_by_verdict[i] == 0 {
            continue;
        }
        let _ = writeln!(
            o,
            "  {:<10} {:>12} {:>12} {:>8} {:>12}",
            v.as_str(),
            c.packets_by_verdict[i],
            c.bytes_by_verdict[i],
            s.flows_by_verdict[i],
            s.dns_by_verdict[i]
        );
    }
    let _ = writeln!(
        o,
        "  (flows and dns queries count decisions, not packets: one per flow, one per DNS query)"
    );
    let _ = writeln!(
        o,
        "\ndecisions by rule and trigger (dns_qname rows count queries, not packets)"
    );
    let mut rows: Vec<_> = s.by_rule.iter().collect();
    // Ties in rule then trigger order: the same summary from run to run
    // (and from one worker or several).
    rows.sort_by(|a, b| {
        b.1.cmp(a.1)
            .then(a.0 .0.cmp(&b.0 .0))
            .then(a.0 .1.as_str().cmp(b.0 .1.as_str()))
    });
    for ((rule, trig), n) in rows {
        let name = rule.map_or("(no rule)".to_string(), |r| rs.rule(r).name.clone());
        let _ = writeln!(o, "  {:<28} {:<10} {:>8}", name, trig.as_str(), n);
    }
    let problems: Vec<_> = chokepoint_core::decode::Problem::ALL
        .iter()
        .filter(|p| c.problems[**p as usize] > 0)
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(o, "\nparse problems (packets still went to the policy)");
        for p in problems {
            let _ = writeln!(o, "  {:<28} {:>8}", p.as_str(), c.problems[*p as usize]);
        }
    }
    let caps = [
        ("reassembly byte cap hit", c.reassembly_cap_bytes),
        ("reassembly segment cap hit", c.reassembly_cap_segments),
        ("reassembly budget refused", c.reassembly_budget_refused),
        ("reassembly buffers evicted", s.reassembly_buffers_evicted),
        ("ClientHello too large", c.client_hello_too_large),
        ("inspection budget exhausted", c.inspection_budget_exhausted),
        ("QUIC Initials", c.quic_initials),
        ("QUIC decrypt failures", c.quic_decrypt_failures),
        ("DNS queries", c.dns_queries),
        ("residual blocks armed", c.residual_armed),
        ("residual blocks hit", c.residual_hits),
        ("residual blocks evicted", c.residual_evicted),
        ("residual blocks expired", c.residual_expired),
        ("TTL-limited fakes ignored", c.ttl_fakes_ignored),
        ("urgent bytes stripped", c.urgent_bytes_stripped),
        ("overlap conflicts", c.overlap_conflicts),
        ("bad checksums skipped", c.bad_checksums),
        ("servers learnt", c.learned),
        ("learnt without a store", c.learn_unstored),
        ("flows blocked by learnt", c.learned_hits),
        ("learnt entries evicted", s.learned.evicted),
        ("IP datagrams reassembled", s.fragments_reassembled),
        ("IP fragments timed out", s.defrag.timeouts),
        ("IP fragments evicted", s.defrag.evictions),
        ("IP fragments refused", s.defrag.refused),
        ("events dropped", c.events_dropped),
    ];
    let a = &s.actions;
    if a.forwarded + a.dropped > 0 {
        let _ = writeln!(o, "\nactions");
        for (label, n) in [
            ("frames forwarded", a.forwarded),
            ("frames dropped", a.dropped),
            ("TCP resets injected", a.injected_rst),
            ("DNS answers forged", a.injected_dns),
            ("HTTP redirects sent", a.injected_redirect),
            ("dropped by throttling", a.throttled),
            ("dropped by freeze", a.frozen),
            ("dropped by degrade", a.degraded),
            ("throttle buckets evicted", a.buckets_evicted),
            ("not answerable (tunnelled)", a.not_answerable),
        ] {
            let _ = writeln!(o, "  {label:<28} {n:>8}");
        }
    }
    let _ = writeln!(o, "\ninspection");
    for (label, n) in caps {
        let _ = writeln!(o, "  {label:<28} {n:>8}");
    }
    let classified: Vec<_> = chokepoint_rules::Protocol::ALL
        .iter()
        .filter(|p| c.protocols[p.index()] > 0)
        .collect();
    if !classified.is_empty() {
        let _ = writeln!(o, "\nflows classified (protocols some rule asks for)");
        for p in classified {
            let _ = writeln!(o, "  {:<28} {:>8}", p.as_str(), c.protocols[p.index()]);
        }
    }
    if !s.blocked_names.is_empty() {
        let _ = writeln!(o, "\ntop blocked names");
        let mut top: Vec<_> = s.blocked_names.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (name, n) in top.into_iter().take(10) {
            let _ = writeln!(o, "  {name:<40} {n:>8}");
        }
    }
    o
}
