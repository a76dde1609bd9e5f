//! # chokepoint-core
//!
//! The sans-IO packet-inspection core: `(timestamp, link type, frame
//! bytes)` in, a decision out. No sockets, threads, clocks or locks; time
//! comes from the caller's timestamps, and buffers are bounded and reused.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod classify;
pub mod decode;
pub mod defrag;
pub mod dns;
mod enforce;
pub mod engine;
pub mod event;
pub mod flow;
pub mod http;
pub mod quic;
pub mod reasm;
pub mod residual;
pub mod tls;
pub mod wire;

pub use engine::{Counters, Engine, Share};
pub use event::{Decision, Event, Verdict};
pub use wire::link::LinkType;
pub mod inject;
pub mod learn;
