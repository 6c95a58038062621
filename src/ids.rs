//! Identifiers of cloud objects, shared by config, state, sync and probe code.

use std::fmt;

/// The name of a configured cloud: `indigo` for the `[indigo]` table, `NAME` for an
/// `[openstack.NAME]` table. Firewalls, instances and their persisted records belong to one.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct CloudName(pub String);

impl CloudName {
    /// The name of the cloud the `[indigo]` table configures.
    pub const INDIGO: &'static str = "indigo";

    pub fn indigo() -> CloudName {
        CloudName(CloudName::INDIGO.to_string())
    }
}

impl fmt::Display for CloudName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifier of a firewall template (Indigo) or security group (OpenStack).
///
/// Kept as the provider's canonical string form; configs may write ids as numbers or strings.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct FirewallId(pub String);

/// Identifier of a VPS instance.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct InstanceId(pub String);

impl fmt::Display for FirewallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
