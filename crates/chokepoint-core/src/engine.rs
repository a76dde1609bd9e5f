//! [`Engine`]: `(timestamp, link type, frame)` in, [`Decision`] out.
//!
//! Order of work for a packet:
//! 1. decode to the innermost IP packet (reassembling IP fragments);
//! 2. find or create its flow; a decided flow costs that one lookup;
//! 3. on a new flow, IP-prefix rules on either address;
//! 4. inspect client data within the profile's budget: reassemble the TCP
//!    stream or QUIC CRYPTO data, extract the TLS SNI, QUIC SNI, HTTP Host
//!    or DNS question names, and match them;
//! 5. the first matching rule in policy order decides; for TLS, QUIC and
//!    HTTP the decision sticks to the flow, for DNS it is per query.

use std::net::IpAddr;
use std::sync::Arc;

use chokepoint_ruleset::name::{normalize_wire, MAX_NAME_LEN};
use chokepoint_ruleset::{Direction, Profile};
use chokepoint_ruleset::{Match, Ruleset, Trigger};

use crate::decode::{decode, resume_ip, Decoded, Packet, Problem, L4};
use crate::defrag::Defrag;
use crate::event::{Decision, Event, NameBuf, Verdict};
use crate::flow::{Flow, FlowKey, FlowTable, Inspect, State};
use crate::reasm::{CapHit, Pool};
use crate::wire::l4::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use crate::wire::link::LinkType;
use crate::{dns, http, quic, tls};

/// Events kept per packet (a DNS-over-TCP segment may hold many queries).
const MAX_EVENTS_PER_PACKET: usize = 256;
/// Largest ClientHello gathered.
const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// Everything the engine counts. Plain integers: one engine per worker,
/// summed by whoever reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub packets_by_verdict: [u64; Verdict::COUNT],
    pub bytes_by_verdict: [u64; Verdict::COUNT],
    /// Frames that are not IP (ARP, LLDP...), passed.
    pub not_ip: u64,
    pub problems: [u64; Problem::COUNT],
    pub decisions_by_trigger: [u64; Trigger::COUNT],
    /// Events beyond the per-packet buffer.
    pub events_dropped: u64,
    /// Reassembly refused data: byte cap or segment cap.
    pub reassembly_cap_bytes: u64,
    pub reassembly_cap_segments: u64,
    pub client_hello_too_large: u64,
    /// Flows passed uninspected because the budget ran out first.
    pub inspection_budget_exhausted: u64,
    pub quic_initials: u64,
    pub quic_decrypt_failures: u64,
    pub dns_queries: u64,
}

pub struct Engine {
    rules: Arc<Ruleset>,
    profile: Profile,
    flows: FlowTable,
    pool: Pool,
    defrag: Defrag,
    pub counters: Counters,
    events: Vec<Event>,
    scratch: Vec<u8>,
    crypt: Vec<u8>,
    datagram: Vec<u8>,
    /// Reused for segments inspected on their own.
    slice: crate::reasm::Reassembly,
    index: u64,
    now: u64,
}

/// A name found in a packet, before matching.
struct Found<'a> {
    trigger: Trigger,
    name: &'a [u8],
    ech: bool,
    grease: bool,
}

impl Engine {
    pub fn new(rules: Arc<Ruleset>) -> Engine {
        let profile = rules.meta.profile.clone();
        Engine {
            flows: FlowTable::new(profile.max_flows as usize, profile.timeouts.clone()),
            pool: Pool::new(1024),
            defrag: Defrag::new(
                profile.max_fragment_datagrams as usize,
                profile.fragment_timeout,
            ),
            counters: Counters::default(),
            events: Vec::with_capacity(MAX_EVENTS_PER_PACKET),
            scratch: Vec::with_capacity(MAX_CLIENT_HELLO),
            crypt: Vec::with_capacity(65_536),
            datagram: Vec::with_capacity(65_536),
            slice: crate::reasm::Reassembly::default(),
            index: 0,
            now: 0,
            rules,
            profile,
        }
    }

    /// Swap the rules (hot reload). Flows already decided keep their
    /// decision, unless the new profile says `reevaluate_on_reload`: then
    /// every flow is decided again from its addresses and the name it
    /// carried.
    pub fn set_rules(&mut self, rules: Arc<Ruleset>) {
        self.rules = rules;
        self.profile.reevaluate_on_reload = self.rules.meta.profile.reevaluate_on_reload;
        if self.profile.reevaluate_on_reload {
            self.reevaluate();
        }
    }

    fn reevaluate(&mut self) {
        let rules = self.rules.clone();
        let default = Verdict::of(&rules.meta.default_action);
        self.flows.for_each_mut(|f| {
            let (a, b) = f.addresses();
            let ip = earlier(rules.match_ip(a), rules.match_ip(b));
            let mut buf = [0u8; MAX_NAME_LEN];
            let name = f.seen.as_ref().and_then(|s| {
                let raw = s.2.as_bytes();
                let m = if s.0 == Trigger::HttpHost {
                    http::host_for_match(raw)
                } else {
                    raw
                };
                normalize_wire(m, &mut buf).and_then(|n| rules.match_hello(s.0, s.1, n))
            });
            let m = earlier(ip, name);
            let v = m.map_or(default, |m| Verdict::of(&rules.rule(m.rule).action));
            if m.is_some() && !v.forwards() {
                f.verdict = Some((v, m.map(|m| m.rule)));
                f.ip_hold = None;
            } else {
                f.verdict = None;
                f.ip_hold = m;
            }
        });
    }

    pub fn rules(&self) -> &Arc<Ruleset> {
        &self.rules
    }

    /// Events completed by the last [`Engine::process`] call.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    pub fn defrag_stats(&self) -> crate::defrag::DefragStats {
        self.defrag.stats
    }

    /// Expire idle flows and fragments as of `now` (end of a capture).
    pub fn expire(&mut self, now: u64) {
        self.flows.expire_all(now, &mut self.pool);
        self.defrag.expire(now);
    }

    fn default_decision(&self) -> Decision {
        Decision {
            verdict: Verdict::of(&self.rules.meta.default_action),
            rule: None,
            decided_now: false,
        }
    }

    fn count(&mut self, d: Decision, len: usize) -> Decision {
        let v = d.verdict as usize;
        self.counters.packets_by_verdict[v] += 1;
        self.counters.bytes_by_verdict[v] += len as u64;
        d
    }

    /// Run one frame through the core. `ts` is the capture or arrival time
    /// in nanoseconds; it is the only clock the core knows.
    pub fn process(&mut self, ts: u64, link: LinkType, frame: &[u8]) -> Decision {
        self.index += 1;
        self.now = self.now.max(ts);
        self.counters.packets += 1;
        self.counters.bytes += frame.len() as u64;
        self.events.clear();
        self.flows.sweep(self.now, &mut self.pool);
        let d = match decode(link, frame) {
            Decoded::Packet(p) => self.packet(&p),
            Decoded::NotIp => {
                self.counters.not_ip += 1;
                Decision {
                    verdict: Verdict::Pass,
                    rule: None,
                    decided_now: false,
                }
            }
            Decoded::Malformed(problem) => {
                self.counters.problems[problem as usize] += 1;
                self.default_decision()
            }
            Decoded::Fragment(f) => {
                let mut datagram = std::mem::take(&mut self.datagram);
                let d = if self.profile.defragment && self.defrag.add(self.now, &f, &mut datagram) {
                    match resume_ip(&f, &datagram) {
                        Decoded::Packet(p) => self.packet(&p),
                        Decoded::Malformed(problem) => {
                            self.counters.problems[problem as usize] += 1;
                            self.ip_only(f.src, f.dst)
                        }
                        _ => self.ip_only(f.src, f.dst),
                    }
                } else {
                    // A fragment on its own: the addresses are all there is.
                    self.ip_only(f.src, f.dst)
                };
                self.datagram = datagram;
                d
            }
        };
        self.count(d, frame.len())
    }

    /// IP rules for a packet whose transport layer is not available.
    fn ip_only(&mut self, src: IpAddr, dst: IpAddr) -> Decision {
        match self.ip_match(src, dst) {
            Some(m) => Decision {
                verdict: Verdict::of(&self.rules.rule(m.rule).action),
                rule: Some(m.rule),
                decided_now: false,
            },
            None => self.default_decision(),
        }
    }

    fn ip_match(&self, src: IpAddr, dst: IpAddr) -> Option<Match> {
        let a = self.rules.match_ip(src);
        let b = self.rules.match_ip(dst);
        earlier(a, b)
    }

    fn packet(&mut self, p: &Packet<'_>) -> Decision {
        if let Some(problem) = p.problem {
            self.counters.problems[problem as usize] += 1;
        }
        let (proto, sport, dport, flags) = match p.l4 {
            L4::Tcp(t) => (6, t.sport, t.dport, t.flags),
            L4::Udp(u) => (17, u.sport, u.dport, 0),
            L4::Other(proto) => (proto, 0, 0, 0),
        };
        let (key, from_a) = FlowKey::new(p.ctx, proto, p.src, sport, p.dst, dport);
        let idx = match self.flows.get(&key) {
            Some(i) => i,
            None => {
                let client_is_src = client_is_sender(proto, flags, sport, dport);
                let client_is_a = from_a == client_is_src;
                let state = if proto == 6 { State::Syn } else { State::Udp };
                let mut f = Flow::new(key, client_is_a, self.now, state);
                // IP rules first, once per flow.
                if let Some(m) = self.ip_match(p.src, p.dst) {
                    let v = Verdict::of(&self.rules.rule(m.rule).action);
                    if v.forwards() {
                        f.ip_hold = Some(m);
                    } else {
                        f.verdict = Some((v, Some(m.rule)));
                        f.inspect = Inspect::Done;
                        self.push_event(
                            p,
                            sport,
                            dport,
                            proto,
                            Trigger::Ip,
                            b"",
                            false,
                            false,
                            Some(m),
                            v,
                        );
                        self.counters.decisions_by_trigger[Trigger::Ip.index()] += 1;
                    }
                }
                let idx = self.flows.insert(f, &mut self.pool);
                if let Some((v, rule)) = self.flows.flow(idx).verdict {
                    self.flows.flow(idx).packets = 1;
                    return Decision {
                        verdict: v,
                        rule,
                        decided_now: true,
                    };
                }
                idx
            }
        };
        let now = self.now;
        let flow = self.flows.flow(idx);
        flow.last_seen = now;
        flow.packets += 1;
        if proto == 6 {
            if flags & (TCP_FIN | TCP_RST) != 0 {
                flow.state = State::Closing;
            } else if flags & TCP_ACK != 0 && flow.state == State::Syn && flags & TCP_SYN == 0 {
                flow.state = State::Established;
            }
        }
        if let Some((v, rule)) = flow.verdict {
            return Decision {
                verdict: v,
                rule,
                decided_now: false,
            };
        }
        let from_client = flow.from_client(from_a);
        let inspect = flow.inspect;
        if inspect == Inspect::Done
            || (!from_client && self.profile.direction == Direction::ClientToServer)
        {
            return self.undecided(idx);
        }
        match p.l4 {
            L4::Tcp(t) => self.tcp(idx, p, &t, from_client),
            L4::Udp(u) => self.udp(idx, p, &u, from_client),
            L4::Other(_) => self.undecided(idx),
        }
    }

    /// No decision yet: a held `pass`/`log` IP match, or the default.
    fn undecided(&mut self, idx: u32) -> Decision {
        match self.flows.flow(idx).ip_hold {
            Some(m) => Decision {
                verdict: Verdict::of(&self.rules.rule(m.rule).action),
                rule: Some(m.rule),
                decided_now: false,
            },
            None => self.default_decision(),
        }
    }

    fn port_inspected(&self, server_port: u16) -> bool {
        self.profile.inspect_ports.is_empty() || self.profile.inspect_ports.contains(&server_port)
    }

    /// Charge a data packet to the flow's inspection budget; false once spent.
    fn budget(&mut self, idx: u32, len: usize) -> bool {
        let (mp, mb) = (
            self.profile.max_inspect_packets,
            self.profile.max_inspect_bytes,
        );
        let f = self.flows.flow(idx);
        if f.inspected_packets >= mp || f.inspected_bytes as usize >= mb as usize {
            f.inspect = Inspect::Done;
            if let Some(b) = f.buf.take() {
                self.pool.give(b);
            }
            self.counters.inspection_budget_exhausted += 1;
            return false;
        }
        f.inspected_packets += 1;
        f.inspected_bytes = f.inspected_bytes.saturating_add(len as u32);
        true
    }

    fn give_up(&mut self, idx: u32) {
        let f = self.flows.flow(idx);
        f.inspect = Inspect::Done;
        if let Some(b) = f.buf.take() {
            self.pool.give(b);
        }
    }

    fn tcp(
        &mut self,
        idx: u32,
        p: &Packet<'_>,
        t: &crate::wire::l4::Tcp<'_>,
        from_client: bool,
    ) -> Decision {
        let syn = t.flags & TCP_SYN != 0;
        // Sequence number of the first payload byte (SYN occupies one).
        let data_seq = if syn { t.seq.wrapping_add(1) } else { t.seq };
        if from_client {
            let f = self.flows.flow(idx);
            if syn && t.flags & TCP_ACK == 0 {
                f.seq_base = Some(data_seq);
            }
        }
        if t.payload.is_empty() {
            return self.undecided(idx);
        }
        if !self.budget(idx, t.payload.len()) {
            return self.undecided(idx);
        }
        let server_port = if from_client { t.dport } else { t.sport };
        let dns_port = t.sport == 53 || t.dport == 53;
        if !from_client {
            // Direction::Both: look at this segment alone, no reassembly.
            return self.tcp_inspect_slice(idx, p, t, t.payload, dns_port, server_port);
        }
        if !self.profile.reassemble_client_hello {
            let f = self.flows.flow(idx);
            if f.inspect != Inspect::Start {
                // Old-style DPI: the first data segment only.
                self.give_up(idx);
                return self.undecided(idx);
            }
            return self.tcp_inspect_slice(idx, p, t, t.payload, dns_port, server_port);
        }
        // Fast path: the whole ClientHello at the start of the stream, in
        // this one segment, nothing held yet: parse it where it lies, with
        // no copy into a flow buffer.
        {
            let f = self.flows.flow(idx);
            let base = *f.seq_base.get_or_insert(data_seq);
            let fresh = f.buf.is_none()
                && data_seq == base
                && matches!(f.inspect, Inspect::Start | Inspect::Tls);
            if fresh && !dns_port && t.payload[0] == 0x16 && self.port_inspected(server_port) {
                let mut scratch = std::mem::take(&mut self.scratch);
                let progress = tls::gather(t.payload, &mut scratch, MAX_CLIENT_HELLO);
                self.scratch = scratch;
                if let tls::Progress::Complete {
                    len,
                    in_stream: true,
                } = progress
                {
                    self.flows.flow(idx).inspect = Inspect::Tls;
                    return self.decide_hello(idx, p, Trigger::TlsSni, &t.payload[5..len]);
                }
            }
        }
        let (max_b, max_s) = (
            self.profile.reassembly_max_bytes as usize,
            self.profile.reassembly_max_segments as usize,
        );
        let mut buf = {
            let f = self.flows.flow(idx);
            let base = *f.seq_base.get_or_insert(data_seq);
            let rel = data_seq.wrapping_sub(base) as i32;
            let mut buf = match f.buf.take() {
                Some(b) => b,
                None => self.pool.take(),
            };
            // Segments before the stream start (retransmitted SYN data, or a
            // capture that began mid-flow) are skipped.
            let (off, data) = if rel < 0 {
                let skip = (-(rel as i64)) as usize;
                (0u64, t.payload.get(skip..).unwrap_or(&[]))
            } else {
                (rel as u64, t.payload)
            };
            match buf.insert(off, data, max_b, max_s) {
                Ok(()) => {}
                Err(CapHit::Bytes) => self.counters.reassembly_cap_bytes += 1,
                Err(CapHit::Ranges) => self.counters.reassembly_cap_segments += 1,
            }
            buf
        };
        let d = self.tcp_stream(idx, p, t, &mut buf, dns_port, server_port);
        let f = self.flows.flow(idx);
        if f.inspect == Inspect::Done || f.verdict.is_some() {
            self.pool.give(buf);
        } else {
            f.buf = Some(buf);
        }
        d
    }

    /// Inspect one segment's payload on its own.
    fn tcp_inspect_slice(
        &mut self,
        idx: u32,
        p: &Packet<'_>,
        t: &crate::wire::l4::Tcp<'_>,
        data: &[u8],
        dns_port: bool,
        server_port: u16,
    ) -> Decision {
        // A reused buffer: this runs per segment in `direction: both` and
        // without reassembly, and must not allocate each time.
        let mut one = std::mem::take(&mut self.slice);
        one.clear();
        let d = if one.insert(0, data, usize::MAX >> 1, 1).is_err() {
            self.undecided(idx)
        } else {
            self.tcp_stream(idx, p, t, &mut one, dns_port, server_port)
        };
        self.slice = one;
        if self.flows.flow(idx).verdict.is_none()
            && self.flows.flow(idx).inspect != Inspect::Done
            && !self.profile.reassemble_client_hello
        {
            self.give_up(idx);
        }
        d
    }

    /// Run the extractor for this flow over the contiguous client stream.
    fn tcp_stream(
        &mut self,
        idx: u32,
        p: &Packet<'_>,
        t: &crate::wire::l4::Tcp<'_>,
        buf: &mut crate::reasm::Reassembly,
        dns_port: bool,
        server_port: u16,
    ) -> Decision {
        let (sport, dport) = (t.sport, t.dport);
        let mut decision = self.undecided(idx);
        loop {
            let data = buf.contiguous();
            if data.is_empty() {
                return decision;
            }
            let kind = match self.flows.flow(idx).inspect {
                Inspect::Start => {
                    if dns_port {
                        Inspect::DnsTcp
                    } else if data[0] == 0x16 && self.port_inspected(server_port) {
                        Inspect::Tls
                    } else if http::looks_like_request(data) && self.port_inspected(server_port) {
                        Inspect::Http
                    } else {
                        self.give_up(idx);
                        return decision;
                    }
                }
                k => k,
            };
            self.flows.flow(idx).inspect = kind;
            match kind {
                Inspect::Tls => {
                    let mut scratch = std::mem::take(&mut self.scratch);
                    let progress = tls::gather(data, &mut scratch, MAX_CLIENT_HELLO);
                    let d = match progress {
                        tls::Progress::Complete { len, in_stream } => {
                            let msg = if in_stream {
                                &data[5..len]
                            } else {
                                &scratch[..len]
                            };
                            self.decide_hello(idx, p, Trigger::TlsSni, msg)
                        }
                        tls::Progress::NeedMore => self.undecided(idx),
                        tls::Progress::TooLarge => {
                            self.counters.client_hello_too_large += 1;
                            self.give_up(idx);
                            self.undecided(idx)
                        }
                        tls::Progress::NotTls => {
                            self.give_up(idx);
                            self.undecided(idx)
                        }
                    };
                    self.scratch = scratch;
                    return d;
                }
                Inspect::Http => match http::request(data) {
                    http::Request::Complete { host, end, body } => {
                        let found = Found {
                            trigger: Trigger::HttpHost,
                            name: host.unwrap_or(b""),
                            ech: false,
                            grease: false,
                        };
                        if host.is_some() {
                            decision = self.decide_flow(idx, p, sport, dport, 6, &found);
                            if self.flows.flow(idx).verdict.is_some() {
                                return decision;
                            }
                        }
                        // Keep-alive: skip the body, look at the next request.
                        let total = end + body.unwrap_or(0);
                        if data.len() < total {
                            self.give_up(idx);
                            return decision;
                        }
                        buf.consume(total);
                    }
                    http::Request::NeedMore => return decision,
                    http::Request::NotHttp => {
                        self.give_up(idx);
                        return decision;
                    }
                },
                Inspect::DnsTcp => {
                    if data.len() < 2 {
                        return decision;
                    }
                    let n = usize::from(u16::from_be_bytes([data[0], data[1]]));
                    if data.len() < 2 + n {
                        return decision;
                    }
                    let msg = &data[2..2 + n];
                    let d = self.dns_message(p, sport, dport, 6, msg);
                    if d.rule.is_some() || d.decided_now {
                        decision = d;
                    }
                    buf.consume(2 + n);
                }
                _ => return decision,
            }
        }
    }

    /// Decide a flow on a ClientHello handshake message (TLS, or QUIC's
    /// CRYPTO stream), then stop inspecting it unless it was decided.
    fn decide_hello(&mut self, idx: u32, p: &Packet<'_>, trigger: Trigger, msg: &[u8]) -> Decision {
        let (sport, dport, proto) = match p.l4 {
            L4::Tcp(t) => (t.sport, t.dport, 6),
            L4::Udp(u) => (u.sport, u.dport, 17),
            L4::Other(proto) => (0, 0, proto),
        };
        let d = match tls::handshake(msg) {
            Some(ch) => {
                let found = Found {
                    trigger,
                    name: ch.sni.unwrap_or(b""),
                    ech: ch.ech,
                    grease: ch.grease,
                };
                self.decide_flow(idx, p, sport, dport, proto, &found)
            }
            None => self.undecided(idx),
        };
        self.give_up_if_undecided(idx);
        d
    }

    fn give_up_if_undecided(&mut self, idx: u32) {
        if self.flows.flow(idx).verdict.is_none() {
            self.give_up(idx);
        }
    }

    fn udp(
        &mut self,
        idx: u32,
        p: &Packet<'_>,
        u: &crate::wire::l4::Udp<'_>,
        from_client: bool,
    ) -> Decision {
        if u.sport == 53 || u.dport == 53 {
            // DNS is decided per query and never sticks to the flow.
            let d = self.dns_message(p, u.sport, u.dport, 17, u.payload);
            return if d.rule.is_some() || d.decided_now {
                d
            } else {
                self.undecided(idx)
            };
        }
        let server_port = if from_client { u.dport } else { u.sport };
        if u.payload
            .first()
            .is_none_or(|b| b & 0x80 == 0 && b & 0x08 == 0)
            || !self.port_inspected(server_port)
        {
            if self.flows.flow(idx).inspect == Inspect::Start {
                self.give_up(idx);
            }
            return self.undecided(idx);
        }
        if !self.budget(idx, u.payload.len()) {
            return self.undecided(idx);
        }
        self.quic(idx, p, u)
    }

    fn quic(&mut self, idx: u32, p: &Packet<'_>, u: &crate::wire::l4::Udp<'_>) -> Decision {
        let (sport, dport) = (u.sport, u.dport);
        // Google QUIC with the CHLO in clear (Q046 and older).
        if let Some(v) = quic::gquic_version(u.payload) {
            if v != quic::Q050 && quic::scheme(v).is_none() {
                self.flows.flow(idx).inspect = Inspect::Quic;
                if let Some(sni) = quic::gquic_clear_chlo(u.payload) {
                    let found = Found {
                        trigger: Trigger::QuicSni,
                        name: sni.unwrap_or(b""),
                        ech: false,
                        grease: false,
                    };
                    let d = self.decide_flow(idx, p, sport, dport, 17, &found);
                    self.give_up_if_undecided(idx);
                    return d;
                }
                return self.undecided(idx);
            }
        }
        let mut rest = u.payload;
        let mut google = false;
        let mut any_initial = false;
        let mut buf = None;
        let mut crypt = std::mem::take(&mut self.crypt);
        let (max_b, max_s) = (
            self.profile.reassembly_max_bytes as usize,
            self.profile.reassembly_max_segments as usize,
        );
        while let Some((pkt, next)) = quic::long_packet(rest) {
            rest = next;
            if !pkt.is_initial() {
                continue;
            }
            let Some(scheme) = quic::scheme(pkt.version) else {
                continue;
            };
            any_initial = true;
            self.counters.quic_initials += 1;
            google = scheme.google;
            let f = self.flows.flow(idx);
            if f.dcid_len == 0 {
                f.dcid[..pkt.dcid.len()].copy_from_slice(pkt.dcid);
                f.dcid_len = pkt.dcid.len() as u8;
            }
            let (orig, orig_len) = (f.dcid, f.dcid_len as usize);
            // Keys from this packet's DCID; after the server's first reply
            // the client's DCID changes but the keys stay those of the first.
            let mut plain = None;
            for dcid in [pkt.dcid, &orig[..orig_len]] {
                if let Some(keys) = quic::Keys::client(&scheme, dcid) {
                    if quic::decrypt(&pkt, &keys, &mut crypt).is_some() {
                        plain = Some(());
                        break;
                    }
                }
                if pkt.dcid == &orig[..orig_len] {
                    break;
                }
            }
            if plain.is_none() {
                self.counters.quic_decrypt_failures += 1;
                continue;
            }
            // `decrypt` left header + plaintext + tag in `crypt`.
            let hdr = pkt.pn_offset + usize::from(crypt[0] & 3) + 1;
            let plain = &crypt[hdr..crypt.len() - 16];
            let b = buf.get_or_insert_with(|| {
                let f = self.flows.flow(idx);
                f.buf.take().unwrap_or_else(|| self.pool.take())
            });
            let mut caps = (0, 0);
            quic::crypto_frames(plain, scheme.google, |off, data| {
                match b.insert(off, data, max_b, max_s) {
                    Ok(()) => {}
                    Err(CapHit::Bytes) => caps.0 += 1,
                    Err(CapHit::Ranges) => caps.1 += 1,
                }
            });
            self.counters.reassembly_cap_bytes += caps.0;
            self.counters.reassembly_cap_segments += caps.1;
        }
        self.crypt = crypt;
        if !any_initial {
            return self.undecided(idx);
        }
        self.flows.flow(idx).inspect = Inspect::Quic;
        let Some(mut b) = buf else {
            return self.undecided(idx);
        };
        let data = b.contiguous();
        let mut d = self.undecided(idx);
        let mut done = false;
        if google && data.starts_with(b"CHLO") {
            if let Some(sni) = quic::chlo_sni(data) {
                let found = Found {
                    trigger: Trigger::QuicSni,
                    name: sni.unwrap_or(b""),
                    ech: false,
                    grease: false,
                };
                d = self.decide_flow(idx, p, sport, dport, 17, &found);
                done = true;
            }
        } else if data.len() >= 4 {
            let n = u32::from_be_bytes([0, data[1], data[2], data[3]]) as usize + 4;
            if data[0] != 1 || n > MAX_CLIENT_HELLO {
                done = true;
            } else if data.len() >= n {
                d = self.decide_hello(idx, p, Trigger::QuicSni, &data[..n]);
                done = true;
            }
        }
        if done {
            b.clear();
            self.pool.give(b);
            self.give_up_if_undecided(idx);
        } else {
            self.flows.flow(idx).buf = Some(b);
        }
        d
    }

    /// Each question of a DNS query is its own decision.
    fn dns_message(
        &mut self,
        p: &Packet<'_>,
        sport: u16,
        dport: u16,
        proto: u8,
        msg: &[u8],
    ) -> Decision {
        let mut best: Option<Decision> = None;
        let mut names: [(NameBuf, bool); 4] = [(NameBuf::EMPTY, false); 4];
        let mut n = 0;
        let _ = dns::for_each_question(msg, |name, _qtype| {
            if n < names.len() {
                names[n] = (NameBuf::new(name), true);
                n += 1;
            }
        });
        for (name, _) in names.iter().take(n) {
            self.counters.dns_queries += 1;
            let found = Found {
                trigger: Trigger::DnsQname,
                name: name.as_bytes(),
                ech: false,
                grease: false,
            };
            let (d, _) = self.decide(None, p, sport, dport, proto, &found);
            if best.is_none_or(|b| {
                d.rule.is_some() && b.rule.is_none_or(|r| d.rule.is_some_and(|x| x < r))
            }) {
                best = Some(d);
            }
        }
        best.unwrap_or(Decision {
            verdict: Verdict::of(&self.rules.meta.default_action),
            rule: None,
            decided_now: false,
        })
    }

    /// Match a name for a flow and make the decision stick.
    fn decide_flow(
        &mut self,
        idx: u32,
        p: &Packet<'_>,
        sport: u16,
        dport: u16,
        proto: u8,
        found: &Found<'_>,
    ) -> Decision {
        let hold = self.flows.flow(idx).ip_hold;
        let (d, sticky) = self.decide(hold, p, sport, dport, proto, found);
        if sticky {
            self.flows.flow(idx).verdict = Some((d.verdict, d.rule));
        }
        if self.profile.reevaluate_on_reload {
            self.flows.flow(idx).seen = Some(Box::new((
                found.trigger,
                found.ech,
                NameBuf::new(found.name),
            )));
        }
        d
    }

    /// Match a name (plus a held IP match) and emit the event. Returns the
    /// decision and whether it should stick (a rule other than pass/log
    /// matched).
    fn decide(
        &mut self,
        hold: Option<Match>,
        p: &Packet<'_>,
        sport: u16,
        dport: u16,
        proto: u8,
        found: &Found<'_>,
    ) -> (Decision, bool) {
        let mut buf = [0u8; MAX_NAME_LEN];
        let matchable = if found.trigger == Trigger::HttpHost {
            http::host_for_match(found.name)
        } else {
            found.name
        };
        let name_match = normalize_wire(matchable, &mut buf)
            .and_then(|n| self.rules.match_hello(found.trigger, found.ech, n));
        let m = earlier(hold, name_match);
        let verdict = match &m {
            Some(m) => Verdict::of(&self.rules.rule(m.rule).action),
            None => Verdict::of(&self.rules.meta.default_action),
        };
        let trigger = match (m, name_match) {
            (Some(x), Some(n)) if x == n => found.trigger,
            (Some(_), _) => Trigger::Ip,
            (None, _) => found.trigger,
        };
        self.counters.decisions_by_trigger[trigger.index()] += 1;
        self.push_event(
            p,
            sport,
            dport,
            proto,
            found.trigger,
            found.name,
            found.ech,
            found.grease,
            m,
            verdict,
        );
        let d = Decision {
            verdict,
            rule: m.map(|m| m.rule),
            decided_now: true,
        };
        (d, m.is_some() && !verdict.forwards())
    }

    #[allow(clippy::too_many_arguments)]
    fn push_event(
        &mut self,
        p: &Packet<'_>,
        sport: u16,
        dport: u16,
        proto: u8,
        trigger: Trigger,
        name: &[u8],
        ech: bool,
        grease: bool,
        m: Option<Match>,
        verdict: Verdict,
    ) {
        if self.events.len() >= MAX_EVENTS_PER_PACKET {
            self.counters.events_dropped += 1;
            return;
        }
        self.events.push(Event {
            packet: self.index,
            ts: self.now,
            src: p.src,
            dst: p.dst,
            sport,
            dport,
            proto,
            trigger,
            name: NameBuf::new(name),
            ech,
            grease,
            rule: m.map(|m| m.rule),
            hit: m.map(|m| m.hit),
            verdict,
        });
    }
}

/// The match whose rule comes first in the policy; `a` on a tie.
fn earlier(a: Option<Match>, b: Option<Match>) -> Option<Match> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.rule < x.rule { y } else { x }),
        (x, y) => x.or(y),
    }
}

/// Who opened the flow, judged from its first packet: a SYN's sender, a
/// SYN-ACK's receiver; otherwise the sender, unless it sends from a
/// well-known port to an ephemeral one (a capture that starts mid-flow).
fn client_is_sender(proto: u8, flags: u8, sport: u16, dport: u16) -> bool {
    if proto == 6 && flags & TCP_SYN != 0 {
        return flags & TCP_ACK == 0;
    }
    !(sport < 1024 && dport >= 1024)
}
