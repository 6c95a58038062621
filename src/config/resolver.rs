//! `[resolver]`: the public-IP sources and the quorum, validated.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use super::raw::{self};
use super::*;
use crate::net::{is_global, Family};

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

pub(crate) fn resolver_from_raw(
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
        // Whether each family has enough sources depends on the families the firewalls track:
        // see `check_tracked_sources`.
        Some(q) => Some(q as usize),
    };
    Ok(ResolverConfig {
        quorum,
        timeout,
        sources,
    })
}

/// Checks that every family dynwall needs has sources enough for the quorum. `tracked` are the
/// families the firewalls track (IPv4 alone without a firewall: the prober needs it to trust its
/// own connectivity); a family no firewall tracks may have too few sources, or none: it is only
/// ever asked by `dynwall ip`.
pub(crate) fn check_tracked_sources(
    resolver: &ResolverConfig,
    firewalls: &[FirewallConfig],
    tracked: &[Family],
    path: &Path,
) -> Result<(), ConfigError> {
    for &family in tracked {
        let name = crate::resolver::family_name(family);
        let count = resolver.sources_of(family).count();
        // The first firewall that tracks the family, to name in the message.
        let tracker = firewalls
            .iter()
            .position(|fw| fw.family.families().contains(&family));
        let why = match tracker {
            Some(i) => format!("firewall[{i}] tracks {name}"),
            None => format!("the probes need an {name} address to trust our own connectivity"),
        };
        if count == 0 {
            let key = tracker.map_or("resolver.source".to_string(), |i| {
                format!("firewall[{i}].family")
            });
            return Err(ConfigError::invalid(
                path,
                key,
                format!(
                    "{why}, but no {name} source is configured: add [[resolver.source]] tables \
                     with family = \"{}\", or list no source at all to use the built-in ones",
                    match family {
                        Family::Ipv4 => "ipv4",
                        Family::Ipv6 => "ipv6",
                    }
                ),
            ));
        }
        if let Some(q) = resolver.quorum.filter(|q| *q > count) {
            return Err(ConfigError::invalid(
                path,
                "resolver.quorum",
                format!(
                    "{q} {name} sources must agree, but only {count} {name} source{} \
                     configured, and {why}: add {name} sources or lower the quorum",
                    if count == 1 { " is" } else { "s are" }
                ),
            ));
        }
    }
    Ok(())
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
pub(crate) const SOURCE_KINDS: &[(&str, &[&str])] = &[
    ("http", &["url"]),
    ("http-json", &["url", "field"]),
    ("dns", &["server", "name", "record", "class"]),
    ("stun", &["server"]),
    ("upnp", &["url", "ssdp"]),
    ("interface", &["name"]),
    ("command", &["command"]),
];

pub(crate) fn source_from_raw(
    s: raw::RawSource,
    i: usize,
    path: &Path,
) -> Result<SourceConfig, ConfigError> {
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

pub(crate) fn family_label(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "IPv4",
        Family::Ipv6 => "IPv6",
    }
}

pub(crate) fn family_key(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "ipv4",
        Family::Ipv6 => "ipv6",
    }
}

/// A URL whose host is an address literal of the other family can never be reached by a source
/// bound to `family`.
pub(crate) fn url_family(url: &Url, family: Family) -> Result<(), String> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => family_matches(IpAddr::V4(ip), family),
        Some(url::Host::Ipv6(ip)) => family_matches(IpAddr::V6(ip), family),
        _ => Ok(()),
    }
}

pub(crate) fn family_matches(ip: IpAddr, family: Family) -> Result<(), String> {
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
pub(crate) fn dns_from_raw(
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
pub(crate) fn stun_host(server: &str) -> Result<&str, String> {
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
pub(crate) fn source_url(text: &str) -> Result<Url, String> {
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
pub(crate) fn host_is_local(url: &Url, lan: bool) -> bool {
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
