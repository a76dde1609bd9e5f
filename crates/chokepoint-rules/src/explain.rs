//! "Why was this blocked?" for one domain, address or URL.

use std::net::IpAddr;

use serde::Serialize;

use crate::policy::{Action, ListFormat, Trigger};
use crate::ruleset::{Match, RuleMeta, Ruleset};
use chokepoint_ruleset::conditions::{
    PortRange, Protocol, ResidualAction, QUIC_DRAFT_BASE, QUIC_V2,
};

/// The answer for one query; the JSON form is `chokepoint explain --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The name or address asked about, as normalised.
    pub query: String,
    /// `domain`, `ip` or `url`.
    pub kind: &'static str,
    /// What was looked up: the normalised name or the address.
    pub looked_up: String,
    /// The action's word, or the default's (`pass` usually).
    pub verdict: String,
    /// The action with its parameters, e.g. `reset(x2)`.
    pub action: String,
    /// The deciding rule's name (none: the default action).
    pub rule: Option<String>,
    /// Triggers for which this rule decides the name (`ip` for addresses).
    pub on: Vec<&'static str>,
    /// The list whose entry matched.
    pub list: Option<String>,
    /// The entry as listed.
    pub entry: Option<String>,
    /// `exact`, `suffix`, `subdomains`, `keyword` or `prefix`.
    pub entry_kind: Option<&'static str>,
    /// `file:line` of the entry.
    pub source: Option<String>,
    /// Registry: the decision number.
    pub decision: Option<String>,
    /// Registry: the decision date.
    pub decision_date: Option<String>,
    /// Registry: the organisation that decided.
    pub org: Option<String>,
    /// Set when the verdict for a ClientHello's SNI depends on whether it
    /// carries Encrypted Client Hello (a rule with an `ech:` condition).
    pub ech: Option<EchSplit>,
    /// Every condition the verdict depends on besides the list match
    /// (the deciding rule's `match` conditions and its residual block), in
    /// words; empty when the rule has none.
    pub conditions: Vec<String>,
    /// Rules earlier in the policy that fire on a protocol itself and so
    /// may decide a flow carrying this name first, with their conditions.
    pub protocol_rules: Vec<String>,
    /// When the deciding rule has conditions and a packet fails them, the
    /// rule is skipped and the lookup falls through to later rules in
    /// policy order: those that may then decide this query, up to the
    /// first that needs no condition, else the policy default. Empty when
    /// the deciding rule has no conditions (or no rule decides).
    pub falls_through: Vec<String>,
    /// For an address: rules earlier in the policy on dynamic lists, which
    /// decide it once a `learn` action has added it (what the lists hold
    /// is known only at run time), with the rules that fill them.
    pub learned_rules: Vec<String>,
    /// Set when the query could not be read as a name, address or URL.
    pub error: Option<String>,
}

/// A rule's conditions and residual block, in policy words: what a packet
/// must meet for the rule to fire, besides its list.
pub fn conditions_in_words(rs: &Ruleset, r: &RuleMeta) -> Vec<String> {
    let c = &r.cond;
    let list = |l: &u16| rs.meta.lists[*l as usize].name.clone();
    let ports = |v: &[PortRange]| {
        v.iter()
            .map(|p| {
                if p.lo == p.hi {
                    p.lo.to_string()
                } else {
                    format!("{}-{}", p.lo, p.hi)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    if c.protocols != 0 {
        let ps: Vec<&str> = Protocol::ALL
            .iter()
            .filter(|p| c.protocols & p.bit() != 0)
            .map(|p| p.as_str())
            .collect();
        out.push(format!("protocols: {}", ps.join(", ")));
    }
    if let Some(p) = c.proto {
        out.push(format!("proto: {}", if p == 6 { "tcp" } else { "udp" }));
    }
    if !c.dst_ports.is_empty() {
        out.push(format!("dst_ports: {}", ports(&c.dst_ports)));
    }
    if !c.src_ports.is_empty() {
        out.push(format!("src_ports: {}", ports(&c.src_ports)));
    }
    if let Some(n) = c.min_bytes {
        out.push(format!(
            "min_bytes: {n} (transport payload of the firing packet)"
        ));
    }
    if let Some(n) = c.max_bytes {
        out.push(format!(
            "max_bytes: {n} (transport payload of the firing packet)"
        ));
    }
    if !c.quic_versions.is_empty() {
        let vs: Vec<String> = c
            .quic_versions
            .iter()
            .map(|v| quic_version_name(*v))
            .collect();
        out.push(format!("quic_versions: {}", vs.join(", ")));
    }
    if let Some(e) = r.ech {
        out.push(format!("ech: {e}"));
    }
    if c.first_packet {
        out.push("first_packet: only the flow's first data packet".into());
    }
    if c.src_port_ge_dst_port {
        out.push("src_port_ge_dst_port: client port >= server port".into());
    }
    for l in &c.dst_lists {
        out.push(format!("dst_list: {} (server address)", list(l)));
    }
    for l in &c.src_lists {
        out.push(format!("src_list: {} (client address)", list(l)));
    }
    if !c.except.is_empty() {
        let ls: Vec<String> = c.except.iter().map(list).collect();
        out.push(format!("except: {}", ls.join(", ")));
    }
    if let Some(p) = c.probability {
        out.push(format!(
            "probability: {} (a seeded draw per flow)",
            p.as_f64()
        ));
    }
    if let Some(x) = r.residual {
        out.push(format!(
            "residual: then every new flow on the {} is blocked for {} s ({})",
            x.scope.as_str(),
            x.seconds,
            match x.action {
                ResidualAction::Drop => "drop",
                ResidualAction::Reset => "reset",
            }
        ));
    }
    out
}

/// What decides `t` when rule `after` is skipped because a packet failed
/// its conditions: the later rules in policy order that `t` matches on one
/// of the triggers `on` (bits), and the protocol rules, which may fire on
/// the flow carrying it; up to the first rule that needs no condition, else
/// the policy default.
fn falls_through(rs: &Ruleset, after: usize, on: u8, t: &Target) -> Vec<String> {
    let mut out = Vec::new();
    for r in &rs.meta.rules[after + 1..] {
        let protocol_rule = r.on & Trigger::Protocol.bit() != 0;
        let listed = r.on & on != 0
            && r.lists.iter().any(|&l| match t {
                Target::Name(n) => rs.name_in_list(l, n.as_bytes()),
                Target::Ip(ip) => rs.ip_in_list(l, *ip),
            });
        if !protocol_rule && !listed {
            continue;
        }
        if r.cond.is_empty() && r.ech.is_none() {
            out.push(format!("{} ({})", r.name, r.action));
            return out;
        }
        out.push(format!("{} ({}) if its conditions hold", r.name, r.action));
    }
    out.push(format!("the policy default ({})", rs.meta.default_action));
    out
}

/// The IP rules among `rules` on dynamic lists, in words, with the rules
/// whose `learn` fills each list.
fn learned_rules(rs: &Ruleset, rules: &[RuleMeta]) -> Vec<String> {
    let dynamic = |l: &u16| rs.meta.lists[*l as usize].format == ListFormat::Dynamic;
    rules
        .iter()
        .filter(|r| r.on & Trigger::Ip.bit() != 0)
        .flat_map(|r| r.lists.iter().filter(|l| dynamic(l)).map(move |l| (r, l)))
        .map(|(r, l)| {
            let name = &rs.meta.lists[*l as usize].name;
            let fillers: Vec<String> = rs
                .meta
                .rules
                .iter()
                .filter(|f| matches!(&f.action, Action::Learn { list, .. } if list == name))
                .map(|f| format!("{} ({})", f.name, f.action))
                .collect();
            format!(
                "{} ({}): on dynamic list {name}, filled by {}",
                r.name,
                r.action,
                if fillers.is_empty() {
                    "no rule".to_string()
                } else {
                    fillers.join(", ")
                }
            )
        })
        .collect()
}

/// `v1`, `v2`, `draft-29` or the number in hex.
fn quic_version_name(v: u32) -> String {
    match v {
        1 => "v1".into(),
        QUIC_V2 => "v2".into(),
        v if v & 0xffff_ff00 == QUIC_DRAFT_BASE => format!("draft-{}", v & 0xff),
        v => format!("{v:#010x}"),
    }
}

/// The two answers for a name whose verdict depends on ECH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EchSplit {
    /// A TLS or QUIC ClientHello carrying an ECH extension.
    pub with_ech: EchCase,
    /// Any other sighting of the name (a ClientHello without ECH, DNS, HTTP).
    pub without_ech: EchCase,
}

/// What one case decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EchCase {
    /// The deciding rule's name (none: the default action).
    pub rule: Option<String>,
    /// The action's word.
    pub verdict: String,
    /// The action with its parameters.
    pub action: String,
}

impl EchCase {
    fn of(rs: &Ruleset, m: Option<Match>) -> EchCase {
        let action = rs.action(m.as_ref());
        EchCase {
            rule: m.map(|m| rs.rule(m.rule).name.clone()),
            verdict: action.verb().to_string(),
            action: action.to_string(),
        }
    }
}

/// The earliest rule deciding `name` on any name trigger, the SNI
/// triggers read as a ClientHello with (`ech`) or without ECH.
fn best_for_name(rs: &Ruleset, name: &[u8], ech: bool) -> Vec<(Trigger, Match)> {
    let per: Vec<(Trigger, Match)> = Trigger::NAMES
        .iter()
        .filter_map(|&tr| rs.match_hello(tr, ech, name).map(|m| (tr, m)))
        .collect();
    let best = per.iter().map(|p| p.1.rule).min();
    per.into_iter().filter(|p| Some(p.1.rule) == best).collect()
}

enum Target {
    Name(String),
    Ip(IpAddr),
}

fn target(query: &str) -> Result<(&'static str, Target), String> {
    if let Ok(ip) = query.parse::<IpAddr>() {
        return Ok(("ip", Target::Ip(ip)));
    }
    if let Some((_, rest)) = query.split_once("://") {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let auth = &rest[..end];
        let hostport = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
        if let Some(bracketed) = hostport.strip_prefix('[') {
            let (v6, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("unterminated `[` in the host of `{query}`"))?;
            if !(after.is_empty()
                || after
                    .strip_prefix(':')
                    .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())))
            {
                return Err(format!("bad port after the IPv6 literal in `{query}`"));
            }
            let ip = v6
                .parse()
                .map_err(|_| format!("bad IPv6 literal in `{query}`"))?;
            return Ok(("url", Target::Ip(ip)));
        }
        let host = match hostport.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => hostport,
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(("url", Target::Ip(ip)));
        }
        let name =
            crate::name::normalize(host).map_err(|e| format!("bad host in `{query}`: {e}"))?;
        return Ok(("url", Target::Name(name)));
    }
    let name = crate::name::normalize(query)
        .map_err(|e| format!("`{query}` is not a domain, IP or URL: {e}"))?;
    Ok(("domain", Target::Name(name)))
}

/// Explain one query against a ruleset.
pub fn explain(rs: &Ruleset, query: &str) -> Explanation {
    let default = &rs.meta.default_action;
    let mut ex = Explanation {
        query: query.to_string(),
        kind: "domain",
        looked_up: String::new(),
        verdict: default.verb().to_string(),
        action: default.to_string(),
        rule: None,
        on: Vec::new(),
        list: None,
        entry: None,
        entry_kind: None,
        source: None,
        decision: None,
        decision_date: None,
        org: None,
        ech: None,
        conditions: Vec::new(),
        protocol_rules: Vec::new(),
        falls_through: Vec::new(),
        learned_rules: Vec::new(),
        error: None,
    };
    let (kind, t) = match target(query) {
        Ok(x) => x,
        Err(e) => {
            ex.error = Some(e);
            return ex;
        }
    };
    ex.kind = kind;
    let (m, on): (Option<Match>, Vec<Trigger>) = match &t {
        Target::Ip(ip) => {
            ex.looked_up = ip.to_string();
            (rs.match_ip(*ip), vec![Trigger::Ip])
        }
        Target::Name(name) => {
            ex.looked_up = name.clone();
            let plain = best_for_name(rs, name.as_bytes(), false);
            let with_ech = best_for_name(rs, name.as_bytes(), true);
            let (p, e) = (plain.first().map(|x| x.1), with_ech.first().map(|x| x.1));
            if p.map(|m| m.rule) != e.map(|m| m.rule) {
                ex.ech = Some(EchSplit {
                    with_ech: EchCase::of(rs, e),
                    without_ech: EchCase::of(rs, p),
                });
            }
            // The main answer is the one without ECH, unless only a
            // ClientHello with ECH is decided by a rule.
            let shown = if p.is_none() { with_ech } else { plain };
            let on = shown.iter().map(|x| x.0).collect();
            (shown.first().map(|x| x.1), on)
        }
    };
    let before = m.map_or(rs.meta.rules.len(), |m| m.rule.index());
    ex.protocol_rules = rs.meta.rules[..before]
        .iter()
        .filter(|r| r.on & Trigger::Protocol.bit() != 0)
        .map(|r| {
            format!(
                "{} ({}): {}",
                r.name,
                r.action,
                conditions_in_words(rs, r).join("; ")
            )
        })
        .collect();
    if matches!(t, Target::Ip(_)) {
        ex.learned_rules = learned_rules(rs, &rs.meta.rules[..before]);
    }
    if let Some(m) = m {
        let rule = rs.rule(m.rule);
        ex.conditions = conditions_in_words(rs, rule);
        if !rule.cond.is_empty() || rule.ech.is_some() {
            let bits = on.iter().fold(0, |b, t| b | t.bit());
            ex.falls_through = falls_through(rs, m.rule.index(), bits, &t);
        }
        let info = rs.describe(m.hit);
        ex.verdict = rule.action.verb().to_string();
        ex.action = rule.action.to_string();
        ex.rule = Some(rule.name.clone());
        ex.on = on.iter().map(|t| t.as_str()).collect();
        ex.list = Some(info.list);
        ex.entry = Some(info.entry);
        ex.entry_kind = Some(info.kind);
        ex.source = Some(info.source);
        ex.decision = info.decision;
        ex.decision_date = info.decision_date;
        ex.org = info.org;
    } else if rs.meta.default_at == chokepoint_ruleset::DefaultAt::FirstData
        && !chokepoint_ruleset::Verdict::of(default).forwards()
    {
        // An allowlist: where a flow nothing allows dies matters to the
        // subscriber (a connect that works, then a handshake that hangs).
        ex.conditions.push(
            "at the flow's first data packet (default_at: first_data): the TCP handshake passes"
                .into(),
        );
    }
    ex
}
