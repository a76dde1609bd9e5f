//! Bytes of a list file → lines of text.
//!
//! Registry dumps were Windows-1251 for years and are UTF-8 now, and mirrors
//! that splice old and new records produce files that are mostly one and a
//! little of the other. Deciding once for the whole file turned one stray
//! Windows-1251 byte into mojibake on every UTF-8 line, and the mangled
//! names then failed to match anything without a word said. So `auto`
//! decides per line: a line that is valid UTF-8 is UTF-8 (Windows-1251
//! Cyrillic is almost never valid UTF-8 by accident), any other line is
//! Windows-1251; and the compiler reports how many lines went each way.

use std::borrow::Cow;

use crate::policy::TextEncoding;

/// How many lines that are not plain ASCII were decoded each way. ASCII
/// lines read the same in both encodings and are counted in neither.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LineEncodings {
    /// Non-ASCII lines read as UTF-8.
    pub utf8: u32,
    /// Non-ASCII lines read as Windows-1251.
    pub windows1251: u32,
}

/// Decode a list file into lines, split as [`str::lines`] splits them (on
/// `\n`, a `\r` before it dropped, no empty last line after a final `\n`).
/// A UTF-8 byte order mark at the start is dropped. Under
/// [`TextEncoding::Utf8`] the first invalid line is an error naming it.
pub fn decode_lines(
    bytes: &[u8],
    enc: TextEncoding,
) -> Result<(Vec<Cow<'_, str>>, LineEncodings), String> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut lines = Vec::new();
    let mut counts = LineEncodings::default();
    if bytes.is_empty() {
        return Ok((lines, counts));
    }
    let mut offset = 0;
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let start = offset;
        offset += raw.len() + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_ascii() {
            // ASCII is valid UTF-8 and the same in Windows-1251.
            lines.push(Cow::Borrowed(std::str::from_utf8(raw).expect("ASCII")));
            continue;
        }
        let utf8 = match enc {
            TextEncoding::Windows1251 => None,
            _ => std::str::from_utf8(raw).ok(),
        };
        match (utf8, enc) {
            (Some(s), _) => {
                counts.utf8 += 1;
                lines.push(Cow::Borrowed(s));
            }
            (None, TextEncoding::Utf8) => {
                let valid = std::str::from_utf8(raw).map_or_else(|e| e.valid_up_to(), |_| 0);
                return Err(format!(
                    "line {}: not valid UTF-8 at byte offset {} (set `encoding: windows-1251` or `auto` if it is a registry dump)",
                    i + 1,
                    start + valid
                ));
            }
            (None, _) => {
                counts.windows1251 += 1;
                lines.push(encoding_rs::WINDOWS_1251.decode_without_bom_handling(raw).0);
            }
        }
    }
    Ok((lines, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp1251(s: &str) -> Vec<u8> {
        encoding_rs::WINDOWS_1251.encode(s).0.into_owned()
    }

    #[test]
    fn lines_split_as_str_lines_does() {
        for text in [
            "",
            "\n",
            "a",
            "a\n",
            "a\r\nb\r\n",
            "a\n\nb",
            "\u{feff}a\nb\n",
        ] {
            let (lines, _) = decode_lines(text.as_bytes(), TextEncoding::Auto).unwrap();
            let want: Vec<&str> = text.trim_start_matches('\u{feff}').lines().collect();
            assert_eq!(lines, want, "{text:?}");
        }
    }

    #[test]
    fn auto_decides_per_line_and_counts() {
        let mut bytes = "Роскомнадзор\nascii\n".as_bytes().to_vec();
        bytes.extend_from_slice(&cp1251("Генпрокуратура\r\n"));
        bytes.extend_from_slice("президент.рф".as_bytes());
        let (lines, n) = decode_lines(&bytes, TextEncoding::Auto).unwrap();
        assert_eq!(
            lines,
            ["Роскомнадзор", "ascii", "Генпрокуратура", "президент.рф"]
        );
        assert_eq!(
            n,
            LineEncodings {
                utf8: 2,
                windows1251: 1
            }
        );
        let err = decode_lines(&bytes, TextEncoding::Utf8).unwrap_err();
        assert!(
            err.starts_with("line 3: not valid UTF-8 at byte offset 31"),
            "{err}"
        );
        let (_, n) = decode_lines(&bytes, TextEncoding::Windows1251).unwrap();
        assert_eq!(
            n,
            LineEncodings {
                utf8: 0,
                windows1251: 3
            }
        );
    }
}
