//! An in-process imitation of the WebARENA Indigo REST API, quirks included, on 127.0.0.1.
//!
//! The simulator speaks the wire format documented in `reference/indigo-api.md` and shares no
//! types with the dynwall client (it lives in another crate), so a misunderstanding of the API cannot
//! hide in a type both sides use.
//!
//! # What it imitates
//!
//! - `POST /oauth/v1/accesstokens` (201, all values strings) and bearer tokens that expire.
//! - `GET nw/getfirewalllist`, `GET nw/gettemplate/{id}` (bare array of per-rule objects with
//!   `direction`, order differing from the stored order and varying between reads, PHP-escaped `\/`),
//!   `PUT nw/updatefirewall` (wholesale replacement of rules and, when `instances` is sent,
//!   of the assignments; answers `sucessCode` F6004).
//! - `GET vm/getinstancelist` and `POST vm/instance/statusupdate` with timed power transitions
//!   (`Stopping`/`Starting` until the configured delay has passed, computed lazily).
//! - Optionally ([`SimBuilder::ssh_endpoints`]) one loopback SSH endpoint per instance that
//!   sends a version line only while the instance is `Running`, its guest responsive and its
//!   firewall templates admit the client address ([`IndigoSim::set_client_ip`]) to TCP port 22.
//! - The gateway: `X-Quota-*`, `X-Request-Id` and CORS headers on every response, a fixed-window
//!   quota and a spike-arrest limiter answering 429 with the gateway's body, 401 for bad tokens.
//!
//! Request processing order: spike arrest → quota (every request counts, token requests and
//! unknown routes included) → routing (404/405) → bearer token (401) → injected fault → handler →
//! injected malformation. The configured delay is applied after processing, before the answer is
//! sent, so rate limits see arrival times.
//!
//! # Invented details
//!
//! Where the reference marks something unknown, the simulator picks a plausible answer: the 401
//! bodies, the `Stopping`/`Starting` status strings, the forcestop/reset/destroy success bodies
//! (I20010–I20012), the business error codes F60010–F60015, I10001, I10002, I10020, I10030 and
//! S10001, and the answer to an injected 4xx (I10037 "License Failed To Update.").

mod firewall;
mod routes;
mod state;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::server::Server;
use super::ssh;
use state::State;

/// One firewall rule as the simulator stores it (the four strings of the wire format).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SimRule {
    /// The JSON `"type"` (`Custom`, `HTTP`, `All TCP`, …).
    pub kind: String,
    /// `TCP`, `UDP` or `ICMP`.
    pub protocol: String,
    /// `"22"`, `"1-65535"`, `"All Ports"`, `""`.
    pub port: String,
    /// An address or CIDR as written (`"203.0.113.9"`, `"0.0.0.0/0"`).
    pub source: String,
}

impl SimRule {
    /// A rule from its four wire fields.
    pub fn new(
        kind: impl Into<String>,
        protocol: impl Into<String>,
        port: impl Into<String>,
        source: impl Into<String>,
    ) -> SimRule {
        SimRule {
            kind: kind.into(),
            protocol: protocol.into(),
            port: port.into(),
            source: source.into(),
        }
    }
}

/// Power state of a simulated instance, as `instancestatus` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// `"Running"`.
    Running,
    /// `"Stopped"`.
    Stopped,
    /// `"Stopping"`: a stop is in progress and completes after the stop delay (never when hung).
    Stopping,
    /// `"Starting"`: a start is in progress and completes after the start delay.
    Starting,
    /// `"OS installation In Progress"` (lifecycle `status` `READY`); stays until changed by hand.
    Installing,
}

impl PowerState {
    /// The `instancestatus` string of the instance list.
    pub fn as_wire(self) -> &'static str {
        match self {
            PowerState::Running => "Running",
            PowerState::Stopped => "Stopped",
            PowerState::Stopping => "Stopping",
            PowerState::Starting => "Starting",
            PowerState::Installing => "OS installation In Progress",
        }
    }
}

/// The API operations the simulator tells apart in its counters and fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /oauth/v1/accesstokens`.
    Token,
    /// `GET nw/getfirewalllist`.
    FirewallList,
    /// `GET nw/gettemplate/{id}`.
    GetTemplate,
    /// `PUT nw/updatefirewall`.
    UpdateFirewall,
    /// `GET vm/getinstancelist`.
    InstanceList,
    /// `POST vm/instance/statusupdate`.
    StatusUpdate,
    /// Any other path (answered 404).
    Other,
}

/// What `updatefirewall` does to a template's assignments when the request has no `instances` key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AbsentInstances {
    /// Assignments stay as they are.
    #[default]
    Keep,
    /// The template ends up assigned to no instance.
    Clear,
}

/// Under which key an I10025 "shutdown initiated" answer carries its code (both are seen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopCodeKey {
    /// `{"success":false,"errorCode":"I10025",…}`.
    ErrorCode,
    /// `{"success":false,"sucessCode":"I10025",…}`.
    SucessCode,
}

/// A token the client cannot use ([`IndigoSim::issue_bad_tokens`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BadToken {
    /// CR LF inside the token: it cannot be put in a header.
    LineBreak,
    /// A token this many bytes long: a header holding it is refused with 431 beyond 4 KiB.
    Huge(usize),
}

/// One request as the simulator saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// HTTP method (`"GET"`, `"PUT"`, …).
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// The operation the path names (also for 401/405/429/injected answers).
    pub endpoint: Endpoint,
    /// Status code that was answered.
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
    /// The request body as received (lossy UTF-8).
    pub body: String,
}

/// A snapshot of one firewall template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimTemplate {
    pub id: u64,
    pub name: String,
    /// Inbound rules in stored order.
    pub inbound: Vec<SimRule>,
    /// Outbound rules in stored order.
    pub outbound: Vec<SimRule>,
    /// Ids of the instances the template is assigned to, ascending.
    pub assigned: Vec<u64>,
}

/// A snapshot of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimInstance {
    pub id: u64,
    pub name: String,
    pub ip: String,
    /// Current power state, transitions already settled.
    pub power: PowerState,
    /// True when a stop on this instance never completes.
    pub hung: bool,
    /// False while the guest is hung: its SSH endpoint accepts but never answers.
    pub responsive: bool,
    /// True when a stop/start does not cure a hung guest.
    pub broken: bool,
}

/// A running Indigo simulator. Dropping it (or [`IndigoSim::shutdown`]) stops the server and
/// the SSH endpoints.
pub struct IndigoSim {
    server: Server,
    /// One fake SSH endpoint per instance, when enabled.
    ssh: BTreeMap<u64, Server>,
    state: Arc<Mutex<State>>,
}

impl IndigoSim {
    /// Starts configuring a simulator.
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    /// The bound address (127.0.0.1, ephemeral port).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Base URL to use in place of `https://api.customer.jp`, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests that reached `ep`, whatever the answer (401, 405, 429 and injected faults count).
    pub fn calls(&self, ep: Endpoint) -> usize {
        self.lock().log.iter().filter(|c| c.endpoint == ep).count()
    }

    /// Every request so far, in arrival order.
    pub fn call_log(&self) -> Vec<CallRecord> {
        self.lock().log.clone()
    }

    /// Number of 429 answers (quota, spike arrest and injected).
    pub fn throttled(&self) -> usize {
        self.lock().throttled
    }

    /// Number of access tokens issued.
    pub fn tokens_issued(&self) -> usize {
        self.lock().tokens_issued
    }

    /// The text of every access token issued so far (tests check that none is ever logged).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().tokens.keys().cloned().collect()
    }

    /// A snapshot of template `id`.
    pub fn template(&self, id: u64) -> Option<SimTemplate> {
        self.lock().templates.get(&id).map(|t| SimTemplate {
            id,
            name: t.name.clone(),
            inbound: t.inbound.clone(),
            outbound: t.outbound.clone(),
            assigned: t.assigned.iter().copied().collect(),
        })
    }

    /// Replaces the rules of template `id` as if edited by hand (drift). False if it does not exist.
    pub fn set_rules(&self, id: u64, inbound: Vec<SimRule>, outbound: Vec<SimRule>) -> bool {
        let mut st = self.lock();
        match st.templates.get_mut(&id) {
            Some(t) => {
                t.inbound = inbound;
                t.outbound = outbound;
                t.touch();
                true
            }
            None => false,
        }
    }

    /// Raw request body of every `updatefirewall` that was accepted (200), oldest first.
    pub fn update_bodies(&self) -> Vec<String> {
        self.lock().updates.clone()
    }

    /// Raw request body of the last accepted `updatefirewall`.
    pub fn last_update_body(&self) -> Option<String> {
        self.lock().updates.last().cloned()
    }

    /// A snapshot of instance `id`.
    pub fn instance(&self, id: u64) -> Option<SimInstance> {
        let now = Instant::now();
        let mut st = self.lock();
        let (stop, start) = (st.cfg.stop_delay, st.cfg.start_delay);
        st.instances.get_mut(&id).map(|i| {
            i.settle(now, stop, start);
            SimInstance {
                id,
                name: i.name.clone(),
                ip: i.ip.clone(),
                power: i.power,
                hung: i.hung,
                responsive: i.responsive,
                broken: i.broken,
            }
        })
    }

    /// Forces the power state of instance `id` (`Stopping`/`Starting` begin a timed transition
    /// now). False if it does not exist.
    pub fn set_power(&self, id: u64, state: PowerState) -> bool {
        let now = Instant::now();
        let mut st = self.lock();
        let (stop, start) = (st.cfg.stop_delay, st.cfg.start_delay);
        match st.instances.get_mut(&id) {
            Some(i) => {
                // A transition that already completed did happen (it may have cured a hang).
                i.settle(now, stop, start);
                i.set_power(state, now);
                true
            }
            None => false,
        }
    }

    /// Makes stops of instance `id` hang (they stay `Stopping` until a forcestop) or not. False if
    /// it does not exist.
    pub fn set_hung(&self, id: u64, hung: bool) -> bool {
        let mut st = self.lock();
        match st.instances.get_mut(&id) {
            Some(i) => {
                i.hung = hung;
                true
            }
            None => false,
        }
    }

    /// Makes the guest of instance `id` hang (`false`: its SSH endpoint accepts and stays silent)
    /// or recover (`true`). A hung guest recovers by itself once a stop or forcestop has brought
    /// the instance to `Stopped` and it is `Running` again, unless it is broken
    /// ([`IndigoSim::set_broken`]); a reset does not cure it. Independent of
    /// [`IndigoSim::set_hung`]. False if the instance does not exist.
    pub fn set_responsive(&self, id: u64, responsive: bool) -> bool {
        let mut st = self.lock();
        match st.instances.get_mut(&id) {
            Some(i) => {
                i.set_responsive(responsive);
                true
            }
            None => false,
        }
    }

    /// Marks instance `id` broken (`true`: its guest hangs now and a stop/start no longer cures
    /// it; only [`IndigoSim::set_responsive`] does) or repairable again (`false`, which leaves a
    /// current hang in place). False if the instance does not exist.
    pub fn set_broken(&self, id: u64, broken: bool) -> bool {
        let mut st = self.lock();
        match st.instances.get_mut(&id) {
            Some(i) => {
                i.broken = broken;
                if broken {
                    i.set_responsive(false);
                }
                true
            }
            None => false,
        }
    }

    /// Sets the public address our SSH connections appear to come from, checked against the
    /// inbound rules of the instance's templates. Until it is set every firewall admits; an
    /// address that does not parse is admitted by none.
    pub fn set_client_ip(&self, ip: &str) {
        self.lock().client_ip = Some(ip.to_owned());
    }

    /// The SSH endpoint of instance `id` (127.0.0.1, ephemeral port); `None` when endpoints are
    /// off ([`SimBuilder::ssh_endpoints`]) or the instance was not given to the builder. It stays
    /// bound after the instance is destroyed and then closes every connection.
    pub fn ssh_addr(&self, id: u64) -> Option<SocketAddr> {
        self.ssh.get(&id).map(Server::addr)
    }

    /// Connections accepted so far on the SSH endpoint of instance `id`, whatever they got.
    pub fn ssh_connections(&self, id: u64) -> usize {
        self.lock().ssh_conns.get(&id).copied().unwrap_or(0)
    }

    /// `(instance id, verb)` of every `statusupdate` that took effect (answered 2xx, the I10025
    /// stop included), in arrival order. Refused and fault-injected requests are not listed.
    pub fn power_log(&self) -> Vec<(u64, String)> {
        self.lock().power_log.clone()
    }

    /// Deletes instance `id` behind dynwall's back (gone from the list and all assignments).
    pub fn remove_instance(&self, id: u64) -> bool {
        self.lock().remove_instance(id)
    }

    /// The next `n` requests to any endpoint but the token endpoint answer `status` (with a gateway
    /// body for 5xx/401/429, an I10037 business error for other 4xx). Replaces a pending global
    /// fault; `n == 0` clears it.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.lock().faults.set_any(n, status);
    }

    /// The next `n` requests to `ep` (the token endpoint included) answer `status`; checked before
    /// the global [`IndigoSim::fail_next`] fault.
    pub fn fail_next_on(&self, ep: Endpoint, n: usize, status: u16) {
        self.lock().faults.set(ep, n, status);
    }

    /// The next `n` successful answers of `ep` are cut in half (no longer valid JSON) while
    /// keeping status 200 and `Content-Type: application/json`. The request still takes effect.
    pub fn malformed_next(&self, ep: Endpoint, n: usize) {
        let mut st = self.lock();
        if n == 0 {
            st.malformed.remove(&ep);
        } else {
            st.malformed.insert(ep, n);
        }
    }

    /// The next `n` tokens issued are unusable in the way `kind` says.
    pub fn issue_bad_tokens(&self, n: usize, kind: BadToken) {
        self.lock().bad_tokens = (n > 0).then_some((n, kind));
    }

    /// Makes `X-Quota-Reset` report `at` (e.g. a far-away reset) instead of the window's end;
    /// `None` restores it.
    pub fn set_quota_reset(&self, at: Option<SystemTime>) {
        self.lock().reset_override = at;
    }

    /// Makes `gettemplate` of template `id` answer `json` verbatim (rules the wire format allows
    /// but [`SimRule`] cannot express, such as `"source": null`); `None` restores the stored
    /// template. Updates still replace the stored template.
    pub fn set_template_json(&self, id: u64, json: Option<String>) {
        let mut st = self.lock();
        match json {
            Some(j) => st.raw_templates.insert(id, j),
            None => st.raw_templates.remove(&id),
        };
    }

    /// Delays every answer by `d` (a slow API). Zero turns it off.
    pub fn set_delay(&self, d: Duration) {
        self.lock().delay = d;
    }

    /// Every token issued so far is refused with 401 from now on.
    pub fn expire_tokens(&self) {
        for token in self.lock().tokens.values_mut() {
            token.revoked = true;
        }
    }

    /// Stops the server and the SSH endpoints and waits until they no longer accept connections
    /// and every connection is closed.
    pub async fn shutdown(self) {
        let IndigoSim { server, ssh, .. } = self;
        server.shutdown().await;
        for endpoint in ssh.into_values() {
            endpoint.shutdown().await;
        }
    }
}

/// Configuration of an [`IndigoSim`]; defaults imitate the real API.
#[derive(Clone, Debug)]
pub struct SimBuilder {
    key: String,
    secret: String,
    quota_allowed: u32,
    quota_window: Duration,
    spike_gap: Option<Duration>,
    token_lifetime: Duration,
    stop_delay: Duration,
    start_delay: Duration,
    absent: AbsentInstances,
    stop_i10025: Option<StopCodeKey>,
    ssh_endpoints: bool,
    instances: Vec<SimInstance>,
    templates: Vec<SimTemplate>,
}

impl Default for SimBuilder {
    fn default() -> SimBuilder {
        SimBuilder {
            key: "test-key".to_owned(),
            secret: "test-secret".to_owned(),
            quota_allowed: 6,
            quota_window: Duration::from_secs(60),
            spike_gap: Some(Duration::from_millis(500)),
            token_lifetime: Duration::from_secs(3599),
            stop_delay: Duration::from_secs(1),
            start_delay: Duration::from_secs(1),
            absent: AbsentInstances::Keep,
            stop_i10025: None,
            ssh_endpoints: false,
            instances: Vec::new(),
            templates: Vec::new(),
        }
    }
}

impl SimBuilder {
    /// The API key and secret the token endpoint accepts (default `test-key` / `test-secret`).
    pub fn credentials(mut self, key: &str, secret: &str) -> Self {
        self.key = key.to_owned();
        self.secret = secret.to_owned();
        self
    }

    /// `allowed` requests per fixed `window` that starts at the first request (default 6 per 60 s).
    pub fn quota(mut self, allowed: u32, window: Duration) -> Self {
        self.quota_allowed = allowed;
        self.quota_window = window;
        self
    }

    /// Minimum gap after the last admitted request; a closer request gets a spike-arrest 429
    /// (default 500 ms; `None` disables it).
    pub fn spike_arrest(mut self, min_gap: Option<Duration>) -> Self {
        self.spike_gap = min_gap;
        self
    }

    /// Lifetime of issued tokens (default 3599 s). `expiresIn` reports it in whole seconds,
    /// rounded up.
    pub fn token_lifetime(mut self, d: Duration) -> Self {
        self.token_lifetime = d;
        self
    }

    /// Adds an instance (a later call with the same id replaces it).
    pub fn instance(mut self, id: u64, name: &str, ip: &str, power: PowerState) -> Self {
        self.instances.retain(|i| i.id != id);
        self.instances.push(SimInstance {
            id,
            name: name.to_owned(),
            ip: ip.to_owned(),
            power,
            hung: false,
            responsive: true,
            broken: false,
        });
        self
    }

    /// Adds a firewall template assigned to `assigned` (which must be known instances).
    pub fn template(
        mut self,
        id: u64,
        name: &str,
        inbound: Vec<SimRule>,
        outbound: Vec<SimRule>,
        assigned: &[u64],
    ) -> Self {
        self.templates.retain(|t| t.id != id);
        self.templates.push(SimTemplate {
            id,
            name: name.to_owned(),
            inbound,
            outbound,
            assigned: assigned.to_vec(),
        });
        self
    }

    /// How long a stop and a start take to complete (default 1 s each).
    pub fn power_delays(mut self, stop: Duration, start: Duration) -> Self {
        self.stop_delay = stop;
        self.start_delay = start;
        self
    }

    /// What `updatefirewall` without an `instances` key does to assignments (default `Keep`).
    pub fn assignments_when_instances_absent(mut self, mode: AbsentInstances) -> Self {
        self.absent = mode;
        self
    }

    /// When true, an accepted stop answers 200 `{"success":false,"errorCode":"I10025",…}` instead
    /// of the documented I20009 success body (both are seen on the real API).
    pub fn stop_answers_i10025(mut self, yes: bool) -> Self {
        self.stop_i10025 = yes.then_some(StopCodeKey::ErrorCode);
        self
    }

    /// Like [`SimBuilder::stop_answers_i10025`], with the code under `key`.
    pub fn stop_answers_i10025_under(mut self, key: StopCodeKey) -> Self {
        self.stop_i10025 = Some(key);
        self
    }

    /// When true, [`SimBuilder::start`] binds a fake SSH endpoint on 127.0.0.1:0 for every
    /// instance added here (default off); see [`IndigoSim::ssh_addr`]. A connection gets
    /// `SSH-2.0-OpenSSH_9.6 dynwall-sim\r\n` iff, when it is accepted, the instance is `Running`,
    /// responsive, and admitted by its firewall. Otherwise a stopped (or transitioning) instance
    /// closes the connection at once, and a hung guest or a blocking firewall holds it open
    /// without a word, like a dropped packet.
    pub fn ssh_endpoints(mut self, on: bool) -> Self {
        self.ssh_endpoints = on;
        self
    }

    /// Binds 127.0.0.1:0 and starts serving. Fails on a template assigned to an unknown instance.
    pub async fn start(self) -> io::Result<IndigoSim> {
        let ssh_ids: Vec<u64> = if self.ssh_endpoints {
            self.instances.iter().map(|i| i.id).collect()
        } else {
            Vec::new()
        };
        let state = Arc::new(Mutex::new(State::from_builder(self)?));
        let shared = Arc::clone(&state);
        let server = Server::start(move |req| routes::handle(Arc::clone(&shared), req)).await?;
        let judged = Arc::clone(&state);
        let ssh = ssh::start_endpoints(ssh_ids, move |id: &u64| {
            let mut st = judged.lock().unwrap_or_else(|e| e.into_inner());
            firewall::accept(&mut st, *id, Instant::now())
        })
        .await?;
        Ok(IndigoSim { server, ssh, state })
    }
}
