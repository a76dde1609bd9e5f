//! Typed indices into a compiled policy.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A rule's position in its policy (0 = first). Policy order is precedence:
/// a lower id wins, so ids compare the way rules do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleId(u16);

impl RuleId {
    /// The most rules a policy may have: ids are stored in 16 bits in the
    /// artifact's tables, and `u16::MAX` marks "no rule" there.
    pub const MAX_RULES: usize = u16::MAX as usize;

    /// The id of the rule at `index`, if a policy can have that many rules.
    pub fn new(index: usize) -> Option<RuleId> {
        (index < Self::MAX_RULES).then_some(RuleId(index as u16))
    }

    /// From the 16-bit form stored in tables (`u16::MAX` is no rule).
    pub(crate) fn from_stored(v: u16) -> Option<RuleId> {
        (v != u16::MAX).then_some(RuleId(v))
    }

    /// The rule's position in the policy.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The 16-bit form stored in tables.
    pub fn stored(self) -> u16 {
        self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
