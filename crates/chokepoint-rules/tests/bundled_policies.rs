//! Every policy bundled under `config/` compiles, says in its header
//! comment where its parameters come from (a source one can look up, not
//! the word "source"), and is listed in docs/POLICY.md's table of bundled
//! scenarios.

use std::path::{Path, PathBuf};

/// Venues the project's sources were published at (../shared/research/
/// censors.md); a paper is cited as "VENUE YEAR".
const VENUES: [&str; 8] = [
    "USENIX Security",
    "IMC",
    "WWW",
    "NDSS",
    "CCS",
    "S&P",
    "PETS",
    "FOCI",
];

/// The first source `header` cites that one can look up, if any: a URL,
/// a net4people or ntc.party thread, a GitHub issue (`owner/repo#N`), a
/// paper as "VENUE YEAR", or a registry decision.
fn cited_source(header: &str) -> Option<String> {
    for marker in ["https://", "http://", "net4people/bbs#", "ntc.party"] {
        if header.contains(marker) {
            return Some(marker.to_string());
        }
    }
    let words: Vec<&str> = header
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | ':'))
        .filter(|w| !w.is_empty())
        .collect();
    for w in &words {
        // owner/repo#123
        if let Some((repo, n)) = w.split_once('#') {
            let n = n.trim_end_matches('.');
            if repo.contains('/') && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                return Some(w.to_string());
            }
        }
    }
    let flat = words.join(" ");
    for v in VENUES {
        let mut rest = flat.as_str();
        while let Some(at) = rest.find(v) {
            let after = &rest[at + v.len()..];
            let year = after.strip_prefix(' ').unwrap_or("");
            if year.len() >= 4
                && (year.starts_with("19") || year.starts_with("20"))
                && year.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            {
                return Some(format!("{v} {}", &year[..4]));
            }
            rest = after;
        }
    }
    flat.find("registry decision ")
        .map(|at| flat[at..].split(' ').take(3).collect::<Vec<_>>().join(" "))
}

#[test]
fn a_source_is_something_one_can_look_up() {
    for (header, want) in [
        ("# Source: net4people/bbs#417.", Some("net4people/bbs#")),
        ("# ntc.party thread 1823", Some("ntc.party")),
        ("# see https://example.org/report", Some("https://")),
        (
            "# bol-van/zapret#1408 and the docs",
            Some("bol-van/zapret#1408"),
        ),
        (
            "# Zohaib et al., USENIX Security 2025",
            Some("USENIX Security 2025"),
        ),
        ("# Xue et al., \"...\",\n# IMC 2021;", Some("IMC 2021")),
        (
            "# registry decision 2971-18 (court)",
            Some("registry decision 2971-18"),
        ),
        ("# Sources: the press; users.", None),
        ("# source: IMC, some year", None),
        ("# issue #12 of something", None),
    ] {
        assert_eq!(cited_source(header).as_deref(), want, "{header}");
    }
}

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

/// The bundled policies, by file name, sorted.
fn bundled() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(config_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    v.sort();
    v
}

#[test]
fn every_bundled_policy_compiles_and_cites_a_source() {
    let all = bundled();
    for (name, path) in &all {
        let text = std::fs::read_to_string(path).unwrap();
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with('#') || l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            cited_source(&header).is_some(),
            "{name}: the header comment must cite a source one can look up (a URL, a \
             net4people or ntc.party thread, owner/repo#N, a paper's venue and year)"
        );
        if let Err(e) = chokepoint_rules::compile_file(path) {
            panic!("{name}: {e}");
        }
    }
    assert!(all.len() >= 8, "only {} policies in config/", all.len());
}

#[test]
fn every_bundled_policy_is_in_the_policy_docs_table() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/POLICY.md"))
            .unwrap();
    let start = doc
        .find("## Bundled scenarios")
        .expect("docs/POLICY.md has a bundled-scenarios section");
    let section = &doc[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    for (name, _) in bundled() {
        assert!(
            section.contains(&format!("\n| `{name}` |")),
            "{name} is not a row of docs/POLICY.md's bundled-scenarios table"
        );
    }
}
