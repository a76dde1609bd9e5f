//! Hostile artifacts: a real compiled artifact with its tables edited and
//! its BLAKE3 recomputed, as anyone who can write the file can do (the
//! hash is unkeyed). Loading must refuse them; the tests and the namespace
//! lab check that it does, and that a live bridge keeps its old rules.

use chokepoint_rules::artifact::HEADER_LEN;

/// Section tag of the IPv4 prefix entries, as the artifact writer numbers
/// them (see `chokepoint_ruleset::artifact`).
pub const V4_ENTRIES: u32 = 8;
/// Offset of the list id inside one IPv4 prefix entry.
const V4_ENTRY_LIST: usize = 8;

/// Where a section's records lie in an artifact file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// File offset of the first record.
    pub at: usize,
    /// Bytes per record.
    pub size: usize,
    /// Records.
    pub count: usize,
}

/// Recompute the header's hash over the (edited) body.
pub fn rehash(mut b: Vec<u8>) -> Vec<u8> {
    let h = blake3::hash(&b[HEADER_LEN..]);
    b[32..64].copy_from_slice(h.as_bytes());
    b
}

/// The section tagged `tag`. Panics if there is none: the artifact is one
/// this build wrote.
pub fn section(b: &[u8], tag: u32) -> Section {
    let mut at = HEADER_LEN;
    while at < b.len() {
        let word = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let t = word(at);
        let size = word(at + 4) as usize;
        let count = u64::from_le_bytes(b[at + 8..at + 16].try_into().unwrap()) as usize;
        if t == tag {
            return Section {
                at: at + 16,
                size,
                count,
            };
        }
        at += 16 + size * count;
        at = HEADER_LEN + (at - HEADER_LEN).div_ceil(8) * 8;
    }
    panic!("no section {tag}");
}

/// The issue-9 reproduction: every IPv4 prefix entry moved to list `list`
/// (one that no IP rule uses), the hash recomputed. Before loading checked
/// every cross-reference, such a file loaded and its first matching packet
/// panicked a worker.
pub fn prefixes_on_list(bytes: &[u8], list: u16) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let s = section(&b, V4_ENTRIES);
    for i in 0..s.count {
        let at = s.at + i * s.size + V4_ENTRY_LIST;
        b[at..at + 2].copy_from_slice(&list.to_le_bytes());
    }
    rehash(b)
}
