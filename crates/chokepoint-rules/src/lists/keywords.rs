//! `keywords` format: one substring per line, matched anywhere in a name.
//! This is the `*t.co*` kind of rule that throttled reddit.com and
//! microsoft.com in March 2021; it exists so that a lab can reproduce such
//! collateral on purpose, and is never what a domain entry means.

use super::{content, Ctx, KeywordItem};
use crate::Error;

pub(super) fn parse(ctx: &mut Ctx<'_>, lines: &[(u32, &str)]) -> Result<(), Error> {
    for &(line, raw) in lines {
        let text = content(raw);
        if text.is_empty() {
            continue;
        }
        match check_keyword(text) {
            Ok(pattern) => ctx.out.keywords.push(KeywordItem { pattern, line }),
            Err(reason) => ctx.bad(line, reason)?,
        }
    }
    Ok(())
}

/// Keywords are matched against normalised (lowercase) names.
pub(crate) fn check_keyword(text: &str) -> Result<String, String> {
    if text.chars().any(char::is_whitespace) {
        return Err(format!("keyword `{text}` contains whitespace"));
    }
    if text.len() > crate::name::MAX_NAME_LEN {
        return Err(format!("keyword `{text}` is longer than a name can be"));
    }
    Ok(text.to_lowercase())
}
