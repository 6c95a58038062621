//! Access tokens: one per lifetime, refreshed shortly before it runs out, fetched by one caller
//! at a time, dropped when the server refuses it.
//!
//! A [`TokenSource`] knows how one cloud issues tokens (the request and how to read the answer:
//! Indigo's JSON body, Keystone's `X-Subject-Token` header or v2 body); [`Auth`] caches the
//! token and says how it is sent (`Authorization: Bearer …` or `X-Auth-Token: …`). The request
//! policy around it lives in [`super::http`].

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use tokio::time::Instant;

use super::error::ProviderError;
use super::http::{Answer, Request};
use crate::secret::Secret;

/// Longest token dynwall will put in a header: far above any real one (Keystone fernet tokens
/// are ~200 bytes, PKI tokens a few KiB), far below what servers refuse (8–16 KiB of headers).
pub const MAX_TOKEN_LEN: usize = 6 * 1024;

/// A token and when it stops being usable.
#[derive(Clone)]
pub struct Token {
    value: Secret,
    issued: Instant,
    lifetime: Duration,
    /// Refresh when less than this remains.
    margin: Duration,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"***")
            .field("lifetime", &self.lifetime)
            .field("margin", &self.margin)
            .finish()
    }
}

impl Token {
    /// A token issued at `issued` (local monotonic time of the request), valid for `lifetime`,
    /// refreshed when less than `margin` remains.
    pub fn new(value: String, issued: Instant, lifetime: Duration, margin: Duration) -> Token {
        Token {
            value: Secret::new(value),
            issued,
            lifetime,
            margin,
        }
    }

    pub fn value(&self) -> &str {
        self.value.expose()
    }

    /// True while the token can still be used at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.issued) + self.margin < self.lifetime
    }

    /// Why this token cannot be sent in a header, if it cannot.
    pub fn unusable(&self) -> Option<String> {
        let v = self.value();
        if v.is_empty() {
            return Some("it is empty".into());
        }
        if v.len() > MAX_TOKEN_LEN {
            return Some(format!(
                "it is {} bytes long (at most {MAX_TOKEN_LEN} are sent)",
                v.len()
            ));
        }
        if v.bytes().any(|b| b.is_ascii_control() || !b.is_ascii()) {
            return Some("it holds control or non-ASCII characters".into());
        }
        None
    }
}

/// Indigo's refresh margin: min(60 s, 10 % of the lifetime), so short-lived tokens are not
/// refreshed on every call and long-lived ones are never used in their last minute.
pub fn tenth_up_to_a_minute(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(60))
}

/// How one cloud issues tokens.
pub trait TokenSource: Send + Sync {
    /// The token request (it carries the credentials; it is never logged).
    fn request(&self) -> Result<Request, ProviderError>;
    /// Reads the token out of a 2xx answer issued by a request sent at `issued`.
    fn parse(&self, answer: &Answer, issued: Instant) -> Result<Token, ProviderError>;
    /// The error for a non-2xx answer to the token request (refused credentials, mostly).
    fn refused(&self, answer: &Answer) -> ProviderError;
}

/// How a token is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer <token>` (Indigo).
    Bearer,
    /// The token alone in this header (`X-Auth-Token` for OpenStack).
    Header(HeaderName),
}

/// A token cache for one account: the source, the scheme and the current token.
pub struct Auth {
    op: &'static str,
    source: Box<dyn TokenSource>,
    scheme: Scheme,
    /// The current token and its generation (bumped per token, so a stale 401 never drops a
    /// newer token that another caller already fetched).
    slot: tokio::sync::Mutex<(Option<Token>, u64)>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("op", &self.op)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// `op` names the token request in logs and errors (`authenticate`).
    pub fn new(op: &'static str, source: Box<dyn TokenSource>, scheme: Scheme) -> Auth {
        Auth {
            op,
            source,
            scheme,
            slot: tokio::sync::Mutex::new((None, 0)),
        }
    }

    pub fn op(&self) -> &'static str {
        self.op
    }

    /// The current token when it is fresh, with its generation.
    pub(crate) async fn fresh(&self) -> Option<(Token, u64)> {
        let slot = self.slot.lock().await;
        slot.0
            .as_ref()
            .filter(|t| t.is_fresh(Instant::now()))
            .map(|t| (t.clone(), slot.1))
    }

    pub(crate) fn request(&self) -> Result<Request, ProviderError> {
        self.source.request()
    }

    /// Takes the answer to a token request: a usable token is stored; an unusable one is
    /// dropped with a warning (the caller fetches again, bounded); a refusal is an error.
    pub(crate) async fn accept(
        &self,
        answer: &Answer,
        issued: Instant,
    ) -> Result<(), ProviderError> {
        if !answer.status.is_success() {
            return Err(self.source.refused(answer));
        }
        let token = self.source.parse(answer, issued)?;
        if let Some(why) = token.unusable() {
            tracing::warn!(
                op = self.op,
                "the API issued a token that cannot be sent: {why}; asking again"
            );
            return Ok(());
        }
        tracing::debug!(lifetime_s = token.lifetime.as_secs(), "obtained API token");
        let mut slot = self.slot.lock().await;
        slot.1 += 1;
        slot.0 = Some(token);
        Ok(())
    }

    /// Drops the token of generation `generation` (a newer one stays).
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut slot = self.slot.lock().await;
        if slot.1 == generation {
            slot.0 = None;
        }
    }

    pub(crate) fn header_name(&self) -> HeaderName {
        match &self.scheme {
            Scheme::Bearer => AUTHORIZATION,
            Scheme::Header(name) => name.clone(),
        }
    }

    pub(crate) fn header_value(&self, token: &Token) -> Result<HeaderValue, ProviderError> {
        let text = match &self.scheme {
            Scheme::Bearer => format!("Bearer {}", token.value()),
            Scheme::Header(_) => token.value().to_string(),
        };
        let mut v = HeaderValue::from_str(&text).map_err(|_| ProviderError::Malformed {
            op: self.op,
            reason: "the token cannot be sent in a header".into(),
        })?;
        v.set_sensitive(true);
        Ok(v)
    }
}

/// Parses a lifetime in seconds (`"3599"`); unreadable or non-positive values give `fallback`,
/// and no lifetime is believed beyond 30 days.
pub fn parse_lifetime(expires_in: &str, fallback: Duration) -> Duration {
    match expires_in.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s.min(86_400.0 * 30.0)),
        _ => fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3599);

    #[test]
    fn an_hour_token_is_refreshed_in_its_last_minute() {
        let t0 = Instant::now();
        let t = Token::new("x".into(), t0, HOUR, tenth_up_to_a_minute(HOUR));
        assert!(t.is_fresh(t0));
        assert!(t.is_fresh(t0 + Duration::from_secs(3538)));
        assert!(!t.is_fresh(t0 + Duration::from_secs(3539)));
    }

    #[test]
    fn a_short_token_uses_a_tenth_of_its_life_as_margin() {
        let t0 = Instant::now();
        let life = Duration::from_secs(20);
        let t = Token::new("x".into(), t0, life, tenth_up_to_a_minute(life));
        assert!(t.is_fresh(t0 + Duration::from_millis(17_900)));
        assert!(!t.is_fresh(t0 + Duration::from_secs(18)));
    }

    #[test]
    fn lifetimes_parse_leniently() {
        assert_eq!(parse_lifetime("3599", HOUR), HOUR);
        assert_eq!(parse_lifetime(" 60 ", HOUR), Duration::from_secs(60));
        assert_eq!(parse_lifetime("", HOUR), HOUR);
        assert_eq!(parse_lifetime("-5", HOUR), HOUR);
        assert_eq!(parse_lifetime("soon", HOUR), HOUR);
        assert_eq!(
            parse_lifetime("1e30", HOUR),
            Duration::from_secs(30 * 86_400)
        );
        let t = Token::new("s3cr3t".into(), Instant::now(), HOUR, HOUR / 10);
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }

    #[test]
    fn tokens_that_cannot_be_sent_are_recognised() {
        let t = |v: &str| Token::new(v.into(), Instant::now(), HOUR, HOUR / 10);
        assert_eq!(t("abc.DEF-123_~+/=").unusable(), None);
        assert!(t("").unusable().is_some());
        assert!(t("abc\r\nX-Evil: 1").unusable().is_some());
        assert!(t(&"a".repeat(MAX_TOKEN_LEN + 1)).unusable().is_some());
        assert!(t("caf\u{e9}").unusable().is_some());
    }
}
