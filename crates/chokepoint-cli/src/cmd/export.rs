//! `chokepoint export nftables`: a policy's IP rules for the kernel.

use std::path::PathBuf;

use anyhow::Result;
use chokepoint_rules::nftables::{self, Hook};
use chokepoint_rules::outfile::{self, Inputs};

use super::print_out;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    format: Format,
}

#[derive(clap::Subcommand)]
enum Format {
    /// The IP rules as an nftables table (interval sets, one rule per IP
    /// rule in policy order), for `nft -f`.
    Nftables(NftArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum HookArg {
    Forward,
    Input,
    Output,
    Prerouting,
}

#[derive(clap::Args)]
struct NftArgs {
    /// A policy YAML or a compiled artifact; the bundled default if omitted.
    input: Option<PathBuf>,
    /// Write here (whole, atomically) instead of to standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The inet table to (re)place.
    #[arg(long, default_value = "chokepoint")]
    table: String,
    /// The hook of the filter chain: forward for a box on the path.
    #[arg(long, value_enum, default_value = "forward")]
    hook: HookArg,
    /// The chain's priority (filter is 0; lower runs earlier).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Fail (exit 1) when any rule cannot be expressed exactly.
    #[arg(long)]
    strict: bool,
}

pub fn run(a: Args) -> Result<()> {
    let Format::Nftables(a) = a.format;
    anyhow::ensure!(
        !a.table.is_empty()
            && a.table.len() <= 64
            && a.table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && a.table.as_bytes()[0].is_ascii_alphabetic(),
        "--table `{}`: a name of letters, digits, `_` and `-`, starting with a letter",
        a.table
    );
    let rs = crate::source::load_any(a.input.as_deref())?;
    let opt = nftables::Options {
        table: a.table.clone(),
        hook: match a.hook {
            HookArg::Forward => Hook::Forward,
            HookArg::Input => Hook::Input,
            HookArg::Output => Hook::Output,
            HookArg::Prerouting => Hook::Prerouting,
        },
        priority: a.priority,
    };
    let x = nftables::export(&rs, &opt);
    for w in &x.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "{} IP rule(s), {} IPv4 and {} IPv6 set elements",
        x.rules, x.elements.0, x.elements.1
    );
    match &a.output {
        Some(o) => {
            let mut inputs = Inputs::new();
            inputs.add_ruleset(&rs);
            if let Some(i) = &a.input {
                inputs.add(i);
            }
            outfile::replace_with(o, &inputs, x.text.as_bytes())?;
        }
        None => print_out(&x.text)?,
    }
    anyhow::ensure!(
        !a.strict || x.warnings.is_empty(),
        "--strict: {} thing(s) not exported as the policy says",
        x.warnings.len()
    );
    Ok(())
}
