//! List parsers on arbitrary bytes, and name normalisation (the compiler's
//! IDNA normaliser and the packet path's wire normaliser).
//!
//! Byte 0 picks the format (bits 0-2), `on_error` (bit 3), `exact` (bits
//! 4-5) and the encoding (bits 6-7); bit 7 of byte 1 feeds the rest as
//! inline entries instead of a file, bit 6 filters registry decisions. The
//! rest is the list. Every line is also normalised as a name.
#![no_main]
use chokepoint_rules::lists::{parse_list, ListText};
use chokepoint_rules::policy::{ListFormat, ListSpec, OnError, TextEncoding};
use chokepoint_ruleset::name as wire;
use libfuzzer_sys::fuzz_target;

const FORMATS: [ListFormat; 5] = [
    ListFormat::Domains,
    ListFormat::Hosts,
    ListFormat::Cidr,
    ListFormat::Registry,
    ListFormat::Keywords,
];

fn names(line: &str) {
    if let Ok(n) = chokepoint_rules::name::normalize(line) {
        // Its output is a valid table name, and a fixed point of both
        // normalisers: a name looked up on the wire meets the table's form.
        assert!(chokepoint_rules::name::validate_ascii(&n).is_ok(), "{n:?}");
        assert_eq!(chokepoint_rules::name::normalize(&n).as_deref(), Ok(n.as_str()));
        let mut buf = [0u8; wire::MAX_NAME_LEN];
        assert_eq!(wire::normalize_wire(n.as_bytes(), &mut buf), Some(n.as_bytes()));
        assert_eq!(wire::label_count(n.as_bytes()) as usize, n.split('.').count());
    }
    let mut buf = [0u8; wire::MAX_NAME_LEN];
    if let Some(w) = wire::normalize_wire(line.as_bytes(), &mut buf) {
        assert!(!w.is_empty() && w.len() <= wire::MAX_NAME_LEN);
        let mut last = None;
        wire::for_each_suffix(w, |start, h| {
            assert!(start <= w.len());
            last = Some(h);
        });
        assert_eq!(last, Some(wire::hash_name(w)));
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let spec = ListSpec {
        format: FORMATS[usize::from(a & 7) % FORMATS.len()],
        path: None,
        entries: None,
        exact: match (a >> 4) & 3 {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        },
        decisions: if b & 0x40 != 0 { vec!["1".into(), "27-31-2018/Ид2971-18".into()] } else { Vec::new() },
        exclude_decisions: if b & 0x20 != 0 { vec!["2".into()] } else { Vec::new() },
        on_error: if a & 8 != 0 { OnError::Skip } else { OnError::Fail },
        encoding: match a >> 6 {
            0 => TextEncoding::Auto,
            1 => TextEncoding::Utf8,
            _ => TextEncoding::Windows1251,
        },
    };
    if b & 0x80 != 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let entries: Vec<String> = text.lines().map(str::to_owned).collect();
        let _ = parse_list(&spec, "fuzz", ListText::Inline(&entries));
    } else {
        let _ = parse_list(&spec, "fuzz", ListText::File(rest));
    }
    for line in String::from_utf8_lossy(rest).lines().take(16) {
        names(line.trim());
    }
});
