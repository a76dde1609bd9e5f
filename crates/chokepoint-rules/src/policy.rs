//! The policy file: YAML in, typed [`Policy`] out.
//!
//! Parsing uses `serde_norway` (the maintained fork of the archived
//! `serde_yaml`, same API). Every struct denies unknown fields, so a typo
//! such as `acton:` is an error that names its line and column instead of a
//! rule that silently never fires.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// What a rule matches on. The packet core reports which of these produced a
/// name (or, for `Ip`, that an address matched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Ip,
    TlsSni,
    QuicSni,
    HttpHost,
    DnsQname,
}

impl Trigger {
    pub const ALL: [Trigger; 5] = [
        Trigger::Ip,
        Trigger::TlsSni,
        Trigger::QuicSni,
        Trigger::HttpHost,
        Trigger::DnsQname,
    ];
    pub const NAMES: [Trigger; 4] = [
        Trigger::TlsSni,
        Trigger::QuicSni,
        Trigger::HttpHost,
        Trigger::DnsQname,
    ];
    pub const COUNT: usize = 5;

    pub fn index(self) -> usize {
        self as usize
    }
    pub fn bit(self) -> u8 {
        1 << self.index()
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Ip => "ip",
            Trigger::TlsSni => "tls_sni",
            Trigger::QuicSni => "quic_sni",
            Trigger::HttpHost => "http_host",
            Trigger::DnsQname => "dns_qname",
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
    Nxdomain,
    Sinkhole(IpAddr),
}

/// What happens to a flow (or DNS query) that a rule decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Pass,
    Log,
    Drop,
    Reset { repeat: u8 },
    Dns { answer: DnsAnswer, ttl: u32 },
    Redirect { location: String },
    Throttle { kbps: u32 },
}

impl Action {
    pub const DEFAULT_RESET_REPEAT: u8 = 1;
    pub const DEFAULT_DNS_TTL: u32 = 300;
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

    fn from_word(word: &str) -> Option<Action> {
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

const ACTION_WORDS: &[&str] = &[
    "pass", "log", "drop", "reset", "dns", "redirect", "throttle",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetParams {
    #[serde(default = "default_repeat")]
    repeat: u8,
}
fn default_repeat() -> u8 {
    Action::DEFAULT_RESET_REPEAT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsParams {
    #[serde(default = "default_answer")]
    answer: String,
    #[serde(default = "default_ttl")]
    ttl: u32,
}
fn default_answer() -> String {
    "nxdomain".into()
}
fn default_ttl() -> u32 {
    Action::DEFAULT_DNS_TTL
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedirectParams {
    location: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottleParams {
    kbps: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// A policy's spelling of an action: `reset` or `{reset: {repeat: 5}}`.
/// Kept apart from [`Action`] so the artifact can store `Action` with the
/// plain derived encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSpec(pub Action);

impl<'de> Deserialize<'de> for ActionSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ActionSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an action word (pass, log, drop, reset, dns, redirect, throttle) or a one-key map such as {reset: {repeat: 5}}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ActionSpec, E> {
                Action::from_word(v)
                    .map(ActionSpec)
                    .ok_or_else(|| E::unknown_variant(v, ACTION_WORDS))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ActionSpec, A::Error> {
                let Some(word) = map.next_key::<String>()? else {
                    return Err(de::Error::custom("empty action map"));
                };
                let action = match word.as_str() {
                    "reset" => {
                        let p: ResetParams = map.next_value()?;
                        if p.repeat == 0 || p.repeat > 100 {
                            return Err(de::Error::custom("reset.repeat must be 1..=100"));
                        }
                        Action::Reset { repeat: p.repeat }
                    }
                    "dns" => {
                        let p: DnsParams = map.next_value()?;
                        let answer = if p.answer.eq_ignore_ascii_case("nxdomain") {
                            DnsAnswer::Nxdomain
                        } else {
                            DnsAnswer::Sinkhole(p.answer.parse().map_err(|_| {
                                de::Error::custom(format!(
                                    "dns.answer `{}` is neither `nxdomain` nor an IP address",
                                    p.answer
                                ))
                            })?)
                        };
                        Action::Dns { answer, ttl: p.ttl }
                    }
                    "redirect" => {
                        let p: RedirectParams = map.next_value()?;
                        if p.location.is_empty() || p.location.contains(['\r', '\n']) {
                            return Err(de::Error::custom(
                                "redirect.location must be a non-empty single-line URL",
                            ));
                        }
                        Action::Redirect {
                            location: p.location,
                        }
                    }
                    "throttle" => {
                        let p: ThrottleParams = map.next_value()?;
                        if p.kbps == 0 {
                            return Err(de::Error::custom("throttle.kbps must be above 0"));
                        }
                        Action::Throttle { kbps: p.kbps }
                    }
                    other => {
                        let Some(a) = Action::from_word(other) else {
                            return Err(de::Error::unknown_variant(other, ACTION_WORDS));
                        };
                        let _: Option<Empty> = map.next_value()?;
                        a
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("an action map has exactly one key"));
                }
                Ok(ActionSpec(action))
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for ActionSpec {
    fn default() -> Self {
        ActionSpec(Action::Pass)
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

/// What to do with a bad line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail the compile, naming file, line and reason.
    #[default]
    Fail,
    /// Skip the line, count it and report the first few.
    Skip,
}

/// How a list file is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextEncoding {
    /// UTF-8 if the bytes are valid UTF-8, else Windows-1251.
    #[default]
    Auto,
    #[serde(alias = "utf8")]
    Utf8,
    #[serde(alias = "cp1251")]
    Windows1251,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    pub format: ListFormat,
    /// File path, relative to the policy file.
    pub path: Option<String>,
    /// Inline entries, in the list format's line syntax.
    pub entries: Option<Vec<String>>,
    /// Plain names mean the exact name only (`true`), or the name and its
    /// subdomains (`false`). Defaults: domains false, hosts and registry true.
    pub exact: Option<bool>,
    /// Registry only: keep only records with these decision numbers.
    #[serde(default)]
    pub decisions: Vec<String>,
    /// Registry only: drop records with these decision numbers.
    #[serde(default)]
    pub exclude_decisions: Vec<String>,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub encoding: TextEncoding,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    pub list: Option<String>,
    pub lists: Option<Vec<String>>,
    /// Inline substring patterns (the `*t.co*` kind). Never implied by a
    /// domain entry.
    pub keywords: Option<Vec<String>>,
    /// Default: every trigger the lists can serve.
    pub on: Option<Vec<Trigger>>,
    /// For `tls_sni`/`quic_sni`: match only ClientHellos that carry (`true`)
    /// or lack (`false`) an Encrypted Client Hello extension. Russia's
    /// November 2024 rule: ECH present and SNI `cloudflare-ech.com`.
    pub ech: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    pub action: ActionSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub version: u32,
    #[serde(default)]
    pub lists: BTreeMap<String, ListSpec>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub default: ActionSpec,
    /// How the censor inspects traffic; defaults model a modern TSPU box.
    #[serde(default)]
    pub profile: Profile,
}

/// Which directions of a flow are inspected for names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Only what the client (the side that opened the flow) sends.
    ClientToServer,
    Both,
}

/// Idle timeouts per flow state, in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub syn: u32,
    pub established: u32,
    pub fin: u32,
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            syn: 60,
            established: 300,
            fin: 60,
            udp: 60,
        }
    }
}

/// The realism knobs of the packet core. Later versions add more (residual
/// blocking, RST/TCB behaviours); unknown keys are still errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Reassemble a ClientHello (or HTTP request) split over TCP segments.
    /// Off, only names inside the first data segment are seen (old DPI).
    pub reassemble_client_hello: bool,
    /// Data packets per flow inspected before the flow is passed unseen.
    pub max_inspect_packets: u32,
    /// Payload bytes per flow inspected before the flow is passed unseen.
    pub max_inspect_bytes: u32,
    /// TCP/UDP server ports inspected for TLS, QUIC and HTTP; empty = all.
    /// DNS is recognised on port 53 whatever this says.
    pub inspect_ports: Vec<u16>,
    /// Reassemble IP fragments before inspection.
    pub defragment: bool,
    pub direction: Direction,
    /// Flow table capacity; the oldest idle flows are evicted beyond it.
    pub max_flows: u32,
    pub timeouts: Timeouts,
    /// Per-flow cap on bytes held for stream reassembly.
    pub reassembly_max_bytes: u32,
    /// Per-flow cap on out-of-order segments held.
    pub reassembly_max_segments: u32,
    /// Datagrams being reassembled from IP fragments at once.
    pub max_fragment_datagrams: u32,
    /// Seconds an incomplete fragmented datagram is kept.
    pub fragment_timeout: u32,
    /// On a rules reload, decide flows already decided again under the new
    /// rules (from their addresses and the name they carried). Off, a flow
    /// keeps the decision it got, as a box that only checks new flows.
    pub reevaluate_on_reload: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            reassemble_client_hello: true,
            max_inspect_packets: 32,
            max_inspect_bytes: 64 * 1024,
            inspect_ports: Vec::new(),
            defragment: true,
            direction: Direction::ClientToServer,
            max_flows: 1 << 20,
            timeouts: Timeouts::default(),
            reassembly_max_bytes: 32 * 1024,
            reassembly_max_segments: 32,
            max_fragment_datagrams: 4096,
            fragment_timeout: 30,
            reevaluate_on_reload: false,
        }
    }
}

/// The only policy version this build understands.
pub const POLICY_VERSION: u32 = 1;

impl Policy {
    /// Parse YAML. `origin` names the file in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Policy, crate::Error> {
        let p: Policy = serde_norway::from_str(text).map_err(|e| crate::Error::Policy {
            file: origin.to_string(),
            reason: e.to_string(),
        })?;
        if p.version != POLICY_VERSION {
            return Err(crate::Error::Policy {
                file: origin.to_string(),
                reason: format!(
                    "policy version {} is not supported (this build reads version {POLICY_VERSION})",
                    p.version
                ),
            });
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(yaml: &str) -> Result<Action, String> {
        serde_norway::from_str::<ActionSpec>(yaml)
            .map(|a| a.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn action_forms() {
        assert_eq!(action("reset").unwrap(), Action::Reset { repeat: 1 });
        assert_eq!(
            action("{reset: {repeat: 5}}").unwrap(),
            Action::Reset { repeat: 5 }
        );
        assert_eq!(
            action("{dns: {answer: nxdomain}}").unwrap(),
            Action::Dns {
                answer: DnsAnswer::Nxdomain,
                ttl: 300
            }
        );
        assert_eq!(
            action("{dns: {answer: 198.18.0.99, ttl: 60}}").unwrap(),
            Action::Dns {
                answer: DnsAnswer::Sinkhole("198.18.0.99".parse().unwrap()),
                ttl: 60
            }
        );
        assert_eq!(
            action("{redirect: {location: 'http://stub.example/blocked'}}").unwrap(),
            Action::Redirect {
                location: "http://stub.example/blocked".into()
            }
        );
        assert_eq!(
            action("{throttle: {kbps: 140}}").unwrap(),
            Action::Throttle { kbps: 140 }
        );
        assert_eq!(action("{drop: {}}").unwrap(), Action::Drop);
    }

    #[test]
    fn action_errors_say_what() {
        assert!(action("block")
            .unwrap_err()
            .contains("unknown variant `block`"));
        assert!(action("{reset: {repat: 5}}")
            .unwrap_err()
            .contains("unknown field `repat`"));
        assert!(action("{dns: {answer: nowhere}}")
            .unwrap_err()
            .contains("neither"));
        assert!(action("{throttle: {kbps: 0}}")
            .unwrap_err()
            .contains("above 0"));
    }

    #[test]
    fn unknown_fields_name_line_and_column() {
        let yaml = "version: 1\nrules:\n  - name: a\n    match: {list: x}\n    acton: drop\n";
        let err = Policy::from_yaml(yaml, "p.yaml").unwrap_err().to_string();
        assert!(err.contains("p.yaml"), "{err}");
        assert!(err.contains("unknown field `acton`"), "{err}");
        assert!(err.contains("line 5 column 5"), "{err}");
    }

    #[test]
    fn wrong_version_is_refused() {
        let err = Policy::from_yaml("version: 2\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 2 is not supported"), "{err}");
    }
}
