//! The engine under paused time against a scripted cloud, scripted IP sources and a prober that
//! sees what a real one would: an instance answers when it runs, its guest is responsive and a
//! firewall that admits it holds our true public address.

mod gates;
mod quota;
mod remediation;
mod soft;
mod time;
mod watching;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{Clouds, Engine, Setup};
use crate::clock::Clock;
use crate::config::{Config, FirewallConfig, ProbeConfig};
use crate::ids::{CloudName, InstanceId};
use crate::probe::{Health, ProbeFailure, Prober, RoundReport};
use crate::provider::{
    CloudFacts, FirewallSnapshot, Firewalls, Instance, Ladder, OwnedRule, OwnedSource, Plan, Power,
    PowerAction, PowerOutcome, PowerState, Private, Provider, ProviderError, RuleHandle,
};
use crate::resolver::{Resolver, ResolverSet, SourceError};
use crate::state::StateStore;

pub const FW: &str = "12836";
pub const WEB: &str = "616516";
pub const DB: &str = "616517";
pub const APP: &str = "616518";
pub const MAIL: &str = "616519";
pub const OLD: &str = "81.2.69.160";
pub const NEW: &str = "81.2.69.161";
pub const NEWER: &str = "81.2.69.162";
pub const POLL: Duration = Duration::from_secs(20);

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A request the scripted cloud saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Read(String),
    Apply(String),
    List,
    Power(String, PowerAction),
}

/// One scripted instance.
#[derive(Clone, Debug)]
pub struct Inst {
    pub power: PowerState,
    /// False while the guest is hung (probes time out).
    pub responsive: bool,
    /// Whether a stop (forcestop, start) actually changes the power state.
    pub stop_works: bool,
    pub force_works: bool,
    pub start_works: bool,
    /// Absent from the instance list (deleted behind our back).
    pub gone: bool,
}

impl Default for Inst {
    fn default() -> Self {
        Inst {
            power: PowerState::Running,
            responsive: true,
            stop_works: true,
            force_works: true,
            start_works: true,
            gone: false,
        }
    }
}

#[derive(Default)]
pub struct Inner {
    /// Owned sources per firewall, as written.
    pub owned: BTreeMap<String, Vec<String>>,
    pub instances: BTreeMap<String, Inst>,
    pub calls: Vec<Call>,
    /// The next this many power requests fail with 503 (after reaching the "API").
    pub fail_power: u32,
    /// Writes wait while this is set (a quota wait), and `queue_delay` reports it.
    pub writes_held: bool,
    pub queue_delay: Duration,
    /// Power requests take this long to answer.
    pub power_delay: Duration,
    /// Our true public address, as the instances see our probes come from.
    pub client_ip: Option<IpAddr>,
    /// Probes sent per instance.
    pub probes: BTreeMap<String, usize>,
}

/// A cloud in memory: one firewall (`FW`, assigned to every instance) and scripted instances.
pub struct FakeCloud {
    pub inner: Mutex<Inner>,
    released: tokio::sync::Notify,
}

impl FakeCloud {
    pub fn new(instances: &[&str], owned: &[&str]) -> Arc<FakeCloud> {
        let mut inner = Inner::default();
        inner
            .owned
            .insert(FW.into(), owned.iter().map(|s| s.to_string()).collect());
        for i in instances {
            inner.instances.insert(i.to_string(), Inst::default());
        }
        inner.client_ip = owned.first().map(|s| ip(s));
        Arc::new(FakeCloud {
            inner: Mutex::new(inner),
            released: tokio::sync::Notify::new(),
        })
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn count(&self, f: impl Fn(&Call) -> bool) -> usize {
        self.lock().calls.iter().filter(|c| f(c)).count()
    }

    pub fn lists(&self) -> usize {
        self.count(|c| *c == Call::List)
    }

    pub fn applies(&self) -> usize {
        self.count(|c| matches!(c, Call::Apply(_)))
    }

    /// Every power request, in order.
    pub fn actions(&self, id: &str) -> Vec<PowerAction> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Power(i, a) if i == id => Some(a),
                _ => None,
            })
            .collect()
    }

    pub fn inst(&self, id: &str, f: impl FnOnce(&mut Inst)) {
        f(self.lock().instances.get_mut(id).unwrap());
    }

    pub fn power_of(&self, id: &str) -> PowerState {
        self.lock().instances[id].power.clone()
    }

    pub fn owned(&self) -> Vec<String> {
        self.lock().owned[FW].clone()
    }

    pub fn set_owned(&self, owned: &[&str]) {
        self.lock()
            .owned
            .insert(FW.into(), owned.iter().map(|s| s.to_string()).collect());
    }

    pub fn probes(&self, id: &str) -> usize {
        self.lock().probes.get(id).copied().unwrap_or(0)
    }

    /// Lets held writes through.
    pub fn release_writes(&self) {
        let mut inner = self.lock();
        inner.writes_held = false;
        inner.queue_delay = Duration::ZERO;
        drop(inner);
        self.released.notify_waiters();
    }
}

#[async_trait]
impl Firewalls for FakeCloud {
    async fn read_firewall(&self, fw: &FirewallConfig) -> Result<FirewallSnapshot, ProviderError> {
        let mut inner = self.lock();
        inner.calls.push(Call::Read(fw.id.0.clone()));
        let owned = inner.owned.get(&fw.id.0).cloned().unwrap_or_default();
        Ok(FirewallSnapshot {
            id: fw.id.clone(),
            name: Some("home-ssh".into()),
            owned: owned
                .iter()
                .enumerate()
                .map(|(i, s)| OwnedRule {
                    handle: RuleHandle(i.to_string()),
                    source: s
                        .parse()
                        .map_or_else(|_| OwnedSource::Unreadable(s.clone()), OwnedSource::Net),
                })
                .collect(),
            others: vec!["in https TCP 443 0.0.0.0/0".into()],
            inbound: owned.len() + 1,
            outbound: 0,
            unwritable: None,
            private: Private(Arc::new(())),
        })
    }

    async fn apply(
        &self,
        fw: &FirewallConfig,
        _: &FirewallSnapshot,
        plan: &Plan,
        _: &mut CloudFacts,
    ) -> Result<(), ProviderError> {
        loop {
            let waiter = self.released.notified();
            if !self.lock().writes_held {
                break;
            }
            waiter.await;
        }
        let mut inner = self.lock();
        inner.calls.push(Call::Apply(fw.id.0.clone()));
        let sources = plan.wanted().iter().map(ToString::to_string).collect();
        inner.owned.insert(fw.id.0.clone(), sources);
        Ok(())
    }
}

#[async_trait]
impl Power for FakeCloud {
    async fn list_instances(&self) -> Result<Vec<Instance>, ProviderError> {
        let mut inner = self.lock();
        inner.calls.push(Call::List);
        Ok(inner
            .instances
            .iter()
            .filter(|(_, i)| !i.gone)
            .map(|(id, i)| Instance {
                id: InstanceId(id.clone()),
                name: format!("vm-{id}"),
                power: i.power.clone(),
                ip: None,
                firewalls: Vec::new(),
            })
            .collect())
    }

    async fn power(
        &self,
        id: &InstanceId,
        action: PowerAction,
    ) -> Result<PowerOutcome, ProviderError> {
        let delay = self.lock().power_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut inner = self.lock();
        if inner.fail_power > 0 {
            inner.fail_power -= 1;
            return Err(ProviderError::Unavailable {
                op: "statusupdate",
                status: 503,
            });
        }
        inner.calls.push(Call::Power(id.0.clone(), action));
        let Some(inst) = inner.instances.get_mut(&id.0) else {
            return Err(ProviderError::NotFound {
                op: "statusupdate",
                what: format!("instance {id}"),
            });
        };
        let (target, works) = match action {
            PowerAction::Stop => (PowerState::Stopped, inst.stop_works),
            PowerAction::ForceStop => (PowerState::Stopped, inst.force_works),
            PowerAction::Start | PowerAction::Reboot => (PowerState::Running, inst.start_works),
        };
        if inst.power == target {
            return Ok(PowerOutcome::AlreadyInState);
        }
        if works {
            inst.power = target;
            if inst.power == PowerState::Stopped {
                // A cold boot cures a hung guest.
                inst.responsive = true;
            }
        }
        Ok(PowerOutcome::Accepted)
    }

    fn ladder(&self, _: &ProbeConfig) -> Ladder {
        Ladder::STOP_FORCESTOP_START
    }

    fn poll_interval(&self) -> Duration {
        POLL
    }
}

impl Provider for FakeCloud {
    fn queue_delay(&self) -> Duration {
        self.lock().queue_delay
    }

    fn pace(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn call_bound(&self) -> Duration {
        Duration::from_secs(60)
    }
}

/// Probes as the network would answer them.
pub struct FakeProber(pub Arc<FakeCloud>);

#[async_trait]
impl Prober for FakeProber {
    async fn probe(&self, cfg: &ProbeConfig, _: Option<SocketAddr>) -> Health {
        let mut inner = self.0.lock();
        *inner.probes.entry(cfg.instance.0.clone()).or_default() += 1;
        let admitted = inner.client_ip.is_some_and(|me| {
            inner.owned[FW]
                .iter()
                .any(|s| s.parse::<crate::net::IpNet>().is_ok_and(|n| n.addr() == me))
        });
        match inner.instances.get(&cfg.instance.0) {
            Some(i) if i.power == PowerState::Running && i.responsive && admitted => Health::Up,
            Some(i) if i.power == PowerState::Running => {
                Health::Down(ProbeFailure::Timeout(cfg.timeout))
            }
            _ => Health::Down(ProbeFailure::Refused),
        }
    }
}

/// An IP source whose answer the test sets.
pub struct FakeSource {
    label: String,
    pub answer: Mutex<Option<IpAddr>>,
    pub hits: AtomicU64,
}

#[async_trait]
impl Resolver for FakeSource {
    fn label(&self) -> &str {
        &self.label
    }

    fn family(&self) -> crate::net::Family {
        crate::net::Family::Ipv4
    }

    async fn lookup(&self) -> Result<IpAddr, SourceError> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        (*self.answer.lock().unwrap()).ok_or(SourceError::Timeout {
            after: Duration::from_secs(1),
        })
    }
}

struct Shared(Arc<FakeSource>);

#[async_trait]
impl Resolver for Shared {
    fn label(&self) -> &str {
        self.0.label()
    }
    fn family(&self) -> crate::net::Family {
        self.0.family()
    }
    async fn lookup(&self) -> Result<IpAddr, SourceError> {
        self.0.lookup().await
    }
}

/// A probe table with fast test timings.
pub fn probe_toml(id: &str) -> String {
    format!(
        "[[probe]]\ninstance = {id}\naddress = \"127.0.0.1:22\"\ninterval = \"30s\"\ntimeout = \"5s\"\n\
         failures = 3\nstop_timeout = \"5m\"\nstart_timeout = \"5m\"\ngrace = \"5m\"\n"
    )
}

/// The test world: a scripted cloud, two IP sources (quorum 2), a state dir, an engine.
pub struct World {
    pub cloud: Arc<FakeCloud>,
    pub sources: [Arc<FakeSource>; 2],
    /// The wall clock at `t0`; it runs with the monotonic clock unless a test steps it.
    pub wall: Arc<AtomicU64>,
    pub t0: tokio::time::Instant,
    pub dir: tempfile::TempDir,
    pub config: Arc<Config>,
    engine: Option<Engine>,
}

impl World {
    /// A world whose firewall holds `OLD` and whose sources agree on it; `probes` are the
    /// instances probed (all assigned to the firewall).
    pub async fn new(probes: &[&str]) -> World {
        World::with(probes, "60s", "").await
    }

    /// Like [`World::new`], with `interval` as the IP check period and `extra` appended to
    /// the firewall table.
    pub async fn with(probes: &[&str], interval: &str, extra: &str) -> World {
        let cloud = FakeCloud::new(&[WEB, DB, APP, MAIL], &[OLD]);
        let dir = tempfile::tempdir().unwrap();
        let mut text = format!(
            "[daemon]\ninterval = \"{interval}\"\nreconcile = \"15m\"\nstate_dir = \"{}\"\n\
             [indigo]\napi_key = \"k\"\napi_secret = \"s\"\n\
             [[firewall]]\ntemplate = {FW}\ninstances = [{WEB}, {DB}, {APP}, {MAIL}]\n{extra}\n",
            dir.path().display()
        );
        for p in probes {
            text += &probe_toml(p);
        }
        let config = Arc::new(
            Config::parse(&text, &dir.path().join("dynwall.toml"), &HashMap::new()).unwrap(),
        );
        let sources = [0, 1].map(|i| {
            Arc::new(FakeSource {
                label: format!("source-{i}"),
                answer: Mutex::new(Some(ip(OLD))),
                hits: AtomicU64::new(0),
            })
        });
        let wall = Arc::new(AtomicU64::new(1_800_000_000));
        let t0 = tokio::time::Instant::now();
        let engine = build(&cloud, &sources, clock(&wall, t0), &config, dir.path());
        World {
            cloud,
            sources,
            wall,
            t0,
            dir,
            config,
            engine: Some(engine),
        }
    }

    pub fn eng(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    pub fn eng_mut(&mut self) -> &mut Engine {
        self.engine.as_mut().unwrap()
    }

    /// Replaces the engine by a new one on the same state directory, as after a crash: nothing
    /// is saved beyond what the old one wrote, its tasks end with it.
    pub fn restart(&mut self) {
        if let Some(old) = self.engine.take() {
            if let Some(job) = &old.job {
                job.handle.abort();
            }
        }
        let engine = build(
            &self.cloud,
            &self.sources,
            clock(&self.wall, self.t0),
            &self.config,
            self.dir.path(),
        );
        self.engine = Some(engine);
    }

    /// Every source now answers `ip` (`None`: fails).
    pub fn set_ip(&self, ip_text: Option<&str>) {
        for s in &self.sources {
            *s.answer.lock().unwrap() = ip_text.map(ip);
        }
    }

    /// Our true address changes (what the instances see) and the sources say so.
    pub fn move_home(&self, to: &str) {
        self.set_ip(Some(to));
        self.cloud.lock().client_ip = Some(ip(to));
    }

    /// An IP check and its sync to the end.
    pub async fn cycle(&mut self) {
        self.eng_mut().cycle().await;
    }

    /// A probe round over every probe.
    pub async fn round(&mut self) -> RoundReport {
        self.eng_mut().probe_round(true).await.unwrap()
    }

    /// `n` rounds `every` apart.
    pub async fn rounds(&mut self, n: usize, every: Duration) -> Vec<RoundReport> {
        let mut out = Vec::new();
        for _ in 0..n {
            tokio::time::advance(every).await;
            out.push(self.round().await);
        }
        out
    }

    pub fn record(&self, id: &str) -> crate::probe::InstanceRecord {
        self.eng()
            .state
            .instance(&CloudName::indigo(), &InstanceId(id.into()))
            .cloned()
            .unwrap_or_default()
    }

    /// The state file as it is on disk.
    pub fn on_disk(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.path().join("state.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Steps the wall clock by `delta` seconds (the monotonic clock does not move).
    pub fn step_wall(&self, delta: i64) {
        let now = self.wall.load(Ordering::SeqCst);
        self.wall
            .store(now.saturating_add_signed(delta), Ordering::SeqCst);
    }
}

fn resolvers(sources: &[Arc<FakeSource>; 2]) -> ResolverSet {
    let boxed: Vec<Box<dyn Resolver>> = sources
        .iter()
        .map(|s| Box::new(Shared(s.clone())) as Box<dyn Resolver>)
        .collect();
    ResolverSet::new(boxed, 2, Duration::from_secs(2))
}

/// A clock whose wall time is `wall` at `t0` and runs on with tokio's clock.
fn clock(wall: &Arc<AtomicU64>, t0: tokio::time::Instant) -> Clock {
    let w = wall.clone();
    Clock::with_wall(Arc::new(move || {
        w.load(Ordering::SeqCst) + t0.elapsed().as_secs()
    }))
}

fn build(
    cloud: &Arc<FakeCloud>,
    sources: &[Arc<FakeSource>; 2],
    clock: Clock,
    config: &Arc<Config>,
    dir: &Path,
) -> Engine {
    let store = StateStore::open(dir).unwrap();
    let provider: Arc<dyn Provider> = cloud.clone();
    Engine::new(Setup {
        config: config.clone(),
        resolvers: resolvers(sources),
        clouds: Clouds::new().with(CloudName::indigo(), provider),
        store,
        dry_run: false,
        clock,
        prober: Arc::new(FakeProber(cloud.clone())),
    })
    .unwrap()
}
