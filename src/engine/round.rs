//! Probe rounds: probe the due instances, ask the API only when a decision could act or a
//! remediation is in flight, check the facts again before any power action, drive remediations.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::{after, Engine, InstKey};
use crate::config::ProbeConfig;
use crate::exit::AppError;
use crate::ids::CloudName;
use crate::probe::decide::{list_need, note_api_state};
use crate::probe::record::secs;
use crate::probe::remediate::{self, deadline, nothing_accepted};
use crate::probe::{
    decide, fleet_breaker, observe, Decision, FleetVote, Gates, Health, HoldReason, InstanceReport,
    ListNeed, RoundReport, DEFAULT_PROBE_PORT,
};
use crate::provider::{Instance, PowerState};

/// How often an instance held because it is not running (or owed a start) is looked at again:
/// one instance list per cloud at most this often, so a start by its owner is noticed.
pub const SLOW_POLL: Duration = Duration::from_secs(5 * 60);
/// A list call that would wait longer than this for the quota is put off to the next round
/// (unless a remediation needs it): the round, and the IP checks after it, go on.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// What this round's lists say, per cloud.
#[derive(Default)]
struct Lists {
    fetched: HashMap<CloudName, Vec<Instance>>,
    /// Clouds whose list was needed but put off (quota busy) or failed, with why.
    missing: HashMap<CloudName, Option<String>>,
}

impl Lists {
    fn find(&self, p: &ProbeConfig) -> Option<&Instance> {
        crate::provider::find_instance(self.fetched.get(&p.cloud)?, &p.instance)
    }
}

fn key(p: &ProbeConfig) -> InstKey {
    (p.cloud.clone(), p.instance.clone())
}

impl Engine {
    /// True when the probe of `p` (or the poll of its remediation) is due at `at`.
    fn is_due(&self, p: &ProbeConfig, at: Instant) -> bool {
        let k = key(p);
        let probe = self.rt.next_probe.get(&k).is_none_or(|t| at >= *t);
        let in_flight = self
            .state
            .instance(&p.cloud, &p.instance)
            .is_some_and(|r| r.remediation.is_some());
        probe || (in_flight && self.rt.next_poll.get(&k).is_none_or(|t| at >= *t))
    }

    /// When the next probe or remediation poll is due (`None` without probes).
    pub fn next_probe_due(&self) -> Option<Instant> {
        self.config
            .probes
            .iter()
            .map(|p| {
                let k = key(p);
                let probe = self.rt.next_probe.get(&k).copied();
                let in_flight = self
                    .state
                    .instance(&p.cloud, &p.instance)
                    .is_some_and(|r| r.remediation.is_some());
                let poll = if in_flight {
                    self.rt.next_poll.get(&k).copied()
                } else {
                    None
                };
                match (probe, poll) {
                    (Some(a), Some(b)) => a.min(b),
                    (Some(a), None) => a,
                    (None, _) => self.clock.instant(),
                }
            })
            .min()
    }

    /// The longest a round may take: its probes, and its API calls at their bounds.
    pub fn round_deadline(&self) -> Duration {
        let probe = self
            .config
            .probes
            .iter()
            .map(|p| p.timeout)
            .max()
            .unwrap_or_default();
        let calls = 2 + self.config.firewalls.len() as u32 + self.config.probes.len() as u32;
        let bound = self
            .clouds
            .iter()
            .map(|(_, c)| c.call_bound())
            .max()
            .unwrap_or_default();
        2 * probe + bound * calls + self.soft_bound()
    }

    /// The address of `p` from the last instance list of its cloud.
    fn listed_target(&self, p: &ProbeConfig) -> Option<SocketAddr> {
        let (_, list) = self.rt.lists.get(&p.cloud)?;
        let ip = crate::provider::find_instance(list, &p.instance)?.ip?;
        Some(SocketAddr::new(ip, DEFAULT_PROBE_PORT))
    }

    /// Lists the instances of `cloud`; the list is kept for addresses and later rounds.
    async fn list(
        &mut self,
        cloud: &CloudName,
        urgent: bool,
    ) -> Result<Vec<Instance>, Option<String>> {
        let Some(provider) = self.clouds.get(cloud).cloned() else {
            return Err(Some(format!("no cloud named {cloud}")));
        };
        if !urgent && provider.queue_delay() > PATIENCE {
            tracing::debug!(%cloud, "instance list put off: the API budget is busy");
            return Err(None);
        }
        match provider.list_instances().await {
            Ok(list) => {
                self.rt
                    .lists
                    .insert(cloud.clone(), (self.clock.instant(), list.clone()));
                Ok(list)
            }
            Err(e) => {
                tracing::warn!(error = %e,
                    "instance list unavailable ({e}); probing, but acting on no instance of cloud {cloud} this round");
                Err(Some(e.to_string()))
            }
        }
    }

    /// Runs one probe round over the probes that are due (`all`: every probe, for `--once`).
    ///
    /// A round cut off at any await leaves the state whole: records are changed in place, and
    /// a step is on disk (and a stop in the owed-start journal) before its request is sent.
    pub async fn probe_round(&mut self, all: bool) -> Result<RoundReport, AppError> {
        self.take_reset_requests().await;
        let at = self.clock.instant();
        let probes: Vec<ProbeConfig> = self
            .config
            .probes
            .iter()
            .filter(|p| all || self.is_due(p, at))
            .cloned()
            .collect();
        if probes.is_empty() {
            return Ok(RoundReport::default());
        }
        let mut report = RoundReport::default();
        let mut lists = Lists::default();

        // Addresses: the configured one, else the instance list's (read when none is known,
        // or when the one known is older than the reconcile period).
        for p in probes.iter().filter(|p| p.address.is_none()) {
            let stale = self.rt.lists.get(&p.cloud).is_none_or(|(t, _)| {
                at.saturating_duration_since(*t) >= self.config.daemon.reconcile
            });
            if stale
                && !lists.fetched.contains_key(&p.cloud)
                && !lists.missing.contains_key(&p.cloud)
            {
                match self.list(&p.cloud, true).await {
                    Ok(l) => {
                        lists.fetched.insert(p.cloud.clone(), l);
                    }
                    Err(why) => {
                        lists.missing.insert(p.cloud.clone(), why);
                    }
                }
            }
        }

        // Probe: no API call.
        let targets: Vec<Option<SocketAddr>> = probes
            .iter()
            .map(|p| p.address.or_else(|| self.listed_target(p)))
            .collect();
        let prober = self.prober.clone();
        let healths: Vec<Health> = futures::future::join_all(
            probes
                .iter()
                .zip(&targets)
                .map(|(p, t)| prober.probe(p, *t)),
        )
        .await;
        let now = self.clock.now();
        for (p, h) in probes.iter().zip(&healths) {
            self.observe(p, h, at, now);
            self.report_probe(p, h);
        }

        // The API only when a decision could act, a remediation is in flight, or a slow poll
        // of an instance held as not running (or owed a start) is due.
        let mut need: BTreeMap<CloudName, (ListNeed, bool)> = BTreeMap::new();
        for p in &probes {
            let rec = self
                .state
                .instance(&p.cloud, &p.instance)
                .cloned()
                .unwrap_or_default();
            let gates = Gates {
                connectivity_ok: self.connectivity_ok(),
                firewall_in_sync: self.firewalls_confirmed(&self.gating(p, None)),
                api_state: None,
                fleet_down_fraction_exceeded: false,
                other_remediation_in_flight: false,
                dry_run: self.dry_run,
            };
            let mut n = list_need(&rec, p, &gates, now);
            if rec.remediation.is_none() {
                if let Some(owed) = self.journal.owed(&p.cloud, &p.instance, now) {
                    // Right after a remediation that ended without its start (failed, stuck),
                    // look every round; later, or after one cancelled, slowly.
                    let fresh = now.saturating_sub(owed.asked_at) < secs(deadline(p));
                    let ended_badly = rec.incident_acted || rec.needs_operator.is_some();
                    n = n.max(if fresh && ended_badly {
                        ListNeed::Now
                    } else {
                        ListNeed::Slow
                    });
                }
            }
            let entry = need.entry(p.cloud.clone()).or_insert((ListNeed::No, false));
            entry.0 = entry.0.max(n);
            entry.1 |= rec.remediation.is_some();
        }
        for (cloud, (n, urgent)) in need {
            if lists.fetched.contains_key(&cloud) {
                continue;
            }
            let last = self.rt.lists.get(&cloud).map(|(t, _)| *t);
            let go = match n {
                ListNeed::Now => true,
                ListNeed::Slow => last.is_none_or(|t| at.saturating_duration_since(t) >= SLOW_POLL),
                ListNeed::No => false,
            };
            if go {
                match self.list(&cloud, urgent).await {
                    Ok(l) => {
                        lists.fetched.insert(cloud, l);
                    }
                    Err(why) => {
                        if let Some(w) = &why {
                            report.list_error.get_or_insert_with(|| w.clone());
                        }
                        lists.missing.insert(cloud, why);
                    }
                }
            }
        }
        let now = self.clock.now();
        for p in &probes {
            if let Some(i) = lists.find(p) {
                let power = i.power.clone();
                note_api_state(
                    self.state.instance_mut(&p.cloud, &p.instance),
                    &power,
                    p,
                    now,
                );
            }
        }

        // The fleet breaker: more than half of the probed instances down is our problem.
        let votes: Vec<FleetVote> = probes
            .iter()
            .zip(&healths)
            .map(|(p, h)| {
                let rec = self.state.instance(&p.cloud, &p.instance);
                let power = lists
                    .find(p)
                    .map(|i| i.power.clone())
                    .or_else(|| rec.and_then(|r| r.last_api_state.clone()));
                FleetVote {
                    down: match h {
                        Health::Up => Some(false),
                        Health::Down(_) => Some(true),
                        Health::Unknown(_) => None,
                    },
                    expected: rec.is_some_and(|r| r.remediation.is_some() || r.in_grace(now))
                        || power.is_some_and(|s| s != PowerState::Running),
                }
            })
            .collect();
        let fleet_down = fleet_breaker(&votes);
        if let Some((down, probed)) = fleet_down {
            self.warn_fleet(&probes, down, probed);
            report.observer_problem = true;
        }

        for (p, health) in probes.iter().zip(healths) {
            let item = self.settle(p, health, &lists, fleet_down.is_some()).await?;
            report.instances.push(item);
        }

        // Polls of remediations in flight follow the cloud's interval.
        let at = self.clock.instant();
        for p in &probes {
            let k = key(p);
            let in_flight = self
                .state
                .instance(&p.cloud, &p.instance)
                .is_some_and(|r| r.remediation.is_some());
            match (in_flight, self.clouds.get(&p.cloud)) {
                (true, Some(c)) => {
                    self.rt.next_poll.insert(k, after(at, c.poll_interval()));
                }
                _ => {
                    self.rt.next_poll.remove(&k);
                }
            }
        }
        for (cloud, id, rec) in self.state.instances() {
            if let Some(rem) = &rec.remediation {
                if !self
                    .config
                    .probes
                    .iter()
                    .any(|p| &p.cloud == cloud && &p.instance == id)
                {
                    tracing::error!(instance = %id,
                        "instance {id}: a remediation ({}) is in flight but the instance is no \
                         longer configured for probing; dynwall will not finish it: start it by \
                         hand if it is stopped, or configure it again", rem.step);
                }
            }
        }
        self.save_if_durable().await?;
        Ok(report)
    }

    /// Records one probe result; a passing probe cancels a remediation none of whose requests
    /// was accepted yet (and refunds its budget entry).
    fn observe(&mut self, p: &ProbeConfig, h: &Health, at: Instant, now: u64) {
        let k = key(p);
        self.rt.next_probe.insert(k.clone(), after(at, p.interval));
        let ladder = self.clouds.get(&p.cloud).map(|c| c.ladder(p));
        let rec = self.state.instance_mut(&p.cloud, &p.instance);
        match h {
            Health::Up => {
                observe(rec, true, None, now);
                let cancel = rec
                    .remediation
                    .as_ref()
                    .zip(ladder.as_ref())
                    .is_some_and(|(rem, l)| nothing_accepted(rem, l));
                if cancel && !self.dry_run {
                    remediate::cancel(rec);
                    tracing::info!(instance = %p.instance,
                        "instance {}: answers again before any power request was accepted; \
                         remediation cancelled", p.instance);
                }
                self.rt.failing_since.remove(&k);
            }
            Health::Down(e) => {
                observe(rec, false, Some(e.to_string()), now);
                self.rt.failing_since.entry(k).or_insert(at);
            }
            Health::Unknown(_) => {}
        }
    }

    /// Warns when the fleet breaker first holds an instance back, not before (no instance
    /// reached its failure count yet) and not again every round it lasts.
    fn warn_fleet(&self, probes: &[ProbeConfig], down: usize, probed: usize) {
        let fleet = HoldReason::FleetDown.to_string();
        let said = probes.iter().any(|c| {
            self.state
                .instance(&c.cloud, &c.instance)
                .and_then(|r| r.last_hold.as_deref())
                == Some(fleet.as_str())
        });
        let binding = probes.iter().any(|c| {
            self.state
                .instance(&c.cloud, &c.instance)
                .is_some_and(|r| r.consecutive_failures >= c.failures)
        });
        if said || !binding {
            tracing::debug!(down, probed, "observer problem persists");
        } else {
            tracing::warn!(
                down,
                probed,
                "observer problem: {down} of {probed} instances look down; acting on none"
            );
        }
    }

    /// Decides about one instance and acts: continues its remediation, starts it again when
    /// owed, or begins a remediation once every gate, checked fresh, is open.
    async fn settle(
        &mut self,
        p: &ProbeConfig,
        health: Health,
        lists: &Lists,
        fleet_down: bool,
    ) -> Result<InstanceReport, AppError> {
        let now = self.clock.now();
        let id = &p.instance;
        let listed = lists.find(p).cloned();
        let power = listed.as_ref().map(|i| i.power.clone());
        let mut item = InstanceReport {
            cloud: p.cloud.clone(),
            instance: id.clone(),
            health,
            decision: Decision::InProgress,
            actions: Vec::new(),
            remediation: None,
            overdue: false,
            api_error: None,
            given_up: false,
            needs_operator: false,
        };
        if !self.dry_run {
            self.resume_soft(p, &mut item).await?;
        }
        let rec = self
            .state
            .instance(&p.cloud, id)
            .cloned()
            .unwrap_or_default();
        if let Some(rem) = &rec.remediation {
            if self.dry_run {
                tracing::info!(instance = %id,
                    "dry run: instance {id}: remediation in flight ({}); not continuing it", rem.step);
            } else {
                self.drive(p, power.as_ref(), &mut item).await?;
            }
        } else {
            self.owed_start(p, power.as_ref(), &mut item).await?;
            let other_in_flight = self.config.probes.iter().any(|c| {
                (&c.cloud, &c.instance) != (&p.cloud, id)
                    && self
                        .state
                        .instance(&c.cloud, &c.instance)
                        .is_some_and(|r| r.remediation.is_some())
            });
            let gating = self.gating(p, listed.as_ref());
            // Without this round's list (not needed, or put off), the last known state stands
            // in: it can hold an instance, never let one be acted on (see below).
            let fresh = power.is_some();
            let gates = Gates {
                connectivity_ok: self.connectivity_ok(),
                firewall_in_sync: self.firewalls_confirmed(&gating),
                api_state: power.clone().or_else(|| rec.last_api_state.clone()),
                fleet_down_fraction_exceeded: fleet_down,
                other_remediation_in_flight: other_in_flight,
                dry_run: self.dry_run,
            };
            let mut decision = match &item.health {
                Health::Unknown(_) if p.enabled => Decision::Hold(HoldReason::NoAddress),
                _ => decide(&rec, p, &gates, now),
            };
            if decision == Decision::Remediate && !fresh {
                decision = Decision::Hold(HoldReason::ApiUnknown);
            }
            if decision == Decision::Hold(HoldReason::ApiUnknown)
                && lists.missing.get(&p.cloud).is_some_and(Option::is_none)
            {
                decision = Decision::Hold(HoldReason::ApiBusy);
            }
            if decision == Decision::Remediate {
                if let Err(reason) = self.confirm_before_acting(p, listed.as_ref()).await {
                    decision = Decision::Hold(reason);
                }
            }
            item.decision = decision.clone();
            self.say(p, &decision, &rec);
            self.say_soft(p, &decision, &rec);
            let n = rec.consecutive_failures;
            let cured = decision == Decision::Remediate && self.soft_first(p, &mut item).await?;
            let decision = if cured { Decision::Healthy } else { decision };
            let now = self.clock.now();
            match decision {
                Decision::GivenUp if !rec.given_up => {
                    self.state.instance_mut(&p.cloud, id).given_up = true;
                    self.report_gave_up(p, rec.actions_in_window(p, now), rec.last_error.clone());
                }
                Decision::Remediate => {
                    let ladder = self.clouds.get(&p.cloud).map(|c| c.ladder(p));
                    if let Some(ladder) = ladder {
                        remediate::begin(self.state.instance_mut(&p.cloud, id), p, &ladder, now);
                        self.drive(p, power.as_ref(), &mut item).await?;
                    }
                }
                _ => {}
            }
            let rec = self.state.instance_mut(&p.cloud, id);
            rec.last_hold = match &item.decision {
                Decision::Hold(reason) if n >= p.failures => Some(reason.to_string()),
                _ => None,
            };
        }
        let rec = self
            .state
            .instance(&p.cloud, id)
            .cloned()
            .unwrap_or_default();
        item.given_up = rec.given_up;
        item.needs_operator = rec.needs_operator.is_some();
        item.remediation = rec.remediation.as_ref().map(|r| r.step);
        Ok(item)
    }

    /// Logs a decision; a hold is said once per incident (then at debug level).
    fn say(&self, p: &ProbeConfig, decision: &Decision, rec: &crate::probe::InstanceRecord) {
        let id = &p.instance;
        let why = rec.last_error.clone().unwrap_or_default();
        let n = rec.consecutive_failures;
        match decision {
            Decision::Healthy => tracing::debug!(instance = %id, "instance {id}: up"),
            Decision::Failing { count } => tracing::info!(instance = %id, failures = count,
                "instance {id}: probe failed ({count} of {}): {why}", p.failures),
            Decision::Hold(HoldReason::Grace) => tracing::info!(instance = %id,
                "instance {id}: probe failed during grace ({why}); not counted"),
            Decision::Hold(HoldReason::NoAddress) => tracing::warn!(instance = %id,
                "instance {id}: no address to probe (no `address` configured and the API \
                 reports no IP)"),
            Decision::Hold(HoldReason::Disabled) if n < p.failures => {
                tracing::debug!(instance = %id, "instance {id}: remediation disabled")
            }
            Decision::Hold(reason) if rec.last_hold.as_deref() == Some(&reason.to_string()) => {
                tracing::debug!(instance = %id, %reason,
                    "instance {id}: down after {n} failed probes; still not acting: {reason}")
            }
            Decision::Hold(HoldReason::DryRun) => tracing::info!(instance = %id,
                "dry run: instance {id}: down after {n} failed probes ({why}); would stop \
                 and start it"),
            Decision::Hold(reason) => tracing::info!(instance = %id, %reason,
                "instance {id}: down after {n} failed probes ({why}); not acting: {reason}"),
            Decision::GivenUp if !rec.given_up => tracing::error!(instance = %id,
                "instance {id}: still down after {} remediations within {} ({why}); \
                 giving up until it answers a probe again or the operator resets it",
                rec.actions_in_window(p, self.clock.now()),
                humantime::format_duration(p.window)),
            Decision::GivenUp | Decision::NeedsOperator | Decision::InProgress => {}
            Decision::Remediate => tracing::info!(instance = %id,
                "instance {id}: down after {n} failed probes ({why}); {}",
                if p.salt.is_some() && !rec.soft_tried { "trying its salt job first" } else { "stopping" }),
        }
    }
}
