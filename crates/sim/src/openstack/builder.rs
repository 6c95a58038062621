//! Configuration of an [`OpenStackSim`]: account, catalog shape, timings, security groups and
//! servers; [`OpenStackBuilder::start`] binds the listeners.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::model::{GroupRule, IdentityApi, Interface, SecurityGroup, Service, VmState};
use super::servers::{ServerRec, Timing};
use super::state::{
    resolve, Account, AppCred, CatalogEntry, Config, GroupRec, Listener, RuleRec, World,
};
use super::{http, keystone, OpenStackSim};
use crate::faults::Faults;
use crate::ids::{hex32, uuid4};
use crate::server::Server;
use crate::ssh;

/// A server to create at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    id: String,
    name: String,
    vm_state: VmState,
    fixed_ipv4: Option<String>,
    floating_ipv4: Option<String>,
    ipv6: Option<String>,
    groups: Vec<String>,
    responsive: bool,
}

impl ServerSpec {
    /// An `ACTIVE` server with a fresh UUID, a responsive guest, no address and no group.
    pub fn new(name: &str) -> ServerSpec {
        ServerSpec {
            id: uuid4(),
            name: name.to_owned(),
            vm_state: VmState::Active,
            fixed_ipv4: None,
            floating_ipv4: None,
            ipv6: None,
            groups: Vec::new(),
            responsive: true,
        }
    }

    /// The server's id (generated unless [`ServerSpec::with_id`] set one).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Replaces the generated id.
    pub fn with_id(mut self, id: &str) -> ServerSpec {
        self.id = id.to_owned();
        self
    }

    /// The fixed IPv4 address on the server's network (`addresses.private`, type `fixed`).
    pub fn fixed_ipv4(mut self, ip: &str) -> ServerSpec {
        self.fixed_ipv4 = Some(ip.to_owned());
        self
    }

    /// A floating IPv4 address (type `floating`).
    pub fn floating_ipv4(mut self, ip: &str) -> ServerSpec {
        self.floating_ipv4 = Some(ip.to_owned());
        self
    }

    /// A fixed IPv6 address.
    pub fn ipv6(mut self, ip: &str) -> ServerSpec {
        self.ipv6 = Some(ip.to_owned());
        self
    }

    /// Puts the server's port in a security group, given by id or by a name that is unique.
    pub fn security_group(mut self, id_or_name: &str) -> ServerSpec {
        self.groups.push(id_or_name.to_owned());
        self
    }

    /// The settled `vm_state` to start in (default `Active`).
    pub fn state(mut self, vm_state: VmState) -> ServerSpec {
        self.vm_state = vm_state;
        self
    }

    /// Starts with a hung guest (its SSH endpoint silent) until a power cycle.
    pub fn hung(mut self) -> ServerSpec {
        self.responsive = false;
        self
    }
}

/// Configuration of an [`OpenStackSim`]. Defaults: Identity v3, one region `RegionOne`, domain
/// `default`/`Default`, project `demo` and user `demo`/`demopw` with random ids, no application
/// credential, 1 h tokens, 1 s for each power task, a rule quota of 100, a `default` security
/// group, SSH endpoints on.
#[derive(Clone, Debug)]
pub struct OpenStackBuilder {
    identity: IdentityApi,
    regions: Vec<String>,
    domain: (String, String),
    project: (String, String),
    user: (String, String, String),
    app_creds: Vec<AppCred>,
    token_lifetime: Duration,
    timing: Timing,
    rule_quota: usize,
    groups: Vec<SecurityGroup>,
    servers: Vec<ServerSpec>,
    ssh_endpoints: bool,
}

impl Default for OpenStackBuilder {
    fn default() -> OpenStackBuilder {
        let default = SecurityGroup::new("default");
        let own = default.id.clone();
        let default = SecurityGroup {
            description: "Default security group".to_owned(),
            ..default
        }
        .rule(
            GroupRule::egress_any("IPv4")
                .with_remote_group(&own)
                .with_direction("ingress"),
        )
        .rule(
            GroupRule::egress_any("IPv6")
                .with_remote_group(&own)
                .with_direction("ingress"),
        );
        OpenStackBuilder {
            identity: IdentityApi::V3,
            regions: vec!["RegionOne".to_owned()],
            domain: ("default".to_owned(), "Default".to_owned()),
            project: (hex32(), "demo".to_owned()),
            user: (hex32(), "demo".to_owned(), "demopw".to_owned()),
            app_creds: Vec::new(),
            token_lifetime: Duration::from_secs(3600),
            timing: Timing {
                stop: Duration::from_secs(1),
                start: Duration::from_secs(1),
                reboot: Duration::from_secs(1),
            },
            rule_quota: 100,
            groups: vec![default],
            servers: Vec::new(),
            ssh_endpoints: true,
        }
    }
}

impl GroupRule {
    fn with_direction(mut self, direction: &str) -> GroupRule {
        self.direction = direction.to_owned();
        self
    }
}

impl OpenStackBuilder {
    /// Which Keystone API to serve (default [`IdentityApi::V3`]).
    pub fn identity(mut self, api: IdentityApi) -> Self {
        self.identity = api;
        self
    }

    /// The regions of the catalog (default `["RegionOne"]`). Each region gets its own Neutron and
    /// Nova listeners, all serving the one project's groups and servers.
    pub fn regions(mut self, regions: &[&str]) -> Self {
        if !regions.is_empty() {
            self.regions = regions.iter().map(|r| (*r).to_owned()).collect();
        }
        self
    }

    /// The domain of the user and the project.
    pub fn domain(mut self, id: &str, name: &str) -> Self {
        self.domain = (id.to_owned(), name.to_owned());
        self
    }

    /// The project (tenant) the tokens are scoped to.
    pub fn project(mut self, id: &str, name: &str) -> Self {
        self.project = (id.to_owned(), name.to_owned());
        self
    }

    /// The user and its password (v2.0: the `username`, an e-mail on SkyAtlas).
    pub fn user(mut self, id: &str, name: &str, password: &str) -> Self {
        self.user = (id.to_owned(), name.to_owned(), password.to_owned());
        self
    }

    /// Adds an application credential of the user (restricted, scoped to the project).
    pub fn application_credential(mut self, id: &str, name: &str, secret: &str) -> Self {
        self.app_creds.push(AppCred {
            id: id.to_owned(),
            name: name.to_owned(),
            secret: secret.to_owned(),
        });
        self
    }

    /// Lifetime of issued tokens (default 1 h, as Keystone's).
    pub fn token_lifetime(mut self, d: Duration) -> Self {
        self.token_lifetime = d;
        self
    }

    /// How long `os-stop`, `os-start` and a reboot take once accepted (default 1 s each; a reboot
    /// spends half its time in each of its two task states).
    pub fn task_delays(mut self, stop: Duration, start: Duration, reboot: Duration) -> Self {
        self.timing = Timing {
            stop,
            start,
            reboot,
        };
        self
    }

    /// The project's security group rule quota (default 100, Neutron's), counting every rule of
    /// every group, the default group's included.
    pub fn rule_quota(mut self, n: usize) -> Self {
        self.rule_quota = n;
        self
    }

    /// Adds a security group (a later one with the same id replaces it; names may repeat).
    pub fn security_group(mut self, group: SecurityGroup) -> Self {
        self.groups.retain(|g| g.id != group.id);
        self.groups.push(group);
        self
    }

    /// Adds a server (a later one with the same id replaces it).
    pub fn server(mut self, server: ServerSpec) -> Self {
        self.servers.retain(|s| s.id != server.id);
        self.servers.push(server);
        self
    }

    /// Whether every server gets a fake SSH endpoint (default on).
    pub fn ssh_endpoints(mut self, on: bool) -> Self {
        self.ssh_endpoints = on;
        self
    }

    /// Binds the listeners on 127.0.0.1 and starts serving: Keystone, then per region a public
    /// and an internal listener for Neutron and for Nova, then one SSH endpoint per server. Fails
    /// on a server whose security group is unknown or names several groups.
    pub async fn start(self) -> io::Result<OpenStackSim> {
        let ssh_on = self.ssh_endpoints;
        let regions = self.regions.clone();
        let world = Arc::new(Mutex::new(self.into_world()?));
        let server_ids: Vec<String> = lock(&world).servers.keys().cloned().collect();

        let identity = bind(&world, Service::Identity, "", Interface::Public).await?;
        let base = format!("http://{}", identity.addr());
        let mut services = Vec::new();
        let mut endpoints = Vec::new();
        {
            let mut w = lock(&world);
            w.identity_base = base.clone();
            let auth = keystone::auth_url(&w);
            for region in &regions {
                for interface in [Interface::Public, Interface::Internal, Interface::Admin] {
                    endpoints.push(entry(Service::Identity, region, interface, auth.clone()));
                }
            }
        }
        let project = lock(&world).account.project_id.clone();
        let nova_prefix = match lock(&world).cfg.identity {
            IdentityApi::V3 => "v2.1",
            IdentityApi::V2 => "v2",
        };
        for region in &regions {
            for service in [Service::Network, Service::Compute] {
                for interface in [Interface::Public, Interface::Internal] {
                    let server = bind(&world, service, region, interface).await?;
                    let url = match service {
                        Service::Compute => {
                            format!("http://{}/{nova_prefix}/{project}", server.addr())
                        }
                        _ => format!("http://{}/", server.addr()),
                    };
                    endpoints.push(entry(service, region, interface, url));
                    services.push(server);
                }
            }
        }
        lock(&world).endpoints = endpoints;

        let ssh = if ssh_on {
            let judged = Arc::clone(&world);
            ssh::start_endpoints(server_ids, move |id: &String| {
                super::access::accept(&mut lock(&judged), id, tokio::time::Instant::now())
            })
            .await?
        } else {
            BTreeMap::new()
        };
        Ok(OpenStackSim {
            identity,
            services,
            ssh,
            world,
        })
    }

    fn into_world(self) -> io::Result<World> {
        let now = SystemTime::now();
        let created = now
            .checked_sub(Duration::from_secs(86_400 * 30))
            .unwrap_or(now);
        let mut attr = 0u64;
        let mut groups = BTreeMap::new();
        for g in self.groups {
            attr += 1;
            let mut rules = BTreeMap::new();
            for rule in g.rules {
                attr += 1;
                let rec = RuleRec {
                    rule,
                    created,
                    standard_attr_id: attr,
                };
                rules.insert(rec.rule.id.clone(), rec);
            }
            let rec = GroupRec {
                name: g.name,
                description: g.description,
                revision: 1 + rules.len() as u64,
                rules,
                created,
                updated: created,
                standard_attr_id: attr,
            };
            groups.insert(g.id, rec);
        }
        let mut servers = BTreeMap::new();
        for (n, s) in self.servers.into_iter().enumerate() {
            let mut ids = Vec::new();
            for key in &s.groups {
                ids.push(resolve(&groups, key, |g| &g.name).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("server {}: no single security group {key:?}", s.name),
                    )
                })?);
            }
            let step = Duration::from_secs(60 * u64::try_from(n).unwrap_or(0));
            let rec = ServerRec {
                name: s.name,
                vm_state: s.vm_state,
                power_state: s.vm_state.power_state(),
                task: None,
                raw_task: None,
                fixed_ipv4: s.fixed_ipv4,
                floating_ipv4: s.floating_ipv4,
                ipv6: s.ipv6,
                groups: ids,
                responsive: s.responsive,
                broken: false,
                stop_hangs: false,
                locked: false,
                cold_since_hang: false,
                created: created.checked_add(step).unwrap_or(created),
                updated: created,
                mac: format!(
                    "fa:16:3e:{:02x}:{:02x}:{:02x}",
                    n / 256 % 256,
                    n % 256,
                    0x10
                ),
            };
            servers.insert(s.id, rec);
        }
        let (project_id, project_name) = self.project;
        let (user_id, user_name, password) = self.user;
        Ok(World {
            cfg: Config {
                identity: self.identity,
                token_lifetime: self.token_lifetime,
                timing: self.timing,
                regions: self.regions,
            },
            account: Account {
                domain_id: self.domain.0,
                domain_name: self.domain.1,
                project_id,
                project_name,
                user_id,
                user_name,
                password,
                app_creds: self.app_creds,
                roles: vec![
                    (hex32(), "reader".to_owned()),
                    (hex32(), "member".to_owned()),
                ],
            },
            identity_base: String::new(),
            endpoints: Vec::new(),
            service_ids: [Service::Identity, Service::Network, Service::Compute]
                .into_iter()
                .map(|s| (s, hex32()))
                .collect(),
            tokens: HashMap::new(),
            tokens_issued: 0,
            groups,
            rule_quota: self.rule_quota,
            servers,
            client_ip: None,
            ssh_conns: HashMap::new(),
            faults: Faults::new(),
            delay: Duration::ZERO,
            log: Vec::new(),
            actions: Vec::new(),
            next_attr_id: attr,
        })
    }
}

fn entry(service: Service, region: &str, interface: Interface, url: String) -> CatalogEntry {
    CatalogEntry {
        listener: Listener {
            service,
            region: region.to_owned(),
            interface,
        },
        url,
        id: hex32(),
    }
}

pub(crate) fn lock(world: &Mutex<World>) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|e| e.into_inner())
}

async fn bind(
    world: &Arc<Mutex<World>>,
    service: Service,
    region: &str,
    interface: Interface,
) -> io::Result<Server> {
    let listener = Arc::new(Listener {
        service,
        region: region.to_owned(),
        interface,
    });
    let world = Arc::clone(world);
    Server::start_replying(move |req| http::handle(Arc::clone(&world), Arc::clone(&listener), req))
        .await
}
