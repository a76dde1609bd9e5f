//! `chokepoint gen`: a synthetic capture (or blocklist), deterministic for
//! a seed.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chokepoint_rules::outfile::{self, Inputs, Replacement};

#[derive(clap::Args)]
pub struct Args {
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
    /// Seed of the generator: the same seed and options, the same capture.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write pcapng (nanosecond timestamps) instead of pcap.
    #[arg(long)]
    pcapng: bool,
    /// Also write the names carried, one JSON line each (the oracle).
    #[arg(long)]
    truth: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    match a.domains {
        Some(n) => write_domains(&a, n),
        None => write_capture(&a),
    }
}

/// The file `--names` reads, which no output may overwrite; the outputs
/// checked against it and each other.
fn inputs(a: &Args) -> Result<Inputs> {
    let mut inputs = Inputs::new();
    if let Some(n) = &a.names {
        inputs.add(n);
    }
    let outputs: Vec<&Path> = std::iter::once(a.output.as_path())
        .chain(a.truth.as_deref())
        .collect();
    inputs.check_outputs(&outputs)?;
    Ok(inputs)
}

fn write_domains(a: &Args, n: usize) -> Result<()> {
    let names = chokepoint_testkit::gen::domain_list(n, a.seed);
    outfile::replace_with(&a.output, &inputs(a)?, (names.join("\n") + "\n").as_bytes())?;
    println!("wrote {} ({} domains)", a.output.display(), names.len());
    Ok(())
}

fn write_capture(a: &Args) -> Result<()> {
    let listed = match &a.names {
        Some(p) => read_names(p)?,
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
    let inputs = inputs(a)?;
    let (frames, truth) = chokepoint_testkit::gen::generate(&spec);
    let mut out = Replacement::create(&a.output, &inputs)?;
    chokepoint_testkit::gen::write(&mut out, &frames, a.pcapng)?;
    out.commit()?;
    if let Some(t) = &a.truth {
        let mut w = Replacement::create(t, &inputs)?;
        for x in &truth {
            let line = serde_json::json!({
                "trigger": x.trigger, "name": x.name,
                "src": x.src.to_string(), "dst": x.dst.to_string(),
                "sport": x.sport, "dport": x.dport,
            });
            writeln!(w, "{line}")?;
        }
        w.commit()?;
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
    Ok(())
}

/// A domains file's names, without comments and wildcard prefixes.
fn read_names(p: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(text
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
        .collect())
}
