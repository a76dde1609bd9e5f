//! Keyword (substring) matching with aho-corasick.
//!
//! The automaton is not stored in the artifact (the crate has no stable
//! serialised form); the artifact stores the patterns and the loader builds
//! the automaton from them. Keyword lists are small, so this costs
//! microseconds to milliseconds, never a re-parse of list text.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
/// One substring pattern, with provenance.
pub struct KeywordEntry {
    /// Offset of the pattern in the blob.
    pub off: u32,
    /// Source line.
    pub line: u32,
    /// Length of the pattern.
    pub len: u16,
    /// The list it came from.
    pub list: u16,
}

#[derive(Clone, Debug, Default)]
/// Substring patterns and the aho-corasick automaton over them.
pub struct KeywordTable {
    pub(crate) entries: Vec<KeywordEntry>,
    pub(crate) blob: Vec<u8>,
    automaton: Option<AhoCorasick>,
}

impl PartialEq for KeywordTable {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries && self.blob == other.blob
    }
}

impl KeywordTable {
    /// Build from (pattern, list, line) items.
    pub fn build(items: &[(String, u16, u32)]) -> Result<KeywordTable, String> {
        let mut entries = Vec::with_capacity(items.len());
        let mut blob = Vec::new();
        for (p, list, line) in items {
            entries.push(KeywordEntry {
                off: blob.len() as u32,
                line: *line,
                len: p.len() as u16,
                list: *list,
            });
            blob.extend_from_slice(p.as_bytes());
        }
        Self::from_parts(entries, blob)
    }

    pub(crate) fn from_parts(
        entries: Vec<KeywordEntry>,
        blob: Vec<u8>,
    ) -> Result<KeywordTable, String> {
        for e in &entries {
            if e.off as usize + e.len as usize > blob.len() {
                return Err(format!(
                    "keyword entry (line {}) points past the pattern blob ({} bytes)",
                    e.line,
                    blob.len()
                ));
            }
        }
        let automaton = if entries.is_empty() {
            None
        } else {
            let pats = entries
                .iter()
                .map(|e| &blob[e.off as usize..e.off as usize + e.len as usize]);
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build(pats)
                    .map_err(|e| format!("keyword automaton: {e}"))?,
            )
        };
        Ok(KeywordTable {
            entries,
            blob,
            automaton,
        })
    }

    /// Check a table read from an artifact (offsets are checked as it is built).
    pub(crate) fn validate(&self, lists: usize) -> Result<(), String> {
        if let Some(e) = self.entries.iter().find(|e| e.list as usize >= lists) {
            return Err(format!(
                "keyword entry (line {}) has list {}, which does not exist",
                e.line, e.list
            ));
        }
        if self.entries.len() > u32::MAX as usize {
            return Err("more keyword entries than a hit can name".into());
        }
        Ok(())
    }

    /// Patterns held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No patterns?
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry a match returned.
    pub fn entry(&self, idx: u32) -> &KeywordEntry {
        &self.entries[idx as usize]
    }

    /// The pattern of an entry.
    pub fn pattern(&self, idx: u32) -> &[u8] {
        let e = &self.entries[idx as usize];
        &self.blob[e.off as usize..e.off as usize + e.len as usize]
    }

    /// Calls `f(entry_index, entry)` for every keyword occurring in `name`
    /// (overlapping matches included: the first rule, not the leftmost
    /// keyword, decides).
    #[inline]
    pub fn for_each_match(&self, name: &[u8], mut f: impl FnMut(u32, &KeywordEntry)) {
        if let Some(ac) = &self.automaton {
            for m in ac.find_overlapping_iter(name) {
                let idx = m.pattern().as_u32();
                f(idx, &self.entries[idx as usize]);
            }
        }
    }

    /// Bytes held, automaton included.
    pub fn memory_bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<KeywordEntry>()
            + self.blob.len()
            + self.automaton.as_ref().map_or(0, |a| a.memory_usage())
    }
}
