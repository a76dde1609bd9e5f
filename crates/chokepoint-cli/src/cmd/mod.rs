//! One module per subcommand, each with its clap arguments and a `run`.

pub mod bench;
pub mod check;
pub mod collateral;
pub mod compile;
pub mod diff;
pub mod explain;
pub mod export;
pub mod gen;
pub mod keygen;
pub mod lab;
pub mod man;
pub mod probe;
pub mod profile;
pub mod replay;
pub mod run;
pub mod sample;
pub mod scenario;
pub mod stats;

use std::io::Write;

use anyhow::Result;

/// Print to stdout. A reader that went away (`chokepoint … | head`) is no
/// error: the output it wanted it has, so the command stays quiet.
pub fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to stdout"))
        }
        _ => Ok(()),
    }
}

/// `--events-format`: `native` or `eve`.
pub fn parse_event_format(s: &str) -> Result<chokepoint_runtime::eve::EventFormat, String> {
    chokepoint_runtime::eve::EventFormat::parse(s)
        .ok_or_else(|| format!("{s:?}: use native or eve"))
}
