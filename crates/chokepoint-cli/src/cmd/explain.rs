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
    for q in &a.queries {
        let ex = explain(&rs, q);
        if a.json {
            println!("{}", serde_json::to_string(&ex)?);
        } else {
            print!("{}", report::explanation(&ex));
        }
    }
    Ok(())
}
