//! A scenario replayed offline: the same capture through each stage's
//! policy, so a class can see without a lab which of a subscriber's
//! connections each stage of a block would have stopped.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;

use super::Scenario;

/// What one stage's policy did to the capture.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayStage {
    /// The stage's date.
    pub date: String,
    /// Its title.
    pub title: String,
    /// The policy's BLAKE3 and origin, as `replay` prints it.
    pub policy: String,
    /// Flow decisions (TLS, QUIC, HTTP, IP, protocol) by verdict.
    pub flows: BTreeMap<String, u64>,
    /// DNS query decisions by verdict.
    pub dns: BTreeMap<String, u64>,
    /// Per name (or, for decisions without a name, per server address):
    /// the verdict. A name decided several times shows the one that
    /// stopped traffic, if any did.
    pub names: BTreeMap<String, String>,
}

/// Replay `capture` under every stage of the scenario at `path`.
pub fn replay(path: &Path, capture: &Path) -> Result<Vec<ReplayStage>> {
    let sc = Scenario::load(path)?;
    let mut out = vec![];
    for (i, stage) in sc.stages.iter().enumerate() {
        let rules = Arc::new(sc.policy(path, i)?.compile()?);
        let mut events = Vec::new();
        let (summary, res) = chokepoint_runtime::replay::replay(
            rules.clone(),
            capture,
            chokepoint_runtime::replay::Outputs {
                events: Some(&mut events),
                ..Default::default()
            },
        );
        res.with_context(|| format!("replaying {}", capture.display()))?;
        let by_verdict = |counts: &[u64]| {
            chokepoint_rules::Verdict::ALL
                .iter()
                .zip(counts)
                .filter(|(_, n)| **n > 0)
                .map(|(v, n)| (v.as_str().to_string(), *n))
                .collect::<BTreeMap<_, _>>()
        };
        out.push(ReplayStage {
            date: stage.date.clone(),
            title: stage.title.clone(),
            policy: chokepoint_runtime::replay::policy_line(&rules),
            flows: by_verdict(&summary.flows_by_verdict),
            dns: by_verdict(&summary.dns_by_verdict),
            names: names(&events),
        });
    }
    Ok(out)
}

/// Verdict per name from replay's JSON events.
fn names(events: &[u8]) -> BTreeMap<String, String> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for line in events.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(e) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let name = e["name"].as_str().unwrap_or_default();
        let key = if name.is_empty() {
            e["dst"].as_str().unwrap_or_default().to_string()
        } else {
            name.to_string()
        };
        let verdict = e["verdict"].as_str().unwrap_or_default().to_string();
        let blocks = |v: &str| !matches!(v, "pass" | "log");
        match names.get(&key) {
            Some(old) if blocks(old) || !blocks(&verdict) => {}
            _ => {
                names.insert(key, verdict);
            }
        }
    }
    names
}

/// The replay as a table: one row per name, one column per stage.
pub fn table(stages: &[ReplayStage]) -> String {
    let mut o = String::new();
    for (i, s) in stages.iter().enumerate() {
        let flows: Vec<String> = s.flows.iter().map(|(v, n)| format!("{v} {n}")).collect();
        let dns: Vec<String> = s.dns.iter().map(|(v, n)| format!("{v} {n}")).collect();
        o.push_str(&format!(
            "stage {} {} {}: flows {}; dns queries {}\n",
            i + 1,
            s.date,
            s.title,
            if flows.is_empty() {
                "none".into()
            } else {
                flows.join(", ")
            },
            if dns.is_empty() {
                "none".into()
            } else {
                dns.join(", ")
            },
        ));
    }
    let mut all: Vec<&String> = stages.iter().flat_map(|s| s.names.keys()).collect();
    all.sort();
    all.dedup();
    let w = all.iter().map(|n| n.len()).max().unwrap_or(4).clamp(4, 60);
    o.push_str(&format!("\n{:<w$}", "name"));
    for i in 0..stages.len() {
        o.push_str(&format!("  {:<8}", format!("stage {}", i + 1)));
    }
    super::trim_line(&mut o);
    for n in all {
        o.push_str(&format!("{n:<w$}"));
        for s in stages {
            let v = s.names.get(n).map_or("-", String::as_str);
            o.push_str(&format!("  {v:<8}"));
        }
        super::trim_line(&mut o);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_shows_the_verdict_that_stopped_it() {
        let ev = br#"{"name":"t.me","dst":"1.2.3.4","verdict":"pass"}
{"name":"t.me","dst":"1.2.3.4","verdict":"reset"}
{"name":"t.me","dst":"1.2.3.4","verdict":"pass"}
{"name":"","dst":"149.154.167.99","verdict":"drop"}
{"name":"example.com","dst":"5.6.7.8","verdict":"pass"}
"#;
        let n = names(ev);
        assert_eq!(n["t.me"], "reset");
        assert_eq!(n["149.154.167.99"], "drop");
        assert_eq!(n["example.com"], "pass");
    }
}
