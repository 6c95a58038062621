//! The Salt simulator's mutable world: credentials and tokens, saved jobs and targets, job runs,
//! pending faults and the request log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{JobEffect, JobRun, JobState, SaltOp, SaltRequest};
use crate::faults::Faults;
use crate::lease::Lease;
use crate::server::Civil;

/// What the test runs when a job that fixes things completes.
pub(crate) type FixHook = Arc<dyn Fn(&JobRun) + Send + Sync>;

pub(crate) struct Run {
    pub job_uuid: String,
    pub tgt_uuid: String,
    pub effect: JobEffect,
    pub state: JobState,
    /// A completion is under way (its callback running); the run still shows as pending.
    pub claimed: bool,
    pub started: Instant,
    pub started_wall: SystemTime,
    pub ended_wall: Option<SystemTime>,
}

pub(crate) struct Config {
    pub api_token: String,
    pub access_lifetime: Duration,
    pub username: String,
    pub password: String,
    pub config_name: String,
    pub session_lifetime: Duration,
    pub rotate_xsrf: bool,
}

/// A saved job: uuid → (name, function, arguments).
pub(crate) struct SavedJob {
    pub name: String,
    pub fun: String,
    pub arg: Vec<String>,
}

pub(crate) struct State {
    pub cfg: Config,
    pub jobs: BTreeMap<String, SavedJob>,
    /// Target groups: uuid → (name, glob).
    pub targets: BTreeMap<String, (String, String)>,
    pub job_duration: Duration,
    pub effect: JobEffect,
    pub on_fix: Option<FixHook>,
    /// CSP access tokens, JWTs and session cookies, all by their text.
    pub credentials: HashMap<String, Lease>,
    pub access_tokens_issued: usize,
    /// Every secret handed out (access tokens, JWTs, session ids, XSRF tokens).
    pub secrets: Vec<String>,
    pub runs: BTreeMap<String, Run>,
    pub last_jid: String,
    pub riq: u64,
    pub ad_hoc_refused: usize,
    pub faults: Faults<SaltOp, u16>,
    pub delay: Duration,
    pub log: Vec<SaltRequest>,
}

impl State {
    /// Takes one unit of the fault pending for `op`.
    pub(crate) fn take_fault(&mut self, op: SaltOp) -> Option<u16> {
        self.faults.take(&op, false)
    }

    /// Records a credential and returns its text.
    pub(crate) fn grant(&mut self, text: String, lifetime: Duration, now: Instant) -> String {
        self.credentials
            .insert(text.clone(), Lease::new(now, lifetime));
        self.secrets.push(text.clone());
        text
    }

    pub(crate) fn valid(&self, credential: &str, now: Instant) -> bool {
        self.credentials
            .get(credential)
            .is_some_and(|c| c.valid(now))
    }

    /// A new Salt job id, `YYYYMMDDhhmmssffffff`, never equal to the previous one.
    pub(crate) fn next_jid(&mut self) -> String {
        let c = Civil::of(SystemTime::now());
        let mut jid = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}{:06}",
            c.year, c.month, c.day, c.hour, c.minute, c.second, c.micros
        );
        if jid <= self.last_jid {
            let next = self.last_jid.parse::<u128>().map_or(0, |n| n + 1);
            jid = format!("{next:020}");
        }
        self.last_jid = jid.clone();
        jid
    }

    /// Claims a pending run for completion: its snapshot, and whether it fixes things. A run
    /// that hangs, or is already claimed or complete, cannot be claimed.
    pub(crate) fn claim(&mut self, jid: &str) -> Option<(JobRun, bool)> {
        let run = self.runs.get_mut(jid)?;
        if run.state != JobState::Pending || run.claimed || run.effect == JobEffect::Hangs {
            return None;
        }
        run.claimed = true;
        Some((snapshot(jid, run), run.effect == JobEffect::Fixes))
    }

    /// Ends a claimed run the way its effect says.
    pub(crate) fn settle(&mut self, jid: &str) {
        if let Some(run) = self.runs.get_mut(jid) {
            run.state = if run.effect == JobEffect::Fails {
                JobState::Failed
            } else {
                JobState::Succeeded
            };
            run.ended_wall = Some(SystemTime::now());
        }
    }
}

pub(crate) fn snapshot(jid: &str, run: &Run) -> JobRun {
    JobRun {
        jid: jid.to_owned(),
        job_uuid: run.job_uuid.clone(),
        tgt_uuid: run.tgt_uuid.clone(),
        state: run.state,
        started: run.started,
    }
}
