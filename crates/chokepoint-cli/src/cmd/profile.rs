//! `chokepoint profile show NAME`: the knobs a preset resolves to, so a
//! policy author sees what `profile: {preset: NAME}` means before
//! overriding any of it.

use anyhow::{bail, Result};
use chokepoint_rules::policy::{Preset, Profile};

use super::print_out;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Print a preset's knobs (`default`: the profile without a preset).
    Show {
        /// naive, tspu-2022, tspu-2025, gfw-2025, hardened or default.
        name: String,
        /// One JSON object instead of `key: value` lines.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: Args) -> Result<()> {
    let Sub::Show { name, json } = a.cmd;
    let profile = if name == "default" {
        Profile::default()
    } else {
        match Preset::from_name(&name) {
            Some(p) => p.profile(),
            None => {
                let known: Vec<_> = Preset::ALL.iter().map(|p| p.name()).collect();
                bail!(
                    "unknown preset `{name}` (known: {}, default)",
                    known.join(", ")
                );
            }
        }
    };
    let value = serde_json::to_value(&profile)?;
    if json {
        return print_out(&format!("{}\n", serde_json::to_string_pretty(&value)?));
    }
    let mut out = format!("# profile: {{preset: {name}}}\n");
    if let Some(knobs) = value.as_object() {
        for (key, v) in knobs {
            match v.as_object() {
                // Nested (timeouts): one indented line per field.
                Some(inner) => {
                    out.push_str(&format!("{key}:\n"));
                    for (k, v) in inner {
                        out.push_str(&format!("  {k}: {}\n", plain(v)));
                    }
                }
                None => out.push_str(&format!("{key}: {}\n", plain(v))),
            }
        }
    }
    print_out(&out)
}

/// A value as a policy writes it: words unquoted, lists in brackets.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
