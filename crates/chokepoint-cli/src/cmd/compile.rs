//! `chokepoint compile`: policy and lists into one validated artifact.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use chokepoint_rules::{artifact, compile_default, compile_file};

use super::print_out;
use crate::report;

#[derive(clap::Args)]
pub struct Args {
    /// Policy YAML; the bundled default (April 2018 Telegram block) if omitted.
    policy: Option<PathBuf>,
    /// Where to write the artifact; without it the policy is only checked.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Print the statistics as JSON.
    #[arg(long)]
    json: bool,
    /// Sign the artifact with this ed25519 private key (PKCS#8, as
    /// `chokepoint keygen` writes it): OUTPUT.sig is written beside it.
    #[arg(long, value_name = "KEY", requires = "output")]
    sign: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let started = Instant::now();
    let what = a
        .policy
        .as_ref()
        .map_or("the bundled default".to_string(), |p| {
            p.display().to_string()
        });
    let bar = crate::progress::spinner(&format!("compiling {what}"));
    // The key is read first: a bad key fails before a long compile.
    let key = a
        .sign
        .as_ref()
        .map(|k| -> Result<_> {
            let bytes = chokepoint_rules::input::read(k)?;
            chokepoint_rules::sign::SigningKey::parse(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", k.display()))
        })
        .transpose()?;
    let rs = match &a.policy {
        Some(p) => compile_file(p),
        None => compile_default(),
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let rs = rs?;
    let written = match &a.output {
        // `save` refuses the policy, its lists and anything not a regular
        // file, and its errors name the file.
        Some(o) => Some((
            o.as_path(),
            match &key {
                Some(k) => artifact::save_signed(&rs, o, k)?,
                None => artifact::save(&rs, o)?,
            },
        )),
        None => None,
    };
    let elapsed = started.elapsed();
    tracing::info!(policy = %rs.meta.policy.path, ms = elapsed.as_millis() as u64, "compiled");
    if a.json {
        print_out(&format!("{}\n", report::json(&rs, written)))
    } else {
        print_out(&report::text(&rs, written, Some(elapsed)))
    }
}
