//! Configuration: read the TOML file, then validate it into types that cannot hold nonsense.
//!
//! Loading is the only place that reads the environment (secrets, `$STATE_DIRECTORY`,
//! `$CREDENTIALS_DIRECTORY`); it does so through an [`Env`] so tests never mutate the process
//! environment. Every error names the file, the dotted key and the reason.

pub mod raw;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

use crate::net::{is_global, Family, IpNet};
use crate::provider::{FirewallId, InstanceId};
use raw::{Dur, RawConfig};

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

/// Public-IP sources used when the config lists none, written exactly as a user would write them
/// (and parsed by the same code).
///
/// IPv4: four operators (ipify, Amazon, OpenDNS, Cloudflare) over two protocols (HTTPS and DNS),
/// so that no single operator, protocol or interception of one of them decides on its own with
/// the default quorum of 2. IPv6: three operators over the same two protocols, asked only when an
/// IPv6 address is needed. icanhazip is not among them: Cloudflare has run it since 2021, and
/// Cloudflare is already asked directly.
pub const DEFAULT_SOURCES: &str = r#"
[[source]]
kind = "http"
url = "https://api.ipify.org"

[[source]]
kind = "http"
url = "https://checkip.amazonaws.com"

[[source]]
kind = "dns"
server = "208.67.222.222:53"
name = "myip.opendns.com"
record = "A"

[[source]]
kind = "dns"
server = "1.1.1.1:53"
name = "whoami.cloudflare"
record = "TXT"
class = "CH"

[[source]]
kind = "http"
family = "ipv6"
url = "https://api6.ipify.org"

[[source]]
kind = "dns"
server = "[2620:119:35::35]:53"
name = "myip.opendns.com"
record = "AAAA"

[[source]]
kind = "dns"
family = "ipv6"
server = "[2606:4700:4700::1111]:53"
name = "whoami.cloudflare"
record = "TXT"
class = "CH"
"#;

/// Default port of `dns` source servers.
pub const DNS_PORT: u16 = 53;
/// Where a `upnp` source sends its SSDP search when neither `url` nor `ssdp` is set.
pub const DEFAULT_SSDP: &str = "239.255.255.250:1900";

/// The environment as seen while loading the config.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
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

/// A secret value: never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (named in later errors).
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub resolver: ResolverConfig,
    pub indigo: IndigoConfig,
    pub firewalls: Vec<FirewallConfig>,
    pub probes: Vec<ProbeConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    pub interval: Duration,
    pub reconcile: Duration,
    pub state_dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Number of sources of one family that must return the same address, as configured. `None`
    /// means the default: per family, `min(2, number of sources of that family)`.
    pub quorum: Option<usize>,
    /// Per-source timeout.
    pub timeout: Duration,
    pub sources: Vec<SourceConfig>,
}

impl ResolverConfig {
    /// The sources of `family`, in configuration order.
    pub fn sources_of(&self, family: Family) -> impl Iterator<Item = &SourceConfig> {
        self.sources.iter().filter(move |s| s.family == family)
    }
}

/// One public-IP source: what to ask, and which address family it answers for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    /// The family the source is asked over and must answer with; an answer of the other family
    /// is rejected.
    pub family: Family,
    pub kind: SourceKind,
}

/// What a source asks, per `kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// `http`: the body is exactly one address.
    Http { url: Url },
    /// `http-json`: the body is JSON; the address is at `field`.
    HttpJson { url: Url, field: JsonField },
    /// `dns`: a "whoami" name asked directly of one DNS server.
    Dns(DnsSource),
    /// `stun`: a STUN Binding request; the server's view of our address.
    Stun(StunSource),
    /// `upnp`: the home router's WAN address (UPnP IGD `GetExternalIPAddress`).
    Upnp(UpnpSource),
    /// `interface`: the one global address of a local interface.
    Interface { name: String },
    /// `command`: a program whose output is exactly one address.
    Command { argv: Vec<String> },
}

/// The record type a `dns` source asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsRecord {
    A,
    Aaaa,
    /// One TXT string holding the address.
    Txt,
}

impl DnsRecord {
    /// The name as written in the config (`"A"`, `"AAAA"`, `"TXT"`).
    pub fn as_str(self) -> &'static str {
        match self {
            DnsRecord::A => "A",
            DnsRecord::Aaaa => "AAAA",
            DnsRecord::Txt => "TXT",
        }
    }
}

/// The DNS class a `dns` source asks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsClass {
    /// Internet, the usual class.
    In,
    /// Chaos, used by Cloudflare's `whoami.cloudflare`.
    Ch,
}

impl DnsClass {
    /// The name as written in the config (`"IN"`, `"CH"`).
    pub fn as_str(self) -> &'static str {
        match self {
            DnsClass::In => "IN",
            DnsClass::Ch => "CH",
        }
    }
}

/// A `dns` source: `name` of type `record` in `class`, asked of `server` over UDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSource {
    pub server: SocketAddr,
    /// A valid, absolute-or-relative DNS name (checked when the config is read).
    pub name: String,
    pub record: DnsRecord,
    pub class: DnsClass,
}

impl fmt::Display for DnsSource {
    /// `myip.opendns.com A @208.67.222.222:53`; the class is shown only when it is not IN.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.record.as_str())?;
        if self.class != DnsClass::In {
            write!(f, "/{}", self.class.as_str())?;
        }
        write!(f, " @{}", self.server)
    }
}

/// A `stun` source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StunSource {
    /// `host:port`; a host name is resolved with the system resolver at each lookup.
    pub server: String,
}

/// How a `upnp` source finds the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpnpSource {
    /// The device description URL (e.g. `http://192.168.1.1:5000/rootDesc.xml`).
    Description(Url),
    /// Discover it with an SSDP search sent to this address (multicast by default).
    Ssdp(SocketAddr),
}

impl SourceConfig {
    /// A short label for logs and `dynwall ip`; a password in a URL is masked. The family is not
    /// part of it (it is shown beside it).
    pub fn label(&self) -> String {
        match &self.kind {
            SourceKind::Http { url } => format!("http {}", masked(url)),
            SourceKind::HttpJson { url, field } => format!("http-json {} {field}", masked(url)),
            SourceKind::Dns(d) => format!("dns {d}"),
            SourceKind::Stun(s) => format!("stun {}", s.server),
            SourceKind::Upnp(UpnpSource::Description(url)) => format!("upnp {}", masked(url)),
            SourceKind::Upnp(UpnpSource::Ssdp(addr)) => format!("upnp ssdp {addr}"),
            SourceKind::Interface { name } => format!("interface {name}"),
            SourceKind::Command { argv } => format!("command {}", argv.join(" ")),
        }
    }
}

/// `url` with its password, if any, replaced by `***`.
pub fn masked(url: &Url) -> Url {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Only fails for URLs that cannot carry credentials, which then have none to mask.
        let _ = shown.set_password(Some("***"));
    }
    shown
}

/// Where in a JSON document the address is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonField {
    /// A top-level key.
    Key(String),
    /// An RFC 6901 pointer such as `/data/ip`.
    Pointer(String),
}

impl fmt::Display for JsonField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonField::Key(k) | JsonField::Pointer(k) => f.write_str(k),
        }
    }
}

#[derive(Clone, Debug)]
pub struct IndigoConfig {
    pub endpoint: Url,
    pub api_key: Secret,
    pub api_secret: Secret,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Which home address families a firewall entry tracks (one owned rule per family).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracked {
    Ipv4,
    Ipv6,
    Both,
}

impl Tracked {
    pub fn families(self) -> &'static [Family] {
        match self {
            Tracked::Ipv4 => &[Family::Ipv4],
            Tracked::Ipv6 => &[Family::Ipv6],
            Tracked::Both => &[Family::Ipv4, Family::Ipv6],
        }
    }
}

/// One managed firewall template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallConfig {
    pub template: FirewallId,
    pub instances: Vec<InstanceId>,
    pub protocol: String,
    pub port: String,
    /// Extra sources allowed on the owned port, normalised.
    pub keep: Vec<IpNet>,
    /// The home address families kept on the owned port.
    pub family: Tracked,
}

/// How an instance is probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeCheck {
    /// TCP connect and an `SSH-` banner.
    Ssh,
    /// TCP connect only.
    Tcp,
    /// HTTP GET; success is 2xx/3xx, or exactly `expect_status` when set.
    Http {
        url: Url,
        expect_status: Option<u16>,
    },
}

/// One probed instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    pub instance: InstanceId,
    /// Probe target; `None` means the instance's address from the API, port 22.
    pub address: Option<SocketAddr>,
    pub check: ProbeCheck,
    pub interval: Duration,
    pub timeout: Duration,
    pub failures: u32,
    pub stop_timeout: Duration,
    pub start_timeout: Duration,
    pub grace: Duration,
    pub max_actions: u32,
    pub window: Duration,
    pub enabled: bool,
}

/// Probe defaults (see the README for the reasoning behind each).
pub mod probe_defaults {
    use std::time::Duration;
    pub const INTERVAL: Duration = Duration::from_secs(30);
    pub const TIMEOUT: Duration = Duration::from_secs(5);
    pub const FAILURES: u32 = 3;
    pub const STOP_TIMEOUT: Duration = Duration::from_secs(300);
    pub const START_TIMEOUT: Duration = Duration::from_secs(300);
    pub const GRACE: Duration = Duration::from_secs(300);
    pub const MAX_ACTIONS: u32 = 3;
    pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
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
        let indigo = indigo_from_raw(raw.indigo, path, env)?;

        let mut firewalls = Vec::with_capacity(raw.firewall.len());
        let mut seen = BTreeSet::new();
        for (i, fw) in raw.firewall.into_iter().enumerate() {
            let fw = firewall_from_raw(fw, i, path)?;
            if !seen.insert(fw.template.clone()) {
                return Err(ConfigError::invalid(
                    path,
                    format!("firewall[{i}].template"),
                    format!("template {} is listed twice", fw.template),
                ));
            }
            firewalls.push(fw);
        }
        let mut probes = Vec::with_capacity(raw.probe.len());
        let mut seen = BTreeSet::new();
        for (i, p) in raw.probe.into_iter().enumerate() {
            let p = probe_from_raw(p, i, path)?;
            if !seen.insert(p.instance.clone()) {
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
        Ok(Config {
            path: path.to_path_buf(),
            daemon,
            resolver,
            indigo,
            firewalls,
            probes,
        })
    }

    /// The address families the firewalls track, IPv4 first (IPv4 alone when there is no
    /// firewall: the prober still needs to know our own connectivity).
    pub fn tracked_families(&self) -> Vec<Family> {
        let mut out = Vec::new();
        for fw in &self.firewalls {
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

    /// Every instance id the config refers to (firewall assignments and probes), deduplicated.
    pub fn referenced_instances(&self) -> BTreeSet<InstanceId> {
        self.firewalls
            .iter()
            .flat_map(|f| f.instances.iter().cloned())
            .chain(self.probes.iter().map(|p| p.instance.clone()))
            .collect()
    }
}

fn parse_raw(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().to_string();
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

/// Extracts the field name from serde's "unknown field `x`, expected …" message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

fn resolver_from_raw(
    raw: Option<raw::RawResolver>,
    path: &Path,
) -> Result<ResolverConfig, ConfigError> {
    let raw = raw.unwrap_or_default();
    let timeout = raw.timeout.map_or(DEFAULT_RESOLVER_TIMEOUT, |d| d.0);
    let sources = if raw.source.is_empty() {
        default_sources().map_err(|reason| {
            ConfigError::invalid(
                path,
                "resolver.source",
                format!("built-in default: {reason}"),
            )
        })?
    } else {
        let mut out = Vec::with_capacity(raw.source.len());
        for (i, s) in raw.source.into_iter().enumerate() {
            out.push(source_from_raw(s, i, path)?);
        }
        out
    };
    let quorum = match raw.quorum {
        None => None,
        Some(0) => {
            return Err(ConfigError::invalid(
                path,
                "resolver.quorum",
                "must be at least 1",
            ));
        }
        Some(q) => {
            let q = q as usize;
            let count = |f| sources.iter().filter(|s| s.family == f).count();
            let (v4, v6) = (count(Family::Ipv4), count(Family::Ipv6));
            if q > v4.max(v6) {
                return Err(ConfigError::invalid(
                    path,
                    "resolver.quorum",
                    format!(
                        "{q} sources of one family must agree, but only {v4} IPv4 and {v6} IPv6 \
                         sources are configured"
                    ),
                ));
            }
            Some(q)
        }
    };
    Ok(ResolverConfig {
        quorum,
        timeout,
        sources,
    })
}

/// The built-in sources ([`DEFAULT_SOURCES`]), validated like a user's.
pub fn default_sources() -> Result<Vec<SourceConfig>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Defaults {
        source: Vec<raw::RawSource>,
    }
    let defaults: Defaults = toml::from_str(DEFAULT_SOURCES).map_err(|e| e.to_string())?;
    defaults
        .source
        .into_iter()
        .enumerate()
        .map(|(i, s)| source_from_raw(s, i, Path::new("(built-in)")).map_err(|e| e.to_string()))
        .collect()
}

/// The kinds of source, and the keys each one takes besides `kind` and `family`.
const SOURCE_KINDS: &[(&str, &[&str])] = &[
    ("http", &["url"]),
    ("http-json", &["url", "field"]),
    ("dns", &["server", "name", "record", "class"]),
    ("stun", &["server"]),
    ("upnp", &["url", "ssdp"]),
    ("interface", &["name"]),
    ("command", &["command"]),
];

fn source_from_raw(s: raw::RawSource, i: usize, path: &Path) -> Result<SourceConfig, ConfigError> {
    let key = |k: &str| format!("resolver.source[{i}].{k}");
    let err = |k: &str, reason: String| ConfigError::invalid(path, key(k), reason);
    let kind = s.kind.as_str();
    let Some((_, allowed)) = SOURCE_KINDS.iter().find(|(k, _)| *k == kind) else {
        let names: Vec<String> = SOURCE_KINDS.iter().map(|(k, _)| format!("{k:?}")).collect();
        return Err(err(
            "kind",
            format!(
                "unknown source kind {kind:?} (expected one of {})",
                names.join(", ")
            ),
        ));
    };
    let present = [
        ("url", s.url.is_some()),
        ("field", s.field.is_some()),
        ("server", s.server.is_some()),
        ("name", s.name.is_some()),
        ("record", s.record.is_some()),
        ("class", s.class.is_some()),
        ("ssdp", s.ssdp.is_some()),
        ("command", s.command.is_some()),
    ];
    if let Some((stray, _)) = present.iter().find(|(k, set)| *set && !allowed.contains(k)) {
        return Err(err(
            stray,
            format!(
                "not a key of kind = {kind:?} sources (they take {}, and family)",
                allowed.join(", ")
            ),
        ));
    }
    let family = match s.family.as_deref() {
        None => None,
        Some("ipv4") => Some(Family::Ipv4),
        Some("ipv6") => Some(Family::Ipv6),
        Some(other) => {
            return Err(err(
                "family",
                format!("{other:?} is not a family (expected \"ipv4\" or \"ipv6\")"),
            ))
        }
    };
    let required = |k: &str, v: Option<String>| v.ok_or_else(|| err(k, "missing".to_string()));
    let family_or_v4 = family.unwrap_or(Family::Ipv4);
    let kind = match kind {
        "http" | "http-json" => {
            let url = source_url(&required("url", s.url)?).map_err(|r| err("url", r))?;
            url_family(&url, family_or_v4).map_err(|r| err("url", r))?;
            if kind == "http" {
                SourceKind::Http { url }
            } else {
                let field = required("field", s.field)?;
                let field = if field.starts_with('/') {
                    JsonField::Pointer(field)
                } else if field.is_empty() {
                    return Err(err("field", "must not be empty".into()));
                } else {
                    JsonField::Key(field)
                };
                SourceKind::HttpJson { url, field }
            }
        }
        "dns" => {
            let dns = dns_from_raw(s.server, s.name, s.record, s.class, family)
                .map_err(|(k, r)| err(k, r))?;
            let family = match dns.record {
                DnsRecord::A => Family::Ipv4,
                DnsRecord::Aaaa => Family::Ipv6,
                DnsRecord::Txt => family_or_v4,
            };
            family_matches(dns.server.ip(), family).map_err(|r| err("server", r))?;
            return Ok(SourceConfig {
                family,
                kind: SourceKind::Dns(dns),
            });
        }
        "stun" => {
            let server = required("server", s.server)?;
            let host = stun_host(&server).map_err(|r| err("server", r))?;
            if let Ok(ip) = host.parse::<IpAddr>() {
                family_matches(ip, family_or_v4).map_err(|r| err("server", r))?;
            }
            SourceKind::Stun(StunSource { server })
        }
        "upnp" => {
            if family == Some(Family::Ipv6) {
                return Err(err(
                    "family",
                    "a UPnP router reports only its IPv4 WAN address; upnp sources are ipv4".into(),
                ));
            }
            let target =
                match (s.url, s.ssdp) {
                    (Some(_), Some(_)) => return Err(err(
                        "ssdp",
                        "set either url (the router's description) or ssdp (discovery), not both"
                            .into(),
                    )),
                    (Some(u), None) => {
                        let url = source_url(&u).map_err(|r| err("url", r))?;
                        url_family(&url, Family::Ipv4).map_err(|r| err("url", r))?;
                        UpnpSource::Description(url)
                    }
                    (None, ssdp) => {
                        let text = ssdp.unwrap_or_else(|| DEFAULT_SSDP.to_string());
                        match text.parse::<SocketAddr>() {
                            Ok(a) if a.is_ipv4() && a.port() != 0 => UpnpSource::Ssdp(a),
                            _ => {
                                return Err(err(
                                    "ssdp",
                                    format!(
                                        "{text:?} is not an IPv4 address with a port, such as \
                                     {DEFAULT_SSDP:?}"
                                    ),
                                ))
                            }
                        }
                    }
                };
            SourceKind::Upnp(target)
        }
        "interface" => {
            let name = required("name", s.name)?;
            if name.is_empty() || name.len() > 64 || name.contains(|c: char| c.is_whitespace()) {
                return Err(err(
                    "name",
                    format!("{name:?} is not an interface name such as \"eth0\""),
                ));
            }
            SourceKind::Interface { name }
        }
        _ => {
            let argv = s
                .command
                .ok_or_else(|| err("command", "missing".to_string()))?;
            match argv.first() {
                None => return Err(err("command", "must name a program".into())),
                Some(p) if !Path::new(p).is_absolute() => {
                    return Err(err(
                        "command",
                        format!(
                            "{p:?} must be an absolute path: the program runs without a shell \
                             and without a $PATH search"
                        ),
                    ))
                }
                Some(_) => {}
            }
            SourceKind::Command { argv }
        }
    };
    Ok(SourceConfig {
        family: family_or_v4,
        kind,
    })
}

fn family_label(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "IPv4",
        Family::Ipv6 => "IPv6",
    }
}

fn family_key(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "ipv4",
        Family::Ipv6 => "ipv6",
    }
}

/// A URL whose host is an address literal of the other family can never be reached by a source
/// bound to `family`.
fn url_family(url: &Url, family: Family) -> Result<(), String> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => family_matches(IpAddr::V4(ip), family),
        Some(url::Host::Ipv6(ip)) => family_matches(IpAddr::V6(ip), family),
        _ => Ok(()),
    }
}

fn family_matches(ip: IpAddr, family: Family) -> Result<(), String> {
    let of = Family::of(ip);
    if of == family {
        return Ok(());
    }
    Err(format!(
        "{ip} is an {} address, but the source's family is {} (the server must be reached over \
         the family it reports)",
        family_label(of),
        family_key(family)
    ))
}

/// Validates the keys of a `dns` source; errors name the key.
fn dns_from_raw(
    server: Option<String>,
    name: Option<String>,
    record: Option<String>,
    class: Option<String>,
    family: Option<Family>,
) -> Result<DnsSource, (&'static str, String)> {
    let server = server.ok_or(("server", "missing".to_string()))?;
    let server = match server.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => match server.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, DNS_PORT),
            Err(_) => {
                return Err((
                    "server",
                    format!(
                        "{server:?} is not an IP address with an optional port, such as \
                         \"208.67.222.222:53\" or \"[2620:119:35::35]:53\" (a name would need \
                         another DNS lookup first)"
                    ),
                ))
            }
        },
    };
    if server.port() == 0 || server.ip().is_unspecified() || server.ip().is_multicast() {
        return Err(("server", format!("{server} cannot be asked")));
    }
    let name = name.ok_or(("name", "missing".to_string()))?;
    if let Err(e) = hickory_proto::rr::Name::from_ascii(&name) {
        return Err(("name", format!("{name:?} is not a DNS name: {e}")));
    }
    if name.trim_end_matches('.').is_empty() {
        return Err(("name", "must not be empty".to_string()));
    }
    let record = match record.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("A") => DnsRecord::A,
        Some("AAAA") => DnsRecord::Aaaa,
        Some("TXT") => DnsRecord::Txt,
        Some(other) => {
            return Err((
                "record",
                format!("{other:?} is not supported (expected \"A\", \"AAAA\" or \"TXT\")"),
            ))
        }
        None => return Err(("record", "missing (\"A\", \"AAAA\" or \"TXT\")".to_string())),
    };
    match (record, family) {
        (DnsRecord::A, Some(Family::Ipv6)) => {
            return Err((
                "family",
                "an A record holds an IPv4 address; ask for AAAA with family = \"ipv6\"".into(),
            ))
        }
        (DnsRecord::Aaaa, Some(Family::Ipv4)) => {
            return Err((
                "family",
                "an AAAA record holds an IPv6 address; ask for A with family = \"ipv4\"".into(),
            ))
        }
        _ => {}
    }
    let class = match class.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("IN") => DnsClass::In,
        Some("CH") => DnsClass::Ch,
        Some(other) => {
            return Err((
                "class",
                format!("{other:?} is not supported (expected \"IN\" or \"CH\")"),
            ))
        }
    };
    Ok(DnsSource {
        server,
        name,
        record,
        class,
    })
}

/// The host part of a STUN server `host:port` (brackets removed from an IPv6 literal).
fn stun_host(server: &str) -> Result<&str, String> {
    let bad = || {
        format!(
            "{server:?} is not host:port, such as \"stun.l.google.com:19302\" or \
             \"[2001:4860:4864:5:8000::1]:19302\""
        )
    };
    let (host, port) = server.rsplit_once(':').ok_or_else(bad)?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad()),
    }
    if let Some(rest) = host.strip_prefix('[') {
        let inner = rest.strip_suffix(']').ok_or_else(bad)?;
        inner.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        return Ok(inner);
    }
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || "[]:/".contains(c)) {
        return Err(bad());
    }
    Ok(host)
}

/// Source URLs must be https, except for hosts on the local network (a router) or loopback.
fn source_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if host_is_local(&url, true) => Ok(url),
        "http" => Err(format!(
            "{text:?} uses plain http; use https (plain http is allowed only for loopback and \
             local-network hosts)"
        )),
        other => Err(format!("{text:?}: unsupported scheme {other:?}")),
    }
}

/// True for loopback hosts, and with `lan` also for private addresses and local names.
fn host_is_local(url: &Url, lan: bool) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || (lan && !is_global(IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback() || (lan && !is_global(IpAddr::V6(ip))),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost"
                || d.ends_with(".localhost")
                || (lan
                    && (!d.contains('.')
                        || [".lan", ".local", ".home.arpa", ".internal", ".fritz.box"]
                            .iter()
                            .any(|s| d.ends_with(s))))
        }
        None => false,
    }
}

fn indigo_from_raw(
    raw: raw::RawIndigo,
    path: &Path,
    env: &dyn Env,
) -> Result<IndigoConfig, ConfigError> {
    let endpoint_text = raw
        .endpoint
        .unwrap_or_else(|| DEFAULT_INDIGO_ENDPOINT.to_string());
    let endpoint = Url::parse(&endpoint_text)
        .map_err(|e| ConfigError::invalid(path, "indigo.endpoint", format!("invalid URL: {e}")))?;
    match endpoint.scheme() {
        "https" => {}
        "http" if host_is_local(&endpoint, false) => {}
        "http" => {
            return Err(ConfigError::invalid(
                path,
                "indigo.endpoint",
                "plain http is refused for a non-loopback host: credentials would travel \
                 unencrypted; use https",
            ))
        }
        other => {
            return Err(ConfigError::invalid(
                path,
                "indigo.endpoint",
                format!("unsupported scheme {other:?}"),
            ))
        }
    }
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let api_key = secret(
        path,
        base,
        env,
        SecretSpec {
            key: "indigo.api_key",
            inline: raw.api_key,
            file: raw.api_key_file,
            credential: "indigo_api_key",
            env: &["DYNWALL_INDIGO_API_KEY", "IndigoApiKey"],
        },
    )?;
    let api_secret = secret(
        path,
        base,
        env,
        SecretSpec {
            key: "indigo.api_secret",
            inline: raw.api_secret,
            file: raw.api_secret_file,
            credential: "indigo_api_secret",
            env: &["DYNWALL_INDIGO_API_SECRET", "IndigoApiPrivateKey"],
        },
    )?;
    Ok(IndigoConfig {
        endpoint,
        api_key,
        api_secret,
        timeout: raw.timeout.map_or(DEFAULT_API_TIMEOUT, |d| d.0),
    })
}

struct SecretSpec {
    key: &'static str,
    inline: Option<String>,
    file: Option<String>,
    /// File name under systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=`).
    credential: &'static str,
    env: &'static [&'static str],
}

/// Resolves a secret: inline, systemd credential or `*_file`, then environment variables.
///
/// A systemd credential of the secret's name, when present, is preferred to `*_file`: the units
/// load the very files the shipped config names (`LoadCredential=indigo_api_key:/etc/dynwall/…`),
/// and the service's DynamicUser can read the credential but not the root-only file itself. Run
/// by hand (or in a container) there is no credential and `*_file` is read.
fn secret(path: &Path, base: &Path, env: &dyn Env, s: SecretSpec) -> Result<Secret, ConfigError> {
    let file_key = format!("{}_file", s.key);
    let credential = env
        .var("CREDENTIALS_DIRECTORY")
        .map(|dir| Path::new(&dir).join(s.credential))
        .filter(|p| p.is_file());
    let value = match (s.inline, s.file, credential) {
        (Some(_), Some(_), _) => {
            return Err(ConfigError::invalid(
                path,
                s.key,
                format!("set either {} or {file_key}, not both", s.key),
            ))
        }
        (Some(v), None, _) => v,
        (None, _, Some(p)) => {
            read_secret_file(&p).map_err(|r| ConfigError::invalid(path, s.key, r))?
        }
        (None, Some(f), None) => {
            let p = base.join(&f);
            read_secret_file(&p).map_err(|r| ConfigError::invalid(path, file_key.clone(), r))?
        }
        (None, None, None) => s.env.iter().find_map(|name| env.var(name)).ok_or_else(|| {
            ConfigError::invalid(
                path,
                s.key,
                format!(
                    "missing: set {} or {file_key}, or the environment variable {}",
                    s.key,
                    s.env.join(" or ")
                ),
            )
        })?,
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(ConfigError::invalid(path, s.key, "is empty"));
    }
    Ok(Secret(value))
}

fn read_secret_file(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
}

fn firewall_from_raw(
    fw: raw::RawFirewall,
    i: usize,
    path: &Path,
) -> Result<FirewallConfig, ConfigError> {
    let key = |k: &str| format!("firewall[{i}].{k}");
    let template = fw
        .template
        .ok_or_else(|| ConfigError::invalid(path, key("template"), "missing"))?;
    let instances = fw.instances.ok_or_else(|| {
        ConfigError::invalid(
            path,
            key("instances"),
            "missing: list every instance this template is assigned to (use [] for none); \
             Indigo replaces the assignments with this list on every update",
        )
    })?;
    let mut seen = BTreeSet::new();
    let mut ids = Vec::with_capacity(instances.len());
    for id in instances {
        if !seen.insert(id.0.clone()) {
            return Err(ConfigError::invalid(
                path,
                key("instances"),
                format!("instance {} is listed twice", id.0),
            ));
        }
        ids.push(InstanceId(id.0));
    }
    let protocol = fw
        .protocol
        .unwrap_or_else(|| "TCP".to_string())
        .to_uppercase();
    if !matches!(protocol.as_str(), "TCP" | "UDP") {
        return Err(ConfigError::invalid(
            path,
            key("protocol"),
            format!("{protocol:?} is not supported (expected \"TCP\" or \"UDP\")"),
        ));
    }
    let port = fw.port.map_or_else(|| "22".to_string(), |p| p.0);
    validate_port(&port).map_err(|r| ConfigError::invalid(path, key("port"), r))?;
    let mut keep = Vec::with_capacity(fw.keep.len());
    for (j, k) in fw.keep.iter().enumerate() {
        let net: IpNet = k.parse().map_err(|e| {
            ConfigError::invalid(path, format!("firewall[{i}].keep[{j}]"), format!("{e}"))
        })?;
        if net.prefix_len() == 0 {
            return Err(ConfigError::invalid(
                path,
                format!("firewall[{i}].keep[{j}]"),
                format!("{k:?} would open the port to everyone"),
            ));
        }
        keep.push(net);
    }
    let family = match fw.family.as_deref() {
        None | Some("ipv4") => Tracked::Ipv4,
        Some("ipv6") => Tracked::Ipv6,
        Some("both") => Tracked::Both,
        Some(other) => {
            return Err(ConfigError::invalid(
                path,
                key("family"),
                format!("unknown family {other:?} (expected \"ipv4\", \"ipv6\" or \"both\")"),
            ))
        }
    };
    Ok(FirewallConfig {
        template: FirewallId(template.0),
        instances: ids,
        protocol,
        port,
        keep,
        family,
    })
}

fn validate_port(port: &str) -> Result<(), String> {
    let one = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("invalid port {port:?}")),
        }
    };
    match port.split_once('-') {
        Some((a, b)) if one(a)? <= one(b)? => Ok(()),
        Some(_) => Err(format!("invalid port range {port:?}")),
        None => one(port).map(|_| ()),
    }
}

fn probe_from_raw(p: raw::RawProbe, i: usize, path: &Path) -> Result<ProbeConfig, ConfigError> {
    use probe_defaults as d;
    let key = |k: &str| format!("probe[{i}].{k}");
    let instance = p
        .instance
        .ok_or_else(|| ConfigError::invalid(path, key("instance"), "missing"))?;
    let address = match p.address {
        None => None,
        Some(a) => Some(
            parse_probe_address(&a).map_err(|r| ConfigError::invalid(path, key("address"), r))?,
        ),
    };
    let check = match p.check.as_deref().unwrap_or("ssh") {
        "ssh" | "tcp" if p.url.is_some() || p.expect_status.is_some() => {
            return Err(ConfigError::invalid(
                path,
                key("url"),
                "only check = \"http\" takes url and expect_status",
            ))
        }
        "ssh" => ProbeCheck::Ssh,
        "tcp" => ProbeCheck::Tcp,
        "http" => {
            let text = p.url.ok_or_else(|| {
                ConfigError::invalid(path, key("url"), "missing (required for check = \"http\")")
            })?;
            let url = Url::parse(&text)
                .map_err(|e| ConfigError::invalid(path, key("url"), format!("invalid URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::invalid(
                    path,
                    key("url"),
                    "must be http or https",
                ));
            }
            if let Some(s) = p.expect_status {
                if !(100..=599).contains(&s) {
                    return Err(ConfigError::invalid(
                        path,
                        key("expect_status"),
                        format!("{s} is not an HTTP status"),
                    ));
                }
            }
            ProbeCheck::Http {
                url,
                expect_status: p.expect_status,
            }
        }
        other => {
            return Err(ConfigError::invalid(
                path,
                key("check"),
                format!("unknown check {other:?} (expected \"ssh\", \"tcp\" or \"http\")"),
            ))
        }
    };
    let dur = |v: Option<Dur>, def: Duration| v.map_or(def, |d| d.0);
    let cfg = ProbeConfig {
        instance: InstanceId(instance.0),
        address,
        check,
        interval: dur(p.interval, d::INTERVAL),
        timeout: dur(p.timeout, d::TIMEOUT),
        failures: p.failures.unwrap_or(d::FAILURES),
        stop_timeout: dur(p.stop_timeout, d::STOP_TIMEOUT),
        start_timeout: dur(p.start_timeout, d::START_TIMEOUT),
        grace: dur(p.grace, d::GRACE),
        max_actions: p.max_actions.unwrap_or(d::MAX_ACTIONS),
        window: dur(p.window, d::WINDOW),
        enabled: p.enabled.unwrap_or(true),
    };
    if cfg.failures == 0 {
        return Err(ConfigError::invalid(
            path,
            key("failures"),
            "must be at least 1",
        ));
    }
    if cfg.timeout > cfg.interval {
        return Err(ConfigError::invalid(
            path,
            key("timeout"),
            format!(
                "{} is longer than the probe interval {}",
                humantime::format_duration(cfg.timeout),
                humantime::format_duration(cfg.interval)
            ),
        ));
    }
    Ok(cfg)
}

fn parse_probe_address(a: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = a.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = a.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 22));
    }
    Err(format!(
        "{a:?} is not an address such as \"203.0.113.10:22\" or \"[2001:db8::1]:22\""
    ))
}

#[cfg(test)]
mod tests;
