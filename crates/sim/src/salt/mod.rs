//! An in-process imitation of VMware's Salt cloud API (Aria Automation Config / Tanzu Salt, the
//! "RaaS" server) and of the CSP token exchange in front of it, on 127.0.0.1.
//!
//! Built from `reference/openstack-salt.md` §5 and seed 003. Two listeners: the CSP console
//! ([`SaltSim::csp_url`]) and the API server ([`SaltSim::url`]).
//!
//! # Example
//!
//! ```no_run
//! # async fn soft_step() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use dynwall_sim::openstack::{OpenStackSim, ServerSpec};
//! use dynwall_sim::salt::{JobEffect, SaltSim};
//!
//! let cloud = Arc::new(
//!     OpenStackSim::builder().server(ServerSpec::new("vps1").hung()).start().await?,
//! );
//! let cured = Arc::clone(&cloud);
//! let salt = SaltSim::builder()
//!     .api_token("csp-api-token")
//!     .job("5c5cc410-4f9f-11e6-88bc-080027a7289c", "restart sshd")
//!     .target("89db0f82-4f9f-11e6-88bc-080027a7289c", "vps1", "vps1")
//!     .effect(JobEffect::Fixes)
//!     .on_fix(move |_run| {
//!         cured.set_responsive("vps1", true);
//!     })
//!     .start()
//!     .await?;
//! let (server, csp_url) = (salt.url(), salt.csp_url());
//! # let _ = (server, csp_url);
//! # Ok(())
//! # }
//! ```
//!
//! # What it imitates
//!
//! - CSP: `POST /csp/gateway/am/api/auth/api-tokens/authorize` with the API token as the form
//!   (or query) field `refresh_token` (or `api_token`, as seed 003's curl recipe sends it) → 200
//!   `{"access_token", "token_type": "bearer", "expires_in", "scope", "id_token",
//!   "refresh_token"}`; an unknown token is 400 `invalid_grant`.
//! - Tornado's XSRF protection: every `POST` needs an `X-Xsrftoken` (or `X-Csrftoken`) header
//!   equal to the `_xsrf` cookie it sends, else 403 with Tornado's error page. The server keeps no
//!   record: any matching pair passes, as in Tornado. `GET /account/login` sets the cookie (unless
//!   the request already carries one) and echoes it in an `X-Xsrftoken` header.
//! - `POST /account/login`: with `Authorization: Bearer <CSP access token>` (the cloud, as in seed
//!   003) or with a JSON body `{"username", "password", "config_name"}` (on premises, as
//!   sseapiclient does; this one needs the XSRF pair). It answers 200, sets a new `_xsrf` cookie
//!   (the login rotates it; see [`SaltBuilder::rotate_xsrf_on_login`]) and, on premises, a
//!   `_session_id` cookie and a `jwt` in the body; bad credentials are 401.
//! - `POST /rpc`: XSRF first (403), then authentication (401): a live CSP access token as
//!   `Authorization: Bearer`, the login's `jwt` as `Authorization: JWT`, its session cookie, or
//!   HTTP Basic with the on-premises credentials. The body is one call
//!   `{"resource", "method", "kwarg", "args"}` or a list of them; each answer is
//!   `{"riq", "ret", "error", "warnings"}` with HTTP 200, errors included.
//!   - `cmd.route_cmd` with `job_uuid` + `tgt_uuid` of a saved job and target → the job id
//!     (`YYYYMMDDhhmmssffffff`). Anything that is not a saved job (`fun`, `arg`, `tgt`, a
//!     missing uuid) is refused: the simulated token may only run saved jobs.
//!   - `cmd.get_cmd_status` with `jids` (a list) or `jid` → `{"count", "results": [{"jid",
//!     "job_uuid", "tgt_uuid", "state", "success", "minions", "start_time", "end_time"}]}`:
//!     `state` is `"pending"` until the job's time has passed ([`SaltBuilder::job_duration`]),
//!     then `"complete"` with `success` true or false; unknown jids are left out.
//!   - `job.get_jobs` (optionally by `job_uuid` or `name`) and `tgt.get_target_group` (by
//!     `tgt_uuid`) → `{"count", "results", "limit"}` of the saved jobs and targets.
//! - A job's effect ([`JobEffect`]): it fixes the instance (success, and the test's callback runs,
//!   e.g. making a simulated server's guest responsive again), succeeds without fixing anything,
//!   fails, or hangs in `pending` forever.
//!
//! # Invented details
//!
//! The shape of `cmd.get_cmd_status` results, the `error` objects (`{"code", "message"}`), the
//! login answers and session cookie name, the CSP error body, that a Bearer login skips the XSRF
//! check (seed 003's recipe logs in that way) and that a login rotates `_xsrf` are plausible
//! choices; the reference marks them unknown. Error pages are Tornado's defaults.

mod routes;
mod state;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::faults::Faults;
use crate::server::Server;
use state::{Config, FixHook, SavedJob, State};

/// What a job does when it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum JobEffect {
    /// Completes successfully and runs the builder's [`SaltBuilder::on_fix`] callback.
    #[default]
    Fixes,
    /// Completes successfully but cures nothing (the callback does not run).
    NoEffect,
    /// Completes with a failure.
    Fails,
    /// Never completes: `pending` for ever.
    Hangs,
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    Pending,
    Succeeded,
    Failed,
}

/// One run of a saved job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRun {
    pub jid: String,
    pub job_uuid: String,
    pub tgt_uuid: String,
    pub state: JobState,
    /// When `cmd.route_cmd` accepted it, on the simulator's (tokio) clock.
    pub started: Instant,
}

/// The operations the simulator tells apart in its log and fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaltOp {
    /// `POST …/api-tokens/authorize` on the CSP listener.
    Authorize,
    /// `GET` or `POST /account/login`.
    Login,
    /// `POST /rpc`.
    Rpc,
    /// Anything else.
    Other,
}

/// Which listener a request reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaltHost {
    /// The CSP console (token exchange).
    Csp,
    /// The Salt API server.
    Api,
}

/// One request as the simulator saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaltRequest {
    pub host: SaltHost,
    pub op: SaltOp,
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub status: u16,
    /// Request headers, names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The request body as received (lossy UTF-8).
    pub body: String,
    /// `resource.method` of each RPC call in the body (empty for other requests).
    pub calls: Vec<String>,
    /// Arrival on the simulator's (tokio) clock.
    pub at: Instant,
    pub time: SystemTime,
}

/// A running Salt simulator. Dropping it (or [`SaltSim::shutdown`]) stops both listeners and
/// every job timer.
pub struct SaltSim {
    api: Server,
    csp: Server,
    state: Arc<Mutex<State>>,
    /// Cancels the job timers when the simulator goes away.
    _jobs: DropGuard,
}

impl SaltSim {
    /// Starts configuring a simulator.
    pub fn builder() -> SaltBuilder {
        SaltBuilder::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The API server's base URL (the `server` of a `[salt]` table), e.g. `http://127.0.0.1:4123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.api.addr())
    }

    /// The CSP console's base URL (`csp_url`); the token exchange is at
    /// `{csp_url}/csp/gateway/am/api/auth/api-tokens/authorize`.
    pub fn csp_url(&self) -> String {
        format!("http://{}", self.csp.addr())
    }

    /// Changes what runs started from now on do.
    pub fn set_effect(&self, effect: JobEffect) {
        self.lock().effect = effect;
    }

    /// Changes how long runs started from now on stay pending.
    pub fn set_job_duration(&self, d: Duration) {
        self.lock().job_duration = d;
    }

    /// Every run so far, in jid order.
    pub fn runs(&self) -> Vec<JobRun> {
        let st = self.lock();
        st.runs
            .iter()
            .map(|(jid, r)| state::snapshot(jid, r))
            .collect()
    }

    /// Completes every pending run now (hanging ones excepted), running the callback of those
    /// that fix things.
    pub fn finish_jobs(&self) {
        let jids: Vec<String> = self.lock().runs.keys().cloned().collect();
        for jid in jids {
            complete(&self.state, &jid);
        }
    }

    /// Requests to `cmd.route_cmd` refused because they were not a saved job.
    pub fn ad_hoc_refused(&self) -> usize {
        self.lock().ad_hoc_refused
    }

    /// Every CSP access token, JWT and session issued so far is refused with 401 from now on.
    pub fn expire_tokens(&self) {
        for c in self.lock().credentials.values_mut() {
            c.revoked = true;
        }
    }

    /// Number of CSP access tokens issued.
    pub fn access_tokens_issued(&self) -> usize {
        self.lock().access_tokens_issued
    }

    /// Every secret handed out so far: access tokens, JWTs, session ids and XSRF tokens (tests
    /// check that none is ever logged).
    pub fn issued_secrets(&self) -> Vec<String> {
        self.lock().secrets.clone()
    }

    /// The next `n` requests of `op` answer `status` (Tornado's error page; for the CSP
    /// listener a JSON error) and take no effect. `n == 0` clears it. XSRF and authentication
    /// are checked first.
    pub fn fail_next(&self, op: SaltOp, n: usize, status: u16) {
        self.lock().faults.set(op, n, status);
    }

    /// Delays every answer by `d`. Zero turns it off.
    pub fn set_delay(&self, d: Duration) {
        self.lock().delay = d;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<SaltRequest> {
        self.lock().log.clone()
    }

    /// Requests of `op` so far, whatever the answer.
    pub fn calls(&self, op: SaltOp) -> usize {
        self.lock().log.iter().filter(|r| r.op == op).count()
    }

    /// Stops both listeners and every job timer, and waits until no connection is left.
    pub async fn shutdown(self) {
        let SaltSim {
            api, csp, _jobs, ..
        } = self;
        drop(_jobs);
        api.shutdown().await;
        csp.shutdown().await;
    }
}

pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Completes a pending run: a run that fixes things runs the test's callback first, with no lock
/// held, so that nobody sees the run complete before its effect.
pub(crate) fn complete(state: &Mutex<State>, jid: &str) {
    let Some((run, fixes)) = lock(state).claim(jid) else {
        return;
    };
    if fixes {
        let hook = lock(state).on_fix.clone();
        if let Some(hook) = hook {
            hook(&run);
        }
    }
    lock(state).settle(jid);
}

/// Configuration of a [`SaltSim`]. Defaults: API token `csp-api-token`, access tokens of 1799 s,
/// on-premises user `root`/`salt` with `config_name` `internal`, sessions of 1 h, no saved job or
/// target, jobs that take 2 s and fix things, a login that rotates the XSRF cookie.
#[derive(Clone)]
pub struct SaltBuilder {
    cfg_api_token: String,
    access_lifetime: Duration,
    user: (String, String, String),
    session_lifetime: Duration,
    rotate_xsrf: bool,
    jobs: Vec<(String, String, String, Vec<String>)>,
    targets: Vec<(String, String, String)>,
    job_duration: Duration,
    effect: JobEffect,
    on_fix: Option<FixHook>,
}

impl Default for SaltBuilder {
    fn default() -> SaltBuilder {
        SaltBuilder {
            cfg_api_token: "csp-api-token".to_owned(),
            access_lifetime: Duration::from_secs(1799),
            user: ("root".to_owned(), "salt".to_owned(), "internal".to_owned()),
            session_lifetime: Duration::from_secs(3600),
            rotate_xsrf: true,
            jobs: Vec::new(),
            targets: Vec::new(),
            job_duration: Duration::from_secs(2),
            effect: JobEffect::Fixes,
            on_fix: None,
        }
    }
}

impl std::fmt::Debug for SaltBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaltBuilder")
            .field("jobs", &self.jobs.len())
            .field("targets", &self.targets.len())
            .field("job_duration", &self.job_duration)
            .field("effect", &self.effect)
            .finish_non_exhaustive()
    }
}

impl SaltBuilder {
    /// The CSP API token the token exchange accepts.
    pub fn api_token(mut self, token: &str) -> Self {
        self.cfg_api_token = token.to_owned();
        self
    }

    /// Lifetime of CSP access tokens (`expires_in`, default 1799 s).
    pub fn access_token_lifetime(mut self, d: Duration) -> Self {
        self.access_lifetime = d;
        self
    }

    /// The on-premises credentials `POST /account/login` (and HTTP Basic) accept.
    pub fn user(mut self, username: &str, password: &str, config_name: &str) -> Self {
        self.user = (
            username.to_owned(),
            password.to_owned(),
            config_name.to_owned(),
        );
        self
    }

    /// Lifetime of an on-premises login (JWT and session cookie; default 1 h).
    pub fn session_lifetime(mut self, d: Duration) -> Self {
        self.session_lifetime = d;
        self
    }

    /// Whether a login sets a new `_xsrf` cookie (default true: a client must re-read it).
    pub fn rotate_xsrf_on_login(mut self, yes: bool) -> Self {
        self.rotate_xsrf = yes;
        self
    }

    /// Adds a saved job (`service.restart sshd`) that targets may run.
    pub fn job(mut self, uuid: &str, name: &str) -> Self {
        self.jobs.retain(|j| j.0 != uuid);
        self.jobs.push((
            uuid.to_owned(),
            name.to_owned(),
            "service.restart".to_owned(),
            vec!["sshd".to_owned()],
        ));
        self
    }

    /// Adds a saved target group matching minions by `glob`.
    pub fn target(mut self, uuid: &str, name: &str, glob: &str) -> Self {
        self.targets.retain(|t| t.0 != uuid);
        self.targets
            .push((uuid.to_owned(), name.to_owned(), glob.to_owned()));
        self
    }

    /// How long a run stays pending (default 2 s).
    pub fn job_duration(mut self, d: Duration) -> Self {
        self.job_duration = d;
        self
    }

    /// What runs do (default [`JobEffect::Fixes`]).
    pub fn effect(mut self, effect: JobEffect) -> Self {
        self.effect = effect;
        self
    }

    /// Runs `f` each time a run with [`JobEffect::Fixes`] completes (from a simulator task, no
    /// lock held), e.g. `move |_| cloud.set_responsive("vps1", true)`.
    pub fn on_fix(mut self, f: impl Fn(&JobRun) + Send + Sync + 'static) -> Self {
        self.on_fix = Some(Arc::new(f));
        self
    }

    /// Binds the CSP and API listeners on 127.0.0.1 and starts serving.
    pub async fn start(self) -> io::Result<SaltSim> {
        let (username, password, config_name) = self.user;
        let state = Arc::new(Mutex::new(State {
            cfg: Config {
                api_token: self.cfg_api_token,
                access_lifetime: self.access_lifetime,
                username,
                password,
                config_name,
                session_lifetime: self.session_lifetime,
                rotate_xsrf: self.rotate_xsrf,
            },
            jobs: self
                .jobs
                .into_iter()
                .map(|(uuid, name, fun, arg)| (uuid, SavedJob { name, fun, arg }))
                .collect(),
            targets: self
                .targets
                .into_iter()
                .map(|(uuid, name, glob)| (uuid, (name, glob)))
                .collect::<BTreeMap<_, _>>(),
            job_duration: self.job_duration,
            effect: self.effect,
            on_fix: self.on_fix,
            credentials: HashMap::new(),
            access_tokens_issued: 0,
            secrets: Vec::new(),
            runs: BTreeMap::new(),
            last_jid: String::new(),
            riq: 0,
            ad_hoc_refused: 0,
            faults: Faults::new(),
            delay: Duration::ZERO,
            log: Vec::new(),
        }));
        let jobs = CancellationToken::new();
        let csp = {
            let state = Arc::clone(&state);
            Server::start(move |req| routes::csp(Arc::clone(&state), req)).await?
        };
        let api = {
            let (state, jobs) = (Arc::clone(&state), jobs.clone());
            Server::start(move |req| routes::api(Arc::clone(&state), jobs.clone(), req)).await?
        };
        Ok(SaltSim {
            api,
            csp,
            state,
            _jobs: jobs.drop_guard(),
        })
    }
}
