//! UDP inspection: DNS queries (each its own decision) and QUIC Initials
//! (decrypted by [`crate::quic::InitialDecoder`], CRYPTO data reassembled
//! across datagrams, the ClientHello read from it).

use chokepoint_ruleset::{Protocol, Trigger};

use super::decide::Found;
use super::{FlowCx, MAX_CLIENT_HELLO};
use crate::classify;
use crate::event::Decision;
use crate::flow::Inspect;
use crate::quic::{self, Hello};
use crate::reasm::CapHit;
use crate::wire::l4::Udp;

/// Inspect a UDP datagram of an undecided flow.
pub(super) fn inspect(cx: &mut FlowCx<'_>, crypt: &mut Vec<u8>, u: &Udp<'_>) -> Decision {
    // VPNs and calls on any port, 53 and 443 included (a tunnel on a
    // port DNS or QUIC use is the oldest trick there is).
    let wanted = cx.cfg.rules.protocols_wanted() & classify::DATAGRAM_PROTOCOLS;
    if wanted != 0 && cx.flow.inspect == Inspect::Start {
        if let Some(p) = classify::datagram(u.payload, wanted) {
            let d = cx.classified(p);
            cx.give_up_if_undecided();
            return d.unwrap_or_else(|| cx.undecided());
        }
    }
    if u.sport == 53 || u.dport == 53 {
        // DNS is decided per query and never sticks to the flow.
        let d = cx.dns_message(u.payload);
        return if d.rule.is_some() || d.decided_now {
            d
        } else {
            cx.undecided()
        };
    }
    // A QUIC long header, or a Google QUIC public header with a version.
    let quic_like = u
        .payload
        .first()
        .is_some_and(|b| b & 0x80 != 0 || b & 0x08 != 0);
    if !quic_like || !cx.cfg.port_inspected(cx.server_port()) {
        if cx.flow.inspect == Inspect::Start {
            cx.give_up();
        }
        return cx.undecided();
    }
    if !cx.budget(u.payload.len()) {
        return cx.undecided();
    }
    // A long header with a version (0 is version negotiation): QUIC, as a
    // protocol rule sees it, before anything is decrypted. TSPU's 2022
    // filter looked at no more than this.
    if cx.packet.quic_version.is_some_and(|v| v != 0) {
        if let Some(d) = cx.decide_protocol(Protocol::Quic) {
            return d;
        }
    }
    if let Some(d) = gquic_in_clear(cx, u.payload) {
        return d;
    }
    initials(cx, crypt, u.payload)
}

/// Google QUIC up to Q046 carries its CHLO in clear.
fn gquic_in_clear(cx: &mut FlowCx<'_>, datagram: &[u8]) -> Option<Decision> {
    let v = quic::gquic_version(datagram)?;
    if v == quic::Q050 || quic::scheme(v).is_some() {
        return None;
    }
    cx.flow.inspect = Inspect::Quic;
    let Some(sni) = quic::gquic_clear_chlo(datagram) else {
        return Some(cx.undecided());
    };
    let d = cx.decide_flow(&Found::name(Trigger::QuicSni, sni.unwrap_or(b"")));
    cx.give_up_if_undecided();
    Some(d)
}

/// Decrypt the client's Initials, add their CRYPTO data to the flow's
/// buffer, and decide once the ClientHello is whole.
fn initials(cx: &mut FlowCx<'_>, crypt: &mut Vec<u8>, datagram: &[u8]) -> Decision {
    let (max_bytes, max_ranges) = (
        cx.cfg.profile.reassembly_max_bytes as usize,
        cx.cfg.profile.reassembly_max_segments as usize,
    );
    let ins = cx.flow.inspection(cx.insp);
    let mut buf = ins.buf.take();
    let (mut cap_bytes, mut cap_ranges, mut cap_budget) = (0u64, 0u64, 0u64);
    let pool = &mut *cx.pool;
    let fed = ins.quic.feed(datagram, crypt, |off, data| {
        let b = buf.get_or_insert_with(|| pool.take());
        match pool.insert(b, off, data, max_bytes, max_ranges) {
            Ok(()) => {}
            Err(CapHit::Bytes) => cap_bytes += 1,
            Err(CapHit::Ranges) => cap_ranges += 1,
            Err(CapHit::Budget) => cap_budget += 1,
        }
    });
    cx.counters.reassembly_budget_refused += cap_budget;
    cx.counters.reassembly_bytes_held = cx.pool.held() as u64;
    cx.counters.quic_initials += u64::from(fed.initials);
    cx.counters.quic_decrypt_failures += u64::from(fed.failures);
    cx.counters.reassembly_cap_bytes += cap_bytes;
    cx.counters.reassembly_cap_segments += cap_ranges;
    if fed.initials == 0 {
        cx.flow.inspection(cx.insp).buf = buf;
        return cx.undecided();
    }
    cx.flow.inspect = Inspect::Quic;
    let Some(mut b) = buf else {
        return cx.undecided();
    };
    let (d, done) = match quic::hello(b.contiguous(), fed.google, MAX_CLIENT_HELLO) {
        Hello::Tls(msg) => (cx.decide_hello(Trigger::QuicSni, msg), true),
        Hello::Chlo(sni) => (
            cx.decide_flow(&Found::name(Trigger::QuicSni, sni.unwrap_or(b""))),
            true,
        ),
        Hello::NeedMore => (cx.undecided(), false),
        Hello::NotHello => (cx.undecided(), true),
    };
    if done || cap_budget > 0 {
        b.clear();
        cx.pool.give(b);
        cx.give_up_if_undecided();
    } else {
        cx.flow.inspection(cx.insp).buf = Some(b);
    }
    d
}
