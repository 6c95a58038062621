//! The daemon loop: cycles on an interval with jitter, backs off on failure, reloads on SIGHUP,
//! keeps the systemd watchdog fed, and stops promptly on cancellation.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::cycle::{CycleReport, Engine};
use crate::exit::AppError;
use crate::probe::{Health, RoundReport};
use crate::provider::Provider;
use crate::resolver::ResolverSet;
use crate::systemd::Notifier;

/// Longest pause between attempts after repeated failures (unless the interval is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// Upper bound on one cycle: resolver timeouts, API retries and one quota window fit easily.
pub const CYCLE_DEADLINE: Duration = Duration::from_secs(10 * 60);
/// Relative jitter on every pause, so many daemons (or a daemon and a cron job) drift apart.
pub const JITTER: f64 = 0.1;

/// Everything a reload produces.
pub struct Rebuilt {
    pub config: Arc<Config>,
    pub resolvers: ResolverSet,
    pub provider: Arc<dyn Provider>,
}

/// The pause before the next cycle. Pure: `jitter` is a sample in [-1, 1].
///
/// After `failures` consecutive failed cycles the interval doubles per failure, capped at
/// `max(interval, MAX_BACKOFF)`; a success returns to the plain interval.
pub fn next_delay(interval: Duration, failures: u32, jitter: f64) -> Duration {
    let base = if failures == 0 {
        interval
    } else {
        let cap = interval.max(MAX_BACKOFF);
        interval.saturating_mul(1u32 << failures.min(16)).min(cap)
    };
    base.mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0))
}

/// The sync half of the `STATUS=` line.
pub fn status_line(report: &CycleReport, config: &Config) -> String {
    match (report.home.is_empty(), report.error_summary()) {
        (false, None) => format!(
            "in sync: {} on {} template{}",
            report.home,
            config.firewalls.len(),
            if config.firewalls.len() == 1 { "" } else { "s" }
        ),
        (_, Some(e)) => format!("degraded: {e}"),
        (true, None) => "waiting for a public address".to_string(),
    }
}

/// The probe half of the `STATUS=` line.
pub fn probe_status(report: &RoundReport, probes: usize) -> String {
    let up = report
        .instances
        .iter()
        .filter(|i| matches!(i.health, Health::Up))
        .count();
    let mut line = format!("{up}/{probes} instances healthy");
    let remediating = report
        .instances
        .iter()
        .filter(|i| i.remediation.is_some())
        .count();
    if remediating > 0 {
        line += &format!(", {remediating} being restarted");
    }
    let given_up = report.instances.iter().filter(|i| i.given_up).count();
    if given_up > 0 {
        line += &format!(", {given_up} given up");
    }
    if report.observer_problem {
        line += ", observer problem";
    }
    line
}

/// Runs `work` unless shutdown comes first, feeding the watchdog meanwhile and bounding it by
/// [`CYCLE_DEADLINE`]. `None` means shutdown.
async fn guarded<T>(
    shutdown: &CancellationToken,
    watchdog: &mut tokio::time::Interval,
    notifier: &Notifier,
    work: impl Future<Output = T>,
) -> Option<Result<T, tokio::time::error::Elapsed>> {
    let work = tokio::time::timeout(CYCLE_DEADLINE, work);
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            r = &mut work => return Some(r),
            _ = watchdog.tick() => notifier.watchdog(),
        }
    }
}

fn jitter() -> f64 {
    rand::thread_rng().gen_range(-1.0..=1.0)
}

/// Runs the daemon until `shutdown` is cancelled: sync cycles every `interval`, probe rounds
/// every probe interval, one at a time (they share the API budget and the state).
///
/// `rebuild` re-reads the configuration for a reload; on error the old one stays in force.
/// Reloads happen only between cycles and rounds, never inside a remediation step.
pub async fn run(
    mut engine: Engine,
    notifier: Notifier,
    shutdown: CancellationToken,
    mut reload: mpsc::Receiver<()>,
    rebuild: impl Fn() -> Result<Rebuilt, AppError>,
) {
    notifier.ready();
    let watchdog_every = notifier
        .watchdog_interval()
        .unwrap_or(Duration::from_secs(3600));
    let mut watchdog = tokio::time::interval(watchdog_every);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures: u32 = 0;
    let mut next_sync = Instant::now();
    let mut next_probe = Instant::now();
    let mut sync_status = String::from("starting");
    let mut probe_line: Option<String> = None;
    loop {
        let now = Instant::now();
        let mut worked = true;
        if now >= next_sync {
            let Some(outcome) = guarded(&shutdown, &mut watchdog, &notifier, engine.cycle()).await
            else {
                break;
            };
            let delay = match outcome {
                Ok(report) => {
                    sync_status = status_line(&report, &engine.config);
                    failures = if report.ok() {
                        0
                    } else {
                        failures.saturating_add(1)
                    };
                    next_delay(engine.config.daemon.interval, failures, jitter())
                }
                Err(_) => {
                    tracing::error!(
                        "sync cycle did not finish within {}; abandoned",
                        humantime::format_duration(CYCLE_DEADLINE)
                    );
                    sync_status = "degraded: sync cycle timed out".to_string();
                    failures = failures.saturating_add(1);
                    next_delay(engine.config.daemon.interval, failures, 0.0)
                }
            };
            if failures > 0 {
                tracing::debug!(retry_in = %humantime::format_duration(delay), "sync cycle failed");
            }
            next_sync = Instant::now() + delay;
        } else if engine.has_probes() && now >= next_probe {
            let Some(outcome) = guarded(
                &shutdown,
                &mut watchdog,
                &notifier,
                engine.probe_round(false),
            )
            .await
            else {
                break;
            };
            match outcome {
                Ok(Ok(report)) if report.instances.is_empty() => {}
                Ok(Ok(report)) => {
                    probe_line = Some(probe_status(&report, engine.config.probes.len()));
                }
                Ok(Err(e)) => tracing::error!("probe round: {e}"),
                Err(_) => tracing::error!("probe round did not finish in time; abandoned"),
            }
            next_probe = Instant::now() + engine.probe_pause().mul_f64(1.0 + JITTER * jitter());
        } else {
            worked = false;
        }
        let status = match &probe_line {
            Some(p) => format!("{sync_status}; {p}"),
            None => sync_status.clone(),
        };
        // After every cycle or round (not on the idle wake-ups that only feed the watchdog).
        if worked {
            notifier.status(&status);
        }

        let wake = if engine.has_probes() {
            next_sync.min(next_probe)
        } else {
            next_sync
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(()) = reload.recv() => {
                notifier.reloading();
                match rebuild() {
                    Ok(r) => {
                        if r.config.daemon.state_dir != engine.config.daemon.state_dir {
                            tracing::warn!(
                                "daemon.state_dir changed; the new directory takes effect after a restart"
                            );
                        }
                        engine.reconfigure(r.config, r.resolvers, r.provider);
                        tracing::info!("configuration reloaded");
                        next_sync = Instant::now();
                        next_probe = Instant::now();
                        failures = 0;
                    }
                    Err(e) => {
                        tracing::error!("reload failed; keeping the previous configuration: {e}");
                        notifier.status(&format!("{status}; reload failed, old configuration kept"));
                    }
                }
                notifier.ready();
            }
            _ = watchdog.tick() => notifier.watchdog(),
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    notifier.stopping();
    tracing::info!("stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn success_waits_one_interval_with_bounded_jitter() {
        assert_eq!(next_delay(MIN, 0, 0.0), MIN);
        assert_eq!(next_delay(MIN, 0, 1.0), Duration::from_secs(66));
        assert_eq!(next_delay(MIN, 0, -1.0), Duration::from_secs(54));
        assert_eq!(next_delay(MIN, 0, 7.0), Duration::from_secs(66));
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        assert_eq!(next_delay(MIN, 1, 0.0), 2 * MIN);
        assert_eq!(next_delay(MIN, 2, 0.0), 4 * MIN);
        assert_eq!(next_delay(MIN, 3, 0.0), MAX_BACKOFF);
        assert_eq!(next_delay(MIN, 40, 0.0), MAX_BACKOFF);
        let hour = Duration::from_secs(3600);
        assert_eq!(
            next_delay(hour, 5, 0.0),
            hour,
            "a long interval is never shortened"
        );
        let second = Duration::from_secs(1);
        assert_eq!(next_delay(second, 3, 0.0), 8 * second);
    }
}
