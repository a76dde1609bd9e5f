//! `cidr` format: one IPv4/IPv6 prefix or address per line, `#` comments.

use super::{content, parse_prefix, Ctx, PrefixItem};
use crate::Error;

pub(super) fn parse(ctx: &mut Ctx<'_>, lines: &[(u32, &str)]) -> Result<(), Error> {
    for &(line, raw) in lines {
        let text = content(raw);
        if text.is_empty() {
            continue;
        }
        match parse_prefix(text) {
            Ok(net) => ctx.out.prefixes.push(PrefixItem { net, line }),
            Err(reason) => ctx.bad(line, reason)?,
        }
    }
    Ok(())
}
