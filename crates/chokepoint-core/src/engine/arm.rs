//! What a decision leaves behind besides its verdict, and the addresses
//! it decides by: a residual block armed, a server learnt into a dynamic
//! list ([`Arm`]); the IP rules' match including the dynamic lists
//! ([`address_match`]); a learnt flow meeting its own block ([`relearn`]).

use std::net::IpAddr;

use chokepoint_ruleset::{Action, Facts, LearnKey, Match, Ruleset, Verdict};

use super::decide::{earlier, event, flow_draw, judge, Found, Judgement};
use super::{Config, Counters, Output};
use crate::event::Decision;
use crate::flow::{FiveTuple, Flow, FlowDecision, Inspections};
use crate::learn::{LearnStore, LearnedKey, Learning};
use crate::reasm::Pool;
use crate::residual::{Arming, ResidualTable};

const NANOS: u64 = 1_000_000_000;

/// What a decision leaves behind besides the flow's verdict: a residual
/// block, a learnt server.
pub(crate) struct Arm<'a> {
    pub residual: &'a mut ResidualTable,
    pub learned: Option<&'a dyn LearnStore>,
    pub counters: &'a mut Counters,
}

impl Arm<'_> {
    /// Arm the residual block of the rule that just decided, if it has
    /// one, and learn the server under a `learn` action: then the time the
    /// learnt entry starts to block.
    pub fn arm(&mut self, rules: &Ruleset, j: &Judgement, f: &Facts<'_>, now: u64) -> Option<u64> {
        let r = j.rule().filter(|_| j.sticky)?;
        let rule = rules.rule(r);
        if let Some(x) = rule.residual {
            self.residual.arm(&Arming {
                now,
                scope: x.scope,
                proto: f.proto,
                client: f.client,
                server: f.server,
                port: f.server_port,
                seconds: x.seconds,
                rule: r,
                action: x.action,
            });
        }
        let Action::Learn {
            key, ttl, delay, ..
        } = &rule.action
        else {
            return None;
        };
        let (Some(store), Some(list)) = (self.learned, rules.learn_list(r)) else {
            self.counters.learn_unstored += 1;
            return None;
        };
        let key = match key {
            LearnKey::Server => LearnedKey::server(list, f.server),
            LearnKey::ServerPort => LearnedKey::server_port(list, f.server, f.proto, f.server_port),
        };
        let from = now.saturating_add(u64::from(*delay) * NANOS);
        store.learn(&Learning {
            key,
            at: now,
            from,
            until: from.saturating_add(u64::from(*ttl) * NANOS),
        });
        self.counters.learned += 1;
        Some(from)
    }
}

/// The IP rule deciding a flow with addresses `src` and `dst`: the
/// earliest of the static lists' matches and, when IP rules use dynamic
/// lists, the learnt entries for the flow's server.
pub(crate) fn address_match(
    cfg: &Config,
    learned: Option<&dyn LearnStore>,
    (src, dst): (IpAddr, IpAddr),
    f: &Facts<'_>,
    now: u64,
) -> Option<Match> {
    let fixed = cfg.ip_match(src, dst, f);
    match learned {
        Some(store) if cfg.rules.has_learned_rules() => {
            earlier(fixed, learned_match(cfg, store, f, now))
        }
        _ => fixed,
    }
}

/// The first IP rule on a dynamic list holding the flow's server, whole or
/// by its transport and port.
fn learned_match(cfg: &Config, store: &dyn LearnStore, f: &Facts<'_>, now: u64) -> Option<Match> {
    cfg.rules.match_learned(f, |list| {
        store.holds_any(
            &[
                LearnedKey::server(list, f.server),
                LearnedKey::server_port(list, f.server, f.proto, f.server_port),
            ],
            now,
        )
    })
}

/// A flow a `learn` rule decided, once its entry blocks: decided again by
/// the IP rules on dynamic lists, as a new flow to its server would be. If
/// none decides (the entry expired, or no rule reads the list), the flow
/// stays learnt and is not asked again.
pub(crate) fn relearn(
    cfg: &Config,
    flow: &mut Flow,
    tuple: &FiveTuple,
    learned: Option<&dyn LearnStore>,
    out: &mut Output,
    counters: &mut Counters,
    (insp, pool): (&mut Inspections, &mut Pool),
) -> Option<Decision> {
    flow.set_learn_at(u64::MAX);
    let store = learned?;
    let f = flow_facts(cfg, flow);
    let m = learned_match(cfg, store, &f, out.now)?;
    let j = judge(&cfg.rules, Some(m), None, &f);
    if !j.sticky || j.verdict == Verdict::Learn {
        return None;
    }
    counters.learned_hits += 1;
    counters.decisions_by_trigger[j.by.index()] += 1;
    let e = event(out, tuple, &Found::IP, &j);
    out.event(counters, e);
    flow.decide(
        FlowDecision {
            verdict: j.verdict,
            rule: j.rule(),
            by: j.by,
        },
        insp,
        pool,
    );
    Some(Decision {
        verdict: j.verdict,
        rule: j.rule(),
        decided_now: true,
        flow: Some(flow.serial),
        client: Some(flow.client()),
        dropped: false,
    })
}

/// What conditions see of a flow from its key alone (no packet).
fn flow_facts(cfg: &Config, f: &Flow) -> Facts<'static> {
    let (client, client_port, server, server_port) = f.client_server();
    Facts {
        draw: flow_draw(cfg.profile.seed, f.serial),
        ..Facts::endpoints(f.key.proto, (client, client_port), (server, server_port))
    }
}
