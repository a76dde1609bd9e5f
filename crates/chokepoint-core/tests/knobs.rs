//! The profile's wire-reading knobs, each under both settings, on the
//! tricks ByeDPI and zapret play on a censor: an urgent byte inside the
//! name, a TTL-limited fake hello, overlapping segments with different
//! bytes, a bad checksum, a RST before the hello, a new SYN, a hello split
//! after its second byte, a hello split across TLS records.

use chokepoint_core::{Engine, Verdict};
use chokepoint_testkit::synth::{self, HelloShape};

mod common;

use common::*;

const ISN: u32 = 1000;

/// A TLS record holding a ClientHello for `sni`.
fn hello(sni: &str) -> Vec<u8> {
    synth::tls_records(
        &synth::client_hello(Some(sni), HelloShape::default(), 7),
        16384,
    )
}

/// A client→server TCP frame with the given TTL.
fn tcp_ttl(sport: u16, seq: u32, flags: u8, payload: &[u8], ttl: u8) -> Vec<u8> {
    let (s, d) = (ip(C), ip(S));
    let seg = synth::tcp_segment(s, d, sport, 443, seq, 1, flags, payload);
    synth::ethernet(&synth::ip_packet_ttl(s, d, 6, &seg, ttl), &[])
}

/// SYN, SYN-ACK and ACK of a flow from `sport`; the client's ISN is `ISN`.
fn handshake(e: &mut Engine, sport: u16) {
    run(e, 0, &tcp(C, S, sport, 443, ISN, 0x02, b""));
    run(e, 1, &tcp(S, C, 443, sport, 5000, 0x12, b""));
    run(e, 2, &tcp(C, S, sport, 443, ISN + 1, 0x10, b""));
}

fn data(sport: u16, off: u32, payload: &[u8]) -> Vec<u8> {
    tcp(C, S, sport, 443, ISN + 1 + off, 0x18, payload)
}

fn profile(knobs: &str) -> Engine {
    engine_with(&format!("profile: {{{knobs}}}\n"))
}

fn at(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// The hello for t.me with an extra byte inside the name, sent as urgent
/// data: zapret's and ByeDPI's `oob`.
fn urgent_hello(e: &mut Engine) -> (Verdict, Vec<chokepoint_core::Event>) {
    handshake(e, 40000);
    let mut ch = hello("t.me");
    let name = at(&ch, b"t.me");
    ch.insert(name + 1, b'x');
    let (s, d) = (ip(C), ip(S));
    let seg = synth::tcp_segment_urgent(s, d, 40000, 443, ISN + 1, 1, 0x18, (name + 2) as u16, &ch);
    let f = synth::ethernet(&synth::ip_packet(s, d, 6, &seg), &[]);
    let v = run(e, 3, &f).0;
    (v, e.events().to_vec())
}

#[test]
fn urgent_keep_reads_the_byte_inline_and_misses_the_name() {
    let mut e = profile("urgent: keep");
    let (v, ev) = urgent_hello(&mut e);
    assert_eq!(v, Verdict::Pass);
    assert!(ev.iter().all(|x| x.name.as_bytes() != b"t.me"));
    assert_eq!(e.counters.urgent_bytes_stripped, 0);
}

#[test]
fn urgent_strip_reads_the_name_the_server_reads() {
    let mut e = profile("urgent: strip");
    let (v, ev) = urgent_hello(&mut e);
    assert_eq!(v, Verdict::Reset);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].name.as_bytes(), b"t.me");
    assert!(ev[0].urgent_stripped);
    assert_eq!(e.counters.urgent_bytes_stripped, 1);
}

#[test]
fn urgent_strip_keeps_later_segments_in_place() {
    // The oob trick with a split: the first piece carries one urgent byte
    // past its end; the rest follows at the next sequence number.
    let mut e = profile("urgent: strip");
    handshake(&mut e, 40000);
    let ch = hello("t.me");
    let cut = 3;
    let mut first = ch[..cut].to_vec();
    first.push(b'!');
    let (s, d) = (ip(C), ip(S));
    let seg = synth::tcp_segment_urgent(s, d, 40000, 443, ISN + 1, 1, 0x18, 4, &first);
    let f = synth::ethernet(&synth::ip_packet(s, d, 6, &seg), &[]);
    assert_eq!(run(&mut e, 3, &f).0, Verdict::Pass);
    let v = run(&mut e, 4, &data(40000, cut as u32 + 1, &ch[cut..])).0;
    assert_eq!(v, Verdict::Reset);
}

#[test]
fn urgent_strip_moves_bytes_that_arrived_before_the_urgent_piece() {
    // ByeDPI's `disoob 1`: the first byte and an urgent byte go out with
    // TTL 1 (they die past the censor), the rest follows, then the kernel
    // retransmits the first piece at the normal TTL. The rest was held one
    // byte too far until the urgent byte was known.
    // Trusting the TTL-1 copy, the censor has the whole hello with the rest;
    // ignoring it, with the retransmission.
    for (knobs, decided_at) in [
        ("urgent: strip", 3),
        ("urgent: strip, ttl_fakes: ignore", 4),
    ] {
        let mut e = profile(knobs);
        let ch = hello("t.me");
        let (s, d) = (ip(C), ip(S));
        let piece = |ttl: u8| {
            let seg =
                synth::tcp_segment_urgent(s, d, 40000, 443, ISN + 1, 1, 0x38, 2, &[ch[0], b'a']);
            synth::ethernet(&synth::ip_packet_ttl(s, d, 6, &seg, ttl), &[])
        };
        run(&mut e, 0, &tcp_ttl(40000, ISN, 0x02, b"", 64));
        run(&mut e, 1, &tcp(S, C, 443, 40000, 5000, 0x12, b""));
        let rest = tcp_ttl(40000, ISN + 3, 0x18, &ch[1..], 64);
        for (t, f) in [(2, piece(1)), (3, rest), (4, piece(64))] {
            let want = if t < decided_at {
                Verdict::Pass
            } else {
                Verdict::Reset
            };
            assert_eq!(run(&mut e, t, &f).0, want, "{knobs}, frame {t}");
        }
        assert_eq!(e.counters.urgent_bytes_stripped, 1, "{knobs}");
    }
}

/// A TTL-3 fake hello for allowed.example, then the real t.me hello at the
/// same sequence numbers.
fn fake_then_real(e: &mut Engine) -> (Verdict, Verdict, Vec<chokepoint_core::Event>) {
    run(e, 0, &tcp_ttl(40000, ISN, 0x02, b"", 60));
    run(e, 1, &tcp(S, C, 443, 40000, 5000, 0x12, b""));
    run(e, 2, &tcp_ttl(40000, ISN + 1, 0x10, b"", 60));
    let fake = run(
        e,
        3,
        &tcp_ttl(40000, ISN + 1, 0x18, &hello("allowed.example"), 3),
    );
    let mut ev = e.events().to_vec();
    let real = run(e, 4, &tcp_ttl(40000, ISN + 1, 0x18, &hello("t.me"), 60));
    ev.extend_from_slice(e.events());
    (fake.0, real.0, ev)
}

#[test]
fn ttl_fakes_trust_decides_on_the_fake() {
    let mut e = profile("ttl_fakes: trust");
    let (fake, real, ev) = fake_then_real(&mut e);
    assert_eq!((fake, real), (Verdict::Pass, Verdict::Pass));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].name.as_bytes(), b"allowed.example");
    assert!(!ev[0].fake_ignored);
}

#[test]
fn ttl_fakes_ignore_skips_the_fake_and_blocks_the_real_hello() {
    let mut e = profile("ttl_fakes: ignore, ttl_margin: 1");
    let (fake, real, ev) = fake_then_real(&mut e);
    assert_eq!((fake, real), (Verdict::Pass, Verdict::Reset));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].name.as_bytes(), b"t.me");
    assert!(ev[0].fake_ignored);
    assert_eq!(ev[0].fake_name.as_bytes(), b"allowed.example");
    assert_eq!(e.counters.ttl_fakes_ignored, 1);
}

#[test]
fn ttl_fakes_ignore_allows_the_margin() {
    // One hop less (a route change) is within a margin of 1.
    let mut e = profile("ttl_fakes: ignore, ttl_margin: 1");
    run(&mut e, 0, &tcp_ttl(40000, ISN, 0x02, b"", 60));
    let v = run(
        &mut e,
        1,
        &tcp_ttl(40000, ISN + 1, 0x18, &hello("t.me"), 59),
    )
    .0;
    assert_eq!(v, Verdict::Reset);
    assert_eq!(e.counters.ttl_fakes_ignored, 0);
}

/// The first 150 bytes of a hello for x.me, then the same bytes of the
/// t.me hello (a "retransmission" that disagrees), then the rest.
fn overlap(e: &mut Engine) -> (Verdict, Vec<chokepoint_core::Event>) {
    handshake(e, 40000);
    let (fake, real) = (hello("x.me"), hello("t.me"));
    assert_eq!(fake.len(), real.len());
    let cut = at(&real, b"t.me") + 10;
    assert!(cut < real.len());
    run(e, 3, &data(40000, 0, &fake[..cut]));
    run(e, 4, &data(40000, 0, &real[..cut]));
    let v = run(e, 5, &data(40000, cut as u32, &real[cut..])).0;
    (v, e.events().to_vec())
}

#[test]
fn overlap_first_keeps_the_first_copy() {
    let mut e = profile("overlap: first");
    let (v, ev) = overlap(&mut e);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(ev[0].name.as_bytes(), b"x.me");
    assert!(ev[0].overlap_conflict);
    assert_eq!(e.counters.overlap_conflicts, 1);
}

#[test]
fn overlap_last_takes_the_retransmitted_copy() {
    let mut e = profile("overlap: last");
    let (v, ev) = overlap(&mut e);
    assert_eq!(v, Verdict::Reset);
    assert_eq!(ev[0].name.as_bytes(), b"t.me");
    assert!(ev[0].overlap_conflict);
}

/// The t.me hello with a bad checksum, then a good copy.
fn bad_then_good(e: &mut Engine) -> (Verdict, Verdict) {
    handshake(e, 40000);
    let (s, d) = (ip(C), ip(S));
    let mut seg = synth::tcp_segment(s, d, 40000, 443, ISN + 1, 1, 0x18, &hello("t.me"));
    synth::break_checksum(&mut seg, 6);
    let bad = run(
        e,
        3,
        &synth::ethernet(&synth::ip_packet(s, d, 6, &seg), &[]),
    )
    .0;
    let good = run(e, 4, &data(40000, 0, &hello("t.me"))).0;
    (bad, good)
}

#[test]
fn checksums_trust_reads_a_segment_the_server_drops() {
    let mut e = profile("checksums: trust");
    assert_eq!(bad_then_good(&mut e).0, Verdict::Reset);
    assert_eq!(e.counters.bad_checksums, 0);
}

#[test]
fn checksums_verify_skips_it_and_decides_on_the_good_copy() {
    let mut e = profile("checksums: verify");
    let (bad, good) = bad_then_good(&mut e);
    assert_eq!((bad, good), (Verdict::Pass, Verdict::Reset));
    assert_eq!(e.counters.bad_checksums, 1);
    assert!(e.events()[0].bad_checksum);
}

fn rst_then_hello(e: &mut Engine) -> Verdict {
    handshake(e, 40000);
    run(e, 3, &tcp(S, C, 443, 40000, 5001, 0x14, b""));
    run(e, 4, &data(40000, 0, &hello("t.me"))).0
}

#[test]
fn teardown_on_rst_forgets_the_flow() {
    assert_eq!(
        rst_then_hello(&mut profile("teardown_on_rst: true")),
        Verdict::Pass
    );
    assert_eq!(
        rst_then_hello(&mut profile("teardown_on_rst: false")),
        Verdict::Reset
    );
}

/// A second SYN with another ISN, then the hello at that ISN + 1.
fn second_syn(e: &mut Engine) -> Verdict {
    handshake(e, 40000);
    let isn2 = ISN + 100_000;
    run(e, 3, &tcp(C, S, 40000, 443, isn2, 0x02, b""));
    run(e, 4, &tcp(C, S, 40000, 443, isn2 + 1, 0x18, &hello("t.me"))).0
}

#[test]
fn resync_on_syn_moves_the_stream_start() {
    assert_eq!(
        second_syn(&mut profile("resync_on_syn: true")),
        Verdict::Reset
    );
    // Without: the hello lies 100 000 bytes past the start, beyond the
    // reassembly window, and is never read.
    assert_eq!(
        second_syn(&mut profile("resync_on_syn: false")),
        Verdict::Pass
    );
}

fn split_at(e: &mut Engine, cut: usize) -> Verdict {
    handshake(e, 40000);
    let ch = hello("t.me");
    run(e, 3, &data(40000, 0, &ch[..cut]));
    run(e, 4, &data(40000, cut as u32, &ch[cut..])).0
}

#[test]
fn first_segment_gate_misses_a_split_after_byte_two() {
    let gate = "first_segment_gate: true";
    assert_eq!(split_at(&mut profile(gate), 2), Verdict::Pass);
    assert_eq!(split_at(&mut profile(gate), 100), Verdict::Reset);
    let open = "first_segment_gate: false";
    assert_eq!(split_at(&mut profile(open), 2), Verdict::Reset);
    assert_eq!(split_at(&mut profile(open), 100), Verdict::Reset);
}

/// The t.me hello in 64-byte TLS records: the name is in a later one.
fn record_split(e: &mut Engine) -> Verdict {
    handshake(e, 40000);
    let msg = synth::client_hello(Some("t.me"), HelloShape::default(), 7);
    assert!(at(&msg, b"t.me") > 64);
    run(e, 3, &data(40000, 0, &synth::tls_records(&msg, 64))).0
}

#[test]
fn tls_records_first_only_misses_a_name_in_a_later_record() {
    assert_eq!(
        record_split(&mut profile("tls_records: first_only")),
        Verdict::Pass
    );
    assert_eq!(
        record_split(&mut profile("tls_records: reassemble")),
        Verdict::Reset
    );
}

#[test]
fn the_default_profile_reads_as_before() {
    // Today's behaviour: urgent bytes inline, fakes trusted, first copy
    // wins, checksums trusted, records reassembled.
    let mut e = engine();
    assert_eq!(urgent_hello(&mut e).0, Verdict::Pass);
    assert_eq!(fake_then_real(&mut engine()).0, Verdict::Pass);
    assert_eq!(overlap(&mut engine()).0, Verdict::Pass);
    assert_eq!(bad_then_good(&mut engine()).0, Verdict::Reset);
    assert_eq!(record_split(&mut engine()), Verdict::Reset);
}

#[test]
fn checksums_verify_covers_udp_and_ipv6() {
    let (s, d) = (ip(C), ip(S));
    let query = synth::dns_query(7, "t.me", 1);
    let mut dg = synth::udp_datagram(s, d, 5353, 53, &query);
    synth::break_checksum(&mut dg, 17);
    let f = synth::ethernet(&synth::ip_packet(s, d, 17, &dg), &[]);
    let mut trust = profile("checksums: trust");
    run(&mut trust, 0, &f);
    assert_eq!(trust.events().len(), 1);
    let mut verify = profile("checksums: verify");
    run(&mut verify, 0, &f);
    assert!(verify.events().is_empty());
    assert_eq!(verify.counters.bad_checksums, 1);
    // A good IPv6 segment passes verification and is read.
    let (s6, d6) = (ip("2001:db8::1"), ip("2001:db8::2"));
    let seg = synth::tcp_segment(s6, d6, 40000, 443, ISN + 1, 1, 0x18, &hello("t.me"));
    let f = synth::ethernet(&synth::ip_packet(s6, d6, 6, &seg), &[]);
    assert_eq!(run(&mut verify, 1, &f).0, Verdict::Reset);
}

#[test]
fn ttl_fakes_ignore_reads_the_ipv6_hop_limit() {
    let mut e = profile("ttl_fakes: ignore");
    let (s, d) = (ip("2001:db8::1"), ip("2001:db8::2"));
    let frame = |seq, flags, payload: &[u8], hops| {
        let seg = synth::tcp_segment(s, d, 40000, 443, seq, 1, flags, payload);
        synth::ethernet(&synth::ip_packet_ttl(s, d, 6, &seg, hops), &[])
    };
    run(&mut e, 0, &frame(ISN, 0x02, b"", 57));
    run(
        &mut e,
        1,
        &frame(ISN + 1, 0x18, &hello("allowed.example"), 4),
    );
    let v = run(&mut e, 2, &frame(ISN + 1, 0x18, &hello("t.me"), 57)).0;
    assert_eq!(v, Verdict::Reset);
    assert_eq!(e.counters.ttl_fakes_ignored, 1);
}

#[test]
fn presets_read_the_tricks_as_documented() {
    // naive: one packet at a time, so a split hello is never read.
    assert_eq!(split_at(&mut profile("preset: naive"), 100), Verdict::Pass);
    assert_eq!(record_split(&mut profile("preset: naive")), Verdict::Pass);
    // tspu-2025: reassembles, but needs the record start in the first segment.
    assert_eq!(
        split_at(&mut profile("preset: tspu-2025"), 100),
        Verdict::Reset
    );
    assert_eq!(
        split_at(&mut profile("preset: tspu-2025"), 2),
        Verdict::Pass
    );
    // ...and believes a TTL-limited fake.
    assert_eq!(
        fake_then_real(&mut profile("preset: tspu-2025")).1,
        Verdict::Pass
    );
    // gfw-2025: a RST ends inspection.
    assert_eq!(
        rst_then_hello(&mut profile("preset: gfw-2025")),
        Verdict::Pass
    );
    // hardened: none of the tricks work.
    let hardened = "preset: hardened";
    assert_eq!(urgent_hello(&mut profile(hardened)).0, Verdict::Reset);
    assert_eq!(fake_then_real(&mut profile(hardened)).1, Verdict::Reset);
    assert_eq!(overlap(&mut profile(hardened)).0, Verdict::Reset);
    assert_eq!(bad_then_good(&mut profile(hardened)).1, Verdict::Reset);
    assert_eq!(split_at(&mut profile(hardened), 2), Verdict::Reset);
    // An override beside the preset wins.
    let v = fake_then_real(&mut profile("preset: hardened, ttl_fakes: trust")).1;
    assert_eq!(v, Verdict::Pass);
}

/// A whole fake hello for x.me, then the real t.me hello at the same
/// sequence numbers (and the real one once more).
fn hello_then_other(e: &mut Engine) -> (Verdict, Verdict, Vec<chokepoint_core::Event>) {
    handshake(e, 40000);
    let fake = run(e, 3, &data(40000, 0, &hello("x.me"))).0;
    let mut ev = e.events().to_vec();
    let real = run(e, 4, &data(40000, 0, &hello("t.me"))).0;
    ev.extend_from_slice(e.events());
    run(e, 5, &data(40000, 0, &hello("t.me")));
    ev.extend_from_slice(e.events());
    (fake, real, ev)
}

#[test]
fn overlap_reinspect_decides_again_on_a_hello_that_disagrees() {
    let mut e = profile("overlap: first");
    let (fake, real, ev) = hello_then_other(&mut e);
    assert_eq!((fake, real, ev.len()), (Verdict::Pass, Verdict::Pass, 1));
    let mut e = profile("overlap: reinspect");
    let (fake, real, ev) = hello_then_other(&mut e);
    assert_eq!((fake, real), (Verdict::Pass, Verdict::Reset));
    assert_eq!(ev.len(), 2, "the same bytes again decide nothing new");
    assert_eq!(ev[1].name.as_bytes(), b"t.me");
    assert!(ev[1].overlap_conflict);
    assert_eq!(e.counters.overlap_conflicts, 1);
}

/// zapret's `badseq`: a fake hello for x.me 10 000 bytes before the
/// stream start (the server drops it), then the real t.me hello.
fn badseq(e: &mut Engine) -> (Verdict, Verdict) {
    handshake(e, 40000);
    let fake = tcp(
        C,
        S,
        40000,
        443,
        (ISN + 1).wrapping_sub(10_000),
        0x18,
        &hello("x.me"),
    );
    let fake = run(e, 3, &fake).0;
    (fake, run(e, 4, &data(40000, 0, &hello("t.me"))).0)
}

#[test]
fn in_window_only_skips_a_fake_outside_the_window() {
    assert_eq!(
        badseq(&mut profile("in_window_only: true")),
        (Verdict::Pass, Verdict::Reset)
    );
    assert_eq!(
        badseq(&mut profile("in_window_only: false")),
        (Verdict::Pass, Verdict::Pass)
    );
}

/// Data, then a SYN-ACK that acknowledges another ISN (Geneva's resync
/// trigger), then the hello at that ISN + 1.
fn syn_ack_after_data(e: &mut Engine) -> Verdict {
    handshake(e, 40000);
    run(e, 3, &data(40000, 0, b"\x16\x03"));
    let isn2 = ISN + 100_000;
    let (s, c) = (ip(S), ip(C));
    let seg = synth::tcp_segment(s, c, 443, 40000, 5000, isn2 + 1, 0x12, b"");
    run(
        e,
        4,
        &synth::ethernet(&synth::ip_packet(s, c, 6, &seg), &[]),
    );
    run(e, 5, &tcp(C, S, 40000, 443, isn2 + 1, 0x18, &hello("t.me"))).0
}

#[test]
fn resync_on_syn_follows_a_syn_ack_in_an_established_flow() {
    assert_eq!(
        syn_ack_after_data(&mut profile("resync_on_syn: true")),
        Verdict::Reset
    );
    assert_eq!(
        syn_ack_after_data(&mut profile("resync_on_syn: false")),
        Verdict::Pass
    );
}

#[test]
fn decode_reads_ttl_hop_limit_urgent_pointer_and_checksums() {
    use chokepoint_core::decode::{decode, Decoded, L4};
    use chokepoint_core::wire::emit::transport_checksum_ok;
    use chokepoint_core::LinkType;
    for (s, d) in [(ip(C), ip(S)), (ip("2001:db8::1"), ip("2001:db8::2"))] {
        let seg = synth::tcp_segment_urgent(s, d, 40000, 443, 7, 1, 0x18, 3, b"abcdef");
        let frame = synth::ethernet(&synth::ip_packet_ttl(s, d, 6, &seg, 9), &[]);
        let Decoded::Packet(p) = decode(LinkType::Ethernet, &frame) else {
            panic!("a packet");
        };
        assert_eq!(p.ttl, 9);
        let L4::Tcp(t) = p.l4 else { panic!("tcp") };
        assert_eq!((t.urgent, t.flags & 0x20), (3, 0x20));
        assert!(transport_checksum_ok(s, d, 6, p.l4_bytes), "{s}");
        let mut bad = seg.clone();
        synth::break_checksum(&mut bad, 6);
        assert!(!transport_checksum_ok(s, d, 6, &bad));
    }
}
