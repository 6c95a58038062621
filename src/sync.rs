//! Firewall sync, the pure part: what the owned rules of a firewall should become, and whether a
//! read-back confirms a write.
//!
//! The provider classifies a firewall's rules ([`crate::provider::Firewalls::read_firewall`]);
//! [`plan`] decides, for the owned ones, what to keep, add and remove so that the firewall admits
//! the home address of each tracked family plus every `keep` entry, and nothing else on the
//! owned port; the provider applies it; [`verify`] checks the read-back.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use crate::config::FirewallConfig;
use crate::ids::InstanceId;
use crate::net::{Family, IpNet};
use crate::provider::{FirewallSnapshot, OwnedRule, OwnedSource, Plan};

/// The home addresses known this cycle, per family; `None` when that family's lookup failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Home {
    pub v4: Option<IpAddr>,
    pub v6: Option<IpAddr>,
}

impl Home {
    /// A home known only by its IPv4 (or only its IPv6) address.
    pub fn of(ip: IpAddr) -> Home {
        let mut h = Home::default();
        h.set(Family::of(ip), Some(ip));
        h
    }

    pub fn get(&self, f: Family) -> Option<IpAddr> {
        match f {
            Family::Ipv4 => self.v4,
            Family::Ipv6 => self.v6,
        }
    }

    pub fn set(&mut self, f: Family, ip: Option<IpAddr>) {
        match f {
            Family::Ipv4 => self.v4 = ip,
            Family::Ipv6 => self.v6 = ip,
        }
    }

    /// True when no family is known.
    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }

    /// True when `fw` tracks at least one family known here.
    pub fn covers_any(&self, fw: &FirewallConfig) -> bool {
        fw.family.families().iter().any(|f| self.get(*f).is_some())
    }

    /// True when some family known in both homes has a different address.
    pub fn differs_from(&self, other: &Home) -> bool {
        [Family::Ipv4, Family::Ipv6]
            .into_iter()
            .any(|f| matches!((self.get(f), other.get(f)), (Some(a), Some(b)) if a != b))
    }

    /// This home, with the families unknown here taken from `older`.
    pub fn or(&self, older: &Home) -> Home {
        Home {
            v4: self.v4.or(older.v4),
            v6: self.v6.or(older.v6),
        }
    }
}

impl fmt::Display for Home {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.v4, self.v6) {
            (Some(a), Some(b)) => write!(f, "{a} and {b}"),
            (Some(a), None) | (None, Some(a)) => write!(f, "{a}"),
            (None, None) => f.write_str("unknown"),
        }
    }
}

/// The owned sources a firewall should hold: the known home address of each tracked family
/// first, then `keep`, deduplicated.
pub fn desired_sources(fw: &FirewallConfig, home: &Home) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = fw
        .family
        .families()
        .iter()
        .filter_map(|f| home.get(*f))
        .map(IpNet::host)
        .collect();
    for k in &fw.keep {
        if !out.contains(k) {
            out.push(*k);
        }
    }
    out
}

/// Plans the change of the owned rules `owned` toward `home`. Pure.
///
/// Owned host rules of a tracked family whose address is unknown this cycle are kept as they
/// are: a failed lookup changes nothing. Duplicates, wildcards, other networks and unreadable
/// sources on the owned port are removed.
pub fn plan(owned: &[OwnedRule], fw: &FirewallConfig, home: &Home) -> Plan {
    let desired = desired_sources(fw, home);
    let frozen: Vec<Family> = fw
        .family
        .families()
        .iter()
        .copied()
        .filter(|f| home.get(*f).is_none())
        .collect();
    let mut kept_nets: Vec<IpNet> = Vec::new();
    let (mut keep, mut remove) = (Vec::new(), Vec::new());
    for rule in owned {
        match rule.source {
            OwnedSource::Net(net) if desired.contains(&net) && !kept_nets.contains(&net) => {
                kept_nets.push(net);
                keep.push(rule.clone());
            }
            OwnedSource::Net(net)
                if net.is_host()
                    && frozen.contains(&Family::of(net.addr()))
                    && !kept_nets.contains(&net) =>
            {
                kept_nets.push(net);
                keep.push(rule.clone());
            }
            _ => remove.push(rule.clone()),
        }
    }
    let add = desired
        .iter()
        .filter(|d| !kept_nets.contains(d))
        .copied()
        .collect();
    Plan { keep, add, remove }
}

/// True when `owned` is exactly what `fw` should hold for `home`: the firewall admits us.
pub fn holds(owned: &[OwnedRule], fw: &FirewallConfig, home: &Home) -> bool {
    plan(owned, fw, home).is_noop()
}

/// One line per change, for logs, `check` and `--dry-run`.
pub fn describe(plan: &Plan, fw: &FirewallConfig) -> Vec<String> {
    let what = format!("firewall {}: {}/{}", fw.id, fw.port, fw.protocol);
    if plan.add.len() == 1 && plan.remove.len() == 1 {
        return vec![format!(
            "{what} {} → {}",
            plan.remove[0].source, plan.add[0]
        )];
    }
    plan.remove
        .iter()
        .map(|r| format!("{what} remove {}", r.source))
        .chain(plan.add.iter().map(|a| format!("{what} add {a}")))
        .collect()
}

/// A per-rule cloud's plan in the order it is carried out: every create, then every delete.
/// For `check` and `--dry-run`.
pub fn describe_per_rule(plan: &Plan, fw: &FirewallConfig) -> Vec<String> {
    let what = format!("cloud {}: security group {}", fw.cloud, fw.id);
    let proto = fw.protocol.to_ascii_lowercase();
    plan.add
        .iter()
        .map(|net| {
            format!(
                "{what}: create ingress {proto} {} from {}/{}",
                fw.port,
                net.addr(),
                net.prefix_len()
            )
        })
        .chain(plan.remove.iter().map(|r| {
            format!(
                "{what}: then delete the rule for {} ({})",
                r.source, r.handle.0
            )
        }))
        .collect()
}

/// The configured instances of `fw` that the provider does not know. Pure.
pub fn missing_instances(fw: &FirewallConfig, known: &BTreeSet<InstanceId>) -> Vec<InstanceId> {
    fw.instances
        .iter()
        .filter(|i| !known.contains(*i))
        .cloned()
        .collect()
}

/// Why a read-back does not match what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch(pub String);

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a read-back: the owned rules are exactly the planned sources (in any order and
/// spelling) and every other rule is as it was before the write.
pub fn verify(
    plan: &Plan,
    before: &FirewallSnapshot,
    after: &FirewallSnapshot,
) -> Result<(), Mismatch> {
    let mut got = BTreeSet::new();
    for r in &after.owned {
        match r.source {
            OwnedSource::Net(n) => {
                got.insert(n);
            }
            OwnedSource::Unreadable(_) => {
                return Err(Mismatch(format!(
                    "an owned rule reads back with source {}",
                    r.source
                )))
            }
        }
    }
    if after.owned.len() != got.len() {
        return Err(Mismatch("an owned rule reads back twice".into()));
    }
    let want = plan.wanted();
    if got != want {
        let list = |s: &BTreeSet<IpNet>| {
            s.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Mismatch(format!(
            "owned sources read back as [{}], written [{}]",
            list(&got),
            list(&want)
        )));
    }
    let (mut a, mut b) = (before.others.clone(), after.others.clone());
    a.sort();
    b.sort();
    if a != b {
        return Err(Mismatch(format!(
            "the other rules read back differ from those written ({} written, {} read)",
            a.len(),
            b.len()
        )));
    }
    Ok(())
}

/// Errors of one firewall sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("firewall {firewall}: {source}")]
    Provider {
        firewall: String,
        #[source]
        source: crate::provider::ProviderError,
    },
    #[error("firewall {firewall}: written but not confirmed: {mismatch}")]
    Verify {
        firewall: String,
        mismatch: Mismatch,
    },
    #[error("firewall {firewall}: refusing to write it: {reason}")]
    Unwritable { firewall: String, reason: String },
}

impl SyncError {
    pub fn provider(&self) -> Option<&crate::provider::ProviderError> {
        match self {
            SyncError::Provider { source, .. } => Some(source),
            SyncError::Verify { .. } | SyncError::Unwritable { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tracked;
    use crate::ids::{CloudName, FirewallId};
    use crate::provider::{Private, RuleHandle};
    use std::sync::Arc;

    fn fw(keep: &[&str]) -> FirewallConfig {
        FirewallConfig {
            cloud: CloudName::indigo(),
            id: FirewallId("12836".into()),
            instances: vec![InstanceId("616516".into())],
            protocol: "TCP".into(),
            port: "22".into(),
            keep: keep.iter().map(|k| k.parse().unwrap()).collect(),
            family: Tracked::Ipv4,
        }
    }

    /// Owned rules with handles 0, 1, …; a source that does not parse is unreadable.
    fn owned(sources: &[&str]) -> Vec<OwnedRule> {
        sources
            .iter()
            .enumerate()
            .map(|(i, s)| OwnedRule {
                handle: RuleHandle(i.to_string()),
                source: s
                    .parse()
                    .map_or_else(|_| OwnedSource::Unreadable(s.to_string()), OwnedSource::Net),
            })
            .collect()
    }

    fn handles(rules: &[OwnedRule]) -> Vec<&str> {
        rules.iter().map(|r| r.handle.0.as_str()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn a_changed_address_replaces_the_owned_rule() {
        let f = fw(&[]);
        let p = plan(&owned(&["81.2.69.160"]), &f, &Home::of(ip("81.2.69.161")));
        assert!(!p.is_noop());
        assert_eq!(handles(&p.remove), ["0"]);
        assert_eq!(p.add, vec![net("81.2.69.161")]);
        assert!(p.keep.is_empty());
        assert_eq!(
            describe(&p, &f),
            vec!["firewall 12836: 22/TCP 81.2.69.160 → 81.2.69.161".to_string()]
        );
    }

    #[test]
    fn an_in_sync_firewall_plans_nothing_whatever_the_spelling() {
        let f = fw(&["198.51.100.7/24"]);
        let rules = owned(&["81.2.69.160/32", "198.51.100.0/24"]);
        let p = plan(&rules, &f, &Home::of(ip("81.2.69.160")));
        assert!(p.is_noop(), "{p:?}");
        assert_eq!(handles(&p.keep), ["0", "1"]);
        assert!(holds(&rules, &f, &Home::of(ip("81.2.69.160"))));
        assert!(!holds(&rules, &f, &Home::of(ip("81.2.69.161"))));
    }

    #[test]
    fn duplicates_wildcards_and_garbage_on_the_owned_port_are_removed() {
        let f = fw(&[]);
        let rules = owned(&[
            "81.2.69.160",
            "81.2.69.160/32",
            "0.0.0.0/0",
            "not-an-address",
        ]);
        let p = plan(&rules, &f, &Home::of(ip("81.2.69.160")));
        assert_eq!(handles(&p.keep), ["0"]);
        assert_eq!(handles(&p.remove), ["1", "2", "3"]);
        assert!(p.add.is_empty());
        assert_eq!(describe(&p, &f).len(), 3);
    }

    #[test]
    fn an_empty_firewall_gets_the_home_rule_and_the_keep_entries() {
        let f = fw(&["198.51.100.0/24", "198.51.100.0/24"]);
        let p = plan(&[], &f, &Home::of(ip("81.2.69.160")));
        assert_eq!(p.add, vec![net("81.2.69.160"), net("198.51.100.0/24")]);
        assert_eq!(describe(&p, &f).len(), 2);
    }

    #[test]
    fn both_families_get_one_owned_rule_each() {
        let mut f = fw(&[]);
        f.family = Tracked::Both;
        let home = Home {
            v4: Some(ip("81.2.69.161")),
            v6: Some(ip("2a00:1450:4001::2")),
        };
        let p = plan(&owned(&["81.2.69.160", "2a00:1450:4001::1"]), &f, &home);
        assert_eq!(p.remove.len(), 2);
        assert_eq!(p.add, vec![net("81.2.69.161"), net("2a00:1450:4001::2")]);
    }

    #[test]
    fn a_family_whose_lookup_failed_keeps_its_rule() {
        let mut f = fw(&[]);
        f.family = Tracked::Both;
        let rules = owned(&["81.2.69.160", "2a00:1450:4001::1", "2a00:1450:4001::/48"]);
        // IPv6 unknown this cycle: its host rule stays, a stray IPv6 network still goes.
        let p = plan(&rules, &f, &Home::of(ip("81.2.69.161")));
        assert_eq!(handles(&p.keep), ["1"]);
        assert_eq!(handles(&p.remove), ["0", "2"]);
        assert_eq!(p.add, vec![net("81.2.69.161")]);
        // An IPv4-only entry does not keep stray IPv6 sources on its port.
        let p = plan(&rules, &fw(&[]), &Home::of(ip("81.2.69.161")));
        assert_eq!(p.remove.len(), 3);
    }

    #[test]
    fn instances_unknown_to_the_provider_are_named() {
        let mut f = fw(&[]);
        f.instances = vec![
            InstanceId("1".into()),
            InstanceId("2".into()),
            InstanceId("3".into()),
        ];
        let known: BTreeSet<InstanceId> = [InstanceId("2".into()), InstanceId("9".into())].into();
        assert_eq!(
            missing_instances(&f, &known),
            vec![InstanceId("1".into()), InstanceId("3".into())]
        );
        f.instances.retain(|i| i.0 == "2");
        assert!(missing_instances(&f, &known).is_empty());
    }

    fn snapshot(owned_sources: &[&str], others: &[&str]) -> FirewallSnapshot {
        FirewallSnapshot {
            id: FirewallId("12836".into()),
            name: None,
            owned: owned(owned_sources),
            others: others.iter().map(|s| s.to_string()).collect(),
            inbound: 0,
            outbound: 0,
            unwritable: None,
            private: Private(Arc::new(())),
        }
    }

    #[test]
    fn verify_ignores_order_and_spelling_but_not_content() {
        let before = snapshot(
            &["81.2.69.160"],
            &["in https TCP 443 0.0.0.0/0", "out custom ICMP  0.0.0.0/0"],
        );
        let p = plan(
            &before.owned,
            &fw(&["198.51.100.0/24"]),
            &Home::of(ip("81.2.69.161")),
        );
        let good = snapshot(
            &["198.51.100.0/24", "81.2.69.161/32"],
            &["out custom ICMP  0.0.0.0/0", "in https TCP 443 0.0.0.0/0"],
        );
        assert_eq!(verify(&p, &before, &good), Ok(()));
        let lost = snapshot(
            &["198.51.100.0/24", "81.2.69.161"],
            &["in https TCP 443 0.0.0.0/0"],
        );
        assert!(verify(&p, &before, &lost).is_err());
        let stale = snapshot(
            &["198.51.100.0/24", "81.2.69.160"],
            &before.others.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert!(verify(&p, &before, &stale).is_err());
        let twice = snapshot(
            &["198.51.100.0/24", "81.2.69.161", "81.2.69.161/32"],
            &before.others.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert!(verify(&p, &before, &twice).is_err());
    }
}
