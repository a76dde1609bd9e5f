//! The shared vocabulary of policies, the compiler, the artifact and the
//! packet core: what a rule matches on ([`Trigger`]), what it does
//! ([`Action`], reduced to a [`Verdict`] per packet), and the list formats.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// What a rule matches on. The packet core reports which of these produced a
/// name (or, for `Ip`, that an address matched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An address matched an IP-prefix rule.
    Ip,
    /// The SNI of a TLS ClientHello over TCP.
    TlsSni,
    /// The SNI of a ClientHello inside QUIC Initial packets.
    QuicSni,
    /// The `Host` header of a plain HTTP request.
    HttpHost,
    /// A DNS question name (decided per query).
    DnsQname,
    /// The flow's protocol itself (TLS, QUIC, HTTP, DNS), for rules that
    /// match on it with or without a name list.
    Protocol,
    /// A new flow inside the residual block an earlier decision armed.
    Residual,
}

impl Trigger {
    /// Every trigger, in index order.
    pub const ALL: [Trigger; 7] = [
        Trigger::Ip,
        Trigger::TlsSni,
        Trigger::QuicSni,
        Trigger::HttpHost,
        Trigger::DnsQname,
        Trigger::Protocol,
        Trigger::Residual,
    ];
    /// The triggers that carry a name.
    pub const NAMES: [Trigger; 4] = [
        Trigger::TlsSni,
        Trigger::QuicSni,
        Trigger::HttpHost,
        Trigger::DnsQname,
    ];
    /// How many triggers there are.
    pub const COUNT: usize = Self::ALL.len();

    /// Position in [`Trigger::ALL`], for per-trigger arrays.
    pub fn index(self) -> usize {
        self as usize
    }
    /// The trigger's bit in a rule's `on` mask.
    pub fn bit(self) -> u8 {
        1 << self.index()
    }
    /// The name used in policies, events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Ip => "ip",
            Trigger::TlsSni => "tls_sni",
            Trigger::QuicSni => "quic_sni",
            Trigger::HttpHost => "http_host",
            Trigger::DnsQname => "dns_qname",
            Trigger::Protocol => "protocol",
            Trigger::Residual => "residual",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer a `dns` action forges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DnsAnswer {
    /// "No such name" (RCODE 3).
    Nxdomain,
    /// An A or AAAA record pointing at this address.
    Sinkhole(IpAddr),
}

/// What happens to a flow (or DNS query) that a rule decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Forward unchanged.
    Pass,
    /// Forward unchanged and report.
    Log,
    /// Discard silently.
    Drop,
    /// Discard and send TCP resets (both ways unless `to` says one).
    Reset {
        /// Resets sent each way.
        repeat: u8,
        /// Which ends get them.
        to: ResetTo,
    },
    /// Discard and answer the DNS query with a forged answer.
    Dns {
        /// What the forged answer says.
        answer: DnsAnswer,
        /// The forged record's TTL, seconds.
        ttl: u32,
    },
    /// Answer plain HTTP with a 302 to a stub page.
    Redirect {
        /// The stub page's URL.
        location: String,
    },
    /// Police the flow (or all of a client's flows) to a rate.
    Throttle {
        /// The rate, kbit/s.
        kbps: u32,
        /// The bucket's depth, bytes: what may pass at once after a pause.
        burst_bytes: u32,
        /// One bucket per flow, or one per client address.
        scope: Scope,
    },
    /// Forward until `after_bytes` payload bytes went `direction`, then
    /// drop every packet of the flow, both ways, with nothing sent (the
    /// TSPU's 2025 "16-20 KB freeze"). Enforced per packet in the core.
    Freeze {
        /// The threshold, drawn per flow from `min..=max`.
        after_bytes: ByteRange,
        /// Whose payload counts.
        direction: Way,
        /// The share of matching flows frozen; the others pass.
        probability: Chance,
    },
    /// Drop a share of the flow's packets (the 2024 YouTube slowdown).
    /// Enforced per packet in the core.
    Degrade {
        /// The share of the chosen packets dropped.
        loss: Chance,
        /// Which way the dropped packets go.
        direction: Way,
        /// All packets, or only the client's pure ACKs.
        packets: Packets,
    },
    /// Forward, and add the flow's server to a dynamic list after `delay`
    /// seconds, for `ttl` seconds: IP rules on that list then block it for
    /// everyone (TSPU's two-stage blocking of VPN servers).
    Learn {
        /// The `format: dynamic` list, by name.
        list: String,
        /// What of the server is added.
        key: LearnKey,
        /// How long an entry lasts once active, seconds.
        ttl: u32,
        /// How long after the detection it becomes active, seconds.
        delay: u32,
    },
}

/// What a `learn` action adds to its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LearnKey {
    /// The server's address: every new flow to it, any transport and port.
    Server,
    /// The server's address, transport and port.
    ServerPort,
}

impl LearnKey {
    /// The name used in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            LearnKey::Server => "server",
            LearnKey::ServerPort => "server_port",
        }
    }
}

/// Which ends of a connection a `reset` action sends resets to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetTo {
    /// Only the client (spoofed from the server).
    Client,
    /// Only the server (spoofed from the client).
    Server,
    /// Both.
    Both,
}

/// Who shares a throttle's token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Each flow has its own bucket.
    Flow,
    /// All flows of one client (subscriber) address share one bucket.
    Client,
}

/// Which packets of a flow an action looks at, by the way they go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Way {
    /// From the server to the client.
    ServerToClient,
    /// From the client to the server.
    ClientToServer,
    /// Either way.
    Both,
}

impl Way {
    /// Does a packet going this way (`from_client`) fall under `self`?
    #[inline]
    pub fn covers(self, from_client: bool) -> bool {
        match self {
            Way::ServerToClient => !from_client,
            Way::ClientToServer => from_client,
            Way::Both => true,
        }
    }

    /// The name used in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Way::ServerToClient => "server_to_client",
            Way::ClientToServer => "client_to_server",
            Way::Both => "both",
        }
    }
}

/// Which packets a `degrade` action may drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Packets {
    /// Every packet going the action's way.
    All,
    /// Only the client's pure ACKs (ACK set, no SYN/FIN/RST, no payload):
    /// the sender then sees its data unacknowledged and backs off.
    Acks,
}

/// A probability in millionths, so actions stay `Eq` and encode exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chance(u32);

impl Chance {
    /// The scale: one in a million.
    pub const SCALE: u32 = 1_000_000;
    /// Never.
    pub const NEVER: Chance = Chance(0);
    /// Always.
    pub const ALWAYS: Chance = Chance(Self::SCALE);

    /// `p` (0.0..=1.0) to the nearest millionth; `None` outside the range
    /// (NaN included).
    pub fn from_f64(p: f64) -> Option<Chance> {
        (0.0..=1.0)
            .contains(&p)
            .then(|| Chance((p * f64::from(Self::SCALE)).round() as u32))
    }
    /// Millionths.
    pub fn millionths(self) -> u32 {
        self.0
    }
    /// As a fraction.
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / f64::from(Self::SCALE)
    }
    /// Does a uniform draw `r` (any `u64`) fall under this chance?
    #[inline]
    pub fn hit(self, r: u64) -> bool {
        // 2^64 is not a multiple of a million: the bias is below 1e-13.
        (r % u64::from(Self::SCALE)) < u64::from(self.0)
    }
}

/// An inclusive range of byte counts; `min == max` for a fixed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    /// The smallest value drawn.
    pub min: u32,
    /// The largest value drawn.
    pub max: u32,
}

impl Action {
    /// Resets sent each way when a policy says plain `reset`.
    pub const DEFAULT_RESET_REPEAT: u8 = 1;
    /// TTL of a forged DNS answer when a policy gives none.
    pub const DEFAULT_DNS_TTL: u32 = 300;
    /// Where a plain `redirect` sends the client.
    pub const DEFAULT_REDIRECT: &'static str = "http://blocked.invalid/";
    /// Twitter's 2021 throttling sat at 130-150 kbit/s (Xue et al., IMC 2021).
    pub const DEFAULT_THROTTLE_KBPS: u32 = 140;
    /// The TSPU's 2025 freeze hit after 15-20 KB from the server
    /// (net4people/bbs#490).
    pub const DEFAULT_FREEZE_AFTER: ByteRange = ByteRange {
        min: 15_000,
        max: 20_000,
    };
    /// Loss of a bare `degrade`: a guess (no measured loss rate for the 2024
    /// YouTube slowdown was published; Iran's 2026 outbound loss was 35-60%).
    pub const DEFAULT_DEGRADE_LOSS: Chance = Chance(500_000);

    /// A throttle's burst when the policy gives none: half a second of the
    /// rate, at least two full-size frames. With less, TCP backs off so
    /// hard after each drop that it settles well below the policed rate.
    pub fn default_burst(kbps: u32) -> u32 {
        let rate = u64::from(kbps) * 1000 / 8;
        u32::try_from((rate / 2).max(3200)).unwrap_or(u32::MAX)
    }

    /// The bare word, as written in a policy and printed in verdicts.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Log => "log",
            Action::Drop => "drop",
            Action::Reset { .. } => "reset",
            Action::Dns { .. } => "dns",
            Action::Redirect { .. } => "redirect",
            Action::Throttle { .. } => "throttle",
            Action::Freeze { .. } => "freeze",
            Action::Degrade { .. } => "degrade",
            Action::Learn { .. } => "learn",
        }
    }

    /// The action a bare word stands for, with default parameters.
    pub fn from_word(word: &str) -> Option<Action> {
        Some(match word {
            "pass" => Action::Pass,
            "log" => Action::Log,
            "drop" => Action::Drop,
            "reset" => Action::Reset {
                repeat: Self::DEFAULT_RESET_REPEAT,
                to: ResetTo::Both,
            },
            "dns" => Action::Dns {
                answer: DnsAnswer::Nxdomain,
                ttl: Self::DEFAULT_DNS_TTL,
            },
            "redirect" => Action::Redirect {
                location: Self::DEFAULT_REDIRECT.to_string(),
            },
            "throttle" => Action::Throttle {
                kbps: Self::DEFAULT_THROTTLE_KBPS,
                burst_bytes: Self::default_burst(Self::DEFAULT_THROTTLE_KBPS),
                scope: Scope::Flow,
            },
            "freeze" => Action::Freeze {
                after_bytes: Self::DEFAULT_FREEZE_AFTER,
                direction: Way::ServerToClient,
                probability: Chance::ALWAYS,
            },
            "degrade" => Action::Degrade {
                loss: Self::DEFAULT_DEGRADE_LOSS,
                direction: Way::Both,
                packets: Packets::All,
            },
            _ => return None,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Reset { repeat, to } if *repeat != 1 || *to != ResetTo::Both => {
                let to = match to {
                    ResetTo::Client => " to client",
                    ResetTo::Server => " to server",
                    ResetTo::Both => "",
                };
                write!(f, "reset(x{repeat}{to})")
            }
            Action::Dns { answer, ttl } => match answer {
                DnsAnswer::Nxdomain => write!(f, "dns(nxdomain)"),
                DnsAnswer::Sinkhole(ip) => write!(f, "dns({ip}, ttl {ttl})"),
            },
            Action::Redirect { location } => write!(f, "redirect({location})"),
            Action::Throttle {
                kbps,
                burst_bytes,
                scope,
            } => {
                let per = match scope {
                    Scope::Flow => "flow",
                    Scope::Client => "client",
                };
                write!(
                    f,
                    "throttle({kbps} kbit/s, burst {burst_bytes} B, per {per})"
                )
            }
            Action::Freeze {
                after_bytes: ByteRange { min, max },
                direction,
                probability,
            } => {
                if min == max {
                    write!(f, "freeze(after {min} B")?;
                } else {
                    write!(f, "freeze(after {min}-{max} B")?;
                }
                write!(f, " {}", direction.as_str())?;
                if *probability != Chance::ALWAYS {
                    write!(f, ", p {}", probability.as_f64())?;
                }
                f.write_str(")")
            }
            Action::Degrade {
                loss,
                direction,
                packets,
            } => {
                let what = match packets {
                    Packets::All => "",
                    Packets::Acks => " acks",
                };
                write!(
                    f,
                    "degrade(loss {} {}{what})",
                    loss.as_f64(),
                    direction.as_str()
                )
            }
            Action::Learn {
                list,
                key,
                ttl,
                delay,
            } => write!(
                f,
                "learn({} into {list} after {delay} s for {ttl} s)",
                key.as_str()
            ),
            other => f.write_str(other.verb()),
        }
    }
}

/// The list formats the compiler reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListFormat {
    /// One name per line; `example.com` = name and subdomains.
    Domains,
    /// `0.0.0.0 a.example b.example`; names are exact.
    Hosts,
    /// IPv4/IPv6 prefixes or single addresses.
    Cidr,
    /// The Russian registry dump (`dump.csv`).
    Registry,
    /// Substrings matched anywhere in a name (aho-corasick).
    Keywords,
    /// Filled at run time by `learn` actions, not by the compiler.
    Dynamic,
}

impl ListFormat {
    /// The name used in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            ListFormat::Domains => "domains",
            ListFormat::Hosts => "hosts",
            ListFormat::Cidr => "cidr",
            ListFormat::Registry => "registry",
            ListFormat::Keywords => "keywords",
            ListFormat::Dynamic => "dynamic",
        }
    }
    /// The triggers a list of this format can serve.
    pub fn triggers(self) -> u8 {
        let names = Trigger::NAMES.iter().fold(0, |m, t| m | t.bit());
        match self {
            ListFormat::Domains | ListFormat::Hosts | ListFormat::Keywords => names,
            ListFormat::Cidr | ListFormat::Dynamic => Trigger::Ip.bit(),
            ListFormat::Registry => names | Trigger::Ip.bit(),
        }
    }
}

/// What to do with a packet: the deciding rule's action, reduced to its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Verdict {
    /// Forward.
    Pass,
    /// Forward and report.
    Log,
    /// Discard.
    Drop,
    /// Discard and reset the connection.
    Reset,
    /// Discard and forge a DNS answer.
    Dns,
    /// Discard and answer with a redirect.
    Redirect,
    /// Police to a rate.
    Throttle,
    /// Forward until a byte count, then discard (see [`Action::Freeze`]);
    /// the core says per packet which.
    Freeze,
    /// Discard a share of the packets (see [`Action::Degrade`]); the core
    /// says per packet which.
    Degrade,
    /// Forward; the flow's server was learnt (see [`Action::Learn`]).
    Learn,
}

impl Verdict {
    /// Every verdict, in index order.
    pub const ALL: [Verdict; 10] = [
        Verdict::Pass,
        Verdict::Log,
        Verdict::Drop,
        Verdict::Reset,
        Verdict::Dns,
        Verdict::Redirect,
        Verdict::Throttle,
        Verdict::Freeze,
        Verdict::Degrade,
        Verdict::Learn,
    ];
    /// How many verdicts there are.
    pub const COUNT: usize = Self::ALL.len();

    /// The verdict an action gives.
    pub fn of(a: &Action) -> Verdict {
        match a {
            Action::Pass => Verdict::Pass,
            Action::Log => Verdict::Log,
            Action::Drop => Verdict::Drop,
            Action::Reset { .. } => Verdict::Reset,
            Action::Dns { .. } => Verdict::Dns,
            Action::Redirect { .. } => Verdict::Redirect,
            Action::Throttle { .. } => Verdict::Throttle,
            Action::Freeze { .. } => Verdict::Freeze,
            Action::Degrade { .. } => Verdict::Degrade,
            Action::Learn { .. } => Verdict::Learn,
        }
    }

    /// The name used in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Log => "log",
            Verdict::Drop => "drop",
            Verdict::Reset => "reset",
            Verdict::Dns => "dns",
            Verdict::Redirect => "redirect",
            Verdict::Throttle => "throttle",
            Verdict::Freeze => "freeze",
            Verdict::Degrade => "degrade",
            Verdict::Learn => "learn",
        }
    }

    /// Does the core decide packet by packet whether the flow's packets
    /// go on ([`Verdict::Freeze`], [`Verdict::Degrade`])?
    #[inline]
    pub fn per_packet(self) -> bool {
        matches!(self, Verdict::Freeze | Verdict::Degrade)
    }

    /// Does every packet of the flow go on unchanged? (`false` for
    /// freeze and degrade: some do not, so their decision sticks.)
    pub fn forwards(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::Log | Verdict::Learn)
    }

    /// Does a rule's match with this verdict stick to the flow? Every
    /// verdict that does not forward, and `learn`: a flow is learnt once,
    /// then forwarded without being read again.
    #[inline]
    pub fn sticks(self) -> bool {
        !self.forwards() || self == Verdict::Learn
    }
}
