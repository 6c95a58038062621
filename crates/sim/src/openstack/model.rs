//! The public vocabulary of the OpenStack simulator: services, operations, faults, the request log
//! and snapshots of security groups, rules and servers.

use std::time::SystemTime;

use crate::ids::uuid4;

/// The services of the simulated cloud, each on its own listeners like a real deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Keystone (`identity` in the catalog).
    Identity,
    /// Neutron (`network`).
    Network,
    /// Nova (`compute`).
    Compute,
}

impl Service {
    /// The catalog `type`.
    pub fn catalog_type(self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::Network => "network",
            Service::Compute => "compute",
        }
    }

    /// The catalog `name`.
    pub fn catalog_name(self) -> &'static str {
        match self {
            Service::Identity => "keystone",
            Service::Network => "neutron",
            Service::Compute => "nova",
        }
    }
}

/// The catalog interface a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interface {
    /// `public` (`publicURL` in a v2.0 catalog).
    Public,
    /// `internal` (`internalURL`).
    Internal,
    /// `admin` (`adminURL`); only Keystone lists one, on its single listener.
    Admin,
}

impl Interface {
    /// The v3 catalog `interface` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }
}

/// Which Keystone API the cloud serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IdentityApi {
    /// Identity v3 only (`POST /v3/auth/tokens`); Nova's catalog URL is `/v2.1/<project>`.
    #[default]
    V3,
    /// Identity v2.0 only, like SkyAtlas (`POST /v2.0/tokens`, `/v3` answers 404); Nova's catalog
    /// URL is the legacy `/v2/<tenant>`.
    V2,
}

/// The operations the simulator tells apart in its log and its fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `POST /v3/auth/tokens` or `POST /v2.0/tokens`.
    Token,
    /// `GET`/`HEAD /v3/auth/tokens` (validate another token).
    ValidateToken,
    /// `DELETE /v3/auth/tokens`.
    RevokeToken,
    /// A version document (`GET /v3`, `GET /v2.0` on Keystone, `GET /` on Neutron and Nova, `GET /v2.1`).
    Versions,
    /// `GET /v2.0/security-groups`.
    ListGroups,
    /// `GET /v2.0/security-groups/{id}`.
    ShowGroup,
    /// `GET /v2.0/security-group-rules`.
    ListRules,
    /// `GET /v2.0/security-group-rules/{id}`.
    ShowRule,
    /// `POST /v2.0/security-group-rules`.
    CreateRule,
    /// `DELETE /v2.0/security-group-rules/{id}`.
    DeleteRule,
    /// `PUT /v2.0/security-group-rules/{id}` (always refused, as Neutron does).
    UpdateRule,
    /// `GET /servers` or `GET /servers/detail`.
    ListServers,
    /// `GET /servers/{id}`.
    ShowServer,
    /// `POST /servers/{id}/action`.
    ServerAction,
    /// Any other path or method (answered 404 or 405).
    Other,
}

/// An injected failure ([`super::OpenStackSim::inject`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Answer this status with the service's error body; the request takes no effect. 502, 503
    /// and 504 come from the load balancer in front of the service (an HTML page).
    Status(u16),
    /// Answer `status` (429 or 503) with `Retry-After: seconds`; the request takes no effect.
    RetryAfter { status: u16, seconds: u64 },
    /// The request takes effect (a create creates the rule) but the connection is closed before
    /// any answer.
    LoseResponse,
    /// The request is never answered and takes no effect; the connection stays open until the
    /// client gives up or the simulator stops.
    Hang,
}

/// One request as the simulator saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The service of the listener that received it.
    pub service: Service,
    /// The region of that listener (`""` for Keystone, which is not per region).
    pub region: String,
    /// The catalog interface of that listener.
    pub interface: Interface,
    /// HTTP method (`"GET"`, `"POST"`, …).
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The raw query string without `?` (empty when none).
    pub query: String,
    /// The operation the request named (also for 401, 404 and injected answers).
    pub op: Op,
    /// The status answered; `None` when the connection was dropped or the request hangs.
    pub status: Option<u16>,
    /// Request headers, names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The request body as received (lossy UTF-8).
    pub body: String,
    /// Arrival on the simulator's clock (tokio's, so paused-time tests see virtual time).
    pub at: tokio::time::Instant,
    /// Arrival in wall time.
    pub time: SystemTime,
}

impl Request {
    /// The value of request header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A Neutron security group rule, as given to the builder and hooks and as snapshots report it.
///
/// Fields hold what Neutron stores: `protocol` a lowercase name or a number as text, ports as
/// numbers (both `None` for "all ports"), `remote_ip_prefix` with an explicit mask.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupRule {
    pub id: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    pub protocol: Option<String>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<String>,
    pub description: Option<String>,
}

impl GroupRule {
    /// An ingress rule for `protocol` on the single port `port` from `prefix`; the ethertype
    /// follows the prefix's family. The id is a fresh UUID.
    pub fn ingress(protocol: &str, port: u16, prefix: &str) -> GroupRule {
        let ethertype = if prefix.contains(':') { "IPv6" } else { "IPv4" };
        GroupRule {
            id: uuid4(),
            direction: "ingress".to_owned(),
            ethertype: ethertype.to_owned(),
            protocol: Some(protocol.to_owned()),
            port_range_min: Some(port),
            port_range_max: Some(port),
            remote_ip_prefix: Some(prefix.to_owned()),
            remote_group_id: None,
            description: None,
        }
    }

    /// The egress rule for all traffic of `ethertype` that every new group comes with.
    pub fn egress_any(ethertype: &str) -> GroupRule {
        GroupRule {
            id: uuid4(),
            direction: "egress".to_owned(),
            ethertype: ethertype.to_owned(),
            protocol: None,
            port_range_min: None,
            port_range_max: None,
            remote_ip_prefix: None,
            remote_group_id: None,
            description: None,
        }
    }

    /// Replaces the generated id.
    pub fn with_id(mut self, id: &str) -> GroupRule {
        self.id = id.to_owned();
        self
    }

    /// Sets the description.
    pub fn with_description(mut self, description: &str) -> GroupRule {
        self.description = Some(description.to_owned());
        self
    }

    /// Sets the port range (`None`, `None`: all ports).
    pub fn with_ports(mut self, min: Option<u16>, max: Option<u16>) -> GroupRule {
        self.port_range_min = min;
        self.port_range_max = max;
        self
    }

    /// Sets the remote prefix (`None`: anywhere).
    pub fn with_prefix(mut self, prefix: Option<&str>) -> GroupRule {
        self.remote_ip_prefix = prefix.map(str::to_owned);
        self
    }

    /// Admits members of group `id` instead of a prefix.
    pub fn with_remote_group(mut self, id: &str) -> GroupRule {
        self.remote_ip_prefix = None;
        self.remote_group_id = Some(id.to_owned());
        self
    }
}

/// A Neutron security group with its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    /// Not unique: several groups may share a name.
    pub name: String,
    pub description: String,
    /// Rules in id order (the order Neutron lists them in).
    pub rules: Vec<GroupRule>,
}

impl SecurityGroup {
    /// A group with a fresh UUID and the two egress rules Neutron gives every new group.
    pub fn new(name: &str) -> SecurityGroup {
        SecurityGroup {
            id: uuid4(),
            name: name.to_owned(),
            description: String::new(),
            rules: vec![GroupRule::egress_any("IPv4"), GroupRule::egress_any("IPv6")],
        }
    }

    /// Replaces the generated id.
    pub fn with_id(mut self, id: &str) -> SecurityGroup {
        self.id = id.to_owned();
        self
    }

    /// Adds a rule.
    pub fn rule(mut self, rule: GroupRule) -> SecurityGroup {
        self.rules.push(rule);
        self
    }

    /// Drops every rule, the default egress rules included.
    pub fn without_rules(mut self) -> SecurityGroup {
        self.rules.clear();
        self
    }
}

/// Nova's `vm_state` of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmState {
    Active,
    Building,
    Error,
    Paused,
    Rescued,
    Shelved,
    ShelvedOffloaded,
    Stopped,
    Suspended,
}

impl VmState {
    /// The `OS-EXT-STS:vm_state` value.
    pub fn as_wire(self) -> &'static str {
        match self {
            VmState::Active => "active",
            VmState::Building => "building",
            VmState::Error => "error",
            VmState::Paused => "paused",
            VmState::Rescued => "rescued",
            VmState::Shelved => "shelved",
            VmState::ShelvedOffloaded => "shelved_offloaded",
            VmState::Stopped => "stopped",
            VmState::Suspended => "suspended",
        }
    }

    /// The `OS-EXT-STS:power_state` a server settled in this state reports (1 running,
    /// 3 paused, 4 shutdown, 7 suspended, 0 no state).
    pub fn power_state(self) -> u8 {
        match self {
            VmState::Active | VmState::Rescued => 1,
            VmState::Paused => 3,
            VmState::Stopped | VmState::Shelved | VmState::Error => 4,
            VmState::Suspended => 7,
            VmState::Building | VmState::ShelvedOffloaded => 0,
        }
    }
}

/// A snapshot of one server, transitions settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub id: String,
    pub name: String,
    /// `status` as the API shows it (`ACTIVE`, `SHUTOFF`, `HARD_REBOOT`, …).
    pub status: String,
    pub vm_state: VmState,
    /// `OS-EXT-STS:task_state` (`powering-off`, `rebooting_hard`, …).
    pub task_state: Option<String>,
    pub power_state: u8,
    pub fixed_ipv4: Option<String>,
    pub floating_ipv4: Option<String>,
    pub ipv6: Option<String>,
    /// Ids of the security groups of the server's port.
    pub security_groups: Vec<String>,
    /// False while the guest hangs: its SSH endpoint accepts and says nothing.
    pub responsive: bool,
    /// True when a power cycle does not cure a hung guest.
    pub broken: bool,
    /// True when an accepted `os-stop` never completes.
    pub stop_hangs: bool,
    /// True when actions are refused with 409 "is locked".
    pub locked: bool,
}
