//! Property tests: each matcher agrees with a naive reference on random
//! lists and queries.

use chokepoint_rules::lists::{MODE_EXACT, MODE_SUBDOMAINS, MODE_SUFFIX};
use chokepoint_rules::prefix_table::{Addr, PrefixEntry, PrefixTable, PAD};
use chokepoint_rules::{compile_str, Hit, Trigger};
use proptest::prelude::*;

/// Names over a tiny alphabet so that suffix relations are common.
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "ab", "ba", "x", "xa"]),
        1..5,
    )
    .prop_map(|v| v.join("."))
}

/// (list 0..4, name, written with `*.`)
fn entry() -> impl Strategy<Value = (usize, String, bool)> {
    (0usize..4, name(), prop::bool::weighted(0.3))
}

const LISTS: usize = 4;

/// Lists 0 and 2 are `exact: true`; rule order is a permutation of lists.
fn policy(
    entries: &[(usize, String, bool)],
    order: &[usize],
    keywords: &[(usize, String)],
) -> String {
    let mut y = String::from("version: 1\nlists:\n");
    for l in 0..LISTS {
        let items: Vec<String> = entries
            .iter()
            .filter(|e| e.0 == l)
            .map(|e| format!("\"{}{}\"", if e.2 { "*." } else { "" }, e.1))
            .collect();
        y += &format!(
            "  l{l}: {{format: domains, exact: {}, entries: [{}]}}\n",
            l % 2 == 0,
            items.join(", ")
        );
        let kws: Vec<String> = keywords
            .iter()
            .filter(|k| k.0 == l)
            .map(|k| format!("\"{}\"", k.1))
            .collect();
        y += &format!(
            "  k{l}: {{format: keywords, entries: [{}]}}\n",
            kws.join(", ")
        );
    }
    y += "rules:\n";
    for &l in order {
        y += &format!("  - {{name: r{l}, match: {{lists: [l{l}, k{l}]}}, action: drop}}\n");
    }
    y
}

fn mode_of(list: usize, wild: bool) -> u8 {
    if wild {
        MODE_SUBDOMAINS
    } else if list % 2 == 0 {
        MODE_EXACT
    } else {
        MODE_SUFFIX
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn domain_and_keyword_matching_agree_with_naive(
        entries in prop::collection::vec(entry(), 0..40),
        keywords in prop::collection::vec((0usize..LISTS, prop::sample::select(vec!["a.b", "xa", "b.x", "ab.a"])), 0..3),
        order in Just((0..LISTS).collect::<Vec<_>>()).prop_shuffle(),
        queries in prop::collection::vec(name(), 1..30),
    ) {
        let kw: Vec<(usize, String)> = keywords.iter().map(|k| (k.0, k.1.to_string())).collect();
        let rs = compile_str(&policy(&entries, &order, &kw), "prop.yaml", std::path::Path::new(".")).unwrap();
        let rule_of = |list: usize| order.iter().position(|&l| l == list).unwrap() as u16;
        for q in &queries {
            let mut want: Option<u16> = None;
            for (l, n, wild) in &entries {
                let mode = mode_of(*l, *wild);
                let hit = (q == n && mode & MODE_EXACT != 0)
                    || (q.ends_with(&format!(".{n}")) && mode & MODE_SUBDOMAINS != 0);
                if hit {
                    want = Some(want.map_or(rule_of(*l), |w| w.min(rule_of(*l))));
                }
            }
            for (l, k) in &kw {
                if q.contains(k.as_str()) {
                    want = Some(want.map_or(rule_of(*l), |w| w.min(rule_of(*l))));
                }
            }
            let got = rs.match_name(Trigger::TlsSni, q.as_bytes());
            prop_assert_eq!(got.map(|m| m.rule.stored()), want, "query {}", q);
            if let Some(m) = got {
                // the reported entry really matches the query and belongs to the rule
                let info = rs.describe(m.hit);
                prop_assert_eq!(&info.list[1..], &format!("{}", order[m.rule.index()]));
                if let Hit::Name(_) = m.hit {
                    let e = info.entry.trim_start_matches("*.");
                    prop_assert!(q == e || q.ends_with(&format!(".{e}")), "{} vs {}", q, e);
                }
            }
        }
    }
}

fn naive<A: Addr + std::ops::Shr<u32, Output = A>>(
    entries: &[PrefixEntry<A>],
    rule_of: &dyn Fn(u16) -> Option<u16>,
    addr: A,
    covers: impl Fn(&PrefixEntry<A>, A) -> bool,
) -> Option<(u16, u8)> {
    entries
        .iter()
        .filter(|e| covers(e, addr))
        .filter_map(|e| rule_of(e.list).map(|r| (r, e.len)))
        .min_by_key(|&(r, len)| (r, std::cmp::Reverse(len)))
}

fn rules_for(order: &[u16]) -> impl Fn(u16) -> Option<u16> + '_ {
    // list 3 is used by no rule
    move |l| {
        if l == 3 {
            None
        } else {
            order.iter().position(|&x| x == l).map(|p| p as u16)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn ipv4_prefix_matching_agrees_with_naive(
        raw in prop::collection::vec((any::<u32>(), 0u8..=32, 0u16..4), 0..60),
        order in Just(vec![0u16, 1, 2]).prop_shuffle(),
        probes in prop::collection::vec(any::<u32>(), 20),
    ) {
        // Cluster addresses into few /8s so prefixes nest often.
        let entries: Vec<PrefixEntry<u32>> = raw.iter().map(|&(a, len, list)| {
            let a = (a & 0x030f_ffff) | 0x0a00_0000;
            let addr = if len == 0 { 0 } else { a & (u32::MAX << (32 - u32::from(len))) };
            PrefixEntry { addr, line: 0, list, len, _pad: [0; PAD] }
        }).collect();
        let rule_of = rules_for(&order);
        let t = PrefixTable::build(entries.clone(), &rule_of);
        let covers = |e: &PrefixEntry<u32>, a: u32| e.len == 0 || (a ^ e.addr) >> (32 - u32::from(e.len)) == 0;
        let mut qs: Vec<u32> = probes.iter().map(|p| (p & 0x030f_ffff) | 0x0a00_0000).collect();
        for e in &entries {
            qs.push(e.addr);
            qs.push(e.addr.last(e.len));
            qs.push(e.addr.wrapping_sub(1));
            qs.push(e.addr.last(e.len).wrapping_add(1));
        }
        for q in qs {
            let got = t.lookup(q).map(|i| {
                let e = t.entry(i);
                prop_assert!(covers(e, q));
                Ok((rule_of(e.list).unwrap(), e.len))
            }).transpose()?;
            prop_assert_eq!(got, naive(&entries, &rule_of, q, covers), "addr {:#x}", q);
        }
    }

    #[test]
    fn ipv6_prefix_matching_agrees_with_naive(
        raw in prop::collection::vec((any::<u128>(), 0u8..=128, 0u16..4), 0..40),
        order in Just(vec![0u16, 1, 2]).prop_shuffle(),
        probes in prop::collection::vec(any::<u128>(), 20),
    ) {
        let squash = |a: u128| (a & 0x0000_00ff_0000_0000_0000_0000_0000_ffff) | (0x2001u128 << 112);
        let entries: Vec<PrefixEntry<u128>> = raw.iter().map(|&(a, len, list)| {
            let a = squash(a);
            let addr = if len == 0 { 0 } else { a & (u128::MAX << (128 - u32::from(len))) };
            PrefixEntry { addr, line: 0, list, len, _pad: [0; PAD] }
        }).collect();
        let rule_of = rules_for(&order);
        let t = PrefixTable::build(entries.clone(), &rule_of);
        let covers = |e: &PrefixEntry<u128>, a: u128| e.len == 0 || (a ^ e.addr) >> (128 - u32::from(e.len)) == 0;
        let mut qs: Vec<u128> = probes.iter().map(|&p| squash(p)).collect();
        for e in &entries {
            qs.push(e.addr);
            qs.push(e.addr.last(e.len));
            qs.push(e.addr.wrapping_sub(1));
            qs.push(e.addr.last(e.len).wrapping_add(1));
        }
        for q in qs {
            let got = t.lookup(q).map(|i| (rule_of(t.entry(i).list).unwrap(), t.entry(i).len));
            prop_assert_eq!(got, naive(&entries, &rule_of, q, covers), "addr {:#x}", q);
        }
    }
}
