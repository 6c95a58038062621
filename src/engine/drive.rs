//! The remediation executor: carries out the pure ladder ([`crate::probe::remediate`]) for one
//! instance, and starts an instance dynwall owes a start.

use super::round::SLOW_POLL;
use super::watching::{remediation_step, step_of};
use super::{Engine, InstKey};
use crate::config::ProbeConfig;
use crate::exit::AppError;
use crate::notify::RemediationOutcome;
use crate::probe::record::secs;
use crate::probe::remediate::{self, advance, deadline, Next, Outcome};
use crate::probe::{InstanceReport, Step};
use crate::provider::{PowerOutcome, PowerState};

/// Steps taken for one instance in one round (advance, then issue: two are ever needed).
const MAX_STEPS_PER_ROUND: usize = 4;

fn key(p: &ProbeConfig) -> InstKey {
    (p.cloud.clone(), p.instance.clone())
}

impl Engine {
    /// Starts an instance dynwall asked to stop (recently) that shows up stopped with no
    /// remediation in flight: a forced stop that completed after dynwall gave up, or a record
    /// lost with a corrupt state file.
    pub(super) async fn owed_start(
        &mut self,
        p: &ProbeConfig,
        power: Option<&PowerState>,
        item: &mut InstanceReport,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        let at = self.clock.instant();
        let k = key(p);
        let Some(asked_at) = self
            .journal
            .owed(&p.cloud, &p.instance, now)
            .map(|o| o.asked_at)
        else {
            return Ok(());
        };
        if self.dry_run {
            return Ok(());
        }
        match power {
            Some(PowerState::Stopped) => {
                let recent = self
                    .rt
                    .owed_sent
                    .get(&k)
                    .is_some_and(|t| at.saturating_duration_since(*t) < SLOW_POLL);
                if recent {
                    return Ok(());
                }
                let Some(provider) = self.clouds.get(&p.cloud).cloned() else {
                    return Ok(());
                };
                let id = &p.instance;
                tracing::warn!(instance = %id,
                    "instance {id}: stopped, and dynwall asked it to stop {}s ago; starting it again",
                    now.saturating_sub(asked_at));
                let action = provider.ladder(p).start;
                match provider.power(id, action).await {
                    Ok(_) => {
                        self.rt.owed_sent.insert(k, at);
                        item.actions.push(action);
                    }
                    Err(e) => {
                        tracing::warn!(instance = %id, "instance {id}: {action} failed: {e}; retrying later");
                        item.api_error = Some(e.to_string());
                    }
                }
            }
            Some(PowerState::Running) if self.rt.owed_sent.remove(&k).is_some() => {
                self.journal
                    .forget(&p.cloud, &p.instance, now, &self.clock)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Executes the remediation of `p` as far as this round's power state allows.
    ///
    /// - Before a stop or force step the owed-start journal records it; before every request
    ///   the state (with the step about to be taken) is on disk. If either write fails, nothing
    ///   is sent and the error ends the round.
    /// - At most one request is sent per call: the state it was decided on is then stale.
    /// - A provider error is logged and reported; the step stays un-accepted and is sent again
    ///   at the next poll. A remediation is never abandoned for an API error, only at its
    ///   overall deadline.
    pub(super) async fn drive(
        &mut self,
        p: &ProbeConfig,
        power: Option<&PowerState>,
        item: &mut InstanceReport,
    ) -> Result<(), AppError> {
        let Some(provider) = self.clouds.get(&p.cloud).cloned() else {
            return Ok(());
        };
        let ladder = provider.ladder(p);
        let id = &p.instance;
        let k = key(p);
        for _ in 0..MAX_STEPS_PER_ROUND {
            let now = self.clock.now();
            let Some(rem) = self
                .state
                .instance(&p.cloud, id)
                .and_then(|r| r.remediation.clone())
            else {
                break;
            };
            let next = match power {
                Some(state) => advance(&rem, state, &ladder, p, now),
                None if now.saturating_sub(rem.started_at) >= secs(deadline(p)) => {
                    Next::Stuck(format!(
                        "the remediation did not finish within {} and the API does not report \
                         the instance's state",
                        humantime::format_duration(deadline(p))
                    ))
                }
                None => {
                    if self.rt.overdue_said.insert(k.clone()) {
                        tracing::warn!(instance = %id, step = %rem.step,
                            "instance {id}: power state unknown; the remediation ({}) resumes \
                             when the API reports it again", rem.step);
                    }
                    break;
                }
            };
            match next {
                Next::Wait => {
                    item.overdue = remediate::overdue(&rem, p, now);
                    if item.overdue && self.rt.overdue_said.insert(k.clone()) {
                        tracing::warn!(instance = %id, step = %rem.step,
                            "instance {id}: {} for {}s and the API still reports {}; still \
                             waiting (dynwall finishes what it started)",
                            rem.step, now.saturating_sub(rem.step.since()),
                            power.map_or_else(String::new, ToString::to_string));
                    }
                    break;
                }
                Next::Advance(step) => {
                    match step {
                        Step::Starting { .. } => {
                            tracing::info!(instance = %id, "instance {id}: stopped; starting it")
                        }
                        Step::ForceStopping { .. } => tracing::warn!(instance = %id,
                            "instance {id}: not stopped {}s after {} (API reports {}); {}",
                            now.saturating_sub(rem.step.since()),
                            ladder.stop.map_or("the request", |a| a.as_str()),
                            power.map_or_else(String::new, ToString::to_string),
                            if ladder.force_leaves_running { "rebooting it hard" } else { "forcing it off" }),
                        Step::Stopping { .. } => {}
                    }
                    self.rt.overdue_said.remove(&k);
                    if let Some(r) = self.state.instance_mut(&p.cloud, id).remediation.as_mut() {
                        r.step = step;
                        r.issued = false;
                    }
                }
                Next::Issue(action) => {
                    if action != ladder.start {
                        // Stopping: remember that a start is owed, whatever happens next.
                        self.journal.record(&p.cloud, id, now, &self.clock).await?;
                    } else if rem.issued {
                        tracing::warn!(instance = %id,
                            "instance {id}: still stopped {} after an accepted start; sending it again",
                            humantime::format_duration(p.start_timeout));
                    }
                    // The step is on disk before the provider hears of it (invariant 7).
                    self.save_now().await?;
                    match provider.power(id, action).await {
                        Ok(outcome) => {
                            let now = self.clock.now();
                            if let Some(r) =
                                self.state.instance_mut(&p.cloud, id).remediation.as_mut()
                            {
                                r.step = r.step.at(now);
                                r.issued = true;
                            }
                            self.save_now().await?;
                            item.actions.push(action);
                            let reason = self
                                .state
                                .instance(&p.cloud, id)
                                .and_then(|r| r.last_error.clone());
                            self.report_remediation(
                                p,
                                step_of(action),
                                RemediationOutcome::Requested,
                                reason,
                            );
                            tracing::debug!(instance = %id, %action,
                                already = outcome == PowerOutcome::AlreadyInState,
                                "instance {id}: {action} accepted");
                        }
                        Err(e) => {
                            if e.is_busy() {
                                // Expected while a task runs (a force step cutting a stop
                                // short): asked again at the next poll, after a fresh read.
                                tracing::info!(instance = %id, %action, error = %e,
                                    "instance {id}: {action} refused while a task is in flight: \
                                     {e}; asking again at the next poll");
                            } else if e.is_transient() {
                                tracing::warn!(instance = %id, %action, error = %e,
                                    "instance {id}: {action} failed: {e}; retrying at the next poll");
                            } else {
                                tracing::error!(instance = %id, %action, error = %e,
                                    "instance {id}: {action} refused: {e}; retrying at the next poll");
                            }
                            item.api_error = Some(e.to_string());
                        }
                    }
                    break;
                }
                Next::Done => {
                    self.end(p, Outcome::Done).await?;
                    self.report_remediation(
                        p,
                        remediation_step(&rem.step, &ladder),
                        RemediationOutcome::Done,
                        None,
                    );
                    tracing::info!(instance = %id, took_secs = now.saturating_sub(rem.started_at),
                        "instance {id}: running again after {}s; grace {}",
                        now.saturating_sub(rem.started_at),
                        humantime::format_duration(p.grace));
                    break;
                }
                Next::Failed(reason) => {
                    self.end(p, Outcome::Failed(reason.clone())).await?;
                    self.report_remediation(
                        p,
                        remediation_step(&rem.step, &ladder),
                        RemediationOutcome::Failed,
                        Some(reason.clone()),
                    );
                    tracing::error!(instance = %id, reason = %reason,
                        "instance {id}: remediation failed: {reason}; no further action until it \
                         answers a probe or the operator resets it");
                    break;
                }
                Next::Stuck(reason) => {
                    self.end(p, Outcome::Stuck(reason.clone())).await?;
                    self.report_remediation(
                        p,
                        remediation_step(&rem.step, &ladder),
                        RemediationOutcome::Failed,
                        Some(reason.clone()),
                    );
                    tracing::error!(instance = %id, reason = %reason,
                        "instance {id}: {reason}; it needs an operator (see `dynwall status`, \
                         then `dynwall reset {id}`)");
                    break;
                }
            }
        }
        Ok(())
    }

    /// Ends the remediation of `p` with `outcome` and saves it; one that ends with the instance
    /// running owes no start any more.
    async fn end(&mut self, p: &ProbeConfig, outcome: Outcome) -> Result<(), AppError> {
        let now = self.clock.now();
        let done = outcome == Outcome::Done;
        remediate::finish(
            self.state.instance_mut(&p.cloud, &p.instance),
            outcome,
            p,
            now,
        );
        self.rt.overdue_said.remove(&key(p));
        self.save_now().await?;
        if done {
            self.journal
                .forget(&p.cloud, &p.instance, now, &self.clock)
                .await?;
        }
        Ok(())
    }
}
