//! Registry dump records are validated (field count, decision, date) and
//! `encoding: auto` decides per line, with the count of lines read each way
//! in the list's statistics.

use std::path::PathBuf;

use chokepoint_rules::{compile_str, explain, Error, Ruleset};

/// A fresh directory holding `lists/registry.csv` with these bytes.
fn dir_with(test: &str, registry: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "chokepoint-registry-validation-{}-{test}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("lists")).unwrap();
    std::fs::write(dir.join("lists/registry.csv"), registry).unwrap();
    dir
}

fn compile(test: &str, registry: &[u8], list_opts: &str) -> Result<Ruleset, Error> {
    let yaml = format!(
        "version: 1\nlists: {{rkn: {{format: registry, path: lists/registry.csv{list_opts}}}}}\nrules: [{{name: rkn, match: {{list: rkn}}, action: reset}}]\n"
    );
    compile_str(&yaml, "policy.yaml", &dir_with(test, registry))
}

fn cp1251(s: &str) -> Vec<u8> {
    encoding_rs::WINDOWS_1251.encode(s).0.into_owned()
}

const HEADER: &str = "Updated: 2018-04-16 12:00:00 +0300\n";
const GOOD: &str = "192.0.2.7;;;Генпрокуратура;27-31-2018/Ид2971_18;2018-04-13\n";
/// The fixture's first record cut inside the quoted organisation. Split from
/// both ends it reads as decision `"Суд`, date `Таганский`, organisation
/// `c | https://...`.
const CUT: &str = r#"149.154.167.99;telegram.org;http://t.me/a|b;c | https://web.telegram.org:443/k/;"Суд; Таганский"#;

#[test]
fn a_truncated_last_record_is_an_error_naming_file_and_line() {
    let text = format!("{HEADER}{GOOD}{CUT}");
    let err = compile("cut", &cp1251(&text), "").unwrap_err().to_string();
    assert!(err.contains("registry.csv:3: "), "{err}");
    assert!(err.contains("decision `\"Суд`"), "{err}");
    assert!(err.contains("quotes are not closed"), "{err}");
    assert!(err.contains("no line end"), "{err}");

    // under `on_error: skip` the record is counted and reported, never kept
    let rs = compile("cut-skip", &cp1251(&text), ", on_error: skip").unwrap();
    let s = &rs.meta.lists[0].stats;
    assert_eq!((s.records, s.skipped), (1, 1));
    assert!(
        s.first_errors[0].contains("registry.csv:3: "),
        "{:?}",
        s.first_errors
    );
    assert_eq!(explain(&rs, "telegram.org").rule, None);
    assert_eq!(explain(&rs, "192.0.2.7").rule.as_deref(), Some("rkn"));
}

#[test]
fn bad_decisions_and_dates_are_refused_with_the_reason() {
    for (record, why) in [
        (
            "192.0.2.7;;;Суд;2971-18;2018-02-30",
            "`2018-02-30` is not a day of the calendar",
        ),
        (
            "192.0.2.7;;;Суд;2971-18;13.04.2018",
            "`13.04.2018` is not a date (YYYY-MM-DD)",
        ),
        (
            "192.0.2.7;;;Суд;;2018-04-13",
            "the decision number is empty",
        ),
        (
            "192.0.2.7;example.com;Суд;2971-18",
            "expected 6 `;`-separated fields",
        ),
    ] {
        let text = format!("{HEADER}{GOOD}{record}\n");
        let err = compile("bad", text.as_bytes(), "").unwrap_err().to_string();
        assert!(err.contains("registry.csv:3: "), "{record}: {err}");
        assert!(err.contains(why), "{record}: {err}");
        // a terminated line is not blamed on truncation
        assert!(!err.contains("no line end"), "{record}: {err}");
    }
}

#[test]
fn one_windows_1251_line_in_a_utf8_file_leaves_the_rest_utf8() {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(HEADER.as_bytes());
    bytes.extend_from_slice(GOOD.as_bytes());
    bytes.extend_from_slice(&cp1251(
        ";old.example;;Роскомнадзор;2/1/11-12201;2013-10-08\n",
    ));
    bytes.extend_from_slice(";президент.рф;;Мосгорсуд;3-0001/2024;2024-01-15\n".as_bytes());
    bytes.extend_from_slice(b";ascii.example;;FSKN;100-URL-on;2014-01-01\n");
    let rs = compile("mixed", &bytes, "").unwrap();
    let s = &rs.meta.lists[0].stats;
    assert_eq!(s.records, 4);
    assert_eq!((s.lines_utf8, s.lines_windows1251), (2, 1));
    // the UTF-8 IDN on another line still compiles to the right punycode
    let e = explain(&rs, "xn--d1abbgf6aiiy.xn--p1ai");
    assert_eq!(e.rule.as_deref(), Some("rkn"));
    assert_eq!(e.org.as_deref(), Some("Мосгорсуд"));
    assert_eq!(explain(&rs, "президент.рф").rule.as_deref(), Some("rkn"));
    // and the Windows-1251 line reads right too
    let e = explain(&rs, "old.example");
    assert_eq!(e.org.as_deref(), Some("Роскомнадзор"));
    assert_eq!(
        e.source.as_deref().map(|s| s.ends_with("registry.csv:3")),
        Some(true)
    );
    assert_eq!(
        explain(&rs, "192.0.2.7").org.as_deref(),
        Some("Генпрокуратура")
    );

    // `utf-8` refuses the file, naming the line; `windows-1251` reads every
    // line as Windows-1251, as asked, and the UTF-8 lines come out mangled
    // (here the first: `Ид` turns into a C1 control character)
    let err = compile("mixed-utf8", &bytes, ", encoding: utf-8")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 3: not valid UTF-8"), "{err}");
    let err = compile("mixed-1251", &bytes, ", encoding: windows-1251")
        .unwrap_err()
        .to_string();
    assert!(err.contains("registry.csv:2: "), "{err}");
}

#[test]
fn an_all_windows_1251_file_counts_every_cyrillic_line() {
    let text = format!("{HEADER}{GOOD}");
    let rs = compile("all-1251", &cp1251(&text), "").unwrap();
    let s = &rs.meta.lists[0].stats;
    assert_eq!((s.lines_utf8, s.lines_windows1251), (0, 1));
    assert_eq!(
        explain(&rs, "192.0.2.7").org.as_deref(),
        Some("Генпрокуратура")
    );
}
