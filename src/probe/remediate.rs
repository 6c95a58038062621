//! Remediation as a persisted state machine: stop → force step → start, resumable after a crash.
//!
//! [`advance`] is pure: from the persisted [`Remediation`], this round's power state and the
//! cloud's [`Ladder`] it says what comes next. The engine executes it, writing each step to disk
//! (and each stop to the owed-start journal) *before* asking the provider to take it, so a
//! process that dies between `stop` and `start` resumes by starting the instance (SPEC invariant
//! 7). An accepted step is never sent again; a remediation that cannot finish within its overall
//! [`deadline`] ends with the instance marked "needs an operator".

use std::time::Duration;

use super::decide::backoff_delay;
use super::record::{secs, InstanceRecord};
pub use super::record::{Remediation, Step};
use crate::config::ProbeConfig;
use crate::provider::{Ladder, PowerAction, PowerState};

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
    /// The overall deadline passed: end it and ask for an operator.
    Stuck(String),
}

/// The longest a remediation may take from its start: twice the ladder's own timeouts (stop,
/// force, start), so a slow cloud is waited for and a stuck one is not polled forever.
pub fn deadline(cfg: &ProbeConfig) -> Duration {
    2 * (2 * cfg.stop_timeout + cfg.start_timeout)
}

/// The step a remediation begins with on `ladder`.
pub fn first_step(ladder: &Ladder, now: u64) -> Step {
    match ladder.stop {
        Some(_) => Step::Stopping { since: now },
        None => Step::ForceStopping { since: now },
    }
}

/// True while no request of this remediation was accepted yet.
pub fn nothing_accepted(rem: &Remediation, ladder: &Ladder) -> bool {
    !rem.issued
        && std::mem::discriminant(&rem.step) == std::mem::discriminant(&first_step(ladder, 0))
}

/// The pure transition function of the ladder.
///
/// - Stopping: `Stopped` → start; request not yet accepted → send the stop (unless a task is in
///   flight); `stop_timeout` past the accepted stop → the force step; else wait.
/// - ForceStopping: `Stopped` → start; not yet accepted → send the force step, also while a task
///   is in flight (it exists to cut a hanging stop short; a provider that refuses it then
///   answers busy, and it is sent again at the next poll); a force step that
///   leaves the machine running (hard reboot) is done when it runs again; a forced stop still
///   `Running` `stop_timeout` after it was accepted → [`Next::Failed`]; else wait (a
///   transitional state may yet end in `Stopped`, which must then be started).
/// - Starting: `Running` → [`Next::Done`]; `Stopped` → send the start if not accepted yet, or
///   again once `start_timeout` passed since it was (a new attempt: invariant 7 outranks the
///   timeout); otherwise wait.
/// - Waiting past [`deadline`] → [`Next::Stuck`] (a stopped instance is still started).
pub fn advance(
    rem: &Remediation,
    power: &PowerState,
    ladder: &Ladder,
    cfg: &ProbeConfig,
    now: u64,
) -> Next {
    let elapsed = now.saturating_sub(rem.step.since());
    let busy = matches!(power, PowerState::Busy(_));
    let next = match rem.step {
        Step::Stopping { .. } => match power {
            PowerState::Stopped => Next::Advance(Step::Starting { since: now }),
            _ if !rem.issued && !busy => Next::Issue(ladder.stop.unwrap_or(ladder.force)),
            _ if rem.issued && elapsed >= secs(cfg.stop_timeout) => {
                Next::Advance(Step::ForceStopping { since: now })
            }
            _ => Next::Wait,
        },
        Step::ForceStopping { .. } => match power {
            PowerState::Stopped => Next::Advance(Step::Starting { since: now }),
            _ if !rem.issued => Next::Issue(ladder.force),
            _ if busy => Next::Wait,
            PowerState::Running if ladder.force_leaves_running => Next::Done,
            PowerState::Running if elapsed >= secs(cfg.stop_timeout) => Next::Failed(format!(
                "still Running {} after {}",
                humantime::format_duration(std::time::Duration::from_secs(elapsed)),
                ladder.force
            )),
            _ => Next::Wait,
        },
        Step::Starting { .. } => match power {
            PowerState::Running => Next::Done,
            PowerState::Stopped if !rem.issued => Next::Issue(ladder.start),
            PowerState::Stopped if elapsed >= secs(cfg.start_timeout) => Next::Issue(ladder.start),
            _ if !rem.issued && !busy => Next::Issue(ladder.start),
            _ => Next::Wait,
        },
    };
    // Waiting past the deadline ends it; an instance dynwall stopped is still started (the
    // transitions above come first), whenever the API shows it stopped.
    if next == Next::Wait && now.saturating_sub(rem.started_at) >= secs(deadline(cfg)) {
        return Next::Stuck(format!(
            "the remediation did not finish within {} ({} for {}s, the API reports {power})",
            humantime::format_duration(deadline(cfg)),
            rem.step,
            elapsed
        ));
    }
    next
}

/// True when the current step's request was accepted longer ago than its timeout allows.
pub fn overdue(rem: &Remediation, cfg: &ProbeConfig, now: u64) -> bool {
    let limit = match rem.step {
        Step::Stopping { .. } | Step::ForceStopping { .. } => cfg.stop_timeout,
        Step::Starting { .. } => cfg.start_timeout,
    };
    rem.issued && now.saturating_sub(rem.step.since()) >= secs(limit)
}

/// Begins a remediation: counts it against the budget, marks the incident, enters the first
/// step of `ladder`. Nothing is sent yet: the executor persists the record, then sends.
pub fn begin(rec: &mut InstanceRecord, cfg: &ProbeConfig, ladder: &Ladder, now: u64) {
    let window = secs(cfg.window);
    rec.actions.retain(|&t| t.saturating_add(window) > now);
    rec.actions.push(now);
    rec.incident_acted = true;
    rec.last_hold = None;
    rec.remediation = Some(Remediation {
        started_at: now,
        step: first_step(ladder, now),
        issued: false,
    });
}

/// Cancels a remediation none of whose requests was accepted (the instance answered a probe
/// meanwhile): it never happened, so its budget entry is refunded.
pub fn cancel(rec: &mut InstanceRecord) {
    if let Some(rem) = rec.remediation.take() {
        if let Some(i) = rec.actions.iter().rposition(|&t| t == rem.started_at) {
            rec.actions.remove(i);
        }
        rec.incident_acted = false;
    }
}

/// How a remediation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Running again.
    Done,
    /// The ladder could not finish; waits for a success or an operator reset.
    Failed(String),
    /// Past its deadline: an operator should look.
    Stuck(String),
}

/// Ends a remediation. Success starts grace (unless a probe already succeeded this round) and a
/// new observation (the incident is over); failure leaves `incident_acted` set so the instance
/// waits for a success or an operator reset; stuck marks it for an operator. All start the
/// backoff.
pub fn finish(rec: &mut InstanceRecord, outcome: Outcome, cfg: &ProbeConfig, now: u64) {
    rec.remediation = None;
    let n = rec.actions_in_window(cfg, now).max(1);
    rec.backoff_until = Some(now.saturating_add(backoff_delay(cfg, n)));
    match outcome {
        Outcome::Done => {
            // Grace ends on the first success; one may already have come in this very round.
            rec.grace_until = match rec.last_ok_at {
                Some(ok) if ok >= now => None,
                _ => Some(now.saturating_add(secs(cfg.grace))),
            };
            rec.consecutive_failures = 0;
            rec.incident_acted = false;
        }
        Outcome::Failed(reason) => rec.last_error = Some(format!("remediation failed: {reason}")),
        Outcome::Stuck(reason) => {
            rec.last_error = Some(format!("remediation abandoned: {reason}"));
            rec.needs_operator = Some(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::testkit::cfg;
    use PowerState::{Running, Stopped};

    const LADDER: Ladder = Ladder::STOP_FORCESTOP_START;
    const REBOOT: Ladder = Ladder {
        stop: None,
        force: PowerAction::Reboot,
        force_leaves_running: true,
        start: PowerAction::Start,
    };

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

    fn busy() -> PowerState {
        PowerState::Busy("powering-off".into())
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
            (stopping, false, Running, 1_999, Issue(PowerAction::Stop)),
            (stopping, false, busy(), 1_000, Wait),
            (stopping, true, Running, 1_299, Wait),
            (stopping, true, Running, 1_100, Wait),
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
                busy(),
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
            // The force step cuts a task in flight short (Nova refuses it until the task ends:
            // asked again each poll); once accepted, a busy machine is waited for.
            (forcing, false, busy(), 1_000, Issue(PowerAction::ForceStop)),
            (forcing, true, busy(), 1_100, Wait),
            (forcing, true, Running, 1_299, Wait),
            (
                forcing,
                true,
                Stopped,
                1_050,
                Advance(Step::Starting { since: 1_050 }),
            ),
            (forcing, true, transitional(), 2_000, Wait),
            // Starting: an accepted start is not sent again before start_timeout
            (starting, false, Stopped, 1_000, Issue(PowerAction::Start)),
            (starting, true, Stopped, 1_020, Wait),
            (starting, true, Stopped, 1_299, Wait),
            (starting, true, Stopped, 1_300, Issue(PowerAction::Start)),
            (starting, false, Running, 1_000, Done),
            (starting, true, Running, 1_030, Done),
            (starting, true, transitional(), 1_100, Wait),
            (starting, false, busy(), 1_100, Wait),
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
                advance(&rem(step, issued), &power, &LADDER, &c, now),
                want,
                "{step:?} issued={issued} {power:?} at {now}"
            );
        }
        let failed = advance(&rem(forcing, true), &Running, &LADDER, &c, 1_300);
        assert!(matches!(failed, Failed(r) if r.contains("still Running")));
    }

    #[test]
    fn a_hard_reboot_ladder_is_one_step_that_ends_running() {
        let c = cfg();
        let mut rec = InstanceRecord::default();
        begin(&mut rec, &c, &REBOOT, 1_000);
        let r = rec.remediation.clone().unwrap();
        assert_eq!(r.step, Step::ForceStopping { since: 1_000 });
        assert!(nothing_accepted(&r, &REBOOT));
        assert_eq!(
            advance(&r, &Running, &REBOOT, &c, 1_000),
            Next::Issue(PowerAction::Reboot)
        );
        let issued = Remediation { issued: true, ..r };
        assert!(!nothing_accepted(&issued, &REBOOT));
        assert_eq!(advance(&issued, &busy(), &REBOOT, &c, 1_020), Next::Wait);
        assert_eq!(advance(&issued, &Running, &REBOOT, &c, 1_040), Next::Done);
    }

    #[test]
    fn past_the_overall_deadline_a_remediation_is_stuck_unless_it_is_done() {
        let c = cfg(); // deadline: 2 × (300 + 300 + 300) = 1800 s
        assert_eq!(deadline(&c), Duration::from_secs(1_800));
        let starting = rem(Step::Starting { since: 2_000 }, true);
        assert!(matches!(
            advance(&starting, &transitional(), &LADDER, &c, 2_800),
            Next::Stuck(_)
        ));
        assert_eq!(advance(&starting, &Running, &LADDER, &c, 2_800), Next::Done);
        assert_eq!(
            advance(&starting, &transitional(), &LADDER, &c, 2_799),
            Next::Wait
        );
    }

    #[test]
    fn a_remediation_nothing_accepted_of_is_cancelled_and_refunded() {
        let c = cfg();
        let mut rec = InstanceRecord::default();
        begin(&mut rec, &c, &LADDER, 1_000);
        assert!(nothing_accepted(rec.remediation.as_ref().unwrap(), &LADDER));
        cancel(&mut rec);
        assert!(rec.remediation.is_none());
        assert!(rec.actions.is_empty());
        assert!(!rec.incident_acted);
        // After a stop was accepted, the force step counts as something accepted.
        let forced = rem(Step::ForceStopping { since: 1_300 }, false);
        assert!(!nothing_accepted(&forced, &LADDER));
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
    fn finishing_sets_grace_backoff_or_the_operator_mark() {
        let c = cfg();
        let mut rec = InstanceRecord {
            remediation: Some(rem(Step::Starting { since: 1_000 }, true)),
            actions: vec![1_000],
            incident_acted: true,
            consecutive_failures: 7,
            ..InstanceRecord::default()
        };
        finish(&mut rec, Outcome::Done, &c, 1_060);
        assert_eq!(rec.remediation, None);
        assert_eq!(rec.grace_until, Some(1_360));
        assert_eq!(rec.backoff_until, Some(1_060 + 600));
        assert_eq!(rec.consecutive_failures, 0);
        assert!(!rec.incident_acted);
        let mut rec = InstanceRecord {
            remediation: Some(rem(Step::Starting { since: 1_000 }, true)),
            actions: vec![1_000],
            incident_acted: true,
            ..InstanceRecord::default()
        };
        finish(&mut rec, Outcome::Stuck("gone".into()), &c, 3_000);
        assert_eq!(rec.needs_operator.as_deref(), Some("gone"));
        assert!(rec.incident_acted);
        assert_eq!(rec.grace_until, None);
    }
}
