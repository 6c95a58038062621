//! The engine: sync cycles (resolve the public address, bring every firewall to it, remember) and
//! probe rounds (check every instance, remediate what is really down), sharing one state.
//!
//! Frugal by design: when the address is unchanged and the last confirmation is younger than the
//! `reconcile` period, a sync cycle makes no API call at all; a probe round makes one
//! `getinstancelist` call for all instances.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, FirewallConfig};
use crate::exit::{AppError, Code};
use crate::net::Family;
use crate::probe::{self, RoundInput, RoundReport};
use crate::provider::{FirewallId, Instance, InstanceId, Provider, ProviderError};
use crate::resolver::{family_name, Resolution, ResolverSet};
use crate::state::{now_unix, CycleRecord, FirewallRecord, State, StateStore};
use crate::sync::{self, Home};

/// While a remediation is in flight its instance is polled this often (one `getinstancelist`
/// per poll): often enough to notice a stop within a minute, rare enough for a 6/min quota.
pub const REMEDIATION_POLL: Duration = Duration::from_secs(20);
/// File name prefix of an operator's reset request in the state directory (`dynwall reset`).
pub const RESET_PREFIX: &str = "reset.";

/// What one firewall did in a cycle.
#[derive(Debug)]
pub enum FirewallOutcome {
    /// Confirmed recently for this address; not read.
    Cached,
    /// Read and found in sync.
    InSync,
    /// Written and verified; the lines describe the change.
    Updated(Vec<String>),
    /// Dry run: the change that would have been written.
    WouldUpdate(Vec<String>),
}

/// The result of one cycle.
#[derive(Debug)]
pub struct CycleReport {
    /// One lookup per address family some firewall tracks (IPv4 when none does).
    pub resolutions: Vec<(Family, Resolution)>,
    /// The agreed addresses.
    pub home: Home,
    pub firewalls: Vec<(usize, Result<FirewallOutcome, AppError>)>,
}

impl CycleReport {
    /// The exit code of a `--once` run that ended with this cycle.
    pub fn code(&self) -> Code {
        let resolve = if self.resolutions.iter().all(|(_, r)| r.outcome.is_ok()) {
            Code::Ok
        } else {
            Code::Unavailable
        };
        self.firewalls
            .iter()
            .filter_map(|(_, r)| r.as_ref().err())
            .fold(resolve, |acc, e| acc.worst(e.code()))
    }

    /// True when every address was resolved and every firewall is confirmed in sync.
    pub fn ok(&self) -> bool {
        self.code() == Code::Ok
    }

    /// True when some source gave an acceptable answer (our own connectivity is fine).
    pub fn any_accepted(&self) -> bool {
        self.resolutions.iter().any(|(_, r)| r.any_accepted())
    }

    /// A one-line summary of the first failure, for state and status lines.
    pub fn error_summary(&self) -> Option<String> {
        for (f, r) in &self.resolutions {
            if let Err(e) = &r.outcome {
                return Some(format!("no usable public {} address: {e}", family_name(*f)));
            }
        }
        self.firewalls
            .iter()
            .find_map(|(_, r)| r.as_ref().err().map(|e| e.to_string()))
    }
}

/// The address a firewall record holds for `f`.
fn record_ip(rec: &FirewallRecord, f: Family) -> Option<IpAddr> {
    match f {
        Family::Ipv4 => rec.ip,
        Family::Ipv6 => rec.ip6,
    }
}

/// The long-lived context of sync cycles and probe rounds: config, sources, provider, state.
pub struct Engine {
    pub config: Arc<Config>,
    pub resolvers: ResolverSet,
    pub provider: Arc<dyn Provider>,
    pub store: StateStore,
    pub state: State,
    pub dry_run: bool,
    /// Instance ids confirmed to exist (checked before the first write of this process).
    known_instances: Option<BTreeSet<InstanceId>>,
    /// True when the state holds more than a new heartbeat since the last durable save.
    dirty: bool,
    /// Templates whose last sync attempt failed (their rule is not confirmed for the address).
    failed_firewalls: BTreeSet<FirewallId>,
    /// When the address was last resolved, and whether any source gave an accepted answer.
    last_resolution: Option<(Instant, bool)>,
    /// The last instance list, for probe addresses (they rarely change): refreshed when a
    /// decision needs the power state, or after a reconcile period.
    instance_cache: Option<(Instant, Vec<Instance>)>,
}

impl Engine {
    pub fn new(
        config: Arc<Config>,
        resolvers: ResolverSet,
        provider: Arc<dyn Provider>,
        store: StateStore,
        dry_run: bool,
    ) -> Result<Engine, AppError> {
        let state = store.load()?;
        Ok(Engine {
            config,
            resolvers,
            provider,
            store,
            state,
            dry_run,
            known_instances: None,
            dirty: false,
            failed_firewalls: BTreeSet::new(),
            last_resolution: None,
            instance_cache: None,
        })
    }

    /// Swaps in a reloaded configuration (SIGHUP); the state and lock stay.
    pub fn reconfigure(
        &mut self,
        config: Arc<Config>,
        resolvers: ResolverSet,
        provider: Arc<dyn Provider>,
    ) {
        // A template whose settings changed (keep list, port, instances) is re-read at the next
        // cycle instead of waiting out the reconcile period.
        for fw in &config.firewalls {
            if !self.config.firewalls.contains(fw) {
                if let Some(rec) = self.state.firewalls.get_mut(&fw.id.0) {
                    rec.verified_at = 0;
                }
            }
        }
        self.config = config;
        self.resolvers = resolvers;
        self.provider = provider;
        self.known_instances = None;
    }

    /// The addresses recorded as current.
    fn current_home(&self) -> Home {
        Home {
            v4: self.state.last_ip,
            v6: self.state.last_ip6,
        }
    }

    /// Runs one cycle and persists its outcome (a dry run keeps it in memory only).
    pub async fn cycle(&mut self) -> CycleReport {
        let mut report = CycleReport {
            resolutions: Vec::new(),
            home: Home::default(),
            firewalls: Vec::new(),
        };
        for family in self.config.tracked_families() {
            let resolution = self.resolvers.resolve_until_settled(family).await;
            match &resolution.outcome {
                Ok(ip) => report.home.set(family, Some(*ip)),
                Err(e) => tracing::warn!(
                    error = %e,
                    "no usable public {} address; changing nothing for it",
                    family_name(family)
                ),
            }
            report.resolutions.push((family, resolution));
        }
        self.last_resolution = Some((Instant::now(), report.any_accepted()));
        let previous = self.current_home();
        for f in [Family::Ipv4, Family::Ipv6] {
            let (Some(ip), old) = (report.home.get(f), previous.get(f)) else {
                continue;
            };
            if old == Some(ip) {
                continue;
            }
            match old {
                Some(old) => tracing::info!("public address changed: {old} → {ip}"),
                None => tracing::info!("public address is {ip}"),
            }
            // A dry run keeps its state in memory only (the probe gates need it).
            match f {
                Family::Ipv4 => self.state.last_ip = Some(ip),
                Family::Ipv6 => self.state.last_ip6 = Some(ip),
            }
            self.dirty = true;
        }
        let home = report.home;
        let firewalls = self.config.firewalls.clone();
        for (i, fw) in firewalls.iter().enumerate() {
            if !home.covers_any(fw) {
                // Nothing known for the families it tracks: leave it alone.
                continue;
            }
            let r = self.sync_one(i, fw, &home).await;
            match &r {
                Ok(_) => {
                    self.failed_firewalls.remove(&fw.id);
                }
                Err(e) => {
                    tracing::error!("firewall {}: {e}", fw.id);
                    self.failed_firewalls.insert(fw.id.clone());
                }
            }
            report.firewalls.push((i, r));
        }
        self.record(&report);
        report
    }

    /// True unless the firewall was confirmed for every known tracked address within the
    /// reconcile period.
    fn needs_read(&self, fw: &FirewallConfig, home: &Home) -> bool {
        let Some(rec) = self.state.firewalls.get(&fw.id.0) else {
            return true;
        };
        let same = fw
            .family
            .families()
            .iter()
            .all(|f| home.get(*f).is_none() || record_ip(rec, *f) == home.get(*f));
        let age = now_unix().saturating_sub(rec.verified_at);
        !same || Duration::from_secs(age) >= self.config.daemon.reconcile
    }

    async fn sync_one(
        &mut self,
        index: usize,
        fw: &FirewallConfig,
        home: &Home,
    ) -> Result<FirewallOutcome, AppError> {
        if !self.needs_read(fw, home) {
            return Ok(FirewallOutcome::Cached);
        }
        let (current, plan) = sync::read_and_plan(self.provider.as_ref(), fw, home).await?;
        let lines = plan.describe(fw);
        let outcome = if plan.is_noop() {
            tracing::debug!(template = %fw.id, "firewall in sync");
            FirewallOutcome::InSync
        } else if self.dry_run {
            for l in &lines {
                tracing::info!("dry run: would change {l}");
            }
            FirewallOutcome::WouldUpdate(lines)
        } else {
            self.check_instances(index, fw).await?;
            sync::apply(self.provider.as_ref(), fw, &current, &plan).await?;
            for l in &lines {
                tracing::info!("{l}");
            }
            self.forget_failure_streaks(fw);
            FirewallOutcome::Updated(lines)
        };
        if !matches!(outcome, FirewallOutcome::WouldUpdate(_)) {
            let now = now_unix();
            let updated_at = match &outcome {
                FirewallOutcome::Updated(_) => Some(now),
                _ => self
                    .state
                    .firewalls
                    .get(&fw.id.0)
                    .and_then(|r| r.updated_at),
            };
            // Families unknown this cycle keep what was confirmed for them before.
            let before = self.state.firewalls.get(&fw.id.0);
            let tracked = |f: Family| fw.family.families().contains(&f);
            let confirmed = |f: Family| {
                if !tracked(f) {
                    None
                } else {
                    home.get(f).or_else(|| before.and_then(|r| record_ip(r, f)))
                }
            };
            let record = FirewallRecord {
                ip: confirmed(Family::Ipv4),
                ip6: confirmed(Family::Ipv6),
                updated_at,
                verified_at: now,
            };
            self.state.firewalls.insert(fw.id.0.clone(), record);
            // Persist right after a confirmed write, so a crash cannot forget it.
            if !self.dry_run {
                self.store.save(&self.state)?;
                self.dirty = false;
            }
        }
        Ok(outcome)
    }

    /// After a rule change, probe failures of the instances behind the firewall are no evidence:
    /// the stale rule may have blocked the probes themselves. Their streaks start again.
    fn forget_failure_streaks(&mut self, fw: &FirewallConfig) {
        for id in &fw.instances {
            if let Some(rec) = self.state.instances.get_mut(&id.0) {
                if rec.remediation.is_none() && rec.consecutive_failures > 0 {
                    tracing::debug!(instance = %id, "firewall changed; failure streak reset");
                    rec.consecutive_failures = 0;
                }
            }
        }
    }

    /// Refuses a write that would unassign an instance the API does not know.
    async fn check_instances(&mut self, index: usize, fw: &FirewallConfig) -> Result<(), AppError> {
        if self.known_instances.is_none() {
            // The same read also refreshes the probe's instance cache.
            let list = self.list_instances().await?;
            self.known_instances = Some(list.into_iter().map(|i| i.id).collect());
        }
        let missing = self
            .known_instances
            .as_ref()
            .map(|known| sync::missing_instances(fw, known))
            .unwrap_or_default();
        if missing.is_empty() {
            return Ok(());
        }
        // Ask again next time: the list may have been read before an instance was created.
        self.known_instances = None;
        Err(AppError::UnknownInstances {
            path: self.config.path.clone(),
            index,
            template: fw.id.to_string(),
            missing,
        })
    }

    /// True when the config has probes.
    pub fn has_probes(&self) -> bool {
        !self.config.probes.is_empty()
    }

    /// True while some instance is in the middle of a stop/start.
    pub fn remediation_in_flight(&self) -> bool {
        self.config.probes.iter().any(|p| {
            self.state
                .instances
                .get(&p.instance.0)
                .is_some_and(|r| r.remediation.is_some())
        })
    }

    /// The pause before the next probe round: the shortest probe interval, shorter while a
    /// remediation is in flight.
    pub fn probe_pause(&self) -> Duration {
        let interval = self
            .config
            .probes
            .iter()
            .map(|p| p.interval)
            .min()
            .unwrap_or(crate::config::probe_defaults::INTERVAL);
        if self.remediation_in_flight() {
            interval.min(REMEDIATION_POLL)
        } else {
            interval
        }
    }

    /// The longest a remediation can take (stop, forcestop, start), for `--once`.
    pub fn remediation_limit(&self) -> Duration {
        self.config
            .probes
            .iter()
            .map(|p| 2 * p.stop_timeout + p.start_timeout)
            .max()
            .unwrap_or_default()
            + REMEDIATION_POLL
    }

    /// True when every firewall that lists `id` is confirmed in sync with the current address
    /// of every family it tracks.
    fn firewall_confirmed(&self, id: &InstanceId) -> bool {
        let current = self.current_home();
        self.config
            .firewalls
            .iter()
            .filter(|f| f.instances.contains(id))
            .all(|f| {
                let rec = self.state.firewalls.get(&f.id.0);
                !self.failed_firewalls.contains(&f.id)
                    && f.family.families().iter().all(|fam| {
                        current.get(*fam).is_some()
                            && rec.and_then(|r| record_ip(r, *fam)) == current.get(*fam)
                    })
            })
    }

    /// Applies the reset requests `dynwall reset` left in the state directory.
    fn take_reset_requests(&mut self) {
        let dir: PathBuf = self.store.dir().to_path_buf();
        for p in &self.config.probes {
            let file = dir.join(format!("{RESET_PREFIX}{}", p.instance));
            if file.exists() {
                if let Some(rec) = self.state.instances.get_mut(&p.instance.0) {
                    probe::reset(rec);
                }
                if let Err(e) = std::fs::remove_file(&file) {
                    tracing::warn!("cannot remove {}: {e}", file.display());
                }
                tracing::warn!(instance = %p.instance, "operator reset: remediation budget and incident cleared");
            }
        }
    }

    /// Reads the instance list (one call serves the whole round) and caches it for addresses.
    async fn list_instances(&mut self) -> Result<Vec<Instance>, ProviderError> {
        let r = self.provider.list_instances().await;
        if let Ok(list) = &r {
            self.instance_cache = Some((Instant::now(), list.clone()));
        }
        r
    }

    /// Runs one probe round over the probes that are due (`all`: every probe, for `--once`).
    pub async fn probe_round(&mut self, all: bool) -> Result<RoundReport, AppError> {
        let now = now_unix();
        self.take_reset_requests();
        let due: Vec<_> = self
            .config
            .probes
            .iter()
            .filter(|p| {
                let rec = self.state.instances.get(&p.instance.0);
                all || rec.is_none_or(|r| {
                    r.remediation.is_some()
                        || r.last_probe_at.is_none_or(|t| {
                            // Half a second of slack: a round that starts a hair early still counts.
                            now.saturating_add(1) >= t.saturating_add(p.interval.as_secs())
                        })
                })
            })
            .cloned()
            .collect();
        if due.is_empty() {
            return Ok(RoundReport::default());
        }
        // Probe first: a healthy fleet needs neither the API nor a fresh address lookup.
        let cached = self
            .instance_cache
            .as_ref()
            .filter(|(at, list)| {
                at.elapsed() < self.config.daemon.reconcile
                    && due
                        .iter()
                        .all(|p| p.address.is_some() || list.iter().any(|i| i.id == p.instance))
            })
            .map(|(_, list)| list.clone());
        let mut fresh = None;
        if cached.is_none() && due.iter().any(|p| p.address.is_none()) {
            fresh = Some(self.list_instances().await);
        }
        let known = cached.as_deref().or_else(|| {
            fresh
                .as_ref()
                .and_then(|r| r.as_ref().ok())
                .map(Vec::as_slice)
        });
        let healths = probe::probe_all(&due, known).await;
        let needed = probe::needs_power_state(&due, &healths, &self.state.instances);
        let list = match (needed, fresh) {
            (true, Some(r)) => r,
            (true, None) => self.list_instances().await,
            (false, Some(r)) => r,
            (false, None) => Ok(cached.unwrap_or_default()),
        };
        // Our own connectivity matters only for a decision: the last lookup if it is recent,
        // else a fresh one.
        let fresh_for = self.config.daemon.interval + self.probe_pause();
        let connectivity_ok = match self.last_resolution {
            Some((at, ok)) if at.elapsed() <= fresh_for || !needed => ok,
            _ => {
                let family = self.config.tracked_families()[0];
                let r = self.resolvers.resolve_until_settled(family).await;
                let ok = r.any_accepted();
                self.last_resolution = Some((Instant::now(), ok));
                ok
            }
        };
        let confirmed: BTreeSet<InstanceId> = due
            .iter()
            .map(|p| p.instance.clone())
            .filter(|id| self.firewall_confirmed(id))
            .collect();
        let firewall_in_sync = move |id: &InstanceId| confirmed.contains(id);
        let mut records = std::mem::take(&mut self.state.instances);
        let base = self.state.clone();
        let store = &self.store;
        let dry_run = self.dry_run;
        let mut persist = |recs: &probe::Records| -> Result<(), crate::state::StateError> {
            if dry_run {
                return Ok(());
            }
            let mut s = base.clone();
            s.instances = recs.clone();
            store.save(&s)
        };
        let result = probe::settle(
            &due,
            healths,
            self.provider.as_ref(),
            &mut records,
            RoundInput {
                instances: list.as_ref().map(|v| v.as_slice()),
                connectivity_ok,
                firewall_in_sync: &firewall_in_sync,
                dry_run,
                now,
            },
            &mut persist,
        )
        .await;
        self.state.instances = records;
        Ok(result?)
    }

    fn record(&mut self, report: &CycleReport) {
        let now = now_unix();
        let ok = report.ok();
        let changed = self.dirty || self.state.last_cycle.as_ref().map(|c| c.ok) != Some(ok);
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
            error: report.error_summary(),
            last_success_at,
        });
        let saved = if self.dry_run {
            Ok(())
        } else if changed {
            self.store.save(&self.state)
        } else {
            self.store.save_heartbeat(&self.state)
        };
        match saved {
            Ok(()) => self.dirty = false,
            Err(e) => tracing::error!("cannot save state: {e}"),
        }
    }
}
