//! What the engine tells its [`Watch`]: the points worth counting or notifying, and what of
//! them is persisted (the failure streak, the last remediation, the last delivery failure).
//!
//! Every call returns at once (the watch counts under a lock and queues notifications), so
//! nothing here can hold up a cycle or a round.

use std::time::Duration;

use super::{Clouds, Engine};
use crate::config::ProbeConfig;
use crate::ids::{CloudName, InstanceId};
use crate::metrics::ProbeResult;
use crate::notify::{
    FirewallUpdate, GaveUp, RemediationEvent, RemediationOutcome, RemediationStep,
};
use crate::probe::{Health, Step};
use crate::provider::{Ladder, PowerAction};
use crate::state::LastRemediation;
use crate::watch::Watch;

/// The rung a power request stands for.
pub(crate) fn step_of(action: PowerAction) -> RemediationStep {
    match action {
        PowerAction::Start => RemediationStep::Start,
        PowerAction::Stop => RemediationStep::Stop,
        PowerAction::ForceStop => RemediationStep::ForceStop,
        PowerAction::Reboot => RemediationStep::HardReboot,
    }
}

/// The rung a remediation in `step` stands on, along `ladder`.
pub(crate) fn remediation_step(step: &Step, ladder: &Ladder) -> RemediationStep {
    match step {
        Step::Stopping { .. } => step_of(ladder.stop.unwrap_or(ladder.force)),
        Step::ForceStopping { .. } => step_of(ladder.force),
        Step::Starting { .. } => step_of(ladder.start),
    }
}

impl Engine {
    /// Reports to `watch` from now on: the clouds count their API requests in its metrics, and
    /// the delivery failure an earlier run persisted stays the last one until a newer one.
    pub fn set_watch(&mut self, watch: Watch) {
        if let Some(f) = self.state.last_notification_error.clone() {
            watch.remember_delivery_failure(f);
        }
        self.watch = watch;
        let clouds = self.clouds.clone();
        self.meter(&clouds);
    }

    /// Hands the watch's metrics to the clients of `clouds`.
    pub(crate) fn meter(&self, clouds: &Clouds) {
        for (name, provider) in clouds.iter() {
            provider.meter(self.watch.metrics(), name);
        }
    }

    /// Applies the current (reloaded) configuration to the metrics and notifiers.
    pub async fn reconfigure_watch(&mut self) {
        let config = self.config.clone();
        self.watch.reconfigure(&config).await;
    }

    /// Lets queued notifications go out for at most `grace`, stops the endpoint, and keeps the
    /// last delivery failure in the state (saved by [`Engine::shutdown`]).
    pub async fn close_watch(&mut self, grace: Duration) {
        self.watch.close(grace).await;
        self.note_delivery_failure();
    }

    /// Copies the notifiers' last delivery failure into the state when it is a new one.
    pub(crate) fn note_delivery_failure(&mut self) {
        let last = self.watch.last_delivery_failure();
        if last.is_some() && last != self.state.last_notification_error {
            self.state.last_notification_error = last;
        }
    }

    /// A cycle ended: `error` is its one-line error, if it failed.
    pub(crate) fn report_cycle(&mut self, error: Option<&str>) {
        let now = self.clock.now();
        let outcome = error.map_or(Ok(()), Err);
        self.watch
            .cycle_finished(&mut self.state.failing, outcome, now);
        self.note_delivery_failure();
    }

    /// The display name of an instance, from the last instance list of its cloud.
    fn instance_name(&self, cloud: &CloudName, id: &InstanceId) -> Option<String> {
        let (_, list) = self.rt.lists.get(cloud)?;
        list.iter()
            .find(|i| &i.id == id)
            .map(|i| i.name.clone())
            .filter(|n| !n.is_empty())
    }

    /// One probe's result.
    pub(crate) fn report_probe(&self, p: &ProbeConfig, health: &Health) {
        let result = match health {
            Health::Up => ProbeResult::Up,
            Health::Down(_) => ProbeResult::Down,
            Health::Unknown(_) => ProbeResult::Unknown,
        };
        self.watch.probed(&p.cloud, &p.instance, result);
    }

    /// A remediation step was requested, the remediation finished, or it failed: counted,
    /// notified, and kept as the last remediation for `status` and `STATUS=`.
    pub(crate) fn report_remediation(
        &mut self,
        p: &ProbeConfig,
        step: RemediationStep,
        outcome: RemediationOutcome,
        reason: Option<String>,
    ) {
        let name = self.instance_name(&p.cloud, &p.instance);
        self.state.last_remediation = Some(LastRemediation {
            at: self.clock.now(),
            cloud: p.cloud.clone(),
            instance: p.instance.clone(),
            step: step.as_str().to_string(),
            outcome: outcome.as_str().to_string(),
            reason: reason.clone(),
        });
        self.watch.remediation(RemediationEvent {
            cloud: p.cloud.clone(),
            instance: p.instance.clone(),
            name,
            step,
            outcome,
            reason,
        });
    }

    /// The remediation budget of `p` is spent and it is still down (once per episode).
    pub(crate) fn report_gave_up(&self, p: &ProbeConfig, actions: u32, reason: Option<String>) {
        self.watch.gave_up(GaveUp {
            cloud: p.cloud.clone(),
            instance: p.instance.clone(),
            name: self.instance_name(&p.cloud, &p.instance),
            actions,
            window: p.window,
            reason,
        });
    }

    /// A firewall write was verified.
    pub(crate) fn report_firewall(&self, update: FirewallUpdate) {
        self.watch.firewall_updated(update);
    }

    /// The last remediation in a few words, for the `STATUS=` line.
    pub fn last_remediation_line(&self) -> Option<String> {
        let r = self.state.last_remediation.as_ref()?;
        let ago = self.clock.now().saturating_sub(r.at);
        Some(format!(
            "last remediation: instance {} {} {} {} ago",
            r.instance,
            r.step,
            r.outcome,
            humantime::format_duration(Duration::from_secs(ago))
        ))
    }
}
