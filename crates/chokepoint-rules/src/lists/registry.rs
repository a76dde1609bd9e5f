//! `registry` format: the Russian registry dump as the public zapret-info
//! mirrors publish it (`dump.csv`, or the split `dump-00.csv`...).
//!
//! ```text
//! Updated: 2014-04-22 11:05:00 +0000
//! 1.2.3.4 | 5.6.7.0/24;example.com | *.example.net;http://example.com/a|b;"Org; Ltd";2971-18;2018-04-13
//! ```
//! Six `;`-separated fields: addresses, domains, URLs, organisation,
//! decision number, decision date. Several values in one field are separated
//! by ` | ` (space, pipe, space: a URL may itself contain `|`). Only the
//! organisation may be double-quoted and contain `;`; URLs may contain `;`
//! unquoted, so the line is split from both ends and the organisation is
//! taken off the end of the middle part.
//!
//! In the registry a plain domain means exactly that name and `*.name`
//! means its subdomains; `exact: false` widens plain names to suffixes.
//! URL hosts are entries too, since a box without HTTPS inspection can only
//! block a URL by its host.

use std::borrow::Cow;

use super::{
    parse_prefix, Ctx, NameItem, PrefixItem, RecordItem, MODE_EXACT, MODE_SUBDOMAINS, MODE_SUFFIX,
};
use crate::name::normalize;
use crate::Error;

/// The six fields of one record, borrowed from the line.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordFields<'a> {
    /// The IP field.
    pub ips: &'a str,
    /// The domain field.
    pub domains: &'a str,
    /// The URL field.
    pub urls: &'a str,
    /// The organisation (unquoted).
    pub org: Cow<'a, str>,
    /// The decision number.
    pub decision: &'a str,
    /// The decision date.
    pub date: &'a str,
}

/// Split a record line into its six fields.
pub fn split_record(line: &str) -> Result<RecordFields<'_>, String> {
    let shape = || {
        format!(
            "expected 6 `;`-separated fields (ips;domains;urls;organisation;decision;date), found {}",
            line.split(';').count()
        )
    };
    let (ips, rest) = line.split_once(';').ok_or_else(shape)?;
    let (domains, rest) = rest.split_once(';').ok_or_else(shape)?;
    let (rest, date) = rest.rsplit_once(';').ok_or_else(shape)?;
    let (middle, decision) = rest.rsplit_once(';').ok_or_else(shape)?;
    let (urls, org) = split_urls_org(middle).ok_or_else(shape)?;
    Ok(RecordFields {
        ips: ips.trim(),
        domains: domains.trim(),
        urls: urls.trim(),
        org,
        decision: decision.trim(),
        date: date.trim(),
    })
}

/// `urls;org` where org may be `"quoted; with semicolons"`.
fn split_urls_org(middle: &str) -> Option<(&str, Cow<'_, str>)> {
    if middle.ends_with('"') {
        let mut from = 0;
        while let Some(p) = middle[from..].find(";\"") {
            let at = from + p;
            if let Some(org) = unquote(&middle[at + 1..]) {
                return Some((&middle[..at], org));
            }
            from = at + 1;
        }
    }
    let (urls, org) = middle.rsplit_once(';')?;
    Some((urls, Cow::Borrowed(org.trim())))
}

/// `"a ""b"" c"` → `a "b" c`, or `None` if not one well-formed quoted field.
fn unquote(s: &str) -> Option<Cow<'_, str>> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' && chars.next() != Some('"') {
            return None;
        }
    }
    Some(if inner.contains("\"\"") {
        Cow::Owned(inner.replace("\"\"", "\""))
    } else {
        Cow::Borrowed(inner)
    })
}

/// Values in one field: ` | `-separated, blanks dropped.
fn values(field: &str) -> impl Iterator<Item = &str> {
    field.split(" | ").map(str::trim).filter(|v| !v.is_empty())
}

/// The host of a registry URL, or `None` for an IPv6 literal (the address
/// field already carries it).
fn url_host(url: &str) -> Result<Option<&str>, String> {
    let (_, after) = url
        .split_once("://")
        .ok_or_else(|| format!("URL `{url}` has no scheme"))?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..end];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport.starts_with('[') {
        return Ok(None);
    }
    let host = match hostport.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => hostport,
    };
    if host.is_empty() {
        return Err(format!("URL `{url}` has no host"));
    }
    Ok(Some(host))
}

pub(super) fn parse(ctx: &mut Ctx<'_>, lines: &[(u32, &str)]) -> Result<(), Error> {
    let plain = if ctx.plain_exact(true) {
        MODE_EXACT
    } else {
        MODE_SUFFIX
    };
    for &(line, raw) in lines {
        let text = raw.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        if line == 1 {
            if let Some(updated) = text.strip_prefix("Updated:") {
                ctx.out.updated = Some(updated.trim().to_string());
                continue;
            }
        }
        let rec = match split_record(text) {
            Ok(r) => r,
            Err(reason) => {
                ctx.bad(line, reason)?;
                continue;
            }
        };
        // Before the decision filter: the filter reads the decision, and a
        // cut-off record is a cut-off file whatever the filter keeps.
        if let Err(reason) = check_decision(rec.decision).and_then(|()| check_date(rec.date)) {
            ctx.bad(line, reason)?;
            continue;
        }
        let spec = ctx.spec;
        if (!spec.decisions.is_empty() && !spec.decisions.iter().any(|d| d == rec.decision))
            || spec.exclude_decisions.iter().any(|d| d == rec.decision)
        {
            ctx.out.records_filtered += 1;
            continue;
        }
        if let Err(reason) = record_items(ctx, line, &rec, plain) {
            ctx.bad(line, reason)?;
            continue;
        }
        ctx.out.records.push(RecordItem {
            line,
            decision: rec.decision.to_string(),
            date: rec.date.to_string(),
            org: rec.org.into_owned(),
        });
    }
    Ok(())
}

/// The longest decision field taken for one. Real ones run from `660` to a
/// seventy-character sentence (`определение о предварительном обеспечении
/// по заявлению № 2и-1234/2013`); far longer is a line split in the wrong
/// place.
const MAX_DECISION_CHARS: usize = 256;

/// A decision number, as loosely as the registry writes them: `2971-18`,
/// `27-31-2018/Ид2971_18`, `2/1/11-12201`, `б/н` ("no number"), a sentence.
/// What it never is: empty, or holding a `"`, which only the quoted
/// organisation may, so one here means the quotes were never closed and the
/// record is cut short (`...;"Суд; Таганский` reads as decision `"Суд`).
fn check_decision(d: &str) -> Result<(), String> {
    if d.is_empty() {
        return Err("the decision number is empty".into());
    }
    if d.contains('"') {
        return Err(format!(
            "decision `{d}` contains `\"`: the organisation's quotes are not closed, so the record is cut short or split wrongly"
        ));
    }
    if d.chars().any(char::is_control) {
        return Err(format!(
            "decision `{}` contains a control character",
            d.escape_debug()
        ));
    }
    let n = d.chars().count();
    if n > MAX_DECISION_CHARS {
        return Err(format!(
            "the decision is {n} characters long (at most {MAX_DECISION_CHARS}): the record is split wrongly"
        ));
    }
    Ok(())
}

/// A decision date: `YYYY-MM-DD`, a day that exists.
fn check_date(d: &str) -> Result<(), String> {
    let b = d.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let shaped = b.len() == 10 && b[4] == b'-' && b[7] == b'-';
    let (Some(y), Some(m), Some(day), true) = (digits(0..4), digits(5..7), digits(8..10), shaped)
    else {
        return Err(format!("decision date `{d}` is not a date (YYYY-MM-DD)"));
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    };
    if day == 0 || day > days {
        return Err(format!("decision date `{d}` is not a day of the calendar"));
    }
    Ok(())
}

/// Add one record's addresses, domains and URL hosts. All-or-nothing: a bad
/// value rejects the whole record, so a skipped line never half-counts.
fn record_items(
    ctx: &mut Ctx<'_>,
    line: u32,
    rec: &RecordFields<'_>,
    plain: u8,
) -> Result<(), String> {
    let mut prefixes = Vec::new();
    for v in values(rec.ips) {
        prefixes.push(PrefixItem {
            net: parse_prefix(v)?,
            line,
        });
    }
    let mut names: Vec<NameItem> = Vec::new();
    for v in values(rec.domains) {
        let (rest, mode) = match v.strip_prefix("*.") {
            Some(r) => (r, MODE_SUBDOMAINS),
            None => (v, plain),
        };
        let name = normalize(rest).map_err(|e| format!("bad domain `{v}`: {e}"))?;
        names.push(NameItem { name, mode, line });
    }
    for v in values(rec.urls) {
        let Some(host) = url_host(v)? else { continue };
        let name = normalize(host).map_err(|e| format!("bad host in URL `{v}`: {e}"))?;
        if !names.iter().any(|n| n.name == name) {
            names.push(NameItem {
                name,
                mode: plain,
                line,
            });
        }
    }
    ctx.out.prefixes.extend(prefixes);
    ctx.out.names.extend(names);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_record() {
        let r =
            split_record("1.2.3.4;example.com;http://example.com/;Роскомнадзор;2971-18;2018-04-13")
                .unwrap();
        assert_eq!(r.ips, "1.2.3.4");
        assert_eq!(r.domains, "example.com");
        assert_eq!(r.urls, "http://example.com/");
        assert_eq!(r.org, "Роскомнадзор");
        assert_eq!(r.decision, "2971-18");
        assert_eq!(r.date, "2018-04-13");
    }

    #[test]
    fn quoted_org_with_semicolons_and_url_with_semicolon() {
        let r = split_record(r#"1.2.3.4;a.example;http://a.example/x;y|z;"Суд; Таганский ""районный""";2-1779/2018;2018-04-13"#).unwrap();
        assert_eq!(r.urls, "http://a.example/x;y|z");
        assert_eq!(r.org, r#"Суд; Таганский "районный""#);
        assert_eq!(r.decision, "2-1779/2018");
    }

    #[test]
    fn empty_fields_and_short_lines() {
        let r = split_record(";;;;1;2014-01-01").unwrap();
        assert_eq!((r.ips, r.domains, r.urls, r.decision), ("", "", "", "1"));
        assert!(split_record("1.2.3.4;example.com")
            .unwrap_err()
            .contains("6 `;`-separated"));
    }

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("http://Example.com:8080/a?b").unwrap(),
            Some("Example.com")
        );
        assert_eq!(
            url_host("https://user@host.example#x").unwrap(),
            Some("host.example")
        );
        assert_eq!(url_host("http://[2001:db8::1]/").unwrap(), None);
        assert!(url_host("example.com/path").is_err());
    }

    #[test]
    fn values_split_on_space_pipe_space_only() {
        let v: Vec<&str> = values("http://a/x|y | http://b/").collect();
        assert_eq!(v, vec!["http://a/x|y", "http://b/"]);
    }

    #[test]
    fn decisions_as_the_registry_writes_them() {
        for d in [
            "2971-18",
            "27-31-2018/Ид2971_18",
            "2/1/11-12201",
            "б/н",
            "отсутствует",
            "18127-URL-on",
            "определение о предварительном обеспечении по заявлению № 2и-1234/2013",
        ] {
            assert_eq!(check_decision(d), Ok(()), "{d}");
        }
        assert!(check_decision("\"Суд")
            .unwrap_err()
            .contains("quotes are not closed"));
        assert!(check_decision("").unwrap_err().contains("empty"));
        assert!(check_decision(&"1".repeat(300))
            .unwrap_err()
            .contains("300 characters"));
    }

    #[test]
    fn dates_are_calendar_days() {
        for d in ["2018-04-13", "2012-02-29", "2000-02-29", "2014-12-31"] {
            assert_eq!(check_date(d), Ok(()), "{d}");
        }
        for d in [
            "Таганский",
            "2018-4-13",
            "2018/04/13",
            "2018-04-13 ",
            "2018-13-01",
            "1900-02-29",
            "2018-04-31",
            "2018-04-00",
            "",
            "+018-04-13",
        ] {
            assert!(check_date(d).is_err(), "{d}");
        }
    }
}
