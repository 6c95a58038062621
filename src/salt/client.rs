//! The Salt API client: authentication (CSP token exchange or on-premises login), Tornado's
//! XSRF cookie, and the `/rpc` calls of a saved job.
//!
//! Tornado refuses every POST whose `X-Xsrftoken` header does not equal its `_xsrf` cookie
//! (403). The client takes the cookie from `GET /account/login` once, sends it back with every
//! POST, and on a 403 fetches a fresh one and tries once more. Tokens go through
//! [`crate::provider::token::Auth`]: fetched once per lifetime, again shortly before it ends,
//! and once more on a 401.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, COOKIE};
use reqwest::{Method, StatusCode, Url};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::wire;
use super::{JobStatus, SaltError, SoftCure};
use crate::config::{SaltAuth, SaltConfig};
use crate::provider::http::{Answer, ClientConfig, HttpClient, Request, RetryAfter};
use crate::provider::token::{tenth_up_to_a_minute, Auth, Scheme, Token, TokenSource};
use crate::provider::ProviderError;
use crate::secret::Secret;

/// The XSRF token shared by the client and the login (which may rotate it).
type XsrfCell = Arc<Mutex<Option<Secret>>>;

fn get(cell: &XsrfCell) -> Option<Secret> {
    cell.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn set(cell: &XsrfCell, value: Option<String>) {
    *cell.lock().unwrap_or_else(|e| e.into_inner()) = value.map(Secret::new);
}

/// The XSRF header and cookie for `token`, marked sensitive.
fn xsrf_headers(token: &Secret) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, text) in [
        (
            HeaderName::from_static("x-xsrftoken"),
            token.expose().to_owned(),
        ),
        (COOKIE, format!("_xsrf={}", token.expose())),
    ] {
        if let Ok(mut v) = HeaderValue::from_str(&text) {
            v.set_sensitive(true);
            out.push((name, v));
        }
    }
    out
}

fn join(base: &Url, path: &str) -> Result<Url, SaltError> {
    let mut text = base.as_str().trim_end_matches('/').to_owned();
    text.push_str(path);
    Url::parse(&text).map_err(|e| SaltError::Malformed {
        op: "salt url",
        reason: format!("cannot build a URL from the server's: {e}"),
    })
}

/// The CSP exchange of an API token for an access token.
struct CspSource {
    url: Url,
    api_token: Secret,
}

impl TokenSource for CspSource {
    fn request(&self) -> Result<Request, ProviderError> {
        let form: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("refresh_token", self.api_token.expose())
            .finish();
        Ok(Request::new("salt authorize", Method::POST, self.url.clone()).form(Secret::new(form)))
    }

    fn parse(&self, answer: &Answer, issued: Instant) -> Result<Token, ProviderError> {
        let (token, lifetime) =
            wire::csp_token(&answer.body).map_err(|e| ProviderError::Malformed {
                op: "salt authorize",
                reason: e.to_string(),
            })?;
        let lifetime = lifetime.unwrap_or(Duration::from_secs(1799));
        Ok(Token::new(
            token,
            issued,
            lifetime,
            tenth_up_to_a_minute(lifetime),
        ))
    }

    fn refused(&self, answer: &Answer) -> ProviderError {
        ProviderError::Auth {
            op: "salt authorize",
            status: answer.status.as_u16(),
        }
    }
}

/// The on-premises login: `POST /account/login` with the credentials and the XSRF pair; the
/// answer's JWT is sent as `Authorization: JWT …`, and its (rotated) `_xsrf` cookie is kept.
struct LoginSource {
    url: Url,
    username: String,
    password: Secret,
    config_name: String,
    xsrf: XsrfCell,
}

impl TokenSource for LoginSource {
    fn request(&self) -> Result<Request, ProviderError> {
        let mut req = Request::new("salt login", Method::POST, self.url.clone()).json(wire::login(
            &self.username,
            self.password.expose(),
            &self.config_name,
        ));
        if let Some(token) = get(&self.xsrf) {
            req.headers.extend(xsrf_headers(&token));
        }
        Ok(req)
    }

    fn parse(&self, answer: &Answer, issued: Instant) -> Result<Token, ProviderError> {
        let jwt = wire::login_jwt(&answer.body).map_err(|e| ProviderError::Malformed {
            op: "salt login",
            reason: e.to_string(),
        })?;
        if let Some(rotated) = wire::xsrf(&answer.headers) {
            set(&self.xsrf, Some(rotated));
        }
        let life = wire::LOGIN_LIFETIME;
        Ok(Token::new(
            format!("JWT {jwt}"),
            issued,
            life,
            tenth_up_to_a_minute(life),
        ))
    }

    fn refused(&self, answer: &Answer) -> ProviderError {
        ProviderError::Auth {
            op: "salt login",
            status: answer.status.as_u16(),
        }
    }
}

/// A client of one Salt API server.
pub struct SaltClient {
    http: HttpClient,
    auth: Auth,
    login: Url,
    rpc: Url,
    xsrf: XsrfCell,
}

impl std::fmt::Debug for SaltClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaltClient")
            .field("rpc", &self.rpc.as_str())
            .finish_non_exhaustive()
    }
}

impl SaltClient {
    /// A client for `cfg`; `cancel` ends waits and requests when dynwall shuts down.
    pub fn new(cfg: &SaltConfig, cancel: CancellationToken) -> Result<SaltClient, SaltError> {
        let https_only = cfg.server.scheme() == "https"
            && match &cfg.auth {
                SaltAuth::Cloud { csp_url, .. } => csp_url.scheme() == "https",
                SaltAuth::OnPrem { .. } => true,
            };
        let http = HttpClient::new(
            &ClientConfig {
                timeout: cfg.timeout,
                https_only,
            },
            Box::new(RetryAfter::default()),
            cancel,
        )
        .map_err(|e| SaltError::Malformed {
            op: "salt client",
            reason: format!("cannot build the HTTP client: {e}"),
        })?;
        let xsrf: XsrfCell = Arc::new(Mutex::new(None));
        let login = join(&cfg.server, "/account/login")?;
        let auth = match &cfg.auth {
            SaltAuth::Cloud { csp_url, api_token } => Auth::new(
                "salt authorize",
                Box::new(CspSource {
                    url: join(csp_url, wire::AUTHORIZE_PATH)?,
                    api_token: api_token.clone(),
                }),
                Scheme::Bearer,
            ),
            SaltAuth::OnPrem {
                username,
                password,
                config_name,
            } => Auth::new(
                "salt login",
                Box::new(LoginSource {
                    url: login.clone(),
                    username: username.clone(),
                    password: password.clone(),
                    config_name: config_name.clone(),
                    xsrf: xsrf.clone(),
                }),
                Scheme::Header(AUTHORIZATION),
            ),
        };
        Ok(SaltClient {
            http,
            auth,
            rpc: join(&cfg.server, "/rpc")?,
            login,
            xsrf,
        })
    }

    /// The XSRF token: the one held, else the `_xsrf` cookie of `GET /account/login`.
    async fn xsrf(&self) -> Result<Secret, SaltError> {
        if let Some(t) = get(&self.xsrf) {
            return Ok(t);
        }
        let answer = self
            .http
            .call(&Request::new("salt xsrf", Method::GET, self.login.clone()))
            .await?;
        let token = wire::xsrf(&answer.headers).ok_or(SaltError::NoXsrf {
            status: answer.status.as_u16(),
        })?;
        set(&self.xsrf, Some(token));
        get(&self.xsrf).ok_or(SaltError::NoXsrf {
            status: answer.status.as_u16(),
        })
    }

    /// One RPC call, authenticated, with the XSRF pair; its `ret`.
    async fn rpc(
        &self,
        op: &'static str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, SaltError> {
        for attempt in 0..2 {
            let token = self.xsrf().await?;
            let mut req = Request::new(op, Method::POST, self.rpc.clone()).json(body.clone());
            req.headers.extend(xsrf_headers(&token));
            let answer = self.http.run(&req, Some(&self.auth)).await?;
            match answer.status {
                StatusCode::OK => return wire::ret(op, &answer.body),
                StatusCode::FORBIDDEN if attempt == 0 => {
                    tracing::debug!(op, "XSRF token refused; fetching a fresh one");
                    set(&self.xsrf, None);
                }
                StatusCode::FORBIDDEN => return Err(SaltError::XsrfRefused { op }),
                s => {
                    return Err(SaltError::Status {
                        op,
                        status: s.as_u16(),
                    })
                }
            }
        }
        Err(SaltError::XsrfRefused { op })
    }
}

impl SaltClient {
    /// The name of saved job `job`, `None` when the server has none of that uuid (or this
    /// token may not see it).
    pub async fn job_name(&self, job: &str) -> Result<Option<String>, SaltError> {
        let ret = self.rpc("job.get_jobs", wire::get_job(job)).await?;
        wire::named("job.get_jobs", &ret, job)
    }

    /// The name of target group `target`, `None` when the server has none of that uuid.
    pub async fn target_name(&self, target: &str) -> Result<Option<String>, SaltError> {
        let ret = self
            .rpc("tgt.get_target_group", wire::get_target(target))
            .await?;
        wire::named("tgt.get_target_group", &ret, target)
    }
}

#[async_trait]
impl SoftCure for SaltClient {
    async fn run_job(&self, job: &str, target: &str) -> Result<String, SaltError> {
        let ret = self
            .rpc("cmd.route_cmd", wire::route_cmd(job, target))
            .await?;
        wire::jid(&ret)
    }

    async fn job_status(&self, jid: &str) -> Result<JobStatus, SaltError> {
        let ret = self
            .rpc("cmd.get_cmd_status", wire::cmd_status(jid))
            .await?;
        wire::status(&ret, jid)
    }
}
