//! Community ID v1 (corelight/community-id-spec): one flow hash that
//! Zeek, Suricata, Arkime and others compute alike, so an event can be
//! joined with their logs.
//!
//! `1:` + base64(SHA-1(seed (2 bytes, big endian) · source address ·
//! destination address · protocol · 0 · source port · destination port)),
//! with the endpoints ordered so the smaller (address, port) comes first,
//! which makes both directions of a flow hash alike. Ports are left out
//! for protocols without them. ICMP's type/code mapping is not needed:
//! events are TCP or UDP (or IP without ports).

use std::net::IpAddr;

use ring::digest;

/// The flow's Community ID v1 with `seed` (0 is everyone's default).
pub fn community_id(
    seed: u16,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    proto: u8,
) -> String {
    let has_ports = matches!(proto, 6 | 17 | 132);
    let (a, b) = (octets(src), octets(dst));
    let forward = if has_ports {
        (a.as_slice(), sport) <= (b.as_slice(), dport)
    } else {
        a.as_slice() <= b.as_slice()
    };
    let ((ia, pa), (ib, pb)) = if forward {
        ((a, sport), (b, dport))
    } else {
        ((b, dport), (a, sport))
    };
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&seed.to_be_bytes());
    ctx.update(&ia);
    ctx.update(&ib);
    ctx.update(&[proto, 0]);
    if has_ports {
        ctx.update(&pa.to_be_bytes());
        ctx.update(&pb.to_be_bytes());
    }
    format!("1:{}", base64(ctx.finish().as_ref()))
}

/// A 63-bit flow number from the same hash, for EVE's `flow_id`
/// (Suricata's is a positive 64-bit integer): equal for both directions.
pub fn flow_id(community_id: &str) -> u64 {
    let d = digest::digest(&digest::SHA256, community_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(b) >> 1
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Standard base64 with padding (RFC 4648 §4), as the spec requires.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(A[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // As the reference implementation (PyPI communityid) computes them.
    #[test]
    fn the_specs_baseline_values() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            community_id(0, ip("128.232.110.120"), ip("66.35.250.204"), 34855, 80, 6),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        assert_eq!(
            community_id(0, ip("66.35.250.204"), ip("128.232.110.120"), 80, 34855, 6),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        assert_eq!(
            community_id(1, ip("128.232.110.120"), ip("66.35.250.204"), 34855, 80, 6),
            "1:3V71V58M3Ksw/yuFALMcW0LAHvc="
        );
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn flow_ids_are_positive_and_symmetric() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = community_id(0, ip("10.0.0.1"), ip("10.0.0.2"), 1000, 443, 6);
        let b = community_id(0, ip("10.0.0.2"), ip("10.0.0.1"), 443, 1000, 6);
        assert_eq!(flow_id(&a), flow_id(&b));
        assert!(flow_id(&a) < 1 << 63);
    }
}
