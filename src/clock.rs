//! The one clock: monotonic for everything measured inside the process, wall time only for what
//! is persisted.
//!
//! Decisions work in *process seconds*: the wall time at start-up plus the monotonic time
//! elapsed since (tokio's clock, so tests can pause and advance it). A clock step during a run
//! changes nothing: a step back no longer stops probing, a step forward no longer forces an
//! escalation. Records carry process seconds in memory and wall seconds on disk; the store
//! converts with [`Clock::to_wall`] when saving and [`Clock::from_wall`] when loading, and
//! persisted times that lie in the future are clamped to now.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Seconds since the Unix epoch on the system's wall clock.
pub fn wall_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The process clock. Cheap to clone; clones share the same origin.
#[derive(Clone)]
pub struct Clock {
    origin: Instant,
    origin_secs: u64,
    wall: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("origin_secs", &self.origin_secs)
            .finish_non_exhaustive()
    }
}

impl Clock {
    /// The clock of a running process: starts at the wall time now.
    pub fn system() -> Clock {
        Clock::with_wall(Arc::new(wall_now))
    }

    /// A clock whose wall time comes from `wall` (tests step it back and forth).
    pub fn with_wall(wall: Arc<dyn Fn() -> u64 + Send + Sync>) -> Clock {
        Clock {
            origin: Instant::now(),
            origin_secs: wall(),
            wall,
        }
    }

    /// Process seconds now: the start-up wall time plus monotonic time since.
    pub fn now(&self) -> u64 {
        self.origin_secs
            .saturating_add(self.origin.elapsed().as_secs())
    }

    /// The monotonic instant now, for in-process deadlines and schedules.
    pub fn instant(&self) -> Instant {
        Instant::now()
    }

    /// The wall clock now.
    pub fn wall(&self) -> u64 {
        (self.wall)()
    }

    /// Wall seconds minus process seconds: nonzero once the wall clock was stepped.
    fn offset(&self) -> i128 {
        i128::from(self.wall()) - i128::from(self.now())
    }

    /// A process time as wall time, for the state file.
    pub fn to_wall(&self, t: u64) -> u64 {
        shift(t, self.offset())
    }

    /// A wall time read from the state file as process time; the future is clamped to now.
    pub fn from_wall(&self, t: u64) -> u64 {
        shift(t, -self.offset()).min(self.now())
    }

    /// The conversion [`Clock::to_wall`] applies now, as a signed shift.
    pub fn wall_shift(&self) -> i128 {
        self.offset()
    }
}

/// `t + delta`, saturating at the ends of `u64`.
pub fn shift(t: u64, delta: i128) -> u64 {
    u64::try_from((i128::from(t) + delta).max(0)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn process_seconds_follow_the_monotonic_clock_whatever_the_wall_does() {
        let wall = Arc::new(AtomicU64::new(1_000_000));
        let w = wall.clone();
        let clock = Clock::with_wall(Arc::new(move || w.load(Ordering::SeqCst)));
        assert_eq!(clock.now(), 1_000_000);
        tokio::time::advance(Duration::from_secs(30)).await;
        wall.store(1_000_030 - 3600, Ordering::SeqCst);
        assert_eq!(clock.now(), 1_000_030, "a step back is not seen");
        // Saved records carry the wall time; read back, they mean the same moment.
        assert_eq!(clock.to_wall(1_000_020), 1_000_020 - 3600);
        assert_eq!(clock.from_wall(1_000_020 - 3600), 1_000_020);
        wall.store(1_000_030 + 86_400, Ordering::SeqCst);
        assert_eq!(clock.now(), 1_000_030, "nor a step forward");
        assert_eq!(clock.to_wall(1_000_030), 1_000_030 + 86_400);
    }

    #[tokio::test(start_paused = true)]
    async fn persisted_times_in_the_future_are_clamped_to_now() {
        let clock = Clock::with_wall(Arc::new(|| 5_000));
        assert_eq!(clock.from_wall(4_000), 4_000);
        assert_eq!(clock.from_wall(9_000), 5_000);
        assert_eq!(shift(5, -10), 0);
        assert_eq!(shift(u64::MAX, 10), u64::MAX);
    }
}
