//! A duplicate key in a flow mapping that follows non-ASCII text on its
//! line is reported, not a panic. Found by the `policy` fuzz target: the
//! second occurrence was searched from the map's column (characters) used
//! as a byte offset, which fell inside a multi-byte character.

use chokepoint_rules::policy::Policy;

#[test]
fn duplicate_key_after_multibyte_text_is_an_error() {
    // The inner map starts at a character column that, read as a byte
    // offset, falls inside one of the `р`s before it.
    let yaml = "version: 1\nlists:\n  d: {a: рррррр, b: {x: 1, x: 2}}\n";
    let err = Policy::from_yaml(yaml, "p.yaml").unwrap_err().to_string();
    assert!(err.contains("duplicate"), "{err}");
}
