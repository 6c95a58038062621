//! The daemon loop: IP checks on an interval with jitter, probe rounds when due, the sync job's
//! reports as they come, reloads on SIGHUP, the systemd watchdog, and a prompt stop.
//!
//! The loop itself never waits on the API budget: a firewall sync runs as a job of its own
//! ([`crate::engine::job`]), so IP checks and probe rounds go on while a write waits for quota.
//! Inline work (a check, a round) is bounded by a deadline derived from the work; the watchdog
//! is fed while it runs, and starves only when the loop itself is wedged.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::{Clouds, Engine};
use crate::exit::AppError;
use crate::probe::{Health, RoundReport};
use crate::resolver::ResolverSet;
use crate::systemd::Notifier;

/// Longest pause between attempts after repeated failures (unless the interval is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// Relative jitter on every pause, so many daemons (or a daemon and a cron job) drift apart.
pub const JITTER: f64 = 0.1;

/// Everything a reload produces.
pub struct Rebuilt {
    pub config: Arc<Config>,
    pub resolvers: ResolverSet,
    pub clouds: Clouds,
    /// The Salt soft step's client (`None` without a `[salt]` table).
    pub soft: Option<Arc<dyn crate::salt::SoftCure>>,
}

/// The pause before the next attempt. Pure: `jitter` is a sample in [-1, 1].
///
/// After `failures` consecutive failures the interval doubles per failure, capped at
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
    let stuck = report.instances.iter().filter(|i| i.needs_operator).count();
    if stuck > 0 {
        line += &format!(", {stuck} needing an operator");
    }
    if report.observer_problem {
        line += ", observer problem";
    }
    line
}

/// Runs `work` unless shutdown comes first, feeding the watchdog meanwhile and bounding it by
/// `deadline`. `None` means shutdown.
async fn guarded<T>(
    shutdown: &CancellationToken,
    watchdog: &mut tokio::time::Interval,
    notifier: &Notifier,
    deadline: Duration,
    work: impl Future<Output = T>,
) -> Option<Result<T, tokio::time::error::Elapsed>> {
    let work = tokio::time::timeout(deadline, work);
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
    rand::rng().random_range(-1.0..=1.0)
}

/// The longest an IP check may take: every tracked family's sources, twice over.
fn check_deadline(engine: &Engine) -> Duration {
    let families = engine.config.tracked_families().len() as u32;
    (2 * engine.resolvers.timeout() * families.max(1)).max(Duration::from_secs(30))
}

/// Runs the daemon until `shutdown` is cancelled.
///
/// `rebuild` re-reads the configuration for a reload (given the current one, so clients of
/// unchanged connections are kept with their token and quota budget); on error the old one
/// stays in force. Reloads happen between checks and rounds, never inside a remediation step.
pub async fn run(
    mut engine: Engine,
    notifier: Notifier,
    shutdown: CancellationToken,
    mut reload: mpsc::Receiver<()>,
    rebuild: impl Fn(&Arc<Config>, &Clouds) -> Result<Rebuilt, AppError>,
) {
    notifier.ready();
    let watchdog_every = notifier
        .watchdog_interval()
        .unwrap_or(Duration::from_secs(3600));
    let mut watchdog = tokio::time::interval(watchdog_every);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures: u32 = 0;
    let mut next_check = Instant::now();
    let mut probe_slack = Duration::ZERO;
    let mut probe_line: Option<String> = None;
    loop {
        let next_probe = engine
            .has_probes()
            .then(|| engine.next_probe_due())
            .flatten()
            .map(|t| t + probe_slack);
        if engine.check_requested() {
            next_check = Instant::now();
        }
        let mut worked = true;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            ev = engine.next_event() => worked = engine.absorb(ev).await,
            Some(()) = reload.recv() => {
                notifier.reloading();
                match rebuild(&engine.config, &engine.clouds) {
                    Ok(r) => {
                        if r.config.daemon.state_dir != engine.config.daemon.state_dir {
                            tracing::warn!(
                                "daemon.state_dir changed; the new directory takes effect after a restart"
                            );
                        }
                        engine.reconfigure(r.config, r.resolvers, r.clouds);
                        engine.reconfigure_watch().await;
                        engine.set_soft_cure(r.soft);
                        tracing::info!("configuration reloaded");
                        next_check = Instant::now();
                        failures = 0;
                    }
                    Err(e) => {
                        tracing::error!("reload failed; keeping the previous configuration: {e}");
                        notifier.status(&format!("{}; reload failed, old configuration kept", engine.sync_status()));
                    }
                }
                notifier.ready();
                worked = false;
            }
            _ = watchdog.tick() => {
                notifier.watchdog();
                worked = false;
            }
            _ = tokio::time::sleep_until(next_check) => {
                let deadline = check_deadline(&engine);
                let Some(outcome) = guarded(&shutdown, &mut watchdog, &notifier, deadline, engine.check()).await
                else {
                    break;
                };
                let resolved = match outcome {
                    Ok(report) => report.resolutions.iter().all(|(_, r)| r.outcome.is_ok()),
                    Err(_) => {
                        tracing::error!("IP check did not finish within {}; abandoned",
                            humantime::format_duration(deadline));
                        false
                    }
                };
                failures = if resolved { 0 } else { failures.saturating_add(1) };
                let delay = next_delay(engine.config.daemon.interval, failures, jitter());
                next_check = Instant::now() + delay;
                // A cycle that started a sync is reported when the sync ends.
                worked = !engine.sync_in_flight();
            }
            _ = sleep_until_some(next_probe) => {
                let deadline = engine.round_deadline();
                let Some(outcome) = guarded(&shutdown, &mut watchdog, &notifier, deadline, engine.probe_round(false)).await
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
                let shortest = engine.config.probes.iter().map(|p| p.interval).min().unwrap_or_default();
                probe_slack = shortest.mul_f64(JITTER / 2.0 * rand::rng().random_range(0.0..=1.0));
            }
        }
        // After every check, round and sync report (not on the idle wake-ups that only feed the
        // watchdog).
        if worked {
            let mut status = match &probe_line {
                Some(p) => format!("{}; {p}", engine.sync_status()),
                None => engine.sync_status(),
            };
            if let Some(r) = engine.last_remediation_line() {
                status = format!("{status}; {r}");
            }
            notifier.status(&status);
        }
    }
    notifier.stopping();
    engine.close_watch(crate::notify::SHUTDOWN_GRACE).await;
    engine.shutdown().await;
    tracing::info!("stopped");
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
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
