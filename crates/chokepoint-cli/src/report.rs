//! Human and JSON renderings of compile statistics and explanations.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use chokepoint_rules::ruleset::Ruleset;
use chokepoint_rules::Explanation;

/// `1234567` → `1,234,567`.
pub fn thousands(n: u128) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// IPv6 address counts are astronomic; say how many /64 networks.
fn v6_amount(n: u128) -> String {
    if n == 0 {
        return "0".into();
    }
    format!(
        "{} /64s (2^{:.1} addresses)",
        thousands(n >> 64),
        (n as f64).log2()
    )
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, Howard Hinnant).
pub fn utc(ts: u64) -> String {
    let days = (ts / 86_400) as i64;
    let secs = ts % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

pub fn text(rs: &Ruleset, artifact: Option<(&Path, u64)>, elapsed: Option<Duration>) -> String {
    let m = &rs.meta;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "policy    {} (blake3 {})",
        m.policy.path,
        &m.policy.blake3[..16]
    );
    for s in &m.sources {
        let _ = writeln!(
            o,
            "source    {} ({}, blake3 {})",
            s.path,
            bytes(s.bytes),
            &s.blake3[..16]
        );
    }
    match artifact {
        Some((p, size)) => {
            let _ = writeln!(
                o,
                "artifact  {} ({}, format v{}, created {})",
                p.display(),
                bytes(size),
                chokepoint_rules::artifact::FORMAT_VERSION,
                utc(m.created_unix)
            );
        }
        None => {
            let _ = writeln!(o, "artifact  none written (give -o FILE)");
        }
    }
    match elapsed {
        Some(e) => {
            let _ = writeln!(
                o,
                "time      {:.1} ms (compile {} ms)",
                e.as_secs_f64() * 1e3,
                m.totals.compile_ms
            );
        }
        None => {
            let _ = writeln!(o, "compiled  in {} ms", m.totals.compile_ms);
        }
    }
    let _ = writeln!(
        o,
        "memory    {} in lookup tables",
        bytes(rs.memory_bytes() as u64)
    );
    let _ = writeln!(o, "\nlists");
    let _ = writeln!(
        o,
        "  {:<22} {:<9} {:>9} {:>8} {:>8} {:>7} {:>8} {:>6} {:>5} {:>8} {:>7} {:>8} {:>7}  ipv4 addresses",
        "name",
        "format",
        "lines",
        "exact",
        "suffix",
        "subdom",
        "ipv4",
        "ipv6",
        "kw",
        "records",
        "dups",
        "shadowed",
        "skipped",
    );
    for l in &m.lists {
        let s = &l.stats;
        let _ = writeln!(
            o,
            "  {:<22} {:<9} {:>9} {:>8} {:>8} {:>7} {:>8} {:>6} {:>5} {:>8} {:>7} {:>8} {:>7}  {}",
            l.name,
            l.format.as_str(),
            s.lines,
            s.names_exact,
            s.names_suffix,
            s.names_subdomains,
            s.v4_prefixes,
            s.v6_prefixes,
            s.keywords,
            s.records,
            s.duplicates,
            s.shadowed,
            s.skipped,
            thousands(u128::from(s.v4_addresses)),
        );
        if let Some(u) = &l.updated {
            let _ = writeln!(o, "      registry updated {u}");
        }
        if s.records_filtered > 0 {
            let _ = writeln!(
                o,
                "      {} records left out by decision filters",
                s.records_filtered
            );
        }
        if s.ignored > 0 {
            let _ = writeln!(o, "      {} local names (localhost...) ignored", s.ignored);
        }
        if s.lines_windows1251 > 0 {
            // Windows-1251 is a guess under `encoding: auto` (or the old
            // registry dumps' encoding), and a file can mix it with UTF-8:
            // say how each line was read rather than leave it silent.
            let _ = writeln!(
                o,
                "      decoded {} lines as Windows-1251, {} as UTF-8 (the rest ASCII)",
                s.lines_windows1251, s.lines_utf8
            );
        }
        if s.v6_addresses > 0 {
            let _ = writeln!(o, "      IPv6: {}", v6_amount(s.v6_addresses));
        }
        for e in &s.first_errors {
            let _ = writeln!(o, "      skipped: {e}");
        }
    }
    let _ = writeln!(o, "\nrules (first match wins)");
    for (i, r) in m.rules.iter().enumerate() {
        let on: Vec<&str> = r.triggers().map(|t| t.as_str()).collect();
        let lists: Vec<&str> = r
            .lists
            .iter()
            .map(|&l| m.lists[l as usize].name.as_str())
            .collect();
        let _ = writeln!(
            o,
            "  {i:>2}. {:<24} {:<22} on {:<40} lists {}",
            r.name,
            r.action.to_string(),
            on.join(","),
            lists.join(",")
        );
        for c in chokepoint_rules::explain::conditions_in_words(rs, r) {
            match c.strip_prefix("residual: then ") {
                Some(then) => writeln!(o, "      then {then}"),
                None => writeln!(o, "      only if {c}"),
            }
            .ok();
        }
    }
    let _ = writeln!(o, "  default: {}", m.default_action);
    if m.default_at != chokepoint_rules::ruleset::DefaultAt::FirstPacket {
        let _ = writeln!(o, "  default_at: first_data (the TCP handshake passes)");
    }
    let t = &m.totals;
    let _ = writeln!(
        o,
        "\ntotals    {} names, {} keywords, {} IPv4 and {} IPv6 prefixes, {} registry records",
        thousands(t.names.into()),
        thousands(t.keywords.into()),
        thousands(t.v4_prefixes.into()),
        thousands(t.v6_prefixes.into()),
        thousands(t.records.into())
    );
    let _ = writeln!(
        o,
        "covered   {} IPv4 addresses ({:.3}% of IPv4) and {} IPv6 under IP rules",
        thousands(t.v4_addresses.into()),
        t.v4_addresses as f64 / 2f64.powi(32) * 100.0,
        v6_amount(t.v6_addresses)
    );
    o
}

pub fn json(rs: &Ruleset, artifact: Option<(&Path, u64)>) -> String {
    let v = serde_json::json!({
        "artifact": artifact.map(|(p, size)| serde_json::json!({
            "path": p.display().to_string(),
            "bytes": size,
            "format_version": chokepoint_rules::artifact::FORMAT_VERSION,
        })),
        "memory_bytes": rs.memory_bytes(),
        "meta": rs.meta,
    });
    v.to_string()
}

pub fn explanation(ex: &Explanation) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", ex.query);
    if let Some(e) = &ex.error {
        let _ = writeln!(o, "  error:   {e}");
        return o;
    }
    if ex.looked_up != ex.query {
        let _ = writeln!(o, "  as:      {} ({})", ex.looked_up, ex.kind);
    }
    match &ex.rule {
        None => {
            let _ = writeln!(
                o,
                "  verdict: {} (policy default; no rule matches)",
                ex.action
            );
            for c in &ex.conditions {
                let _ = writeln!(o, "  when:    {c}");
            }
        }
        Some(rule) => {
            let _ = writeln!(
                o,
                "  verdict: {}  rule: {}  on: {}",
                ex.action,
                rule,
                ex.on.join(", ")
            );
            let _ = writeln!(
                o,
                "  entry:   {} ({}) in list {}",
                ex.entry.as_deref().unwrap_or("?"),
                ex.entry_kind.unwrap_or("?"),
                ex.list.as_deref().unwrap_or("?")
            );
            let _ = writeln!(o, "  source:  {}", ex.source.as_deref().unwrap_or("?"));
            if let Some(d) = &ex.decision {
                let _ = writeln!(
                    o,
                    "  registry decision {d} of {} by {}",
                    ex.decision_date.as_deref().unwrap_or("?"),
                    ex.org.as_deref().unwrap_or("?")
                );
            }
        }
    }
    // A default's condition (where it applies) was printed with it.
    for c in ex.conditions.iter().filter(|_| ex.rule.is_some()) {
        match c.strip_prefix("residual: then ") {
            Some(then) => writeln!(o, "  then:    {then}"),
            None => writeln!(o, "  only if: {c}"),
        }
        .ok();
    }
    if !ex.falls_through.is_empty() {
        let _ = writeln!(
            o,
            "  else:    a packet that fails a condition skips the rule; later rules decide: {}",
            ex.falls_through.join(", then ")
        );
    }
    for r in &ex.protocol_rules {
        let _ = writeln!(o, "  earlier protocol rule: {r}");
    }
    for r in &ex.learned_rules {
        let _ = writeln!(o, "  earlier learned-list rule: {r}");
    }
    if let Some(split) = &ex.ech {
        let case = |c: &chokepoint_rules::explain::EchCase| match &c.rule {
            Some(r) => format!("{} (rule {r})", c.action),
            None => format!("{} (policy default)", c.action),
        };
        let _ = writeln!(
            o,
            "  depends on ECH: a ClientHello with ECH gets {}; without ECH (or DNS, HTTP) {}",
            case(&split.with_ech),
            case(&split.without_ech)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(15_728_640), "15,728,640");
        assert_eq!(thousands(999), "999");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_523_577_600), "2018-04-13 00:00:00 UTC");
    }
}
