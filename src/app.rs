//! The commands: wiring config, state, provider and resolvers together for each entry point.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};
use crate::config::{self, Config, Env, ProcessEnv};
use crate::cycle::{Engine, FirewallOutcome};
use crate::exit::{AppError, Code};
use crate::net::Family;
use crate::provider::indigo::IndigoClient;
use crate::provider::Provider;
use crate::resolver::{family_name, Resolution, ResolverSet, Verdict};
use crate::scheduler::{self, Rebuilt};
use crate::state::{self, now_unix, StateStore};
use crate::sync;
use crate::systemd::Notifier;

/// The config path: `-c`, else `$DYNWALL_CONFIG`, else the default.
pub fn config_path(cli: &Cli, env: &dyn Env) -> PathBuf {
    cli.config
        .clone()
        .or_else(|| env.var("DYNWALL_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH))
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
        #[cfg(feature = "demo")]
        (Some(Command::Demo), ..) => crate::demo::run().await,
        #[cfg(not(feature = "demo"))]
        (Some(Command::Demo), ..) => {
            eprintln!("dynwall: this build has no demo (it was built without the `demo` feature)");
            return Code::Usage;
        }
        (Some(Command::Completions { shell }), ..) => print(&crate::cli::completions(*shell)),
        (Some(Command::Man), ..) => crate::cli::man_page()
            .map_err(|e| AppError::Setup(format!("cannot render the man page: {e}")))
            .and_then(|page| print(&page)),
    };
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

/// Builds the provider named by the config (Indigo today).
pub fn build_provider(
    cfg: &Config,
    shutdown: CancellationToken,
) -> Result<Arc<dyn Provider>, AppError> {
    let client = IndigoClient::new(&cfg.indigo, shutdown)
        .map_err(|e| AppError::Setup(format!("cannot build the Indigo client: {e}")))?;
    Ok(Arc::new(client))
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
    let provider = build_provider(&cfg, shutdown.clone())?;
    Engine::new(cfg, resolvers, provider, store, dry_run)
}

async fn daemon(path: &Path, dry_run: bool) -> Result<Code, AppError> {
    let shutdown = CancellationToken::new();
    let reload = crate::signals::install(shutdown.clone())
        .map_err(|e| AppError::Setup(format!("cannot install signal handlers: {e}")))?;
    let engine = prepare(path, dry_run, &shutdown)?;
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
    let rebuild = move || -> Result<Rebuilt, AppError> {
        let config = load(&rebuild_path)?;
        Ok(Rebuilt {
            resolvers: build_resolvers(&config)?,
            provider: build_provider(&config, rebuild_shutdown.clone())?,
            config,
        })
    };
    scheduler::run(engine, Notifier::from_env(), shutdown, reload, rebuild).await;
    Ok(Code::Ok)
}

async fn once(path: &Path, dry_run: bool) -> Result<Code, AppError> {
    let shutdown = CancellationToken::new();
    let _reload = crate::signals::install(shutdown.clone())
        .map_err(|e| AppError::Setup(format!("cannot install signal handlers: {e}")))?;
    let mut engine = prepare(path, dry_run, &shutdown)?;
    let report = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return Ok(Code::TempFail),
        r = engine.cycle() => r,
    };
    let mut code = report.code();
    if engine.has_probes() {
        // One probe round, then keep advancing a remediation in flight within its timeouts.
        let deadline = std::time::Instant::now() + engine.remediation_limit();
        loop {
            let round = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(Code::TempFail),
                r = engine.probe_round(true) => r,
            };
            match round {
                Ok(r) if r.any_given_up() => code = code.worst(Code::Failure),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!("probe round: {e}");
                    code = code.worst(e.code());
                    break;
                }
            }
            if !engine.remediation_in_flight() || std::time::Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(Code::TempFail),
                _ = tokio::time::sleep(engine.probe_pause()) => {}
            }
        }
    }
    if dry_run {
        let mut out = std::io::stdout().lock();
        for (i, r) in &report.firewalls {
            let fw = &engine.config.firewalls[*i];
            let _ = match r {
                Ok(FirewallOutcome::WouldUpdate(lines)) => lines
                    .iter()
                    .try_for_each(|l| writeln!(out, "would change {l}")),
                Ok(_) => writeln!(out, "firewall {}: in sync", fw.template),
                Err(e) => writeln!(out, "firewall {}: error: {e}", fw.template),
            };
        }
    }
    Ok(code)
}

async fn check(path: &Path) -> Result<Code, AppError> {
    let shutdown = CancellationToken::new();
    let cfg = load(path)?;
    let resolvers = build_resolvers(&cfg)?;
    let provider = build_provider(&cfg, shutdown)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "config {}: valid", path.display());
    let mut resolutions = Vec::new();
    let mut home = sync::Home::default();
    let mut code = Code::Ok;
    for family in cfg.tracked_families() {
        let r = resolvers.resolve(family).await;
        match &r.outcome {
            Ok(ip) => home.set(family, Some(*ip)),
            Err(_) => code = Code::Unavailable,
        }
        resolutions.push(r);
    }
    print_resolutions(&mut out, &resolutions);
    let known: std::collections::BTreeSet<_> = provider
        .list_instances()
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    let _ = writeln!(out, "credentials: accepted");
    for (i, fw) in cfg.firewalls.iter().enumerate() {
        let missing = sync::missing_instances(fw, &known);
        if !missing.is_empty() {
            let e = AppError::UnknownInstances {
                path: cfg.path.clone(),
                index: i,
                template: fw.template.to_string(),
                missing,
            };
            let _ = writeln!(out, "firewall {}: {e}", fw.template);
            code = code.worst(e.code());
        }
        let current = match provider.read_firewall(&fw.template).await {
            Ok(c) => c,
            Err(e) => {
                let _ = writeln!(out, "firewall {}: {e}", fw.template);
                code = code.worst(AppError::from(e).code());
                continue;
            }
        };
        let owned = current
            .rules
            .inbound
            .iter()
            .filter(|r| sync::is_owned(r, fw))
            .map(|r| r.source.as_str())
            .collect::<Vec<_>>();
        let _ = writeln!(
            out,
            "firewall {} ({}): {} inbound, {} outbound rules; owned {}/{} sources: [{}]",
            fw.template,
            current.name.as_deref().unwrap_or("unnamed"),
            current.rules.inbound.len(),
            current.rules.outbound.len(),
            fw.port,
            fw.protocol,
            owned.join(", ")
        );
        if home.covers_any(fw) {
            let plan = sync::plan(&current.rules, fw, &home);
            if plan.is_noop() {
                let _ = writeln!(out, "firewall {}: in sync", fw.template);
            }
            for l in plan.describe(fw) {
                let _ = writeln!(out, "plan: {l}");
            }
        }
    }
    Ok(code)
}

/// The family as written in the config and in `--json` (`ipv4`, `ipv6`).
fn family_key(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "ipv4",
        Family::Ipv6 => "ipv6",
    }
}

/// Prints every answer of `resolutions` as one aligned table (source, family, answer, latency,
/// verdict), then the agreed address of each family or why there is none.
fn print_resolutions(out: &mut impl Write, resolutions: &[Resolution]) {
    let mut rows: Vec<[String; 5]> = vec![[
        "SOURCE".into(),
        "FAMILY".into(),
        "ANSWER".into(),
        "LATENCY".into(),
        "VERDICT".into(),
    ]];
    for a in resolutions.iter().flat_map(|r| &r.answers) {
        let (answer, verdict) = match &a.verdict {
            Verdict::Accepted(ip) => (ip.to_string(), "accepted".to_string()),
            Verdict::Rejected { addr, reason } => (addr.to_string(), format!("rejected: {reason}")),
            Verdict::Failed(e) => ("-".to_string(), format!("failed: {e}")),
        };
        rows.push([
            a.source.clone(),
            family_key(a.family).to_string(),
            answer,
            format!("{} ms", a.latency.as_millis()),
            verdict,
        ]);
    }
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    for [source, family, answer, latency, verdict] in &rows {
        let _ = writeln!(
            out,
            "{source:<w0$}  {family:<w1$}  {answer:<w2$}  {latency:>w3$}  {verdict}"
        );
    }
    let _ = writeln!(out);
    for r in resolutions {
        let family = family_name(r.family);
        let _ = match &r.outcome {
            Ok(ip) => writeln!(
                out,
                "{family} public address: {ip} ({} of {} sources agree, quorum {})",
                r.agreeing(),
                r.answers.len(),
                r.quorum
            ),
            Err(e) => writeln!(out, "{family} public address: none: {e}"),
        };
    }
}

/// `dynwall ip`: resolves every family that has sources (all of them asked, none cut short) and
/// prints each answer and the agreed addresses. Exit 0 when at least one family reached quorum.
async fn ip(path: &Path, json: bool) -> Result<Code, AppError> {
    let cfg = load(path)?;
    let resolvers = build_resolvers(&cfg)?;
    let resolutions: Vec<Resolution> = futures::future::join_all(
        resolvers
            .families()
            .into_iter()
            .map(|f| resolvers.resolve(f)),
    )
    .await;
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{:#}", resolutions_json(&resolutions));
    } else {
        print_resolutions(&mut out, &resolutions);
    }
    Ok(if resolutions.iter().any(|r| r.outcome.is_ok()) {
        Code::Ok
    } else {
        Code::Unavailable
    })
}

/// The `--json` document of `dynwall ip`: `sources` (every answer), `families` (the outcome
/// per family), and, for scripts written before IPv6 sources, `address`, `quorum` and `error` of
/// the first family (IPv4 when it has sources).
fn resolutions_json(resolutions: &[Resolution]) -> serde_json::Value {
    let sources: Vec<_> = resolutions
        .iter()
        .flat_map(|r| &r.answers)
        .map(|a| {
            let (address, verdict, reason) = match &a.verdict {
                Verdict::Accepted(ip) => (Some(ip.to_string()), "accepted", None),
                Verdict::Rejected { addr, reason } => {
                    (Some(addr.to_string()), "rejected", Some(reason.to_string()))
                }
                Verdict::Failed(e) => (None, "failed", Some(e.to_string())),
            };
            serde_json::json!({
                "source": a.source,
                "family": family_key(a.family),
                "latency_ms": a.latency.as_millis() as u64,
                "address": address,
                "verdict": verdict,
                "reason": reason,
            })
        })
        .collect();
    let families: Vec<_> = resolutions
        .iter()
        .map(|r| {
            serde_json::json!({
                "family": family_key(r.family),
                "quorum": r.quorum,
                "agreeing": r.agreeing(),
                "address": r.outcome.as_ref().ok().map(|ip| ip.to_string()),
                "error": r.outcome.as_ref().err().map(|e| e.to_string()),
            })
        })
        .collect();
    let first = families.first().cloned().unwrap_or_default();
    serde_json::json!({
        "address": first.get("address").cloned().unwrap_or_default(),
        "quorum": first.get("quorum").cloned().unwrap_or_default(),
        "error": first.get("error").cloned().unwrap_or_default(),
        "families": families,
        "sources": sources,
    })
}

fn ago(t: u64) -> String {
    let secs = now_unix().saturating_sub(t);
    format!(
        "{} ago",
        humantime::format_duration(std::time::Duration::from_secs(secs))
    )
}

fn status(path: &Path, json: bool) -> Result<Code, AppError> {
    let cfg = load(path)?;
    let dir = &cfg.daemon.state_dir;
    let st = state::read_unlocked(dir)?;
    let mut out = std::io::stdout().lock();
    let Some(st) = st else {
        let _ = writeln!(
            out,
            "no state yet in {} (dynwall has not run)",
            dir.display()
        );
        return Ok(Code::Ok);
    };
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&st).unwrap_or_default()
        );
        return Ok(Code::Ok);
    }
    let _ = writeln!(out, "state: {}", dir.display());
    let _ = writeln!(
        out,
        "public address: {}",
        st.last_ip
            .map_or("unknown".to_string(), |ip| ip.to_string())
    );
    if let Some(c) = &st.last_cycle {
        let _ = writeln!(
            out,
            "last cycle: {} ({}){}",
            if c.ok { "ok" } else { "failed" },
            ago(c.finished_at),
            c.error.as_ref().map_or(String::new(), |e| format!(": {e}"))
        );
        if let Some(s) = c.last_success_at {
            let _ = writeln!(out, "last success: {}", ago(s));
        }
    }
    let now = now_unix();
    for p in &cfg.probes {
        let Some(r) = st.instances.get(&p.instance.0) else {
            let _ = writeln!(out, "instance {}: not probed yet", p.instance);
            continue;
        };
        let health = match r.last_probe_ok() {
            Some(true) => "healthy".to_string(),
            Some(false) => format!(
                "failing ({} in a row{})",
                r.consecutive_failures,
                r.last_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(": {e}"))
            ),
            None => "not probed yet".to_string(),
        };
        let incident = match (&r.remediation, r.given_up) {
            (Some(rem), _) => format!(
                "; remediating: {:?} since {}",
                rem.step,
                ago(rem.started_at)
            ),
            (None, true) => "; GIVEN UP: run `dynwall reset` once it is fixed".to_string(),
            (None, false) if r.in_grace(now) => "; in grace after a start".to_string(),
            (None, false) if r.last_hold.is_some() => format!(
                "; not acting: {}",
                r.last_hold.as_deref().unwrap_or_default()
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "instance {}: {health}{incident}; budget {}/{} actions in {}",
            p.instance,
            r.actions_in_window(p, now),
            p.max_actions,
            humantime::format_duration(p.window),
        );
        if let Some(t) = r.actions.last() {
            let _ = writeln!(out, "instance {}: last remediation {}", p.instance, ago(*t));
        }
    }
    for fw in &cfg.firewalls {
        let _ = match st.firewalls.get(&fw.template.0) {
            Some(r) => writeln!(
                out,
                "firewall {}: {} (verified {}, last written {})",
                fw.template,
                sync::Home {
                    v4: r.ip,
                    v6: r.ip6
                },
                ago(r.verified_at),
                r.updated_at.map_or("never".to_string(), ago)
            ),
            None => writeln!(out, "firewall {}: not synced yet", fw.template),
        };
    }
    Ok(Code::Ok)
}

fn healthcheck(path: &Path) -> Result<Code, AppError> {
    let cfg = load(path)?;
    let verdict = match state::read_unlocked(&cfg.daemon.state_dir) {
        Ok(Some(st)) => match st.last_cycle {
            Some(c) => {
                let age = now_unix().saturating_sub(c.finished_at);
                let limit = 3 * c.interval_secs.max(cfg.daemon.interval.as_secs()).max(1);
                if !c.ok {
                    Err(format!(
                        "last cycle failed: {}",
                        c.error.unwrap_or_default()
                    ))
                } else if age > limit {
                    Err(format!("last cycle finished {age}s ago (limit {limit}s)"))
                } else {
                    Ok(())
                }
            }
            None => Err("no cycle has finished yet".to_string()),
        },
        Ok(None) => Err("no cycle has finished yet".to_string()),
        Err(e) => Err(e.to_string()),
    };
    match verdict {
        Ok(()) => {
            println!("healthy");
            Ok(Code::Ok)
        }
        Err(why) => {
            println!("unhealthy: {why}");
            Ok(Code::Failure)
        }
    }
}

/// Leaves a reset request for `instance` in the state directory; the next probe round (of the
/// daemon or of a `--once` run) clears the instance's budget and "given up" mark.
fn reset(path: &Path, instance: &str) -> Result<Code, AppError> {
    let cfg = load(path)?;
    if !cfg.probes.iter().any(|p| p.instance.0 == instance) {
        eprintln!(
            "dynwall: instance {instance} has no [[probe]] in {}",
            path.display()
        );
        return Ok(Code::Usage);
    }
    let file = cfg
        .daemon
        .state_dir
        .join(format!("{}{instance}", crate::cycle::RESET_PREFIX));
    std::fs::write(&file, b"").map_err(|source| {
        AppError::State(state::StateError::Io {
            path: file.clone(),
            source,
        })
    })?;
    println!("reset of instance {instance} requested; it takes effect at the next probe round");
    Ok(Code::Ok)
}
