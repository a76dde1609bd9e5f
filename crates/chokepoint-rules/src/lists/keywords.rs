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

/// Keywords are matched against names as they are normalised on the wire
/// (ASCII lowercase; internationalised labels in punycode), so a keyword
/// is normalised the same way. The registry's historical mask form
/// `*t.co*` means the same substring as `t.co`: the stars are stripped.
pub(crate) fn check_keyword(text: &str) -> Result<String, String> {
    let core = text.trim_matches('*');
    if core.is_empty() {
        return Err(format!("keyword `{text}` is empty"));
    }
    if core.contains('*') {
        return Err(format!(
            "keyword `{text}` has a `*` inside; a keyword is a plain substring (`*t.co*` and `t.co` are the same keyword)"
        ));
    }
    if core.chars().any(char::is_whitespace) {
        return Err(format!("keyword `{text}` contains whitespace"));
    }
    if core.len() > crate::name::MAX_NAME_LEN {
        return Err(format!("keyword `{text}` is longer than a name can be"));
    }
    if core.is_ascii() {
        return Ok(core.to_ascii_lowercase());
    }
    // A non-ASCII keyword can only match the punycode of whole labels.
    crate::name::normalize(core.trim_matches('.')).map_err(|e| {
        format!("keyword `{text}` is not ASCII and does not convert to punycode ({e}); write whole labels, e.g. `пример` or `xn--e1afmkfd`")
    })
}

#[cfg(test)]
mod tests {
    use super::check_keyword;

    #[test]
    fn mask_form_empty_and_non_ascii() {
        assert_eq!(check_keyword("*t.co*").unwrap(), "t.co");
        assert_eq!(check_keyword("T.Co").unwrap(), "t.co");
        assert!(check_keyword("").unwrap_err().contains("empty"));
        assert!(check_keyword("**").unwrap_err().contains("empty"));
        assert!(check_keyword("a*b").unwrap_err().contains("inside"));
        assert_eq!(check_keyword("Пример").unwrap(), "xn--e1afmkfd");
    }
}
