//! Which connections an Indigo instance's firewall templates admit, and what its fake SSH endpoint
//! says to one (the endpoints themselves are the shared ones of `crate::ssh`).

use std::net::IpAddr;
use std::time::Instant;

use super::state::State;
use super::{PowerState, SimRule};
use crate::ssh::{prefix_contains, Greeting};

/// Counts a connection to instance `id` and decides what it gets.
pub(crate) fn accept(st: &mut State, id: u64, now: Instant) -> Greeting {
    *st.ssh_conns.entry(id).or_insert(0) += 1;
    let (stop, start) = (st.cfg.stop_delay, st.cfg.start_delay);
    let Some(inst) = st.instances.get_mut(&id) else {
        return Greeting::Close;
    };
    inst.settle(now, stop, start);
    let running = inst.power == PowerState::Running;
    let responsive = inst.responsive;
    Greeting::judge(running, responsive, firewall_admits(st, id))
}

/// True when no template is assigned to `id`, no client address is set, or some assigned
/// template has an inbound rule admitting the client address to TCP port 22.
pub(crate) fn firewall_admits(st: &State, id: u64) -> bool {
    let mut assigned = st
        .templates
        .values()
        .filter(|t| t.assigned.contains(&id))
        .peekable();
    if assigned.peek().is_none() {
        return true;
    }
    let Some(client) = &st.client_ip else {
        return true;
    };
    // An address that does not parse is contained in no source.
    let Ok(client) = client.trim().parse::<IpAddr>() else {
        return false;
    };
    assigned.any(|t| t.inbound.iter().any(|r| rule_admits(r, client, 22)))
}

/// True when `rule` lets `client` reach TCP `port`.
pub(crate) fn rule_admits(rule: &SimRule, client: IpAddr, port: u16) -> bool {
    rule.protocol.trim().eq_ignore_ascii_case("TCP")
        && port_covers(&rule.port, port)
        && source_contains(&rule.source, client)
}

/// `"22"`, a range `"1-65535"` or `"All Ports"`; anything else (`""` included) covers nothing.
fn port_covers(spec: &str, port: u16) -> bool {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("All Ports") {
        return true;
    }
    let (low, high) = spec.split_once('-').unwrap_or((spec, spec));
    match (low.trim().parse::<u16>(), high.trim().parse::<u16>()) {
        (Ok(low), Ok(high)) => (low..=high).contains(&port),
        _ => false,
    }
}

/// A bare address or a CIDR containing `client`. The unspecified address written bare
/// (`"0.0.0.0"`, `"::"`) means anywhere, as in the API's own examples.
fn source_contains(source: &str, client: IpAddr) -> bool {
    let source = source.trim();
    let (addr, prefix) = match source.split_once('/') {
        None => (source, None),
        Some((addr, prefix)) => match prefix.parse::<u8>() {
            Ok(p) if !prefix.starts_with('+') => (addr, Some(p)),
            _ => return false,
        },
    };
    let Ok(net) = addr.parse::<IpAddr>() else {
        return false;
    };
    let prefix = match prefix {
        Some(p) => p,
        None if net.is_unspecified() => 0,
        None if net.is_ipv4() => 32,
        None => 128,
    };
    prefix_contains(net, prefix, client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ports_cover_22() {
        for yes in [
            "22",
            " 22 ",
            "1-65535",
            "20-22",
            "22-22",
            "All Ports",
            "all ports",
        ] {
            assert!(port_covers(yes, 22), "{yes:?}");
        }
        for no in [
            "", "2222", "80", "23-65535", "1-21", "x", "22-", "-22", "22,80",
        ] {
            assert!(!port_covers(no, 22), "{no:?}");
        }
    }

    #[test]
    fn sources_contain_addresses() {
        let client = ip("220.146.61.235");
        for yes in [
            "220.146.61.235",
            "220.146.61.235/32",
            "220.146.61.0/24",
            "220.0.0.0/8",
            "0.0.0.0/0",
            "0.0.0.0",
        ] {
            assert!(source_contains(yes, client), "{yes}");
        }
        for no in [
            "220.146.61.234",
            "220.146.62.0/24",
            "192.168.100.100/32",
            "220.146.61.235/33",
            "220.146.61.235/+32",
            "::/0",
            "any",
            "",
        ] {
            assert!(!source_contains(no, client), "{no}");
        }
        let v6 = ip("2001:db8::7");
        assert!(source_contains("2001:db8::/32", v6));
        assert!(source_contains("::/0", v6));
        assert!(source_contains("::", v6));
        assert!(!source_contains("0.0.0.0/0", v6));
        // An IPv4-mapped client is the IPv4 address it carries.
        assert!(source_contains(
            "220.146.61.0/24",
            ip("::ffff:220.146.61.235")
        ));
    }

    #[test]
    fn rules_need_tcp_port_22_and_the_source() {
        let client = ip("203.0.113.9");
        let ok = SimRule::new("Custom", "TCP", "22", "203.0.113.9");
        assert!(rule_admits(&ok, client, 22));
        assert!(rule_admits(
            &SimRule::new("All TCP", "TCP", "1-65535", "0.0.0.0/0"),
            client,
            22
        ));
        for bad in [
            SimRule::new("Custom", "UDP", "22", "203.0.113.9"),
            SimRule::new("Custom", "ICMP", "", "0.0.0.0/0"),
            SimRule::new("HTTPS", "TCP", "443", "0.0.0.0/0"),
            SimRule::new("Custom", "TCP", "22", "203.0.113.10/32"),
        ] {
            assert!(!rule_admits(&bad, client, 22), "{bad:?}");
        }
    }
}
