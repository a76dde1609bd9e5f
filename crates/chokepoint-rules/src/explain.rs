//! "Why was this blocked?" for one domain, address or URL.

use std::net::IpAddr;

use serde::Serialize;

use crate::policy::Trigger;
use crate::ruleset::{Match, Ruleset};

/// The answer for one query; the JSON form is `chokepoint explain --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub query: String,
    /// `domain`, `ip` or `url`.
    pub kind: &'static str,
    /// What was looked up: the normalised name or the address.
    pub looked_up: String,
    /// The action's word, or the default's (`pass` usually).
    pub verdict: String,
    /// The action with its parameters, e.g. `reset(x2)`.
    pub action: String,
    pub rule: Option<String>,
    /// Triggers for which this rule decides the name (`ip` for addresses).
    pub on: Vec<&'static str>,
    pub list: Option<String>,
    pub entry: Option<String>,
    pub entry_kind: Option<&'static str>,
    pub source: Option<String>,
    pub decision: Option<String>,
    pub decision_date: Option<String>,
    pub org: Option<String>,
    /// Set when the query could not be read as a name, address or URL.
    pub error: Option<String>,
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
        if let Some(v6) = hostport.strip_prefix('[').and_then(|h| h.split(']').next()) {
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
    let (m, on): (Option<Match>, Vec<&'static str>) = match &t {
        Target::Ip(ip) => {
            ex.looked_up = ip.to_string();
            (rs.match_ip(*ip), vec![Trigger::Ip.as_str()])
        }
        Target::Name(name) => {
            ex.looked_up = name.clone();
            let per: Vec<(Trigger, Match)> = Trigger::NAMES
                .iter()
                .filter_map(|&tr| rs.match_name(tr, name.as_bytes()).map(|m| (tr, m)))
                .collect();
            let best = per.iter().map(|p| p.1).min_by_key(|m| m.rule);
            let on = per
                .iter()
                .filter(|p| Some(p.1.rule) == best.map(|b| b.rule))
                .map(|p| p.0.as_str())
                .collect();
            (best, on)
        }
    };
    if let Some(m) = m {
        let rule = rs.rule(m.rule);
        let info = rs.describe(m.hit);
        ex.verdict = rule.action.verb().to_string();
        ex.action = rule.action.to_string();
        ex.rule = Some(rule.name.clone());
        ex.on = on;
        ex.list = Some(info.list);
        ex.entry = Some(info.entry);
        ex.entry_kind = Some(info.kind);
        ex.source = Some(info.source);
        ex.decision = info.decision;
        ex.decision_date = info.decision_date;
        ex.org = info.org;
    }
    ex
}
