//! The GFW's test for "fully encrypted" traffic (Wu, Zohaib, Durumeric,
//! Houmansadr, Wustrow, "How the Great Firewall of China Detects and Blocks
//! Fully Encrypted Traffic", USENIX Security 2023, §4). It looks at the
//! first data packet a client sends on a TCP connection and lets it go if
//! any of five exemptions holds; what is left looks like random bytes,
//! which is what Shadowsocks, obfs4, VMess and MTProto's obfuscated
//! transport send, without the censor knowing any of them:
//!
//! * Ex1: the average number of set bits per byte is at most 3.4 or at
//!   least 4.6 (random bytes average 4);
//! * Ex2: the first six bytes are printable ASCII (0x20-0x7e);
//! * Ex3: more than half of the bytes are printable;
//! * Ex4: more than 20 contiguous bytes are printable;
//! * Ex5: the first bytes match TLS or HTTP.
//!
//! The thresholds are compared in integers (10 × set bits against 34 or 46
//! × bytes), so the edges 3.4 and 4.6 themselves are exempt, as the paper
//! writes them, with no rounding.

/// Which exemption let a packet go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exemption {
    /// Ex1: set bits per byte ≤ 3.4 or ≥ 4.6.
    Popcount,
    /// Ex2: the first six bytes are printable.
    FirstSixPrintable,
    /// Ex3: more than half the bytes are printable.
    MostlyPrintable,
    /// Ex4: a run of more than 20 printable bytes.
    PrintableRun,
    /// Ex5: a TLS record header or an HTTP method.
    TlsOrHttp,
}

fn printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

/// The paper's TLS fingerprint: `[\x16-\x17]\x03[\x00-\x09]`.
fn tls(p: &[u8]) -> bool {
    matches!(p, [0x16..=0x17, 0x03, 0x00..=0x09, ..])
}

/// The HTTP methods of the paper's fingerprint.
fn http(p: &[u8]) -> bool {
    [&b"GET "[..], b"PUT ", b"POST ", b"HEAD "]
        .iter()
        .any(|m| p.starts_with(m))
}

/// The exemption that lets the first data packet `payload` through, or
/// `None` for a packet the GFW would treat as fully encrypted. An empty
/// payload is no data packet and is exempt.
pub fn exemption(payload: &[u8]) -> Option<Exemption> {
    if payload.is_empty() {
        return Some(Exemption::Popcount);
    }
    let n = payload.len();
    if n >= 6 && payload[..6].iter().all(|&b| printable(b)) {
        return Some(Exemption::FirstSixPrintable);
    }
    if tls(payload) || http(payload) {
        return Some(Exemption::TlsOrHttp);
    }
    let (mut bits, mut shown, mut run, mut longest) = (0usize, 0usize, 0usize, 0usize);
    for &b in payload {
        bits += b.count_ones() as usize;
        if printable(b) {
            shown += 1;
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    if 10 * bits <= 34 * n || 10 * bits >= 46 * n {
        Some(Exemption::Popcount)
    } else if 2 * shown > n {
        Some(Exemption::MostlyPrintable)
    } else if longest > 20 {
        Some(Exemption::PrintableRun)
    } else {
        None
    }
}

/// Would the GFW take this first data packet for fully encrypted traffic?
pub fn is_fully_encrypted(payload: &[u8]) -> bool {
    exemption(payload).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random bytes (a 64-bit LCG's top byte).
    fn random_like(len: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 56) as u8
            })
            .collect()
    }

    /// 10 bytes averaging exactly `tenths`/10 set bits, none printable:
    /// bytes of 3 and 4 set bits chosen from the non-printable ones.
    fn popcount_tenths(tenths: usize) -> Vec<u8> {
        // 0x07 (3 bits), 0x0f (4), 0x1f (5), 0x8f (5), 0x9f (6): all
        // below 0x20 or above 0x7e.
        let total = tenths; // set bits over 10 bytes
        let mut v = vec![0x0f; 10]; // 40 bits
        let mut bits = 40isize;
        let mut i = 0;
        while bits > total as isize {
            v[i] = 0x07;
            bits -= 1;
            i += 1;
        }
        while bits < total as isize {
            v[i] = 0x1f;
            bits += 1;
            i += 1;
        }
        v
    }

    #[test]
    fn popcount_edges_at_exactly_3_4_and_4_6() {
        for (tenths, exempt) in [
            (34, true),
            (35, false),
            (40, false),
            (45, false),
            (46, true),
        ] {
            let p = popcount_tenths(tenths);
            let bits: u32 = p.iter().map(|b| b.count_ones()).sum();
            assert_eq!(bits as usize, tenths);
            assert!(p.iter().all(|&b| !printable(b)));
            assert_eq!(
                exemption(&p) == Some(Exemption::Popcount),
                exempt,
                "{tenths} set bits in 10 bytes"
            );
        }
    }

    #[test]
    fn six_printable_bytes_first() {
        let mut p = popcount_tenths(40);
        p.splice(0..0, *b"abcdef");
        assert_eq!(exemption(&p), Some(Exemption::FirstSixPrintable));
        let mut q = popcount_tenths(40);
        q.splice(0..0, *b"abcde");
        assert_ne!(exemption(&q), Some(Exemption::FirstSixPrintable), "five");
        assert_eq!(exemption(b"abcdef"), Some(Exemption::FirstSixPrintable));
    }

    #[test]
    fn more_than_half_printable() {
        // 0x33 ('3') and 0x0f both have 4 set bits: the popcount stays 4.
        let half = [[0x0fu8; 10], [b'3'; 10]].concat();
        let mut mixed = Vec::new();
        for i in 0..20 {
            mixed.push(half[if i % 2 == 0 { i / 2 } else { 10 + i / 2 }]);
        }
        assert_eq!(mixed.iter().filter(|&&b| printable(b)).count(), 10);
        assert_eq!(
            exemption(&mixed),
            None,
            "exactly half is not more than half"
        );
        mixed.push(b'3');
        assert_eq!(exemption(&mixed), Some(Exemption::MostlyPrintable));
    }

    #[test]
    fn more_than_20_contiguous_printable() {
        // 21 printable bytes of 4 set bits ('3', 'U', 'f') inside 60
        // non-printable ones of 4 set bits: under half printable.
        let run = |n: usize| {
            let mut p = vec![0x0fu8; 3];
            p.extend(std::iter::repeat_n(b'3', n));
            p.extend(std::iter::repeat_n(0xf0u8, 60 - 3));
            p
        };
        assert_eq!(exemption(&run(20)), None);
        assert_eq!(exemption(&run(21)), Some(Exemption::PrintableRun));
    }

    #[test]
    fn tls_and_http_fingerprints() {
        let mut hello = random_like(300, 1);
        hello[..3].copy_from_slice(&[0x16, 0x03, 0x01]);
        assert_eq!(exemption(&hello), Some(Exemption::TlsOrHttp));
        hello[..3].copy_from_slice(&[0x17, 0x03, 0x09]);
        assert_eq!(exemption(&hello), Some(Exemption::TlsOrHttp));
        hello[..3].copy_from_slice(&[0x17, 0x03, 0x0a]);
        assert_ne!(exemption(&hello), Some(Exemption::TlsOrHttp));
        hello[..3].copy_from_slice(&[0x15, 0x03, 0x01]);
        assert_ne!(exemption(&hello), Some(Exemption::TlsOrHttp));
        assert!(http(b"POST /x"));
        assert!(!http(b"POSTX"));
    }

    #[test]
    fn random_bytes_are_fully_encrypted() {
        // Uniform bytes: ~4 bits each, ~37% printable, short runs. Most
        // draws of a few hundred bytes meet no exemption.
        let flagged = (0..200)
            .filter(|&s| is_fully_encrypted(&random_like(400, s)))
            .count();
        assert!(flagged > 180, "{flagged} of 200");
        assert!(!is_fully_encrypted(b""));
        assert!(!is_fully_encrypted(&[0u8; 50]), "all zero: popcount 0");
    }
}
