//! `chokepoint collateral`: what else a policy breaks, over a list of
//! names (and their resolutions) the user brings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use chokepoint_rules::collateral;

use super::print_out;
use crate::source::RulesetSource;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: RulesetSource,
    /// Names to check, one per line (`rank,name` CSV such as Tranco's works
    /// too).
    #[arg(long)]
    names: PathBuf,
    /// How names resolve: `name addr...` lines, or zdns / massdns JSON
    /// lines. Names whose addresses fall in blocked prefixes, though no
    /// name rule targets them, are reported per address rule.
    #[arg(long)]
    resolutions: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let rs = a.source.load()?;
    let (names, skipped) = collateral::read_names(&a.names)
        .with_context(|| format!("reading {}", a.names.display()))?;
    let resolutions = match &a.resolutions {
        Some(p) => {
            collateral::read_resolutions(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => BTreeMap::new(),
    };
    let mut report = collateral::analyse(&rs, &names, &resolutions);
    report.names_skipped = skipped;
    if a.json {
        print_out(&format!("{}\n", serde_json::to_string_pretty(&report)?))
    } else {
        print_out(&collateral::text(&report))
    }
}
