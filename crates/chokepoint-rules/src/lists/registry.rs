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
use crate::policy::TextEncoding;
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

/// Decode a list file: UTF-8 (BOM stripped), Windows-1251, or either.
pub fn decode_text(bytes: &[u8], enc: TextEncoding) -> Result<Cow<'_, str>, String> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    match enc {
        TextEncoding::Utf8 => std::str::from_utf8(bytes).map(Cow::Borrowed).map_err(|e| {
            format!(
                "not valid UTF-8 at byte offset {} (set `encoding: windows-1251` if it is a registry dump)",
                e.valid_up_to()
            )
        }),
        TextEncoding::Windows1251 => Ok(encoding_rs::WINDOWS_1251
            .decode_without_bom_handling(bytes)
            .0),
        TextEncoding::Auto => match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(_) => Ok(encoding_rs::WINDOWS_1251
                .decode_without_bom_handling(bytes)
                .0),
        },
    }
}

/// Split a record line into its six fields.
pub fn split_record(line: &str) -> Result<RecordFields<'_>, String> {
    const SHAPE: &str =
        "expected 6 `;`-separated fields (ips;domains;urls;organisation;decision;date)";
    let (ips, rest) = line.split_once(';').ok_or(SHAPE)?;
    let (domains, rest) = rest.split_once(';').ok_or(SHAPE)?;
    let (rest, date) = rest.rsplit_once(';').ok_or(SHAPE)?;
    let (middle, decision) = rest.rsplit_once(';').ok_or(SHAPE)?;
    let (urls, org) = split_urls_org(middle).ok_or(SHAPE)?;
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
    fn cp1251_is_detected() {
        let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode("Роскомнадзор");
        assert_eq!(
            decode_text(&bytes, TextEncoding::Auto).unwrap(),
            "Роскомнадзор"
        );
        assert!(decode_text(&bytes, TextEncoding::Utf8)
            .unwrap_err()
            .contains("offset 0"));
    }
}
