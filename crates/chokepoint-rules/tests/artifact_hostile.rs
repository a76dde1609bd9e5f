//! Hostile artifacts: files whose hash is valid (anyone who can edit a file
//! can recompute an unkeyed BLAKE3) but whose tables lie. Loading must refuse
//! each with a reason, and whatever does load must never make a lookup,
//! `describe`, `record` or `explain` panic.

use std::net::IpAddr;
use std::sync::OnceLock;

use chokepoint_rules::artifact::{from_bytes, to_bytes, ArtifactError, HEADER_LEN};
use chokepoint_rules::ruleset::NO_RULE;
use chokepoint_rules::{compile_default, compile_str, explain, Ruleset, Trigger};
use chokepoint_testkit::craft::{self, rehash};
use proptest::prelude::*;

// Section tags, as artifact.rs writes them.
const SLOTS: u32 = 2;
const NAME_RANGE: u32 = 3;
const KW_ENTRIES: u32 = 6;
const V4_ENTRIES: u32 = 8;
const V4_VALS: u32 = 10;
const V4_INDEX: u32 = 11;
const V6_ENTRIES: u32 = 12;

/// A policy that fills every table: names of every mode, keywords, both
/// address families, a list no rule uses for IP.
const RICH: &str = r#"
version: 1
lists:
  names:
    format: domains
    entries: [telegram.org, t.me, "*.example.com", a.b.c.d.e.f.g.h]
  exact:
    format: domains
    exact: true
    entries: [exact.test, t.me]
  nets:
    format: cidr
    entries: [149.154.160.0/20, 149.154.164.0/22, 10.0.0.0/8, "2001:67c:4e8::/48", "2a0a:f280::/32"]
  unused-nets:
    format: cidr
    entries: [192.0.2.0/24]
rules:
  - name: kw
    match: {keywords: ["t.co", "casino"], on: [tls_sni]}
    action: drop
  - name: names
    match: {list: names}
    action: {reset: {repeat: 2}}
  - name: exact
    match: {list: exact, on: [tls_sni], ech: false}
    action: drop
  - name: nets
    match: {list: nets, on: [ip]}
    action: drop
default: pass
"#;

fn default_bytes() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| to_bytes(&compile_default().unwrap()))
}

fn rich() -> &'static Ruleset {
    static R: OnceLock<Ruleset> = OnceLock::new();
    R.get_or_init(|| compile_str(RICH, "rich.yaml", std::path::Path::new(".")).unwrap())
}

fn rich_bytes() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| to_bytes(rich()))
}

/// `(file offset of the data, element size, count)` of a section.
fn section(b: &[u8], tag: u32) -> (usize, usize, usize) {
    let s = craft::section(b, tag);
    (s.at, s.size, s.count)
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn list_id(rs: &Ruleset, name: &str) -> u16 {
    rs.meta.lists.iter().position(|l| l.name == name).unwrap() as u16
}

#[track_caller]
fn refused(b: Vec<u8>, want: &str) {
    match from_bytes(&rehash(b)) {
        Ok(_) => panic!("a crafted file was accepted (wanted a refusal mentioning `{want}`)"),
        Err(e) => {
            assert!(
                matches!(e, ArtifactError::Inconsistent(_)),
                "unexpected error kind: {e}"
            );
            assert!(
                e.to_string().contains(want),
                "refusal `{e}` does not mention `{want}`"
            );
        }
    }
}

/// The issue's reproduction: prefix entries moved to a list that no IP rule
/// uses. Lookups would find an entry whose list decides nothing.
#[test]
fn prefix_entries_of_a_list_without_an_ip_rule_are_refused() {
    let rs = compile_default().unwrap();
    let names = list_id(&rs, "telegram-domains");
    assert_eq!(
        rs.meta.first_rule[names as usize][Trigger::Ip.index()],
        NO_RULE
    );
    assert_eq!(section(default_bytes(), V4_ENTRIES).1, 20);
    let b = craft::prefixes_on_list(default_bytes(), names);
    refused(b, "no IP rule");
}

#[test]
fn v6_entry_of_a_list_without_an_ip_rule_is_refused() {
    let rs = rich();
    let mut b = rich_bytes().to_vec();
    let (at, size, count) = section(&b, V6_ENTRIES);
    assert!(count > 0);
    for i in 0..count {
        put_u16(&mut b, at + i * size + 20, list_id(rs, "names"));
    }
    refused(b, "no IP rule");
}

#[test]
fn a_range_value_past_the_entries_is_refused() {
    let mut b = default_bytes().to_vec();
    let (at, _, count) = section(&b, V4_VALS);
    let i = (0..count)
        .find(|&i| get_u32(&b, at + 4 * i) != u32::MAX)
        .unwrap();
    put_u32(&mut b, at + 4 * i, 1_000_000);
    refused(b, "past the entries");
}

#[test]
fn a_broken_prefix_index_is_refused() {
    let mut b = default_bytes().to_vec();
    let (at, _, count) = section(&b, V4_INDEX);
    // Past the ranges, and non-monotone.
    put_u32(&mut b, at + 4 * (count / 2), u32::MAX);
    refused(b, "index");
}

#[test]
fn unsorted_prefix_entries_are_refused() {
    let mut b = rich_bytes().to_vec();
    let (at, size, count) = section(&b, V4_ENTRIES);
    assert!(count >= 2);
    // Swap the first two entries (ranges keep pointing at their indices).
    let (x, y) = (
        b[at..at + size].to_vec(),
        b[at + size..at + 2 * size].to_vec(),
    );
    b[at..at + size].copy_from_slice(&y);
    b[at + size..at + 2 * size].copy_from_slice(&x);
    refused(b, "sorted");
}

#[test]
fn prefix_with_host_bits_is_refused() {
    let mut b = rich_bytes().to_vec();
    let (at, _, _) = section(&b, V4_ENTRIES);
    let addr = get_u32(&b, at);
    put_u32(&mut b, at, addr | 1);
    refused(b, "host bits");
}

/// The first occupied slot of the domain table.
fn occupied_slot(b: &[u8]) -> usize {
    let (at, size, count) = section(b, SLOTS);
    (0..count)
        .map(|i| at + i * size)
        .find(|&s| b[s + 8] != 0)
        .unwrap()
}

#[test]
fn a_slot_past_the_name_blob_is_refused() {
    let mut b = rich_bytes().to_vec();
    let s = occupied_slot(&b);
    put_u32(&mut b, s + 4, u32::MAX - 3);
    refused(b, "past the name blob");
}

#[test]
fn a_slot_whose_fingerprint_is_not_its_names_is_refused() {
    let mut b = rich_bytes().to_vec();
    let s = occupied_slot(&b);
    let fp = get_u32(&b, s);
    put_u32(&mut b, s, fp ^ 1);
    refused(b, "fingerprint");
}

#[test]
fn a_slot_before_its_home_is_refused() {
    let mut b = rich_bytes().to_vec();
    let (at, size, count) = section(&b, SLOTS);
    // Move the last occupied slot to slot 0 (before its home, or out of
    // fingerprint order), leaving its place empty.
    let last = (0..count)
        .rev()
        .map(|i| at + i * size)
        .find(|&s| b[s + 8] != 0)
        .unwrap();
    let e = b[last..last + size].to_vec();
    b[last..last + size].fill(0);
    if b[at + 8] != 0 {
        // Slot 0 is taken; put it in the first empty one instead.
        let empty = (0..count)
            .map(|i| at + i * size)
            .find(|&s| b[s + 8] == 0)
            .unwrap();
        b[empty..empty + size].copy_from_slice(&e);
    } else {
        b[at..at + size].copy_from_slice(&e);
    }
    refused(b, "domain");
}

#[test]
fn a_wrong_label_mask_is_refused() {
    let mut b = rich_bytes().to_vec();
    let (at, _, _) = section(&b, NAME_RANGE);
    // Clear the mask: lookups would skip every suffix.
    put_u32(&mut b, at + 4, 0);
    put_u32(&mut b, at + 8, 0);
    refused(b, "label mask");
}

#[test]
fn a_home_range_of_zero_is_refused() {
    let mut b = rich_bytes().to_vec();
    let (at, _, _) = section(&b, NAME_RANGE);
    put_u32(&mut b, at, 0);
    refused(b, "domain");
}

#[test]
fn a_keyword_past_its_blob_is_refused() {
    let mut b = rich_bytes().to_vec();
    let (at, _, count) = section(&b, KW_ENTRIES);
    assert!(count > 0);
    put_u32(&mut b, at, 60_000);
    refused(b, "keyword");
}

/// Metadata edits: re-encoded through `to_bytes`, which does not validate.
#[test]
fn a_first_rule_that_disagrees_with_the_rules_is_refused() {
    let mut rs = rich().clone();
    let nets = list_id(&rs, "nets") as usize;
    let names_rule = rs
        .meta
        .rules
        .iter()
        .position(|r| r.name == "names")
        .unwrap();
    // `names` does not use the list `nets`: decisions would be attributed
    // to the wrong rule.
    rs.meta.first_rule[nets][Trigger::Ip.index()] = names_rule as u16;
    refused(to_bytes(&rs), "first-rule");
}

#[test]
fn a_rule_naming_a_missing_list_is_refused() {
    let mut rs = rich().clone();
    rs.meta.rules[0].lists.push(999);
    refused(to_bytes(&rs), "list that does not exist");
}

#[test]
fn more_lists_than_ids_can_name_are_refused() {
    let mut rs = compile_default().unwrap();
    let l = rs.meta.lists[0].clone();
    rs.meta.lists.resize(70_000, l);
    rs.meta
        .first_rule
        .resize(70_000, [NO_RULE; chokepoint_rules::ruleset::COLUMNS]);
    refused(to_bytes(&rs), "lists");
}

// ---- anything that loads is safe to use ----

fn probe_names(rs: &Ruleset) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        "t.me",
        "web.telegram.org",
        "x.example.com",
        "example.com",
        "exact.test",
        "a.b.c.d.e.f.g.h",
        "z.a.b.c.d.e.f.g.h",
        "reddit.com",
        "casino.t.co.uk",
        "com",
        ".",
        "..",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    // A name of dots only, as a hostile SNI could carry.
    v.push(vec![b'.'; 253]);
    v.push([b"a.".repeat(126), b"a".to_vec()].concat());
    for i in rs.domain_table().indices().take(64) {
        let n = rs.domain_table().name(i).to_vec();
        v.push([b"sub.".as_slice(), &n].concat());
        v.push(n);
    }
    v
}

fn probe_ips(rs: &Ruleset) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = [
        "149.154.167.99",
        "10.1.2.3",
        "192.0.2.1",
        "0.0.0.0",
        "255.255.255.255",
        "2001:67c:4e8::1",
        "::ffff:149.154.167.99",
        "::",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    for e in rs.v4_table().entries().iter().take(64) {
        v.push(IpAddr::V4(e.addr.into()));
        v.push(IpAddr::V4(e.addr.wrapping_sub(1).into()));
    }
    for e in rs.v6_table().entries().iter().take(64) {
        v.push(IpAddr::V6(e.addr.into()));
    }
    v
}

/// Every lookup the packet path and `explain` make, on a loaded ruleset.
fn exercise(rs: &Ruleset) {
    for name in probe_names(rs) {
        for t in Trigger::NAMES {
            for ech in [false, true] {
                if let Some(m) = rs.match_hello(t, ech, &name) {
                    let _ = rs.rule(m.rule);
                    let _ = rs.action(Some(&m));
                    let _ = rs.describe(m.hit);
                }
            }
        }
        for h in rs.name_entries(&name) {
            let _ = rs.describe(h);
        }
        if let Ok(s) = std::str::from_utf8(&name) {
            let _ = explain(rs, s);
        }
    }
    for ip in probe_ips(rs) {
        if let Some(m) = rs.match_ip(ip) {
            let _ = rs.rule(m.rule);
            let _ = rs.describe(m.hit);
        }
        let _ = explain(rs, &ip.to_string());
    }
    let _ = explain(rs, "http://[::1]/");
    for l in 0..rs.meta.lists.len().min(8) {
        let _ = rs.record(l as u16, 1);
    }
}

#[test]
fn the_probes_run_on_honest_files() {
    exercise(&from_bytes(default_bytes()).unwrap());
    exercise(&from_bytes(rich_bytes()).unwrap());
}

fn mutate_and_exercise(base: &[u8], edits: &[(usize, u8)]) {
    let mut b = base.to_vec();
    let body = b.len() - HEADER_LEN;
    for &(at, x) in edits {
        b[HEADER_LEN + at % body] ^= x | 1;
    }
    if let Ok(rs) = from_bytes(&rehash(b)) {
        exercise(&rs);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn mutated_default_artifacts_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)
    ) {
        mutate_and_exercise(default_bytes(), &edits);
    }

    #[test]
    fn mutated_rich_artifacts_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)
    ) {
        mutate_and_exercise(rich_bytes(), &edits);
    }
}

/// `created` sits in the header, outside the hash: an edited date must not
/// load.
#[test]
fn an_edited_creation_time_is_refused() {
    let mut b = default_bytes().to_vec();
    let created = u64::from_le_bytes(b[16..24].try_into().unwrap());
    b[16..24].copy_from_slice(&(created + 86_400 * 365).to_le_bytes());
    refused(b, "created");
}
