//! Exact and suffix domain matching: one open-addressing hash table over all
//! names of all lists.
//!
//! # Layout and cost
//! * `slots`: 16-byte [`NameEntry`] records — a 32-bit fingerprint (the
//!   hash's high bits), the name's offset and length in one byte `blob`,
//!   its mode, list and source line — at load factor 0.8.
//! * The home slot is a monotone function of the fingerprint
//!   (`fp × range / 2³²`), and entries are placed in fingerprint order, each
//!   at its home or just after the previous entry. Every cluster is
//!   therefore sorted, and a search stops at the first slot whose
//!   fingerprint exceeds its own: a miss reads one or two slots instead of
//!   the ~13 plain linear probing reads at this load. The table never wraps;
//!   it ends with an empty sentinel slot.
//! * Everything a lookup needs is in the slot, so a miss costs one cache
//!   line and a hit one more (the name bytes, compared so that a hash
//!   collision can never block an innocent name).
//! * Memory: 20 bytes of slot per name (16 / 0.8) plus the name itself.
//!
//! A name appears once per list; the same name in two lists is two slots
//! with the same key, which a probe meets in one cluster.
//!
//! A lookup of `a.b.example.com` hashes all its label-boundary suffixes in
//! one reverse pass ([`crate::name::for_each_suffix`]), prefetches every
//! suffix's home slot, then probes each: the 3–6 cache misses of a 3–6
//! label name overlap instead of queueing. A match only ever ends at a label
//! boundary, so `example.com` cannot match `notexample.com`.

use bytemuck::{Pod, Zeroable};

use crate::hint::prefetch;
use crate::name::{for_each_suffix_in, hash_name, label_bit, label_count, MAX_NAME_LEN};

/// The name itself is matched.
pub const MODE_EXACT: u8 = 1;
/// Names below it are matched.
pub const MODE_SUBDOMAINS: u8 = 2;
/// Both: `example.com` in a domains list.
pub const MODE_SUFFIX: u8 = MODE_EXACT | MODE_SUBDOMAINS;

/// A match mode in words.
pub fn mode_str(mode: u8) -> &'static str {
    match mode {
        MODE_EXACT => "exact",
        MODE_SUBDOMAINS => "subdomains",
        _ => "suffix",
    }
}

/// One slot of the table; `len == 0` marks it empty (names are never empty).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NameEntry {
    /// Fingerprint: the high 32 bits of the name hash.
    pub fp: u32,
    /// Offset of the name in the blob.
    pub off: u32,
    /// Length of the name; 0 marks an empty slot.
    pub len: u8,
    /// [`MODE_EXACT`] / [`MODE_SUBDOMAINS`] bits.
    pub mode: u8,
    /// The list the entry came from.
    pub list: u16,
    /// Source line, for `explain`.
    pub line: u32,
}

const _: () = assert!(std::mem::size_of::<NameEntry>() == 16);

#[derive(Clone, Debug, PartialEq, Eq)]
/// Listed names, keyed by the suffix hash (see the module docs).
pub struct DomainTable {
    pub(crate) slots: Vec<NameEntry>,
    pub(crate) blob: Vec<u8>,
    /// Home slots are `0..range`; overflow and the sentinel lie beyond.
    pub(crate) range: u32,
    /// Bit k-1 set when some entry has k labels (bit 63: 64 or more), so a
    /// lookup hashes and probes only suffixes that can exist.
    pub(crate) label_mask: u64,
}

impl Default for DomainTable {
    fn default() -> Self {
        Self::build(&[])
    }
}

#[inline]
fn fingerprint(hash: u64) -> u32 {
    (hash >> 32) as u32
}

#[inline]
fn home(fp: u32, range: u32) -> usize {
    ((u64::from(fp) * u64::from(range)) >> 32) as usize
}

/// Suffixes hashed and prefetched before probing.
const BATCH: usize = 16;

impl DomainTable {
    /// Build from unique `(name, list, mode, line)` items (the compiler
    /// deduplicates).
    pub fn build(items: &[(String, u16, u8, u32)]) -> DomainTable {
        let range = (items.len() * 5 / 4 + 8) as u32;
        let mut order: Vec<(u32, usize)> = items
            .iter()
            .enumerate()
            .map(|(i, it)| (fingerprint(hash_name(it.0.as_bytes())), i))
            .collect();
        order.sort_unstable();
        let mut t = DomainTable {
            slots: vec![NameEntry::default(); range as usize + 1],
            blob: Vec::with_capacity(items.iter().map(|i| i.0.len()).sum()),
            range,
            label_mask: items
                .iter()
                .fold(0, |m, it| m | label_bit(label_count(it.0.as_bytes()))),
        };
        let mut next = 0usize;
        for (fp, i) in order {
            let (name, list, mode, line) = &items[i];
            debug_assert!(!name.is_empty() && name.len() <= MAX_NAME_LEN);
            let pos = home(fp, range).max(next);
            // Keep one empty sentinel after the last entry.
            if pos + 1 >= t.slots.len() {
                t.slots.resize(pos + 2, NameEntry::default());
            }
            t.slots[pos] = NameEntry {
                fp,
                off: t.blob.len() as u32,
                len: name.len() as u8,
                mode: *mode,
                list: *list,
                line: *line,
            };
            t.blob.extend_from_slice(name.as_bytes());
            next = pos + 1;
        }
        t
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.len != 0).count()
    }

    /// No names at all?
    pub fn is_empty(&self) -> bool {
        self.blob.is_empty()
    }

    /// Indices of occupied slots.
    pub fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.slots.len() as u32).filter(|&i| self.slots[i as usize].len != 0)
    }

    /// The entry at a slot index a lookup returned.
    pub fn entry(&self, idx: u32) -> &NameEntry {
        &self.slots[idx as usize]
    }

    /// The name stored at a slot.
    pub fn name(&self, idx: u32) -> &[u8] {
        let e = &self.slots[idx as usize];
        &self.blob[e.off as usize..e.off as usize + e.len as usize]
    }

    /// The source line of the entry at a slot.
    pub fn line(&self, idx: u32) -> u32 {
        self.slots[idx as usize].line
    }

    /// Every slot whose key equals `key` (hash precomputed).
    #[inline]
    fn probe(&self, key: &[u8], hash: u64, mut f: impl FnMut(u32, &NameEntry)) {
        let fp = fingerprint(hash);
        let mut i = home(fp, self.range);
        // The last slot is an empty sentinel (checked on load), so this ends.
        while let Some(e) = self.slots.get(i) {
            if e.len == 0 || e.fp > fp {
                return;
            }
            if e.fp == fp && e.len as usize == key.len() {
                let off = e.off as usize;
                if self.blob.get(off..off + key.len()) == Some(key) {
                    f(i as u32, e);
                }
            }
            i += 1;
        }
    }

    /// Calls `f(slot_index, entry, is_whole_name)` for every entry that
    /// matches `name` by its mode: whole-name hits need the exact bit,
    /// parent-suffix hits the subdomains bit. `name` must be normalised.
    #[inline]
    pub fn for_each_match(&self, name: &[u8], mut f: impl FnMut(u32, &NameEntry, bool)) {
        if self.blob.is_empty() || name.len() > MAX_NAME_LEN {
            return;
        }
        let probe_one = |start: usize, h: u64, f: &mut dyn FnMut(u32, &NameEntry, bool)| {
            let whole = start == 0;
            let need = if whole { MODE_EXACT } else { MODE_SUBDOMAINS };
            self.probe(&name[start..], h, |idx, e| {
                if e.mode & need != 0 {
                    f(idx, e, whole)
                }
            });
        };
        // Hash every suffix and prefetch its home slot first, so the cache
        // misses overlap; names with more than BATCH labels (rare) probe the
        // extra suffixes at once.
        let mut starts = [0u8; BATCH];
        let mut hashes = [0u64; BATCH];
        let mut n = 0;
        for_each_suffix_in(name, self.label_mask, |start, _, h| {
            if n < BATCH {
                prefetch(&self.slots, home(fingerprint(h), self.range));
                starts[n] = start as u8;
                hashes[n] = h;
                n += 1;
            } else {
                probe_one(start, h, &mut f);
            }
        });
        for k in 0..n {
            probe_one(starts[k] as usize, hashes[k], &mut f);
        }
    }

    /// Start loading the home slots a lookup of `name` (normalised) will
    /// probe, and do nothing else: a caller holding several names (a
    /// burst of packets) prefetches them all before looking any up, so
    /// their cache misses overlap. Costs the suffix hashing again.
    #[inline]
    pub fn prefetch(&self, name: &[u8]) {
        if self.blob.is_empty() || name.len() > MAX_NAME_LEN {
            return;
        }
        let mut n = 0;
        for_each_suffix_in(name, self.label_mask, |_, _, h| {
            if n < BATCH {
                prefetch(&self.slots, home(fingerprint(h), self.range));
                n += 1;
            }
        });
    }

    /// Slots whose key is exactly `name`, any mode.
    pub fn find_key(&self, name: &[u8], mut f: impl FnMut(u32, &NameEntry)) {
        if !self.blob.is_empty() {
            self.probe(name, hash_name(name), |i, e| f(i, e));
        }
    }

    /// Bytes of memory the table holds.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<NameEntry>() + self.blob.len()
    }

    /// Check a table read from an artifact, so a crafted file cannot send a
    /// lookup out of bounds or into an endless probe, nor hide a name from
    /// the probe that [`DomainTable::for_each_match`] makes: every entry
    /// lies at or after its home slot with no empty slot in between, each
    /// cluster is in fingerprint order, fingerprints are their names' own,
    /// and the label mask covers every name.
    pub(crate) fn validate(&self, lists: usize) -> Result<(), String> {
        if self.slots.last().is_none_or(|s| s.len != 0) {
            return Err("domain table does not end with an empty slot".into());
        }
        if self.range == 0 || self.range as usize >= self.slots.len() {
            return Err("domain table home range is empty or exceeds its slots".into());
        }
        if self.slots.len() > u32::MAX as usize {
            return Err("domain table has more slots than a hit can name".into());
        }
        let mut total = 0usize;
        let mut mask = 0u64;
        // Start of the current run of occupied slots, and the last fingerprint in it.
        let mut run: Option<(usize, u32)> = None;
        for (i, e) in self.slots.iter().enumerate() {
            if e.len == 0 {
                run = None;
                continue;
            }
            let at = |what: &str| format!("domain slot {i} (line {}): {what}", e.line);
            let off = e.off as usize;
            let Some(name) = self.blob.get(off..off + e.len as usize) else {
                return Err(at("points past the name blob"));
            };
            if name.len() > MAX_NAME_LEN {
                return Err(at("name longer than a name can be"));
            }
            if e.list as usize >= lists || e.mode == 0 || e.mode > MODE_SUFFIX {
                return Err(at("bad list or mode"));
            }
            if fingerprint(hash_name(name)) != e.fp {
                return Err(at("fingerprint is not its name's"));
            }
            let start = match run {
                Some((_, prev)) if prev > e.fp => {
                    return Err(at("out of fingerprint order"));
                }
                Some((start, _)) => start,
                None => i,
            };
            // The probe starts at the home slot and stops at an empty one.
            if home(e.fp, self.range) > i || home(e.fp, self.range) < start {
                return Err(at("not reachable from its home slot"));
            }
            run = Some((start, e.fp));
            total += e.len as usize;
            mask |= label_bit(label_count(name));
        }
        if total != self.blob.len() {
            return Err("domain entries do not account for the name blob".into());
        }
        if mask & !self.label_mask != 0 {
            return Err("domain table label mask leaves out names it holds".into());
        }
        Ok(())
    }
}
