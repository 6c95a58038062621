//! IP checks and sync jobs: resolve the public address, start (or replace) the job that brings
//! the firewalls to it, fold the job's reports into the state, record the cycle's outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::job::{self, Event, FirewallOutcome, Item};
use super::{after, Engine, FwKey, LastCheck, RunningJob};
use crate::config::FirewallConfig;
use crate::exit::{AppError, Code};
use crate::net::Family;
use crate::provider::{CloudFacts, ProviderError};
use crate::resolver::{family_name, Resolution};
use crate::scheduler::next_delay;
use crate::state::{CycleRecord, FirewallRecord, KnownInstances};
use crate::sync::{Home, SyncError};

/// How long a confirmed instance list is trusted for the write preflight.
pub const INSTANCES_RECHECK: Duration = Duration::from_secs(24 * 3600);
/// Requests one firewall sync makes at most (read, instance list, write, read-back).
const CALLS_PER_FIREWALL: u32 = 4;
/// A job is never given less time than this.
const MIN_JOB_DEADLINE: Duration = Duration::from_secs(5 * 60);

/// What an IP check found.
#[derive(Debug)]
pub struct CheckReport {
    /// One lookup per address family some firewall tracks (IPv4 when none does).
    pub resolutions: Vec<(Family, Resolution)>,
    /// The agreed addresses.
    pub home: Home,
}

/// A check and the sync it started, finished (`--once`).
#[derive(Debug)]
pub struct CycleReport {
    pub resolutions: Vec<(Family, Resolution)>,
    pub home: Home,
    pub firewalls: Vec<(usize, Result<FirewallOutcome, AppError>)>,
}

fn resolve_code(resolutions: &[(Family, Resolution)]) -> Code {
    if resolutions.iter().all(|(_, r)| r.outcome.is_ok()) {
        Code::Ok
    } else {
        Code::Unavailable
    }
}

impl CycleReport {
    /// The exit code of a `--once` run that ended with this cycle.
    pub fn code(&self) -> Code {
        self.firewalls
            .iter()
            .filter_map(|(_, r)| r.as_ref().err())
            .fold(resolve_code(&self.resolutions), |acc, e| {
                acc.worst(e.code())
            })
    }

    /// True when every address was resolved and every firewall is confirmed in sync.
    pub fn ok(&self) -> bool {
        self.code() == Code::Ok
    }
}

/// The address a firewall record holds for `f`.
pub(crate) fn record_ip(rec: &FirewallRecord, f: Family) -> Option<IpAddr> {
    match f {
        Family::Ipv4 => rec.ip,
        Family::Ipv6 => rec.ip6,
    }
}

fn key(fw: &FirewallConfig) -> FwKey {
    (fw.cloud.clone(), fw.id.clone())
}

impl Engine {
    /// One IP check: resolves every tracked family, notes a changed address, starts or replaces
    /// the sync job when a firewall needs one, and records the cycle's outcome (the heartbeat).
    /// Costs no API call itself.
    pub async fn check(&mut self) -> CheckReport {
        self.rt.check_requested = false;
        self.watch.cycle_started();
        let mut resolutions = Vec::new();
        let mut home = Home::default();
        for family in self.config.tracked_families() {
            let resolution = self.resolvers.resolve_until_settled(family).await;
            match &resolution.outcome {
                Ok(ip) => home.set(family, Some(*ip)),
                Err(e) => tracing::warn!(
                    error = %e,
                    "no usable public {} address; changing nothing for it",
                    family_name(family)
                ),
            }
            self.watch.resolution(&resolution);
            resolutions.push((family, resolution));
        }
        self.state.sources = self.resolvers.memory();
        self.rt.last_check = Some(LastCheck {
            at: self.clock.instant(),
            any_accepted: resolutions.iter().any(|(_, r)| r.any_accepted()),
            resolved: resolve_code(&resolutions) == Code::Ok,
        });
        let previous = self.current_home();
        let mut changed = false;
        for f in [Family::Ipv4, Family::Ipv6] {
            let (Some(ip), old) = (home.get(f), previous.get(f)) else {
                continue;
            };
            if old == Some(ip) {
                continue;
            }
            match old {
                Some(old) => tracing::info!("public address changed: {old} → {ip}"),
                None => tracing::info!("public address is {ip}"),
            }
            self.watch.ip_changed(f, old, ip);
            match f {
                Family::Ipv4 => self.state.last_ip = Some(ip),
                Family::Ipv6 => self.state.last_ip6 = Some(ip),
            }
            changed = true;
        }
        self.rt.outcomes.clear();
        self.expire_job();
        let started = self.start_sync(home, changed);
        let report = CheckReport { resolutions, home };
        // A cycle that started a sync job ends with the job: it is reported (metrics,
        // notifications) then, once. Until then only the heartbeat moves, and not even that while
        // the job brings a firewall in for the first time, so `healthcheck` never calls a daemon
        // healthy before its firewalls were confirmed once.
        if !self.first_sync_pending() {
            let resolved = resolve_code(&report.resolutions) == Code::Ok;
            self.record_cycle(resolved, !started).await;
        }
        report
    }

    /// True while the sync job holds a firewall that was never confirmed.
    fn first_sync_pending(&self) -> bool {
        self.job.as_ref().is_some_and(|job| {
            job.firewalls
                .iter()
                .any(|(cloud, id)| self.state.firewall(cloud, id).is_none())
        })
    }

    /// A check, then its sync to the end (`--once`, `check`-like callers).
    pub async fn cycle(&mut self) -> CycleReport {
        let check = self.check().await;
        self.finish_sync().await;
        CycleReport {
            resolutions: check.resolutions,
            home: check.home,
            firewalls: std::mem::take(&mut self.rt.outcomes),
        }
    }

    /// Waits for the running sync job, folding in its reports, until it ends or its deadline.
    pub async fn finish_sync(&mut self) {
        while let Some(deadline) = self.job.as_ref().map(|j| j.deadline) {
            tokio::select! {
                ev = self.next_event() => {
                    self.absorb(ev).await;
                }
                _ = tokio::time::sleep_until(deadline) => self.expire_job(),
            }
        }
    }

    /// True when `fw` needs a sync toward `home` now.
    fn needs_sync(&self, fw: &FirewallConfig, home: &Home, changed: bool, now: Instant) -> bool {
        if !home.covers_any(fw) {
            return false;
        }
        let k = key(fw);
        let retry_due = self.rt.sync_retry_at.is_none_or(|t| now >= t);
        if self.rt.resync.contains(&k) {
            return true;
        }
        let Some(rec) = self.state.firewall(&fw.cloud, &fw.id) else {
            return retry_due || changed;
        };
        let holds = fw
            .family
            .families()
            .iter()
            .all(|f| home.get(*f).is_none() || record_ip(rec, *f) == home.get(*f));
        if !holds {
            return retry_due || changed;
        }
        if self.rt.failed.contains_key(&k) {
            return retry_due;
        }
        let age = match self.rt.confirmed.get(&k) {
            Some((at, _)) => now.saturating_duration_since(*at),
            None => Duration::from_secs(self.clock.now().saturating_sub(rec.verified_at)),
        };
        age >= self.config.daemon.reconcile && retry_due
    }

    /// Starts a sync job for the firewalls that need one, replacing a running job whose target
    /// an address change made stale.
    /// Starts (or replaces) the sync job when a firewall needs one; true when it started one.
    fn start_sync(&mut self, home: Home, changed: bool) -> bool {
        let now = self.clock.instant();
        if let Some(job) = &self.job {
            if !home.differs_from(&job.home) {
                return false;
            }
            tracing::info!(
                "the address changed while a sync was under way; syncing toward {home} instead"
            );
            // The replaced job may have written already: its firewalls are read again.
            let replaced: Vec<FwKey> = job.firewalls.iter().cloned().collect();
            self.rt.resync.extend(replaced);
            self.abort_job();
        }
        let config = self.config.clone();
        let mut items = Vec::new();
        let mut firewalls = BTreeSet::new();
        for (index, fw) in config.firewalls.iter().enumerate() {
            if !self.needs_sync(fw, &home, changed, now) {
                continue;
            }
            let Some(provider) = self.clouds.get(&fw.cloud) else {
                tracing::error!("firewall {}: no cloud named {}", fw.id, fw.cloud);
                continue;
            };
            firewalls.insert(key(fw));
            items.push(Item {
                index,
                fw: fw.clone(),
                provider: provider.clone(),
            });
        }
        if items.is_empty() {
            return false;
        }
        self.rt.generation += 1;
        let generation = self.rt.generation;
        let deadline = after(now, self.job_deadline(&items));
        let mut facts = BTreeMap::new();
        let wall_now = self.clock.now();
        for item in &items {
            let known = self
                .state
                .cloud(&item.fw.cloud)
                .and_then(|c| c.known_instances.as_ref())
                .filter(|k| k.checked_at.saturating_add(INSTANCES_RECHECK.as_secs()) > wall_now)
                .map(|k| k.ids.clone());
            facts.insert(item.fw.cloud.clone(), CloudFacts { instances: known });
        }
        for k in &firewalls {
            self.rt.resync.remove(k);
        }
        let spec = job::Spec {
            generation,
            items,
            home,
            dry_run: self.dry_run,
            facts,
        };
        let handle = tokio::spawn(job::run(spec, self.events_tx.clone()));
        self.job = Some(RunningJob {
            generation,
            handle,
            home,
            firewalls,
            deadline,
        });
        true
    }

    /// The time a job may take: its requests at the cloud's pace, plus room for slow answers,
    /// retries and one quota wait. A job waiting for quota is not wedged.
    fn job_deadline(&self, items: &[Item]) -> Duration {
        let mut total = Duration::ZERO;
        let mut slack = Duration::ZERO;
        for item in items {
            total += item.provider.pace() * CALLS_PER_FIREWALL;
            slack = slack.max(item.provider.call_bound());
        }
        (total + 2 * slack).max(MIN_JOB_DEADLINE)
    }

    /// Abandons a job that outlived its deadline (its firewalls count as failed).
    pub(crate) fn expire_job(&mut self) {
        let Some(job) = &self.job else {
            return;
        };
        if self.clock.instant() < job.deadline {
            return;
        }
        tracing::error!("a firewall sync did not finish in time; abandoned");
        let keys: Vec<FwKey> = job.firewalls.iter().cloned().collect();
        for k in keys {
            self.rt.confirmed.remove(&k);
            self.rt
                .failed
                .insert(k, "the sync did not finish in time".into());
        }
        self.abort_job();
        self.note_sync_result(false);
    }

    fn note_sync_result(&mut self, ok: bool) {
        if ok {
            self.rt.sync_failures = 0;
            self.rt.sync_retry_at = None;
        } else {
            self.rt.sync_failures = self.rt.sync_failures.saturating_add(1);
            let delay = next_delay(self.config.daemon.interval, self.rt.sync_failures, 0.0);
            self.rt.sync_retry_at = Some(after(self.clock.instant(), delay));
        }
    }

    /// Folds one report of the sync job into the state. True when it ended the job (the cycle
    /// is complete).
    pub(crate) async fn absorb(&mut self, event: Event) -> bool {
        match event {
            Event::Done { generation } => {
                if self
                    .job
                    .as_ref()
                    .is_some_and(|j| j.generation == generation)
                {
                    self.job = None;
                    let ok = self.rt.failed.is_empty();
                    self.note_sync_result(ok);
                    let resolved = self.rt.last_check.as_ref().is_none_or(|c| c.resolved);
                    self.record_cycle(resolved, true).await;
                    return true;
                }
                false
            }
            Event::Firewall(report) => {
                let job::Report {
                    generation,
                    index,
                    fw,
                    home,
                    at,
                    result,
                    facts,
                    update,
                } = *report;
                self.absorb_firewall(index, &fw, home, at, result, facts);
                if let Some(update) = update {
                    self.report_firewall(update);
                }
                if let Err(e) = self.save_if_durable().await {
                    tracing::error!("cannot save state: {e}");
                }
                if self
                    .job
                    .as_ref()
                    .is_some_and(|j| j.generation != generation)
                {
                    tracing::debug!("report of a replaced sync job folded in");
                }
                false
            }
        }
    }

    fn absorb_firewall(
        &mut self,
        index: usize,
        fw: &FirewallConfig,
        home: Home,
        at: Instant,
        result: Result<FirewallOutcome, SyncError>,
        facts: CloudFacts,
    ) {
        let k = key(fw);
        let now = self.clock.now();
        if !self.dry_run {
            let cloud = self.state.cloud_mut(&fw.cloud);
            let had = cloud.known_instances.as_ref().map(|k| k.ids.clone());
            match facts.instances {
                Some(ids) if had.as_ref() != Some(&ids) => {
                    cloud.known_instances = Some(KnownInstances {
                        ids,
                        checked_at: now,
                    })
                }
                Some(_) => {}
                None => cloud.known_instances = None,
            }
        }
        let outcome = match result {
            Ok(FirewallOutcome::WouldUpdate(lines)) => {
                for l in &lines {
                    tracing::info!("dry run: would change {l}");
                }
                Ok(FirewallOutcome::WouldUpdate(lines))
            }
            Ok(outcome) => {
                if let FirewallOutcome::Updated(lines) = &outcome {
                    for l in lines {
                        tracing::info!("{l}");
                    }
                    self.forget_failure_streaks(fw);
                }
                self.rt.failed.remove(&k);
                self.rt.confirmed.insert(k.clone(), (at, home));
                self.confirm(fw, home, matches!(outcome, FirewallOutcome::Updated(_)));
                Ok(outcome)
            }
            Err(e) => {
                let e = self.app_error(index, fw, e);
                tracing::error!("{e}");
                self.rt.failed.insert(k.clone(), e.to_string());
                self.rt.confirmed.remove(&k);
                Err(e)
            }
        };
        self.rt.outcomes.push((index, outcome));
    }

    /// Records that `fw` was confirmed to hold `home` now (written, if `written`).
    pub(crate) fn confirm(&mut self, fw: &FirewallConfig, home: Home, written: bool) {
        let now = self.clock.now();
        let before = self.state.firewall(&fw.cloud, &fw.id).cloned();
        let tracked = |f: Family| fw.family.families().contains(&f);
        // Families unknown this time keep what was confirmed for them before.
        let confirmed = |f: Family| {
            if !tracked(f) {
                None
            } else {
                home.get(f)
                    .or_else(|| before.as_ref().and_then(|r| record_ip(r, f)))
            }
        };
        let record = FirewallRecord {
            ip: confirmed(Family::Ipv4),
            ip6: confirmed(Family::Ipv6),
            updated_at: if written {
                Some(now)
            } else {
                before.and_then(|r| r.updated_at)
            },
            verified_at: now,
        };
        self.state
            .cloud_mut(&fw.cloud)
            .firewalls
            .insert(fw.id.clone(), record);
    }

    /// The application error for a failed sync (unknown instances name the config key).
    fn app_error(&self, index: usize, fw: &FirewallConfig, e: SyncError) -> AppError {
        match e {
            SyncError::Provider {
                source: ProviderError::UnknownInstances { missing },
                ..
            } => AppError::UnknownInstances {
                path: self.config.path.clone(),
                index,
                template: fw.id.to_string(),
                missing,
            },
            e => AppError::Sync(e),
        }
    }

    /// After a rule change, probe failures of the instances behind the firewall are no evidence:
    /// the stale rule may have blocked the probes themselves. Their streaks start again.
    fn forget_failure_streaks(&mut self, fw: &FirewallConfig) {
        for p in self.config.probes.iter().filter(|p| p.cloud == fw.cloud) {
            if !fw.instances.contains(&p.instance) {
                continue;
            }
            if let Some(rec) = self
                .state
                .cloud_mut(&p.cloud)
                .instances
                .get_mut(&p.instance)
            {
                if rec.remediation.is_none() && rec.consecutive_failures > 0 {
                    tracing::debug!(instance = %p.instance, "firewall changed; failure streak reset");
                    rec.consecutive_failures = 0;
                }
            }
            self.rt
                .failing_since
                .remove(&(p.cloud.clone(), p.instance.clone()));
        }
    }

    /// A one-line summary of what keeps the cycle from being healthy, if anything.
    fn cycle_error(&self, resolved: bool) -> Option<String> {
        if !resolved {
            return Some("no usable public address".to_string());
        }
        self.rt.failed.iter().next().map(|((_, id), e)| {
            if e.contains(&id.0) {
                e.clone()
            } else {
                format!("firewall {id}: {e}")
            }
        })
    }

    /// Records the outcome of the cycle: a durable write when it changed, else the heartbeat;
    /// `report` also reports it to the watchers (once per cycle).
    async fn record_cycle(&mut self, resolved: bool, report: bool) {
        if report {
            self.report_cycle(self.cycle_error(resolved).as_deref());
        }
        if self.dry_run {
            return;
        }
        let now = self.clock.now();
        let error = self.cycle_error(resolved);
        let ok = error.is_none();
        let last_success_at = if ok {
            Some(now)
        } else {
            self.state
                .last_cycle
                .as_ref()
                .and_then(|c| c.last_success_at)
        };
        self.state.last_cycle = Some(CycleRecord {
            finished_at: now,
            ok,
            interval_secs: self.config.daemon.interval.as_secs().max(1),
            error,
            last_success_at,
        });
        if let Err(e) = self.save_if_durable().await {
            tracing::error!("cannot save state: {e}");
            return;
        }
        if let Err(e) = self.store.touch(self.clock.to_wall(now)) {
            // No file yet (nothing durable happened): write one, the heartbeat lives on it.
            tracing::debug!("heartbeat: {e}");
            if let Err(e) = self.save_if_changed().await {
                tracing::error!("cannot save state: {e}");
            }
        }
    }

    /// The sync half of the `STATUS=` line.
    pub fn sync_status(&self) -> String {
        let home = self.current_home();
        if let Some(e) = self.cycle_error(self.rt.last_check.as_ref().is_none_or(|c| c.resolved)) {
            return format!("degraded: {e}");
        }
        if home.is_empty() {
            return "waiting for a public address".to_string();
        }
        let n = self.config.firewalls.len();
        let plural = if n == 1 { "" } else { "s" };
        if self.job.is_some() {
            format!("syncing: {home} on {n} firewall{plural}")
        } else {
            format!("in sync: {home} on {n} firewall{plural}")
        }
    }
}
