//! Address ranges of a compiled policy's IP rules: the prefixes of a rule's
//! lists merged into sorted, disjoint ranges, back into the fewest CIDR
//! blocks, and whether one rule's ranges lie inside others'. Used by
//! `export nftables` (one set per rule) and `check` (IP rules that earlier
//! ones cover entirely).

use crate::Ruleset;

/// An inclusive address range; IPv4 addresses in the low 32 bits.
pub type Range = (u128, u128);

/// The mask of the low `host_bits` bits.
fn low_mask(host_bits: u32) -> u128 {
    if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    }
}

/// `addr/len` in a family of `bits` bits, as a range.
pub fn prefix_range(addr: u128, len: u8, bits: u32) -> Range {
    let host = low_mask(bits - u32::from(len).min(bits));
    let lo = addr & !host;
    (lo, lo | host)
}

/// Sort and merge overlapping or adjacent ranges.
pub fn merge(mut v: Vec<Range>) -> Vec<Range> {
    v.sort_unstable();
    let mut out: Vec<Range> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The fewest CIDR blocks `(network, length)` covering `lo..=hi` exactly.
pub fn to_cidrs(lo: u128, hi: u128, bits: u32, out: &mut Vec<(u128, u8)>) {
    let mut lo = lo;
    loop {
        let mut k = if lo == 0 {
            bits
        } else {
            lo.trailing_zeros().min(bits)
        };
        while low_mask(k) > hi - lo {
            k -= 1;
        }
        out.push((lo, (bits - k) as u8));
        let last = lo + low_mask(k);
        if last >= hi {
            return;
        }
        lo = last + 1;
    }
}

/// Addresses in merged, disjoint ranges.
pub fn addresses(v: &[Range]) -> u128 {
    v.iter().fold(0u128, |n, (lo, hi)| {
        n.saturating_add(hi - lo).saturating_add(1)
    })
}

/// Does the union of `outer` (merged) hold every range of `inner` (merged)?
pub fn covers(outer: &[Range], inner: &[Range]) -> bool {
    let mut i = 0;
    inner.iter().all(|&(lo, hi)| {
        while i < outer.len() && outer[i].1 < lo {
            i += 1;
        }
        i < outer.len() && outer[i].0 <= lo && hi <= outer[i].1
    })
}

/// A rule's addresses: the prefixes of its lists, merged, IPv4 and IPv6.
pub fn rule_ranges(rs: &Ruleset, lists: &[u16]) -> (Vec<Range>, Vec<Range>) {
    let v4 = rs
        .v4_table()
        .entries()
        .iter()
        .filter(|e| lists.contains(&e.list))
        .map(|e| prefix_range(u128::from(e.addr), e.len, 32))
        .collect();
    let v6 = rs
        .v6_table()
        .entries()
        .iter()
        .filter(|e| lists.contains(&e.list))
        .map(|e| prefix_range(e.addr, e.len, 128))
        .collect();
    (merge(v4), merge(v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(lo: u128, hi: u128, bits: u32) -> Vec<(u128, u8)> {
        let mut v = Vec::new();
        to_cidrs(lo, hi, bits, &mut v);
        v
    }

    #[test]
    fn ranges_merge_and_split_back_into_the_fewest_blocks() {
        let a = prefix_range(0x0a00_0000, 24, 32);
        assert_eq!(a, (0x0a00_0000, 0x0a00_00ff));
        let b = prefix_range(0x0a00_0100, 24, 32);
        let inside = prefix_range(0x0a00_0080, 25, 32);
        let m = merge(vec![b, inside, a]);
        assert_eq!(m, vec![(0x0a00_0000, 0x0a00_01ff)]);
        assert_eq!(cidrs(m[0].0, m[0].1, 32), vec![(0x0a00_0000, 23)]);
        // 10.0.0.1 .. 10.0.0.6: /32, /31, /31, /32.
        assert_eq!(
            cidrs(0x0a00_0001, 0x0a00_0006, 32),
            vec![
                (0x0a00_0001, 32),
                (0x0a00_0002, 31),
                (0x0a00_0004, 31),
                (0x0a00_0006, 32)
            ]
        );
        assert_eq!(cidrs(0, u32::MAX.into(), 32), vec![(0, 0)]);
        assert_eq!(cidrs(0, u128::MAX, 128), vec![(0, 0)]);
        assert_eq!(cidrs(5, u128::MAX, 128).len(), 127);
        assert_eq!(addresses(&m), 512);
    }

    #[test]
    fn coverage_is_by_address_not_by_prefix() {
        let outer = merge(vec![(0, 9), (10, 19), (30, 39)]);
        assert!(covers(&outer, &[(2, 3), (15, 19), (30, 30)]));
        assert!(!covers(&outer, &[(15, 25)]));
        assert!(!covers(&outer, &[(40, 40)]));
        assert!(covers(&outer, &[]));
        assert!(!covers(&[], &[(1, 1)]));
    }
}
