//! `chokepoint export nftables`: a policy's IP rules as an nftables table,
//! so the kernel enforces millions of prefixes (interval sets) while the
//! bridge, if one runs, keeps the names.
//!
//! Each IP rule becomes one set per address family (its lists' prefixes
//! merged into the fewest CIDR blocks; `flags interval; auto-merge`) and,
//! in policy order, rules matching either address of a packet (the engine
//! looks both up; the earlier rule wins, as the first nftables rule that
//! matches does): `pass` → `accept`, `log` → `log` + `accept`, `drop` →
//! `drop`, `reset` and `redirect` → `reject with tcp reset` for TCP, `drop`
//! for the rest, `dns` → `drop`. `proto` and ports are expressed
//! (`meta l4proto`, `th dport`/`th sport`, the server's port taken as the
//! listed address's). What cannot be expressed (conditions on sizes,
//! versions, lists, first packet; `throttle`, `freeze`, `degrade`) is
//! exported as `accept` for the rule's addresses with a comment, so nftables
//! never blocks more than the policy does and later rules do not take those
//! addresses over: the bridge behind it decides them. Name rules, residual
//! blocks and a default other than `pass` are not expressed and are listed
//! in the header.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::conditions::Conditions;
use crate::ranges::{self, Range};
use crate::ruleset::RuleMeta;
use crate::{Action, Ruleset, Trigger};

/// Where the exported chain hooks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// Routed traffic (a box on the path): the default.
    Forward,
    /// Traffic to this host.
    Input,
    /// Traffic from this host.
    Output,
    /// Everything arriving, before routing.
    Prerouting,
}

impl Hook {
    fn as_str(self) -> &'static str {
        match self {
            Hook::Forward => "forward",
            Hook::Input => "input",
            Hook::Output => "output",
            Hook::Prerouting => "prerouting",
        }
    }
}

/// How to export.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `inet` table's name; the whole table is replaced on load.
    pub table: String,
    /// The chain's hook.
    pub hook: Hook,
    /// The chain's priority (filter is 0).
    pub priority: i32,
}

/// The exported ruleset and what it could not say.
#[derive(Clone, Debug, Default)]
pub struct Export {
    /// The `nft -f` input.
    pub text: String,
    /// What is not enforced as the policy says, one line each.
    pub warnings: Vec<String>,
    /// IP rules exported.
    pub rules: usize,
    /// CIDR elements in the IPv4 and IPv6 sets.
    pub elements: (usize, usize),
}

/// What becomes of an IP rule.
enum Verdict {
    Accept,
    Log,
    Drop,
    /// `reject with tcp reset` for TCP, drop for the rest.
    Reset,
    /// Not expressible: accepted, with the reason.
    LeftToBridge(String),
}

fn verdict(r: &RuleMeta) -> (Verdict, Option<String>) {
    let c = &r.cond;
    let plain = Conditions {
        proto: c.proto,
        dst_ports: c.dst_ports.clone(),
        src_ports: c.src_ports.clone(),
        ..Conditions::default()
    };
    if *c != plain {
        return (
            Verdict::LeftToBridge(
                "conditions other than proto and ports (sizes, QUIC versions, first packet, address lists, exceptions)".into(),
            ),
            None,
        );
    }
    match &r.action {
        Action::Pass => (Verdict::Accept, None),
        Action::Log => (Verdict::Log, None),
        Action::Drop => (Verdict::Drop, None),
        Action::Reset { .. } => (Verdict::Reset, None),
        Action::Redirect { .. } => (
            Verdict::Reset,
            Some("`redirect` on an address is exported as a TCP reset (no HTTP request has been seen at the SYN)".into()),
        ),
        Action::Dns { .. } => (
            Verdict::Drop,
            Some("`dns` on an address is exported as a drop (no answer is forged)".into()),
        ),
        a @ (Action::Throttle { .. }
        | Action::Freeze { .. }
        | Action::Degrade { .. }
        | Action::Learn { .. }) => (
            Verdict::LeftToBridge(format!(
                "`{}` needs per-flow state",
                a.verb()
            )),
            None,
        ),
    }
}

/// A string safe inside an nftables double-quoted comment or log prefix.
fn quoted(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(max)
        .collect()
}

fn port_set(ports: &[crate::conditions::PortRange]) -> String {
    let items: Vec<String> = ports
        .iter()
        .map(|p| {
            if p.lo == p.hi {
                p.lo.to_string()
            } else {
                format!("{}-{}", p.lo, p.hi)
            }
        })
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// The match on the transport for a rule whose listed address is the
/// destination (`toward`) or the source of the packet.
fn transport(c: &Conditions, toward: bool) -> String {
    let mut m = String::new();
    match c.proto {
        Some(6) => m.push_str(" meta l4proto tcp"),
        Some(17) => m.push_str(" meta l4proto udp"),
        Some(p) => {
            let _ = write!(m, " meta l4proto {p}");
        }
        None if !c.dst_ports.is_empty() || !c.src_ports.is_empty() => {
            m.push_str(" meta l4proto { tcp, udp }")
        }
        None => {}
    }
    // The listed address is the server's: its port is the packet's
    // destination port going to it, the source port coming from it.
    let (server, client) = if toward {
        ("dport", "sport")
    } else {
        ("sport", "dport")
    };
    if !c.dst_ports.is_empty() {
        let _ = write!(m, " th {server} {}", port_set(&c.dst_ports));
    }
    if !c.src_ports.is_empty() {
        let _ = write!(m, " th {client} {}", port_set(&c.src_ports));
    }
    m
}

fn element(addr: u128, len: u8, v6: bool) -> String {
    if v6 {
        format!("{}/{len}", Ipv6Addr::from(addr))
    } else {
        format!("{}/{len}", Ipv4Addr::from(addr as u32))
    }
}

/// Write one set; returns its element count.
fn set(o: &mut String, name: &str, ranges: &[Range], v6: bool) -> usize {
    let bits = if v6 { 128 } else { 32 };
    let mut blocks = Vec::new();
    for &(lo, hi) in ranges {
        ranges::to_cidrs(lo, hi, bits, &mut blocks);
    }
    let _ = writeln!(o, "\tset {name} {{");
    let _ = writeln!(
        o,
        "\t\ttype {}\n\t\tflags interval\n\t\tauto-merge",
        if v6 { "ipv6_addr" } else { "ipv4_addr" }
    );
    o.push_str("\t\telements = {");
    for (i, (a, l)) in blocks.iter().enumerate() {
        o.push_str(if i % 8 == 0 { "\n\t\t\t" } else { " " });
        o.push_str(&element(*a, *l, v6));
        if i + 1 < blocks.len() {
            o.push(',');
        }
    }
    o.push_str("\n\t\t}\n\t}\n");
    blocks.len()
}

/// Export `rs`'s IP rules as an nftables table.
pub fn export(rs: &Ruleset, opt: &Options) -> Export {
    let mut x = Export::default();
    let mut sets = String::new();
    let mut chain = String::new();
    let mut not_here = Vec::new();
    for (ri, r) in rs.meta.rules.iter().enumerate() {
        let names: Vec<&str> = r
            .triggers()
            .filter(|&t| t != Trigger::Ip)
            .map(|t| t.as_str())
            .collect();
        if !names.is_empty() {
            not_here.push(format!(
                "rule `{}` on {} (names: the bridge's job)",
                r.name,
                names.join(", ")
            ));
        }
        if r.on & Trigger::Ip.bit() == 0 {
            continue;
        }
        let (v4, v6) = ranges::rule_ranges(rs, &r.lists);
        if v4.is_empty() && v6.is_empty() {
            continue;
        }
        x.rules += 1;
        let (v, note) = verdict(r);
        if let Some(n) = note {
            x.warnings.push(format!("rule `{}`: {n}", r.name));
        }
        if r.residual.is_some() {
            x.warnings.push(format!(
                "rule `{}`: its residual block is not exported (the bridge keeps it)",
                r.name
            ));
        }
        let comment = quoted(&format!("chokepoint rule {}", r.name), 120);
        let _ = writeln!(sets, "\t# rule {ri}: {}", quoted(&r.name, 200));
        let (stmt, extra): (String, Option<String>) = match &v {
            Verdict::Accept => ("accept".into(), None),
            Verdict::Log => (
                format!(
                    "log prefix \"{}: \" accept",
                    quoted(&format!("chokepoint {}", r.name), 100)
                ),
                None,
            ),
            Verdict::Drop => ("drop".into(), None),
            Verdict::Reset => ("reject with tcp reset".into(), Some("drop".into())),
            Verdict::LeftToBridge(why) => {
                x.warnings.push(format!(
                    "rule `{}`: not expressible ({why}); its addresses are accepted here and left to the bridge",
                    r.name
                ));
                ("accept".into(), None)
            }
        };
        let cond = match v {
            Verdict::LeftToBridge(_) => Conditions::default(),
            _ => r.cond.clone(),
        };
        for (fam, ranges, v6) in [("ip", &v4, false), ("ip6", &v6, true)] {
            if ranges.is_empty() {
                continue;
            }
            let name = format!("r{ri}_{}", if v6 { "v6" } else { "v4" });
            let n = set(&mut sets, &name, ranges, v6);
            if v6 {
                x.elements.1 += n;
            } else {
                x.elements.0 += n;
            }
            for (dir, toward) in [("daddr", true), ("saddr", false)] {
                let t = transport(&cond, toward);
                if extra.is_some() && cond.proto.is_none_or(|p| p == 6) {
                    // reset: TCP gets a reset, everything else is dropped.
                    let tcp = Conditions {
                        proto: Some(6),
                        ..cond.clone()
                    };
                    let _ = writeln!(
                        chain,
                        "\t\t{fam} {dir} @{name}{} counter {stmt} comment \"{comment}\"",
                        transport(&tcp, toward)
                    );
                }
                let last = extra.as_deref().unwrap_or(&stmt);
                let _ = writeln!(
                    chain,
                    "\t\t{fam} {dir} @{name}{t} counter {last} comment \"{comment}\""
                );
            }
        }
    }
    if rs.meta.default_action != Action::Pass {
        x.warnings.push(format!(
            "the default `{}` is not exported: the chain's policy is accept",
            rs.meta.default_action.verb()
        ));
    }
    let mut o = String::new();
    let _ = writeln!(o, "#!/usr/sbin/nft -f");
    let _ = writeln!(
        o,
        "# chokepoint export nftables: the IP rules of {} (policy blake3 {}), in policy order.",
        quoted(&rs.meta.policy.path, 200),
        rs.meta.policy.blake3
    );
    let _ = writeln!(
        o,
        "# Load with `nft -f FILE`: one transaction that replaces table inet {} whole.",
        opt.table
    );
    for w in not_here.iter().chain(&x.warnings) {
        let _ = writeln!(o, "# not as the policy says: {}", quoted(w, 300));
    }
    let _ = writeln!(
        o,
        "table inet {t}\ndelete table inet {t}\ntable inet {t} {{",
        t = opt.table
    );
    o.push_str(&sets);
    let _ = writeln!(
        o,
        "\tchain filter {{\n\t\ttype filter hook {} priority {}; policy accept;",
        opt.hook.as_str(),
        opt.priority
    );
    o.push_str(&chain);
    o.push_str("\t}\n}\n");
    x.text = o;
    x.warnings.splice(0..0, not_here);
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            table: "chokepoint".into(),
            hook: Hook::Forward,
            priority: 0,
        }
    }

    #[test]
    fn ip_rules_become_sets_and_rules_in_policy_order() {
        let rs = crate::compile_str(
            r#"
version: 1
lists:
  ok: {format: cidr, entries: [198.18.23.130/32]}
  bad: {format: cidr, entries: [198.18.23.128/25, 198.18.23.0/25, "fd00:198:18::23:0/112"]}
  rst: {format: cidr, entries: [198.18.22.0/24]}
  web: {format: cidr, entries: [198.18.21.0/24]}
  slow: {format: cidr, entries: [198.18.20.0/24]}
  names: {format: domains, entries: [t.me]}
rules:
  - {name: allow-one, match: {list: ok}, action: pass}
  - {name: block, match: {list: bad}, action: drop}
  - {name: rst, match: {list: rst, proto: tcp}, action: reset}
  - {name: web, match: {list: web, dst_ports: [443, "8000-8080"]}, action: drop}
  - {name: slow, match: {list: slow}, action: {throttle: {kbps: 100}}}
  - {name: names, match: {list: names}, action: reset}
"#,
            "p.yaml",
            std::path::Path::new("."),
        )
        .unwrap();
        let x = export(&rs, &opts());
        let t = &x.text;
        // The two /25s merge into one /24 element.
        assert!(t.contains("198.18.23.0/24\n"), "{t}");
        assert!(t.contains("fd00:198:18::23:0/112"), "{t}");
        let pos = |s: &str| t.find(s).unwrap_or_else(|| panic!("{s} not in {t}"));
        assert!(pos("ip daddr @r0_v4 counter accept") < pos("ip daddr @r1_v4 counter drop"));
        assert!(t.contains("ip6 saddr @r1_v6 counter drop"));
        assert!(t.contains("ip daddr @r2_v4 meta l4proto tcp counter reject with tcp reset"));
        assert!(t.contains(
            "ip daddr @r3_v4 meta l4proto { tcp, udp } th dport { 443, 8000-8080 } counter drop"
        ));
        assert!(t.contains(
            "ip saddr @r3_v4 meta l4proto { tcp, udp } th sport { 443, 8000-8080 } counter drop"
        ));
        assert!(
            t.contains("ip daddr @r4_v4 counter accept"),
            "throttle left to the bridge: {t}"
        );
        assert!(!t.contains("@r5"));
        assert_eq!(x.rules, 5);
        assert_eq!(x.elements, (5, 1));
        assert!(x
            .warnings
            .iter()
            .any(|w| w.contains("`slow`") && w.contains("per-flow state")));
        assert!(x.warnings.iter().any(|w| w.contains("`names` on tls_sni")));
        assert!(t.starts_with("#!/usr/sbin/nft -f\n"));
        assert!(t.contains(
            "table inet chokepoint\ndelete table inet chokepoint\ntable inet chokepoint {"
        ));
    }
}
