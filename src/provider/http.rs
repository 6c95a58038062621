//! HTTP plumbing shared by every cloud client: one request policy, written once.
//!
//! - **Rate limits**: a [`RateLimit`] books a send slot for every request before it goes out
//!   (Indigo's quota budget plugs in here; [`RetryAfter`] serves clouds without a published
//!   quota) and says how long to wait after a 429/503. Every wait is capped by the limiter's
//!   window: a reset further away than that ends the call with [`ProviderError::Quota`] at once.
//!   A wait longer than [`LONG_WAIT`] is logged once at info, with its reason and end time.
//! - **Tokens** ([`Auth`]): checked after the slot wait, just before sending, so a token cannot
//!   expire while a request waits for the quota; fetched in a slot of its own (token requests
//!   count against quotas too); one fetch at a time; a 401 drops the token and the request is
//!   replayed once with a fresh one; a token that cannot be sent (control characters) or that
//!   the server refuses as too large (431) is dropped and fetched again, once.
//! - **Transient failures** (network errors, 5xx, 408) are retried up to [`ATTEMPTS`] times with
//!   jittered exponential backoff.
//! - **Bodies** are read up to [`MAX_BODY`] bytes; **cancellation** (shutdown) ends any wait or
//!   request at once with [`ProviderError::Cancelled`].
//! - Errors are worded in one place: [`transport`] for failures below HTTP, [`Answer::json`] for
//!   answers that cannot be decoded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::{whole_seconds, ProviderError};
use super::token::{Auth, Token};
use crate::http_failure::{html_page, HttpFailure};
use crate::ids::CloudName;
use crate::metrics::{ApiStatus, Metrics};

/// Attempts per request for transient failures (network, 5xx): the first try and two retries.
pub const ATTEMPTS: u32 = 3;
/// First retry delay; doubles per attempt, with ±25 % jitter.
pub const RETRY_BASE: Duration = Duration::from_secs(1);
/// Largest answer read from an API (an instance list of a big account is well below this).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Waits longer than this are announced at info level (once per wait).
pub const LONG_WAIT: Duration = Duration::from_secs(5);
/// Token fetches per call beyond the first (a token that cannot be sent, or a 401 replay).
const TOKEN_FETCHES: u32 = 2;

/// One request, described before it is sent (it may be sent more than once).
#[derive(Clone, Debug)]
pub struct Request {
    /// The operation, named in logs and errors (`gettemplate`, `authenticate`).
    pub op: &'static str,
    pub method: Method,
    pub url: Url,
    /// A JSON body, if any.
    pub json: Option<serde_json::Value>,
    /// Extra headers (e.g. microversion pins).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A form body (`application/x-www-form-urlencoded`), already encoded; it may hold a
    /// secret (a CSP API token), so it is never printed.
    pub form: Option<crate::secret::Secret>,
}

impl Request {
    pub fn new(op: &'static str, method: Method, url: Url) -> Request {
        Request {
            op,
            method,
            url,
            json: None,
            headers: Vec::new(),
            form: None,
        }
    }

    /// Sends `encoded` as a form body.
    pub fn form(mut self, encoded: crate::secret::Secret) -> Request {
        self.form = Some(encoded);
        self
    }

    pub fn json(mut self, body: serde_json::Value) -> Request {
        self.json = Some(body);
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Request {
        self.headers.push((name, value));
        self
    }
}

/// An answer that made it through the transport (any status).
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// Decodes the body as JSON; an answer that is not the expected JSON is
    /// [`ProviderError::Malformed`], worded here for every client.
    /// An HTML page (a wrong endpoint, a proxy's error page) is [`ProviderError::Html`].
    pub fn json<T: DeserializeOwned>(&self, op: &'static str) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| match self.html() {
            Some(page) => ProviderError::Html { op, page },
            None => ProviderError::Malformed {
                op,
                reason: format!("invalid JSON: {e}"),
            },
        })
    }

    /// `Some` when the answer is a web page rather than what an API answers.
    pub fn html(&self) -> Option<crate::http_failure::HtmlPage> {
        html_page(
            self.status.as_u16(),
            self.header("content-type"),
            &self.body,
        )
    }

    /// A header as text, when present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// The one place that turns a failure below HTTP into an error, named in words (connection
/// refused, TLS, DNS, timeout); `timeout` is the limit the client was built with.
pub fn transport(op: &'static str, source: reqwest::Error, timeout: Duration) -> ProviderError {
    ProviderError::Transport {
        op,
        failure: HttpFailure::from_reqwest(&source, timeout),
    }
}

/// What a rate limiter says about a throttled answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Throttle {
    /// Try again after this long (the limiter's reason, for the log).
    Wait(Duration, String),
    /// The quota resets only beyond one window: give up now.
    GiveUp(String),
}

/// A client-side rate limit: books send slots and interprets throttling answers.
///
/// Implementations are shared by every request of one client (and so by concurrent callers):
/// [`RateLimit::reserve`] must book the slot it returns, so two callers never get the same one.
pub trait RateLimit: Send + Sync {
    /// Books the next send slot at or after `now`: when the request may go, and why it waits
    /// (for the log), if it does.
    fn reserve(&self, now: Instant) -> (Instant, Option<String>);
    /// How long a request reserved at `now` would wait (nothing is booked).
    fn delay(&self, now: Instant) -> Duration;
    /// Learns from an answer's headers (quota counters).
    fn observe(&self, status: StatusCode, headers: &HeaderMap, now: Instant);
    /// For an answer that says "too many requests": how long to wait; `None` when the answer is
    /// not a throttle (then it is handled as any other status).
    fn throttled(&self, status: StatusCode, headers: &HeaderMap, now: Instant) -> Option<Throttle>;
    /// The longest one legitimate wait can take (a quota window).
    fn window(&self) -> Duration;
    /// Requests left in the quota window, as the API last said (`None`: no quota known).
    fn remaining(&self) -> Option<u64> {
        None
    }
}

/// The limiter for clouds that publish no request quota: no budget, but a `Retry-After` on a
/// 429 or 503 is honoured up to [`RetryAfter::cap`].
#[derive(Debug)]
pub struct RetryAfter {
    pub cap: Duration,
}

impl Default for RetryAfter {
    fn default() -> Self {
        RetryAfter {
            cap: Duration::from_secs(60),
        }
    }
}

/// Wait after a 429 that names no time.
const UNTIMED_429: Duration = Duration::from_secs(5);

impl RateLimit for RetryAfter {
    fn reserve(&self, now: Instant) -> (Instant, Option<String>) {
        (now, None)
    }

    fn delay(&self, _: Instant) -> Duration {
        Duration::ZERO
    }

    fn observe(&self, _: StatusCode, _: &HeaderMap, _: Instant) {}

    fn throttled(&self, status: StatusCode, headers: &HeaderMap, _: Instant) -> Option<Throttle> {
        let after = retry_after(headers, std::time::SystemTime::now());
        match (status.as_u16(), after) {
            (429 | 503, Some(d)) if d > self.cap => Some(Throttle::GiveUp(format!(
                "the server asks to retry only after {}",
                whole_seconds(d)
            ))),
            (429 | 503, Some(d)) => Some(Throttle::Wait(d, "Retry-After".to_string())),
            (429, None) => Some(Throttle::Wait(UNTIMED_429, "HTTP 429".to_string())),
            _ => None,
        }
    }

    fn window(&self) -> Duration {
        self.cap
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (relative to `now`).
pub fn retry_after(headers: &HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// How a client is built.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Per-request timeout (connect, send, read).
    pub timeout: Duration,
    /// Refuse plain http (the base URL is https).
    pub https_only: bool,
}

/// Counters for logs, `status` and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub tokens: u64,
    pub throttled: u64,
}

/// An HTTP client with the shared request policy. One per cloud connection.
pub struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
    cancel: CancellationToken,
    rate: Box<dyn RateLimit>,
    requests: AtomicU64,
    tokens: AtomicU64,
    throttled: AtomicU64,
    /// End of the last wait announced at info level (a wait inside it is not news).
    announced: Mutex<Option<Instant>>,
    /// Where requests and quota are counted, and under which cloud (see [`HttpClient::meter`]).
    meter: OnceLock<(Metrics, CloudName)>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

/// What one slot is used for.
enum Sending {
    /// A token request (the real request waits for a slot of its own).
    Token,
    /// The request itself, with this token (if authenticated) and its generation.
    Main(Option<(Token, u64)>),
}

impl HttpClient {
    /// Builds a client; `cancel` ends waits and in-flight requests when dynwall shuts down.
    pub fn new(
        cfg: &ClientConfig,
        rate: Box<dyn RateLimit>,
        cancel: CancellationToken,
    ) -> Result<HttpClient, reqwest::Error> {
        let client = crate::tls::with_shared_config(reqwest::Client::builder())
            .user_agent(concat!("dynwall/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(cfg.https_only)
            .build()?;
        Ok(HttpClient {
            client,
            timeout: cfg.timeout,
            cancel,
            rate,
            requests: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            announced: Mutex::new(None),
            meter: OnceLock::new(),
        })
    }

    /// Counts every request (by operation and status), the quota and its waits in `metrics`
    /// under `cloud`. Set once: a client kept across a reload keeps counting where it did.
    pub fn meter(&self, metrics: &Metrics, cloud: &CloudName) {
        if metrics.is_enabled() {
            let _ = self.meter.set((metrics.clone(), cloud.clone()));
        }
    }

    fn count(&self, op: &'static str, status: ApiStatus) {
        if let Some((m, cloud)) = self.meter.get() {
            m.api_request(cloud, op, status);
            if let Some(left) = self.rate.remaining() {
                m.quota_remaining(cloud, left);
            }
        }
    }

    fn count_wait(&self, waited: Duration) {
        if let Some((m, cloud)) = self.meter.get() {
            m.quota_waited(cloud, waited);
        }
    }

    pub fn stats(&self) -> Stats {
        Stats {
            requests: self.requests.load(Ordering::Relaxed),
            tokens: self.tokens.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }

    /// How long a request made now would wait for its slot.
    pub fn delay(&self) -> Duration {
        self.rate.delay(Instant::now())
    }

    /// The longest one call can take: a slot wait and a throttle wait of one window each, and
    /// every attempt timing out with its backoff.
    pub fn call_bound(&self) -> Duration {
        let backoff: Duration = (1..ATTEMPTS).map(|a| RETRY_BASE * 2u32.pow(a)).sum();
        2 * self.rate.window() + self.timeout * (ATTEMPTS + TOKEN_FETCHES) + backoff
    }

    /// Sleeps for `d` unless dynwall shuts down first.
    async fn pause(&self, op: &'static str, d: Duration) -> Result<(), ProviderError> {
        if d.is_zero() {
            return Ok(());
        }
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(ProviderError::Cancelled { op }),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Logs a long wait once: a wait ending within one already announced is not news.
    fn announce(&self, op: &'static str, wait: Duration, why: &str) {
        if wait <= LONG_WAIT {
            tracing::debug!(op, wait_ms = wait.as_millis() as u64, "waiting: {why}");
            return;
        }
        let end = Instant::now() + wait;
        {
            let mut last = self.announced.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|l| end <= l + LONG_WAIT) {
                return;
            }
            *last = Some(end);
        }
        let until = std::time::SystemTime::now() + wait;
        tracing::info!(
            op,
            "waiting {} for the API ({why}), until {}",
            whole_seconds(wait + Duration::from_millis(999)),
            humantime::format_rfc3339_seconds(until)
        );
    }

    /// Waits for this request's slot (booked by the rate limit), capped at one window.
    async fn slot(&self, op: &'static str) -> Result<(), ProviderError> {
        let now = Instant::now();
        let (at, why) = self.rate.reserve(now);
        let wait = at.saturating_duration_since(now);
        let cap = self.rate.window() + LONG_WAIT;
        if wait > cap {
            return Err(ProviderError::Quota {
                op,
                detail: format!(
                    "the next request is allowed only in {}",
                    whole_seconds(wait)
                ),
            });
        }
        if !wait.is_zero() {
            self.announce(op, wait, why.as_deref().unwrap_or("request budget"));
            self.count_wait(wait);
        }
        self.pause(op, wait).await
    }

    /// Sends once, with `token` when given: no slot, no retry. Reads at most [`MAX_BODY`].
    async fn send_once(
        &self,
        req: &Request,
        auth: Option<(&Auth, &Token)>,
    ) -> Result<Answer, ProviderError> {
        let op = req.op;
        let mut b = self.client.request(req.method.clone(), req.url.clone());
        for (k, v) in &req.headers {
            b = b.header(k.clone(), v.clone());
        }
        if let Some((auth, token)) = auth {
            b = b.header(auth.header_name(), auth.header_value(token)?);
        }
        if let Some(body) = &req.json {
            b = b.json(body);
        }
        if let Some(form) = &req.form {
            b = b
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form.expose().to_owned());
        }
        let started = Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let answer = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(ProviderError::Cancelled { op }),
            r = exchange(b) => r.map_err(|e| {
                self.count(op, ApiStatus::NoAnswer);
                transport(op, e, self.timeout)
            })?,
        };
        self.count(op, ApiStatus::Http(answer.status.as_u16()));
        self.rate
            .observe(answer.status, &answer.headers, Instant::now());
        tracing::debug!(
            op,
            status = answer.status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "API answer"
        );
        Ok(answer)
    }

    /// An unauthenticated call with the whole policy: slots, throttling, transient retries.
    pub async fn call(&self, req: &Request) -> Result<Answer, ProviderError> {
        self.run(req, None).await
    }

    /// The request policy. With `auth`, a fresh token is made sure of after each slot wait.
    pub(crate) async fn run(
        &self,
        req: &Request,
        auth: Option<&Auth>,
    ) -> Result<Answer, ProviderError> {
        let op = req.op;
        let mut attempt = 1;
        let mut replayed = false;
        let mut fetches = 0;
        let mut throttled_since: Option<Instant> = None;
        loop {
            self.slot(op).await?;
            let sending = match auth {
                None => Sending::Main(None),
                Some(a) => match a.fresh().await {
                    Some((token, generation)) => Sending::Main(Some((token, generation))),
                    None => Sending::Token,
                },
            };
            let result = match (&sending, auth) {
                (Sending::Token, Some(a)) => {
                    if fetches > TOKEN_FETCHES {
                        return Err(ProviderError::Malformed {
                            op: a.op(),
                            reason: "no usable token after several attempts".into(),
                        });
                    }
                    fetches += 1;
                    let r = match a.request() {
                        Ok(token_request) => self.send_once(&token_request, None).await,
                        Err(e) => return Err(e),
                    };
                    if matches!(&r, Ok(answer) if answer.status.is_success()) {
                        self.tokens.fetch_add(1, Ordering::Relaxed);
                    }
                    r
                }
                (Sending::Main(token), Some(a)) => match token {
                    Some((t, _)) => self.send_once(req, Some((a, t))).await,
                    None => unreachable_token(op),
                },
                (_, None) => self.send_once(req, None).await,
            };
            let answer = match result {
                Ok(a) => a,
                Err(e) if e.is_cancelled() => return Err(e),
                Err(ProviderError::Malformed { reason, .. })
                    if matches!(sending, Sending::Main(Some(_))) =>
                {
                    // The token cannot be put in a header: drop it and fetch another.
                    if let (Some(a), Sending::Main(Some((_, generation)))) = (auth, &sending) {
                        tracing::warn!(
                            op,
                            "the API token cannot be sent ({reason}); fetching a new one"
                        );
                        a.invalidate(*generation).await;
                    }
                    continue;
                }
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    let delay = backoff(attempt);
                    tracing::warn!(op, attempt, retry_in_ms = delay.as_millis() as u64, error = %e,
                        "API call failed; retrying");
                    attempt += 1;
                    self.pause(op, delay).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let status = answer.status;
            if let Some(t) = self.rate.throttled(status, &answer.headers, Instant::now()) {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                let since = *throttled_since.get_or_insert_with(Instant::now);
                let window = self.rate.window();
                let wait = match t {
                    Throttle::GiveUp(detail) => return Err(ProviderError::Quota { op, detail }),
                    Throttle::Wait(d, why) => {
                        if since.elapsed() + d > window + LONG_WAIT {
                            return Err(ProviderError::Quota {
                                op,
                                detail: format!(
                                    "it did not reset within {}",
                                    whole_seconds(window)
                                ),
                            });
                        }
                        self.announce(op, d, &why);
                        d
                    }
                };
                tracing::debug!(op, wait_ms = wait.as_millis() as u64, "API rate limit hit");
                self.count_wait(wait);
                self.pause(op, wait).await?;
                continue;
            }
            match (&sending, auth) {
                (Sending::Token, Some(a)) => {
                    if is_retryable(status) && attempt < ATTEMPTS {
                        attempt += 1;
                        self.pause(op, backoff(attempt - 1)).await?;
                        continue;
                    }
                    a.accept(&answer, Instant::now()).await?;
                    continue;
                }
                (Sending::Main(Some((_, generation))), Some(a))
                    if status == StatusCode::UNAUTHORIZED =>
                {
                    if replayed {
                        return Err(ProviderError::Auth { op, status: 401 });
                    }
                    tracing::debug!(op, "token refused; authenticating again");
                    replayed = true;
                    a.invalidate(*generation).await;
                    continue;
                }
                (Sending::Main(Some((_, generation))), Some(a))
                    if status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE && fetches <= 1 =>
                {
                    tracing::warn!(
                        op,
                        "the server refuses the API token as too large; fetching a new one"
                    );
                    a.invalidate(*generation).await;
                    fetches += 1;
                    continue;
                }
                _ => {}
            }
            if is_retryable(status) {
                if attempt < ATTEMPTS {
                    let delay = backoff(attempt);
                    tracing::warn!(
                        op,
                        attempt,
                        status = status.as_u16(),
                        retry_in_ms = delay.as_millis() as u64,
                        "API call failed; retrying"
                    );
                    attempt += 1;
                    self.pause(op, delay).await?;
                    continue;
                }
                return Err(ProviderError::Unavailable {
                    op,
                    status: status.as_u16(),
                });
            }
            return Ok(answer);
        }
    }
}

fn unreachable_token(op: &'static str) -> Result<Answer, ProviderError> {
    Err(ProviderError::Malformed {
        op,
        reason: "no token to send".into(),
    })
}

async fn exchange(req: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
    let mut resp = req.send().await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY {
            // Stop reading: an answer this large is not one the API gives.
            body.clear();
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// 5xx and 408: a retry may cure them.
pub fn is_retryable(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT
}

/// Delay before retry `attempt + 1`: [`RETRY_BASE`] doubled per attempt, ±25 % jitter.
pub fn backoff(attempt: u32) -> Duration {
    let base = RETRY_BASE * 2u32.saturating_pow(attempt.saturating_sub(1));
    let jitter = rand::rng().random_range(0.75..1.25);
    base.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter() {
        for _ in 0..20 {
            let a = backoff(1);
            let b = backoff(2);
            assert!(a >= Duration::from_millis(750) && a <= Duration::from_millis(1250));
            assert!(b >= Duration::from_millis(1500) && b <= Duration::from_millis(2500));
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert("retry-after", HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);

        let limit = RetryAfter {
            cap: Duration::from_secs(60),
        };
        let t = Instant::now();
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert!(matches!(
            limit.throttled(StatusCode::SERVICE_UNAVAILABLE, &h, t),
            Some(Throttle::Wait(d, _)) if d == Duration::from_secs(2)
        ));
        h.insert("retry-after", HeaderValue::from_static("86400"));
        assert!(matches!(
            limit.throttled(StatusCode::TOO_MANY_REQUESTS, &h, t),
            Some(Throttle::GiveUp(_))
        ));
        assert_eq!(
            limit.throttled(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), t),
            None,
            "a 503 without Retry-After is an ordinary transient failure"
        );
    }
}
