//! Decisions: one function ([`judge`]) turns what is known of a flow or a
//! query (a held IP match, a name) into a verdict. The live path and a
//! reload's re-evaluation both use it, so they cannot disagree.

use chokepoint_ruleset::name::{normalize_wire, MAX_NAME_LEN};
use chokepoint_ruleset::random::SplitMix64;
use chokepoint_ruleset::{Facts, Hit, Match, Protocol, RuleId, Ruleset, Trigger, Verdict};

use super::arm::{address_match, Arm};
use super::{Engine, FlowCx, Output};
use crate::event::{quirk, Decision, Event, NameBuf};
use crate::flow::{FiveTuple, Flow, FlowDecision, Seen};
use crate::{dns, http, tls};

/// Mixed into the profile's seed for `probability` draws, so they are not
/// the draws `freeze` and `degrade` make for the same flow.
const PROBABILITY_SALT: u64 = 0x7072_6f62_6162_696c;

/// A flow's own random draw for the rules' `probability` conditions.
#[inline]
pub(crate) fn flow_draw(seed: u64, serial: u64) -> u64 {
    SplitMix64::for_flow(seed ^ PROBABILITY_SALT, serial).next_u64()
}

/// A name found in a packet, before matching.
pub(crate) struct Found<'a> {
    pub trigger: Trigger,
    pub name: &'a [u8],
    pub ech: bool,
    pub grease: bool,
    /// The protocol the name came in (or, for `Trigger::Protocol`, the
    /// protocol just classified).
    pub protocol: Option<Protocol>,
}

impl Found<'_> {
    /// What an address rule's event reports: no name.
    pub const IP: Found<'static> = Found {
        trigger: Trigger::Ip,
        name: b"",
        ech: false,
        grease: false,
        protocol: None,
    };

    /// What a residual block's event reports.
    pub const RESIDUAL: Found<'static> = Found {
        trigger: Trigger::Residual,
        ..Found::IP
    };

    /// A name with nothing else known of it.
    pub fn name(trigger: Trigger, name: &[u8]) -> Found<'_> {
        Found {
            trigger,
            name,
            ech: false,
            grease: false,
            protocol: protocol_of(trigger),
        }
    }

    /// A protocol classified, before any name.
    pub fn protocol(p: Protocol) -> Found<'static> {
        Found {
            trigger: Trigger::Protocol,
            protocol: Some(p),
            ..Found::IP
        }
    }
}

/// The protocol a name trigger's name comes in.
pub(crate) fn protocol_of(t: Trigger) -> Option<Protocol> {
    match t {
        Trigger::TlsSni => Some(Protocol::Tls),
        Trigger::QuicSni => Some(Protocol::Quic),
        Trigger::HttpHost => Some(Protocol::Http),
        Trigger::DnsQname => Some(Protocol::Dns),
        Trigger::Ip | Trigger::Protocol | Trigger::Residual => None,
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

/// The one decision function: the earliest in policy order of a held
/// address match, the name's match and a protocol rule's, each rule's
/// conditions checked against `facts` (the packet that fired).
pub(crate) fn judge(
    rules: &Ruleset,
    hold: Option<Match>,
    found: Option<&Found<'_>>,
    facts: &Facts<'_>,
) -> Judgement {
    let mut buf = [0u8; MAX_NAME_LEN];
    let name = found.and_then(|f| {
        let matchable = if f.trigger == Trigger::HttpHost {
            http::host_for_match(f.name)
        } else {
            f.name
        };
        normalize_wire(matchable, &mut buf)
    });
    let facts = Facts {
        name: name.unwrap_or(b""),
        ech: found.is_some_and(|f| f.ech),
        protocol: found.and_then(|f| f.protocol),
        ..*facts
    };
    let name_match = match (found, name) {
        (Some(f), Some(n)) if f.trigger != Trigger::Protocol => {
            rules.match_hello_when(f.trigger, n, &facts)
        }
        _ => None,
    };
    let protocol_match = rules.match_protocol(&facts);
    let m = earlier(hold, earlier(name_match, protocol_match));
    let verdict = Verdict::of(rules.action(m.as_ref()));
    let by = match (m, found) {
        (Some(x), Some(f)) if Some(x) == name_match => f.trigger,
        (Some(x), _) if Some(x) == protocol_match => Trigger::Protocol,
        (Some(_), _) => Trigger::Ip,
        (None, Some(f)) => f.trigger,
        (None, None) => Trigger::Ip,
    };
    Judgement {
        m,
        verdict,
        by,
        sticky: m.is_some() && verdict.sticks(),
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
        // A protocol rule decided on a name's packet: say so.
        trigger: if j.by == Trigger::Protocol {
            Trigger::Protocol
        } else {
            found.trigger
        },
        protocol: found.protocol,
        name: NameBuf::new(found.name),
        ech: found.ech,
        grease: found.grease,
        rule: j.rule(),
        hit: j.m.map(|m| m.hit),
        verdict: j.verdict,
        fake_ignored: false,
        fake_name: NameBuf::EMPTY,
        urgent_stripped: false,
        overlap_conflict: false,
        bad_checksum: false,
    }
}

/// Say in the event what the profile's wire-reading knobs changed.
fn with_quirks(mut e: Event, flow: &Flow) -> Event {
    let q = flow.quirks;
    if q != 0 {
        e.fake_ignored = q & quirk::FAKE_IGNORED != 0;
        e.urgent_stripped = q & quirk::URGENT_STRIPPED != 0;
        e.overlap_conflict = q & quirk::OVERLAP_CONFLICT != 0;
        e.bad_checksum = q & quirk::BAD_CHECKSUM != 0;
        if let Some(n) = flow.fake_name() {
            e.fake_name = *n;
        }
    }
    e
}

/// What a reload needs of a sighting to decide its flow again.
pub(crate) fn seen(found: &Found<'_>, p: &super::PacketFacts) -> Seen {
    Seen {
        trigger: found.trigger,
        ech: found.ech,
        name: NameBuf::new(found.name),
        protocol: found.protocol,
        payload_len: p.payload_len,
        first_packet: p.first_data,
        quic_version: p.quic_version,
    }
}

/// The judgement a residual block gives a new flow.
pub(crate) fn residual_judgement(b: crate::residual::Block) -> Judgement {
    let verdict = match b.action {
        chokepoint_ruleset::ResidualAction::Drop => Verdict::Drop,
        chokepoint_ruleset::ResidualAction::Reset => Verdict::Reset,
    };
    Judgement {
        m: Some(Match {
            rule: b.rule,
            hit: Hit::Rule,
        }),
        verdict,
        by: Trigger::Residual,
        sticky: true,
    }
}

impl FlowCx<'_> {
    /// What conditions see of the current packet.
    pub(super) fn facts(&self) -> Facts<'static> {
        let t = &self.tuple;
        let (client, server, client_port, server_port) = if self.from_client {
            (t.src, t.dst, t.sport, t.dport)
        } else {
            (t.dst, t.src, t.dport, t.sport)
        };
        Facts {
            payload_len: self.packet.payload_len,
            first_packet: self.packet.first_data,
            quic_version: self.packet.quic_version,
            draw: flow_draw(self.cfg.profile.seed, self.flow.serial),
            ..Facts::endpoints(t.proto, (client, client_port), (server, server_port))
        }
    }

    /// What a decision leaves behind, for this flow.
    fn arm(&mut self, j: &Judgement, facts: &Facts<'_>) {
        let mut arm = Arm {
            residual: self.residual,
            learned: self.learned,
            counters: self.counters,
        };
        if let Some(at) = arm.arm(&self.cfg.rules, j, facts, self.out.now) {
            self.flow.set_learn_at(at);
        }
    }

    /// Judge a name, report it, count it.
    fn judge_and_report(&mut self, hold: Option<Match>, found: &Found<'_>) -> Judgement {
        let facts = self.facts();
        let j = judge(&self.cfg.rules, hold, Some(found), &facts);
        self.report(j, found, &facts)
    }

    /// Arm, count and report a judgement of `found`.
    fn report(&mut self, j: Judgement, found: &Found<'_>, facts: &Facts<'_>) -> Judgement {
        self.arm(&j, facts);
        self.counters.decisions_by_trigger[j.by.index()] += 1;
        let e = with_quirks(event(self.out, &self.tuple, found, &j), self.flow);
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
            self.flow.decide(d, self.insp, self.pool);
        } else if j.m.is_some() {
            // A `pass` or `log` rule matched: the flow keeps its verdict
            // after inspection ends, also under a blocking default (an
            // allowlist).
            self.flow.hold = j.m;
        }
        self.keep_seen(found);
        self.decision(&j)
    }

    /// Keep what a reload needs to decide the flow again.
    fn keep_seen(&mut self, found: &Found<'_>) {
        if self.cfg.profile.reevaluate_on_reload {
            self.flow.set_seen(seen(found, &self.packet));
        }
    }

    /// Decide on a ClientHello handshake message (TLS, or QUIC's CRYPTO
    /// stream), then stop inspecting unless the flow was decided.
    pub(super) fn decide_hello(&mut self, trigger: Trigger, msg: &[u8]) -> Decision {
        self.decide_parsed_hello(trigger, tls::handshake(msg))
    }

    /// Decide on what the first TLS record holds of a ClientHello that
    /// goes on in later records (`tls_records: first_only`): a name past
    /// the record's end is not seen.
    pub(super) fn decide_hello_prefix(&mut self, trigger: Trigger, msg: &[u8]) -> Decision {
        self.decide_parsed_hello(trigger, tls::handshake_prefix(msg))
    }

    fn decide_parsed_hello(
        &mut self,
        trigger: Trigger,
        ch: Option<tls::ClientHello<'_>>,
    ) -> Decision {
        let d = match ch {
            Some(ch) => self.decide_flow(&Found {
                trigger,
                name: ch.sni.unwrap_or(b""),
                ech: ch.ech,
                grease: ch.grease,
                protocol: protocol_of(trigger),
            }),
            None => self.undecided(),
        };
        self.give_up_if_undecided();
        d
    }

    /// A protocol classified, by one of the classifiers or before any name
    /// (a QUIC long header): a protocol rule may decide the flow now.
    /// Reported only when a protocol rule matched: a blocking one decides
    /// the flow (returned); a `pass` or `log` one is held, and reported
    /// once.
    pub(super) fn decide_protocol(&mut self, p: Protocol) -> Option<Decision> {
        if !self.cfg.rules.has_protocol_rules() {
            return None;
        }
        let found = Found::protocol(p);
        let facts = self.facts();
        let j = judge(&self.cfg.rules, self.flow.hold, Some(&found), &facts);
        if j.by != Trigger::Protocol || j.m.is_none() || (!j.sticky && self.flow.hold == j.m) {
            return None;
        }
        self.arm(&j, &facts);
        self.counters.decisions_by_trigger[j.by.index()] += 1;
        let e = with_quirks(event(self.out, &self.tuple, &found, &j), self.flow);
        self.out.event(self.counters, e);
        self.keep_seen(&found);
        if !j.sticky {
            self.flow.hold = j.m;
            return None;
        }
        let d = FlowDecision {
            verdict: j.verdict,
            rule: j.rule(),
            by: j.by,
        };
        self.flow.decide(d, self.insp, self.pool);
        Some(self.decision(&j))
    }

    /// A protocol a classifier recognised: counted, then
    /// [`FlowCx::decide_protocol`].
    pub(super) fn classified(&mut self, p: Protocol) -> Option<Decision> {
        self.counters.protocols[p.index()] += 1;
        self.decide_protocol(p)
    }

    /// Each question of a DNS message is its own decision; the packet gets
    /// the one whose rule comes first. A held address match (`pass`/`log`)
    /// never overrides the name's rule, earlier in the policy or not: a
    /// resolver's address says nothing of the names asked. It applies only
    /// to a question no rule matched, in place of the default: under
    /// `default: drop` an allowlisted resolver answers.
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
            let found = Found::name(Trigger::DnsQname, name.as_bytes());
            let facts = self.facts();
            let mut j = judge(&self.cfg.rules, None, Some(&found), &facts);
            if j.m.is_none() && self.flow.hold.is_some() {
                j = judge(&self.cfg.rules, self.flow.hold, Some(&found), &facts);
            }
            let j = self.report(j, &found, &facts);
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
            learned,
            out,
            ..
        } = self;
        let learned = learned.as_deref();
        let now = out.now;
        flows.for_each_with(|f, insp| {
            let seen = f.seen().map(|s: &Seen| Found {
                trigger: s.trigger,
                name: s.name.as_bytes(),
                ech: s.ech,
                grease: false,
                protocol: s.protocol,
            });
            if seen.is_none() && f.decision.is_some_and(|d| d.by != Trigger::Ip) {
                counters.reevaluate_name_unknown += 1;
                return;
            }
            let (client, client_port, server, server_port) = f.client_server();
            let kept = f.seen();
            let facts = Facts {
                payload_len: kept.map_or(0, |s| s.payload_len),
                first_packet: kept.is_some_and(|s| s.first_packet),
                quic_version: kept.and_then(|s| s.quic_version),
                draw: flow_draw(cfg.profile.seed, f.serial),
                ..Facts::endpoints(f.key.proto, (client, client_port), (server, server_port))
            };
            let j = judge(
                &cfg.rules,
                address_match(cfg, learned, f.addresses(), &facts, now),
                seen.as_ref(),
                &facts,
            );
            counters.reevaluated += 1;
            if j.sticky {
                let d = FlowDecision {
                    verdict: j.verdict,
                    rule: j.rule(),
                    by: j.by,
                };
                f.decide(d, insp, &mut scratch.pool);
                f.settle(insp, &mut scratch.pool);
            } else {
                f.decision = None;
                f.hold = j.m;
                // A freeze/degrade default starts afresh under the new
                // rules, as a re-decided flow does (`Flow::decide`).
                f.enforce = None;
            }
        });
    }
}
