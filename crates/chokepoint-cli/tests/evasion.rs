//! The evasion lab (tests/lab/evasion.sh): ByeDPI, built from
//! ../shared/tools/byedpi, as a SOCKS proxy in the client namespace; curl
//! through it across the live bridge under each censor preset; a router
//! past the censor that decrements the TTL; real HTTPS and HTTP servers.
//! The matrix it measures must be the one docs/EVASION.md teaches, and
//! the hardened preset must block every strategy. Needs root, as CI runs.

mod labkit;

#[test]
fn evasion_matrix_with_byedpi_is_the_documented_one() {
    let repo = labkit::repo();
    let testdata = std::env::var("CHOKEPOINT_TESTDATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo.join("../shared/testdata"));
    let byedpi = testdata.join("../tools/byedpi");
    assert!(
        byedpi.join("desync.c").is_file(),
        "ByeDPI's source is not at {}",
        byedpi.display()
    );
    let lab_dir = std::env::temp_dir().join(format!("chokepoint-evasion-{}", std::process::id()));
    let prefix = std::ffi::OsString::from(format!("ev{}", std::process::id()));
    let text = labkit::run_script(
        "tests/lab/evasion.sh",
        "test",
        &[
            ("LAB_DIR", lab_dir.as_os_str()),
            ("BYEDPI_SRC", byedpi.as_os_str()),
            ("EV_PREFIX", &prefix),
        ],
    );
    assert!(
        text.contains("evasion: 25 passed, 0 failed"),
        "evasion lab: {text}"
    );
    let measured: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
    let doc = std::fs::read_to_string(repo.join("docs/EVASION.md")).unwrap();
    let documented: Vec<&str> = doc
        .split("<!-- matrix -->")
        .nth(1)
        .expect("docs/EVASION.md marks its matrix with <!-- matrix -->")
        .lines()
        .filter(|l| l.starts_with("| "))
        .collect();
    assert_eq!(
        measured, documented,
        "the measured matrix differs from docs/EVASION.md:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&lab_dir);
}
