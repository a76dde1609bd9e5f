//! The namespace lab: a censored network on one Linux machine.
//!
//! `chokepoint lab up` builds five network namespaces per lab and joins
//! them with veth pairs:
//!
//! ```text
//!  client ─── censor (chokepoint run, a layer-2 bridge) ─── router ─┬─ server (web, DNS)
//!    └──────────── management link (not censored) ───── control ───┘  (OONI-style test helper)
//! ```
//!
//! The router decrements the TTL, as every real hop does, so TTL-limited
//! evasion tricks meet the censor the way they would in an ISP. The
//! server's resolver answers every name with the server's address (or the
//! address a scenario gives a name), so any URL can be tried; its web
//! server mints a certificate for whatever name a client asks, signed by
//! the lab's own CA. The control namespace reaches the server without
//! crossing the censor and runs the probe's test helper, so a probe in the
//! client can compare what it sees with what an uncensored vantage sees.
//!
//! Everything a lab starts is recorded in its state directory: the
//! namespaces it created (and only those are ever deleted) and the PIDs of
//! its processes (ended by PID, never by name). Every process runs under a
//! lifetime, so a lab that is never taken down still stops by itself.
//! Addresses come from 198.18.0.0/15 and fd00:198:18::/64 only; each lab's
//! namespaces are separate network stacks, so two labs can use the same
//! addresses side by side.
//!
//! Modules: [`plan`] (names and addresses), [`netns`] (namespaces and
//! running code inside one), [`procs`] (detached processes by PID),
//! [`state`] (what a lab created), [`lab`] (up, down, status, apply),
//! [`ca`], [`web`], [`quic`] and [`dns`] (the lab's certificate authority,
//! web server, QUIC endpoint and resolver),
//! [`scenario`] (timelines of policies, run live or replayed offline).

#![warn(missing_docs)]

pub mod ca;
pub mod dns;
pub mod lab;
pub mod netns;
pub mod plan;
pub mod procs;
pub mod quic;
pub mod scenario;
pub mod signature;
pub mod state;
pub mod web;
