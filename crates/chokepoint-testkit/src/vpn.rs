//! Synthetic first packets of VPNs, proxies and calls, shaped as the real
//! clients send them (the lab's captures of wireguard-go, OpenVPN 2.6,
//! turnutils and OpenSSH): payloads only, to be put in
//! [`crate::synth::udp_datagram`] or [`crate::synth::tcp_segment`].
//! Keys and ciphertexts are pseudo-random bytes from a seed.

/// `len` pseudo-random bytes (SplitMix64 from `seed`): what a ciphertext,
/// a key or a fully encrypted proxy's first packet looks like on the wire.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A WireGuard message of `ty` (1 initiation, 148 bytes; 2 response, 92;
/// 3 cookie reply, 64; 4 transport, `len`), sender index from `seed`.
pub fn wireguard(ty: u8, len: usize, seed: u64) -> Vec<u8> {
    let mut m = random_bytes(len, seed);
    m[..4].copy_from_slice(&[ty, 0, 0, 0]);
    m
}

/// A WireGuard handshake initiation.
pub fn wireguard_initiation(seed: u64) -> Vec<u8> {
    wireguard(1, 148, seed)
}

/// How an OpenVPN reset is wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenVpnWrap {
    /// No `--tls-auth` or `--tls-crypt`.
    Plain,
    /// `--tls-auth` with SHA-1's 20-byte HMAC.
    TlsAuth,
    /// `--tls-crypt`.
    TlsCrypt,
}

/// An OpenVPN client hard reset (`P_CONTROL_HARD_RESET_CLIENT_V2`, key id
/// 0) as OpenVPN 2.6 sends it: 14 bytes plain, 42 with tls-auth, 54 with
/// tls-crypt. Over TCP, prefix it with [`openvpn_tcp`].
pub fn openvpn_reset(wrap: OpenVpnWrap, seed: u64) -> Vec<u8> {
    let mut p = vec![7 << 3];
    p.extend_from_slice(&random_bytes(8, seed));
    // Replay packet id 1 and a Unix time in 2026.
    let replay = [0, 0, 0, 1, 0x69, 0x80, 0x00, 0x00];
    match wrap {
        OpenVpnWrap::Plain => {}
        OpenVpnWrap::TlsAuth => {
            p.extend_from_slice(&random_bytes(20, seed ^ 1));
            p.extend_from_slice(&replay);
        }
        OpenVpnWrap::TlsCrypt => {
            p.extend_from_slice(&replay);
            p.extend_from_slice(&random_bytes(37, seed ^ 2));
            return p;
        }
    }
    // No acknowledgements, message packet id 0.
    p.extend_from_slice(&[0, 0, 0, 0, 0]);
    p
}

/// An OpenVPN packet as TCP carries it: its 16-bit length first.
pub fn openvpn_tcp(packet: &[u8]) -> Vec<u8> {
    let mut s = (packet.len() as u16).to_be_bytes().to_vec();
    s.extend_from_slice(packet);
    s
}

/// A STUN binding request (RFC 8489) with a SOFTWARE attribute, as
/// `turnutils_stunclient` sends one.
pub fn stun_binding_request(seed: u64) -> Vec<u8> {
    let software = b"Coturn-4.6.1";
    let mut attrs = vec![0x80, 0x22, 0, software.len() as u8];
    attrs.extend_from_slice(software);
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&0x2112_a442u32.to_be_bytes());
    m.extend_from_slice(&random_bytes(12, seed));
    m.extend_from_slice(&attrs);
    m
}

/// An OpenSSH client's identification string.
pub fn ssh_banner() -> Vec<u8> {
    b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n".to_vec()
}

/// A BitTorrent peer handshake (BEP 3).
pub fn bittorrent_handshake(seed: u64) -> Vec<u8> {
    let mut h = b"\x13BitTorrent protocol".to_vec();
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 5]);
    h.extend_from_slice(&random_bytes(20, seed));
    h.extend_from_slice(b"-qB4630-");
    h.extend_from_slice(
        &random_bytes(6, seed ^ 3)
            .iter()
            .map(|b| b'a' + b % 26)
            .collect::<Vec<_>>(),
    );
    h.extend_from_slice(b"012345");
    h
}
