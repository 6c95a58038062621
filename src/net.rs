//! Address facts: which addresses may ever become a firewall source, and CIDR normalisation.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Address family tracked by a firewall entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

/// Why an address can not be a home address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotGlobal {
    #[error("unspecified address")]
    Unspecified,
    #[error("loopback address")]
    Loopback,
    #[error("private address (RFC 1918 / unique local)")]
    Private,
    #[error(
        "carrier-grade NAT address (100.64.0.0/10): the router sits behind the provider's NAT"
    )]
    SharedCgnat,
    #[error("link-local address")]
    LinkLocal,
    #[error("documentation address")]
    Documentation,
    #[error("multicast address")]
    Multicast,
    #[error("reserved or special-purpose address")]
    Reserved,
}

/// Classifies `ip`: `Ok` when it is a globally routable unicast address, else why not.
pub fn check_global(ip: IpAddr) -> Result<(), NotGlobal> {
    match ip {
        IpAddr::V4(v4) => check_v4(v4),
        IpAddr::V6(v6) => check_v6(v6),
    }
}

/// True when `ip` is a globally routable unicast address.
pub fn is_global(ip: IpAddr) -> bool {
    check_global(ip).is_ok()
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn check_v4(ip: Ipv4Addr) -> Result<(), NotGlobal> {
    use NotGlobal::*;
    let table: &[([u8; 4], u32, NotGlobal)] = &[
        ([0, 0, 0, 0], 8, Unspecified),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedCgnat),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Reserved),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    match table.iter().find(|(net, p, _)| in_v4(ip, *net, *p)) {
        Some((_, _, why)) => Err(*why),
        None => Ok(()),
    }
}

fn check_v6(ip: Ipv6Addr) -> Result<(), NotGlobal> {
    use NotGlobal::*;
    let s = ip.segments();
    if ip.is_unspecified() {
        return Err(Unspecified);
    }
    if ip.is_loopback() {
        return Err(Loopback);
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        // An IPv4-mapped address is not an IPv6 home address; judge the IPv4 inside and refuse.
        return Err(check_v4(v4).err().unwrap_or(Reserved));
    }
    if s[0] & 0xff00 == 0xff00 {
        return Err(Multicast);
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Err(Private);
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Err(LinkLocal);
    }
    if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] & 0xfff0) == 0x3ff0 {
        return Err(Documentation);
    }
    // Only 2000::/3 is global unicast; inside it 2001::/23 holds special-purpose blocks (Teredo,
    // benchmarking, ORCHID).
    if s[0] & 0xe000 != 0x2000 || (s[0] == 0x2001 && s[1] < 0x0200) {
        return Err(Reserved);
    }
    Ok(())
}

/// An address with a prefix length, compared in normalised form (`a.b.c.d` ≡ `a.b.c.d/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// A single host.
    pub fn host(addr: IpAddr) -> IpNet {
        IpNet {
            addr,
            prefix: max_prefix(addr),
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// True when this is a single address (`/32`, `/128`).
    pub fn is_host(&self) -> bool {
        self.prefix == max_prefix(self.addr)
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

/// Why a source string is not an address or network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR network")]
pub struct BadNet(pub String);

impl FromStr for IpNet {
    type Err = BadNet;

    fn from_str(s: &str) -> Result<IpNet, BadNet> {
        let bad = || BadNet(s.to_string());
        let t = s.trim();
        let (a, p) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix = match p {
            None => max_prefix(addr),
            Some(p) => {
                let n: u8 = p.parse().map_err(|_| bad())?;
                if n > max_prefix(addr) || p.starts_with('+') {
                    return Err(bad());
                }
                n
            }
        };
        Ok(IpNet {
            addr: mask(addr, prefix),
            prefix,
        })
    }
}

impl fmt::Display for IpNet {
    /// Hosts are written bare, as the Indigo documentation and console do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn global_v4_addresses_pass() {
        for a in [
            "81.2.69.160",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "223.255.255.254",
        ] {
            assert_eq!(check_global(ip(a)), Ok(()), "{a}");
        }
    }

    #[test]
    fn non_global_v4_addresses_are_refused_with_a_reason() {
        let cases = [
            ("0.0.0.0", NotGlobal::Unspecified),
            ("10.1.2.3", NotGlobal::Private),
            ("172.16.0.1", NotGlobal::Private),
            ("172.31.255.255", NotGlobal::Private),
            ("192.168.1.1", NotGlobal::Private),
            ("127.0.0.1", NotGlobal::Loopback),
            ("169.254.10.10", NotGlobal::LinkLocal),
            ("100.64.0.1", NotGlobal::SharedCgnat),
            ("100.127.255.254", NotGlobal::SharedCgnat),
            ("192.0.2.1", NotGlobal::Documentation),
            ("198.51.100.23", NotGlobal::Documentation),
            ("203.0.113.7", NotGlobal::Documentation),
            ("224.0.0.1", NotGlobal::Multicast),
            ("239.255.255.250", NotGlobal::Multicast),
            ("255.255.255.255", NotGlobal::Reserved),
            ("198.18.0.1", NotGlobal::Reserved),
        ];
        for (a, why) in cases {
            assert_eq!(check_global(ip(a)), Err(why), "{a}");
        }
        assert!(in_v4(ip4("172.32.0.1"), [0, 0, 0, 0], 0));
        assert_eq!(check_global(ip("172.32.0.1")), Ok(()));
    }

    fn ip4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn only_global_unicast_v6_passes() {
        assert_eq!(check_global(ip("2a00:1450:4001:80b::200e")), Ok(()));
        assert_eq!(check_global(ip("2606:4700:4700::1111")), Ok(()));
        let cases = [
            ("::", NotGlobal::Unspecified),
            ("::1", NotGlobal::Loopback),
            ("fd00::1", NotGlobal::Private),
            ("fe80::1", NotGlobal::LinkLocal),
            ("ff02::1", NotGlobal::Multicast),
            ("2001:db8::1", NotGlobal::Documentation),
            ("3fff::1", NotGlobal::Documentation),
            ("2001::1", NotGlobal::Reserved),
            ("::ffff:192.168.1.1", NotGlobal::Private),
            ("::ffff:8.8.8.8", NotGlobal::Reserved),
            ("100::1", NotGlobal::Reserved),
        ];
        for (a, why) in cases {
            assert_eq!(check_global(ip(a)), Err(why), "{a}");
        }
    }

    #[test]
    fn cidr_forms_normalise() {
        let bare: IpNet = "81.2.69.160".parse().unwrap();
        let slash32: IpNet = "81.2.69.160/32".parse().unwrap();
        assert_eq!(bare, slash32);
        assert_eq!(slash32.to_string(), "81.2.69.160");
        let net: IpNet = "198.51.100.7/24".parse().unwrap();
        assert_eq!(net.to_string(), "198.51.100.0/24");
        assert!(!net.is_host());
        let any: IpNet = "0.0.0.0/0".parse().unwrap();
        assert_eq!(any.prefix_len(), 0);
        let v6: IpNet = "2001:db8::1/128".parse().unwrap();
        assert_eq!(v6.to_string(), "2001:db8::1");
    }

    #[test]
    fn garbage_is_not_a_network() {
        for s in [
            "",
            "1.2.3",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "example.com",
            "1.2.3.4 5",
        ] {
            assert!(s.parse::<IpNet>().is_err(), "{s:?}");
        }
    }
}
