//! Notifications: events sent to webhooks and ntfy topics, cycles pinged to healthchecks.io.
//!
//! Best-effort and never in the way: [`Notifier::notify`] is synchronous and returns at once; it
//! builds each notifier's request ([`mod@format`]) and queues it. Each notifier has its own bounded
//! queue ([`QUEUE_CAPACITY`], the oldest dropped when full, with one warning per episode) and
//! its own task that sends in order, each request bounded by the notifier's timeout and retried
//! with backoff ([`mod@deliver`]). A slow or dead notifier delays nobody but itself. The last
//! delivery failure is kept for `status`.
//!
//! [`FailureStreak`] and [`Heartbeat`] are the pure edge detections fed by every cycle's outcome.

pub mod deliver;
pub mod event;
pub mod failing;
pub mod format;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{NotifyConfig, NotifyKind};
use crate::metrics::{Metrics, NotificationOutcome};
use deliver::{deliver, HttpTransport, Transport};

pub use event::{
    Event, Failing, FirewallUpdate, GaveUp, IpChange, RemediationEvent, RemediationOutcome,
    RemediationStep,
};
pub use failing::{FailureStreak, Heartbeat, FAILING_AFTER};
pub use format::Ping;

/// Requests waiting per notifier. Events are rare (a few a day); 32 waiting means the notifier
/// has been down for a while, and the newest news matters most.
pub const QUEUE_CAPACITY: usize = 32;

/// How long the end of a `--once` run waits for its notifications to go out.
pub const ONCE_GRACE: Duration = Duration::from_secs(10);
/// How long a stopping daemon waits for its notifications: short, so that SIGTERM still ends
/// the process within two seconds.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The last notification that could not be delivered, kept for `dynwall status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFailure {
    /// Unix seconds.
    pub at: u64,
    /// The notifier, its URL masked (`notify[0] ntfy https://ntfy.sh/***`).
    pub notifier: String,
    /// `ip_changed`, …, or a healthchecks ping (`start`, `success`, `fail`).
    pub event: String,
    pub attempts: u32,
    pub error: String,
}

impl fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} not delivered after {} attempt{}: {}",
            self.notifier,
            self.event,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.error
        )
    }
}

/// Why the notifiers could not be started.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{notifier}: cannot set up an HTTP client: {reason}")]
    Client { notifier: String, reason: String },
}

/// The notifiers: a cheap handle (clones share the queues and tasks).
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

struct Shared {
    sinks: Vec<Arc<Sink>>,
    /// This machine's name, shown in messages (`None` when unknown).
    host: Option<String>,
    last_failure: Mutex<Option<DeliveryFailure>>,
    metrics: Metrics,
    /// Set by [`Notifier::close`]: each task sends what is queued, then ends.
    draining: CancellationToken,
    /// Set when the grace period is over: each task ends at once.
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// One notifier: its settings, its queue, and for healthchecks its heartbeat.
struct Sink {
    config: NotifyConfig,
    label: String,
    queue: Mutex<VecDeque<Queued>>,
    wake: Notify,
    /// Dropped since the queue last ran empty (0: no overflow episode going on).
    dropped: AtomicU64,
    heartbeat: Option<Mutex<Heartbeat>>,
}

struct Queued {
    /// The event or ping, for logs.
    what: &'static str,
    request: format::Request,
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical section
/// here is a push, a pop or a copy).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<&str> = self.shared.sinks.iter().map(|s| s.label.as_str()).collect();
        f.debug_struct("Notifier").field("sinks", &labels).finish()
    }
}

impl Notifier {
    /// Starts one sending task per configured notifier (within the current tokio runtime). A
    /// notifier whose URL was not read (a config loaded without secrets) is left out.
    pub fn start(
        configs: &[NotifyConfig],
        host: Option<String>,
        metrics: Metrics,
    ) -> Result<Notifier, NotifyError> {
        let mut transports: Vec<Arc<dyn Transport>> = Vec::with_capacity(configs.len());
        for c in configs {
            let token = match &c.kind {
                NotifyKind::Webhook { token, .. } | NotifyKind::Ntfy { token, .. } => token.clone(),
                NotifyKind::Healthchecks { .. } => None,
            };
            let t = HttpTransport::new(c.timeout, token).map_err(|e| NotifyError::Client {
                notifier: c.label(),
                reason: e.to_string(),
            })?;
            transports.push(Arc::new(t));
        }
        Ok(Notifier::with_transports(
            configs, transports, host, metrics,
        ))
    }

    /// Like [`start`](Self::start), sending through `transports` (one per config, in order).
    pub fn with_transports(
        configs: &[NotifyConfig],
        transports: Vec<Arc<dyn Transport>>,
        host: Option<String>,
        metrics: Metrics,
    ) -> Notifier {
        let mut sinks = Vec::new();
        let mut senders = Vec::new();
        for (config, transport) in configs.iter().zip(transports) {
            if config.url.expose().is_none() {
                continue;
            }
            let heartbeat = match config.kind {
                NotifyKind::Healthchecks { period } => Some(Mutex::new(Heartbeat::new(period))),
                _ => None,
            };
            let sink = Arc::new(Sink {
                label: config.label(),
                config: config.clone(),
                queue: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
                dropped: AtomicU64::new(0),
                heartbeat,
            });
            metrics.notifier(&sink.config);
            senders.push((sink.clone(), transport));
            sinks.push(sink);
        }
        let shared = Arc::new(Shared {
            sinks,
            host,
            last_failure: Mutex::new(None),
            metrics,
            draining: CancellationToken::new(),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let tasks = senders
            .into_iter()
            .map(|(sink, transport)| tokio::spawn(run_sink(shared.clone(), sink, transport)))
            .collect();
        *lock(&shared.tasks) = tasks;
        Notifier { shared }
    }

    /// No notifier at all: every call does nothing.
    pub fn disabled() -> Notifier {
        Notifier::with_transports(&[], Vec::new(), None, Metrics::disabled())
    }

    /// Queues `event` for every notifier that wants it, and returns at once.
    pub fn notify(&self, event: &Event) {
        let at = SystemTime::now();
        let host = self.shared.host.as_deref();
        for sink in &self.shared.sinks {
            let Some(url) = sink.config.url.expose() else {
                continue;
            };
            if !sink.config.wants(event.kind()) {
                continue;
            }
            let request = match &sink.config.kind {
                NotifyKind::Webhook { .. } => format::webhook(url, event, at, host),
                NotifyKind::Ntfy { priority, tags, .. } => {
                    format::ntfy(url, event, host, *priority, tags)
                }
                NotifyKind::Healthchecks { .. } => continue,
            };
            self.enqueue(sink, event.kind().as_str(), request);
        }
    }

    /// A sync cycle begins: the healthchecks checks whose heartbeat is due get `/start`.
    pub fn cycle_started(&self) {
        let now = tokio::time::Instant::now();
        self.ping_each(|h| h.cycle_started(now));
    }

    /// A sync cycle ended with `outcome` (`Err` holds its one-line error) at `now` (unix
    /// seconds): pings the healthchecks checks as [`Heartbeat`] says, and sends `failing` as
    /// `streak` (persisted by the caller) says.
    pub fn cycle_finished(&self, streak: &mut FailureStreak, outcome: Result<(), &str>, now: u64) {
        let instant = tokio::time::Instant::now();
        self.ping_each(|h| h.cycle_finished(outcome, instant));
        if let Some(failing) = streak.observe(outcome, now) {
            self.notify(&Event::Failing(failing));
        }
    }

    fn ping_each(&self, mut decide: impl FnMut(&mut Heartbeat) -> Option<Ping>) {
        for sink in &self.shared.sinks {
            let (Some(heartbeat), Some(url)) = (&sink.heartbeat, sink.config.url.expose()) else {
                continue;
            };
            let Some(ping) = decide(&mut lock(heartbeat)) else {
                continue;
            };
            let what = match ping {
                Ping::Start => "start",
                Ping::Success => "success",
                Ping::Fail(_) => "fail",
            };
            self.enqueue(sink, what, format::healthchecks(url, &ping));
        }
    }

    fn enqueue(&self, sink: &Sink, what: &'static str, request: format::Request) {
        let evicted = {
            let mut queue = lock(&sink.queue);
            let evicted = (queue.len() >= QUEUE_CAPACITY)
                .then(|| queue.pop_front())
                .flatten();
            queue.push_back(Queued { what, request });
            evicted
        };
        if let Some(old) = evicted {
            self.shared
                .metrics
                .notification(&sink.config, NotificationOutcome::Dropped);
            if sink.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    notifier = %sink.label,
                    dropped = old.what,
                    "notifications pile up ({QUEUE_CAPACITY} waiting): dropping the oldest \
                     until the notifier catches up"
                );
            }
        }
        sink.wake.notify_one();
    }

    /// The last notification that could not be delivered, if any (for `status`, and to persist).
    pub fn last_failure(&self) -> Option<DeliveryFailure> {
        lock(&self.shared.last_failure).clone()
    }

    /// Carries `failure` over from the notifiers this one replaces (a reload), unless this one
    /// has failed since.
    pub fn remember_failure(&self, failure: DeliveryFailure) {
        lock(&self.shared.last_failure).get_or_insert(failure);
    }

    /// Sends what is queued for at most `grace`, then abandons the rest (logged) and ends every
    /// task. For the end of a `--once` run ([`ONCE_GRACE`]) and of the daemon
    /// ([`SHUTDOWN_GRACE`]).
    pub async fn close(&self, grace: Duration) {
        self.shared.draining.cancel();
        let tasks = std::mem::take(&mut *lock(&self.shared.tasks));
        let all = futures::future::join_all(tasks);
        tokio::pin!(all);
        if tokio::time::timeout(grace, &mut all).await.is_ok() {
            return;
        }
        self.shared.stop.cancel();
        all.await;
        let left: usize = self.shared.sinks.iter().map(|s| lock(&s.queue).len()).sum();
        tracing::warn!(
            "stopping with notifications not sent: {left} queued, and any in flight (waited {})",
            humantime::format_duration(grace)
        );
    }
}

/// One notifier's task: sends its queue in order until told to stop.
async fn run_sink(shared: Arc<Shared>, sink: Arc<Sink>, transport: Arc<dyn Transport>) {
    loop {
        let next = lock(&sink.queue).pop_front();
        let Some(item) = next else {
            let dropped = sink.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                tracing::info!(
                    notifier = %sink.label,
                    "notifier caught up; {dropped} notification{} had to be dropped",
                    if dropped == 1 { "" } else { "s" }
                );
            }
            if shared.draining.is_cancelled() {
                return;
            }
            tokio::select! {
                biased;
                _ = shared.stop.cancelled() => return,
                _ = shared.draining.cancelled() => {}
                _ = sink.wake.notified() => {}
            }
            continue;
        };
        match deliver(transport.as_ref(), &item.request, &shared.stop).await {
            Ok(attempts) => {
                tracing::debug!(notifier = %sink.label, event = item.what, attempts, "notification sent");
                shared
                    .metrics
                    .notification(&sink.config, NotificationOutcome::Sent);
            }
            Err(u) if u.stopped => return,
            Err(u) => {
                tracing::warn!(
                    notifier = %sink.label,
                    event = item.what,
                    attempts = u.attempts,
                    "notification not delivered: {}",
                    u.reason
                );
                shared
                    .metrics
                    .notification(&sink.config, NotificationOutcome::Failed);
                *lock(&shared.last_failure) = Some(DeliveryFailure {
                    at: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    notifier: sink.label.clone(),
                    event: item.what.to_string(),
                    attempts: u.attempts,
                    error: u.reason,
                });
            }
        }
    }
}

/// This machine's name for messages, from the kernel or `/etc/hostname` (readable under the
/// shipped unit's sandbox, where `/proc/sys` is hidden); `None` when neither says.
pub fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty() && s.len() <= 253)
}

#[cfg(test)]
mod tests;
