//! Configuration: read the TOML file, then validate it into types that cannot hold nonsense.
//!
//! Loading is the only place that reads the environment (secrets, `$STATE_DIRECTORY`,
//! `$CREDENTIALS_DIRECTORY`); it does so through an [`Env`] so tests never mutate the process
//! environment. Every error names the file, the dotted key and the reason.

mod clouds;
mod firewall;
mod indigo;
mod metrics;
mod notify;
mod openstack;
mod probe;
pub mod raw;
mod resolver;
mod salt;
mod secrets;

pub use crate::secret::Secret;
pub use clouds::ConnectionSource;
pub use firewall::*;
pub use indigo::*;
pub use metrics::*;
pub use notify::*;
pub use openstack::*;
pub use probe::*;
pub use resolver::*;
pub use salt::*;
pub(crate) use secrets::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ids::{CloudName, InstanceId};
use crate::net::Family;
use raw::RawConfig;

/// Where the config lives when neither `-c` nor `$DYNWALL_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/dynwall/dynwall.toml";
/// The Indigo API base URL.
pub const DEFAULT_INDIGO_ENDPOINT: &str = "https://api.customer.jp";
/// State directory when neither the config nor systemd's `$STATE_DIRECTORY` names one.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/dynwall";
/// IP check period: once a minute notices a change quickly and costs nothing at the cloud API.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Template re-read period when the IP is unchanged: 4 reads an hour repair hand edits in time
/// while staying far below the API quota.
pub const DEFAULT_RECONCILE: Duration = Duration::from_secs(15 * 60);
/// Per-source lookup timeout.
pub const DEFAULT_RESOLVER_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-request timeout for the cloud API.
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment as seen while loading the config.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;

    /// Whether loading reads the secrets the config names (see [`Secrets`]).
    fn secrets(&self) -> Secrets {
        Secrets::Read
    }
}

/// Whether loading a config reads its secrets (API keys, passwords).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrets {
    /// Read every secret: a missing, unreadable or empty one is an error. For the commands that
    /// call a cloud API (`run`, `--once`, `check`), which must fail early and clearly.
    Read,
    /// Check how each secret is given (not inline and from a file at once) but read none; each
    /// is [`Secret::unread`]. For the commands that never call an API (`ip`, `status`,
    /// `healthcheck`, `reset`), which must work for a user who cannot read the key files, and
    /// before they exist.
    Skip,
}

/// An [`Env`] that loads a config without reading its secrets ([`Secrets::Skip`]).
struct WithoutSecrets<'a>(&'a dyn Env);

impl Env for WithoutSecrets<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.0.var(name)
    }

    fn secrets(&self) -> Secrets {
        Secrets::Skip
    }
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A configuration error: the file, the dotted key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {key}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("{}: {reason}", path.display())]
    Syntax { path: PathBuf, reason: String },
}

impl ConfigError {
    fn invalid(path: &Path, key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (named in later errors).
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub resolver: ResolverConfig,
    /// The cloud named `indigo`: the `[indigo]` table, required (as it always was) unless the
    /// config names OpenStack clouds and has no `[indigo]` table.
    pub indigo: Option<IndigoConfig>,
    /// The `[openstack.NAME]` clouds.
    pub openstack: BTreeMap<CloudName, OpenStackConfig>,
    pub firewalls: Vec<FirewallConfig>,
    pub probes: Vec<ProbeConfig>,
    /// `[metrics]`: the Prometheus endpoint, off when `None`.
    pub metrics: Option<MetricsConfig>,
    /// `[[notify]]`: webhooks, ntfy topics and healthchecks.io checks.
    pub notify: Vec<NotifyConfig>,
    /// `[salt]`: the Salt API server of the probes' soft step.
    pub salt: Option<SaltConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    pub interval: Duration,
    pub reconcile: Duration,
    pub state_dir: PathBuf,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path, env)
    }

    /// Like [`load`](Self::load), validating everything but reading no secret
    /// ([`Secrets::Skip`]): for commands that never call a cloud API.
    pub fn load_without_secrets(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        Config::load(path, &WithoutSecrets(env))
    }

    /// Parses and validates `text`, naming `path` in errors and resolving relative secret files
    /// against the file's directory.
    pub fn parse(text: &str, path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let raw = parse_raw(text, path)?;
        Config::from_raw(raw, path, env)
    }

    fn from_raw(raw: RawConfig, path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let daemon = DaemonConfig {
            interval: raw.daemon.interval.map_or(DEFAULT_INTERVAL, |d| d.0),
            reconcile: raw.daemon.reconcile.map_or(DEFAULT_RECONCILE, |d| d.0),
            state_dir: match raw.daemon.state_dir {
                Some(s) if s.trim().is_empty() => {
                    return Err(ConfigError::invalid(
                        path,
                        "daemon.state_dir",
                        "must not be empty",
                    ))
                }
                Some(s) => PathBuf::from(s),
                None => env
                    .var("STATE_DIRECTORY")
                    .and_then(|v| v.split(':').next().map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            },
        };
        let resolver = resolver_from_raw(raw.resolver, path)?;
        let indigo = match raw.indigo {
            Some(table) => Some(indigo_from_raw(table, path, env)?),
            None if raw.openstack.is_empty() => {
                Some(indigo_from_raw(raw::RawIndigo::default(), path, env)?)
            }
            None => None,
        };
        let mut openstack = BTreeMap::new();
        let mut openstack_names = Vec::new();
        if !raw.openstack.is_empty() {
            let cwd = std::env::current_dir().ok();
            let search = clouds::SearchPath::standard(env, cwd.as_deref());
            for (name, table) in raw.openstack {
                openstack_names.push(CloudName(name.clone()));
                if let Some(cloud) = openstack_or_unread(&name, table, path, env, &search)? {
                    openstack.insert(cloud.name.clone(), cloud);
                }
            }
        }

        let clouds = CloudSet::new(indigo.is_some(), openstack_names.iter());
        let mut firewalls = Vec::with_capacity(raw.firewall.len());
        let mut seen = BTreeSet::new();
        for (i, fw) in raw.firewall.into_iter().enumerate() {
            let fw = firewall_from_raw(fw, i, path, &clouds)?;
            if !seen.insert((fw.cloud.clone(), fw.id.clone())) {
                let (key, what) = match clouds.kind(&fw.cloud) {
                    Some(CloudKind::OpenStack) => ("security_group", "security group"),
                    _ => ("template", "template"),
                };
                return Err(ConfigError::invalid(
                    path,
                    format!("firewall[{i}].{key}"),
                    format!("{what} {} is listed twice", fw.id),
                ));
            }
            firewalls.push(fw);
        }
        let mut probes = Vec::with_capacity(raw.probe.len());
        let mut seen = BTreeSet::new();
        for (i, p) in raw.probe.into_iter().enumerate() {
            let p = probe_from_raw(p, i, path, &clouds)?;
            if !seen.insert((p.cloud.clone(), p.instance.clone())) {
                return Err(ConfigError::invalid(
                    path,
                    format!("probe[{i}].instance"),
                    format!("instance {} is probed twice", p.instance),
                ));
            }
            probes.push(p);
        }
        if firewalls.is_empty() && probes.is_empty() {
            return Err(ConfigError::invalid(
                path,
                "firewall",
                "nothing to do: add at least one [[firewall]] or [[probe]] table",
            ));
        }
        check_tracked_sources(&resolver, &firewalls, &tracked_families(&firewalls), path)?;
        let metrics = metrics_from_raw(raw.metrics, path)?;
        let notify = raw
            .notify
            .into_iter()
            .enumerate()
            .map(|(i, n)| notify_from_raw(n, i, path, env))
            .collect::<Result<Vec<_>, _>>()?;
        let salt = match raw.salt {
            Some(table) => Some(salt_from_raw(table, path, env)?),
            None => None,
        };
        if let (None, Some(i)) = (&salt, probes.iter().position(|p| p.salt.is_some())) {
            return Err(ConfigError::invalid(
                path,
                format!("probe[{i}].salt_job"),
                "needs a [salt] table (the Salt API server that runs the job)",
            ));
        }
        Ok(Config {
            path: path.to_path_buf(),
            daemon,
            resolver,
            indigo,
            openstack,
            firewalls,
            probes,
            metrics,
            notify,
            salt,
        })
    }

    /// The address families the firewalls track, IPv4 first (IPv4 alone when there is no
    /// firewall: the prober still needs to know our own connectivity).
    pub fn tracked_families(&self) -> Vec<Family> {
        tracked_families(&self.firewalls)
    }

    /// Every instance id the config refers to (firewall assignments and probes), deduplicated.
    pub fn referenced_instances(&self) -> BTreeSet<InstanceId> {
        self.firewalls
            .iter()
            .flat_map(|f| f.instances.iter().cloned())
            .chain(self.probes.iter().map(|p| p.instance.clone()))
            .collect()
    }
}

/// See [`Config::tracked_families`].
fn tracked_families(firewalls: &[FirewallConfig]) -> Vec<Family> {
    let mut out = Vec::new();
    for fw in firewalls {
        for f in fw.family.families() {
            if !out.contains(f) {
                out.push(*f);
            }
        }
    }
    if out.is_empty() {
        out.push(Family::Ipv4);
    }
    out.sort_by_key(|f| *f != Family::Ipv4);
    out
}

fn parse_raw(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        // One line: a multi-line parser message reads badly in a log line.
        let message = inner
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let location = inner
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        match unknown_field(&message) {
            Some(field) => {
                let key = if key == "." || key.is_empty() {
                    field.to_string()
                } else if key.ends_with(field) {
                    key
                } else {
                    format!("{key}.{field}")
                };
                ConfigError::invalid(path, key, format!("unknown key{location}"))
            }
            None if key == "." || key.is_empty() => ConfigError::Syntax {
                path: path.to_path_buf(),
                reason: format!("{message}{location}"),
            },
            None => ConfigError::invalid(path, key, format!("{message}{location}")),
        }
    })
}

/// The keys a table of kind `kind` takes, from `table` (kind → keys); `Err` says `kind` is not
/// a `noun` kind and lists those there are.
pub(crate) fn keys_of_kind<'t>(
    table: &'t [(&str, &'t [&'t str])],
    kind: &str,
    noun: &str,
) -> Result<&'t [&'t str], String> {
    match table.iter().find(|(k, _)| *k == kind) {
        Some((_, keys)) => Ok(keys),
        None => {
            let names: Vec<String> = table.iter().map(|(k, _)| format!("{k:?}")).collect();
            Err(format!(
                "unknown {noun} kind {kind:?} (expected one of {})",
                names.join(", ")
            ))
        }
    }
}

/// The first key set in `present` (key, is set) that `allowed` does not list.
pub(crate) fn stray_key<'k>(present: &[(&'k str, bool)], allowed: &[&str]) -> Option<&'k str> {
    present
        .iter()
        .find(|(k, set)| *set && !allowed.contains(k))
        .map(|(k, _)| *k)
}

/// Extracts the field name from serde's "unknown field `x`, expected …" message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests;
