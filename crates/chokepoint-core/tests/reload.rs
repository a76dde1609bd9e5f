//! Reloads: the new profile applies, and re-evaluation never unblocks a
//! flow it cannot judge.

mod common;

use chokepoint_core::{Engine, Verdict};
use chokepoint_testkit::synth::{self, HelloShape};
use common::*;

fn hello(name: &str) -> Vec<u8> {
    synth::tls_records(
        &synth::client_hello(Some(name), HelloShape::default(), 1),
        16384,
    )
}

#[test]
fn reload_keeps_decisions_unless_the_profile_asks_to_reevaluate() {
    let hello = synth::tls_records(
        &synth::client_hello(Some("t.me"), HelloShape::default(), 1),
        16384,
    );
    for reevaluate in [false, true] {
        let profile = format!("profile: {{reevaluate_on_reload: {reevaluate}}}\n");
        let blocking = format!("version: 1\nlists: {{d: {{format: domains, entries: [t.me]}}}}\nrules: [{{name: r, match: {{list: d}}, action: reset}}]\n{profile}");
        let open = format!("version: 1\n{profile}");
        let comp = compile;
        let mut e = Engine::new(comp(&blocking));
        assert_eq!(
            run(&mut e, 0, &tcp(C, S, 42000, 443, 2, 0x18, &hello)).0,
            Verdict::Reset
        );
        e.set_rules(comp(&open));
        let later = run(
            &mut e,
            1,
            &tcp(C, S, 42000, 443, 2 + hello.len() as u32, 0x10, b""),
        )
        .0;
        if reevaluate {
            assert_eq!(
                later,
                Verdict::Pass,
                "re-evaluated under rules that no longer block t.me"
            );
            // and back: the name kept with the flow blocks it again
            e.set_rules(comp(&blocking));
            assert_eq!(
                run(&mut e, 2, &tcp(S, C, 443, 42000, 9, 0x10, b"")).0,
                Verdict::Reset
            );
        } else {
            assert_eq!(later, Verdict::Reset, "decided flows keep their decision");
        }
    }
}

const BLOCK_T_ME: &str = "version: 1\nlists: {d: {format: domains, entries: [t.me]}}\nrules: [{name: r, match: {list: d}, action: reset}]\n";

#[test]
fn turning_reevaluation_on_does_not_unblock_flows_decided_on_a_name() {
    let mut e = Engine::new(compile(BLOCK_T_ME));
    let h = hello("t.me");
    assert_eq!(
        run(&mut e, 0, &tcp(C, S, 42100, 443, 2, 0x18, &h)).0,
        Verdict::Reset
    );
    // Same rules, the knob now on: the flow's name was never kept, so its
    // addresses alone must not decide it again (they match nothing).
    e.set_rules(compile(&format!(
        "{BLOCK_T_ME}profile: {{reevaluate_on_reload: true}}\n"
    )));
    let later = run(
        &mut e,
        SEC,
        &tcp(C, S, 42100, 443, 2 + h.len() as u32, 0x10, b""),
    );
    assert_eq!(later.0, Verdict::Reset);
    assert_eq!(e.counters.reevaluate_name_unknown, 1);
}

#[test]
fn a_reload_applies_the_new_inspection_profile() {
    let mut e = Engine::new(compile(BLOCK_T_ME));
    let h = hello("t.me");
    assert_eq!(
        run(&mut e, 0, &tcp(C, S, 42200, 443, 2, 0x18, &h)).0,
        Verdict::Reset
    );
    // Only port 8443 inspected from now on: a new flow to 443 passes.
    e.set_rules(compile(&format!(
        "{BLOCK_T_ME}profile: {{inspect_ports: [8443], timeouts: {{udp: 1}}}}\n"
    )));
    assert_eq!(e.profile().inspect_ports, vec![8443]);
    assert_eq!(
        run(&mut e, 1, &tcp(C, S, 42201, 443, 2, 0x18, &h)).0,
        Verdict::Pass
    );
    assert_eq!(
        run(&mut e, 2, &tcp(C, S, 42202, 8443, 2, 0x18, &h)).0,
        Verdict::Reset
    );
    // The new UDP timeout (1 s) expires a UDP flow the old one (60 s) kept.
    run(&mut e, 3, &udp(C, S, 5000, 9999, b"x"));
    let before = e.flows().stats.expired;
    e.expire(3 + 2 * SEC);
    assert_eq!(e.flows().stats.expired - before, 1);
}

#[test]
fn a_reload_with_a_smaller_flow_table_shrinks_it() {
    let mut e = Engine::new(compile("version: 1\n"));
    for p in 0..20u16 {
        run(&mut e, u64::from(p), &udp(C, S, 6000 + p, 9999, b"x"));
    }
    assert_eq!(e.flows().len(), 20);
    e.set_rules(compile("version: 1\nprofile: {max_flows: 5}\n"));
    // At most 8 evictions per new flow: a cut from a million flows to a
    // thousand must not stall one packet. 20 → 12 + 1 → 5 + 1 → 4 + 1.
    run(&mut e, 100, &udp(C, S, 7000, 9999, b"x"));
    assert_eq!(e.flows().len(), 13);
    run(&mut e, 101, &udp(C, S, 7001, 9999, b"x"));
    assert_eq!(e.flows().len(), 6);
    run(&mut e, 102, &udp(C, S, 7002, 9999, b"x"));
    assert_eq!(e.flows().len(), 5);
    assert_eq!(e.flows().capacity(), 5);
}

#[test]
fn a_held_match_does_not_outlive_its_policy() {
    let mut e = Engine::new(compile(
        "version: 1\nlists: {w: {format: cidr, entries: [198.19.1.0/24]}, d: {format: domains, entries: [t.me]}}\nrules: [{name: r, match: {list: d}, action: reset}, {name: w, match: {list: w, on: [ip]}, action: log}]\n",
    ));
    assert_eq!(
        run(&mut e, 0, &tcp(C, "198.19.1.5", 42300, 443, 1, 0x02, b"")).0,
        Verdict::Log
    );
    // The new policy has no rule 1: the held `log` match must not be
    // looked up in it.
    e.set_rules(compile("version: 1\n"));
    assert_eq!(
        run(&mut e, 1, &tcp(C, "198.19.1.5", 42300, 443, 2, 0x10, b"")).0,
        Verdict::Pass
    );
}
