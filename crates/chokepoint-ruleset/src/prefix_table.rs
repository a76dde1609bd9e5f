//! IPv4 and IPv6 prefix matching, resolved at compile time.
//!
//! Prefixes form a laminar family (two prefixes nest or are disjoint), so the
//! address space cuts into elementary ranges, each covered by one chain of
//! nested prefixes. The compiler sweeps the sorted prefixes with a stack and
//! stores, per range, the entry that decides it: the one whose rule comes
//! first in the policy, and within that rule the longest prefix. A lookup is
//! then "which range holds this address": a 65 536-entry index on the top 16
//! bits narrows it to a handful of range starts, scanned or bisected. That is
//! two or three cache lines per lookup, with no per-rule work at run time.

use bytemuck::{Pod, Zeroable};

/// No entry covers the range.
pub const NONE: u32 = u32::MAX;
const INDEX_LEN: usize = (1 << 16) + 1;

/// An address type the table can hold.
pub trait Addr: Copy + Ord + Pod + std::fmt::Debug {
    /// Address width.
    const BITS: u32;
    /// The all-zero address.
    const ZERO: Self;
    /// The top 16 bits, for the first-level index.
    fn top16(self) -> usize;
    /// Last address of the prefix `self/len`.
    fn last(self, len: u8) -> Self;
    /// First address of the prefix `self/len` (host bits cleared).
    fn first(self, len: u8) -> Self;
    /// `self + 1`, or `None` at the end of the space.
    fn succ(self) -> Option<Self>;
}

impl Addr for u32 {
    const BITS: u32 = 32;
    const ZERO: Self = 0;
    fn top16(self) -> usize {
        (self >> 16) as usize
    }
    fn last(self, len: u8) -> Self {
        self | u32::MAX.checked_shr(u32::from(len)).unwrap_or(0)
    }
    fn first(self, len: u8) -> Self {
        self & !u32::MAX.checked_shr(u32::from(len)).unwrap_or(0)
    }
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}

impl Addr for u128 {
    const BITS: u32 = 128;
    const ZERO: Self = 0;
    fn top16(self) -> usize {
        (self >> 112) as usize
    }
    fn last(self, len: u8) -> Self {
        self | u128::MAX.checked_shr(u32::from(len)).unwrap_or(0)
    }
    fn first(self, len: u8) -> Self {
        self & !u128::MAX.checked_shr(u32::from(len)).unwrap_or(0)
    }
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// One prefix as listed, with provenance.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixEntry<A: Addr> {
    /// Network address.
    pub addr: A,
    /// Source line.
    pub line: u32,
    /// The list it came from.
    pub list: u16,
    /// Prefix length.
    pub len: u8,
    /// Zero padding (the entry is stored as plain bytes).
    pub _pad: [u8; PAD],
}

// u32 entry: 4+4+2+1 = 11 -> pad 1; u128 entry: 16+4+2+1 = 23 -> pad 9 to 32
// (u128 alignment). One PAD for both keeps the struct generic; the u32 form
// pays 8 bytes, which only `explain` reads.
/// Padding bytes of a [`PrefixEntry`].
pub const PAD: usize = 9;

// SAFETY: both instantiations are repr(C) with no implicit padding
// (20 bytes at align 4, 32 bytes at align 16) and every field is Pod.
unsafe impl Zeroable for PrefixEntry<u32> {}
unsafe impl Pod for PrefixEntry<u32> {}
unsafe impl Zeroable for PrefixEntry<u128> {}
unsafe impl Pod for PrefixEntry<u128> {}
const _: () = assert!(std::mem::size_of::<PrefixEntry<u32>>() == 20);
const _: () = assert!(std::mem::size_of::<PrefixEntry<u128>>() == 32);

/// Longest-prefix table over one address family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixTable<A: Addr> {
    pub(crate) entries: Vec<PrefixEntry<A>>,
    /// Sorted starts of the elementary ranges; `starts[0] == 0`.
    pub(crate) starts: Vec<A>,
    /// Deciding entry per range, or [`NONE`].
    pub(crate) vals: Vec<u32>,
    /// `index[k]` = first range whose start has top-16 bits ≥ k.
    pub(crate) index: Vec<u32>,
}

impl<A: Addr> Default for PrefixTable<A> {
    fn default() -> Self {
        Self::build(Vec::new(), |_| None)
    }
}

/// Per-list figures the sweep yields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListCover {
    /// Same prefix listed again in the same list.
    pub duplicates: u64,
    /// Prefix inside a larger prefix of the same list.
    pub shadowed: u64,
    /// Addresses in the union of the list's prefixes.
    pub addresses: u128,
}

impl<A: Addr> PrefixTable<A> {
    /// Build from prefixes (host bits already zero). `rule_of(list)` is the
    /// policy index of the first rule that uses the list for IP matching, or
    /// `None`; entries of lists no rule uses are kept for `explain` but never
    /// decide a range.
    pub fn build(mut entries: Vec<PrefixEntry<A>>, rule_of: impl Fn(u16) -> Option<u16>) -> Self {
        entries.sort_by_key(|e| (e.addr, e.len, e.list, e.line));
        let mut sweep = Sweep {
            stack: Vec::new(),
            starts: vec![A::ZERO],
            vals: vec![NONE],
        };
        for (i, e) in entries.iter().enumerate() {
            sweep.close(Some(e.addr));
            let own = rule_of(e.list).map(|r| (r, std::cmp::Reverse(e.len), i as u32));
            let parent = sweep.stack.last().and_then(|t| t.1);
            let win = match (parent, own) {
                (Some(p), Some(o)) => Some(p.min(o)),
                (p, o) => p.or(o),
            };
            sweep.stack.push((e.addr.last(e.len), win));
            sweep.emit(e.addr, val_of(win));
        }
        sweep.close(None);
        let index = build_index(&sweep.starts);
        PrefixTable {
            entries,
            starts: sweep.starts,
            vals: sweep.vals,
            index,
        }
    }

    /// The deciding entry for `addr`, if any.
    #[inline]
    pub fn lookup(&self, addr: A) -> Option<u32> {
        let k = addr.top16();
        let lo = self.index[k] as usize;
        let hi = self.index[k + 1] as usize;
        let bucket = &self.starts[lo..hi];
        // Ranges before this bucket all start below `addr`.
        let n = if bucket.len() <= 8 {
            bucket.iter().take_while(|&&s| s <= addr).count()
        } else {
            bucket.partition_point(|&s| s <= addr)
        };
        // starts[0] == 0 ≤ addr, so lo + n ≥ 1.
        let v = self.vals[lo + n - 1];
        (v != NONE).then_some(v)
    }

    /// The entry a lookup returned.
    pub fn entry(&self, idx: u32) -> &PrefixEntry<A> {
        &self.entries[idx as usize]
    }

    /// Prefixes held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No prefixes?
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Elementary ranges in the lookup structure.
    pub fn ranges(&self) -> usize {
        self.starts.len()
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<PrefixEntry<A>>()
            + self.starts.len() * std::mem::size_of::<A>()
            + self.vals.len() * 4
            + self.index.len() * 4
    }

    /// Duplicates, shadowed prefixes and covered addresses of each list.
    pub fn cover(&self, lists: usize) -> Vec<ListCover> {
        let mut out = vec![ListCover::default(); lists];
        let mut per_list: Vec<Vec<&PrefixEntry<A>>> = vec![Vec::new(); lists];
        for e in &self.entries {
            per_list[e.list as usize].push(e);
        }
        for (l, items) in per_list.iter().enumerate() {
            // Entries are sorted by (addr, len): an enclosing prefix comes first.
            let mut open: Option<(A, u8, A)> = None;
            for e in items {
                let last = e.addr.last(e.len);
                match open {
                    Some((a, len, end)) if e.addr <= end => {
                        if a == e.addr && len == e.len {
                            out[l].duplicates += 1;
                        } else {
                            out[l].shadowed += 1;
                        }
                    }
                    _ => {
                        open = Some((e.addr, e.len, last));
                        out[l].addresses += 1u128 << (A::BITS - u32::from(e.len)).min(127);
                    }
                }
            }
        }
        out
    }

    /// Every prefix entry, sorted.
    pub fn entries(&self) -> &[PrefixEntry<A>] {
        &self.entries
    }

    /// Addresses in ranges some rule decides, saturating: all of IPv6
    /// (`::/0`, 2^128 addresses) does not fit a `u128` and reads as
    /// `u128::MAX`.
    pub fn decided_addresses(&self) -> u128
    where
        A: Into<u128>,
    {
        let mut total = 0u128;
        for (i, (&s, &v)) in self.starts.iter().zip(&self.vals).enumerate() {
            if v == NONE {
                continue;
            }
            let start: u128 = s.into();
            let len = match self.starts.get(i + 1) {
                Some(&n) => n.into() - start,
                // Last range runs to the end of the space.
                None => ((u128::MAX >> (128 - A::BITS)) - start).saturating_add(1),
            };
            total = total.saturating_add(len);
        }
        total
    }

    /// Check a table read from an artifact: the index and ranges agree,
    /// every range names an existing entry of a list some IP rule uses
    /// (as the compiler builds them), and entries are sorted as
    /// [`PrefixTable::cover`] and `explain` assume.
    pub(crate) fn validate(
        &self,
        lists: usize,
        has_ip_rule: impl Fn(u16) -> bool,
    ) -> Result<(), String> {
        let fam = if A::BITS == 32 { "IPv4" } else { "IPv6" };
        if self.index.len() != INDEX_LEN {
            return Err(format!("{fam} prefix index has the wrong length"));
        }
        if self.starts.is_empty()
            || self.starts[0] != A::ZERO
            || self.starts.len() != self.vals.len()
        {
            return Err(format!(
                "{fam} prefix ranges are empty, do not start at 0, or mismatch their values"
            ));
        }
        if self.starts.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "{fam} prefix range starts are not strictly increasing"
            ));
        }
        if self.index != build_index(&self.starts) {
            return Err(format!("{fam} prefix index does not match the ranges"));
        }
        if self.entries.len() >= NONE as usize {
            return Err(format!("more {fam} prefix entries than a range can name"));
        }
        for e in &self.entries {
            if e.list as usize >= lists || u32::from(e.len) > A::BITS {
                return Err(format!(
                    "{fam} prefix entry (line {}) has a bad list {} or length {}",
                    e.line, e.list, e.len
                ));
            }
            if e.addr.first(e.len) != e.addr {
                return Err(format!(
                    "{fam} prefix entry (line {}) has host bits set",
                    e.line
                ));
            }
        }
        if self.entries.windows(2).any(|w| {
            (w[0].addr, w[0].len, w[0].list, w[0].line)
                > (w[1].addr, w[1].len, w[1].list, w[1].line)
        }) {
            return Err(format!("{fam} prefix entries are not sorted"));
        }
        for &v in &self.vals {
            if v == NONE {
                continue;
            }
            let Some(e) = self.entries.get(v as usize) else {
                return Err(format!("{fam} prefix range points past the entries"));
            };
            if !has_ip_rule(e.list) {
                return Err(format!(
                    "{fam} prefix range is decided by an entry (line {}) of list {}, which no IP rule uses",
                    e.line, e.list
                ));
            }
        }
        Ok(())
    }
}

/// Which entry decides a range: first rule, then longest prefix, then
/// entry index (for a stable choice).
type Winner = (u16, std::cmp::Reverse<u8>, u32);

fn val_of(w: Option<Winner>) -> u32 {
    w.map_or(NONE, |w| w.2)
}

/// The compile-time sweep over sorted prefixes: a stack of open prefixes
/// (last address, winner so far) and the ranges emitted.
struct Sweep<A: Addr> {
    stack: Vec<(A, Option<Winner>)>,
    starts: Vec<A>,
    vals: Vec<u32>,
}

impl<A: Addr> Sweep<A> {
    /// A range with value `val` starts at `pos`.
    fn emit(&mut self, pos: A, val: u32) {
        let (starts, vals) = (&mut self.starts, &mut self.vals);
        if *starts.last().unwrap() == pos {
            *vals.last_mut().unwrap() = val;
            // Merging with the range before keeps the table minimal.
            if vals.len() >= 2 && vals[vals.len() - 2] == val {
                starts.pop();
                vals.pop();
            }
        } else if *vals.last().unwrap() != val {
            starts.push(pos);
            vals.push(val);
        }
    }

    /// Close every open prefix that ends before `until` (all if `None`);
    /// after each, the enclosing prefix's winner rules again.
    fn close(&mut self, until: Option<A>) {
        while let Some(&(last, _)) = self.stack.last() {
            if matches!(until, Some(s) if last >= s) {
                break;
            }
            self.stack.pop();
            let parent = self.stack.last().and_then(|t| t.1);
            if let Some(next) = last.succ() {
                self.emit(next, val_of(parent));
            }
        }
    }
}

fn build_index<A: Addr>(starts: &[A]) -> Vec<u32> {
    let mut index = vec![0u32; INDEX_LEN];
    let mut j = 0usize;
    for (k, slot) in index.iter_mut().enumerate() {
        while j < starts.len() && starts[j].top16() < k {
            j += 1;
        }
        *slot = j as u32;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    fn entry(addr: &str, len: u8, list: u16, line: u32) -> PrefixEntry<u32> {
        PrefixEntry {
            addr: v4(addr),
            line,
            list,
            len,
            _pad: [0; PAD],
        }
    }

    #[test]
    fn longest_prefix_within_a_rule() {
        let t = PrefixTable::build(
            vec![entry("10.0.0.0", 8, 0, 1), entry("10.1.0.0", 16, 0, 2)],
            |_| Some(0),
        );
        let e = |ip| t.lookup(v4(ip)).map(|i| t.entry(i).line);
        assert_eq!(e("10.1.2.3"), Some(2));
        assert_eq!(e("10.2.0.0"), Some(1));
        assert_eq!(e("10.255.255.255"), Some(1));
        assert_eq!(e("11.0.0.0"), None);
        assert_eq!(e("9.255.255.255"), None);
    }

    #[test]
    fn earlier_rule_beats_longer_prefix() {
        // list 0 -> rule 1, list 1 -> rule 0
        let t = PrefixTable::build(
            vec![entry("10.0.0.0", 8, 1, 1), entry("10.1.0.0", 16, 0, 2)],
            |l| Some(if l == 0 { 1 } else { 0 }),
        );
        assert_eq!(t.lookup(v4("10.1.0.1")).map(|i| t.entry(i).list), Some(1));
    }

    #[test]
    fn unused_lists_never_decide() {
        let t = PrefixTable::build(vec![entry("10.0.0.0", 8, 0, 1)], |_| None);
        assert_eq!(t.lookup(v4("10.0.0.1")), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn whole_space_and_edges() {
        let t = PrefixTable::build(
            vec![
                entry("0.0.0.0", 0, 0, 1),
                entry("255.255.255.255", 32, 1, 2),
            ],
            Some,
        );
        assert_eq!(t.lookup(0).map(|i| t.entry(i).line), Some(1));
        assert_eq!(t.lookup(u32::MAX).map(|i| t.entry(i).line), Some(1));
        t.validate(2, |_| true).unwrap();
    }

    #[test]
    fn cover_counts_duplicates_shadowed_and_addresses() {
        let t = PrefixTable::build(
            vec![
                entry("149.154.160.0", 20, 0, 1),
                entry("149.154.164.0", 22, 0, 2),
                entry("149.154.160.0", 20, 0, 3),
                entry("91.108.4.0", 22, 0, 4),
            ],
            |_| Some(0),
        );
        let c = &t.cover(1)[0];
        assert_eq!((c.duplicates, c.shadowed, c.addresses), (1, 1, 4096 + 1024));
    }
}
