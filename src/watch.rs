//! What the operator watches: the metrics endpoint and the notifiers, behind one handle the
//! engine calls at each point worth counting or telling.
//!
//! Every method but [`Watch::start`], [`Watch::reconfigure`] and [`Watch::close`] is
//! synchronous and returns at once: counting takes a lock for microseconds, notifying queues a
//! request for another task. A dead notifier or a stuck scraper never delays a cycle.
//!
//! Where the engine reports:
//!
//! - start of the daemon: [`Watch::start`] (endpoint and notifiers); of a `--once` run:
//!   [`Watch::notifiers_only`]; then [`Watch::remember_delivery_failure`] with the persisted one.
//! - each sync cycle: [`Watch::cycle_started`] first; [`Watch::resolution`] after each family's
//!   lookup; [`Watch::ip_changed`] when an agreed address differs from the remembered one;
//!   [`Watch::firewall_updated`] after each verified write; [`Watch::cycle_finished`] last, with
//!   the persisted [`FailureStreak`].
//! - each probe round: [`Watch::probed`] per instance; [`Watch::remediation`] when a step is
//!   requested, the instance answers again, or a step fails; [`Watch::gave_up`] when a budget
//!   is found spent.
//! - the cloud clients: [`Watch::metrics`] handed over at construction, then
//!   [`Metrics::api_request`], [`Metrics::quota_remaining`], [`Metrics::quota_waited`].
//! - reload: [`Watch::reconfigure`]; end: [`Watch::close`] with [`notify::SHUTDOWN_GRACE`]
//!   (daemon) or [`notify::ONCE_GRACE`] (`--once`), then persist
//!   [`Watch::last_delivery_failure`] (also worth persisting after each cycle).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ids::{CloudName, InstanceId};
use crate::metrics::{ListenError, Metrics, MetricsServer, ProbeResult};
use crate::net::Family;
use crate::notify::{
    self, DeliveryFailure, Event, FailureStreak, FirewallUpdate, GaveUp, IpChange, Notifier,
    NotifyError, RemediationEvent, RemediationOutcome,
};
use crate::resolver::Resolution;

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// `metrics.listen` cannot be bound; names the config file.
    #[error("{}: {source}", path.display())]
    Listen {
        path: std::path::PathBuf,
        #[source]
        source: ListenError,
    },
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

impl WatchError {
    /// True when the configuration must change (the listen address is taken or not ours): exit
    /// 78, so that systemd does not restart into the same wall.
    pub fn is_config(&self) -> bool {
        matches!(self, WatchError::Listen { .. })
    }
}

/// The metrics, their endpoint and the notifiers.
pub struct Watch {
    metrics: Metrics,
    notifier: Notifier,
    server: Option<MetricsServer>,
    /// `metrics.listen` as configured (the server's address differs for port 0).
    listen: Option<SocketAddr>,
    shutdown: CancellationToken,
    host: Option<String>,
}

impl Watch {
    /// Starts the metrics endpoint (when `[metrics]` is set) and the notifiers. The endpoint
    /// stops when `shutdown` is cancelled. Within a tokio runtime.
    pub async fn start(config: &Config, shutdown: &CancellationToken) -> Result<Watch, WatchError> {
        let host = notify::hostname();
        let metrics = if config.metrics.is_some() {
            Metrics::new()
        } else {
            Metrics::disabled()
        };
        metrics.configure(config);
        let server = match &config.metrics {
            Some(m) => Some(
                MetricsServer::start(m.listen, metrics.clone(), shutdown)
                    .await
                    .map_err(|source| WatchError::Listen {
                        path: config.path.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        let notifier = Notifier::start(&config.notify, host.clone(), metrics.clone())?;
        Ok(Watch {
            metrics,
            notifier,
            server,
            listen: config.metrics.as_ref().map(|m| m.listen),
            shutdown: shutdown.clone(),
            host,
        })
    }

    /// The notifiers alone, for a `--once` run: no endpoint (nothing could scrape a run that
    /// ends in seconds, and a daemon may hold the port), no counting. Within a tokio runtime.
    pub fn notifiers_only(config: &Config) -> Result<Watch, WatchError> {
        let host = notify::hostname();
        let notifier = Notifier::start(&config.notify, host.clone(), Metrics::disabled())?;
        Ok(Watch {
            metrics: Metrics::disabled(),
            notifier,
            server: None,
            listen: None,
            shutdown: CancellationToken::new(),
            host,
        })
    }

    /// Watches nothing: for commands and tests without metrics or notifiers.
    pub fn disabled() -> Watch {
        Watch {
            metrics: Metrics::disabled(),
            notifier: Notifier::disabled(),
            server: None,
            listen: None,
            shutdown: CancellationToken::new(),
            host: None,
        }
    }

    /// Counts into `metrics` and notifies no one: for tests that read the counters.
    #[cfg(test)]
    pub fn counting(metrics: Metrics) -> Watch {
        Watch {
            metrics,
            ..Watch::disabled()
        }
    }

    /// The metrics handle, for the cloud clients (API requests, quota).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(MetricsServer::local_addr)
    }

    /// Applies a reloaded config (SIGHUP). New notifiers replace the old ones (whose queues get
    /// [`notify::ONCE_GRACE`] to go out, in the background); a new listen address is bound
    /// before the old one is let go, and one that cannot be bound leaves the old in force,
    /// with a warning. Counters carry on (turning `[metrics]` on or off needs a restart).
    pub async fn reconfigure(&mut self, config: &Config) {
        self.metrics.configure(config);
        match Notifier::start(&config.notify, self.host.clone(), self.metrics.clone()) {
            Ok(new) => {
                if let Some(f) = self.notifier.last_failure() {
                    new.remember_failure(f);
                }
                let old = std::mem::replace(&mut self.notifier, new);
                tokio::spawn(async move { old.close(notify::ONCE_GRACE).await });
            }
            Err(e) => tracing::warn!("reload: keeping the previous notifiers: {e}"),
        }
        let want = config.metrics.as_ref().map(|m| m.listen);
        if !self.metrics.is_enabled() {
            if want.is_some() {
                tracing::warn!("reload: [metrics] was added; restart dynwall to serve metrics");
            }
            return;
        }
        if want == self.listen {
            return;
        }
        let started = match want {
            Some(addr) => {
                match MetricsServer::start(addr, self.metrics.clone(), &self.shutdown).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!("reload: keeping metrics where they were: {e}");
                        return;
                    }
                }
            }
            None => None,
        };
        self.listen = want;
        if let Some(old) = std::mem::replace(&mut self.server, started) {
            old.stop().await;
        }
    }

    /// A sync cycle begins (before resolving).
    pub fn cycle_started(&self) {
        self.notifier.cycle_started();
    }

    /// A sync cycle ended at `now` (unix seconds) with `outcome` (`Err` holds the one-line
    /// error `status` shows). `streak` is persisted with the state.
    pub fn cycle_finished(&self, streak: &mut FailureStreak, outcome: Result<(), &str>, now: u64) {
        self.metrics.cycle_finished(outcome, now);
        self.notifier.cycle_finished(streak, outcome, now);
    }

    /// One family's lookup is done (every source's answer, and the agreed address if any).
    pub fn resolution(&self, r: &Resolution) {
        self.metrics.resolution(r);
    }

    /// The agreed address of `family` differs from the one remembered (`old`, `None` when none
    /// was).
    pub fn ip_changed(&self, family: Family, old: Option<IpAddr>, new: IpAddr) {
        self.notifier
            .notify(&Event::IpChanged(IpChange { family, old, new }));
    }

    /// A firewall write was verified.
    pub fn firewall_updated(&self, update: FirewallUpdate) {
        self.metrics
            .firewall_written(&update.cloud, &update.firewall);
        self.notifier.notify(&Event::FirewallUpdated(update));
    }

    /// An instance was probed.
    pub fn probed(&self, cloud: &CloudName, instance: &InstanceId, result: ProbeResult) {
        self.metrics.probed(cloud, instance, result);
    }

    /// A remediation step was requested, or the remediation finished or failed.
    pub fn remediation(&self, event: RemediationEvent) {
        self.metrics
            .remediation(&event.cloud, &event.instance, event.step, event.outcome);
        if event.outcome == RemediationOutcome::Requested {
            self.metrics.given_up(&event.cloud, &event.instance, false);
        }
        self.notifier.notify(&Event::Remediation(event));
    }

    /// An instance's remediation budget is spent and it is still down (once per episode).
    pub fn gave_up(&self, event: GaveUp) {
        self.metrics.given_up(&event.cloud, &event.instance, true);
        self.notifier.notify(&Event::GaveUp(event));
    }

    /// The last notification that could not be delivered (to persist for `status`).
    pub fn last_delivery_failure(&self) -> Option<DeliveryFailure> {
        self.notifier.last_failure()
    }

    /// Starts from the failure an earlier run persisted, so that `status` keeps showing it
    /// until a newer one replaces it.
    pub fn remember_delivery_failure(&self, failure: DeliveryFailure) {
        self.notifier.remember_failure(failure);
    }

    /// Lets queued notifications go out for at most `grace` ([`notify::ONCE_GRACE`] at the end
    /// of `--once`, [`notify::SHUTDOWN_GRACE`] when the daemon stops), then stops the endpoint.
    /// [`Watch::last_delivery_failure`] then says how the last of them went, to persist.
    pub async fn close(&mut self, grace: Duration) {
        self.notifier.close(grace).await;
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use dynwall_sim::NotifyReceiver;

    use super::*;
    use crate::config::MetricsConfig;
    use crate::ids::FirewallId;
    use crate::notify::RemediationStep;
    use crate::resolver::{Answer, Verdict};

    const PATIENCE: Duration = Duration::from_secs(60);

    fn config(receiver: &NotifyReceiver) -> Config {
        let text = format!(
            "[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n\
             [[firewall]]\ntemplate = 12836\ninstances = []\n\
             [[notify]]\nkind = \"webhook\"\nurl = \"{}\"\n",
            receiver.url("/hook")
        );
        let mut cfg = Config::parse(&text, Path::new("/x/dynwall.toml"), &HashMap::new()).unwrap();
        // An ephemeral port (the config refuses port 0, which no scraper could find).
        cfg.metrics = Some(MetricsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
        });
        cfg
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let resp = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    #[tokio::test]
    async fn one_cycle_as_the_engine_reports_it() {
        let receiver = NotifyReceiver::start().await.unwrap();
        let cfg = config(&receiver);
        let shutdown = CancellationToken::new();
        let mut watch = Watch::start(&cfg, &shutdown).await.unwrap();
        let addr = watch.metrics_addr().unwrap();
        let indigo = CloudName::indigo();
        let home: IpAddr = "81.2.69.161".parse().unwrap();

        watch.cycle_started();
        let source = cfg.resolver.sources[0].label();
        watch.resolution(&Resolution {
            family: Family::Ipv4,
            quorum: 1,
            answers: vec![Answer {
                source,
                family: Family::Ipv4,
                latency: Duration::from_millis(5),
                verdict: Verdict::Accepted(home),
            }],
            outcome: Ok(home),
        });
        watch.ip_changed(Family::Ipv4, Some("81.2.69.160".parse().unwrap()), home);
        watch.firewall_updated(FirewallUpdate {
            cloud: indigo.clone(),
            firewall: FirewallId("12836".into()),
            name: None,
            protocol: "TCP".into(),
            port: "22".into(),
            added: vec![home.to_string()],
            removed: vec!["81.2.69.160".into()],
        });
        let web = InstanceId("616516".into());
        watch.probed(&indigo, &web, ProbeResult::Down);
        watch.gave_up(GaveUp {
            cloud: indigo.clone(),
            instance: web.clone(),
            name: None,
            actions: 3,
            window: Duration::from_secs(86_400),
            reason: None,
        });
        watch.remediation(RemediationEvent {
            cloud: indigo.clone(),
            instance: web.clone(),
            name: None,
            step: RemediationStep::Stop,
            outcome: RemediationOutcome::Requested,
            reason: None,
        });
        let mut streak = FailureStreak::default();
        watch.cycle_finished(&mut streak, Ok(()), 1_767_225_600);

        let got = tokio::time::timeout(PATIENCE, receiver.wait_for(4))
            .await
            .unwrap();
        let kinds: Vec<_> = got.iter().map(|r| r.json()["event"].clone()).collect();
        assert_eq!(
            kinds,
            ["ip_changed", "firewall_updated", "gave_up", "remediation"]
        );
        let (status, text) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        for line in [
            "dynwall_firewall_writes_total{cloud=\"indigo\",firewall=\"12836\"} 1",
            "dynwall_public_address_info{family=\"ipv4\",address=\"81.2.69.161\"} 1",
            "dynwall_last_success_timestamp_seconds 1767225600",
            "dynwall_probes_total{cloud=\"indigo\",instance=\"616516\",result=\"down\"} 1",
            // A new remediation clears the given-up mark.
            "dynwall_instance_given_up{cloud=\"indigo\",instance=\"616516\"} 0",
            "dynwall_remediations_total{cloud=\"indigo\",instance=\"616516\",step=\"stop\",outcome=\"requested\"} 1",
            "dynwall_notifications_total{notifier=\"notify[0]\",kind=\"webhook\",outcome=\"sent\"} 4",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert_eq!(get(addr, "/healthz").await, (200, "healthy\n".to_string()));
        assert_eq!(watch.last_delivery_failure(), None);
        watch.close(PATIENCE).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn a_taken_listen_address_is_a_config_error() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = NotifyReceiver::start().await.unwrap();
        let mut cfg = config(&receiver);
        cfg.metrics = Some(MetricsConfig {
            listen: taken.local_addr().unwrap(),
        });
        let err = Watch::start(&cfg, &CancellationToken::new())
            .await
            .err()
            .unwrap();
        assert!(err.is_config());
        assert!(
            err.to_string()
                .starts_with("/x/dynwall.toml: metrics.listen: cannot listen on"),
            "{err}"
        );
        let app = crate::exit::AppError::from(err);
        assert_eq!(app.code(), crate::exit::Code::Config);
    }

    #[tokio::test]
    async fn a_once_run_notifies_and_serves_nothing() {
        let receiver = NotifyReceiver::start().await.unwrap();
        let mut watch = Watch::notifiers_only(&config(&receiver)).unwrap();
        assert_eq!(watch.metrics_addr(), None);
        assert!(!watch.metrics().is_enabled());
        // The failure an earlier run persisted stays the last one until a newer one.
        let earlier = DeliveryFailure {
            at: 1,
            notifier: "notify[0] webhook http://127.0.0.1:1/***".into(),
            event: "gave_up".into(),
            attempts: 4,
            error: "cannot connect to 127.0.0.1:1: connection refused".into(),
        };
        watch.remember_delivery_failure(earlier.clone());
        watch.ip_changed(Family::Ipv4, None, "81.2.69.161".parse().unwrap());
        tokio::time::timeout(PATIENCE, receiver.wait_for(1))
            .await
            .unwrap();
        assert_eq!(receiver.received()[0].json()["event"], "ip_changed");
        watch.close(notify::ONCE_GRACE).await;
        assert_eq!(watch.last_delivery_failure(), Some(earlier));
    }

    #[tokio::test]
    async fn a_reload_moves_the_endpoint_and_replaces_the_notifiers() {
        let first = NotifyReceiver::start().await.unwrap();
        let second = NotifyReceiver::start().await.unwrap();
        let shutdown = CancellationToken::new();
        let mut watch = Watch::start(&config(&first), &shutdown).await.unwrap();
        let old_addr = watch.metrics_addr().unwrap();

        // The same listen address: the endpoint stays as it is.
        watch.reconfigure(&config(&first)).await;
        assert_eq!(watch.metrics_addr(), Some(old_addr));
        // Another one (a second loopback address): moved.
        let mut moved = config(&second);
        moved.metrics = Some(MetricsConfig {
            listen: "127.0.0.2:0".parse().unwrap(),
        });
        watch.reconfigure(&moved).await;
        let new_addr = watch.metrics_addr().unwrap();
        assert_ne!(new_addr, old_addr);
        assert!(tokio::net::TcpStream::connect(old_addr).await.is_err());
        assert_eq!(get(new_addr, "/metrics").await.0, 200);
        watch.ip_changed(Family::Ipv4, None, "81.2.69.161".parse().unwrap());
        tokio::time::timeout(PATIENCE, second.wait_for(1))
            .await
            .unwrap();
        assert!(first.received().is_empty());

        // An address that cannot be bound leaves the endpoint where it was.
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut cfg = config(&second);
        cfg.metrics = Some(MetricsConfig {
            listen: taken.local_addr().unwrap(),
        });
        watch.reconfigure(&cfg).await;
        assert_eq!(watch.metrics_addr(), Some(new_addr));

        // Cancelling the daemon's token stops the endpoint.
        shutdown.cancel();
        watch.close(PATIENCE).await;
        assert!(tokio::net::TcpStream::connect(new_addr).await.is_err());
    }
}
