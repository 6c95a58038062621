//! The soft step: before the power ladder of an instance judged down (every gate of
//! invariant 6 open), run its saved Salt job, wait for it at most `salt_timeout`, and probe
//! again. A pass ends the incident with no power action; a failure, a timeout or any Salt error
//! hands over to the ladder at once.
//!
//! Persisted like the ladder: the step is on disk before the job is asked for, and its run id
//! as soon as the server gives it. A step cut off (crash, shutdown) resumes within what is left
//! of its `salt_timeout`; a job whose acceptance is unknown is never asked for again; one step
//! per incident at most.

use crate::notify::{RemediationOutcome, RemediationStep};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{after, Engine};
use crate::config::{ProbeConfig, SaltStep};
use crate::exit::AppError;
use crate::probe::record::secs;
use crate::probe::{
    observe, Decision, Health, HoldReason, InstanceRecord, InstanceReport, SoftOutcome, SoftStep,
    DEFAULT_PROBE_PORT,
};
use crate::salt::{JobStatus, SoftCure};

/// How often a running job's status is asked for.
pub const SOFT_POLL: Duration = Duration::from_secs(2);

/// How a job run ended.
enum Run {
    /// The server says it succeeded; the probe that judges it is still to come.
    Succeeded(String),
    /// It succeeded and the instance answers again.
    Cured(String),
    /// It did not succeed, did not cure, or could not be followed: why.
    NotCured(Option<String>, String),
}

impl Engine {
    /// Installs the client of the soft step (`None`: no `[salt]` table).
    pub fn set_soft_cure(&mut self, soft: Option<Arc<dyn SoftCure>>) {
        self.soft = soft;
    }

    /// The longest the soft steps of one round can take: each waits at most its `salt_timeout`
    /// and probes once more; one step per round at most reaches the ladder (one at a time).
    pub(super) fn soft_bound(&self) -> Duration {
        self.config
            .probes
            .iter()
            .filter_map(|p| p.salt.as_ref().map(|s| s.timeout + p.timeout))
            .max()
            .unwrap_or_default()
    }

    fn probe_target(&self, p: &ProbeConfig) -> Option<SocketAddr> {
        p.address.or_else(|| {
            let (_, list) = self.rt.lists.get(&p.cloud)?;
            let ip = list.iter().find(|i| i.id == p.instance)?.ip?;
            Some(SocketAddr::new(ip, DEFAULT_PROBE_PORT))
        })
    }

    /// Logs, in a dry run, the job dynwall would run before acting (once per incident, as the
    /// hold itself is said).
    pub(super) fn say_soft(&self, p: &ProbeConfig, decision: &Decision, rec: &InstanceRecord) {
        let (Some(step), Decision::Hold(HoldReason::DryRun)) = (&p.salt, decision) else {
            return;
        };
        if rec.soft_tried
            || rec.last_hold.as_deref() == Some(HoldReason::DryRun.to_string().as_str())
        {
            return;
        }
        let id = &p.instance;
        tracing::info!(instance = %id, salt_job = %step.job, salt_target = %step.target,
            "dry run: instance {id}: would run salt job {} on target {} first (waiting up to {}), \
             and stop and start it only if it still fails", step.job, step.target,
            humantime::format_duration(step.timeout));
    }

    /// Tries the soft step of `p` before its ladder begins. `true` when the instance answers
    /// again: no power action. `false` when the ladder goes on at once: no soft step configured,
    /// one was tried in this incident already, or it did not cure.
    pub(super) async fn soft_first(
        &mut self,
        p: &ProbeConfig,
        item: &mut InstanceReport,
    ) -> Result<bool, AppError> {
        let Some(step) = p.salt.clone() else {
            return Ok(false);
        };
        let id = &p.instance;
        let rec = self.state.instance_mut(&p.cloud, id);
        if rec.soft_tried || rec.soft.is_some() {
            return Ok(false);
        }
        let Some(soft) = self.soft.clone() else {
            tracing::warn!(instance = %id,
                "instance {id}: salt_job is set but no Salt client is configured; stopping it");
            return Ok(false);
        };
        let now = self.clock.now();
        rec.soft = Some(SoftStep {
            started_at: now,
            job: step.job.clone(),
            jid: None,
        });
        rec.soft_tried = true;
        rec.last_hold = None;
        // On disk before the server hears of it: a crash from here on never runs it twice.
        self.save_now().await?;
        let reason = self
            .state
            .instance(&p.cloud, id)
            .and_then(|r| r.last_error.clone());
        self.report_remediation(
            p,
            RemediationStep::SaltJob,
            RemediationOutcome::Requested,
            reason,
        );
        tracing::info!(instance = %id, salt_job = %step.job,
            "instance {id}: running salt job {} on target {} first (waiting up to {})",
            step.job, step.target, humantime::format_duration(step.timeout));
        let deadline = after(self.clock.instant(), step.timeout);
        let health = item.health.clone();
        let steps = async {
            let run = self.follow(p, &step, &*soft, false).await?;
            Ok::<Run, AppError>(self.reprobe(p, run, &health).await)
        };
        let run = match tokio::time::timeout_at(deadline, steps).await {
            Ok(r) => r?,
            Err(_) => self.timed_out(p, &step),
        };
        self.judge(p, &step, run, item).await
    }

    /// Resumes a soft step a previous round or process left in flight, within what is left of
    /// its `salt_timeout`. Afterwards the instance is either cured or its ladder may begin.
    pub(super) async fn resume_soft(
        &mut self,
        p: &ProbeConfig,
        item: &mut InstanceReport,
    ) -> Result<(), AppError> {
        let Some(started) = self
            .state
            .instance(&p.cloud, &p.instance)
            .and_then(|r| r.soft.as_ref())
            .map(|s| s.started_at)
        else {
            return Ok(());
        };
        let step = p.salt.clone().unwrap_or(SaltStep {
            job: String::new(),
            target: String::new(),
            timeout: Duration::ZERO,
        });
        let id = &p.instance;
        let jid = self
            .state
            .instance(&p.cloud, id)
            .and_then(|r| r.soft.as_ref())
            .and_then(|s| s.jid.clone());
        let run = if item.health == Health::Up {
            Run::Cured(jid.unwrap_or_default())
        } else {
            let left = secs(step.timeout).saturating_sub(self.clock.now().saturating_sub(started));
            tracing::info!(instance = %id,
                "instance {id}: resuming the salt job started {}s ago ({}s left)",
                self.clock.now().saturating_sub(started), left);
            match (self.soft.clone(), left) {
                (Some(soft), 1..) => {
                    let deadline = after(self.clock.instant(), Duration::from_secs(left));
                    let health = item.health.clone();
                    let steps = async {
                        let run = self.follow(p, &step, &*soft, true).await?;
                        Ok::<Run, AppError>(self.reprobe(p, run, &health).await)
                    };
                    match tokio::time::timeout_at(deadline, steps).await {
                        Ok(r) => r?,
                        Err(_) => self.timed_out(p, &step),
                    }
                }
                _ => Run::NotCured(jid, "its salt_timeout passed while dynwall was away".into()),
            }
        };
        self.judge(p, &step, run, item).await.map(|_| ())
    }

    fn timed_out(&self, p: &ProbeConfig, step: &SaltStep) -> Run {
        let jid = self
            .state
            .instance(&p.cloud, &p.instance)
            .and_then(|r| r.soft.as_ref())
            .and_then(|s| s.jid.clone());
        Run::NotCured(
            jid,
            format!(
                "it did not complete within salt_timeout ({})",
                humantime::format_duration(step.timeout)
            ),
        )
    }

    /// Asks for the job (unless resuming) and polls its run until it ends. Cut off by the
    /// caller's deadline at any await, it leaves the state whole.
    async fn follow(
        &mut self,
        p: &ProbeConfig,
        step: &SaltStep,
        soft: &dyn SoftCure,
        resumed: bool,
    ) -> Result<Run, AppError> {
        let known = self
            .state
            .instance(&p.cloud, &p.instance)
            .and_then(|r| r.soft.as_ref())
            .and_then(|s| s.jid.clone());
        let jid = match known {
            Some(jid) => jid,
            None if resumed => {
                return Ok(Run::NotCured(
                    None,
                    "dynwall stopped while asking for the job: whether it runs is unknown, and \
                     it is not asked for twice"
                        .into(),
                ))
            }
            None => match soft.run_job(&step.job, &step.target).await {
                Ok(jid) => {
                    if let Some(s) = self.state.instance_mut(&p.cloud, &p.instance).soft.as_mut() {
                        s.jid = Some(jid.clone());
                    }
                    self.save_now().await?;
                    tracing::debug!(instance = %p.instance, jid = %jid, "salt job accepted");
                    jid
                }
                Err(e) => return Ok(Run::NotCured(None, e.to_string())),
            },
        };
        loop {
            match soft.job_status(&jid).await {
                Ok(JobStatus::Pending) => tokio::time::sleep(SOFT_POLL).await,
                Ok(JobStatus::Succeeded) => return Ok(Run::Succeeded(jid)),
                Ok(JobStatus::Failed(why)) => {
                    return Ok(Run::NotCured(Some(jid), format!("the job failed: {why}")))
                }
                Err(e) => return Ok(Run::NotCured(Some(jid), e.to_string())),
            }
        }
    }

    /// Probes again after a run that succeeded (unless this round's probe passed already).
    async fn reprobe(&self, p: &ProbeConfig, run: Run, health: &Health) -> Run {
        match run {
            Run::Succeeded(jid) if *health == Health::Up => Run::Cured(jid),
            Run::Succeeded(jid) => {
                let target = self.probe_target(p);
                match self.prober.probe(p, target).await {
                    Health::Up => Run::Cured(jid),
                    other => Run::NotCured(
                        Some(jid),
                        format!("the job succeeded but the probe still fails: {other}"),
                    ),
                }
            }
            other => other,
        }
    }

    /// Ends the step: cured (the incident is over) or not (the ladder may begin). Returns
    /// whether it cured.
    async fn judge(
        &mut self,
        p: &ProbeConfig,
        step: &SaltStep,
        run: Run,
        item: &mut InstanceReport,
    ) -> Result<bool, AppError> {
        let id = &p.instance;
        let (jid, why) = match run {
            Run::Cured(jid) => {
                item.health = Health::Up;
                (Some(jid), None)
            }
            Run::Succeeded(jid) => (Some(jid), Some("the job was not judged by a probe".into())),
            Run::NotCured(jid, why) => (jid, Some(why)),
        };
        let now = self.clock.now();
        let job = self
            .state
            .instance(&p.cloud, id)
            .and_then(|r| r.soft.as_ref())
            .map_or_else(|| step.job.clone(), |s| s.job.clone());
        let shown = jid.as_deref().filter(|j| !j.is_empty());
        let rec = self.state.instance_mut(&p.cloud, id);
        rec.soft = None;
        rec.last_soft = Some(SoftOutcome {
            at: now,
            job: job.clone(),
            jid: shown.map(str::to_owned),
            cured: why.is_none(),
            detail: why.clone().unwrap_or_default(),
        });
        let run_text = shown.map_or(String::new(), |j| format!(" (run {j})"));
        let outcome = match &why {
            None => RemediationOutcome::Done,
            Some(_) => RemediationOutcome::Failed,
        };
        self.report_remediation(p, RemediationStep::SaltJob, outcome, why.clone());
        let rec = self.state.instance_mut(&p.cloud, id);
        let cured = match why {
            None => {
                observe(rec, true, None, now);
                self.rt
                    .failing_since
                    .remove(&(p.cloud.clone(), p.instance.clone()));
                item.decision = Decision::Healthy;
                tracing::info!(instance = %id, salt_job = %job,
                    "instance {id}: recovered by salt job {job}{run_text}; no power action");
                true
            }
            Some(why) => {
                tracing::warn!(instance = %id, salt_job = %job,
                    "instance {id}: salt job {job}{run_text} did not cure it: {why}; power cycle follows");
                false
            }
        };
        self.save_now().await?;
        Ok(cured)
    }
}
