//! One UDP request and its answer, for the `dns` and `stun` sources: a socket bound to one family,
//! the request sent again while no answer comes, a bounded receive buffer.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::SourceError;
use crate::http_failure::io_reason;
use crate::net::Family;

/// Wait before the first retransmission; doubled after each (RFC 8489 §6.2.1 starts at 500 ms).
pub(super) const FIRST_RETRANSMIT: Duration = Duration::from_millis(500);
/// Requests sent at most (the first and three retransmissions: at 0, 0.5, 1.5 and 3.5 s); then
/// the lookup waits for the caller's timeout.
pub(super) const MAX_SENDS: u32 = 4;

/// A socket on the wildcard address of `family` (`0.0.0.0:0` or `[::]:0`), so that the request
/// leaves over that family only.
pub(super) async fn bind(family: Family) -> Result<UdpSocket, SourceError> {
    let local: SocketAddr = match family {
        Family::Ipv4 => (Ipv4Addr::UNSPECIFIED, 0).into(),
        Family::Ipv6 => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    UdpSocket::bind(local).await.map_err(io_error)
}

/// Connects `socket` to `server`, sends `request` and returns the length of the first datagram
/// received into `buf`. The request is sent again after [`FIRST_RETRANSMIT`], doubling, up to
/// [`MAX_SENDS`] times. A datagram that fills `buf` entirely may have been cut and is refused.
/// Cancel-safe: the caller's timeout bounds it.
pub(super) async fn exchange(
    socket: &UdpSocket,
    server: SocketAddr,
    request: &[u8],
    buf: &mut [u8],
) -> Result<usize, SourceError> {
    socket.connect(server).await.map_err(io_error)?;
    let mut wait = FIRST_RETRANSMIT;
    let mut sends = 0;
    let n = loop {
        socket.send(request).await.map_err(io_error)?;
        sends += 1;
        if sends >= MAX_SENDS {
            break socket.recv(buf).await.map_err(io_error)?;
        }
        match tokio::time::timeout(wait, socket.recv(buf)).await {
            Ok(r) => break r.map_err(io_error)?,
            Err(_) => wait *= 2,
        }
    };
    if n >= buf.len() {
        return Err(SourceError::BodyTooLarge {
            limit: buf.len().saturating_sub(1),
        });
    }
    Ok(n)
}

/// A socket error as a transport error, in plain words (`connection refused`: the server's host
/// answered that nothing listens on the port; `network unreachable`).
pub(super) fn io_error(e: std::io::Error) -> SourceError {
    SourceError::Transport {
        message: io_reason(&e),
    }
}
