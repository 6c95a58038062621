//! What dynwall remembers about each probed instance: the persisted records, without decisions.
//!
//! Times are seconds on the process clock ([`crate::clock`]) in memory and wall seconds on disk;
//! missing fields (an older state file) take their defaults.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::shift;
use crate::config::ProbeConfig;
use crate::provider::PowerState;

/// Whole seconds of a duration, rounded up, so a sub-second config value never becomes "no wait".
pub fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The rung of the ladder a remediation is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Graceful stop; `since` = when the stop was accepted (or the step entered, until then).
    Stopping { since: u64 },
    /// The ladder's force step after `stop_timeout` (Indigo `forcestop`, Nova `reboot HARD`);
    /// `since` as above.
    ForceStopping { since: u64 },
    /// Start; `since` as above.
    Starting { since: u64 },
}

impl Step {
    /// When the step's request was accepted (or the step entered, until then).
    pub fn since(self) -> u64 {
        match self {
            Step::Stopping { since } | Step::ForceStopping { since } | Step::Starting { since } => {
                since
            }
        }
    }

    /// The same step, timed from `t`.
    pub fn at(self, t: u64) -> Step {
        match self {
            Step::Stopping { .. } => Step::Stopping { since: t },
            Step::ForceStopping { .. } => Step::ForceStopping { since: t },
            Step::Starting { .. } => Step::Starting { since: t },
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Stopping { .. } => "stopping",
            Step::ForceStopping { .. } => "forcing",
            Step::Starting { .. } => "starting",
        })
    }
}

/// A stop…start sequence in flight (persisted in the instance's record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remediation {
    /// When the remediation began (also its entry in the budget).
    pub started_at: u64,
    pub step: Step,
    /// The provider accepted this step's request. `false` after a crash or an API error between
    /// persisting the step and the answer: the request is (re-)sent. Once `true` the request is
    /// never sent again for this step (a start only after `start_timeout`, as a new attempt).
    #[serde(default)]
    pub issued: bool,
}

/// A soft step (a saved Salt job) in flight, persisted before the job is asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftStep {
    /// When the step began: it ends `salt_timeout` later at the latest, crash or not.
    pub started_at: u64,
    /// The saved job's uuid.
    pub job: String,
    /// The run's id once the server accepted the job; `None` until then (after a crash before
    /// the answer, whether the job runs is unknown: it is not asked for again).
    #[serde(default)]
    pub jid: Option<String>,
}

/// How the last soft step ended (shown by `status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftOutcome {
    /// When it ended.
    pub at: u64,
    pub job: String,
    #[serde(default)]
    pub jid: Option<String>,
    /// The instance answered its probe afterwards: no power action was needed.
    pub cured: bool,
    /// Why it did not cure the instance (empty when it did).
    #[serde(default)]
    pub detail: String,
}

/// What dynwall remembers about one probed instance, persisted in the state file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceRecord {
    /// Failed probes in a row that counted (failures inside grace do not).
    pub consecutive_failures: u32,
    pub last_probe_at: Option<u64>,
    pub last_ok_at: Option<u64>,
    /// Why the last failed probe (or remediation) failed.
    pub last_error: Option<String>,
    /// Until then probe failures do not count; ends early on the first success.
    pub grace_until: Option<u64>,
    /// Start times of remediations, for the rolling `window` budget (one stop…start is one entry).
    pub actions: Vec<u64>,
    /// No new remediation of this instance before then.
    pub backoff_until: Option<u64>,
    /// The budget was spent while the instance was down: no more actions until it answers a probe
    /// again or the operator resets it.
    pub given_up: bool,
    /// A remediation was already taken in this incident and could not complete; a new one waits for
    /// a successful probe (the end of the incident) or an operator reset.
    pub incident_acted: bool,
    /// The power state the provider reported last (a change to `Running` starts a grace period).
    pub last_api_state: Option<PowerState>,
    /// The stop…start sequence in flight, if any.
    pub remediation: Option<Remediation>,
    /// Why dynwall last held off acting on this instance while it was down (logged once, shown
    /// by `status`); cleared when it acts or the instance recovers.
    pub last_hold: Option<String>,
    /// A remediation that could not finish within its overall deadline: an operator should look
    /// (shown by `status`, cleared by `dynwall reset`). No new remediation until then.
    pub needs_operator: Option<String>,
    /// The soft step in flight, if any.
    pub soft: Option<SoftStep>,
    /// A soft step was tried in this incident (at most one per incident); cleared when the
    /// instance answers a probe again or the operator resets it.
    pub soft_tried: bool,
    /// How the last soft step ended.
    pub last_soft: Option<SoftOutcome>,
}

impl InstanceRecord {
    /// True while probe failures do not count.
    pub fn in_grace(&self, now: u64) -> bool {
        self.grace_until.is_some_and(|g| now < g)
    }

    /// `Some(true)` when the most recent probe succeeded, `None` before the first probe.
    pub fn last_probe_ok(&self) -> Option<bool> {
        self.last_probe_at.map(|p| self.last_ok_at == Some(p))
    }

    /// Remediations started within the rolling window ending at `now`.
    pub fn actions_in_window(&self, cfg: &ProbeConfig, now: u64) -> u32 {
        let window = secs(cfg.window);
        let n = self
            .actions
            .iter()
            .filter(|&&t| t.saturating_add(window) > now)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The same record with every time moved by `delta` seconds (process ↔ wall time).
    pub fn shifted(&self, delta: i128) -> InstanceRecord {
        let s = |t: u64| shift(t, delta);
        let mut r = self.clone();
        r.last_probe_at = r.last_probe_at.map(s);
        r.last_ok_at = r.last_ok_at.map(s);
        r.grace_until = r.grace_until.map(s);
        r.backoff_until = r.backoff_until.map(s);
        for t in &mut r.actions {
            *t = s(*t);
        }
        if let Some(rem) = r.remediation.as_mut() {
            rem.started_at = s(rem.started_at);
            rem.step = rem.step.at(s(rem.step.since()));
        }
        if let Some(soft) = r.soft.as_mut() {
            soft.started_at = s(soft.started_at);
        }
        if let Some(o) = r.last_soft.as_mut() {
            o.at = s(o.at);
        }
        r
    }

    /// Clamps times that lie in the future (a clock stepped back between runs): events to
    /// `now`, deadlines to `now` plus the longest they can be (`grace`, `backoff_cap`).
    pub fn clamp(&mut self, now: u64, grace: Duration, backoff_cap: u64) {
        let event = |t: &mut u64| *t = (*t).min(now);
        if let Some(t) = self.last_probe_at.as_mut() {
            event(t);
        }
        if let Some(t) = self.last_ok_at.as_mut() {
            event(t);
        }
        for t in &mut self.actions {
            event(t);
        }
        if let Some(rem) = self.remediation.as_mut() {
            event(&mut rem.started_at);
            rem.step = rem.step.at(rem.step.since().min(now));
        }
        if let Some(soft) = self.soft.as_mut() {
            event(&mut soft.started_at);
        }
        if let Some(o) = self.last_soft.as_mut() {
            event(&mut o.at);
        }
        if let Some(g) = self.grace_until.as_mut() {
            *g = (*g).min(now.saturating_add(secs(grace)));
        }
        if let Some(b) = self.backoff_until.as_mut() {
            *b = (*b).min(now.saturating_add(backoff_cap));
        }
    }

    /// The record without what changes on every probe (times, counts, the last error): what
    /// must reach the disk at once when it changes. The rest is saved with it, or at shutdown.
    pub fn durable(&self) -> InstanceRecord {
        InstanceRecord {
            consecutive_failures: 0,
            last_probe_at: None,
            last_ok_at: None,
            last_error: None,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_a_json_round_trip_and_old_files_fill_defaults() {
        let rec = InstanceRecord {
            consecutive_failures: 3,
            remediation: Some(Remediation {
                started_at: 7,
                step: Step::ForceStopping { since: 9 },
                issued: true,
            }),
            last_api_state: Some(PowerState::Other("x".into())),
            needs_operator: Some("stuck".into()),
            ..InstanceRecord::default()
        };
        let text = serde_json::to_string(&rec).unwrap();
        assert!(text.contains(r#""step":"force_stopping""#), "{text}");
        let back: InstanceRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, rec);
        let old: InstanceRecord = serde_json::from_str(r#"{"consecutive_failures":2}"#).unwrap();
        assert_eq!(old.consecutive_failures, 2);
        assert!(old.actions.is_empty());
        let old: Remediation =
            serde_json::from_str(r#"{"started_at":1,"step":{"step":"stopping","since":2}}"#)
                .unwrap();
        assert!(!old.issued);
    }

    #[test]
    fn times_shift_and_future_times_are_clamped() {
        let mut rec = InstanceRecord {
            last_probe_at: Some(5_000),
            last_ok_at: Some(4_000),
            grace_until: Some(9_000),
            backoff_until: Some(99_000),
            actions: vec![4_500, 6_000],
            remediation: Some(Remediation {
                started_at: 6_000,
                step: Step::Starting { since: 6_100 },
                issued: true,
            }),
            ..InstanceRecord::default()
        };
        let moved = rec.shifted(-1_000);
        assert_eq!(moved.last_probe_at, Some(4_000));
        assert_eq!(moved.remediation.as_ref().unwrap().step.since(), 5_100);
        assert_eq!(moved.shifted(1_000), rec);
        rec.clamp(4_800, Duration::from_secs(300), 600);
        assert_eq!(rec.last_probe_at, Some(4_800));
        assert_eq!(rec.last_ok_at, Some(4_000));
        assert_eq!(rec.actions, vec![4_500, 4_800]);
        assert_eq!(rec.grace_until, Some(5_100));
        assert_eq!(rec.backoff_until, Some(5_400));
        let rem = rec.remediation.unwrap();
        assert_eq!((rem.started_at, rem.step.since()), (4_800, 4_800));
    }
}
