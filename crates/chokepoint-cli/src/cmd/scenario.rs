//! `chokepoint scenario`: a censor's timeline, stage by stage, probed live
//! in a lab or replayed over a capture.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chokepoint_lab::scenario::{self, replay, RunOptions, Scenario};

use super::print_out;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Build a lab, apply each stage by hot reload and probe the targets
    /// after each (needs root). Fails when an outcome differs from the
    /// scenario's `expect`.
    Run(Run),
    /// Replay a capture under each stage's policy: what each stage would
    /// have stopped.
    Replay(Replay),
}

#[derive(clap::Args)]
struct Run {
    /// The scenario file (see scenarios/).
    file: PathBuf,
    /// The lab to build for it (must not exist).
    #[arg(long, default_value = "scenario")]
    name: String,
    /// Leave the lab up afterwards (take it down with `chokepoint lab down --name NAME`).
    #[arg(long)]
    keep: bool,
    /// Engine worker threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// Print JSON (one object for the whole run) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct Replay {
    /// The scenario file.
    file: PathBuf,
    /// A pcap or pcapng capture.
    capture: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    match a.cmd {
        Cmd::Run(r) => run_live(r),
        Cmd::Replay(r) => {
            let stages = replay::replay(&r.file, &r.capture)?;
            if r.json {
                print_out(&format!("{}\n", serde_json::to_string_pretty(&stages)?))
            } else {
                print_out(&replay::table(&stages))
            }
        }
    }
}

fn run_live(r: Run) -> Result<()> {
    let sc = Scenario::load(&r.file)?;
    if !r.json {
        eprintln!(
            "scenario {}: {} ({} stages, {} targets), lab {}",
            sc.name,
            sc.title,
            sc.stages.len(),
            sc.targets.len(),
            r.name
        );
    }
    let opts = RunOptions {
        lab: r.name.clone(),
        keep: r.keep,
        exe: std::env::current_exe().context("finding this program")?,
        workers: r.workers,
    };
    let total = sc.stages.len();
    let mut done = 0;
    let results = scenario::run(&r.file, &opts, |s| {
        done += 1;
        if !r.json {
            eprintln!("  stage {done}/{total} {} {}: probed", s.date, s.title);
        }
    })?;
    let wrong = scenario::mismatches(&results);
    if r.json {
        let v = serde_json::json!({
            "scenario": sc.name,
            "title": sc.title,
            "targets": sc.targets,
            "stages": results,
            "as_expected": wrong.is_empty(),
        });
        print_out(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
    } else {
        print_out(&scenario::table(&sc.targets, &results))?;
        if !wrong.is_empty() {
            print_out("\noutcomes that differ from the scenario's expectations (marked !):\n")?;
            for w in &wrong {
                print_out(&format!("  {w}\n"))?;
            }
        }
    }
    if !wrong.is_empty() {
        bail!(
            "{} outcome(s) differ from the scenario's expectations",
            wrong.len()
        );
    }
    Ok(())
}
