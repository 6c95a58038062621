//! Sending one request to a notifier: each attempt bounded by the notifier's timeout, a few
//! attempts with growing pauses, and a verdict in words.

use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::format::Request;
use crate::http_failure::HttpFailure;
use crate::secret::Secret;

/// Pauses before the 2nd, 3rd and 4th attempt. Four attempts over about 45 seconds ride out a
/// restarting relay or a dropped connection; a notifier down for longer is logged and the
/// notification given up (the next event tries again).
pub const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// Attempts per notification.
pub const MAX_ATTEMPTS: u32 = RETRY_DELAYS.len() as u32 + 1;

/// Sends one request, once.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` and returns the answer's HTTP status, or why no answer came. Bounded by
    /// the transport's own timeout; cancel-safe (dropping the future abandons the request).
    async fn send(&self, request: &Request) -> Result<u16, HttpFailure>;
}

/// The real transport: one reqwest client per notifier.
pub struct HttpTransport {
    client: reqwest::Client,
    timeout: Duration,
    /// Sent as `Authorization: Bearer …`.
    token: Option<Secret>,
}

impl HttpTransport {
    /// No redirects (a POST redirected becomes a GET and loses its body: the final URL must be
    /// configured), no proxy (like the IP sources), and every request bounded by `timeout`.
    pub fn new(timeout: Duration, token: Option<Secret>) -> reqwest::Result<HttpTransport> {
        let client = crate::tls::with_shared_config(reqwest::Client::builder())
            .user_agent(concat!("dynwall/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        Ok(HttpTransport {
            client,
            timeout,
            token,
        })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, request: &Request) -> Result<u16, HttpFailure> {
        let mut builder = self
            .client
            .post(request.url.clone())
            .header(reqwest::header::CONTENT_TYPE, request.content_type)
            .body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.as_str());
        }
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token.expose());
        }
        let answer = builder
            .send()
            .await
            .map_err(|e| HttpFailure::from_reqwest(&e, self.timeout))?;
        // The body is not read: nothing in it matters, and an endless one costs nothing this way
        // (the connection is closed rather than reused; notifications are rare).
        Ok(answer.status().as_u16())
    }
}

/// What one attempt's answer means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another attempt: the notifier or the network is down or busy.
    Retry(String),
    /// Another attempt would get the same answer: the URL or the token is wrong.
    Refused(String),
}

/// Judges an attempt. Pure.
pub fn judge(result: &Result<u16, HttpFailure>) -> Verdict {
    match result {
        Ok(200..=299) => Verdict::Delivered,
        Ok(s @ (408 | 425 | 429 | 500..=599)) => Verdict::Retry(format!("HTTP {s}")),
        Ok(s @ 300..=399) => Verdict::Refused(format!(
            "HTTP {s}: the URL redirects elsewhere; configure the final URL"
        )),
        Ok(s @ (401 | 403)) => Verdict::Refused(format!(
            "HTTP {s}: refused; is the token right, and allowed to write there?"
        )),
        Ok(404) => Verdict::Refused("HTTP 404: is the URL right?".to_string()),
        Ok(s) => Verdict::Refused(format!("HTTP {s}")),
        Err(f) if f.is_transient() => Verdict::Retry(f.to_string()),
        Err(f) => Verdict::Refused(f.to_string()),
    }
}

/// Why a notification was not delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undelivered {
    pub attempts: u32,
    pub reason: String,
    /// Given up because dynwall is stopping, not because of the notifier.
    pub stopped: bool,
}

/// Sends `request` until it is delivered, refused, or [`MAX_ATTEMPTS`] attempts failed, pausing
/// [`RETRY_DELAYS`] between attempts. Returns the number of attempts it took. `stop` abandons
/// the attempt or pause in progress at once.
pub async fn deliver(
    transport: &dyn Transport,
    request: &Request,
    stop: &CancellationToken,
) -> Result<u32, Undelivered> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = tokio::select! {
            biased;
            _ = stop.cancelled() => return Err(stopping(attempts)),
            r = transport.send(request) => r,
        };
        let reason = match judge(&result) {
            Verdict::Delivered => return Ok(attempts),
            Verdict::Refused(reason) => {
                return Err(Undelivered {
                    attempts,
                    reason,
                    stopped: false,
                })
            }
            Verdict::Retry(reason) => reason,
        };
        let Some(pause) = RETRY_DELAYS.get(attempts as usize - 1) else {
            return Err(Undelivered {
                attempts,
                reason,
                stopped: false,
            });
        };
        tracing::debug!(attempt = attempts, %reason, "notification: retrying in {pause:?}");
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Err(stopping(attempts)),
            _ = tokio::time::sleep(*pause) => {}
        }
    }
}

fn stopping(attempts: u32) -> Undelivered {
    Undelivered {
        attempts,
        reason: "dynwall is stopping".to_string(),
        stopped: true,
    }
}
