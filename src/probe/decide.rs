//! The pure side of probing: per-instance counters and the decision whether to remediate.
//!
//! Nothing here reads the clock or does I/O: every function takes `now` (unix seconds) so the
//! rules are table-tested and a persisted record means the same thing after a restart.

use std::fmt;

pub use super::record::{secs, InstanceRecord};
use crate::config::ProbeConfig;
use crate::provider::PowerState;

/// First pause between two remediations of one instance (A.3: 10 min, doubling).
pub const BACKOFF_BASE_SECS: u64 = 10 * 60;
/// Longest pause between two remediations of one instance (A.3: capped at 6 h).
pub const BACKOFF_CAP_SECS: u64 = 6 * 3600;

/// Records the outcome of one probe.
///
/// A success resets the failure count, ends grace early, and ends the incident (clearing
/// `incident_acted` and `given_up`). A failure inside grace is remembered but not counted.
pub fn observe(rec: &mut InstanceRecord, ok: bool, error: Option<String>, now: u64) {
    rec.last_probe_at = Some(now);
    if ok {
        rec.consecutive_failures = 0;
        rec.last_ok_at = Some(now);
        if rec.in_grace(now) {
            rec.grace_until = None;
        }
        rec.incident_acted = false;
        rec.given_up = false;
        rec.soft_tried = false;
    } else {
        rec.last_error = Some(error.unwrap_or_else(|| "probe failed".to_string()));
        if !rec.in_grace(now) {
            rec.consecutive_failures = rec.consecutive_failures.saturating_add(1);
        }
    }
}

/// Records the power state the provider reported this round.
///
/// An instance seen turning `Running` after having been reported in another state was just
/// started (by anyone): it gets the same grace period as after a remediation, so a slow boot is
/// not mistaken for a hang.
pub fn note_api_state(rec: &mut InstanceRecord, state: &PowerState, cfg: &ProbeConfig, now: u64) {
    let was_other = rec
        .last_api_state
        .as_ref()
        .is_some_and(|s| *s != PowerState::Running);
    if was_other && *state == PowerState::Running && rec.remediation.is_none() {
        rec.grace_until = Some(now.saturating_add(secs(cfg.grace)));
        rec.consecutive_failures = 0;
    }
    rec.last_api_state = Some(state.clone());
}

/// The operator reset: forget the spent budget, the backoff and the incident.
///
/// An in-flight remediation is kept: an instance dynwall stopped is always started again.
pub fn reset(rec: &mut InstanceRecord) {
    rec.given_up = false;
    rec.needs_operator = None;
    rec.incident_acted = false;
    rec.actions.clear();
    rec.backoff_until = None;
    rec.consecutive_failures = 0;
    rec.soft_tried = false;
}

/// Pause after the `n`-th remediation within the window (n ≥ 1): `base × 2^(n-1)`, capped at
/// [`BACKOFF_CAP_SECS`] and at the window.
///
/// `base` is [`BACKOFF_BASE_SECS`], shrunk to `window / (max_actions + 1)` when the window is short
/// (tests use windows of minutes), so the whole budget can still be used within one window.
pub fn backoff_delay(cfg: &ProbeConfig, n: u32) -> u64 {
    let window = secs(cfg.window).max(1);
    let base = BACKOFF_BASE_SECS
        .min(window / (u64::from(cfg.max_actions) + 1))
        .max(1);
    let doublings = n.saturating_sub(1).min(32);
    base.saturating_mul(1u64 << doublings)
        .min(BACKOFF_CAP_SECS)
        .min(window)
}

/// What the prober knows about the world this round, beyond the instance's own record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gates {
    /// Some resolver source produced an accepted address this round (dynwall itself is online).
    pub connectivity_ok: bool,
    /// The firewall protecting this instance is confirmed in sync with the current address
    /// (a stale rule would block dynwall's own probes).
    pub firewall_in_sync: bool,
    /// Power state from this round's instance list; `None` = API error or not listed: unknown,
    /// never "down".
    pub api_state: Option<PowerState>,
    /// At least two instances were probed this round and more than half of them look down.
    pub fleet_down_fraction_exceeded: bool,
    /// Another instance's remediation is in flight (one at a time, A.2 rule 15).
    pub other_remediation_in_flight: bool,
    /// `--dry-run`: decide, log, but take no power action.
    pub dry_run: bool,
}

/// The verdict for one instance this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The last probe succeeded.
    Healthy,
    /// Some probes failed, fewer than `failures` in a row.
    Failing { count: u32 },
    /// Down (or unknown), but something says not to act.
    Hold(HoldReason),
    /// Down and every gate is open: start a stop…start sequence.
    Remediate,
    /// Down and the budget is spent: an operator should look.
    GivenUp,
    /// A remediation could not finish within its deadline: an operator should look.
    NeedsOperator,
    /// A remediation is in flight; it continues whatever the gates say.
    InProgress,
}

/// Why a down (or unknown) instance is not remediated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldReason {
    /// Just started: failures do not count yet.
    Grace,
    /// No resolver source produced an accepted address: the problem may be ours.
    ConnectivityInDoubt,
    /// The firewall is not confirmed in sync: a stale rule may be what blocks the probe.
    FirewallNotInSync,
    /// The provider's power state is unknown (API error, or the instance is not listed).
    ApiUnknown,
    /// The provider reports another state: stopped on purpose, or a transition to let finish.
    NotRunning(PowerState),
    /// More than half the probed instances look down: an observer problem.
    FleetDown,
    /// A remediation in this incident could not complete; waiting for a success or a reset.
    AlreadyActed,
    /// Too soon after the previous remediation of this instance.
    Backoff { until: u64 },
    /// Another instance is being remediated.
    OneAtATime,
    /// `enabled = false`.
    Disabled,
    /// `--dry-run`: this is where dynwall would act.
    DryRun,
    /// No probe target: no `address` configured and the API reported no IP.
    NoAddress,
    /// Checked again right before acting, the sources do not agree on an address.
    AddressUnsettled(String),
    /// Checked again right before acting, the address is not the one the firewall was synced
    /// to: the firewall is synced first.
    AddressChanged(String),
    /// Read again right before acting, a firewall does not hold the current address (changed by
    /// hand, or not written yet): the firewall is synced first.
    RuleNotConfirmed(String),
    /// The API's request budget is busy with other work; decided again next round.
    ApiBusy,
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldReason::Grace => f.write_str("in grace after a start"),
            HoldReason::ConnectivityInDoubt => {
                f.write_str("dynwall's own connectivity is in doubt (no IP source answered)")
            }
            HoldReason::FirewallNotInSync => {
                f.write_str("the firewall is not confirmed in sync with the current address")
            }
            HoldReason::ApiUnknown => f.write_str("the API did not report its power state"),
            HoldReason::NotRunning(s) => write!(f, "the API reports it {s}"),
            HoldReason::FleetDown => f.write_str("more than half the instances look down"),
            HoldReason::AlreadyActed => {
                f.write_str("already remediated in this incident; waiting for a success or a reset")
            }
            HoldReason::Backoff { until } => write!(
                f,
                "backing off until {}",
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(*until)
                )
            ),
            HoldReason::OneAtATime => f.write_str("another instance is being remediated"),
            HoldReason::Disabled => f.write_str("remediation is disabled for it"),
            HoldReason::DryRun => f.write_str("dry run"),
            HoldReason::NoAddress => f.write_str("no address to probe"),
            HoldReason::AddressUnsettled(why) => {
                write!(f, "the public address is not settled ({why})")
            }
            HoldReason::AddressChanged(what) => {
                write!(
                    f,
                    "the public address changed ({what}); syncing the firewall first"
                )
            }
            HoldReason::RuleNotConfirmed(what) => write!(f, "{what}; syncing it first"),
            HoldReason::ApiBusy => f.write_str("the API budget is busy; deciding next round"),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Healthy => f.write_str("healthy"),
            Decision::Failing { count } => write!(f, "failing ({count} in a row)"),
            Decision::Hold(r) => write!(f, "holding: {r}"),
            Decision::Remediate => f.write_str("remediate"),
            Decision::GivenUp => f.write_str("given up"),
            Decision::NeedsOperator => f.write_str("needs an operator"),
            Decision::InProgress => f.write_str("remediation in progress"),
        }
    }
}

/// Decides what to do about one instance, from its record and this round's gates.
///
/// Order matters and is part of the contract:
/// 1. an in-flight remediation always continues ([`Decision::InProgress`]);
/// 2. `enabled = false` holds; a failure inside grace holds;
/// 3. fewer than `failures` consecutive failures is [`Decision::Healthy`] / [`Decision::Failing`];
/// 4. for a down instance the observer gates come first (connectivity, firewall, API state, fleet
///    breaker) — when they are closed "down" cannot be trusted, so not even "given up" is claimed;
/// 5. then the instance's own limits: needs an operator, given up, already acted in this
///    incident, budget spent
///    (⇒ [`Decision::GivenUp`]; the caller sets `given_up` and logs it loudly), backoff, one at a
///    time;
/// 6. dry run holds where dynwall would act; otherwise [`Decision::Remediate`].
pub fn decide(rec: &InstanceRecord, cfg: &ProbeConfig, gates: &Gates, now: u64) -> Decision {
    use HoldReason as H;
    if rec.remediation.is_some() {
        return Decision::InProgress;
    }
    if !cfg.enabled {
        return Decision::Hold(H::Disabled);
    }
    if rec.in_grace(now) && rec.last_probe_ok() == Some(false) {
        return Decision::Hold(H::Grace);
    }
    if rec.consecutive_failures < cfg.failures.max(1) {
        return match rec.consecutive_failures {
            0 => Decision::Healthy,
            count => Decision::Failing { count },
        };
    }
    if !gates.connectivity_ok {
        return Decision::Hold(H::ConnectivityInDoubt);
    }
    if !gates.firewall_in_sync {
        return Decision::Hold(H::FirewallNotInSync);
    }
    match &gates.api_state {
        None => return Decision::Hold(H::ApiUnknown),
        Some(PowerState::Running) => {}
        Some(other) => return Decision::Hold(H::NotRunning(other.clone())),
    }
    if gates.fleet_down_fraction_exceeded {
        return Decision::Hold(H::FleetDown);
    }
    if rec.needs_operator.is_some() {
        return Decision::NeedsOperator;
    }
    if rec.given_up {
        return Decision::GivenUp;
    }
    if rec.incident_acted {
        return Decision::Hold(H::AlreadyActed);
    }
    if rec.actions_in_window(cfg, now) >= cfg.max_actions {
        return Decision::GivenUp;
    }
    if let Some(until) = rec.backoff_until.filter(|&u| now < u) {
        return Decision::Hold(H::Backoff { until });
    }
    if gates.other_remediation_in_flight {
        return Decision::Hold(H::OneAtATime);
    }
    if gates.dry_run {
        return Decision::Hold(H::DryRun);
    }
    Decision::Remediate
}

/// Whether a round must know an instance's power state (a `getinstancelist` call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ListNeed {
    /// Not for this instance.
    No,
    /// Eventually: an instance held because it is not running is looked at again slowly, so a
    /// start by its owner is noticed.
    Slow,
    /// This round: a decision could act on it.
    Now,
}

/// What a down (or unknown) instance needs from the API this round, given the gates known
/// without it. Pure. A healthy instance needs nothing; one the API last reported not running is
/// looked at again slowly; one whose decision could reach [`Decision::Remediate`] if the API
/// reported it running needs the list now; the rest (in grace, given up, backing off, held by
/// an observer gate) cost nothing.
pub fn list_need(rec: &InstanceRecord, cfg: &ProbeConfig, gates: &Gates, now: u64) -> ListNeed {
    if rec.remediation.is_some() {
        return ListNeed::Now;
    }
    if rec.consecutive_failures == 0 && rec.last_probe_ok() != Some(false) {
        return ListNeed::No;
    }
    if rec
        .last_api_state
        .as_ref()
        .is_some_and(|s| *s != PowerState::Running)
    {
        // Stopped on purpose (or busy): looked at again slowly, so a start is noticed.
        return ListNeed::Slow;
    }
    // A dry run asks too: it shows where dynwall would act.
    let running = Gates {
        api_state: Some(PowerState::Running),
        dry_run: false,
        ..gates.clone()
    };
    if decide(rec, cfg, &running, now) == Decision::Remediate {
        ListNeed::Now
    } else {
        ListNeed::No
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
