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

/// What the gateway last told us about the current window.
#[derive(Clone, Copy, Debug)]
struct ServerQuota {
    available: u32,
    reset_at: Instant,
}

/// The request budget.
///
/// While the gateway's own counters are known (`X-Quota-Available` and `X-Quota-Reset` of the last
/// answer) they are followed exactly, counting our own requests down; without them a local sliding
/// window of `allowed` requests per `window` stands in. The minimum gap always applies.
#[derive(Debug)]
pub struct Budget {
    allowed: u32,
    window: Duration,
    min_gap: Duration,
    sent: VecDeque<Instant>,
    server: Option<ServerQuota>,
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
            server: None,
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
        match self.server {
            // The gateway's window is still open: its counter is the truth.
            Some(q) if now < q.reset_at => {
                if q.available == 0 {
                    ready = ready.max(q.reset_at);
                }
            }
            // Its window has reset since: a fresh allowance.
            Some(_) => {}
            None => {
                let n = self.allowed as usize;
                if self.sent.len() >= n {
                    if let Some(&first) = self.sent.get(self.sent.len() - n) {
                        ready = ready.max(first + self.window);
                    }
                }
            }
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
        if let Some(q) = self.server.as_mut() {
            if now < q.reset_at {
                q.available = q.available.saturating_sub(1);
            } else {
                self.server = None;
            }
        }
    }

    /// Adjusts the budget to what the API reported at `now` (for the request just answered).
    pub fn observe(&mut self, q: QuotaHeaders, now: Instant) {
        if let Some(a) = q.allowed.filter(|a| *a > 0) {
            self.allowed = a;
        }
        match (q.available, q.reset_in) {
            (Some(available), Some(reset_in)) => {
                self.server = Some(ServerQuota {
                    available,
                    reset_at: now + reset_in.min(MAX_RESET_WAIT),
                });
            }
            // Exhausted but no reset time: assume a whole window.
            (Some(0), None) => {
                self.server = Some(ServerQuota {
                    available: 0,
                    reset_at: now + self.window,
                });
            }
            _ => {}
        }
    }

    /// The assumed window length (the longest a quota wait should take).
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

    fn headers(allowed: u32, available: u32, reset_secs: u64) -> QuotaHeaders {
        QuotaHeaders {
            allowed: Some(allowed),
            available: Some(available),
            reset_in: Some(Duration::from_secs(reset_secs)),
        }
    }

    #[test]
    fn the_gateways_counters_replace_the_local_guess() {
        let t0 = Instant::now();
        let mut b = Budget::default();
        // A generous gateway: far more than six requests go through without waiting a window.
        b.observe(headers(100, 99, 30), t0);
        let mut t = t0;
        for _ in 0..10 {
            t += b.wait_time(t);
            b.record(t);
        }
        assert_eq!(t - t0, 9 * MIN_GAP);
    }

    #[test]
    fn an_exhausted_window_waits_for_the_reset_then_starts_afresh() {
        let t0 = Instant::now();
        let mut b = Budget::new(6, DEFAULT_WINDOW, MIN_GAP);
        // Four allowed per window, two used by others already; the window resets in 3 s.
        b.observe(headers(4, 2, 3), t0);
        b.record(t0 + MIN_GAP);
        let t = t0 + 2 * MIN_GAP;
        assert_eq!(b.wait_time(t), Duration::ZERO);
        b.record(t);
        // Our count reached zero: wait until the reset, not a whole assumed minute.
        assert_eq!(b.wait_time(t), Duration::from_secs(3) - 2 * MIN_GAP);
        let after = t0 + Duration::from_secs(3);
        assert_eq!(b.wait_time(after), Duration::ZERO);
        b.record(after);
        assert_eq!(b.wait_time(after + MIN_GAP), Duration::ZERO);
    }

    #[test]
    fn a_far_reset_is_capped_and_a_429_without_reset_waits_a_window() {
        let t0 = Instant::now();
        let mut b = Budget::default();
        b.observe(headers(6, 0, 3600), t0);
        assert_eq!(b.wait_time(t0), MAX_RESET_WAIT);
        let mut b = Budget::default();
        b.observe(
            QuotaHeaders {
                allowed: None,
                available: Some(0),
                reset_in: None,
            },
            t0,
        );
        assert_eq!(b.wait_time(t0), DEFAULT_WINDOW);
    }
}
