//! The artifact: one file that carries a compiled [`Ruleset`] from the
//! compiler to every enforcement node.
//!
//! ```text
//! offset  size  field
//!      0     8  magic  "CHOKEPNT"
//!      8     4  format version (little-endian u32)
//!     12     4  header length (64)
//!     16     8  created, unix seconds (a copy of the metadata's, checked)
//!     24     8  body length
//!     32    32  BLAKE3 of the body
//!     64     …  body: sections
//! section: tag u32 | element size u32 | count u64 | count × size bytes | zero pad to 8
//! ```
//! Section 1 is the metadata (postcard: lists, rules, sources with their
//! digests, statistics); the others are the lookup tables as little-endian
//! arrays of fixed-size records, copied into typed vectors on load. Loading
//! checks magic, version, lengths and the hash, then the bounds of every
//! index inside the tables, so no file, however made, can make a lookup
//! panic. No list text is parsed on load.

use bytemuck::Pod;

use crate::domain_table::{DomainTable, NameEntry};
use crate::keyword_table::{KeywordEntry, KeywordTable};
use crate::prefix_table::{PrefixEntry, PrefixTable};
use crate::ruleset::{Meta, RecordEntry, Ruleset};

#[cfg(not(target_endian = "little"))]
compile_error!("the artifact format is little-endian; big-endian hosts are not supported");

/// The first eight bytes of every artifact.
pub const MAGIC: &[u8; 8] = b"CHOKEPNT";
/// Bumped whenever the layout of any section changes, or the meaning of
/// a field (7: `reassembly_memory_budget` became the box's, 0 = `auto`; a
/// node that read it per worker must not load it).
pub const FORMAT_VERSION: u32 = 7;
/// Bytes before the body.
pub const HEADER_LEN: usize = 64;

/// Why an artifact was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArtifactError {
    #[error("not a chokepoint artifact (bad magic {0:02x?})")]
    /// The first bytes are not the artifact magic (shown).
    BadMagic(Vec<u8>),
    #[error("artifact format version {found} is not supported (this build reads version {expected}); recompile the policy")]
    /// Written by another format version.
    Version {
        /// The file's version.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    #[error("artifact is truncated: {what} needs {need} bytes, {have} present")]
    /// Shorter than its own lengths say.
    Truncated {
        /// The part that is cut short.
        what: String,
        /// Bytes it needs.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    #[error(
        "artifact content hash mismatch: the file is corrupted (expected {expected}, got {actual})"
    )]
    /// The body's BLAKE3 differs from the header's.
    HashMismatch {
        /// The header's hash.
        expected: String,
        /// The body's hash.
        actual: String,
    },
    #[error("artifact section {tag}: {reason}")]
    /// A section is malformed.
    Section {
        /// The section's tag.
        tag: u32,
        /// What is wrong with it.
        reason: String,
    },
    #[error("artifact lacks section {0}")]
    /// A required section is absent (named).
    Missing(&'static str),
    #[error("artifact metadata: {0}")]
    /// The metadata section does not decode.
    Meta(String),
    #[error("artifact is inconsistent: {0}")]
    /// The tables disagree with each other (an index out of range...).
    Inconsistent(String),
}

mod tag {
    pub const META: u32 = 1;
    pub const SLOTS: u32 = 2;
    pub const NAME_RANGE: u32 = 3;
    // 4 is unused.
    pub const NAME_BLOB: u32 = 5;
    pub const KW_ENTRIES: u32 = 6;
    pub const KW_BLOB: u32 = 7;
    pub const V4_ENTRIES: u32 = 8;
    pub const V4_STARTS: u32 = 9;
    pub const V4_VALS: u32 = 10;
    pub const V4_INDEX: u32 = 11;
    pub const V6_ENTRIES: u32 = 12;
    pub const V6_STARTS: u32 = 13;
    pub const V6_VALS: u32 = 14;
    pub const V6_INDEX: u32 = 15;
    pub const RECORDS: u32 = 16;
    pub const RECORD_BLOB: u32 = 17;
    pub const NAMES: [(u32, &str); 16] = [
        (META, "meta"),
        (SLOTS, "domain slots"),
        (NAME_RANGE, "domain table parameters"),
        (NAME_BLOB, "domain names"),
        (KW_ENTRIES, "keyword entries"),
        (KW_BLOB, "keyword patterns"),
        (V4_ENTRIES, "IPv4 entries"),
        (V4_STARTS, "IPv4 ranges"),
        (V4_VALS, "IPv4 range values"),
        (V4_INDEX, "IPv4 index"),
        (V6_ENTRIES, "IPv6 entries"),
        (V6_STARTS, "IPv6 ranges"),
        (V6_VALS, "IPv6 range values"),
        (V6_INDEX, "IPv6 index"),
        (RECORDS, "registry records"),
        (RECORD_BLOB, "registry record text"),
    ];
}

struct Writer {
    body: Vec<u8>,
}

impl Writer {
    fn section<T: Pod>(&mut self, tag: u32, items: &[T]) {
        self.body.extend_from_slice(&tag.to_le_bytes());
        self.body
            .extend_from_slice(&(std::mem::size_of::<T>() as u32).to_le_bytes());
        self.body
            .extend_from_slice(&(items.len() as u64).to_le_bytes());
        self.body.extend_from_slice(bytemuck::cast_slice(items));
        while self.body.len() % 8 != 0 {
            self.body.push(0);
        }
    }
}

/// Serialise a ruleset.
pub fn to_bytes(rs: &Ruleset) -> Vec<u8> {
    let mut w = Writer { body: Vec::new() };
    let meta = postcard::to_stdvec(&rs.meta).expect("metadata always serialises");
    w.section(tag::META, &meta);
    w.section(tag::SLOTS, &rs.domains.slots);
    let mask = rs.domains.label_mask;
    w.section(
        tag::NAME_RANGE,
        &[rs.domains.range, mask as u32, (mask >> 32) as u32],
    );
    w.section(tag::NAME_BLOB, &rs.domains.blob);
    w.section(tag::KW_ENTRIES, &rs.keywords.entries);
    w.section(tag::KW_BLOB, &rs.keywords.blob);
    w.section(tag::V4_ENTRIES, &rs.v4.entries);
    w.section(tag::V4_STARTS, &rs.v4.starts);
    w.section(tag::V4_VALS, &rs.v4.vals);
    w.section(tag::V4_INDEX, &rs.v4.index);
    w.section(tag::V6_ENTRIES, &rs.v6.entries);
    w.section(tag::V6_STARTS, &rs.v6.starts);
    w.section(tag::V6_VALS, &rs.v6.vals);
    w.section(tag::V6_INDEX, &rs.v6.index);
    w.section(tag::RECORDS, &rs.records);
    w.section(tag::RECORD_BLOB, &rs.record_blob);
    let mut out = Vec::with_capacity(HEADER_LEN + w.body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    out.extend_from_slice(&rs.meta.created_unix.to_le_bytes());
    out.extend_from_slice(&(w.body.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(&w.body).as_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);
    out.extend_from_slice(&w.body);
    out
}

/// What the header says, read without checking the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u32,
    /// When it was compiled (unix seconds).
    pub created_unix: u64,
    /// Bytes after the header.
    pub body_len: u64,
    /// BLAKE3 of the body.
    pub hash: [u8; 32],
}

impl Header {
    /// The body hash in hex, as `stats` and metrics print it.
    pub fn hash_hex(&self) -> String {
        blake3::Hash::from_bytes(self.hash).to_hex().to_string()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Parse and check the header alone (magic, version, lengths), without hashing the body.
pub fn read_header(bytes: &[u8]) -> Result<Header, ArtifactError> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(ArtifactError::BadMagic(
            bytes[..bytes.len().min(8)].to_vec(),
        ));
    }
    if bytes.len() < HEADER_LEN {
        return Err(ArtifactError::Truncated {
            what: "header".into(),
            need: HEADER_LEN as u64,
            have: bytes.len() as u64,
        });
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(ArtifactError::Version {
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    if u32_at(bytes, 12) as usize != HEADER_LEN {
        return Err(ArtifactError::Inconsistent("header length field".into()));
    }
    Ok(Header {
        version,
        created_unix: u64_at(bytes, 16),
        body_len: u64_at(bytes, 24),
        hash: bytes[32..64].try_into().unwrap(),
    })
}

/// Parse and validate an artifact.
pub fn from_bytes(bytes: &[u8]) -> Result<Ruleset, ArtifactError> {
    let h = read_header(bytes)?;
    let have = (bytes.len() - HEADER_LEN) as u64;
    if have < h.body_len {
        return Err(ArtifactError::Truncated {
            what: "body".into(),
            need: h.body_len,
            have,
        });
    }
    if have > h.body_len {
        return Err(ArtifactError::Inconsistent(format!(
            "{} bytes of trailing data after the body",
            have - h.body_len
        )));
    }
    let body = &bytes[HEADER_LEN..];
    // Under `cargo fuzz` (`--cfg fuzzing`) the hash is not compared: the
    // structure-aware target would recompute it for every input anyway,
    // and hashing a 0.5 MB body took most of each execution, so the checks
    // behind it ran at a tenth of the rate. Every other build compares it.
    #[cfg(not(fuzzing))]
    {
        let actual = blake3::hash(body);
        if actual.as_bytes() != &h.hash {
            return Err(ArtifactError::HashMismatch {
                expected: h.hash_hex(),
                actual: actual.to_hex().to_string(),
            });
        }
    }

    let mut sections: [Option<(u32, &[u8])>; 18] = [None; 18];
    let mut at = 0usize;
    while at < body.len() {
        if body.len() - at < 16 {
            return Err(ArtifactError::Truncated {
                what: "section header".into(),
                need: 16,
                have: (body.len() - at) as u64,
            });
        }
        let t = u32_at(body, at);
        let size = u32_at(body, at + 4);
        let count = u64_at(body, at + 8);
        at += 16;
        let len = (size as u64)
            .checked_mul(count)
            .filter(|&l| l <= (body.len() - at) as u64)
            .ok_or_else(|| ArtifactError::Truncated {
                what: format!("section {t}"),
                need: (size as u64).saturating_mul(count),
                have: (body.len() - at) as u64,
            })? as usize;
        if t == 0 || t as usize >= sections.len() {
            return Err(ArtifactError::Section {
                tag: t,
                reason: "unknown section".into(),
            });
        }
        if sections[t as usize].is_some() {
            return Err(ArtifactError::Section {
                tag: t,
                reason: "section appears twice".into(),
            });
        }
        sections[t as usize] = Some((size, &body[at..at + len]));
        at += len;
        at = (at + 7) & !7;
    }

    fn get<T: Pod>(sections: &[Option<(u32, &[u8])>], t: u32) -> Result<Vec<T>, ArtifactError> {
        let name = tag::NAMES.iter().find(|n| n.0 == t).map_or("?", |n| n.1);
        let (size, data) = sections[t as usize].ok_or(ArtifactError::Missing(name))?;
        if size as usize != std::mem::size_of::<T>() {
            return Err(ArtifactError::Section {
                tag: t,
                reason: format!(
                    "{name}: element size {size}, expected {}",
                    std::mem::size_of::<T>()
                ),
            });
        }
        Ok(bytemuck::pod_collect_to_vec(data))
    }

    let meta_bytes: Vec<u8> = get(&sections, tag::META)?;
    let meta: Meta =
        postcard::from_bytes(&meta_bytes).map_err(|e| ArtifactError::Meta(e.to_string()))?;
    // The header's copy of the creation time is outside the hash; the
    // metadata's is inside. They must agree, or an edited header would
    // pass a forged date to `stats` and the metrics.
    if meta.created_unix != h.created_unix {
        return Err(ArtifactError::Inconsistent(format!(
            "header `created` ({}) differs from the hashed metadata's ({})",
            h.created_unix, meta.created_unix
        )));
    }
    let keywords = KeywordTable::from_parts(
        get::<KeywordEntry>(&sections, tag::KW_ENTRIES)?,
        get(&sections, tag::KW_BLOB)?,
    )
    .map_err(ArtifactError::Inconsistent)?;
    let params: Vec<u32> = get(&sections, tag::NAME_RANGE)?;
    if params.len() != 3 {
        return Err(ArtifactError::Section {
            tag: tag::NAME_RANGE,
            reason: "domain table parameters must be 3 values".into(),
        });
    }
    let rs = Ruleset {
        meta,
        domains: DomainTable {
            slots: get::<NameEntry>(&sections, tag::SLOTS)?,
            blob: get(&sections, tag::NAME_BLOB)?,
            range: params[0],
            label_mask: u64::from(params[1]) | u64::from(params[2]) << 32,
        },
        keywords,
        v4: PrefixTable {
            entries: get::<PrefixEntry<u32>>(&sections, tag::V4_ENTRIES)?,
            starts: get(&sections, tag::V4_STARTS)?,
            vals: get(&sections, tag::V4_VALS)?,
            index: get(&sections, tag::V4_INDEX)?,
        },
        v6: PrefixTable {
            entries: get::<PrefixEntry<u128>>(&sections, tag::V6_ENTRIES)?,
            starts: get(&sections, tag::V6_STARTS)?,
            vals: get(&sections, tag::V6_VALS)?,
            index: get(&sections, tag::V6_INDEX)?,
        },
        records: get::<RecordEntry>(&sections, tag::RECORDS)?,
        record_blob: get(&sections, tag::RECORD_BLOB)?,
        derived: Default::default(),
    };
    rs.validate().map_err(ArtifactError::Inconsistent)?;
    let mut rs = rs;
    rs.derive();
    Ok(rs)
}
