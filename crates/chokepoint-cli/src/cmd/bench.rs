//! `chokepoint bench`: the per-packet path in memory, N sharded workers.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use chokepoint_runtime::bench;

use crate::source::RulesetSource;

#[derive(clap::Args)]
pub struct Args {
    /// A capture to load; without it, one is generated (see --flows).
    capture: Option<PathBuf>,
    #[command(flatten)]
    source: RulesetSource,
    /// Most workers; runs 1..=N unless --no-scaling.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    workers: usize,
    /// Run with --workers workers only, not 1, 2, ... up to it.
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
    /// Hand frames to the engine in bursts (`Engine::process_batch`, which
    /// prefetches a burst's table slots) instead of one at a time
    /// (`Engine::process`). Not the default: it measured slower on this
    /// project's machine (docs/PERFORMANCE.md).
    #[arg(long)]
    burst: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let rules = Arc::new(a.source.load()?);
    let frames = frames(&a)?;
    let feed = if a.burst {
        bench::Feed::Batch
    } else {
        bench::Feed::OneByOne
    };
    let r = bench::report(
        &rules,
        &frames,
        a.workers,
        a.passes.max(1),
        !a.no_scaling,
        feed,
    );
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", bench::report_text(&r));
    }
    Ok(())
}

/// The frames to measure: a capture, SYN flows, or a generated mix.
fn frames(a: &Args) -> Result<bench::Frames> {
    Ok(match (&a.capture, a.syn_flows) {
        (Some(p), _) => bench::load(p)?,
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
    })
}
