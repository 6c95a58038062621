//! Persisted state: versioned JSON in the state directory, written atomically, behind a lock.
//!
//! One process at a time acts on a state directory: the daemon holds `dynwall.lock` for its whole
//! life, a `--once` run for its run. `status` and `healthcheck` read without the lock. A state file
//! that cannot be parsed is moved aside with a warning and dynwall starts fresh: the next cycle
//! re-reads every template, so nothing is lost but history.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::probe::InstanceRecord;

/// Current format version of `state.json`.
pub const VERSION: u32 = 1;
const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "dynwall.lock";

/// Seconds since the Unix epoch (wall clock: state outlives the process).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Everything dynwall remembers between cycles and runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub version: u32,
    /// The last IPv4 address that reached quorum.
    pub last_ip: Option<IpAddr>,
    /// The last IPv6 address that reached quorum (when a firewall tracks IPv6).
    pub last_ip6: Option<IpAddr>,
    /// Per firewall template id.
    pub firewalls: BTreeMap<String, FirewallRecord>,
    pub last_cycle: Option<CycleRecord>,
    /// Per instance id: probe health and remediation (owned by the prober).
    pub instances: BTreeMap<String, InstanceRecord>,
}

/// What dynwall last confirmed about one firewall.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRecord {
    /// The home IPv4 address the owned rule was last confirmed to hold.
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// The home IPv6 address the owned rule was last confirmed to hold.
    #[serde(default)]
    pub ip6: Option<IpAddr>,
    /// When the rules were last written (unix seconds), if ever.
    pub updated_at: Option<u64>,
    /// When the template was last read and found in sync (unix seconds).
    pub verified_at: u64,
}

/// The outcome of the last finished cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleRecord {
    pub finished_at: u64,
    pub ok: bool,
    /// The sync interval in force (healthcheck allows three of them).
    pub interval_secs: u64,
    pub error: Option<String>,
    /// When the last fully successful cycle finished.
    pub last_success_at: Option<u64>,
}

/// Errors of the state layer.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("another dynwall process holds the lock {}", path.display())]
    Locked { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The state directory, locked for this process.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    _lock: File,
}

impl StateStore {
    /// Creates the directory (mode 0700) if needed and takes the lock without waiting.
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        create_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked { path: lock_path })
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        Ok(StateStore {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the state; a missing file is a fresh state, a corrupt one is moved aside.
    pub fn load(&self) -> Result<State, StateError> {
        let path = self.dir.join(STATE_FILE);
        match read(&path)? {
            Loaded::Missing => Ok(fresh()),
            Loaded::Ok(s) => Ok(s),
            Loaded::Corrupt(reason) => {
                let aside = self
                    .dir
                    .join(format!("{STATE_FILE}.corrupt-{}", now_unix()));
                fs::rename(&path, &aside).map_err(io(&path))?;
                tracing::warn!(
                    file = %path.display(),
                    moved_to = %aside.display(),
                    %reason,
                    "state file is corrupt; moved it aside and starting fresh"
                );
                Ok(fresh())
            }
        }
    }

    /// Writes the state atomically and durably: temp file, fsync, rename, fsync of the directory.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        self.write(state, true)
    }

    /// Writes the state atomically but without forcing it to disk: for heartbeats (the last
    /// cycle's time), where losing the newest copy to a power cut costs nothing. A crash of the
    /// process still leaves either the old or the new file, never a torn one.
    pub fn save_heartbeat(&self, state: &State) -> Result<(), StateError> {
        self.write(state, false)
    }

    fn write(&self, state: &State, durable: bool) -> Result<(), StateError> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let mut data = serde_json::to_vec_pretty(state).map_err(|e| StateError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        data.push(b'\n');
        {
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all(&data).map_err(io(&tmp))?;
            if durable {
                f.sync_all().map_err(io(&tmp))?;
            }
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        if !durable {
            return Ok(());
        }
        if let Ok(d) = File::open(&self.dir) {
            // Persist the rename itself; not every filesystem supports syncing a directory.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn fresh() -> State {
    State {
        version: VERSION,
        ..State::default()
    }
}

enum Loaded {
    Missing,
    Ok(State),
    Corrupt(String),
}

fn read(path: &Path) -> Result<Loaded, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => return Err(io(path)(e)),
    };
    match serde_json::from_slice::<State>(&bytes) {
        Ok(s) if s.version == 0 || s.version > VERSION => Ok(Loaded::Corrupt(format!(
            "unsupported state version {}",
            s.version
        ))),
        Ok(s) => Ok(Loaded::Ok(s)),
        Err(e) => Ok(Loaded::Corrupt(e.to_string())),
    }
}

/// Reads the state without taking the lock (for `status` and `healthcheck`).
///
/// `Ok(None)` when there is no state yet; a corrupt file is reported, not moved.
pub fn read_unlocked(dir: &Path) -> Result<Option<State>, StateError> {
    let path = dir.join(STATE_FILE);
    match read(&path)? {
        Loaded::Missing => Ok(None),
        Loaded::Ok(s) => Ok(Some(s)),
        Loaded::Corrupt(reason) => Err(StateError::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
        }),
    }
}

fn create_dir(dir: &Path) -> Result<(), StateError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_is_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/state");
        let store = StateStore::open(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let mut s = store.load().unwrap();
        assert_eq!(s.version, VERSION);
        s.last_ip = Some("81.2.69.160".parse().unwrap());
        s.firewalls.insert(
            "12836".into(),
            FirewallRecord {
                ip: Some("81.2.69.160".parse().unwrap()),
                ip6: None,
                updated_at: Some(5),
                verified_at: 6,
            },
        );
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap(), s);
        assert_eq!(read_unlocked(&dir).unwrap(), Some(s));
        assert!(!dir.join("state.json.tmp").exists());
    }

    #[test]
    fn a_second_store_on_the_same_dir_is_refused_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let first = StateStore::open(tmp.path()).unwrap();
        assert!(matches!(
            StateStore::open(tmp.path()),
            Err(StateError::Locked { .. })
        ));
        drop(first);
        assert!(StateStore::open(tmp.path()).is_ok());
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_replaced_by_a_fresh_state() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(STATE_FILE), b"{\"version\":1,\"last_ip\":").unwrap();
        assert!(read_unlocked(tmp.path()).is_err());
        let store = StateStore::open(tmp.path()).unwrap();
        let s = store.load().unwrap();
        assert_eq!(s, fresh());
        let aside: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.json.corrupt-")
            })
            .collect();
        assert_eq!(aside.len(), 1);
    }

    #[test]
    fn a_state_from_a_newer_version_is_not_misread() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(STATE_FILE), b"{\"version\":99}").unwrap();
        let store = StateStore::open(tmp.path()).unwrap();
        assert_eq!(store.load().unwrap(), fresh());
    }
}
