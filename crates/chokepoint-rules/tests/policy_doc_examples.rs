//! The one-line examples of docs/POLICY.md compile: every `match:`,
//! `action:` and `residual:` line written at the start of a line in a YAML
//! block is put into a rule and compiled, so the documentation cannot show
//! a field or value the compiler refuses.

use std::path::Path;

const LISTS: &str = r#"version: 1
lists:
  names: {format: domains, entries: [blocked.example]}
  hosting: {format: cidr, entries: [203.0.113.0/24]}
  subscribers: {format: cidr, entries: [198.18.0.0/16]}
  allow-sites: {format: domains, entries: [ok.example]}
  allow-nets: {format: cidr, entries: [203.0.113.77/32]}
  vpn-servers: {format: dynamic}
rules:
  - name: example
"#;

#[test]
fn every_one_line_example_in_the_policy_docs_compiles() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/POLICY.md"))
            .unwrap();
    let mut in_yaml = false;
    let mut seen = [0; 3];
    for (n, line) in doc.lines().enumerate() {
        if line.starts_with("```") {
            in_yaml = line == "```yaml";
            continue;
        }
        if !in_yaml {
            continue;
        }
        let line = line.split(" #").next().unwrap().trim_end();
        let rule = if line.starts_with("match: {") {
            seen[0] += 1;
            format!("    {line}\n    action: drop\n")
        } else if line.starts_with("action: ") {
            seen[1] += 1;
            format!("    match: {{list: names}}\n    {line}\n")
        } else if line.starts_with("residual: {") {
            seen[2] += 1;
            format!("    match: {{list: names}}\n    action: drop\n    {line}\n")
        } else {
            continue;
        };
        let policy = format!("{LISTS}{rule}");
        if let Err(e) = chokepoint_rules::compile_str(&policy, "doc.yaml", Path::new(".")) {
            panic!("docs/POLICY.md:{}: `{line}`: {e}", n + 1);
        }
    }
    assert!(
        seen.iter().all(|&k| k >= 4),
        "match, action, residual lines: {seen:?}"
    );
}
