//! Events say what was done (`action`, `injected`), beside what the rule
//! asked for (`verdict`): a reset cannot reset UDP, a DNS answer cannot
//! answer a TLS hello, and a tap cannot drop.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chokepoint_core::Engine;
use chokepoint_rules::{compile_default, compile_str, Ruleset};
use chokepoint_runtime::actions::{Actor, Applied};
use chokepoint_runtime::{capture, replay};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/sample-telegram-2018.pcap")
}

/// Replay the sample under `rules`; the events as JSON.
fn events(rules: Ruleset) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let (_, res) = replay::replay(
        Arc::new(rules),
        &sample(),
        replay::Outputs {
            events: Some(&mut out),
            ..Default::default()
        },
    );
    res.unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The one event for `trigger` and `name`.
fn find<'a>(ev: &'a [serde_json::Value], trigger: &str, name: &str) -> &'a serde_json::Value {
    let hits: Vec<_> = ev
        .iter()
        .filter(|e| e["trigger"] == trigger && e["name"] == name)
        .collect();
    assert_eq!(hits.len(), 1, "{trigger} {name} in {ev:#?}");
    hits[0]
}

#[test]
fn a_reset_rule_resets_tcp_and_only_drops_udp() {
    let ev = events(compile_default().unwrap());
    // The default policy resets telegram names on every trigger.
    let dns = find(&ev, "dns_qname", "t.me");
    assert_eq!(dns["verdict"], "reset");
    assert_eq!(dns["action"], "drop", "a UDP query cannot be reset");
    assert_eq!(dns["injected"], 0);
    let quic = find(&ev, "quic_sni", "t.me");
    assert_eq!(
        (&quic["verdict"], &quic["action"]),
        (&"reset".into(), &"drop".into())
    );
    let tls = find(&ev, "tls_sni", "web.telegram.org");
    assert_eq!(tls["verdict"], "reset");
    assert_eq!(tls["action"], "reset");
    assert!(tls["injected"].as_u64().unwrap() >= 2, "{tls}");
    let allowed = find(&ev, "tls_sni", "www.example.com");
    assert_eq!(
        (&allowed["action"], &allowed["injected"]),
        (&"pass".into(), &0.into())
    );
    for e in ev.iter().filter(|e| e["trigger"] == "ip") {
        assert_eq!(
            (&e["verdict"], &e["action"]),
            (&"drop".into(), &"drop".into())
        );
    }
}

#[test]
fn a_dns_rule_answers_queries_and_drops_tls_hellos() {
    let policy = r#"
version: 1
lists:
  tg: {format: domains, entries: [telegram.org, t.me]}
rules:
  - {name: nx, match: {list: tg, on: [dns_qname, tls_sni]}, action: {dns: {answer: nxdomain}}}
"#;
    let ev = events(compile_str(policy, "p.yaml", Path::new(".")).unwrap());
    let dns = find(&ev, "dns_qname", "web.telegram.org");
    assert_eq!(
        (&dns["verdict"], &dns["action"]),
        (&"dns".into(), &"dns".into())
    );
    assert_eq!(dns["injected"], 1);
    let tls = find(&ev, "tls_sni", "web.telegram.org");
    assert_eq!(tls["verdict"], "dns");
    assert_eq!(tls["action"], "drop", "a TLS hello has no query to answer");
    assert_eq!(tls["injected"], 0);
}

/// On a tap the actor stops nothing: a would-be drop is `observe`, while
/// resets still go out (injecting is all a tap can do).
#[test]
fn a_tap_observes_what_it_cannot_drop() {
    let rules = Arc::new(compile_default().unwrap());
    let mut engine = Engine::new(rules.clone());
    let mut actor = Actor::tap();
    let mut seen = Vec::new();
    capture::read(&sample(), |rec| {
        let d = engine.process(rec.ts, rec.link, rec.data);
        let o = actor.act(&rules, rec.link, rec.data, rec.ts, &d, engine.events());
        assert!(o.forward, "a tap never holds a frame back");
        for e in engine.events() {
            let name = String::from_utf8_lossy(e.name.as_bytes()).into_owned();
            seen.push((e.trigger.as_str(), name, o.applied, o.inject.len()));
        }
    })
    .unwrap();
    let get = |trigger: &str, name: &str| {
        seen.iter()
            .find(|s| s.0 == trigger && s.1 == name)
            .map(|s| (s.2, s.3))
            .unwrap()
    };
    assert_eq!(get("dns_qname", "t.me"), (Applied::Observe, 0));
    assert_eq!(get("ip", ""), (Applied::Observe, 0));
    assert_eq!(get("tls_sni", "www.example.com"), (Applied::Pass, 0));
    let (applied, injected) = get("tls_sni", "web.telegram.org");
    assert_eq!(applied, Applied::Reset);
    assert!(injected >= 2);
    assert_eq!(actor.counters.dropped, 0);
    assert!(actor.counters.observed > 0);
    assert_eq!(Applied::Observe.as_str(), "observe");
}
