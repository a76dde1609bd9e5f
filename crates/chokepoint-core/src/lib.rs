//! # chokepoint-core
//!
//! The sans-IO packet-inspection core: `(timestamp, link type, frame
//! bytes)` in, a decision out. No sockets, threads, clocks or locks; time
//! comes from the caller's timestamps, and buffers are bounded and reused.

pub mod decode;
pub mod dns;
pub mod http;
pub mod quic;
pub mod tls;
pub mod wire;
