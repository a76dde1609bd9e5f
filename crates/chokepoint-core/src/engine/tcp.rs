//! TCP inspection: the client stream reassembled (or one segment alone),
//! then read as a TLS ClientHello, HTTP requests (keep-alive: one after
//! another) or length-prefixed DNS messages.

use chokepoint_ruleset::profile::{Overlap, TlsRecords, TtlFakes, Urgent};
use chokepoint_ruleset::{Protocol, Trigger};

use super::decide::Found;
use super::{FlowCx, MAX_CLIENT_HELLO};
use crate::classify::{self, StreamClass};
use crate::event::{quirk, Decision, NameBuf};
use crate::flow::{FlowDecision, Inspect, Inspected};
use crate::reasm::{CapHit, Reassembly};
use crate::wire::l4::{Tcp, TCP_ACK, TCP_SYN, TCP_URG};
use crate::{http, tls};

/// Inspect a TCP segment of an undecided flow. `seg` holds the payload
/// when `urgent: strip` takes a byte out of it; `ttl` is the packet's.
pub(super) fn inspect(
    cx: &mut FlowCx<'_>,
    hello: &mut Vec<u8>,
    alone: &mut Reassembly,
    seg: &mut Vec<u8>,
    t: &Tcp<'_>,
    ttl: u8,
) -> Decision {
    let cfg = cx.cfg;
    let p = &cfg.profile;
    let syn = t.flags & TCP_SYN != 0;
    // Sequence number of the first payload byte (SYN occupies one).
    let mut data_seq = if syn { t.seq.wrapping_add(1) } else { t.seq };
    if cx.from_client
        && syn
        && t.flags & TCP_ACK == 0
        && (p.resync_on_syn || cx.flow.seq_base().is_none())
    {
        cx.flow.set_seq_base(data_seq);
    }
    if cx.from_client && p.ttl_fakes == TtlFakes::Ignore && is_fake(cx, hello, t, ttl) {
        return cx.undecided();
    }
    if t.payload.is_empty() || !cx.budget(t.payload.len()) {
        return cx.undecided();
    }
    let dns = t.sport == 53 || t.dport == 53;
    if !cx.from_client {
        // Direction::Both: look at this segment alone, no reassembly.
        return inspect_alone(cx, hello, alone, t.payload, dns);
    }
    let mut payload = t.payload;
    let ins = cx.flow.inspection(cx.insp);
    if ins.urgent_count != 0 && (data_seq.wrapping_sub(ins.urgent_seq) as i32) > 0 {
        // Bytes after a stripped urgent byte sit that much earlier in the
        // stream the server reads.
        data_seq = data_seq.wrapping_sub(u32::from(ins.urgent_count));
    }
    if t.flags & TCP_URG != 0 && p.urgent == Urgent::Strip {
        if let Some(stripped) = strip_urgent(cx, seg, t, data_seq) {
            payload = stripped;
        }
        if payload.is_empty() {
            return cx.undecided();
        }
    }
    if cx.packet.first_client_data
        && cfg.rules.protocols_wanted() & Protocol::FullyEncrypted.bit() != 0
        && classify::first_packet_fully_encrypted(payload)
    {
        if let Some(d) = cx.classified(Protocol::FullyEncrypted) {
            return d;
        }
    }
    if p.first_segment_gate
        && cx.flow.inspect == Inspect::Start
        && !cx.buf_held()
        && payload[0] == 0x16
        && (payload.len() < 6 || payload[5] != 0x01)
    {
        // A box that classifies the stream by its first segment: without
        // the record header and handshake type there, it is not TLS.
        cx.give_up();
        return cx.undecided();
    }
    if !p.reassemble_client_hello {
        if cx.flow.inspect != Inspect::Start {
            // Old-style DPI: the first data segment only.
            cx.give_up();
            return cx.undecided();
        }
        return inspect_alone(cx, hello, alone, payload, dns);
    }
    let base = match cx.flow.seq_base() {
        Some(b) => b,
        None => {
            cx.flow.set_seq_base(data_seq);
            data_seq
        }
    };
    if !p.in_window_only {
        let rel = data_seq.wrapping_sub(base) as i32;
        if rel < 0 || rel as u32 >= p.reassembly_max_bytes {
            // A censor that does not check the window reads a segment the
            // server will drop, on its own.
            return inspect_alone(cx, hello, alone, payload, dns);
        }
    }
    if let Some(d) = hello_in_place(cx, hello, payload, data_seq == base, dns) {
        if p.overlap == Overlap::Reinspect {
            remember(cx, data_seq, payload);
        }
        return d;
    }
    let mut buf = cx
        .flow
        .inspection(cx.insp)
        .buf
        .take()
        .unwrap_or_else(|| cx.pool.take());
    let rel = data_seq.wrapping_sub(base) as i32;
    // Segments before the stream start (retransmitted SYN data, or a
    // capture that began mid-flow) are skipped.
    let (off, data) = if rel < 0 {
        let skip = rel.unsigned_abs() as usize;
        (0u64, payload.get(skip..).unwrap_or(&[]))
    } else {
        (rel as u64, payload)
    };
    if buf.overlay(off, data, p.overlap == Overlap::Last) {
        cx.counters.overlap_conflicts += 1;
        cx.flow.quirks |= quirk::OVERLAP_CONFLICT;
    }
    match cx.pool.insert(
        &mut buf,
        off,
        data,
        p.reassembly_max_bytes as usize,
        p.reassembly_max_segments as usize,
    ) {
        Ok(()) => {}
        Err(CapHit::Bytes) => cx.counters.reassembly_cap_bytes += 1,
        Err(CapHit::Ranges) => cx.counters.reassembly_cap_segments += 1,
        Err(CapHit::Budget) => {
            // Out of memory for all flows: this one passes uninspected
            // and frees what it held, rather than holding it for a hello
            // that may never come.
            cx.counters.reassembly_budget_refused += 1;
            cx.give_up();
        }
    }
    cx.counters.reassembly_bytes_held = cx.pool.held() as u64;
    if cx.flow.inspect == Inspect::Done {
        cx.pool.give(buf);
        cx.counters.reassembly_bytes_held = cx.pool.held() as u64;
        return cx.undecided();
    }
    let d = read_stream(cx, hello, &mut buf, dns);
    if cx.flow.inspect == Inspect::Done || cx.flow.decision.is_some() {
        cx.pool.give(buf);
    } else {
        cx.flow.inspection(cx.insp).buf = Some(buf);
    }
    d
}

/// `overlap: reinspect`: keep where the hello just decided lay, and a
/// digest of its bytes (its record: `tls::first_record` found it whole).
fn remember(cx: &mut FlowCx<'_>, seq: u32, payload: &[u8]) {
    let Some(rec) = tls::first_record(payload) else {
        return;
    };
    let len = rec.len() + 5;
    let ins = Inspected {
        seq,
        len: len as u32,
        digest: Inspected::digest(&payload[..len]),
    };
    cx.flow.set_inspected(Some(ins));
}

/// `overlap: reinspect`: does this client segment carry the decided hello's
/// range whole, with other bytes? Then the flow is to be decided again.
pub(super) fn disagrees(ins: &Inspected, t: &Tcp<'_>) -> bool {
    t.seq == ins.seq
        && t.payload.len() >= ins.len as usize
        && Inspected::digest(&t.payload[..ins.len as usize]) != ins.digest
}

/// `ttl_fakes: ignore`: is this client segment a fake that dies before
/// the server (its TTL below the flow's first by more than the margin)?
/// The first client packet sets the reference.
fn is_fake(cx: &mut FlowCx<'_>, hello: &mut Vec<u8>, t: &Tcp<'_>, ttl: u8) -> bool {
    let first = cx.flow.first_ttl;
    if first == 0 {
        cx.flow.first_ttl = ttl.max(1);
        return false;
    }
    if t.payload.is_empty() || ttl.saturating_add(cx.cfg.profile.ttl_margin) >= first {
        return false;
    }
    cx.counters.ttl_fakes_ignored += 1;
    cx.flow.quirks |= quirk::FAKE_IGNORED;
    // Keep the name the fake carried, for the event to show what was
    // not believed (a whole hello in the segment: the usual fake).
    if let tls::Progress::Complete {
        len,
        in_stream: true,
    } = tls::gather(t.payload, hello, MAX_CLIENT_HELLO)
    {
        if let Some(sni) = tls::handshake(&t.payload[5..len]).and_then(|ch| ch.sni) {
            cx.flow.set_fake_name(NameBuf::new(sni));
        }
    }
    true
}

/// `urgent: strip`: the payload without the byte at urgent pointer - 1
/// (Linux without `SO_OOBINLINE` hands it out of band), copied into `seg`.
fn strip_urgent<'s>(
    cx: &mut FlowCx<'_>,
    seg: &'s mut Vec<u8>,
    t: &Tcp<'_>,
    data_seq: u32,
) -> Option<&'s [u8]> {
    let u = usize::from(t.urgent);
    if u == 0 || u > t.payload.len() {
        return None;
    }
    seg.clear();
    seg.extend_from_slice(&t.payload[..u - 1]);
    seg.extend_from_slice(&t.payload[u..]);
    let at = data_seq.wrapping_add(u as u32 - 1);
    // A retransmission strips the same byte again: count it once.
    let base = cx.flow.seq_base();
    let ins = cx.flow.inspection(cx.insp);
    if ins.urgent_count == 0 || (at.wrapping_sub(ins.urgent_seq) as i32) > 0 {
        ins.urgent_count = ins.urgent_count.saturating_add(1);
        ins.urgent_seq = at;
        // Bytes after it that arrived first (ByeDPI's `disoob` sends the
        // urgent piece last) move one earlier, as in the server's stream.
        if let (Some(buf), Some(base)) = (ins.buf.as_deref_mut(), base) {
            let rel = at.wrapping_sub(base) as i32;
            if rel >= 0 {
                buf.excise(rel as u64);
            }
        }
        cx.counters.urgent_bytes_stripped += 1;
        cx.flow.quirks |= quirk::URGENT_STRIPPED;
    }
    Some(seg)
}

/// The fast path: a whole ClientHello at the start of the stream, in this
/// one segment, nothing held yet: parse it where it lies, no copy into a
/// flow buffer.
fn hello_in_place(
    cx: &mut FlowCx<'_>,
    hello: &mut Vec<u8>,
    payload: &[u8],
    at_start: bool,
    dns: bool,
) -> Option<Decision> {
    let fresh =
        !cx.buf_held() && at_start && matches!(cx.flow.inspect, Inspect::Start | Inspect::Tls);
    if !fresh || dns || payload[0] != 0x16 || !cx.cfg.port_inspected(cx.server_port()) {
        return None;
    }
    match tls::gather(payload, hello, MAX_CLIENT_HELLO) {
        tls::Progress::Complete {
            len,
            in_stream: true,
        } => {
            cx.flow.inspect = Inspect::Tls;
            Some(cx.decide_hello(Trigger::TlsSni, &payload[5..len]))
        }
        _ => None,
    }
}

/// Inspect one segment's payload on its own, in a reused buffer (this runs
/// per segment in `direction: both` and without reassembly, and must not
/// allocate each time).
fn inspect_alone(
    cx: &mut FlowCx<'_>,
    hello: &mut Vec<u8>,
    alone: &mut Reassembly,
    data: &[u8],
    dns: bool,
) -> Decision {
    alone.clear();
    let d = if alone.insert(0, data, usize::MAX >> 1, 1).is_err() {
        cx.undecided()
    } else {
        read_stream(cx, hello, alone, dns)
    };
    if cx.flow.decision.is_none()
        && cx.flow.inspect != Inspect::Done
        && !cx.cfg.profile.reassemble_client_hello
    {
        cx.give_up();
    }
    d
}

/// Run the flow's reader over the contiguous client stream.
fn read_stream(
    cx: &mut FlowCx<'_>,
    hello: &mut Vec<u8>,
    buf: &mut Reassembly,
    dns: bool,
) -> Decision {
    let mut decision = cx.undecided();
    loop {
        let data = buf.contiguous();
        if data.is_empty() {
            return decision;
        }
        if cx.flow.inspect == Inspect::Start {
            let inspected = cx.cfg.port_inspected(cx.server_port());
            cx.flow.inspect = if dns {
                Inspect::DnsTcp
            } else if data[0] == 0x16 && inspected {
                Inspect::Tls
            } else if inspected && http::looks_like_request(data) {
                Inspect::Http
            } else {
                return classify_stream(cx, data).unwrap_or(decision);
            };
        }
        match cx.flow.inspect {
            Inspect::Tls => return read_hello(cx, hello, data),
            Inspect::Http => match http::request(data) {
                http::Request::Complete { host, end, body } => {
                    // A request without a Host (HTTP/1.0) is HTTP all the
                    // same: a protocol rule may decide it.
                    let d = match host {
                        Some(host) => Some(cx.decide_flow(&Found::name(Trigger::HttpHost, host))),
                        None => cx.decide_protocol(Protocol::Http),
                    };
                    if let Some(d) = d {
                        decision = d;
                        if cx.flow.decision.is_some() {
                            return decision;
                        }
                    }
                    // Keep-alive: skip the body, look at the next request.
                    // A crafted Content-Length must not overflow.
                    let total = end.checked_add(body.unwrap_or(0));
                    if total.is_none_or(|t| data.len() < t) {
                        cx.give_up();
                        return decision;
                    }
                    buf.consume(total.unwrap_or(0));
                }
                http::Request::NeedMore => return decision,
                http::Request::NotHttp => {
                    cx.give_up();
                    return decision;
                }
            },
            Inspect::DnsTcp => {
                let Some(msg) = dns_frame(data) else {
                    return decision;
                };
                let d = cx.dns_message(msg);
                if d.rule.is_some() || d.decided_now {
                    decision = d;
                }
                if d.rule.is_some() && d.verdict.sticks() {
                    // The forged answer or reset ends the conversation; a
                    // retransmitted query must meet the same decision,
                    // not an empty stream that passes it.
                    let fd = FlowDecision {
                        verdict: d.verdict,
                        rule: d.rule,
                        by: Trigger::DnsQname,
                    };
                    cx.flow.decide(fd, cx.insp, cx.pool);
                    return decision;
                }
                let used = msg.len() + 2;
                buf.consume(used);
            }
            _ => return decision,
        }
    }
}

/// A stream that is neither TLS nor HTTP: one of the protocols some rule
/// asks for, or given up. While a wanted protocol still agrees with the
/// bytes (an SSH banner cut after `SSH-`), the stream is kept for more.
fn classify_stream(cx: &mut FlowCx<'_>, data: &[u8]) -> Option<Decision> {
    let wanted = cx.cfg.rules.protocols_wanted() & classify::STREAM_PROTOCOLS;
    match classify::stream(data, wanted) {
        StreamClass::Is(p) => {
            let d = cx.classified(p);
            cx.give_up_if_undecided();
            d
        }
        StreamClass::NeedMore => None,
        StreamClass::Unknown => {
            cx.give_up();
            None
        }
    }
}

/// A DNS message over TCP: a 2-byte length, then the message.
fn dns_frame(data: &[u8]) -> Option<&[u8]> {
    let n = usize::from(u16::from_be_bytes([*data.first()?, *data.get(1)?]));
    data.get(2..2 + n)
}

/// Gather the ClientHello from the stream's TLS records and decide on it.
fn read_hello(cx: &mut FlowCx<'_>, hello: &mut Vec<u8>, data: &[u8]) -> Decision {
    let progress = tls::gather(data, hello, MAX_CLIENT_HELLO);
    if cx.cfg.profile.tls_records == TlsRecords::FirstOnly
        && matches!(
            progress,
            tls::Progress::NeedMore
                | tls::Progress::Complete {
                    in_stream: false,
                    ..
                }
        )
    {
        // A reader of one record: once it is whole, what it holds of the
        // hello is all that is read.
        return match tls::first_record(data) {
            Some(rec) => cx.decide_hello_prefix(Trigger::TlsSni, rec),
            None => cx.undecided(),
        };
    }
    match progress {
        tls::Progress::Complete { len, in_stream } => {
            let msg = if in_stream {
                &data[5..len]
            } else {
                &hello[..len]
            };
            cx.decide_hello(Trigger::TlsSni, msg)
        }
        tls::Progress::NeedMore => cx.undecided(),
        tls::Progress::TooLarge => {
            cx.counters.client_hello_too_large += 1;
            cx.give_up();
            cx.undecided()
        }
        tls::Progress::NotTls => {
            cx.give_up();
            cx.undecided()
        }
    }
}
