//! Keystone: the token request for each way of authenticating, and the token it returns.
//!
//! v3 (password, project-scoped; application credential, never scoped) and v2.0
//! (`passwordCredentials` with a tenant, for SkyAtlas) are three [`Credentials`] behind one
//! [`KeystoneAuth`]: [`KeystoneAuth::request`] builds what to send, [`KeystoneAuth::parse`] turns
//! the answer into an [`IssuedToken`] with a normalised [`Catalog`]. Whoever holds the token never
//! learns which Keystone version issued it.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::catalog::{Catalog, V2Service, V3Service};
use super::error::{decode, ApiError, OpenStackError};
use crate::secret::Secret;

/// The header that carries a v3 token, in the token answer (`X-Subject-Token`).
pub const SUBJECT_TOKEN_HEADER: &str = "x-subject-token";
/// The header that carries the token on every service request.
pub const AUTH_TOKEN_HEADER: &str = "x-auth-token";

const OP: &str = "keystone token";

/// The Identity API version a token request speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityVersion {
    V3,
    /// Identity v2.0: removed upstream in Queens, still served by SkyAtlas.
    V2,
}

impl IdentityVersion {
    /// The version an `auth_url` names by its last path segment (`…/v3`, `…/v2.0`), if any.
    pub fn of_url(auth_url: &Url) -> Option<IdentityVersion> {
        let last = auth_url.path_segments()?.rev().find(|s| !s.is_empty())?;
        if last == "v3" || last.starts_with("v3.") {
            Some(IdentityVersion::V3)
        } else if last == "v2.0" || last == "v2" {
            Some(IdentityVersion::V2)
        } else {
            None
        }
    }
}

/// A domain, by id or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainRef {
    Id(String),
    Name(String),
}

/// A user, by id or by name within a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

/// A project, by id or by name within a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

/// An application credential, by id or by name (names are unique per user only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppCredentialRef {
    Id(String),
    Name { name: String, user: UserRef },
}

/// A v2.0 tenant, by id (the SkyAtlas form) or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantRef {
    Id(String),
    Name(String),
}

/// What proves who we are. Secrets are [`Secret`]s: `Debug` never shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// v3 password, always scoped to a project: the scope is what brings the catalog.
    Password {
        user: UserRef,
        password: Secret,
        project: ProjectRef,
    },
    /// v3 application credential: no scope may be sent, the credential carries its own.
    ApplicationCredential {
        credential: AppCredentialRef,
        secret: Secret,
    },
    /// v2.0 `passwordCredentials` (SkyAtlas: the username is the account e-mail).
    V2Password {
        username: String,
        password: Secret,
        tenant: TenantRef,
    },
}

impl Credentials {
    pub fn version(&self) -> IdentityVersion {
        match self {
            Credentials::V2Password { .. } => IdentityVersion::V2,
            _ => IdentityVersion::V3,
        }
    }

    /// The method as the config names it (`auth_type`).
    pub fn auth_type(&self) -> &'static str {
        match self {
            Credentials::Password { .. } => "password",
            Credentials::ApplicationCredential { .. } => "v3applicationcredential",
            Credentials::V2Password { .. } => "v2password",
        }
    }
}

/// A token source: where to ask for a token and with what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeystoneAuth {
    token_url: Url,
    credentials: Credentials,
}

/// One token request, ready to send as `POST url` with a JSON body.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub url: Url,
    /// The JSON body; it holds the password or secret, hence a [`Secret`].
    pub body: Secret,
}

/// A token and what came with it.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// Sent as `X-Auth-Token` on every service request.
    pub token: Secret,
    /// The server's expiry time (wall clock of the server).
    pub expires_at: SystemTime,
    /// The server's issue time, when it said (it lets the lifetime survive clock skew).
    pub issued_at: Option<SystemTime>,
    pub catalog: Catalog,
}

impl IssuedToken {
    /// How long the token lives from now: `expires_at - issued_at` when the server said when it
    /// issued it (both on the server's clock, so a skewed local clock does not matter), else
    /// `expires_at - now`. Zero when already expired.
    pub fn lifetime(&self, now: SystemTime) -> Duration {
        let from = self.issued_at.unwrap_or(now);
        self.expires_at
            .duration_since(from)
            .unwrap_or(Duration::ZERO)
    }
}

impl KeystoneAuth {
    /// A token source for `credentials` at `auth_url`.
    ///
    /// The token URL is `{auth_url}/auth/tokens` (v3) or `{auth_url}/tokens` (v2.0); an
    /// unversioned `auth_url` (`https://keystone.example:5000`) gets `v3` or `v2.0` first. An
    /// `auth_url` versioned for the other Identity API is refused.
    pub fn new(auth_url: &Url, credentials: Credentials) -> Result<KeystoneAuth, String> {
        let want = credentials.version();
        let named = IdentityVersion::of_url(auth_url);
        let tail: &[&str] = match (named, want) {
            (Some(v), w) if v != w => {
                return Err(format!(
                    "{auth_url} is a Keystone {} URL, but auth_type {:?} speaks {}",
                    version_name(v),
                    credentials.auth_type(),
                    version_name(w)
                ))
            }
            (Some(_), IdentityVersion::V3) => &["auth", "tokens"],
            (Some(_), IdentityVersion::V2) => &["tokens"],
            (None, IdentityVersion::V3) => &["v3", "auth", "tokens"],
            (None, IdentityVersion::V2) => &["v2.0", "tokens"],
        };
        let mut token_url = auth_url.clone();
        token_url.set_query(None);
        token_url.set_fragment(None);
        token_url
            .path_segments_mut()
            .map_err(|()| format!("{auth_url} cannot take a path"))?
            .pop_if_empty()
            .extend(tail);
        Ok(KeystoneAuth {
            token_url,
            credentials,
        })
    }

    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub fn version(&self) -> IdentityVersion {
        self.credentials.version()
    }

    /// The host a password or secret would reach over plain http, when it would: every
    /// authentication then logs a warning naming it. Loopback is not the network: `None`.
    pub fn plain_http_host(&self) -> Option<String> {
        (self.token_url.scheme() == "http" && !crate::config::host_is_local(&self.token_url, false))
            .then(|| self.host())
    }

    fn host(&self) -> String {
        self.token_url.host_str().unwrap_or("").to_string()
    }

    /// The request that asks for a token.
    pub fn request(&self) -> TokenRequest {
        let body = match &self.credentials {
            Credentials::Password {
                user,
                password,
                project,
            } => {
                let mut user = user_json(user);
                user.insert("password".into(), Value::from(password.expose()));
                json!({"auth": {
                    "identity": {"methods": ["password"], "password": {"user": user}},
                    "scope": {"project": project_json(project)},
                }})
            }
            Credentials::ApplicationCredential { credential, secret } => {
                let mut c = Map::new();
                match credential {
                    AppCredentialRef::Id(id) => {
                        c.insert("id".into(), Value::from(id.as_str()));
                    }
                    AppCredentialRef::Name { name, user } => {
                        c.insert("name".into(), Value::from(name.as_str()));
                        c.insert("user".into(), Value::Object(user_json(user)));
                    }
                }
                c.insert("secret".into(), Value::from(secret.expose()));
                json!({"auth": {"identity": {
                    "methods": ["application_credential"],
                    "application_credential": c,
                }}})
            }
            Credentials::V2Password {
                username,
                password,
                tenant,
            } => {
                let mut auth = Map::new();
                auth.insert(
                    "passwordCredentials".into(),
                    json!({"username": username, "password": password.expose()}),
                );
                let (key, value) = match tenant {
                    TenantRef::Id(id) => ("tenantId", id),
                    TenantRef::Name(name) => ("tenantName", name),
                };
                auth.insert(key.into(), Value::from(value.as_str()));
                json!({ "auth": auth })
            }
        };
        TokenRequest {
            url: self.token_url.clone(),
            body: Secret::new(body.to_string()),
        }
    }

    /// Reads Keystone's answer to [`KeystoneAuth::request`].
    ///
    /// Any 4xx is "credentials rejected" (Keystone answers 401 for a wrong password, 404 for an
    /// unknown application credential, 400 for a user it cannot find by name). A token without a
    /// project scope has no catalog and is refused as [`OpenStackError::NoCatalog`].
    pub fn parse(
        &self,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<IssuedToken, OpenStackError> {
        if (400..500).contains(&status) {
            return Err(OpenStackError::CredentialsRejected {
                host: self.host(),
                answer: ApiError::parse(status, body),
            });
        }
        if !(200..300).contains(&status) {
            return Err(OpenStackError::api(OP, status, body));
        }
        match self.version() {
            IdentityVersion::V3 => self.parse_v3(headers, body),
            IdentityVersion::V2 => self.parse_v2(body),
        }
    }

    fn parse_v3(&self, headers: &HeaderMap, body: &[u8]) -> Result<IssuedToken, OpenStackError> {
        #[derive(Deserialize)]
        struct Answer {
            token: Token,
        }
        #[derive(Deserialize)]
        struct Token {
            expires_at: String,
            issued_at: Option<String>,
            project: Option<Value>,
            catalog: Option<Vec<V3Service>>,
        }
        let token = headers
            .get(SUBJECT_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OpenStackError::malformed(OP, "no X-Subject-Token header"))?;
        let answer: Answer = decode(OP, body)?;
        if answer.token.project.is_none() {
            return Err(OpenStackError::NoCatalog {
                host: self.host(),
                hint: match self.credentials {
                    Credentials::ApplicationCredential { .. } => {
                        "the application credential has no project"
                    }
                    _ => "check project_name or project_id",
                },
            });
        }
        Ok(IssuedToken {
            token: Secret::new(token),
            expires_at: timestamp("expires_at", &answer.token.expires_at)?,
            issued_at: optional_timestamp("issued_at", answer.token.issued_at.as_deref())?,
            catalog: Catalog::from_v3(answer.token.catalog.unwrap_or_default()),
        })
    }

    fn parse_v2(&self, body: &[u8]) -> Result<IssuedToken, OpenStackError> {
        #[derive(Deserialize)]
        struct Answer {
            access: Access,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Access {
            token: Token,
            #[serde(default)]
            service_catalog: Vec<V2Service>,
        }
        #[derive(Deserialize)]
        struct Token {
            id: String,
            expires: String,
            issued_at: Option<String>,
            tenant: Option<Value>,
        }
        let answer: Answer = decode(OP, body)?;
        let token = answer.access.token;
        if token.id.trim().is_empty() {
            return Err(OpenStackError::malformed(OP, "access.token.id is empty"));
        }
        if token.tenant.is_none() {
            return Err(OpenStackError::NoCatalog {
                host: self.host(),
                hint: "check tenant_id or tenant_name",
            });
        }
        Ok(IssuedToken {
            token: Secret::new(token.id.trim()),
            expires_at: timestamp("access.token.expires", &token.expires)?,
            issued_at: optional_timestamp("access.token.issued_at", token.issued_at.as_deref())?,
            catalog: Catalog::from_v2(answer.access.service_catalog),
        })
    }
}

fn version_name(v: IdentityVersion) -> &'static str {
    match v {
        IdentityVersion::V3 => "v3",
        IdentityVersion::V2 => "v2.0",
    }
}

fn domain_json(d: &DomainRef) -> Value {
    match d {
        DomainRef::Id(id) => json!({ "id": id }),
        DomainRef::Name(name) => json!({ "name": name }),
    }
}

fn user_json(u: &UserRef) -> Map<String, Value> {
    let mut m = Map::new();
    match u {
        UserRef::Id(id) => {
            m.insert("id".into(), Value::from(id.as_str()));
        }
        UserRef::Name { name, domain } => {
            m.insert("name".into(), Value::from(name.as_str()));
            m.insert("domain".into(), domain_json(domain));
        }
    }
    m
}

fn project_json(p: &ProjectRef) -> Value {
    match p {
        ProjectRef::Id(id) => json!({ "id": id }),
        ProjectRef::Name { name, domain } => json!({"name": name, "domain": domain_json(domain)}),
    }
}

/// Reads a Keystone timestamp: ISO 8601 in UTC, with or without fractional seconds, with `Z`,
/// `+00:00` or (old v2.0 `issued_at`) no zone at all, which means UTC.
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim()).ok()
}

fn timestamp(field: &str, text: &str) -> Result<SystemTime, OpenStackError> {
    parse_timestamp(text)
        .ok_or_else(|| OpenStackError::malformed(OP, format!("{field} {text:?} is not a UTC time")))
}

fn optional_timestamp(
    field: &str,
    text: Option<&str>,
) -> Result<Option<SystemTime>, OpenStackError> {
    text.map(|t| timestamp(field, t)).transpose()
}

#[cfg(test)]
mod tests;
