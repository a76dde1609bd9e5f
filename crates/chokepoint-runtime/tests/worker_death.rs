//! A worker's life in the bridge. A worker that dies ends the bridge with
//! an error; it never half-runs. A worker with nothing to do frees the
//! flows idle past their timeout.
//!
//! The outside port here panics on its first send, which kills the worker
//! forwarding a frame to it. The bridge must then stop every thread and
//! return an error naming the worker, within a bounded time, instead of
//! going on with one worker's share of the flows unserved.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chokepoint_rules::compile_str;
use chokepoint_runtime::bridge::{self, Shared};
use chokepoint_runtime::port::Port;
use chokepoint_testkit::synth;

/// An in-memory link: frames queued for `recv`, frames sent counted.
struct MemPort {
    name: &'static str,
    rx: Mutex<VecDeque<Vec<u8>>>,
    sent: Mutex<usize>,
    panic_on_send: bool,
}

impl MemPort {
    fn new(name: &'static str, frames: Vec<Vec<u8>>, panic_on_send: bool) -> MemPort {
        MemPort {
            name,
            rx: Mutex::new(frames.into()),
            sent: Mutex::new(0),
            panic_on_send,
        }
    }
}

impl Port for MemPort {
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let next = self.rx.lock().unwrap().pop_front();
        match next {
            Some(f) => {
                buf[..f.len()].copy_from_slice(&f);
                Ok(Some(f.len()))
            }
            None => {
                // A real port's read timeout.
                std::thread::sleep(Duration::from_millis(10));
                Ok(None)
            }
        }
    }

    fn send(&self, _frame: &[u8]) -> io::Result<()> {
        assert!(!self.panic_on_send, "injected fault: send on {}", self.name);
        *self.sent.lock().unwrap() += 1;
        Ok(())
    }

    fn name(&self) -> &str {
        self.name
    }
}

fn udp_frames(n: u8) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let src = format!("198.18.0.{}", 10 + i).parse().unwrap();
            let dst = "198.18.1.1".parse().unwrap();
            let udp = synth::udp_datagram(src, dst, 40000, 9, b"hello");
            synth::ethernet(&synth::ip_packet(src, dst, 17, &udp), &[])
        })
        .collect()
}

/// A two-worker bridge between the two ports, run on a thread of its own.
fn spawn_bridge(
    shared: &Arc<Shared>,
    inside: Arc<dyn Port>,
    outside: Arc<dyn Port>,
) -> std::thread::JoinHandle<std::io::Result<()>> {
    let sh = shared.clone();
    std::thread::spawn(move || {
        let cfg = bridge::Config {
            workers: 2,
            forward: true,
            events: None,
            events_format: Default::default(),
            queue: 64,
        };
        bridge::run(sh, inside, Some(outside), cfg)
    })
}

/// Two workers' shared state under a policy with no rules.
fn shared_state() -> Arc<Shared> {
    shared_state_with("")
}

/// The same, with `extra` appended to the policy.
fn shared_state_with(extra: &str) -> Arc<Shared> {
    let rules = compile_str(
        &format!("version: 1\nrules: []\n{extra}"),
        "t.yaml",
        std::path::Path::new("."),
    )
    .unwrap();
    Arc::new(Shared::new(rules, 2, 0.0))
}

#[test]
fn a_dead_worker_stops_the_bridge_with_an_error() {
    let shared = shared_state();
    let inside: Arc<dyn Port> = Arc::new(MemPort::new("inside", udp_frames(8), false));
    let outside: Arc<dyn Port> = Arc::new(MemPort::new("outside", Vec::new(), true));
    let (done_tx, done_rx) = mpsc::channel();
    let bridge = spawn_bridge(&shared, inside, outside);
    std::thread::spawn(move || {
        let _ = done_tx.send(bridge.join().unwrap());
    });
    let res = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the bridge kept running after a worker died");
    let err = res.expect_err("a dead worker must end the bridge with an error");
    let msg = err.to_string();
    assert!(
        msg.contains("worker") && msg.contains("injected fault"),
        "{msg}"
    );
    assert!(shared.worker_failures.load(Ordering::Relaxed) >= 1);
    assert!(shared.stop.load(Ordering::Relaxed));
}

#[test]
fn a_healthy_bridge_forwards_and_stops_cleanly() {
    let shared = shared_state();
    let out = Arc::new(MemPort::new("outside", Vec::new(), false));
    let inside: Arc<dyn Port> = Arc::new(MemPort::new("inside", udp_frames(8), false));
    let outside: Arc<dyn Port> = out.clone();
    let t = spawn_bridge(&shared, inside, outside);
    for _ in 0..200 {
        if *out.sent.lock().unwrap() == 8 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    shared.stop.store(true, Ordering::Relaxed);
    t.join().unwrap().expect("a clean stop is not an error");
    assert_eq!(*out.sent.lock().unwrap(), 8);
    assert_eq!(shared.worker_failures.load(Ordering::Relaxed), 0);
}

#[test]
fn an_idle_worker_expires_its_flows() {
    // No packet comes after the eight, so no lookup or per-packet sweep
    // ever meets these flows again: only the idle tick can free them.
    let shared = shared_state_with("profile: {timeouts: {udp: 1}}\n");
    let inside: Arc<dyn Port> = Arc::new(MemPort::new("inside", udp_frames(8), false));
    let outside: Arc<dyn Port> = Arc::new(MemPort::new("outside", Vec::new(), false));
    let t = spawn_bridge(&shared, inside, outside);
    // Not a timing test: the flows must go, and are given ample time to.
    let mut totals = shared.totals();
    for _ in 0..2000 {
        totals = shared.totals();
        if totals.flows_expired == 8 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    shared.stop.store(true, Ordering::Relaxed);
    t.join().unwrap().expect("a clean stop is not an error");
    assert_eq!((totals.flows_expired, totals.flows), (8, 0), "{totals:?}");
}
