//! A seeded randomized run: the engine (in-process, real client, real probes) against the
//! simulator while addresses flip, sources disagree or fail, the API errs, throttles, hangs and
//! loses tokens, guests hang, the owner stops an instance, rules are edited by hand, the
//! process crashes or is stopped mid-step and its state file is damaged. After every step,
//! SPEC invariants 1–9 are checked.
//!
//! CI runs fixed seeds, briefly. A longer run on demand:
//! `DYNWALL_CHAOS_SEEDS=1-20 DYNWALL_CHAOS_STEPS=200 cargo test --test chaos -- --nocapture`,
//! or `cargo test --test chaos -- --ignored` for the long fixed-seed run.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dynwall::config::{Config, ProcessEnv};
use dynwall::engine::{Engine, Setup};
use dynwall::resolver::ResolverSet;
use dynwall::state::StateStore;
use dynwall_sim::{BadToken, Endpoint, PowerState, SimRule};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

/// Home addresses the test moves between (globally routable, never contacted).
const HOMES: [&str; 4] = [OLD_IP, NEW_IP, "81.2.69.170", "81.2.69.171"];

/// Every source answers `home` again.
fn heal_sources(w: &World, home: &str) {
    for s in &w.sources {
        s.set_status(200);
        s.set_ip(home);
    }
    w.sim.set_client_ip(home);
}

/// What the test knows of the world it made.
struct Truth {
    /// Addresses every source agreed on at some point (the only ones dynwall may write).
    agreed: BTreeSet<String>,
    /// The address both sources last agreed on.
    home: String,
    /// Sources written into owned rules by hand.
    hand_edits: BTreeSet<String>,
    /// The owner stopped DB on purpose.
    db_stopped: bool,
    restarts: usize,
    expirations: usize,
    injected_429: usize,
    bad_tokens: usize,
    /// Steps in which the API answered slower than the client waits (a token the server issued
    /// may never have reached us: each attempt of each call may ask again).
    hangs: usize,
}

struct Process {
    engine: Engine,
    /// Ends the client's waits and requests (the daemon's shutdown token).
    token: CancellationToken,
}

fn start(cfg: &std::path::Path) -> Process {
    let config = Arc::new(Config::load(cfg, &ProcessEnv).expect("config"));
    let token = CancellationToken::new();
    let resolvers = ResolverSet::from_config(&config.resolver).expect("resolvers");
    let clouds = dynwall::app::build_clouds(&config, token.clone(), None).expect("clouds");
    let store = StateStore::open(&config.daemon.state_dir).expect("the lock is free");
    let engine = Engine::new(Setup::new(config, resolvers, clouds, store, false)).expect("engine");
    Process { engine, token }
}

/// One check with its sync, then one probe round: what a daemon does in a second.
async fn tick(p: &mut Process) {
    p.engine.cycle().await;
    let _ = p.engine.probe_round(true).await;
}

fn config(w: &World) -> std::path::PathBuf {
    let probe = |id: u64| {
        format!(
            "[[probe]]\ninstance = {id}\naddress = \"{}\"\ninterval = \"1s\"\ntimeout = \"400ms\"\n\
             failures = 2\nstop_timeout = \"3s\"\nstart_timeout = \"5s\"\ngrace = \"1s\"\n\
             max_actions = 3\nwindow = \"1h\"\n",
            w.sim.ssh_addr(id).expect("ssh endpoint")
        )
    };
    let text = format!(
        "[daemon]\nstate_dir = \"{state}\"\ninterval = \"1s\"\nreconcile = \"5s\"\n\
         [resolver]\nquorum = 2\ntimeout = \"1s\"\n\
         [[resolver.source]]\nkind = \"http\"\nurl = \"{a}\"\n\
         [[resolver.source]]\nkind = \"http-json\"\nurl = \"{b}\"\nfield = \"sourceip\"\n\
         [indigo]\nendpoint = \"{endpoint}\"\napi_key = \"{KEY}\"\napi_secret = \"{SECRET}\"\ntimeout = \"2s\"\n\
         [[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}, {DB}]\n{web}{db}",
        state = w.state_dir().display(),
        a = w.sources[0].url(),
        b = w.sources[1].json_url(),
        endpoint = w.sim.url(),
        web = probe(WEB),
        db = probe(DB),
    );
    let path = w.dir.path().join("dynwall.toml");
    std::fs::write(&path, text).expect("config");
    path
}

type Key = (String, String, String, String);

fn key(r: &SimRule) -> Key {
    (
        r.kind.clone(),
        r.protocol.clone(),
        r.port.clone(),
        r.source.clone(),
    )
}

fn owned(r: &SimRule) -> bool {
    r.kind == "Custom" && r.protocol == "TCP" && r.port == "22"
}

/// Invariants 1–4: what dynwall wrote, and what the template holds.
fn check_writes(w: &World, truth: &Truth, foreign_in: &[Key], foreign_out: &[Key], step: &str) {
    for body in w.sim.update_bodies() {
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
        let rules = |dir: &str| -> Vec<Key> {
            v[dir]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    let s = |k: &str| r[k].as_str().unwrap_or("?").to_string();
                    (s("type"), s("protocol"), s("port"), s("source"))
                })
                .collect()
        };
        let (mut own, mut others): (Vec<Key>, Vec<Key>) = rules("inbound")
            .into_iter()
            .partition(|(k, p, port, _)| k == "Custom" && p == "TCP" && port == "22");
        for (_, _, _, source) in own.drain(..) {
            // 1 and 4: only an address every source agreed on, globally routable, bare.
            assert!(
                truth.agreed.contains(&source),
                "{step}: wrote {source} ({body})"
            );
            assert!(
                dynwall::net::is_global(source.parse().expect("a bare address")),
                "{step}: {source}"
            );
        }
        // 2: every other rule and the assignment, unchanged.
        others.sort();
        let mut out = rules("outbound");
        out.sort();
        assert_eq!(
            others, foreign_in,
            "{step}: inbound rules not ours ({body})"
        );
        assert_eq!(out, foreign_out, "{step}: outbound rules ({body})");
        assert_eq!(
            v["instances"],
            serde_json::json!(["616516", "616517"]),
            "{step}"
        );
    }
    let t = w.sim.template(TEMPLATE).expect("template");
    let mut assigned = t.assigned.clone();
    assigned.sort();
    assert_eq!(assigned, vec![WEB, DB], "{step}: assignment");
    for r in t.inbound.iter().filter(|r| owned(r)) {
        assert!(
            truth.agreed.contains(&r.source) || truth.hand_edits.contains(&r.source),
            "{step}: the template holds {}",
            r.source
        );
    }
}

/// Invariant 8: a state file that is there parses as the current version.
fn check_state(w: &World, step: &str) {
    let path = w.state_dir().join("state.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{step}: state file unreadable: {e}"));
        assert_eq!(v["version"], dynwall::state::VERSION, "{step}");
    }
}

async fn run_seed(seed: u64, steps: usize) {
    if std::env::var_os("DYNWALL_CHAOS_LOG").is_some() {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(std::io::stderr)
            .finish()
            .with(dynwall::telemetry::filter(Some("dynwall=debug,chaos=info")))
            .try_init();
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let w = World::with(
        sim_builder()
            .quota(100_000, Duration::from_secs(3))
            .ssh_endpoints(true)
            .power_delays(Duration::from_millis(200), Duration::from_millis(200)),
        2,
    )
    .await;
    w.sim.set_client_ip(OLD_IP);
    let t0 = w.sim.template(TEMPLATE).expect("template");
    let mut foreign_in: Vec<Key> = t0.inbound.iter().filter(|r| !owned(r)).map(key).collect();
    foreign_in.sort();
    let mut foreign_out: Vec<Key> = t0.outbound.iter().map(key).collect();
    foreign_out.sort();
    let cfg = config(&w);
    let mut truth = Truth {
        agreed: [OLD_IP.to_string()].into(),
        home: OLD_IP.to_string(),
        hand_edits: BTreeSet::new(),
        db_stopped: false,
        restarts: 0,
        expirations: 0,
        injected_429: 0,
        bad_tokens: 0,
        hangs: 0,
    };
    let mut p = start(&cfg);
    tick(&mut p).await;
    let mut delay = Duration::ZERO;

    for n in 0..steps {
        let action = rng.random_range(0..14);
        let step = format!("seed {seed} step {n} action {action}");
        tracing::info!("---- {step}");
        match action {
            0 | 1 => {
                // The home address moves and both sources see it.
                let to = HOMES[rng.random_range(0..HOMES.len())];
                w.set_ip(to);
                w.sim.set_client_ip(to);
                truth.agreed.insert(to.to_string());
                truth.home = to.to_string();
            }
            2 => {
                // It moves, but only one source sees it yet.
                let to = HOMES[rng.random_range(0..HOMES.len())];
                w.sim.set_client_ip(to);
                w.sources[rng.random_range(0..2)].set_ip(to);
            }
            3 => w.sources[rng.random_range(0..2)].set_status(503),
            4 => {
                let status = [500, 502, 503][rng.random_range(0..3)];
                w.sim.fail_next(rng.random_range(1..4), status);
            }
            5 => {
                let ep = [
                    Endpoint::GetTemplate,
                    Endpoint::InstanceList,
                    Endpoint::StatusUpdate,
                ][rng.random_range(0..3)];
                w.sim.fail_next_on(ep, 1, 429);
                truth.injected_429 += 1;
            }
            6 => {
                let ep = [Endpoint::GetTemplate, Endpoint::InstanceList][rng.random_range(0..2)];
                w.sim.malformed_next(ep, 1);
            }
            7 => {
                delay = Duration::from_millis(rng.random_range(0..2_500));
                w.sim.set_delay(delay);
            }
            8 => {
                w.sim.set_responsive(WEB, false);
            }
            9 => {
                // The owner stops or starts DB by hand.
                truth.db_stopped = !truth.db_stopped;
                let to = if truth.db_stopped {
                    PowerState::Stopped
                } else {
                    PowerState::Running
                };
                w.sim.set_power(DB, to);
            }
            10 => {
                // Someone edits our rule by hand.
                let stale = HOMES[rng.random_range(0..HOMES.len())];
                let mut inbound: Vec<SimRule> =
                    t0.inbound.iter().filter(|r| !owned(r)).cloned().collect();
                inbound.push(SimRule::new("Custom", "TCP", "22", stale));
                truth.hand_edits.insert(stale.to_string());
                w.sim.set_rules(TEMPLATE, inbound, t0.outbound.clone());
            }
            11 => {
                w.sim.expire_tokens();
                truth.expirations += 1;
            }
            12 => {
                // The process is killed; sometimes its state file is damaged meanwhile.
                drop(p);
                if rng.random_bool(0.3) {
                    let _ =
                        std::fs::write(w.state_dir().join("state.json"), b"{\"version\":2,\"clo");
                }
                p = start(&cfg);
                truth.restarts += 1;
            }
            _ => {
                if rng.random_bool(0.5) {
                    w.sim.issue_bad_tokens(1, BadToken::LineBreak);
                    w.sim.expire_tokens();
                    truth.bad_tokens += 1;
                    truth.expirations += 1;
                } else {
                    w.sim.set_hung(WEB, rng.random_bool(0.5));
                }
            }
        }
        // Faults of a previous step fade.
        if rng.random_bool(0.4) {
            heal_sources(&w, &truth.home);
            delay = Duration::ZERO;
            w.sim.set_delay(delay);
        }
        if delay >= Duration::from_millis(1_500) {
            truth.hangs += 1;
        }
        if rng.random_bool(0.3) {
            w.sim.set_responsive(WEB, true);
        }

        let before = w.sim.power_log().len();
        let web_responsive = w.sim.instance(WEB).is_some_and(|i| i.responsive);
        let in_flight = p.engine.remediation_in_flight();
        let writes = w.sim.calls(Endpoint::UpdateFirewall);
        let in_sync = w.owned_sources() == vec![truth.home.clone()];

        if rng.random_bool(0.15) {
            // Invariant 9: stopped at any point of a step, it stops at once with valid state.
            let cut = Duration::from_millis(rng.random_range(0..1_500));
            let _ = tokio::time::timeout(cut, tick(&mut p)).await;
            p.token.cancel();
            let t = Instant::now();
            p.engine.shutdown().await;
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "{step}: stop took {:?}",
                t.elapsed()
            );
            check_state(&w, &step);
            drop(p);
            p = start(&cfg);
            truth.restarts += 1;
        } else {
            tokio::time::timeout(Duration::from_secs(60), tick(&mut p))
                .await
                .unwrap_or_else(|_| panic!("{step}: a step took over a minute"));
        }

        // 6: power requests only for a guest that was really hung, never for DB.
        let log = w.sim.power_log();
        for (id, verb) in &log[before..] {
            assert_ne!(
                *id, DB,
                "{step}: {verb} sent to an instance its owner controls"
            );
            if verb == "stop" && !in_flight {
                // A remediation begins only for a guest that does not answer; one under way
                // goes on whatever the gates (it is decided, and ends with a start).
                assert!(
                    !web_responsive,
                    "{step}: stop sent to a responsive instance"
                );
            }
        }
        // 3: no write without a change.
        if in_sync && w.sim.calls(Endpoint::UpdateFirewall) > writes {
            panic!("{step}: a write although the template was in sync");
        }
        check_writes(&w, &truth, &foreign_in, &foreign_out, &step);
        check_state(&w, &step);
        // 5: one token per process and revocation (a bad one is replaced: one more); no 429
        // the test did not ask for, but a restarted process may meet the spike arrest once.
        let tokens = 1 + truth.restarts + truth.expirations + truth.bad_tokens + 6 * truth.hangs;
        assert!(
            w.sim.tokens_issued() <= tokens,
            "{step}: {} tokens",
            w.sim.tokens_issued()
        );
        assert!(
            w.sim.throttled() <= truth.injected_429 + truth.restarts,
            "{step}: {} throttled",
            w.sim.throttled()
        );
    }

    // 7: once the weather clears, an instance dynwall stopped runs again.
    heal_sources(&w, &truth.home);
    w.sim.set_delay(Duration::ZERO);
    w.sim.fail_next(0, 500);
    w.sim.set_hung(WEB, false);
    w.sim.set_responsive(WEB, true);
    let stopped_by_us = w
        .sim
        .power_log()
        .iter()
        .any(|(id, v)| *id == WEB && v != "start");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        tick(&mut p).await;
        let running = w
            .sim
            .instance(WEB)
            .is_some_and(|i| i.power == PowerState::Running);
        let synced = w.owned_sources() == vec![truth.home.clone()];
        if running && synced && !p.engine.remediation_in_flight() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let running = w
        .sim
        .instance(WEB)
        .is_some_and(|i| i.power == PowerState::Running);
    let journal =
        std::fs::read_to_string(w.state_dir().join("owed-starts.json")).unwrap_or_default();
    assert!(
        running || (stopped_by_us && journal.contains(&WEB.to_string())),
        "seed {seed}: WEB left off and no start owed; power log {:?}, journal {journal}",
        w.sim.power_log()
    );
    assert_eq!(
        w.owned_sources(),
        vec![truth.home.clone()],
        "seed {seed}: synced at the end"
    );
    p.engine.shutdown().await;
}

fn seeds_and_steps(default_seeds: &[u64], default_steps: usize) -> (Vec<u64>, usize) {
    let seeds = std::env::var("DYNWALL_CHAOS_SEEDS")
        .ok()
        .and_then(|s| {
            let (a, b) = s.split_once('-').unwrap_or((&s, &s));
            Some((a.trim().parse().ok()?..=b.trim().parse().ok()?).collect())
        })
        .unwrap_or_else(|| default_seeds.to_vec());
    let steps = std::env::var("DYNWALL_CHAOS_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_steps);
    (seeds, steps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_seeds_keep_every_invariant() {
    let (seeds, steps) = seeds_and_steps(&[7, 1234], 18);
    for seed in seeds {
        run_seed(seed, steps).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long randomized run (minutes): cargo test --test chaos -- --ignored"]
async fn many_seeds_keep_every_invariant() {
    for seed in 100..110 {
        run_seed(seed, 150).await;
    }
}
