//! Decisions: one function ([`judge`]) turns what is known of a flow or a
//! query (a held IP match, a name) into a verdict. The live path and a
//! reload's re-evaluation both use it, so they cannot disagree.

use chokepoint_ruleset::name::{normalize_wire, MAX_NAME_LEN};
use chokepoint_ruleset::{Match, RuleId, Ruleset, Trigger, Verdict};

use super::{Engine, FlowCx, Output};
use crate::event::{Decision, Event, NameBuf};
use crate::flow::{FiveTuple, FlowDecision, Seen};
use crate::{dns, http, tls};

/// A name found in a packet, before matching.
pub(crate) struct Found<'a> {
    pub trigger: Trigger,
    pub name: &'a [u8],
    pub ech: bool,
    pub grease: bool,
}

impl Found<'_> {
    /// What an address rule's event reports: no name.
    pub const IP: Found<'static> = Found {
        trigger: Trigger::Ip,
        name: b"",
        ech: false,
        grease: false,
    };

    /// A name with nothing else known of it.
    pub fn name(trigger: Trigger, name: &[u8]) -> Found<'_> {
        Found {
            trigger,
            name,
            ech: false,
            grease: false,
        }
    }
}

/// What the policy says about a flow or a query.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Judgement {
    /// The deciding match (none: the default action).
    pub m: Option<Match>,
    pub verdict: Verdict,
    /// What decided: the name's trigger, or `Ip` when an address rule did.
    pub by: Trigger,
    /// A rule that does not forward matched: the decision sticks.
    pub sticky: bool,
}

impl Judgement {
    pub fn rule(&self) -> Option<RuleId> {
        self.m.map(|m| m.rule)
    }
}

/// The one decision function: the earlier in policy order of a held
/// address match and the name's match.
pub(crate) fn judge(rules: &Ruleset, hold: Option<Match>, found: Option<&Found<'_>>) -> Judgement {
    let name_match = found.and_then(|f| {
        let matchable = if f.trigger == Trigger::HttpHost {
            http::host_for_match(f.name)
        } else {
            f.name
        };
        let mut buf = [0u8; MAX_NAME_LEN];
        normalize_wire(matchable, &mut buf).and_then(|n| rules.match_hello(f.trigger, f.ech, n))
    });
    let m = earlier(hold, name_match);
    let verdict = Verdict::of(rules.action(m.as_ref()));
    let by = match (m, name_match, found) {
        (Some(x), Some(n), Some(f)) if x == n => f.trigger,
        (Some(_), _, _) => Trigger::Ip,
        (None, _, Some(f)) => f.trigger,
        (None, _, None) => Trigger::Ip,
    };
    Judgement {
        m,
        verdict,
        by,
        sticky: m.is_some() && !verdict.forwards(),
    }
}

/// The match whose rule comes first in the policy; `a` on a tie.
pub(crate) fn earlier(a: Option<Match>, b: Option<Match>) -> Option<Match> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.rule < x.rule { y } else { x }),
        (x, y) => x.or(y),
    }
}

/// The event for a judgement of the current packet.
pub(crate) fn event(out: &Output, t: &FiveTuple, found: &Found<'_>, j: &Judgement) -> Event {
    Event {
        packet: out.index,
        ts: out.now,
        src: t.src,
        dst: t.dst,
        sport: t.sport,
        dport: t.dport,
        proto: t.proto,
        trigger: found.trigger,
        name: NameBuf::new(found.name),
        ech: found.ech,
        grease: found.grease,
        rule: j.rule(),
        hit: j.m.map(|m| m.hit),
        verdict: j.verdict,
    }
}

impl FlowCx<'_> {
    /// Judge a name, report it, count it.
    fn judge_and_report(&mut self, hold: Option<Match>, found: &Found<'_>) -> Judgement {
        let j = judge(&self.cfg.rules, hold, Some(found));
        self.counters.decisions_by_trigger[j.by.index()] += 1;
        let e = event(self.out, &self.tuple, found, &j);
        self.out.event(self.counters, e);
        j
    }

    fn decision(&self, j: &Judgement) -> Decision {
        Decision {
            verdict: j.verdict,
            rule: j.rule(),
            decided_now: true,
            flow: Some(self.flow.serial),
            client: Some(self.flow.client()),
            dropped: false,
        }
    }

    /// Match a name for the flow and make a blocking decision stick.
    pub(super) fn decide_flow(&mut self, found: &Found<'_>) -> Decision {
        let j = self.judge_and_report(self.flow.hold, found);
        if j.sticky {
            let d = FlowDecision {
                verdict: j.verdict,
                rule: j.rule(),
                by: j.by,
            };
            self.flow.decide(d, self.pool);
        }
        if self.cfg.profile.reevaluate_on_reload {
            self.flow.seen = Some(Box::new(Seen {
                trigger: found.trigger,
                ech: found.ech,
                name: NameBuf::new(found.name),
            }));
        }
        self.decision(&j)
    }

    /// Decide on a ClientHello handshake message (TLS, or QUIC's CRYPTO
    /// stream), then stop inspecting unless the flow was decided.
    pub(super) fn decide_hello(&mut self, trigger: Trigger, msg: &[u8]) -> Decision {
        let d = match tls::handshake(msg) {
            Some(ch) => self.decide_flow(&Found {
                trigger,
                name: ch.sni.unwrap_or(b""),
                ech: ch.ech,
                grease: ch.grease,
            }),
            None => self.undecided(),
        };
        self.give_up_if_undecided();
        d
    }

    /// Each question of a DNS message is its own decision; the packet gets
    /// the one whose rule comes first. A held address match does not apply:
    /// a resolver's address says nothing of the names asked.
    pub(super) fn dns_message(&mut self, msg: &[u8]) -> Decision {
        let mut names = [NameBuf::EMPTY; 4];
        let mut n = 0;
        let _ = dns::for_each_question(msg, |name, _qtype| {
            if n < names.len() {
                names[n] = NameBuf::new(name);
                n += 1;
            }
        });
        let mut best: Option<Judgement> = None;
        for name in &names[..n] {
            self.counters.dns_queries += 1;
            let j = self.judge_and_report(None, &Found::name(Trigger::DnsQname, name.as_bytes()));
            let better = match (best.and_then(|b| b.rule()), j.rule()) {
                (_, None) => best.is_none(),
                (None, Some(_)) => true,
                (Some(b), Some(r)) => r < b,
            };
            if better {
                best = Some(j);
            }
        }
        match best {
            Some(j) => self.decision(&j),
            None => Decision {
                verdict: self.cfg.default_verdict(),
                rule: None,
                decided_now: false,
                flow: Some(self.flow.serial),
                client: Some(self.flow.client()),
                dropped: false,
            },
        }
    }
}

impl Engine {
    /// Decide every flow again under the rules just loaded, from its
    /// addresses and the name it carried. A flow decided on a name that was
    /// not kept (re-evaluation was off then) keeps its decision: deciding it
    /// from its addresses alone would unblock it.
    pub(super) fn reevaluate(&mut self) {
        let Engine {
            cfg,
            flows,
            scratch,
            counters,
            ..
        } = self;
        flows.for_each_mut(|f| {
            let seen = f.seen.as_deref().map(|s: &Seen| Found {
                trigger: s.trigger,
                name: s.name.as_bytes(),
                ech: s.ech,
                grease: false,
            });
            if seen.is_none() && f.decision.is_some_and(|d| d.by != Trigger::Ip) {
                counters.reevaluate_name_unknown += 1;
                return;
            }
            let (a, b) = f.addresses();
            let j = judge(&cfg.rules, cfg.ip_match(a, b), seen.as_ref());
            counters.reevaluated += 1;
            if j.sticky {
                let d = FlowDecision {
                    verdict: j.verdict,
                    rule: j.rule(),
                    by: j.by,
                };
                f.decide(d, &mut scratch.pool);
            } else {
                f.decision = None;
                f.hold = j.m;
            }
        });
    }
}
