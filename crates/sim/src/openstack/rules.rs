//! Neutron's server-side rules for security group rules: attribute parsing and normalisation,
//! validation, the duplicate key, and whether a rule admits an SSH client.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::model::GroupRule;
use crate::ssh::prefix_contains;

/// A Neutron error: status, `NeutronError.type` and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NeutronError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

impl NeutronError {
    pub(crate) fn new(status: u16, kind: &'static str, message: impl Into<String>) -> NeutronError {
        NeutronError {
            status,
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> NeutronError {
        NeutronError::new(400, "HTTPBadRequest", message)
    }
}

/// IP protocol names Neutron accepts, with their numbers.
const PROTOCOLS: &[(&str, u8)] = &[
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("hopopt", 0),
    ("icmp", 1),
    ("icmpv6", 58),
    ("igmp", 2),
    ("ipip", 4),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("ospf", 89),
    ("pgm", 113),
    ("rsvp", 46),
    ("sctp", 132),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vrrp", 112),
];

/// Protocols whose rules take a port range (TCP, UDP, DCCP, SCTP, UDP-Lite).
const PORT_PROTOCOLS: &[u8] = &[6, 17, 33, 132, 136];

/// Attributes a create request may carry.
const ATTRIBUTES: &[&str] = &[
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_group_id",
    "remote_address_group_id",
    "description",
    "project_id",
    "tenant_id",
];

/// The number of a stored protocol (a name or a number as text), for comparisons. `icmp` in an
/// IPv6 rule means ICMPv6, as Neutron reads it.
pub(crate) fn protocol_number(protocol: &str, ethertype: &str) -> Option<u8> {
    let n = match PROTOCOLS.iter().find(|(name, _)| *name == protocol) {
        Some((_, n)) => *n,
        None => protocol.parse().ok()?,
    };
    Some(if n == 1 && ethertype == "IPv6" { 58 } else { n })
}

/// A create request whose attributes parsed; [`validate`] checks how they fit together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NewRule {
    pub security_group_id: String,
    pub rule: GroupRule,
}

/// Parses the body of `POST /v2.0/security-group-rules` into a rule with a fresh id, applying
/// Neutron's attribute conversions (lower-case protocol names, numbers as text, ports from
/// numeric strings, a bare address given its full mask, ethertype case-insensitive).
pub(crate) fn parse_create(body: &[u8]) -> Result<NewRule, NeutronError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| NeutronError::bad_request("Malformed request body"))?;
    let attrs = value
        .get("security_group_rule")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            NeutronError::bad_request("Unable to find 'security_group_rule' in request body")
        })?;
    let unknown: Vec<String> = attrs
        .keys()
        .filter(|k| !ATTRIBUTES.contains(&k.as_str()))
        .map(|k| format!("'{k}'"))
        .collect();
    if !unknown.is_empty() {
        return Err(NeutronError::bad_request(format!(
            "Unrecognized attribute(s) {}",
            unknown.join(", ")
        )));
    }
    let security_group_id = required_text(attrs, "security_group_id")?;
    let direction = required_text(attrs, "direction")?;
    if !matches!(direction.as_str(), "ingress" | "egress") {
        return Err(NeutronError::bad_request(format!(
            "Invalid input for direction. Reason: '{direction}' is not in ['ingress', 'egress']."
        )));
    }
    let ethertype = match text(attrs, "ethertype")? {
        None => "IPv4".to_owned(),
        Some(e) if e.eq_ignore_ascii_case("ipv4") => "IPv4".to_owned(),
        Some(e) if e.eq_ignore_ascii_case("ipv6") => "IPv6".to_owned(),
        Some(e) => {
            return Err(NeutronError::bad_request(format!(
                "Invalid input for ethertype. Reason: '{e}' is not in ['IPv4', 'IPv6']."
            )))
        }
    };
    let protocol = protocol(attrs.get("protocol"))?;
    let port_range_min = port(attrs.get("port_range_min"))?;
    let port_range_max = port(attrs.get("port_range_max"))?;
    let remote_ip_prefix = match text(attrs, "remote_ip_prefix")? {
        None => None,
        Some(p) => Some(normalize_prefix(&p).ok_or_else(|| {
            NeutronError::bad_request(format!("Invalid CIDR {p} given as IP prefix."))
                .kind_of("InvalidCIDR")
        })?),
    };
    let remote_group_id = text(attrs, "remote_group_id")?;
    let description = Some(text(attrs, "description")?.unwrap_or_default());
    Ok(NewRule {
        security_group_id,
        rule: GroupRule {
            id: crate::ids::uuid4(),
            direction,
            ethertype,
            protocol,
            port_range_min,
            port_range_max,
            remote_ip_prefix,
            remote_group_id,
            description,
        },
    })
}

impl NeutronError {
    fn kind_of(mut self, kind: &'static str) -> NeutronError {
        self.kind = kind;
        self
    }
}

fn text(attrs: &Map<String, Value>, key: &str) -> Result<Option<String>, NeutronError> {
    match attrs.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(NeutronError::bad_request(format!(
            "Invalid input for {key}. Reason: '{other}' is not a valid string."
        ))),
    }
}

fn required_text(attrs: &Map<String, Value>, key: &str) -> Result<String, NeutronError> {
    text(attrs, key)?.ok_or_else(|| {
        NeutronError::bad_request(format!(
            "Failed to parse request. Required attribute '{key}' not specified"
        ))
    })
}

fn protocol(v: Option<&Value>) -> Result<Option<String>, NeutronError> {
    let raw = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => other.to_string(),
    };
    if PROTOCOLS.iter().any(|(name, _)| *name == raw) {
        return Ok(Some(raw));
    }
    match raw.parse::<u8>() {
        Ok(n) if raw.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n.to_string())),
        _ => {
            let names: Vec<String> = PROTOCOLS.iter().map(|(n, _)| format!("'{n}'")).collect();
            Err(NeutronError::new(
                400,
                "SecurityGroupRuleInvalidProtocol",
                format!(
                    "Security group rule protocol {raw} not supported. Only protocol values \
                     [None, {}] and integer representations [0 to 255] are supported.",
                    names.join(", ")
                ),
            ))
        }
    }
}

fn port(v: Option<&Value>) -> Result<Option<u16>, NeutronError> {
    let (raw, parsed) = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => (n.to_string(), n.as_u64()),
        Some(Value::String(s)) => (s.clone(), s.trim().parse::<u64>().ok()),
        Some(other) => (other.to_string(), None),
    };
    match parsed.and_then(|n| u16::try_from(n).ok()) {
        Some(p) => Ok(Some(p)),
        None => Err(NeutronError::new(
            400,
            "SecurityGroupInvalidPortValue",
            format!("Invalid value for port {raw}"),
        )),
    }
}

/// A prefix with an explicit mask, host bits kept: `198.51.100.7` → `198.51.100.7/32`,
/// `2001:DB8::1` → `2001:db8::1/128`, `10.0.0.5/24` stays. `None` when it does not parse.
pub(crate) fn normalize_prefix(text: &str) -> Option<String> {
    let (addr, prefix) = parse_prefix(text)?;
    Some(format!("{addr}/{prefix}"))
}

/// The address and mask length of a prefix (`None` when it does not parse).
pub(crate) fn parse_prefix(text: &str) -> Option<(IpAddr, u8)> {
    let text = text.trim();
    let (addr, prefix) = match text.split_once('/') {
        None => (text, None),
        Some((a, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (a, Some(p.parse::<u8>().ok()?))
        }
        Some(_) => return None,
    };
    let addr: IpAddr = addr.parse().ok()?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(width);
    (prefix <= width).then_some((addr, prefix))
}

/// The checks Neutron makes once the attributes parsed: remote prefix and remote group are
/// exclusive, the port range suits the protocol, the prefix suits the ethertype. Returns the rule
/// with its canonical port range (TCP/UDP `1`–`65535` is stored as no range).
pub(crate) fn validate(mut rule: GroupRule) -> Result<GroupRule, NeutronError> {
    if rule.remote_ip_prefix.is_some() && rule.remote_group_id.is_some() {
        return Err(NeutronError::new(
            400,
            "SecurityGroupMultipleRemoteEntites",
            "Only remote_ip_prefix or remote_group_id may be provided.",
        ));
    }
    validate_ports(&rule)?;
    if let Some(prefix) = &rule.remote_ip_prefix {
        let v6 = parse_prefix(prefix).is_some_and(|(a, _)| a.is_ipv6());
        if v6 != (rule.ethertype == "IPv6") {
            return Err(NeutronError::new(
                400,
                "SecurityGroupRuleParameterConflict",
                format!(
                    "Conflicting value ethertype {} for CIDR {prefix}",
                    rule.ethertype
                ),
            ));
        }
    }
    let number = rule
        .protocol
        .as_deref()
        .and_then(|p| protocol_number(p, &rule.ethertype));
    if number.is_some_and(|n| PORT_PROTOCOLS.contains(&n))
        && rule.port_range_min == Some(1)
        && rule.port_range_max == Some(65535)
    {
        rule.port_range_min = None;
        rule.port_range_max = None;
    }
    Ok(rule)
}

fn validate_ports(rule: &GroupRule) -> Result<(), NeutronError> {
    let (min, max) = (rule.port_range_min, rule.port_range_max);
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    let Some(protocol) = rule.protocol.as_deref() else {
        return Err(NeutronError::new(
            400,
            "SecurityGroupProtocolRequiredWithPorts",
            "Must also specify protocol if port range is given.",
        ));
    };
    let number = protocol_number(protocol, &rule.ethertype);
    match number {
        Some(n) if PORT_PROTOCOLS.contains(&n) => {
            if min == Some(0) || max == Some(0) {
                return Err(NeutronError::new(
                    400,
                    "SecurityGroupInvalidPortValue",
                    "Invalid value for port 0",
                ));
            }
            match (min, max) {
                (Some(lo), Some(hi)) if lo <= hi => Ok(()),
                _ => Err(NeutronError::new(
                    400,
                    "SecurityGroupInvalidPortRange",
                    "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                )),
            }
        }
        Some(1 | 58) => {
            for (attr, field, value) in [
                ("port_range_min", "type", min),
                ("port_range_max", "code", max),
            ] {
                if let Some(v) = value.filter(|v| *v > 255) {
                    return Err(NeutronError::new(
                        400,
                        "SecurityGroupInvalidIcmpValue",
                        format!(
                            "Invalid value for ICMP {field} ({attr}) {v}. It must be 0 to 255."
                        ),
                    ));
                }
            }
            match (min, max) {
                (None, Some(code)) => Err(NeutronError::new(
                    400,
                    "SecurityGroupMissingIcmpType",
                    format!(
                        "ICMP code (port-range-max) {code} is provided but ICMP type \
                         (port-range-min) is missing."
                    ),
                )),
                _ => Ok(()),
            }
        }
        _ => Err(NeutronError::new(
            400,
            "SecurityGroupInvalidProtocolForPort",
            format!(
                "Invalid protocol {protocol} for port range, only supported for TCP, UDP, \
                 UDPLITE, SCTP and DCCP."
            ),
        )),
    }
}

/// What two rules must share to be duplicates: everything but the id and the description, with
/// the protocol compared by number and a missing prefix, `0.0.0.0/0` and `::/0` all equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DuplicateKey {
    direction: String,
    ethertype: String,
    protocol: Option<u8>,
    protocol_text: Option<String>,
    port_range_min: Option<u16>,
    port_range_max: Option<u16>,
    remote_group_id: Option<String>,
    remote_ip_prefix: Option<(IpAddr, u8)>,
}

impl DuplicateKey {
    pub(crate) fn of(rule: &GroupRule) -> DuplicateKey {
        let protocol = rule
            .protocol
            .as_deref()
            .and_then(|p| protocol_number(p, &rule.ethertype));
        DuplicateKey {
            direction: rule.direction.clone(),
            ethertype: rule.ethertype.clone(),
            protocol,
            // A protocol the table does not know is compared as written.
            protocol_text: rule.protocol.clone().filter(|_| protocol.is_none()),
            port_range_min: rule.port_range_min,
            port_range_max: rule.port_range_max,
            remote_group_id: rule.remote_group_id.clone(),
            remote_ip_prefix: rule
                .remote_ip_prefix
                .as_deref()
                .and_then(parse_prefix)
                .filter(|(addr, len)| !(*len == 0 && addr.is_unspecified())),
        }
    }
}

/// True when `rule` lets `client` reach TCP `port`: an ingress rule of the client's family, for
/// TCP or every protocol, covering the port, from a prefix that contains the client (no prefix:
/// anywhere). A rule naming a remote group admits only that group's ports, never an outside client.
pub(crate) fn admits(rule: &GroupRule, client: IpAddr, port: u16) -> bool {
    let client = client.to_canonical();
    let family = if client.is_ipv4() { "IPv4" } else { "IPv6" };
    if rule.direction != "ingress" || rule.ethertype != family || rule.remote_group_id.is_some() {
        return false;
    }
    let tcp = match rule.protocol.as_deref() {
        None => true,
        Some(p) => protocol_number(p, &rule.ethertype) == Some(6),
    };
    let ports = match (rule.port_range_min, rule.port_range_max) {
        (None, None) => true,
        (Some(lo), Some(hi)) => (lo..=hi).contains(&port),
        (Some(lo), None) => lo == port,
        (None, Some(_)) => false,
    };
    let source = match rule.remote_ip_prefix.as_deref() {
        None => true,
        Some(p) => parse_prefix(p).is_some_and(|(net, len)| prefix_contains(net, len, client)),
    };
    tcp && ports && source
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(attrs: Value) -> Result<GroupRule, NeutronError> {
        let body = serde_json::json!({ "security_group_rule": attrs }).to_string();
        parse_create(body.as_bytes()).and_then(|n| validate(n.rule))
    }

    fn ssh(prefix: &str) -> Value {
        serde_json::json!({"security_group_id": "g", "direction": "ingress", "ethertype": "IPv4",
            "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": prefix})
    }

    #[test]
    fn prefixes_get_a_mask_and_keep_host_bits() {
        assert_eq!(
            normalize_prefix("198.51.100.7").as_deref(),
            Some("198.51.100.7/32")
        );
        assert_eq!(
            normalize_prefix("198.51.100.7/24").as_deref(),
            Some("198.51.100.7/24")
        );
        assert_eq!(
            normalize_prefix("2001:DB8::1").as_deref(),
            Some("2001:db8::1/128")
        );
        assert_eq!(normalize_prefix("0.0.0.0/0").as_deref(), Some("0.0.0.0/0"));
        for bad in [
            "not-an-ip",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "::/129",
            "",
        ] {
            assert_eq!(normalize_prefix(bad), None, "{bad}");
        }
    }

    #[test]
    fn attributes_are_converted() {
        let mut attrs = ssh("203.0.113.5");
        attrs["protocol"] = "TCP".into();
        attrs["port_range_min"] = "22".into();
        attrs["ethertype"] = "ipv4".into();
        let r = create(attrs).unwrap();
        assert_eq!(r.protocol.as_deref(), Some("tcp"));
        assert_eq!((r.port_range_min, r.port_range_max), (Some(22), Some(22)));
        assert_eq!(r.remote_ip_prefix.as_deref(), Some("203.0.113.5/32"));
        assert_eq!(r.ethertype, "IPv4");
        assert_eq!(r.description.as_deref(), Some(""));
        let mut attrs = ssh("203.0.113.5/32");
        attrs["protocol"] = 6.into();
        assert_eq!(create(attrs).unwrap().protocol.as_deref(), Some("6"));
        let mut all = ssh("0.0.0.0/0");
        all["port_range_min"] = 1.into();
        all["port_range_max"] = 65535.into();
        let r = create(all).unwrap();
        assert_eq!((r.port_range_min, r.port_range_max), (None, None));
    }

    #[test]
    fn invalid_requests_name_neutrons_error_type() {
        let kind = |attrs: Value| create(attrs).unwrap_err().kind;
        let mut v6 = ssh("2001:db8::1/128");
        assert_eq!(kind(v6.clone()), "SecurityGroupRuleParameterConflict");
        v6["ethertype"] = "IPv6".into();
        assert!(create(v6).is_ok());
        assert_eq!(kind(ssh("not-an-ip")), "InvalidCIDR");
        let mut range = ssh("192.0.2.10/32");
        range["port_range_min"] = 23.into();
        assert_eq!(kind(range), "SecurityGroupInvalidPortRange");
        let mut no_proto = ssh("192.0.2.11/32");
        no_proto["protocol"] = Value::Null;
        assert_eq!(kind(no_proto), "SecurityGroupProtocolRequiredWithPorts");
        let mut both = ssh("192.0.2.11/32");
        both["remote_group_id"] = "other".into();
        assert_eq!(kind(both), "SecurityGroupMultipleRemoteEntites");
        let mut zero = ssh("192.0.2.11/32");
        zero["port_range_min"] = 0.into();
        assert_eq!(kind(zero), "SecurityGroupInvalidPortValue");
        let mut big = ssh("192.0.2.11/32");
        big["port_range_max"] = 70000.into();
        assert_eq!(kind(big), "SecurityGroupInvalidPortValue");
        let mut proto = ssh("192.0.2.11/32");
        proto["protocol"] = "bogus".into();
        assert_eq!(kind(proto), "SecurityGroupRuleInvalidProtocol");
        let mut gre = ssh("192.0.2.11/32");
        gre["protocol"] = "gre".into();
        assert_eq!(kind(gre), "SecurityGroupInvalidProtocolForPort");
        let mut icmp = ssh("192.0.2.11/32");
        icmp["protocol"] = "icmp".into();
        icmp["port_range_min"] = 300.into();
        assert_eq!(kind(icmp), "SecurityGroupInvalidIcmpValue");
        let mut extra = ssh("192.0.2.11/32");
        extra["bogus"] = 1.into();
        let err = create(extra).unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (400, "Unrecognized attribute(s) 'bogus'")
        );
        let mut dir = ssh("192.0.2.11/32");
        dir["direction"] = "sideways".into();
        assert_eq!(kind(dir), "HTTPBadRequest");
        let no_dir = serde_json::json!({"security_group_id": "g"});
        assert!(create(no_dir)
            .unwrap_err()
            .message
            .contains("'direction' not specified"));
        assert_eq!(parse_create(b"{").unwrap_err().status, 400);
    }

    #[test]
    fn duplicates_ignore_description_and_spelling() {
        let key = |attrs: Value| DuplicateKey::of(&create(attrs).unwrap());
        let base = key(ssh("203.0.113.5/32"));
        let mut described = ssh("203.0.113.5/32");
        described["description"] = "other".into();
        assert_eq!(key(described), base);
        assert_eq!(key(ssh("203.0.113.5")), base);
        let mut six = ssh("203.0.113.5/32");
        six["protocol"] = "6".into();
        assert_eq!(key(six), base);
        assert_ne!(key(ssh("203.0.113.6/32")), base);
        assert_ne!(
            key(ssh("198.51.100.7/24")),
            key(ssh("198.51.100.0/24")),
            "host bits kept"
        );
        let mut anywhere = ssh("0.0.0.0/0");
        let nothing = {
            let mut a = anywhere.clone();
            a["remote_ip_prefix"] = Value::Null;
            a
        };
        assert_eq!(key(anywhere.clone()), key(nothing));
        anywhere["remote_ip_prefix"] = "0.0.0.0".into();
        assert_ne!(
            key(anywhere),
            key(ssh("0.0.0.0/0")),
            "a bare 0.0.0.0 is a /32"
        );
    }

    #[test]
    fn rules_admit_ssh_clients() {
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let yes = [
            GroupRule::ingress("tcp", 22, "198.51.100.7/32"),
            GroupRule::ingress("6", 22, "198.51.100.0/24"),
            GroupRule::ingress("tcp", 22, "0.0.0.0/0"),
            GroupRule::ingress("tcp", 22, "x").with_prefix(None),
            GroupRule::ingress("tcp", 20, "198.51.100.7/32").with_ports(Some(20), Some(30)),
            GroupRule::ingress("tcp", 1, "198.51.100.7/32").with_ports(None, None),
        ];
        for r in &yes {
            assert!(admits(r, client, 22), "{r:?}");
        }
        let mut any_protocol = GroupRule::ingress("tcp", 22, "198.51.100.7/32");
        any_protocol.protocol = None;
        assert!(admits(&any_protocol.with_ports(None, None), client, 22));
        let no = [
            GroupRule::ingress("udp", 22, "198.51.100.7/32"),
            GroupRule::ingress("tcp", 2222, "198.51.100.7/32"),
            GroupRule::ingress("tcp", 22, "198.51.100.8/32"),
            GroupRule::ingress("tcp", 22, "::/0"),
            GroupRule::ingress("tcp", 22, "x").with_remote_group("g"),
            GroupRule {
                direction: "egress".to_owned(),
                ..GroupRule::ingress("tcp", 22, "0.0.0.0/0")
            },
        ];
        for r in &no {
            assert!(!admits(r, client, 22), "{r:?}");
        }
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert!(admits(
            &GroupRule::ingress("tcp", 22, "2001:db8::/64"),
            v6,
            22
        ));
        assert!(!admits(&GroupRule::ingress("tcp", 22, "0.0.0.0/0"), v6, 22));
    }
}
