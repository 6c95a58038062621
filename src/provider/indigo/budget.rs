//! Client-side request budget: stay under the API quota instead of discovering it by 429s.
//!
//! Indigo allows about 6 requests a minute per key (reported in `X-Quota-Allowed`, window ~60 s)
//! and has a spike arrest of 2 requests a second. The budget keeps a sliding window of send times
//! and a minimum gap between requests; quota headers adjust it. [`Budget`] is pure (callers pass
//! the time in); [`IndigoQuota`] plugs it into the shared HTTP layer as its rate limit.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use tokio::time::Instant;

use crate::provider::error::whole_seconds;
use crate::provider::http::{RateLimit, Throttle};

/// Requests per window when the API has not told us otherwise.
pub const DEFAULT_ALLOWED: u32 = 6;
/// The quota window observed on the real API.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Spike arrest allows 2 requests per second; 500 ms plus a small margin for network jitter
/// between our send time and the gateway's arrival time.
pub const MIN_GAP: Duration = Duration::from_millis(520);
/// Longest we believe an `X-Quota-Reset` that lies in the future (guards against clock skew);
/// a request that would wait longer than a window fails at once instead.
pub const MAX_RESET_WAIT: Duration = Duration::from_secs(120);
/// Extra wait past `X-Quota-Reset` so we do not arrive a hair before the gateway resets.
pub const RESET_MARGIN: Duration = Duration::from_millis(250);
/// Wait after a 429 that carries no exhausted quota (spike arrest: 2 requests a second).
pub const SPIKE_WAIT: Duration = Duration::from_secs(1);

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

    /// Books the next slot at or after `now` and returns it: the caller sends then. Booking at
    /// once means two concurrent callers never get the same slot.
    pub fn reserve(&mut self, now: Instant) -> Instant {
        let at = now + self.wait_time(now);
        self.record(at);
        at
    }

    /// Records that a request was sent (or booked) at `now`.
    pub fn record(&mut self, now: Instant) {
        if let Some(q) = self.server {
            if now >= q.reset_at {
                // The gateway's window reset: what was sent before belongs to the old one.
                self.sent.retain(|t| *t >= q.reset_at);
                self.server = None;
            }
        }
        self.sent.push_back(now);
        // Never hold more history than the window can use.
        while self.sent.len() > self.allowed as usize + 1 {
            self.sent.pop_front();
        }
        if let Some(q) = self.server.as_mut() {
            q.available = q.available.saturating_sub(1);
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
                // Requests booked after this answer was sent are not in its count yet.
                let booked = self.sent.iter().filter(|t| **t > now).count();
                if let Some(q) = self.server.as_mut() {
                    q.available = q.available.saturating_sub(booked as u32);
                }
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

    /// Why the next request waits at `now`, for the log.
    fn reason(&self, now: Instant) -> String {
        match self.server {
            Some(q) if now < q.reset_at && q.available == 0 => {
                "the API quota is used up until it resets".to_string()
            }
            _ => format!(
                "{} requests per {} allowed",
                self.allowed,
                whole_seconds(self.window)
            ),
        }
    }
}

/// Parses the quota headers of an answer; `now` turns the absolute `X-Quota-Reset` (epoch ms)
/// into a delay.
pub fn quota_headers(h: &HeaderMap, now: SystemTime) -> QuotaHeaders {
    let num = |name: &str| -> Option<u64> { h.get(name)?.to_str().ok()?.trim().parse().ok() };
    let reset_in = num("x-quota-reset").map(|reset_ms| {
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Duration::from_millis(reset_ms.saturating_sub(now_ms))
    });
    QuotaHeaders {
        allowed: num("x-quota-allowed").map(|v| v.min(u64::from(u32::MAX)) as u32),
        available: num("x-quota-available").map(|v| v.min(u64::from(u32::MAX)) as u32),
        reset_in,
    }
}

/// What to do after a 429 with these quota headers. Pure.
pub fn after_429(q: QuotaHeaders, window: Duration) -> Throttle {
    match (q.available, q.reset_in) {
        (Some(0), Some(reset)) if reset > window + RESET_MARGIN => Throttle::GiveUp(format!(
            "the gateway says it resets only in {}, more than one window ({})",
            whole_seconds(reset),
            whole_seconds(window)
        )),
        (Some(0), Some(reset)) => Throttle::Wait(
            reset + RESET_MARGIN,
            "the API quota is used up until it resets".to_string(),
        ),
        (Some(0), None) => Throttle::Wait(
            window,
            "the API quota is used up; no reset time given".to_string(),
        ),
        _ => Throttle::Wait(SPIKE_WAIT, "spike arrest".to_string()),
    }
}

/// The Indigo request budget as the HTTP layer's rate limit.
#[derive(Debug, Default)]
pub struct IndigoQuota(Mutex<Budget>);

impl IndigoQuota {
    fn budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RateLimit for IndigoQuota {
    fn reserve(&self, now: Instant) -> (Instant, Option<String>) {
        let mut b = self.budget();
        let why = b.reason(now);
        let at = b.reserve(now);
        (at, (at > now).then_some(why))
    }

    fn delay(&self, now: Instant) -> Duration {
        self.budget().wait_time(now)
    }

    fn observe(&self, _: StatusCode, headers: &HeaderMap, now: Instant) {
        let q = quota_headers(headers, SystemTime::now());
        self.budget().observe(q, now);
    }

    fn throttled(&self, status: StatusCode, headers: &HeaderMap, _: Instant) -> Option<Throttle> {
        if status != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let window = self.budget().window();
        Some(after_429(quota_headers(headers, SystemTime::now()), window))
    }

    fn window(&self) -> Duration {
        self.budget().window()
    }

    fn remaining(&self) -> Option<u64> {
        self.budget().server.map(|q| u64::from(q.available))
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
    fn requests_before_the_gateways_reset_do_not_count_after_it() {
        let t0 = Instant::now();
        let mut b = Budget::default();
        b.record(t0);
        b.record(t0 + MIN_GAP);
        // The gateway allows 2 per window and resets in 7 s (its window, not our 60 s guess).
        b.observe(headers(2, 0, 7), t0 + MIN_GAP);
        let first = b.reserve(t0 + MIN_GAP);
        assert_eq!(first, t0 + MIN_GAP + Duration::from_secs(7));
        let second = b.reserve(t0 + MIN_GAP);
        assert_eq!(second, first + MIN_GAP, "the new window has room for both");
    }

    #[test]
    fn concurrent_reservations_get_distinct_slots() {
        let t0 = Instant::now();
        let mut b = Budget::default();
        let a = b.reserve(t0);
        let c = b.reserve(t0);
        let d = b.reserve(t0);
        assert_eq!((a, c - a, d - c), (t0, MIN_GAP, MIN_GAP));
    }

    #[test]
    fn a_429_waits_for_a_near_reset_and_gives_up_on_a_far_one() {
        let w = DEFAULT_WINDOW;
        let near = QuotaHeaders {
            allowed: Some(6),
            available: Some(0),
            reset_in: Some(Duration::from_secs(20)),
        };
        assert!(
            matches!(after_429(near, w), Throttle::Wait(d, _) if d == Duration::from_secs(20) + RESET_MARGIN)
        );
        let far = QuotaHeaders {
            reset_in: Some(Duration::from_secs(400 * 365 * 86_400)),
            ..near
        };
        assert!(matches!(after_429(far, w), Throttle::GiveUp(_)));
        assert!(
            matches!(after_429(QuotaHeaders::default(), w), Throttle::Wait(d, _) if d == SPIKE_WAIT)
        );
        // A year-9999 reset parses without overflow.
        let mut h = HeaderMap::new();
        h.insert("x-quota-available", "0".parse().unwrap());
        h.insert("x-quota-reset", "253402300799000".parse().unwrap());
        let q = quota_headers(&h, SystemTime::now());
        assert!(q.reset_in.unwrap() > Duration::from_secs(365 * 86_400));
        let mut b = Budget::default();
        let t0 = Instant::now();
        b.observe(q, t0);
        assert_eq!(b.wait_time(t0), MAX_RESET_WAIT);
    }

    #[test]
    fn quota_headers_parse() {
        let mut h = HeaderMap::new();
        h.insert("x-quota-allowed", "6".parse().unwrap());
        h.insert("x-quota-available", "0".parse().unwrap());
        let now = SystemTime::now();
        let reset = now.duration_since(UNIX_EPOCH).unwrap().as_millis() + 5_000;
        h.insert("x-quota-reset", reset.to_string().parse().unwrap());
        let q = quota_headers(&h, now);
        assert_eq!(q.allowed, Some(6));
        assert_eq!(q.available, Some(0));
        assert_eq!(q.reset_in, Some(Duration::from_secs(5)));
        assert_eq!(
            quota_headers(&HeaderMap::new(), now),
            QuotaHeaders::default()
        );
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
