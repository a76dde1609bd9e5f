//! # chokepoint-runtime
//!
//! The I/O side of chokepoint: capture files in, the sans-IO core in the
//! middle, events and summaries out.

#![warn(missing_docs)]

pub mod actions;
pub mod bench;
pub mod bridge;
pub mod capture;
pub mod capture_writer;
pub mod community_id;
pub mod eve;
pub mod events;
pub mod fanout;
pub mod fetch;
pub mod learned;
pub mod machine;
pub mod metrics;
pub mod port;
pub mod privs;
pub mod replay;
pub mod residual;
pub mod ring;
