//! SSH (RFC 4253 §4.2): each side first sends its identification string,
//! `SSH-protoversion-softwareversion`, in clear. A client sends it at once;
//! `SSH-1.99-` is a server that speaks both versions. Banners cut across
//! segments are read from the reassembled stream.

use super::Sighting;

const PREFIXES: [&[u8]; 2] = [b"SSH-2.0-", b"SSH-1.99-"];

/// Does the stream start with an SSH identification string?
pub fn stream(data: &[u8]) -> Sighting {
    let mut partial = false;
    for p in PREFIXES {
        let n = data.len().min(p.len());
        if data[..n] == p[..n] {
            if n == p.len() {
                return Sighting::Yes;
            }
            partial = true;
        }
    }
    if partial {
        Sighting::NeedMore
    } else {
        Sighting::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners() {
        assert_eq!(stream(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"), Sighting::Yes);
        assert_eq!(stream(b"SSH-1.99-Cisco-1.25\r\n"), Sighting::Yes);
        assert_eq!(stream(b"SSH-2.0-"), Sighting::Yes);
        assert_eq!(
            stream(b"SSH-1.5-old\r\n"),
            Sighting::No,
            "SSH 1 is not classified"
        );
        assert_eq!(stream(b"ssh-2.0-x"), Sighting::No);
        assert_eq!(stream(b"GET / HTTP/1.1\r\n"), Sighting::No);
    }

    #[test]
    fn a_banner_split_across_segments_waits_for_its_prefix() {
        assert_eq!(stream(b"S"), Sighting::NeedMore);
        assert_eq!(stream(b"SSH-"), Sighting::NeedMore);
        assert_eq!(stream(b"SSH-1."), Sighting::NeedMore);
        assert_eq!(stream(b"SSH-2.0"), Sighting::NeedMore);
        assert_eq!(stream(b"SSH-3"), Sighting::No);
        assert_eq!(stream(b""), Sighting::NeedMore);
    }
}
