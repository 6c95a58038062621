//! The OpenStack client: Keystone tokens and the service catalog over the shared HTTP layer.
//!
//! [`KeystoneTokens`] is the [`TokenSource`] of an OpenStack cloud, for Keystone v3 and v2.0
//! alike: it sends what [`KeystoneAuth`] builds and keeps the catalog of each new token. The
//! Neutron and Nova halves ([`super::firewall`], [`super::power`]) ask [`OpenStackClient`] for a
//! service's base URL and send their requests through [`OpenStackClient::call`]; none of them
//! learns which Keystone issued the token.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderName, HeaderValue, ACCEPT};
use reqwest::{Method, Url};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::catalog::{Catalog, EndpointChoice, Service};
use super::error::OpenStackError;
use super::keystone::{KeystoneAuth, AUTH_TOKEN_HEADER};
use super::neutron::{self, GroupSummary};
use super::nova;
use crate::config::OpenStackConfig;
use crate::ids::CloudName;
use crate::provider::http::{Answer, ClientConfig, HttpClient, Request, RetryAfter, Stats};
use crate::provider::token::{Auth, Scheme, Token, TokenSource};
use crate::provider::{Provider, ProviderError};

/// keystoneauth refreshes a token when fewer than 120 s remain; short-lived tokens use a tenth of
/// their life instead, so they are not refreshed on every call.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(120);

/// The time one request takes on average: OpenStack publishes no quota, so this is a plain
/// estimate of a round trip with some margin, used only for deadlines.
pub const PACE: Duration = Duration::from_secs(1);

const TOKEN_OP: &str = "keystone token";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The catalog of the current token, shared by the token source (which writes it) and the
/// client (which reads it).
type CatalogSlot = Arc<Mutex<Option<Catalog>>>;

/// Issues Keystone tokens (v3 or v2.0, whichever the configuration names).
struct KeystoneTokens {
    cloud: CloudName,
    auth: KeystoneAuth,
    catalog: CatalogSlot,
}

impl TokenSource for KeystoneTokens {
    fn request(&self) -> Result<Request, ProviderError> {
        if let Some(host) = self.auth.plain_http_host() {
            tracing::warn!(cloud = %self.cloud,
                "cloud {}: sending the credentials to {host} over plain http \
                 (allow_insecure_http = true)", self.cloud);
        }
        let t = self.auth.request();
        let body: serde_json::Value =
            serde_json::from_str(t.body.expose()).map_err(|e| ProviderError::Malformed {
                op: TOKEN_OP,
                reason: format!("cannot build the token request: {e}"),
            })?;
        Ok(Request::new(TOKEN_OP, Method::POST, t.url)
            .json(body)
            .header(ACCEPT, HeaderValue::from_static("application/json")))
    }

    fn parse(&self, answer: &Answer, issued: Instant) -> Result<Token, ProviderError> {
        let token = self
            .auth
            .parse(answer.status.as_u16(), &answer.headers, &answer.body)
            .map_err(|e| provider_error(TOKEN_OP, e))?;
        let lifetime = token.lifetime(SystemTime::now());
        let margin = REFRESH_MARGIN.min(lifetime / 10);
        *lock(&self.catalog) = Some(token.catalog);
        Ok(Token::new(
            token.token.expose().to_string(),
            issued,
            lifetime,
            margin,
        ))
    }

    fn refused(&self, answer: &Answer) -> ProviderError {
        match self
            .auth
            .parse(answer.status.as_u16(), &answer.headers, &answer.body)
        {
            Err(e) => {
                if e.is_auth() {
                    tracing::error!(cloud = %self.cloud, "cloud {}: {e}", self.cloud);
                }
                provider_error(TOKEN_OP, e)
            }
            Ok(_) => ProviderError::Malformed {
                op: TOKEN_OP,
                reason: format!("HTTP {} with a token", answer.status.as_u16()),
            },
        }
    }
}

/// Maps an OpenStack error onto the provider layer's classes (exit codes follow from these).
pub(crate) fn provider_error(op: &'static str, e: OpenStackError) -> ProviderError {
    if e.is_config() {
        return ProviderError::Config {
            op,
            reason: e.to_string(),
        };
    }
    match e {
        OpenStackError::CredentialsRejected { answer, .. } => ProviderError::Auth {
            op,
            status: answer.status,
        },
        OpenStackError::Api { op, answer } if answer.is_transient() => ProviderError::Unavailable {
            op,
            status: answer.status,
        },
        OpenStackError::Api { op, answer } => ProviderError::Api {
            op,
            status: answer.status,
            code: answer.kind.clone().unwrap_or_default(),
            message: answer.message,
        },
        OpenStackError::Malformed { op, reason } => ProviderError::Malformed { op, reason },
        other @ OpenStackError::OverQuota { .. } => ProviderError::Api {
            op,
            status: 409,
            code: "OverQuota".into(),
            message: other.to_string(),
        },
        other => ProviderError::Api {
            op,
            status: 409,
            code: String::new(),
            message: other.to_string(),
        },
    }
}

/// A client for one OpenStack cloud (one project).
pub struct OpenStackClient {
    pub(super) name: CloudName,
    http: HttpClient,
    auth: Auth,
    catalog: CatalogSlot,
    choice: EndpointChoice,
    /// Security groups resolved so far: configured name or id → the group.
    pub(super) groups: Mutex<BTreeMap<String, GroupSummary>>,
    /// The project's groups as last listed (Nova names a server's groups, never their ids).
    pub(super) known_groups: Mutex<Option<Vec<GroupSummary>>>,
    /// The servers of the last list (id, name), to resolve a configured name for an action.
    pub(super) servers: Mutex<Vec<(String, String)>>,
}

impl std::fmt::Debug for OpenStackClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStackClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl OpenStackClient {
    /// Builds a client; `cancel` aborts waits and in-flight requests when dynwall shuts down.
    pub fn new(
        cfg: &OpenStackConfig,
        cancel: CancellationToken,
    ) -> Result<OpenStackClient, reqwest::Error> {
        let http = HttpClient::new(
            &ClientConfig {
                timeout: cfg.timeout,
                // Plain http is allowed to loopback, or with allow_insecure_http: both checked
                // on the auth URL (config) and on every catalog endpoint (selection).
                https_only: false,
            },
            Box::new(RetryAfter::default()),
            cancel,
        )?;
        let catalog: CatalogSlot = Arc::new(Mutex::new(None));
        let tokens = KeystoneTokens {
            cloud: cfg.name.clone(),
            auth: cfg.auth.clone(),
            catalog: Arc::clone(&catalog),
        };
        Ok(OpenStackClient {
            name: cfg.name.clone(),
            http,
            auth: Auth::new(
                TOKEN_OP,
                Box::new(tokens),
                Scheme::Header(HeaderName::from_static(AUTH_TOKEN_HEADER)),
            ),
            catalog,
            choice: cfg.endpoint_choice(),
            groups: Mutex::new(BTreeMap::new()),
            known_groups: Mutex::new(None),
            servers: Mutex::new(Vec::new()),
        })
    }

    pub fn stats(&self) -> Stats {
        self.http.stats()
    }

    /// Asks Keystone for a token (and so a catalog), through the shared request policy.
    async fn authenticate(&self) -> Result<(), ProviderError> {
        let req = self.auth.request()?;
        let issued = Instant::now();
        let answer = self.http.call(&req).await?;
        self.auth.accept(&answer, issued).await
    }

    /// The API root of `service` from the current token's catalog (authenticating first when
    /// there is no token yet): Neutron's with `v2.0/`, Nova's as listed.
    pub(super) async fn base(&self, service: Service) -> Result<Url, ProviderError> {
        if lock(&self.catalog).is_none() {
            self.authenticate().await?;
        }
        let catalog = lock(&self.catalog)
            .clone()
            .ok_or(ProviderError::Malformed {
                op: TOKEN_OP,
                reason: "no usable token".into(),
            })?;
        let url = catalog
            .endpoint(service, &self.choice)
            .map_err(|e| provider_error(TOKEN_OP, e))?;
        Ok(match service {
            Service::Network => neutron::base_url(&url),
            Service::Compute => nova::base_url(&url),
        })
    }

    /// An authenticated call with the shared policy (retries, `Retry-After`, one replay after a
    /// 401 with a new token). Nova calls carry the pinned microversion.
    pub(super) async fn call(
        &self,
        op: &'static str,
        service: Service,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
    ) -> Result<Answer, ProviderError> {
        let mut req = Request::new(op, method, url)
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        req.json = body;
        if service == Service::Compute {
            for (name, value) in nova::MICROVERSION_HEADERS {
                req = req.header(
                    HeaderName::from_static(lowercase(name)),
                    HeaderValue::from_static(value),
                );
            }
        }
        self.http.run(&req, Some(&self.auth)).await
    }
}

/// The microversion header names, lower-cased for [`HeaderName::from_static`].
fn lowercase(name: &'static str) -> &'static str {
    match name {
        "OpenStack-API-Version" => "openstack-api-version",
        "X-OpenStack-Nova-API-Version" => "x-openstack-nova-api-version",
        other => other,
    }
}

impl Provider for OpenStackClient {
    fn queue_delay(&self) -> Duration {
        self.http.delay()
    }

    fn pace(&self) -> Duration {
        PACE
    }

    fn call_bound(&self) -> Duration {
        self.http.call_bound()
    }

    fn meter(&self, metrics: &crate::metrics::Metrics, cloud: &crate::ids::CloudName) {
        self.http.meter(metrics, cloud);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::openstack::error::ApiError;

    #[test]
    fn microversion_headers_are_valid_static_names() {
        for (name, _) in nova::MICROVERSION_HEADERS {
            assert_eq!(lowercase(name), name.to_ascii_lowercase());
        }
    }

    #[test]
    fn openstack_errors_map_to_the_exit_classes() {
        let rejected = OpenStackError::CredentialsRejected {
            host: "k".into(),
            answer: ApiError::parse(404, b""),
        };
        assert!(matches!(
            provider_error("t", rejected),
            ProviderError::Auth { status: 404, .. }
        ));
        let ambiguous = OpenStackError::Ambiguous {
            what: "security group",
            wanted: "ssh".into(),
            matches: vec!["a".into(), "b".into()],
        };
        match provider_error("t", ambiguous) {
            ProviderError::Config { reason, .. } => assert!(reason.contains("a, b"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let quota = OpenStackError::OverQuota {
            answer: ApiError::parse(
                409,
                br#"{"NeutronError": {"type": "OverQuota", "message": "Quota exceeded for resources: ['security_group_rule'].", "detail": ""}}"#,
            ),
        };
        match provider_error("t", quota) {
            ProviderError::Api { message, .. } => assert!(message.contains("quota"), "{message}"),
            other => panic!("{other:?}"),
        }
        let busy = OpenStackError::api("nova", 503, b"");
        assert!(provider_error("t", busy).is_transient());
    }
}
