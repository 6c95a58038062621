//! `dynwall demo`: the whole story on loopback, against the built-in Indigo simulator (or, with
//! `--cloud openstack|skyatlas`, the OpenStack one: see [`openstack`]).
//!
//! Starts the simulator and two fake "what is my IP" sources, runs the real daemon loop against
//! them, changes the home address and shows the SSH rule being rewritten while every other rule
//! and the instance assignment stay as they were; then hangs an instance and shows it being
//! stopped and started again.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cli::DemoCloud;
use crate::config::{Config, ProcessEnv};
use crate::engine::{Clouds, Engine, Setup};
use crate::exit::{AppError, Code};
use crate::scheduler;
use crate::state::StateStore;
use crate::systemd::Notifier;
use dynwall_sim::{IndigoSim, IpEcho, PowerState, SimRule};

const TEMPLATE: u64 = 12836;
const INSTANCE: u64 = 616516;
/// Stand-ins for a home router's public addresses. They are only data here: nothing is sent to them.
const OLD_IP: &str = "81.2.69.160";
const NEW_IP: &str = "81.2.69.161";
/// Longest the demo waits for the daemon to react before declaring failure.
const PATIENCE: Duration = Duration::from_secs(30);

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn show_rules(sim: &IndigoSim) {
    if let Some(t) = sim.template(TEMPLATE) {
        for r in &t.inbound {
            say(&format!(
                "     in   {:<8} {:<4} {:<6} {}",
                r.kind, r.protocol, r.port, r.source
            ));
        }
        for r in &t.outbound {
            say(&format!(
                "     out  {:<8} {:<4} {:<6} {}",
                r.kind, r.protocol, r.port, r.source
            ));
        }
        let assigned: Vec<String> = t.assigned.iter().map(|i| i.to_string()).collect();
        say(&format!(
            "     assigned to instances: [{}]",
            assigned.join(", ")
        ));
    }
}

fn owned_source(sim: &IndigoSim) -> Option<String> {
    sim.template(TEMPLATE).and_then(|t| {
        t.inbound
            .iter()
            .find(|r| r.kind == "Custom" && r.protocol == "TCP" && r.port == "22")
            .map(|r| r.source.clone())
    })
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<Duration, AppError> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > PATIENCE {
            return Err(AppError::Setup(format!("demo: gave up waiting for {what}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(start.elapsed())
}

mod openstack;

/// Runs the demonstration on `cloud`; exits 0 when every step happened as described.
pub async fn run(cloud: DemoCloud) -> Result<Code, AppError> {
    match cloud {
        DemoCloud::Indigo => indigo().await,
        DemoCloud::Openstack => openstack::run(false).await,
        DemoCloud::Skyatlas => openstack::run(true).await,
    }
}

async fn indigo() -> Result<Code, AppError> {
    let setup = |e: std::io::Error| AppError::Setup(format!("demo: {e}"));
    let sim = IndigoSim::builder()
        .credentials("demo-key", "demo-secret")
        // The real API allows ~6 requests a minute; the demo is generous so it finishes quickly.
        .quota(60, Duration::from_secs(60))
        .ssh_endpoints(true)
        .power_delays(Duration::from_secs(1), Duration::from_secs(1))
        .instance(INSTANCE, "web-1", "127.0.0.1", PowerState::Running)
        .template(
            TEMPLATE,
            "home-ssh",
            vec![
                SimRule::new("HTTPS", "TCP", "443", "0.0.0.0/0"),
                SimRule::new("Custom", "TCP", "22", OLD_IP),
                SimRule::new("Custom", "TCP", "8080", "93.184.216.0/24"),
            ],
            vec![SimRule::new("Custom", "ICMP", "", "0.0.0.0/0")],
            &[INSTANCE],
        )
        .start()
        .await
        .map_err(setup)?;
    let sources = [
        IpEcho::start().await.map_err(setup)?,
        IpEcho::start().await.map_err(setup)?,
    ];
    for s in &sources {
        s.set_ip(OLD_IP);
    }
    // The simulated VPS sees our probes coming from the home address.
    sim.set_client_ip(OLD_IP);
    let ssh = sim
        .ssh_addr(INSTANCE)
        .ok_or_else(|| AppError::Setup("demo: the simulator has no SSH endpoint".into()))?;
    let dir = tempfile_dir().map_err(setup)?;
    let path = dir.join("dynwall.toml");
    let text = format!(
        r#"[daemon]
interval = "1s"
reconcile = "1h"
state_dir = "{state}"

[resolver]
quorum = 2
timeout = "2s"
[[resolver.source]]
kind = "http"
url = "{a}"
[[resolver.source]]
kind = "http-json"
url = "{b}"
field = "sourceip"

[indigo]
endpoint = "{endpoint}"
api_key = "demo-key"
api_secret = "demo-secret"

[[firewall]]
template = {TEMPLATE}
instances = [{INSTANCE}]

[[probe]]
instance = {INSTANCE}
address = "{ssh}"
interval = "1s"
timeout = "500ms"
failures = 2
stop_timeout = "5s"
start_timeout = "10s"
grace = "3s"
"#,
        state = dir.join("state").display(),
        a = sources[0].url(),
        b = sources[1].json_url(),
        endpoint = sim.url(),
    );
    std::fs::write(&path, &text).map_err(setup)?;

    say("dynwall demo: an Indigo simulator and two IP sources on loopback, and the real daemon loop.");
    say("");
    say(&format!(
        "1. The home router's address is {OLD_IP}. Firewall template {TEMPLATE} as the API holds it:"
    ));
    show_rules(&sim);

    let (shutdown, daemon) = start_daemon(&path)?;

    let state_file = dir.join("state").join("state.json");
    wait_for("the first cycle", || state_file.exists()).await?;
    say("");
    say(&format!(
        "2. dynwall started, found {OLD_IP} on both sources and the rule already in sync: {} writes.",
        sim.calls(dynwall_sim::Endpoint::UpdateFirewall)
    ));

    say("");
    say(&format!("3. The router gets a new address: {NEW_IP}."));
    for s in &sources {
        s.set_ip(NEW_IP);
    }
    sim.set_client_ip(NEW_IP);
    let took = wait_for("the rule to be rewritten", || {
        owned_source(&sim).as_deref() == Some(NEW_IP)
    })
    .await?;
    // The state records the address only after the write was read back and verified.
    wait_for("the verified write to be recorded", || {
        recorded_ip(&state_file).as_deref() == Some(NEW_IP)
    })
    .await?;
    say(&format!(
        "   {:.1} s later the rule is rewritten and verified; every other rule and the assignment are unchanged:",
        took.as_secs_f64()
    ));
    show_rules(&sim);
    say(&format!(
        "   API calls: {} token, {} template reads, {} update.",
        sim.tokens_issued(),
        sim.calls(dynwall_sim::Endpoint::GetTemplate),
        sim.calls(dynwall_sim::Endpoint::UpdateFirewall)
    ));

    say("   While the old rule stood, the SSH probe of web-1 was blocked by it; dynwall does not");
    say("   blame an instance for its own stale rule, so nothing was restarted.");

    say("");
    say("4. web-1 hangs: it is Running for the API but no longer answers SSH.");
    let calls_before = sim.call_log().len();
    sim.set_responsive(INSTANCE, false);
    let power = || {
        sim.power_log()
            .into_iter()
            .map(|(_, verb)| verb)
            .collect::<Vec<_>>()
    };
    let took = wait_for("web-1 to be restarted and answer again", || {
        power() == ["stop", "start"]
            && sim.instance(INSTANCE).is_some_and(|i| i.responsive)
            && std::fs::read_to_string(&state_file)
                .is_ok_and(|s| s.contains("\"consecutive_failures\": 0"))
    })
    .await?;
    say(&format!(
        "   {:.1} s later: two failed probes, then stop → Stopped → start → Running, and SSH answers again.",
        took.as_secs_f64()
    ));
    let log = sim.call_log();
    let spent = &log[calls_before.min(log.len())..];
    let count = |ep: dynwall_sim::Endpoint| spent.iter().filter(|c| c.endpoint == ep).count();
    say(&format!(
        "   Power requests sent: {}. API calls meanwhile: {} (instance lists {}, power {}).",
        power().join(", "),
        spent.len(),
        count(dynwall_sim::Endpoint::InstanceList),
        count(dynwall_sim::Endpoint::StatusUpdate)
    ));

    shutdown.cancel();
    let _ = daemon.await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    say("");
    say("Done. Try `dynwall check` with your own config next.");
    Ok(Code::Ok)
}

/// The address the state file records for the template, once a write was verified.
fn recorded_ip(state_file: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(state_file).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["clouds"]["indigo"]["firewalls"][TEMPLATE.to_string()]["ip"]
        .as_str()
        .map(str::to_string)
}

/// A private scratch directory for the demo's config and state.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("dynwall-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs the real daemon loop on the demo's config, until the returned token is cancelled.
fn start_daemon(
    path: &std::path::Path,
) -> Result<(CancellationToken, tokio::task::JoinHandle<()>), AppError> {
    let shutdown = CancellationToken::new();
    let cfg = Arc::new(Config::load(path, &ProcessEnv)?);
    let store = StateStore::open(&cfg.daemon.state_dir)?;
    let resolvers = crate::resolver::ResolverSet::from_config(&cfg.resolver)
        .map_err(|e| AppError::Setup(format!("demo: {e}")))?;
    let clouds = crate::app::build_clouds(&cfg, shutdown.clone(), None)?;
    let engine = Engine::new(Setup::new(cfg, resolvers, clouds, store, false))?;
    let (_reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let daemon = tokio::spawn(scheduler::run(
        engine,
        Notifier::disabled(),
        shutdown.clone(),
        reload_rx,
        |_: &Arc<Config>, _: &Clouds| Err(AppError::Setup("the demo does not reload".into())),
    ));
    Ok((shutdown, daemon))
}
