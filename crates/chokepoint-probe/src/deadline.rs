//! A point in time a step must finish by, applied to blocking sockets.
//!
//! Sockets take a timeout per call, not a deadline; arming the socket with
//! what is left before every read or write turns the per-call timeout into
//! one for the whole step, so a peer that trickles a byte at a time cannot
//! stretch it.

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// When a step must be done.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    /// `d` from now.
    pub fn after(d: Duration) -> Deadline {
        Deadline(Instant::now() + d)
    }

    /// Time left, or a `TimedOut` error once it has passed. Never zero:
    /// a zero socket timeout would mean "no timeout".
    pub fn remaining(&self) -> io::Result<Duration> {
        let left = self.0.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        Ok(left.max(Duration::from_millis(1)))
    }

    /// Sets the socket's read and write timeouts to the time left.
    pub fn arm(&self, sock: &TcpStream) -> io::Result<()> {
        let left = self.remaining()?;
        sock.set_read_timeout(Some(left))?;
        sock.set_write_timeout(Some(left))
    }
}

/// Milliseconds since `start`, for the timings in a measurement.
pub(crate) fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}
