//! Rule and list ids are 16-bit in the artifact: a policy past the limit
//! is refused by name, never compiled with wrapped ids.

use std::fmt::Write;
use std::path::Path;

use chokepoint_rules::compile_str;

#[test]
fn more_rules_than_ids_is_refused() {
    let mut y =
        String::from("version: 1\nlists:\n  l: {format: domains, entries: [a.test]}\nrules:\n");
    for i in 0..65_536 {
        writeln!(y, "  - {{name: r{i}, match: {{list: l}}, action: drop}}").unwrap();
    }
    let e = compile_str(&y, "many-rules.yaml", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 65535 rules"), "{e}");
    assert!(e.contains("many-rules.yaml"), "{e}");
}

#[test]
fn more_lists_than_ids_is_refused() {
    // One named list plus one implicit list per keyword rule: 65,536 lists.
    let mut y =
        String::from("version: 1\nlists:\n  l: {format: domains, entries: [a.test]}\nrules:\n");
    for i in 0..65_535 {
        writeln!(
            y,
            "  - {{name: r{i}, match: {{keywords: [k{i}]}}, action: drop}}"
        )
        .unwrap();
    }
    let e = compile_str(&y, "many-lists.yaml", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 65535"), "{e}");
    assert!(e.contains("lists"), "{e}");
}

/// All of IPv6 is 2^128 addresses, one more than a u128 holds: the
/// statistics saturate instead of overflowing the compiler.
#[test]
fn the_whole_address_space_compiles() {
    let rs = chokepoint_rules::compile_str(
        "version: 1\nlists: {all: {format: cidr, entries: [\"::/0\", 0.0.0.0/0]}}\nrules: [{name: r, match: {list: all}, action: drop}]\n",
        "t.yaml",
        std::path::Path::new("."),
    )
    .unwrap();
    assert!(rs.match_ip("2001:db8::1".parse().unwrap()).is_some());
    assert!(rs.match_ip("198.18.0.1".parse().unwrap()).is_some());
}
