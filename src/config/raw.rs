//! The configuration file as written: serde types that mirror the TOML one to one.
//!
//! Every table denies unknown keys so a typo is an error, not a silently ignored setting, and must
//! be written as a table (serde would otherwise take `resolver = [2, "1s"]` as its fields in
//! order). Values are only parsed here (durations, ids); cross-field rules live in
//! [`super::Config::from_raw`].

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The longest duration any key takes: a year. Longer values are typos (or attempts to overflow
/// the timers) and are refused while loading, naming the key.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default, deserialize_with = "table")]
    pub daemon: RawDaemon,
    #[serde(default, deserialize_with = "optional_table")]
    pub resolver: Option<RawResolver>,
    /// Absent from a config that names OpenStack clouds only; otherwise read even when absent,
    /// as it always was (the credentials may come from the environment).
    #[serde(default, deserialize_with = "optional_table")]
    pub indigo: Option<RawIndigo>,
    /// `[openstack.NAME]` tables, by name.
    #[serde(default, deserialize_with = "named_tables")]
    pub openstack: BTreeMap<String, RawOpenStack>,
    #[serde(default, deserialize_with = "tables")]
    pub firewall: Vec<RawFirewall>,
    #[serde(default, deserialize_with = "tables")]
    pub probe: Vec<RawProbe>,
    /// `[metrics]`: absent means no metrics endpoint.
    #[serde(default, deserialize_with = "optional_table")]
    pub metrics: Option<RawMetrics>,
    /// `[[notify]]` tables.
    #[serde(default, deserialize_with = "tables")]
    pub notify: Vec<RawNotify>,
    /// `[salt]`: the Salt API server of the probes' soft step; absent means none.
    #[serde(default, deserialize_with = "optional_table")]
    pub salt: Option<RawSalt>,
}

/// Deserializes `T` from a table only, never from an array of its fields in order.
struct Table<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(PhantomData)).map(Table)
    }
}

pub(crate) fn table<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Table::deserialize(d).map(|t| t.0)
}

pub(crate) fn optional_table<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    table(d).map(Some)
}

pub(crate) fn tables<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Vec::<Table<T>>::deserialize(d).map(|v| v.into_iter().map(|t| t.0).collect())
}

pub(crate) fn named_tables<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<BTreeMap<String, T>, D::Error> {
    BTreeMap::<String, Table<T>>::deserialize(d)
        .map(|m| m.into_iter().map(|(k, t)| (k, t.0)).collect())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub interval: Option<Dur>,
    pub reconcile: Option<Dur>,
    pub state_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResolver {
    pub quorum: Option<u32>,
    pub timeout: Option<Dur>,
    #[serde(default, deserialize_with = "tables")]
    pub source: Vec<RawSource>,
}

/// One `[[resolver.source]]` table. Which keys a kind takes is checked in
/// [`super::Config::from_raw`], so that a key of another kind is named in the error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub kind: String,
    /// `"ipv4"` or `"ipv6"`: the family asked for, and the only one accepted.
    pub family: Option<String>,
    /// `http`, `http-json`: the echo URL; `upnp`: the router's device description.
    pub url: Option<String>,
    /// `http-json`: top-level key or JSON pointer.
    pub field: Option<String>,
    /// `dns`: `ip[:port]`; `stun`: `host:port`.
    pub server: Option<String>,
    /// `dns`: the name asked for; `interface`: the interface name.
    pub name: Option<String>,
    /// `dns`: `"A"`, `"AAAA"` or `"TXT"`.
    pub record: Option<String>,
    /// `dns`: `"IN"` or `"CH"`.
    pub class: Option<String>,
    /// `upnp`: where to send the SSDP search.
    pub ssdp: Option<String>,
    /// `command`: the program and its arguments (no shell).
    pub command: Option<Vec<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIndigo {
    pub endpoint: Option<String>,
    pub api_key: Option<String>,
    pub api_key_file: Option<String>,
    pub api_secret: Option<String>,
    pub api_secret_file: Option<String>,
    pub timeout: Option<Dur>,
}

impl fmt::Debug for RawIndigo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mask = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("RawIndigo")
            .field("endpoint", &self.endpoint)
            .field("api_key", &mask(&self.api_key))
            .field("api_key_file", &self.api_key_file)
            .field("api_secret", &mask(&self.api_secret))
            .field("api_secret_file", &self.api_secret_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One `[openstack.NAME]` table. Every key is optional here: which are needed depends on the
/// authentication method and on what a clouds.yaml entry or the `OS_*` variables supply, which
/// [`super::openstack`] settles.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenStack {
    /// Start from this entry of a `clouds.yaml` on openstacksdk's search path
    /// (`$OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`, `~/.config/openstack/clouds.yaml`,
    /// `/etc/openstack/clouds.yaml`), with the same entry of `secure.yaml` merged over it; the
    /// keys below override it.
    pub cloud: Option<String>,
    /// Keystone's URL: `https://keystone.example:5000/v3`, `…/v2.0`, or unversioned (`/v3` is
    /// added, `/v2.0` for `v2password`). Plain `http://` to a non-loopback host needs
    /// `allow_insecure_http = true`.
    pub auth_url: Option<String>,
    /// `password` (Keystone v3), `v3applicationcredential` or `v2password` (Keystone v2.0,
    /// SkyAtlas). Default: `v3applicationcredential` when an application credential is named,
    /// `v2password` when a tenant is or `auth_url` ends in `/v2.0`, else `password`.
    pub auth_type: Option<String>,
    /// The user's name (SkyAtlas: the account e-mail); v3 needs its domain too.
    pub username: Option<String>,
    /// The user's id, instead of `username` and its domain (v3 only).
    pub user_id: Option<String>,
    /// The domain of `username` (often `Default`), or `user_domain_id`.
    pub user_domain_name: Option<String>,
    pub user_domain_id: Option<String>,
    /// The password, inline; or `password_file`, or the systemd credential
    /// `openstack_<NAME>_password`.
    pub password: Option<String>,
    /// A file holding the password (surrounding whitespace trimmed), relative to the config's
    /// directory.
    pub password_file: Option<String>,
    /// The project a password token is scoped to (its scope brings the service catalog), with
    /// `project_domain_name` or `project_domain_id`; or `project_id`.
    pub project_name: Option<String>,
    pub project_id: Option<String>,
    pub project_domain_name: Option<String>,
    pub project_domain_id: Option<String>,
    /// An application credential (recommended: revocable, limited to one project and role), by
    /// id; or by `application_credential_name` with its user (`user_id`, or `username` and its
    /// domain). No scope is sent: the credential carries its own.
    pub application_credential_id: Option<String>,
    pub application_credential_name: Option<String>,
    /// Its secret, inline; or `application_credential_secret_file`, or the systemd credential
    /// `openstack_<NAME>_application_credential_secret`.
    pub application_credential_secret: Option<String>,
    pub application_credential_secret_file: Option<String>,
    /// `v2password`: the tenant, by id (the SkyAtlas form) or by `tenant_name`.
    pub tenant_id: Option<String>,
    pub tenant_name: Option<String>,
    /// The catalog region; required when the catalog offers a service in several regions.
    pub region_name: Option<String>,
    /// The catalog interface: `public` (default) or `internal` (from inside the cloud).
    pub interface: Option<String>,
    /// Let the password, secret and token travel over plain http to a non-loopback host (SkyAtlas
    /// documents `http://…:5000/v2.0`); every authentication then logs a warning. Default false.
    pub allow_insecure_http: Option<bool>,
    /// Per-request timeout (default 30 s).
    pub timeout: Option<Dur>,
}

impl fmt::Debug for RawOpenStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mask = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("RawOpenStack")
            .field("cloud", &self.cloud)
            .field("auth_url", &self.auth_url)
            .field("auth_type", &self.auth_type)
            .field("username", &self.username)
            .field("user_id", &self.user_id)
            .field("user_domain_name", &self.user_domain_name)
            .field("user_domain_id", &self.user_domain_id)
            .field("password", &mask(&self.password))
            .field("password_file", &self.password_file)
            .field("project_name", &self.project_name)
            .field("project_id", &self.project_id)
            .field("project_domain_name", &self.project_domain_name)
            .field("project_domain_id", &self.project_domain_id)
            .field("application_credential_id", &self.application_credential_id)
            .field(
                "application_credential_name",
                &self.application_credential_name,
            )
            .field(
                "application_credential_secret",
                &mask(&self.application_credential_secret),
            )
            .field(
                "application_credential_secret_file",
                &self.application_credential_secret_file,
            )
            .field("tenant_id", &self.tenant_id)
            .field("tenant_name", &self.tenant_name)
            .field("region_name", &self.region_name)
            .field("interface", &self.interface)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirewall {
    /// The cloud the firewall belongs to (optional with exactly one cloud).
    pub cloud: Option<String>,
    /// OpenStack: the security group, by name (unique in the project) or id.
    pub security_group: Option<String>,
    pub template: Option<Id>,
    pub instances: Option<Vec<Id>>,
    pub protocol: Option<String>,
    pub port: Option<PortValue>,
    #[serde(default)]
    pub keep: Vec<String>,
    pub family: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// The cloud the instance belongs to (optional with exactly one cloud).
    pub cloud: Option<String>,
    /// `stop-start` (default) or, on OpenStack, `hard-reboot`.
    pub remediation: Option<String>,
    pub instance: Option<Id>,
    pub address: Option<String>,
    pub check: Option<String>,
    pub url: Option<String>,
    pub expect_status: Option<u16>,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub failures: Option<u32>,
    pub stop_timeout: Option<Dur>,
    pub start_timeout: Option<Dur>,
    pub grace: Option<Dur>,
    pub max_actions: Option<u32>,
    pub window: Option<Dur>,
    pub enabled: Option<bool>,
    /// The soft step: a saved Salt job (uuid) run on a target group (uuid) before any power
    /// action, waited for at most `salt_timeout`.
    pub salt_job: Option<String>,
    pub salt_target: Option<String>,
    pub salt_timeout: Option<Dur>,
}

/// The `[salt]` table: the cloud API (`csp_url` and the API token) or an on-premises server
/// (`username`, the password and `config_name`).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSalt {
    pub server: Option<String>,
    pub csp_url: Option<String>,
    pub api_token: Option<String>,
    pub api_token_file: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub config_name: Option<String>,
    pub timeout: Option<Dur>,
}

impl fmt::Debug for RawSalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mask = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("RawSalt")
            .field("server", &self.server)
            .field("csp_url", &self.csp_url)
            .field("api_token", &mask(&self.api_token))
            .field("api_token_file", &self.api_token_file)
            .field("username", &self.username)
            .field("password", &mask(&self.password))
            .field("password_file", &self.password_file)
            .field("config_name", &self.config_name)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `ip:port` to serve `/metrics` and `/healthz` on.
    pub listen: Option<String>,
}

/// One `[[notify]]` table. Which keys a kind takes is checked in `config::notify`, so that a
/// key of another kind is named in the error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// `webhook`, `ntfy` or `healthchecks`.
    pub kind: String,
    /// Where to send (a ntfy topic URL, a healthchecks ping URL, a webhook); may hold a secret.
    pub url: Option<String>,
    /// A file holding the URL (surrounding whitespace trimmed), relative to the config's directory.
    pub url_file: Option<String>,
    /// `webhook`, `ntfy`: the events to send (default: all).
    pub events: Option<Vec<String>>,
    /// Per-request timeout.
    pub timeout: Option<Dur>,
    /// `webhook`, `ntfy`: a bearer token, inline or from a file.
    pub token: Option<String>,
    pub token_file: Option<String>,
    /// `ntfy`: 1 to 5 or a name (`"high"`).
    pub priority: Option<Scalar>,
    /// `ntfy`: tags added to every message.
    pub tags: Option<Vec<String>>,
    /// `healthchecks`: the longest pause between pings while nothing changes.
    pub period: Option<Dur>,
}

impl fmt::Debug for RawNotify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mask = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("RawNotify")
            .field("kind", &self.kind)
            .field("url", &mask(&self.url))
            .field("url_file", &self.url_file)
            .field("events", &self.events)
            .field("timeout", &self.timeout)
            .field("token", &mask(&self.token))
            .field("token_file", &self.token_file)
            .field("priority", &self.priority)
            .field("tags", &self.tags)
            .field("period", &self.period)
            .finish()
    }
}

/// A value written as a number (`4`) or a string (`"high"`), kept as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A positive duration written as a string ("250ms", "30s", "5m", "1h").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"30s\", \"5m\" or \"250ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                let d = humantime::parse_duration(v.trim())
                    .map_err(|e| E::custom(format!("invalid duration {:?}: {e}", excerpt(v))))?;
                if d.is_zero() {
                    return Err(E::custom(format!(
                        "invalid duration {:?}: must be greater than zero",
                        excerpt(v)
                    )));
                }
                if d > MAX_DURATION {
                    return Err(E::custom(format!(
                        "invalid duration {:?}: at most {} days",
                        excerpt(v),
                        MAX_DURATION.as_secs() / 86_400
                    )));
                }
                Ok(Dur(d))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: write it with a unit, e.g. \"{v}s\""
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// An id written as a number (`12836`) or a string (`"12836"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id, as a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                if v <= 0 {
                    return Err(E::custom(format!("invalid id {v}: must be positive")));
                }
                Ok(Id(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                let t = v.trim();
                if t.is_empty() || t.chars().any(char::is_whitespace) {
                    return Err(E::custom(format!("invalid id {v:?}")));
                }
                Ok(Id(t.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A port written as a string (`"22"`, `"1-65535"`) or a number (`22`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortValue(pub String);

impl<'de> Deserialize<'de> for PortValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port such as \"22\" or a range such as \"8000-8100\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortValue, E> {
                Ok(PortValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortValue, E> {
                Ok(PortValue(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortValue, E> {
                Ok(PortValue(v.trim().to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The start of a value for an error message (a 64 KiB value is not echoed whole).
fn excerpt(v: &str) -> String {
    let mut out: String = v.chars().take(40).collect();
    if out.len() < v.len() {
        out.push('…');
    }
    out
}
