//! `chokepoint sample`: write the bundled April 2018 capture.

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    output: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    std::fs::write(&a.output, chokepoint_testkit::sample::telegram_2018())
        .with_context(|| format!("writing {}", a.output.display()))?;
    println!("wrote {}", a.output.display());
    Ok(())
}
