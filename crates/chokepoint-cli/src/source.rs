//! Where a subcommand's rules come from: a policy, an artifact, or the
//! bundled default.

use std::path::PathBuf;

use anyhow::Result;
use chokepoint_rules::outfile::Inputs;
use chokepoint_rules::{artifact, compile_default, compile_file, Ruleset};

/// Where the rules come from; the bundled default when neither is given.
#[derive(clap::Args, Clone)]
pub struct RulesetSource {
    /// Compile this policy first.
    #[arg(long, conflicts_with = "artifact")]
    pub policy: Option<PathBuf>,
    /// Load a compiled artifact.
    #[arg(long)]
    pub artifact: Option<PathBuf>,
}

impl RulesetSource {
    /// Load (or compile) the rules. Called again on every live reload, so
    /// it reads the files afresh each time.
    pub fn load(&self) -> Result<Ruleset> {
        Ok(match (&self.policy, &self.artifact) {
            (_, Some(a)) => artifact::load(a)?,
            (Some(p), None) => compile_file(p)?,
            (None, None) => compile_default()?,
        })
    }

    /// The files `rs` was loaded from, which no output may overwrite: the
    /// artifact, or the policy and the list files it names.
    pub fn inputs(&self, rs: &Ruleset) -> Inputs {
        let mut inputs = Inputs::new();
        match &self.artifact {
            Some(a) => inputs.add(a),
            None => inputs.add_ruleset(rs),
        }
        inputs
    }

    /// The file a live bridge watches for changes (none for the default).
    pub fn watched(&self) -> Option<PathBuf> {
        self.artifact.clone().or(self.policy.clone())
    }
}
