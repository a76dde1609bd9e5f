//! Policy + lists → [`Ruleset`].
//!
//! The compiler reads each list once, normalises every entry, deduplicates
//! per list, resolves which rule each list serves for each trigger, and
//! builds the lookup tables. Everything the packet path will need is decided
//! here, so that a lookup is a few probes and no policy logic.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use crate::domain_table::DomainTable;
use crate::keyword_table::KeywordTable;
use crate::lists::{
    self, parse_list, ListText, ParsedList, MODE_EXACT, MODE_SUBDOMAINS, MODE_SUFFIX,
};
use crate::policy::{
    Action, Chance, ListFormat, ListSpec, OnError, Policy, PortSpec, Protocol, RuleSpec,
    TextEncoding, TransportSpec, Trigger,
};
use crate::prefix_table::{PrefixEntry, PrefixTable, PAD};
use crate::ruleset::{
    first_rule_table, ListMeta, ListStats, Meta, Parts, RecordEntry, RuleMeta, Ruleset, SourceMeta,
    Totals, MAX_LISTS, NO_RULE,
};
use crate::{Error, RuleId};
use chokepoint_ruleset::conditions::{Conditions, Residual};

/// Compile a policy file; list paths are relative to its directory.
pub fn compile_file(path: &Path) -> Result<Ruleset, Error> {
    let text = crate::input::read_text(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    compile_str(&text, &path.display().to_string(), base)
}

/// Compile policy text. `origin` names it in errors and provenance.
pub fn compile_str(yaml: &str, origin: &str, base_dir: &Path) -> Result<Ruleset, Error> {
    let started = Instant::now();
    let policy = Policy::from_yaml(yaml, origin)?;
    let invalid = |reason: String| Error::Invalid {
        file: origin.to_string(),
        reason,
    };

    // Lists: named ones in name order, then one implicit keyword list per
    // rule with inline `keywords:`.
    // Ids are 16-bit in the artifact's tables: past the limit they would
    // wrap and attribute decisions to the wrong rule or list.
    if policy.rules.len() > RuleId::MAX_RULES {
        return Err(invalid(format!(
            "{} rules: a policy may have at most {} rules",
            policy.rules.len(),
            RuleId::MAX_RULES
        )));
    }
    let too_many_lists = || {
        invalid(format!(
            "more than {MAX_LISTS} lists (named lists plus one per rule with inline `keywords`): a policy may have at most {MAX_LISTS}"
        ))
    };
    let mut list_ids: HashMap<&str, u16> = HashMap::new();
    let mut specs: Vec<(String, ListSpec, String, Option<Vec<String>>)> = Vec::new();
    for (name, spec) in &policy.lists {
        check_list_spec(name, spec).map_err(invalid)?;
        if specs.len() >= MAX_LISTS {
            return Err(too_many_lists());
        }
        list_ids.insert(name.as_str(), specs.len() as u16);
        let label = match &spec.path {
            Some(p) => base_dir.join(p).display().to_string(),
            None => format!("{origin} (lists.{name}.entries)"),
        };
        specs.push((name.clone(), spec.clone(), label, None));
    }

    let mut rules: Vec<RuleMeta> = Vec::new();
    let mut seen_rules: HashMap<&str, usize> = HashMap::new();
    for (ri, r) in policy.rules.iter().enumerate() {
        if r.name.is_empty() {
            return Err(invalid(format!("rules[{ri}] has an empty name")));
        }
        if let Some(prev) = seen_rules.insert(&r.name, ri) {
            return Err(invalid(format!(
                "rule name `{}` is used by rules[{prev}] and rules[{ri}]",
                r.name
            )));
        }
        let m = &r.matcher;
        let mut ids = Vec::new();
        let named: Vec<&String> = m.list.iter().chain(m.lists.iter().flatten()).collect();
        for l in &named {
            let id = *list_ids.get(l.as_str()).ok_or_else(|| {
                invalid(format!(
                    "rule `{}` uses list `{l}`, which is not defined (defined: {})",
                    r.name,
                    policy.lists.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            ids.push(id);
        }
        if let Some(kw) = &m.keywords {
            // A blank line in a list file is nothing; a blank keyword
            // written inline is a mistake that would match nothing.
            if let Some(i) = kw.iter().position(|k| k.trim().is_empty()) {
                return Err(invalid(format!(
                    "rule `{}`: keywords[{i}] is empty",
                    r.name
                )));
            }
            let spec = ListSpec {
                format: ListFormat::Keywords,
                path: None,
                entries: Some(kw.clone()),
                exact: None,
                decisions: vec![],
                exclude_decisions: vec![],
                on_error: OnError::Fail,
                encoding: TextEncoding::Auto,
            };
            if specs.len() >= MAX_LISTS {
                return Err(too_many_lists());
            }
            ids.push(specs.len() as u16);
            specs.push((
                format!("{}/keywords", r.name),
                spec,
                format!("{origin} (rules[{ri}].match.keywords)"),
                Some(kw.clone()),
            ));
        }
        let protocols = m
            .protocols
            .iter()
            .flatten()
            .fold(0u16, |acc, p| acc | p.bit());
        if let Action::Learn { list, .. } = &r.action.0 {
            let dynamic = policy
                .lists
                .get(list)
                .is_some_and(|l| l.format == ListFormat::Dynamic);
            if !dynamic {
                return Err(invalid(format!(
                    "rule `{}` learns into `{list}`, which is not a `format: dynamic` list",
                    r.name
                )));
            }
        }
        if ids.is_empty() && protocols == 0 {
            return Err(invalid(format!(
                "rule `{}` matches nothing: give `list`, `lists`, `keywords` or `protocols`",
                r.name
            )));
        }
        let on = if ids.is_empty() {
            // A protocol rule: it fires on the protocol itself.
            if m.on.is_some() {
                return Err(invalid(format!(
                    "rule `{}`: `on` names what a list is matched on; a rule with `protocols` and no list fires on the protocol itself",
                    r.name
                )));
            }
            let hello = Protocol::Tls.bit() | Protocol::Quic.bit();
            if m.ech.is_some() && protocols & !hello != 0 {
                return Err(invalid(format!(
                    "rule `{}`: `ech` applies to tls and quic only",
                    r.name
                )));
            }
            Trigger::Protocol.bit()
        } else {
            let servable = ids
                .iter()
                .fold(0u8, |m, &i| m | specs[i as usize].1.format.triggers());
            let on = match &m.on {
                Some(on) if on.is_empty() => {
                    return Err(invalid(format!("rule `{}` has an empty `on`", r.name)))
                }
                Some(on) => on.iter().fold(0u8, |acc, t| acc | t.bit()),
                None => servable,
            };
            for t in Trigger::ALL {
                if on & t.bit() != 0 && matches!(t, Trigger::Protocol | Trigger::Residual) {
                    return Err(invalid(format!(
                        "rule `{}`: `on: [{t}]` is not a list trigger; {}",
                        r.name,
                        if t == Trigger::Protocol {
                            "give `protocols` without a list"
                        } else {
                            "give the rule a `residual`"
                        }
                    )));
                }
                if on & t.bit() != 0 && servable & t.bit() == 0 {
                    return Err(invalid(format!(
                        "rule `{}` matches on {t}, but none of its lists can ({} lists hold {})",
                        r.name,
                        ids.iter()
                            .map(|&i| specs[i as usize].1.format.as_str())
                            .collect::<Vec<_>>()
                            .join("/"),
                        if t == Trigger::Ip {
                            "no addresses"
                        } else {
                            "no names"
                        }
                    )));
                }
            }
            if m.ech.is_some() && on & !(Trigger::TlsSni.bit() | Trigger::QuicSni.bit()) != 0 {
                return Err(invalid(format!("rule `{}`: `ech` applies to tls_sni and quic_sni only; give `on: [tls_sni, quic_sni]`", r.name)));
            }
            if protocols & !Protocol::NAMED != 0 {
                return Err(invalid(format!(
                    "rule `{}`: with a list, `protocols` names the protocol its names come in (tls, quic, http, dns); classify other protocols with a rule that has `protocols` and no list",
                    r.name
                )));
            }
            on
        };
        let cond = conditions(r, protocols, &list_ids, &specs, &policy).map_err(invalid)?;
        let residual = match &r.residual {
            None => None,
            Some(x) if !(1..=86_400).contains(&x.seconds) => {
                return Err(invalid(format!(
                    "rule `{}`: residual.seconds is {}; allowed 1..=86400",
                    r.name, x.seconds
                )))
            }
            Some(x) => Some(Residual {
                seconds: x.seconds,
                scope: x.scope,
                action: x.action,
            }),
        };
        rules.push(RuleMeta {
            name: r.name.clone(),
            action: r.action.0.clone(),
            on,
            lists: ids,
            ech: m.ech,
            cond,
            residual,
        });
    }

    if matches!(policy.default.0, Action::Learn { .. }) {
        return Err(invalid(
            "`default: learn` would learn every server no rule matched; learn in a rule".into(),
        ));
    }
    let first_rule = first_rule_table(&rules, specs.len());

    // Read and parse every list.
    let mut sources = Vec::new();
    let mut parsed: Vec<ParsedList> = Vec::with_capacity(specs.len());
    for (_, spec, label, inline_kw) in &specs {
        let p = if let Some(kw) = inline_kw {
            parse_list(spec, label, ListText::Inline(kw))?
        } else if let Some(path) = &spec.path {
            let full = base_dir.join(path);
            let bytes = crate::input::read(&full)?;
            sources.push(SourceMeta {
                path: full.display().to_string(),
                blake3: blake3::hash(&bytes).to_hex().to_string(),
                bytes: bytes.len() as u64,
            });
            parse_list(spec, label, ListText::File(&bytes))?
        } else {
            parse_list(
                spec,
                label,
                ListText::Inline(spec.entries.as_deref().unwrap_or_default()),
            )?
        };
        parsed.push(p);
    }

    let mut stats: Vec<ListStats> = parsed
        .iter()
        .map(|p| ListStats {
            lines: p.lines,
            records: p.records.len() as u64,
            records_filtered: u64::from(p.records_filtered),
            skipped: u64::from(p.skipped),
            first_errors: p.first_errors.iter().map(|e| e.to_string()).collect(),
            ignored: u64::from(p.ignored),
            lines_utf8: p.encodings.utf8,
            lines_windows1251: p.encodings.windows1251,
            ..Default::default()
        })
        .collect();

    let (domains, unique_names) = build_domains(&parsed, &mut stats);
    let keywords = build_keywords(&parsed, &mut stats).map_err(invalid)?;
    let ip_rule = |l: u16| {
        let r = first_rule[l as usize][Trigger::Ip.index()];
        (r != NO_RULE).then_some(r)
    };
    let (v4_items, v6_items) = split_prefixes(&parsed);
    let v4 = PrefixTable::build(v4_items, ip_rule);
    let v6 = PrefixTable::build(v6_items, ip_rule);
    for (l, c) in v4.cover(specs.len()).into_iter().enumerate() {
        let s = &mut stats[l];
        s.duplicates += c.duplicates;
        s.shadowed += c.shadowed;
        s.v4_addresses = c.addresses as u64;
    }
    for (l, c) in v6.cover(specs.len()).into_iter().enumerate() {
        let s = &mut stats[l];
        s.duplicates += c.duplicates;
        s.shadowed += c.shadowed;
        s.v6_addresses = c.addresses;
    }
    for e in v4.entries() {
        stats[e.list as usize].v4_prefixes += 1;
    }
    for e in v6.entries() {
        stats[e.list as usize].v6_prefixes += 1;
    }
    let (records, record_blob) = build_records(&parsed);

    let totals = Totals {
        names: unique_names as u64,
        keywords: keywords.len() as u64,
        v4_prefixes: v4.len() as u64,
        v6_prefixes: v6.len() as u64,
        v4_addresses: v4.decided_addresses() as u64,
        v6_addresses: v6.decided_addresses(),
        records: records.len() as u64,
        compile_ms: started.elapsed().as_millis() as u64,
    };
    let lists_meta = specs
        .iter()
        .zip(stats)
        .zip(&parsed)
        .map(|(((name, spec, label, _), stats), p)| ListMeta {
            name: name.clone(),
            format: spec.format,
            source: label.clone(),
            updated: p.updated.clone(),
            stats,
        })
        .collect();
    let meta = Meta {
        created_unix: created_unix(),
        policy: SourceMeta {
            path: origin.to_string(),
            blake3: blake3::hash(yaml.as_bytes()).to_hex().to_string(),
            bytes: yaml.len() as u64,
        },
        sources,
        lists: lists_meta,
        rules,
        default_action: policy.default.0.clone(),
        default_at: policy.default_at,
        profile: policy.profile.clone(),
        first_rule,
        totals,
    };
    Ruleset::from_parts(Parts {
        meta,
        domains,
        keywords,
        v4,
        v6,
        records,
        record_blob,
    })
    .map_err(|e| invalid(format!("internal error: compiled tables disagree: {e}")))
}

/// A rule's conditions, with list names resolved to ids.
fn conditions(
    r: &RuleSpec,
    protocols: u16,
    list_ids: &HashMap<&str, u16>,
    specs: &[(String, ListSpec, String, Option<Vec<String>>)],
    policy: &Policy,
) -> Result<Conditions, String> {
    let m = &r.matcher;
    let list = |name: &String, what: &str, addresses: bool| -> Result<u16, String> {
        let id = *list_ids.get(name.as_str()).ok_or_else(|| {
            format!(
                "rule `{}`: {what} names list `{name}`, which is not defined (defined: {})",
                r.name,
                policy.lists.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        let format = specs[id as usize].1.format;
        if format == ListFormat::Dynamic {
            return Err(format!(
                "rule `{}`: {what} list `{name}` is `format: dynamic`: a dynamic list serves IP rules (`on: [ip]`) only",
                r.name
            ));
        }
        if addresses && format.triggers() & Trigger::Ip.bit() == 0 {
            return Err(format!(
                "rule `{}`: {what} list `{name}` is `format: {}`, which holds no addresses",
                r.name,
                format.as_str()
            ));
        }
        Ok(id)
    };
    if let (Some(lo), Some(hi)) = (m.min_bytes, m.max_bytes) {
        if lo > hi {
            return Err(format!(
                "rule `{}`: min_bytes {lo} is above max_bytes {hi}",
                r.name
            ));
        }
    }
    let ports = |v: &Option<Vec<PortSpec>>| v.iter().flatten().map(|p| p.0).collect::<Vec<_>>();
    let probability = match m.probability {
        None => None,
        Some(p) => Some(Chance::from_f64(p).ok_or_else(|| {
            format!(
                "rule `{}`: probability must be within 0..=1, not {p}",
                r.name
            )
        })?),
    };
    Ok(Conditions {
        protocols,
        proto: m.proto.map(|p| match p {
            TransportSpec::Tcp => 6,
            TransportSpec::Udp => 17,
        }),
        dst_ports: ports(&m.dst_ports),
        src_ports: ports(&m.src_ports),
        min_bytes: m.min_bytes,
        max_bytes: m.max_bytes,
        quic_versions: m.quic_versions.iter().flatten().map(|v| v.0).collect(),
        first_packet: m.first_packet,
        src_port_ge_dst_port: m.src_port_ge_dst_port,
        dst_lists: m
            .dst_list
            .iter()
            .map(|l| list(l, "dst_list", true))
            .collect::<Result<_, _>>()?,
        src_lists: m
            .src_list
            .iter()
            .map(|l| list(l, "src_list", true))
            .collect::<Result<_, _>>()?,
        except: m
            .except
            .iter()
            .flatten()
            .map(|l| list(l, "except", false))
            .collect::<Result<_, _>>()?,
        probability,
    })
}

/// Creation time; `SOURCE_DATE_EPOCH` makes artifacts reproducible.
fn created_unix() -> u64 {
    if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return t;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn check_list_spec(name: &str, spec: &ListSpec) -> Result<(), String> {
    if name.is_empty() || name.contains('/') {
        return Err(format!(
            "list name `{name}` must be non-empty and contain no `/`"
        ));
    }
    if spec.format == ListFormat::Dynamic {
        if spec.path.is_some() || spec.entries.is_some() || spec.exact.is_some() {
            return Err(format!(
                "list `{name}` is `format: dynamic`: `learn` actions fill it at run time; give it no `path`, `entries` or `exact`"
            ));
        }
        return Ok(());
    }
    match (&spec.path, &spec.entries) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "list `{name}` has both `path` and `entries`; give one"
            ))
        }
        (None, None) => return Err(format!("list `{name}` has neither `path` nor `entries`")),
        _ => {}
    }
    let registry = spec.format == ListFormat::Registry;
    if !registry && (!spec.decisions.is_empty() || !spec.exclude_decisions.is_empty()) {
        return Err(format!(
            "list `{name}`: `decisions` and `exclude_decisions` only apply to `format: registry`"
        ));
    }
    if spec.exact.is_some() && matches!(spec.format, ListFormat::Cidr | ListFormat::Keywords) {
        return Err(format!(
            "list `{name}`: `exact` does not apply to `format: {}`",
            spec.format.as_str()
        ));
    }
    Ok(())
}

/// Deduplicate names per list (modes merged, first line kept), build the
/// table, then count shadowed names and per-mode figures.
fn build_domains(parsed: &[ParsedList], stats: &mut [ListStats]) -> (DomainTable, usize) {
    let mut items: Vec<(String, u16, u8, u32)> =
        Vec::with_capacity(parsed.iter().map(|p| p.names.len()).sum());
    for (l, p) in parsed.iter().enumerate() {
        for n in &p.names {
            items.push((n.name.clone(), l as u16, n.mode, n.line));
        }
    }
    items.sort_unstable_by(|a, b| (a.1, &a.0, a.3).cmp(&(b.1, &b.0, b.3)));
    let mut unique: Vec<(String, u16, u8, u32)> = Vec::with_capacity(items.len());
    for it in items {
        match unique.last_mut() {
            Some(last) if last.0 == it.0 && last.1 == it.1 => {
                stats[it.1 as usize].duplicates += 1;
                last.2 |= it.2;
            }
            _ => unique.push(it),
        }
    }
    let table = DomainTable::build(&unique);
    for (name, list, mode, _) in &unique {
        let s = &mut stats[*list as usize];
        match *mode {
            MODE_EXACT => s.names_exact += 1,
            MODE_SUBDOMAINS => s.names_subdomains += 1,
            _ => s.names_suffix += 1,
        }
        // Shadowed: a parent suffix of the same list already covers it.
        let bytes = name.as_bytes();
        let mut covered = false;
        crate::name::for_each_suffix(bytes, |start, _| {
            if start > 0 && !covered {
                table.find_key(&bytes[start..], |_, e| {
                    covered |= e.list == *list && e.mode & MODE_SUBDOMAINS != 0;
                });
            }
        });
        if covered {
            s.shadowed += 1;
        }
    }
    debug_assert!(unique.iter().all(|u| u.2 <= MODE_SUFFIX));
    (table, unique.len())
}

fn build_keywords(parsed: &[ParsedList], stats: &mut [ListStats]) -> Result<KeywordTable, String> {
    let mut items: Vec<(String, u16, u32)> = Vec::new();
    for (l, p) in parsed.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        for k in &p.keywords {
            if seen.insert(k.pattern.as_str()) {
                items.push((k.pattern.clone(), l as u16, k.line));
                stats[l].keywords += 1;
            } else {
                stats[l].duplicates += 1;
            }
        }
    }
    KeywordTable::build(&items)
}

fn split_prefixes(parsed: &[ParsedList]) -> (Vec<PrefixEntry<u32>>, Vec<PrefixEntry<u128>>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (l, p) in parsed.iter().enumerate() {
        for it in &p.prefixes {
            match lists::fold_mapped(it.net) {
                ipnetwork::IpNetwork::V4(n) => v4.push(PrefixEntry {
                    addr: u32::from(n.network()),
                    line: it.line,
                    list: l as u16,
                    len: n.prefix(),
                    _pad: [0; PAD],
                }),
                ipnetwork::IpNetwork::V6(n) => v6.push(PrefixEntry {
                    addr: u128::from(n.network()),
                    line: it.line,
                    list: l as u16,
                    len: n.prefix(),
                    _pad: [0; PAD],
                }),
            }
        }
    }
    (v4, v6)
}

fn build_records(parsed: &[ParsedList]) -> (Vec<RecordEntry>, Vec<u8>) {
    let mut recs = Vec::new();
    let mut blob = Vec::new();
    for (l, p) in parsed.iter().enumerate() {
        for r in &p.records {
            let clip = |s: &str| {
                // Record text is for display; cap each field at u16 bytes on a char boundary.
                let mut end = s.len().min(u16::MAX as usize);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s[..end].to_string()
            };
            let (d, date, org) = (clip(&r.decision), clip(&r.date), clip(&r.org));
            recs.push(RecordEntry {
                line: r.line,
                off: blob.len() as u32,
                list: l as u16,
                decision_len: d.len() as u16,
                date_len: date.len() as u16,
                org_len: org.len() as u16,
            });
            blob.extend_from_slice(d.as_bytes());
            blob.extend_from_slice(date.as_bytes());
            blob.extend_from_slice(org.as_bytes());
        }
    }
    recs.sort_by_key(|r| (r.list, r.line));
    (recs, blob)
}
