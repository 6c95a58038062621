//! Access-token cache: one token per expiry period, refreshed shortly before it runs out.

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::Secret;

/// Lifetime assumed when the API's `expiresIn` cannot be read (it reports "3599").
pub const FALLBACK_LIFETIME: Duration = Duration::from_secs(3599);

/// A bearer token and when it stops being usable.
pub struct Token {
    value: Secret,
    issued: Instant,
    lifetime: Duration,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"***")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl Token {
    pub fn new(value: String, issued: Instant, lifetime: Duration) -> Token {
        Token {
            value: Secret::new(value),
            issued,
            lifetime,
        }
    }

    pub fn value(&self) -> &str {
        self.value.expose()
    }

    /// Refresh margin: min(60 s, 10 % of the lifetime), so short-lived tokens are not refreshed on
    /// every call and long-lived ones are never used in their last minute.
    pub fn margin(&self) -> Duration {
        (self.lifetime / 10).min(Duration::from_secs(60))
    }

    /// True while the token can still be used at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.issued) + self.margin() < self.lifetime
    }
}

/// Parses `expiresIn` ("3599") into a lifetime.
pub fn parse_lifetime(expires_in: &str) -> Duration {
    match expires_in.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s.min(86_400.0 * 30.0)),
        _ => FALLBACK_LIFETIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_token_is_refreshed_in_its_last_minute() {
        let t0 = Instant::now();
        let t = Token::new("x".into(), t0, Duration::from_secs(3599));
        assert_eq!(t.margin(), Duration::from_secs(60));
        assert!(t.is_fresh(t0));
        assert!(t.is_fresh(t0 + Duration::from_secs(3538)));
        assert!(!t.is_fresh(t0 + Duration::from_secs(3539)));
    }

    #[test]
    fn a_short_token_uses_a_tenth_of_its_life_as_margin() {
        let t0 = Instant::now();
        let t = Token::new("x".into(), t0, Duration::from_secs(20));
        assert_eq!(t.margin(), Duration::from_secs(2));
        assert!(t.is_fresh(t0 + Duration::from_millis(17_900)));
        assert!(!t.is_fresh(t0 + Duration::from_secs(18)));
    }

    #[test]
    fn lifetimes_parse_leniently() {
        assert_eq!(parse_lifetime("3599"), Duration::from_secs(3599));
        assert_eq!(parse_lifetime(" 60 "), Duration::from_secs(60));
        assert_eq!(parse_lifetime(""), FALLBACK_LIFETIME);
        assert_eq!(parse_lifetime("-5"), FALLBACK_LIFETIME);
        assert_eq!(parse_lifetime("soon"), FALLBACK_LIFETIME);
        assert!(!format!(
            "{:?}",
            Token::new("s3cr3t".into(), Instant::now(), FALLBACK_LIFETIME)
        )
        .contains("s3cr3t"));
    }
}
