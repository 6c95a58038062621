//! The owed-start journal: which instances dynwall asked to stop, and when.
//!
//! A tiny file of its own (`owed-starts.json`), written and synced before every stop or forced
//! step is requested. While an entry is recent ([`HORIZON`]), an instance that shows up
//! `Stopped` is started again: after a crash or a restart, after the state file was moved aside
//! as corrupt, and when a forced stop completes only after dynwall gave up waiting for it
//! (SPEC invariant 7). An entry ends when the remediation finishes with the instance running,
//! when the operator resets the instance, or when it grows older than the horizon.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{StateError, Writer};
use crate::clock::{shift, Clock};
use crate::ids::{CloudName, InstanceId};

const JOURNAL_FILE: &str = "owed-starts.json";
/// How long a stop request dynwall made obliges it to start the instance again: long enough for
/// a forced stop that completes late, short enough not to overrule an owner who stops the
/// instance by hand later that day.
pub const HORIZON: Duration = Duration::from_secs(2 * 3600);

/// One stop request dynwall made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedStart {
    pub cloud: CloudName,
    pub instance: InstanceId,
    /// When the last stop or forced step was requested.
    pub asked_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    stops: Vec<OwedStart>,
}

/// The journal, loaded; times in process seconds.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    entries: Vec<OwedStart>,
    writer: Arc<Writer>,
}

/// The entries of `dir`'s journal younger than the horizon, in wall time, without the lock
/// (for `status`).
pub fn read_unlocked(dir: &Path, wall_now: u64) -> Vec<OwedStart> {
    std::fs::read(dir.join(JOURNAL_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<File>(&b).ok())
        .map(|f| f.stops)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.asked_at.saturating_add(HORIZON.as_secs()) > wall_now)
        .collect()
}

impl Journal {
    /// Loads the journal of `dir`; a missing or unreadable file is an empty journal (with a
    /// warning for the latter: the state file may still hold the remediation).
    pub fn load(dir: &Path, clock: &Clock) -> Journal {
        let path = dir.join(JOURNAL_FILE);
        let entries = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
                Ok(f) => f.stops,
                Err(e) => {
                    tracing::warn!(file = %path.display(), "owed-start journal unreadable ({e}); starting it afresh");
                    Vec::new()
                }
            },
            Err(_) => Vec::new(),
        };
        let back = -clock.wall_shift();
        let now = clock.now();
        let entries = entries
            .into_iter()
            .map(|mut e| {
                e.asked_at = shift(e.asked_at, back).min(now);
                e
            })
            .collect();
        Journal {
            path,
            entries,
            writer: Arc::default(),
        }
    }

    /// The entry of an instance, when it is younger than the horizon at `now`.
    pub fn owed(&self, cloud: &CloudName, id: &InstanceId, now: u64) -> Option<&OwedStart> {
        self.entries.iter().find(|e| {
            &e.cloud == cloud
                && &e.instance == id
                && e.asked_at.saturating_add(HORIZON.as_secs()) > now
        })
    }

    /// Every entry younger than the horizon at `now`.
    pub fn live(&self, now: u64) -> impl Iterator<Item = &OwedStart> {
        self.entries
            .iter()
            .filter(move |e| e.asked_at.saturating_add(HORIZON.as_secs()) > now)
    }

    /// Records (durably) that a stop of `id` is about to be requested at `now`.
    pub async fn record(
        &mut self,
        cloud: &CloudName,
        id: &InstanceId,
        now: u64,
        clock: &Clock,
    ) -> Result<(), StateError> {
        self.remove(cloud, id);
        self.entries.push(OwedStart {
            cloud: cloud.clone(),
            instance: id.clone(),
            asked_at: now,
        });
        self.save(now, clock).await
    }

    /// Forgets the entry of `id` (it is running again, or the operator reset it).
    pub async fn forget(
        &mut self,
        cloud: &CloudName,
        id: &InstanceId,
        now: u64,
        clock: &Clock,
    ) -> Result<(), StateError> {
        if !self.remove(cloud, id) {
            return Ok(());
        }
        self.save(now, clock).await
    }

    /// Drops the entry of `id`; true when there was one.
    fn remove(&mut self, cloud: &CloudName, id: &InstanceId) -> bool {
        let before = self.entries.len();
        self.entries
            .retain(|e| !(&e.cloud == cloud && &e.instance == id));
        self.entries.len() != before
    }

    async fn save(&mut self, now: u64, clock: &Clock) -> Result<(), StateError> {
        self.entries
            .retain(|e| e.asked_at.saturating_add(HORIZON.as_secs()) > now);
        let to_wall = clock.wall_shift();
        let file = File {
            version: 1,
            stops: self
                .entries
                .iter()
                .map(|e| OwedStart {
                    asked_at: shift(e.asked_at, to_wall),
                    ..e.clone()
                })
                .collect(),
        };
        let data = serde_json::to_vec_pretty(&file).map_err(|e| StateError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        self.writer.write(self.path.clone(), data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_survive_a_reload_and_expire_after_the_horizon() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::system();
        let (cloud, id) = (CloudName::indigo(), InstanceId("7".into()));
        let mut j = Journal::load(tmp.path(), &clock);
        let now = clock.now();
        j.record(&cloud, &id, now, &clock).await.unwrap();
        let j = Journal::load(tmp.path(), &clock);
        assert!(j.owed(&cloud, &id, now).is_some());
        assert!(j.owed(&cloud, &id, now + HORIZON.as_secs()).is_none());
        let mut j = j;
        j.forget(&cloud, &id, now, &clock).await.unwrap();
        assert!(Journal::load(tmp.path(), &clock)
            .owed(&cloud, &id, now)
            .is_none());
        // A damaged journal is an empty one, not a crash.
        std::fs::write(tmp.path().join(JOURNAL_FILE), b"{").unwrap();
        assert_eq!(Journal::load(tmp.path(), &clock).live(now).count(), 0);
    }
}
