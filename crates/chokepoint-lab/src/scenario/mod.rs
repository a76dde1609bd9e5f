//! Scenarios: a censor's timeline as stages of policy, each probed live in
//! a lab or replayed over a capture.
//!
//! ```yaml
//! name: telegram-2018
//! title: Telegram, April 2018
//! description: ...
//! sources: [...]
//! hosts: {t.me: 198.18.1.10}          # names given addresses of their own
//! targets:
//!   - https://t.me/                       # a URL, probed as the probe does by default
//!   - {url: https://t.me/, quic: true}    # over QUIC too (v1; or quic: draft-29)
//!   - {url: https://t.me/, ech: grease, label: t.me with ECH}
//! stages:
//!   - date: 2018-04-13
//!     title: The court order; nothing blocked yet
//!     policy: {version: 1, rules: [], default: pass}   # inline...
//!     expect: {https://t.me/: false}
//!   - date: 2018-04-16
//!     title: Telegram's domains
//!     policy: ../config/default.yaml                  # ...or a file, relative to the scenario
//!     expect: {https://t.me/: http-failure}
//! ```
//!
//! `expect` is optional; where given, `scenario run` checks the probe's
//! `blocking` for that target against it and fails when they differ, so a
//! scenario is also a test of the censor it describes. A target is named
//! in `expect` and in the table by its label: the URL, plus ` (quic)`,
//! ` (quic draft-29)` or ` (ech)` for the options, unless it gives its own.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chokepoint_probe::{Ech, QuicVersion};
use serde::{Deserialize, Serialize};

use crate::lab::{self, PolicySource, UpOptions};
use crate::plan::{self, Role};

pub mod replay;

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name.
    pub name: String,
    /// One line.
    pub title: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// Where the timeline and its parameters come from.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Names with addresses of their own in the lab.
    #[serde(default)]
    pub hosts: BTreeMap<String, Ipv4Addr>,
    /// What to probe after each stage.
    pub targets: Vec<ScenarioTarget>,
    /// The timeline.
    pub stages: Vec<Stage>,
    /// Seconds each probe step may take (the probe's `--timeout`).
    #[serde(default = "default_probe_timeout")]
    pub probe_timeout: u64,
}

fn default_probe_timeout() -> u64 {
    5
}

/// One thing to probe: a URL, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_norway::Value")]
pub struct ScenarioTarget {
    /// The URL (or bare name), as the probe takes it.
    pub url: String,
    /// Measure it over QUIC too, offering this version (`--quic-version`).
    pub quic: Option<QuicVersion>,
    /// The ECH extension of the TLS hello (`--ech`).
    pub ech: Option<Ech>,
    /// What `expect` and the table call it.
    pub label: String,
    /// Whether the label was given (the table then shows it whole).
    #[serde(skip)]
    labelled: bool,
}

impl ScenarioTarget {
    /// A plain URL, probed with the probe's defaults.
    pub fn url(url: &str) -> ScenarioTarget {
        ScenarioTarget {
            url: url.to_string(),
            quic: None,
            ech: None,
            label: url.to_string(),
            labelled: false,
        }
    }

    /// The probe's options for this target (before `--json` and the URL).
    pub fn probe_options(&self) -> Vec<String> {
        let mut args = vec![];
        if let Some(v) = self.quic {
            args.extend(["--quic-version".to_string(), v.to_string()]);
        }
        if let Some(e) = self.ech {
            args.extend(["--ech".to_string(), e.to_string()]);
        }
        args
    }

    /// The options as the default label's suffix.
    fn suffix(&self) -> String {
        let mut s = String::new();
        match self.quic {
            Some(QuicVersion::V1) => s.push_str(" (quic)"),
            Some(v) => s.push_str(&format!(" (quic {v})")),
            None => {}
        }
        if self.ech.is_some() {
            s.push_str(" (ech)");
        }
        s
    }

    /// The table's column head: the label when given, else the URL
    /// without its scheme and last slash, and the options.
    pub fn column(&self) -> String {
        if self.labelled {
            return self.label.clone();
        }
        if crate::signature::parse(&self.url).is_some() {
            // The scheme is the protocol: keep it.
            return self.url.trim_end_matches('/').to_string();
        }
        format!("{}{}", short_target(&self.url), self.suffix())
    }
}

impl TryFrom<serde_norway::Value> for ScenarioTarget {
    type Error = String;

    fn try_from(v: serde_norway::Value) -> Result<Self, String> {
        use serde_norway::Value as V;
        let text = |v: &V, what: &str| match v {
            V::String(s) => Ok(s.clone()),
            other => Err(format!("{what} is text, not {other:?}")),
        };
        let map = match v {
            V::String(url) => return checked_url(&url).map(|()| ScenarioTarget::url(&url)),
            V::Mapping(m) => m,
            other => {
                return Err(format!(
                "a target is a URL or {{url: ..., quic: ..., ech: ..., label: ...}}, not {other:?}"
            ))
            }
        };
        let mut t = ScenarioTarget::url("");
        let mut label = None;
        for (k, v) in &map {
            match k.as_str().unwrap_or("") {
                "url" => t.url = text(v, "url")?,
                "quic" => {
                    t.quic = match v {
                        V::Bool(true) => Some(QuicVersion::V1),
                        V::Bool(false) => None,
                        V::String(s) => Some(QuicVersion::parse(s).ok_or_else(|| {
                            format!("quic: {s:?}: use true, false, v1 or draft-29")
                        })?),
                        other => {
                            return Err(format!("quic: {other:?}: use true, false, v1 or draft-29"))
                        }
                    }
                }
                "ech" => {
                    let e = text(v, "ech")?;
                    t.ech = Some(Ech::parse(&e).ok_or_else(|| format!("ech: {e:?}: use grease"))?);
                }
                "label" => label = Some(text(v, "label")?),
                other => {
                    return Err(format!(
                        "target field {other:?}: the fields are url, quic, ech and label"
                    ))
                }
            }
        }
        if t.url.is_empty() {
            return Err("a target mapping needs a url".into());
        }
        checked_url(&t.url)?;
        if crate::signature::parse(&t.url).is_some() && (t.quic.is_some() || t.ech.is_some()) {
            return Err(format!("{}: quic and ech apply to web targets only", t.url));
        }
        match label {
            Some(l) if l.trim().is_empty() => return Err("an empty label".into()),
            Some(l) => {
                t.label = l;
                t.labelled = true;
            }
            None => t.label = format!("{}{}", t.url, t.suffix()),
        }
        Ok(t)
    }
}

/// A URL the probe takes, or why not.
fn checked_url(url: &str) -> Result<(), String> {
    if let Some(sig) = crate::signature::parse(url) {
        return sig.map(|_| ());
    }
    chokepoint_probe::Target::parse(url)
        .map(|_| ())
        .map_err(|e| format!("target {url:?}: {}", e.why))
}

/// One stage of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// When (free text, usually YYYY-MM-DD).
    pub date: String,
    /// One line.
    pub title: String,
    /// What happened.
    #[serde(default)]
    pub description: String,
    /// A policy file (relative to the scenario) or an inline policy.
    pub policy: serde_norway::Value,
    /// What the probe should report per target: `false`, `dns`,
    /// `tcp_ip`, `http-failure`, `http-diff`.
    #[serde(default)]
    pub expect: BTreeMap<String, serde_norway::Value>,
}

impl Scenario {
    /// Read and check a scenario file.
    pub fn load(path: &Path) -> Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let sc: Scenario = serde_norway::from_str(&text)
            .with_context(|| format!("{}: not a scenario", path.display()))?;
        anyhow::ensure!(!sc.stages.is_empty(), "{}: no stages", path.display());
        anyhow::ensure!(!sc.targets.is_empty(), "{}: no targets", path.display());
        let mut labels = std::collections::BTreeSet::new();
        for t in &sc.targets {
            anyhow::ensure!(
                labels.insert(t.label.as_str()),
                "{}: two targets are labelled {:?}: give one a label of its own",
                path.display(),
                t.label
            );
        }
        for (name, a) in &sc.hosts {
            anyhow::ensure!(
                plan::host_address_ok(*a),
                "{}: host {name} at {a} is not a lab host address (198.18.1.1-253, not .2)",
                path.display()
            );
        }
        for (i, st) in sc.stages.iter().enumerate() {
            for (target, want) in &st.expect {
                anyhow::ensure!(
                    labels.contains(target.as_str()),
                    "{}: stage {} expects an outcome for {target}, which is not a target",
                    path.display(),
                    i + 1
                );
                expected_blocking(want).with_context(|| {
                    format!("{}: stage {}, expect {target}", path.display(), i + 1)
                })?;
            }
        }
        Ok(sc)
    }

    /// Stage `i`'s policy, with list paths relative to the scenario file.
    pub fn policy(&self, path: &Path, i: usize) -> Result<PolicySource> {
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let origin = format!(
            "{}, stage {} ({})",
            path.display(),
            i + 1,
            self.stages[i].date
        );
        match &self.stages[i].policy {
            serde_norway::Value::String(file) => Ok(PolicySource::File(base.join(file))),
            v @ serde_norway::Value::Mapping(_) => Ok(PolicySource::Text {
                yaml: serde_norway::to_string(v)?,
                origin,
                base_dir: base,
            }),
            _ => bail!("{origin}: `policy` is a file name or a policy mapping"),
        }
    }
}

/// `false` or one of OONI's blocking strings.
fn expected_blocking(v: &serde_norway::Value) -> Result<String> {
    match v {
        serde_norway::Value::Bool(false) => Ok("false".into()),
        serde_norway::Value::String(s)
            if [
                "false",
                "dns",
                "tcp_ip",
                "http-failure",
                "http-diff",
                "blocked",
            ]
            .contains(&s.as_str()) =>
        {
            Ok(s.clone())
        }
        other => {
            bail!("expected outcome {other:?}: use false, dns, tcp_ip, http-failure, http-diff or (for a protocol signature target) blocked")
        }
    }
}

/// What the probe found for one target after one stage.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The target.
    pub target: String,
    /// The probe's `blocking` (`false`, `dns`, ..., `null` when unknown).
    pub blocking: serde_json::Value,
    /// The probe's `failure`.
    pub failure: serde_json::Value,
    /// The probe's `analysis`.
    pub analysis: serde_json::Value,
    /// What the scenario expected, if it said.
    pub expected: Option<String>,
    /// Whether it matched the expectation (true when none was given).
    pub as_expected: bool,
}

impl Outcome {
    /// The cell of the table: `ok` for `false`, the blocking type
    /// otherwise, `?` when the probe could not tell.
    pub fn cell(&self) -> String {
        let b = blocking_str(&self.blocking);
        let cell = if b == "false" { "ok".to_string() } else { b };
        if self.as_expected {
            cell
        } else {
            format!("{cell}!")
        }
    }
}

fn blocking_str(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Bool(false) => "false".into(),
        serde_json::Value::String(s) => s.clone(),
        _ => "?".into(),
    }
}

/// One stage's results.
#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    /// The stage's date.
    pub date: String,
    /// Its title.
    pub title: String,
    /// One outcome per target.
    pub outcomes: Vec<Outcome>,
}

/// How to run a scenario live.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The lab to make for it.
    pub lab: String,
    /// Keep the lab up afterwards.
    pub keep: bool,
    /// The chokepoint binary.
    pub exe: PathBuf,
    /// Engine workers.
    pub workers: u16,
}

/// Run a scenario in a new lab: up with the first stage, probe, then each
/// later stage applied by hot reload and probed. The lab goes down
/// afterwards unless `keep`. `progress` hears of each stage as it ends.
pub fn run(
    path: &Path,
    o: &RunOptions,
    mut progress: impl FnMut(&StageResult),
) -> Result<Vec<StageResult>> {
    let sc = Scenario::load(path)?;
    let first = sc.policy(path, 0)?;
    lab::up(&UpOptions {
        name: o.lab.clone(),
        policy: first,
        hosts: sc.hosts.clone(),
        scenario: Some(sc.name.clone()),
        // Long enough for every stage's probes, with room to look around
        // when --keep.
        lifetime: Duration::from_secs(if o.keep { 4 * 3600 } else { 1800 }),
        workers: o.workers,
        exe: o.exe.clone(),
    })?;
    let res = run_stages(path, &sc, o, &mut progress);
    if !o.keep {
        let down = lab::down(&o.lab);
        if let (Ok(_), Err(e)) = (&res, down) {
            return Err(e);
        }
    }
    res
}

fn run_stages(
    path: &Path,
    sc: &Scenario,
    o: &RunOptions,
    progress: &mut impl FnMut(&StageResult),
) -> Result<Vec<StageResult>> {
    let st = crate::state::LabState::load(&o.lab)?;
    let mut results = vec![];
    for (i, stage) in sc.stages.iter().enumerate() {
        if i > 0 {
            lab::apply(&o.lab, &sc.policy(path, i)?)
                .with_context(|| format!("stage {} ({})", i + 1, stage.date))?;
        }
        let found = probe_all(&st, &sc.targets, sc.probe_timeout, &o.exe)?;
        let outcomes = sc
            .targets
            .iter()
            .zip(found)
            .map(|(t, m)| {
                let expected = stage
                    .expect
                    .get(&t.label)
                    .and_then(|v| expected_blocking(v).ok());
                let blocking = m.get("blocking").cloned().unwrap_or_default();
                let as_expected = expected
                    .as_ref()
                    .is_none_or(|e| *e == blocking_str(&blocking));
                Outcome {
                    target: t.label.clone(),
                    blocking,
                    failure: m.get("failure").cloned().unwrap_or_default(),
                    analysis: m.get("analysis").cloned().unwrap_or_default(),
                    expected,
                    as_expected,
                }
            })
            .collect();
        let r = StageResult {
            date: stage.date.clone(),
            title: stage.title.clone(),
            outcomes,
        };
        progress(&r);
        results.push(r);
    }
    Ok(results)
}

/// Probe every target at once (one probe process each, with the target's
/// options, in the client namespace, against the lab's helper); one JSON
/// object per target.
pub fn probe_all(
    st: &crate::state::LabState,
    targets: &[ScenarioTarget],
    timeout: u64,
    exe: &Path,
) -> Result<Vec<serde_json::Value>> {
    let client = plan::netns(&st.name, Role::Client);
    let args = Arc::new(probe_args(st, timeout));
    let handles: Vec<_> = targets
        .iter()
        .map(|t| {
            let (client, exe, args, t) =
                (client.clone(), exe.to_path_buf(), args.clone(), t.clone());
            std::thread::spawn(move || -> Result<serde_json::Value> {
                if let Some(sig) = crate::signature::parse(&t.url) {
                    let sig = sig.map_err(|e| anyhow::anyhow!(e))?;
                    // An echo comes back in well under a second: 2 s a try, 3 tries on UDP.
                    let (url, wait) = (t.url.clone(), Duration::from_secs(timeout.min(2)));
                    return crate::netns::within(&client, move || {
                        crate::signature::measure(&url, sig, wait)
                    });
                }
                let out = std::process::Command::new("ip")
                    .args(["netns", "exec", &client])
                    .arg(&exe)
                    .args(args.iter())
                    .args(t.probe_options())
                    .arg("--json")
                    .arg(&t.url)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .context("running the probe")?;
                let text = String::from_utf8_lossy(&out.stdout);
                let line = text.lines().find(|l| l.starts_with('{')).with_context(|| {
                    format!(
                        "the probe of {} printed no result: {}",
                        t.label,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                })?;
                serde_json::from_str(line).with_context(|| format!("the probe of {}", t.label))
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("a probe thread panicked"))?
        })
        .collect()
}

/// The probe's arguments for a lab (before `--json` and the inputs).
pub fn probe_args(st: &crate::state::LabState, timeout: u64) -> Vec<String> {
    vec![
        "probe".into(),
        "--resolver".into(),
        plan::SERVER_V4.to_string(),
        "--helper".into(),
        plan::helper_addr().to_string(),
        "--ca".into(),
        st.ca.display().to_string(),
        "--timeout".into(),
        timeout.to_string(),
    ]
}

/// The results as a table: one row per stage, one column per target.
pub fn table(sc_targets: &[ScenarioTarget], results: &[StageResult]) -> String {
    let heads: Vec<String> = sc_targets.iter().map(ScenarioTarget::column).collect();
    let mut widths: Vec<usize> = heads.iter().map(|h| h.len().max(4)).collect();
    for r in results {
        for (w, o) in widths.iter_mut().zip(&r.outcomes) {
            *w = (*w).max(o.cell().len());
        }
    }
    let title_w = results
        .iter()
        .map(|r| r.title.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 48);
    let date_w = results
        .iter()
        .map(|r| r.date.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut o = format!("{:<date_w$}  {:<title_w$}", "date", "stage");
    for (h, w) in heads.iter().zip(&widths) {
        o.push_str(&format!("  {h:<w$}"));
    }
    trim_line(&mut o);
    for r in results {
        let title: String = r.title.chars().take(title_w).collect();
        o.push_str(&format!("{:<date_w$}  {title:<title_w$}", r.date));
        for (c, w) in r.outcomes.iter().zip(&widths) {
            o.push_str(&format!("  {:<w$}", c.cell()));
        }
        trim_line(&mut o);
    }
    o
}

/// End the table's current line without its padding.
pub(crate) fn trim_line(o: &mut String) {
    o.truncate(o.trim_end_matches(' ').len());
    o.push('\n');
}

/// A target as a column head: the host, and the path when not `/`.
fn short_target(t: &str) -> String {
    let rest = t.split_once("://").map_or(t, |(_, r)| r);
    rest.strip_suffix('/').unwrap_or(rest).to_string()
}

/// The outcomes that differ from the scenario's expectations, as lines.
pub fn mismatches(results: &[StageResult]) -> Vec<String> {
    results
        .iter()
        .flat_map(|r| {
            r.outcomes.iter().filter(|o| !o.as_expected).map(move |o| {
                format!(
                    "{} {}: {} expected {}, probe said {} (failure {}, analysis {})",
                    r.date,
                    r.title,
                    o.target,
                    o.expected.as_deref().unwrap_or("?"),
                    blocking_str(&o.blocking),
                    o.failure,
                    o.analysis
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_scenario_loads_with_inline_and_file_policies() {
        let d = std::env::temp_dir().join(format!("cp-scn-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        write(&d, "p.yaml", "version: 1\nrules: []\ndefault: pass\n");
        let path = write(
            &d,
            "s.yaml",
            "name: s\ntitle: T\nhosts: {t.me: 198.18.1.10}\ntargets: [https://t.me/]\nstages:\n  - {date: d1, title: a, policy: p.yaml, expect: {https://t.me/: false}}\n  - date: d2\n    title: b\n    policy: {version: 1, lists: {l: {format: domains, entries: [t.me]}}, rules: [{name: r, match: {list: l, on: [tls_sni]}, action: reset}], default: pass}\n    expect: {https://t.me/: http-failure}\n",
        );
        let sc = Scenario::load(&path).unwrap();
        assert_eq!(sc.hosts["t.me"], Ipv4Addr::new(198, 18, 1, 10));
        let p0 = sc.policy(&path, 0).unwrap();
        assert!(matches!(&p0, PolicySource::File(f) if f.ends_with("p.yaml")));
        p0.compile().unwrap();
        let rs = sc.policy(&path, 1).unwrap().compile().unwrap();
        assert_eq!(rs.meta.rules.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_scenarios_are_refused_with_the_reason() {
        let d = std::env::temp_dir().join(format!("cp-scn-bad-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        for (text, want) in [
            ("name: s\ntitle: T\ntargets: [a]\nstages: []\n", "no stages"),
            (
                "name: s\ntitle: T\nhosts: {x: 10.0.0.1}\ntargets: [a]\nstages: [{date: d, title: t, policy: {}}]\n",
                "not a lab host address",
            ),
            (
                "name: s\ntitle: T\ntargets: [a]\nstages: [{date: d, title: t, policy: {}, expect: {b: dns}}]\n",
                "not a target",
            ),
            (
                "name: s\ntitle: T\ntargets: [a]\nstages: [{date: d, title: t, policy: {}, expect: {a: censored}}]\n",
                "use false, dns",
            ),
            ("name: s\ntitle: T\ntargets: [a]\nstages: []\nextra: 1\n", "not a scenario"),
        ] {
            let p = write(&d, "s.yaml", text);
            let e = format!("{:#}", Scenario::load(&p).unwrap_err());
            assert!(e.contains(want), "{want}: {e}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn targets_with_options_are_labelled_and_probed_with_them() {
        let d = std::env::temp_dir().join(format!("cp-scn-tgt-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let path = write(
            &d,
            "s.yaml",
            "name: s\ntitle: T\ntargets:\n  - https://t.me/\n  - {url: https://t.me/, quic: true}\n  - {url: https://t.me/, quic: draft-29}\n  - {url: https://cloudflare-ech.com/, ech: grease, label: CF with ECH}\n  - {url: https://t.me/, quic: false}\nstages:\n  - {date: d, title: a, policy: {version: 1, rules: [], default: pass}, expect: {https://t.me/ (quic): http-failure, CF with ECH: false, https://t.me/: false}}\n",
        );
        // A target with quic: false is the plain URL again: two targets of
        // one label are refused.
        let e = format!("{:#}", Scenario::load(&path).unwrap_err());
        assert!(
            e.contains("two targets are labelled \"https://t.me/\""),
            "{e}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("  - {url: https://t.me/, quic: false}\n", ""),
        )
        .unwrap();
        let sc = Scenario::load(&path).unwrap();
        let labels: Vec<&str> = sc.targets.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "https://t.me/",
                "https://t.me/ (quic)",
                "https://t.me/ (quic draft-29)",
                "CF with ECH"
            ]
        );
        let columns: Vec<String> = sc.targets.iter().map(ScenarioTarget::column).collect();
        assert_eq!(
            columns,
            ["t.me", "t.me (quic)", "t.me (quic draft-29)", "CF with ECH"]
        );
        assert!(sc.targets[0].probe_options().is_empty());
        assert_eq!(sc.targets[1].probe_options(), ["--quic-version", "v1"]);
        assert_eq!(
            sc.targets[2].probe_options(),
            ["--quic-version", "draft-29"]
        );
        assert_eq!(sc.targets[3].probe_options(), ["--ech", "grease"]);
        assert_eq!(sc.targets[3].url, "https://cloudflare-ech.com/");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_targets_are_refused_with_the_reason() {
        let d = std::env::temp_dir().join(format!("cp-scn-badtgt-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        for (target, want) in [
            (
                "{url: https://t.me/, quic: v2}",
                "use true, false, v1 or draft-29",
            ),
            (
                "{url: https://t.me/, quic: 3}",
                "use true, false, v1 or draft-29",
            ),
            ("{url: https://t.me/, ech: real}", "use grease"),
            (
                "{url: https://t.me/, http3: true}",
                "the fields are url, quic, ech and label",
            ),
            ("{quic: true}", "needs a url"),
            ("{url: \"ftp://t.me/\"}", "ftp://t.me/"),
            ("\"ftp://t.me/\"", "ftp://t.me/"),
            ("{url: https://t.me/, label: \" \"}", "an empty label"),
            ("[https://t.me/]", "a target is a URL or"),
        ] {
            let text = format!(
                "name: s\ntitle: T\ntargets: [{target}]\nstages: [{{date: d, title: t, policy: {{}}}}]\n"
            );
            let p = write(&d, "s.yaml", &text);
            let e = format!("{:#}", Scenario::load(&p).unwrap_err());
            assert!(e.contains(want), "{target}: {e}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_table_marks_unexpected_outcomes() {
        let o = |b: serde_json::Value, e: Option<&str>, ok| Outcome {
            target: "https://t.me/".into(),
            blocking: b,
            failure: serde_json::Value::Null,
            analysis: serde_json::json!([]),
            expected: e.map(str::to_string),
            as_expected: ok,
        };
        let results = vec![
            StageResult {
                date: "2018-04-13".into(),
                title: "nothing yet".into(),
                outcomes: vec![o(false.into(), Some("false"), true)],
            },
            StageResult {
                date: "2018-04-16".into(),
                title: "domains".into(),
                outcomes: vec![o("dns".into(), Some("http-failure"), false)],
            },
        ];
        let t = table(&[ScenarioTarget::url("https://t.me/")], &results);
        assert!(t.contains("t.me"), "{t}");
        assert!(t.lines().nth(1).unwrap().ends_with("ok"), "{t}");
        assert!(
            t.lines().nth(2).unwrap().trim_end().ends_with("dns!"),
            "{t}"
        );
        let m = mismatches(&results);
        assert_eq!(m.len(), 1);
        assert!(
            m[0].contains("expected http-failure, probe said dns"),
            "{}",
            m[0]
        );
    }
}
