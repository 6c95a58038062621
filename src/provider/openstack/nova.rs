//! Nova servers: their state, the address to probe, the power actions and what a 409 means.
//!
//! `status` alone lies while a task runs (a server being stopped still says ACTIVE), so the power
//! state reads `OS-EXT-STS:task_state` too: a server is Running or Stopped only with no task in
//! flight. Nova refuses an action while a task runs or when the server is already where the action
//! would take it; both come back as `409 conflictingRequest` and are told apart here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use reqwest::Url;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{decode, ApiError, OpenStackError};

/// The microversion every request pins, in both spellings Nova reads (`OpenStack-API-Version`
/// since 2.27, the legacy `X-OpenStack-Nova-API-Version`). Nothing dynwall uses changed after 2.1,
/// and 2.1 is what the oldest clouds serve.
pub const MICROVERSION_HEADERS: [(&str, &str); 2] = [
    ("OpenStack-API-Version", "compute 2.1"),
    ("X-OpenStack-Nova-API-Version", "2.1"),
];

/// The compute API root for a catalog `compute` URL: used as listed (normally versioned and with
/// the project, `…/v2.1/<project>`; SkyAtlas-era `…/v2/<tenant>`), with a trailing slash so paths
/// join below it.
pub fn base_url(catalog_url: &Url) -> Url {
    let mut url = catalog_url.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push("");
    }
    url
}

fn at(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut s) = url.path_segments_mut() {
        s.pop_if_empty().extend(segments);
    }
    url
}

/// `GET`: every server with its details; one call serves a whole probe round.
pub fn servers_detail_url(base: &Url) -> Url {
    at(base, &["servers", "detail"])
}

/// `GET`: one server.
pub fn server_url(base: &Url, id: &str) -> Url {
    at(base, &["servers", id])
}

/// `POST` a [`ServerAction::body`] here.
pub fn action_url(base: &Url, id: &str) -> Url {
    at(base, &["servers", id, "action"])
}

/// One address of a server.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ServerAddress {
    pub addr: String,
    #[serde(default)]
    pub version: Option<u8>,
    /// `fixed` or `floating` (`OS-EXT-IPS:type`), when the cloud says.
    #[serde(rename = "OS-EXT-IPS:type", default)]
    pub kind: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
struct GroupName {
    name: String,
}

/// A server as `GET /servers/detail` reports it, reduced to what dynwall reads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Server {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub status: String,
    /// Null when no task runs; absent when the cloud's policy hides it (then `status` decides).
    #[serde(rename = "OS-EXT-STS:task_state", default)]
    pub task_state: Option<String>,
    #[serde(rename = "OS-EXT-STS:vm_state", default)]
    pub vm_state: Option<String>,
    /// Network name → addresses, in the order Nova listed the networks.
    #[serde(default, deserialize_with = "ordered_addresses")]
    pub addresses: Vec<(String, Vec<ServerAddress>)>,
    #[serde(default, deserialize_with = "group_names")]
    security_groups: Vec<String>,
}

/// A server's power state as the prober sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerPower {
    /// ACTIVE with no task.
    Running,
    /// SHUTOFF with no task.
    Stopped,
    /// A task is in flight (`powering-off`, `rebooting_hard`, …): wait for it, never act.
    Busy(String),
    /// Any other status (ERROR, BUILD, PAUSED, SHELVED, …): left alone.
    Other(String),
}

impl fmt::Display for ServerPower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerPower::Running => f.write_str("Running"),
            ServerPower::Stopped => f.write_str("Stopped"),
            ServerPower::Busy(task) => write!(f, "busy ({task})"),
            ServerPower::Other(status) => f.write_str(status),
        }
    }
}

/// The address the prober connects to by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeAddress {
    pub ip: Ipv4Addr,
    /// A floating IP (reachable from outside by design); else a fixed IP, which may be private.
    pub floating: bool,
}

impl Server {
    pub fn power(&self) -> ServerPower {
        if let Some(task) = self.task_state.as_deref().filter(|t| !t.is_empty()) {
            return ServerPower::Busy(task.to_string());
        }
        match self.status.as_str() {
            "ACTIVE" => ServerPower::Running,
            "SHUTOFF" => ServerPower::Stopped,
            other => ServerPower::Other(other.to_string()),
        }
    }

    /// The floating IPv4, else the first fixed IPv4, in Nova's order.
    pub fn probe_address(&self) -> Option<ProbeAddress> {
        let v4 = |a: &ServerAddress| match a.addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if a.version.is_none_or(|v| v == 4) => Some(ip),
            _ => None,
        };
        let all = || self.addresses.iter().flat_map(|(_, list)| list.iter());
        let floating = all()
            .filter(|a| a.kind.as_deref() == Some("floating"))
            .find_map(v4)
            .map(|ip| ProbeAddress { ip, floating: true });
        floating.or_else(|| {
            all()
                .filter(|a| a.kind.as_deref() != Some("floating"))
                .find_map(v4)
                .map(|ip| ProbeAddress {
                    ip,
                    floating: false,
                })
        })
    }

    /// The names of the security groups the server belongs to, each once (Nova lists a group
    /// once per port). Names only: Nova reports no ids here.
    pub fn security_groups(&self) -> &[String] {
        &self.security_groups
    }
}

fn ordered_addresses<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, Vec<ServerAddress>)>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<(String, Vec<ServerAddress>)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of network names to address lists")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = map.next_entry()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

fn group_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let groups = Option::<Vec<GroupName>>::deserialize(d)?.unwrap_or_default();
    let mut out: Vec<String> = Vec::with_capacity(groups.len());
    for g in groups {
        if !out.contains(&g.name) {
            out.push(g.name);
        }
    }
    Ok(out)
}

/// One page of `GET /servers/detail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPage {
    pub servers: Vec<Server>,
    /// The next page, when Nova paginated (more servers than its `max_limit`, 1000 by default).
    pub next: Option<String>,
}

/// Reads `{"servers": [...], "servers_links": [...]}`.
pub fn parse_servers(body: &[u8]) -> Result<ServerPage, OpenStackError> {
    #[derive(Deserialize)]
    struct Link {
        rel: String,
        href: String,
    }
    #[derive(Deserialize)]
    struct Answer {
        servers: Vec<Server>,
        #[serde(default)]
        servers_links: Vec<Link>,
    }
    let answer: Answer = decode("nova list servers", body)?;
    Ok(ServerPage {
        servers: answer.servers,
        next: answer
            .servers_links
            .into_iter()
            .find(|l| l.rel == "next")
            .map(|l| l.href),
    })
}

/// Reads `{"server": {...}}`.
pub fn parse_server(body: &[u8]) -> Result<Server, OpenStackError> {
    #[derive(Deserialize)]
    struct Answer {
        server: Server,
    }
    Ok(decode::<Answer>("nova show server", body)?.server)
}

/// The server `wanted` names: the one with that id, else the only one with that name.
pub fn find_server<'a>(servers: &'a [Server], wanted: &str) -> Result<&'a Server, OpenStackError> {
    super::find_by_id_or_name(servers, wanted, "server", |s| &s.id, |s| &s.name)
}

/// The power actions dynwall sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerAction {
    Stop,
    Start,
    /// Destroy and recreate the domain on the hypervisor: Nova's force path, which leaves the
    /// server running (it also starts a stopped one).
    HardReboot,
}

impl ServerAction {
    pub fn body(self) -> Value {
        match self {
            ServerAction::Stop => json!({ "os-stop": null }),
            ServerAction::Start => json!({ "os-start": null }),
            ServerAction::HardReboot => json!({"reboot": {"type": "HARD"}}),
        }
    }

    /// The `vm_state` a 409 names when the server already is where this action leads.
    fn done_vm_state(self) -> Option<&'static str> {
        match self {
            ServerAction::Stop => Some("stopped"),
            ServerAction::Start => Some("active"),
            ServerAction::HardReboot => None,
        }
    }
}

impl fmt::Display for ServerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerAction::Stop => "os-stop",
            ServerAction::Start => "os-start",
            ServerAction::HardReboot => "reboot HARD",
        })
    }
}

/// How Nova answered an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionOutcome {
    /// 202: accepted; the effect is asynchronous (poll the server).
    Accepted,
    /// 409: the server already is in the state the action leads to: done.
    AlreadyInState,
    /// 409: a task is in flight; ask again at the next poll, never in a tight loop.
    RetryLater { task: String },
}

/// Reads the answer to `POST /servers/{server}/action` with `action`.
pub fn action_outcome(
    action: ServerAction,
    server: &str,
    status: u16,
    body: &[u8],
) -> Result<ActionOutcome, OpenStackError> {
    if (200..300).contains(&status) {
        return Ok(ActionOutcome::Accepted);
    }
    let answer = ApiError::parse(status, body);
    if status == 404 {
        return Err(OpenStackError::NotFound {
            what: "server",
            wanted: server.to_string(),
            available: Vec::new(),
        });
    }
    if status == 409 {
        if answer.message.ends_with(" is locked") {
            return Err(OpenStackError::Locked {
                server: server.to_string(),
            });
        }
        match conflict_state(&answer.message) {
            Some(("task_state", task)) => {
                return Ok(ActionOutcome::RetryLater {
                    task: task.to_string(),
                })
            }
            Some(("vm_state", state)) if action.done_vm_state() == Some(state) => {
                return Ok(ActionOutcome::AlreadyInState)
            }
            _ => {}
        }
    }
    Err(OpenStackError::Api {
        op: "nova server action",
        answer,
    })
}

/// `("vm_state", "stopped")` from "Cannot 'stop' instance <id> while it is in vm_state stopped".
fn conflict_state(message: &str) -> Option<(&str, &str)> {
    let (_, rest) = message.split_once(" while it is in ")?;
    let (attr, value) = rest.trim().split_once(' ')?;
    let value = value.trim().trim_end_matches('.');
    (!value.is_empty() && !value.contains(' ')).then_some((attr, value))
}

#[cfg(test)]
mod tests;
