//! `[[firewall]]`: the managed firewalls and the rules dynwall owns in them.

use std::collections::BTreeSet;
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

pub(crate) fn firewall_from_raw(
    fw: raw::RawFirewall,
    i: usize,
    path: &Path,
) -> Result<FirewallConfig, ConfigError> {
    let key = |k: &str| format!("firewall[{i}].{k}");
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
        cloud: CloudName::indigo(),
        id: FirewallId(template.0),
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
