//! QUIC: long headers, coalesced packets, Initial decryption with keys from
//! the packet's own DCID, frames, Google QUIC CHLO.
#![no_main]
use chokepoint_core::quic;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quic::gquic_version(data);
    let _ = quic::gquic_clear_chlo(data);
    let _ = quic::chlo_sni(data);
    let _ = quic::crypto_frames(data, false, |_, _| {});
    let _ = quic::crypto_frames(data, true, |_, _| {});
    let mut rest = data;
    let mut out = Vec::new();
    while let Some((p, next)) = quic::long_packet(rest) {
        if p.is_initial() {
            if let Some(s) = quic::scheme(p.version) {
                if let Some(k) = quic::Keys::client(&s, p.dcid) {
                    if let Some(plain) = quic::decrypt(&p, &k, &mut out) {
                        let _ = quic::crypto_frames(plain, s.google, |_, _| {});
                    }
                }
            }
        }
        rest = next;
    }
});
