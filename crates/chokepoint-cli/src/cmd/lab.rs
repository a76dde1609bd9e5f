//! `chokepoint lab`: a censored network of namespaces on this machine,
//! with real servers, the engine live in the middle and a probe.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use chokepoint_lab::lab::{self, PolicySource, UpOptions};
use chokepoint_lab::plan::{self, Role};
use chokepoint_lab::scenario::{self, Scenario};
use chokepoint_lab::state::{self, LabState};
use chokepoint_lab::web;

use super::print_out;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Build a lab and start its servers, helper and engine (needs root).
    Up(Up),
    /// Stop a lab's processes (by recorded PID) and remove its namespaces.
    Down(Named),
    /// What runs in a lab, and the engine's counters.
    Status(Status),
    /// Run a command in one of a lab's namespaces (the client by default),
    /// trusting the lab's CA.
    Exec(Exec),
    /// Probe URLs or names from the client, OONI Web Connectivity style,
    /// against the lab's control helper.
    Probe(Probe),
    /// Swap the running engine's policy (compiled first; a bad one is
    /// refused and the old one keeps serving).
    Apply(Apply),
    /// The lab's web server (started by `up` in the server namespace).
    #[command(hide = true)]
    Serve(Serve),
}

#[derive(clap::Args)]
struct Named {
    /// The lab's name (namespaces cp-NAME-client, cp-NAME-censor, ...).
    #[arg(long, default_value = "lab")]
    name: String,
}

#[derive(clap::Args)]
struct Up {
    #[command(flatten)]
    named: Named,
    /// The policy to enforce (default: the bundled April 2018 Telegram
    /// block).
    #[arg(long, conflicts_with = "scenario")]
    policy: Option<PathBuf>,
    /// Start with a scenario's first stage and its hosts (`chokepoint
    /// scenario run` then applies the later stages).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Give NAME its own server address: NAME=198.18.1.X (repeatable).
    #[arg(long = "host", value_name = "NAME=ADDR")]
    hosts: Vec<String>,
    /// Engine worker threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// Hours the lab's processes live before they stop by themselves.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=168))]
    hours: u64,
}

#[derive(clap::Args)]
struct Status {
    /// Only this lab (default: every lab that is up).
    #[arg(long)]
    name: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct Exec {
    #[command(flatten)]
    named: Named,
    /// The namespace: client, censor, router, server or control.
    #[arg(long = "in", default_value = "client", value_parser = parse_role)]
    role: Role,
    /// The command and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
struct Probe {
    #[command(flatten)]
    named: Named,
    /// One JSON object per input.
    #[arg(long)]
    json: bool,
    /// Seconds each step (DNS, connect, TLS, QUIC, HTTP) may take.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    /// Also measure https inputs over QUIC (the probe's --quic).
    #[arg(long)]
    quic: bool,
    /// The QUIC version offered, v1 or draft-29 (the probe's
    /// --quic-version; implies --quic).
    #[arg(long, value_name = "VERSION")]
    quic_version: Option<String>,
    /// The TLS hello's ECH extension: grease (the probe's --ech).
    #[arg(long, value_name = "MODE")]
    ech: Option<String>,
    /// URLs (http://, https://) or bare names (probed as https://NAME/).
    #[arg(required = true)]
    inputs: Vec<String>,
}

#[derive(clap::Args)]
struct Apply {
    #[command(flatten)]
    named: Named,
    /// The policy file to enforce now.
    policy: PathBuf,
}

#[derive(clap::Args)]
struct Serve {
    #[command(flatten)]
    named: Named,
    /// Where to write the lab CA's certificate.
    #[arg(long)]
    ca_out: PathBuf,
    /// Seconds to serve.
    #[arg(long)]
    lifetime: u64,
    /// A name with an address of its own: NAME=198.18.1.X (repeatable).
    #[arg(long = "host", value_name = "NAME=ADDR")]
    hosts: Vec<String>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?}: one of client, censor, router, server, control"))
}

pub fn run(a: Args) -> Result<()> {
    match a.cmd {
        Cmd::Up(u) => up(u),
        Cmd::Down(n) => {
            lab::down(&n.name)?;
            print_out(&format!("lab {}: down\n", n.name))
        }
        Cmd::Status(s) => status(s),
        Cmd::Exec(e) => exec(e),
        Cmd::Probe(p) => probe(p),
        Cmd::Apply(a) => {
            let rules = lab::apply(&a.named.name, &PolicySource::File(a.policy.clone()))?;
            let line = chokepoint_runtime::replay::policy_line(&rules);
            let what = line.trim_start_matches("policy").trim();
            print_out(&format!("lab {}: now enforcing {what}\n", a.named.name))
        }
        Cmd::Serve(s) => {
            let zone = chokepoint_lab::dns::Zone {
                default_v4: plan::SERVER_V4,
                default_v6: plan::SERVER_V6,
                hosts: parse_hosts(&s.hosts)?,
            };
            let addresses = vec![plan::SERVER_V4.into(), plan::SERVER_V6.into()];
            web::serve(web::WebConfig {
                lab: s.named.name,
                http_ports: plan::WEB_PORTS.http.to_vec(),
                https_ports: plan::WEB_PORTS.https.to_vec(),
                quic_ports: plan::WEB_PORTS.https.to_vec(),
                addresses: addresses.clone(),
                ca_out: s.ca_out,
                dns: Some((zone, addresses.clone())),
                echo: addresses,
                lifetime: Duration::from_secs(s.lifetime),
            })
        }
    }
}

fn up(u: Up) -> Result<()> {
    let mut hosts = BTreeMap::new();
    let (policy, scenario) = match &u.scenario {
        Some(path) => {
            let sc = Scenario::load(path)?;
            hosts.extend(sc.hosts.clone());
            (sc.policy(path, 0)?, Some(sc.name))
        }
        None => (default_or(u.policy.clone())?, None),
    };
    hosts.extend(parse_hosts(&u.hosts)?);
    let st = lab::up(&UpOptions {
        name: u.named.name.clone(),
        policy,
        hosts,
        scenario,
        lifetime: Duration::from_secs(u.hours * 3600),
        workers: u.workers,
        exe: std::env::current_exe().context("finding this program")?,
    })?;
    print_out(&up_text(&st))
}

/// `NAME=ADDR` pairs of `--host`.
fn parse_hosts(pairs: &[String]) -> Result<BTreeMap<String, Ipv4Addr>> {
    let mut hosts = BTreeMap::new();
    for h in pairs {
        let (name, addr) = h
            .split_once('=')
            .with_context(|| format!("--host {h}: use NAME=198.18.1.X"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .with_context(|| format!("--host {h}: {addr} is not an IPv4 address"))?;
        hosts.insert(name.trim_end_matches('.').to_ascii_lowercase(), addr);
    }
    Ok(hosts)
}

/// The bundled default policy lives in the binary: write it out so the
/// lab compiles and shows it like any file.
fn default_or(policy: Option<PathBuf>) -> Result<PolicySource> {
    Ok(match policy {
        Some(p) => PolicySource::File(p),
        None => PolicySource::Text {
            yaml: chokepoint_rules::DEFAULT_POLICY.to_string(),
            origin: "the bundled default policy (config/default.yaml)".into(),
            base_dir: PathBuf::from("."),
        },
    })
}

fn up_text(st: &LabState) -> String {
    let n = &st.name;
    let mut o = format!(
        "lab {n}: up (state in {dir})\n  policy   {policy}\n",
        dir = st.dir().display(),
        policy = st.policy_source
    );
    for role in Role::ALL {
        o.push_str(&format!(
            "  {:<8} {}\n",
            role.as_str(),
            plan::netns(n, role)
        ));
    }
    o.push_str(&format!(
        "  client   {} / {}, resolver {} (answers every name with {}), the lab CA {}\n",
        plan::CLIENT_V4,
        plan::CLIENT_V6,
        plan::SERVER_V4,
        plan::SERVER_V4,
        st.ca.display()
    ));
    for (name, a) in &st.hosts {
        o.push_str(&format!("  host     {name} -> {a}\n"));
    }
    let flag = if n == "lab" {
        String::new()
    } else {
        format!(" --name {n}")
    };
    o.push_str(&format!(
        "try:\n  chokepoint lab exec{flag} -- curl -sS https://t.me/ -o /dev/null -w '%{{http_code}}\\n'\n  chokepoint lab probe{flag} https://t.me/ https://example.com/\n  chokepoint lab status{flag}\n  chokepoint lab down{flag}\n"
    ));
    o
}

fn status(s: Status) -> Result<()> {
    let names = match s.name {
        Some(n) => vec![n],
        None => state::list(),
    };
    let all: Vec<lab::Status> = names
        .iter()
        .map(|n| lab::status(n))
        .collect::<Result<_>>()?;
    if s.json {
        return print_out(&format!("{}\n", serde_json::to_string_pretty(&all)?));
    }
    if all.is_empty() {
        return print_out("no lab is up\n");
    }
    let mut o = String::new();
    for st in &all {
        o.push_str(&format!(
            "lab {} (state {}){}\n  policy   {}\n",
            st.name,
            st.dir.display(),
            st.scenario
                .as_ref()
                .map_or(String::new(), |s| format!(", scenario {s}")),
            st.policy
        ));
        for (ns, there) in &st.namespaces {
            o.push_str(&format!(
                "  netns    {ns}{}\n",
                if *there { "" } else { " (missing)" }
            ));
        }
        for p in &st.processes {
            o.push_str(&format!(
                "  {:<8} pid {:<7} {}  {}\n",
                p.what,
                p.pid,
                if p.alive { "running" } else { "EXITED " },
                p.log.display()
            ));
        }
        match &st.engine {
            None => o.push_str("  engine   not answering on its metrics address\n"),
            Some(e) => {
                let packets: Vec<String> =
                    e.packets.iter().map(|(v, n)| format!("{v} {n}")).collect();
                o.push_str(&format!(
                    "  engine   policy blake3 {}, {} flows, reloads {} ok / {} refused\n  packets  {}\n",
                    e.policy_blake3.as_deref().unwrap_or("?"),
                    e.flows,
                    e.reloads_ok,
                    e.reloads_failed,
                    packets.join(", ")
                ));
                for (rule, n) in &e.decisions {
                    o.push_str(&format!("  decided  {rule}: {n}\n"));
                }
            }
        }
    }
    print_out(&o)
}

fn exec(e: Exec) -> Result<()> {
    let st = LabState::load(&e.named.name)?;
    let err = std::process::Command::new("ip")
        .args(["netns", "exec", &plan::netns(&st.name, e.role)])
        .args(&e.command)
        .envs(lab::client_env(&st))
        .exec();
    Err(err).context("running ip netns exec")
}

fn probe(p: Probe) -> Result<()> {
    let st = LabState::load(&p.named.name)?;
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &plan::netns(&st.name, Role::Client)])
        .arg(std::env::current_exe().context("finding this program")?)
        .args(scenario::probe_args(&st, p.timeout));
    if p.json {
        cmd.arg("--json");
    }
    if p.quic {
        cmd.arg("--quic");
    }
    if let Some(v) = &p.quic_version {
        cmd.args(["--quic-version", v]);
    }
    if let Some(e) = &p.ech {
        cmd.args(["--ech", e]);
    }
    let err = cmd.args(&p.inputs).exec();
    Err(err).context("running the probe")
}
