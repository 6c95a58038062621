//! `[[firewall]]`: the managed firewalls and the rules dynwall owns in them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::raw::{self};
use super::*;
use crate::ids::{CloudName, FirewallId, InstanceId};
use crate::net::{Family, IpNet};

/// Which home address families a firewall entry tracks (one owned rule per family).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracked {
    Ipv4,
    Ipv6,
    Both,
}

impl Tracked {
    pub fn families(self) -> &'static [Family] {
        match self {
            Tracked::Ipv4 => &[Family::Ipv4],
            Tracked::Ipv6 => &[Family::Ipv6],
            Tracked::Both => &[Family::Ipv4, Family::Ipv6],
        }
    }
}

/// One managed firewall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallConfig {
    /// The cloud it belongs to (`indigo` for the `[indigo]` table).
    pub cloud: CloudName,
    /// Indigo: the template id (`template = …`).
    pub id: FirewallId,
    /// Every instance the firewall is assigned to (Indigo sends it with each update).
    pub instances: Vec<InstanceId>,
    pub protocol: String,
    pub port: String,
    /// Extra sources allowed on the owned port, normalised.
    pub keep: Vec<IpNet>,
    /// The home address families kept on the owned port.
    pub family: Tracked,
}

/// The API a configured cloud speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloudKind {
    Indigo,
    OpenStack,
}

impl CloudKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CloudKind::Indigo => "an Indigo cloud",
            CloudKind::OpenStack => "an OpenStack cloud",
        }
    }
}

/// The configured clouds, for resolving an entry's `cloud` key.
#[derive(Clone, Debug, Default)]
pub(crate) struct CloudSet(BTreeMap<CloudName, CloudKind>);

impl CloudSet {
    pub(crate) fn new<'a>(
        indigo: bool,
        openstack: impl IntoIterator<Item = &'a CloudName>,
    ) -> CloudSet {
        let mut m = BTreeMap::new();
        if indigo {
            m.insert(CloudName::indigo(), CloudKind::Indigo);
        }
        for name in openstack {
            m.insert(name.clone(), CloudKind::OpenStack);
        }
        CloudSet(m)
    }

    /// The kind of the cloud named `name`.
    pub(crate) fn kind(&self, name: &CloudName) -> Option<CloudKind> {
        self.0.get(name).copied()
    }

    /// The cloud an entry names with `cloud = …` (`key` is its dotted key), or the only one.
    pub(crate) fn pick(
        &self,
        given: Option<&str>,
        path: &Path,
        key: &str,
    ) -> Result<(CloudName, CloudKind), ConfigError> {
        let names = || {
            self.0
                .keys()
                .map(|n| format!("{:?}", n.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match given {
            Some(name) => {
                let name = CloudName(name.trim().to_string());
                match self.0.get(&name) {
                    Some(kind) => Ok((name, *kind)),
                    None => Err(ConfigError::invalid(
                        path,
                        key,
                        format!("no cloud is named {:?} (configured: {})", name.0, names()),
                    )),
                }
            }
            None => match self.0.len() {
                1 => Ok(self
                    .0
                    .iter()
                    .next()
                    .map(|(n, k)| (n.clone(), *k))
                    .unwrap_or((CloudName::indigo(), CloudKind::Indigo))),
                0 => Err(ConfigError::invalid(path, key, "no cloud is configured")),
                _ => Err(ConfigError::invalid(
                    path,
                    key,
                    format!(
                        "missing: several clouds are configured, name one of {}",
                        names()
                    ),
                )),
            },
        }
    }
}

pub(crate) fn firewall_from_raw(
    fw: raw::RawFirewall,
    i: usize,
    path: &Path,
    clouds: &CloudSet,
) -> Result<FirewallConfig, ConfigError> {
    let key = |k: &str| format!("firewall[{i}].{k}");
    let (cloud, kind) = clouds.pick(fw.cloud.as_deref(), path, &key("cloud"))?;
    let wrong = |k: &str, why: &str| {
        ConfigError::invalid(
            path,
            key(k),
            format!("cloud {:?} is {}: {why}", cloud.0, kind.as_str()),
        )
    };
    let (id, instances) = match kind {
        CloudKind::Indigo => {
            if fw.security_group.is_some() {
                return Err(wrong(
                    "security_group",
                    "security_group belongs to OpenStack clouds (use template)",
                ));
            }
            let template = fw
                .template
                .ok_or_else(|| ConfigError::invalid(path, key("template"), "missing"))?;
            let instances = fw.instances.ok_or_else(|| {
                ConfigError::invalid(
                    path,
                    key("instances"),
                    "missing: list every instance this template is assigned to (use [] for none); \
                     Indigo replaces the assignments with this list on every update",
                )
            })?;
            (FirewallId(template.0), instances)
        }
        CloudKind::OpenStack => {
            if fw.template.is_some() {
                return Err(wrong(
                    "template",
                    "template belongs to Indigo clouds (use security_group)",
                ));
            }
            if fw.instances.is_some() {
                return Err(wrong(
                    "instances",
                    "instances belongs to Indigo clouds (a security group applies to the \
                     servers whose ports are in it)",
                ));
            }
            let group = fw
                .security_group
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .ok_or_else(|| {
                    ConfigError::invalid(
                        path,
                        key("security_group"),
                        "missing: the security group's name (unique in the project) or id",
                    )
                })?;
            (FirewallId(group), Vec::new())
        }
    };
    let mut seen = BTreeSet::new();
    let mut ids = Vec::with_capacity(instances.len());
    for id in instances {
        if !seen.insert(id.0.clone()) {
            return Err(ConfigError::invalid(
                path,
                key("instances"),
                format!("instance {} is listed twice", id.0),
            ));
        }
        ids.push(InstanceId(id.0));
    }
    let protocol = fw
        .protocol
        .unwrap_or_else(|| "TCP".to_string())
        .to_uppercase();
    if !matches!(protocol.as_str(), "TCP" | "UDP") {
        return Err(ConfigError::invalid(
            path,
            key("protocol"),
            format!("{protocol:?} is not supported (expected \"TCP\" or \"UDP\")"),
        ));
    }
    let port = fw.port.map_or_else(|| "22".to_string(), |p| p.0);
    validate_port(&port).map_err(|r| ConfigError::invalid(path, key("port"), r))?;
    let mut keep = Vec::with_capacity(fw.keep.len());
    for (j, k) in fw.keep.iter().enumerate() {
        let net: IpNet = k.parse().map_err(|e| {
            ConfigError::invalid(path, format!("firewall[{i}].keep[{j}]"), format!("{e}"))
        })?;
        if net.prefix_len() == 0 {
            return Err(ConfigError::invalid(
                path,
                format!("firewall[{i}].keep[{j}]"),
                format!("{k:?} would open the port to everyone"),
            ));
        }
        keep.push(net);
    }
    let family = match fw.family.as_deref() {
        None | Some("ipv4") => Tracked::Ipv4,
        Some("ipv6") => Tracked::Ipv6,
        Some("both") => Tracked::Both,
        Some(other) => {
            return Err(ConfigError::invalid(
                path,
                key("family"),
                format!("unknown family {other:?} (expected \"ipv4\", \"ipv6\" or \"both\")"),
            ))
        }
    };
    Ok(FirewallConfig {
        cloud,
        id,
        instances: ids,
        protocol,
        port,
        keep,
        family,
    })
}

pub(crate) fn validate_port(port: &str) -> Result<(), String> {
    let one = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("invalid port {port:?}")),
        }
    };
    match port.split_once('-') {
        Some((a, b)) if one(a)? <= one(b)? => Ok(()),
        Some(_) => Err(format!("invalid port range {port:?}")),
        None => one(port).map(|_| ()),
    }
}
