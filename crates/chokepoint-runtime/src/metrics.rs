//! Prometheus and OpenMetrics exposition of a running bridge, served by a
//! small HTTP server of its own.
//!
//! Workers never touch a shared counter: each publishes its own
//! [`WorkerStats`](crate::bridge::WorkerStats), and a scrape sums them
//! ([`Shared::totals`]) into a `prometheus-client` collector that encodes
//! every series. Every label set known in advance (sides × verdicts, every
//! parse problem, every worker, each rule of the policy in force with its
//! triggers and action, ...) is written from 0, so series exist before the
//! first event. Labels are rule names, triggers, verdicts and reasons, never
//! domains or addresses (cardinality stays bounded by the policy).
//! Decisions are counted by rule *name*: a reload that reorders rules leaves
//! each count on the rule that made it.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chokepoint_core::decode::Problem;
use chokepoint_core::Verdict;
use chokepoint_rules::{Protocol, Ruleset, Trigger};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::bridge::{FetchResult, Shared, Totals};

/// What `chokepoint_build_info` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    /// The release.
    pub version: String,
    /// The git revision it was built from (`unknown` when not known).
    pub git_revision: String,
}

impl Default for BuildInfo {
    /// This crate's version; the revision unknown (the binary knows it).
    fn default() -> BuildInfo {
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision: "unknown".to_string(),
        }
    }
}

/// The exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (what `promtool check metrics`
    /// reads); the default.
    Prometheus,
    /// OpenMetrics 1.0 text, for a scraper that asks for it.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text`, else Prometheus text.
    pub fn for_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a)
                if a.to_ascii_lowercase()
                    .contains("application/openmetrics-text") =>
            {
                Format::OpenMetrics
            }
            _ => Format::Prometheus,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The Prometheus text of everything the bridge counts.
pub fn render(shared: &Shared) -> String {
    render_as(shared, &BuildInfo::default(), Format::Prometheus)
}

/// Everything the bridge counts, in `format`.
pub fn render_as(shared: &Shared, build: &BuildInfo, format: Format) -> String {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(Scrape::take(shared, build)));
    let mut out = String::new();
    match format {
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &reg),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &reg),
    }
    .expect("encoding into a String cannot fail");
    out
}

/// One scrape's reading of the bridge, encoded by the registry.
struct Scrape {
    t: Totals,
    rules: Arc<Ruleset>,
    fetches: [u64; FetchResult::ALL.len()],
    load_seconds: f64,
    last_reload_ok: bool,
    last_reload_at: u64,
    build: BuildInfo,
    process: Option<ProcessStats>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

impl Scrape {
    fn take(shared: &Shared, build: &BuildInfo) -> Scrape {
        Scrape {
            t: shared.totals(),
            rules: shared.rules.load_full(),
            fetches: FetchResult::ALL.map(|r| shared.fetches[r as usize].load(Ordering::Relaxed)),
            load_seconds: *shared
                .load_seconds
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            last_reload_ok: shared.last_reload_ok.load(Ordering::Relaxed),
            last_reload_at: shared.last_reload_success_unix.load(Ordering::Relaxed),
            build: build.clone(),
            process: ProcessStats::read(),
        }
    }

    /// Decisions by (rule, trigger, action): every rule in force with each
    /// trigger it applies to (and `residual` when it arms a block) under
    /// its action, and the policy default (rule "") under each name
    /// trigger, from 0; then whatever was counted, past rules included.
    fn decisions(&self) -> std::collections::BTreeMap<(String, &'static str, &'static str), u64> {
        let mut rows = std::collections::BTreeMap::new();
        let meta = &self.rules.meta;
        for r in &meta.rules {
            let v = Verdict::of(&r.action).as_str();
            let residual = r.residual.is_some().then_some(Trigger::Residual);
            for t in r.triggers().chain(residual) {
                rows.insert((r.name.clone(), t.as_str(), v), 0);
            }
        }
        let v = Verdict::of(&meta.default_action).as_str();
        for t in Trigger::NAMES {
            rows.insert((String::new(), t.as_str(), v), 0);
        }
        for ((rule, trigger, verdict), n) in &self.t.decisions {
            // The compiler refuses empty rule names, so "" cannot collide
            // with a rule (a rule may well be called `none`).
            let rule = rule.as_deref().unwrap_or("").to_string();
            *rows.entry((rule, *trigger, *verdict)).or_default() += n;
        }
        rows
    }
}

const SIDES: [&str; 2] = ["inside", "outside"];

/// Rows of a [side][verdict] table, every side and verdict.
fn by_side_verdict(
    a: &[[u64; Verdict::COUNT]; 2],
) -> impl Iterator<Item = ([&'static str; 2], u64)> + '_ {
    (0..2).flat_map(move |si| Verdict::ALL.map(|v| ([SIDES[si], v.as_str()], a[si][v as usize])))
}

/// `name` without its suffix (the encoder adds it back).
fn base<'a>(name: &'a str, suffix: &str) -> &'a str {
    name.strip_suffix(suffix)
        .expect("the metric's name ends with its type's suffix")
}

/// A counter family: one series per row, labels `keys`.
fn counters<'a, const N: usize, V: EncodeCounterValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    keys: [&'a str; N],
    rows: impl IntoIterator<Item = ([&'a str; N], V)>,
) -> fmt::Result {
    let mut m = e.encode_descriptor(base(name, "_total"), help, None, MetricType::Counter)?;
    for (values, v) in rows {
        let labels: [(&str, &str); N] = std::array::from_fn(|i| (keys[i], values[i]));
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, V, u64>(&v, None)?;
    }
    Ok(())
}

/// A counter without labels.
fn counter<V: EncodeCounterValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> fmt::Result {
    e.encode_descriptor(base(name, "_total"), help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, V, u64>(&v, None)
}

/// A gauge without labels.
fn gauge<V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

/// An info metric (value 1) with `labels`.
fn info(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: &impl EncodeLabelSet,
) -> fmt::Result {
    e.encode_descriptor(base(name, "_info"), help, None, MetricType::Info)?
        .encode_info(labels)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let e = &mut e;
        let t = &self.t;
        let meta = &self.rules.meta;
        let format_version = chokepoint_rules::artifact::FORMAT_VERSION.to_string();
        info(
            e,
            "chokepoint_build_info",
            "The running binary: its version, git revision and the artifact format it reads (value 1).",
            &[
                ("version", self.build.version.as_str()),
                ("git_revision", self.build.git_revision.as_str()),
                ("artifact_format", format_version.as_str()),
            ],
        )?;
        counters(
            e,
            "chokepoint_packets_total",
            "Frames received, by the side they came in on and the verdict.",
            ["direction", "verdict"],
            by_side_verdict(&t.packets),
        )?;
        counters(
            e,
            "chokepoint_bytes_total",
            "Bytes received, by side and verdict.",
            ["direction", "verdict"],
            by_side_verdict(&t.bytes),
        )?;
        let decisions = self.decisions();
        counters(
            e,
            "chokepoint_decisions_total",
            "Decisions (per flow, per DNS query), by rule name (\"\": the policy default), trigger and action.",
            ["action", "rule", "trigger"],
            decisions
                .iter()
                .map(|((rule, trigger, action), n)| ([*action, rule.as_str(), *trigger], *n)),
        )?;
        counters(
            e,
            "chokepoint_parse_problems_total",
            "Frames that did not parse fully (still sent to the policy), by reason.",
            ["reason"],
            Problem::ALL.map(|p| ([p.as_str()], t.engine.problems[p as usize])),
        )?;
        counters(
            e,
            "chokepoint_reassembly_cap_hits_total",
            "Reassembly refused data at a per-flow cap.",
            ["cap"],
            [
                (["bytes"], t.engine.reassembly_cap_bytes),
                (["segments"], t.engine.reassembly_cap_segments),
            ],
        )?;
        counters(
            e,
            "chokepoint_reassembly_budget_total",
            "Reassembly under the shared memory budget: data refused, and stale buffers freed (their flows passed uninspected).",
            ["outcome"],
            [
                (["refused"], t.engine.reassembly_budget_refused),
                (["evicted"], t.reassembly_buffers_evicted),
            ],
        )?;
        gauge(
            e,
            "chokepoint_reassembly_bytes_held",
            "Bytes all flows' reassembly buffers hold.",
            t.engine.reassembly_bytes_held,
        )?;
        gauge(
            e,
            "chokepoint_reassembly_budget_bytes",
            "Bytes all flows' reassembly buffers may hold: the profile's reassembly_memory_budget (auto: sized for the machine), over all workers.",
            t.engine.reassembly_budget_bytes,
        )?;
        counters(
            e,
            "chokepoint_fragment_datagrams_total",
            "Fragmented IP datagrams, by outcome.",
            ["outcome"],
            [
                (["reassembled"], t.defrag.datagrams),
                (["timed_out"], t.defrag.timeouts),
                (["evicted"], t.defrag.evictions),
                (["refused"], t.defrag.refused),
            ],
        )?;
        let a = &t.actions;
        counters(
            e,
            "chokepoint_injected_packets_total",
            "Frames injected, by kind.",
            ["kind"],
            [
                (["rst"], a.injected_rst),
                (["dns"], a.injected_dns),
                (["redirect"], a.injected_redirect),
            ],
        )?;
        counters(
            e,
            "chokepoint_action_frames_total",
            "Frames forwarded or dropped by the actions (throttling, freeze and degrade drops included, and also counted apart), or observed on a tap; throttle buckets forgotten at capacity.",
            ["outcome"],
            [
                (["forwarded"], a.forwarded),
                (["dropped"], a.dropped),
                (["observed"], a.observed),
                (["throttled"], a.throttled),
                (["frozen"], a.frozen),
                (["degraded"], a.degraded),
                (["throttle_buckets_evicted"], a.buckets_evicted),
            ],
        )?;
        let workers: Vec<String> = (0..t.kernel.len().max(t.queue_drops.len()))
            .map(|k| k.to_string())
            .collect();
        counters(
            e,
            "chokepoint_worker_queue_drops_total",
            "Frames dropped because a worker's queue was full (socket backend).",
            ["worker"],
            t.queue_drops
                .iter()
                .zip(&workers)
                .map(|(n, k)| ([k.as_str()], *n)),
        )?;
        let per_ring = |f: fn(&crate::bridge::WorkerKernel) -> [u64; 2]| {
            t.kernel.iter().zip(&workers).flat_map(move |(w, k)| {
                let n = f(w);
                [0, 1].map(|si| ([k.as_str(), SIDES[si]], n[si]))
            })
        };
        counters(
            e,
            "chokepoint_kernel_packets_total",
            "Ring backend: frames the kernel offered each worker's socket (PACKET_STATISTICS tp_packets, drops included), by worker and side.",
            ["worker", "direction"],
            per_ring(|w| w.packets),
        )?;
        counters(
            e,
            "chokepoint_kernel_drops_total",
            "Ring backend: frames the kernel dropped because a worker's ring was full (tp_drops), by worker and side.",
            ["worker", "direction"],
            per_ring(|w| w.drops),
        )?;
        counters(
            e,
            "chokepoint_kernel_freeze_queue_total",
            "Ring backend, TPACKET_V3: times a worker's ring froze full (tp_freeze_q_cnt), by worker and side.",
            ["worker", "direction"],
            per_ring(|w| w.freeze_q),
        )?;
        counters(
            e,
            "chokepoint_ring_truncated_total",
            "Ring backend: frames longer than a ring slot (an MTU above the ring's, or GRO on), not forwarded, by worker.",
            ["worker"],
            t.kernel
                .iter()
                .zip(&workers)
                .map(|(w, k)| ([k.as_str()], w.truncated)),
        )?;
        counter(
            e,
            "chokepoint_flows_created_total",
            "Flows opened (the flow tables' new entries).",
            t.flows_created,
        )?;
        counter(
            e,
            "chokepoint_flow_evictions_total",
            "Flows dropped from a full flow table.",
            t.flows_evicted,
        )?;
        counter(
            e,
            "chokepoint_flow_expirations_total",
            "Flows expired after their idle timeout.",
            t.flows_expired,
        )?;
        gauge(e, "chokepoint_flows", "Flows in the flow tables.", t.flows)?;
        gauge(
            e,
            "chokepoint_flows_capacity",
            "Flows the flow tables can hold (max_flows, split over the workers).",
            t.flows_capacity,
        )?;
        counters(
            e,
            "chokepoint_residual_total",
            "Residual blocks, by outcome: armed, hit (a new flow blocked), evicted (table full), expired.",
            ["outcome"],
            [
                (["armed"], t.engine.residual_armed),
                (["hit"], t.engine.residual_hits),
                (["evicted"], t.engine.residual_evicted),
                (["expired"], t.engine.residual_expired),
            ],
        )?;
        counters(
            e,
            "chokepoint_stream_reading_total",
            "How the profile's reading knobs changed the stream: ttl_fake_ignored (segments), urgent_stripped (bytes), overlap_conflict (segments), bad_checksum (segments skipped).",
            ["event"],
            [
                (["ttl_fake_ignored"], t.engine.ttl_fakes_ignored),
                (["urgent_stripped"], t.engine.urgent_bytes_stripped),
                (["overlap_conflict"], t.engine.overlap_conflicts),
                (["bad_checksum"], t.engine.bad_checksums),
            ],
        )?;
        counters(
            e,
            "chokepoint_protocol_flows_total",
            "Flows the protocol classifiers recognised, by protocol (only protocols some rule asks for are classified; TLS, QUIC, HTTP and DNS are counted as decisions).",
            ["protocol"],
            Protocol::ALL
                .iter()
                // The classifiers' protocols from 0; a named one (TLS,
                // QUIC, HTTP, DNS: counted as decisions) once counted.
                .filter(|p| p.bit() & Protocol::NAMED == 0 || t.engine.protocols[p.index()] > 0)
                .map(|p| ([p.as_str()], t.engine.protocols[p.index()])),
        )?;
        let l = &t.learned;
        counters(
            e,
            "chokepoint_learned_total",
            "Dynamic lists of learn actions, by outcome: learned (entries added), refreshed (learnt again), hit (a lookup found an active entry), blocked (flows an IP rule on a dynamic list decided), evicted (table full), expired, unstored (a learn with no table).",
            ["outcome"],
            [
                (["learned"], l.learned),
                (["refreshed"], l.refreshed),
                (["hit"], l.hits),
                (["blocked"], t.engine.learned_hits),
                (["evicted"], l.evicted),
                (["expired"], l.expired),
                (["unstored"], t.engine.learn_unstored),
            ],
        )?;
        gauge(
            e,
            "chokepoint_learned_entries",
            "Entries the dynamic lists hold (all lists together; bounded by max_learned_entries).",
            l.entries,
        )?;
        let ev = &t.events;
        counter(
            e,
            "chokepoint_events_written_total",
            "Event lines the events writer wrote.",
            ev.written,
        )?;
        counters(
            e,
            "chokepoint_events_dropped_total",
            "Events not written, by reason: queue_full (a worker's queue to the writer was full), write_error (in a batch whose write failed), packet_limit (beyond the engine's events per packet).",
            ["reason"],
            [
                (["queue_full"], ev.dropped_full),
                (["write_error"], ev.dropped_write),
                (["packet_limit"], t.engine.events_dropped),
            ],
        )?;
        counter(
            e,
            "chokepoint_events_write_errors_total",
            "Writes of the events file that failed.",
            ev.write_errors,
        )?;
        counters(
            e,
            "chokepoint_reloads_total",
            "Rule reloads, by result.",
            ["result"],
            [(["ok"], t.reloads_ok), (["failed"], t.reloads_failed)],
        )?;
        counters(
            e,
            "chokepoint_artifact_fetches_total",
            "Polls of --artifact-url, by result: updated, not_modified, error (unreachable, HTTP error), refused (signature, hash, validation or rollback).",
            ["result"],
            FetchResult::ALL.map(|r| ([r.as_str()], self.fetches[r as usize])),
        )?;
        counter(
            e,
            "chokepoint_send_errors_total",
            "Frames the ports failed to send.",
            t.send_errors,
        )?;
        let rules = meta.rules.len().to_string();
        info(
            e,
            "chokepoint_artifact_info",
            "The ruleset in force (value 1).",
            &[
                ("format_version", format_version.as_str()),
                ("policy_blake3", meta.policy.blake3.as_str()),
                ("rules", rules.as_str()),
            ],
        )?;
        gauge(
            e,
            "chokepoint_artifact_load_seconds",
            "Time the ruleset in force took to load or compile.",
            self.load_seconds,
        )?;
        gauge(
            e,
            "chokepoint_artifact_created_timestamp_seconds",
            "Creation time of the ruleset in force.",
            meta.created_unix,
        )?;
        gauge(
            e,
            "chokepoint_last_reload_success",
            "Whether the last reload attempt took over (1) or was refused (0); 1 before any.",
            u64::from(self.last_reload_ok),
        )?;
        gauge(
            e,
            "chokepoint_last_reload_success_timestamp_seconds",
            "When rules last took over (a reload, or the start), unix seconds.",
            self.last_reload_at,
        )?;
        if let Some(p) = &self.process {
            counter(
                e,
                "process_cpu_seconds_total",
                "User and system CPU time spent, seconds.",
                p.cpu_seconds,
            )?;
            gauge(
                e,
                "process_resident_memory_bytes",
                "Resident memory, bytes.",
                p.resident_bytes,
            )?;
            gauge(e, "process_open_fds", "Open file descriptors.", p.open_fds)?;
            gauge(
                e,
                "process_start_time_seconds",
                "Start time of the process since the epoch, seconds.",
                p.start_time_seconds,
            )?;
        }
        Ok(())
    }
}

/// The process's own figures, from /proc (as Prometheus's Go client
/// reads them).
#[derive(Clone, Copy, Debug)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: u64,
    open_fds: u64,
    start_time_seconds: f64,
}

impl ProcessStats {
    fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name may hold spaces and parentheses: fields start
        // after the last ')'. Then: state (3), ... utime (14), stime (15),
        // ... starttime (22).
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        // SAFETY: sysconf has no preconditions.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let ticks = u64::try_from(ticks).ok().filter(|&t| t > 0)? as f64;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
        let resident_pages = std::fs::read_to_string("/proc/self/statm")
            .ok()?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()?;
        Some(ProcessStats {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
            resident_bytes: resident_pages * u64::try_from(page).ok()?,
            open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count() as u64,
            start_time_seconds: boot as f64 + field(22)? as f64 / ticks,
        })
    }
}

/// Longest request head read.
const MAX_REQUEST: usize = 8192;
/// Longest a client may take to send its request and read the answer.
const CLIENT_TIME: Duration = Duration::from_secs(5);

/// Serve `GET /metrics` on `addr` until the bridge stops, from one thread
/// with a plain `TcpListener` (scrapes are rare and small): one request
/// per connection (`Connection: close`), its head at most 8 KiB, and 5 s
/// for a client to send it and read the answer. OpenMetrics for a scraper
/// whose `Accept` asks for it, else the Prometheus text format. Any other
/// path is 404, any other method 405.
pub fn serve(
    shared: Arc<Shared>,
    addr: SocketAddr,
    build: BuildInfo,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    serve_listener(shared, TcpListener::bind(addr)?, build)
}

/// [`serve`] on a listener already bound.
pub fn serve_listener(
    shared: Arc<Shared>,
    listener: TcpListener,
    build: BuildInfo,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            while !shared.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(e) = answer(stream, &shared, &build) {
                            tracing::debug!(error = %e, "a metrics request failed");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // Wait for a connection, or look at the stop flag
                        // again after 200 ms.
                        let mut fd = libc::pollfd {
                            fd: listener.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd.
                        unsafe { libc::poll(&mut fd, 1, 200) };
                    }
                    Err(e) => {
                        // Out of descriptors, say: do not spin on it.
                        tracing::warn!(error = %e, "metrics listener: accept failed");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })
}

/// A request's head, as far as `/metrics` cares.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, ...
    pub method: String,
    /// The path, without a query.
    pub path: String,
    /// The `Accept` header, if any.
    pub accept: Option<String>,
}

/// Parse a request head (up to the blank line). `None`: not HTTP/1.x.
pub fn parse_request(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || method.is_empty() {
        return None;
    }
    let accept = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.trim().to_string());
    Some(Request {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or("").to_string(),
        accept,
    })
}

/// Read one request from `stream` within [`CLIENT_TIME`] and answer it.
fn answer(mut stream: TcpStream, shared: &Shared, build: &BuildInfo) -> std::io::Result<()> {
    let deadline = Instant::now() + CLIENT_TIME;
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(CLIENT_TIME))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() >= MAX_REQUEST {
            break false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let req = complete
        .then(|| std::str::from_utf8(&head).ok().and_then(parse_request))
        .flatten();
    let (status, ctype, body) = match req {
        None if !complete => (
            "431 Request Header Fields Too Large",
            "text/plain",
            String::new(),
        ),
        None => ("400 Bad Request", "text/plain", String::new()),
        Some(r) if r.path != "/metrics" => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".into(),
        ),
        Some(r) if r.method != "GET" => ("405 Method Not Allowed", "text/plain", String::new()),
        Some(r) => {
            let format = Format::for_accept(r.accept.as_deref());
            (
                "200 OK",
                format.content_type(),
                render_as(shared, build, format),
            )
        }
    };
    let allow = if status.starts_with("405") {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse_request("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\naccept: application/openmetrics-text;version=1.0.0\r\n\r\n"),
            Some(Request {
                method: "GET".into(),
                path: "/metrics".into(),
                accept: Some("application/openmetrics-text;version=1.0.0".into()),
            })
        );
        assert_eq!(
            parse_request("GET / HTTP/1.0\r\n\r\n").map(|r| (r.path, r.accept)),
            Some(("/".into(), None))
        );
        assert_eq!(parse_request("GET /metrics\r\n\r\n"), None);
        assert_eq!(parse_request("GET /metrics SPDY/3\r\n\r\n"), None);
    }

    #[test]
    fn formats_follow_accept() {
        assert_eq!(Format::for_accept(None), Format::Prometheus);
        assert_eq!(
            Format::for_accept(Some("text/plain;version=0.0.4")),
            Format::Prometheus
        );
        assert_eq!(
            Format::for_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
    }

    #[test]
    fn process_figures_are_read() {
        let p = ProcessStats::read().expect("/proc is there");
        assert!(p.resident_bytes > 0 && p.open_fds > 0, "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            p.start_time_seconds > 1.6e9 && p.start_time_seconds <= now + 2.0,
            "{p:?}"
        );
    }
}
