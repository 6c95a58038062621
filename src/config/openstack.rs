//! `[openstack.NAME]`: an OpenStack cloud's connection, validated into a Keystone token source.
//!
//! The settings come in layers. The table's own keys win; below them is a `clouds.yaml` entry
//! (`cloud = "mycloud"`, with `secure.yaml` merged), or, when the table names neither `cloud` nor
//! `auth_url`, the `OS_*` variables of an openrc file (`$OS_CLOUD` naming a clouds.yaml entry
//! counts as such a variable). Keys that name one thing in two ways (`project_name` or
//! `project_id`, `password` or `password_file`) are taken from one layer only: the table's choice
//! replaces the layer's. Choosing an authentication method in the table (a password, or an
//! application credential) drops the lower layer's keys of the other method. Explicit keys that do
//! not apply to the method are errors; a lower layer's are ignored, as openstacksdk ignores them.
//!
//! The method is `auth_type`, else inferred: an application credential id or name means
//! `v3applicationcredential`; a tenant, an `auth_url` ending in `/v2.0` or a clouds.yaml
//! `identity_api_version: 2` means `v2password`; anything else is `password` (v3).

use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use super::clouds::{self, ConnectionSource, Layer, SearchPath};
use super::raw::{self};
use super::*;
use crate::ids::CloudName;
use crate::provider::openstack::catalog::{EndpointChoice, Interface};
use crate::provider::openstack::keystone::{
    AppCredentialRef, Credentials, DomainRef, IdentityVersion, KeystoneAuth, ProjectRef, TenantRef,
    UserRef,
};

/// One validated OpenStack cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenStackConfig {
    pub name: CloudName,
    /// The token source: where to ask for a token and with which credentials.
    pub auth: KeystoneAuth,
    /// As configured (the token URL is derived from it: [`KeystoneAuth::token_url`]).
    pub auth_url: Url,
    /// Required when the catalog offers a service in several regions.
    pub region: Option<String>,
    pub interface: Interface,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Credentials and tokens may travel over plain http to a non-loopback host.
    pub allow_insecure_http: bool,
    /// Where the settings came from besides the table.
    pub source: ConnectionSource,
}

impl OpenStackConfig {
    /// How to pick endpoints from this cloud's catalog.
    pub fn endpoint_choice(&self) -> EndpointChoice {
        EndpointChoice {
            interface: self.interface,
            region: self.region.clone(),
            allow_insecure_http: self.allow_insecure_http,
        }
    }
}

/// The authentication methods (`auth_type` `password`, `v3applicationcredential`, `v2password`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Password,
    ApplicationCredential,
    V2Password,
}

/// A value and whether the table (rather than a lower layer) gave it.
struct Setting {
    text: String,
    explicit: bool,
}

/// Keys of the password methods and of application credentials: choosing one in the table drops
/// the lower layer's keys of the other.
const PASSWORD_KEYS: &[&str] = &[
    "password",
    "password_file",
    "project_name",
    "project_id",
    "project_domain_name",
    "project_domain_id",
    "tenant_id",
    "tenant_name",
];
const APP_CREDENTIAL_KEYS: &[&str] = &[
    "application_credential_id",
    "application_credential_name",
    "application_credential_secret",
    "application_credential_secret_file",
];

struct Resolver<'a> {
    path: &'a Path,
    name: &'a str,
    table: Vec<(&'static str, String)>,
    lower: Option<&'a Layer>,
    /// Lower-layer keys the table's choice of method hides.
    hidden: &'static [&'static str],
}

impl Resolver<'_> {
    fn key(&self, k: &str) -> String {
        format!("openstack.{}.{k}", self.name)
    }

    fn err(&self, k: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.path, self.key(k), reason)
    }

    fn table(&self, k: &str) -> Option<&str> {
        self.table
            .iter()
            .find(|(t, _)| *t == k)
            .map(|(_, v)| v.as_str())
    }

    fn lower(&self, k: &str) -> Option<&str> {
        if self.hidden.contains(&k) {
            return None;
        }
        self.lower.and_then(|l| l.get(k))
    }

    /// " (from clouds.yaml entry …)" for a lower layer's value, "" for the table's.
    fn origin(&self, v: &Setting) -> String {
        match (v.explicit, self.lower) {
            (false, Some(l)) => format!(" (from {})", l.source),
            _ => String::new(),
        }
    }

    /// One of several keys naming the same thing: the table's (at most one of them), else the
    /// lower layer's first in `keys` order (ids before names, as keystoneauth prefers).
    fn one_of(
        &self,
        keys: &[&'static str],
    ) -> Result<Option<(&'static str, Setting)>, ConfigError> {
        let given: Vec<&'static str> = keys
            .iter()
            .copied()
            .filter(|k| self.table(k).is_some())
            .collect();
        if let [a, b, ..] = given.as_slice() {
            return Err(self.err(
                b,
                format!("set either {} or {}, not both", self.key(a), self.key(b)),
            ));
        }
        if let Some(k) = given.first() {
            let text = self.table(k).unwrap_or_default().to_string();
            return Ok(Some((
                k,
                Setting {
                    text,
                    explicit: true,
                },
            )));
        }
        Ok(keys.iter().find_map(|k| {
            self.lower(k).map(|v| {
                (
                    *k,
                    Setting {
                        text: v.to_string(),
                        explicit: false,
                    },
                )
            })
        }))
    }

    fn single(&self, k: &'static str) -> Result<Option<Setting>, ConfigError> {
        Ok(self.one_of(&[k])?.map(|(_, v)| v))
    }

    /// Refuses table keys that `method` does not use.
    fn refuse(&self, keys: &[&str], why: &str) -> Result<(), ConfigError> {
        match keys.iter().find(|k| self.table(k).is_some()) {
            Some(k) => Err(self.err(k, why.to_string())),
            None => Ok(()),
        }
    }

    fn domain(
        &self,
        id: &'static str,
        name: &'static str,
        of: &str,
    ) -> Result<DomainRef, ConfigError> {
        match self.one_of(&[id, name])? {
            Some((k, v)) if k == id => Ok(DomainRef::Id(v.text)),
            Some((_, v)) => Ok(DomainRef::Name(v.text)),
            None => Err(self.err(
                name,
                format!(
                    "missing: {of} needs {} or {} (often \"Default\")",
                    self.key(name),
                    self.key(id)
                ),
            )),
        }
    }

    fn user(&self) -> Result<Option<UserRef>, ConfigError> {
        Ok(match self.one_of(&["user_id", "username"])? {
            Some(("user_id", v)) => Some(UserRef::Id(v.text)),
            Some((_, v)) => Some(UserRef::Name {
                domain: self.domain("user_domain_id", "user_domain_name", "a username")?,
                name: v.text,
            }),
            None => None,
        })
    }

    /// `password`, `password_file`, the systemd credential, else the lower layer's.
    fn password(&self, env: &dyn Env, raw: &raw::RawOpenStack) -> Result<Secret, ConfigError> {
        self.secret(
            env,
            "password",
            raw.password.clone(),
            raw.password_file.clone(),
        )
    }

    fn secret(
        &self,
        env: &dyn Env,
        key: &'static str,
        inline: Option<String>,
        file: Option<String>,
    ) -> Result<Secret, ConfigError> {
        let base = self.path.parent().unwrap_or_else(|| Path::new("."));
        let key_text = self.key(key);
        let credential = format!("openstack_{}_{key}", self.name);
        secret(
            self.path,
            base,
            env,
            SecretSpec {
                key: &key_text,
                inline,
                file,
                credential: &credential,
                env: &[],
                fallback: self.lower(key).map(str::to_string),
            },
        )
        .map_err(|e| match (e, self.lower.map(|l| &l.source)) {
            // Missing everywhere: say where else it could go.
            (
                ConfigError::Invalid {
                    path,
                    key: dotted,
                    reason,
                },
                Some(source),
            ) if reason.starts_with("missing:") => {
                let there = match source {
                    ConnectionSource::CloudsYaml { cloud, .. } => {
                        format!("the clouds.yaml or secure.yaml entry {cloud:?}")
                    }
                    _ => format!("$OS_{}", key.to_ascii_uppercase()),
                };
                ConfigError::Invalid {
                    path,
                    key: dotted,
                    reason: format!("{reason}, or {there}"),
                }
            }
            (e, _) => e,
        })
    }
}

/// A cloud name usable as a systemd credential name part and a state key.
fn check_name(name: &str) -> Result<(), String> {
    if name == CloudName::INDIGO {
        return Err(
            "\"indigo\" is the cloud of the [indigo] table; name this one differently".into(),
        );
    }
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "{name:?} is not a cloud name: use 1 to 64 letters, digits, '_' or '-'"
        ));
    }
    Ok(())
}

fn table_entries(raw: &raw::RawOpenStack) -> Vec<(&'static str, Option<&String>)> {
    vec![
        ("auth_url", raw.auth_url.as_ref()),
        ("auth_type", raw.auth_type.as_ref()),
        ("username", raw.username.as_ref()),
        ("user_id", raw.user_id.as_ref()),
        ("user_domain_name", raw.user_domain_name.as_ref()),
        ("user_domain_id", raw.user_domain_id.as_ref()),
        ("password", raw.password.as_ref()),
        ("password_file", raw.password_file.as_ref()),
        ("project_name", raw.project_name.as_ref()),
        ("project_id", raw.project_id.as_ref()),
        ("project_domain_name", raw.project_domain_name.as_ref()),
        ("project_domain_id", raw.project_domain_id.as_ref()),
        (
            "application_credential_id",
            raw.application_credential_id.as_ref(),
        ),
        (
            "application_credential_name",
            raw.application_credential_name.as_ref(),
        ),
        (
            "application_credential_secret",
            raw.application_credential_secret.as_ref(),
        ),
        (
            "application_credential_secret_file",
            raw.application_credential_secret_file.as_ref(),
        ),
        ("tenant_id", raw.tenant_id.as_ref()),
        ("tenant_name", raw.tenant_name.as_ref()),
        ("region_name", raw.region_name.as_ref()),
        ("interface", raw.interface.as_ref()),
    ]
}

/// The lower layer for a table: its clouds.yaml entry, else (with no `auth_url` either) the one
/// `$OS_CLOUD` names or the `OS_*` variables.
fn lower_layer(
    name: &str,
    raw: &raw::RawOpenStack,
    path: &Path,
    env: &dyn Env,
    search: &SearchPath,
) -> Result<Option<Layer>, ConfigError> {
    let key = format!("openstack.{name}.cloud");
    if let Some(cloud) = &raw.cloud {
        let cloud = cloud.trim();
        if cloud.is_empty() {
            return Err(ConfigError::invalid(path, key, "must not be empty"));
        }
        return clouds::from_clouds_yaml(cloud, search)
            .map(Some)
            .map_err(|r| ConfigError::invalid(path, key, r));
    }
    if raw.auth_url.is_some() {
        return Ok(None);
    }
    if let Some(cloud) = env.var("OS_CLOUD") {
        return clouds::from_clouds_yaml(cloud.trim(), search)
            .map(Some)
            .map_err(|r| {
                ConfigError::invalid(path, key, format!("{r} (the cloud $OS_CLOUD names)"))
            });
    }
    Ok(clouds::from_environment(env))
}

/// Like [`openstack_from_raw`]; but when loading skips secrets ([`Secrets::Skip`]: `ip`,
/// `status`, `healthcheck`, `reset`, which never call a cloud API) a cloud whose settings come
/// from outside the config (a clouds.yaml entry, `$OS_CLOUD` or the `OS_*` variables) that cannot
/// be read or completed is `None`: its name still resolves entries, and the command runs.
pub(crate) fn openstack_or_unread(
    name: &str,
    raw: raw::RawOpenStack,
    path: &Path,
    env: &dyn Env,
    search: &SearchPath,
) -> Result<Option<OpenStackConfig>, ConfigError> {
    check_name(name).map_err(|r| ConfigError::invalid(path, format!("openstack.{name}"), r))?;
    let outside = raw.cloud.is_some() || raw.auth_url.is_none();
    match openstack_from_raw(name, raw, path, env, search) {
        Ok(c) => Ok(Some(c)),
        Err(e) if outside && env.secrets() == Secrets::Skip => {
            tracing::debug!("cloud {name} left unread: {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub(crate) fn openstack_from_raw(
    name: &str,
    raw: raw::RawOpenStack,
    path: &Path,
    env: &dyn Env,
    search: &SearchPath,
) -> Result<OpenStackConfig, ConfigError> {
    check_name(name).map_err(|r| ConfigError::invalid(path, format!("openstack.{name}"), r))?;
    let lower = lower_layer(name, &raw, path, env, search)?;
    let mut table = Vec::new();
    for (k, v) in table_entries(&raw) {
        if let Some(v) = v {
            let v = v.trim();
            if v.is_empty() {
                return Err(ConfigError::invalid(
                    path,
                    format!("openstack.{name}.{k}"),
                    "must not be empty",
                ));
            }
            table.push((k, v.to_string()));
        }
    }
    let mut r = Resolver {
        path,
        name,
        table,
        lower: lower.as_ref(),
        hidden: &[],
    };
    let table_password = PASSWORD_KEYS.iter().any(|k| r.table(k).is_some());
    let table_app = APP_CREDENTIAL_KEYS.iter().any(|k| r.table(k).is_some());
    let password_key = ["password", "password_file"]
        .into_iter()
        .find(|k| r.table(k).is_some());
    if let (Some(p), true) = (password_key, table_app) {
        let k = APP_CREDENTIAL_KEYS
            .iter()
            .find(|k| r.table(k).is_some())
            .unwrap_or(&"application_credential_id");
        return Err(r.err(
            k,
            format!(
                "conflicts with {}: authenticate with a password or an application credential, \
                 not both",
                r.key(p)
            ),
        ));
    }
    r.hidden = match (table_password, table_app) {
        (_, true) => PASSWORD_KEYS,
        (true, false) => APP_CREDENTIAL_KEYS,
        (false, false) => &[],
    };

    let Some(url_value) = r.single("auth_url")? else {
        let reason = match lower.as_ref() {
            Some(l) => match &l.profile {
                Some(p) => format!(
                    "missing: {} names the vendor profile {p:?}, whose defaults dynwall does not \
                     read; set auth_url here or in the entry",
                    l.source
                ),
                None => format!("missing: {} has no auth_url; set it here", l.source),
            },
            None => "missing: set auth_url (with the credentials), or cloud = \"…\" naming a \
                     clouds.yaml entry, or run with the OS_* variables of an openrc file"
                .to_string(),
        };
        return Err(r.err("auth_url", reason));
    };
    let auth_url = Url::parse(&url_value.text).map_err(|e| {
        r.err(
            "auth_url",
            format!(
                "invalid URL {:?}{}: {e}",
                url_value.text,
                r.origin(&url_value)
            ),
        )
    })?;
    if !auth_url.username().is_empty() || auth_url.password().is_some() {
        // Not echoed: the URL holds what looks like a credential.
        return Err(r.err(
            "auth_url",
            format!(
                "carries a user name or password{}; give credentials in their own keys",
                r.origin(&url_value)
            ),
        ));
    }
    let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);

    let method = method(&r, &auth_url)?;
    let credentials = match method {
        Method::Password => password_credentials(&r, env, &raw)?,
        Method::ApplicationCredential => app_credentials(&r, env, &raw)?,
        Method::V2Password => v2_credentials(&r, env, &raw, &auth_url)?,
    };

    match auth_url.scheme() {
        "https" => {}
        "http" if allow_insecure_http || host_is_local(&auth_url, false) => {}
        "http" => {
            let what = match method {
                Method::ApplicationCredential => "application credential secret",
                _ => "password",
            };
            return Err(r.err(
                "auth_url",
                format!(
                    "{auth_url}{} is plain http to a non-loopback host: the {what} would travel \
                     unencrypted; use https, or set {} = true if this cloud offers nothing else \
                     (every authentication then logs a warning)",
                    r.origin(&url_value),
                    r.key("allow_insecure_http")
                ),
            ));
        }
        other => {
            return Err(r.err(
                "auth_url",
                format!(
                    "unsupported scheme {other:?}{} (expected https)",
                    r.origin(&url_value)
                ),
            ))
        }
    }
    let auth = KeystoneAuth::new(&auth_url, credentials)
        .map_err(|e| r.err("auth_url", format!("{e}{}", r.origin(&url_value))))?;

    let interface = match r.single("interface")? {
        None => Interface::Public,
        Some(v) => match Interface::parse(&v.text) {
            Some(i @ (Interface::Public | Interface::Internal)) => i,
            _ => {
                return Err(r.err(
                    "interface",
                    format!(
                        "{:?}{} is not supported (expected \"public\" or \"internal\")",
                        v.text,
                        r.origin(&v)
                    ),
                ))
            }
        },
    };
    let region = match r.table("region_name") {
        Some(t) => Some(t.to_string()),
        None => lower.as_ref().and_then(|l| l.regions.first().cloned()),
    };
    Ok(OpenStackConfig {
        name: CloudName(name.to_string()),
        auth,
        auth_url,
        region,
        interface,
        timeout: raw.timeout.map_or(DEFAULT_API_TIMEOUT, |d| d.0),
        allow_insecure_http,
        source: lower.map_or(ConnectionSource::Table, |l| l.source),
    })
}

/// `auth_type`, else inferred from the keys given and the URL.
fn method(r: &Resolver<'_>, auth_url: &Url) -> Result<Method, ConfigError> {
    let v2_url = IdentityVersion::of_url(auth_url) == Some(IdentityVersion::V2);
    let has = |keys: &[&str]| {
        keys.iter()
            .any(|k| r.table(k).is_some() || r.lower(k).is_some())
    };
    let has_tenant = has(&["tenant_id", "tenant_name"]);
    let has_app = has(&["application_credential_id", "application_credential_name"]);
    let v2_api = r
        .lower("identity_api_version")
        .is_some_and(|v| v.trim() == "2" || v.trim().starts_with("2."));
    let inferred = if has_app {
        Method::ApplicationCredential
    } else if has_tenant || v2_url || v2_api {
        Method::V2Password
    } else {
        Method::Password
    };
    let Some(v) = r.single("auth_type")? else {
        return Ok(inferred);
    };
    let known = "dynwall authenticates with \"password\", \"v3applicationcredential\" or \
                 \"v2password\"";
    if v.explicit {
        return match v.text.as_str() {
            "password" => Ok(Method::Password),
            "v3applicationcredential" => Ok(Method::ApplicationCredential),
            "v2password" => Ok(Method::V2Password),
            other => Err(r.err("auth_type", format!("{other:?} is not supported: {known}"))),
        };
    }
    // openstacksdk's names: "password" is its version-detecting plugin.
    match v.text.as_str() {
        "password" if inferred == Method::V2Password => Ok(Method::V2Password),
        "password" | "v3password" => Ok(Method::Password),
        "v3applicationcredential" => Ok(Method::ApplicationCredential),
        "v2password" => Ok(Method::V2Password),
        other => Err(r.err(
            "auth_type",
            format!("{other:?}{} is not supported: {known}", r.origin(&v)),
        )),
    }
}

fn password_credentials(
    r: &Resolver<'_>,
    env: &dyn Env,
    raw: &raw::RawOpenStack,
) -> Result<Credentials, ConfigError> {
    r.refuse(
        APP_CREDENTIAL_KEYS,
        "does not apply to auth_type \"password\"",
    )?;
    r.refuse(
        &["tenant_id", "tenant_name"],
        "is a Keystone v2.0 key (auth_type \"v2password\"); with v3 set project_id or project_name",
    )?;
    let user = r
        .user()?
        .ok_or_else(|| r.err("username", "missing: set username (or user_id)"))?;
    // openstacksdk reads a lower layer's tenant as the project for v3.
    let project = match r.one_of(&["project_id", "project_name", "tenant_id", "tenant_name"])? {
        Some(("project_id" | "tenant_id", v)) => ProjectRef::Id(v.text),
        Some((_, v)) => ProjectRef::Name {
            domain: r.domain("project_domain_id", "project_domain_name", "a project_name")?,
            name: v.text,
        },
        None => {
            return Err(r.err(
                "project_name",
                "missing: a password token is scoped to a project, which brings the service \
                 catalog: set project_name (with project_domain_name) or project_id",
            ))
        }
    };
    let password = r.password(env, raw)?;
    Ok(Credentials::Password {
        user,
        password,
        project,
    })
}

fn app_credentials(
    r: &Resolver<'_>,
    env: &dyn Env,
    raw: &raw::RawOpenStack,
) -> Result<Credentials, ConfigError> {
    r.refuse(
        PASSWORD_KEYS,
        "does not apply to an application credential: it carries its own project and no scope \
         is sent",
    )?;
    let credential =
        match r.one_of(&["application_credential_id", "application_credential_name"])? {
            Some(("application_credential_id", v)) => AppCredentialRef::Id(v.text),
            Some((_, v)) => AppCredentialRef::Name {
                user: r.user()?.ok_or_else(|| {
                    r.err(
                        "username",
                        "missing: an application credential named by name belongs to a user: set \
                     user_id, or username with user_domain_name",
                    )
                })?,
                name: v.text,
            },
            None => {
                return Err(r.err(
                    "application_credential_id",
                    "missing: set application_credential_id (or application_credential_name with \
                 the user)",
                ))
            }
        };
    let secret = r.secret(
        env,
        "application_credential_secret",
        raw.application_credential_secret.clone(),
        raw.application_credential_secret_file.clone(),
    )?;
    Ok(Credentials::ApplicationCredential { credential, secret })
}

fn v2_credentials(
    r: &Resolver<'_>,
    env: &dyn Env,
    raw: &raw::RawOpenStack,
    auth_url: &Url,
) -> Result<Credentials, ConfigError> {
    let why = format!(
        "is a Keystone v3 key; auth_type \"v2password\"{} speaks Keystone v2.0",
        if IdentityVersion::of_url(auth_url) == Some(IdentityVersion::V2) {
            format!(" with {auth_url}")
        } else {
            String::new()
        }
    );
    r.refuse(
        &[
            "user_id",
            "user_domain_name",
            "user_domain_id",
            "project_name",
            "project_id",
            "project_domain_name",
            "project_domain_id",
            "application_credential_id",
            "application_credential_name",
            "application_credential_secret",
            "application_credential_secret_file",
        ],
        &why,
    )?;
    let username = r
        .single("username")?
        .ok_or_else(|| {
            r.err(
                "username",
                "missing: set username (SkyAtlas: the account e-mail)",
            )
        })?
        .text;
    // openstacksdk reads a lower layer's project as the tenant for v2password.
    let tenant =
        match r.one_of(&["tenant_id", "tenant_name", "project_id", "project_name"])? {
            Some(("tenant_id" | "project_id", v)) => TenantRef::Id(v.text),
            Some((_, v)) => TenantRef::Name(v.text),
            None => return Err(r.err(
                "tenant_id",
                "missing: a v2.0 token is scoped to a tenant, which brings the service catalog: \
                 set tenant_id or tenant_name",
            )),
        };
    let password = r.password(env, raw)?;
    Ok(Credentials::V2Password {
        username,
        password,
        tenant,
    })
}

#[cfg(test)]
mod tests;
