//! What else a policy breaks: the names of a list the user brings (a
//! top-sites list) that each blocking rule catches, and the names whose
//! addresses fall in blocked prefixes although no name rule targets them.
//!
//! No network is used: the user supplies the names and, for address rules,
//! how those names resolved (`name addr...` lines, or the JSON lines zdns
//! and massdns write). Each name goes through the same normalisation and
//! the same matchers as traffic does (`match_name` per name trigger,
//! `match_ip` per address). Rule conditions that need a packet (ports,
//! sizes, ECH, client address) are not evaluated: a name counts when a
//! blocking rule's list matches it. Rules that forward (`pass`, `log`,
//! `learn`) and
//! the policy's default are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;

use crate::{Ruleset, Trigger, Verdict};

/// Examples kept per rule.
pub const EXAMPLES: usize = 10;

/// One name a rule catches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameExample {
    /// The name.
    pub name: String,
    /// The list entry that matched it.
    pub entry: String,
    /// `exact`, `suffix`, `subdomains` or `keyword`.
    pub kind: String,
}

/// What one rule catches of the names.
#[derive(Debug, Clone, Serialize)]
pub struct RuleCollateral {
    /// The rule.
    pub rule: String,
    /// Its action.
    pub action: String,
    /// Names it catches (by any of its name triggers).
    pub names: usize,
    /// Of those, caught by a keyword (substring) rather than a domain
    /// entry: the usual source of surprise.
    pub by_keyword: usize,
    /// The first names caught, in file order.
    pub examples: Vec<NameExample>,
}

/// A name whose address an address rule blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressExample {
    /// The name.
    pub name: String,
    /// The address it resolved to.
    pub address: String,
    /// The prefix that matched.
    pub entry: String,
}

/// What one address rule breaks of the resolved names.
#[derive(Debug, Clone, Serialize)]
pub struct AddressCollateral {
    /// The rule.
    pub rule: String,
    /// Its action.
    pub action: String,
    /// Names with an address in its prefixes that no blocking name rule
    /// catches: collateral.
    pub names: usize,
    /// The first of them.
    pub examples: Vec<AddressExample>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Names read.
    pub names_checked: usize,
    /// Lines of the names file that were not names, with why.
    pub names_skipped: Vec<String>,
    /// Names caught by some blocking name rule.
    pub names_blocked: usize,
    /// Per blocking name rule, in policy order (rules that catch none are
    /// listed with 0).
    pub name_rules: Vec<RuleCollateral>,
    /// Resolved names read (0 without a resolutions file).
    pub resolved_names: usize,
    /// Per blocking address rule.
    pub address_rules: Vec<AddressCollateral>,
}

/// A line of a names file: a name, or `rank,name` (the Tranco and Alexa
/// CSVs). Empty lines and `#` comments are skipped.
fn name_of_line(line: &str) -> Option<&str> {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') {
        return None;
    }
    Some(l.rsplit(',').next().unwrap_or(l).trim())
}

/// Read a names file: normalised names in file order, and the lines that
/// were not names.
pub fn read_names(path: &Path) -> std::io::Result<(Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string(path)?;
    let mut names = vec![];
    let mut skipped = vec![];
    for (i, line) in text.lines().enumerate() {
        let Some(raw) = name_of_line(line) else {
            continue;
        };
        match crate::name::normalize(raw) {
            Ok(n) => names.push(n),
            Err(e) => skipped.push(format!("{}:{}: {raw:?}: {e}", path.display(), i + 1)),
        }
    }
    Ok((names, skipped))
}

/// Read a resolutions file: per name, its addresses. Each line is either
/// `name addr [addr...]`, massdns's `name. A addr`, or a JSON object as
/// zdns (`{"name": ..., "data": {"answers": [{"type": "A", "answer": ...}]}}`)
/// or massdns `-o J` (`answers[].data`) write.
pub fn read_resolutions(path: &Path) -> std::io::Result<BTreeMap<String, Vec<IpAddr>>> {
    let text = std::fs::read_to_string(path)?;
    let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, addrs) = if line.starts_with('{') {
            match json_resolution(line) {
                Some(x) => x,
                None => continue,
            }
        } else {
            let mut words = line.split_whitespace();
            let Some(name) = words.next() else { continue };
            let addrs = words
                .filter(|w| !matches!(*w, "A" | "AAAA" | "IN"))
                .filter_map(|w| w.parse().ok())
                .collect();
            (name.to_string(), addrs)
        };
        let Ok(name) = crate::name::normalize(name.trim_end_matches('.')) else {
            continue;
        };
        out.entry(name).or_default().extend(addrs);
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    Ok(out)
}

fn json_resolution(line: &str) -> Option<(String, Vec<IpAddr>)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let name = v["name"].as_str()?.to_string();
    let answers = v["data"]["answers"].as_array()?;
    let addrs = answers
        .iter()
        .filter(|a| matches!(a["type"].as_str(), Some("A" | "AAAA")))
        .filter_map(|a| a["answer"].as_str().or(a["data"].as_str()))
        .filter_map(|s| s.parse().ok())
        .collect();
    Some((name, addrs))
}

/// A rule's catch: the names, how many by keyword, the first few.
#[derive(Default)]
struct RuleHits<'a> {
    names: BTreeSet<&'a str>,
    by_keyword: usize,
    examples: Vec<NameExample>,
}

/// The blocking rules' matches of `name`, one per name trigger that has one.
fn blocking_name_matches<'a>(
    rs: &'a Ruleset,
    name: &'a str,
) -> impl Iterator<Item = crate::Match> + 'a {
    Trigger::NAMES
        .into_iter()
        .filter_map(move |t| rs.match_name(t, name.as_bytes()))
        .filter(move |m| blocks(rs, m.rule))
}

fn blocks(rs: &Ruleset, rule: crate::RuleId) -> bool {
    !matches!(
        Verdict::of(&rs.rule(rule).action),
        Verdict::Pass | Verdict::Log | Verdict::Learn
    )
}

/// Which names each blocking name rule catches, and which resolved names
/// each blocking address rule cuts off though no name rule targets them.
pub fn analyse(
    rs: &Ruleset,
    names: &[String],
    resolutions: &BTreeMap<String, Vec<IpAddr>>,
) -> Report {
    let mut per_rule: BTreeMap<crate::RuleId, RuleHits> = BTreeMap::new();
    let mut blocked_by_name: BTreeSet<&str> = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            continue;
        }
        for m in blocking_name_matches(rs, name) {
            blocked_by_name.insert(name);
            let e = per_rule.entry(m.rule).or_default();
            if e.names.insert(name) {
                let info = rs.describe(m.hit);
                if info.kind == "keyword" {
                    e.by_keyword += 1;
                }
                if e.examples.len() < EXAMPLES {
                    e.examples.push(NameExample {
                        name: name.clone(),
                        entry: info.entry,
                        kind: info.kind.to_string(),
                    });
                }
            }
        }
    }
    let mut name_rules = vec![];
    let mut address_rules = vec![];
    for (i, r) in rs.meta.rules.iter().enumerate() {
        let Some(id) = crate::RuleId::new(i) else {
            break;
        };
        if !blocks(rs, id) {
            continue;
        }
        if r.triggers().any(|t| Trigger::NAMES.contains(&t)) {
            let hits = per_rule.remove(&id).unwrap_or_default();
            name_rules.push(RuleCollateral {
                rule: r.name.clone(),
                action: Verdict::of(&r.action).as_str().to_string(),
                names: hits.names.len(),
                by_keyword: hits.by_keyword,
                examples: hits.examples,
            });
        }
        if r.triggers().any(|t| t == Trigger::Ip) {
            address_rules.push(AddressCollateral {
                rule: r.name.clone(),
                action: Verdict::of(&r.action).as_str().to_string(),
                names: 0,
                examples: vec![],
            });
        }
    }
    for (name, addrs) in resolutions {
        // A name a name rule catches is its target, not collateral.
        if blocked_by_name.contains(name.as_str())
            || blocking_name_matches(rs, name).next().is_some()
        {
            continue;
        }
        let mut counted = BTreeSet::new();
        for a in addrs {
            let Some(m) = rs.match_ip(*a) else { continue };
            if !blocks(rs, m.rule) {
                continue;
            }
            let rule = &rs.rule(m.rule).name;
            let Some(ar) = address_rules.iter_mut().find(|r| &r.rule == rule) else {
                continue;
            };
            if counted.insert(rule.clone()) {
                ar.names += 1;
                if ar.examples.len() < EXAMPLES {
                    ar.examples.push(AddressExample {
                        name: name.clone(),
                        address: a.to_string(),
                        entry: rs.describe(m.hit).entry,
                    });
                }
            }
        }
    }
    Report {
        names_checked: names.len(),
        names_skipped: vec![],
        names_blocked: names
            .iter()
            .filter(|n| blocked_by_name.contains(n.as_str()))
            .count(),
        name_rules,
        resolved_names: resolutions.len(),
        address_rules,
    }
}

/// The report in words.
pub fn text(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} of {} names caught by a blocking name rule",
        r.names_blocked, r.names_checked
    );
    for s in &r.names_skipped {
        let _ = writeln!(o, "  skipped {s}");
    }
    for rc in &r.name_rules {
        let kw = if rc.by_keyword > 0 {
            format!(" ({} by keyword)", rc.by_keyword)
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "\nrule {} ({}): {} names{kw}",
            rc.rule, rc.action, rc.names
        );
        for e in &rc.examples {
            let _ = writeln!(o, "  {:<40} {} {}", e.name, e.kind, e.entry);
        }
    }
    if r.resolved_names > 0 {
        let _ = writeln!(
            o,
            "\n{} resolved names checked against the address rules (names a name rule already catches are left out)",
            r.resolved_names
        );
        for ar in &r.address_rules {
            let _ = writeln!(
                o,
                "\nrule {} ({}): {} names cut off by address alone",
                ar.rule, ar.action, ar.names
            );
            for e in &ar.examples {
                let _ = writeln!(o, "  {:<40} {:<40} in {}", e.name, e.address, e.entry);
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_file_lines() {
        assert_eq!(name_of_line("1,google.com"), Some("google.com"));
        assert_eq!(name_of_line(" t.me "), Some("t.me"));
        assert_eq!(name_of_line("# comment"), None);
        assert_eq!(name_of_line(""), None);
    }

    #[test]
    fn json_resolutions_of_zdns_and_massdns() {
        let z = r#"{"name":"a.example","status":"NOERROR","data":{"answers":[{"type":"A","answer":"52.58.0.1"},{"type":"CNAME","answer":"x"}]}}"#;
        let m = r#"{"name":"b.example.","type":"A","data":{"answers":[{"type":"AAAA","data":"2001:db8::1"}]}}"#;
        assert_eq!(
            json_resolution(z).unwrap(),
            ("a.example".to_string(), vec!["52.58.0.1".parse().unwrap()])
        );
        assert_eq!(
            json_resolution(m).unwrap().1,
            vec!["2001:db8::1".parse::<IpAddr>().unwrap()]
        );
    }
}
