//! List parsers: each turns lines of one format into names, prefixes,
//! keywords and (for the registry) records, every item tagged with the line
//! it came from so `explain` can cite it.

mod cidr;
mod domains;
mod hosts;
mod keywords;
mod registry;
mod text;

use ipnetwork::IpNetwork;

use crate::policy::{ListFormat, ListSpec, OnError, TextEncoding};
use crate::Error;

pub use registry::{split_record, RecordFields};
pub use text::{decode_lines, LineEncodings};

pub use chokepoint_ruleset::domain_table::{mode_str, MODE_EXACT, MODE_SUBDOMAINS, MODE_SUFFIX};

#[derive(Debug, Clone, PartialEq, Eq)]
/// A name from a list.
pub struct NameItem {
    /// The normalised name.
    pub name: String,
    /// Match mode bits (`MODE_EXACT`, `MODE_SUBDOMAINS`).
    pub mode: u8,
    /// Source line.
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// An address prefix from a list.
pub struct PrefixItem {
    /// The prefix.
    pub net: IpNetwork,
    /// Source line.
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A substring pattern from a list.
pub struct KeywordItem {
    /// The pattern.
    pub pattern: String,
    /// Source line.
    pub line: u32,
}

/// One registry record, kept so `explain` can cite the court or agency
/// decision behind an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordItem {
    /// Source line.
    pub line: u32,
    /// Decision number.
    pub decision: String,
    /// Decision date.
    pub date: String,
    /// The organisation that decided.
    pub org: String,
}

/// A bad line, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The list file.
    pub file: String,
    /// Source line.
    pub line: u32,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// Everything one list yielded.
#[derive(Debug, Default)]
pub struct ParsedList {
    /// Names.
    pub names: Vec<NameItem>,
    /// Prefixes.
    pub prefixes: Vec<PrefixItem>,
    /// Substring patterns.
    pub keywords: Vec<KeywordItem>,
    /// Registry records.
    pub records: Vec<RecordItem>,
    /// Lines read, blank and comment lines included.
    pub lines: u32,
    /// Lines skipped under `on_error: skip`.
    pub skipped: u32,
    /// The first few skipped lines with their reasons.
    pub first_errors: Vec<LineError>,
    /// Hosts-file names such as `localhost` that are never entries.
    pub ignored: u32,
    /// Registry records left out by `decisions` / `exclude_decisions`.
    pub records_filtered: u32,
    /// Registry `Updated:` header.
    pub updated: Option<String>,
    /// How the file's non-ASCII lines were decoded.
    pub encodings: LineEncodings,
}

/// How many skipped lines are kept verbatim for the report.
pub const KEPT_ERRORS: usize = 5;

/// Per-list parsing context: where lines come from and what a bad one does.
pub(crate) struct Ctx<'a> {
    pub label: &'a str,
    pub spec: &'a ListSpec,
    pub out: ParsedList,
    /// The last line of a file that does not end in a line end: if that
    /// line is bad, the file was most likely cut short in transfer.
    pub unterminated: Option<u32>,
}

impl Ctx<'_> {
    /// Report a bad line: an error under `on_error: fail`, else counted.
    pub fn bad(&mut self, line: u32, reason: impl Into<String>) -> Result<(), Error> {
        let mut reason = reason.into();
        if self.unterminated == Some(line) {
            reason.push_str(" (the last line has no line end: is the file truncated?)");
        }
        let e = LineError {
            file: self.label.to_string(),
            line,
            reason,
        };
        match self.spec.on_error {
            OnError::Fail => Err(Error::BadLine(e)),
            OnError::Skip => {
                self.out.skipped += 1;
                if self.out.first_errors.len() < KEPT_ERRORS {
                    self.out.first_errors.push(e);
                }
                Ok(())
            }
        }
    }

    /// Plain names mean the exact name (`true`) or name and subdomains.
    pub fn plain_exact(&self, default: bool) -> bool {
        self.spec.exact.unwrap_or(default)
    }
}

/// Strip a `#` comment and surrounding whitespace.
pub(crate) fn content(line: &str) -> &str {
    match line.find('#') {
        Some(i) => &line[..i],
        None => line,
    }
    .trim()
}

/// Where a list's text comes from.
pub enum ListText<'a> {
    /// A file's bytes; decoded per the spec's encoding.
    File(&'a [u8]),
    /// Inline `entries:`; entry *i* is reported as line *i + 1*.
    Inline(&'a [String]),
}

/// Parse one list. `label` names the source in errors (a path, or
/// `policy.yaml: lists.NAME.entries`).
pub fn parse_list(spec: &ListSpec, label: &str, text: ListText<'_>) -> Result<ParsedList, Error> {
    let mut ctx = Ctx {
        label,
        spec,
        out: ParsedList::default(),
        unterminated: None,
    };
    let decoded;
    let lines: Vec<(u32, &str)> = match text {
        ListText::File(bytes) => {
            let enc = if spec.format == ListFormat::Registry {
                spec.encoding
            } else if spec.encoding == TextEncoding::Auto {
                TextEncoding::Utf8
            } else {
                spec.encoding
            };
            let encodings;
            (decoded, encodings) = decode_lines(bytes, enc).map_err(|reason| Error::Source {
                file: label.to_string(),
                reason,
            })?;
            ctx.out.encodings = encodings;
            if !decoded.is_empty() && !bytes.ends_with(b"\n") {
                ctx.unterminated = Some(decoded.len() as u32);
            }
            decoded
                .iter()
                .enumerate()
                .map(|(i, l)| (i as u32 + 1, l.as_ref()))
                .collect()
        }
        ListText::Inline(entries) => entries
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u32 + 1, l.as_str()))
            .collect(),
    };
    ctx.out.lines = lines.len() as u32;
    match spec.format {
        ListFormat::Domains => domains::parse(&mut ctx, &lines)?,
        ListFormat::Hosts => hosts::parse(&mut ctx, &lines)?,
        ListFormat::Cidr => cidr::parse(&mut ctx, &lines)?,
        ListFormat::Keywords => keywords::parse(&mut ctx, &lines)?,
        ListFormat::Registry => registry::parse(&mut ctx, &lines)?,
        // Filled at run time: the compiler has nothing to read.
        ListFormat::Dynamic => {}
    }
    Ok(ctx.out)
}

/// Parse an address or prefix, refusing set host bits, and folding
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d/120`) into IPv4 so it meets IPv4 rules.
pub fn parse_prefix(s: &str) -> Result<IpNetwork, String> {
    let net: IpNetwork = s
        .parse()
        .map_err(|e| format!("`{s}` is not an IP address or prefix ({e})"))?;
    if net.ip() != net.network() {
        return Err(format!(
            "`{s}` has host bits set (did you mean {}/{}?)",
            net.network(),
            net.prefix()
        ));
    }
    Ok(fold_mapped(net))
}

/// `::ffff:0:0/96` and below become IPv4 prefixes.
pub fn fold_mapped(net: IpNetwork) -> IpNetwork {
    if let IpNetwork::V6(v6) = net {
        if let Some(v4) = v6.ip().to_ipv4_mapped() {
            if v6.prefix() >= 96 {
                if let Ok(n) = ipnetwork::Ipv4Network::new(v4, v6.prefix() - 96) {
                    return IpNetwork::V4(n);
                }
            }
        }
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked_and_mapped_fold() {
        assert_eq!(
            parse_prefix("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_prefix("1.2.3.4").unwrap().to_string(), "1.2.3.4/32");
        let e = parse_prefix("10.0.0.1/8").unwrap_err();
        assert!(e.contains("host bits") && e.contains("10.0.0.0/8"), "{e}");
        assert_eq!(
            parse_prefix("::ffff:149.154.160.0/116")
                .unwrap()
                .to_string(),
            "149.154.160.0/20"
        );
        assert!(parse_prefix("2001:db8::/32").unwrap().is_ipv6());
        assert!(parse_prefix("banana").is_err());
    }
}
