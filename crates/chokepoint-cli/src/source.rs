//! Where a subcommand's rules come from: a policy, an artifact, or the
//! bundled default.

use std::path::PathBuf;

use anyhow::Result;
use chokepoint_rules::outfile::Inputs;
use chokepoint_rules::sign::PublicKey;
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
    /// Keys one of which must have signed the artifact (`ARTIFACT.sig`);
    /// empty: no signature is asked for. Set by `run --trust`.
    #[arg(skip)]
    pub trusted: Vec<PublicKey>,
}

impl RulesetSource {
    /// Load (or compile) the rules. Called again on every live reload, so
    /// it reads the files afresh each time.
    pub fn load(&self) -> Result<Ruleset> {
        Ok(match (&self.policy, &self.artifact) {
            (_, Some(a)) if !self.trusted.is_empty() => artifact::load_signed(a, &self.trusted)?,
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

/// A public key given on the command line: a key file, or the key itself
/// (64 hex digits).
pub fn public_key(arg: &str) -> Result<PublicKey> {
    let path = std::path::Path::new(arg);
    if path.is_file() {
        let text = chokepoint_rules::input::read_text(path)?;
        return PublicKey::parse(&text).map_err(|e| anyhow::anyhow!("{arg}: {e}"));
    }
    PublicKey::parse(arg)
        .map_err(|e| anyhow::anyhow!("`{arg}` is neither a public key file nor a key in hex: {e}"))
}

/// A policy or an artifact (told apart by the artifact's magic), or the
/// bundled default when `path` is `None`.
pub fn load_any(path: Option<&std::path::Path>) -> Result<Ruleset> {
    let Some(path) = path else {
        return Ok(compile_default()?);
    };
    let head = {
        use std::io::Read;
        let mut b = [0u8; 8];
        let n = std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut b))
            .unwrap_or(0);
        b[..n].to_vec()
    };
    Ok(if head == artifact::MAGIC {
        artifact::load(path)?
    } else {
        compile_file(path)?
    })
}
