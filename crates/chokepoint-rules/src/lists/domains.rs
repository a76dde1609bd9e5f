//! `domains` format: one name per line, `#` comments.
//!
//! * `example.com` — the name and every subdomain (unless `exact: true`);
//! * `*.example.com` — subdomains only, not `example.com` itself;
//! * `.example.com` — as in dnsmasq, the same as `example.com`.

use super::{content, Ctx, NameItem, MODE_EXACT, MODE_SUBDOMAINS, MODE_SUFFIX};
use crate::name::normalize;
use crate::Error;

pub(super) fn parse(ctx: &mut Ctx<'_>, lines: &[(u32, &str)]) -> Result<(), Error> {
    let plain = if ctx.plain_exact(false) {
        MODE_EXACT
    } else {
        MODE_SUFFIX
    };
    for &(line, raw) in lines {
        let text = content(raw);
        if text.is_empty() {
            continue;
        }
        match parse_entry(text, plain) {
            Ok((name, mode)) => ctx.out.names.push(NameItem { name, mode, line }),
            Err(reason) => ctx.bad(line, reason)?,
        }
    }
    Ok(())
}

/// One domain entry with its wildcard spelling; `plain` is the mode of an
/// entry written without `*.` or a leading dot.
pub(crate) fn parse_entry(text: &str, plain: u8) -> Result<(String, u8), String> {
    let (rest, mode) = if let Some(r) = text.strip_prefix("*.") {
        (r, MODE_SUBDOMAINS)
    } else if let Some(r) = text.strip_prefix('.') {
        (r, MODE_SUFFIX)
    } else {
        (text, plain)
    };
    normalize(rest)
        .map(|n| (n, mode))
        .map_err(|e| format!("bad domain `{text}`: {e}"))
}
