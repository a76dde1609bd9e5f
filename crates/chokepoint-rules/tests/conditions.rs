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

#[test]
fn explain_words_every_condition() {
    let rs = compile(
        r#"version: 1
lists:
  hosting: {format: cidr, entries: [203.0.113.0/24]}
  subscribers: {format: cidr, entries: [198.18.0.0/16]}
  names: {format: domains, entries: [blocked.example]}
  exempt: {format: domains, entries: [ok.blocked.example]}
rules:
  - name: every
    match:
      list: names
      on: [quic_sni]
      protocols: [quic]
      proto: udp
      dst_ports: [443, "1000-2000"]
      src_ports: ["1024-65535"]
      min_bytes: 1001
      max_bytes: 1500
      quic_versions: [v1, v2, draft-29, "0xff00001b", 5]
      first_packet: true
      src_port_ge_dst_port: true
      ech: true
      dst_list: hosting
      src_list: subscribers
      except: [exempt]
    action: drop
    residual: {seconds: 180, scope: 2-tuple, action: reset}
  - {name: tcp, match: {protocols: [tls, http], proto: tcp}, action: drop}
"#,
    )
    .unwrap();
    let words = explain::conditions_in_words(&rs, &rs.meta.rules[0]);
    assert_eq!(
        words,
        [
            "protocols: quic",
            "proto: udp",
            "dst_ports: 443, 1000-2000",
            "src_ports: 1024-65535",
            "min_bytes: 1001 (transport payload of the firing packet)",
            "max_bytes: 1500 (transport payload of the firing packet)",
            "quic_versions: v1, v2, draft-29, draft-27, 0x00000005",
            "ech: true",
            "first_packet: only the flow's first data packet",
            "src_port_ge_dst_port: client port >= server port",
            "dst_list: hosting (server address)",
            "src_list: subscribers (client address)",
            "except: exempt",
            "residual: then every new flow on the 2-tuple is blocked for 180 s (reset)",
        ]
    );
    let words = explain::conditions_in_words(&rs, &rs.meta.rules[1]);
    assert_eq!(words, ["protocols: tls, http", "proto: tcp"]);
}

#[test]
fn explain_says_which_later_rules_decide_when_a_condition_fails() {
    let rs = compile(
        r#"version: 1
lists:
  names: {format: domains, entries: [blocked.example]}
  others: {format: domains, entries: [other.example]}
  nets: {format: cidr, entries: [203.0.113.0/24]}
  inner: {format: cidr, entries: [203.0.113.0/25]}
rules:
  - {name: first, match: {list: names, on: [quic_sni], proto: udp, src_port_ge_dst_port: true}, action: drop}
  - {name: other-list, match: {list: others, on: [quic_sni]}, action: reset}
  - {name: tls-only, match: {list: names, on: [tls_sni]}, action: reset}
  - {name: bigger, match: {list: names, on: [quic_sni], min_bytes: 1200}, action: reset}
  - {name: any-quic, match: {protocols: [quic]}, action: drop}
  - {name: catch, match: {list: names}, action: log}
  - {name: never, match: {list: names}, action: drop}
  - {name: https-nets, match: {list: nets, on: [ip], dst_ports: [443]}, action: drop}
  - {name: inner, match: {list: inner, on: [ip]}, action: reset}
"#,
    )
    .unwrap();
    let ex = explain(&rs, "www.blocked.example");
    assert_eq!(ex.rule.as_deref(), Some("first"));
    assert_eq!(
        ex.falls_through,
        [
            "bigger (reset) if its conditions hold",
            "any-quic (drop) if its conditions hold",
            "catch (log)",
        ]
    );
    let ex = explain(&rs, "203.0.113.1");
    assert_eq!(ex.rule.as_deref(), Some("https-nets"));
    assert_eq!(ex.falls_through, ["inner (reset)"]);
    let ex = explain(&rs, "203.0.113.200");
    assert_eq!(ex.falls_through, ["the policy default (pass)"]);
    // A rule without conditions decides whatever the packet: nothing falls
    // through.
    let ex = explain(&rs, "other.example");
    assert_eq!(ex.rule.as_deref(), Some("other-list"));
    assert!(ex.falls_through.is_empty(), "{:?}", ex.falls_through);
}

#[test]
fn explain_of_the_bundled_gfw_quic_policy() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/gfw-quic-2025.yaml");
    let rs = chokepoint_rules::compile_file(&path).unwrap();
    let ex = explain(&rs, "www.google.com");
    assert_eq!(ex.rule.as_deref(), Some("gfw-quic-sni"));
    assert_eq!((ex.verdict.as_str(), ex.action.as_str()), ("drop", "drop"));
    assert_eq!(ex.on, ["quic_sni"]);
    assert_eq!(ex.entry.as_deref(), Some("google.com"));
    assert_eq!(ex.entry_kind, Some("suffix"));
    assert_eq!(
        ex.conditions,
        [
            "proto: udp",
            "first_packet: only the flow's first data packet",
            "src_port_ge_dst_port: client port >= server port",
            "residual: then every new flow on the 3-tuple is blocked for 180 s (drop)",
        ]
    );
    assert_eq!(ex.falls_through, ["the policy default (pass)"]);
    assert!(ex.protocol_rules.is_empty());
    let ex = explain(&rs, "example.com");
    assert_eq!((ex.rule, ex.verdict.as_str()), (None, "pass"));
    assert!(ex.conditions.is_empty() && ex.falls_through.is_empty());
}

#[test]
fn explain_names_the_dynamic_list_rules_and_what_fills_them() {
    let rs = compile(
        "version: 1
lists:
  vpn-servers: {format: dynamic}
  calls: {format: dynamic}
  nets: {format: cidr, entries: [203.0.113.0/24]}
rules:
  - {name: learnt-vpn, match: {list: vpn-servers, on: [ip]}, action: drop}
  - {name: learnt-calls, match: {list: calls, on: [ip]}, action: reset}
  - {name: nets, match: {list: nets, on: [ip]}, action: drop}
  - {name: vpn, match: {protocols: [wireguard, openvpn]}, action: {learn: {list: vpn-servers, key: server, ttl: 600, delay: 60}}}
",
    )
    .unwrap();
    // An address no static list holds: what a learn could still do to it.
    let ex = explain(&rs, "198.51.100.7");
    assert_eq!(ex.rule, None, "no static rule holds it");
    assert_eq!(ex.learned_rules.len(), 2, "{:?}", ex.learned_rules);
    assert!(
        ex.learned_rules[0]
            .starts_with("learnt-vpn (drop): on dynamic list vpn-servers, filled by vpn (learn"),
        "{:?}",
        ex.learned_rules
    );
    assert_eq!(
        ex.learned_rules[1],
        "learnt-calls (reset): on dynamic list calls, filled by no rule"
    );
    // A static match first: the dynamic rules after it cannot decide.
    let ex = explain(&rs, "203.0.113.9");
    assert_eq!(ex.rule.as_deref(), Some("nets"));
    assert_eq!(
        ex.learned_rules.len(),
        2,
        "both come before it: {:?}",
        ex.learned_rules
    );
}
