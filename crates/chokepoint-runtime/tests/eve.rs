//! Events against their schemas and against the reference Community ID:
//! every published capture in ../shared/testdata (IPv4 and IPv6, TCP and
//! UDP, tunnels) and the bundled sample, replayed in both formats; the
//! events are validated with Python's `jsonschema` against
//! docs/schema/*.schema.json, and every event's `community_id` is
//! recomputed with the reference implementation (PyPI `communityid`).
//!
//! Both Python packages live in the virtual environment scripts/test.sh
//! makes (`target/pyenv`, or `CHOKEPOINT_PYTHON`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use chokepoint_runtime::eve::EventFormat;
use chokepoint_runtime::replay;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn testdata() -> PathBuf {
    std::env::var_os("CHOKEPOINT_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/testdata"))
}

fn python() -> PathBuf {
    let p = std::env::var_os("CHOKEPOINT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/pyenv/bin/python"));
    assert!(
        p.exists(),
        "{} missing: ./scripts/test.sh makes the venv with communityid and jsonschema",
        p.display()
    );
    p
}

fn captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(testdata().join("pcaps"))
        .expect("testdata pcaps")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    v.sort();
    v.push(repo().join("tests/data/sample-telegram-2018.pcap"));
    v
}

/// Every event of every capture under `policy`, in `format`, as lines.
fn events(policy: &str, format: EventFormat) -> Vec<String> {
    let rules = Arc::new(chokepoint_rules::compile_str(policy, "test", Path::new(".")).unwrap());
    let mut lines = vec![];
    for c in captures() {
        let mut out = Vec::new();
        let (_, res) = replay::replay(
            rules.clone(),
            &c,
            replay::Outputs {
                events: Some(&mut out),
                format,
                ..Default::default()
            },
        );
        // Some published captures end damaged; their events still count.
        let _ = res;
        lines.extend(String::from_utf8(out).unwrap().lines().map(str::to_string));
    }
    lines
}

/// Run `script` with the venv's Python, `input` on stdin; its stdout.
fn py(script: &str, input: &str) -> String {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(repo().join("docs/schema"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const VALIDATE: &str = r#"
import json, sys, pathlib
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
d = pathlib.Path(sys.argv[1])
schemas = {p.name: json.loads(p.read_text()) for p in d.glob("*.schema.json")}
reg = Registry().with_resources(
    [(s["$id"], Resource.from_contents(s)) for s in schemas.values()])
bad = 0
n = 0
for line in sys.stdin:
    kind, text = line.split(" ", 1)
    v = Draft202012Validator(schemas[kind], registry=reg, format_checker=FormatChecker())
    for e in v.iter_errors(json.loads(text)):
        bad += 1
        if bad < 5:
            print("INVALID", kind, e.message, text[:300])
    n += 1
print("checked", n, "invalid", bad)
"#;

/// A policy with a rule for every trigger, so events of every kind
/// (alerts, pass and default decisions) appear.
const POLICY: &str = "version: 1
lists:
  names: {format: domains, entries: [google.com, facebook.com, telegram.org, t.me, example.com]}
  nets: {format: cidr, entries: [149.154.160.0/20, 2001:67c:4e8::/48]}
rules:
  - {name: names, match: {list: names}, action: reset}
  - {name: nets, match: {list: nets, on: [ip]}, action: drop}
default: pass
";

#[test]
fn native_and_eve_events_match_their_schemas() {
    let mut input = String::new();
    let (native, eve) = (
        events(POLICY, EventFormat::Native),
        events(POLICY, EventFormat::Eve),
    );
    assert_eq!(native.len(), eve.len());
    assert!(native.len() > 200, "only {} events", native.len());
    for l in &native {
        input.push_str(&format!("event.v1.schema.json {l}\n"));
    }
    for l in &eve {
        input.push_str(&format!("eve.v1.schema.json {l}\n"));
    }
    let report = py(VALIDATE, &input);
    assert!(
        report.contains(&format!("checked {} invalid 0", native.len() * 2)),
        "{report}"
    );
    // Every kind shows up: an alert, a protocol event, an address decision.
    let kinds: std::collections::BTreeSet<String> = eve
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event_type"].to_string())
        .collect();
    for k in ["\"alert\"", "\"tls\"", "\"dns\"", "\"quic\""] {
        assert!(kinds.contains(k), "no {k} event: {kinds:?}");
    }
}

const COMMUNITY_ID: &str = r#"
import json, sys, communityid
c = communityid.CommunityID(0)
wrong = 0
n = 0
for line in sys.stdin:
    e = json.loads(line)
    proto = {"TCP": communityid.PROTO_TCP, "UDP": communityid.PROTO_UDP}.get(e["proto"])
    if proto is None:
        t = communityid.FlowTuple(int(e["proto"]), e["src_ip"], e["dest_ip"])
    else:
        t = communityid.FlowTuple(proto, e["src_ip"], e["dest_ip"], e["src_port"], e["dest_port"])
    ref = c.calc(t)
    n += 1
    if ref != e["community_id"]:
        wrong += 1
        print("DIFF", ref, e["community_id"], e["src_ip"], e["dest_ip"], e["proto"])
print("checked", n, "wrong", wrong)
"#;

#[test]
fn community_ids_equal_the_reference_implementation() {
    let eve = events(POLICY, EventFormat::Eve);
    let report = py(COMMUNITY_ID, &(eve.join("\n") + "\n"));
    assert!(
        report.contains(&format!("checked {} wrong 0", eve.len())),
        "{report}"
    );
    // IPv4 and IPv6, TCP and UDP were all among them.
    let v: Vec<serde_json::Value> = eve
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (v6, proto) in [(false, "TCP"), (false, "UDP"), (true, "TCP"), (true, "UDP")] {
        assert!(
            v.iter()
                .any(|e| e["proto"] == proto && e["src_ip"].as_str().unwrap().contains(':') == v6),
            "no {proto} event over IPv{}",
            if v6 { 6 } else { 4 }
        );
    }
}

#[test]
fn both_directions_of_a_flow_share_the_community_id_and_flow_id() {
    use chokepoint_runtime::community_id::{community_id, flow_id};
    let a = community_id(
        0,
        "2001:db8::1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
        5000,
        443,
        6,
    );
    let b = community_id(
        0,
        "2001:db8::2".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
        443,
        5000,
        6,
    );
    assert_eq!(a, b);
    assert_eq!(flow_id(&a), flow_id(&b));
}

/// Native lines are written directly, not through a `serde_json` map
/// (`replay::write_event_line`): each must be byte for byte what
/// `serde_json` prints for `replay::event_json`'s value (keys sorted, the
/// same escapes), on every published capture, under names that need
/// escaping. EVE events still carry that value whole (`chokepoint`), so the
/// two formats' events, in the same order, are compared field for field.
#[test]
fn native_lines_are_what_serde_json_prints() {
    let odd = "version: 1
lists:
  names: {format: domains, entries: [google.com, example.com, wikipedia.org, facebook.com, telegram.org, apple.com, microsoft.com]}
  \"nets \\\"quoted\\\" \\\\ \\t tab\": {format: cidr, entries: [0.0.0.0/1, 128.0.0.0/1, \"::/0\"]}
rules:
  - {name: \"names \\\"quoted\\\" \\\\ back é ü \\u0001\", match: {list: names}, action: reset}
  - {name: nets, match: {list: \"nets \\\"quoted\\\" \\\\ \\t tab\", on: [ip]}, action: drop}
";
    for policy in [POLICY, odd] {
        let lines = events(policy, EventFormat::Native);
        let eve = events(policy, EventFormat::Eve);
        assert!(lines.len() > 100, "{} events", lines.len());
        assert_eq!(lines.len(), eve.len());
        let mut escaped = 0;
        for (line, eve) in lines.iter().zip(&eve) {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let want = &serde_json::from_str::<serde_json::Value>(eve).unwrap()["chokepoint"];
            assert_eq!(&v, want, "{line}");
            assert_eq!(&serde_json::to_string(want).unwrap(), line);
            escaped += usize::from(line.contains("\\\""));
        }
        if policy == odd {
            assert!(escaped > 0, "no line needed escaping");
        }
    }
}
