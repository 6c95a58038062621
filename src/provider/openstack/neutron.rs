//! Neutron security groups: finding the group, reading its rules, which of them dynwall owns, and
//! what each answer to a create or a delete means.
//!
//! Neutron cannot update a rule: a new home address is a new rule, created before the stale one is
//! deleted. A create answered `409 SecurityGroupRuleExists` found the rule already there (its id is
//! in the message); a delete answered 404 found it already gone. `409 OverQuota` is an error that
//! must stop the change before anything is deleted.

use std::collections::BTreeMap;

use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::{decode, ApiError, OpenStackError};
use super::wire;
use crate::net::{Family, IpNet};

/// The marker written into every rule dynwall creates (ownership does not depend on it: a rule
/// made by hand for the same port is owned too).
pub const RULE_DESCRIPTION: &str = "dynwall";

/// The Neutron API root for a catalog `network` URL: `…/v2.0/`, added when the catalog lists the
/// service unversioned (as it normally does).
pub fn base_url(catalog_url: &Url) -> Url {
    let mut url = catalog_url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let versioned = url
        .path_segments()
        .and_then(|mut s| s.rfind(|s| !s.is_empty()))
        == Some("v2.0");
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty();
        if !versioned {
            segments.push("v2.0");
        }
        segments.push("");
    }
    url
}

fn at(base: &Url, segments: &[&str], query: &[(&str, &str)]) -> Url {
    let mut url = base.clone();
    if let Ok(mut s) = url.path_segments_mut() {
        s.pop_if_empty().extend(segments);
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    url
}

/// `GET`: every security group of the project, id and name only (one call resolves a name or an
/// id; names are not unique).
pub fn groups_url(base: &Url) -> Url {
    at(
        base,
        &["security-groups"],
        &[("fields", "id"), ("fields", "name")],
    )
}

/// `GET`: the rules of one group.
pub fn group_rules_url(base: &Url, group_id: &str) -> Url {
    at(
        base,
        &["security-group-rules"],
        &[("security_group_id", group_id)],
    )
}

/// `POST` [`create_body`] here.
pub fn create_rule_url(base: &Url) -> Url {
    at(base, &["security-group-rules"], &[])
}

/// `DELETE` one rule.
pub fn rule_url(base: &Url, rule_id: &str) -> Url {
    at(base, &["security-group-rules", rule_id], &[])
}

/// A security group as the group list reports it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct GroupSummary {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

/// Reads `{"security_groups": [...]}`.
pub fn parse_groups(body: &[u8]) -> Result<Vec<GroupSummary>, OpenStackError> {
    #[derive(Deserialize)]
    struct Answer {
        security_groups: Vec<GroupSummary>,
    }
    Ok(decode::<Answer>("neutron security groups", body)?.security_groups)
}

/// The group `wanted` names: the one with that id, else the only one with that name.
pub fn find_group<'a>(
    groups: &'a [GroupSummary],
    wanted: &str,
) -> Result<&'a GroupSummary, OpenStackError> {
    super::find_by_id_or_name(groups, wanted, "security group", |g| &g.id, |g| &g.name)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EtherType {
    IPv4,
    IPv6,
}

impl EtherType {
    pub fn of(family: Family) -> EtherType {
        match family {
            Family::Ipv4 => EtherType::IPv4,
            Family::Ipv6 => EtherType::IPv6,
        }
    }

    pub fn family(self) -> Family {
        match self {
            EtherType::IPv4 => Family::Ipv4,
            EtherType::IPv6 => Family::Ipv6,
        }
    }
}

/// One security group rule, every field kept: those dynwall reads are typed, the rest (project,
/// revision, timestamps, `normalized_cidr`, tags, …) are carried in `other` unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    /// The rule's stable handle: a rule is never changed, only created and deleted.
    pub id: String,
    pub security_group_id: String,
    pub direction: Direction,
    pub ethertype: EtherType,
    /// A name (`tcp`) or a number (`"6"`); null means any protocol.
    #[serde(default, deserialize_with = "wire::text")]
    pub protocol: Option<String>,
    #[serde(default, deserialize_with = "wire::port")]
    pub port_range_min: Option<u16>,
    #[serde(default, deserialize_with = "wire::port")]
    pub port_range_max: Option<u16>,
    /// Null means anywhere.
    #[serde(default)]
    pub remote_ip_prefix: Option<String>,
    #[serde(default)]
    pub remote_group_id: Option<String>,
    #[serde(default)]
    pub remote_address_group_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Reads `{"security_group_rules": [...]}`.
pub fn parse_rules(body: &[u8]) -> Result<Vec<SecurityGroupRule>, OpenStackError> {
    #[derive(Deserialize)]
    struct Answer {
        security_group_rules: Vec<SecurityGroupRule>,
    }
    Ok(decode::<Answer>("neutron security group rules", body)?.security_group_rules)
}

/// Reads `{"security_group_rule": {...}}` (a create's answer, or `GET` of one rule).
pub fn parse_rule(body: &[u8]) -> Result<SecurityGroupRule, OpenStackError> {
    #[derive(Deserialize)]
    struct Answer {
        security_group_rule: SecurityGroupRule,
    }
    Ok(decode::<Answer>("neutron security group rule", body)?.security_group_rule)
}

/// A transport protocol a firewall entry manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpProtocol {
    Tcp,
    Udp,
}

impl IpProtocol {
    /// Neutron's lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            IpProtocol::Tcp => "tcp",
            IpProtocol::Udp => "udp",
        }
    }

    /// The IANA number Neutron also accepts (`tcp` ≡ `6`).
    pub fn number(self) -> &'static str {
        match self {
            IpProtocol::Tcp => "6",
            IpProtocol::Udp => "17",
        }
    }

    fn matches(self, protocol: &str) -> bool {
        let p = protocol.trim();
        p.eq_ignore_ascii_case(self.name()) || p == self.number()
    }
}

/// The ports a firewall entry manages: one port (`min == max`) or a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl PortRange {
    /// Neutron stores 1–65535 as "no range" (null ports).
    fn is_every_port(self) -> bool {
        self.min == 1 && self.max == u16::MAX
    }
}

/// Which rules of a group a firewall entry owns: ingress, its protocol, exactly its ports, the
/// ethertype of a tracked family, and a remote IP prefix (null meaning anywhere), never a remote
/// group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRules {
    pub protocol: IpProtocol,
    pub ports: PortRange,
    pub families: Vec<Family>,
}

/// What a rule is to a firewall entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Someone else's: never touched.
    NotOwned,
    /// Ours: kept if its prefix is desired, else deleted once the desired rules exist.
    Owned { family: Family, prefix: OwnedPrefix },
}

/// The source of an owned rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedPrefix {
    /// Normalised (`10.0.0.1` ≡ `10.0.0.1/32`); null is `0.0.0.0/0` or `::/0`.
    Net(IpNet),
    /// A prefix that is not an address of the rule's family: never desired, so stale.
    Unreadable(String),
}

impl OwnedRules {
    /// From a firewall entry's `protocol` (`TCP`, `UDP`), `port` (`22`, `8000-8100`) and tracked
    /// families.
    pub fn new(protocol: &str, port: &str, families: &[Family]) -> Result<OwnedRules, String> {
        let protocol = match protocol.trim().to_ascii_lowercase().as_str() {
            "tcp" => IpProtocol::Tcp,
            "udp" => IpProtocol::Udp,
            other => return Err(format!("protocol {other:?} is not supported (tcp or udp)")),
        };
        let number = |p: &str| match p.trim().parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("invalid port {port:?}")),
        };
        let (min, max) = match port.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(port)?, number(port)?),
        };
        if min > max {
            return Err(format!("invalid port range {port:?}"));
        }
        Ok(OwnedRules {
            protocol,
            ports: PortRange { min, max },
            families: families.to_vec(),
        })
    }

    pub fn classify(&self, rule: &SecurityGroupRule) -> Ownership {
        let family = rule.ethertype.family();
        let ports = (rule.port_range_min, rule.port_range_max);
        let owned = rule.direction == Direction::Ingress
            && rule.remote_group_id.is_none()
            && rule.remote_address_group_id.is_none()
            && rule
                .protocol
                .as_deref()
                .is_some_and(|p| self.protocol.matches(p))
            && (ports == (Some(self.ports.min), Some(self.ports.max))
                || (ports == (None, None) && self.ports.is_every_port()))
            && self.families.contains(&family);
        if !owned {
            return Ownership::NotOwned;
        }
        Ownership::Owned {
            family,
            prefix: prefix_of(rule.remote_ip_prefix.as_deref(), family),
        }
    }
}

/// A rule's `remote_ip_prefix`, normalised; null means anywhere in `family`.
pub fn prefix_of(prefix: Option<&str>, family: Family) -> OwnedPrefix {
    let Some(text) = prefix else {
        let any = match family {
            Family::Ipv4 => "0.0.0.0/0",
            Family::Ipv6 => "::/0",
        };
        return any.parse().map_or_else(
            |_| OwnedPrefix::Unreadable(any.to_string()),
            OwnedPrefix::Net,
        );
    };
    match text.parse::<IpNet>() {
        Ok(net) if Family::of(net.addr()) == family => OwnedPrefix::Net(net),
        _ => OwnedPrefix::Unreadable(text.to_string()),
    }
}

/// A prefix as Neutron should store it: always with its length (`/32`, `/128` for a host).
pub fn cidr(net: IpNet) -> String {
    format!("{}/{}", net.addr(), net.prefix_len())
}

/// The body that creates the rule for `net` in `group_id`: ingress, the entry's protocol and
/// ports, the ethertype of `net`'s family, an explicit prefix length and the `dynwall` marker.
pub fn create_body(group_id: &str, owned: &OwnedRules, net: IpNet) -> Value {
    json!({"security_group_rule": {
        "security_group_id": group_id,
        "direction": "ingress",
        "ethertype": EtherType::of(Family::of(net.addr())),
        "protocol": owned.protocol.name(),
        "port_range_min": owned.ports.min,
        "port_range_max": owned.ports.max,
        "remote_ip_prefix": cidr(net),
        "description": RULE_DESCRIPTION,
    }})
}

/// How a create ended.
#[derive(Clone, Debug, PartialEq)]
pub enum CreateOutcome {
    Created(SecurityGroupRule),
    /// `409 SecurityGroupRuleExists`: the rule is there already (an earlier create whose answer
    /// was lost, or the same rule made by hand). The id, when the message names it.
    AlreadyPresent {
        rule_id: Option<String>,
    },
}

/// Reads the answer to a `POST` of [`create_body`].
pub fn create_outcome(status: u16, body: &[u8]) -> Result<CreateOutcome, OpenStackError> {
    if (200..300).contains(&status) {
        return parse_rule(body).map(CreateOutcome::Created);
    }
    let answer = ApiError::parse(status, body);
    match (status, answer.kind.as_deref()) {
        (409, Some("SecurityGroupRuleExists")) => Ok(CreateOutcome::AlreadyPresent {
            rule_id: existing_rule_id(&answer.message),
        }),
        (409, Some("OverQuota")) => Err(OpenStackError::OverQuota { answer }),
        _ => Err(OpenStackError::Api {
            op: "neutron create rule",
            answer,
        }),
    }
}

/// The id in "Security group rule already exists. Rule id is <id>."
fn existing_rule_id(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("Rule id is ")?;
    let id = rest.split_whitespace().next()?.trim_end_matches('.');
    (!id.is_empty()).then(|| id.to_string())
}

/// How a delete ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// 404: someone (or an earlier attempt whose answer was lost) deleted it first.
    AlreadyGone,
}

/// Reads the answer to a `DELETE` of one rule.
pub fn delete_outcome(status: u16, body: &[u8]) -> Result<DeleteOutcome, OpenStackError> {
    match status {
        200..=299 => Ok(DeleteOutcome::Deleted),
        404 => Ok(DeleteOutcome::AlreadyGone),
        _ => Err(OpenStackError::api("neutron delete rule", status, body)),
    }
}

#[cfg(test)]
mod tests;
