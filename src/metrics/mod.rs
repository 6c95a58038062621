//! Prometheus metrics: what dynwall counts, encoded in the Prometheus text format, and served
//! with `/healthz` by [`server`].
//!
//! [`Metrics`] is a cheap handle (clones share the counters); a disabled one (no `[metrics]`
//! table) makes every call a no-op. Every call is synchronous and takes a lock for
//! microseconds at most: counting never waits for a scrape.
//!
//! Cardinality is bounded by construction: label values are configured names (clouds, firewall
//! and instance ids, source labels with their secrets masked, `notify[N]`), code constants
//! (API operations, outcomes) or HTTP status classes; the one value learned from outside, the
//! public address, has one series per family, replaced when it changes. No label or value
//! carries a secret.

pub mod server;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::config::{Config, NotifyConfig, SourceConfig, SourceKind, UpnpSource};
use crate::health::{self, LastCycle};
use crate::ids::{CloudName, FirewallId, InstanceId};
use crate::net::Family as AddrFamily;
use crate::notify::{RemediationOutcome, RemediationStep};
use crate::resolver::{Resolution, Verdict};
use crate::secret::url_without_credentials;

pub use server::{ListenError, MetricsServer};

/// How an API request ended, for the `status` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiStatus {
    /// The API answered with this HTTP status.
    Http(u16),
    /// No answer: the request could not be sent, or timed out.
    NoAnswer,
}

impl ApiStatus {
    /// `2xx`, `3xx`, `4xx` (with `429` apart: the quota), `5xx`, or `error` for no answer.
    pub fn label(self) -> &'static str {
        match self {
            ApiStatus::Http(429) => "429",
            ApiStatus::Http(200..=299) => "2xx",
            ApiStatus::Http(300..=399) => "3xx",
            ApiStatus::Http(400..=499) => "4xx",
            ApiStatus::Http(500..=599) => "5xx",
            ApiStatus::Http(_) | ApiStatus::NoAnswer => "error",
        }
    }
}

/// One probe's result, for the `result` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    Up,
    Down,
    /// Not probed (no address known).
    Unknown,
}

impl ProbeResult {
    pub fn label(self) -> &'static str {
        match self {
            ProbeResult::Up => "up",
            ProbeResult::Down => "down",
            ProbeResult::Unknown => "unknown",
        }
    }
}

/// What became of a notification, for the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationOutcome {
    Sent,
    /// Not delivered after its attempts, or refused.
    Failed,
    /// Dropped unsent from a full queue.
    Dropped,
}

impl NotificationOutcome {
    const ALL: [NotificationOutcome; 3] = [
        NotificationOutcome::Sent,
        NotificationOutcome::Failed,
        NotificationOutcome::Dropped,
    ];

    fn label(self) -> &'static str {
        match self {
            NotificationOutcome::Sent => "sent",
            NotificationOutcome::Failed => "failed",
            NotificationOutcome::Dropped => "dropped",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddressLabels {
    family: &'static str,
    address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FirewallLabels {
    cloud: String,
    firewall: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    cloud: String,
    operation: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloudLabels {
    cloud: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    family: &'static str,
    source: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    cloud: String,
    instance: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    cloud: String,
    instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemediationLabels {
    cloud: String,
    instance: String,
    step: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    notifier: String,
    kind: &'static str,
    outcome: &'static str,
}

/// A counter of seconds.
type Seconds = Counter<f64, std::sync::atomic::AtomicU64>;

/// Every series dynwall exports (the README's "Watching it" lists them).
#[derive(Default)]
struct Series {
    cycles: Family<OutcomeLabels, Counter>,
    last_success: Gauge,
    last_cycle: Gauge,
    healthy: Gauge,
    address: Family<AddressLabels, Gauge>,
    firewall_writes: Family<FirewallLabels, Counter>,
    api_requests: Family<ApiLabels, Counter>,
    quota_remaining: Family<CloudLabels, Gauge>,
    quota_waits: Family<CloudLabels, Counter>,
    quota_wait_seconds: Family<CloudLabels, Seconds>,
    answers: Family<AnswerLabels, Counter>,
    probes: Family<ProbeLabels, Counter>,
    instance_up: Family<InstanceLabels, Gauge>,
    remediations: Family<RemediationLabels, Counter>,
    given_up: Family<InstanceLabels, Gauge>,
    notifications: Family<NotificationLabels, Counter>,
}

impl Series {
    fn register(&self, r: &mut Registry) {
        r.register(
            "build",
            "The dynwall version running",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "cycles",
            "Sync cycles finished, by outcome (ok: every tracked address agreed and every \
             firewall confirmed in sync)",
            self.cycles.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "When the last successful sync cycle finished (unix time; 0 before the first)",
            self.last_success.clone(),
        );
        r.register(
            "last_cycle_timestamp_seconds",
            "When the last sync cycle finished, whatever its outcome (unix time; 0 before the first)",
            self.last_cycle.clone(),
        );
        r.register(
            "healthy",
            "1 when /healthz answers 200 (the last cycle succeeded within three sync intervals)",
            self.healthy.clone(),
        );
        r.register(
            "public_address_info",
            "The agreed public address of each family (value 1)",
            self.address.clone(),
        );
        r.register(
            "firewall_writes",
            "Verified writes of a firewall's owned rules",
            self.firewall_writes.clone(),
        );
        r.register(
            "api_requests",
            "Cloud API requests by operation and HTTP status class (error: no answer)",
            self.api_requests.clone(),
        );
        r.register(
            "api_quota_remaining",
            "Requests left in the current API quota window, as the API last said",
            self.quota_remaining.clone(),
        );
        r.register(
            "api_quota_waits",
            "Times a request waited for the API quota (budget spent, or HTTP 429)",
            self.quota_waits.clone(),
        );
        r.register(
            "api_quota_wait_seconds",
            "Time spent waiting for the API quota",
            self.quota_wait_seconds.clone(),
        );
        r.register(
            "resolver_answers",
            "Answers of the public-address sources, by verdict",
            self.answers.clone(),
        );
        r.register(
            "probes",
            "Health probes of instances, by result",
            self.probes.clone(),
        );
        r.register(
            "instance_up",
            "1 when the instance's last probe succeeded, 0 when it failed",
            self.instance_up.clone(),
        );
        r.register(
            "remediations",
            "Remediation steps by instance, step and outcome",
            self.remediations.clone(),
        );
        r.register(
            "instance_given_up",
            "1 while an instance's remediation budget is spent and it is still down",
            self.given_up.clone(),
        );
        r.register(
            "notifications",
            "Notifications by notifier and outcome",
            self.notifications.clone(),
        );
    }
}

/// The metrics handle.
#[derive(Clone)]
pub struct Metrics(Option<Arc<Inner>>);

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_enabled() {
            "Metrics(on)"
        } else {
            "Metrics(off)"
        })
    }
}

struct Inner {
    registry: Registry,
    series: Series,
    /// Source label (as the resolver names it) → (family label, label shown with secrets
    /// masked). Answers of sources not in the config are not counted.
    sources: Mutex<HashMap<String, (&'static str, String)>>,
    /// The address each family's `public_address_info` series holds now (IPv4, IPv6).
    addresses: Mutex<[Option<IpAddr>; 2]>,
    last_cycle: Mutex<Option<CycleMark>>,
    /// The sync interval in force, in milliseconds (the health rule allows three).
    interval_ms: AtomicU64,
}

/// The last finished cycle, as `/healthz` judges it (monotonic time: never persisted).
struct CycleMark {
    at: Instant,
    ok: bool,
    error: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn family_label(f: AddrFamily) -> &'static str {
    match f {
        AddrFamily::Ipv4 => "ipv4",
        AddrFamily::Ipv6 => "ipv6",
    }
}

impl Metrics {
    /// Metrics that count (for a config with `[metrics]`).
    pub fn new() -> Metrics {
        let series = Series::default();
        let mut registry = Registry::with_prefix("dynwall");
        series.register(&mut registry);
        for outcome in ["ok", "failed"] {
            let _ = series.cycles.get_or_create(&OutcomeLabels { outcome });
        }
        Metrics(Some(Arc::new(Inner {
            registry,
            series,
            sources: Mutex::new(HashMap::new()),
            addresses: Mutex::new([None, None]),
            last_cycle: Mutex::new(None),
            interval_ms: AtomicU64::new(crate::config::DEFAULT_INTERVAL.as_millis() as u64),
        })))
    }

    /// Metrics that count nothing: every call returns at once.
    pub fn disabled() -> Metrics {
        Metrics(None)
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Takes what the config names: the sync interval (for the health rule) and the sources,
    /// whose answer series are created at zero. Called at start and on every reload; series of
    /// sources no longer configured keep their last values until the process ends.
    pub fn configure(&self, config: &Config) {
        let Some(m) = &self.0 else { return };
        m.interval_ms.store(
            config.daemon.interval.as_millis().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
        let mut sources = lock(&m.sources);
        sources.clear();
        for s in &config.resolver.sources {
            let family = family_label(s.family);
            let shown = source_label(s);
            for verdict in ["accepted", "rejected", "failed"] {
                let _ = m.series.answers.get_or_create(&AnswerLabels {
                    family,
                    source: shown.clone(),
                    verdict,
                });
            }
            sources.insert(s.label(), (family, shown));
        }
    }

    /// A sync cycle finished at `now` (unix seconds) with `outcome` (`Err` holds its error).
    pub fn cycle_finished(&self, outcome: Result<(), &str>, now: u64) {
        let Some(m) = &self.0 else { return };
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        let outcome_label = if outcome.is_ok() { "ok" } else { "failed" };
        m.series
            .cycles
            .get_or_create(&OutcomeLabels {
                outcome: outcome_label,
            })
            .inc();
        m.series.last_cycle.set(now_i);
        if outcome.is_ok() {
            m.series.last_success.set(now_i);
        }
        *lock(&m.last_cycle) = Some(CycleMark {
            at: Instant::now(),
            ok: outcome.is_ok(),
            error: outcome.err().map(str::to_string),
        });
    }

    /// One family's lookup: counts every answer by verdict, and holds the agreed address.
    pub fn resolution(&self, r: &Resolution) {
        let Some(m) = &self.0 else { return };
        {
            let sources = lock(&m.sources);
            for a in &r.answers {
                let Some((family, shown)) = sources.get(&a.source) else {
                    continue;
                };
                let verdict = match a.verdict {
                    Verdict::Accepted(_) => "accepted",
                    Verdict::Rejected { .. } => "rejected",
                    Verdict::Failed(_) => "failed",
                };
                m.series
                    .answers
                    .get_or_create(&AnswerLabels {
                        family,
                        source: shown.clone(),
                        verdict,
                    })
                    .inc();
            }
        }
        let Ok(ip) = r.outcome else { return };
        let slot = match r.family {
            AddrFamily::Ipv4 => 0,
            AddrFamily::Ipv6 => 1,
        };
        let family = family_label(r.family);
        let mut held = lock(&m.addresses);
        if let Some(old) = held[slot].filter(|old| *old != ip) {
            m.series.address.remove(&AddressLabels {
                family,
                address: old.to_string(),
            });
        }
        held[slot] = Some(ip);
        m.series
            .address
            .get_or_create(&AddressLabels {
                family,
                address: ip.to_string(),
            })
            .set(1);
    }

    /// A firewall write was verified. `firewall` is the configured id.
    pub fn firewall_written(&self, cloud: &CloudName, firewall: &FirewallId) {
        let Some(m) = &self.0 else { return };
        m.series
            .firewall_writes
            .get_or_create(&FirewallLabels {
                cloud: cloud.0.clone(),
                firewall: firewall.0.clone(),
            })
            .inc();
    }

    /// A cloud API request ended. `operation` names the API call (`gettemplate`,
    /// `updatefirewall`, `servers`, …): a constant of the client's code.
    pub fn api_request(&self, cloud: &CloudName, operation: &'static str, status: ApiStatus) {
        let Some(m) = &self.0 else { return };
        m.series
            .api_requests
            .get_or_create(&ApiLabels {
                cloud: cloud.0.clone(),
                operation,
                status: status.label(),
            })
            .inc();
    }

    /// The API said how many requests are left in its quota window.
    pub fn quota_remaining(&self, cloud: &CloudName, remaining: u64) {
        let Some(m) = &self.0 else { return };
        m.series
            .quota_remaining
            .get_or_create(&CloudLabels {
                cloud: cloud.0.clone(),
            })
            .set(i64::try_from(remaining).unwrap_or(i64::MAX));
    }

    /// A request waited `waited` for the quota.
    pub fn quota_waited(&self, cloud: &CloudName, waited: Duration) {
        let Some(m) = &self.0 else { return };
        let labels = CloudLabels {
            cloud: cloud.0.clone(),
        };
        m.series.quota_waits.get_or_create(&labels).inc();
        m.series
            .quota_wait_seconds
            .get_or_create(&labels)
            .inc_by(waited.as_secs_f64());
    }

    /// An instance (a configured id) was probed.
    pub fn probed(&self, cloud: &CloudName, instance: &InstanceId, result: ProbeResult) {
        let Some(m) = &self.0 else { return };
        m.series
            .probes
            .get_or_create(&ProbeLabels {
                cloud: cloud.0.clone(),
                instance: instance.0.clone(),
                result: result.label(),
            })
            .inc();
        let up = match result {
            ProbeResult::Up => 1,
            ProbeResult::Down => 0,
            ProbeResult::Unknown => return,
        };
        let labels = InstanceLabels {
            cloud: cloud.0.clone(),
            instance: instance.0.clone(),
        };
        m.series.instance_up.get_or_create(&labels).set(up);
        if up == 1 {
            // Healthy again: a spent budget no longer matters.
            m.series.given_up.get_or_create(&labels).set(0);
        }
    }

    /// A remediation step of an instance (a configured id) was taken, finished or failed.
    pub fn remediation(
        &self,
        cloud: &CloudName,
        instance: &InstanceId,
        step: RemediationStep,
        outcome: RemediationOutcome,
    ) {
        let Some(m) = &self.0 else { return };
        m.series
            .remediations
            .get_or_create(&RemediationLabels {
                cloud: cloud.0.clone(),
                instance: instance.0.clone(),
                step: step.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// An instance's remediation budget is spent while it is down (`true`), or that is over.
    pub fn given_up(&self, cloud: &CloudName, instance: &InstanceId, given_up: bool) {
        let Some(m) = &self.0 else { return };
        m.series
            .given_up
            .get_or_create(&InstanceLabels {
                cloud: cloud.0.clone(),
                instance: instance.0.clone(),
            })
            .set(i64::from(given_up));
    }

    /// Creates a notifier's series at zero.
    pub(crate) fn notifier(&self, config: &NotifyConfig) {
        let Some(m) = &self.0 else { return };
        for outcome in NotificationOutcome::ALL {
            let _ = m
                .series
                .notifications
                .get_or_create(&notification_labels(config, outcome));
        }
    }

    pub(crate) fn notification(&self, config: &NotifyConfig, outcome: NotificationOutcome) {
        let Some(m) = &self.0 else { return };
        m.series
            .notifications
            .get_or_create(&notification_labels(config, outcome))
            .inc();
    }

    /// The health rule of `dynwall healthcheck` applied to the last cycle this process
    /// finished: `Err` says why not healthy.
    pub fn health(&self) -> Result<(), String> {
        let Some(m) = &self.0 else {
            return Err("metrics are off".to_string());
        };
        let interval = Duration::from_millis(m.interval_ms.load(Ordering::Relaxed));
        let mark = lock(&m.last_cycle);
        let last = mark.as_ref().map(|c| LastCycle {
            age: c.at.elapsed(),
            ok: c.ok,
            error: c.error.as_deref(),
        });
        health::verdict(last, interval)
    }

    /// Every series in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let Some(m) = &self.0 else {
            return String::new();
        };
        m.series.healthy.set(i64::from(self.health().is_ok()));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &m.registry);
        out
    }
}

fn notification_labels(config: &NotifyConfig, outcome: NotificationOutcome) -> NotificationLabels {
    NotificationLabels {
        notifier: format!("notify[{}]", config.index),
        kind: config.kind.name(),
        outcome: outcome.label(),
    }
}

/// A source as shown in the `source` label: its configured label with user info and query
/// values masked, and a command's program without its arguments (which may hold a token).
fn source_label(s: &SourceConfig) -> String {
    match &s.kind {
        SourceKind::Http { url } => format!("http {}", url_without_credentials(url)),
        SourceKind::HttpJson { url, field } => {
            format!("http-json {} {field}", url_without_credentials(url))
        }
        SourceKind::Upnp(UpnpSource::Description(url)) => {
            format!("upnp {}", url_without_credentials(url))
        }
        SourceKind::Command { argv } => {
            format!("command {}", argv.first().map_or("", String::as_str))
        }
        SourceKind::Dns(_)
        | SourceKind::Stun(_)
        | SourceKind::Upnp(UpnpSource::Ssdp(_))
        | SourceKind::Interface { .. } => s.label(),
    }
}

#[cfg(test)]
mod tests;
