//! The Indigo REST client: the provider traits over the shared HTTP layer.

use std::time::Duration;

use reqwest::{Method, Url};
use tokio_util::sync::CancellationToken;

use super::budget::{IndigoQuota, DEFAULT_ALLOWED, DEFAULT_WINDOW};
use super::model::{self, Envelope};
use crate::config::{IndigoConfig, Secret};
use crate::provider::http::{Answer, ClientConfig, HttpClient, Request, Stats};
use crate::provider::token::{self, Auth, Scheme, Token, TokenSource};
use crate::provider::{Provider, ProviderError};

/// Lifetime assumed when the API's `expiresIn` cannot be read (it reports "3599").
pub const FALLBACK_LIFETIME: Duration = Duration::from_secs(3599);

/// Issues Indigo access tokens (`POST /oauth/v1/accesstokens`, client credentials).
struct IndigoTokens {
    url: Url,
    api_key: Secret,
    api_secret: Secret,
}

impl TokenSource for IndigoTokens {
    fn request(&self) -> Result<Request, ProviderError> {
        let body = serde_json::to_value(model::TokenRequest {
            grant_type: "client_credentials",
            client_id: self.api_key.expose(),
            client_secret: self.api_secret.expose(),
            code: "",
        })
        .map_err(|e| ProviderError::Malformed {
            op: "authenticate",
            reason: e.to_string(),
        })?;
        Ok(Request::new("authenticate", Method::POST, self.url.clone()).json(body))
    }

    fn parse(&self, answer: &Answer, issued: tokio::time::Instant) -> Result<Token, ProviderError> {
        let t: model::TokenResponse = answer.json("authenticate")?;
        let lifetime = token::parse_lifetime(&t.expires_in.0, FALLBACK_LIFETIME);
        Ok(Token::new(
            t.access_token,
            issued,
            lifetime,
            token::tenth_up_to_a_minute(lifetime),
        ))
    }

    fn refused(&self, answer: &Answer) -> ProviderError {
        match answer.status.as_u16() {
            s @ (400 | 401 | 403) => ProviderError::Auth {
                op: "authenticate",
                status: s,
            },
            s => status_error("authenticate", s, &answer.body),
        }
    }
}

/// A client for one Indigo account.
pub struct IndigoClient {
    http: HttpClient,
    auth: Auth,
    base: Url,
}

impl std::fmt::Debug for IndigoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndigoClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl IndigoClient {
    /// Builds a client; `cancel` aborts waits and in-flight requests when dynwall shuts down.
    pub fn new(
        cfg: &IndigoConfig,
        cancel: CancellationToken,
    ) -> Result<IndigoClient, reqwest::Error> {
        let http = HttpClient::new(
            &ClientConfig {
                timeout: cfg.timeout,
                https_only: cfg.endpoint.scheme() == "https",
            },
            Box::new(IndigoQuota::default()),
            cancel,
        )?;
        let url = cfg
            .endpoint
            .join("/oauth/v1/accesstokens")
            .unwrap_or_else(|_| cfg.endpoint.clone());
        let tokens = IndigoTokens {
            url,
            api_key: cfg.api_key.clone(),
            api_secret: cfg.api_secret.clone(),
        };
        Ok(IndigoClient {
            http,
            auth: Auth::new("authenticate", Box::new(tokens), Scheme::Bearer),
            base: cfg.endpoint.clone(),
        })
    }

    pub fn stats(&self) -> Stats {
        self.http.stats()
    }

    fn url(&self, path: &str) -> Result<Url, ProviderError> {
        self.base.join(path).map_err(|e| ProviderError::Malformed {
            op: "request",
            reason: format!("cannot build URL for {path}: {e}"),
        })
    }

    /// An authenticated API call with the shared policy (quota, retries, replay after 401).
    pub(super) async fn call(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Answer, ProviderError> {
        let mut req = Request::new(op, method, self.url(path)?);
        req.json = body;
        self.http.run(&req, Some(&self.auth)).await
    }
}

impl Provider for IndigoClient {
    fn queue_delay(&self) -> Duration {
        self.http.delay()
    }

    fn pace(&self) -> Duration {
        DEFAULT_WINDOW / DEFAULT_ALLOWED
    }

    fn call_bound(&self) -> Duration {
        self.http.call_bound()
    }

    fn meter(&self, metrics: &crate::metrics::Metrics, cloud: &crate::ids::CloudName) {
        self.http.meter(metrics, cloud);
    }
}

/// The error for a non-2xx answer: business errors carry the API's code and message.
pub(super) fn status_error(op: &'static str, status: u16, body: &[u8]) -> ProviderError {
    if status >= 500 || status == 408 {
        return ProviderError::Unavailable { op, status };
    }
    if let Some(page) = crate::http_failure::html_page(status, None, body) {
        return ProviderError::Html { op, page };
    }
    let env: Envelope = serde_json::from_slice(body).unwrap_or_default();
    ProviderError::Api {
        op,
        status,
        code: env.error_code().unwrap_or("").to_string(),
        message: sanitize(&env.error_text()),
    }
}

/// API messages are shown to the operator; keep them short and printable.
pub(super) fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
}

pub(super) fn expect_success(op: &'static str, a: &Answer) -> Result<(), ProviderError> {
    if a.status.is_success() {
        Ok(())
    } else {
        Err(status_error(op, a.status.as_u16(), &a.body))
    }
}

/// Reads a mutation envelope: 2xx with `success:true` is success; anything else is an error.
pub(super) fn mutation_result(op: &'static str, a: &Answer) -> Result<Envelope, ProviderError> {
    expect_success(op, a)?;
    let env: Envelope = a.json(op)?;
    if env.success == Some(true) {
        Ok(env)
    } else {
        Err(ProviderError::Api {
            op,
            status: a.status.as_u16(),
            code: env.any_code().unwrap_or("").to_string(),
            message: sanitize(&env.error_text()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    pub(crate) fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn mutations_need_success_true() {
        let ok = answer(
            200,
            r#"{"success":true,"message":"Firewall template is updated successfully.","sucessCode":"F6004","firewallId":55}"#,
        );
        assert!(mutation_result("u", &ok).is_ok());
        let soft = answer(
            200,
            r#"{"success":false,"errorCode":"F60009","errorMessage":"Nope"}"#,
        );
        assert!(matches!(
            mutation_result("u", &soft),
            Err(ProviderError::Api { .. })
        ));
        let bad = answer(200, r#"{"success":tru"#);
        assert!(matches!(
            mutation_result("u", &bad),
            Err(ProviderError::Malformed { .. })
        ));
        let down = answer(503, "<html>busy</html>");
        assert!(matches!(
            mutation_result("u", &down),
            Err(ProviderError::Unavailable { status: 503, .. })
        ));
    }
}
