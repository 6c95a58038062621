//! Pure edge detection on the stream of cycle outcomes: when to say `failing` (and recovered),
//! and when to ping a healthchecks.io check.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::event::Failing;
use super::format::Ping;

/// Consecutive failed cycles before `failing` is sent. One failed cycle is a blip (a source
/// timing out, one API hiccup) that the next cycle usually mends; two in a row (at least one
/// interval plus the backoff apart) are news.
pub const FAILING_AFTER: u32 = 2;

/// The current run of failed sync cycles, fed every cycle's outcome.
///
/// Persisted with the state (unix seconds, wall clock), so that `--once` runs from a timer
/// announce a failure once, and its recovery once, like the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureStreak {
    /// Consecutive failed cycles; 0 after a success.
    pub cycles: u32,
    /// When the first of them finished (unix seconds).
    pub since: Option<u64>,
    /// `failing` was sent for this streak (so its recovery will be sent too).
    pub announced: bool,
}

impl FailureStreak {
    /// Records one cycle's outcome (`Err` holds its one-line error) at `now` (unix seconds) and
    /// returns the event to send, if any: `Started` when the streak reaches
    /// [`FAILING_AFTER`] cycles, `Recovered` at the first success after an announced streak.
    pub fn observe(&mut self, outcome: Result<(), &str>, now: u64) -> Option<Failing> {
        match outcome {
            Ok(()) => {
                let event = self.announced.then(|| Failing::Recovered {
                    since: self.since.unwrap_or(now),
                    at: now,
                    cycles: self.cycles,
                });
                *self = FailureStreak::default();
                event
            }
            Err(error) => {
                self.cycles = self.cycles.saturating_add(1);
                let since = *self.since.get_or_insert(now);
                if self.announced || self.cycles < FAILING_AFTER {
                    return None;
                }
                self.announced = true;
                Some(Failing::Started {
                    since,
                    cycles: self.cycles,
                    error: error.to_string(),
                })
            }
        }
    }
}

/// When to ping a healthchecks.io check, so that the pings are both news and a dead-man
/// switch while staying cheap.
///
/// A cycle whose outcome differs from the last one pinged is pinged at once (a failure, or the
/// recovery). Otherwise a cycle is pinged when `period` has passed since the last ping: that is
/// the heartbeat whose absence healthchecks reports (a stopped or wedged daemon). Such a cycle
/// is also announced by `/start`, so healthchecks measures it and notices one that hangs. The
/// first cycle of a process is always pinged (so every `--once` run is).
#[derive(Clone, Debug)]
pub struct Heartbeat {
    period: Duration,
    last_ping: Option<Instant>,
    last_ok: Option<bool>,
    started: bool,
}

impl Heartbeat {
    pub fn new(period: Duration) -> Heartbeat {
        Heartbeat {
            period,
            last_ping: None,
            last_ok: None,
            started: false,
        }
    }

    fn due(&self, now: Instant) -> bool {
        self.last_ping
            .is_none_or(|last| now.saturating_duration_since(last) >= self.period)
    }

    /// A cycle begins at `now`: `Some(Ping::Start)` when its end will be pinged anyway.
    pub fn cycle_started(&mut self, now: Instant) -> Option<Ping> {
        self.started = self.due(now);
        self.started.then_some(Ping::Start)
    }

    /// A cycle ended at `now` with `outcome`: the ping to send, if any.
    pub fn cycle_finished(&mut self, outcome: Result<(), &str>, now: Instant) -> Option<Ping> {
        let ok = outcome.is_ok();
        let send = self.started || self.last_ok != Some(ok) || self.due(now);
        self.started = false;
        if !send {
            return None;
        }
        self.last_ping = Some(now);
        self.last_ok = Some(ok);
        Some(match outcome {
            Ok(()) => Ping::Success,
            Err(e) => Ping::Fail(e.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_is_said_once_on_the_way_down_and_once_on_recovery() {
        let mut s = FailureStreak::default();
        assert_eq!(s.observe(Ok(()), 100), None);
        // A single failed cycle is a blip: nothing, and nothing on its recovery.
        assert_eq!(s.observe(Err("timeout"), 160), None);
        assert_eq!(s.observe(Ok(()), 220), None);
        assert_eq!(s, FailureStreak::default());
        // Two in a row: `Started`, dated from the first, carrying the latest error.
        assert_eq!(s.observe(Err("no quorum"), 280), None);
        assert_eq!(
            s.observe(Err("HTTP 503"), 400),
            Some(Failing::Started {
                since: 280,
                cycles: 2,
                error: "HTTP 503".into()
            })
        );
        // Not again while it goes on failing.
        for t in [640, 1000, 2000] {
            assert_eq!(s.observe(Err("HTTP 503"), t), None);
        }
        assert_eq!(s.cycles, 5);
        // Recovery: once, with the streak's length and start.
        assert_eq!(
            s.observe(Ok(()), 2100),
            Some(Failing::Recovered {
                since: 280,
                at: 2100,
                cycles: 5
            })
        );
        assert_eq!(s.observe(Ok(()), 2160), None);
        assert_eq!(s, FailureStreak::default());
    }

    #[test]
    fn the_streak_survives_a_restart_through_the_state_file() {
        // `--once` runs: each is a fresh process that loads the streak from the state.
        let mut saved = String::new();
        let mut said = Vec::new();
        for (t, outcome) in [(0, Err("down")), (300, Err("down")), (600, Ok(()))] {
            let mut s: FailureStreak = if saved.is_empty() {
                FailureStreak::default()
            } else {
                serde_json::from_str(&saved).unwrap()
            };
            said.extend(s.observe(outcome, t));
            saved = serde_json::to_string(&s).unwrap();
        }
        assert_eq!(
            said,
            [
                Failing::Started {
                    since: 0,
                    cycles: 2,
                    error: "down".into()
                },
                Failing::Recovered {
                    since: 0,
                    at: 600,
                    cycles: 2
                }
            ]
        );
        // An older state file without the field reads as no streak.
        let s: FailureStreak = serde_json::from_str("{}").unwrap();
        assert_eq!(s, FailureStreak::default());
    }

    #[test]
    fn healthchecks_pings_changes_at_once_and_otherwise_once_per_period() {
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let mut h = Heartbeat::new(Duration::from_secs(300));
        // The first cycle of a process: /start and success.
        assert_eq!(h.cycle_started(at(0)), Some(Ping::Start));
        assert_eq!(h.cycle_finished(Ok(()), at(2)), Some(Ping::Success));
        // Unchanged outcomes within the period: silence.
        for t in [60, 120, 180, 240] {
            assert_eq!(h.cycle_started(at(t)), None);
            assert_eq!(h.cycle_finished(Ok(()), at(t + 1)), None);
        }
        // The period has passed since the last ping: the heartbeat, with /start.
        assert_eq!(h.cycle_started(at(302)), Some(Ping::Start));
        assert_eq!(h.cycle_finished(Ok(()), at(303)), Some(Ping::Success));
        // A failure is pinged at once, without /start (the cycle was not expected to ping).
        assert_eq!(h.cycle_started(at(360)), None);
        assert_eq!(
            h.cycle_finished(Err("no usable public IPv4 address"), at(361)),
            Some(Ping::Fail("no usable public IPv4 address".into()))
        );
        // Failing on: silent until the period is up again, then /fail again.
        assert_eq!(h.cycle_started(at(480)), None);
        assert_eq!(h.cycle_finished(Err("still"), at(481)), None);
        assert_eq!(h.cycle_started(at(700)), Some(Ping::Start));
        assert_eq!(
            h.cycle_finished(Err("still"), at(701)),
            Some(Ping::Fail("still".into()))
        );
        // The recovery at once.
        assert_eq!(h.cycle_started(at(760)), None);
        assert_eq!(h.cycle_finished(Ok(()), at(761)), Some(Ping::Success));
    }

    #[test]
    fn a_cycle_that_was_not_announced_still_pings_when_due() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(Duration::from_secs(60));
        assert_eq!(h.cycle_finished(Ok(()), t0), Some(Ping::Success));
        assert_eq!(h.cycle_finished(Ok(()), t0 + Duration::from_secs(30)), None);
        assert_eq!(
            h.cycle_finished(Ok(()), t0 + Duration::from_secs(61)),
            Some(Ping::Success)
        );
    }
}
