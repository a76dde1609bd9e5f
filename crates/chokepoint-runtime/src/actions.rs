//! From a decision to what happens on the wire: forward or not, and what
//! to inject. Shared by replay (which writes pass/drop files) and the live
//! bridge.
//!
//! | verdict | the deciding packet | later packets of the flow | injected |
//! |---|---|---|---|
//! | pass, log | forwarded | forwarded | nothing |
//! | drop | dropped | dropped | nothing |
//! | reset | dropped | dropped | `repeat` RSTs each way (TCP); UDP is just dropped |
//! | dns | dropped | (per query) | a forged answer (UDP; TCP: answer, FIN, RST to the server) |
//! | redirect | dropped | dropped | HTTP: 302 to the stub page + FIN, RST to the server; TLS: resets |
//! | throttle | policed | policed | nothing; packets over the rate are dropped |
//!
//! Tunnelled packets are never answered (a reply would need the tunnel's
//! headers rebuilt): they are dropped.

use std::collections::HashMap;

use chokepoint_core::inject::{self, TokenBucket};
use chokepoint_core::{Decision, Event, LinkType, Verdict};
use chokepoint_rules::{Action, Ruleset, Trigger};

/// What to do with one frame.
#[derive(Debug, Default)]
pub struct Outcome {
    pub forward: bool,
    /// Frames to send (resets, forged answers, redirects), in order.
    pub inject: Vec<Vec<u8>>,
}

/// Counters of what the actions did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActionCounters {
    pub forwarded: u64,
    pub dropped: u64,
    pub injected_rst: u64,
    pub injected_dns: u64,
    pub injected_redirect: u64,
    pub throttled: u64,
    /// Answers that could not be built (tunnelled or unparsable frames).
    pub not_answerable: u64,
}

/// Per-flow policers, keyed by the symmetric flow hash.
#[derive(Default)]
pub struct Actor {
    buckets: HashMap<u64, TokenBucket>,
    pub counters: ActionCounters,
}

/// Policers kept at most; the oldest are forgotten beyond it.
const MAX_BUCKETS: usize = 1 << 20;

impl Actor {
    pub fn act(
        &mut self,
        rules: &Ruleset,
        link: LinkType,
        frame: &[u8],
        ts: u64,
        d: &Decision,
        events: &[Event],
    ) -> Outcome {
        // No rule matched: the policy's default action applies.
        let action = d
            .rule
            .map_or(&rules.meta.default_action, |r| &rules.rule(r).action);
        let out = if d.verdict.forwards() {
            Outcome {
                forward: true,
                inject: Vec::new(),
            }
        } else if let (Verdict::Throttle, Action::Throttle { kbps }) = (d.verdict, action) {
            let key = chokepoint_core::decode::flow_hash(link, frame);
            if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&key) {
                self.buckets.clear();
            }
            let b = self
                .buckets
                .entry(key)
                .or_insert_with(|| TokenBucket::new(*kbps, ts));
            let ok = b.allow(ts, frame.len());
            if !ok {
                self.counters.throttled += 1;
            }
            Outcome {
                forward: ok,
                inject: Vec::new(),
            }
        } else {
            Outcome {
                forward: false,
                inject: if d.decided_now {
                    self.answer(d.verdict, action, link, frame, events)
                } else {
                    Vec::new()
                },
            }
        };
        if out.forward {
            self.counters.forwarded += 1;
        } else {
            self.counters.dropped += 1;
        }
        out
    }

    fn answer(
        &mut self,
        v: Verdict,
        a: &Action,
        link: LinkType,
        frame: &[u8],
        events: &[Event],
    ) -> Vec<Vec<u8>> {
        let Some(t) = inject::trigger(link, frame) else {
            self.counters.not_answerable += 1;
            return Vec::new();
        };
        let trigger = events
            .iter()
            .rev()
            .find(|e| e.rule.is_some())
            .map(|e| e.trigger);
        let resets = |this: &mut Self, repeat: u8| {
            let r = inject::tcp_resets(&t, repeat);
            this.counters.injected_rst += r.len() as u64;
            r
        };
        match (v, a) {
            (Verdict::Reset, Action::Reset { repeat }) if t.proto == 6 => resets(self, *repeat),
            (Verdict::Dns, Action::Dns { answer, ttl }) if trigger == Some(Trigger::DnsQname) => {
                let frames = if t.proto == 6 {
                    inject::dns_answer_tcp(&t, answer, *ttl)
                } else {
                    inject::dns_answer(&t, answer, *ttl).into_iter().collect()
                };
                if frames.is_empty() {
                    self.counters.not_answerable += 1;
                } else {
                    self.counters.injected_dns += 1;
                }
                frames
            }
            (Verdict::Redirect, Action::Redirect { location }) if t.proto == 6 => {
                if trigger == Some(Trigger::HttpHost) {
                    let r = inject::http_redirect(&t, location);
                    self.counters.injected_redirect += 1;
                    r
                } else {
                    // HTTPS cannot be answered with a page: reset it.
                    resets(self, 1)
                }
            }
            _ => Vec::new(),
        }
    }
}
