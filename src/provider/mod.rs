//! Cloud provider contracts: what sync and probe need from a cloud, and nothing more.
//!
//! The engine talks only to [`Provider`] ([`Firewalls`] + [`Power`]) and the plain data types
//! here. A provider maps its own API onto them:
//!
//! - **Firewalls**: [`Firewalls::read_firewall`] reads one firewall and *classifies* it: the rules
//!   dynwall owns under the entry's protocol/port/family (each with a [`RuleHandle`]), and a
//!   normalised line for every other rule. The pure planner ([`crate::sync::plan`]) turns the
//!   owned rules into a [`Plan`] (keep / add / remove); [`Firewalls::apply`] carries it out the
//!   provider's way: Indigo in one wholesale update (the full template and the instance list,
//!   after its "instances must exist" preflight); a per-rule API creates first, then deletes.
//! - **Power**: a [`PowerState`] may be [`PowerState::Busy`] (a task in flight: send nothing);
//!   the remediation [`Ladder`] and the poll interval come from the provider.
//! - The request policy (quota, retries, tokens) lives in [`http`] and [`token`], shared by all.

pub mod error;
pub mod http;
pub mod indigo;
pub mod openstack;
pub mod token;

pub use crate::ids::{CloudName, FirewallId, InstanceId};
pub use error::ProviderError;

use std::any::Any;
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{FirewallConfig, ProbeConfig};
use crate::net::IpNet;

/// A provider's handle on one rule it reported: meaningful only together with the snapshot it
/// came from (Indigo: the rule's position in the template as read; a per-rule API: its id).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleHandle(pub String);

/// What an owned rule admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedSource {
    /// An address or network.
    Net(IpNet),
    /// A source dynwall cannot read (empty, garbage): always removed.
    Unreadable(String),
}

impl fmt::Display for OwnedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OwnedSource::Net(n) => write!(f, "{n}"),
            OwnedSource::Unreadable(s) if s.is_empty() => f.write_str("(empty source)"),
            OwnedSource::Unreadable(s) => write!(f, "{s:?}"),
        }
    }
}

/// One rule dynwall owns, as the provider classified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRule {
    pub handle: RuleHandle,
    pub source: OwnedSource,
}

/// Provider-private data a snapshot carries for [`Firewalls::apply`] (Indigo: the template as
/// read). Opaque to everyone else.
#[derive(Clone)]
pub struct Private(pub Arc<dyn Any + Send + Sync>);

impl fmt::Debug for Private {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Private(..)")
    }
}

/// A firewall as read and classified by its provider.
#[derive(Clone, Debug)]
pub struct FirewallSnapshot {
    pub id: FirewallId,
    /// Display name, when the provider reports one.
    pub name: Option<String>,
    /// The rules dynwall owns under the entry.
    pub owned: Vec<OwnedRule>,
    /// Every other rule, one normalised line each: written back (or left) unchanged, compared
    /// before and after a write, counted by `check`.
    pub others: Vec<String>,
    /// Rules in each direction, for `check` (inbound/ingress, outbound/egress).
    pub inbound: usize,
    pub outbound: usize,
    /// Why the provider could not write this firewall back exactly, if so (a foreign rule it
    /// cannot carry over as it was): a change is then refused, naming the rule.
    pub unwritable: Option<String>,
    /// What [`Firewalls::apply`] needs of the read.
    pub private: Private,
}

/// The change of one firewall's owned rules, planned by [`crate::sync::plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Owned rules that stay (their source is wanted).
    pub keep: Vec<OwnedRule>,
    /// Sources to add, one rule each.
    pub add: Vec<IpNet>,
    /// Owned rules to remove (stale address, duplicate, wildcard, unreadable).
    pub remove: Vec<OwnedRule>,
}

impl Plan {
    /// True when the firewall already holds exactly the wanted owned rules.
    pub fn is_noop(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// The sources the firewall holds once the plan is applied.
    pub fn wanted(&self) -> BTreeSet<IpNet> {
        self.keep
            .iter()
            .filter_map(|r| match r.source {
                OwnedSource::Net(n) => Some(n),
                OwnedSource::Unreadable(_) => None,
            })
            .chain(self.add.iter().copied())
            .collect()
    }
}

/// What a provider remembers about its cloud between runs; the engine persists it per cloud and
/// drops what is too old before handing it over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloudFacts {
    /// Instance ids confirmed to exist (Indigo's write preflight; `None`: not known, ask).
    pub instances: Option<BTreeSet<InstanceId>>,
}

/// Power state as the provider reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PowerState {
    Running,
    Stopped,
    /// A task is in flight (Nova's `task_state`): nothing is sent until it settles.
    Busy(String),
    /// Anything else ("OS installation In Progress", error states): left alone.
    Other(String),
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PowerState::Running => f.write_str("Running"),
            PowerState::Stopped => f.write_str("Stopped"),
            PowerState::Busy(s) => write!(f, "busy ({s})"),
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
    /// Firewalls the provider says the instance belongs to (OpenStack: its security groups);
    /// empty when the provider cannot tell (Indigo: the config's `instances` lists say it).
    pub firewalls: Vec<FirewallId>,
}

/// The instance `wanted` names in `list`: the one with that id, else the only one with that
/// name (OpenStack probes may name a server).
pub fn find_instance<'a>(list: &'a [Instance], wanted: &InstanceId) -> Option<&'a Instance> {
    if let Some(i) = list.iter().find(|i| &i.id == wanted) {
        return Some(i);
    }
    let mut named = list.iter().filter(|i| i.name == wanted.0);
    match (named.next(), named.next()) {
        (Some(i), None) => Some(i),
        _ => None,
    }
}

/// Power operations the prober may request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    Start,
    Stop,
    /// Cut the power (Indigo `forcestop`).
    ForceStop,
    /// A hard reboot (Nova `reboot HARD`; Indigo `reset`): leaves the machine running.
    Reboot,
}

impl PowerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Start => "start",
            PowerAction::Stop => "stop",
            PowerAction::ForceStop => "forcestop",
            PowerAction::Reboot => "reboot",
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
    /// The instance already was in the requested state (Indigo I10016/I10017): progress.
    AlreadyInState,
}

/// The remediation ladder of one cloud: a graceful stop, a forced step when the stop does not
/// complete within `stop_timeout`, then a start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ladder {
    /// The graceful first step; `None` goes straight to the force step (one hard reboot).
    pub stop: Option<PowerAction>,
    /// The force step (Indigo `forcestop`; Nova `reboot HARD`).
    pub force: PowerAction,
    /// True when the force step leaves the machine running (a hard reboot): no start follows.
    pub force_leaves_running: bool,
    pub start: PowerAction,
}

impl Ladder {
    /// stop → forcestop → start.
    pub const STOP_FORCESTOP_START: Ladder = Ladder {
        stop: Some(PowerAction::Stop),
        force: PowerAction::ForceStop,
        force_leaves_running: false,
        start: PowerAction::Start,
    };
}

/// Reading firewalls and carrying out plans.
///
/// Implementations retry transient failures themselves (bounded) and respect the cloud's rate
/// limits. Dropping a future leaves nothing half-done on our side: a write that reached the
/// provider may still have happened, which the next read shows.
#[async_trait]
pub trait Firewalls: Send + Sync {
    /// Reads the firewall of `fw` and classifies its rules.
    async fn read_firewall(&self, fw: &FirewallConfig) -> Result<FirewallSnapshot, ProviderError>;

    /// Carries out a non-empty `plan` computed from `current` (a snapshot this provider read for
    /// `fw`). `facts` are this cloud's remembered facts (the provider may use and update them).
    /// Refuses (changing nothing) when `current.unwritable` is set.
    async fn apply(
        &self,
        fw: &FirewallConfig,
        current: &FirewallSnapshot,
        plan: &Plan,
        facts: &mut CloudFacts,
    ) -> Result<(), ProviderError>;

    /// `plan` as [`Firewalls::apply`] would carry it out, one line per change, for `check` and
    /// `--dry-run`.
    fn describe_plan(&self, plan: &Plan, fw: &FirewallConfig) -> Vec<String> {
        crate::sync::describe(plan, fw)
    }
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

    /// The remediation ladder for the instance of `probe`.
    fn ladder(&self, probe: &ProbeConfig) -> Ladder;

    /// How often an instance with a remediation in flight is polled.
    fn poll_interval(&self) -> Duration;
}

/// A cloud: both capabilities, and what the engine needs to plan its time.
pub trait Provider: Firewalls + Power {
    /// How long a request made now would wait for the rate limit.
    fn queue_delay(&self) -> Duration;

    /// The time one request takes on average under the cloud's quota (Indigo: a window's length
    /// divided by the requests it allows), for deadlines derived from the work.
    fn pace(&self) -> Duration;

    /// The longest one request can legitimately take, waits and retries included.
    fn call_bound(&self) -> Duration;

    /// Counts this client's API requests, quota and quota waits in `metrics` under the label
    /// `cloud` (from then on; a later call replaces neither). A client without counters
    /// ignores it.
    fn meter(&self, _metrics: &crate::metrics::Metrics, _cloud: &crate::ids::CloudName) {}
}
