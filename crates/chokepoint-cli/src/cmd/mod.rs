//! One module per subcommand, each with its clap arguments and a `run`.

pub mod bench;
pub mod compile;
pub mod explain;
pub mod gen;
pub mod replay;
pub mod run;
pub mod sample;
pub mod stats;

use std::path::Path;

use anyhow::{Context, Result};

/// A buffered file created for writing, with its path in the error.
pub fn create(p: &Path) -> Result<std::io::BufWriter<std::fs::File>> {
    Ok(std::io::BufWriter::new(
        std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
    ))
}
