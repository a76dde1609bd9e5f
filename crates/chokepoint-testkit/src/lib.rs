//! # chokepoint-testkit
//!
//! Test and benchmark support, kept out of the packet path: nothing in
//! `chokepoint-core` or `chokepoint-runtime` depends on it except as a
//! dev-dependency.
//!
//! - [`synth`]: well-formed synthetic frames and protocol messages
//!   (browser-shaped ClientHellos, QUIC Initials that really decrypt, DNS
//!   queries, HTTP requests, IP fragments);
//! - [`gen`]: the traffic generator behind `chokepoint gen` and `chokepoint
//!   bench`, with the truth of every name it writes;
//! - [`sample`]: the bundled sample capture behind `chokepoint sample`;
//! - [`alloc`]: counting one thread's allocations (the no-allocation tests);
//! - [`vpn`]: first packets of WireGuard, OpenVPN, STUN, SSH, BitTorrent
//!   and random-looking proxies, for the protocol classifiers;
//! - [`craft`]: hostile artifacts with a valid hash, for the loader's tests
//!   and the lab.
//!
//! Captures are written with the runtime's one writer,
//! `chokepoint_runtime::capture::Writer`.

#![warn(missing_docs)]

pub mod alloc;
pub mod craft;
pub mod gen;
pub mod sample;
pub mod synth;
pub mod vpn;

/// The published test captures and their expected names
/// (`../shared/testdata` beside the repository, or `$CHOKEPOINT_TESTDATA`);
/// panics, saying where it looked, when they are not there.
pub fn testdata() -> std::path::PathBuf {
    let p = std::env::var_os("CHOKEPOINT_TESTDATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata")
        });
    assert!(
        p.join("pcaps").is_dir(),
        "test data not found at {} (set CHOKEPOINT_TESTDATA)",
        p.display()
    );
    p
}
