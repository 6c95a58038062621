//! Neutron security groups as firewalls: read and classify a group's rules, then carry out a
//! plan rule by rule, creating every new rule before deleting any stale one.
//!
//! A group is found once by id or unique name (one `GET /security-groups`) and then read by id
//! (`GET /security-groups/{id}`, which brings its rules); a group that disappears is looked up
//! again. Neutron cannot update a rule, so a new home address is a new rule: the creates come
//! first and the deletes follow only when every create succeeded, so there is no moment without
//! access from home and a failed create deletes nothing. A create answered
//! `409 SecurityGroupRuleExists` (an earlier create whose answer was lost) found the rule there; a
//! delete answered 404 found it gone. The engine reads the group back and verifies it.

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::catalog::Service;
use super::client::{provider_error, OpenStackClient};
use super::error::{decode, OpenStackError};
use super::neutron::{
    self, CreateOutcome, DeleteOutcome, Direction, GroupSummary, OwnedPrefix, OwnedRules,
    Ownership, SecurityGroupRule,
};
use crate::config::FirewallConfig;
use crate::net::IpNet;
use crate::provider::{
    CloudFacts, FirewallSnapshot, Firewalls, OwnedRule, OwnedSource, Plan, Private, ProviderError,
    RuleHandle,
};

/// What [`Firewalls::apply`] needs of a read: the group's id and the owned-rule shape.
#[derive(Clone, Debug)]
struct GroupRead {
    group_id: String,
    owned: OwnedRules,
}

/// `{"security_group": {"id", "name", "security_group_rules": [...]}}`.
#[derive(Deserialize)]
struct ShownGroup {
    security_group: GroupBody,
}

#[derive(Deserialize)]
struct GroupBody {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    security_group_rules: Vec<SecurityGroupRule>,
}

/// A normalised line for a rule dynwall does not own (compared before and after a write).
fn line(r: &SecurityGroupRule) -> String {
    let ports = match (r.port_range_min, r.port_range_max) {
        (None, None) => "any".to_string(),
        (a, b) => format!(
            "{}-{}",
            a.map_or_else(|| "*".into(), |p| p.to_string()),
            b.map_or_else(|| "*".into(), |p| p.to_string())
        ),
    };
    let remote = match (
        &r.remote_group_id,
        &r.remote_address_group_id,
        &r.remote_ip_prefix,
    ) {
        (Some(g), _, _) => format!("group {g}"),
        (_, Some(g), _) => format!("address group {g}"),
        (_, _, Some(p)) => p
            .parse::<IpNet>()
            .map_or_else(|_| p.clone(), |n| n.to_string()),
        _ => "any".to_string(),
    };
    format!(
        "{} {:?} {} {ports} {remote} ({})",
        match r.direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        },
        r.ethertype,
        r.protocol.as_deref().unwrap_or("any").to_ascii_lowercase(),
        r.id
    )
}

/// Classifies a group's rules under `fw`. Pure.
fn classify(
    fw: &FirewallConfig,
    group: GroupBody,
    owned_rules: OwnedRules,
) -> Result<FirewallSnapshot, ProviderError> {
    let (mut owned, mut others) = (Vec::new(), Vec::new());
    let (mut inbound, mut outbound) = (0, 0);
    for rule in &group.security_group_rules {
        match rule.direction {
            Direction::Ingress => inbound += 1,
            Direction::Egress => outbound += 1,
        }
        match owned_rules.classify(rule) {
            Ownership::Owned { prefix, .. } => owned.push(OwnedRule {
                handle: RuleHandle(rule.id.clone()),
                source: match prefix {
                    OwnedPrefix::Net(n) => OwnedSource::Net(n),
                    OwnedPrefix::Unreadable(s) => OwnedSource::Unreadable(s),
                },
            }),
            Ownership::NotOwned => others.push(line(rule)),
        }
    }
    others.sort();
    Ok(FirewallSnapshot {
        id: fw.id.clone(),
        name: Some(group.name).filter(|n| !n.is_empty()),
        owned,
        others,
        inbound,
        outbound,
        unwritable: None,
        private: Private(Arc::new(GroupRead {
            group_id: group.id,
            owned: owned_rules,
        })),
    })
}

fn owned_rules(fw: &FirewallConfig) -> Result<OwnedRules, ProviderError> {
    OwnedRules::new(&fw.protocol, &fw.port, fw.family.families()).map_err(|reason| {
        ProviderError::Config {
            op: "neutron security group",
            reason,
        }
    })
}

impl OpenStackClient {
    /// Every security group of the project (id and name), remembered for mapping the group
    /// names Nova reports to ids.
    pub(super) async fn list_groups(&self) -> Result<Vec<GroupSummary>, ProviderError> {
        let op = "neutron list security groups";
        let base = self.base(Service::Network).await?;
        let a = self
            .call(
                op,
                Service::Network,
                Method::GET,
                neutron::groups_url(&base),
                None,
            )
            .await?;
        if !a.status.is_success() {
            return Err(provider_error(
                op,
                OpenStackError::api(op, a.status.as_u16(), &a.body),
            ));
        }
        let groups = neutron::parse_groups(&a.body).map_err(|e| provider_error(op, e))?;
        *self.known_groups.lock().unwrap_or_else(|e| e.into_inner()) = Some(groups.clone());
        Ok(groups)
    }

    /// The group `fw` names, from the cache or one `GET /security-groups`.
    async fn resolve_group(&self, fw: &FirewallConfig) -> Result<GroupSummary, ProviderError> {
        let wanted = fw.id.0.as_str();
        if let Some(g) = self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(wanted)
        {
            return Ok(g.clone());
        }
        let groups = self.list_groups().await?;
        let op = "neutron list security groups";
        let found = neutron::find_group(&groups, wanted)
            .map_err(|e| provider_error(op, e))?
            .clone();
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(wanted.to_string(), found.clone());
        Ok(found)
    }

    fn forget_group(&self, fw: &FirewallConfig) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fw.id.0);
    }

    /// `GET /security-groups/{id}`; `None` when the group is gone.
    async fn show_group(&self, id: &str) -> Result<Option<GroupBody>, ProviderError> {
        let op = "neutron show security group";
        let base = self.base(Service::Network).await?;
        let mut url = base.clone();
        if let Ok(mut s) = url.path_segments_mut() {
            s.pop_if_empty().extend(["security-groups", id]);
        }
        let a = self
            .call(op, Service::Network, Method::GET, url, None)
            .await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !a.status.is_success() {
            return Err(provider_error(
                op,
                OpenStackError::api(op, a.status.as_u16(), &a.body),
            ));
        }
        let shown: ShownGroup = decode(op, &a.body).map_err(|e| provider_error(op, e))?;
        Ok(Some(shown.security_group))
    }
}

#[async_trait]
impl Firewalls for OpenStackClient {
    async fn read_firewall(&self, fw: &FirewallConfig) -> Result<FirewallSnapshot, ProviderError> {
        let owned = owned_rules(fw)?;
        let group = self.resolve_group(fw).await?;
        if let Some(body) = self.show_group(&group.id).await? {
            return classify(fw, body, owned);
        }
        // Deleted (and perhaps made again under the same name): look it up afresh, once.
        self.forget_group(fw);
        let group = self.resolve_group(fw).await?;
        match self.show_group(&group.id).await? {
            Some(body) => classify(fw, body, owned),
            None => Err(ProviderError::NotFound {
                op: "neutron show security group",
                what: format!("security group {}", fw.id),
            }),
        }
    }

    async fn apply(
        &self,
        fw: &FirewallConfig,
        current: &FirewallSnapshot,
        plan: &Plan,
        _facts: &mut CloudFacts,
    ) -> Result<(), ProviderError> {
        let Some(read) = current.private.0.downcast_ref::<GroupRead>() else {
            return Err(ProviderError::Malformed {
                op: "neutron apply",
                reason: "the snapshot was not read by the OpenStack client".into(),
            });
        };
        let base = self.base(Service::Network).await?;
        // 1. Every new rule first: the old ones keep admitting home meanwhile.
        for net in &plan.add {
            let op = "neutron create rule";
            let a = self
                .call(
                    op,
                    Service::Network,
                    Method::POST,
                    neutron::create_rule_url(&base),
                    Some(neutron::create_body(&read.group_id, &read.owned, *net)),
                )
                .await?;
            if a.status == StatusCode::NOT_FOUND {
                // The group went away since it was read: find it again next time.
                self.forget_group(fw);
            }
            match neutron::create_outcome(a.status.as_u16(), &a.body) {
                Ok(CreateOutcome::Created(rule)) => tracing::info!(cloud = %self.name,
                    firewall = %fw.id, rule = %rule.id,
                    "security group {}: created the rule for {}", fw.id, neutron::cidr(*net)),
                Ok(CreateOutcome::AlreadyPresent { rule_id }) => tracing::info!(cloud = %self.name,
                    firewall = %fw.id, rule = rule_id.as_deref().unwrap_or("?"),
                    "security group {}: the rule for {} is already there", fw.id, neutron::cidr(*net)),
                Err(e) => {
                    let e = provider_error(op, e);
                    if !plan.remove.is_empty() {
                        tracing::error!(cloud = %self.name, firewall = %fw.id,
                            "security group {}: could not create the rule for {} ({e}); no rule \
                             is deleted", fw.id, neutron::cidr(*net));
                    }
                    return Err(e);
                }
            }
        }
        // 2. Only now the stale ones.
        for rule in &plan.remove {
            let op = "neutron delete rule";
            let a = self
                .call(
                    op,
                    Service::Network,
                    Method::DELETE,
                    neutron::rule_url(&base, &rule.handle.0),
                    None,
                )
                .await?;
            match neutron::delete_outcome(a.status.as_u16(), &a.body) {
                Ok(DeleteOutcome::Deleted) => tracing::info!(cloud = %self.name,
                    firewall = %fw.id, rule = %rule.handle.0,
                    "security group {}: deleted the stale rule for {}", fw.id, rule.source),
                Ok(DeleteOutcome::AlreadyGone) => tracing::info!(cloud = %self.name,
                    firewall = %fw.id, rule = %rule.handle.0,
                    "security group {}: the stale rule for {} was already gone", fw.id, rule.source),
                Err(e) => return Err(provider_error(op, e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tracked;
    use crate::ids::{CloudName, FirewallId};

    fn fw() -> FirewallConfig {
        FirewallConfig {
            cloud: CloudName("home".into()),
            id: FirewallId("ssh".into()),
            instances: vec![],
            protocol: "TCP".into(),
            port: "22".into(),
            keep: vec![],
            family: Tracked::Ipv4,
        }
    }

    #[test]
    fn owned_and_foreign_rules_are_told_apart() {
        let body: ShownGroup = serde_json::from_str(
            r#"{"security_group": {"id": "g1", "name": "ssh", "security_group_rules": [
            {"id": "r1", "security_group_id": "g1", "direction": "ingress", "ethertype": "IPv4",
             "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
             "remote_ip_prefix": "81.2.69.160/32", "remote_group_id": null},
            {"id": "r2", "security_group_id": "g1", "direction": "ingress", "ethertype": "IPv4",
             "protocol": "tcp", "port_range_min": 443, "port_range_max": 443,
             "remote_ip_prefix": "0.0.0.0/0", "remote_group_id": null},
            {"id": "r3", "security_group_id": "g1", "direction": "ingress", "ethertype": "IPv4",
             "protocol": "6", "port_range_min": 22, "port_range_max": 22,
             "remote_ip_prefix": null, "remote_group_id": "g1"},
            {"id": "r4", "security_group_id": "g1", "direction": "egress", "ethertype": "IPv4",
             "protocol": null, "port_range_min": null, "port_range_max": null,
             "remote_ip_prefix": null, "remote_group_id": null},
            {"id": "r5", "security_group_id": "g1", "direction": "ingress", "ethertype": "IPv4",
             "protocol": "6", "port_range_min": "22", "port_range_max": "22",
             "remote_ip_prefix": null, "remote_group_id": null}]}}"#,
        )
        .unwrap();
        let s = classify(&fw(), body.security_group, owned_rules(&fw()).unwrap()).unwrap();
        assert_eq!(s.name.as_deref(), Some("ssh"));
        assert_eq!((s.inbound, s.outbound), (4, 1));
        assert_eq!(
            s.owned,
            vec![
                OwnedRule {
                    handle: RuleHandle("r1".into()),
                    source: OwnedSource::Net("81.2.69.160".parse().unwrap()),
                },
                OwnedRule {
                    handle: RuleHandle("r5".into()),
                    source: OwnedSource::Net("0.0.0.0/0".parse().unwrap()),
                },
            ],
            "a null prefix is 'anywhere' and owned; a remote group rule never is"
        );
        assert_eq!(s.others.len(), 3);
        assert!(
            s.others.iter().any(|l| l.contains("group g1")),
            "{:?}",
            s.others
        );
        assert!(s.unwritable.is_none());
        let read = s.private.0.downcast_ref::<GroupRead>().unwrap();
        assert_eq!(read.group_id, "g1");
    }
}
