//! The simulator's mutable world: account, templates, instances, limiter windows and pending faults.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::time::{Duration, Instant, SystemTime};

use rand::distr::Alphanumeric;
use rand::Rng;

use crate::faults::Faults;

use super::{
    AbsentInstances, BadToken, CallRecord, Endpoint, PowerState, SimBuilder, SimRule, StopCodeKey,
};

/// Fixed settings taken from the builder.
pub(crate) struct Config {
    pub key: String,
    pub secret: String,
    pub quota_allowed: u32,
    pub quota_window: Duration,
    pub spike_gap: Option<Duration>,
    pub token_lifetime: Duration,
    pub stop_delay: Duration,
    pub start_delay: Duration,
    pub absent: AbsentInstances,
    pub stop_i10025: Option<StopCodeKey>,
}

/// An issued access token.
pub(crate) struct Token {
    pub issued: Instant,
    pub revoked: bool,
}

/// The current quota window.
#[derive(Clone, Copy)]
pub(crate) struct Window {
    pub start: Instant,
    pub used: u32,
}

pub(crate) struct TemplateRec {
    pub name: String,
    pub inbound: Vec<SimRule>,
    pub outbound: Vec<SimRule>,
    pub assigned: BTreeSet<u64>,
    pub created: SystemTime,
    pub updated: SystemTime,
    /// Number of `gettemplate` reads so far; drives the answer's rule order.
    pub reads: u64,
}

impl TemplateRec {
    pub(crate) fn touch(&mut self) {
        self.updated = SystemTime::now();
    }
}

pub(crate) struct InstanceRec {
    pub name: String,
    pub ip: String,
    /// Stored state; `Stopping`/`Starting` are settled lazily by [`InstanceRec::settle`].
    pub power: PowerState,
    /// When the current transition began.
    pub since: Instant,
    pub hung: bool,
    /// False while the guest is hung: SSH connects but never answers.
    pub responsive: bool,
    /// A hang that a stop/start does not cure.
    pub broken: bool,
    /// The instance reached `Stopped` since it last became unresponsive; reaching `Running`
    /// again cures the hang (unless broken).
    pub cold_since_hang: bool,
    pub created: SystemTime,
    pub changed: SystemTime,
}

impl InstanceRec {
    /// Completes a transition whose delay has passed (a hung stop never completes).
    pub(crate) fn settle(&mut self, now: Instant, stop_delay: Duration, start_delay: Duration) {
        let elapsed = now.saturating_duration_since(self.since);
        let settled = match self.power {
            PowerState::Stopping if !self.hung && elapsed >= stop_delay => PowerState::Stopped,
            PowerState::Starting if elapsed >= start_delay => PowerState::Running,
            other => other,
        };
        if settled != self.power {
            self.power = settled;
            self.changed = SystemTime::now();
            self.entered(settled);
        }
    }

    pub(crate) fn set_power(&mut self, power: PowerState, now: Instant) {
        self.power = power;
        self.since = now;
        self.changed = SystemTime::now();
        self.entered(power);
    }

    /// Marks the guest hung (`false`) or fine (`true`); a new hang needs a new stop to be cured.
    pub(crate) fn set_responsive(&mut self, responsive: bool) {
        self.responsive = responsive;
        if !responsive {
            self.cold_since_hang = false;
        }
    }

    /// A stop that completed followed by reaching `Running` is a cold boot, which cures a hang.
    fn entered(&mut self, power: PowerState) {
        match power {
            PowerState::Stopped => self.cold_since_hang = true,
            PowerState::Running if self.cold_since_hang => {
                self.cold_since_hang = false;
                if !self.broken {
                    self.responsive = true;
                }
            }
            _ => {}
        }
    }
}

pub(crate) struct State {
    pub cfg: Config,
    pub delay: Duration,
    pub tokens: HashMap<String, Token>,
    pub tokens_issued: usize,
    pub window: Option<Window>,
    /// Arrival of the last request admitted by spike arrest.
    pub last_admitted: Option<Instant>,
    pub instances: BTreeMap<u64, InstanceRec>,
    pub templates: BTreeMap<u64, TemplateRec>,
    /// Injected statuses.
    pub faults: Faults<Endpoint, u16>,
    pub malformed: HashMap<Endpoint, usize>,
    pub log: Vec<CallRecord>,
    pub throttled: usize,
    pub updates: Vec<String>,
    /// `(instance id, verb)` of every `statusupdate` that took effect, in order.
    pub power_log: Vec<(u64, String)>,
    /// The public address our SSH connections appear to come from; `None` passes every firewall.
    pub client_ip: Option<String>,
    /// Connections accepted per instance SSH endpoint.
    pub ssh_conns: HashMap<u64, usize>,
    /// The next tokens issued are unusable in this way (count, kind).
    pub bad_tokens: Option<(usize, BadToken)>,
    /// `X-Quota-Reset` reports this time instead of the window's end (a far-away reset).
    pub reset_override: Option<SystemTime>,
    /// `gettemplate` answers this JSON text verbatim for these templates (hand-made rules the
    /// wire format allows but the rule model cannot express, e.g. `"source": null`).
    pub raw_templates: HashMap<u64, String>,
}

impl State {
    pub(crate) fn from_builder(b: SimBuilder) -> io::Result<State> {
        let now = Instant::now();
        let wall = SystemTime::now();
        let created = wall
            .checked_sub(Duration::from_secs(86_400 * 30))
            .unwrap_or(wall);
        let instances: BTreeMap<u64, InstanceRec> = b
            .instances
            .into_iter()
            .map(|i| {
                let rec = InstanceRec {
                    name: i.name,
                    ip: i.ip,
                    power: i.power,
                    since: now,
                    hung: i.hung,
                    responsive: i.responsive,
                    broken: i.broken,
                    cold_since_hang: false,
                    created,
                    changed: created,
                };
                (i.id, rec)
            })
            .collect();
        let mut templates = BTreeMap::new();
        for t in b.templates {
            let id = t.id;
            if let Some(missing) = t.assigned.iter().find(|i| !instances.contains_key(i)) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("template {id} is assigned to unknown instance {missing}"),
                ));
            }
            let rec = TemplateRec {
                name: t.name,
                inbound: t.inbound,
                outbound: t.outbound,
                assigned: t.assigned.into_iter().collect(),
                created,
                updated: created,
                reads: 0,
            };
            templates.insert(id, rec);
        }
        Ok(State {
            cfg: Config {
                key: b.key,
                secret: b.secret,
                quota_allowed: b.quota_allowed,
                quota_window: b.quota_window,
                spike_gap: b.spike_gap,
                token_lifetime: b.token_lifetime,
                stop_delay: b.stop_delay,
                start_delay: b.start_delay,
                absent: b.absent,
                stop_i10025: b.stop_i10025,
            },
            delay: Duration::ZERO,
            tokens: HashMap::new(),
            tokens_issued: 0,
            window: None,
            last_admitted: None,
            instances,
            templates,
            faults: Faults::new(),
            malformed: HashMap::new(),
            log: Vec::new(),
            throttled: 0,
            updates: Vec::new(),
            power_log: Vec::new(),
            client_ip: None,
            ssh_conns: HashMap::new(),
            bad_tokens: None,
            reset_override: None,
            raw_templates: HashMap::new(),
        })
    }

    /// Spike arrest: false when `now` is closer than the minimum gap to the last admitted request.
    pub(crate) fn spike_admit(&mut self, now: Instant) -> bool {
        if let (Some(gap), Some(last)) = (self.cfg.spike_gap, self.last_admitted) {
            if now.saturating_duration_since(last) < gap {
                return false;
            }
        }
        self.last_admitted = Some(now);
        true
    }

    fn window_end(&self, start: Instant) -> Option<Instant> {
        start.checked_add(self.cfg.quota_window)
    }

    /// Counts a request against the quota; false when the window's allowance is used up.
    pub(crate) fn quota_admit(&mut self, now: Instant) -> bool {
        let mut window = match self.window {
            Some(w) if self.window_end(w.start).is_none_or(|end| now < end) => w,
            _ => Window {
                start: now,
                used: 0,
            },
        };
        window.used = window.used.saturating_add(1);
        self.window = Some(window);
        window.used <= self.cfg.quota_allowed
    }

    /// `(allowed, available, time until reset)` for the quota headers.
    pub(crate) fn quota_status(&self, now: Instant) -> (u32, u32, Duration) {
        let allowed = self.cfg.quota_allowed;
        match self.window {
            Some(w) => match self.window_end(w.start) {
                Some(end) if now < end => (
                    allowed,
                    allowed.saturating_sub(w.used),
                    end.saturating_duration_since(now),
                ),
                Some(_) => (allowed, allowed, self.cfg.quota_window),
                None => (
                    allowed,
                    allowed.saturating_sub(w.used),
                    self.cfg.quota_window,
                ),
            },
            None => (allowed, allowed, self.cfg.quota_window),
        }
    }

    /// Issues a token and returns its text.
    pub(crate) fn issue_token(&mut self, now: Instant) -> String {
        let mut token: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(28)
            .map(char::from)
            .collect();
        if let Some((n, kind)) = self.bad_tokens.take() {
            match kind {
                BadToken::LineBreak => token.insert_str(14, "\r\n"),
                BadToken::Huge(len) => {
                    while token.len() < len {
                        token.push('x');
                    }
                }
            }
            if n > 1 {
                self.bad_tokens = Some((n - 1, kind));
            }
        }
        self.tokens.insert(
            token.clone(),
            Token {
                issued: now,
                revoked: false,
            },
        );
        self.tokens_issued += 1;
        token
    }

    /// Takes one unit of the fault pending for `ep`, endpoint-specific first; the token
    /// endpoint only gets its own.
    pub(crate) fn take_fault(&mut self, ep: Endpoint) -> Option<u16> {
        self.faults.take(&ep, ep != Endpoint::Token)
    }

    /// Takes one unit of the malformation pending for `ep`.
    pub(crate) fn take_malformed(&mut self, ep: Endpoint) -> bool {
        match self.malformed.get_mut(&ep) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    self.malformed.remove(&ep);
                }
                true
            }
            None => false,
        }
    }

    pub(crate) fn settle_all(&mut self, now: Instant) {
        let (stop, start) = (self.cfg.stop_delay, self.cfg.start_delay);
        for inst in self.instances.values_mut() {
            inst.settle(now, stop, start);
        }
    }

    pub(crate) fn remove_instance(&mut self, id: u64) -> bool {
        for t in self.templates.values_mut() {
            t.assigned.remove(&id);
        }
        self.instances.remove(&id).is_some()
    }
}

/// A random id shaped like the gateway's request ids.
pub(crate) fn request_id() -> String {
    let n: u64 = rand::rng().random();
    format!("rrt-{n:016x}-c-gce-{}-{}", n % 9000 + 1000, n % 7 + 1)
}
