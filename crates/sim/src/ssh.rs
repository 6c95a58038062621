//! Fake SSH endpoints shared by the cloud simulators: one loopback port per machine that greets,
//! closes or stays silent depending on the machine's state at the moment a connection is accepted.
//!
//! A connection gets [`BANNER`] when the machine is running, its guest responsive and its firewall
//! admits the client address to TCP 22; it is closed at once when the machine is not running
//! (nothing listens); it is held open without a word when the guest hangs or the firewall drops
//! the packets, which is what a client sees on a real network.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::Server;

/// The version line a healthy, reachable machine sends first.
pub(crate) const BANNER: &[u8] = b"SSH-2.0-OpenSSH_9.6 dynwall-sim\r\n";

/// What one connection gets, decided when it is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Greeting {
    /// Send [`BANNER`], then wait for the peer to hang up.
    Banner,
    /// Close at once: the machine is not running (or no longer exists).
    Close,
    /// Say nothing until the peer hangs up: a hung guest, or a firewall dropping our packets.
    Silent,
}

impl Greeting {
    /// The greeting of a machine that is `running` (powered on, no task that takes the guest
    /// down), whose guest is `responsive`, and whose firewall `admitted` the client to TCP 22.
    pub(crate) fn judge(running: bool, responsive: bool, admitted: bool) -> Greeting {
        if !running {
            Greeting::Close
        } else if responsive && admitted {
            Greeting::Banner
        } else {
            Greeting::Silent
        }
    }
}

/// Binds one endpoint on 127.0.0.1:0 per key; every accepted connection gets what `judge` says
/// for its key at accept time (`judge` is also where connections are counted).
pub(crate) async fn start_endpoints<K, J>(
    keys: impl IntoIterator<Item = K>,
    judge: J,
) -> io::Result<BTreeMap<K, Server>>
where
    K: Ord + Clone + Send + 'static,
    J: Fn(&K) -> Greeting + Clone + Send + 'static,
{
    let mut endpoints = BTreeMap::new();
    for key in keys {
        let (judge, own) = (judge.clone(), key.clone());
        let server = Server::start_tcp(move |stream| serve(stream, judge(&own))).await?;
        endpoints.insert(key, server);
    }
    Ok(endpoints)
}

async fn serve(mut stream: TcpStream, greeting: Greeting) {
    match greeting {
        Greeting::Close => return,
        Greeting::Banner => {
            if stream.write_all(BANNER).await.is_err() {
                return;
            }
        }
        Greeting::Silent => {}
    }
    // Hold the connection, discarding whatever arrives, until the peer hangs up; shutdown of the
    // simulator aborts this task.
    let mut sink = [0u8; 1024];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// True when `client` lies in `net/prefix`. Families must agree (an IPv4-mapped IPv6 client is
/// the IPv4 address it carries); a prefix longer than the family's width contains nothing.
pub(crate) fn prefix_contains(net: IpAddr, prefix: u8, client: IpAddr) -> bool {
    match (net.to_canonical(), client.to_canonical()) {
        (IpAddr::V4(n), IpAddr::V4(c)) => {
            same_prefix(u32::from(n).into(), u32::from(c).into(), prefix, 32)
        }
        (IpAddr::V6(n), IpAddr::V6(c)) => same_prefix(n.into(), c.into(), prefix, 128),
        _ => false,
    }
}

/// True when the top `prefix` of `width` bits of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, prefix: u8, width: u8) -> bool {
    let Some(shift) = width.checked_sub(prefix) else {
        return false;
    };
    let shift = u32::from(shift);
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn greeting_needs_all_three() {
        assert_eq!(Greeting::judge(true, true, true), Greeting::Banner);
        assert_eq!(Greeting::judge(true, false, true), Greeting::Silent);
        assert_eq!(Greeting::judge(true, true, false), Greeting::Silent);
        assert_eq!(Greeting::judge(false, true, true), Greeting::Close);
        assert_eq!(Greeting::judge(false, false, false), Greeting::Close);
    }

    #[test]
    fn prefixes_contain_addresses() {
        let client = ip("220.146.61.235");
        assert!(prefix_contains(ip("220.146.61.235"), 32, client));
        assert!(prefix_contains(ip("220.146.61.0"), 24, client));
        assert!(
            prefix_contains(ip("220.146.61.7"), 24, client),
            "host bits ignored"
        );
        assert!(prefix_contains(ip("0.0.0.0"), 0, client));
        assert!(!prefix_contains(ip("220.146.62.0"), 24, client));
        assert!(!prefix_contains(ip("220.146.61.235"), 33, client));
        assert!(!prefix_contains(ip("::"), 0, client));
        assert!(prefix_contains(ip("2001:db8::"), 32, ip("2001:db8::7")));
        assert!(prefix_contains(ip("::"), 0, ip("2001:db8::7")));
        assert!(!prefix_contains(ip("0.0.0.0"), 0, ip("2001:db8::7")));
        assert!(prefix_contains(
            ip("220.146.61.0"),
            24,
            ip("::ffff:220.146.61.235")
        ));
    }
}
