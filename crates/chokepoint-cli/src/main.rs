//! `chokepoint`: the command-line front end. Parsing and dispatch only;
//! each subcommand lives in a module of its own under `cmd/`.

mod cmd;
mod distribute;
mod progress;
mod report;
mod source;

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chokepoint",
    version,
    about = "ISP-side domain/IP blocklist enforcement engine"
)]
struct Cli {
    /// Log as JSON lines instead of text (level from RUST_LOG, default warn).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile a policy and its lists into one validated artifact.
    Compile(cmd::compile::Args),
    /// Test a policy or artifact: does it load, and what looks like a
    /// mistake (exit 0 valid, 1 invalid, 2 bad arguments).
    Check(cmd::check::Args),
    /// What changes between two policies or artifacts, per rule and list.
    Diff(cmd::diff::Args),
    /// Make an ed25519 key pair for signing artifacts (compile --sign).
    Keygen(cmd::keygen::Args),
    /// Say what the policy does with domains, IPs or URLs, and why.
    Explain(cmd::explain::Args),
    /// Run a pcap/pcapng capture through the packet core and summarise.
    Replay(cmd::replay::Args),
    /// Generate a synthetic capture (deterministic for a seed).
    Gen(cmd::gen::Args),
    /// Enforce live: an inline layer-2 bridge between two interfaces, or a tap.
    Run(cmd::run::Args),
    /// Write a policy's rules for another enforcer (nftables).
    Export(cmd::export::Args),
    /// Measure the per-packet path in memory with N sharded workers.
    Bench(cmd::bench::Args),
    /// Write the bundled sample capture (April 2018 traffic) to a file.
    Sample(cmd::sample::Args),
    /// Print an artifact's header, sources, lists and rules.
    Stats(cmd::stats::Args),
    /// Show the inspection profile a preset stands for.
    Profile(cmd::profile::Args),
    /// A censored network of namespaces on this machine: up, probe, down.
    Lab(cmd::lab::Args),
    /// A censor's timeline, stage by stage: live in a lab, or over a capture.
    Scenario(cmd::scenario::Args),
    /// What else a policy breaks, over a list of names and their addresses.
    Collateral(cmd::collateral::Args),
    /// Measure URLs as OONI's Web Connectivity does (DNS, TCP, TLS, HTTP),
    /// compared with a control helper's view.
    Probe(cmd::probe::ProbeArgs),
    /// Serve the control measurements `chokepoint probe --helper` asks for.
    ProbeHelper(cmd::probe::HelperArgs),
    /// Write a man page for every command into a directory.
    Man(cmd::man::ManArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cmd::man::CompletionArgs),
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour codes only on a terminal: a log file or journald gets plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn dispatch(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Compile(a) => cmd::compile::run(a),
        Cmd::Check(a) => cmd::check::run(a),
        Cmd::Diff(a) => cmd::diff::run(a),
        Cmd::Keygen(a) => cmd::keygen::run(a),
        Cmd::Explain(a) => cmd::explain::run(a),
        Cmd::Replay(a) => cmd::replay::run(a),
        Cmd::Gen(a) => cmd::gen::run(a),
        Cmd::Run(a) => cmd::run::run(a),
        Cmd::Export(a) => cmd::export::run(a),
        Cmd::Bench(a) => cmd::bench::run(a),
        Cmd::Sample(a) => cmd::sample::run(a),
        Cmd::Stats(a) => cmd::stats::run(a),
        Cmd::Profile(a) => cmd::profile::run(a),
        Cmd::Lab(a) => cmd::lab::run(a),
        Cmd::Scenario(a) => cmd::scenario::run(a),
        Cmd::Collateral(a) => cmd::collateral::run(a),
        Cmd::Probe(a) => cmd::probe::run(a),
        Cmd::ProbeHelper(a) => cmd::probe::run_helper(a),
        Cmd::Man(a) => cmd::man::man(a, Cli::command()),
        Cmd::Completions(a) => cmd::man::completions(a, Cli::command()),
    }
}

/// `--version`: the crate version, the git revision it was built from and
/// the artifact format it reads, so a bug report names all three.
fn version() -> String {
    format!(
        "{} (git {}, artifact format v{})",
        env!("CARGO_PKG_VERSION"),
        env!("CHOKEPOINT_GIT_REV"),
        chokepoint_rules::artifact::FORMAT_VERSION
    )
}

fn main() -> ExitCode {
    use clap::FromArgMatches;
    // Built once per process; clap keeps a `&'static str`.
    let version: &'static str = Box::leak(version().into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    init_logging(cli.log_json);
    match dispatch(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every argument of every command says what it is for, so `--help`,
    /// the man pages and the completions never show a bare flag.
    #[test]
    fn every_argument_has_help_text() {
        let mut missing = Vec::new();
        let mut todo = vec![(String::from("chokepoint"), Cli::command())];
        let mut seen = 0;
        while let Some((path, cmd)) = todo.pop() {
            seen += 1;
            assert!(
                cmd.get_about().is_some() || path == "chokepoint",
                "`{path}` has no about text"
            );
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                todo.push((format!("{path} {}", sub.get_name()), sub.clone()));
            }
        }
        assert!(seen > 20, "walked only {seen} commands");
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
