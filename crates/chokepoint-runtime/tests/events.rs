//! The live bridge's events writer: lines from several workers arrive
//! whole and in each worker's order; SIGUSR1's reopen after a rename
//! writes to the new file; a full queue drops and counts.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chokepoint_rules::outfile::{AppendLog, Inputs};
use chokepoint_runtime::events::{self, EventCounters};

/// A fresh directory, the events file in it opened as `run` opens it, and
/// the writer's counters.
fn setup(tag: &str) -> (PathBuf, PathBuf, AppendLog, Arc<EventCounters>) {
    let dir = std::env::temp_dir().join(format!("cp-events-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.jsonl");
    let log = AppendLog::open(&path, &Inputs::new()).unwrap();
    (dir, path, log, Arc::default())
}

/// Wait (at most 10 s) until `cond` holds.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn lines_of_several_workers_arrive_whole_and_in_order() {
    let (dir, path, log, counters) = setup("order");
    const WORKERS: usize = 4;
    const EACH: usize = 10_000;
    // Queues as the bridge has them, large enough for every line: none
    // may be lost.
    let (senders, writer) = events::channel(
        Box::new(log),
        WORKERS,
        events::QUEUE_LINES,
        counters.clone(),
    );
    let writer = std::thread::spawn(move || writer.run());
    // Lines longer than a pipe's atomic write: 600 bytes of padding.
    let pad = "x".repeat(600);
    let workers: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(k, tx)| {
            let pad = pad.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    tx.send(format!("{{\"worker\":{k},\"i\":{i},\"pad\":\"{pad}\"}}\n"));
                    if i % 1000 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    writer.join().unwrap();
    let got = lines(&path);
    let c = counters.load();
    assert_eq!(got.len(), WORKERS * EACH, "{c:?}");
    assert_eq!(c.written as usize, got.len());
    assert_eq!((c.dropped_full, c.dropped_write, c.write_errors), (0, 0, 0));
    let mut last = [None::<u64>; WORKERS];
    for l in &got {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert_eq!(v["pad"].as_str(), Some(pad.as_str()), "a torn line: {l}");
        let k = v["worker"].as_u64().unwrap() as usize;
        let i = v["i"].as_u64().unwrap();
        assert!(
            last[k].is_none_or(|p| p < i),
            "worker {k}: {i} after {last:?}"
        );
        last[k] = Some(i);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reopen_after_rename_writes_to_the_new_file() {
    let (dir, path, log, counters) = setup("reopen");
    let rotated = dir.join("events.jsonl.1");
    let reopen = log.reopen_flag();
    let (senders, writer) = events::channel(Box::new(log), 1, 64, counters.clone());
    let writer = std::thread::spawn(move || writer.flush_every(Duration::from_millis(20)).run());
    let wait_for = |p: &Path, n: usize| {
        let t = Instant::now();
        while std::fs::read_to_string(p).map_or(0, |s| s.lines().count()) < n {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{} never had {n} lines",
                p.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    senders[0].send("before\n".into());
    wait_for(&path, 1);
    // logrotate: rename, then SIGUSR1 (whose handler sets the flag). No
    // event comes after: the writer's timer alone moves it to the new file.
    std::fs::rename(&path, &rotated).unwrap();
    reopen.store(true, Ordering::Relaxed);
    wait_until("no new file", || path.exists());
    senders[0].send("after\n".into());
    drop(senders);
    writer.join().unwrap();
    assert_eq!(lines(&rotated), ["before"]);
    assert_eq!(lines(&path), ["after"]);
    assert_eq!(counters.load().written, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_queue_drops_and_counts_rather_than_wait() {
    let (dir, path, log, counters) = setup("full");
    let (senders, writer) = events::channel(Box::new(log), 2, 8, counters.clone());
    // The writer has not started: each queue holds 8, the rest drop, and
    // no send waits.
    let t = Instant::now();
    for i in 0..100 {
        senders[i % 2].send(format!("{i}\n"));
    }
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(counters.load().dropped_full, 100 - 16);
    drop(senders);
    writer.run();
    assert_eq!(lines(&path).len(), 16);
    assert_eq!(counters.load().written, 16);
    let _ = std::fs::remove_dir_all(&dir);
}
