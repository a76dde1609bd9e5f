//! What a rule requires besides its list match: the [`Conditions`] a
//! packet's [`Facts`] must meet, the [`Protocol`]s a rule may fire on by
//! itself, and the [`Residual`] blocking a rule arms when it fires.
//!
//! Conditions are AND-combined with the list match and with each other. They
//! are checked only for a candidate rule (one whose list matched, or a
//! protocol rule for the protocol just classified), by comparing integers
//! and walking short slices, so checking them allocates nothing.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::vocab::Chance;

/// A protocol the engine classifies a flow as, from its first packets
/// (the classifiers are in `chokepoint_core::classify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// A TLS ClientHello over TCP.
    Tls,
    /// A QUIC long-header packet (any version), or Google QUIC.
    Quic,
    /// A plain HTTP request.
    Http,
    /// A DNS query.
    Dns,
    /// An SSH identification string (`SSH-2.0-`).
    Ssh,
    /// The BitTorrent peer handshake.
    Bittorrent,
    /// A WireGuard handshake or transport message, on any port.
    Wireguard,
    /// An OpenVPN control-channel reset, over UDP or TCP.
    Openvpn,
    /// A STUN or TURN message (the magic cookie): WebRTC and messenger calls.
    Stun,
    /// A first TCP data packet that none of the GFW's exemptions covers
    /// (Wu et al., USENIX Security 2023): Shadowsocks, obfs4, VMess...
    FullyEncrypted,
}

impl Protocol {
    /// Every protocol, in bit order.
    pub const ALL: [Protocol; 10] = [
        Protocol::Tls,
        Protocol::Quic,
        Protocol::Http,
        Protocol::Dns,
        Protocol::Ssh,
        Protocol::Bittorrent,
        Protocol::Wireguard,
        Protocol::Openvpn,
        Protocol::Stun,
        Protocol::FullyEncrypted,
    ];
    /// How many protocols there are.
    pub const COUNT: usize = Self::ALL.len();
    /// The protocols whose flows carry a name a list can match.
    pub const NAMED: u16 = (1 << Protocol::Tls as u16)
        | (1 << Protocol::Quic as u16)
        | (1 << Protocol::Http as u16)
        | (1 << Protocol::Dns as u16);

    /// The protocol's bit in [`Conditions::protocols`].
    pub fn bit(self) -> u16 {
        1 << self as u16
    }

    /// Position in [`Protocol::ALL`], for per-protocol arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A tunnel a subscriber uses to get around blocks (the false-positive
    /// measurement asserts that ordinary traffic never gets one of these).
    pub fn is_vpn(self) -> bool {
        matches!(self, Protocol::Wireguard | Protocol::Openvpn)
    }

    /// The name used in policies, events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tls => "tls",
            Protocol::Quic => "quic",
            Protocol::Http => "http",
            Protocol::Dns => "dns",
            Protocol::Ssh => "ssh",
            Protocol::Bittorrent => "bittorrent",
            Protocol::Wireguard => "wireguard",
            Protocol::Openvpn => "openvpn",
            Protocol::Stun => "stun",
            Protocol::FullyEncrypted => "fully_encrypted",
        }
    }
}

/// An inclusive port range (`443` is `443..=443`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
}

impl PortRange {
    fn holds(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

/// QUIC version 2 (RFC 9369).
pub const QUIC_V2: u32 = 0x6b33_43cf;
/// The last QUIC draft version number's base: `draft-NN` is `0xff0000NN`.
pub const QUIC_DRAFT_BASE: u32 = 0xff00_0000;

/// What a rule requires of the packet that fires it, besides its list
/// match. The default requires nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conditions {
    /// [`Protocol::bit`] mask the flow's protocol must be in; 0: any.
    pub protocols: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: Option<u8>,
    /// Server ports; empty: any.
    pub dst_ports: Vec<PortRange>,
    /// Client ports; empty: any.
    pub src_ports: Vec<PortRange>,
    /// Least transport payload of the firing packet, bytes.
    pub min_bytes: Option<u32>,
    /// Most transport payload of the firing packet, bytes.
    pub max_bytes: Option<u32>,
    /// QUIC versions of the firing packet's long header; empty: any.
    pub quic_versions: Vec<u32>,
    /// Only the flow's first data packet (TSPU's QUIC filter, 2022).
    pub first_packet: bool,
    /// The client's port is at least the server's (the GFW's QUIC filter,
    /// 2024).
    pub src_port_ge_dst_port: bool,
    /// Lists the server's address must be in (any of them).
    pub dst_lists: Vec<u16>,
    /// Lists the client's address must be in (any of them).
    pub src_lists: Vec<u16>,
    /// Lists whose names or addresses exempt a flow from the rule.
    pub except: Vec<u16>,
    /// The share of flows the rule fires on, drawn once per flow and rule
    /// from the profile's seed (the GFW blocked about a quarter of the
    /// fully encrypted connections it flagged).
    pub probability: Option<Chance>,
}

impl Conditions {
    /// Does this require nothing?
    pub fn is_empty(&self) -> bool {
        *self == Conditions::default()
    }

    /// Every list the conditions refer to.
    pub fn lists(&self) -> impl Iterator<Item = u16> + '_ {
        self.dst_lists
            .iter()
            .chain(&self.src_lists)
            .chain(&self.except)
            .copied()
    }

    /// The checks that need no list lookup.
    pub(crate) fn packet_holds(&self, f: &Facts<'_>) -> bool {
        let ports =
            |ranges: &[PortRange], p: u16| ranges.is_empty() || ranges.iter().any(|r| r.holds(p));
        (self.protocols == 0 || f.protocol.is_some_and(|p| self.protocols & p.bit() != 0))
            && self.proto.is_none_or(|p| p == f.proto)
            && ports(&self.dst_ports, f.server_port)
            && ports(&self.src_ports, f.client_port)
            && self.min_bytes.is_none_or(|n| f.payload_len >= n)
            && self.max_bytes.is_none_or(|n| f.payload_len <= n)
            && (self.quic_versions.is_empty()
                || f.quic_version
                    .is_some_and(|v| self.quic_versions.contains(&v)))
            && (!self.first_packet || f.first_packet)
            && (!self.src_port_ge_dst_port || f.client_port >= f.server_port)
    }
}

/// Parse a QUIC version as a policy writes it: a number (`1`, `0x6b3343cf`),
/// `v1`, `v2`, or `draft-NN` (`0xff0000NN`).
pub fn parse_quic_version(s: &str) -> Option<u32> {
    let s = s.trim();
    match s {
        "v1" => return Some(1),
        "v2" => return Some(QUIC_V2),
        _ => {}
    }
    if let Some(n) = s.strip_prefix("draft-") {
        let n: u8 = n.parse().ok()?;
        return Some(QUIC_DRAFT_BASE | u32::from(n));
    }
    if let Some(h) = s.strip_prefix("0x") {
        return u32::from_str_radix(h, 16).ok();
    }
    s.parse().ok()
}

/// Who a residual block covers, after a rule fired on a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResidualScope {
    /// (client IP, server IP, server port): the GFW's 90/180 s blocks.
    #[serde(rename = "3-tuple")]
    ThreeTuple,
    /// (client IP, server IP).
    #[serde(rename = "2-tuple")]
    TwoTuple,
    /// (server IP, server port), for every client.
    #[serde(rename = "server")]
    Server,
    /// Every new flow of the client.
    #[serde(rename = "client")]
    Client,
}

impl ResidualScope {
    /// The name used in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            ResidualScope::ThreeTuple => "3-tuple",
            ResidualScope::TwoTuple => "2-tuple",
            ResidualScope::Server => "server",
            ResidualScope::Client => "client",
        }
    }
}

/// What a residual block does to a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidualAction {
    /// Discard its packets.
    Drop,
    /// Reset it (TCP); UDP is dropped.
    Reset,
}

/// Residual blocking: once the rule fires, every new flow in `scope` is
/// blocked for `seconds`, whatever it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Residual {
    /// How long, seconds.
    pub seconds: u32,
    /// Which new flows.
    pub scope: ResidualScope,
    /// What happens to them.
    pub action: ResidualAction,
}

/// What is known of the packet a trigger fired on, for [`Conditions`].
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// IP protocol number.
    pub proto: u8,
    /// The client's address.
    pub client: IpAddr,
    /// The server's address.
    pub server: IpAddr,
    /// The client's port.
    pub client_port: u16,
    /// The server's port.
    pub server_port: u16,
    /// Transport payload of the packet, bytes.
    pub payload_len: u32,
    /// Is this the flow's first data packet?
    pub first_packet: bool,
    /// The packet's QUIC long-header version, if it has one.
    pub quic_version: Option<u32>,
    /// Does the ClientHello carry ECH?
    pub ech: bool,
    /// What the flow was classified as, once known.
    pub protocol: Option<Protocol>,
    /// The name seen (normalised), or empty.
    pub name: &'a [u8],
    /// The flow's own random stream (its seed and serial in its engine,
    /// mixed): a rule's `probability` draws from it, so a replay fires the
    /// same rules on the same flows.
    pub draw: u64,
}

impl Facts<'static> {
    /// What is known from a flow's endpoints alone, before any packet's
    /// payload, name or protocol is.
    pub fn endpoints(
        proto: u8,
        (client, client_port): (IpAddr, u16),
        (server, server_port): (IpAddr, u16),
    ) -> Facts<'static> {
        Facts {
            proto,
            client,
            server,
            client_port,
            server_port,
            payload_len: 0,
            first_packet: false,
            quic_version: None,
            ech: false,
            protocol: None,
            name: b"",
            draw: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_version_spellings() {
        assert_eq!(parse_quic_version("1"), Some(1));
        assert_eq!(parse_quic_version("v1"), Some(1));
        assert_eq!(parse_quic_version("v2"), Some(0x6b33_43cf));
        assert_eq!(parse_quic_version("draft-29"), Some(0xff00_001d));
        assert_eq!(parse_quic_version("draft-27"), Some(0xff00_001b));
        assert_eq!(parse_quic_version("0xff00001d"), Some(0xff00_001d));
        assert_eq!(parse_quic_version("draft-x"), None);
        assert_eq!(parse_quic_version("v3"), None);
    }
}
