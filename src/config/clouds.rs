//! Where OpenStack users already keep their connection: a `clouds.yaml` entry (with `secure.yaml`
//! merged into it) or the `OS_*` variables of an openrc file.
//!
//! Both become a [`Layer`]: flat settings in openstacksdk's vocabulary (`auth_url`, `username`,
//! `project_name`, `region_name`, …) that an `[openstack.NAME]` table's own keys override. The
//! search follows openstacksdk's: `$OS_CLIENT_CONFIG_FILE` first, then `clouds.yaml`,
//! `clouds.yml` and `clouds.json` in the current directory, the user's config directory
//! (`$XDG_CONFIG_HOME/openstack`, `~/.config/openstack`), the system's (`$XDG_CONFIG_DIRS`, by
//! default `/etc/xdg`, then `/etc/openstack`); the first file that exists wins, and the first
//! `secure.*` found the same way (`$OS_CLIENT_SECURE_FILE` first) is merged over it key by key.
//! Unlike openstacksdk, a file that exists but does not parse is an error, not silently skipped:
//! a daemon must not fall through to another file without saying so. An unreadable one (permission
//! denied) is skipped, as openstacksdk does, and named if nothing is found.

mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use yaml::Node;

use super::Env;

/// A clouds.yaml larger than this is not a clouds.yaml.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The settings dynwall reads from a lower layer; everything else in a clouds.yaml (volume API
/// versions, networks, caches, …) is about other tools and ignored.
const KEYS: &[&str] = &[
    "auth_url",
    "auth_type",
    "username",
    "user_id",
    "user_domain_name",
    "user_domain_id",
    "password",
    "project_name",
    "project_id",
    "project_domain_name",
    "project_domain_id",
    "domain_name",
    "domain_id",
    "application_credential_id",
    "application_credential_name",
    "application_credential_secret",
    "tenant_id",
    "tenant_name",
    "interface",
    "identity_api_version",
];

/// Keys whose value outside the `auth:` section wins over the one inside it (openstacksdk lets
/// command-line and environment overrides of the project and domains land there).
const TOP_LEVEL_WINS: &[&str] = &[
    "project_name",
    "project_id",
    "tenant_name",
    "tenant_id",
    "project_domain_name",
    "project_domain_id",
    "user_domain_name",
    "user_domain_id",
    "domain_name",
    "domain_id",
];

/// Values never shown by `Debug`.
const SECRET_KEYS: &[&str] = &["password", "application_credential_secret"];

/// Where an OpenStack cloud's connection settings came from, besides its `[openstack.NAME]`
/// table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionSource {
    /// The table alone.
    Table,
    /// A clouds.yaml entry, with the secure.yaml entry of the same name merged over it.
    CloudsYaml {
        cloud: String,
        file: PathBuf,
        secure: Option<PathBuf>,
    },
    /// The `OS_*` variables of an openrc file.
    Environment,
}

impl fmt::Display for ConnectionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionSource::Table => f.write_str("the config file"),
            ConnectionSource::CloudsYaml {
                cloud,
                file,
                secure,
            } => {
                write!(f, "clouds.yaml entry {cloud:?} ({}", file.display())?;
                if let Some(s) = secure {
                    write!(f, ", with {}", s.display())?;
                }
                f.write_str(")")
            }
            ConnectionSource::Environment => f.write_str("the OS_* environment variables"),
        }
    }
}

/// Connection settings from below the table, in openstacksdk's vocabulary.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Layer {
    pub source: ConnectionSource,
    values: BTreeMap<&'static str, String>,
    /// Region names, the default first (`regions:` or a `region_name` list).
    pub regions: Vec<String>,
    /// A vendor profile the entry names (`profile:`, once `cloud:`); its defaults are not read.
    pub profile: Option<String>,
}

impl fmt::Debug for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .values
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    if SECRET_KEYS.contains(k) {
                        "***"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("Layer")
            .field("source", &self.source)
            .field("values", &shown)
            .field("regions", &self.regions)
            .field("profile", &self.profile)
            .finish()
    }
}

impl Layer {
    fn new(source: ConnectionSource) -> Layer {
        Layer {
            source,
            values: BTreeMap::new(),
            regions: Vec::new(),
            profile: None,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    fn set(&mut self, key: &str, value: &str) {
        let value = value.trim();
        if let Some(k) = KEYS.iter().find(|k| **k == key) {
            if !value.is_empty() {
                self.values.insert(k, value.to_string());
            }
        }
    }

    /// openstacksdk's aliases: `endpoint_type` is `interface`; `domain_*` stands for both the
    /// user's and the project's domain when those are not given.
    fn settle(&mut self, endpoint_type: Option<String>) {
        if let Some(e) = endpoint_type {
            if self.get("interface").is_none() {
                self.set("interface", &e);
            }
        }
        for (shared, pairs) in [
            (
                "domain_id",
                [
                    ("user_domain_id", "user_domain_name"),
                    ("project_domain_id", "project_domain_name"),
                ],
            ),
            (
                "domain_name",
                [
                    ("user_domain_name", "user_domain_id"),
                    ("project_domain_name", "project_domain_id"),
                ],
            ),
        ] {
            let Some(value) = self.values.remove(shared) else {
                continue;
            };
            for (own, other) in pairs {
                if self.get(own).is_none() && self.get(other).is_none() {
                    self.set(own, &value);
                }
            }
        }
    }
}

/// The files searched for `clouds.*` and `secure.*`, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SearchPath {
    pub clouds: Vec<PathBuf>,
    pub secure: Vec<PathBuf>,
}

impl SearchPath {
    /// openstacksdk's search path on Linux, from the environment and the current directory.
    pub(crate) fn standard(env: &dyn Env, cwd: Option<&Path>) -> SearchPath {
        let home = env.var("HOME").map(PathBuf::from);
        let real_home = env
            .var("SNAP_REAL_HOME")
            .map(PathBuf::from)
            .or(home.clone());
        let mut dirs: Vec<PathBuf> = Vec::new();
        dirs.extend(cwd.map(Path::to_path_buf));
        match env.var("XDG_CONFIG_HOME").filter(|v| !v.trim().is_empty()) {
            Some(x) => dirs.push(Path::new(&x).join("openstack")),
            None => dirs.extend(home.map(|h| h.join(".config/openstack"))),
        }
        dirs.extend(real_home.map(|h| h.join(".config/openstack")));
        let system = env
            .var("XDG_CONFIG_DIRS")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "/etc/xdg".to_string());
        dirs.extend(
            system
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| Path::new(d).join("openstack")),
        );
        dirs.push(PathBuf::from("/etc/openstack"));
        let mut unique: Vec<PathBuf> = Vec::with_capacity(dirs.len());
        for d in dirs {
            if !unique.contains(&d) {
                unique.push(d);
            }
        }
        SearchPath::in_dirs(
            &unique,
            env.var("OS_CLIENT_CONFIG_FILE").map(PathBuf::from),
            env.var("OS_CLIENT_SECURE_FILE").map(PathBuf::from),
        )
    }

    /// `clouds.yaml`, `clouds.yml`, `clouds.json` (and the same for `secure`) in each of `dirs`,
    /// after the overrides.
    pub(crate) fn in_dirs(
        dirs: &[PathBuf],
        clouds_override: Option<PathBuf>,
        secure_override: Option<PathBuf>,
    ) -> SearchPath {
        let files = |stem: &str, first: Option<PathBuf>| -> Vec<PathBuf> {
            first
                .into_iter()
                .chain(dirs.iter().flat_map(|d| {
                    ["yaml", "yml", "json"].map(|ext| d.join(format!("{stem}.{ext}")))
                }))
                .collect()
        };
        SearchPath {
            clouds: files("clouds", clouds_override),
            secure: files("secure", secure_override),
        }
    }
}

/// The first of `files` that exists, parsed; the unreadable ones skipped on the way.
fn first_file(
    files: &[PathBuf],
    skipped: &mut Vec<String>,
) -> Result<Option<(PathBuf, Node)>, String> {
    for path in files {
        let meta = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => m,
            _ => continue,
        };
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!("{}: larger than 1 MiB", path.display()));
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                skipped.push(format!("{} (permission denied)", path.display()));
                continue;
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let node = yaml::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(Some((path.clone(), node)));
    }
    Ok(None)
}

/// The `clouds:` mapping of a file, keys normalised (`-` → `_`), as openstacksdk does.
fn clouds_of(path: &Path, root: Node) -> Result<Vec<(String, Node)>, String> {
    match root {
        Node::Null => Ok(Vec::new()),
        Node::Map(entries) => match entries.into_iter().find(|(k, _)| k == "clouds") {
            None | Some((_, Node::Null)) => Ok(Vec::new()),
            Some((_, Node::Map(clouds))) => Ok(clouds),
            Some(_) => Err(format!("{}: `clouds` is not a mapping", path.display())),
        },
        _ => Err(format!("{}: not a mapping", path.display())),
    }
}

/// Deep merge: values of `over` replace those of `base`, mappings merge key by key.
fn merge(base: Node, over: Node) -> Node {
    match (base, over) {
        (Node::Map(mut b), Node::Map(o)) => {
            for (k, v) in o {
                match b.iter_mut().find(|(bk, _)| *bk == k) {
                    Some(slot) => {
                        let old = std::mem::replace(&mut slot.1, Node::Null);
                        slot.1 = merge(old, v);
                    }
                    None => b.push((k, v)),
                }
            }
            Node::Map(b)
        }
        (_, over) => over,
    }
}

/// The entry `cloud` of the first clouds file on `search`, with secure.yaml merged over it.
pub(crate) fn from_clouds_yaml(cloud: &str, search: &SearchPath) -> Result<Layer, String> {
    let mut skipped = Vec::new();
    let Some((file, root)) = first_file(&search.clouds, &mut skipped)? else {
        let mut msg = format!(
            "no clouds.yaml found; looked for {}",
            search
                .clouds
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !skipped.is_empty() {
            msg.push_str(&format!("; could not read {}", skipped.join(", ")));
        }
        return Err(msg);
    };
    let clouds = clouds_of(&file, root)?;
    let secure = first_file(&search.secure, &mut skipped)?;
    let (secure_path, secure_clouds) = match secure {
        Some((p, root)) => {
            let c = clouds_of(&p, root)?;
            (Some(p), c)
        }
        None => (None, Vec::new()),
    };
    let mut names: Vec<&str> = clouds.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    let base = clouds
        .iter()
        .find(|(k, _)| k == cloud)
        .map(|(_, v)| v.clone());
    let over = secure_clouds
        .into_iter()
        .find(|(k, _)| k == cloud)
        .map(|(_, v)| v);
    let entry = match (base, over) {
        (Some(b), Some(o)) => merge(b, o),
        (Some(b), None) => b,
        (None, Some(o)) => o,
        (None, None) => {
            return Err(format!(
                "{} has no cloud {cloud:?} (it has: {})",
                file.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        }
    };
    let source = ConnectionSource::CloudsYaml {
        cloud: cloud.to_string(),
        file: file.clone(),
        secure: secure_path,
    };
    flatten(source, &entry).map_err(|e| format!("{}: cloud {cloud:?}: {e}", file.display()))
}

fn normal(key: &str) -> String {
    key.replace('-', "_")
}

fn scalar(node: &Node) -> Option<&str> {
    match node {
        Node::Scalar(s) => Some(s),
        _ => None,
    }
}

/// One clouds.yaml entry as flat settings.
fn flatten(source: ConnectionSource, entry: &Node) -> Result<Layer, String> {
    let Node::Map(top) = entry else {
        return Err("not a mapping".to_string());
    };
    let mut layer = Layer::new(source);
    let auth: Vec<(String, &Node)> = match entry.get("auth") {
        Some(Node::Map(a)) => a.iter().map(|(k, v)| (normal(k), v)).collect(),
        None | Some(Node::Null) => Vec::new(),
        Some(_) => return Err("`auth` is not a mapping".to_string()),
    };
    let top: Vec<(String, &Node)> = top.iter().map(|(k, v)| (normal(k), v)).collect();
    let find = |list: &[(String, &Node)], key: &str| -> Option<String> {
        list.iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| scalar(v))
            .map(str::to_string)
    };
    for key in KEYS {
        let (first, second) = if TOP_LEVEL_WINS.contains(key) {
            (&top, &auth)
        } else {
            (&auth, &top)
        };
        if let Some(v) = find(first, key).or_else(|| find(second, key)) {
            layer.set(key, &v);
        }
    }
    if layer.get("auth_type").is_none() {
        if let Some(plugin) = find(&top, "auth_plugin") {
            layer.set("auth_type", &plugin);
        }
    }
    layer.profile = find(&top, "profile").or_else(|| find(&top, "cloud"));
    layer.regions = match top.iter().find(|(k, _)| k == "regions").map(|(_, v)| *v) {
        Some(Node::List(items)) => items
            .iter()
            .filter_map(|r| match r {
                Node::Scalar(name) => Some(name.clone()),
                Node::Map(_) => r.get("name").and_then(scalar).map(str::to_string),
                _ => None,
            })
            .collect(),
        Some(Node::Scalar(s)) => split_regions(s),
        _ => match top
            .iter()
            .find(|(k, _)| k == "region_name")
            .map(|(_, v)| *v)
        {
            Some(Node::Scalar(s)) => split_regions(s),
            Some(Node::List(items)) => items
                .iter()
                .filter_map(scalar)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        },
    };
    let endpoint_type = find(&top, "endpoint_type");
    layer.settle(endpoint_type);
    Ok(layer)
}

fn split_regions(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

/// The `OS_*` variables an openrc file exports, when it exported any connection setting
/// (`OS_CLOUD`, `OS_REGION_NAME` and the file overrides alone select, they do not connect).
pub(crate) fn from_environment(env: &dyn Env) -> Option<Layer> {
    let mut layer = Layer::new(ConnectionSource::Environment);
    for key in KEYS {
        if let Some(v) = env.var(&format!("OS_{}", key.to_ascii_uppercase())) {
            layer.set(key, &v);
        }
    }
    if layer.values.is_empty() {
        return None;
    }
    layer.regions = env
        .var("OS_REGION_NAME")
        .map(|r| split_regions(&r))
        .unwrap_or_default();
    layer.settle(env.var("OS_ENDPOINT_TYPE"));
    Some(layer)
}

#[cfg(test)]
mod tests;
