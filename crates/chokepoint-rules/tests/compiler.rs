//! Compiler behaviour on the fixtures in tests/data and on inline policies.

use std::path::{Path, PathBuf};

use chokepoint_rules::{compile_file, compile_str, explain, Action, Error, Ruleset, Trigger};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> Ruleset {
    compile_file(&repo().join("tests/data/fixtures.yaml")).expect("fixtures compile")
}

fn inline(yaml: &str) -> Result<Ruleset, Error> {
    compile_str(yaml, "inline.yaml", &repo().join("tests/data"))
}

/// (verdict, rule, entry) for a query.
fn why(rs: &Ruleset, q: &str) -> (String, Option<String>, Option<String>) {
    let e = explain(rs, q);
    assert_eq!(e.error, None, "{q}");
    (e.verdict, e.rule, e.entry)
}

fn rule_for(rs: &Ruleset, t: Trigger, name: &str) -> Option<String> {
    rs.match_name(t, name.as_bytes())
        .map(|m| rs.rule(m.rule).name.clone())
}

#[test]
fn domains_format_spellings() {
    let rs = fixtures();
    let t = Trigger::HttpHost;
    // plain entry: name and subdomains
    assert_eq!(rule_for(&rs, t, "example.com").as_deref(), Some("doms"));
    assert_eq!(rule_for(&rs, t, "a.b.example.com").as_deref(), Some("doms"));
    // never a match that is not at a label boundary
    assert_eq!(rule_for(&rs, t, "notexample.com"), None);
    assert_eq!(rule_for(&rs, t, "xexample.com"), None);
    assert_eq!(rule_for(&rs, t, "example.com.evil"), None);
    // *.x: subdomains only
    assert_eq!(rule_for(&rs, t, "wild.example.org"), None);
    assert_eq!(
        rule_for(&rs, t, "a.wild.example.org").as_deref(),
        Some("doms")
    );
    // .x (dnsmasq): same as plain
    assert_eq!(
        rule_for(&rs, t, "dnsmasq.example.net").as_deref(),
        Some("doms")
    );
    assert_eq!(
        rule_for(&rs, t, "x.dnsmasq.example.net").as_deref(),
        Some("doms")
    );
    // case and trailing dot normalised at compile time
    assert_eq!(
        rule_for(&rs, t, "exact-case.example").as_deref(),
        Some("doms")
    );
    // IDN stored as punycode
    assert_eq!(
        rule_for(&rs, t, "xn--e1afmkfd.xn--p1ai").as_deref(),
        Some("doms")
    );
    // exact: true lists match the name only
    assert_eq!(
        rule_for(&rs, t, "exact-only.example").as_deref(),
        Some("doms")
    );
    assert_eq!(rule_for(&rs, t, "www.exact-only.example"), None);
}

#[test]
fn duplicates_and_shadowed_are_counted() {
    let rs = fixtures();
    let list = |n: &str| {
        rs.meta
            .lists
            .iter()
            .find(|l| l.name == n)
            .unwrap()
            .stats
            .clone()
    };
    let d = list("doms");
    assert_eq!(d.duplicates, 1, "example.com twice");
    assert_eq!(d.shadowed, 1, "sub.example.com under example.com");
    assert_eq!(
        (d.names_suffix, d.names_subdomains, d.names_exact),
        (5, 1, 0)
    );
    let h = list("hosts");
    assert_eq!(h.duplicates, 1, "Ads.Example.COM");
    assert_eq!(h.ignored, 3, "localhost, ip6-localhost, ip6-loopback");
    assert_eq!(h.names_exact, 3);
    let n = list("nets");
    assert_eq!((n.v4_prefixes, n.v6_prefixes), (6, 2));
    assert_eq!((n.duplicates, n.shadowed), (1, 1));
    assert_eq!(n.v4_addresses, 4096 + 1024 + 1 + 256);
}

#[test]
fn hosts_names_are_exact_and_scoped_to_their_triggers() {
    let rs = fixtures();
    assert_eq!(
        rule_for(&rs, Trigger::DnsQname, "ads.tracker.test").as_deref(),
        Some("hosts-dns")
    );
    assert_eq!(rule_for(&rs, Trigger::DnsQname, "x.ads.tracker.test"), None);
    // the hosts rule is on dns_qname only: a TLS SNI of the name passes
    assert_eq!(rule_for(&rs, Trigger::TlsSni, "ads.tracker.test"), None);
    assert_eq!(
        rule_for(&rs, Trigger::DnsQname, "tab.tracker.test").as_deref(),
        Some("hosts-dns")
    );
    assert_eq!(
        rs.rule(
            rs.match_name(Trigger::DnsQname, b"ads.tracker.test")
                .unwrap()
                .rule
        )
        .action,
        Action::Dns {
            answer: chokepoint_rules::DnsAnswer::Sinkhole("198.18.0.99".parse().unwrap()),
            ttl: 60
        }
    );
}

#[test]
fn cidr_longest_prefix_and_mapped_addresses() {
    let rs = fixtures();
    assert_eq!(
        why(&rs, "149.154.167.99").2.as_deref(),
        Some("149.154.164.0/22")
    );
    assert_eq!(
        why(&rs, "149.154.161.1").2.as_deref(),
        Some("149.154.160.0/20")
    );
    assert_eq!(why(&rs, "203.0.113.7").2.as_deref(), Some("203.0.113.7/32"));
    assert_eq!(why(&rs, "203.0.113.8").1, None);
    assert_eq!(
        why(&rs, "198.51.100.200").2.as_deref(),
        Some("198.51.100.0/24")
    );
    assert_eq!(
        why(&rs, "::ffff:149.154.161.1").2.as_deref(),
        Some("149.154.160.0/20")
    );
    assert_eq!(
        why(&rs, "2001:67c:4e8:1::5").2.as_deref(),
        Some("2001:67c:4e8::/48")
    );
    assert_eq!(
        why(&rs, "2001:db8::1").2.as_deref(),
        Some("2001:db8::1/128")
    );
    assert_eq!(why(&rs, "2001:db8::2").1, None);
}

#[test]
fn registry_quirks() {
    let rs = fixtures();
    let reg = rs.meta.lists.iter().find(|l| l.name == "rkn").unwrap();
    assert_eq!(reg.updated.as_deref(), Some("2018-04-16 12:00:00 +0300"));
    assert_eq!(reg.stats.records, 4);
    // several IPs in one field, IPv6, CIDR
    for ip in [
        "149.154.167.50",
        "2001:67c:4e8:f002::a",
        "91.108.57.1",
        "192.0.2.7",
    ] {
        assert!(rs.match_ip(ip.parse().unwrap()).is_some(), "{ip}");
    }
    // rkn-telegram (decision filter, widened to suffixes) comes first for telegram.org
    let e = explain(&rs, "telegram.org");
    assert_eq!(e.rule.as_deref(), Some("rkn-telegram"));
    assert_eq!(e.decision.as_deref(), Some("2971-18"));
    assert_eq!(e.decision_date.as_deref(), Some("2018-04-13"));
    assert_eq!(
        e.org.as_deref(),
        Some("Суд; Таганский \"районный\""),
        "quoted org with ; and doubled quotes"
    );
    assert!(e.source.unwrap().ends_with("registry.csv:2"));
    // Cyrillic IDN in the domain field
    assert_eq!(
        explain(&rs, "президент.рф").rule.as_deref(),
        Some("rkn-telegram")
    );
    // URL hosts are entries; a URL containing `|` and `;` was split right
    assert_eq!(
        explain(&rs, "web.telegram.org").rule.as_deref(),
        Some("extra-first")
    );
    assert_eq!(
        explain(&rs, "only-url.example").rule.as_deref(),
        Some("rkn")
    );
    // in the registry a plain name is exact, `*.` its subdomains
    assert_eq!(
        rule_for(&rs, Trigger::HttpHost, "plain.example").as_deref(),
        Some("rkn")
    );
    assert_eq!(rule_for(&rs, Trigger::HttpHost, "www.plain.example"), None);
    assert_eq!(rule_for(&rs, Trigger::HttpHost, "mask.example"), None);
    assert_eq!(
        rule_for(&rs, Trigger::HttpHost, "a.mask.example").as_deref(),
        Some("rkn")
    );
    // the decision filter keeps only 2971-18 in rkn-telegram
    let tg = rs
        .meta
        .lists
        .iter()
        .find(|l| l.name == "rkn-telegram")
        .unwrap();
    assert_eq!((tg.stats.records, tg.stats.records_filtered), (1, 3));
    let e = explain(&rs, "192.0.2.7");
    assert_eq!(
        (e.rule.as_deref(), e.decision.as_deref()),
        (Some("rkn"), Some("27-31-2015/Ид2971-15"))
    );
}

#[test]
fn first_matching_rule_wins_in_policy_order() {
    let rs = fixtures();
    // t.me is in `extra` (rule 0, on tls_sni/dns_qname) and in the registry's URL `http://t.me/a|b;c`
    assert_eq!(
        rule_for(&rs, Trigger::TlsSni, "t.me").as_deref(),
        Some("extra-first")
    );
    // extra-first is not on http_host, so the next rule that lists t.me decides
    assert_eq!(
        rule_for(&rs, Trigger::HttpHost, "t.me").as_deref(),
        Some("rkn-telegram")
    );
}

#[test]
fn keywords_only_when_asked_and_reproduce_2021() {
    let rs = fixtures();
    // *t.co*: reddit.com and microsoft.com caught, as in March 2021
    assert_eq!(
        rule_for(&rs, Trigger::TlsSni, "reddit.com").as_deref(),
        Some("t-co-2021")
    );
    assert_eq!(
        rule_for(&rs, Trigger::TlsSni, "www.microsoft.com").as_deref(),
        Some("t-co-2021")
    );
    assert_eq!(
        rule_for(&rs, Trigger::TlsSni, "t.co").as_deref(),
        Some("t-co-2021")
    );
    // the keyword rule is on tls_sni only
    assert_eq!(rule_for(&rs, Trigger::DnsQname, "reddit.com"), None);
    // a domain entry `t.co` never means a substring
    let rs = inline("version: 1\nlists: {d: {format: domains, entries: [t.co]}}\nrules: [{name: d, match: {list: d}, action: drop}]\n").unwrap();
    assert_eq!(rule_for(&rs, Trigger::TlsSni, "reddit.com"), None);
    assert_eq!(rule_for(&rs, Trigger::TlsSni, "microsoft.com"), None);
    assert_eq!(
        rule_for(&rs, Trigger::TlsSni, "x.t.co").as_deref(),
        Some("d")
    );
    // inline keywords form
    let rs = inline("version: 1\nrules: [{name: k, match: {keywords: [T.CO], on: [tls_sni]}, action: {throttle: {kbps: 140}}}]\n").unwrap();
    assert_eq!(
        rule_for(&rs, Trigger::TlsSni, "reddit.com").as_deref(),
        Some("k")
    );
}

#[test]
fn bad_lines_name_file_line_and_reason() {
    let yaml = "version: 1\nlists: {b: {format: domains, path: lists/bad-domains.txt}}\nrules: [{name: b, match: {list: b}, action: drop}]\n";
    let err = inline(yaml).unwrap_err().to_string();
    assert!(err.contains("bad-domains.txt:3:"), "{err}");
    assert!(err.contains("bad domain `bad domain.example`"), "{err}");
    assert!(err.contains("not allowed"), "{err}");
    // skip mode: both bad lines counted, reported, good lines kept
    let rs = inline(&yaml.replace(
        "path: lists/bad-domains.txt",
        "path: lists/bad-domains.txt, on_error: skip",
    ))
    .unwrap();
    let s = &rs.meta.lists[0].stats;
    assert_eq!(s.skipped, 2);
    assert_eq!(s.first_errors.len(), 2);
    assert!(
        s.first_errors[1].contains("bad-domains.txt:4: bad domain `a..b.example`"),
        "{:?}",
        s.first_errors
    );
    assert_eq!(s.names_suffix, 2);
}

#[test]
fn policy_errors_are_specific() {
    let cases = [
        ("version: 1\nrules: [{name: a, match: {list: nope}, action: drop}]\n", "uses list `nope`, which is not defined"),
        ("version: 1\nlists: {c: {format: cidr, entries: [10.0.0.0/8]}}\nrules: [{name: a, match: {list: c, on: [tls_sni]}, action: drop}]\n", "matches on tls_sni, but none of its lists can"),
        ("version: 1\nlists: {c: {format: cidr, entries: [10.0.0.1/8]}}\n", "host bits set"),
        ("version: 1\nlists: {c: {format: cidr}}\n", "neither `path` nor `entries`"),
        ("version: 1\nlists: {c: {format: domains, entries: [a.b], decisions: [x]}}\n", "only apply to `format: registry`"),
        ("version: 1\nlists: {c: {format: domains, entries: [a.b], colour: red}}\n", "unknown field `colour`"),
        ("version: 1\nlists: {c: {format: csv, entries: []}}\n", "unknown variant `csv`"),
        ("version: 1\nlists: {c: {format: domains, path: no/such/file.txt}}\n", "No such file"),
        ("version: 1\nlists: {d: {format: domains, entries: [a.b]}}\nrules: [{name: a, match: {list: d}, action: drop}, {name: a, match: {list: d}, action: drop}]\n", "rule name `a` is used by rules[0] and rules[1]"),
    ];
    for (yaml, want) in cases {
        let err = inline(yaml).unwrap_err().to_string();
        assert!(err.contains(want), "want `{want}` in `{err}`");
    }
}

#[test]
fn default_policy_models_april_2018() {
    let rs = chokepoint_rules::compile_default().unwrap();
    assert_eq!(why(&rs, "web.telegram.org").0, "reset");
    assert_eq!(why(&rs, "149.154.167.99").0, "drop");
    assert_eq!(why(&rs, "2001:67c:4e8::1").0, "drop");
    assert_eq!(why(&rs, "example.com").0, "pass");
    let t = &rs.meta.totals;
    // the 2018 stage covered some 16-18 million IPv4 addresses
    assert!(
        (15_000_000..19_000_000).contains(&t.v4_addresses),
        "{}",
        t.v4_addresses
    );
}

#[test]
fn long_names_with_many_labels_match() {
    // More labels than the lookup prefetches in one batch (16), entries at
    // both ends of the label range.
    let long: String = (0..40)
        .map(|i| format!("l{i}"))
        .collect::<Vec<_>>()
        .join(".")
        + ".deep.example";
    let yaml = format!(
        "version: 1\nlists: {{d: {{format: domains, entries: [deep.example]}}, e: {{format: domains, exact: true, entries: ['{long}']}}}}\nrules: [{{name: exact, match: {{list: e}}, action: drop}}, {{name: suffix, match: {{list: d}}, action: drop}}]\n"
    );
    let rs = inline(&yaml).unwrap();
    assert_eq!(
        rule_for(&rs, Trigger::TlsSni, &long).as_deref(),
        Some("exact")
    );
    assert_eq!(
        rule_for(&rs, Trigger::TlsSni, &format!("x.{long}")).as_deref(),
        Some("suffix")
    );
    assert_eq!(
        rule_for(&rs, Trigger::TlsSni, "deep.example").as_deref(),
        Some("suffix")
    );
    assert_eq!(rule_for(&rs, Trigger::TlsSni, "example"), None);
}

#[test]
fn keyword_mask_form_matches_and_empty_keywords_are_refused() {
    // The registry writes the 2021 rule as the mask `*t.co*`.
    let rs = inline("version: 1\nrules: [{name: k, match: {keywords: ['*t.co*'], on: [tls_sni]}, action: drop}]\n").unwrap();
    assert_eq!(
        rule_for(&rs, Trigger::TlsSni, "reddit.com").as_deref(),
        Some("k")
    );
    let err = inline(
        "version: 1\nrules: [{name: k, match: {keywords: [''], on: [tls_sni]}, action: drop}]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("keywords[0] is empty"), "{err}");
    let err = inline("version: 1\nrules: [{name: k, match: {keywords: ['a*b']}, action: drop}]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`*` inside"), "{err}");
    // Non-ASCII keywords are normalised as names are: punycode.
    let rs = inline("version: 1\nrules: [{name: k, match: {keywords: [Пример], on: [tls_sni]}, action: drop}]\n").unwrap();
    assert_eq!(
        rule_for(&rs, Trigger::TlsSni, "www.xn--e1afmkfd.xn--p1ai").as_deref(),
        Some("k")
    );
}

#[test]
fn explain_says_when_a_verdict_depends_on_ech() {
    let rs = inline("version: 1\nlists: {cf: {format: domains, entries: [cloudflare-ech.com]}}\nrules: [{name: ech-2024, match: {list: cf, on: [tls_sni, quic_sni], ech: true}, action: drop}]\n").unwrap();
    let e = explain(&rs, "cloudflare-ech.com");
    let split = e.ech.expect("the verdict depends on ECH");
    assert_eq!(split.with_ech.rule.as_deref(), Some("ech-2024"));
    assert_eq!(split.with_ech.verdict, "drop");
    assert_eq!(
        (split.without_ech.rule, split.without_ech.verdict.as_str()),
        (None, "pass")
    );
    // A rule without an ECH condition: no split.
    let rs = inline("version: 1\nlists: {d: {format: domains, entries: [t.me]}}\nrules: [{name: r, match: {list: d}, action: reset}]\n").unwrap();
    assert_eq!(explain(&rs, "t.me").ech, None);
}

#[test]
fn explain_refuses_an_unterminated_ipv6_literal() {
    let rs = chokepoint_rules::compile_default().unwrap();
    for q in ["http://[::1", "http://[::1/x", "https://[2001:67c:4e8::1"] {
        let ex = chokepoint_rules::explain(&rs, q);
        assert!(
            ex.error
                .as_deref()
                .is_some_and(|e| e.contains("unterminated")),
            "{q}: {ex:?}"
        );
        assert_eq!(ex.rule, None, "{q}");
    }
    let ok = chokepoint_rules::explain(&rs, "http://[2001:67c:4e8::1]:443/");
    assert_eq!(ok.error, None);
    assert_eq!(ok.rule.as_deref(), Some("telegram-ips"));
    assert!(chokepoint_rules::explain(&rs, "http://[::1]x/")
        .error
        .is_some());
}
