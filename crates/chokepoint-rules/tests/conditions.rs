//! Rule conditions and residual blocks in the policy: what parses, what is
//! refused, and that errors name the file, line and column.

use std::path::Path;

use chokepoint_rules::{compile_str, explain, Error, Ruleset};

fn compile(yaml: &str) -> Result<Ruleset, Error> {
    compile_str(yaml, "p.yaml", Path::new("."))
}

fn err(yaml: &str) -> String {
    compile(yaml).unwrap_err().to_string()
}

const HEAD: &str = "version: 1\nlists:\n  hosting: {format: cidr, entries: [203.0.113.0/24]}\n  names: {format: domains, entries: [blocked.example]}\nrules:\n";

#[test]
fn the_issue_examples_compile() {
    let rs = compile(&format!(
        "{HEAD}  - name: quic-2022\n    match: {{protocols: [quic], quic_versions: [1, v2, draft-29, \"0xff00001b\"], dst_ports: [443, \"1000-2000\"], min_bytes: 1001, first_packet: true}}\n    action: drop\n  - name: ech-2024\n    match: {{list: names, on: [tls_sni, quic_sni], ech: true}}\n    action: drop\n  - name: freeze-2025\n    match: {{protocols: [tls], dst_list: hosting, except: [names]}}\n    action: drop\n    residual: {{seconds: 180, scope: 3-tuple, action: reset}}\ndefault: drop\ndefault_at: first_data\n"
    ))
    .unwrap();
    let c = &rs.meta.rules[0].cond;
    assert_eq!(c.quic_versions, [1, 0x6b33_43cf, 0xff00_001d, 0xff00_001b]);
    assert_eq!(c.dst_ports.len(), 2);
    assert_eq!((c.dst_ports[1].lo, c.dst_ports[1].hi), (1000, 2000));
    assert!(rs.meta.rules[2].residual.is_some());
    // explain names every condition of the deciding rule.
    let ex = explain(&rs, "blocked.example");
    assert_eq!(ex.rule.as_deref(), Some("ech-2024"));
    assert!(
        ex.conditions.iter().any(|c| c == "ech: true"),
        "{:?}",
        ex.conditions
    );
    // Only the protocol rule before it may decide such a flow first.
    assert_eq!(ex.protocol_rules.len(), 1, "{:?}", ex.protocol_rules);
    assert!(
        ex.protocol_rules[0].starts_with("quic-2022"),
        "{:?}",
        ex.protocol_rules
    );
    let words = chokepoint_rules::explain::conditions_in_words(&rs, &rs.meta.rules[2]);
    assert!(words.iter().any(|w| w == "except: names"), "{words:?}");
    assert!(
        words
            .iter()
            .any(|w| w == "dst_list: hosting (server address)"),
        "{words:?}"
    );
    assert!(
        words
            .iter()
            .any(|w| w.contains("3-tuple is blocked for 180 s (reset)")),
        "{words:?}"
    );
}

#[test]
fn unknown_condition_fields_name_line_and_column() {
    let e = err(&format!(
        "{HEAD}  - name: a\n    match: {{protocols: [quic], min_byte: 1001}}\n    action: drop\n"
    ));
    assert!(e.contains("p.yaml"), "{e}");
    assert!(e.contains("unknown field `min_byte`"), "{e}");
    assert!(e.contains("line 7"), "{e}");
    let e = err(&format!(
        "{HEAD}  - name: a\n    match: {{list: names}}\n    action: drop\n    residual: {{seconds: 1, scope: client, for: 3}}\n"
    ));
    assert!(
        e.contains("unknown field `for`") && e.contains("line 9"),
        "{e}"
    );
}

#[test]
fn bad_port_ranges_are_refused_with_the_line() {
    for bad in ["\"2000-1000\"", "\"1-x\"", "70000", "\"80-70000\""] {
        let e = err(&format!(
            "{HEAD}  - name: a\n    match: {{protocols: [tls], dst_ports: [{bad}]}}\n    action: drop\n"
        ));
        assert!(e.contains("p.yaml") && e.contains("line 7"), "{bad}: {e}");
        assert!(e.contains("port"), "{bad}: {e}");
    }
}

#[test]
fn bad_quic_versions_are_refused_with_the_line() {
    for bad in ["v3", "draft-x", "draft-300", "quic"] {
        let e = err(&format!(
            "{HEAD}  - name: a\n    match: {{protocols: [quic], quic_versions: [{bad}]}}\n    action: drop\n"
        ));
        assert!(e.contains("p.yaml") && e.contains("line 7"), "{bad}: {e}");
        assert!(e.contains("QUIC version"), "{bad}: {e}");
    }
}

#[test]
fn cross_references_and_shapes_are_checked() {
    let e = err(&format!(
        "{HEAD}  - name: a\n    match: {{protocols: [tls], dst_list: nowhere}}\n    action: drop\n"
    ));
    assert!(e.contains("dst_list names list `nowhere`"), "{e}");
    let e = err(&format!(
        "{HEAD}  - name: a\n    match: {{protocols: [tls], dst_list: names}}\n    action: drop\n"
    ));
    assert!(e.contains("holds no addresses"), "{e}");
    let e = err(&format!(
        "{HEAD}  - name: a\n    match: {{protocols: [tls], except: [nowhere]}}\n    action: drop\n"
    ));
    assert!(e.contains("except names list `nowhere`"), "{e}");
    let e = err(&format!(
        "{HEAD}  - name: a\n    match: {{protocols: [http], on: [ip]}}\n    action: drop\n"
    ));
    assert!(e.contains("fires on the protocol itself"), "{e}");
    let e = err(&format!(
        "{HEAD}  - name: a\n    match: {{dst_list: hosting}}\n    action: drop\n"
    ));
    assert!(e.contains("matches nothing"), "{e}");
    let e = err(&format!(
        "{HEAD}  - name: a\n    match: {{list: names, min_bytes: 10, max_bytes: 5}}\n    action: drop\n"
    ));
    assert!(e.contains("min_bytes 10 is above max_bytes 5"), "{e}");
    let e = err(&format!(
        "{HEAD}  - name: a\n    match: {{list: names}}\n    action: drop\n    residual: {{seconds: 0, scope: 2-tuple}}\n"
    ));
    assert!(e.contains("residual.seconds is 0"), "{e}");
    let e = err(&format!(
        "{HEAD}  - name: a\n    match: {{list: names}}\n    action: drop\n    residual: {{seconds: 5, scope: 4-tuple}}\n"
    ));
    assert!(
        e.contains("unknown variant `4-tuple`") && e.contains("line 9"),
        "{e}"
    );
    let e = err("version: 1\ndefault_at: first_byte\n");
    assert!(
        e.contains("unknown variant `first_byte`") && e.contains("line 2"),
        "{e}"
    );
    let e = err("version: 1\nprofile: {max_residual_entries: 0}\n");
    assert!(e.contains("max_residual_entries is 0"), "{e}");
}

#[test]
fn the_bundled_policies_compile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    for name in ["quic-2022.yaml", "gfw-quic-2025.yaml"] {
        let rs = chokepoint_rules::compile_file(&root.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!rs.meta.rules.is_empty(), "{name}");
    }
}
