//! Events in Suricata's EVE JSON shape (`--events-format eve`), so they
//! drop into the pipelines built for Suricata (Filebeat's and Logstash's
//! Suricata modules, Vector, jq recipes) and join Zeek's and Suricata's
//! own logs by `community_id`.
//!
//! A decision a rule made (or a policy default that stops traffic) is an
//! `alert` whose `signature` is the rule; any other decision is the
//! protocol's event (`tls`, `quic`, `http`, `dns`, `flow` for an address).
//! Both carry the app-layer object Suricata uses (`tls.sni`, `quic.sni`,
//! `http.hostname`, `dns.rrname`), and everything chokepoint knows beyond
//! EVE sits under `chokepoint` (the same keys as the native format).
//! The schema is docs/schema/eve-event.schema.json.

use chokepoint_core::Event;
use chokepoint_rules::{Protocol, Ruleset, Trigger, Verdict};

use crate::actions::Outcome;
use crate::community_id::{community_id, flow_id};

/// The EVE schema's version, written into every event.
pub const SCHEMA_VERSION: u32 = 1;

/// RFC 3339 UTC with microseconds, as Suricata writes (with `Z`).
pub fn timestamp(ts_ns: u64) -> String {
    let secs = (ts_ns / 1_000_000_000) as i64;
    let micros = (ts_ns % 1_000_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The protocol an event is about, as EVE's `app_proto` names it.
fn app_proto(e: &Event) -> Option<&'static str> {
    let p = match e.trigger {
        Trigger::TlsSni => Protocol::Tls,
        Trigger::QuicSni => Protocol::Quic,
        Trigger::HttpHost => Protocol::Http,
        Trigger::DnsQname => Protocol::Dns,
        _ => e.protocol?,
    };
    Some(p.as_str())
}

/// One event as an EVE JSON object. `in_iface`: the interface the
/// deciding packet came in on (live), none in replay.
pub fn eve_json(
    rs: &Ruleset,
    e: &Event,
    done: &Outcome,
    in_iface: Option<&str>,
) -> serde_json::Value {
    let native = crate::replay::event_json(rs, e, done);
    let cid = community_id(0, e.src, e.dst, e.sport, e.dport, e.proto);
    let name = native["name"].as_str().unwrap_or_default().to_string();
    let app = app_proto(e);
    let blocks = !matches!(e.verdict, Verdict::Pass | Verdict::Log | Verdict::Learn);
    let alert = e.rule.is_some() || blocks;
    let event_type = if alert {
        "alert"
    } else {
        app.unwrap_or("flow")
    };
    let mut v = serde_json::json!({
        "timestamp": timestamp(e.ts),
        "flow_id": flow_id(&cid),
        "event_type": event_type,
        "src_ip": e.src.to_string(),
        "src_port": e.sport,
        "dest_ip": e.dst.to_string(),
        "dest_port": e.dport,
        "proto": match e.proto { 6 => "TCP".to_string(), 17 => "UDP".to_string(), p => p.to_string() },
        "community_id": cid,
    });
    let o = v.as_object_mut().expect("an object");
    if let Some(i) = in_iface {
        o.insert("in_iface".into(), i.into());
    }
    if let Some(a) = app {
        o.insert("app_proto".into(), a.into());
    }
    if !name.is_empty() {
        let (key, field) = match e.trigger {
            Trigger::QuicSni => ("quic", "sni"),
            Trigger::HttpHost => ("http", "hostname"),
            Trigger::DnsQname => ("dns", "rrname"),
            _ => ("tls", "sni"),
        };
        let mut obj = serde_json::Map::new();
        obj.insert(field.into(), name.into());
        if key == "dns" {
            obj.insert("type".into(), "query".into());
        }
        o.insert(key.into(), obj.into());
    }
    if alert {
        let meta = |k: &str| {
            native[k]
                .as_str()
                .map(|s| serde_json::json!([s]))
                .unwrap_or_else(|| serde_json::json!([]))
        };
        o.insert(
            "alert".into(),
            serde_json::json!({
                "action": if blocks { "blocked" } else { "allowed" },
                "gid": 1,
                "signature_id": e.rule.map_or(0, |r| r.index() + 1),
                "rev": 1,
                "signature": e.rule.map_or("policy default".to_string(), |r| {
                    rs.meta.rules.get(r.index()).map_or("(rule of an earlier policy)".to_string(), |m| m.name.clone())
                }),
                "category": native["list"].as_str().unwrap_or(""),
                "severity": if blocks { 1 } else { 3 },
                "metadata": {
                    "entry": meta("entry"),
                    "verdict": meta("verdict"),
                    "action": meta("action"),
                    "trigger": meta("trigger"),
                },
            }),
        );
    }
    o.insert("chokepoint".into(), native);
    o.insert("schema_version".into(), SCHEMA_VERSION.into());
    v
}

/// The events' format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventFormat {
    /// chokepoint's own keys (docs/schema/event.schema.json).
    #[default]
    Native,
    /// Suricata EVE (docs/schema/eve-event.schema.json).
    Eve,
}

impl EventFormat {
    /// `native` or `eve`.
    pub fn parse(s: &str) -> Option<EventFormat> {
        match s {
            "native" => Some(EventFormat::Native),
            "eve" => Some(EventFormat::Eve),
            _ => None,
        }
    }

    /// One event's line in this format, appended to `out` (no newline).
    /// Native lines are written directly ([`crate::replay::write_event_line`]);
    /// EVE lines through their `serde_json` value.
    pub fn write_line(
        self,
        rs: &Ruleset,
        e: &Event,
        done: &Outcome,
        in_iface: Option<&str>,
        out: &mut String,
    ) {
        match self {
            EventFormat::Native => crate::replay::write_event_line(rs, e, done, out),
            EventFormat::Eve => {
                use std::fmt::Write as _;
                let _ = write!(out, "{}", eve_json(rs, e, done, in_iface));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000000Z");
        // 2018-04-16T06:30:01.123456789Z
        assert_eq!(
            timestamp(1_523_860_201_123_456_789),
            "2018-04-16T06:30:01.123456Z"
        );
        assert_eq!(
            timestamp(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            timestamp(4_102_444_799_000_000_000),
            "2099-12-31T23:59:59.000000Z"
        );
    }
}
