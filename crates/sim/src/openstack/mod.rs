//! An in-process imitation of an OpenStack cloud (Keystone, Neutron, Nova), quirks included, on
//! 127.0.0.1.
//!
//! Built from `reference/openstack-salt.md` (its errata win) and the real exchanges recorded in
//! `reference/openstack-observed/` (status codes, headers, bodies and error messages are theirs).
//! It shares no types with dynwall's client.
//!
//! # Shape
//!
//! Like a real deployment, each service listens on its own port: Keystone on one listener, and
//! per region a public and an internal listener for Neutron and for Nova (all regions serve the
//! same project). The catalog points at them: Neutron's URL is unversioned
//! (`http://127.0.0.1:P/`), Nova's is versioned with the project (`http://127.0.0.1:Q/v2.1/<project>`,
//! or the legacy `/v2/<tenant>` on a v2.0 cloud; both paths are served). Every server gets a fake
//! SSH endpoint of its own ([`OpenStackSim::ssh_addr`]).
//!
//! # Example
//!
//! ```no_run
//! # async fn cloud() -> std::io::Result<()> {
//! use dynwall_sim::openstack::{GroupRule, OpenStackSim, SecurityGroup, ServerSpec};
//!
//! let sg = SecurityGroup::new("ssh-from-home")
//!     .rule(GroupRule::ingress("tcp", 22, "203.0.113.7/32").with_description("dynwall"));
//! let sim = OpenStackSim::builder()
//!     .application_credential("4f1a…", "dynwall", "s3cret")
//!     .security_group(sg.clone())
//!     .server(ServerSpec::new("vps1").floating_ipv4("203.0.113.5").security_group(&sg.id))
//!     .start()
//!     .await?;
//! sim.set_client_ip("203.0.113.7"); // the home address the fake sshd sees
//! let auth_url = sim.auth_url(); // http://127.0.0.1:<port>/v3
//! let probe = sim.ssh_addr("vps1"); // where the probe connects instead of 203.0.113.5:22
//! # let _ = (auth_url, probe);
//! # Ok(())
//! # }
//! ```
//!
//! # What it imitates
//!
//! - Keystone v3 `POST /v3/auth/tokens`: password (user by id or name + domain; project scope by
//!   id or name + domain, or none, which scopes to the default project) and application
//!   credentials (by id, or name + user); 201 with the token only in `X-Subject-Token`, the body
//!   with `expires_at` (whole seconds, `.000000Z`), roles and the catalog (`identity`, `network`,
//!   `compute`; public, internal, and admin for Keystone). A wrong password or secret, an unknown
//!   user name, project or domain are the generic 401 with `WWW-Authenticate`; an unknown
//!   application credential (or unknown user in a by-name lookup) is 404; an application credential
//!   with a scope is 401 with Keystone's own message; malformed bodies are 400 with Keystone's
//!   wording. `GET`/`HEAD`/`DELETE /v3/auth/tokens` validate and revoke (404 "Failed to validate
//!   token", "Could not recognize Fernet token").
//! - Keystone v2.0 only ([`IdentityApi::V2`], SkyAtlas): `POST /v2.0/tokens` with
//!   `passwordCredentials` (or `token`) and `tenantId`/`tenantName`, 200 with `access.token.id`,
//!   `expires`, `tenant` and a `serviceCatalog` of `publicURL`/`internalURL` per region; no tenant
//!   gives an unscoped token with an empty catalog, useless on the services; `/v3` is 404.
//! - keystonemiddleware in front of Neutron and Nova: a missing, unknown, expired, revoked or
//!   unscoped token is 401 `{"error": {…}}` with `WWW-Authenticate: Keystone uri="…"`.
//! - Neutron security groups (names not unique; a `default` group always exists; a new group
//!   comes with two egress rules) and rules: list with exact-match filters on any attribute
//!   (several values of one key: any) and `fields`, show, create, delete. Create applies Neutron's
//!   server side: attribute conversion (protocol names lower-cased, numbers as text, numeric-string
//!   ports, a bare address given `/32` or `/128`, host bits kept), quota first (409 `OverQuota`),
//!   then `SecurityGroupMultipleRemoteEntites`, port checks, the ethertype/prefix family check
//!   (400 `SecurityGroupRuleParameterConflict`), group lookup (404), and duplicates (409
//!   `SecurityGroupRuleExists` naming the existing rule's id; `description` is not part of the key,
//!   `tcp` ≡ `6`, no prefix ≡ `0.0.0.0/0` ≡ `::/0`). TCP/UDP `1`–`65535` is stored as no range.
//!   Delete is 204, then 404 `SecurityGroupRuleNotFound`. `PUT` on a rule is 400 "Cannot update
//!   read-only attribute …", or 500 when only the description is sent.
//! - Nova at microversion 2.1 (`OpenStack-API-Version`/`X-OpenStack-Nova-API-Version` read and
//!   echoed, `latest` is 2.104, above is 406, a malformed one 400): `GET /servers`,
//!   `/servers/detail` (newest first; `name` is a search, `status` exact) and `/servers/{id}`
//!   with `status`, `OS-EXT-STS:*`, `addresses` (fixed and floating IPv4, fixed IPv6) and
//!   `security_groups` (names); `POST /servers/{id}/action` with `os-stop`, `os-start` and
//!   `reboot` `SOFT`/`HARD`, validated on `vm_state` then `task_state` like Nova (`Cannot 'stop'
//!   instance <id> while it is in vm_state stopped`, `… task_state powering-off`, `Instance <id>
//!   is locked`), 202 with no body when accepted. The task then runs on the simulator's clock:
//!   `powering-off` (status still `ACTIVE`) → `SHUTOFF`; `powering-on` (status `SHUTOFF`) →
//!   `ACTIVE`; `rebooting_hard` → `reboot_started_hard` → `ACTIVE` (from `SHUTOFF` too, which
//!   shows `SHUTOFF` until done); `rebooting` → `reboot_started` → `ACTIVE`. A HARD reboot may
//!   interrupt a soft one but not a stop or another HARD reboot. A URL with another project is 400
//!   "Malformed request URL …"; an unknown server is 404 ("could not be found" on a read, "has no
//!   mapping to a cell" on an action).
//! - A guest that hangs ([`OpenStackSim::set_responsive`]) keeps the server `ACTIVE` while its SSH
//!   endpoint accepts and says nothing; a completed stop followed by a start, or a reboot, cures it
//!   unless the server is broken ([`OpenStackSim::set_broken`]).
//!
//! Request processing: routing → token check (keystonemiddleware; Keystone checks its own) →
//! injected fault → handler. The configured delay is applied after processing, before the answer.
//!
//! # Invented details
//!
//! Where the reference and the recordings are silent the simulator picks a plausible answer:
//! the `HTTPBadRequest` messages for a missing or invalid attribute, `[x] is invalid attribute for
//! filtering` for an unknown filter, Neutron's 404/405 bodies for unknown routes and methods, the
//! text of `SecurityGroupInvalidPortValue`, `…InvalidIcmpValue`, `…MissingIcmpType`,
//! `…InvalidProtocolForPort`; Nova's 404 for unknown routes; no microversion headers on the legacy
//! `/v2` path; the v2.0 message for a body without `passwordCredentials` or `token`; the bodies of
//! injected faults (the service's JSON envelope, an HTML load-balancer page for 502–504). A revoked
//! token is refused by the services at once (a real cloud may accept it for up to its 300 s
//! middleware cache). A soft reboot cures a hung guest (libvirt falls back to a hard reboot when
//! the guest ignores it). Key order in JSON bodies is not imitated. Security groups are created
//! only through the builder and [`OpenStackSim::add_group`].

mod access;
mod builder;
mod http;
mod keystone;
mod model;
mod neutron;
mod nova;
mod rules;
mod servers;
mod state;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub use builder::{OpenStackBuilder, ServerSpec};
pub use model::{
    Fault, GroupRule, IdentityApi, Interface, Op, Request, SecurityGroup, Server, Service, VmState,
};

use crate::server::Server as Listening;
use state::{GroupRec, RuleRec, World};

/// A running OpenStack simulator. Dropping it (or [`OpenStackSim::shutdown`]) stops every
/// listener and SSH endpoint.
///
/// Hooks that name a server take its id or its name (when the name is unique) and return false
/// when there is no such server; hooks that name a group do the same with groups.
pub struct OpenStackSim {
    identity: Listening,
    services: Vec<Listening>,
    ssh: BTreeMap<String, Listening>,
    world: Arc<Mutex<World>>,
}

impl OpenStackSim {
    /// Starts configuring a simulator.
    pub fn builder() -> OpenStackBuilder {
        OpenStackBuilder::default()
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        builder::lock(&self.world)
    }

    // -----------------------------------------------------------------------------------------
    // Where things are

    /// What a client configures as `auth_url`: `http://127.0.0.1:<port>/v3`, or `…/v2.0` for a
    /// v2.0 cloud.
    pub fn auth_url(&self) -> String {
        keystone::auth_url(&self.lock())
    }

    /// Keystone's listener.
    pub fn identity_addr(&self) -> SocketAddr {
        self.identity.addr()
    }

    /// The catalog URL of `service` in `region` for `interface` (`None` when the catalog has no
    /// such endpoint), e.g. the public `network` URL `http://127.0.0.1:P/`.
    pub fn endpoint_url(
        &self,
        service: Service,
        region: &str,
        interface: Interface,
    ) -> Option<String> {
        self.lock()
            .endpoints
            .iter()
            .find(|e| {
                e.listener.service == service
                    && e.listener.region == region
                    && e.listener.interface == interface
            })
            .map(|e| e.url.clone())
    }

    /// The project (tenant) id.
    pub fn project_id(&self) -> String {
        self.lock().account.project_id.clone()
    }

    /// The user id.
    pub fn user_id(&self) -> String {
        self.lock().account.user_id.clone()
    }

    // -----------------------------------------------------------------------------------------
    // Tokens

    /// Number of tokens issued (v3 and v2.0).
    pub fn tokens_issued(&self) -> usize {
        self.lock().tokens_issued
    }

    /// The text of every token issued so far (tests check that none is ever logged).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().tokens.keys().cloned().collect()
    }

    /// Revokes every token issued so far: the services answer 401 from now on.
    pub fn revoke_tokens(&self) {
        for t in self.lock().tokens.values_mut() {
            t.lease.revoked = true;
        }
    }

    /// Revokes one token; false if it was never issued.
    pub fn revoke_token(&self, token: &str) -> bool {
        match self.lock().tokens.get_mut(token) {
            Some(t) => {
                t.lease.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Deletes an application credential: authenticating with it is 404 from now on and the
    /// tokens it produced are revoked. False if unknown.
    pub fn delete_application_credential(&self, id: &str) -> bool {
        let mut w = self.lock();
        let before = w.account.app_creds.len();
        w.account.app_creds.retain(|c| c.id != id);
        if w.account.app_creds.len() == before {
            return false;
        }
        for t in w.tokens.values_mut() {
            if t.app_cred.as_deref() == Some(id) {
                t.lease.revoked = true;
            }
        }
        true
    }

    // -----------------------------------------------------------------------------------------
    // Neutron

    /// Every security group with its rules, in id order.
    pub fn groups(&self) -> Vec<SecurityGroup> {
        let w = self.lock();
        w.groups
            .iter()
            .map(|(id, g)| group_snapshot(id, g))
            .collect()
    }

    /// One security group by id or unique name.
    pub fn group(&self, id_or_name: &str) -> Option<SecurityGroup> {
        let w = self.lock();
        let id = w.group_id(id_or_name)?;
        w.groups.get(&id).map(|g| group_snapshot(&id, g))
    }

    /// Adds a security group (its rules stored as given) and returns its id. Names may repeat.
    pub fn add_group(&self, group: SecurityGroup) -> String {
        let mut w = self.lock();
        let now = SystemTime::now();
        let attr = w.next_attr();
        let mut rec = GroupRec {
            name: group.name,
            description: group.description,
            rules: BTreeMap::new(),
            revision: 1,
            created: now,
            updated: now,
            standard_attr_id: attr,
        };
        for rule in group.rules {
            let attr = w.next_attr();
            rec.rules.insert(rule.id.clone(), stored(rule, now, attr));
        }
        w.groups.insert(group.id.clone(), rec);
        group.id
    }

    /// Adds a rule to a group as a user would through the dashboard: Neutron's validation and
    /// duplicate check apply, the quota does not. Returns the new rule's id, or the Neutron error
    /// message.
    pub fn add_rule(&self, group: &str, rule: GroupRule) -> Result<String, String> {
        let mut w = self.lock();
        let id = w
            .group_id(group)
            .ok_or_else(|| format!("Security group {group} does not exist"))?;
        w.create_rule(&id, rule, false).map_err(|e| e.message)
    }

    /// Replaces every rule of a group, stored exactly as given (no validation): a hand edit.
    pub fn set_rules(&self, group: &str, rules: Vec<GroupRule>) -> bool {
        let mut w = self.lock();
        let Some(id) = w.group_id(group) else {
            return false;
        };
        let now = SystemTime::now();
        let mut recs = BTreeMap::new();
        for rule in rules {
            let attr = w.next_attr();
            recs.insert(rule.id.clone(), stored(rule, now, attr));
        }
        match w.groups.get_mut(&id) {
            Some(g) => {
                g.rules = recs;
                g.revision += 1;
                g.updated = now;
                true
            }
            None => false,
        }
    }

    /// Deletes rule `id` behind the client's back; false if no group holds it.
    pub fn remove_rule(&self, id: &str) -> bool {
        self.lock().delete_rule(id)
    }

    /// Changes the project's rule quota (existing rules stay).
    pub fn set_rule_quota(&self, n: usize) {
        self.lock().rule_quota = n;
    }

    /// Number of rules in the project, every group counted.
    pub fn rule_count(&self) -> usize {
        self.lock().rule_count()
    }

    // -----------------------------------------------------------------------------------------
    // Nova

    /// A snapshot of one server, transitions settled.
    pub fn server(&self, id_or_name: &str) -> Option<Server> {
        let now = Instant::now();
        let mut w = self.lock();
        let id = w.server_id(id_or_name)?;
        let timing = w.cfg.timing;
        w.servers.get_mut(&id).map(|s| {
            s.settle(now, &timing);
            s.snapshot(&id)
        })
    }

    /// Snapshots of every server, in id order.
    pub fn servers(&self) -> Vec<Server> {
        let mut w = self.lock();
        w.settle_servers(Instant::now());
        w.servers.iter().map(|(id, s)| s.snapshot(id)).collect()
    }

    fn with_server(&self, key: &str, f: impl FnOnce(&mut servers::ServerRec)) -> bool {
        let now = Instant::now();
        let mut w = self.lock();
        let Some(id) = w.server_id(key) else {
            return false;
        };
        let timing = w.cfg.timing;
        match w.servers.get_mut(&id) {
            Some(s) => {
                // What already happened did happen (a completed stop may have cured a hang).
                s.settle(now, &timing);
                f(s);
                true
            }
            None => false,
        }
    }

    /// Puts a server in `vm_state` at once, settled, with no task in flight.
    pub fn set_vm_state(&self, server: &str, vm_state: VmState) -> bool {
        self.with_server(server, |s| s.set_vm_state(vm_state))
    }

    /// Shows `task_state` as given (e.g. `"image_snapshot"`) until changed; it never completes by
    /// itself and actions are refused as Nova refuses them. `None` clears it.
    pub fn set_task_state(&self, server: &str, task_state: Option<&str>) -> bool {
        self.with_server(server, |s| {
            s.task = None;
            s.raw_task = task_state.map(str::to_owned);
        })
    }

    /// Makes the guest hang (`false`: `ACTIVE`, SSH endpoint silent) or recover (`true`). A hung
    /// guest recovers by itself when a stop completes and the server is started again, or when a
    /// reboot completes, unless it is broken.
    pub fn set_responsive(&self, server: &str, responsive: bool) -> bool {
        self.with_server(server, |s| s.set_responsive(responsive))
    }

    /// Marks a server broken (`true`: its guest hangs now and power cycles no longer cure it;
    /// only [`OpenStackSim::set_responsive`] does) or repairable (`false`, a current hang stays).
    pub fn set_broken(&self, server: &str, broken: bool) -> bool {
        self.with_server(server, |s| {
            s.broken = broken;
            if broken {
                s.set_responsive(false);
            }
        })
    }

    /// Makes an accepted `os-stop` hang in `powering-off` (status `ACTIVE`) for as long as this is
    /// set; clearing it lets a hung stop complete at once.
    pub fn set_stop_hangs(&self, server: &str, hangs: bool) -> bool {
        self.with_server(server, |s| s.stop_hangs = hangs)
    }

    /// Locks a server: every action is 409 `Instance <id> is locked`.
    pub fn set_locked(&self, server: &str, locked: bool) -> bool {
        self.with_server(server, |s| s.locked = locked)
    }

    /// Moves a server's port to other security groups (ids).
    pub fn set_server_groups(&self, server: &str, group_ids: &[&str]) -> bool {
        self.with_server(server, |s| {
            s.groups = group_ids.iter().map(|g| (*g).to_owned()).collect();
        })
    }

    /// Completes every task in flight now (a hung stop excepted), as if its time had passed.
    pub fn finish_tasks(&self) {
        let now = Instant::now();
        for s in self.lock().servers.values_mut() {
            s.finish(now);
        }
    }

    /// Deletes a server behind the client's back (its SSH endpoint then closes every connection).
    pub fn remove_server(&self, server: &str) -> bool {
        let mut w = self.lock();
        match w.server_id(server) {
            Some(id) => w.servers.remove(&id).is_some(),
            None => false,
        }
    }

    /// `(server id, action)` of every accepted action in arrival order; actions are `"os-stop"`,
    /// `"os-start"`, `"reboot HARD"`, `"reboot SOFT"`. Refused and injected requests are not listed.
    pub fn actions(&self) -> Vec<(String, String)> {
        self.lock().actions.clone()
    }

    // -----------------------------------------------------------------------------------------
    // SSH

    /// Sets the public address our SSH connections appear to come from, checked against the
    /// ingress rules of the server's security groups. Until it is set every group admits; an
    /// address that does not parse is admitted by none.
    pub fn set_client_ip(&self, ip: &str) {
        self.lock().client_ip = Some(ip.to_owned());
    }

    /// The SSH endpoint of a server (127.0.0.1, ephemeral port); `None` when endpoints are off or
    /// the server was not given to the builder. A connection gets
    /// `SSH-2.0-OpenSSH_9.6 dynwall-sim\r\n` iff, when accepted, the server is `ACTIVE` with no
    /// reboot or stop taking its guest down, the guest is responsive, and an ingress rule of its
    /// groups admits the client address to TCP 22. A server that is not running closes the
    /// connection at once; a hung guest or a dropping firewall holds it open in silence.
    pub fn ssh_addr(&self, server: &str) -> Option<SocketAddr> {
        let id = self
            .lock()
            .server_id(server)
            .unwrap_or_else(|| server.to_owned());
        self.ssh.get(&id).map(Listening::addr)
    }

    /// Connections accepted so far on a server's SSH endpoint, whatever they got.
    pub fn ssh_connections(&self, server: &str) -> usize {
        let w = self.lock();
        let id = w.server_id(server).unwrap_or_else(|| server.to_owned());
        w.ssh_conns.get(&id).copied().unwrap_or(0)
    }

    // -----------------------------------------------------------------------------------------
    // Faults and the log

    /// The next `n` requests of `op` (token requests included when `op` is [`Op::Token`]) get
    /// `fault`; checked before [`OpenStackSim::inject_any`]. Replaces a pending fault of `op`;
    /// `n == 0` clears it. Requests refused by the token check do not consume it.
    pub fn inject(&self, op: Op, n: usize, fault: Fault) {
        self.lock().faults.set(op, n, fault);
    }

    /// The next `n` requests of any operation but [`Op::Token`] get `fault`. `n == 0` clears it.
    pub fn inject_any(&self, n: usize, fault: Fault) {
        self.lock().faults.set_any(n, fault);
    }

    /// Delays every answer by `d` (a slow cloud). Zero turns it off.
    pub fn set_delay(&self, d: Duration) {
        self.lock().delay = d;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().log.clone()
    }

    /// Requests of `op` so far, whatever the answer.
    pub fn calls(&self, op: Op) -> usize {
        self.lock().log.iter().filter(|r| r.op == op).count()
    }

    /// Stops every listener and SSH endpoint and waits until they no longer accept connections
    /// and every connection is closed.
    pub async fn shutdown(self) {
        let OpenStackSim {
            identity,
            services,
            ssh,
            ..
        } = self;
        identity.shutdown().await;
        for s in services {
            s.shutdown().await;
        }
        for s in ssh.into_values() {
            s.shutdown().await;
        }
    }
}

fn stored(rule: GroupRule, now: SystemTime, attr: u64) -> RuleRec {
    RuleRec {
        rule,
        created: now,
        standard_attr_id: attr,
    }
}

fn group_snapshot(id: &str, g: &GroupRec) -> SecurityGroup {
    SecurityGroup {
        id: id.to_owned(),
        name: g.name.clone(),
        description: g.description.clone(),
        rules: g.rules.values().map(|r| r.rule.clone()).collect(),
    }
}
