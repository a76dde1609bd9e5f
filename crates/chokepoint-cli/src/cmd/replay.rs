//! `chokepoint replay`: a capture through the packet core, summarised.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use chokepoint_runtime::replay;

use super::create;
use crate::source::RulesetSource;

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(a: Args) -> Result<()> {
    let rules = Arc::new(a.source.load()?);
    // Events on stdout push the summary to stderr, so the JSON stays clean.
    let events_on_stdout = a.events.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let mut file;
    let mut stdout;
    let sink: Option<&mut dyn Write> = match &a.events {
        Some(_) if events_on_stdout => {
            stdout = std::io::stdout().lock();
            Some(&mut stdout)
        }
        Some(p) => {
            file = create(p)?;
            Some(&mut file)
        }
        None => None,
    };
    let started = Instant::now();
    let mut pass_file = a.pass_out.as_deref().map(create).transpose()?;
    let mut drop_file = a.drop_out.as_deref().map(create).transpose()?;
    let outputs = replay::Outputs {
        events: sink,
        pass: pass_file.as_mut().map(|w| w as &mut dyn Write),
        drop: drop_file.as_mut().map(|w| w as &mut dyn Write),
    };
    let (summary, res) = replay::replay(rules.clone(), &a.capture, outputs);
    let secs = started.elapsed().as_secs_f64();
    let out = replay::summary_text(&rules, &summary);
    let timing = format!(
        "\ntime      {:.3} s, {:.0} packets/s\n",
        secs,
        summary.counters.packets as f64 / secs.max(1e-9)
    );
    if events_on_stdout {
        eprint!("{out}{timing}");
    } else {
        print!("{out}{timing}");
    }
    res?;
    Ok(())
}
