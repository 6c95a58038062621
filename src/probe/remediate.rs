//! Remediation as a persisted state machine: stop → (forcestop) → start, resumable after a crash.
//!
//! [`advance`] is pure: from the persisted [`Remediation`] and this round's power state it says
//! what comes next. [`drive`] is the executor: it writes each step to disk *before* asking the
//! provider to take it, so a process that dies between `stop` and `start` resumes by starting the
//! instance (SPEC invariant 7). A remediation, once begun, runs to its end whatever the gates,
//! the budget or `enabled` say: an instance dynwall stopped is always started again.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::decide::{backoff_delay, secs, InstanceRecord};
use crate::config::ProbeConfig;
use crate::provider::{InstanceId, Power, PowerAction, PowerOutcome, PowerState};

/// The rung of the ladder a remediation is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Graceful stop; `since` = when the stop was accepted (or the step entered, until then).
    Stopping { since: u64 },
    /// Forced stop after `stop_timeout`; `since` as above.
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

    /// The same step, timed from `now`.
    fn at(self, now: u64) -> Step {
        match self {
            Step::Stopping { .. } => Step::Stopping { since: now },
            Step::ForceStopping { .. } => Step::ForceStopping { since: now },
            Step::Starting { .. } => Step::Starting { since: now },
        }
    }

    /// The power request this step makes.
    pub fn action(self) -> PowerAction {
        match self {
            Step::Stopping { .. } => PowerAction::Stop,
            Step::ForceStopping { .. } => PowerAction::ForceStop,
            Step::Starting { .. } => PowerAction::Start,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Stopping { .. } => "stopping",
            Step::ForceStopping { .. } => "force-stopping",
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
    /// persisting the step and the answer: the request is (re-)sent, which is idempotent because
    /// "already in that state" counts as progress.
    #[serde(default)]
    pub issued: bool,
}

/// What the executor does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send this power request (the step stays).
    Issue(PowerAction),
    /// Nothing to do this round.
    Wait,
    /// Move to this step (its request is sent next).
    Advance(Step),
    /// The instance is `Running` again: set grace, end the remediation.
    Done,
    /// The ladder could not finish; the instance is not stopped by us, so it may be let go.
    Failed(String),
}

/// The pure transition function of the ladder.
///
/// - Stopping: `Stopped` → start; request not yet accepted → send `stop`; `stop_timeout` past the
///   accepted stop → forcestop; else wait.
/// - ForceStopping: `Stopped` → start; not yet accepted → send `forcestop`; still `Running`
///   `stop_timeout` after the accepted forcestop → [`Next::Failed`]; else wait (a transitional
///   state may yet end in `Stopped`, which must then be started).
/// - Starting: `Running` → [`Next::Done`]; `Stopped` → send `start` (again, if a start did not take:
///   invariant 7 outranks `start_timeout`); otherwise wait. Past `start_timeout` the remediation is
///   [`overdue`] and reported so, but never abandoned: giving up here could leave stopped an
///   instance dynwall stopped.
pub fn advance(rem: &Remediation, power: &PowerState, cfg: &ProbeConfig, now: u64) -> Next {
    let elapsed = now.saturating_sub(rem.step.since());
    match rem.step {
        Step::Stopping { .. } => match power {
            PowerState::Stopped => Next::Advance(Step::Starting { since: now }),
            _ if !rem.issued => Next::Issue(PowerAction::Stop),
            _ if elapsed >= secs(cfg.stop_timeout) => {
                Next::Advance(Step::ForceStopping { since: now })
            }
            _ => Next::Wait,
        },
        Step::ForceStopping { .. } => match power {
            PowerState::Stopped => Next::Advance(Step::Starting { since: now }),
            _ if !rem.issued => Next::Issue(PowerAction::ForceStop),
            PowerState::Running if elapsed >= secs(cfg.stop_timeout) => Next::Failed(format!(
                "still Running {} after forcestop",
                humantime::format_duration(std::time::Duration::from_secs(elapsed))
            )),
            _ => Next::Wait,
        },
        Step::Starting { .. } => match power {
            PowerState::Running => Next::Done,
            PowerState::Stopped => Next::Issue(PowerAction::Start),
            _ if !rem.issued => Next::Issue(PowerAction::Start),
            _ => Next::Wait,
        },
    }
}

/// True when the current step's request was accepted longer ago than its timeout allows.
pub fn overdue(rem: &Remediation, cfg: &ProbeConfig, now: u64) -> bool {
    let limit = match rem.step {
        Step::Stopping { .. } | Step::ForceStopping { .. } => cfg.stop_timeout,
        Step::Starting { .. } => cfg.start_timeout,
    };
    rem.issued && now.saturating_sub(rem.step.since()) >= secs(limit)
}

/// Begins a remediation: counts it against the budget, marks the incident, enters `Stopping`.
///
/// Nothing is sent yet; [`drive`] persists the record and then sends `stop`.
pub fn begin(rec: &mut InstanceRecord, cfg: &ProbeConfig, now: u64) {
    let window = secs(cfg.window);
    rec.actions.retain(|&t| t.saturating_add(window) > now);
    rec.actions.push(now);
    rec.incident_acted = true;
    rec.remediation = Some(Remediation {
        started_at: now,
        step: Step::Stopping { since: now },
        issued: false,
    });
}

/// Ends a remediation. Success starts grace (unless a probe already succeeded this round) and a
/// new observation (the incident is over: a restart is judged afresh); failure leaves `incident_acted` set so the instance waits for a
/// success or an operator reset. Both start the backoff.
fn finish(rec: &mut InstanceRecord, result: Result<(), String>, cfg: &ProbeConfig, now: u64) {
    rec.remediation = None;
    let n = rec.actions_in_window(cfg, now).max(1);
    rec.backoff_until = Some(now.saturating_add(backoff_delay(cfg, n)));
    match result {
        Ok(()) => {
            // Grace ends on the first success; one may already have come in this very round.
            rec.grace_until = match rec.last_ok_at {
                Some(ok) if ok >= now => None,
                _ => Some(now.saturating_add(secs(cfg.grace))),
            };
            rec.consecutive_failures = 0;
            rec.incident_acted = false;
        }
        Err(reason) => rec.last_error = Some(format!("remediation failed: {reason}")),
    }
}

/// Where a remediation stands after [`drive`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriveOutcome {
    /// Still in flight (waiting for the provider, or retrying after an API error).
    InProgress,
    /// The instance is `Running` again; grace has begun.
    Done,
    /// The ladder could not finish (see [`Next::Failed`]).
    Failed(String),
}

/// What [`drive`] did this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveReport {
    /// Power requests the provider accepted, in order.
    pub issued: Vec<PowerAction>,
    pub outcome: DriveOutcome,
    /// A power request failed; it is sent again next round.
    pub api_error: Option<String>,
    /// The current step's request was accepted longer ago than its timeout.
    pub overdue: bool,
}

/// Upper bound on steps taken in one call (advance, then issue: at most two are ever needed).
const MAX_STEPS_PER_ROUND: usize = 4;

/// Executes the remediation in `rec` as far as this round's power `state` allows.
///
/// Contract:
/// - `state` is the instance's power state from this round's instance list; `None` (API error,
///   not listed) waits for the next round.
/// - Before every power request the record (with the step about to be taken) goes through
///   `persist`; if that fails, nothing is sent and the error is returned. After an accepted
///   request the record is persisted again with `issued = true`.
/// - At most one power request is sent per call: the state it was decided on is then stale.
/// - A provider error is logged and reported in [`DriveReport::api_error`]; the step stays
///   un-issued, so the same request is sent next round. A remediation is never abandoned for an
///   API error.
/// - Does nothing when `rec` has no remediation.
pub async fn drive<E>(
    power: &dyn Power,
    id: &InstanceId,
    rec: &mut InstanceRecord,
    state: Option<&PowerState>,
    cfg: &ProbeConfig,
    now: u64,
    persist: &mut (dyn FnMut(&InstanceRecord) -> Result<(), E> + Send),
) -> Result<DriveReport, E> {
    let mut report = DriveReport {
        issued: Vec::new(),
        outcome: DriveOutcome::InProgress,
        api_error: None,
        overdue: false,
    };
    for _ in 0..MAX_STEPS_PER_ROUND {
        let Some(rem) = rec.remediation.clone() else {
            break;
        };
        let Some(state) = state else {
            tracing::warn!(
                instance = %id,
                step = %rem.step,
                "instance {id}: power state unknown this round; remediation ({}) resumes next round",
                rem.step
            );
            break;
        };
        match advance(&rem, state, cfg, now) {
            Next::Wait => {
                report.overdue = overdue(&rem, cfg, now);
                if report.overdue {
                    tracing::warn!(
                        instance = %id,
                        step = %rem.step,
                        power = %state,
                        "instance {id}: {} for {}s and the API still reports {state}; \
                         still waiting (dynwall finishes what it started)",
                        rem.step,
                        now.saturating_sub(rem.step.since())
                    );
                }
                break;
            }
            Next::Advance(step) => {
                match step {
                    Step::Starting { .. } => {
                        tracing::info!(instance = %id, "instance {id}: stopped; starting it");
                    }
                    Step::ForceStopping { .. } => tracing::warn!(
                        instance = %id,
                        power = %state,
                        "instance {id}: not stopped {}s after stop (API reports {state}); \
                         forcing it off",
                        now.saturating_sub(rem.step.since())
                    ),
                    Step::Stopping { .. } => {}
                }
                rec.remediation = Some(Remediation {
                    step,
                    issued: false,
                    ..rem
                });
            }
            Next::Issue(action) => {
                // The step is on disk before the provider hears of it (invariant 7).
                persist(rec)?;
                match power.power(id, action).await {
                    Ok(outcome) => {
                        if let Some(r) = rec.remediation.as_mut() {
                            if !r.issued {
                                r.step = r.step.at(now);
                            }
                            r.issued = true;
                        }
                        persist(rec)?;
                        report.issued.push(action);
                        tracing::debug!(
                            instance = %id,
                            %action,
                            already = outcome == PowerOutcome::AlreadyInState,
                            "instance {id}: {action} accepted"
                        );
                    }
                    Err(e) => {
                        if e.is_transient() {
                            tracing::warn!(instance = %id, %action, error = %e,
                                "instance {id}: {action} failed: {e}; retrying next round");
                        } else {
                            tracing::error!(instance = %id, %action, error = %e,
                                "instance {id}: {action} refused: {e}; retrying next round");
                        }
                        report.api_error = Some(e.to_string());
                    }
                }
                break;
            }
            Next::Done => {
                finish(rec, Ok(()), cfg, now);
                persist(rec)?;
                tracing::info!(
                    instance = %id,
                    took_secs = now.saturating_sub(rem.started_at),
                    "instance {id}: running again after {}s; grace {}",
                    now.saturating_sub(rem.started_at),
                    humantime::format_duration(cfg.grace)
                );
                report.outcome = DriveOutcome::Done;
                break;
            }
            Next::Failed(reason) => {
                finish(rec, Err(reason.clone()), cfg, now);
                persist(rec)?;
                tracing::error!(
                    instance = %id,
                    reason = %reason,
                    "instance {id}: remediation failed: {reason}; no further action until it \
                     answers a probe or the operator resets it"
                );
                report.outcome = DriveOutcome::Failed(reason);
                break;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::testkit::{cfg, FakePower, Script};
    use PowerState::{Running, Stopped};

    fn rem(step: Step, issued: bool) -> Remediation {
        Remediation {
            started_at: 1_000,
            step,
            issued,
        }
    }

    fn transitional() -> PowerState {
        PowerState::Other("Stopping".into())
    }

    #[test]
    fn advance_table() {
        let c = cfg(); // stop_timeout = start_timeout = 300 s
        let stopping = Step::Stopping { since: 1_000 };
        let forcing = Step::ForceStopping { since: 1_000 };
        let starting = Step::Starting { since: 1_000 };
        use Next::*;
        let table: Vec<(Step, bool, PowerState, u64, Next)> = vec![
            // Stopping
            (stopping, false, Running, 1_000, Issue(PowerAction::Stop)),
            (stopping, false, Running, 9_999, Issue(PowerAction::Stop)),
            (stopping, true, Running, 1_299, Wait),
            (stopping, true, transitional(), 1_100, Wait),
            (
                stopping,
                true,
                Running,
                1_300,
                Advance(Step::ForceStopping { since: 1_300 }),
            ),
            (
                stopping,
                true,
                transitional(),
                1_400,
                Advance(Step::ForceStopping { since: 1_400 }),
            ),
            (
                stopping,
                true,
                Stopped,
                1_010,
                Advance(Step::Starting { since: 1_010 }),
            ),
            (
                stopping,
                false,
                Stopped,
                1_010,
                Advance(Step::Starting { since: 1_010 }),
            ),
            // ForceStopping
            (
                forcing,
                false,
                Running,
                1_000,
                Issue(PowerAction::ForceStop),
            ),
            (forcing, true, Running, 1_299, Wait),
            (
                forcing,
                true,
                Stopped,
                1_050,
                Advance(Step::Starting { since: 1_050 }),
            ),
            (forcing, true, transitional(), 5_000, Wait),
            // Starting
            (starting, false, Stopped, 1_000, Issue(PowerAction::Start)),
            (starting, true, Stopped, 1_030, Issue(PowerAction::Start)),
            (starting, true, Stopped, 9_000, Issue(PowerAction::Start)),
            (starting, false, Running, 1_000, Done),
            (starting, true, Running, 1_030, Done),
            (starting, true, transitional(), 1_100, Wait),
            (starting, true, transitional(), 9_000, Wait),
            (
                starting,
                false,
                transitional(),
                1_100,
                Issue(PowerAction::Start),
            ),
        ];
        for (step, issued, power, now, want) in table {
            assert_eq!(
                advance(&rem(step, issued), &power, &c, now),
                want,
                "{step:?} issued={issued} {power:?} at {now}"
            );
        }
        let failed = advance(&rem(forcing, true), &Running, &c, 1_300);
        assert!(matches!(failed, Failed(r) if r.contains("still Running")));
    }

    #[test]
    fn overdue_only_counts_from_an_accepted_request() {
        let c = cfg();
        let starting = Step::Starting { since: 1_000 };
        assert!(!overdue(&rem(starting, true), &c, 1_299));
        assert!(overdue(&rem(starting, true), &c, 1_300));
        assert!(!overdue(&rem(starting, false), &c, 9_000));
    }

    #[test]
    fn steps_serialise_with_a_readable_tag() {
        let r = rem(Step::Starting { since: 5 }, true);
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""step":"starting""#), "{text}");
        assert_eq!(serde_json::from_str::<Remediation>(&text).unwrap(), r);
        let old: Remediation =
            serde_json::from_str(r#"{"started_at":1,"step":{"step":"stopping","since":2}}"#)
                .unwrap();
        assert!(!old.issued);
    }

    /// Everything drive() persisted, plus the power calls, in one ordered log.
    #[derive(Debug, PartialEq)]
    enum Event {
        Saved(Option<Step>, bool),
        Call(PowerAction),
    }

    #[tokio::test]
    async fn the_step_is_persisted_before_the_request_and_a_failed_write_sends_nothing() {
        let c = cfg();
        let id = c.instance.clone();
        let power = FakePower::new(&[(&id.0, Running)], Script::default());
        let mut rec = InstanceRecord::default();
        begin(&mut rec, &c, 1_000);
        let log = power.calls.clone();
        let mut events: Vec<Event> = Vec::new();
        let mut persist = |r: &InstanceRecord| -> Result<(), String> {
            for (_, a) in log.lock().unwrap().iter() {
                if !events.contains(&Event::Call(*a)) {
                    events.push(Event::Call(*a));
                }
            }
            let rem = r.remediation.as_ref();
            events.push(Event::Saved(
                rem.map(|m| m.step),
                rem.is_some_and(|m| m.issued),
            ));
            Ok(())
        };
        let rep = drive(
            &power,
            &id,
            &mut rec,
            Some(&Running),
            &c,
            1_000,
            &mut persist,
        )
        .await
        .unwrap();
        assert_eq!(rep.issued, vec![PowerAction::Stop]);
        let stopping = Some(Step::Stopping { since: 1_000 });
        assert_eq!(
            events,
            vec![
                Event::Saved(stopping, false),
                Event::Call(PowerAction::Stop),
                Event::Saved(stopping, true),
            ]
        );

        // A state write that fails stops everything before the provider is asked.
        let power = FakePower::new(&[(&id.0, Running)], Script::default());
        let mut rec = InstanceRecord::default();
        begin(&mut rec, &c, 1_000);
        let mut broken = |_: &InstanceRecord| -> Result<(), String> { Err("disk full".into()) };
        let err = drive(
            &power,
            &id,
            &mut rec,
            Some(&Running),
            &c,
            1_000,
            &mut broken,
        )
        .await;
        assert_eq!(err, Err("disk full".to_string()));
        assert!(power.calls().is_empty());
    }

    #[tokio::test]
    async fn an_api_error_keeps_the_step_and_the_request_is_sent_again_next_round() {
        let c = cfg();
        let id = c.instance.clone();
        let power = FakePower::new(
            &[(&id.0, Running)],
            Script {
                fail_calls: 1,
                ..Script::default()
            },
        );
        let mut rec = InstanceRecord::default();
        begin(&mut rec, &c, 1_000);
        let mut ok = |_: &InstanceRecord| -> Result<(), String> { Ok(()) };
        let rep = drive(&power, &id, &mut rec, Some(&Running), &c, 1_000, &mut ok)
            .await
            .unwrap();
        assert!(rep.api_error.is_some());
        assert!(rep.issued.is_empty());
        assert_eq!(
            rec.remediation.as_ref().map(|r| r.issued),
            Some(false),
            "not accepted: still to send"
        );
        // Accepted late: the stop timeout counts from the accepted request, not the first try.
        let rep = drive(&power, &id, &mut rec, Some(&Running), &c, 1_200, &mut ok)
            .await
            .unwrap();
        assert_eq!(rep.issued, vec![PowerAction::Stop]);
        assert_eq!(
            rec.remediation.as_ref().map(|r| r.step),
            Some(Step::Stopping { since: 1_200 })
        );
    }

    #[tokio::test]
    async fn unknown_power_state_waits_and_completion_sets_grace_and_backoff() {
        let c = cfg();
        let id = c.instance.clone();
        let power = FakePower::new(&[(&id.0, Running)], Script::default());
        let mut rec = InstanceRecord {
            remediation: Some(rem(Step::Starting { since: 1_000 }, true)),
            actions: vec![1_000],
            incident_acted: true,
            consecutive_failures: 7,
            ..InstanceRecord::default()
        };
        let mut ok = |_: &InstanceRecord| -> Result<(), String> { Ok(()) };
        let rep = drive(&power, &id, &mut rec, None, &c, 1_030, &mut ok)
            .await
            .unwrap();
        assert_eq!(rep.outcome, DriveOutcome::InProgress);
        assert!(rec.remediation.is_some());
        let rep = drive(&power, &id, &mut rec, Some(&Running), &c, 1_060, &mut ok)
            .await
            .unwrap();
        assert_eq!(rep.outcome, DriveOutcome::Done);
        assert!(power.calls().is_empty());
        assert_eq!(rec.remediation, None);
        assert_eq!(rec.grace_until, Some(1_360));
        assert_eq!(rec.backoff_until, Some(1_060 + 600));
        assert_eq!(rec.consecutive_failures, 0);
        assert!(!rec.incident_acted);
    }

    #[tokio::test]
    async fn a_forcestop_that_does_not_take_fails_and_leaves_the_incident_marked() {
        let c = cfg();
        let id = c.instance.clone();
        let power = FakePower::new(&[(&id.0, Running)], Script::default());
        let mut rec = InstanceRecord {
            actions: vec![1_000],
            incident_acted: true,
            remediation: Some(rem(Step::ForceStopping { since: 1_300 }, true)),
            ..InstanceRecord::default()
        };
        let mut ok = |_: &InstanceRecord| -> Result<(), String> { Ok(()) };
        let rep = drive(&power, &id, &mut rec, Some(&Running), &c, 1_600, &mut ok)
            .await
            .unwrap();
        assert!(matches!(rep.outcome, DriveOutcome::Failed(_)));
        assert_eq!(rec.remediation, None);
        assert!(rec.incident_acted);
        assert!(rec
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("remediation failed")));
        assert_eq!(rec.grace_until, None);
    }
}
