//! Cloud provider contracts: what sync and probe need from a cloud, and nothing more.
//!
//! Sync and probe code talk only to the [`Firewall`] and [`Power`] traits and the plain data types in
//! this module. A provider (Indigo today, OpenStack later) maps its own wire format onto them, so a new
//! provider never touches the sync or probe logic.

pub mod error;
pub mod http;
pub mod indigo;
pub mod token;

pub use error::ProviderError;

pub use crate::ids::{FirewallId, InstanceId};

use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;

/// Traffic direction of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// One firewall rule, in the provider-neutral shape sync reasons about.
///
/// All fields are kept exactly as the provider reported them, so that rules dynwall does not own are
/// written back byte-for-byte.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Rule type (`Custom`, `HTTP`, `All TCP`, …).
    pub kind: String,
    /// `TCP`, `UDP`, `ICMP`.
    pub protocol: String,
    /// `"22"`, `"1-65535"`, `"All Ports"`, `""` (ICMP).
    pub port: String,
    /// Address or CIDR as the provider spells it (`"198.51.100.23"`, `"0.0.0.0/0"`).
    pub source: String,
}

/// The full rule set of one firewall, both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSet {
    pub inbound: Vec<Rule>,
    pub outbound: Vec<Rule>,
}

/// A firewall as read from the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallState {
    pub id: FirewallId,
    /// Display name; `None` when the provider could not tell (an Indigo template without rules).
    pub name: Option<String>,
    pub rules: RuleSet,
}

/// What dynwall writes: the complete new rule set and the instances the firewall is assigned to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallWrite {
    pub id: FirewallId,
    pub rules: RuleSet,
    /// Every instance the firewall must stay assigned to (Indigo replaces assignments on update).
    pub instances: Vec<InstanceId>,
}

/// Power state as the provider reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PowerState {
    Running,
    Stopped,
    /// Anything else ("OS installation In Progress", stopping, …): left alone until it settles.
    Other(String),
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PowerState::Running => f.write_str("Running"),
            PowerState::Stopped => f.write_str("Stopped"),
            PowerState::Other(s) => f.write_str(s),
        }
    }
}

/// One instance as listed by the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub id: InstanceId,
    pub name: String,
    pub power: PowerState,
    /// Primary address, when the provider reports one.
    pub ip: Option<IpAddr>,
}

/// Power operations the prober may request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    Start,
    Stop,
    ForceStop,
}

impl PowerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Start => "start",
            PowerAction::Stop => "stop",
            PowerAction::ForceStop => "forcestop",
        }
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the provider answered a power request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOutcome {
    /// The request was accepted and the transition has started.
    Accepted,
    /// The instance already was in the requested state (Indigo I10016/I10017): progress, not an error.
    AlreadyInState,
}

/// Reading and writing firewall rules.
///
/// Implementations retry transient failures themselves (bounded) and respect the provider's rate
/// limits; every method is cancel-safe in the sense that dropping the future leaves nothing half-done
/// on our side (a write that reached the provider may still have happened, which the next read shows).
#[async_trait]
pub trait Firewall: Send + Sync {
    /// Reads the current rules of one firewall.
    async fn read_firewall(&self, id: &FirewallId) -> Result<FirewallState, ProviderError>;

    /// Replaces the rules of a firewall with `write.rules` and its assignments with `write.instances`.
    ///
    /// `current` is the state the write was planned from; providers without a wholesale update
    /// (OpenStack) use it to create new rules before deleting old ones.
    async fn write_firewall(
        &self,
        current: &FirewallState,
        write: &FirewallWrite,
    ) -> Result<(), ProviderError>;
}

/// Listing instances and changing their power state.
#[async_trait]
pub trait Power: Send + Sync {
    /// Lists every instance of the account (one call serves a whole round).
    async fn list_instances(&self) -> Result<Vec<Instance>, ProviderError>;

    /// Requests a power transition; does not wait for it to complete.
    async fn power(
        &self,
        id: &InstanceId,
        action: PowerAction,
    ) -> Result<PowerOutcome, ProviderError>;
}

/// A provider offers both capabilities.
pub trait Provider: Firewall + Power {}

impl<T: Firewall + Power> Provider for T {}
