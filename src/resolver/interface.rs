//! Source kind `interface`: the one global address of a named local interface, for hosts that
//! hold their public address themselves (no NAT in front of them).

use std::net::IpAddr;

use super::{Resolver, SourceError};
use crate::net::{check_global, Family};

/// Reads the addresses of one local interface and returns its single global address of the
/// family. Several global addresses (e.g. IPv6 temporary addresses next to a stable one) are an
/// error naming them: dynwall cannot tell which one the internet sees.
pub struct InterfaceResolver {
    name: String,
    family: Family,
    label: String,
}

impl InterfaceResolver {
    /// A source reading interface `name` for an address of `family`.
    pub fn new(name: String, family: Family) -> Self {
        let label = format!("interface {name}");
        InterfaceResolver {
            name,
            family,
            label,
        }
    }
}

#[async_trait::async_trait]
impl Resolver for InterfaceResolver {
    fn label(&self) -> &str {
        &self.label
    }

    fn family(&self) -> Family {
        self.family
    }

    async fn lookup(&self) -> Result<IpAddr, SourceError> {
        // getifaddrs(3) only reads kernel tables: it does not block for long.
        let all = if_addrs::get_if_addrs().map_err(|e| SourceError::Interface {
            message: format!("cannot list the local interfaces: {e}"),
        })?;
        let addrs: Vec<(String, IpAddr)> = all.into_iter().map(|i| (i.name, i.addr.ip())).collect();
        select(&self.name, self.family, &addrs)
    }
}

/// The one global address of `family` that interface `name` holds in `addrs` (interface name,
/// address), or why there is none. Pure.
pub fn select(
    name: &str,
    family: Family,
    addrs: &[(String, IpAddr)],
) -> Result<IpAddr, SourceError> {
    let fail = |message: String| Err(SourceError::Interface { message });
    let fam = super::family_name(family);
    let mine: Vec<IpAddr> = addrs
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, a)| *a)
        .collect();
    if mine.is_empty() {
        return fail(format!("no interface named {name} has an address"));
    }
    let of_family: Vec<IpAddr> = mine
        .into_iter()
        .filter(|a| Family::of(*a) == family)
        .collect();
    let (global, other): (Vec<IpAddr>, Vec<IpAddr>) =
        of_family.iter().partition(|a| check_global(**a).is_ok());
    match global.as_slice() {
        [one] => Ok(*one),
        [] if other.is_empty() => fail(format!("{name} has no {fam} address")),
        [] => {
            let listed: Vec<String> = other
                .iter()
                .map(|a| match check_global(*a) {
                    Err(why) => format!("{a} ({why})"),
                    Ok(()) => a.to_string(),
                })
                .collect();
            fail(format!(
                "{name} has no global {fam} address, only {}; this host is behind NAT: use \
                 another kind of source",
                listed.join(", ")
            ))
        }
        several => {
            let listed: Vec<String> = several.iter().map(IpAddr::to_string).collect();
            fail(format!(
                "{name} has several global {fam} addresses ({}); dynwall cannot tell which one \
                 the internet sees",
                listed.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[(&str, &str)]) -> Vec<(String, IpAddr)> {
        items
            .iter()
            .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
            .collect()
    }

    fn message(r: Result<IpAddr, SourceError>) -> String {
        match r {
            Err(SourceError::Interface { message }) => message,
            other => panic!("expected an interface error, got {other:?}"),
        }
    }

    #[test]
    fn the_one_global_address_of_the_family_is_chosen() {
        let addrs = list(&[
            ("lo", "127.0.0.1"),
            ("eth0", "192.168.1.10"),
            ("eth0", "81.2.69.160"),
            ("eth0", "fe80::1"),
            ("eth0", "2a00:1450:4001:80b::200e"),
            ("wlan0", "81.2.69.161"),
        ]);
        assert_eq!(
            select("eth0", Family::Ipv4, &addrs),
            Ok("81.2.69.160".parse().unwrap())
        );
        assert_eq!(
            select("eth0", Family::Ipv6, &addrs),
            Ok("2a00:1450:4001:80b::200e".parse().unwrap())
        );
        assert_eq!(
            select("wlan0", Family::Ipv4, &addrs),
            Ok("81.2.69.161".parse().unwrap())
        );
    }

    #[test]
    fn none_several_or_only_private_are_errors_naming_the_addresses() {
        let addrs = list(&[
            ("eth0", "192.168.1.10"),
            ("eth0", "100.64.1.2"),
            ("eth0", "fe80::1"),
            ("eth1", "2a00:1450:4001:80b::200e"),
            ("eth1", "2a00:1450:4001:80b::beef"),
            ("eth1", "81.2.69.160"),
        ]);
        assert_eq!(
            message(select("eth9", Family::Ipv4, &addrs)),
            "no interface named eth9 has an address"
        );
        let m = message(select("eth0", Family::Ipv4, &addrs));
        assert!(
            m.starts_with("eth0 has no global IPv4 address, only 192.168.1.10 (private"),
            "{m}"
        );
        assert!(m.contains("100.64.1.2 (carrier-grade NAT"), "{m}");
        let m = message(select("eth0", Family::Ipv6, &addrs));
        assert!(m.contains("only fe80::1 (link-local address)"), "{m}");
        assert_eq!(
            message(select("eth1", Family::Ipv6, &addrs)),
            "eth1 has several global IPv6 addresses (2a00:1450:4001:80b::200e, \
             2a00:1450:4001:80b::beef); dynwall cannot tell which one the internet sees"
        );
        let v4_only = list(&[("eth2", "81.2.69.160")]);
        assert_eq!(
            message(select("eth2", Family::Ipv6, &v4_only)),
            "eth2 has no IPv6 address"
        );
        assert!(message(select("x", Family::Ipv4, &[])).contains("no interface named x"));
    }

    #[tokio::test]
    async fn the_loopback_interface_has_no_global_address() {
        // Reads this machine's real interfaces; `lo` holds only 127.0.0.1 and ::1.
        let r = InterfaceResolver::new("lo".into(), Family::Ipv4);
        let m = message(r.lookup().await);
        assert!(m.contains("127.0.0.1 (loopback address)"), "{m}");
    }
}
