//! `chokepoint stats`: an artifact's header, sources, lists and rules.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chokepoint_rules::artifact;

use crate::report;

#[derive(clap::Args)]
pub struct Args {
    /// The artifact to load and describe.
    artifact: PathBuf,
    /// Print the statistics as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let path = &a.artifact;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let rs = artifact::from_bytes(&bytes).with_context(|| format!("loading {}", path.display()))?;
    let size = bytes.len() as u64;
    if a.json {
        println!("{}", report::json(&rs, Some((path, size))));
    } else {
        print!("{}", report::text(&rs, Some((path, size)), None));
    }
    Ok(())
}
