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
    /// Discard and send TCP resets both ways.
    Reset {
        /// Resets sent each way.
        repeat: u8,
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
    /// Police the flow to a rate.
    Throttle {
        /// The rate, kbit/s.
        kbps: u32,
    },
}

impl Action {
    /// Resets sent each way when a policy says plain `reset`.
    pub const DEFAULT_RESET_REPEAT: u8 = 1;
    /// TTL of a forged DNS answer when a policy gives none.
    pub const DEFAULT_DNS_TTL: u32 = 300;
    /// Where a plain `redirect` sends the client.
    pub const DEFAULT_REDIRECT: &'static str = "http://blocked.invalid/";
    /// Twitter's 2021 throttling sat at 130-150 kbit/s.
    pub const DEFAULT_THROTTLE_KBPS: u32 = 140;

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
            },
            _ => return None,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Reset { repeat } if *repeat != 1 => write!(f, "reset(x{repeat})"),
            Action::Dns { answer, ttl } => match answer {
                DnsAnswer::Nxdomain => write!(f, "dns(nxdomain)"),
                DnsAnswer::Sinkhole(ip) => write!(f, "dns({ip}, ttl {ttl})"),
            },
            Action::Redirect { location } => write!(f, "redirect({location})"),
            Action::Throttle { kbps } => write!(f, "throttle({kbps} kbit/s)"),
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
        }
    }
    /// The triggers a list of this format can serve.
    pub fn triggers(self) -> u8 {
        let names = Trigger::NAMES.iter().fold(0, |m, t| m | t.bit());
        match self {
            ListFormat::Domains | ListFormat::Hosts | ListFormat::Keywords => names,
            ListFormat::Cidr => Trigger::Ip.bit(),
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
}

impl Verdict {
    /// Every verdict, in index order.
    pub const ALL: [Verdict; 7] = [
        Verdict::Pass,
        Verdict::Log,
        Verdict::Drop,
        Verdict::Reset,
        Verdict::Dns,
        Verdict::Redirect,
        Verdict::Throttle,
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
        }
    }

    /// Does the packet go on unchanged?
    pub fn forwards(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::Log)
    }
}
