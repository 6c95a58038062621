//! The commands: wiring config, state, provider and resolvers together for each entry point.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};
use crate::config::{self, Config, Env, ProcessEnv};
use crate::engine::{Clouds, Engine, FirewallOutcome, Setup};
use crate::exit::{AppError, Code};
use crate::ids::CloudName;
use crate::net::Family;
use crate::provider::indigo::IndigoClient;
use crate::provider::openstack::OpenStackClient;
use crate::provider::Provider;
use crate::resolver::{family_name, Resolution, ResolverSet, Verdict};
use crate::scheduler::{self, Rebuilt};
use crate::state::{self, StateStore};
use crate::sync;
use crate::systemd::Notifier;

/// The longest a `--once` run takes: below the 15 minutes the timer unit allows it
/// (`TimeoutStartSec=15min`), with a minute to spare for start-up and the final save.
pub const ONCE_LIMIT: Duration = Duration::from_secs(14 * 60);
/// Within [`ONCE_LIMIT`], the time the sync may take; probe rounds and a remediation in flight
/// get the rest (what they cannot finish, the next run resumes).
pub const ONCE_SYNC_LIMIT: Duration = Duration::from_secs(11 * 60);

mod check;
pub mod companion;
mod ip;
mod status;

use check::check;
use ip::ip;
use status::{healthcheck, reset, status};

/// The config path: `-c`, else `$DYNWALL_CONFIG`, else the default.
pub fn config_path(cli: &Cli, env: &dyn Env) -> PathBuf {
    cli.config
        .clone()
        .or_else(|| env.var("DYNWALL_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH))
}

/// Runs `command` on the one runtime every entry point uses and returns its exit code. One
/// thread is plenty for a daemon that waits on timers and a few sockets, and keeps the resident
/// set small.
pub fn block_on(command: impl std::future::Future<Output = Code>) -> std::process::ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(command).into(),
        Err(e) => {
            eprintln!("dynwall: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the command `cli` names and returns the exit code.
pub async fn main(cli: Cli) -> Code {
    let path = config_path(&cli, &ProcessEnv);
    let result = match (&cli.command, cli.once, cli.dry_run) {
        (Some(Command::Run) | None, true, dry_run) => once(&path, dry_run).await,
        (Some(Command::Run) | None, false, dry_run) => daemon(&path, dry_run).await,
        (Some(_), true, _) | (Some(_), _, true) => {
            eprintln!("dynwall: --once and --dry-run go with `run` only");
            return Code::Usage;
        }
        (Some(Command::Check), ..) => check(&path).await,
        (Some(Command::Ip { json }), ..) => ip(&path, *json).await,
        (Some(Command::Status { json }), ..) => status(&path, *json),
        (Some(Command::Healthcheck), ..) => healthcheck(&path),
        (Some(Command::Reset { instance }), ..) => reset(&path, instance),
        // Not in this binary, which stays resident: see `companion`.
        (Some(Command::Demo { .. } | Command::Completions { .. } | Command::Man), ..) => {
            companion::exec(std::env::args_os())
        }
    };
    exit_code(result)
}

/// The exit code of a command's outcome; a failure is logged once, here.
fn exit_code(result: Result<Code, AppError>) -> Code {
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            e.code()
        }
    }
}

/// Writes generated text to stdout; a reader that went away early (`| head`) is not an error.
fn print(bytes: &[u8]) -> Result<Code, AppError> {
    match std::io::stdout().lock().write_all(bytes) {
        Ok(()) => Ok(Code::Ok),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Code::Ok),
        Err(e) => Err(AppError::Setup(format!("cannot write to stdout: {e}"))),
    }
}

/// Builds the clouds the config names: `[indigo]` and every `[openstack.NAME]`. A cloud whose
/// connection settings are unchanged since `previous` keeps its client, with its token and quota
/// budget (a reload).
pub fn build_clouds(
    cfg: &Config,
    shutdown: CancellationToken,
    previous: Option<(&Config, &Clouds)>,
) -> Result<Clouds, AppError> {
    let mut clouds = Clouds::new();
    if let Some(indigo_cfg) = cfg.indigo.as_ref() {
        let indigo = CloudName::indigo();
        let kept = previous
            .filter(|(old, _)| old.indigo.as_ref() == Some(indigo_cfg))
            .and_then(|(_, clouds)| clouds.get(&indigo).cloned());
        let provider: Arc<dyn Provider> = match kept {
            Some(old) => old,
            None => Arc::new(
                IndigoClient::new(indigo_cfg, shutdown.clone())
                    .map_err(|e| AppError::Setup(format!("cannot build the Indigo client: {e}")))?,
            ),
        };
        clouds = clouds.with(indigo, provider);
    }
    for (name, os_cfg) in &cfg.openstack {
        let kept = previous
            .filter(|(old, _)| old.openstack.get(name) == Some(os_cfg))
            .and_then(|(_, clouds)| clouds.get(name).cloned());
        let provider: Arc<dyn Provider> = match kept {
            Some(old) => old,
            None => Arc::new(OpenStackClient::new(os_cfg, shutdown.clone()).map_err(|e| {
                AppError::Setup(format!("cannot build the client of cloud {name}: {e}"))
            })?),
        };
        clouds = clouds.with(name.clone(), provider);
    }
    Ok(clouds)
}

/// Builds the client of the Salt soft step when the config has a `[salt]` table.
pub fn build_soft_cure(
    cfg: &Config,
    shutdown: CancellationToken,
) -> Result<Option<Arc<dyn crate::salt::SoftCure>>, AppError> {
    let Some(salt) = cfg.salt.as_ref() else {
        return Ok(None);
    };
    let client = crate::salt::SaltClient::new(salt, shutdown)
        .map_err(|e| AppError::Setup(format!("cannot build the Salt client: {e}")))?;
    Ok(Some(Arc::new(client)))
}

fn build_resolvers(cfg: &Config) -> Result<ResolverSet, AppError> {
    ResolverSet::from_config(&cfg.resolver)
        .map_err(|e| AppError::Setup(format!("cannot build the IP sources: {e}")))
}

fn load(path: &Path) -> Result<Arc<Config>, AppError> {
    Ok(Arc::new(Config::load(path, &ProcessEnv)?))
}

/// Loads everything a run needs and takes the state lock.
fn prepare(path: &Path, dry_run: bool, shutdown: &CancellationToken) -> Result<Engine, AppError> {
    let cfg = load(path)?;
    let store = StateStore::open(&cfg.daemon.state_dir)?;
    let resolvers = build_resolvers(&cfg)?;
    let clouds = build_clouds(&cfg, shutdown.clone(), None)?;
    let soft = build_soft_cure(&cfg, shutdown.clone())?;
    let mut engine = Engine::new(Setup::new(cfg, resolvers, clouds, store, dry_run))?;
    engine.set_soft_cure(soft);
    Ok(engine)
}

async fn daemon(path: &Path, dry_run: bool) -> Result<Code, AppError> {
    let shutdown = CancellationToken::new();
    let reload = crate::signals::install(shutdown.clone())
        .map_err(|e| AppError::Setup(format!("cannot install signal handlers: {e}")))?;
    let mut engine = prepare(path, dry_run, &shutdown)?;
    let watch = crate::watch::Watch::start(&engine.config, &shutdown).await?;
    engine.set_watch(watch);
    tracing::info!(
        config = %path.display(),
        firewalls = engine.config.firewalls.len(),
        interval = %humantime::format_duration(engine.config.daemon.interval),
        dry_run,
        "dynwall {} started",
        env!("CARGO_PKG_VERSION")
    );
    let rebuild_shutdown = shutdown.clone();
    let rebuild_path = path.to_path_buf();
    let rebuild = move |old: &Arc<Config>, clouds: &Clouds| -> Result<Rebuilt, AppError> {
        let config = load(&rebuild_path)?;
        Ok(Rebuilt {
            resolvers: build_resolvers(&config)?,
            clouds: build_clouds(&config, rebuild_shutdown.clone(), Some((old, clouds)))?,
            soft: build_soft_cure(&config, rebuild_shutdown.clone())?,
            config,
        })
    };
    scheduler::run(engine, Notifier::from_env(), shutdown, reload, rebuild).await;
    Ok(Code::Ok)
}

/// One cycle and one probe round (advancing a remediation in flight), bounded by
/// [`ONCE_LIMIT`] whatever the quota or the instances do.
async fn once(path: &Path, dry_run: bool) -> Result<Code, AppError> {
    let started = tokio::time::Instant::now();
    let shutdown = CancellationToken::new();
    let _reload = crate::signals::install(shutdown.clone())
        .map_err(|e| AppError::Setup(format!("cannot install signal handlers: {e}")))?;
    let mut engine = prepare(path, dry_run, &shutdown)?;
    engine.set_watch(crate::watch::Watch::notifiers_only(&engine.config)?);
    let cycle = tokio::select! {
        biased;
        _ = shutdown.cancelled() => {
            engine.shutdown().await;
            return Ok(Code::TempFail);
        }
        r = tokio::time::timeout_at(started + ONCE_SYNC_LIMIT, engine.cycle()) => r,
    };
    let (report, mut code) = match cycle {
        Ok(r) => {
            let code = r.code();
            (Some(r), code)
        }
        Err(_) => {
            tracing::error!(
                "the firewall sync did not finish within {}; the next run continues it",
                humantime::format_duration(ONCE_SYNC_LIMIT)
            );
            engine.abort_job();
            (None, Code::TempFail)
        }
    };
    let deadline = started + ONCE_LIMIT;
    if engine.has_probes() {
        // One probe round, then keep advancing a remediation in flight while time is left.
        loop {
            let round = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    engine.shutdown().await;
                    return Ok(Code::TempFail);
                }
                r = tokio::time::timeout_at(deadline, engine.probe_round(true)) => r,
            };
            match round {
                Err(_) => break,
                Ok(Ok(r)) if r.needs_attention() => code = code.worst(Code::Failure),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!("probe round: {e}");
                    code = code.worst(e.code());
                    break;
                }
            }
            if engine.check_requested() {
                // A firewall must be synced before anything is done about an instance: do it
                // now; the next run decides about the instance.
                let _ = tokio::time::timeout_at(deadline, engine.cycle()).await;
                break;
            }
            let next = engine.next_probe_due().unwrap_or(deadline);
            if !engine.remediation_in_flight() || next >= deadline {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    engine.shutdown().await;
                    return Ok(Code::TempFail);
                }
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }
    engine.close_watch(crate::notify::ONCE_GRACE).await;
    engine.shutdown().await;
    if dry_run {
        let mut out = std::io::stdout().lock();
        let outcomes = report
            .as_ref()
            .map(|r| r.firewalls.as_slice())
            .unwrap_or_default();
        for (i, r) in outcomes {
            let fw = &engine.config.firewalls[*i];
            let _ = match r {
                Ok(FirewallOutcome::WouldUpdate(lines)) => lines
                    .iter()
                    .try_for_each(|l| writeln!(out, "would change {l}")),
                Ok(_) => writeln!(out, "firewall {}: in sync", fw.id),
                Err(e) => writeln!(out, "firewall {}: error: {e}", fw.id),
            };
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timer unit gives a run `TimeoutStartSec`; a `--once` run must end well before it.
    #[test]
    fn a_once_run_is_bounded_below_the_timer_units_start_timeout() {
        let unit = include_str!("../../systemd/dynwall-once.service");
        let limit = unit
            .lines()
            .find_map(|l| l.trim().strip_prefix("TimeoutStartSec="))
            .and_then(|v| humantime::parse_duration(v.trim()).ok())
            .expect("the unit sets TimeoutStartSec");
        assert!(ONCE_SYNC_LIMIT < ONCE_LIMIT);
        assert!(
            ONCE_LIMIT + Duration::from_secs(30) <= limit,
            "{ONCE_LIMIT:?} leaves no room below {limit:?}"
        );
    }
}
