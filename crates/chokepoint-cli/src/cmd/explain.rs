//! `chokepoint explain`: what the policy does with names, addresses, URLs.

use anyhow::Result;
use chokepoint_rules::explain;

use crate::report;
use crate::source::RulesetSource;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: RulesetSource,
    /// One JSON object per query, one per line.
    #[arg(long)]
    json: bool,
    /// Domains (`t.me`), addresses (`149.154.167.99`) or URLs.
    #[arg(required = true)]
    queries: Vec<String>,
}

pub fn run(a: Args) -> Result<()> {
    let rs = a.source.load()?;
    let mut failed = 0usize;
    for q in &a.queries {
        let ex = explain(&rs, q);
        failed += usize::from(ex.error.is_some());
        if a.json {
            println!("{}", serde_json::to_string(&ex)?);
        } else {
            print!("{}", report::explanation(&ex));
        }
    }
    if failed > 0 {
        // Every answer is printed first, so one bad query in a batch hides
        // nothing; the status tells a script that some were not answered.
        use std::io::Write;
        std::io::stdout().flush()?;
        eprintln!(
            "chokepoint: {failed} of {} queries could not be read",
            a.queries.len()
        );
        std::process::exit(2);
    }
    Ok(())
}
