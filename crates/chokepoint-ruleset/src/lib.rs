//! # chokepoint-ruleset
//!
//! The lookup side of chokepoint: a compiled policy ([`Ruleset`]), the
//! artifact that carries it ([`artifact`]), the matchers behind it, and the
//! vocabulary ([`Trigger`], [`Action`], [`Verdict`]) and engine [`Profile`]
//! that the compiler and the packet core share. The compiler itself (YAML,
//! list formats, IDNA) lives in `chokepoint-rules`; keeping it out of this
//! crate keeps the packet core's dependency tree to what a lookup needs.
//!
//! ## Matching semantics
//! * Rules are tried in policy order; the first rule with a matching entry
//!   wins ([`RuleId`]s compare the same way). Within one rule the most
//!   specific entry is reported (longest prefix; the whole name before a
//!   parent suffix).
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
pub mod conditions;
pub mod domain_table;
pub mod hint;
pub mod ids;
pub mod keyword_table;
pub mod name;
pub mod prefix_table;
pub mod profile;
pub mod random;
pub mod ruleset;
pub mod vocab;

pub use artifact::ArtifactError;
pub use conditions::{Conditions, Facts, Protocol, Residual, ResidualAction, ResidualScope};
pub use ids::RuleId;
pub use profile::{Direction, Preset, Profile, Timeouts};
pub use ruleset::{DefaultAt, Hit, HitInfo, Match, Ruleset};
pub use vocab::{
    Action, ByteRange, Chance, DnsAnswer, LearnKey, ListFormat, Packets, ResetTo, Scope, Trigger,
    Verdict, Way,
};
