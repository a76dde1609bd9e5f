//! The TCP connect step.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::deadline::millis_since;
use crate::failure;

/// One connect attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpConnect {
    /// `ip:port` (`[ip6]:port`).
    pub addr: SocketAddr,
    /// Whether the handshake completed.
    pub status: bool,
    /// OONI's failure string when it did not.
    pub failure: Option<String>,
    /// How long the attempt took.
    pub elapsed_ms: u64,
}

/// Connects to `addr` within `timeout`; the stream when it worked.
pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> (TcpConnect, Option<TcpStream>) {
    let start = Instant::now();
    let outcome = TcpStream::connect_timeout(&addr, timeout);
    let elapsed_ms = millis_since(start);
    match outcome {
        Ok(sock) => {
            // Requests are small and written whole; waiting for more to
            // coalesce only adds a round trip to the timings.
            let _ = sock.set_nodelay(true);
            let record = TcpConnect {
                addr,
                status: true,
                failure: None,
                elapsed_ms,
            };
            (record, Some(sock))
        }
        Err(e) => {
            let record = TcpConnect {
                addr,
                status: false,
                failure: Some(failure::from_io(&e)),
                elapsed_ms,
            };
            (record, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn refused_and_connected() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap();
        let (ok, sock) = connect(open, Duration::from_secs(2));
        assert!(ok.status && sock.is_some() && ok.failure.is_none());
        drop(l);
        // The port was just closed: the kernel answers the SYN with a RST.
        let (refused, sock) = connect(open, Duration::from_secs(2));
        assert!(!refused.status && sock.is_none());
        assert_eq!(
            refused.failure.as_deref(),
            Some(failure::CONNECTION_REFUSED)
        );
    }
}
