//! TLS ClientHello: server name, ECH, ESNI and GREASE.
//!
//! Written by hand: this runs on every new TLS flow, on hostile bytes, and
//! must not allocate. It reads the handshake message only as far as the
//! extensions and skips everything it does not need.

use crate::wire::Rd;

/// The server_name extension (RFC 6066).
pub const EXT_SERVER_NAME: u16 = 0x0000;
/// Encrypted Client Hello (RFC 9849), and the draft code points before it.
pub const EXT_ECH: u16 = 0xfe0d;
/// ECH extension code points of drafts 8 to 12.
pub const EXT_ECH_DRAFTS: [u16; 5] = [0xfe08, 0xfe09, 0xfe0a, 0xfe0b, 0xfe0c];
/// The abandoned ESNI draft.
pub const EXT_ESNI: u16 = 0xffce;

/// What a censor reads from a ClientHello.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientHello<'a> {
    /// The first `host_name` of the server_name extension.
    pub sni: Option<&'a [u8]>,
    /// An Encrypted Client Hello extension is present.
    pub ech: bool,
    /// The older encrypted-SNI extension is present.
    pub esni: bool,
    /// A GREASE value (RFC 8701) among cipher suites or extensions.
    pub grease: bool,
}

/// `0x?a?a` with equal bytes.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// Parse a ClientHello handshake message body (after type and length).
///
/// Lenient the way a censor is: what was read before any damage counts.
/// A hello cut short before its extensions is a hello without SNI; an
/// extension block that goes wrong after the server_name keeps the name
/// (tshark reports both cases the same way).
pub fn client_hello(body: &[u8]) -> Option<ClientHello<'_>> {
    let mut ch = ClientHello::default();
    let _ = parse_into(body, &mut ch);
    Some(ch)
}

fn parse_into<'a>(body: &'a [u8], ch: &mut ClientHello<'a>) -> Option<()> {
    let mut r = Rd::new(body);
    r.skip(2 + 32)?; // legacy_version, random
    r.vec8()?; // session id
    let suites = r.vec16()?;
    ch.grease = suites
        .chunks_exact(2)
        .any(|c| is_grease(u16::from_be_bytes([c[0], c[1]])));
    r.vec8()?; // compression methods
    if r.left() == 0 {
        return Some(()); // no extensions (SSLv3-style hello)
    }
    // A block length beyond the message: read what is there.
    let n = r.u16()? as usize;
    let mut ext = Rd::new(&r.rest()[..n.min(r.left())]);
    while ext.left() > 0 {
        let ty = ext.u16()?;
        let data = ext.vec16()?;
        match ty {
            EXT_SERVER_NAME if ch.sni.is_none() => {
                let mut list = Rd::new(Rd::new(data).vec16()?);
                while list.left() > 0 {
                    let kind = list.u8()?;
                    let name = list.vec16()?;
                    if kind == 0 {
                        ch.sni = Some(name);
                        break;
                    }
                }
            }
            EXT_ECH => ch.ech = true,
            t if EXT_ECH_DRAFTS.contains(&t) => ch.ech = true,
            EXT_ESNI => ch.esni = true,
            t if is_grease(t) => ch.grease = true,
            _ => {}
        }
    }
    Some(())
}

/// Parse a handshake message (type, u24 length, body) if it is a
/// ClientHello. `None` if it is not, or is malformed.
pub fn handshake(msg: &[u8]) -> Option<ClientHello<'_>> {
    let mut r = Rd::new(msg);
    if r.u8()? != 1 {
        return None;
    }
    let len = r.u24()? as usize;
    client_hello(r.take(len)?)
}

/// Parse what a message holds of a ClientHello cut short (its length
/// beyond the bytes given): the lenient parse reads as far as it can.
pub fn handshake_prefix(msg: &[u8]) -> Option<ClientHello<'_>> {
    let mut r = Rd::new(msg);
    if r.u8()? != 1 {
        return None;
    }
    let len = r.u24()? as usize;
    let body = r.rest();
    client_hello(&body[..len.min(body.len())])
}

/// The SNI of a ClientHello that starts at the start of `segment`, read as
/// far as its first record goes in this segment: a hint (what a burst
/// prefetches the domain table for), never a decision. `None` when the
/// segment does not start a ClientHello or the name is not in it.
pub fn sni_hint(segment: &[u8]) -> Option<&[u8]> {
    let hdr = segment.get(..6)?;
    if hdr[0] != 0x16 || hdr[1] != 3 || hdr[5] != 1 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([hdr[3], hdr[4]]));
    handshake_prefix(&segment[5..segment.len().min(5 + len)])?.sni
}

/// The body of the first TLS handshake record at the start of `stream`,
/// once it is all there.
pub fn first_record(stream: &[u8]) -> Option<&[u8]> {
    let hdr = stream.get(..5)?;
    if hdr[0] != 0x16 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([hdr[3], hdr[4]]));
    stream.get(5..5 + len)
}

/// What a TCP stream prefix holds so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// A whole ClientHello handshake message is in `scratch` (or in the
    /// stream, if `in_stream`) at `..len`.
    Complete {
        /// Length of the handshake message.
        len: usize,
        /// The message lies in the stream (after the 5-byte record
        /// header) rather than in `scratch`.
        in_stream: bool,
    },
    /// Looks like a ClientHello in progress.
    NeedMore,
    /// Not a TLS handshake, or a malformed one.
    NotTls,
    /// The ClientHello claims to be larger than `max` bytes.
    TooLarge,
}

/// Gather the first handshake message from TLS records at the start of a
/// stream, across record boundaries (a ClientHello may be split over
/// several records as well as several segments). When it lies within the
/// first record nothing is copied.
pub fn gather(stream: &[u8], scratch: &mut Vec<u8>, max: usize) -> Progress {
    scratch.clear();
    let mut r = Rd::new(stream);
    let mut need: Option<usize> = None;
    let mut first = true;
    loop {
        let Some(hdr) = r.take(5) else {
            return Progress::NeedMore;
        };
        if hdr[0] != 0x16 || hdr[1] != 3 || hdr[2] > 4 {
            return Progress::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([hdr[3], hdr[4]]));
        let frag = match r.take(len) {
            Some(f) => f,
            None => {
                // Partial record: enough to know it is a ClientHello?
                let partial = r.rest();
                if first && !partial.is_empty() && partial[0] != 1 {
                    return Progress::NotTls;
                }
                return Progress::NeedMore;
            }
        };
        if first {
            if frag.first().is_some_and(|&t| t != 1) {
                return Progress::NotTls;
            }
            if frag.len() >= 4 {
                let n = u32::from_be_bytes([0, frag[1], frag[2], frag[3]]) as usize + 4;
                if n > max {
                    return Progress::TooLarge;
                }
                if frag.len() >= n {
                    // Whole message in the first record: parse in place.
                    return Progress::Complete {
                        len: 5 + n,
                        in_stream: true,
                    };
                }
                need = Some(n);
            }
            first = false;
        }
        if scratch.len() + frag.len() > max {
            return Progress::TooLarge;
        }
        scratch.extend_from_slice(frag);
        if need.is_none() && scratch.len() >= 4 {
            let n = u32::from_be_bytes([0, scratch[1], scratch[2], scratch[3]]) as usize + 4;
            if n > max {
                return Progress::TooLarge;
            }
            need = Some(n);
        }
        if let Some(n) = need {
            if scratch.len() >= n {
                return Progress::Complete {
                    len: n,
                    in_stream: false,
                };
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ClientHello handshake message with the given extensions.
    pub fn build_ch(sni: Option<&str>, extra_ext: &[(u16, &[u8])], suites: &[u16]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
        for s in suites {
            body.extend_from_slice(&s.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]);
        let mut exts = Vec::new();
        if let Some(n) = sni {
            let mut list = vec![0];
            list.extend_from_slice(&(n.len() as u16).to_be_bytes());
            list.extend_from_slice(n.as_bytes());
            let mut data = (list.len() as u16).to_be_bytes().to_vec();
            data.extend_from_slice(&list);
            exts.extend_from_slice(&0u16.to_be_bytes());
            exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
            exts.extend_from_slice(&data);
        }
        for (t, d) in extra_ext {
            exts.extend_from_slice(&t.to_be_bytes());
            exts.extend_from_slice(&(d.len() as u16).to_be_bytes());
            exts.extend_from_slice(d);
        }
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut msg = vec![1];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        msg
    }

    pub fn records(msg: &[u8], split: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in msg.chunks(split) {
            out.extend_from_slice(&[0x16, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    #[test]
    fn sni_ech_grease() {
        let m = build_ch(
            Some("Example.COM"),
            &[(0x0a0a, b""), (EXT_ECH, b"x")],
            &[0x1301, 0x2a2a],
        );
        let ch = handshake(&m).unwrap();
        assert_eq!(ch.sni, Some(&b"Example.COM"[..]));
        assert!(ch.ech && ch.grease && !ch.esni);
        let m = build_ch(None, &[(EXT_ESNI, b"")], &[0x1301]);
        let ch = handshake(&m).unwrap();
        assert_eq!(ch.sni, None);
        assert!(ch.esni && !ch.grease);
    }

    #[test]
    fn damage_after_the_name_keeps_the_name() {
        let mut m = build_ch(Some("e.example"), &[(0x0010, b"abc")], &[0x1301]);
        let l = m.len();
        m.truncate(l - 2); // the last extension is cut short
        let body_len = (m.len() - 4) as u32;
        m[1..4].copy_from_slice(&body_len.to_be_bytes()[1..]);
        assert_eq!(handshake(&m).unwrap().sni, Some(&b"e.example"[..]));
        // cut before the extensions: a hello without a name
        let m = build_ch(Some("e.example"), &[], &[0x1301]);
        let cut = 4 + 2 + 32 + 1 + 4 + 2;
        let mut short = m[..cut].to_vec();
        short[1..4].copy_from_slice(&((cut - 4) as u32).to_be_bytes()[1..]);
        assert_eq!(handshake(&short).unwrap().sni, None);
    }

    #[test]
    fn gather_across_records_and_segments() {
        let m = build_ch(Some("a.example"), &[], &[0x1301]);
        let mut scratch = Vec::new();
        let one = records(&m, 10_000);
        assert_eq!(
            gather(&one, &mut scratch, 65536),
            Progress::Complete {
                len: one.len(),
                in_stream: true
            }
        );
        let many = records(&m, 7);
        assert_eq!(
            gather(&many[..many.len() - 1], &mut scratch, 65536),
            Progress::NeedMore
        );
        assert_eq!(
            gather(&many, &mut scratch, 65536),
            Progress::Complete {
                len: m.len(),
                in_stream: false
            }
        );
        assert_eq!(
            handshake(&scratch[..m.len()]).unwrap().sni,
            Some(&b"a.example"[..])
        );
        assert_eq!(gather(&many, &mut scratch, 20), Progress::TooLarge);
        assert_eq!(
            gather(b"GET / HTTP/1.1\r\n", &mut scratch, 65536),
            Progress::NotTls
        );
        assert_eq!(
            gather(&[0x16, 3, 1, 0, 5, 2], &mut scratch, 65536),
            Progress::NotTls
        );
    }
}
