//! The policy file: YAML in, typed [`Policy`] out.
//!
//! Parsing uses `serde_norway` (the maintained fork of the archived
//! `serde_yaml`, same API). Every struct denies unknown fields, so a typo
//! such as `acton:` is an error that names its line and column instead of a
//! rule that silently never fires.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

pub use chokepoint_ruleset::conditions::{
    parse_quic_version, PortRange, Protocol, ResidualAction, ResidualScope,
};
pub use chokepoint_ruleset::profile::{Direction, Preset, Profile, Timeouts};
pub use chokepoint_ruleset::ruleset::DefaultAt;
pub use chokepoint_ruleset::vocab::{
    Action, ByteRange, Chance, DnsAnswer, LearnKey, ListFormat, Packets, ResetTo, Scope, Trigger,
    Way,
};

const ACTION_WORDS: &[&str] = &[
    "pass", "log", "drop", "reset", "dns", "redirect", "throttle", "freeze", "degrade", "learn",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetParams {
    #[serde(default = "default_repeat")]
    repeat: u8,
    #[serde(default = "default_reset_to")]
    to: ResetTo,
}
fn default_reset_to() -> ResetTo {
    ResetTo::Both
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
    burst_bytes: Option<u32>,
    #[serde(default = "default_scope")]
    scope: Scope,
}
fn default_scope() -> Scope {
    Scope::Flow
}

/// A throttle's burst: at least one full-size Ethernet frame (with less,
/// nothing that size ever passes), at most 1 GiB.
const BURST_BYTES: std::ops::RangeInclusive<u32> = 1514..=1 << 30;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeParams {
    #[serde(default)]
    after_bytes: Option<AfterBytes>,
    #[serde(default = "default_freeze_way")]
    direction: Way,
    #[serde(default = "default_probability")]
    probability: f64,
}
fn default_freeze_way() -> Way {
    Way::ServerToClient
}
fn default_probability() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DegradeParams {
    #[serde(default = "default_loss")]
    loss: f64,
    #[serde(default = "default_degrade_way")]
    direction: Way,
    #[serde(default = "default_packets")]
    packets: Packets,
}
fn default_loss() -> f64 {
    Action::DEFAULT_DEGRADE_LOSS.as_f64()
}
fn default_degrade_way() -> Way {
    Way::Both
}
fn default_packets() -> Packets {
    Packets::All
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LearnParams {
    list: String,
    #[serde(default = "default_learn_key")]
    key: LearnKey,
    ttl: u32,
    #[serde(default)]
    delay: u32,
}
fn default_learn_key() -> LearnKey {
    LearnKey::Server
}

/// A learnt entry lasts at most a week, and becomes active at most a day
/// after the detection: a censor's cycle is minutes (TSPU's reportedly
/// 5-15), and the bound keeps a typo from blocking an address for years.
const LEARN_TTL: std::ops::RangeInclusive<u32> = 1..=7 * 86_400;
const LEARN_DELAY: std::ops::RangeInclusive<u32> = 0..=86_400;

/// `after_bytes: N` or `after_bytes: [MIN, MAX]`.
struct AfterBytes(u64, u64);

impl<'de> Deserialize<'de> for AfterBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AfterBytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte count or a range [MIN, MAX]")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AfterBytes, E> {
                Ok(AfterBytes(v, v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<AfterBytes, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::custom("freeze.after_bytes must be at least 1"))?;
                Ok(AfterBytes(v, v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<AfterBytes, A::Error> {
                let two = "freeze.after_bytes as a range is [MIN, MAX]";
                let min: u64 = seq.next_element()?.ok_or_else(|| de::Error::custom(two))?;
                let max: u64 = seq.next_element()?.ok_or_else(|| de::Error::custom(two))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(two));
                }
                Ok(AfterBytes(min, max))
            }
        }
        d.deserialize_any(V)
    }
}

/// A probability field, checked.
fn chance<E: de::Error>(field: &str, p: f64) -> Result<Chance, E> {
    Chance::from_f64(p).ok_or_else(|| E::custom(format!("{field} must be within 0..=1, not {p}")))
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
                f.write_str("an action word (pass, log, drop, reset, dns, redirect, throttle, freeze, degrade) or a one-key map such as {reset: {repeat: 5}}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ActionSpec, E> {
                if v == "learn" {
                    return Err(E::custom(
                        "learn needs its list and ttl: {learn: {list: NAME, ttl: SECONDS}}",
                    ));
                }
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
                        Action::Reset {
                            repeat: p.repeat,
                            to: p.to,
                        }
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
                        let burst_bytes = p.burst_bytes.unwrap_or(Action::default_burst(p.kbps));
                        if !BURST_BYTES.contains(&burst_bytes) {
                            return Err(de::Error::custom(format!(
                                "throttle.burst_bytes must be within {}..={}, not {burst_bytes}",
                                BURST_BYTES.start(),
                                BURST_BYTES.end()
                            )));
                        }
                        Action::Throttle {
                            kbps: p.kbps,
                            burst_bytes,
                            scope: p.scope,
                        }
                    }
                    "freeze" => {
                        let p: FreezeParams = map.next_value()?;
                        let after_bytes = match p.after_bytes {
                            None => Action::DEFAULT_FREEZE_AFTER,
                            Some(AfterBytes(min, max)) => {
                                if min == 0 {
                                    return Err(de::Error::custom(
                                        "freeze.after_bytes must be at least 1",
                                    ));
                                }
                                if min > max {
                                    return Err(de::Error::custom(format!(
                                        "freeze.after_bytes [{min}, {max}]: MIN is above MAX"
                                    )));
                                }
                                let (Ok(min), Ok(max)) = (u32::try_from(min), u32::try_from(max))
                                else {
                                    return Err(de::Error::custom(format!(
                                        "freeze.after_bytes must be at most {}",
                                        u32::MAX
                                    )));
                                };
                                ByteRange { min, max }
                            }
                        };
                        Action::Freeze {
                            after_bytes,
                            direction: p.direction,
                            probability: chance("freeze.probability", p.probability)?,
                        }
                    }
                    "degrade" => {
                        let p: DegradeParams = map.next_value()?;
                        if p.packets == Packets::Acks && p.direction == Way::ServerToClient {
                            return Err(de::Error::custom(
                                "degrade.packets `acks` are the client's: direction must be client_to_server or both",
                            ));
                        }
                        Action::Degrade {
                            loss: chance("degrade.loss", p.loss)?,
                            direction: p.direction,
                            packets: p.packets,
                        }
                    }
                    "learn" => {
                        let p: LearnParams = map.next_value()?;
                        if !LEARN_TTL.contains(&p.ttl) {
                            return Err(de::Error::custom(format!(
                                "learn.ttl must be within 1..={}, not {}",
                                LEARN_TTL.end(),
                                p.ttl
                            )));
                        }
                        if !LEARN_DELAY.contains(&p.delay) {
                            return Err(de::Error::custom(format!(
                                "learn.delay must be within 0..={}, not {}",
                                LEARN_DELAY.end(),
                                p.delay
                            )));
                        }
                        Action::Learn {
                            list: p.list,
                            key: p.key,
                            ttl: p.ttl,
                            delay: p.delay,
                        }
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
    #[serde(alias = "utf8", alias = "utf-8")]
    /// UTF-8.
    Utf8,
    #[serde(alias = "cp1251", alias = "windows-1251")]
    /// Windows-1251 (the registry dump's historical encoding).
    Windows1251,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// A list as a policy declares it.
pub struct ListSpec {
    /// The list's format.
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
    /// What a bad line does.
    pub on_error: OnError,
    #[serde(default)]
    /// The file's text encoding.
    pub encoding: TextEncoding,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// What a rule matches.
pub struct MatchSpec {
    /// One list.
    pub list: Option<String>,
    /// Several lists.
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
    /// The rule fires on these protocols themselves (with no list), or
    /// only on names that came in them (with a list).
    pub protocols: Option<Vec<Protocol>>,
    /// `tcp` or `udp`.
    pub proto: Option<TransportSpec>,
    /// Server ports: numbers or `"LO-HI"` ranges.
    pub dst_ports: Option<Vec<PortSpec>>,
    /// Client ports: numbers or `"LO-HI"` ranges.
    pub src_ports: Option<Vec<PortSpec>>,
    /// Least transport payload of the firing packet.
    pub min_bytes: Option<u32>,
    /// Most transport payload of the firing packet.
    pub max_bytes: Option<u32>,
    /// QUIC versions: `1`, `v1`, `v2`, `draft-29`, or a number.
    pub quic_versions: Option<Vec<QuicVersionSpec>>,
    /// Only a flow's first data packet is classified.
    #[serde(default)]
    pub first_packet: bool,
    /// Only when the client's port is at least the server's.
    #[serde(default)]
    pub src_port_ge_dst_port: bool,
    /// The server's address must be in this list.
    pub dst_list: Option<String>,
    /// The client's address must be in this list.
    pub src_list: Option<String>,
    /// Names or addresses in these lists exempt a flow.
    pub except: Option<Vec<String>>,
    /// The share of flows the rule fires on (0..=1), drawn per flow.
    pub probability: Option<f64>,
}

/// `proto: tcp | udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportSpec {
    /// IP protocol 6.
    Tcp,
    /// IP protocol 17.
    Udp,
}

/// A port or an inclusive range, as `443` or `"1000-2000"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec(pub PortRange);

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port (0-65535) or a range such as \"1000-2000\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortSpec, E> {
                let p =
                    u16::try_from(v).map_err(|_| E::custom(format!("port {v} is above 65535")))?;
                Ok(PortSpec(PortRange { lo: p, hi: p }))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortSpec, E> {
                Err(E::custom(format!("port {v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortSpec, E> {
                let bad = || {
                    E::custom(format!(
                        "bad port range `{v}`: give LO-HI with 0 <= LO <= HI <= 65535"
                    ))
                };
                let (lo, hi) = v.split_once('-').unwrap_or((v, v));
                let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
                let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
                if lo > hi {
                    return Err(bad());
                }
                Ok(PortSpec(PortRange { lo, hi }))
            }
        }
        d.deserialize_any(V)
    }
}

/// A QUIC version as `1`, `v1`, `v2`, `draft-29` or `0x6b3343cf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicVersionSpec(pub u32);

impl<'de> Deserialize<'de> for QuicVersionSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = QuicVersionSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a QUIC version: 1, v1, v2, draft-NN or a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<QuicVersionSpec, E> {
                u32::try_from(v)
                    .map(QuicVersionSpec)
                    .map_err(|_| E::custom(format!("QUIC version {v} is above 32 bits")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<QuicVersionSpec, E> {
                parse_quic_version(v).map(QuicVersionSpec).ok_or_else(|| {
                    E::custom(format!(
                        "unknown QUIC version `{v}`: give 1, v1, v2, draft-NN or a number"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `reassembly_memory_budget`: a number of bytes, or `auto` (sized for the
/// machine the box runs on: [`Profile::reassembly_budget_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BytesOrAuto(u64);

impl From<BytesOrAuto> for u64 {
    fn from(b: BytesOrAuto) -> u64 {
        b.0
    }
}

impl<'de> Deserialize<'de> for BytesOrAuto {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        chokepoint_ruleset::profile::bytes_or_auto::deserialize(d).map(BytesOrAuto)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `residual: {seconds, scope, action}`.
pub struct ResidualSpec {
    /// How long new flows in the scope stay blocked.
    pub seconds: u32,
    /// Which new flows: `3-tuple`, `2-tuple`, `server` or `client`.
    pub scope: ResidualScope,
    /// `drop` (default) or `reset`.
    #[serde(default = "residual_drop")]
    pub action: ResidualAction,
}
fn residual_drop() -> ResidualAction {
    ResidualAction::Drop
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// A rule as a policy writes it.
pub struct RuleSpec {
    /// Its name (unique).
    pub name: String,
    #[serde(rename = "match")]
    /// What it matches.
    pub matcher: MatchSpec,
    /// What it does.
    pub action: ActionSpec,
    /// The block it leaves on new flows after it fires.
    pub residual: Option<ResidualSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// A policy file.
pub struct Policy {
    /// The policy format version (1).
    pub version: u32,
    #[serde(default)]
    /// Lists by name.
    pub lists: BTreeMap<String, ListSpec>,
    #[serde(default)]
    /// Rules, in precedence order.
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    /// What happens when no rule matches.
    pub default: ActionSpec,
    /// Where a flow no rule matched meets a blocking default:
    /// `first_packet` (default) or `first_data`.
    #[serde(default)]
    pub default_at: DefaultAt,
    /// How the censor inspects traffic; defaults model a modern TSPU box.
    /// `preset: NAME` starts from a named profile, the other keys override.
    #[serde(default, deserialize_with = "profile_section")]
    pub profile: Profile,
}

/// The `profile:` section as written: a preset and the knobs overriding
/// it, each optional. Typed, so a bad value or an unknown key is an error
/// with its line like everywhere else. The list must name every field of
/// [`Profile`]: `profile_section_names_every_knob` fails to compile
/// otherwise.
macro_rules! profile_section {
    ($($field:ident: $ty:ty),* $(,)?) => {
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ProfileSection {
            preset: Option<Preset>,
            $($field: Option<$ty>,)*
        }

        impl ProfileSection {
            fn resolve(self) -> Profile {
                let mut p = self.preset.map_or_else(Profile::default, Preset::profile);
                // `into`: a knob may be read as a type of its own (bytes
                // or `auto`) and stored as the profile's.
                $(if let Some(v) = self.$field {
                    p.$field = v.into();
                })*
                p
            }
        }

        #[cfg(test)]
        #[allow(dead_code)]
        fn profile_section_names_every_knob(p: Profile) {
            let Profile { $($field: _),* } = p;
        }
    };
}

profile_section! {
    reassemble_client_hello: bool,
    max_inspect_packets: u32,
    max_inspect_bytes: u32,
    inspect_ports: Vec<u16>,
    defragment: bool,
    direction: Direction,
    max_flows: u32,
    timeouts: Timeouts,
    reassembly_max_bytes: u32,
    reassembly_max_segments: u32,
    reassembly_memory_budget: BytesOrAuto,
    max_fragment_datagrams: u32,
    fragment_timeout: u32,
    reevaluate_on_reload: bool,
    seed: u64,
    max_residual_entries: u32,
    max_learned_entries: u32,
    urgent: chokepoint_ruleset::profile::Urgent,
    ttl_fakes: chokepoint_ruleset::profile::TtlFakes,
    ttl_margin: u8,
    overlap: chokepoint_ruleset::profile::Overlap,
    checksums: chokepoint_ruleset::profile::Checksums,
    teardown_on_rst: bool,
    resync_on_syn: bool,
    in_window_only: bool,
    first_segment_gate: bool,
    tls_records: chokepoint_ruleset::profile::TlsRecords,
}

fn profile_section<'de, D: Deserializer<'de>>(d: D) -> Result<Profile, D::Error> {
    ProfileSection::deserialize(d).map(ProfileSection::resolve)
}

/// The only policy version this build understands.
pub const POLICY_VERSION: u32 = 1;

impl Policy {
    /// Parse YAML. `origin` names the file in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Policy, crate::Error> {
        let fail = |reason: String| crate::Error::Policy {
            file: origin.to_string(),
            reason,
        };
        // Editors on Windows save UTF-8 with a byte order mark; the YAML
        // parser would take it for part of the first key.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // Typed maps (`lists`) keep the last of two equal keys, so a second
        // list of the same name would silently replace the first. The
        // generic `Value` refuses duplicates, with line and column, at any
        // depth; the policy is small, parsing it twice costs nothing.
        serde_norway::from_str::<serde_norway::Value>(text)
            .map_err(|e| fail(duplicate_key_reason(text, &e).unwrap_or_else(|| e.to_string())))?;
        let p: Policy = serde_norway::from_str(text).map_err(|e| fail(e.to_string()))?;
        if p.version != POLICY_VERSION {
            return Err(crate::Error::Policy {
                file: origin.to_string(),
                reason: format!(
                    "policy version {} is not supported (this build reads version {POLICY_VERSION})",
                    p.version
                ),
            });
        }
        validate_profile(&p.profile).map_err(|reason| fail(format!("profile: {reason}")))?;
        Ok(p)
    }
}

/// The parser reports a duplicate key at the start of its map. Point at the
/// second occurrence too, found by scanning the map's lines at the map's
/// indentation (block style, what policies use); `None` for any other error,
/// so the parser's own message stands.
fn duplicate_key_reason(text: &str, e: &serde_norway::Error) -> Option<String> {
    let msg = e.to_string();
    let start = msg.find("duplicate entry with key \"")? + "duplicate entry with key \"".len();
    let key = &msg[start..start + msg[start..].find('"')?];
    let loc = e.location()?;
    let indent = loc.column() - 1;
    let mut seen = 0;
    for (i, line) in text.lines().enumerate().skip(loc.line() - 1) {
        let body = line.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let at = line.len() - body.len();
        // On the map's first line the key may follow a `- ` at a lower indent.
        if i + 1 > loc.line() && at < indent {
            break;
        }
        if at != indent && i + 1 > loc.line() {
            continue;
        }
        // The column counts characters: on the map's first line a name
        // before it may hold multi-byte ones.
        let from = line
            .char_indices()
            .nth(indent)
            .map_or(line.len(), |(b, _)| b);
        let body = &line[from..];
        let quoted = [
            format!("{key}:"),
            format!("\"{key}\":"),
            format!("'{key}':"),
        ];
        if quoted.iter().any(|q| body.starts_with(q.as_str())) {
            seen += 1;
            if seen == 2 {
                let path = msg[..msg.find("duplicate entry").unwrap_or(0)].to_string();
                return Some(format!(
                    "{path}duplicate key `{key}` at line {} column {} (first at line {} column {})",
                    i + 1,
                    indent + 1,
                    loc.line(),
                    loc.column()
                ));
            }
        }
    }
    None
}

/// An inclusive range a profile knob must lie in, with its name for errors.
struct Knob {
    name: &'static str,
    value: u64,
    min: u64,
    max: u64,
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Check every size and count of a profile against the range the engine
/// can honour. Each bound is there because a value outside it either turns
/// the feature off by accident (0 flows, 0 bytes) or lets one policy line
/// reserve memory no box has (a 4 GiB reassembly buffer per flow). The
/// error names the key, the value and the allowed range.
pub fn validate_profile(p: &Profile) -> Result<(), String> {
    let knobs = [
        Knob {
            name: "max_flows",
            value: p.max_flows.into(),
            min: 1,
            max: 1 << 26,
        },
        Knob {
            name: "max_inspect_packets",
            value: p.max_inspect_packets.into(),
            min: 1,
            max: 1 << 20,
        },
        Knob {
            name: "max_inspect_bytes",
            value: p.max_inspect_bytes.into(),
            min: 1,
            max: 16 * MIB,
        },
        // A ClientHello with post-quantum key shares is ~2 KiB and may grow
        // to the 16 KiB TLS record; 1 MiB is far past any name-bearing
        // message and still bounded.
        Knob {
            name: "reassembly_max_bytes",
            value: p.reassembly_max_bytes.into(),
            min: KIB,
            max: MIB,
        },
        Knob {
            name: "reassembly_max_segments",
            value: p.reassembly_max_segments.into(),
            min: 1,
            max: 4096,
        },
        Knob {
            name: "max_fragment_datagrams",
            value: p.max_fragment_datagrams.into(),
            min: 1,
            max: 1 << 20,
        },
        Knob {
            name: "fragment_timeout",
            value: p.fragment_timeout.into(),
            min: 1,
            max: 3600,
        },
        Knob {
            name: "timeouts.syn",
            value: p.timeouts.syn.into(),
            min: 1,
            max: 86_400,
        },
        Knob {
            name: "timeouts.established",
            value: p.timeouts.established.into(),
            min: 1,
            max: 7 * 86_400,
        },
        Knob {
            name: "timeouts.fin",
            value: p.timeouts.fin.into(),
            min: 1,
            max: 86_400,
        },
        Knob {
            name: "timeouts.udp",
            value: p.timeouts.udp.into(),
            min: 1,
            max: 86_400,
        },
        // Each block is a few dozen bytes; 16M of them is under 1 GiB.
        Knob {
            name: "max_residual_entries",
            value: p.max_residual_entries.into(),
            min: 1,
            max: 1 << 24,
        },
        // An entry is an address, a port and two timestamps.
        Knob {
            name: "max_learned_entries",
            value: p.max_learned_entries.into(),
            min: 1,
            max: 1 << 24,
        },
        // Paths are rarely 64 hops long; a margin that wide trusts every
        // fake a client can aim at a box a few hops away.
        Knob {
            name: "ttl_margin",
            value: p.ttl_margin.into(),
            min: 0,
            max: 64,
        },
    ];
    // `auto` is sized at run time, inside the same bounds.
    let budget =
        (p.reassembly_memory_budget != chokepoint_ruleset::profile::AUTO).then_some(Knob {
            name: "reassembly_memory_budget",
            value: p.reassembly_memory_budget,
            min: MIB,
            max: 64 * GIB,
        });
    for k in knobs.into_iter().chain(budget) {
        if !(k.min..=k.max).contains(&k.value) {
            return Err(format!(
                "{} is {}; allowed {}..={}",
                k.name, k.value, k.min, k.max
            ));
        }
    }
    Ok(())
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
        assert_eq!(
            action("reset").unwrap(),
            Action::Reset {
                repeat: 1,
                to: ResetTo::Both
            }
        );
        assert_eq!(
            action("{reset: {repeat: 5}}").unwrap(),
            Action::Reset {
                repeat: 5,
                to: ResetTo::Both
            }
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
            Action::Throttle {
                kbps: 140,
                burst_bytes: 8750,
                scope: Scope::Flow
            }
        );
        assert_eq!(action("{drop: {}}").unwrap(), Action::Drop);
    }

    #[test]
    fn censor_actions_parse_with_their_defaults() {
        assert_eq!(
            action("{reset: {to: client}}").unwrap(),
            Action::Reset {
                repeat: 1,
                to: ResetTo::Client
            }
        );
        assert_eq!(
            action("{throttle: {kbps: 64, burst_bytes: 3000, scope: client}}").unwrap(),
            Action::Throttle {
                kbps: 64,
                burst_bytes: 3000,
                scope: Scope::Client
            }
        );
        assert_eq!(
            action("freeze").unwrap(),
            Action::Freeze {
                after_bytes: ByteRange {
                    min: 15_000,
                    max: 20_000
                },
                direction: Way::ServerToClient,
                probability: Chance::ALWAYS
            }
        );
        assert_eq!(action("{freeze: {}}").unwrap(), action("freeze").unwrap());
        assert_eq!(
            action("{freeze: {after_bytes: 16384, direction: both, probability: 0.25}}").unwrap(),
            Action::Freeze {
                after_bytes: ByteRange {
                    min: 16384,
                    max: 16384
                },
                direction: Way::Both,
                probability: Chance::from_f64(0.25).unwrap()
            }
        );
        assert_eq!(
            action("{freeze: {after_bytes: [100, 200]}}").unwrap(),
            Action::Freeze {
                after_bytes: ByteRange { min: 100, max: 200 },
                direction: Way::ServerToClient,
                probability: Chance::ALWAYS
            }
        );
        assert_eq!(
            action("{degrade: {loss: 0.3, packets: acks}}").unwrap(),
            Action::Degrade {
                loss: Chance::from_f64(0.3).unwrap(),
                direction: Way::Both,
                packets: Packets::Acks
            }
        );
        assert_eq!(
            action("degrade").unwrap(),
            Action::Degrade {
                loss: Chance::from_f64(0.5).unwrap(),
                direction: Way::Both,
                packets: Packets::All
            }
        );
    }

    #[test]
    fn censor_action_ranges_are_checked() {
        for (yaml, says) in [
            (
                "{degrade: {loss: 1.5}}",
                "degrade.loss must be within 0..=1",
            ),
            (
                "{degrade: {loss: -0.1}}",
                "degrade.loss must be within 0..=1",
            ),
            ("{degrade: {los: 0.1}}", "unknown field `los`"),
            (
                "{degrade: {packets: acks, direction: server_to_client}}",
                "the client's",
            ),
            ("{degrade: {packets: syns}}", "unknown variant `syns`"),
            (
                "{freeze: {probability: 2}}",
                "freeze.probability must be within 0..=1",
            ),
            ("{freeze: {after_bytes: 0}}", "at least 1"),
            ("{freeze: {after_bytes: [300, 200]}}", "MIN is above MAX"),
            ("{freeze: {after_bytes: [1, 2, 3]}}", "[MIN, MAX]"),
            ("{freeze: {after_bytes: [0, 2]}}", "at least 1"),
            ("{freeze: {after: 10}}", "unknown field `after`"),
            ("{freeze: {direction: up}}", "unknown variant `up`"),
            ("{throttle: {kbps: 10, burst_bytes: 100}}", "1514..="),
            (
                "{throttle: {kbps: 10, scope: isp}}",
                "unknown variant `isp`",
            ),
            ("{reset: {to: nobody}}", "unknown variant `nobody`"),
        ] {
            let err = action(yaml).unwrap_err();
            assert!(err.contains(says), "{yaml}: {err}");
        }
    }

    #[test]
    fn action_errors_name_the_policy_line() {
        let yaml = "version: 1\nrules:\n  - name: a\n    match: {keywords: [x]}\n    action: {degrade: {loss: 7}}\n";
        let err = Policy::from_yaml(yaml, "p.yaml").unwrap_err().to_string();
        assert!(err.contains("p.yaml"), "{err}");
        assert!(err.contains("degrade.loss"), "{err}");
        assert!(err.contains("line 5"), "{err}");
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
    fn duplicate_list_names_are_refused_with_line_and_column() {
        let yaml = "version: 1\nlists:\n  tg:\n    format: domains\n    entries: [t.me]\n  tg:\n    format: domains\n    entries: [example.com]\n";
        let err = Policy::from_yaml(yaml, "p.yaml").unwrap_err().to_string();
        assert!(err.contains("p.yaml"), "{err}");
        assert!(
            err.contains("duplicate key `tg` at line 6 column 3"),
            "{err}"
        );
        assert!(err.contains("first at line 3 column 3"), "{err}");
    }

    #[test]
    fn duplicate_keys_anywhere_are_refused() {
        let yaml = "version: 1\nprofile:\n  max_flows: 10\n  max_flows: 20\n";
        let err = Policy::from_yaml(yaml, "p.yaml").unwrap_err().to_string();
        assert!(
            err.contains("duplicate key `max_flows` at line 4 column 3"),
            "{err}"
        );
        // Flow style: the parser's own message, with the map's position.
        let err = Policy::from_yaml(
            "version: 1\nprofile: {max_flows: 1, max_flows: 2}\n",
            "p.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("duplicate entry with key \"max_flows\" at line 2"),
            "{err}"
        );
    }

    #[test]
    fn sizes_out_of_range_are_refused_with_the_range() {
        let err = Policy::from_yaml("version: 1\nprofile: {max_flows: 0}\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_flows is 0; allowed 1..="), "{err}");
        let err = Policy::from_yaml(
            "version: 1\nprofile: {reassembly_max_bytes: 4294967295}\n",
            "p.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("reassembly_max_bytes is 4294967295; allowed 1024..=1048576"),
            "{err}"
        );
        assert!(validate_profile(&Profile::default()).is_ok());
    }

    #[test]
    fn the_reassembly_budget_is_bytes_or_auto() {
        let budget = |v: &str| {
            Policy::from_yaml(
                &format!("version: 1\nprofile: {{reassembly_memory_budget: {v}}}\n"),
                "p.yaml",
            )
            .map(|p| p.profile.reassembly_memory_budget)
            .map_err(|e| e.to_string())
        };
        assert_eq!(budget("auto"), Ok(chokepoint_ruleset::profile::AUTO));
        assert_eq!(budget("8388608"), Ok(8 * MIB));
        assert_eq!(
            Profile::default().reassembly_memory_budget,
            chokepoint_ruleset::profile::AUTO
        );
        for (bad, why) in [
            ("0", "0 bytes: give a budget, or `auto`"),
            ("lots", "`lots`: give a number of bytes or `auto`"),
            (
                "1000",
                "reassembly_memory_budget is 1000; allowed 1048576..=",
            ),
        ] {
            let err = budget(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn a_byte_order_mark_is_accepted() {
        let p = Policy::from_yaml("\u{feff}version: 1\n", "p.yaml").unwrap();
        assert_eq!(p.version, 1);
    }

    #[test]
    fn documented_encoding_spellings_are_accepted() {
        for (word, want) in [
            ("utf-8", TextEncoding::Utf8),
            ("utf8", TextEncoding::Utf8),
            ("windows-1251", TextEncoding::Windows1251),
            ("windows1251", TextEncoding::Windows1251),
            ("cp1251", TextEncoding::Windows1251),
            ("auto", TextEncoding::Auto),
        ] {
            let got: TextEncoding = serde_norway::from_str(word).unwrap();
            assert_eq!(got, want, "{word}");
        }
    }

    #[test]
    fn wrong_version_is_refused() {
        let err = Policy::from_yaml("version: 2\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 2 is not supported"), "{err}");
    }

    #[test]
    fn a_preset_sets_its_knobs_and_other_keys_override_it() {
        use chokepoint_ruleset::profile::{Checksums, Overlap, TtlFakes, Urgent};
        let p = Policy::from_yaml("version: 1\nprofile: {preset: hardened}\n", "p.yaml").unwrap();
        assert_eq!(p.profile, Preset::Hardened.profile());
        assert_eq!(p.profile.urgent, Urgent::Strip);
        assert_eq!(p.profile.ttl_fakes, TtlFakes::Ignore);
        assert_eq!(p.profile.overlap, Overlap::Last);
        let yaml =
            "version: 1\nprofile:\n  preset: hardened\n  checksums: trust\n  max_flows: 10\n";
        let p = Policy::from_yaml(yaml, "p.yaml").unwrap();
        assert_eq!(p.profile.checksums, Checksums::Trust);
        assert_eq!(p.profile.max_flows, 10);
        assert_eq!(
            p.profile.urgent,
            Urgent::Strip,
            "the rest of the preset stays"
        );
        // Without a preset, the defaults are the base.
        let p = Policy::from_yaml("version: 1\nprofile: {urgent: strip}\n", "p.yaml").unwrap();
        assert_eq!(
            p.profile,
            Profile {
                urgent: Urgent::Strip,
                ..Profile::default()
            }
        );
    }

    #[test]
    fn every_preset_parses_by_its_name_and_validates() {
        for preset in Preset::ALL {
            let yaml = format!("version: 1\nprofile: {{preset: {}}}\n", preset.name());
            let p = Policy::from_yaml(&yaml, "p.yaml").unwrap();
            assert_eq!(p.profile, preset.profile(), "{}", preset.name());
            assert_eq!(Preset::from_name(preset.name()), Some(preset));
        }
    }

    #[test]
    fn an_unknown_preset_or_knob_is_an_error_with_its_line() {
        let yaml = "version: 1\nprofile:\n  max_flows: 10\n  preset: tspu-2099\n";
        let err = Policy::from_yaml(yaml, "p.yaml").unwrap_err().to_string();
        assert!(err.contains("tspu-2099"), "{err}");
        assert!(err.contains("tspu-2025"), "the known names: {err}");
        assert!(err.contains("line 4"), "{err}");
        let yaml = "version: 1\nprofile:\n  preset: naive\n  urgnet: strip\n";
        let err = Policy::from_yaml(yaml, "p.yaml").unwrap_err().to_string();
        assert!(err.contains("unknown field `urgnet`"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        let yaml = "version: 1\nprofile: {urgent: sometimes}\n";
        let err = Policy::from_yaml(yaml, "p.yaml").unwrap_err().to_string();
        assert!(err.contains("sometimes") && err.contains("line 2"), "{err}");
        let err = Policy::from_yaml("version: 1\nprofile: {ttl_margin: 200}\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ttl_margin is 200"), "{err}");
    }
}
