//! The oracle: 80 captures published by nDPI, Zeek, Suricata and tcpdump,
//! with the names tshark 4.0 extracts from them (../shared/testdata). For
//! every expected row the core must report an event with that trigger,
//! name (case-insensitive) and 5-tuple. Compared as sets of (flow, kind,
//! value), as the data's README advises (tshark reports a re-sent
//! ClientHello once; the engine may report it again), and each decision
//! must come no later than the frame tshark names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chokepoint_core::Engine;
use chokepoint_runtime::capture;

fn testdata() -> PathBuf {
    let p = std::env::var_os("CHOKEPOINT_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"));
    assert!(
        p.join("expected").is_dir(),
        "test data not found at {} (set CHOKEPOINT_TESTDATA)",
        p.display()
    );
    p
}

/// (kind, value lowercased, src, dst, sport, dport)
type Row = (String, String, String, String, u16, u16);

fn expected(file: &Path) -> Vec<(u64, Row)> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 7, "{}: {l}", file.display());
            (
                f[0].parse().unwrap(),
                (
                    f[1].to_string(),
                    f[2].to_lowercase(),
                    f[3].to_string(),
                    f[4].to_string(),
                    f[5].parse().unwrap(),
                    f[6].parse().unwrap(),
                ),
            )
        })
        .collect()
}

/// Every event of a capture, as rows with the frame of first report.
fn observed(pcap: &Path) -> BTreeMap<Row, u64> {
    // No rules: every name is extracted and reported (an IP rule would
    // decide a flow before its name is read).
    let rules = Arc::new(
        chokepoint_rules::compile_str("version: 1\n", "empty.yaml", Path::new(".")).unwrap(),
    );
    let mut engine = Engine::new(rules);
    let mut seen: BTreeMap<Row, u64> = BTreeMap::new();
    let _ = capture::read(pcap, |rec| {
        engine.process(rec.ts, rec.link, rec.data);
        for e in engine.events() {
            if e.trigger == chokepoint_rules::Trigger::Ip {
                continue;
            }
            let mut name = String::new();
            chokepoint_core::dns::escape(e.name.as_bytes(), &mut name);
            let row = (
                e.trigger.as_str().to_string(),
                name.to_lowercase(),
                e.src.to_string(),
                e.dst.to_string(),
                e.sport,
                e.dport,
            );
            seen.entry(row).or_insert(e.packet);
        }
    });
    seen
}

#[test]
fn every_expected_row_is_reported() {
    let td = testdata();
    let mut files: Vec<PathBuf> = std::fs::read_dir(td.join("expected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let (mut rows, mut matched, mut late) = (0, 0, 0);
    let mut missing: Vec<String> = Vec::new();
    let mut frame_diffs: BTreeSet<String> = BTreeSet::new();
    for exp in &files {
        let name = exp
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".tsv")
            .to_string();
        let pcap = td.join("pcaps").join(&name);
        let want = expected(exp);
        let got = observed(&pcap);
        for (frame, row) in want {
            rows += 1;
            match got.get(&row) {
                Some(&f) => {
                    matched += 1;
                    if f > frame {
                        late += 1;
                        frame_diffs.insert(format!(
                            "{name}: {} `{}` at frame {f}, tshark {frame}",
                            row.0, row.1
                        ));
                    }
                }
                None => missing.push(format!("{name} frame {frame}: {row:?}")),
            }
        }
    }
    eprintln!("oracle: {matched} of {rows} expected rows matched; {late} decided later than tshark's frame");
    for d in &frame_diffs {
        eprintln!("  later: {d}");
    }
    assert!(
        missing.is_empty(),
        "{} rows missing:\n{}",
        missing.len(),
        missing.join("\n")
    );
    // Reassembly (TCP, QUIC CRYPTO, IP fragments) completes no later than
    // tshark's: a censor must decide on the packet that completes a name.
    assert!(
        frame_diffs.is_empty(),
        "decided later than tshark:\n{}",
        frame_diffs.iter().cloned().collect::<Vec<_>>().join("\n")
    );
}

/// Captures with no expected rows are negative cases: nothing reported.
#[test]
fn negative_captures_report_nothing() {
    let td = testdata();
    for exp in std::fs::read_dir(td.join("expected")).unwrap() {
        let exp = exp.unwrap().path();
        if !expected(&exp).is_empty() {
            continue;
        }
        let name = exp
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".tsv")
            .to_string();
        let got = observed(&td.join("pcaps").join(&name));
        assert!(got.is_empty(), "{name}: reported {got:?}");
    }
}
