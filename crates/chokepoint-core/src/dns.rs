//! DNS queries: every question name, with compression handled under loop
//! and length limits.

use crate::wire::Rd;

/// Longest presentation name kept (255 octets on the wire at most).
pub const MAX_NAME: usize = 255;
const MAX_POINTERS: usize = 32;

/// A DNS message header, as far as a censor cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Query id.
    pub id: u16,
    /// QR bit: a response.
    pub response: bool,
    /// Opcode (0: a standard query).
    pub opcode: u8,
    /// Questions.
    pub qdcount: u16,
}

/// The header of a DNS message.
pub fn header(msg: &[u8]) -> Option<Header> {
    let mut r = Rd::new(msg);
    let id = r.u16()?;
    let flags = r.u16()?;
    let qdcount = r.u16()?;
    r.skip(6)?;
    Some(Header {
        id,
        response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0x0f) as u8,
        qdcount,
    })
}

/// Read the name at `at` into `out` as dotted labels (raw label bytes, so a
/// label holding odd bytes stays as sent). Returns (length in `out`, offset
/// just past the name in the message).
pub fn read_name(msg: &[u8], mut at: usize, out: &mut [u8; MAX_NAME]) -> Option<(usize, usize)> {
    let mut len = 0usize;
    let mut end_after: Option<usize> = None;
    let mut jumps = 0;
    loop {
        let l = *msg.get(at)? as usize;
        match l >> 6 {
            0 => {
                if l == 0 {
                    return Some((len, end_after.unwrap_or(at + 1)));
                }
                let label = msg.get(at + 1..at + 1 + l)?;
                let extra = usize::from(len > 0);
                if len + extra + l > MAX_NAME {
                    return None;
                }
                if extra == 1 {
                    out[len] = b'.';
                    len += 1;
                }
                out[len..len + l].copy_from_slice(label);
                len += l;
                at += 1 + l;
            }
            3 => {
                let ptr = (l & 0x3f) << 8 | *msg.get(at + 1)? as usize;
                if end_after.is_none() {
                    end_after = Some(at + 2);
                }
                jumps += 1;
                if jumps > MAX_POINTERS || ptr >= msg.len() {
                    return None;
                }
                at = ptr;
            }
            _ => return None, // extended label types: not in queries
        }
    }
}

/// Calls `f(name, qtype)` for each question of a query (QR = 0). Stops at
/// the first malformed question; returns how many were read.
pub fn for_each_question(msg: &[u8], mut f: impl FnMut(&[u8], u16)) -> Option<usize> {
    let h = header(msg)?;
    if h.response {
        return Some(0);
    }
    let mut at = 12;
    let mut buf = [0u8; MAX_NAME];
    let mut n = 0;
    for _ in 0..h.qdcount.min(64) {
        let Some((len, next)) = read_name(msg, at, &mut buf) else {
            break;
        };
        let Some(qt) = msg.get(next..next + 2) else {
            break;
        };
        if msg.len() < next + 4 {
            break;
        }
        f(&buf[..len], u16::from_be_bytes([qt[0], qt[1]]));
        at = next + 4;
        n += 1;
    }
    Some(n)
}

/// Render a name the way tshark prints it: bytes outside printable ASCII
/// as `\ooo` octal.
pub fn escape(name: &[u8], out: &mut String) {
    for &b in name {
        if (0x21..0x7f).contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn query(names: &[&str]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00];
        m.extend_from_slice(&(names.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0; 6]);
        for n in names {
            for l in n.split('.') {
                m.push(l.len() as u8);
                m.extend_from_slice(l.as_bytes());
            }
            m.extend_from_slice(&[0, 0, 1, 0, 1]);
        }
        m
    }

    #[test]
    fn questions_and_compression() {
        let mut seen = Vec::new();
        let m = query(&["www.example.com", "t.me"]);
        for_each_question(&m, |n, t| seen.push((n.to_vec(), t))).unwrap();
        assert_eq!(
            seen,
            vec![(b"www.example.com".to_vec(), 1), (b"t.me".to_vec(), 1)]
        );
        // second question compressed: "a" + pointer to offset 12
        let mut m = query(&["example.com"]);
        m[5] = 2;
        m.extend_from_slice(&[1, b'a', 0xc0, 12, 0, 28, 0, 1]);
        let mut seen = Vec::new();
        for_each_question(&m, |n, t| seen.push((n.to_vec(), t))).unwrap();
        assert_eq!(seen[1], (b"a.example.com".to_vec(), 28));
    }

    #[test]
    fn pointer_loops_and_overlong_names_are_refused() {
        let mut m = query(&[]);
        m[5] = 1;
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        let mut buf = [0u8; MAX_NAME];
        assert!(read_name(&m, 12, &mut buf).is_none());
        let mut long = query(&[]);
        long[5] = 1;
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert!(read_name(&long, 12, &mut buf).is_none());
    }

    #[test]
    fn escape_like_tshark() {
        let mut s = String::new();
        escape(b"www.allyourba\x04\x05\x06arebelongto.cn", &mut s);
        assert_eq!(s, "www.allyourba\\004\\005\\006arebelongto.cn");
    }
}
