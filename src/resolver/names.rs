//! Host names to addresses, without the C library.
//!
//! The release binary is linked statically (see the README, "Install"): glibc's `getaddrinfo`
//! would then load NSS modules at run time, which a static binary cannot do safely and a
//! `FROM scratch` image does not have. Names are resolved here the way reqwest resolves them
//! (its `hickory-dns` feature): `/etc/hosts`, then the servers in `/etc/resolv.conf`.

use std::io;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;

/// The addresses of `host_port` (`"host:port"`, `"1.2.3.4:port"` or `"[::1]:port"`), like
/// `tokio::net::lookup_host`. The system configuration is read at each call, so an edited
/// `/etc/resolv.conf` takes effect at the next lookup.
pub async fn lookup_host(host_port: &str) -> io::Result<Vec<SocketAddr>> {
    if let Ok(addr) = host_port.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "expected host:port");
    let (host, port) = host_port.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let resolver = TokioResolver::builder_tokio()
        .map_err(io::Error::other)?
        .build();
    let found = resolver.lookup_ip(host).await.map_err(|e| {
        // In getaddrinfo's words, as the rest of dynwall reports a name that does not resolve.
        if e.is_nx_domain() {
            io::Error::new(
                io::ErrorKind::NotFound,
                "name or service not known (NXDomain)",
            )
        } else if e.is_no_records_found() {
            io::Error::new(io::ErrorKind::NotFound, "the name has no address")
        } else {
            io::Error::other(crate::http_failure::dns_reason(&e))
        }
    })?;
    Ok(found.iter().map(|ip| SocketAddr::new(ip, port)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_need_no_lookup() {
        assert_eq!(
            lookup_host("192.0.2.1:3478").await.unwrap(),
            vec!["192.0.2.1:3478".parse().unwrap()]
        );
        assert_eq!(
            lookup_host("[2001:db8::1]:19302").await.unwrap(),
            vec!["[2001:db8::1]:19302".parse().unwrap()]
        );
    }

    #[tokio::test]
    async fn localhost_comes_from_the_hosts_file() {
        let addrs = lookup_host("localhost:3478").await.unwrap();
        assert!(
            addrs
                .iter()
                .any(|a| a.ip().is_loopback() && a.port() == 3478),
            "{addrs:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_port_is_invalid_input() {
        for bad in [
            "stun.example.net",
            "stun.example.net:port",
            "stun.example.net:70000",
        ] {
            let e = lookup_host(bad).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }
}
