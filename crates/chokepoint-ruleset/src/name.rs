//! The name side of a lookup, shared by the compiler and the packet path:
//! wire-name normalisation (no allocation) and the label-suffix hash the
//! domain table is keyed by. The compiler's normaliser (IDNA, validation)
//! lives in `chokepoint-rules` and produces names in the same form.

/// The longest name DNS can carry in presentation form without the final dot.
pub const MAX_NAME_LEN: usize = 253;
/// The longest single label.
pub const MAX_LABEL_LEN: usize = 63;

/// Normalise a name from the wire into `buf` without allocating: ASCII
/// lowercase and one trailing dot stripped. Returns `None` when the name
/// cannot be in any table (too long, empty). Non-ASCII bytes are kept as
/// sent; tables only hold ASCII, so such names simply do not match a domain
/// entry, but keyword rules still see them.
pub fn normalize_wire<'b>(name: &[u8], buf: &'b mut [u8; MAX_NAME_LEN]) -> Option<&'b [u8]> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let out = &mut buf[..name.len()];
    for (o, &b) in out.iter_mut().zip(name) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

const SEED: u64 = 0x243f_6a88_85a3_08d3;
/// Knuth's multiplicative constant (2⁶⁴/φ, odd): after `(h ^ byte) × K`
/// the high bits depend on every byte folded in so far, and the table uses
/// only the high 32 bits (fingerprint and home slot).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// Calls `f(suffix_start, labels, hash)` for the label-boundary suffixes of
/// `name` whose label count `labels` (1 for `com`) has its bit set in
/// `wanted` (bit 63 stands for 64 labels or more), shortest first, and stops
/// once no wanted count is left.
///
/// The hash runs over the name's bytes *in reverse*, so the running state
/// at each dot is already the hash of the suffix to its right: one pass
/// over the name, one multiply per byte, yields every probe key. This
/// measured three times faster than hashing label by label with word-wide
/// loads, whose per-label setup outweighs the saved multiplies on names of
/// 20-30 bytes. [`hash_name`] gives the same value for a whole name.
#[inline]
pub fn for_each_suffix_in(name: &[u8], wanted: u64, mut f: impl FnMut(usize, u32, u64)) {
    if wanted == 0 || name.len() > MAX_NAME_LEN {
        return;
    }
    // Branch-free over the bytes: every byte stores the running state and
    // position under the current label number, and a dot advances the
    // number, so the last store under label k is the state just before the
    // k-th dot from the right. Dots sit at unpredictable places; a branch
    // per dot cost more than the whole hash.
    let mut snap = [0u64; MAX_LABELS + 1];
    let mut start = [0u8; MAX_LABELS + 1];
    let mut h = SEED;
    let mut k = 1usize;
    let mut i = name.len();
    while i > 0 {
        let b = name[i - 1];
        let dot = usize::from(b == b'.');
        snap[k] = h;
        start[k] = i as u8;
        // A valid name has at most MAX_LABELS labels; a hostile one (dots
        // only, from an SNI) is capped so it cannot index past `snap`: no
        // table name has that many labels, so what it then hashes misses.
        k = (k + dot).min(MAX_LABELS);
        h = (h ^ u64::from(b)).wrapping_mul(K);
        i -= 1;
    }
    snap[k] = h;
    start[k] = 0;
    for labels in 1..=k {
        if wanted & label_bit(labels as u32) != 0 {
            f(start[labels] as usize, labels as u32, snap[labels]);
        }
    }
}

/// Most labels a valid name has: `a.a.…` in 253 bytes.
const MAX_LABELS: usize = MAX_NAME_LEN.div_ceil(2);

/// Every label-boundary suffix, shortest first: `f(suffix_start, hash)`.
#[inline]
pub fn for_each_suffix(name: &[u8], mut f: impl FnMut(usize, u64)) {
    for_each_suffix_in(name, u64::MAX, |start, _, h| f(start, h));
}

/// The number of labels of a name (`www.example.com` has 3).
pub fn label_count(name: &[u8]) -> u32 {
    memchr::memchr_iter(b'.', name).count() as u32 + 1
}

/// The bit of [`for_each_suffix_in`]'s `wanted` mask for a label count.
#[inline(always)]
pub fn label_bit(labels: u32) -> u64 {
    1u64 << (labels.clamp(1, 64) - 1)
}

/// The hash of a whole name, as [`for_each_suffix`] computes it.
pub fn hash_name(name: &[u8]) -> u64 {
    let mut last = 0;
    for_each_suffix(name, |_, h| last = h);
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_hashes_equal_whole_name_hashes() {
        let name = b"a.bb.example.com";
        let mut seen = Vec::new();
        for_each_suffix(name, |start, h| seen.push((start, h)));
        let starts: Vec<usize> = seen.iter().map(|s| s.0).collect();
        assert_eq!(starts, vec![13, 5, 2, 0]);
        for (start, h) in seen {
            assert_eq!(h, hash_name(&name[start..]), "suffix at {start}");
        }
        // label-count filtering: only 2- and 4-label suffixes
        let mut some = Vec::new();
        for_each_suffix_in(name, label_bit(2) | label_bit(4), |s, n, _| {
            some.push((s, n))
        });
        assert_eq!(some, vec![(5, 2), (0, 4)]);
        assert_ne!(hash_name(b"ab.c"), hash_name(b"a.bc"));
    }

    #[test]
    fn wire_normalisation_does_not_allocate_and_lowercases() {
        let mut buf = [0u8; MAX_NAME_LEN];
        assert_eq!(normalize_wire(b"T.ME.", &mut buf).unwrap(), b"t.me");
        assert!(normalize_wire(b".", &mut buf).is_none());
        assert!(normalize_wire(&[b'a'; 300], &mut buf).is_none());
    }
}
