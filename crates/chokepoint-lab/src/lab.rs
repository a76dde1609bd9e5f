//! Bringing a lab up and down, reading its state, swapping its policy.
//!
//! The engine runs from a compiled artifact in the state directory: `up`
//! and `apply` compile the policy where it lies (so its list files resolve
//! as they would anywhere), refuse it with the compiler's error before
//! anything changes, and replace the artifact, which the engine reloads by
//! itself (it watches the file), as a fleet's boxes take artifacts compiled
//! centrally.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use chokepoint_rules::Ruleset;

use crate::netns;
use crate::plan::{self, Role};
use crate::procs::{self, Proc};
use crate::state::{self, LabState};

/// A policy to enforce: a file, or YAML text with the directory its list
/// paths are relative to (a scenario's inline stage).
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// A policy file.
    File(PathBuf),
    /// Policy text.
    Text {
        /// The YAML.
        yaml: String,
        /// What to call it in messages (`scenario.yaml, stage 2`).
        origin: String,
        /// Where relative list paths start.
        base_dir: PathBuf,
    },
}

impl PolicySource {
    /// Compile it.
    pub fn compile(&self) -> Result<Ruleset> {
        match self {
            PolicySource::File(p) => chokepoint_rules::compile_file(p)
                .with_context(|| format!("compiling {}", p.display())),
            PolicySource::Text {
                yaml,
                origin,
                base_dir,
            } => chokepoint_rules::compile_str(yaml, origin, base_dir)
                .with_context(|| format!("compiling {origin}")),
        }
    }

    /// The text, for the state directory's copy.
    fn text(&self) -> Result<String> {
        match self {
            PolicySource::File(p) => {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            }
            PolicySource::Text { yaml, .. } => Ok(yaml.clone()),
        }
    }

    /// Where it came from.
    pub fn describe(&self) -> String {
        match self {
            PolicySource::File(p) => p.display().to_string(),
            PolicySource::Text { origin, .. } => origin.clone(),
        }
    }
}

/// How to make a lab.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Its name.
    pub name: String,
    /// The policy the engine starts with.
    pub policy: PolicySource,
    /// Names with addresses of their own on the server (stand-ins for real
    /// addresses; everything else resolves to the server's main address).
    pub hosts: BTreeMap<String, Ipv4Addr>,
    /// The scenario it is made for, if any.
    pub scenario: Option<String>,
    /// How long its processes live.
    pub lifetime: Duration,
    /// Engine worker threads.
    pub workers: u16,
    /// The chokepoint binary to run in the namespaces.
    pub exe: PathBuf,
}

/// Build a lab and start everything in it. On any failure, what was made
/// so far is removed again and the error says what failed.
pub fn up(o: &UpOptions) -> Result<LabState> {
    anyhow::ensure!(
        plan::valid_name(&o.name),
        "lab name {:?}: use 1 to 12 lowercase letters or digits",
        o.name
    );
    for (name, a) in &o.hosts {
        anyhow::ensure!(
            plan::host_address_ok(*a),
            "host {name} at {a}: a lab host address must be in 198.18.1.0/24 and not .0, .2, .254 or .255"
        );
    }
    anyhow::ensure!(
        !state::dir_of(&o.name).exists(),
        "a lab called {:?} is up already ({}); `chokepoint lab down --name {}` first, or choose another --name",
        o.name,
        state::dir_of(&o.name).display(),
        o.name
    );
    for role in Role::ALL {
        let ns = plan::netns(&o.name, role);
        anyhow::ensure!(
            !netns::exists(&ns),
            "namespace {ns} exists and lab {:?} has no record of making it: remove it yourself, or choose another --name",
            o.name
        );
    }
    let rules = o.policy.compile()?;
    let dir = state::create_dir(&o.name)?;
    let mut st = LabState {
        name: o.name.clone(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        lifetime: o.lifetime.as_secs(),
        namespaces: vec![],
        procs: vec![],
        policy: dir.join("policy.yaml"),
        policy_source: o.policy.describe(),
        scenario: o.scenario.clone(),
        hosts: o.hosts.clone(),
        events: dir.join("events.jsonl"),
        ca: dir.join("ca.pem"),
    };
    st.save()?;
    match build(&mut st, o, &rules) {
        Ok(()) => Ok(st),
        Err(e) => {
            let logs = log_tails(&st);
            let _ = down_state(&st);
            Err(anyhow::anyhow!(
                "lab {:?} did not come up: {e:#}; what it made is removed again{logs}",
                o.name
            ))
        }
    }
}

fn build(st: &mut LabState, o: &UpOptions, rules: &Ruleset) -> Result<()> {
    let dir = st.dir();
    for role in Role::ALL {
        let ns = plan::netns(&st.name, role);
        netns::add(&ns)?;
        st.namespaces.push(ns);
        st.save()?;
    }
    topology(&st.name, &o.hosts)?;
    std::fs::write(&st.policy, o.policy.text()?)
        .with_context(|| format!("writing {}", st.policy.display()))?;
    let artifact = dir.join("rules.chk");
    chokepoint_rules::artifact::save(rules, &artifact)
        .with_context(|| format!("writing {}", artifact.display()))?;

    let exe = o.exe.display().to_string();
    let secs = o.lifetime.as_secs().to_string();
    let ca = st.ca.display().to_string();

    // The servers first: they make the CA the helper and clients trust.
    let name = st.name.clone();
    let mut servers: Vec<String> = [&exe, "lab", "serve", "--name", &name, "--ca-out", &ca]
        .map(String::from)
        .into();
    servers.extend(["--lifetime".to_string(), secs.clone()]);
    for (host, a) in &o.hosts {
        servers.extend(["--host".to_string(), format!("{host}={a}")]);
    }
    let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
    start(st, "servers", Role::Server, &servers, o.lifetime)?;
    wait_for("the lab CA", Duration::from_secs(10), || st.ca.exists())?;

    let (helper_at, resolver) = (plan::helper_addr().to_string(), plan::SERVER_V4.to_string());
    let helper = [
        &exe,
        "probe-helper",
        "--listen",
        &helper_at,
        "--resolver",
        &resolver,
        "--ca",
        &ca,
        "--lifetime",
        &secs,
    ];
    start(st, "helper", Role::Control, &helper, o.lifetime)?;

    let (artifact, events) = (
        artifact.display().to_string(),
        st.events.display().to_string(),
    );
    let (metrics, workers) = (plan::METRICS.to_string(), o.workers.to_string());
    let engine = [
        &exe,
        "run",
        "--inside",
        "c1",
        "--outside",
        "s1",
        "--artifact",
        &artifact,
        "--events",
        &events,
        "--metrics",
        &metrics,
        "--workers",
        &workers,
    ];
    start(st, "engine", Role::Censor, &engine, o.lifetime)?;

    let ns = |r| plan::netns(&st.name, r);
    // Ready when the engine serves metrics, the server answers on the
    // uncensored path and the helper on the management link.
    let censor = ns(Role::Censor);
    wait_for("the engine's metrics", Duration::from_secs(15), || {
        metrics_text_in(&censor).is_ok()
    })?;
    let control = ns(Role::Control);
    let web_addr = SocketAddr::new(IpAddr::V4(plan::SERVER_V4), plan::WEB_PORTS.http[0]);
    wait_for("the web server", Duration::from_secs(10), || {
        connects(&control, web_addr)
    })?;
    let client = ns(Role::Client);
    wait_for("the probe's test helper", Duration::from_secs(10), || {
        connects(&client, plan::helper_addr())
    })?;
    for p in &st.procs {
        anyhow::ensure!(p.alive(), "{} exited (see {})", p.what, p.log.display());
    }
    Ok(())
}

/// Start `argv` in the lab's `role` namespace, logging to `WHAT.log` in
/// the state directory, and record it.
fn start(
    st: &mut LabState,
    what: &str,
    role: Role,
    argv: &[&str],
    lifetime: Duration,
) -> Result<()> {
    let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    let log = st.dir().join(format!("{what}.log"));
    let p = procs::spawn(
        what,
        &plan::netns(&st.name, role),
        lifetime,
        &argv,
        &log,
        &[],
    )?;
    st.procs.push(p);
    st.save()
}

/// Links, addresses and routes (see the crate docs for the drawing).
fn topology(lab: &str, hosts: &BTreeMap<String, Ipv4Addr>) -> Result<()> {
    let ns = |r| plan::netns(lab, r);
    let (client, censor, router, server, control) = (
        ns(Role::Client),
        ns(Role::Censor),
        ns(Role::Router),
        ns(Role::Server),
        ns(Role::Control),
    );
    // The censor is a bridge, not a host: no IPv6 addresses or router
    // solicitations of its own on the link.
    for key in [
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ] {
        netns::exec(&censor, "sysctl", &["-qw", key])?;
    }
    for (a, a_ns, b, b_ns) in [
        ("c0", &client, "c1", &censor),
        ("s1", &censor, "r0", &router),
        ("r1", &router, "v0", &server),
        ("r2", &router, "k0", &control),
        ("m0", &client, "m1", &control),
    ] {
        netns::ip(&[
            "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns,
        ])?;
    }
    let addr = |ns: &str, dev: &str, a: String| -> Result<()> {
        let mut args = vec!["addr", "add", a.as_str(), "dev", dev];
        if a.contains(':') {
            // No duplicate address detection: addresses usable at once.
            args.push("nodad");
        }
        netns::exec(ns, "ip", &args)
    };
    addr(&client, "c0", format!("{}/24", plan::CLIENT_V4))?;
    addr(&client, "c0", format!("{}/112", plan::CLIENT_V6))?;
    addr(&client, "m0", format!("{}/30", plan::MGMT_CLIENT_V4))?;
    addr(&router, "r0", format!("{}/24", plan::ROUTER_CLIENT_V4))?;
    addr(&router, "r0", format!("{}/112", plan::ROUTER_CLIENT_V6))?;
    addr(&router, "r1", format!("{}/24", plan::ROUTER_SERVER_V4))?;
    addr(&router, "r1", format!("{}/112", plan::ROUTER_SERVER_V6))?;
    addr(&router, "r2", format!("{}/24", plan::ROUTER_CONTROL_V4))?;
    addr(&router, "r2", format!("{}/112", plan::ROUTER_CONTROL_V6))?;
    addr(&server, "v0", format!("{}/24", plan::SERVER_V4))?;
    addr(&server, "v0", format!("{}/112", plan::SERVER_V6))?;
    let mut extra: Vec<Ipv4Addr> = hosts.values().copied().collect();
    extra.sort();
    extra.dedup();
    for a in extra {
        addr(&server, "v0", format!("{a}/24"))?;
    }
    addr(&control, "k0", format!("{}/24", plan::CONTROL_V4))?;
    addr(&control, "k0", format!("{}/112", plan::CONTROL_V6))?;
    addr(&control, "m1", format!("{}/30", plan::MGMT_CONTROL_V4))?;
    for (ns, dev) in [
        (&client, "c0"),
        (&client, "m0"),
        (&censor, "c1"),
        (&censor, "s1"),
        (&router, "r0"),
        (&router, "r1"),
        (&router, "r2"),
        (&server, "v0"),
        (&control, "k0"),
        (&control, "m1"),
    ] {
        netns::exec(ns, "ip", &["link", "set", dev, "up"])?;
    }
    // The engine reads and writes whole frames: no offloads on the links
    // it bridges (a TSO'd or checksum-less frame would be forwarded as such
    // and refused by the receiver).
    for (ns, dev) in [
        (&client, "c0"),
        (&censor, "c1"),
        (&censor, "s1"),
        (&router, "r0"),
    ] {
        netns::exec(
            ns,
            "ethtool",
            &[
                "-K", dev, "tx", "off", "rx", "off", "gso", "off", "tso", "off", "gro", "off",
            ],
        )
        .context("turning offloads off (is ethtool installed?)")?;
    }
    for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
        netns::exec(&router, "sysctl", &["-qw", key])?;
    }
    let route = |ns: &str, family: &str, via: String| {
        netns::exec(ns, "ip", &[family, "route", "add", "default", "via", &via])
    };
    route(&client, "-4", plan::ROUTER_CLIENT_V4.to_string())?;
    route(&client, "-6", plan::ROUTER_CLIENT_V6.to_string())?;
    route(&server, "-4", plan::ROUTER_SERVER_V4.to_string())?;
    route(&server, "-6", plan::ROUTER_SERVER_V6.to_string())?;
    route(&control, "-4", plan::ROUTER_CONTROL_V4.to_string())?;
    route(&control, "-6", plan::ROUTER_CONTROL_V6.to_string())?;
    let resolver = IpAddr::V4(plan::SERVER_V4);
    netns::set_resolver(&client, resolver)?;
    netns::set_resolver(&control, resolver)?;
    Ok(())
}

/// Poll `ready` every 100 ms until it holds or `limit` passes.
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let until = Instant::now() + limit;
    loop {
        if ready() {
            return Ok(());
        }
        if Instant::now() >= until {
            bail!("{what} did not come up within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a TCP connection to `addr` opens from inside `ns`.
fn connects(ns: &str, addr: SocketAddr) -> bool {
    netns::within(ns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
    })
    .unwrap_or(false)
}

fn log_tails(st: &LabState) -> String {
    let mut o = String::new();
    for p in &st.procs {
        let text = std::fs::read_to_string(&p.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        if !tail.is_empty() {
            o.push_str(&format!("\n{} ({}):", p.what, p.log.display()));
            for l in tail.into_iter().rev() {
                o.push_str("\n  ");
                o.push_str(l);
            }
        }
    }
    o
}

/// Take the lab called `name` down: its processes (by recorded PID), its
/// namespaces, its state directory. Nothing it did not make is touched.
pub fn down(name: &str) -> Result<()> {
    let dir = state::dir_of(name);
    match LabState::load(name) {
        Ok(st) => down_state(&st),
        // A lab that died between making its directory and its first
        // record made nothing else.
        Err(_) if dir.is_dir() && !dir.join("lab.json").exists() => state::remove_dir(&dir),
        Err(e) => Err(e),
    }
}

fn down_state(st: &LabState) -> Result<()> {
    let mut errors = vec![];
    for p in st.procs.iter().rev() {
        p.stop(Duration::from_secs(3));
        if p.alive() {
            errors.push(format!("{} (pid {}) did not stop", p.what, p.pid));
        }
    }
    for ns in st.namespaces.iter().rev() {
        if let Err(e) = netns::del(ns) {
            errors.push(format!("{e:#}"));
        }
    }
    if errors.is_empty() {
        state::remove_dir(&st.dir())
    } else {
        bail!(
            "lab {:?} partly taken down (state kept in {}): {}",
            st.name,
            st.dir().display(),
            errors.join("; ")
        )
    }
}

/// The engine's metrics, scraped from inside the censor namespace.
pub fn metrics_text(st: &LabState) -> Result<String> {
    metrics_text_in(&plan::netns(&st.name, Role::Censor))
}

fn metrics_text_in(censor: &str) -> Result<String> {
    netns::within(censor, || http_get(plan::METRICS, "/metrics"))?
}

/// A plain HTTP/1.0 GET; the body.
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.take(64 << 20).read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no HTTP response head")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{}",
        head.lines().next().unwrap_or("")
    );
    Ok(body.to_string())
}

/// Sum of every sample of `metric` whose labels include all of `labels`
/// (`key="value"` pairs) in Prometheus text.
pub fn metric_sum(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, rest) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            if name != metric {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Swap the running lab's policy: compile it (refused with the compiler's
/// error before anything changes), replace the engine's artifact, and wait
/// until the engine says it reloaded. Returns the compiled rules.
pub fn apply(name: &str, policy: &PolicySource) -> Result<Ruleset> {
    let mut st = LabState::load(name)?;
    let rules = policy.compile()?;
    let before = metrics_text(&st).context("reading the engine's metrics")?;
    let (ok0, failed0) = reload_counts(&before);
    let artifact = st.dir().join("rules.chk");
    chokepoint_rules::artifact::save(&rules, &artifact)
        .with_context(|| format!("writing {}", artifact.display()))?;
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let (ok, failed) = reload_counts(&metrics_text(&st).unwrap_or_default());
        if ok > ok0 {
            break;
        }
        if failed > failed0 {
            bail!(
                "the engine refused the new artifact (see {})",
                log_of(&st, "engine")
            );
        }
        if Instant::now() >= until {
            bail!(
                "the engine did not reload within 15 s (see {})",
                log_of(&st, "engine")
            );
        }
    }
    std::fs::write(&st.policy, policy.text()?)
        .with_context(|| format!("writing {}", st.policy.display()))?;
    st.policy_source = policy.describe();
    st.save()?;
    Ok(rules)
}

fn reload_counts(metrics: &str) -> (f64, f64) {
    (
        metric_sum(metrics, "chokepoint_reloads_total", &[("result", "ok")]),
        metric_sum(metrics, "chokepoint_reloads_total", &[("result", "failed")]),
    )
}

fn log_of(st: &LabState, what: &str) -> String {
    st.proc(what)
        .map_or_else(|| "its log".to_string(), |p| p.log.display().to_string())
}

/// What `lab status` reports for one lab.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    /// The lab's name.
    pub name: String,
    /// Unix time it was made.
    pub created: u64,
    /// Where its policy came from.
    pub policy: String,
    /// The scenario it runs, if any.
    pub scenario: Option<String>,
    /// Its namespaces and whether each still exists.
    pub namespaces: Vec<(String, bool)>,
    /// Its processes: what, PID, alive.
    pub processes: Vec<ProcStatus>,
    /// The engine's counters, when it answers.
    pub engine: Option<EngineCounters>,
    /// The state directory.
    pub dir: PathBuf,
}

/// One process in [`Status`].
#[derive(Debug, serde::Serialize)]
pub struct ProcStatus {
    /// What it is.
    pub what: String,
    /// Its PID.
    pub pid: i32,
    /// Whether it runs.
    pub alive: bool,
    /// Its log.
    pub log: PathBuf,
}

/// The engine's main counters, from its metrics.
#[derive(Debug, serde::Serialize)]
pub struct EngineCounters {
    /// Packets by verdict.
    pub packets: BTreeMap<String, f64>,
    /// Decisions by rule (name, or empty for none) and action.
    pub decisions: BTreeMap<String, f64>,
    /// Reloads that worked and failed.
    pub reloads_ok: f64,
    /// Reloads refused.
    pub reloads_failed: f64,
    /// Flows tracked now.
    pub flows: f64,
    /// The policy's BLAKE3, as `chokepoint stats` prints it.
    pub policy_blake3: Option<String>,
}

/// The status of the lab called `name`.
pub fn status(name: &str) -> Result<Status> {
    let st = LabState::load(name)?;
    let engine = metrics_text(&st).ok().map(|m| engine_counters(&m));
    Ok(Status {
        name: st.name.clone(),
        created: st.created,
        policy: st.policy_source.clone(),
        scenario: st.scenario.clone(),
        namespaces: st
            .namespaces
            .iter()
            .map(|n| (n.clone(), netns::exists(n)))
            .collect(),
        processes: st
            .procs
            .iter()
            .map(|p: &Proc| ProcStatus {
                what: p.what.clone(),
                pid: p.pid,
                alive: p.alive(),
                log: p.log.clone(),
            })
            .collect(),
        engine,
        dir: st.dir(),
    })
}

fn engine_counters(m: &str) -> EngineCounters {
    let mut packets = BTreeMap::new();
    let mut decisions = BTreeMap::new();
    let mut policy_blake3 = None;
    for l in m.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        let label = |k: &str| {
            let key = format!("{k}=\"");
            series
                .find(&key)
                .map(|i| &series[i + key.len()..])
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        if series.starts_with("chokepoint_packets_total{") {
            *packets.entry(label("verdict")).or_insert(0.0) += value;
        } else if series.starts_with("chokepoint_decisions_total{") && value > 0.0 {
            let rule = label("rule");
            let rule = if rule.is_empty() {
                "(no rule)".into()
            } else {
                rule
            };
            *decisions
                .entry(format!("{rule} {}", label("action")))
                .or_insert(0.0) += value;
        } else if series.starts_with("chokepoint_artifact_info{") {
            policy_blake3 = Some(label("policy_blake3"));
        }
    }
    EngineCounters {
        packets,
        decisions,
        reloads_ok: metric_sum(m, "chokepoint_reloads_total", &[("result", "ok")]),
        reloads_failed: metric_sum(m, "chokepoint_reloads_total", &[("result", "failed")]),
        flows: metric_sum(m, "chokepoint_flows", &[]),
        policy_blake3,
    }
}

/// The lab's CA certificate path and the environment that makes curl,
/// OpenSSL and Python trust it.
pub fn client_env(st: &LabState) -> Vec<(String, String)> {
    let ca = st.ca.display().to_string();
    vec![
        ("CURL_CA_BUNDLE".into(), ca.clone()),
        ("SSL_CERT_FILE".into(), ca.clone()),
        ("REQUESTS_CA_BUNDLE".into(), ca),
        ("CHOKEPOINT_LAB".into(), st.name.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP chokepoint_reloads_total Reloads.
chokepoint_reloads_total{result="ok"} 3
chokepoint_reloads_total{result="failed"} 1
chokepoint_packets_total{side="inside",verdict="pass"} 10
chokepoint_packets_total{side="outside",verdict="pass"} 5
chokepoint_packets_total{side="inside",verdict="reset"} 2
chokepoint_decisions_total{action="reset",rule="reset-sni",trigger="tls_sni"} 2
chokepoint_decisions_total{action="pass",rule="",trigger="tls_sni"} 4
chokepoint_decisions_total{action="drop",rule="idle",trigger="ip"} 0
chokepoint_flows 7
chokepoint_artifact_info{format_version="5",policy_blake3="abc",rules="3"} 1
"#;

    #[test]
    fn metric_sums_select_by_label() {
        assert_eq!(
            metric_sum(METRICS, "chokepoint_reloads_total", &[("result", "ok")]),
            3.0
        );
        assert_eq!(metric_sum(METRICS, "chokepoint_reloads_total", &[]), 4.0);
        assert_eq!(
            metric_sum(METRICS, "chokepoint_packets_total", &[("verdict", "pass")]),
            15.0
        );
        assert_eq!(metric_sum(METRICS, "chokepoint_missing", &[]), 0.0);
    }

    #[test]
    fn engine_counters_from_metrics() {
        let c = engine_counters(METRICS);
        assert_eq!(c.packets["pass"], 15.0);
        assert_eq!(c.packets["reset"], 2.0);
        assert_eq!(c.decisions["reset-sni reset"], 2.0);
        assert_eq!(c.decisions["(no rule) pass"], 4.0);
        assert!(!c.decisions.contains_key("idle drop"));
        assert_eq!((c.reloads_ok, c.reloads_failed, c.flows), (3.0, 1.0, 7.0));
        assert_eq!(c.policy_blake3.as_deref(), Some("abc"));
    }
}
