//! `chokepoint replay`: a capture through the packet core, summarised.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use chokepoint_rules::outfile::{AppendLog, Named, Replacement};
use chokepoint_runtime::capture::CaptureError;
use chokepoint_runtime::replay;

use super::print_out;
use crate::source::RulesetSource;

#[derive(clap::Args)]
pub struct Args {
    /// The capture (pcap or pcapng, told apart by magic number); `-`
    /// reads it from standard input (streamed, never held whole).
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
    /// The events' format: `native` (chokepoint's keys) or `eve`
    /// (Suricata's EVE JSON, with community_id).
    #[arg(long, default_value = "native", value_parser = super::parse_event_format)]
    events_format: chokepoint_runtime::eve::EventFormat,
    /// Engines to spread the capture over, 1..=256, as the live bridge
    /// spreads flows (by host pair); outputs are merged back into frame
    /// order, identical to one worker's. Default: the machine's cores, or
    /// 1 when the policy keeps state across host pairs (a per-client
    /// throttle, a server- or client-wide residual block), where more
    /// workers would decide as a live bridge with that many does.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
}

pub fn run(a: Args) -> Result<()> {
    let rules = Arc::new(a.source.load()?);
    // Events on stdout push the summary to stderr, so the JSON stays clean.
    let events_on_stdout = a.events.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let events_file = a.events.as_deref().filter(|_| !events_on_stdout);
    // No output may be the capture, the rules' files or another output:
    // checked before any is opened, since opening one may empty it.
    let mut inputs = a.source.inputs(&rules);
    inputs.add(&a.capture);
    let outputs: Vec<&Path> = [events_file, a.pass_out.as_deref(), a.drop_out.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    inputs.check_outputs(&outputs)?;

    let mut file = events_file
        .map(|p| AppendLog::open(p, &inputs))
        .transpose()?;
    let mut stdout = Named::new(std::io::stdout().lock(), "stdout");
    let sink: Option<&mut dyn Write> = match (&mut file, events_on_stdout) {
        (Some(f), _) => Some(f),
        (None, true) => Some(&mut stdout),
        (None, false) => None,
    };
    // The pass and drop captures replace their files only when complete.
    let create = |p: &Path| Replacement::create(p, &inputs);
    let mut pass_file = a.pass_out.as_deref().map(create).transpose()?;
    let mut drop_file = a.drop_out.as_deref().map(create).transpose()?;
    let started = Instant::now();
    let stdin = a.capture.as_os_str() == chokepoint_runtime::capture::STDIN;
    let size = std::fs::metadata(&a.capture).map_or(0, |m| m.len());
    let bar = if stdin {
        crate::progress::spinner("replaying standard input")
    } else {
        crate::progress::bytes(size, &format!("replaying {}", a.capture.display()))
    };
    let mut tick = |read: u64| {
        if let Some(b) = &bar {
            b.set_position(read.min(size));
        }
    };
    let outputs = replay::Outputs {
        events: sink,
        pass: pass_file.as_mut().map(|w| w as &mut dyn Write),
        drop: drop_file.as_mut().map(|w| w as &mut dyn Write),
        progress: Some(&mut tick),
        format: a.events_format,
    };
    let workers = match a.workers {
        // Standard input cannot be mapped: one worker reads it.
        _ if stdin => 1,
        Some(n) => usize::from(n),
        None if replay::shares_state_across_hosts(&rules) => 1,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let (summary, mut res) = replay::replay_with(rules.clone(), &a.capture, outputs, workers);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let secs = started.elapsed().as_secs_f64();
    // Whatever is still buffered must reach its file too, or fail loudly.
    let flushed = match &mut file {
        Some(f) => f.flush(),
        None => stdout.flush(),
    };
    drop(stdout);
    if let (Err(e), Ok(())) = (flushed, &res) {
        res = Err(CaptureError::Output { source: e });
    }
    // A damaged capture still gives complete outputs for the records read,
    // as the summary is; an output that failed to write is not kept.
    let mut committed = Ok(());
    if !matches!(res, Err(CaptureError::Output { .. })) {
        for out in [pass_file.take(), drop_file.take()].into_iter().flatten() {
            committed = committed.and_then(|()| out.commit());
        }
    }
    let out = replay::summary_text(&rules, &summary);
    let timing = format!(
        "\ntime      {:.3} s, {:.0} packets/s, {workers} worker(s)\n",
        secs,
        summary.counters.packets as f64 / secs.max(1e-9)
    );
    if events_on_stdout {
        eprint!("{out}{timing}");
    } else {
        print_out(&format!("{out}{timing}"))?;
    }
    committed?;
    match res {
        // The reader of `--events -` went away (`| head`): it has what it
        // wanted, and the summary went to stderr.
        Err(CaptureError::Output { source })
            if events_on_stdout && source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(())
        }
        r => Ok(r?),
    }
}
