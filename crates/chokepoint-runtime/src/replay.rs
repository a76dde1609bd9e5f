//! Offline replay: every frame of a capture through the core, with a
//! summary and, optionally, one JSON line per decision.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use chokepoint_core::{Counters, Engine, Event, Verdict};
use chokepoint_rules::{Ruleset, Trigger};

use crate::actions::{Actor, Outcome};
use crate::capture::{self, CaptureError};

/// What a replay saw.
#[derive(Debug, Default)]
pub struct Summary {
    /// Packet records read, skipped ones included.
    pub records: u64,
    /// Records the capture reader passed over, by why.
    pub skipped: capture::Skipped,
    /// The engine's counters.
    pub counters: Counters,
    /// Flows created.
    pub flows_created: u64,
    /// Flows expired.
    pub flows_expired: u64,
    /// Flows evicted from a full table.
    pub flows_evicted: u64,
    /// Flow decisions (TLS, QUIC, HTTP, IP) by verdict.
    pub flows_by_verdict: [u64; Verdict::COUNT],
    /// DNS query decisions by verdict.
    pub dns_by_verdict: [u64; Verdict::COUNT],
    /// Decisions by (rule, trigger); rule `None` = no rule matched.
    pub by_rule: HashMap<(Option<chokepoint_rules::RuleId>, Trigger), u64>,
    /// Names of decisions that did not forward the traffic.
    pub blocked_names: HashMap<String, u64>,
    /// Events written.
    pub events: u64,
    /// IP datagrams reassembled from fragments.
    pub fragments_reassembled: u64,
    /// What the IP defragmenter did (timeouts, evictions, refusals).
    pub defrag: chokepoint_core::defrag::DefragStats,
    /// Reassembly buffers freed under memory pressure.
    pub reassembly_buffers_evicted: u64,
    /// What the actions did.
    pub actions: crate::actions::ActionCounters,
    /// What the dynamic lists of `learn` actions did.
    pub learned: crate::learned::LearnedStats,
}

/// Where replay writes: JSON events, and the frames that would pass (with
/// injected resets, forged answers and redirects) or be dropped.
#[derive(Default)]
pub struct Outputs<'a> {
    /// JSON events, one per line.
    pub events: Option<&'a mut dyn Write>,
    /// Frames that pass, with injected ones (pcap).
    pub pass: Option<&'a mut dyn Write>,
    /// Frames that are dropped (pcap).
    pub drop: Option<&'a mut dyn Write>,
    /// Told, every [`PROGRESS_EVERY`] records, about how many bytes of the
    /// capture have been read (record headers counted at 16 bytes).
    pub progress: Option<&'a mut dyn FnMut(u64)>,
    /// The events' format.
    pub format: crate::eve::EventFormat,
}

/// Records between calls of [`Outputs::progress`].
pub const PROGRESS_EVERY: u64 = 16_384;

/// The JSON line for one event: `frame`, `ts`, `src`, `dst`, `sport`,
/// `dport`, `proto`, `trigger`, `name`, `ech`, `grease`, `rule`, `list`,
/// `entry`, `verdict` (what the rule asked for), and from `done`, the
/// outcome of the packet that completed the decision: `action` (what was
/// actually done, see [`Applied`](crate::actions::Applied)) and `injected`
/// (frames sent for it).
pub fn event_json(rs: &Ruleset, e: &Event, done: &Outcome) -> serde_json::Value {
    let mut name = String::new();
    chokepoint_core::dns::escape(e.name.as_bytes(), &mut name);
    let hit = e.hit.map(|h| rs.describe(h));
    let mut v = serde_json::json!({
        "frame": e.packet,
        "ts": format!("{}.{:09}", e.ts / 1_000_000_000, e.ts % 1_000_000_000),
        "src": e.src.to_string(),
        "dst": e.dst.to_string(),
        "sport": e.sport,
        "dport": e.dport,
        "proto": match e.proto { 6 => "tcp", 17 => "udp", _ => "other" },
        "trigger": e.trigger.as_str(),
        "name": name,
        "ech": e.ech,
        "grease": e.grease,
        "rule": e.rule.map(|r| rs.rule(r).name.clone()),
        "list": hit.as_ref().map(|h| h.list.clone()),
        "entry": hit.as_ref().map(|h| h.entry.clone()),
        "verdict": e.verdict.as_str(),
        "action": done.applied.as_str(),
        "injected": done.inject.len(),
    });
    // What the profile's wire-reading knobs changed, only where one did:
    // the usual event stays as it was.
    if let Some(o) = v.as_object_mut() {
        if let (Trigger::Protocol, Some(p)) = (e.trigger, e.protocol) {
            o.insert("protocol".into(), p.as_str().into());
        }
        if e.fake_ignored {
            o.insert("fake_ignored".into(), true.into());
            let mut fake = String::new();
            chokepoint_core::dns::escape(e.fake_name.as_bytes(), &mut fake);
            o.insert("fake_name".into(), fake.into());
        }
        // A protocol rule fired: on which protocol (the name alone may
        // not say, and there may be none).
        if let (Trigger::Protocol, Some(p)) = (e.trigger, e.protocol) {
            o.insert("protocol".into(), p.as_str().into());
        }
        for (key, set) in [
            ("urgent_stripped", e.urgent_stripped),
            ("overlap_conflict", e.overlap_conflict),
            ("bad_checksum", e.bad_checksum),
        ] {
            if set {
                o.insert(key.into(), true.into());
            }
        }
    }
    v
}

/// Replay a capture. Events go to `events` as JSON lines. The summary is
/// complete for every record read, also when the capture turns out to be
/// damaged (the error is returned beside it). The first write error of
/// any output is returned too ([`CaptureError::Output`]), so no output is
/// taken for complete when it is not; the summary is still made.
pub fn replay(
    rules: Arc<Ruleset>,
    path: &Path,
    out: Outputs<'_>,
) -> (Summary, Result<(), CaptureError>) {
    let mut engine = Engine::new(rules.clone());
    // One replay is one worker: its dynamic lists are its own, driven by
    // the capture's timestamps.
    let learned = Arc::new(crate::learned::LearnedTable::new(
        rules.meta.profile.max_learned_entries as usize,
    ));
    engine.set_learn_store(learned.clone());
    let mut s = Summary::default();
    let mut last_ts = 0;
    let mut write_err: Option<std::io::Error> = None;
    let Outputs {
        mut events,
        pass,
        drop,
        mut progress,
        format,
    } = out;
    let mut bytes_read: u64 = 0;
    let mut pass = pass.map(|w| capture::Writer::new(w, capture::Format::PcapNanos));
    let mut drop = drop.map(|w| capture::Writer::new(w, capture::Format::PcapNanos));
    // The actor runs on every frame, outputs or not: events report what
    // it did.
    let mut actor = Actor::default();
    let mut skipped = capture::Skipped::default();
    let opts = capture::ReadOptions::default();
    let res = capture::read_with(path, &opts, &mut skipped, &mut |rec| {
        s.records = rec.index;
        last_ts = rec.ts;
        bytes_read += rec.data.len() as u64 + 16;
        if rec.index % PROGRESS_EVERY == 0 {
            if let Some(p) = progress.as_deref_mut() {
                p(bytes_read);
            }
        }
        let d = engine.process(rec.ts, rec.link, rec.data);
        let o = actor.act(&rules, rec.link, rec.data, rec.ts, &d, engine.events());
        if pass.is_some() || drop.is_some() {
            let r = (|| -> std::io::Result<()> {
                match (o.forward, &mut pass, &mut drop) {
                    (true, Some(p), _) => p.write(rec.link, rec.ts, rec.data)?,
                    (false, _, Some(dw)) => dw.write(rec.link, rec.ts, rec.data)?,
                    _ => {}
                }
                if let Some(p) = &mut pass {
                    for f in &o.inject {
                        p.write(rec.link, rec.ts, f)?;
                    }
                }
                Ok(())
            })();
            if let (Err(e), None) = (r, &write_err) {
                write_err = Some(e);
            }
        }
        for e in engine.events() {
            s.events += 1;
            *s.by_rule.entry((e.rule, e.trigger)).or_default() += 1;
            let v = e.verdict as usize;
            if e.trigger == Trigger::DnsQname {
                s.dns_by_verdict[v] += 1;
            } else {
                s.flows_by_verdict[v] += 1;
            }
            if !e.verdict.forwards() && !e.name.as_bytes().is_empty() {
                *s.blocked_names
                    .entry(String::from_utf8_lossy(e.name.as_bytes()).into_owned())
                    .or_default() += 1;
            }
            if let Some(w) = events.as_deref_mut() {
                if write_err.is_none() {
                    if let Err(err) = writeln!(w, "{}", format.json(&rules, e, &o, None)) {
                        write_err = Some(err);
                    }
                }
            }
        }
    });
    for w in [
        pass.map(|p| p.finish().map(|_| ())),
        drop.map(|d| d.finish().map(|_| ())),
    ]
    .into_iter()
    .flatten()
    {
        if let (Err(e), None) = (w, &write_err) {
            write_err = Some(e);
        }
    }
    s.skipped = skipped;
    match &res {
        Ok(n) => s.records = *n,
        Err(
            CaptureError::Corrupt { records, .. } | CaptureError::BlockTooLarge { records, .. },
        ) => s.records = *records,
        Err(_) => {}
    }
    s.actions = actor.counters.clone();
    let end = last_ts.saturating_add(3600 * 1_000_000_000);
    engine.expire(end);
    learned.expire(end);
    s.learned = learned.stats();
    s.counters = engine.counters.clone();
    let fs = engine.flows().stats;
    s.flows_created = fs.created;
    s.flows_expired = fs.expired;
    s.flows_evicted = fs.evicted;
    s.fragments_reassembled = engine.defrag_stats().datagrams;
    s.defrag = engine.defrag_stats();
    s.reassembly_buffers_evicted = fs.buffers_evicted;
    let res = match (res, write_err) {
        (Err(e), _) => Err(e),
        (Ok(_), Some(e)) => Err(CaptureError::Output { source: e }),
        (Ok(_), None) => Ok(()),
    };
    (s, res)
}

/// Which policy ran: its file (as compiled, also when loaded from an
/// artifact) or the bundled default, and the policy's blake3 as
/// `chokepoint stats` prints it, so a summary can be matched to an artifact.
pub fn policy_line(rs: &Ruleset) -> String {
    let p = &rs.meta.policy;
    let name = if p.path == chokepoint_rules::DEFAULT_POLICY_ORIGIN {
        "bundled default"
    } else {
        p.path.as_str()
    };
    format!(
        "policy    {name} (blake3 {})",
        &p.blake3[..16.min(p.blake3.len())]
    )
}

/// The summary as text.
pub fn summary_text(rs: &Ruleset, s: &Summary) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let c = &s.counters;
    let _ = writeln!(o, "{}", policy_line(rs));
    let _ = writeln!(
        o,
        "packets   {} ({} bytes) in {} records; {} not IP",
        c.packets, c.bytes, s.records, c.not_ip
    );
    if s.skipped.undeclared_interface > 0 {
        let _ = writeln!(
            o,
            "skipped   {} records on a pcapng interface no Interface Description Block declared (link type unknown)",
            s.skipped.undeclared_interface
        );
    }
    let _ = writeln!(
        o,
        "flows     {} created, {} evicted at capacity",
        s.flows_created, s.flows_evicted
    );
    let _ = writeln!(
        o,
        "\nby verdict        packets        bytes    flows  dns queries"
    );
    for v in Verdict::ALL {
        let i = v as usize;
        if c.packets_by_verdict[i] + s.flows_by_verdict[i] + s.dns_by_verdict[i] == 0 {
            continue;
        }
        let _ = writeln!(
            o,
            "  {:<10} {:>12} {:>12} {:>8} {:>12}",
            v.as_str(),
            c.packets_by_verdict[i],
            c.bytes_by_verdict[i],
            s.flows_by_verdict[i],
            s.dns_by_verdict[i]
        );
    }
    let _ = writeln!(
        o,
        "  (flows and dns queries count decisions, not packets: one per flow, one per DNS query)"
    );
    let _ = writeln!(
        o,
        "\ndecisions by rule and trigger (dns_qname rows count queries, not packets)"
    );
    let mut rows: Vec<_> = s.by_rule.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0 .0.cmp(&b.0 .0)));
    for ((rule, trig), n) in rows {
        let name = rule.map_or("(no rule)".to_string(), |r| rs.rule(r).name.clone());
        let _ = writeln!(o, "  {:<28} {:<10} {:>8}", name, trig.as_str(), n);
    }
    let problems: Vec<_> = chokepoint_core::decode::Problem::ALL
        .iter()
        .filter(|p| c.problems[**p as usize] > 0)
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(o, "\nparse problems (packets still went to the policy)");
        for p in problems {
            let _ = writeln!(o, "  {:<28} {:>8}", p.as_str(), c.problems[*p as usize]);
        }
    }
    let caps = [
        ("reassembly byte cap hit", c.reassembly_cap_bytes),
        ("reassembly segment cap hit", c.reassembly_cap_segments),
        ("reassembly budget refused", c.reassembly_budget_refused),
        ("reassembly buffers evicted", s.reassembly_buffers_evicted),
        ("ClientHello too large", c.client_hello_too_large),
        ("inspection budget exhausted", c.inspection_budget_exhausted),
        ("QUIC Initials", c.quic_initials),
        ("QUIC decrypt failures", c.quic_decrypt_failures),
        ("DNS queries", c.dns_queries),
        ("residual blocks armed", c.residual_armed),
        ("residual blocks hit", c.residual_hits),
        ("residual blocks evicted", c.residual_evicted),
        ("residual blocks expired", c.residual_expired),
        ("TTL-limited fakes ignored", c.ttl_fakes_ignored),
        ("urgent bytes stripped", c.urgent_bytes_stripped),
        ("overlap conflicts", c.overlap_conflicts),
        ("bad checksums skipped", c.bad_checksums),
        ("servers learnt", c.learned),
        ("learnt without a store", c.learn_unstored),
        ("flows blocked by learnt", c.learned_hits),
        ("learnt entries evicted", s.learned.evicted),
        ("IP datagrams reassembled", s.fragments_reassembled),
        ("IP fragments timed out", s.defrag.timeouts),
        ("IP fragments evicted", s.defrag.evictions),
        ("IP fragments refused", s.defrag.refused),
        ("events dropped", c.events_dropped),
    ];
    let a = &s.actions;
    if a.forwarded + a.dropped > 0 {
        let _ = writeln!(o, "\nactions");
        for (label, n) in [
            ("frames forwarded", a.forwarded),
            ("frames dropped", a.dropped),
            ("TCP resets injected", a.injected_rst),
            ("DNS answers forged", a.injected_dns),
            ("HTTP redirects sent", a.injected_redirect),
            ("dropped by throttling", a.throttled),
            ("dropped by freeze", a.frozen),
            ("dropped by degrade", a.degraded),
            ("throttle buckets evicted", a.buckets_evicted),
            ("not answerable (tunnelled)", a.not_answerable),
        ] {
            let _ = writeln!(o, "  {label:<28} {n:>8}");
        }
    }
    let _ = writeln!(o, "\ninspection");
    for (label, n) in caps {
        let _ = writeln!(o, "  {label:<28} {n:>8}");
    }
    let classified: Vec<_> = chokepoint_rules::Protocol::ALL
        .iter()
        .filter(|p| c.protocols[p.index()] > 0)
        .collect();
    if !classified.is_empty() {
        let _ = writeln!(o, "\nflows classified (protocols some rule asks for)");
        for p in classified {
            let _ = writeln!(o, "  {:<28} {:>8}", p.as_str(), c.protocols[p.index()]);
        }
    }
    if !s.blocked_names.is_empty() {
        let _ = writeln!(o, "\ntop blocked names");
        let mut top: Vec<_> = s.blocked_names.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (name, n) in top.into_iter().take(10) {
            let _ = writeln!(o, "  {name:<40} {n:>8}");
        }
    }
    o
}
