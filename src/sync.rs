//! Firewall sync: a pure plan from the current rules to the desired ones, then apply and verify.
//!
//! dynwall owns exactly the inbound rules of type `Custom` with the configured protocol and port.
//! Every other rule, inbound or outbound, is written back exactly as it was read. The owned set
//! becomes one rule for the home address plus one per `keep` entry.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use crate::config::FirewallConfig;
use crate::net::{Family, IpNet};
use crate::provider::{
    Firewall, FirewallState, FirewallWrite, InstanceId, ProviderError, Rule, RuleSet,
};

/// The rule type dynwall owns (and writes).
pub const OWNED_KIND: &str = "Custom";

/// True when `rule` (an inbound rule) belongs to dynwall under `fw`.
pub fn is_owned(rule: &Rule, fw: &FirewallConfig) -> bool {
    rule.kind.trim().eq_ignore_ascii_case(OWNED_KIND)
        && rule.protocol.trim().eq_ignore_ascii_case(&fw.protocol)
        && rule.port.trim() == fw.port
}

/// The planned change of one firewall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Owned sources already present and still wanted.
    pub kept: Vec<IpNet>,
    /// Owned sources to add.
    pub added: Vec<IpNet>,
    /// Owned rules to remove (stale address, duplicate, or a source dynwall cannot read).
    pub removed: Vec<Rule>,
    /// The complete rule set to write.
    pub rules: RuleSet,
}

impl Plan {
    /// True when the firewall already holds exactly the desired owned rules.
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// One line per change, for logs, `check` and `--dry-run`.
    pub fn describe(&self, fw: &FirewallConfig) -> Vec<String> {
        let what = format!("firewall {}: {}/{}", fw.id, fw.port, fw.protocol);
        if self.added.len() == 1 && self.removed.len() == 1 {
            return vec![format!(
                "{what} {} → {}",
                self.removed[0].source, self.added[0]
            )];
        }
        self.removed
            .iter()
            .map(|r| format!("{what} remove {}", r.source))
            .chain(self.added.iter().map(|a| format!("{what} add {a}")))
            .collect()
    }
}

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

/// Plans the change from `current` toward `home`. Pure.
///
/// Owned rules of a tracked family whose address is unknown this cycle are left as they are:
/// a failed lookup changes nothing.
pub fn plan(current: &RuleSet, fw: &FirewallConfig, home: &Home) -> Plan {
    let desired = desired_sources(fw, home);
    let frozen: Vec<Family> = fw
        .family
        .families()
        .iter()
        .copied()
        .filter(|f| home.get(*f).is_none())
        .collect();
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    let mut inbound = Vec::with_capacity(current.inbound.len() + desired.len());
    for rule in &current.inbound {
        if !is_owned(rule, fw) {
            inbound.push(rule.clone());
            continue;
        }
        match rule.source.parse::<IpNet>() {
            Ok(net) if desired.contains(&net) && !kept.contains(&net) => {
                kept.push(net);
                inbound.push(rule.clone());
            }
            Ok(net) if net.is_host() && frozen.contains(&Family::of(net.addr())) => {
                inbound.push(rule.clone());
            }
            _ => removed.push(rule.clone()),
        }
    }
    let added: Vec<IpNet> = desired
        .iter()
        .filter(|d| !kept.contains(d))
        .copied()
        .collect();
    inbound.extend(added.iter().map(|net| Rule {
        kind: OWNED_KIND.to_string(),
        protocol: fw.protocol.clone(),
        port: fw.port.clone(),
        source: net.to_string(),
    }));
    Plan {
        kept,
        added,
        removed,
        rules: RuleSet {
            inbound,
            outbound: current.outbound.clone(),
        },
    }
}

/// The configured instances of `fw` that the provider does not know. Pure.
///
/// Indigo replaces a template's assignments with the list sent, so writing with an unknown id
/// would silently unassign it: callers refuse the write when this is not empty.
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

/// Checks a read-back against what was written: same rules in any order, sources compared
/// normalised (`x` ≡ `x/32`, escaped slashes already undone by JSON).
pub fn verify(written: &RuleSet, read: &RuleSet) -> Result<(), Mismatch> {
    fn key(r: &Rule) -> (String, String, String, String) {
        let source = r
            .source
            .parse::<IpNet>()
            .map_or_else(|_| r.source.trim().to_string(), |n| n.to_string());
        (
            r.kind.trim().to_ascii_lowercase(),
            r.protocol.trim().to_ascii_uppercase(),
            r.port.trim().to_string(),
            source,
        )
    }
    for (dir, w, r) in [
        ("inbound", &written.inbound, &read.inbound),
        ("outbound", &written.outbound, &read.outbound),
    ] {
        let mut a: Vec<_> = w.iter().map(key).collect();
        let mut b: Vec<_> = r.iter().map(key).collect();
        a.sort();
        b.sort();
        if a != b {
            return Err(Mismatch(format!(
                "{dir} rules read back differ from those written ({} written, {} read)",
                a.len(),
                b.len()
            )));
        }
    }
    Ok(())
}

/// Errors of one firewall sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("firewall {template}: written but not confirmed: {mismatch}")]
    Verify {
        template: String,
        mismatch: Mismatch,
    },
}

impl SyncError {
    pub fn provider(&self) -> Option<&ProviderError> {
        match self {
            SyncError::Provider(p) => Some(p),
            SyncError::Verify { .. } => None,
        }
    }
}

/// Reads a firewall and plans it toward `home`.
pub async fn read_and_plan(
    provider: &dyn Firewall,
    fw: &FirewallConfig,
    home: &Home,
) -> Result<(FirewallState, Plan), ProviderError> {
    let current = provider.read_firewall(&fw.id).await?;
    let plan = plan(&current.rules, fw, home);
    Ok((current, plan))
}

/// Applies a non-empty plan: writes the planned rules with the configured instances, reads the
/// firewall back and verifies it. Call only with a plan whose [`Plan::is_noop`] is false.
pub async fn apply(
    provider: &dyn Firewall,
    fw: &FirewallConfig,
    current: &FirewallState,
    plan: &Plan,
) -> Result<(), SyncError> {
    let write = FirewallWrite {
        id: fw.id.clone(),
        rules: plan.rules.clone(),
        instances: fw.instances.clone(),
    };
    provider.write_firewall(current, &write).await?;
    let back = provider.read_firewall(&fw.id).await?;
    verify(&write.rules, &back.rules).map_err(|mismatch| SyncError::Verify {
        template: fw.id.to_string(),
        mismatch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tracked;
    use crate::provider::{FirewallId, InstanceId};

    fn fw(keep: &[&str]) -> FirewallConfig {
        FirewallConfig {
            cloud: crate::ids::CloudName::indigo(),
            id: FirewallId("12836".into()),
            instances: vec![InstanceId("616516".into())],
            protocol: "TCP".into(),
            port: "22".into(),
            keep: keep.iter().map(|k| k.parse().unwrap()).collect(),
            family: Tracked::Ipv4,
        }
    }

    fn rule(kind: &str, protocol: &str, port: &str, source: &str) -> Rule {
        Rule {
            kind: kind.into(),
            protocol: protocol.into(),
            port: port.into(),
            source: source.into(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn others() -> (Vec<Rule>, Vec<Rule>) {
        (
            vec![
                rule("HTTPS", "TCP", "443", "0.0.0.0/0"),
                rule("Custom", "TCP", "2222", "81.2.69.1"),
                rule("Custom", "UDP", "22", "81.2.69.2"),
                rule("All TCP", "TCP", "1-65535", "93.184.216.0/24"),
            ],
            vec![rule("Custom", "ICMP", "", "0.0.0.0/0")],
        )
    }

    #[test]
    fn a_changed_address_replaces_only_the_owned_rule() {
        let (mut inbound, outbound) = others();
        inbound.insert(1, rule("Custom", "TCP", "22", "81.2.69.160"));
        let current = RuleSet {
            inbound: inbound.clone(),
            outbound: outbound.clone(),
        };
        let f = fw(&[]);
        let p = plan(&current, &f, &Home::of(ip("81.2.69.161")));
        assert!(!p.is_noop());
        assert_eq!(p.removed, vec![rule("Custom", "TCP", "22", "81.2.69.160")]);
        assert_eq!(p.added, vec!["81.2.69.161".parse().unwrap()]);
        let (others_in, _) = others();
        assert_eq!(&p.rules.inbound[..4], &others_in[..]);
        assert_eq!(
            p.rules.inbound[4],
            rule("Custom", "TCP", "22", "81.2.69.161")
        );
        assert_eq!(p.rules.outbound, outbound);
        assert_eq!(
            p.describe(&f),
            vec!["firewall 12836: 22/TCP 81.2.69.160 → 81.2.69.161".to_string()]
        );
    }

    #[test]
    fn an_in_sync_template_plans_nothing_whatever_the_spelling() {
        let (mut inbound, outbound) = others();
        inbound.push(rule("custom", "tcp", " 22", "81.2.69.160/32"));
        inbound.push(rule("Custom", "TCP", "22", "198.51.100.0/24"));
        let current = RuleSet { inbound, outbound };
        let f = fw(&["198.51.100.7/24"]);
        let p = plan(&current, &f, &Home::of(ip("81.2.69.160")));
        assert!(p.is_noop(), "{p:?}");
        assert_eq!(
            p.rules, current,
            "an in-sync plan writes back exactly what it read"
        );
    }

    #[test]
    fn duplicates_wildcards_and_garbage_on_the_owned_port_are_removed() {
        let current = RuleSet {
            inbound: vec![
                rule("Custom", "TCP", "22", "81.2.69.160"),
                rule("Custom", "TCP", "22", "81.2.69.160/32"),
                rule("Custom", "TCP", "22", "0.0.0.0/0"),
                rule("Custom", "TCP", "22", "not-an-address"),
            ],
            outbound: vec![],
        };
        let f = fw(&[]);
        let p = plan(&current, &f, &Home::of(ip("81.2.69.160")));
        assert_eq!(p.removed.len(), 3);
        assert!(p.added.is_empty());
        assert_eq!(
            p.rules.inbound,
            vec![rule("Custom", "TCP", "22", "81.2.69.160")]
        );
        assert_eq!(p.describe(&f).len(), 3);
    }

    #[test]
    fn an_empty_template_gets_the_home_rule_and_the_keep_entries() {
        let f = fw(&["198.51.100.0/24", "198.51.100.0/24"]);
        let p = plan(&RuleSet::default(), &f, &Home::of(ip("81.2.69.160")));
        assert_eq!(
            p.rules.inbound,
            vec![
                rule("Custom", "TCP", "22", "81.2.69.160"),
                rule("Custom", "TCP", "22", "198.51.100.0/24"),
            ]
        );
        assert_eq!(p.describe(&f).len(), 2);
    }

    #[test]
    fn both_families_get_one_owned_rule_each() {
        let mut f = fw(&[]);
        f.family = Tracked::Both;
        let current = RuleSet {
            inbound: vec![
                rule("Custom", "TCP", "22", "81.2.69.160"),
                rule("Custom", "TCP", "22", "2a00:1450:4001::1"),
            ],
            outbound: vec![],
        };
        let home = Home {
            v4: Some(ip("81.2.69.161")),
            v6: Some(ip("2a00:1450:4001::2")),
        };
        let p = plan(&current, &f, &home);
        assert_eq!(p.removed.len(), 2);
        assert_eq!(
            p.rules.inbound,
            vec![
                rule("Custom", "TCP", "22", "81.2.69.161"),
                rule("Custom", "TCP", "22", "2a00:1450:4001::2"),
            ]
        );
    }

    #[test]
    fn a_family_whose_lookup_failed_keeps_its_rule() {
        let mut f = fw(&[]);
        f.family = Tracked::Both;
        let current = RuleSet {
            inbound: vec![
                rule("Custom", "TCP", "22", "81.2.69.160"),
                rule("Custom", "TCP", "22", "2a00:1450:4001::1"),
                rule("Custom", "TCP", "22", "2a00:1450:4001::/48"),
            ],
            outbound: vec![],
        };
        // IPv6 unknown this cycle: its host rule stays, a stray IPv6 network still goes.
        let p = plan(&current, &f, &Home::of(ip("81.2.69.161")));
        assert_eq!(
            p.removed,
            vec![
                rule("Custom", "TCP", "22", "81.2.69.160"),
                rule("Custom", "TCP", "22", "2a00:1450:4001::/48"),
            ]
        );
        assert_eq!(
            p.rules.inbound,
            vec![
                rule("Custom", "TCP", "22", "2a00:1450:4001::1"),
                rule("Custom", "TCP", "22", "81.2.69.161"),
            ]
        );
        // An IPv4-only entry does not keep stray IPv6 sources on its port.
        let p = plan(&current, &fw(&[]), &Home::of(ip("81.2.69.161")));
        assert_eq!(p.removed.len(), 3);
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

    #[test]
    fn verify_ignores_order_and_cidr_spelling_but_not_content() {
        let written = RuleSet {
            inbound: vec![
                rule("HTTPS", "TCP", "443", "0.0.0.0/0"),
                rule("Custom", "TCP", "22", "81.2.69.160"),
            ],
            outbound: vec![rule("Custom", "ICMP", "", "0.0.0.0/0")],
        };
        let reordered = RuleSet {
            inbound: vec![
                rule("Custom", "TCP", "22", "81.2.69.160/32"),
                rule("HTTPS", "TCP", "443", "0.0.0.0/0"),
            ],
            outbound: written.outbound.clone(),
        };
        assert_eq!(verify(&written, &reordered), Ok(()));
        let mut lost = reordered.clone();
        lost.outbound.clear();
        assert!(verify(&written, &lost).is_err());
        let mut changed = reordered;
        changed.inbound[0].source = "81.2.69.161".into();
        assert!(verify(&written, &changed).is_err());
    }
}
