//! A small `bench` run as a test: sharding keeps flows whole and every
//! packet is counted once. No timing is asserted.

use std::sync::Arc;

use chokepoint_runtime::bench;
use chokepoint_testkit::gen;

#[test]
fn sharded_workers_see_every_packet_and_whole_flows() {
    let spec = gen::Spec {
        flows: 300,
        data_packets: 4,
        ..Default::default()
    };
    let (frames, truth) = gen::generate(&spec);
    let frames: bench::Frames = frames
        .into_iter()
        .map(|(ts, f)| (chokepoint_core::LinkType::Ethernet, ts, f))
        .collect();
    let rules = Arc::new(chokepoint_rules::compile_default().unwrap());
    // Frame by frame and in bursts (`bench --burst`): the same work.
    for feed in [bench::Feed::OneByOne, bench::Feed::Batch] {
        let r = bench::report(&rules, &frames, 3, 2, true, feed);
        assert_eq!(r.runs.len(), 3);
        for run in &r.runs {
            assert_eq!(
                run.packets as usize,
                frames.len() * 2,
                "{} workers, {feed:?}",
                run.workers
            );
            // Both directions of a flow reach the same worker, so each flow is
            // created exactly once across workers (in the first pass).
            let created: u64 = run.per_worker.iter().map(|w| w.flows_created).sum();
            assert_eq!(created as usize, truth.len(), "{} workers", run.workers);
            assert!(
                run.per_worker.iter().all(|w| w.packets > 0),
                "every worker gets work"
            );
        }
        assert!(r.scaling_efficiency.is_some());
        let text = bench::report_text(&r);
        assert!(text.contains("scaling"), "{text}");
    }
    // flow-table stress: capacity holds, evictions counted
    let syn = gen::syn_flows(5000);
    let small = Arc::new(
        chokepoint_rules::compile_str(
            "version: 1\nprofile: {max_flows: 1000}\n",
            "p.yaml",
            std::path::Path::new("."),
        )
        .unwrap(),
    );
    let r = bench::report(&small, &syn, 1, 1, false, bench::Feed::OneByOne);
    let w = &r.runs[0].per_worker[0];
    assert_eq!(
        (w.flows_created, w.flows_held, w.flows_evicted),
        (5000, 1000, 4000)
    );
}
