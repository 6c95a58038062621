//! One sync cycle: resolve the public address, bring every configured firewall to it, remember.
//!
//! Frugal by design: when the address is unchanged and the last confirmation is younger than the
//! `reconcile` period, a cycle makes no API call at all.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, FirewallConfig};
use crate::exit::{AppError, Code};
use crate::provider::{InstanceId, Provider};
use crate::resolver::{Resolution, ResolverSet};
use crate::state::{now_unix, CycleRecord, FirewallRecord, State, StateStore};
use crate::sync;

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
    pub resolution: Resolution,
    /// The agreed address, when quorum was reached.
    pub ip: Option<IpAddr>,
    pub firewalls: Vec<(usize, Result<FirewallOutcome, AppError>)>,
}

impl CycleReport {
    /// The exit code of a `--once` run that ended with this cycle.
    pub fn code(&self) -> Code {
        let resolve = match &self.resolution.outcome {
            Ok(_) => Code::Ok,
            Err(_) => Code::Unavailable,
        };
        self.firewalls
            .iter()
            .filter_map(|(_, r)| r.as_ref().err())
            .fold(resolve, |acc, e| acc.worst(e.code()))
    }

    /// True when the address was resolved and every firewall is confirmed in sync.
    pub fn ok(&self) -> bool {
        self.code() == Code::Ok
    }

    /// A one-line summary of the first failure, for state and status lines.
    pub fn error_summary(&self) -> Option<String> {
        if let Err(e) = &self.resolution.outcome {
            return Some(format!("no usable public address: {e}"));
        }
        self.firewalls
            .iter()
            .find_map(|(_, r)| r.as_ref().err().map(|e| e.to_string()))
    }
}

/// The long-lived sync context: config, sources, provider and state.
pub struct Syncer {
    pub config: Arc<Config>,
    pub resolvers: ResolverSet,
    pub provider: Arc<dyn Provider>,
    pub store: StateStore,
    pub state: State,
    pub dry_run: bool,
    /// Instance ids confirmed to exist (checked before the first write of this process).
    known_instances: Option<BTreeSet<InstanceId>>,
}

impl Syncer {
    pub fn new(
        config: Arc<Config>,
        resolvers: ResolverSet,
        provider: Arc<dyn Provider>,
        store: StateStore,
        dry_run: bool,
    ) -> Result<Syncer, AppError> {
        let state = store.load()?;
        Ok(Syncer {
            config,
            resolvers,
            provider,
            store,
            state,
            dry_run,
            known_instances: None,
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
                if let Some(rec) = self.state.firewalls.get_mut(&fw.template.0) {
                    rec.verified_at = 0;
                }
            }
        }
        self.config = config;
        self.resolvers = resolvers;
        self.provider = provider;
        self.known_instances = None;
    }

    /// Runs one cycle and persists its outcome (unless dry-run).
    pub async fn cycle(&mut self) -> CycleReport {
        let resolution = self.resolvers.resolve_until_settled().await;
        let ip = resolution.outcome.as_ref().ok().copied();
        let mut report = CycleReport {
            resolution,
            ip,
            firewalls: Vec::new(),
        };
        match ip {
            None => {
                if let Err(e) = &report.resolution.outcome {
                    tracing::warn!(error = %e, "no usable public address; changing nothing");
                }
            }
            Some(ip) => {
                if self.state.last_ip != Some(ip) {
                    match self.state.last_ip {
                        Some(old) => tracing::info!("public address changed: {old} → {ip}"),
                        None => tracing::info!("public address is {ip}"),
                    }
                    if !self.dry_run {
                        self.state.last_ip = Some(ip);
                    }
                }
                let firewalls = self.config.firewalls.clone();
                for (i, fw) in firewalls.iter().enumerate() {
                    let r = self.sync_one(i, fw, ip).await;
                    if let Err(e) = &r {
                        tracing::error!("firewall {}: {e}", fw.template);
                    }
                    report.firewalls.push((i, r));
                }
            }
        }
        self.record(&report);
        report
    }

    fn needs_read(&self, fw: &FirewallConfig, ip: IpAddr) -> bool {
        match self.state.firewalls.get(&fw.template.0) {
            Some(rec) if rec.ip == ip => {
                let age = now_unix().saturating_sub(rec.verified_at);
                Duration::from_secs(age) >= self.config.daemon.reconcile
            }
            _ => true,
        }
    }

    async fn sync_one(
        &mut self,
        index: usize,
        fw: &FirewallConfig,
        ip: IpAddr,
    ) -> Result<FirewallOutcome, AppError> {
        if !self.needs_read(fw, ip) {
            return Ok(FirewallOutcome::Cached);
        }
        let (current, plan) = sync::read_and_plan(self.provider.as_ref(), fw, ip).await?;
        let lines = plan.describe(fw);
        let outcome = if plan.is_noop() {
            tracing::debug!(template = %fw.template, "firewall in sync");
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
            FirewallOutcome::Updated(lines)
        };
        if !self.dry_run {
            let now = now_unix();
            let updated_at = match &outcome {
                FirewallOutcome::Updated(_) => Some(now),
                _ => self
                    .state
                    .firewalls
                    .get(&fw.template.0)
                    .and_then(|r| r.updated_at),
            };
            self.state.firewalls.insert(
                fw.template.0.clone(),
                FirewallRecord {
                    ip,
                    updated_at,
                    verified_at: now,
                },
            );
            // Persist right after a confirmed write, so a crash cannot forget it.
            self.store.save(&self.state)?;
        }
        Ok(outcome)
    }

    /// Refuses a write that would unassign an instance the API does not know.
    async fn check_instances(&mut self, index: usize, fw: &FirewallConfig) -> Result<(), AppError> {
        if self.known_instances.is_none() {
            let list = self.provider.list_instances().await?;
            self.known_instances = Some(list.into_iter().map(|i| i.id).collect());
        }
        let known = self.known_instances.as_ref();
        let missing: Vec<InstanceId> = fw
            .instances
            .iter()
            .filter(|i| !known.is_some_and(|k| k.contains(*i)))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        // Ask again next time: the list may have been read before an instance was created.
        self.known_instances = None;
        Err(AppError::UnknownInstances {
            path: self.config.path.clone(),
            index,
            template: fw.template.to_string(),
            missing,
        })
    }

    fn record(&mut self, report: &CycleReport) {
        if self.dry_run {
            return;
        }
        let now = now_unix();
        let ok = report.ok();
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
        if let Err(e) = self.store.save(&self.state) {
            tracing::error!("cannot save state: {e}");
        }
    }
}
