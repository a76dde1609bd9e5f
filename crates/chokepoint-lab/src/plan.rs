//! The lab's names and addresses.
//!
//! Every lab uses the same plan: its namespaces are separate network
//! stacks, so labs side by side never see each other's addresses. Only
//! 198.18.0.0/15 (RFC 2544's benchmarking range) and fd00:198:18::/64 are
//! used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A namespace's job in the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The subscriber: curl, dig, the probe.
    Client,
    /// The censor's box: `chokepoint run` bridging its two interfaces.
    Censor,
    /// The next hop: routes (and decrements the TTL) between the client's
    /// segment and the servers'.
    Router,
    /// Web and DNS servers.
    Server,
    /// The probe's control vantage (OONI's test helper), uncensored.
    Control,
}

impl Role {
    /// Every role, in the order namespaces are made.
    pub const ALL: [Role; 5] = [
        Role::Client,
        Role::Censor,
        Role::Router,
        Role::Server,
        Role::Control,
    ];

    /// The role's name in namespace names and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Censor => "censor",
            Role::Router => "router",
            Role::Server => "server",
            Role::Control => "control",
        }
    }

    /// The role called `s`.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The namespace of `role` in the lab called `lab`: `cp-LAB-ROLE`.
pub fn netns(lab: &str, role: Role) -> String {
    format!("cp-{lab}-{}", role.as_str())
}

/// Whether `name` can name a lab: 1 to 12 lowercase letters or digits (it
/// goes into namespace and file names).
pub fn valid_name(name: &str) -> bool {
    (1..=12).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The client's address.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The client's IPv6 address.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 1);
/// The router on the client's segment (the client's gateway).
pub const ROUTER_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
/// The router on the client's segment, IPv6.
pub const ROUTER_CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 0xfe);
/// The router on the servers' segment.
pub const ROUTER_SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 254);
/// The router on the servers' segment, IPv6.
pub const ROUTER_SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 1, 0xfe);
/// The router on the control's segment.
pub const ROUTER_CONTROL_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 254);
/// The router on the control's segment, IPv6.
pub const ROUTER_CONTROL_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 2, 0xfe);
/// The server's main address: web servers and the resolver.
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The server's IPv6 address.
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 1, 2);
/// The control's address towards the router.
pub const CONTROL_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// The control's IPv6 address towards the router.
pub const CONTROL_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 2, 1);
/// The client's end of the management link to the control.
pub const MGMT_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);
/// The control's end of the management link: the test helper listens here.
pub const MGMT_CONTROL_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 2);
/// The test helper's port.
pub const HELPER_PORT: u16 = 8080;
/// Where the engine serves metrics, inside the censor namespace.
pub const METRICS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9900);
/// The server segment: scenario hosts must be inside it.
pub const SERVER_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 1, 0), 24);
/// Ports the lab's web server listens on: HTTP and HTTPS, and one
/// alternative of each.
pub const WEB_PORTS: WebPorts = WebPorts {
    http: [80, 8080],
    https: [443, 8443],
};

/// The web server's ports.
#[derive(Debug, Clone, Copy)]
pub struct WebPorts {
    /// Plain HTTP.
    pub http: [u16; 2],
    /// HTTPS.
    pub https: [u16; 2],
}

/// The test helper's address, as the client reaches it.
pub fn helper_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(MGMT_CONTROL_V4), HELPER_PORT)
}

/// Whether `a` may be a scenario host's address: on the server segment,
/// and not an address the plan already gives out.
pub fn host_address_ok(a: Ipv4Addr) -> bool {
    let (net, len) = SERVER_NET;
    let mask = u32::MAX << (32 - len);
    (u32::from(a) & mask) == u32::from(net)
        && a != SERVER_V4
        && a != ROUTER_SERVER_V4
        && a.octets()[3] != 0
        && a.octets()[3] != 255
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(netns("lab", Role::Censor), "cp-lab-censor");
        assert!(valid_name("lab2"));
        assert!(!valid_name(""));
        assert!(!valid_name("Lab"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name("abcdefghijklm"));
        assert_eq!(Role::parse("router"), Some(Role::Router));
    }

    #[test]
    fn host_addresses_stay_on_the_server_segment() {
        assert!(host_address_ok(Ipv4Addr::new(198, 18, 1, 10)));
        assert!(!host_address_ok(SERVER_V4));
        assert!(!host_address_ok(ROUTER_SERVER_V4));
        assert!(!host_address_ok(Ipv4Addr::new(198, 18, 0, 10)));
        assert!(!host_address_ok(Ipv4Addr::new(10, 0, 1, 10)));
        assert!(!host_address_ok(Ipv4Addr::new(198, 18, 1, 255)));
    }
}
