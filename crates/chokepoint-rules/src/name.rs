//! Domain-name normalisation and the suffix hash shared by the compiler and
//! the packet path.
//!
//! Every name that enters a table, and every name looked up, goes through the
//! same rules: ASCII lowercase, at most one trailing dot removed, non-ASCII
//! labels converted to punycode (IDNA/UTS 46), then checked for shape. Doing
//! it identically on both sides is what makes `Пример.рф` in a registry dump
//! match `xn--e1afmkfd.xn--p1ai` in a ClientHello.

use std::borrow::Cow;

pub use chokepoint_ruleset::name::*;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    /// Nothing left after the trailing dot.
    Empty,
    #[error("name is {0} bytes long, more than the 253 DNS allows")]
    /// Longer than 253 bytes (the length).
    TooLong(usize),
    #[error("empty label (two dots in a row, or a leading dot)")]
    /// Two dots in a row, or a leading dot.
    EmptyLabel,
    #[error("label `{0}` is longer than 63 bytes")]
    /// A label over 63 bytes (the label).
    LabelTooLong(String),
    #[error("character {0:?} is not allowed in a domain name")]
    /// A character names cannot hold.
    BadChar(char),
    #[error("`*` is only allowed as a whole leading label (`*.example.com`)")]
    /// `*` somewhere other than a whole leading label.
    BadWildcard,
    #[error("IDN conversion failed: {0}")]
    /// IDNA conversion failed (why).
    Idna(String),
}

/// Normalise a name for a table or a lookup: lowercase, one trailing dot
/// stripped, IDN to punycode, then validated. Wildcards are not accepted
/// here; list parsers strip `*.` first and record the meaning.
pub fn normalize(input: &str) -> Result<String, NameError> {
    let trimmed = input.strip_suffix('.').unwrap_or(input);
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    let ascii: Cow<'_, str> = if trimmed.is_ascii() {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        // UTS 46 maps case and compatibility forms, then punycodes each label.
        match idna::domain_to_ascii(trimmed) {
            Ok(s) => Cow::Owned(s),
            Err(e) => return Err(NameError::Idna(format!("{e:?}"))),
        }
    };
    validate_ascii(&ascii)?;
    Ok(ascii.into_owned())
}

/// Check the shape of an already lowercased ASCII name. Underscores are
/// accepted because real names carry them (`_dmarc`, CDN hostnames) and a
/// censor sees them on the wire.
pub fn validate_ascii(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong(label.to_string()));
        }
        for c in label.chars() {
            match c {
                'a'..='z' | '0'..='9' | '-' | '_' => {}
                '*' => return Err(NameError::BadWildcard),
                other => return Err(NameError::BadChar(other)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_and_strips_one_dot() {
        assert_eq!(normalize("WWW.Example.COM.").unwrap(), "www.example.com");
        assert_eq!(
            normalize("example.com..").unwrap_err(),
            NameError::EmptyLabel
        );
    }

    #[test]
    fn idn_to_punycode() {
        assert_eq!(normalize("Пример.РФ").unwrap(), "xn--e1afmkfd.xn--p1ai");
        assert_eq!(normalize("bücher.de").unwrap(), "xn--bcher-kva.de");
    }

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(normalize("").unwrap_err(), NameError::Empty);
        assert_eq!(normalize(".").unwrap_err(), NameError::Empty);
        assert!(matches!(normalize("a b.com"), Err(NameError::BadChar(' '))));
        assert!(matches!(
            normalize(&"a".repeat(64)),
            Err(NameError::LabelTooLong(_))
        ));
        let long = ["abcdefghi"; 26].join(".");
        assert!(matches!(normalize(&long), Err(NameError::TooLong(_))));
        assert_eq!(normalize("a.*.com").unwrap_err(), NameError::BadWildcard);
        assert!(normalize("_dmarc.example.com").is_ok());
    }
}
