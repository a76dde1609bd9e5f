//! `chokepoint`: the command-line front end.

mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use chokepoint_rules::{artifact, compile_default, compile_file, explain, Ruleset};

#[derive(Parser)]
#[command(
    name = "chokepoint",
    version,
    about = "ISP-side domain/IP blocklist enforcement engine"
)]
struct Cli {
    /// Log as JSON lines instead of text (level from RUST_LOG, default warn).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile a policy and its lists into one validated artifact.
    Compile {
        /// Policy YAML; the bundled default (April 2018 Telegram block) if omitted.
        policy: Option<PathBuf>,
        /// Where to write the artifact; without it the policy is only checked.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Print the statistics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Say what the policy does with domains, IPs or URLs, and why.
    Explain {
        #[command(flatten)]
        source: RulesetSource,
        /// One JSON object per query, one per line.
        #[arg(long)]
        json: bool,
        /// Domains (`t.me`), addresses (`149.154.167.99`) or URLs.
        #[arg(required = true)]
        queries: Vec<String>,
    },
    /// Run a pcap/pcapng capture through the packet core and summarise.
    Replay {
        /// The capture (pcap or pcapng, told apart by magic number).
        capture: PathBuf,
        #[command(flatten)]
        source: RulesetSource,
        /// Write one JSON line per decision to this file (`-` for stdout).
        #[arg(long)]
        events: Option<PathBuf>,
        /// Write the frames that would pass, plus injected resets, forged DNS
        /// answers and redirects, as pcap.
        #[arg(long)]
        pass_out: Option<PathBuf>,
        /// Write the frames that would be dropped, as pcap.
        #[arg(long)]
        drop_out: Option<PathBuf>,
    },
    /// Generate a synthetic capture (deterministic for a seed).
    Gen(GenArgs),
    /// Enforce live: an inline layer-2 bridge between two interfaces, or a tap.
    Run(RunArgs),
    /// Measure the per-packet path in memory with N sharded workers.
    Bench(BenchArgs),
    /// Write the bundled sample capture (April 2018 traffic) to a file.
    Sample { output: PathBuf },
    /// Print an artifact's header, sources, lists and rules.
    Stats {
        artifact: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct GenArgs {
    /// Output capture.
    #[arg(short, long)]
    output: PathBuf,
    /// Number of flows.
    #[arg(long, default_value_t = 1000)]
    flows: u32,
    /// Protocol weights, e.g. `tls=55,quic=25,dns=15,http=5`.
    #[arg(long, default_value = "tls=55,quic=25,dns=15,http=5")]
    mix: chokepoint_testkit::gen::Mix,
    /// Bulk data frame sizes: 64, imix (7:4:1 of 64/594/1518) or 1500.
    #[arg(long, default_value = "imix")]
    sizes: chokepoint_testkit::gen::Sizes,
    /// Bulk data packets per TLS/QUIC/HTTP flow after the handshake.
    #[arg(long, default_value_t = 8)]
    data_packets: u32,
    /// Domains file (one per line, `#` comments) to draw blocked names from.
    #[arg(long)]
    names: Option<PathBuf>,
    /// Share of flows whose name is drawn from --names.
    #[arg(long, default_value_t = 0.1)]
    listed_share: f64,
    /// Share of flows named `x` + a listed name (near misses).
    #[arg(long, default_value_t = 0.0)]
    near_miss_share: f64,
    /// Share of flows over IPv6.
    #[arg(long, default_value_t = 0.2)]
    ipv6_share: f64,
    /// Instead of a capture, write this many generated domains (a blocklist).
    #[arg(long)]
    domains: Option<usize>,
    /// Share of TLS hellos that are ~1.9 KB post-quantum (two segments).
    #[arg(long, default_value_t = 0.5)]
    post_quantum_share: f64,
    /// Share of QUIC hellos cut over two Initial datagrams.
    #[arg(long, default_value_t = 0.5)]
    quic_split_share: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write pcapng (nanosecond timestamps) instead of pcap.
    #[arg(long)]
    pcapng: bool,
    /// Also write the names carried, one JSON line each (the oracle).
    #[arg(long)]
    truth: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
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
    /// Worker threads (frames spread by a symmetric flow hash).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// One JSON line per decision, with the action taken.
    #[arg(long)]
    events: Option<PathBuf>,
    /// Frames queued per worker before drops.
    #[arg(long, default_value_t = 4096)]
    queue: usize,
    /// Serve Prometheus metrics on this address (loopback by default).
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:9900")]
    metrics: Option<std::net::SocketAddr>,
}

#[derive(Args)]
struct BenchArgs {
    /// A capture to load; without it, one is generated (see --flows).
    capture: Option<PathBuf>,
    #[command(flatten)]
    source: RulesetSource,
    /// Most workers; runs 1..=N unless --no-scaling.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    workers: usize,
    #[arg(long)]
    no_scaling: bool,
    /// Passes over the capture (later passes see decided flows).
    #[arg(long, default_value_t = 1)]
    passes: u32,
    /// Flows to generate when no capture is given.
    #[arg(long, default_value_t = 20_000)]
    flows: u32,
    /// Bulk data frame sizes of the generated capture: 64, imix or 1500.
    #[arg(long, default_value = "imix")]
    sizes: chokepoint_testkit::gen::Sizes,
    /// Bulk data packets per generated flow.
    #[arg(long, default_value_t = 32)]
    data_packets: u32,
    /// Instead: N distinct TCP SYN flows (flow-table stress, see max_flows).
    #[arg(long)]
    syn_flows: Option<u32>,
    #[arg(long)]
    json: bool,
}

/// Where the rules come from; the bundled default when neither is given.
#[derive(Args)]
struct RulesetSource {
    /// Compile this policy first.
    #[arg(long, conflicts_with = "artifact")]
    policy: Option<PathBuf>,
    /// Load a compiled artifact.
    #[arg(long)]
    artifact: Option<PathBuf>,
}

impl RulesetSource {
    fn load(&self) -> Result<Ruleset> {
        Ok(match (&self.policy, &self.artifact) {
            (_, Some(a)) => artifact::load(a)?,
            (Some(p), None) => compile_file(p)?,
            (None, None) => compile_default()?,
        })
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Compile {
            policy,
            output,
            json,
        } => {
            let started = Instant::now();
            let rs = match &policy {
                Some(p) => compile_file(p)?,
                None => compile_default()?,
            };
            let written = match &output {
                Some(o) => Some((
                    o.clone(),
                    artifact::save(&rs, o).with_context(|| format!("writing {}", o.display()))?,
                )),
                None => None,
            };
            let elapsed = started.elapsed();
            tracing::info!(policy = %rs.meta.policy.path, ms = elapsed.as_millis() as u64, "compiled");
            if json {
                println!(
                    "{}",
                    report::json(&rs, written.as_ref().map(|w| (w.0.as_path(), w.1)))
                );
            } else {
                print!(
                    "{}",
                    report::text(
                        &rs,
                        written.as_ref().map(|w| (w.0.as_path(), w.1)),
                        Some(elapsed)
                    )
                );
            }
        }
        Cmd::Explain {
            source,
            json,
            queries,
        } => {
            let rs = source.load()?;
            for q in &queries {
                let ex = explain(&rs, q);
                if json {
                    println!("{}", serde_json::to_string(&ex)?);
                } else {
                    print!("{}", report::explanation(&ex));
                }
            }
        }
        Cmd::Replay {
            capture,
            source,
            events,
            pass_out,
            drop_out,
        } => {
            let rules = std::sync::Arc::new(source.load()?);
            let mut file;
            let mut stdout;
            let sink: Option<&mut dyn std::io::Write> = match &events {
                Some(p) if p.as_os_str() == "-" => {
                    stdout = std::io::stdout().lock();
                    Some(&mut stdout)
                }
                Some(p) => {
                    file = std::io::BufWriter::new(
                        std::fs::File::create(p)
                            .with_context(|| format!("creating {}", p.display()))?,
                    );
                    Some(&mut file)
                }
                None => None,
            };
            let started = Instant::now();
            let create = |p: &PathBuf| -> Result<std::io::BufWriter<std::fs::File>> {
                Ok(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                ))
            };
            let mut pass_file = pass_out.as_ref().map(create).transpose()?;
            let mut drop_file = drop_out.as_ref().map(create).transpose()?;
            let outputs = chokepoint_runtime::replay::Outputs {
                events: sink,
                pass: pass_file.as_mut().map(|w| w as &mut dyn std::io::Write),
                drop: drop_file.as_mut().map(|w| w as &mut dyn std::io::Write),
            };
            let (summary, res) =
                chokepoint_runtime::replay::replay(rules.clone(), &capture, outputs);
            let secs = started.elapsed().as_secs_f64();
            let out = chokepoint_runtime::replay::summary_text(&rules, &summary);
            let timing = format!(
                "\ntime      {:.3} s, {:.0} packets/s\n",
                secs,
                summary.counters.packets as f64 / secs.max(1e-9)
            );
            if events.as_ref().is_some_and(|p| p.as_os_str() == "-") {
                eprint!("{out}{timing}");
            } else {
                print!("{out}{timing}");
            }
            res?;
        }
        Cmd::Gen(a) if a.domains.is_some() => {
            let names = chokepoint_testkit::gen::domain_list(a.domains.unwrap_or(0), a.seed);
            std::fs::write(&a.output, names.join("\n") + "\n")
                .with_context(|| format!("writing {}", a.output.display()))?;
            println!("wrote {} ({} domains)", a.output.display(), names.len());
        }
        Cmd::Gen(a) => {
            let listed = match &a.names {
                Some(p) => std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .lines()
                    .map(|l| {
                        l.split('#')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .trim_start_matches("*.")
                            .trim_start_matches('.')
                            .to_string()
                    })
                    .filter(|l| !l.is_empty())
                    .collect(),
                None => Vec::new(),
            };
            let spec = chokepoint_testkit::gen::Spec {
                flows: a.flows,
                mix: a.mix,
                sizes: a.sizes,
                data_packets: a.data_packets,
                listed,
                listed_share: a.listed_share,
                near_miss_share: a.near_miss_share,
                ipv6_share: a.ipv6_share,
                post_quantum_share: a.post_quantum_share,
                quic_split_share: a.quic_split_share,
                seed: a.seed,
                ..Default::default()
            };
            let (frames, truth) = chokepoint_testkit::gen::generate(&spec);
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&a.output)
                    .with_context(|| format!("creating {}", a.output.display()))?,
            );
            chokepoint_testkit::gen::write(&mut out, &frames, a.pcapng)?;
            std::io::Write::flush(&mut out)?;
            if let Some(t) = &a.truth {
                let mut w = std::io::BufWriter::new(std::fs::File::create(t)?);
                for x in &truth {
                    std::io::Write::write_all(
                        &mut w,
                        format!("{}\n", serde_json::json!({"trigger": x.trigger, "name": x.name, "src": x.src.to_string(), "dst": x.dst.to_string(), "sport": x.sport, "dport": x.dport})).as_bytes(),
                    )?;
                }
            }
            let bytes: usize = frames.iter().map(|f| f.1.len()).sum();
            println!(
                "wrote {} ({} flows, {} packets, {} bytes of frames, {} names)",
                a.output.display(),
                a.flows,
                frames.len(),
                bytes,
                truth.len()
            );
        }
        Cmd::Run(a) => run_bridge(a)?,
        Cmd::Bench(a) => {
            let rules = std::sync::Arc::new(a.source.load()?);
            let frames: chokepoint_runtime::bench::Frames = match (&a.capture, a.syn_flows) {
                (Some(p), _) => chokepoint_runtime::bench::load(p)?,
                (None, Some(n)) => chokepoint_testkit::gen::syn_flows(n),
                (None, None) => {
                    let spec = chokepoint_testkit::gen::Spec {
                        flows: a.flows,
                        sizes: a.sizes,
                        data_packets: a.data_packets,
                        ..Default::default()
                    };
                    chokepoint_testkit::gen::generate(&spec)
                        .0
                        .into_iter()
                        .map(|(ts, f)| (chokepoint_core::LinkType::Ethernet, ts, f))
                        .collect()
                }
            };
            let r = chokepoint_runtime::bench::report(
                &rules,
                &frames,
                a.workers,
                a.passes.max(1),
                !a.no_scaling,
            );
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print!("{}", chokepoint_runtime::bench::report_text(&r));
            }
        }
        Cmd::Sample { output } => {
            std::fs::write(&output, chokepoint_testkit::sample::telegram_2018())
                .with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {}", output.display());
        }
        Cmd::Stats {
            artifact: path,
            json,
        } => {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let rs = artifact::from_bytes(&bytes)
                .with_context(|| format!("loading {}", path.display()))?;
            let size = bytes.len() as u64;
            if json {
                println!("{}", report::json(&rs, Some((&path, size))));
            } else {
                print!("{}", report::text(&rs, Some((&path, size)), None));
            }
        }
    }
    Ok(())
}

fn run_bridge(a: RunArgs) -> Result<()> {
    use chokepoint_runtime::bridge::{self, Shared, WorkerStats};
    use chokepoint_runtime::port::{AfPacket, Port};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let started = Instant::now();
    let rules = a.source.load()?;
    let load_seconds = started.elapsed().as_secs_f64();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let timeout = std::time::Duration::from_millis(100);
    let (inside, outside): (Arc<dyn Port>, Option<Arc<dyn Port>>) =
        match (&a.tap, &a.inside, &a.outside) {
            (Some(t), _, _) => (
                Arc::new(AfPacket::open(t, timeout).with_context(|| format!("opening {t}"))?),
                None,
            ),
            (None, Some(i), Some(o)) => (
                Arc::new(AfPacket::open(i, timeout).with_context(|| format!("opening {i}"))?),
                Some(Arc::new(
                    AfPacket::open(o, timeout).with_context(|| format!("opening {o}"))?,
                )),
            ),
            _ => anyhow::bail!("give --inside and --outside, or --tap"),
        };
    let shared = Arc::new(Shared {
        rules: arc_swap::ArcSwap::from_pointee(rules),
        workers: (0..a.workers.max(1))
            .map(|_| Arc::new(WorkerStats::default()))
            .collect(),
        stop: stop.clone(),
        reloads_ok: Default::default(),
        reloads_failed: Default::default(),
        load_seconds: std::sync::Mutex::new(load_seconds),
        send_errors: Default::default(),
    });
    let events: Option<Box<dyn std::io::Write + Send>> = match &a.events {
        Some(p) => Some(Box::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    if let Some(addr) = a.metrics {
        chokepoint_runtime::metrics::serve(shared.clone(), addr)
            .with_context(|| format!("serving metrics on {addr}"))?;
        tracing::info!(%addr, "metrics on /metrics");
    }
    // Hot reload: SIGHUP, or a change of the policy/artifact file.
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
    {
        let (shared, stop, hup) = (shared.clone(), stop.clone(), hup.clone());
        let (policy, artifact) = (a.source.policy.clone(), a.source.artifact.clone());
        let watched = artifact.clone().or(policy.clone());
        std::thread::spawn(move || {
            let mtime = |p: &Option<PathBuf>| {
                p.as_ref()
                    .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            };
            let mut last = mtime(&watched);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(250));
                let now = mtime(&watched);
                let changed = now.is_some() && now != last;
                if hup.swap(false, Ordering::Relaxed) || changed {
                    last = now;
                    let src = RulesetSource {
                        policy: policy.clone(),
                        artifact: artifact.clone(),
                    };
                    bridge::reload(&shared, || src.load().map_err(|e| format!("{e:#}")));
                }
            }
        });
    }
    tracing::info!(
        inside = inside.name(),
        outside = outside.as_ref().map(|o| o.name()),
        workers = a.workers,
        "bridge running"
    );
    let cfg = bridge::Config {
        workers: a.workers,
        forward: a.tap.is_none(),
        events,
        queue: a.queue,
    };
    let res = bridge::run(shared.clone(), inside, outside, cfg);

    stop.store(true, Ordering::Relaxed);
    print!("{}", final_counters(&shared));
    res?;
    Ok(())
}

fn final_counters(shared: &chokepoint_runtime::bridge::Shared) -> String {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering;
    let mut o = String::new();
    let mut pk = [[0u64; chokepoint_core::Verdict::COUNT]; 2];
    let mut drops = 0;
    let mut act = chokepoint_runtime::actions::ActionCounters::default();
    for w in &shared.workers {
        for (side, row) in pk.iter_mut().enumerate() {
            for (v, cell) in row.iter_mut().enumerate() {
                *cell += w.packets[side][v].load(Ordering::Relaxed);
            }
        }
        drops += w.queue_drops.load(Ordering::Relaxed);
        let a = w.actions.lock().expect("stats").clone();
        act.forwarded += a.forwarded;
        act.dropped += a.dropped;
        act.injected_rst += a.injected_rst;
        act.injected_dns += a.injected_dns;
        act.injected_redirect += a.injected_redirect;
        act.throttled += a.throttled;
    }
    let _ = writeln!(o, "stopped");
    for (side, name) in [(0, "inside"), (1, "outside")] {
        for v in chokepoint_core::Verdict::ALL {
            let n = pk[side][v as usize];
            if n > 0 {
                let _ = writeln!(o, "  packets from {name:<8} {:<9} {n}", v.as_str());
            }
        }
    }
    let _ = writeln!(
        o,
        "  forwarded {}, dropped {}, resets {}, dns answers {}, redirects {}, throttled {}, queue drops {}",
        act.forwarded, act.dropped, act.injected_rst, act.injected_dns, act.injected_redirect, act.throttled, drops
    );
    o
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
