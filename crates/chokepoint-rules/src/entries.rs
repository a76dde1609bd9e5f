//! Every list's entries as text, from a compiled ruleset (a policy just
//! compiled or an artifact: the tables hold them all), for `diff` and
//! `check`. Names read as in `explain`: `t.me` (the name and its
//! subdomains), `*.t.me` (subdomains only), `t.me (exact)`; prefixes as
//! `addr/len`; keywords as `keyword t.co`.

use crate::domain_table::{MODE_EXACT, MODE_SUBDOMAINS};
use crate::Ruleset;

/// An entry in words.
pub fn name_entry(name: &[u8], mode: u8) -> String {
    let n = String::from_utf8_lossy(name);
    match mode {
        MODE_SUBDOMAINS => format!("*.{n}"),
        MODE_EXACT => format!("{n} (exact)"),
        _ => n.into_owned(),
    }
}

/// Per list id, its entries in words, sorted.
pub fn by_list(rs: &Ruleset) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new(); rs.meta.lists.len()];
    let d = rs.domain_table();
    for i in d.indices() {
        let e = d.entry(i);
        out[e.list as usize].push(name_entry(d.name(i), e.mode));
    }
    let k = rs.keyword_table();
    for i in 0..k.len() as u32 {
        out[k.entry(i).list as usize]
            .push(format!("keyword {}", String::from_utf8_lossy(k.pattern(i))));
    }
    for e in rs.v4_table().entries() {
        out[e.list as usize].push(format!("{}/{}", std::net::Ipv4Addr::from(e.addr), e.len));
    }
    for e in rs.v6_table().entries() {
        out[e.list as usize].push(format!("{}/{}", std::net::Ipv6Addr::from(e.addr), e.len));
    }
    for v in &mut out {
        v.sort_unstable();
        v.dedup();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_of_entry_reads_back() {
        let rs = crate::compile_str(
            r#"
version: 1
lists:
  a: {format: domains, entries: [t.me, "*.example.org"]}
  h: {format: hosts, entries: ["0.0.0.0 ads.example"]}
  c: {format: cidr, entries: [10.0.0.0/8, "2001:db8::/32", 10.1.0.0/16]}
rules:
  - {name: r, match: {lists: [a, h, c], keywords: [casino]}, action: drop}
"#,
            "p",
            std::path::Path::new("."),
        )
        .unwrap();
        let e = super::by_list(&rs);
        let names: Vec<&str> = rs.meta.lists.iter().map(|l| l.name.as_str()).collect();
        let of = |n: &str| &e[names.iter().position(|x| *x == n).unwrap()];
        assert_eq!(of("a"), &["*.example.org", "t.me"]);
        assert_eq!(of("h"), &["ads.example (exact)"]);
        assert_eq!(of("c"), &["10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32"]);
        assert_eq!(of("r/keywords"), &["keyword casino"]);
    }
}
