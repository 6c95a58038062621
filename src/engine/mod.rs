//! The engine: IP checks, firewall sync jobs and probe rounds over named clouds, sharing one
//! state.
//!
//! - [`cycle`]: an IP check (resolve with quorum, no API cost) decides which firewalls need a
//!   sync and starts a [`job`] for them; the job's reports are folded into the state.
//! - [`round`]: a probe round probes the due instances, asks the API only when a decision could
//!   act or a remediation is in flight, and drives remediations.
//! - `drive`: the remediation executor (each step on disk, each stop in the owed-start journal,
//!   before it is sent) and owed starts.
//! - `gates`: invariant 6, and the fresh facts checked right before any power action.
//! - `soft`: the Salt soft step tried before a power ladder begins.
//!
//! Frugal by design: an unchanged address with a recent confirmation costs no API call; a
//! healthy fleet costs no API call; the state file is rewritten only when something durable
//! changed. Nothing is moved out of the state across an await: a round or a check cut off at
//! any await leaves it whole.

pub mod cycle;
mod drive;
mod gates;
pub mod job;
pub mod round;
mod soft;
mod watching;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::config::Config;
use crate::exit::AppError;
use crate::ids::{CloudName, FirewallId, InstanceId};
use crate::probe::decide::BACKOFF_CAP_SECS;
use crate::probe::record::secs;
use crate::probe::{NetProber, Prober};
use crate::provider::{Instance, Provider};
use crate::resolver::ResolverSet;
use crate::state::journal::Journal;
use crate::state::{State, StateStore};
use crate::sync::Home;

pub use cycle::{CheckReport, CycleReport};
pub use job::FirewallOutcome;

/// File name prefix of an operator's reset request in the state directory (`dynwall reset`).
pub const RESET_PREFIX: &str = "reset.";

/// The configured clouds, by name.
#[derive(Clone, Default)]
pub struct Clouds(BTreeMap<CloudName, Arc<dyn Provider>>);

impl Clouds {
    pub fn new() -> Clouds {
        Clouds::default()
    }

    pub fn with(mut self, name: CloudName, provider: Arc<dyn Provider>) -> Clouds {
        self.0.insert(name, provider);
        self
    }

    pub fn get(&self, name: &CloudName) -> Option<&Arc<dyn Provider>> {
        self.0.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&CloudName, &Arc<dyn Provider>)> {
        self.0.iter()
    }
}

pub(crate) type FwKey = (CloudName, FirewallId);
pub(crate) type InstKey = (CloudName, InstanceId);

/// The last IP check.
#[derive(Clone, Debug)]
pub(crate) struct LastCheck {
    pub at: Instant,
    /// Some source gave an accepted answer (our own connectivity is fine).
    pub any_accepted: bool,
    /// Every tracked family reached quorum.
    pub resolved: bool,
}

/// A sync job in flight.
pub(crate) struct RunningJob {
    pub generation: u64,
    pub handle: JoinHandle<()>,
    pub home: Home,
    pub firewalls: BTreeSet<FwKey>,
    pub deadline: Instant,
}

/// What the engine knows only while it runs (monotonic times; never persisted).
#[derive(Default)]
pub(crate) struct Runtime {
    pub last_check: Option<LastCheck>,
    /// When and for which home each firewall was last confirmed in this process.
    pub confirmed: HashMap<FwKey, (Instant, Home)>,
    /// Firewalls whose last sync failed, with why.
    pub failed: BTreeMap<FwKey, String>,
    /// Firewalls a probe round found not holding the address: synced at the next check.
    pub resync: BTreeSet<FwKey>,
    /// A probe round asked for an IP check and sync before it acts.
    pub check_requested: bool,
    pub sync_failures: u32,
    pub sync_retry_at: Option<Instant>,
    /// When each instance's current failure streak began (in this process).
    pub failing_since: HashMap<InstKey, Instant>,
    pub next_probe: HashMap<InstKey, Instant>,
    /// When an instance with a remediation in flight is polled next.
    pub next_poll: HashMap<InstKey, Instant>,
    /// The last instance list per cloud.
    pub lists: HashMap<CloudName, (Instant, Vec<Instance>)>,
    /// When an owed start was last sent.
    pub owed_sent: HashMap<InstKey, Instant>,
    /// Remediations whose overdue step was already reported.
    pub overdue_said: HashSet<InstKey>,
    /// Outcomes of the firewalls synced since the last check began (for `--once` reports).
    pub outcomes: Vec<(usize, Result<FirewallOutcome, AppError>)>,
    pub generation: u64,
}

/// Everything an engine is built from.
pub struct Setup {
    pub config: Arc<Config>,
    pub resolvers: ResolverSet,
    pub clouds: Clouds,
    pub store: StateStore,
    pub dry_run: bool,
    pub clock: Clock,
    pub prober: Arc<dyn Prober>,
}

impl Setup {
    /// The setup of a real run: the system clock and network probes.
    pub fn new(
        config: Arc<Config>,
        resolvers: ResolverSet,
        clouds: Clouds,
        store: StateStore,
        dry_run: bool,
    ) -> Setup {
        Setup {
            config,
            resolvers,
            clouds,
            store,
            dry_run,
            clock: Clock::system(),
            prober: Arc::new(NetProber),
        }
    }
}

/// The long-lived context of IP checks, sync jobs and probe rounds.
pub struct Engine {
    pub config: Arc<Config>,
    pub resolvers: ResolverSet,
    pub clouds: Clouds,
    pub store: StateStore,
    pub state: State,
    pub journal: Journal,
    pub dry_run: bool,
    pub clock: Clock,
    prober: Arc<dyn Prober>,
    /// The Salt soft step's client, when a `[salt]` table is configured.
    soft: Option<Arc<dyn crate::salt::SoftCure>>,
    /// The durable part and the whole of the state as last saved.
    saved: (State, State),
    pub(crate) rt: Runtime,
    pub(crate) job: Option<RunningJob>,
    events_tx: UnboundedSender<job::Event>,
    events_rx: UnboundedReceiver<job::Event>,
    /// Metrics and notifiers (nothing until [`Engine::set_watch`]).
    pub watch: crate::watch::Watch,
}

impl Engine {
    /// Loads the state (migrating an older file, clamping times that lie in the future) and
    /// the owed-start journal.
    pub fn new(setup: Setup) -> Result<Engine, AppError> {
        let Setup {
            config,
            resolvers,
            clouds,
            store,
            dry_run,
            clock,
            prober,
        } = setup;
        let mut state = store.load(&clock)?;
        clamp(&mut state, &config, clock.now());
        let journal = Journal::load(store.dir(), &clock);
        // What was said about the sources in earlier runs is not said again.
        resolvers.set_memory(state.sources.clone());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Ok(Engine {
            config,
            resolvers,
            clouds,
            saved: (state.durable(), state.clone()),
            state,
            store,
            journal,
            dry_run,
            clock,
            prober,
            soft: None,
            rt: Runtime::default(),
            job: None,
            events_tx,
            events_rx,
            watch: crate::watch::Watch::disabled(),
        })
    }

    /// Swaps in a reloaded configuration (SIGHUP); the state, the lock and the clients of
    /// unchanged connections stay (the caller reuses them in `clouds`).
    pub fn reconfigure(&mut self, config: Arc<Config>, resolvers: ResolverSet, clouds: Clouds) {
        // A firewall whose settings changed (keep list, port, instances) is read at the next
        // check instead of waiting out the reconcile period.
        for fw in &config.firewalls {
            if !self.config.firewalls.contains(fw) {
                let key = (fw.cloud.clone(), fw.id.clone());
                self.rt.confirmed.remove(&key);
                if let Some(rec) = self.state.cloud_mut(&fw.cloud).firewalls.get_mut(&fw.id) {
                    rec.verified_at = 0;
                }
            }
        }
        self.abort_job();
        resolvers.set_memory(self.resolvers.memory());
        self.meter(&clouds);
        self.config = config;
        self.resolvers = resolvers;
        self.clouds = clouds;
        self.rt.lists.clear();
        self.rt.sync_failures = 0;
        self.rt.sync_retry_at = None;
    }

    /// The addresses recorded as current.
    pub fn current_home(&self) -> Home {
        Home {
            v4: self.state.last_ip,
            v6: self.state.last_ip6,
        }
    }

    /// True when the config has probes.
    pub fn has_probes(&self) -> bool {
        !self.config.probes.is_empty()
    }

    /// True while some probed instance is in the middle of a remediation.
    pub fn remediation_in_flight(&self) -> bool {
        self.config.probes.iter().any(|p| {
            self.state
                .instance(&p.cloud, &p.instance)
                .is_some_and(|r| r.remediation.is_some())
        })
    }

    /// True while a sync job is running.
    pub fn sync_in_flight(&self) -> bool {
        self.job.is_some()
    }

    /// True when a probe round asked for an IP check (and sync) before it acts.
    pub fn check_requested(&self) -> bool {
        self.rt.check_requested
    }

    /// The next report of the running sync job; pending forever when there is none.
    pub(crate) async fn next_event(&mut self) -> job::Event {
        match self.events_rx.recv().await {
            Some(e) => e,
            // The engine holds a sender: the channel never closes while it lives.
            None => std::future::pending().await,
        }
    }

    pub(crate) fn abort_job(&mut self) {
        if let Some(job) = self.job.take() {
            job.handle.abort();
        }
    }

    /// Saves the state when something durable changed since the last save (never in a dry run).
    pub(crate) async fn save_if_durable(&mut self) -> Result<(), AppError> {
        if self.dry_run {
            return Ok(());
        }
        let durable = self.state.durable();
        if durable == self.saved.0 {
            return Ok(());
        }
        self.store.save(&self.state, &self.clock).await?;
        self.saved = (durable, self.state.clone());
        Ok(())
    }

    /// Saves the state now (never in a dry run): before a power request.
    pub(crate) async fn save_now(&mut self) -> Result<(), AppError> {
        if self.dry_run {
            return Ok(());
        }
        self.store.save(&self.state, &self.clock).await?;
        self.saved = (self.state.durable(), self.state.clone());
        Ok(())
    }

    /// Saves the state when anything but the heartbeat changed since the last save (never in a
    /// dry run): the heartbeat lives in the file's modification time.
    pub(crate) async fn save_if_changed(&mut self) -> Result<(), AppError> {
        if self.dry_run || self.state.without_heartbeat() == self.saved.1.without_heartbeat() {
            return Ok(());
        }
        self.store.save(&self.state, &self.clock).await?;
        self.saved = (self.state.durable(), self.state.clone());
        Ok(())
    }

    /// Ends the engine's work: stops the sync job and saves what is not on disk yet.
    pub async fn shutdown(&mut self) {
        self.abort_job();
        if let Err(e) = self.save_if_changed().await {
            tracing::error!("cannot save state: {e}");
        }
    }

    /// Applies the reset requests `dynwall reset` left in the state directory.
    pub(crate) async fn take_reset_requests(&mut self) {
        let dir = self.store.dir().to_path_buf();
        let now = self.clock.now();
        let probes = self.config.probes.clone();
        for p in &probes {
            let file = dir.join(format!("{RESET_PREFIX}{}", p.instance));
            if !file.exists() {
                continue;
            }
            crate::probe::reset(self.state.instance_mut(&p.cloud, &p.instance));
            if !self.dry_run {
                if let Err(e) = self
                    .journal
                    .forget(&p.cloud, &p.instance, now, &self.clock)
                    .await
                {
                    tracing::warn!("cannot update the owed-start journal: {e}");
                }
            }
            if let Err(e) = std::fs::remove_file(&file) {
                tracing::warn!("cannot remove {}: {e}", file.display());
            }
            tracing::warn!(instance = %p.instance,
                "operator reset: remediation budget, incident and operator mark cleared");
        }
    }
}

impl Drop for Engine {
    /// The sync job dies with the engine, as it would with the process.
    fn drop(&mut self) {
        self.abort_job();
    }
}

/// Clamps times of a freshly loaded state that lie in the future (the wall clock was stepped
/// back between runs, or the file was written by a machine whose clock ran ahead).
fn clamp(state: &mut State, config: &Config, now: u64) {
    for p in &config.probes {
        let cap = BACKOFF_CAP_SECS.min(secs(p.window));
        if let Some(rec) = state
            .clouds
            .get_mut(&p.cloud)
            .and_then(|c| c.instances.get_mut(&p.instance))
        {
            rec.clamp(now, p.grace, cap);
        }
    }
    for cloud in state.clouds.values_mut() {
        for f in cloud.firewalls.values_mut() {
            f.verified_at = f.verified_at.min(now);
            f.updated_at = f.updated_at.map(|t| t.min(now));
        }
        if let Some(k) = cloud.known_instances.as_mut() {
            k.checked_at = k.checked_at.min(now);
        }
    }
    if let Some(c) = state.last_cycle.as_mut() {
        c.finished_at = c.finished_at.min(now);
        c.last_success_at = c.last_success_at.map(|t| t.min(now));
    }
}

/// `d` from now, as an instant; saturates instead of overflowing.
pub(crate) fn after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or(at + Duration::from_secs(366 * 86_400))
}

#[cfg(test)]
mod tests;
