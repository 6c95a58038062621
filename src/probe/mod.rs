//! Instance health: probe every configured instance, decide, and drive remediations.
//!
//! A round is: one instance list (from the caller) → all probes concurrently → the fleet breaker →
//! per instance either continue its in-flight remediation ([`remediate::drive`]) or
//! [`decide::decide`] and maybe begin one. The pure rules live in [`decide`] and
//! [`remediate::advance`]; this module only wires them to the network, the provider and the log.

pub mod check;
pub mod decide;
pub mod remediate;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;

use crate::config::{ProbeCheck, ProbeConfig};
use crate::provider::{Instance, InstanceId, Power, PowerAction, PowerState, ProviderError};

pub use check::{run_check, ProbeFailure};
pub use decide::{decide, observe, reset, Decision, Gates, HoldReason, InstanceRecord};
pub use remediate::{advance, drive, Next, Remediation, Step};

/// The persisted records of all probed instances, keyed by instance id (`State::instances`).
pub type Records = BTreeMap<String, InstanceRecord>;

/// Port probed when the address comes from the instance list.
pub const DEFAULT_PROBE_PORT: u16 = 22;

/// What a round needs from the rest of dynwall.
pub struct RoundInput<'a> {
    /// This round's `getinstancelist` (one call serves the whole round), or why it failed. On an
    /// error instances are still probed, but none is acted on (their power state is unknown).
    pub instances: Result<&'a [Instance], &'a ProviderError>,
    /// Some resolver source produced an accepted address this round.
    pub connectivity_ok: bool,
    /// True when every firewall protecting the instance is confirmed in sync with the current IP.
    pub firewall_in_sync: &'a (dyn Fn(&InstanceId) -> bool + Sync),
    /// `--dry-run`: decide and log, but send no power request.
    pub dry_run: bool,
    /// Unix seconds; the round never reads the clock.
    pub now: u64,
}

/// The result of one probe this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Up,
    Down(ProbeFailure),
    /// Not probed (no address known).
    Unknown(String),
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Up => f.write_str("up"),
            Health::Down(e) => write!(f, "down ({e})"),
            Health::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

/// One instance's line in a [`RoundReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceReport {
    pub instance: InstanceId,
    pub health: Health,
    pub decision: Decision,
    /// Power requests the provider accepted this round, in order.
    pub actions: Vec<PowerAction>,
    /// The remediation step in flight after this round, if any.
    pub remediation: Option<Step>,
    /// The step's request was accepted longer ago than its timeout.
    pub overdue: bool,
    /// A power request failed this round (it is sent again next round).
    pub api_error: Option<String>,
    /// The remediation budget is spent and the instance is still down: an operator should look.
    pub given_up: bool,
}

/// What a round saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub instances: Vec<InstanceReport>,
    /// The fleet breaker tripped: more than half the probed instances looked down.
    pub observer_problem: bool,
    /// The instance list could not be read this round.
    pub list_error: Option<String>,
}

impl RoundReport {
    /// True when some instance is given up (`--once` then exits 1, SPEC §3).
    pub fn any_given_up(&self) -> bool {
        self.instances.iter().any(|i| i.given_up)
    }

    /// Every power request accepted this round.
    pub fn actions(&self) -> impl Iterator<Item = (&InstanceId, PowerAction)> {
        self.instances
            .iter()
            .flat_map(|i| i.actions.iter().map(move |a| (&i.instance, *a)))
    }
}

/// Probes every instance in `probes` concurrently, each bounded by its own `timeout`.
///
/// The target is the configured `address`, else the instance's IP from `known` (any recent
/// instance list: addresses rarely change) on port 22; without either the health is unknown.
pub async fn probe_all(probes: &[ProbeConfig], known: Option<&[Instance]>) -> Vec<Health> {
    futures::future::join_all(probes.iter().map(|cfg| {
        let target = cfg.address.or_else(|| {
            known
                .and_then(|list| list.iter().find(|i| i.id == cfg.instance))
                .and_then(|i| i.ip)
                .map(|ip| SocketAddr::new(ip, DEFAULT_PROBE_PORT))
        });
        probe_once(cfg, target)
    }))
    .await
}

/// True when a round with these results must know the instances' current power state: some
/// probe did not succeed, or a remediation is in flight. A healthy fleet needs no API call.
pub fn needs_power_state(probes: &[ProbeConfig], healths: &[Health], records: &Records) -> bool {
    healths.iter().any(|h| !matches!(h, Health::Up))
        || probes.iter().any(|c| {
            records
                .get(&c.instance.0)
                .is_some_and(|r| r.remediation.is_some())
        })
}

/// Runs one probe round for all configured probes: [`probe_all`] with the addresses of
/// `input.instances`, then [`settle`].
pub async fn round<E>(
    probes: &[ProbeConfig],
    power: &dyn Power,
    records: &mut Records,
    input: RoundInput<'_>,
    persist: &mut (dyn FnMut(&Records) -> Result<(), E> + Send),
) -> Result<RoundReport, E> {
    let healths = probe_all(probes, input.instances.ok()).await;
    settle(probes, healths, power, records, input, persist).await
}

/// The second half of a round: given this round's probe results (`healths`, in the order of
/// `probes`) and the instance list, decide per instance and drive remediations.
///
/// - `records` holds the persisted per-instance records, keyed by instance id; missing ones are
///   created. Records of instances no longer configured are left untouched.
/// - `persist` writes `records` to disk. It is called before every power request (with the step
///   about to be taken already recorded) and once at the end of the round. If it fails, the round
///   stops at once — no power request is ever sent without its step on disk — and the error is
///   returned; `records` still holds the in-memory truth.
/// - Power requests are sequential and at most one remediation is in flight across the fleet.
/// - An in-flight remediation continues whatever the gates say (except in dry run, where nothing
///   is sent), so an instance dynwall stopped is always started again.
pub async fn settle<E>(
    probes: &[ProbeConfig],
    healths: Vec<Health>,
    power: &dyn Power,
    records: &mut Records,
    input: RoundInput<'_>,
    persist: &mut (dyn FnMut(&Records) -> Result<(), E> + Send),
) -> Result<RoundReport, E> {
    let now = input.now;
    let mut report = RoundReport::default();
    let listed: Option<HashMap<&InstanceId, &Instance>> = match input.instances {
        Ok(list) => Some(list.iter().map(|i| (&i.id, i)).collect()),
        Err(e) => {
            tracing::warn!(error = %e,
                "instance list unavailable ({e}); probing, but acting on no instance this round");
            report.list_error = Some(e.to_string());
            None
        }
    };
    let listing = |id: &InstanceId| listed.as_ref().and_then(|m| m.get(id).copied());

    for (cfg, health) in probes.iter().zip(&healths) {
        let rec = records.entry(cfg.instance.0.clone()).or_default();
        if let Some(i) = listing(&cfg.instance) {
            decide::note_api_state(rec, &i.power, cfg, now);
        }
        match health {
            Health::Up => observe(rec, true, None, now),
            Health::Down(e) => observe(rec, false, Some(e.to_string()), now),
            Health::Unknown(_) => {}
        }
    }

    let fleet_down = fleet_breaker(probes, &healths, records, &listing, now);
    if let Some((down, probed)) = fleet_down {
        // Warn when the breaker first holds an instance back, not before (no instance reached its
        // failure count yet) and not again every round it lasts.
        let fleet = HoldReason::FleetDown.to_string();
        let said = probes.iter().any(|c| {
            records
                .get(&c.instance.0)
                .and_then(|r| r.last_hold.as_deref())
                == Some(fleet.as_str())
        });
        let binding = probes.iter().any(|c| {
            records
                .get(&c.instance.0)
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
        report.observer_problem = true;
    }

    for (cfg, health) in probes.iter().zip(healths) {
        let id = &cfg.instance;
        let key = id.0.clone();
        let mut rec = records.get(&key).cloned().unwrap_or_default();
        let state = listing(id).map(|i| &i.power);
        let mut item = InstanceReport {
            instance: id.clone(),
            health,
            decision: Decision::InProgress,
            actions: Vec::new(),
            remediation: None,
            overdue: false,
            api_error: None,
            given_up: false,
        };
        if let Some(rem) = &rec.remediation {
            if input.dry_run {
                tracing::info!(instance = %id,
                    "dry run: instance {id}: remediation in flight ({}); not continuing it", rem.step);
            } else {
                let mut save = saver(records, &key, persist);
                let done =
                    remediate::drive(power, id, &mut rec, state, cfg, now, &mut save).await?;
                item.actions = done.issued;
                item.api_error = done.api_error;
                item.overdue = done.overdue;
            }
        } else {
            let other_in_flight = probes.iter().any(|c| {
                c.instance != *id
                    && records
                        .get(&c.instance.0)
                        .is_some_and(|r| r.remediation.is_some())
            });
            let gates = Gates {
                connectivity_ok: input.connectivity_ok,
                firewall_in_sync: (input.firewall_in_sync)(id),
                api_state: state.cloned(),
                fleet_down_fraction_exceeded: fleet_down.is_some(),
                other_remediation_in_flight: other_in_flight,
                dry_run: input.dry_run,
            };
            item.decision = match &item.health {
                Health::Unknown(_) if cfg.enabled => Decision::Hold(HoldReason::NoAddress),
                _ => decide(&rec, cfg, &gates, now),
            };
            let why = rec.last_error.clone().unwrap_or_default();
            let n = rec.consecutive_failures;
            match &item.decision {
                Decision::Healthy => tracing::debug!(instance = %id, "instance {id}: up"),
                Decision::Failing { count } => tracing::info!(instance = %id, failures = count,
                    "instance {id}: probe failed ({count} of {}): {why}", cfg.failures),
                Decision::Hold(HoldReason::Grace) => tracing::info!(instance = %id,
                    "instance {id}: probe failed during grace ({why}); not counted"),
                Decision::Hold(HoldReason::NoAddress) => tracing::warn!(instance = %id,
                    "instance {id}: no address to probe (no `address` configured and the API \
                     reports no IP)"),
                Decision::Hold(HoldReason::Disabled) if n < cfg.failures => {
                    tracing::debug!(instance = %id, "instance {id}: remediation disabled")
                }
                Decision::Hold(reason) if rec.last_hold.as_deref() == Some(&reason.to_string()) => {
                    // Said already; a hold that lasts an outage is not news every round.
                    tracing::debug!(instance = %id, %reason,
                        "instance {id}: down after {n} failed probes; still not acting: {reason}")
                }
                Decision::Hold(HoldReason::DryRun) => tracing::info!(instance = %id,
                    "dry run: instance {id}: down after {n} failed probes ({why}); would stop \
                     and start it"),
                Decision::Hold(reason) => tracing::info!(instance = %id, %reason,
                    "instance {id}: down after {n} failed probes ({why}); not acting: {reason}"),
                Decision::GivenUp if !rec.given_up => {
                    rec.given_up = true;
                    tracing::error!(instance = %id,
                        "instance {id}: still down after {} remediations within {} ({why}); \
                         giving up until it answers a probe again or the operator resets it",
                        rec.actions_in_window(cfg, now),
                        humantime::format_duration(cfg.window));
                }
                Decision::GivenUp => {}
                Decision::Remediate => {
                    tracing::info!(instance = %id,
                        "instance {id}: down after {n} failed probes ({why}); stopping");
                    remediate::begin(&mut rec, cfg, now);
                    let mut save = saver(records, &key, persist);
                    let done =
                        remediate::drive(power, id, &mut rec, state, cfg, now, &mut save).await?;
                    item.actions = done.issued;
                    item.api_error = done.api_error;
                }
                Decision::InProgress => {}
            }
            rec.last_hold = match &item.decision {
                Decision::Hold(reason) if n >= cfg.failures => Some(reason.to_string()),
                _ => None,
            };
        }
        item.given_up = rec.given_up;
        item.remediation = rec.remediation.as_ref().map(|r| r.step);
        records.insert(key, rec);
        report.instances.push(item);
    }
    for (key, rec) in records.iter() {
        if let Some(rem) = &rec.remediation {
            if !probes.iter().any(|c| c.instance.0 == *key) {
                tracing::error!(instance = %key,
                    "instance {key}: a remediation ({}) is in flight but the instance is no \
                     longer configured for probing; dynwall will not finish it: start it by hand \
                     if it is stopped, or configure it again", rem.step);
            }
        }
    }
    persist(records)?;
    Ok(report)
}

/// Persists one instance's record by writing it into the map and saving the whole map.
fn saver<'a, E>(
    records: &'a mut Records,
    key: &'a str,
    persist: &'a mut (dyn FnMut(&Records) -> Result<(), E> + Send),
) -> impl FnMut(&InstanceRecord) -> Result<(), E> + Send + 'a {
    move |r| {
        records.insert(key.to_string(), r.clone());
        persist(records)
    }
}

async fn probe_once(cfg: &ProbeConfig, target: Option<SocketAddr>) -> Health {
    let result = match (&cfg.check, target) {
        (ProbeCheck::Http { url, expect_status }, _) => {
            check::http(url, *expect_status, cfg.timeout).await
        }
        (check, Some(target)) => run_check(check, target, cfg.timeout).await,
        (_, None) => return Health::Unknown("no address".to_string()),
    };
    match result {
        Ok(()) => Health::Up,
        Err(e) => Health::Down(e),
    }
}

/// `Some((down, probed))` when at least two instances were probed and more than half look down.
///
/// Only probes that say something about the observer count: instances with a remediation in
/// flight, in grace, or reported not `Running` by the API are expected to fail and are left out.
fn fleet_breaker<'a>(
    probes: &[ProbeConfig],
    healths: &[Health],
    records: &Records,
    listing: &dyn Fn(&InstanceId) -> Option<&'a Instance>,
    now: u64,
) -> Option<(usize, usize)> {
    let (mut probed, mut down) = (0, 0);
    for (cfg, health) in probes.iter().zip(healths) {
        let expected_down = records
            .get(&cfg.instance.0)
            .is_some_and(|r| r.remediation.is_some() || r.in_grace(now))
            || listing(&cfg.instance).is_some_and(|i| i.power != PowerState::Running);
        if expected_down {
            continue;
        }
        match health {
            Health::Up => probed += 1,
            Health::Down(_) => {
                probed += 1;
                down += 1;
            }
            Health::Unknown(_) => {}
        }
    }
    (probed >= 2 && down * 2 > probed).then_some((down, probed))
}

/// Test doubles shared by the probe tests: a scripted provider and loopback listeners.
#[cfg(test)]
pub(crate) mod testkit {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    use crate::config::{ProbeCheck, ProbeConfig};
    use crate::provider::{
        Instance, InstanceId, Power, PowerAction, PowerOutcome, PowerState, ProviderError,
    };

    /// A probe config with the A.3 defaults and a fast probe timeout.
    pub fn cfg() -> ProbeConfig {
        ProbeConfig {
            cloud: crate::ids::CloudName::indigo(),
            instance: InstanceId("616516".into()),
            address: None,
            check: ProbeCheck::Ssh,
            interval: Duration::from_secs(30),
            timeout: Duration::from_millis(500),
            failures: 3,
            stop_timeout: Duration::from_secs(300),
            start_timeout: Duration::from_secs(300),
            grace: Duration::from_secs(300),
            max_actions: 3,
            window: Duration::from_secs(24 * 3600),
            enabled: true,
        }
    }

    /// How the fake provider reacts to power requests.
    #[derive(Clone, Debug)]
    pub struct Script {
        pub stop_works: bool,
        pub forcestop_works: bool,
        pub start_works: bool,
        /// The next this many power requests fail with HTTP 503.
        pub fail_calls: u32,
    }

    impl Default for Script {
        fn default() -> Self {
            Script {
                stop_works: true,
                forcestop_works: true,
                start_works: true,
                fail_calls: 0,
            }
        }
    }

    /// An in-memory provider: power states change instantly when the script says they do.
    pub struct FakePower {
        pub states: Mutex<BTreeMap<String, PowerState>>,
        pub calls: Arc<Mutex<Vec<(String, PowerAction)>>>,
        pub script: Mutex<Script>,
    }

    impl FakePower {
        pub fn new(states: &[(&str, PowerState)], script: Script) -> FakePower {
            FakePower {
                states: Mutex::new(
                    states
                        .iter()
                        .map(|(id, s)| (id.to_string(), s.clone()))
                        .collect(),
                ),
                calls: Arc::default(),
                script: Mutex::new(script),
            }
        }

        pub fn calls(&self) -> Vec<(String, PowerAction)> {
            self.calls.lock().unwrap().clone()
        }

        pub fn actions(&self) -> Vec<PowerAction> {
            self.calls().into_iter().map(|(_, a)| a).collect()
        }

        pub fn set(&self, id: &str, state: PowerState) {
            self.states.lock().unwrap().insert(id.to_string(), state);
        }

        /// The instance list, without IPs (tests configure loopback addresses explicitly).
        pub fn list(&self) -> Vec<Instance> {
            self.states
                .lock()
                .unwrap()
                .iter()
                .map(|(id, s)| Instance {
                    id: InstanceId(id.clone()),
                    name: format!("vm-{id}"),
                    power: s.clone(),
                    ip: None,
                })
                .collect()
        }
    }

    #[async_trait]
    impl Power for FakePower {
        async fn list_instances(&self) -> Result<Vec<Instance>, ProviderError> {
            Ok(self.list())
        }

        async fn power(
            &self,
            id: &InstanceId,
            action: PowerAction,
        ) -> Result<PowerOutcome, ProviderError> {
            let script = {
                let mut s = self.script.lock().unwrap();
                if s.fail_calls > 0 {
                    s.fail_calls -= 1;
                    return Err(ProviderError::Unavailable {
                        op: "statusupdate",
                        status: 503,
                    });
                }
                s.clone()
            };
            self.calls.lock().unwrap().push((id.0.clone(), action));
            let mut states = self.states.lock().unwrap();
            let state = states
                .get_mut(&id.0)
                .ok_or_else(|| ProviderError::NotFound {
                    op: "statusupdate",
                    what: format!("instance {id}"),
                })?;
            let (target, works) = match action {
                PowerAction::Stop => (PowerState::Stopped, script.stop_works),
                PowerAction::ForceStop => (PowerState::Stopped, script.forcestop_works),
                PowerAction::Start => (PowerState::Running, script.start_works),
            };
            if *state == target {
                return Ok(PowerOutcome::AlreadyInState);
            }
            if works {
                *state = target;
            }
            Ok(PowerOutcome::Accepted)
        }
    }

    /// What a fake server on 127.0.0.1 does with each connection.
    #[derive(Clone, Debug)]
    pub enum Mode {
        /// Writes `SSH-2.0-OpenSSH_9.6\r\n`.
        Ssh,
        /// Writes the first chunk, then the second a moment later, then keeps the line open.
        Reply(Vec<u8>, Option<Vec<u8>>),
        /// Accepts and never says a word.
        Silent,
        /// Accepts and closes at once.
        Closing,
        /// Answers one HTTP request with this status (and a Location to the given address).
        Http(u16, SocketAddr),
    }

    /// A loopback server whose behaviour can be switched while it runs.
    pub struct Listener {
        pub addr: SocketAddr,
        mode: Arc<Mutex<Mode>>,
        task: JoinHandle<()>,
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Listener {
        pub async fn start(mode: Mode) -> Listener {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mode = Arc::new(Mutex::new(mode));
            let shared = mode.clone();
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let mode = shared.lock().unwrap().clone();
                    tokio::spawn(serve(stream, mode));
                }
            });
            Listener { addr, mode, task }
        }

        pub async fn ssh() -> Listener {
            Listener::start(Mode::Ssh).await
        }

        pub async fn silent() -> Listener {
            Listener::start(Mode::Silent).await
        }

        pub async fn closing() -> Listener {
            Listener::start(Mode::Closing).await
        }

        pub async fn replying(first: Vec<u8>, then: Option<Vec<u8>>) -> Listener {
            Listener::start(Mode::Reply(first, then)).await
        }

        pub async fn http(status: u16, location: SocketAddr) -> Listener {
            Listener::start(Mode::Http(status, location)).await
        }

        /// Changes what later connections get.
        pub fn set(&self, mode: Mode) {
            *self.mode.lock().unwrap() = mode;
        }
    }

    async fn serve(mut stream: TcpStream, mode: Mode) {
        match mode {
            Mode::Ssh => {
                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
            }
            Mode::Reply(first, then) => {
                let _ = stream.write_all(&first).await;
                if let Some(then) = then {
                    let _ = stream.flush().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let _ = stream.write_all(&then).await;
                }
                std::future::pending::<()>().await;
            }
            Mode::Silent => std::future::pending::<()>().await,
            Mode::Closing => drop(stream),
            Mode::Http(status, location) => {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16_384 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nLocation: http://{location}/\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        }
    }

    /// A loopback port nobody listens on (bound, then released).
    pub async fn closed_port() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        addr
    }
}

#[cfg(test)]
mod tests;
