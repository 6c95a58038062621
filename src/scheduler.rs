//! The daemon loop: cycles on an interval with jitter, backs off on failure, reloads on SIGHUP,
//! keeps the systemd watchdog fed, and stops promptly on cancellation.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::cycle::{CycleReport, Syncer};
use crate::exit::AppError;
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

/// The `STATUS=` line after a cycle.
pub fn status_line(report: &CycleReport, config: &Config) -> String {
    match (&report.ip, report.error_summary()) {
        (Some(ip), None) => format!(
            "in sync: {ip} on {} template{}",
            config.firewalls.len(),
            if config.firewalls.len() == 1 { "" } else { "s" }
        ),
        (_, Some(e)) => format!("degraded: {e}"),
        (None, None) => "waiting for a public address".to_string(),
    }
}

/// Runs the daemon until `shutdown` is cancelled.
///
/// `rebuild` re-reads the configuration for a reload; on error the old one stays in force.
pub async fn run(
    mut syncer: Syncer,
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
    'outer: loop {
        let report = {
            let cycle = tokio::time::timeout(CYCLE_DEADLINE, syncer.cycle());
            tokio::pin!(cycle);
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break 'outer,
                    r = &mut cycle => break r,
                    _ = watchdog.tick() => notifier.watchdog(),
                }
            }
        };
        let delay = match report {
            Ok(report) => {
                notifier.status(&status_line(&report, &syncer.config));
                failures = if report.ok() {
                    0
                } else {
                    failures.saturating_add(1)
                };
                next_delay(
                    syncer.config.daemon.interval,
                    failures,
                    rand::thread_rng().gen_range(-1.0..=1.0),
                )
            }
            Err(_) => {
                tracing::error!(
                    "cycle did not finish within {}; abandoned",
                    humantime::format_duration(CYCLE_DEADLINE)
                );
                notifier.status("degraded: cycle timed out");
                failures = failures.saturating_add(1);
                next_delay(syncer.config.daemon.interval, failures, 0.0)
            }
        };
        if failures > 0 {
            tracing::debug!(retry_in = %humantime::format_duration(delay), "cycle failed");
        }
        let pause = tokio::time::sleep(delay);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break 'outer,
                Some(()) = reload.recv() => {
                    notifier.reloading();
                    match rebuild() {
                        Ok(r) => {
                            if r.config.daemon.state_dir != syncer.config.daemon.state_dir {
                                tracing::warn!(
                                    "daemon.state_dir changed; the new directory takes effect after a restart"
                                );
                            }
                            syncer.reconfigure(r.config, r.resolvers, r.provider);
                            tracing::info!("configuration reloaded");
                        }
                        Err(e) => tracing::error!("reload failed; keeping the previous configuration: {e}"),
                    }
                    notifier.ready();
                    failures = 0;
                    break;
                }
                _ = watchdog.tick() => notifier.watchdog(),
                _ = &mut pause => break,
            }
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
