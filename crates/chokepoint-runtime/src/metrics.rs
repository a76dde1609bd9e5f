//! Prometheus exposition of a running bridge.
//!
//! Workers never touch a shared counter: each publishes its own
//! [`WorkerStats`](crate::bridge::WorkerStats), and a scrape sums them into
//! a fresh `prometheus` registry and encodes it. Labels are rule names,
//! triggers, verdicts and reasons, never domains or addresses (cardinality
//! stays bounded by the policy).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chokepoint_core::decode::Problem;
use chokepoint_core::Verdict;
use prometheus::{
    Encoder, Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::bridge::Shared;

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

/// The text exposition of everything the bridge counts.
pub fn render(shared: &Shared) -> String {
    let reg = Registry::new();
    let rules = shared.rules.load();
    let packets = counter(
        &reg,
        "chokepoint_packets_total",
        "Frames received, by the side they came in on and the verdict.",
        &["direction", "verdict"],
    );
    let bytes = counter(
        &reg,
        "chokepoint_bytes_total",
        "Bytes received, by side and verdict.",
        &["direction", "verdict"],
    );
    let decisions = counter(
        &reg,
        "chokepoint_decisions_total",
        "Decisions (per flow, per DNS query), by rule, trigger and action.",
        &["rule", "trigger", "action"],
    );
    let problems = counter(
        &reg,
        "chokepoint_parse_problems_total",
        "Frames that did not parse fully (still sent to the policy), by reason.",
        &["reason"],
    );
    let caps = counter(
        &reg,
        "chokepoint_reassembly_cap_hits_total",
        "Reassembly refused data at a per-flow cap.",
        &["cap"],
    );
    let budget = counter(
        &reg,
        "chokepoint_reassembly_budget_total",
        "Reassembly under the shared memory budget: data refused, and stale buffers freed (their flows passed uninspected).",
        &["outcome"],
    );
    let held = IntGauge::new(
        "chokepoint_reassembly_bytes_held",
        "Bytes all flows' reassembly buffers hold.",
    )
    .expect("metric");
    reg.register(Box::new(held.clone())).expect("unique");
    let fragments = counter(
        &reg,
        "chokepoint_fragment_datagrams_total",
        "Fragmented IP datagrams, by outcome.",
        &["outcome"],
    );
    let injected = counter(
        &reg,
        "chokepoint_injected_packets_total",
        "Frames injected, by kind.",
        &["kind"],
    );
    let actions = counter(
        &reg,
        "chokepoint_action_frames_total",
        "Frames forwarded or dropped by the actions (throttling, freeze and degrade drops included, and also counted apart), or observed on a tap; throttle buckets forgotten at capacity.",
        &["outcome"],
    );
    let queue = counter(
        &reg,
        "chokepoint_worker_queue_drops_total",
        "Frames dropped because a worker's queue was full.",
        &["worker"],
    );
    let kpackets = counter(
        &reg,
        "chokepoint_kernel_packets_total",
        "Ring backend: frames the kernel offered each worker's socket (PACKET_STATISTICS tp_packets, drops included), by worker and side.",
        &["worker", "direction"],
    );
    let kdrops = counter(
        &reg,
        "chokepoint_kernel_drops_total",
        "Ring backend: frames the kernel dropped because a worker's ring was full (tp_drops), by worker and side.",
        &["worker", "direction"],
    );
    let kfreeze = counter(
        &reg,
        "chokepoint_kernel_freeze_queue_total",
        "Ring backend, TPACKET_V3: times a worker's ring froze full (tp_freeze_q_cnt), by worker and side.",
        &["worker", "direction"],
    );
    let truncated = counter(
        &reg,
        "chokepoint_ring_truncated_total",
        "Ring backend: frames longer than a ring slot (an MTU above the ring's, or GRO on), not forwarded, by worker.",
        &["worker"],
    );
    let flows_ev = counter(
        &reg,
        "chokepoint_flow_evictions_total",
        "Flows dropped from a full flow table.",
        &[],
    );
    let flows_ex = counter(
        &reg,
        "chokepoint_flow_expirations_total",
        "Flows expired after their idle timeout.",
        &[],
    );
    let residual = counter(
        &reg,
        "chokepoint_residual_total",
        "Residual blocks, by outcome: armed, hit (a new flow blocked), evicted (table full), expired.",
        &["outcome"],
    );
    let reading = counter(
        &reg,
        "chokepoint_stream_reading_total",
        "How the profile's reading knobs changed the stream: ttl_fake_ignored (segments), urgent_stripped (bytes), overlap_conflict (segments), bad_checksum (segments skipped).",
        &["event"],
    );
    let classified = counter(
        &reg,
        "chokepoint_protocol_flows_total",
        "Flows the protocol classifiers recognised, by protocol (only protocols some rule asks for are classified; TLS, QUIC, HTTP and DNS are counted as decisions).",
        &["protocol"],
    );
    let learned = counter(
        &reg,
        "chokepoint_learned_total",
        "Dynamic lists of learn actions, by outcome: learned (entries added), refreshed (learnt again), hit (a lookup found an active entry), blocked (flows an IP rule on a dynamic list decided), evicted (table full), expired, unstored (a learn with no table).",
        &["outcome"],
    );
    let learned_held = IntGauge::new(
        "chokepoint_learned_entries",
        "Entries the dynamic lists hold (all lists together; bounded by max_learned_entries).",
    )
    .expect("metric");
    reg.register(Box::new(learned_held.clone()))
        .expect("unique");
    let reloads = counter(
        &reg,
        "chokepoint_reloads_total",
        "Rule reloads, by result.",
        &["result"],
    );
    let fetches = counter(
        &reg,
        "chokepoint_artifact_fetches_total",
        "Polls of --artifact-url, by result: updated, not_modified, error (unreachable, HTTP error), refused (signature, hash, validation or rollback).",
        &["result"],
    );
    let sends = counter(
        &reg,
        "chokepoint_send_errors_total",
        "Frames the ports failed to send.",
        &[],
    );
    let flows = IntGauge::new("chokepoint_flows", "Flows in the flow tables.").expect("metric");
    reg.register(Box::new(flows.clone())).expect("unique");
    let info = IntGaugeVec::new(
        Opts::new(
            "chokepoint_artifact_info",
            "The ruleset in force (value 1).",
        ),
        &["format_version", "policy_blake3", "rules"],
    )
    .expect("metric");
    reg.register(Box::new(info.clone())).expect("unique");
    let load = Gauge::new(
        "chokepoint_artifact_load_seconds",
        "Time the ruleset in force took to load or compile.",
    )
    .expect("metric");
    reg.register(Box::new(load.clone())).expect("unique");
    let created = IntGauge::new(
        "chokepoint_artifact_created_timestamp_seconds",
        "Creation time of the ruleset in force.",
    )
    .expect("metric");
    reg.register(Box::new(created.clone())).expect("unique");
    let reload_ok = IntGauge::new(
        "chokepoint_last_reload_success",
        "Whether the last reload attempt took over (1) or was refused (0); 1 before any.",
    )
    .expect("metric");
    reg.register(Box::new(reload_ok.clone())).expect("unique");
    let reload_at = IntGauge::new(
        "chokepoint_last_reload_success_timestamp_seconds",
        "When rules last took over (a reload, or the start), unix seconds.",
    )
    .expect("metric");
    reg.register(Box::new(reload_at.clone())).expect("unique");

    let t = shared.totals();
    for (si, side) in ["inside", "outside"].iter().enumerate() {
        for v in Verdict::ALL {
            let n = t.packets[si][v as usize];
            if n > 0 {
                packets.with_label_values(&[side, v.as_str()]).inc_by(n);
                bytes
                    .with_label_values(&[side, v.as_str()])
                    .inc_by(t.bytes[si][v as usize]);
            }
        }
    }
    for p in Problem::ALL {
        let n = t.engine.problems[p as usize];
        if n > 0 {
            problems.with_label_values(&[p.as_str()]).inc_by(n);
        }
    }
    caps.with_label_values(&["bytes"])
        .inc_by(t.engine.reassembly_cap_bytes);
    caps.with_label_values(&["segments"])
        .inc_by(t.engine.reassembly_cap_segments);
    budget
        .with_label_values(&["refused"])
        .inc_by(t.engine.reassembly_budget_refused);
    budget
        .with_label_values(&["evicted"])
        .inc_by(t.reassembly_buffers_evicted);
    held.set(t.engine.reassembly_bytes_held as i64);
    for (outcome, n) in [
        ("reassembled", t.defrag.datagrams),
        ("timed_out", t.defrag.timeouts),
        ("evicted", t.defrag.evictions),
        ("refused", t.defrag.refused),
    ] {
        fragments.with_label_values(&[outcome]).inc_by(n);
    }
    for ((rule, trigger, verdict), n) in &t.decisions {
        let name = rule
            .and_then(|r| rules.meta.rules.get(r.index()))
            // The compiler refuses empty rule names, so "" cannot collide
            // with a rule (a rule may well be called `none`).
            .map_or("", |r| r.name.as_str());
        decisions
            .with_label_values(&[name, trigger, verdict])
            .inc_by(*n);
    }
    let a = &t.actions;
    injected.with_label_values(&["rst"]).inc_by(a.injected_rst);
    injected.with_label_values(&["dns"]).inc_by(a.injected_dns);
    injected
        .with_label_values(&["redirect"])
        .inc_by(a.injected_redirect);
    actions
        .with_label_values(&["forwarded"])
        .inc_by(a.forwarded);
    actions.with_label_values(&["dropped"]).inc_by(a.dropped);
    actions.with_label_values(&["observed"]).inc_by(a.observed);
    actions
        .with_label_values(&["throttled"])
        .inc_by(a.throttled);
    actions.with_label_values(&["frozen"]).inc_by(a.frozen);
    actions.with_label_values(&["degraded"]).inc_by(a.degraded);
    actions
        .with_label_values(&["throttle_buckets_evicted"])
        .inc_by(a.buckets_evicted);
    for (k, n) in t.queue_drops.iter().enumerate() {
        queue.with_label_values(&[&k.to_string()]).inc_by(*n);
    }
    for (k, w) in t.kernel.iter().enumerate() {
        let k = k.to_string();
        for (si, side) in ["inside", "outside"].iter().enumerate() {
            kpackets
                .with_label_values(&[k.as_str(), side])
                .inc_by(w.packets[si]);
            kdrops
                .with_label_values(&[k.as_str(), side])
                .inc_by(w.drops[si]);
            kfreeze
                .with_label_values(&[k.as_str(), side])
                .inc_by(w.freeze_q[si]);
        }
        truncated.with_label_values(&[&k]).inc_by(w.truncated);
    }
    flows_ev
        .with_label_values::<&str>(&[])
        .inc_by(t.flows_evicted);
    flows_ex
        .with_label_values::<&str>(&[])
        .inc_by(t.flows_expired);
    flows.set(t.flows as i64);
    for (outcome, n) in [
        ("armed", t.engine.residual_armed),
        ("hit", t.engine.residual_hits),
        ("evicted", t.engine.residual_evicted),
        ("expired", t.engine.residual_expired),
    ] {
        residual.with_label_values(&[outcome]).inc_by(n);
    }
    for (event, n) in [
        ("ttl_fake_ignored", t.engine.ttl_fakes_ignored),
        ("urgent_stripped", t.engine.urgent_bytes_stripped),
        ("overlap_conflict", t.engine.overlap_conflicts),
        ("bad_checksum", t.engine.bad_checksums),
    ] {
        reading.with_label_values(&[event]).inc_by(n);
    }
    for p in chokepoint_rules::Protocol::ALL {
        let n = t.engine.protocols[p.index()];
        if n > 0 {
            classified.with_label_values(&[p.as_str()]).inc_by(n);
        }
    }
    let l = &t.learned;
    for (outcome, n) in [
        ("learned", l.learned),
        ("refreshed", l.refreshed),
        ("hit", l.hits),
        ("blocked", t.engine.learned_hits),
        ("evicted", l.evicted),
        ("expired", l.expired),
        ("unstored", t.engine.learn_unstored),
    ] {
        learned.with_label_values(&[outcome]).inc_by(n);
    }
    learned_held.set(l.entries as i64);
    reloads.with_label_values(&["ok"]).inc_by(t.reloads_ok);
    reloads
        .with_label_values(&["failed"])
        .inc_by(t.reloads_failed);
    for r in crate::bridge::FetchResult::ALL {
        fetches
            .with_label_values(&[r.as_str()])
            .inc_by(shared.fetches[r as usize].load(Ordering::Relaxed));
    }
    sends.with_label_values::<&str>(&[]).inc_by(t.send_errors);
    info.with_label_values(&[
        &chokepoint_rules::artifact::FORMAT_VERSION.to_string(),
        &rules.meta.policy.blake3,
        &rules.meta.rules.len().to_string(),
    ])
    .set(1);
    load.set(*shared.load_seconds.lock().expect("stats"));
    created.set(rules.meta.created_unix as i64);
    reload_ok.set(i64::from(shared.last_reload_ok.load(Ordering::Relaxed)));
    reload_at.set(shared.last_reload_success_unix.load(Ordering::Relaxed) as i64);
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&reg.gather(), &mut out)
        .expect("encode");
    String::from_utf8(out).expect("utf-8")
}

/// Serve `/metrics` on `addr` until the bridge stops (in its own thread,
/// with a single-threaded tokio runtime: scrapes are rare and small).
pub fn serve(
    shared: Arc<Shared>,
    addr: SocketAddr,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr))?;
    Ok(std::thread::spawn(move || {
        rt.block_on(async move {
            let s = shared.clone();
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let s = s.clone();
                    async move { ([("content-type", "text/plain; version=0.0.4")], render(&s)) }
                }),
            );
            let stop = shared.stop.clone();
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                })
                .await;
        });
    }))
}
