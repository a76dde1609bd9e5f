//! `chokepoint check`: a configuration test, as `suricata -T` or `nginx -t`
//! are: does the policy (or artifact) load, and what in it is probably a
//! mistake. Exit status 0 valid (warnings or not), 1 invalid (or warnings
//! under `--strict`), 2 bad arguments.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;
use chokepoint_rules::{artifact, ranges, Ruleset, Trigger};
use serde::Serialize;

use super::print_out;

#[derive(clap::Args)]
pub struct Args {
    /// A policy YAML (compiled, lists read) or a compiled artifact
    /// (validated); the bundled default if omitted.
    input: Option<PathBuf>,
    /// An artifact must be signed (INPUT.sig) by this public key (a file, or
    /// 64 hex digits); repeatable.
    #[arg(long, value_name = "PUBKEY")]
    trust: Vec<String>,
    /// Exit 1 when there are warnings, not only errors.
    #[arg(long)]
    strict: bool,
    /// One JSON object: `ok`, `error`, `warnings`, figures.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize, Default)]
struct Report {
    input: String,
    ok: bool,
    error: Option<String>,
    warnings: Vec<String>,
    rules: usize,
    lists: usize,
    names: u64,
    v4_prefixes: u64,
    v6_prefixes: u64,
}

/// What is probably a mistake in a policy that compiles.
fn warnings(rs: &Ruleset) -> Vec<String> {
    let mut w = Vec::new();
    let m = &rs.meta;
    for l in &m.lists {
        let s = &l.stats;
        if s.skipped > 0 {
            w.push(format!(
                "list `{}`: {} bad line(s) skipped (on_error: skip){}",
                l.name,
                s.skipped,
                s.first_errors
                    .first()
                    .map_or(String::new(), |e| format!("; first: {e}"))
            ));
        }
        for (n, what) in [
            (s.duplicates, "duplicate (kept once)"),
            (
                s.shadowed,
                "already covered by a broader entry of the same list",
            ),
        ] {
            if n > 0 {
                let entries = if n == 1 { "entry" } else { "entries" };
                w.push(format!("list `{}`: {n} {entries} {what}", l.name));
            }
        }
    }
    let entries = chokepoint_rules::entries::by_list(rs);
    // Lists no rule or condition uses.
    let mut used = vec![false; m.lists.len()];
    for r in &m.rules {
        for l in r.lists.iter().copied().chain(r.cond.lists()) {
            used[l as usize] = true;
        }
    }
    for (l, u) in m.lists.iter().zip(&used) {
        if !u {
            w.push(format!("list `{}` is used by no rule", l.name));
        }
    }
    // Lists with the same entries.
    let mut seen: HashMap<&[String], &str> = HashMap::new();
    for (l, e) in m.lists.iter().zip(&entries) {
        if e.is_empty() {
            w.push(format!("list `{}` has no entries", l.name));
            continue;
        }
        if let Some(first) = seen.insert(e.as_slice(), &l.name) {
            w.push(format!(
                "lists `{first}` and `{}` hold the same {} entries",
                l.name,
                e.len()
            ));
            seen.insert(e.as_slice(), first);
        }
    }
    // IP rules whose every address an earlier unconditional IP rule takes.
    let mut earlier: (Vec<ranges::Range>, Vec<ranges::Range>) = Default::default();
    let mut earlier_names: Vec<&str> = Vec::new();
    for r in &m.rules {
        if r.on & Trigger::Ip.bit() == 0 {
            continue;
        }
        let (v4, v6) = ranges::rule_ranges(rs, &r.lists);
        let has_addresses = !v4.is_empty() || !v6.is_empty();
        if !earlier_names.is_empty()
            && has_addresses
            && ranges::covers(&earlier.0, &v4)
            && ranges::covers(&earlier.1, &v6)
        {
            w.push(format!(
                "rule `{}` never decides by address: every address of its lists is decided by an earlier rule ({})",
                r.name,
                earlier_names.join(", ")
            ));
        }
        if r.cond.is_empty() {
            earlier.0 = ranges::merge([earlier.0.clone(), v4].concat());
            earlier.1 = ranges::merge([earlier.1.clone(), v6].concat());
            earlier_names.push(&r.name);
        }
    }
    // Name entries an earlier rule decides (the same list used before on
    // that trigger, or a broader name in an earlier rule's list).
    let d = rs.domain_table();
    for (ri, r) in m.rules.iter().enumerate() {
        let mut names = 0usize;
        let mut shadowed = 0usize;
        let mut example = None;
        for i in d.indices().filter(|&i| r.lists.contains(&d.entry(i).list)) {
            names += 1;
            let name = d.name(i);
            let winners: Vec<Option<String>> = r
                .triggers()
                .filter(|&t| t != Trigger::Ip)
                .map(|t| {
                    rs.match_name(t, name)
                        .filter(|mt| mt.rule.index() < ri && rs.rule(mt.rule).cond.is_empty())
                        .map(|mt| rs.rule(mt.rule).name.clone())
                })
                .collect();
            if !winners.is_empty() && winners.iter().all(Option::is_some) {
                shadowed += 1;
                example.get_or_insert((
                    String::from_utf8_lossy(name).into_owned(),
                    winners[0].clone(),
                ));
            }
        }
        if shadowed > 0 {
            let (n, by) = example.unwrap_or_default();
            let what = if shadowed == names {
                format!("every one of its {names} names is")
            } else if shadowed == 1 {
                format!("1 of its {names} names is")
            } else {
                format!("{shadowed} of its {names} names are")
            };
            w.push(format!(
                "rule `{}`: {what} decided by earlier rules (e.g. {n} by `{}`)",
                r.name,
                by.unwrap_or_default()
            ));
        }
    }
    w
}

fn load(a: &Args) -> Result<Ruleset> {
    let trusted: Vec<_> = a
        .trust
        .iter()
        .map(|t| crate::source::public_key(t))
        .collect::<Result<_>>()?;
    match (&a.input, trusted.is_empty()) {
        (Some(p), false) => Ok(artifact::load_signed(p, &trusted)?),
        (None, false) => anyhow::bail!("--trust checks an artifact's signature: name the artifact"),
        (p, true) => crate::source::load_any(p.as_deref()),
    }
}

pub fn run(a: Args) -> Result<()> {
    let mut r = Report {
        input: a
            .input
            .as_ref()
            .map_or("<bundled default>".into(), |p| p.display().to_string()),
        ..Report::default()
    };
    match load(&a) {
        Ok(rs) => {
            r.ok = true;
            r.warnings = warnings(&rs);
            r.rules = rs.meta.rules.len();
            r.lists = rs.meta.lists.len();
            r.names = rs.meta.totals.names;
            r.v4_prefixes = rs.meta.totals.v4_prefixes;
            r.v6_prefixes = rs.meta.totals.v6_prefixes;
        }
        Err(e) => r.error = Some(format!("{e:#}")),
    }
    if a.json {
        print_out(&format!("{}\n", serde_json::to_string(&r)?))?;
    } else {
        let mut o = String::new();
        for w in &r.warnings {
            o.push_str(&format!("warning: {w}\n"));
        }
        match &r.error {
            Some(e) => o.push_str(&format!("{}: INVALID: {e}\n", r.input)),
            None => o.push_str(&format!(
                "{}: OK ({} rules, {} lists, {} names, {} IPv4 and {} IPv6 prefixes; {} warning(s))\n",
                r.input,
                r.rules,
                r.lists,
                r.names,
                r.v4_prefixes,
                r.v6_prefixes,
                r.warnings.len()
            )),
        }
        print_out(&o)?;
    }
    if !r.ok || (a.strict && !r.warnings.is_empty()) {
        std::process::exit(1);
    }
    Ok(())
}
