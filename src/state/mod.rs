//! Persisted state: versioned JSON in the state directory, written atomically, behind a lock.
//!
//! One process at a time acts on a state directory: the daemon holds `dynwall.lock` for its whole
//! life, a `--once` run for its run. `status` and `healthcheck` read without the lock. A state file
//! that cannot be parsed is moved aside with a warning and dynwall starts fresh: the next cycle
//! re-reads every firewall, so nothing is lost but history, and the owed starts live in their own
//! journal ([`journal`]).
//!
//! The file is rewritten only when something durable changed; the heartbeat `healthcheck` reads
//! is the file's modification time, set after every cycle without rewriting it ([`StateStore::touch`]).
//! Writes (and their fsync) run off the runtime thread.

pub mod journal;
mod migrate;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::clock::{shift, wall_now, Clock};
use crate::ids::{CloudName, FirewallId, InstanceId};
use crate::notify::{DeliveryFailure, FailureStreak};
use crate::probe::record::InstanceRecord;
use crate::resolver::SourceMemory;

/// Current format version of `state.json` (1: one cloud, keyed by id alone).
pub const VERSION: u32 = 2;
const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "dynwall.lock";

/// Everything dynwall remembers between cycles and runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub version: u32,
    /// The last IPv4 address that reached quorum.
    pub last_ip: Option<IpAddr>,
    /// The last IPv6 address that reached quorum (when a firewall tracks IPv6).
    pub last_ip6: Option<IpAddr>,
    /// Per cloud: its firewalls, instances and remembered facts.
    pub clouds: BTreeMap<CloudName, CloudState>,
    pub last_cycle: Option<CycleRecord>,
    /// The current run of failed cycles (`failing` is sent once down and once on recovery,
    /// also across `--once` runs).
    #[serde(skip_serializing_if = "is_default")]
    pub failing: FailureStreak,
    /// The last notification that could not be delivered (shown by `status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_notification_error: Option<DeliveryFailure>,
    /// The IP sources already reported failing (so that cron runs say persistent trouble once).
    #[serde(skip_serializing_if = "SourceMemory::is_empty")]
    pub sources: SourceMemory,
    /// The last remediation step taken, finished or failed (shown by `status` and `STATUS=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_remediation: Option<LastRemediation>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The last remediation event, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRemediation {
    /// When it happened (process seconds in memory, wall seconds on disk).
    pub at: u64,
    pub cloud: CloudName,
    pub instance: InstanceId,
    /// `salt_job`, `stop`, `forcestop`, `start`, `hard_reboot`.
    pub step: String,
    /// `requested`, `done`, `failed`.
    pub outcome: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What dynwall remembers about one cloud.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CloudState {
    /// Per firewall id.
    pub firewalls: BTreeMap<FirewallId, FirewallRecord>,
    /// Per instance id: probe health and remediation (owned by the prober).
    pub instances: BTreeMap<InstanceId, InstanceRecord>,
    /// Instance ids confirmed to exist (the write preflight), and when.
    pub known_instances: Option<KnownInstances>,
}

/// Instance ids the provider listed, and when that was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownInstances {
    pub ids: BTreeSet<InstanceId>,
    pub checked_at: u64,
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
    /// When the rules were last written, if ever.
    pub updated_at: Option<u64>,
    /// When the firewall was last read and found in sync.
    pub verified_at: u64,
}

/// The outcome of the last finished cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleRecord {
    /// When the cycle whose outcome this is finished (later cycles with the same outcome only
    /// move the file's modification time).
    pub finished_at: u64,
    pub ok: bool,
    /// The sync interval in force (healthcheck allows three of them).
    pub interval_secs: u64,
    pub error: Option<String>,
    /// When the last fully successful cycle finished.
    pub last_success_at: Option<u64>,
}

impl State {
    fn fresh() -> State {
        State {
            version: VERSION,
            ..State::default()
        }
    }

    pub fn cloud(&self, cloud: &CloudName) -> Option<&CloudState> {
        self.clouds.get(cloud)
    }

    pub fn cloud_mut(&mut self, cloud: &CloudName) -> &mut CloudState {
        self.clouds.entry(cloud.clone()).or_default()
    }

    pub fn firewall(&self, cloud: &CloudName, id: &FirewallId) -> Option<&FirewallRecord> {
        self.cloud(cloud)?.firewalls.get(id)
    }

    pub fn instance(&self, cloud: &CloudName, id: &InstanceId) -> Option<&InstanceRecord> {
        self.cloud(cloud)?.instances.get(id)
    }

    /// The record of an instance, created when missing.
    pub fn instance_mut(&mut self, cloud: &CloudName, id: &InstanceId) -> &mut InstanceRecord {
        self.cloud_mut(cloud)
            .instances
            .entry(id.clone())
            .or_default()
    }

    /// Every instance record with its cloud.
    pub fn instances(&self) -> impl Iterator<Item = (&CloudName, &InstanceId, &InstanceRecord)> {
        self.clouds
            .iter()
            .flat_map(|(c, s)| s.instances.iter().map(move |(i, r)| (c, i, r)))
    }

    /// The same state with every time moved by `delta` seconds (process ↔ wall time).
    pub fn shifted(&self, delta: i128) -> State {
        let mut s = self.clone();
        if delta == 0 {
            return s;
        }
        let t = |v: u64| shift(v, delta);
        for cloud in s.clouds.values_mut() {
            for f in cloud.firewalls.values_mut() {
                f.verified_at = t(f.verified_at);
                f.updated_at = f.updated_at.map(t);
            }
            for r in cloud.instances.values_mut() {
                *r = r.shifted(delta);
            }
            if let Some(k) = cloud.known_instances.as_mut() {
                k.checked_at = t(k.checked_at);
            }
        }
        if let Some(c) = s.last_cycle.as_mut() {
            c.finished_at = t(c.finished_at);
            c.last_success_at = c.last_success_at.map(t);
        }
        s.failing.since = s.failing.since.map(t);
        if let Some(r) = s.last_remediation.as_mut() {
            r.at = t(r.at);
        }
        s
    }

    /// The state without the end time of the last cycle (the file's modification time says it).
    pub fn without_heartbeat(&self) -> State {
        let mut s = self.clone();
        if let Some(c) = s.last_cycle.as_mut() {
            c.finished_at = 0;
            c.last_success_at = None;
        }
        s
    }

    /// The state without what changes on every cycle or probe (confirmation and heartbeat
    /// times, probe counters): when this differs from the last saved one, the file is rewritten
    /// at once; otherwise the rest waits for the next such write or for shutdown.
    pub fn durable(&self) -> State {
        let mut s = self.clone();
        for cloud in s.clouds.values_mut() {
            for f in cloud.firewalls.values_mut() {
                f.verified_at = 0;
            }
            for r in cloud.instances.values_mut() {
                *r = r.durable();
            }
        }
        if let Some(c) = s.last_cycle.as_mut() {
            c.finished_at = 0;
            c.last_success_at = None;
        }
        s
    }
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

/// Serialises writes of one file: a snapshot older than the one on disk is never written over
/// it (two saves may race when a round is cut off while its save is still running).
#[derive(Debug, Default)]
pub(crate) struct Writer {
    next: AtomicU64,
    written: Mutex<u64>,
}

impl Writer {
    /// Writes `data` to `path` atomically (temp file, fsync, rename, fsync of the directory) on
    /// a blocking thread, unless a newer snapshot got there first.
    pub(crate) async fn write(
        self: &Arc<Self>,
        path: PathBuf,
        data: Vec<u8>,
    ) -> Result<(), StateError> {
        let seq = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let me = Arc::clone(self);
        let target = path.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut written = me.written.lock().unwrap_or_else(|e| e.into_inner());
            if seq < *written {
                return Ok(());
            }
            atomic_write(&target, &data)?;
            *written = seq;
            Ok(())
        })
        .await;
        match done {
            Ok(r) => r,
            Err(e) => Err(StateError::Io {
                path,
                source: std::io::Error::other(e),
            }),
        }
    }
}

/// Temp file, fsync, rename, fsync of the directory. Blocking.
fn atomic_write(path: &Path, data: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Ok(d) = File::open(dir) {
        // Persist the rename itself; not every filesystem supports syncing a directory.
        let _ = d.sync_all();
    }
    Ok(())
}

/// The state directory, locked for this process.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    _lock: File,
    writer: Arc<Writer>,
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
            writer: Arc::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the state in process time (see [`crate::clock`]); a missing file is a fresh state,
    /// a corrupt one is moved aside, an older format is migrated.
    pub fn load(&self, clock: &Clock) -> Result<State, StateError> {
        let path = self.dir.join(STATE_FILE);
        let state = match read(&path)? {
            Loaded::Missing => State::fresh(),
            Loaded::Ok(s) => *s,
            Loaded::Corrupt(reason) => {
                let aside = self
                    .dir
                    .join(format!("{STATE_FILE}.corrupt-{}", wall_now()));
                fs::rename(&path, &aside).map_err(io(&path))?;
                tracing::warn!(
                    file = %path.display(),
                    moved_to = %aside.display(),
                    %reason,
                    "state file is corrupt; moved it aside and starting fresh"
                );
                State::fresh()
            }
        };
        Ok(state.shifted(-clock.wall_shift()))
    }

    /// Writes `state` (in process time) atomically and durably, off the runtime thread.
    pub async fn save(&self, state: &State, clock: &Clock) -> Result<(), StateError> {
        let path = self.dir.join(STATE_FILE);
        let data = encode(&state.shifted(clock.wall_shift()), &path)?;
        self.writer.write(path, data).await
    }

    /// The heartbeat: sets the state file's modification time to `at` (wall seconds) without
    /// rewriting it. `healthcheck` and `status` read it as the end of the last cycle.
    pub fn touch(&self, at: u64) -> Result<(), StateError> {
        let path = self.dir.join(STATE_FILE);
        let f = File::options().write(true).open(&path).map_err(io(&path))?;
        f.set_modified(UNIX_EPOCH + Duration::from_secs(at))
            .map_err(io(&path))
    }
}

fn encode(state: &State, path: &Path) -> Result<Vec<u8>, StateError> {
    let mut data = serde_json::to_vec_pretty(state).map_err(|e| StateError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    data.push(b'\n');
    Ok(data)
}

enum Loaded {
    Missing,
    Ok(Box<State>),
    Corrupt(String),
}

fn read(path: &Path) -> Result<Loaded, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => return Err(io(path)(e)),
    };
    Ok(match migrate::parse(&bytes) {
        Ok(s) => Loaded::Ok(Box::new(s)),
        Err(reason) => Loaded::Corrupt(reason),
    })
}

/// A state file as `status` and `healthcheck` see it: wall times, and the heartbeat.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub state: State,
    /// The file's modification time (wall seconds): when the last cycle finished.
    pub heartbeat: Option<u64>,
}

/// Reads the state without taking the lock (for `status` and `healthcheck`).
///
/// `Ok(None)` when there is no state yet; a corrupt file is reported, not moved.
pub fn read_unlocked(dir: &Path) -> Result<Option<Snapshot>, StateError> {
    let path = dir.join(STATE_FILE);
    let heartbeat = fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t: SystemTime| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    match read(&path)? {
        Loaded::Missing => Ok(None),
        Loaded::Ok(state) => Ok(Some(Snapshot {
            state: *state,
            heartbeat,
        })),
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

    fn clock() -> Clock {
        Clock::system()
    }

    #[tokio::test]
    async fn state_round_trips_and_is_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/state");
        let store = StateStore::open(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let c = clock();
        let mut s = store.load(&c).unwrap();
        assert_eq!(s.version, VERSION);
        s.last_ip = Some("81.2.69.160".parse().unwrap());
        s.cloud_mut(&CloudName::indigo()).firewalls.insert(
            FirewallId("12836".into()),
            FirewallRecord {
                ip: Some("81.2.69.160".parse().unwrap()),
                ip6: None,
                updated_at: Some(5),
                verified_at: 6,
            },
        );
        store.save(&s, &c).await.unwrap();
        assert_eq!(store.load(&c).unwrap(), s);
        assert_eq!(read_unlocked(&dir).unwrap().unwrap().state, s);
        assert!(!dir.join("state.json.tmp").exists());
    }

    #[tokio::test]
    async fn the_heartbeat_moves_the_modification_time_only() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::open(tmp.path()).unwrap();
        let c = clock();
        let s = store.load(&c).unwrap();
        store.save(&s, &c).await.unwrap();
        let before = fs::read(tmp.path().join(STATE_FILE)).unwrap();
        store.touch(1_800_000_000).unwrap();
        let snap = read_unlocked(tmp.path()).unwrap().unwrap();
        assert_eq!(snap.heartbeat, Some(1_800_000_000));
        assert_eq!(fs::read(tmp.path().join(STATE_FILE)).unwrap(), before);
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
        fs::write(tmp.path().join(STATE_FILE), b"{\"version\":2,\"last_ip\":").unwrap();
        assert!(read_unlocked(tmp.path()).is_err());
        let store = StateStore::open(tmp.path()).unwrap();
        let s = store.load(&clock()).unwrap();
        assert_eq!(s, State::fresh());
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
        assert_eq!(store.load(&clock()).unwrap(), State::fresh());
    }

    #[tokio::test]
    async fn what_the_watch_remembers_survives_a_restart_and_is_durable() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::open(tmp.path()).unwrap();
        let c = clock();
        let fresh = store.load(&c).unwrap();
        store.save(&fresh, &c).await.unwrap();
        let text = fs::read_to_string(tmp.path().join(STATE_FILE)).unwrap();
        for absent in [
            "failing",
            "last_notification_error",
            "sources",
            "last_remediation",
        ] {
            assert!(!text.contains(absent), "{absent} in a fresh file: {text}");
        }
        let mut s = fresh.clone();
        s.failing.observe(Err("no usable public address"), 100);
        s.sources.record(
            crate::net::Family::Ipv4,
            "http https://api.ipify.org/",
            Some("HTTP status 503"),
        );
        s.last_notification_error = Some(DeliveryFailure {
            at: 7,
            notifier: "notify[0] ntfy https://ntfy.sh/***".into(),
            event: "failing".into(),
            attempts: 4,
            error: "cannot connect to ntfy.sh:443: connection refused".into(),
        });
        s.last_remediation = Some(LastRemediation {
            at: 90,
            cloud: CloudName::indigo(),
            instance: InstanceId("616516".into()),
            step: "stop".into(),
            outcome: "requested".into(),
            reason: Some("connection refused".into()),
        });
        // Each of them is news for the file.
        assert_ne!(s.durable(), fresh.durable());
        store.save(&s, &c).await.unwrap();
        assert_eq!(store.load(&c).unwrap(), s);
    }

    #[test]
    fn the_durable_view_ignores_heartbeats_and_probe_counters() {
        let mut a = State::fresh();
        let cloud = CloudName::indigo();
        let id = InstanceId("1".into());
        a.instance_mut(&cloud, &id).last_probe_at = Some(5);
        let mut b = a.clone();
        b.instance_mut(&cloud, &id).last_probe_at = Some(6);
        b.instance_mut(&cloud, &id).consecutive_failures = 2;
        assert_eq!(a.durable(), b.durable());
        b.instance_mut(&cloud, &id).given_up = true;
        assert_ne!(a.durable(), b.durable());
    }
}
