//! # chokepoint-rules
//!
//! The blocklist compiler of chokepoint: policies, list formats, name
//! normalisation (IDNA) and `explain`. It builds a
//! [`chokepoint_ruleset::Ruleset`], the one type the compiler, the artifact
//! and the packet core share, so the two sides can never disagree on what
//! a table means. The lookup side is re-exported here under its old paths.
//!
//! ```text
//! policy.yaml ─┐
//! lists/*.txt ─┼─ lists::parse_list ─ name::normalize ─ compile ─► Ruleset ─► artifact::to_bytes ─► file
//! dump.csv ────┘                                                     ▲
//!                                                  artifact::from_bytes (validated, no text parsing)
//! ```
//!
//! ## Matching semantics
//! * Rules are tried in policy order; the first rule with a matching entry
//!   wins. Within one rule the most specific entry is reported (longest
//!   prefix; the whole name before a parent suffix).
//! * Domains match at label boundaries only: `example.com` never matches
//!   `notexample.com`. Keywords (substrings) exist, but only when a policy
//!   asks for them.
//! * IPv4-mapped IPv6 addresses match IPv4 rules.
//!
//! ## Costs
//! * Name lookup: one hash probe per label of the name, against an
//!   open-addressing table (see [`domain_table`]), plus one aho-corasick scan
//!   when keyword rules exist.
//! * Address lookup: a 64 K-entry index on the top 16 bits, then a short scan
//!   of range starts (see [`prefix_table`]). Rule precedence is resolved at
//!   compile time.
//! * No lookup allocates.

#![warn(missing_docs)]

pub mod artifact;
pub mod collateral;
pub mod compile;
pub mod entries;
pub mod explain;
pub mod input;
pub mod lists;
pub mod name;
pub mod nftables;
pub mod outfile;
pub mod policy;
pub mod ranges;
pub mod sign;

// The lookup side, re-exported so `chokepoint_rules::ruleset::…` and the
// like keep naming the one definition.
pub use chokepoint_ruleset::{
    conditions, domain_table, ids, keyword_table, prefix_table, profile, ruleset, vocab,
};
pub use chokepoint_ruleset::{
    Action, ArtifactError, Conditions, Direction, DnsAnswer, Facts, Hit, HitInfo, ListFormat,
    Match, Profile, Protocol, RuleId, Ruleset, Timeouts, Trigger, Verdict,
};

pub use compile::{compile_file, compile_str};
pub use explain::{explain, Explanation};
pub use policy::Policy;

/// The bundled default policy: the April 2018 Telegram block.
pub const DEFAULT_POLICY: &str = include_str!("../../../config/default.yaml");
/// How the bundled policy is named in provenance.
pub const DEFAULT_POLICY_ORIGIN: &str = "<bundled config/default.yaml>";

/// Compile the bundled default policy (it has no list files).
pub fn compile_default() -> Result<Ruleset, Error> {
    compile_str(
        DEFAULT_POLICY,
        DEFAULT_POLICY_ORIGIN,
        std::path::Path::new("."),
    )
}

/// Everything that can go wrong between a policy and a loaded ruleset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy file does not parse (YAML, unknown field, version).
    #[error("{file}: {reason}")]
    Policy {
        /// The policy file.
        file: String,
        /// What is wrong, with line and column where known.
        reason: String,
    },
    /// The policy parses but says something impossible.
    #[error("{file}: {reason}")]
    Invalid {
        /// The policy file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A list line is bad (file, line and reason inside).
    #[error("{0}")]
    BadLine(lists::LineError),
    /// A file could not be read or written.
    #[error("{file}: {reason}")]
    Source {
        /// The file.
        file: String,
        /// The I/O error.
        reason: String,
    },
    /// An output was refused or could not be written; the error names the
    /// file (see [`outfile`]).
    #[error("{0}")]
    Output(std::io::Error),
    /// An artifact was refused.
    #[error("{file}: {source}")]
    Artifact {
        /// The artifact file.
        file: String,
        /// Why it was refused.
        source: ArtifactError,
    },
}
