//! `chokepoint run`: enforce live, as an inline bridge or on a tap.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chokepoint_rules::outfile::AppendLog;
use chokepoint_runtime::bridge::{self, Shared, Totals};
use chokepoint_runtime::eve::EventFormat;
use chokepoint_runtime::port::{AfPacket, Port};
use chokepoint_runtime::ring::{self, RingSet};

use crate::source::RulesetSource;

#[derive(clap::Args)]
pub struct Args {
    /// The interface facing the subscribers.
    #[arg(long, required_unless_present = "tap")]
    inside: Option<String>,
    /// The interface facing the Internet.
    #[arg(long, required_unless_present = "tap")]
    outside: Option<String>,
    /// Observe a mirrored link instead: never forward, inject on it.
    #[arg(long, conflicts_with_all = ["inside", "outside"])]
    tap: Option<String>,
    #[command(flatten)]
    source: RulesetSource,
    /// Worker threads (frames spread by a symmetric flow hash), 1..=256.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// One JSON line per decision, with the action taken.
    #[arg(long)]
    events: Option<PathBuf>,
    /// The events' format: `native` (chokepoint's keys) or `eve`
    /// (Suricata's EVE JSON, with community_id and the interface).
    #[arg(long, default_value = "native", value_parser = super::parse_event_format)]
    events_format: EventFormat,
    /// How frames are read and sent: `ring` (the default: a mmap'd
    /// TPACKET_V2 ring per worker and interface, the kernel's fanout
    /// placing each flow, `sendmmsg` batches), `ring-v3` (TPACKET_V3
    /// blocks: fewer wake-ups, up to a millisecond more latency on a quiet
    /// link) or `socket` (one `recv` and one `send` per frame, a receive
    /// thread per interface handing frames to the workers). Without the
    /// flag, a ring that cannot be set up falls back to `socket`.
    #[arg(long, value_enum)]
    capture: Option<Capture>,
    /// Ring backend: microseconds a worker keeps looking at its rings after
    /// the last frame before it sleeps, 0..=10000. A frame arriving
    /// meanwhile is taken without a wake-up, which on a virtual machine
    /// costs tens of microseconds per frame; spinning costs that much CPU
    /// per quiet spell.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    spin_us: u32,
    /// Frames buffered per worker before drops, 16..=262144: ring slots
    /// per interface (`ring`), or queued frames (`socket`, where each
    /// holds its own buffer of up to 64 KiB, so the cap bounds the memory
    /// a stalled worker can pin).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..=262_144))]
    queue: u32,
    /// After opening the interfaces, switch to this user (and its primary
    /// group). Capabilities are dropped either way.
    #[arg(long)]
    user: Option<String>,
    /// Seconds a reload may take to read and compile its files before it is
    /// abandoned (the previous rules keep serving).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    reload_timeout: u32,
    /// Serve Prometheus metrics on this address (loopback by default).
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:9900")]
    metrics: Option<SocketAddr>,
    /// Take the rules from a distribution server: poll this plain
    /// `http://host[:port]/path` for a signed artifact (and PATH.sig).
    /// --artifact, if given, is where the last verified one is kept.
    #[arg(
        long,
        value_name = "URL",
        requires = "trust",
        conflicts_with = "policy"
    )]
    artifact_url: Option<String>,
    /// An ed25519 public key (a file, or 64 hex digits) trusted to sign
    /// artifacts; repeat for several. With it, an artifact is loaded only
    /// when ARTIFACT.sig verifies under one of them.
    #[arg(long, value_name = "PUBKEY")]
    trust: Vec<String>,
    /// Seconds between polls of --artifact-url (SIGHUP polls at once).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    poll_interval: u32,
}

/// The capture backend (`--capture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Capture {
    /// TPACKET_V2 rings, fanout, sendmmsg.
    Ring,
    /// TPACKET_V3 block rings, fanout, sendmmsg.
    RingV3,
    /// One recv and one send per frame.
    Socket,
}

pub fn run(a: Args) -> Result<()> {
    if let (Some(i), Some(o)) = (&a.inside, &a.outside) {
        // One interface on both sides would forward every frame back onto
        // the link it came from: a loop, not a bridge.
        anyhow::ensure!(
            i != o,
            "--inside and --outside name the same interface `{i}`; a bridge needs two"
        );
    }
    let workers = usize::from(a.workers);
    let started = Instant::now();
    let mut source = a.source.clone();
    source.trusted = a
        .trust
        .iter()
        .map(|t| crate::source::public_key(t))
        .collect::<Result<_>>()?;
    anyhow::ensure!(
        source.trusted.is_empty() || source.artifact.is_some() || a.artifact_url.is_some(),
        "--trust applies to artifacts: give --artifact or --artifact-url"
    );
    let (rules, poller) = match &a.artifact_url {
        Some(url) => {
            let mut p = crate::distribute::Poller::new(
                url,
                source.trusted.clone(),
                source.artifact.clone(),
            )?;
            (p.initial()?, Some(p))
        }
        None => (source.load()?, None),
    };
    let inputs = source.inputs(&rules);
    let load_seconds = started.elapsed().as_secs_f64();
    let shared = Arc::new(Shared::new(rules, workers, load_seconds));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, shared.stop.clone())?;
    }
    let ports = open_ports(&a, workers)?;
    let (inside_name, outside_name, capture) = match &ports {
        Opened::Socket(i, o) => (
            i.name().to_string(),
            o.as_ref().map(|o| o.name().to_string()),
            "socket",
        ),
        Opened::Ring(set, v3) => (
            set.workers[0].inside.name().to_string(),
            set.workers[0]
                .outside
                .as_ref()
                .map(|o| o.name().to_string()),
            if *v3 { "ring-v3" } else { "ring" },
        ),
    };
    // Events are appended, and reopened by path on SIGUSR1 (SIGHUP is
    // reload) after logrotate moved the file. A write error does not stop
    // the bridge; the first is kept and fails the exit.
    let mut events_error = None;
    let events: Option<Box<dyn std::io::Write + Send>> = match &a.events {
        Some(p) => {
            inputs.check_outputs(&[p])?;
            let log = AppendLog::open(p, &inputs)?;
            signal_hook::flag::register(signal_hook::consts::SIGUSR1, log.reopen_flag())?;
            events_error = Some(log.first_error());
            Some(Box::new(log))
        }
        None => None,
    };
    // Every privileged open is done: give the rest up. Capabilities are
    // per thread, so this comes before the first thread is spawned (the
    // metrics server, the reload watcher, the workers), which inherit it.
    let d = chokepoint_runtime::privs::drop_privileges(a.user.as_deref())
        .context("dropping privileges")?;
    tracing::info!(
        uid = d.uid,
        gid = d.gid,
        "privileges dropped: no capabilities left"
    );
    if let Some(addr) = a.metrics {
        let build = chokepoint_runtime::metrics::BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision: env!("CHOKEPOINT_GIT_REV").to_string(),
        };
        chokepoint_runtime::metrics::serve(shared.clone(), addr, build)
            .with_context(|| format!("serving metrics on {addr}"))?;
        tracing::info!(%addr, "metrics on /metrics");
    }
    let reload_limit = Duration::from_secs(a.reload_timeout.into());
    match poller {
        Some(p) => {
            let hup = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
            let interval = Duration::from_secs(a.poll_interval.into());
            crate::distribute::spawn(p, shared.clone(), hup, interval, reload_limit);
        }
        None => watch_for_reloads(shared.clone(), source, reload_limit)?,
    }
    // One line on stdout when it starts, whatever the log level: what runs,
    // on which links, under which policy, and where its metrics are.
    println!(
        "{}",
        start_line(
            &inside_name,
            outside_name.as_deref(),
            workers,
            capture,
            &chokepoint_runtime::replay::policy_line(&shared.rules.load()),
            a.metrics,
        )
    );
    let cfg = bridge::Config {
        workers,
        forward: a.tap.is_none(),
        events,
        events_format: a.events_format,
        queue: a.queue as usize,
    };
    let res = match ports {
        Opened::Socket(inside, outside) => bridge::run(shared.clone(), inside, outside, cfg),
        Opened::Ring(set, _) => bridge::run_rings(shared.clone(), set, cfg),
    };

    shared.stop.store(true, Ordering::Relaxed);
    print!("{}", final_counters(&shared.totals()));
    res?;
    match events_error.and_then(|e| e.take()) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// The interfaces, opened for one backend or the other.
enum Opened {
    /// The inside port (the tap, in tap mode) and the outside one, if any.
    Socket(Arc<dyn Port>, Option<Arc<dyn Port>>),
    /// Every worker's rings (and whether they are TPACKET_V3).
    Ring(RingSet, bool),
}

/// Open the interfaces (or the tap) for the chosen backend; without
/// `--capture`, fall back from rings to sockets if rings cannot be had.
fn open_ports(a: &Args, workers: usize) -> Result<Opened> {
    let (inside, outside) = match (&a.tap, &a.inside, &a.outside) {
        (Some(t), _, _) => (t.as_str(), None),
        (None, Some(i), Some(o)) => (i.as_str(), Some(o.as_str())),
        _ => anyhow::bail!("give --inside and --outside, or --tap"),
    };
    let capture = a.capture.unwrap_or(Capture::Ring);
    if capture != Capture::Socket {
        let opts = ring::Options {
            version: if capture == Capture::RingV3 {
                ring::Version::V3
            } else {
                ring::Version::V2
            },
            frames: a.queue as usize,
            spin_us: a.spin_us,
            ..ring::Options::default()
        };
        match RingSet::open(inside, outside, workers, &opts) {
            Ok(set) => return Ok(Opened::Ring(set, capture == Capture::RingV3)),
            Err(e) if a.capture.is_none() => {
                tracing::warn!(error = %e, "no packet ring on these interfaces; falling back to --capture socket");
            }
            Err(e) => return Err(anyhow::Error::new(e).context("opening the packet rings")),
        }
    }
    let timeout = Duration::from_millis(100);
    let open = |name: &str| -> Result<Arc<dyn Port>> {
        Ok(Arc::new(
            AfPacket::open(name, timeout).with_context(|| format!("opening {name}"))?,
        ))
    };
    Ok(Opened::Socket(
        open(inside)?,
        outside.map(open).transpose()?,
    ))
}

/// Hot reload on SIGHUP, or when the policy/artifact file changes: polled
/// from a thread of its own, so loading never stalls the packet path.
fn watch_for_reloads(
    shared: Arc<Shared>,
    source: RulesetSource,
    reload_limit: Duration,
) -> Result<()> {
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
    let watched = source.watched();
    std::thread::spawn(move || {
        let mtime = |p: &Option<PathBuf>| {
            p.as_ref()
                .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        };
        let mut last = mtime(&watched);
        while !shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            let now = mtime(&watched);
            let changed = now.is_some() && now != last;
            if hup.swap(false, Ordering::Relaxed) || changed {
                last = now;
                let source = source.clone();
                bridge::reload_within(&shared, reload_limit, move || {
                    source.load().map_err(|e| format!("{e:#}"))
                });
            }
        }
    });
    Ok(())
}

/// The line `run` prints when it starts.
fn start_line(
    inside: &str,
    outside: Option<&str>,
    workers: usize,
    capture: &str,
    policy: &str,
    metrics: Option<SocketAddr>,
) -> String {
    let links = match outside {
        Some(o) => format!("bridging {inside} (inside) and {o} (outside)"),
        None => format!("watching tap {inside}"),
    };
    let policy = policy.trim_start_matches("policy").trim();
    let metrics = metrics.map_or("no metrics".to_string(), |m| {
        format!("metrics http://{m}/metrics")
    });
    format!("chokepoint run: {links}, {workers} worker(s), policy {policy}, capture {capture}, {metrics}")
}

/// What the bridge did, printed when it stops.
fn final_counters(t: &Totals) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "stopped");
    for (side, name) in [(0, "inside"), (1, "outside")] {
        for v in chokepoint_core::Verdict::ALL {
            let n = t.packets[side][v as usize];
            if n > 0 {
                let _ = writeln!(o, "  packets from {name:<8} {:<9} {n}", v.as_str());
            }
        }
    }
    let a = &t.actions;
    let _ = writeln!(
        o,
        "  forwarded {}, dropped {}, resets {}, dns answers {}, redirects {}, throttled {}, frozen {}, degraded {}, queue drops {}",
        a.forwarded,
        a.dropped,
        a.injected_rst,
        a.injected_dns,
        a.injected_redirect,
        a.throttled,
        a.frozen,
        a.degraded,
        t.queue_drops.iter().sum::<u64>()
    );
    let offered: u64 = t.kernel.iter().map(|k| k.packets[0] + k.packets[1]).sum();
    if offered > 0 {
        let drops: u64 = t.kernel.iter().map(|k| k.drops[0] + k.drops[1]).sum();
        let cut: u64 = t.kernel.iter().map(|k| k.truncated).sum();
        let _ = writeln!(
            o,
            "  rings: {offered} frames offered by the kernel, {drops} dropped with a ring full, {cut} too long for a slot"
        );
    }
    if a.observed > 0 {
        // A tap stops nothing: say how much it would have.
        let _ = writeln!(o, "  observed on the tap (not stopped) {}", a.observed);
    }
    o
}
