//! Bogons: addresses that should never be a public site's, with the list
//! OONI's netxlite uses (`internal/netxlite/bogon.go`, from ipinfo.io).
//!
//! 198.18.0.0/15 is on it, so every address in the chokepoint lab is a
//! bogon; `dns.bogon` (a bogon answer where the control has none) can
//! therefore not appear in the lab, where the control's answers are bogons
//! too. A sinkhole answer there shows as `dns.inconsistent`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 bogon prefixes.
const V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// IPv6 bogon prefixes (the 6to4 and Teredo ones embed the IPv4 bogons).
const V6: &[(u128, u8)] = &[
    (0, 128),                          // ::/128
    (1, 128),                          // ::1/128
    (0xffff_0000_0000, 96),            // ::ffff:0:0/96
    (0, 96),                           // ::/96
    (0x0100_0000_0000_0000 << 64, 64), // 100::/64
    (0x2001_0010 << 96, 28),           // 2001:10::/28
    (0x2001_0db8 << 96, 32),           // 2001:db8::/32
    (0xfc00 << 112, 7),                // fc00::/7
    (0xfe80 << 112, 10),               // fe80::/10
    (0xfec0 << 112, 10),               // fec0::/10
    (0xff00 << 112, 8),                // ff00::/8
    (0x2002 << 112, 24),               // 2002::/24
    (0x2002_0a00 << 96, 24),           // 2002:a00::/24
    (0x2002_7f00 << 96, 24),           // 2002:7f00::/24
    (0x2002_a9fe << 96, 32),           // 2002:a9fe::/32
    (0x2002_ac10 << 96, 28),           // 2002:ac10::/28
    (0x2002_c000_0000 << 80, 40),      // 2002:c000::/40
    (0x2002_c000_0200 << 80, 40),      // 2002:c000:200::/40
    (0x2002_c0a8 << 96, 32),           // 2002:c0a8::/32
    (0x2002_c612 << 96, 31),           // 2002:c612::/31
    (0x2002_c633_6400 << 80, 40),      // 2002:c633:6400::/40
    (0x2002_cb00_7100 << 80, 40),      // 2002:cb00:7100::/40
    (0x2002_e000 << 96, 20),           // 2002:e000::/20
    (0x2002_f000 << 96, 20),           // 2002:f000::/20
    (0x2002_ffff_ffff << 80, 48),      // 2002:ffff:ffff::/48
    (0x2001 << 112, 40),               // 2001::/40
    (0x2001_0000_0a00 << 80, 40),      // 2001:0:a00::/40
    (0x2001_0000_7f00 << 80, 40),      // 2001:0:7f00::/40
    (0x2001_0000_a9fe << 80, 48),      // 2001:0:a9fe::/48
    (0x2001_0000_ac10 << 80, 44),      // 2001:0:ac10::/44
    (0x2001_0000_c000_0000 << 64, 56), // 2001:0:c000::/56
    (0x2001_0000_c000_0200 << 64, 56), // 2001:0:c000:200::/56
    (0x2001_0000_c0a8 << 80, 48),      // 2001:0:c0a8::/48
    (0x2001_0000_c612 << 80, 47),      // 2001:0:c612::/47
    (0x2001_0000_c633_6400 << 64, 56), // 2001:0:c633:6400::/56
    (0x2001_0000_cb00_7100 << 64, 56), // 2001:0:cb00:7100::/56
    (0x2001_0000_e000 << 80, 36),      // 2001:0:e000::/36
    (0x2001_0000_f000 << 80, 36),      // 2001:0:f000::/36
    (0x2001_0000_ffff_ffff << 64, 64), // 2001:0:ffff:ffff::/64
];

/// Whether `ip` is a bogon, as netxlite's `IsBogon` decides.
pub fn is_bogon(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_broadcast() || V4.iter().any(|&(net, len)| in_v4(v4, net, len)),
        IpAddr::V6(v6) => V6.iter().any(|&(net, len)| in_v6(v6, net, len)),
    }
}

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: u128, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == net & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bogon(s: &str) -> bool {
        is_bogon(s.parse().unwrap())
    }

    #[test]
    fn netxlite_bogons() {
        for b in [
            "0.0.0.0",
            "10.1.2.3",
            "127.0.0.1",
            "169.254.1.1",
            "172.31.0.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.254",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
            "2002:7f00::1",
            "2001:0:c612::1",
        ] {
            assert!(bogon(b), "{b} should be a bogon");
        }
        for ok in [
            "8.8.8.8",
            "198.20.0.1",
            "149.154.167.99",
            "2a00:1450::1",
            "2002:808:808::1",
        ] {
            assert!(!bogon(ok), "{ok} is not a bogon");
        }
    }
}
