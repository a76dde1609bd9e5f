//! `chokepoint diff OLD NEW`: what changes between two policies or
//! artifacts, per rule: entries added and removed in each of its lists,
//! and changes of action, triggers, lists and conditions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use chokepoint_rules::ruleset::RuleMeta;
use chokepoint_rules::Ruleset;
use serde::Serialize;

use super::print_out;

#[derive(clap::Args)]
pub struct Args {
    /// The policy in force: a policy YAML or a compiled artifact.
    old: PathBuf,
    /// The candidate: a policy YAML or a compiled artifact.
    new: PathBuf,
    /// One JSON object with every entry added and removed.
    #[arg(long)]
    json: bool,
    /// Entries shown per list and direction in text (all in JSON).
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

#[derive(Serialize)]
struct Diff {
    old: Side,
    new: Side,
    changed: bool,
    rules: Vec<RuleDiff>,
    /// Whole-policy settings that changed (`default`, `default_at`, profile keys).
    settings: Vec<String>,
    entries_added: usize,
    entries_removed: usize,
}

#[derive(Serialize)]
struct Side {
    path: String,
    policy: String,
    policy_blake3: String,
    created_unix: u64,
}

#[derive(Serialize)]
struct RuleDiff {
    rule: String,
    /// `added`, `removed`, `changed` or `entries` (only list entries changed).
    status: &'static str,
    changes: Vec<String>,
    lists: Vec<ListDiff>,
}

#[derive(Serialize)]
struct ListDiff {
    list: String,
    added: Vec<String>,
    removed: Vec<String>,
}

/// A rule's settings in words, list ids replaced by list names, so two
/// artifacts that number their lists differently compare equal.
fn settings(rs: &Ruleset, r: &RuleMeta) -> Vec<(&'static str, String)> {
    let name = |l: &u16| rs.meta.lists[*l as usize].name.clone();
    let mut cond = serde_json::to_value(&r.cond).unwrap_or_default();
    if let Some(m) = cond.as_object_mut() {
        for k in ["dst_lists", "src_lists", "except"] {
            if let Some(v) = m.get_mut(k) {
                let names: Vec<String> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_u64())
                    .filter(|&l| (l as usize) < rs.meta.lists.len())
                    .map(|l| name(&(l as u16)))
                    .collect();
                *v = serde_json::json!(names);
            }
        }
    }
    vec![
        ("action", r.action.to_string()),
        (
            "on",
            r.triggers()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "lists",
            r.lists.iter().map(name).collect::<Vec<_>>().join(", "),
        ),
        ("ech", format!("{:?}", r.ech)),
        ("conditions", cond.to_string()),
        ("residual", r.residual.as_ref().map_or("none".into(), js)),
    ]
}

/// Compact JSON of a value, for comparison and display.
fn js<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Entries of each list, by list name.
fn entries(rs: &Ruleset) -> BTreeMap<String, BTreeSet<String>> {
    chokepoint_rules::entries::by_list(rs)
        .into_iter()
        .zip(&rs.meta.lists)
        .map(|(e, l)| (l.name.clone(), e.into_iter().collect()))
        .collect()
}

fn side(path: &std::path::Path, rs: &Ruleset) -> Side {
    Side {
        path: path.display().to_string(),
        policy: rs.meta.policy.path.clone(),
        policy_blake3: rs.meta.policy.blake3.clone(),
        created_unix: rs.meta.created_unix,
    }
}

fn compare(old: &Ruleset, new: &Ruleset, paths: (&std::path::Path, &std::path::Path)) -> Diff {
    let (eo, en) = (entries(old), entries(new));
    let empty = BTreeSet::new();
    let find = |rs: &'_ Ruleset, n: &str| rs.meta.rules.iter().find(|r| r.name == n).cloned();
    let mut names: Vec<String> = new.meta.rules.iter().map(|r| r.name.clone()).collect();
    names.extend(
        old.meta
            .rules
            .iter()
            .filter(|r| find(new, &r.name).is_none())
            .map(|r| r.name.clone()),
    );
    let mut rules = Vec::new();
    let (mut added_n, mut removed_n) = (0, 0);
    for n in names {
        let (ro, rn) = (find(old, &n), find(new, &n));
        let list_names = |rs: &Ruleset, r: &Option<RuleMeta>| -> Vec<String> {
            r.iter()
                .flat_map(|r| {
                    r.lists
                        .iter()
                        .map(|&l| rs.meta.lists[l as usize].name.clone())
                })
                .collect()
        };
        let (lo, ln) = (list_names(old, &ro), list_names(new, &rn));
        let mut all: Vec<String> = ln.clone();
        all.extend(lo.iter().filter(|l| !ln.contains(l)).cloned());
        let mut lists = Vec::new();
        for l in all {
            let a = if lo.contains(&l) {
                eo.get(&l).unwrap_or(&empty)
            } else {
                &empty
            };
            let b = if ln.contains(&l) {
                en.get(&l).unwrap_or(&empty)
            } else {
                &empty
            };
            let added: Vec<String> = b.difference(a).cloned().collect();
            let removed: Vec<String> = a.difference(b).cloned().collect();
            if !added.is_empty() || !removed.is_empty() {
                added_n += added.len();
                removed_n += removed.len();
                lists.push(ListDiff {
                    list: l,
                    added,
                    removed,
                });
            }
        }
        let (status, changes) = match (&ro, &rn) {
            (None, Some(r)) => ("added", vec![describe(new, r)]),
            (Some(r), None) => ("removed", vec![describe(old, r)]),
            (Some(a), Some(b)) => {
                let (sa, sb) = (settings(old, a), settings(new, b));
                let mut changes: Vec<String> = sa
                    .iter()
                    .zip(&sb)
                    .filter(|(x, y)| x.1 != y.1)
                    .map(|(x, y)| format!("{}: {} -> {}", x.0, x.1, y.1))
                    .collect();
                let pa = old.meta.rules.iter().position(|r| r.name == n);
                let pb = new.meta.rules.iter().position(|r| r.name == n);
                if pa != pb {
                    changes.push(format!(
                        "position: {} -> {}",
                        pa.map_or(0, |p| p + 1),
                        pb.map_or(0, |p| p + 1)
                    ));
                }
                match (changes.is_empty(), lists.is_empty()) {
                    (true, true) => continue,
                    (true, false) => ("entries", changes),
                    _ => ("changed", changes),
                }
            }
            (None, None) => continue,
        };
        rules.push(RuleDiff {
            rule: n,
            status,
            changes,
            lists,
        });
    }
    let mut settings_changed = Vec::new();
    if old.meta.default_action != new.meta.default_action {
        settings_changed.push(format!(
            "default: {} -> {}",
            old.meta.default_action, new.meta.default_action
        ));
    }
    if old.meta.default_at != new.meta.default_at {
        settings_changed.push(format!(
            "default_at: {} -> {}",
            js(&old.meta.default_at),
            js(&new.meta.default_at)
        ));
    }
    let (po, pn) = (
        serde_json::to_value(&old.meta.profile).unwrap_or_default(),
        serde_json::to_value(&new.meta.profile).unwrap_or_default(),
    );
    if let (Some(a), Some(b)) = (po.as_object(), pn.as_object()) {
        for (k, v) in b {
            if a.get(k) != Some(v) {
                let was = a.get(k).map_or("unset".to_string(), |x| x.to_string());
                settings_changed.push(format!("profile.{k}: {was} -> {v}"));
            }
        }
    }
    Diff {
        old: side(paths.0, old),
        new: side(paths.1, new),
        changed: !rules.is_empty() || !settings_changed.is_empty(),
        rules,
        settings: settings_changed,
        entries_added: added_n,
        entries_removed: removed_n,
    }
}

/// A rule in one line: action, triggers, lists.
fn describe(rs: &Ruleset, r: &RuleMeta) -> String {
    let s = settings(rs, r);
    format!("{} on {}; lists {}", s[0].1, s[1].1, s[2].1)
}

fn text(d: &Diff, limit: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "--- {} (policy {}, blake3 {})",
        d.old.path,
        d.old.policy,
        short(&d.old.policy_blake3)
    );
    let _ = writeln!(
        o,
        "+++ {} (policy {}, blake3 {})",
        d.new.path,
        d.new.policy,
        short(&d.new.policy_blake3)
    );
    if !d.changed {
        let _ = writeln!(o, "no change: same rules, entries and settings");
        return o;
    }
    for s in &d.settings {
        let _ = writeln!(o, "setting {s}");
    }
    for r in &d.rules {
        let _ = writeln!(o, "rule {}: {}", r.rule, r.status);
        for c in &r.changes {
            let _ = writeln!(o, "  {c}");
        }
        for l in &r.lists {
            let _ = writeln!(
                o,
                "  list {}: +{} -{}",
                l.list,
                l.added.len(),
                l.removed.len()
            );
            for (sign, v) in [('+', &l.added), ('-', &l.removed)] {
                for e in v.iter().take(limit) {
                    let _ = writeln!(o, "    {sign} {e}");
                }
                if v.len() > limit {
                    let _ = writeln!(
                        o,
                        "    {sign} ... and {} more (--limit, --json)",
                        v.len() - limit
                    );
                }
            }
        }
    }
    let count = |s: &str| d.rules.iter().filter(|r| r.status == s).count();
    let _ = writeln!(
        o,
        "{} rule(s) added, {} removed, {} changed, {} with new entries; entries +{} -{}",
        count("added"),
        count("removed"),
        count("changed"),
        count("entries"),
        d.entries_added,
        d.entries_removed
    );
    o
}

fn short(h: &str) -> &str {
    &h[..h.len().min(16)]
}

pub fn run(a: Args) -> Result<()> {
    let old = crate::source::load_any(Some(&a.old))?;
    let new = crate::source::load_any(Some(&a.new))?;
    let d = compare(&old, &new, (&a.old, &a.new));
    if a.json {
        print_out(&format!("{}\n", serde_json::to_string(&d)?))
    } else {
        print_out(&text(&d, a.limit))
    }
}
