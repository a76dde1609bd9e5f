//! Exact and suffix domain matching: one open-addressing hash table over all
//! names of all lists.
//!
//! # Layout and cost
//! * `slots`: `{fingerprint: u32, entry: u32}` (8 bytes), load factor 0.8,
//!   linear probing; the slot index comes from the high bits of the hash,
//!   the fingerprint from the low bits, so a miss rarely touches anything
//!   but one slot's cache line.
//! * `entries`: `{offset: u32, len: u8, mode: u8, list: u16}` (8 bytes)
//!   into one byte `blob` of names; `lines` (4 bytes) cites the source line
//!   and is only read by `explain`.
//!
//! A name appears once per list; the same name in two lists is two entries
//! (same key), which a probe meets in one cluster.
//!
//! A lookup of `a.b.example.com` hashes all its label-boundary suffixes in
//! one reverse pass ([`crate::name::for_each_suffix`]) and probes each once:
//! at most one probe per label, and never a match that does not end at a
//! label boundary, so `example.com` cannot match `notexample.com`.

use bytemuck::{Pod, Zeroable};

use crate::name::{for_each_suffix, hash_name};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Slot {
    pub fp: u32,
    /// Entry index + 1; 0 marks an empty slot.
    pub entry: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NameEntry {
    pub off: u32,
    pub len: u8,
    /// [`crate::lists::MODE_EXACT`] / [`crate::lists::MODE_SUBDOMAINS`] bits.
    pub mode: u8,
    pub list: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainTable {
    pub(crate) slots: Vec<Slot>,
    pub(crate) entries: Vec<NameEntry>,
    pub(crate) lines: Vec<u32>,
    pub(crate) blob: Vec<u8>,
}

#[inline]
fn slot_of(hash: u64, cap: usize) -> usize {
    ((u128::from(hash) * cap as u128) >> 64) as usize
}

impl DomainTable {
    /// Build from unique `(name, list)` items (the compiler deduplicates).
    pub fn build(items: &[(String, u16, u8, u32)]) -> DomainTable {
        let cap = (items.len() * 5 / 4 + 8).max(8);
        let mut t = DomainTable {
            slots: vec![Slot::default(); cap],
            entries: Vec::with_capacity(items.len()),
            lines: Vec::with_capacity(items.len()),
            blob: Vec::with_capacity(items.iter().map(|i| i.0.len()).sum()),
        };
        for (name, list, mode, line) in items {
            let idx = t.entries.len() as u32;
            t.entries.push(NameEntry {
                off: t.blob.len() as u32,
                len: name.len() as u8,
                mode: *mode,
                list: *list,
            });
            t.lines.push(*line);
            t.blob.extend_from_slice(name.as_bytes());
            let h = hash_name(name.as_bytes());
            let mut i = slot_of(h, cap);
            while t.slots[i].entry != 0 {
                i = if i + 1 == cap { 0 } else { i + 1 };
            }
            t.slots[i] = Slot {
                fp: h as u32,
                entry: idx + 1,
            };
        }
        t
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, idx: u32) -> &NameEntry {
        &self.entries[idx as usize]
    }

    pub fn name(&self, idx: u32) -> &[u8] {
        let e = &self.entries[idx as usize];
        &self.blob[e.off as usize..e.off as usize + e.len as usize]
    }

    pub fn line(&self, idx: u32) -> u32 {
        self.lines[idx as usize]
    }

    /// Every entry whose key equals `key` (hash precomputed).
    #[inline]
    fn probe(&self, key: &[u8], hash: u64, mut f: impl FnMut(u32, &NameEntry)) {
        let cap = self.slots.len();
        let fp = hash as u32;
        let mut i = slot_of(hash, cap);
        loop {
            let s = self.slots[i];
            if s.entry == 0 {
                return;
            }
            if s.fp == fp {
                let idx = s.entry - 1;
                let e = &self.entries[idx as usize];
                let off = e.off as usize;
                if self.blob.get(off..off + e.len as usize) == Some(key) {
                    f(idx, e);
                }
            }
            i = if i + 1 == cap { 0 } else { i + 1 };
        }
    }

    /// Calls `f(entry_index, entry, is_whole_name)` for every entry that
    /// matches `name` by its mode: whole-name hits need the exact bit,
    /// parent-suffix hits the subdomains bit. `name` must be normalised.
    #[inline]
    pub fn for_each_match(&self, name: &[u8], mut f: impl FnMut(u32, &NameEntry, bool)) {
        use crate::lists::{MODE_EXACT, MODE_SUBDOMAINS};
        if self.entries.is_empty() {
            return;
        }
        for_each_suffix(name, |start, h| {
            let whole = start == 0;
            let need = if whole { MODE_EXACT } else { MODE_SUBDOMAINS };
            self.probe(&name[start..], h, |idx, e| {
                if e.mode & need != 0 {
                    f(idx, e, whole)
                }
            });
        });
    }

    /// Indices of the entries whose key is exactly `name`, any mode.
    pub fn find_key(&self, name: &[u8], mut f: impl FnMut(u32, &NameEntry)) {
        if !self.entries.is_empty() {
            self.probe(name, hash_name(name), |i, e| f(i, e));
        }
    }

    /// Bytes of memory the table holds.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
            + self.entries.len() * std::mem::size_of::<NameEntry>()
            + self.lines.len() * 4
            + self.blob.len()
    }

    /// Check internal consistency of a table read from an artifact, so a
    /// crafted file cannot send a lookup out of bounds.
    pub(crate) fn validate(&self, lists: usize) -> Result<(), String> {
        if self.slots.is_empty() {
            return Err("domain table has no slots".into());
        }
        if self.lines.len() != self.entries.len() {
            return Err("domain table: lines and entries differ in length".into());
        }
        let mut used = 0usize;
        for s in &self.slots {
            if s.entry as usize > self.entries.len() {
                return Err(format!(
                    "domain slot points at entry {} of {}",
                    s.entry,
                    self.entries.len()
                ));
            }
            used += usize::from(s.entry != 0);
        }
        if used != self.entries.len() || used == self.slots.len() {
            return Err(
                "domain table slots do not cover the entries exactly once, or leave no empty slot"
                    .into(),
            );
        }
        for e in &self.entries {
            if e.off as usize + e.len as usize > self.blob.len() {
                return Err("domain entry points past the name blob".into());
            }
            if e.list as usize >= lists || e.mode == 0 || e.mode > 3 {
                return Err("domain entry has a bad list or mode".into());
            }
        }
        Ok(())
    }
}
