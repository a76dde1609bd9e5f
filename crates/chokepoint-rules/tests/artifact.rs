//! Artifact round trip and every way loading must refuse a bad file.

use chokepoint_rules::artifact::{from_bytes, to_bytes, ArtifactError, FORMAT_VERSION, HEADER_LEN};
use chokepoint_rules::{compile_default, Ruleset};

fn sample() -> (Ruleset, Vec<u8>) {
    let rs = compile_default().unwrap();
    let b = to_bytes(&rs);
    (rs, b)
}

#[test]
fn round_trip_is_identical() {
    let (rs, b) = sample();
    let back = from_bytes(&b).unwrap();
    assert_eq!(back, rs);
    assert_eq!(to_bytes(&back), b, "re-serialising gives the same bytes");
    for q in [
        "t.me",
        "149.154.167.99",
        "52.58.0.1",
        "2001:67c:4e8::1",
        "example.com",
    ] {
        assert_eq!(
            chokepoint_rules::explain(&back, q),
            chokepoint_rules::explain(&rs, q)
        );
    }
}

#[test]
fn wrong_magic() {
    let (_, mut b) = sample();
    b[0] = b'X';
    assert!(matches!(from_bytes(&b), Err(ArtifactError::BadMagic(_))));
    assert!(matches!(
        from_bytes(b"version: 1\n"),
        Err(ArtifactError::BadMagic(_))
    ));
    assert!(matches!(from_bytes(b""), Err(ArtifactError::BadMagic(_))));
}

#[test]
fn wrong_version() {
    let (_, mut b) = sample();
    b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let e = from_bytes(&b).unwrap_err();
    assert_eq!(
        e,
        ArtifactError::Version {
            found: FORMAT_VERSION + 1,
            expected: FORMAT_VERSION
        }
    );
    assert!(e.to_string().contains("recompile"));
}

#[test]
fn truncated_anywhere() {
    let (_, b) = sample();
    for cut in [9, 40, HEADER_LEN, HEADER_LEN + 10, b.len() / 2, b.len() - 1] {
        let e = from_bytes(&b[..cut]).unwrap_err();
        assert!(
            matches!(e, ArtifactError::Truncated { .. }),
            "cut at {cut}: {e}"
        );
    }
}

#[test]
fn corrupted_body_fails_the_hash() {
    let (_, b) = sample();
    for at in [HEADER_LEN, HEADER_LEN + 100, b.len() / 2, b.len() - 1] {
        let mut c = b.clone();
        c[at] ^= 0x40;
        assert!(
            matches!(from_bytes(&c), Err(ArtifactError::HashMismatch { .. })),
            "flip at {at}"
        );
    }
    let mut c = b.clone();
    c.push(0);
    assert!(matches!(
        from_bytes(&c),
        Err(ArtifactError::Inconsistent(_))
    ));
}

/// A file with a valid hash but crafted tables is refused, not trusted.
#[test]
fn crafted_tables_are_refused_not_trusted() {
    let (_, b) = sample();
    let rehash = chokepoint_testkit::craft::rehash;
    // Every byte of the first 8 KiB (metadata and small tables) and a sample
    // of the rest changed in turn: any outcome but a panic is fine, and most
    // must be refused.
    let mut refused = 0;
    let mut tried = 0;
    let dense = HEADER_LEN..(HEADER_LEN + 8192).min(b.len());
    let sparse = (HEADER_LEN + 8192..b.len()).step_by(509);
    for at in dense.chain(sparse) {
        let mut c = b.clone();
        c[at] = c[at].wrapping_add(0x81);
        tried += 1;
        if from_bytes(&rehash(c)).is_err() {
            refused += 1;
        }
    }
    assert!(
        refused * 2 > tried,
        "only {refused} of {tried} crafted files refused"
    );
}
