//! `chokepoint sample`: write the bundled April 2018 capture.

use std::path::PathBuf;

use anyhow::Result;
use chokepoint_rules::outfile::{self, Inputs};

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the capture (pcap).
    output: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    outfile::replace_with(
        &a.output,
        &Inputs::new(),
        &chokepoint_testkit::sample::telegram_2018(),
    )?;
    println!("wrote {}", a.output.display());
    Ok(())
}
