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

pub use chokepoint_ruleset::profile::{Direction, Profile, Timeouts};
pub use chokepoint_ruleset::vocab::{Action, DnsAnswer, ListFormat, Trigger};

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
    /// UTF-8.
    Utf8,
    #[serde(alias = "cp1251")]
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
    /// How the censor inspects traffic; defaults model a modern TSPU box.
    #[serde(default)]
    pub profile: Profile,
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
