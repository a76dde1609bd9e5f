//! The ring backend against the real kernel, in a network namespace of
//! its own (`cprate-fan-PID`, two veth pairs, no addresses): two workers'
//! rings on two interfaces, frames of several host pairs sent in both
//! directions (each direction arriving on its own interface), IPv4
//! fragments, IPv6, VLAN and QinQ tags. Every frame must reach the worker
//! `decode::worker_for` names (the kernel ran the fanout program), whole
//! and unchanged (a tag the kernel took off is put back). And a ring
//! worker that dies stops the whole bridge with an error. Needs root; skips
//! without it.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use chokepoint_core::decode::worker_for;
use chokepoint_core::LinkType;
use chokepoint_runtime::port::{AfPacket, Port};
use chokepoint_runtime::ring::{Options, RingSet, Version};
use chokepoint_testkit::synth;

const WORKERS: usize = 2;

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: the namespace test needs root");
            return None;
        }
        let ns = Netns(format!("cprate-{tag}-{}", std::process::id()));
        let ip = |args: &[&str]| {
            let ok = Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ip {args:?}");
        };
        ip(&["netns", "add", &ns.0]);
        for (a, b) in [("a0", "a1"), ("b0", "b1")] {
            ip(&[
                "-n", &ns.0, "link", "add", a, "type", "veth", "peer", "name", b,
            ]);
        }
        for l in ["lo", "a0", "a1", "b0", "b1"] {
            ip(&["-n", &ns.0, "link", "set", l, "up"]);
        }
        Some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An Ethernet frame carrying `packet`, numbered `n` in its source MAC,
/// with VLAN tags `tags` (TPID, VLAN ID) outermost first.
fn frame(n: u16, packet: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0xc9, 0, 0];
    f.extend_from_slice(&n.to_be_bytes());
    for (tpid, id) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(
        &(if packet[0] >> 4 == 6 {
            0x86ddu16
        } else {
            0x0800
        })
        .to_be_bytes(),
    );
    f.extend_from_slice(packet);
    f
}

/// (frame, sent into `a0` (true: arrives on a1, inside) or `b0`).
fn traffic() -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut n = 0u16;
    let mut push = |p: &[u8], tags: &[(u16, u16)], inside: bool| {
        out.push((frame(n, p, tags), inside));
        n += 1;
    };
    for i in 0..12u8 {
        let (c, s) = if i % 3 == 2 {
            (
                ip(&format!("fd00:198:18::{}", 10 + i)),
                ip("fd00:198:18::2"),
            )
        } else {
            (
                ip(&format!("198.18.24.{}", 10 + i)),
                ip(&format!("198.18.25.{}", 20 + i % 4)),
            )
        };
        let tags: &[(u16, u16)] = match i % 4 {
            1 => &[(0x8100, 100)],
            3 => &[(0x88a8, 10), (0x8100, 20)],
            _ => &[],
        };
        let seg = |from_c: bool, flags: u8, payload: &[u8]| {
            let (a, b, sp, dp) = if from_c {
                (c, s, 40000, 443)
            } else {
                (s, c, 443, 40000)
            };
            synth::ip_packet(
                a,
                b,
                6,
                &synth::tcp_segment(a, b, sp, dp, 1, 1, flags, payload),
            )
        };
        push(&seg(true, 0x02, b""), tags, true);
        push(&seg(false, 0x12, b""), tags, false);
        push(&seg(true, 0x10, b""), tags, true);
        if c.is_ipv4() {
            // a ClientHello-sized segment in fragments, and the answer
            for f in synth::ipv4_fragments(&seg(true, 0x18, &[0x16; 700]), 256) {
                push(&f, tags, true);
            }
        }
        push(&seg(false, 0x18, &[0x17; 300]), tags, false);
    }
    out
}

/// Move this thread into namespace `name`.
fn enter(name: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    // SAFETY: a namespace file descriptor, for this thread only.
    assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
}

#[test]
fn kernel_fanout_puts_each_flow_with_its_worker_on_both_interfaces() {
    fanout_on_both_interfaces(Version::V2, "fan2");
}

/// The same with `TPACKET_V3` block rings (`--capture ring-v3`), whose
/// frames the kernel hands over a block at a time and whose statistics
/// carry the freeze-queue count.
#[test]
fn v3_block_rings_fan_out_the_same() {
    fanout_on_both_interfaces(Version::V3, "fan3");
}

fn fanout_on_both_interfaces(version: Version, tag: &str) {
    let Some(ns) = Netns::new(tag) else { return };
    let name = ns.0.clone();
    // setns changes only the calling thread's namespace: do everything in
    // a thread of its own.
    let got = std::thread::spawn(move || {
        enter(&name);
        let opts = Options {
            version,
            frames: 256,
            ..Options::default()
        };
        let mut set = RingSet::open("a1", Some("b1"), WORKERS, &opts).expect("rings");
        let a0 = AfPacket::open("a0", Duration::from_millis(10)).unwrap();
        let b0 = AfPacket::open("b0", Duration::from_millis(10)).unwrap();
        let traffic = traffic();
        for (f, inside) in &traffic {
            if *inside { &a0 } else { &b0 }.send(f).unwrap();
        }
        // (worker, inside?, frame) of every numbered frame received
        let mut got: Vec<(usize, bool, Vec<u8>)> = Vec::new();
        let until = Instant::now() + Duration::from_secs(5);
        while got.len() < traffic.len() && Instant::now() < until {
            for (k, w) in set.workers.iter_mut().enumerate() {
                for (inside, sock) in [(true, &mut w.inside), (false, w.outside.as_mut().unwrap())]
                {
                    let b = sock.rx.batch(64);
                    for fr in b.frames() {
                        if fr.data.get(6..8) == Some(&[0x02, 0xc9]) {
                            assert!(!fr.truncated);
                            got.push((k, inside, fr.data.to_vec()));
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let stats: Vec<_> = set
            .workers
            .iter()
            .map(|w| {
                (
                    w.inside.stats().unwrap(),
                    w.outside.as_ref().unwrap().stats().unwrap(),
                )
            })
            .collect();
        (traffic, got, stats)
    })
    .join()
    .unwrap();
    let (traffic, got, stats) = got;
    assert_eq!(got.len(), traffic.len(), "every frame received once");
    let mut per_worker = [0usize; WORKERS];
    for (k, inside, data) in &got {
        let n = usize::from(u16::from_be_bytes([data[10], data[11]]));
        let (sent, sent_inside) = &traffic[n];
        assert_eq!(inside, sent_inside, "frame {n} on the wrong interface");
        assert_eq!(data, sent, "frame {n} arrived changed (VLAN tag put back?)");
        assert_eq!(
            *k,
            worker_for(LinkType::Ethernet, sent, WORKERS),
            "frame {n} placed on the wrong worker"
        );
        per_worker[*k] += 1;
    }
    assert!(
        per_worker.iter().all(|&c| c > 0),
        "both workers used: {per_worker:?}"
    );
    let offered: u64 = stats.iter().map(|(i, o)| i.packets + o.packets).sum();
    let drops: u64 = stats.iter().map(|(i, o)| i.drops + o.drops).sum();
    assert!(offered >= traffic.len() as u64, "{stats:?}");
    assert_eq!(drops, 0, "{stats:?}");
    // Nothing was dropped, so no block was frozen for lack of room.
    let frozen: u64 = stats.iter().map(|(i, o)| i.freeze_q + o.freeze_q).sum();
    assert_eq!(frozen, 0, "{stats:?}");
}

/// An events file whose write kills the thread writing it (the events
/// writer, which a dead thread of the bridge's takes down with it).
struct Boom;

impl std::io::Write for Boom {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        panic!("injected fault: events write")
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A ring bridge between a1 and b1 of the current namespace, under
/// `policy`, writing events to `events`, on a thread of its own.
fn ring_bridge(
    policy: &str,
    events: Option<Box<dyn std::io::Write + Send>>,
) -> (
    std::sync::Arc<chokepoint_runtime::bridge::Shared>,
    std::thread::JoinHandle<std::io::Result<()>>,
) {
    use chokepoint_runtime::bridge::{self, Shared};
    let rules = chokepoint_rules::compile_str(policy, "t.yaml", std::path::Path::new(".")).unwrap();
    let shared = std::sync::Arc::new(Shared::new(rules, WORKERS, 0.0));
    let set = RingSet::open("a1", Some("b1"), WORKERS, &Options::default()).unwrap();
    let sh = shared.clone();
    let bridge = std::thread::spawn(move || {
        let cfg = bridge::Config {
            workers: WORKERS,
            forward: true,
            events,
            events_format: Default::default(),
            queue: 64,
        };
        bridge::run_rings(sh, set, cfg)
    });
    (shared, bridge)
}

#[test]
fn a_dead_ring_bridge_thread_stops_the_bridge_with_an_error() {
    let Some(ns) = Netns::new("death") else {
        return;
    };
    let name = ns.0.clone();
    let res = std::thread::spawn(move || {
        enter(&name);
        let (shared, bridge) = ring_bridge(
            "version: 1\nlists: {l: {format: cidr, entries: [198.18.24.0/22]}}\n\
             rules: [{name: blocked, match: {list: l}, action: drop}]\n",
            Some(Box::new(Boom)),
        );
        let a0 = AfPacket::open("a0", Duration::from_millis(10)).unwrap();
        // A blocked flow: its worker queues an event; the writer writes it, and dies.
        let (c, s) = (ip("198.18.24.10"), ip("198.18.25.20"));
        let syn = synth::ip_packet(
            c,
            s,
            6,
            &synth::tcp_segment(c, s, 40000, 443, 1, 0, 0x02, b""),
        );
        a0.send(&frame(0, &syn, &[])).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while !bridge.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !bridge.is_finished() {
            shared
                .stop
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let t = shared.totals();
            panic!(
                "the bridge went on with a dead thread: packets {:?}, decisions {:?}, kernel {:?}",
                t.packets, t.decisions, t.kernel
            );
        }
        (
            bridge.join().unwrap(),
            shared
                .worker_failures
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    })
    .join()
    .unwrap();
    let (res, failures) = res;
    let err = res.expect_err("a dead thread is an error");
    assert!(
        err.to_string().contains("events writer") && err.to_string().contains("injected fault"),
        "{err}"
    );
    assert_eq!(failures, 1);
}

#[test]
fn an_idle_ring_worker_expires_its_flows() {
    use std::sync::atomic::Ordering;
    let Some(ns) = Netns::new("idle") else {
        return;
    };
    let name = ns.0.clone();
    let totals = std::thread::spawn(move || {
        enter(&name);
        let (shared, bridge) = ring_bridge(
            "version: 1\nrules: []\nprofile: {timeouts: {udp: 1}}\n",
            None,
        );
        // Eight UDP flows, then silence: no later packet meets them, so
        // only the workers' idle ticks can free them.
        let a0 = AfPacket::open("a0", Duration::from_millis(10)).unwrap();
        for i in 0..8u8 {
            let (c, s) = (ip(&format!("198.18.26.{}", 10 + i)), ip("198.18.27.20"));
            let udp = synth::udp_datagram(c, s, 40000, 53, b"not dns, just bytes");
            a0.send(&frame(u16::from(i), &synth::ip_packet(c, s, 17, &udp), &[]))
                .unwrap();
        }
        // Not a timing test: the flows must go, and are given ample time.
        let until = Instant::now() + Duration::from_secs(20);
        let mut t = shared.totals();
        // (The new links' own IPv6 chatter makes a few flows more.)
        while Instant::now() < until
            && !(t.flows_created >= 8 && t.flows_expired == t.flows_created)
        {
            std::thread::sleep(Duration::from_millis(50));
            t = shared.totals();
        }
        shared.stop.store(true, Ordering::Relaxed);
        bridge.join().unwrap().expect("a clean stop");
        t
    })
    .join()
    .unwrap();
    assert!(totals.flows_created >= 8, "{totals:?}");
    assert_eq!(
        (totals.flows_expired, totals.flows),
        (totals.flows_created, 0),
        "every flow freed by the idle ticks: {totals:?}"
    );
}
