//! Client-side request budget: stay under the API quota instead of discovering it by 429s.
//!
//! Indigo allows about 6 requests a minute per key (reported in `X-Quota-Allowed`, window ~60 s)
//! and has a spike arrest of 2 requests a second. The budget keeps a sliding window of send times
//! and a minimum gap between requests; quota headers adjust it. Pure: callers pass the time in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Requests per window when the API has not told us otherwise.
pub const DEFAULT_ALLOWED: u32 = 6;
/// The quota window observed on the real API.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Spike arrest allows 2 requests per second; 500 ms plus a small margin for network jitter
/// between our send time and the gateway's arrival time.
pub const MIN_GAP: Duration = Duration::from_millis(520);
/// Longest we believe an `X-Quota-Reset` that lies in the future (guards against clock skew).
pub const MAX_RESET_WAIT: Duration = Duration::from_secs(120);

/// What the quota headers of one answer said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaHeaders {
    pub allowed: Option<u32>,
    pub available: Option<u32>,
    /// Time until the window resets, derived from `X-Quota-Reset` (epoch ms).
    pub reset_in: Option<Duration>,
}

/// The sliding-window budget.
#[derive(Debug)]
pub struct Budget {
    allowed: u32,
    window: Duration,
    min_gap: Duration,
    sent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(DEFAULT_ALLOWED, DEFAULT_WINDOW, MIN_GAP)
    }
}

impl Budget {
    pub fn new(allowed: u32, window: Duration, min_gap: Duration) -> Budget {
        Budget {
            allowed: allowed.max(1),
            window,
            min_gap,
            sent: VecDeque::new(),
            blocked_until: None,
        }
    }

    /// How long to wait before the next request may be sent at `now`.
    pub fn wait_time(&mut self, now: Instant) -> Duration {
        while let Some(&t) = self.sent.front() {
            if now.saturating_duration_since(t) >= self.window {
                self.sent.pop_front();
            } else {
                break;
            }
        }
        let mut ready = now;
        if let Some(&last) = self.sent.back() {
            ready = ready.max(last + self.min_gap);
        }
        if self.sent.len() >= self.allowed as usize {
            if let Some(&first) = self.sent.get(self.sent.len() - self.allowed as usize) {
                ready = ready.max(first + self.window);
            }
        }
        if let Some(until) = self.blocked_until {
            ready = ready.max(until);
        }
        ready.saturating_duration_since(now)
    }

    /// Records that a request was sent at `now`.
    pub fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
        // Never hold more history than the window can use.
        while self.sent.len() > self.allowed as usize + 1 {
            self.sent.pop_front();
        }
    }

    /// Adjusts the budget to what the API reported at `now`.
    pub fn observe(&mut self, q: QuotaHeaders, now: Instant) {
        if let Some(a) = q.allowed.filter(|a| *a > 0) {
            self.allowed = a;
        }
        if q.available == Some(0) {
            let wait = q.reset_in.unwrap_or(self.window).min(MAX_RESET_WAIT);
            self.blocked_until = Some(now + wait);
        } else if q.available.is_some() {
            self.blocked_until = None;
        }
    }

    /// The current window length (the longest a quota wait should take).
    pub fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn requests_keep_the_minimum_gap() {
        let t0 = Instant::now();
        let mut b = Budget::default();
        assert_eq!(b.wait_time(t0), Duration::ZERO);
        b.record(t0);
        assert_eq!(b.wait_time(t0), MIN_GAP);
        assert_eq!(b.wait_time(t0 + 100 * MS), MIN_GAP - 100 * MS);
        assert_eq!(b.wait_time(t0 + MIN_GAP), Duration::ZERO);
    }

    #[test]
    fn a_full_window_waits_for_the_oldest_request_to_expire() {
        let t0 = Instant::now();
        let mut b = Budget::default();
        for i in 0..6 {
            let t = t0 + i * Duration::from_secs(1);
            assert_eq!(b.wait_time(t), Duration::ZERO, "request {i}");
            b.record(t);
        }
        let t = t0 + Duration::from_secs(6);
        assert_eq!(b.wait_time(t), Duration::from_secs(54));
        b.record(t0 + Duration::from_secs(60));
        // The second request (t0+1s) is now the oldest of the last six.
        assert_eq!(
            b.wait_time(t0 + Duration::from_secs(60)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn bursts_within_the_budget_only_pay_the_gap() {
        let t0 = Instant::now();
        let mut b = Budget::new(6, DEFAULT_WINDOW, MIN_GAP);
        let mut t = t0;
        for _ in 0..6 {
            t += b.wait_time(t);
            b.record(t);
        }
        assert_eq!(t - t0, 5 * MIN_GAP);
    }

    #[test]
    fn headers_change_the_allowance_and_block_until_reset() {
        let t0 = Instant::now();
        let mut b = Budget::default();
        b.observe(
            QuotaHeaders {
                allowed: Some(100),
                available: Some(99),
                reset_in: Some(Duration::from_secs(30)),
            },
            t0,
        );
        for i in 0..10 {
            let t = t0 + i * Duration::from_secs(1);
            assert_eq!(b.wait_time(t), Duration::ZERO);
            b.record(t);
        }
        let t = t0 + Duration::from_secs(10);
        b.observe(
            QuotaHeaders {
                allowed: Some(100),
                available: Some(0),
                reset_in: Some(Duration::from_secs(7)),
            },
            t,
        );
        assert_eq!(b.wait_time(t), Duration::from_secs(7));
        // A reset that claims to be far away is capped.
        b.observe(
            QuotaHeaders {
                allowed: None,
                available: Some(0),
                reset_in: Some(Duration::from_secs(3600)),
            },
            t,
        );
        assert_eq!(b.wait_time(t), MAX_RESET_WAIT);
        b.observe(
            QuotaHeaders {
                allowed: None,
                available: Some(5),
                reset_in: None,
            },
            t,
        );
        assert_eq!(b.wait_time(t), Duration::ZERO);
    }
}
