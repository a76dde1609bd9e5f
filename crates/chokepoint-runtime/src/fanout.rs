//! The kernel side of worker sharding: a classic BPF program for
//! `PACKET_FANOUT_CBPF` that computes [`decode::fanout_hash`] on every
//! frame, so the kernel puts each frame in the ring of the worker that
//! owns its flow, exactly as [`decode::worker_for`] would.
//!
//! Why not `PACKET_FANOUT_HASH`: the kernel hashes
//! `__skb_get_hash_symmetric` (the flow dissector with symmetric keys), which
//! keeps both directions together but takes the ports in, and the dissector
//! stops at an IP fragment (without `FLOW_DISSECTOR_F_PARSE_1ST_FRAG`, even
//! the first fragment's ports are not read). A TCP segment and the fragments
//! of the next one would land on different workers. The program below
//! hashes addresses only, as the engine's flow placement requires.
//!
//! What the kernel hands the program: `skb->protocol` (ancillary load
//! `SKF_AD_PROTOCOL`) and the bytes from the network header on
//! (`SKF_NET_OFF`), the outer VLAN tag already taken off into metadata.
//! A load past the end of the linear data ends the program with 0; the
//! kernel takes the return value modulo the group's size.
//!
//! [`decode::fanout_hash`]: chokepoint_core::decode::fanout_hash
//! [`decode::worker_for`]: chokepoint_core::decode::worker_for

/// One classic BPF instruction, as `struct sock_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant.
    pub k: u32,
}

// Opcode parts (linux/filter.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const MUL: u16 = 0x20;
const ADD: u16 = 0x00;
const AND: u16 = 0x50;
const RSH: u16 = 0x70;
const XOR: u16 = 0xa0;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const K: u16 = 0x00;
const X: u16 = 0x08;
const RA: u16 = 0x10;
const TAX: u16 = 0x00;
const TXA: u16 = 0x80;

/// `SKF_AD_OFF + SKF_AD_PROTOCOL`: `ntohs(skb->protocol)`.
const AD_PROTOCOL: u32 = (-0x1000i32) as u32;
/// `SKF_NET_OFF`: loads relative to the network header.
const NET: u32 = (-0x10_0000i32) as u32;

const K1: u32 = 0x9e37_79b1;
const K2: u32 = 0x85eb_ca6b;

/// Scratch words the program uses.
const M_TMP: u32 = 0;
const M_A: u32 = 1;
const M_B: u32 = 2;
const M_OFF: u32 = 15;

/// A tiny assembler: forward jumps to named labels, resolved at the end.
#[derive(Default)]
struct Asm {
    code: Vec<Insn>,
    /// (instruction, true label, false label); `None` falls through.
    jumps: Vec<(usize, Option<&'static str>, Option<&'static str>)>,
    labels: Vec<(&'static str, usize)>,
}

impl Asm {
    fn op(&mut self, code: u16, k: u32) -> &mut Self {
        self.code.push(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        });
        self
    }
    fn jump(&mut self, code: u16, k: u32, t: Option<&'static str>, f: Option<&'static str>) {
        self.jumps.push((self.code.len(), t, f));
        self.op(code, k);
    }
    /// `if A == k goto t else goto f` (`None`: the next instruction).
    fn jeq(&mut self, k: u32, t: Option<&'static str>, f: Option<&'static str>) {
        self.jump(JMP | JEQ | K, k, t, f);
    }
    fn ja(&mut self, to: &'static str) {
        self.jumps.push((self.code.len(), Some(to), None));
        self.op(JMP | JA, 0);
    }
    fn label(&mut self, name: &'static str) {
        self.labels.push((name, self.code.len()));
    }
    /// `X += n`, keeping A.
    fn add_x(&mut self, n: u32) {
        self.op(ST, M_TMP)
            .op(MISC | TXA, 0)
            .op(ALU | ADD | K, n)
            .op(MISC | TAX, 0)
            .op(LD | MEM, M_TMP);
    }
    fn finish(mut self) -> Vec<Insn> {
        let at = |labels: &[(&str, usize)], l: &str| {
            labels
                .iter()
                .find(|(n, _)| *n == l)
                .map(|(_, i)| *i)
                .unwrap_or_else(|| panic!("label {l}"))
        };
        for (i, t, f) in std::mem::take(&mut self.jumps) {
            let rel = |l: Option<&str>| -> usize {
                l.map_or(0, |l| {
                    let to = at(&self.labels, l);
                    assert!(to > i, "jumps go forward only");
                    to - i - 1
                })
            };
            if self.code[i].code == JMP | JA {
                self.code[i].k = rel(t) as u32;
            } else {
                let (jt, jf) = (rel(t), rel(f));
                assert!(jt < 256 && jf < 256, "jump too long");
                self.code[i].jt = jt as u8;
                self.code[i].jf = jf as u8;
            }
        }
        self.code
    }
}

/// The fanout program: [`chokepoint_core::decode::fanout_hash`] over the
/// frame as the kernel presents it (see the module's text).
pub fn program() -> Vec<Insn> {
    let mut a = Asm::default();
    a.op(LD | W | ABS, AD_PROTOCOL).op(LDX | IMM, 0);
    // One VLAN tag left in the data (802.1ad outer + 802.1Q inner: the
    // kernel took the outer one off).
    a.jeq(0x8100, Some("vlan"), None);
    a.jeq(0x88a8, Some("vlan"), Some("l3"));
    a.label("vlan");
    a.op(LD | H | IND, NET.wrapping_add(2)).op(LDX | IMM, 4);
    a.label("l3");
    a.jeq(0x8864, Some("pppoe"), None);
    a.jeq(0x8847, Some("mpls"), None);
    a.jeq(0x8848, Some("mpls"), None);
    a.jeq(0x0800, Some("v4"), None);
    a.jeq(0x86dd, Some("v6"), Some("zero"));
    a.label("pppoe");
    a.op(LD | H | IND, NET.wrapping_add(6));
    a.add_x(8);
    a.jeq(0x0021, Some("v4"), None);
    a.jeq(0x0057, Some("v6"), Some("zero"));
    // Up to 8 labels: the bottom-of-stack bit is bit 0 of a label's
    // third byte.
    a.label("mpls");
    for _ in 0..8 {
        a.op(LD | B | IND, NET.wrapping_add(2)).op(ALU | AND | K, 1);
        a.add_x(4);
        a.jeq(1, Some("bottom"), None);
    }
    a.ja("zero");
    a.label("bottom");
    a.op(LD | B | IND, NET).op(ALU | RSH | K, 4);
    a.jeq(4, Some("v4"), None);
    a.jeq(6, Some("v6"), Some("zero"));
    a.label("v4");
    a.op(LD | W | IND, NET.wrapping_add(12)).op(ST, M_A);
    a.op(LD | W | IND, NET.wrapping_add(16)).op(ST, M_B);
    a.ja("combine");
    a.label("v6");
    a.op(STX, M_OFF);
    for (base, slot) in [(8u32, M_A), (24, M_B)] {
        // acc = w0·K1; acc = (acc ⊕ w1)·K1; acc = (acc ⊕ w2)·K1; acc ⊕ w3
        a.op(LD | W | IND, NET.wrapping_add(base))
            .op(ALU | MUL | K, K1)
            .op(ST, M_TMP);
        for word in 1..4u32 {
            a.op(LD | W | IND, NET.wrapping_add(base + 4 * word))
                .op(LDX | MEM, M_TMP)
                .op(ALU | XOR | X, 0);
            if word < 3 {
                a.op(ALU | MUL | K, K1).op(ST, M_TMP);
            } else {
                a.op(ST, slot);
            }
            a.op(LDX | MEM, M_OFF);
        }
    }
    a.label("combine");
    a.op(LD | MEM, M_A).op(LDX | MEM, M_B);
    // lo = min(a, b), hi = max(a, b); h = (lo·K2 ⊕ hi)·K1
    a.jump(JMP | JGT | X, 0, Some("b_lo"), None);
    a.op(ALU | MUL | K, K2).op(ALU | XOR | X, 0);
    a.ja("mix");
    a.label("b_lo");
    a.op(MISC | TXA, 0)
        .op(ALU | MUL | K, K2)
        .op(LDX | MEM, M_A)
        .op(ALU | XOR | X, 0);
    a.label("mix");
    a.op(ALU | MUL | K, K1)
        .op(ST, M_TMP)
        .op(ALU | RSH | K, 16)
        .op(LDX | MEM, M_TMP)
        .op(ALU | XOR | X, 0)
        .op(RET | RA, 0);
    a.label("zero");
    a.op(RET | K, 0);
    a.finish()
}

/// Run `prog` as the kernel does on a frame received on an Ethernet
/// device: the Ethernet header and the outer VLAN tag (if any) taken off,
/// `skb->protocol` the ethertype after them. For tests: the program and
/// [`chokepoint_core::decode::fanout_hash`] must agree on every frame.
pub fn run_on_frame(prog: &[Insn], frame: &[u8]) -> u32 {
    let Some(t) = frame.get(12..14) else {
        // Not a frame the kernel would deliver.
        return 0;
    };
    let mut proto = u16::from_be_bytes([t[0], t[1]]);
    let mut net = &frame[14..];
    if proto == 0x8100 || proto == 0x88a8 {
        let Some(inner) = net.get(2..4) else { return 0 };
        proto = u16::from_be_bytes([inner[0], inner[1]]);
        net = &net[4..];
    }
    interpret(prog, proto, net)
}

/// A classic BPF interpreter for the opcodes [`program`] uses, with the
/// kernel's semantics for them (32-bit wrapping arithmetic; a load out of
/// bounds returns 0 from the program).
fn interpret(prog: &[Insn], proto: u16, net: &[u8]) -> u32 {
    let (mut a, mut x) = (0u32, 0u32);
    let mut m = [0u32; 16];
    let mut pc = 0usize;
    let load = |k: u32, size: usize| -> Option<u32> {
        if k == AD_PROTOCOL {
            return Some(u32::from(proto));
        }
        let off = (k as i32).checked_sub(NET as i32)?;
        let off = usize::try_from(off).ok()?;
        let b = net.get(off..off + size)?;
        Some(b.iter().fold(0u32, |v, &c| (v << 8) | u32::from(c)))
    };
    loop {
        let i = prog[pc];
        pc += 1;
        let class = i.code & 0x07;
        let size = match i.code & 0x18 {
            W => 4,
            H => 2,
            _ => 1,
        };
        match class {
            LD => match i.code & 0xe0 {
                ABS => match load(i.k, size) {
                    Some(v) => a = v,
                    None => return 0,
                },
                IND => match load(x.wrapping_add(i.k), size) {
                    Some(v) => a = v,
                    None => return 0,
                },
                MEM => a = m[i.k as usize],
                IMM => a = i.k,
                op => panic!("ld mode {op:#x}"),
            },
            LDX => match i.code & 0xe0 {
                IMM => x = i.k,
                MEM => x = m[i.k as usize],
                op => panic!("ldx mode {op:#x}"),
            },
            ST => m[i.k as usize] = a,
            STX => m[i.k as usize] = x,
            ALU => {
                let v = if i.code & X != 0 { x } else { i.k };
                a = match i.code & 0xf0 {
                    ADD => a.wrapping_add(v),
                    MUL => a.wrapping_mul(v),
                    AND => a & v,
                    RSH => a >> v,
                    XOR => a ^ v,
                    op => panic!("alu {op:#x}"),
                };
            }
            JMP => {
                let v = if i.code & X != 0 { x } else { i.k };
                let taken = match i.code & 0xf0 {
                    JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    JEQ => a == v,
                    JGT => a > v,
                    op => panic!("jmp {op:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            RET => return if i.code & RA != 0 { a } else { i.k },
            MISC => {
                if i.code & 0xf8 == TXA {
                    a = x;
                } else {
                    x = a;
                }
            }
            _ => panic!("class {class}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chokepoint_core::decode::fanout_hash;
    use chokepoint_core::LinkType;
    use chokepoint_testkit::synth;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn eth(payload: &[u8], ethertype: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn tagged(tpids: &[u16], inner_type: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        for (i, t) in tpids.iter().enumerate() {
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        f.extend_from_slice(&inner_type.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Frames of every shape the program reads, and some it does not.
    fn corpus() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let pairs = [
            ("198.18.0.1", "198.18.0.2"),
            ("198.18.0.2", "198.18.0.1"),
            ("10.1.2.3", "203.0.113.9"),
            ("fd00:198:18::1", "fd00:198:18::2"),
            ("2001:db8::1", "2001:db8:ffff::77"),
        ];
        for (s, d) in pairs {
            let (s, d) = (ip(s), ip(d));
            let seg = synth::tcp_segment(s, d, 40000, 443, 1, 0, 0x02, b"");
            let pkt = synth::ip_packet(s, d, 6, &seg);
            let v6 = s.is_ipv6();
            let et = if v6 { 0x86dd } else { 0x0800 };
            out.push(eth(&pkt, et));
            out.push(tagged(&[0x8100], et, &pkt));
            out.push(tagged(&[0x88a8, 0x8100], et, &pkt));
            out.push(tagged(&[0x88a8, 0x8100, 0x8100], et, &pkt));
            // PPPoE session: version/type, code, session, length, PPP proto
            let mut pppoe = vec![0x11, 0, 0x12, 0x34, 0, 0];
            pppoe.extend_from_slice(&(if v6 { 0x0057u16 } else { 0x0021 }).to_be_bytes());
            pppoe.extend_from_slice(&pkt);
            out.push(eth(&pppoe, 0x8864));
            let mut lcp = pppoe.clone();
            lcp[6..8].copy_from_slice(&0xc021u16.to_be_bytes());
            out.push(eth(&lcp, 0x8864));
            // MPLS stacks of 1, 3, 8 and 9 labels
            for depth in [1usize, 3, 8, 9] {
                let mut m = Vec::new();
                for l in 0..depth {
                    let bos = u8::from(l + 1 == depth);
                    m.extend_from_slice(&[0x00, 0x10 + l as u8, bos, 64]);
                }
                m.extend_from_slice(&pkt);
                out.push(eth(&m, 0x8847));
                out.push(tagged(&[0x8100], 0x8848, &m));
            }
            if !v6 {
                for f in synth::ipv4_fragments(&synth::ip_packet(s, d, 17, &[7u8; 600]), 200) {
                    out.push(eth(&f, 0x0800));
                }
            }
            // every truncation of the plain frame and of an MPLS one
            let plain = eth(&pkt, et);
            for n in 0..plain.len().min(80) {
                out.push(plain[..n].to_vec());
            }
        }
        out.push(eth(&[0u8; 28], 0x0806)); // ARP
        out.push(eth(&[0x45; 10], 0x0800)); // short IPv4
                                            // pseudo-random frames under every ethertype the program knows
        let mut seed = 0x1234_5678u32;
        for et in [0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x8864, 0x8847, 0x8848] {
            for len in [0usize, 3, 17, 40, 64, 90] {
                let body: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        seed as u8
                    })
                    .collect();
                out.push(eth(&body, et));
            }
        }
        out
    }

    #[test]
    fn the_program_computes_fanout_hash_on_every_frame() {
        let prog = program();
        assert!(prog.len() < 4096, "{} instructions", prog.len());
        let mut nonzero = 0;
        for f in corpus() {
            let want = fanout_hash(LinkType::Ethernet, &f);
            assert_eq!(run_on_frame(&prog, &f), want, "frame {f:02x?}");
            nonzero += usize::from(want != 0);
        }
        assert!(nonzero > 50, "{nonzero}");
    }

    #[test]
    fn the_program_agrees_on_the_bundled_sample() {
        let prog = program();
        let sample = chokepoint_testkit::sample::telegram_2018();
        let mut n = 0;
        crate::capture::read_slice("sample", &sample, &mut |r| {
            if r.link == LinkType::Ethernet {
                assert_eq!(
                    run_on_frame(&prog, r.data),
                    fanout_hash(LinkType::Ethernet, r.data),
                    "record {}",
                    r.index
                );
                n += 1;
            }
        })
        .unwrap();
        assert!(n > 20, "{n}");
    }

    #[test]
    fn both_directions_and_all_fragments_share_a_hash() {
        let (c, s) = (ip("198.18.24.10"), ip("198.18.25.20"));
        let up = synth::ip_packet(c, s, 6, &synth::tcp_segment(c, s, 1, 2, 0, 0, 0x02, b""));
        let down = synth::ip_packet(s, c, 6, &synth::tcp_segment(s, c, 2, 1, 0, 0, 0x12, b""));
        let h = fanout_hash(LinkType::Ethernet, &eth(&up, 0x0800));
        assert_ne!(h, 0);
        assert_eq!(h, fanout_hash(LinkType::Ethernet, &eth(&down, 0x0800)));
        for f in synth::ipv4_fragments(&synth::ip_packet(c, s, 6, &[1u8; 900]), 128) {
            assert_eq!(h, fanout_hash(LinkType::Ethernet, &eth(&f, 0x0800)));
        }
    }
}
