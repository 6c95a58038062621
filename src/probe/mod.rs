//! Instance health: probes, the persisted records, the pure decision and the remediation ladder.
//!
//! - [`check`]: one bounded probe (SSH banner, TCP connect, HTTP status), behind [`Prober`].
//! - [`record`]: what is persisted per instance (no decisions).
//! - [`decide`](mod@decide): counters and the verdict whether to act (pure).
//! - [`remediate`]: the stop → force → start ladder as a pure state machine.
//!
//! The engine ([`crate::engine`]) runs rounds: it probes, asks the provider only when a decision
//! could act, re-checks the address and the firewall before any power action, and executes the
//! ladder.

pub mod check;
pub mod decide;
pub mod record;
pub mod remediate;

use std::fmt;
use std::net::SocketAddr;

use async_trait::async_trait;

use crate::config::{ProbeCheck, ProbeConfig};
use crate::ids::{CloudName, InstanceId};
use crate::provider::PowerAction;

pub use check::{run_check, ProbeFailure};
pub use decide::{decide, observe, reset, Decision, Gates, HoldReason, ListNeed};
pub use record::{InstanceRecord, Remediation, SoftOutcome, SoftStep, Step};

/// Port probed when the address comes from the instance list.
pub const DEFAULT_PROBE_PORT: u16 = 22;

/// The result of one probe this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Up,
    Down(ProbeFailure),
    /// Not probed (no address known).
    Unknown(String),
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Up => f.write_str("up"),
            Health::Down(e) => write!(f, "down ({e})"),
            Health::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

/// Probes one instance. The real one connects ([`NetProber`]); tests script it.
///
/// Contract: bounded by the probe's `timeout`; cancel-safe.
#[async_trait]
pub trait Prober: Send + Sync {
    async fn probe(&self, cfg: &ProbeConfig, target: Option<SocketAddr>) -> Health;
}

/// Probes over the network: [`run_check`] with the probe's check and timeout.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetProber;

#[async_trait]
impl Prober for NetProber {
    async fn probe(&self, cfg: &ProbeConfig, target: Option<SocketAddr>) -> Health {
        let result = match (&cfg.check, target) {
            (ProbeCheck::Http { url, expect_status }, _) => {
                check::http(url, *expect_status, cfg.timeout).await
            }
            (check, Some(target)) => run_check(check, target, cfg.timeout).await,
            (_, None) => return Health::Unknown("no address".to_string()),
        };
        match result {
            Ok(()) => Health::Up,
            Err(e) => Health::Down(e),
        }
    }
}

/// One instance's line in a [`RoundReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceReport {
    pub cloud: CloudName,
    pub instance: InstanceId,
    pub health: Health,
    pub decision: Decision,
    /// Power requests the provider accepted this round, in order.
    pub actions: Vec<PowerAction>,
    /// The remediation step in flight after this round, if any.
    pub remediation: Option<Step>,
    /// The step's request was accepted longer ago than its timeout.
    pub overdue: bool,
    /// A power request failed this round (it is sent again next round).
    pub api_error: Option<String>,
    /// The remediation budget is spent and the instance is still down: an operator should look.
    pub given_up: bool,
    /// A remediation could not finish within its deadline: an operator should look.
    pub needs_operator: bool,
}

/// What a round saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub instances: Vec<InstanceReport>,
    /// The fleet breaker tripped: more than half the probed instances looked down.
    pub observer_problem: bool,
    /// The instance list could not be read this round.
    pub list_error: Option<String>,
}

impl RoundReport {
    /// True when some instance needs an operator: given up, or a remediation stuck past its
    /// deadline (`--once` then exits 1, SPEC §3).
    pub fn needs_attention(&self) -> bool {
        self.instances
            .iter()
            .any(|i| i.given_up || i.needs_operator)
    }

    /// Every power request accepted this round.
    pub fn actions(&self) -> impl Iterator<Item = (&InstanceId, PowerAction)> {
        self.instances
            .iter()
            .flat_map(|i| i.actions.iter().map(move |a| (&i.instance, *a)))
    }
}

/// What the fleet breaker knows of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetVote {
    /// The probe result, `None` when not probed.
    pub down: Option<bool>,
    /// A failure is expected (remediation in flight, grace, not running): it says nothing about
    /// the observer.
    pub expected: bool,
}

/// `Some((down, probed))` when at least two instances were probed and more than half look down
/// (an observer problem: act on none). Pure.
pub fn fleet_breaker(votes: &[FleetVote]) -> Option<(usize, usize)> {
    let (mut probed, mut down) = (0, 0);
    for v in votes.iter().filter(|v| !v.expected) {
        if let Some(d) = v.down {
            probed += 1;
            down += usize::from(d);
        }
    }
    (probed >= 2 && down * 2 > probed).then_some((down, probed))
}

/// Probe configs for tests, with the A.3 defaults and a fast probe timeout.
#[cfg(test)]
pub(crate) mod testkit {
    use std::time::Duration;

    use crate::config::{ProbeCheck, ProbeConfig};
    use crate::ids::{CloudName, InstanceId};

    pub fn cfg() -> ProbeConfig {
        ProbeConfig {
            cloud: CloudName::indigo(),
            instance: InstanceId("616516".into()),
            address: None,
            check: ProbeCheck::Ssh,
            interval: Duration::from_secs(30),
            timeout: Duration::from_millis(500),
            failures: 3,
            stop_timeout: Duration::from_secs(300),
            start_timeout: Duration::from_secs(300),
            grace: Duration::from_secs(300),
            max_actions: 3,
            window: Duration::from_secs(24 * 3600),
            enabled: true,
            remediation: crate::config::Remediation::StopStart,
            salt: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(down: Option<bool>, expected: bool) -> FleetVote {
        FleetVote { down, expected }
    }

    #[test]
    fn the_fleet_breaker_needs_two_probes_and_a_majority_down() {
        assert_eq!(fleet_breaker(&[vote(Some(true), false)]), None);
        assert_eq!(
            fleet_breaker(&[vote(Some(true), false), vote(Some(true), false)]),
            Some((2, 2))
        );
        assert_eq!(
            fleet_breaker(&[vote(Some(true), false), vote(Some(false), false)]),
            None,
            "half is not more than half"
        );
        assert_eq!(
            fleet_breaker(&[
                vote(Some(true), false),
                vote(Some(true), true),
                vote(Some(false), false)
            ]),
            None,
            "an expected failure does not count"
        );
        assert_eq!(
            fleet_breaker(&[vote(Some(true), false), vote(None, false)]),
            None
        );
    }
}
