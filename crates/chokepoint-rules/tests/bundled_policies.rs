//! Every policy bundled under `config/` compiles, and each says in its
//! header comment what it models and where the parameters come from.

use std::path::Path;

#[test]
fn every_bundled_policy_compiles_and_cites_its_source() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with('#') || l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            header.contains("Source") || header.contains("source"),
            "{}: the header comment must cite its sources",
            path.display()
        );
        if let Err(e) = chokepoint_rules::compile_file(&path) {
            panic!("{}: {e}", path.display());
        }
        seen += 1;
    }
    assert!(seen >= 2, "only {seen} policies in {}", dir.display());
}
