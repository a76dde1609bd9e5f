//! The real lists in ../shared/testdata/lists must compile strictly, and
//! explain must cite their records.

use std::path::{Path, PathBuf};

use chokepoint_rules::{compile_str, explain, Ruleset};

/// `../shared/testdata` beside the checkout, or `$CHOKEPOINT_TESTDATA`.
pub fn testdata() -> PathBuf {
    let p = std::env::var_os("CHOKEPOINT_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"));
    assert!(
        p.join("lists").is_dir(),
        "test data not found at {} (set CHOKEPOINT_TESTDATA)",
        p.display()
    );
    p
}

fn real() -> Ruleset {
    let yaml = r#"
version: 1
lists:
  rkn-2014: {format: registry, path: lists/registry-dump-2014-04-22.csv}
  ipban4: {format: cidr, path: lists/reestr_ipban4.txt}
  ipban6: {format: cidr, path: lists/reestr_ipban6.txt}
rules:
  - {name: registry, match: {list: rkn-2014}, action: reset}
  - {name: ipban, match: {lists: [ipban4, ipban6], on: [ip]}, action: drop}
"#;
    compile_str(yaml, "real.yaml", &testdata()).expect("real lists compile strictly")
}

#[test]
fn registry_dump_2014_compiles_with_every_record() {
    let rs = real();
    let l = rs.meta.lists.iter().find(|l| l.name == "rkn-2014").unwrap();
    assert_eq!(l.stats.records, 2150);
    assert_eq!(l.stats.skipped, 0);
    // every record names its organisation in Cyrillic, Windows-1251 here
    assert_eq!((l.stats.lines_utf8, l.stats.lines_windows1251), (0, 2150));
    assert_eq!(l.updated.as_deref(), Some("2014-04-22 11:05:00 +0000"));
    // CP1251 decoded: the organisation comes out as Cyrillic
    let e = explain(&rs, "0chan.hk");
    assert_eq!(e.verdict, "reset");
    assert_eq!(e.decision.as_deref(), Some("9843-URL-on"));
    assert_eq!(e.org.as_deref(), Some("Роскомнадзор"));
    assert!(e
        .source
        .as_deref()
        .unwrap()
        .ends_with("registry-dump-2014-04-22.csv:2"));
    // several IPs in one field: both addresses of line 8 (6iflp.fuckrkn.me)
    for ip in ["188.226.197.161", "188.226.202.246"] {
        assert_eq!(explain(&rs, ip).rule.as_deref(), Some("registry"), "{ip}");
    }
    // the host of a URL
    assert_eq!(
        explain(&rs, "http://7chan.org/h/").entry.as_deref(),
        Some("7chan.org")
    );
    // registry names are exact
    assert_eq!(explain(&rs, "www.0chan.hk").rule, None);
}

#[test]
fn ipban_lists_compile_with_every_entry() {
    let rs = real();
    let get = |n: &str| {
        rs.meta
            .lists
            .iter()
            .find(|l| l.name == n)
            .unwrap()
            .stats
            .clone()
    };
    assert_eq!(get("ipban4").v4_prefixes, 67_286);
    assert_eq!(get("ipban6").v6_prefixes, 3_618);
    assert_eq!(
        explain(&rs, "68.171.224.5").entry.as_deref(),
        Some("68.171.224.0/19")
    );
    assert_eq!(
        explain(&rs, "2001:268:fa03:500:175:129:0:108")
            .rule
            .as_deref(),
        Some("ipban")
    );
    // every listed IPv4 line matches some rule
    let text = std::fs::read_to_string(testdata().join("lists/reestr_ipban4.txt")).unwrap();
    for line in text.lines().take(5000) {
        let addr = line.split('/').next().unwrap();
        assert!(rs.match_ip(addr.parse().unwrap()).is_some(), "{line}");
    }
}

#[test]
fn real_artifact_round_trips() {
    let rs = real();
    let bytes = chokepoint_rules::artifact::to_bytes(&rs);
    let back = chokepoint_rules::artifact::from_bytes(&bytes).unwrap();
    assert_eq!(back, rs);
}
