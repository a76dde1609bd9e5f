//! The reassembly memory budget, shared by all flows: a flood of flows
//! each holding one out-of-window segment fills it, and the engine frees
//! the stalest holders so that a later, real ClientHello split over two
//! segments is still read and blocked.

mod common;

use chokepoint_core::{Engine, Share, Verdict};
use chokepoint_testkit::synth::{self, HelloShape};
use common::*;

const MIB: u64 = 1024 * 1024;

/// A SYN, then one 700-byte segment 32 KB into the window.
fn flood_flow(e: &mut chokepoint_core::Engine, i: u32, t: u64) {
    let c = format!("198.18.{}.{}", 2 + (i >> 8) % 200, i & 0xff);
    let port = 10_000 + (i % 50_000) as u16;
    run(e, t, &tcp(&c, S, port, 443, 1000, 0x02, b""));
    run(
        e,
        t,
        &tcp(&c, S, port, 443, 1001 + 32_000, 0x18, &[0x16; 700]),
    );
}

#[test]
fn a_flood_cannot_make_later_flows_pass_uninspected() {
    let mut e = engine_with("profile: {reassembly_memory_budget: 1048576}\n");
    for i in 0..4000 {
        flood_flow(&mut e, i, SEC + u64::from(i));
    }
    let held = e.counters.reassembly_bytes_held;
    assert!(held <= MIB, "held {held} bytes, over the 1 MiB budget");
    assert!(
        e.flows().stats.buffers_evicted > 0,
        "the flood must have pushed stale holders out"
    );
    // A real client now: its ClientHello arrives second segment first, so
    // it has to be held in a buffer before it can be read.
    let hello = synth::tls_records(
        &synth::client_hello(Some("t.me"), HelloShape::default(), 1),
        16384,
    );
    let (cut, t) = (hello.len() / 2, 2 * SEC);
    run(&mut e, t, &tcp(C, S, 40_000, 443, 5000, 0x02, b""));
    let (v, _) = run(
        &mut e,
        t,
        &tcp(C, S, 40_000, 443, 5001 + cut as u32, 0x18, &hello[cut..]),
    );
    assert_eq!(v, Verdict::Pass, "half a hello decides nothing");
    let (v, ev) = run(
        &mut e,
        t,
        &tcp(C, S, 40_000, 443, 5001, 0x18, &hello[..cut]),
    );
    assert_eq!(v, Verdict::Reset, "events {ev:?}");
    assert_eq!(ev[0].1, "t.me");
}

#[test]
fn memory_held_follows_bytes_not_offsets() {
    // Without a tight budget: 2,000 flows each holding 700 bytes far into
    // the window hold about 700 bytes each, not the 32 KB offset.
    let mut e = engine();
    for i in 0..2000 {
        flood_flow(&mut e, i, SEC);
    }
    let per_flow = e.counters.reassembly_bytes_held / 2000;
    assert!(per_flow < 2048, "{per_flow} bytes held per flow");
    assert_eq!(e.counters.reassembly_budget_refused, 0);
}

fn policy_with(extra: &str) -> std::sync::Arc<chokepoint_rules::Ruleset> {
    compile(&format!("{POLICY}{extra}"))
}

fn budget_of(rules: &std::sync::Arc<chokepoint_rules::Ruleset>, share: Share) -> u64 {
    Engine::sharing(rules.clone(), share)
        .counters
        .reassembly_budget_bytes
}

#[test]
fn the_budget_is_the_boxs_split_over_its_workers() {
    let set = policy_with("profile: {reassembly_memory_budget: 8388608}\n");
    for workers in [1, 2, 4] {
        let share = Share {
            workers,
            memory: Some(64 << 30),
        };
        assert_eq!(budget_of(&set, share), 8 * MIB / workers as u64);
    }
    // Two workers of one box: a flood that one worker takes alone is
    // refused at its half, so the box never holds more than the budget.
    let mut e = Engine::sharing(
        policy_with("profile: {reassembly_memory_budget: 1048576}\n"),
        Share {
            workers: 2,
            memory: None,
        },
    );
    for i in 0..4000 {
        flood_flow(&mut e, i, SEC + u64::from(i));
    }
    let held = e.counters.reassembly_bytes_held;
    assert!(held <= MIB / 2, "one of two workers held {held} bytes");
    assert!(e.flows().stats.buffers_evicted > 0);
}

#[test]
fn auto_is_a_sixteenth_of_the_machine_within_bounds() {
    let auto = policy_with("profile: {reassembly_memory_budget: auto}\n");
    let default = policy_with("");
    let on = |memory, workers| Share {
        workers,
        memory: Some(memory),
    };
    // The default is auto.
    assert_eq!(budget_of(&default, on(16 << 30, 1)), MIB << 10);
    assert_eq!(budget_of(&auto, on(16 << 30, 1)), MIB << 10);
    assert_eq!(budget_of(&auto, on(16 << 30, 4)), 256 * MIB);
    // At least 64 MiB, at most 4 GiB, for the box.
    assert_eq!(budget_of(&auto, on(512 << 20, 2)), 32 * MIB);
    assert_eq!(budget_of(&auto, on(1 << 40, 1)), 4096 * MIB);
    // A machine not known (an engine without a runtime): 256 MiB.
    assert_eq!(budget_of(&auto, Share::ALONE), 256 * MIB);
    assert_eq!(
        Engine::new(auto).counters.reassembly_budget_bytes,
        256 * MIB
    );
}

#[test]
fn a_reload_resizes_the_budget() {
    let mut e = Engine::sharing(
        policy_with(""),
        Share {
            workers: 2,
            memory: Some(32 << 30),
        },
    );
    assert_eq!(e.counters.reassembly_budget_bytes, 1024 * MIB);
    e.set_rules(policy_with(
        "profile: {reassembly_memory_budget: 4194304}\n",
    ));
    assert_eq!(e.counters.reassembly_budget_bytes, 2 * MIB);
}
