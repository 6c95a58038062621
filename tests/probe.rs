//! The real binary's prober against the simulator's instances and fake SSH endpoints:
//! remediation, its guards (SPEC invariant 6) and its persistence (invariant 7).

mod common;

use std::time::Duration;

use common::*;
use dynwall_sim::{Endpoint, PowerState};

async fn world() -> World {
    ssh_world(sim_builder()).await
}

/// A `[[probe]]` table with fast test timings; `overrides` replace or add keys.
fn probe_table(w: &World, id: u64, overrides: &[(&str, &str)]) -> String {
    let addr = w.sim.ssh_addr(id).expect("ssh endpoint");
    let mut keys = vec![
        ("interval", "\"1s\"".to_string()),
        ("timeout", "\"400ms\"".to_string()),
        ("failures", "2".to_string()),
        ("stop_timeout", "\"2s\"".to_string()),
        ("start_timeout", "\"5s\"".to_string()),
        ("grace", "\"2s\"".to_string()),
    ];
    for (k, v) in overrides {
        keys.retain(|(key, _)| key != k);
        keys.push((k, v.to_string()));
    }
    let mut t = format!("[[probe]]\ninstance = {id}\naddress = \"{addr}\"\n");
    for (k, v) in keys {
        t += &format!("{k} = {v}\n");
    }
    t
}

fn config(w: &World, probes: &str) -> std::path::PathBuf {
    w.config_with(
        "interval = \"1s\"",
        &format!("[[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}, {DB}]\n"),
        probes,
    )
}

fn verbs(w: &World, id: u64) -> Vec<String> {
    w.sim
        .power_log()
        .into_iter()
        .filter(|(i, _)| *i == id)
        .map(|(_, v)| v)
        .collect()
}

fn record(w: &World, id: u64) -> serde_json::Value {
    state_json(w)["clouds"]["indigo"]["instances"][id.to_string()].clone()
}

/// Waits until the running daemon has seen `id` answer a probe.
async fn first_healthy_probe(w: &World, id: u64) {
    eventually(Duration::from_secs(15), "a healthy probe", || {
        record(w, id)["last_ok_at"].is_u64()
    })
    .await;
}

async fn stop(daemon: tokio::process::Child) -> String {
    stop_daemon(daemon).await
}

#[tokio::test]
async fn a_hung_instance_gets_exactly_one_stop_and_one_start() {
    let w = world().await;
    let cfg = config(&w, &probe_table(&w, WEB, &[]));
    let daemon = spawn_daemon(&cfg, &[]);
    first_healthy_probe(&w, WEB).await;
    w.sim.set_responsive(WEB, false);
    eventually(
        Duration::from_secs(30),
        "stop, start and a healthy probe again",
        || {
            verbs(&w, WEB) == ["stop", "start"]
                && record(&w, WEB)["remediation"].is_null()
                && record(&w, WEB)["consecutive_failures"] == 0
                && w.sim
                    .instance(WEB)
                    .is_some_and(|i| i.power == PowerState::Running)
        },
    )
    .await;
    // Healthy again: no further action.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(verbs(&w, WEB), ["stop", "start"]);
    assert!(
        verbs(&w, DB).is_empty(),
        "the healthy instance is untouched"
    );
    let log = stop(daemon).await;
    assert!(log.contains("stopping"), "{log}");
}

#[tokio::test]
async fn a_stop_that_never_completes_is_forced_after_stop_timeout() {
    let w = world().await;
    let cfg = config(&w, &probe_table(&w, WEB, &[]));
    let daemon = spawn_daemon(&cfg, &[]);
    first_healthy_probe(&w, WEB).await;
    w.sim.set_hung(WEB, true);
    w.sim.set_responsive(WEB, false);
    eventually(Duration::from_secs(40), "stop, forcestop, start", || {
        verbs(&w, WEB) == ["stop", "forcestop", "start"]
            && w.sim
                .instance(WEB)
                .is_some_and(|i| i.power == PowerState::Running)
    })
    .await;
    let log = stop(daemon).await;
    assert!(log.contains("forcing it off"), "{log}");
}

#[tokio::test]
async fn an_instance_that_never_recovers_is_given_up_after_its_budget() {
    let w = world().await;
    // Two remediations per 30 s window (backoff between them: 30 s / 3 = 10 s). Once given up,
    // the instance stays given up even after the window rolls on.
    let cfg = config(
        &w,
        &probe_table(&w, WEB, &[("max_actions", "2"), ("window", "\"30s\"")]),
    );
    let daemon = spawn_daemon(&cfg, &[]);
    first_healthy_probe(&w, WEB).await;
    w.sim.set_broken(WEB, true);
    w.sim.set_responsive(WEB, false);
    eventually(Duration::from_secs(60), "given up", || {
        record(&w, WEB)["given_up"] == true
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(verbs(&w, WEB), ["stop", "start", "stop", "start"]);
    let log = stop(daemon).await;
    assert!(log.contains("giving up"), "{log}");

    let status = run(&cfg, &["status"]).await;
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("GIVEN UP"),
        "{}",
        text(&status)
    );
    // A --once run reports it: an operator should look.
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert_eq!(verbs(&w, WEB).len(), 4, "no action once given up");

    // The operator resets the budget: dynwall may act again (two failed probes, then a restart).
    let out = run(&cfg, &["reset", &WEB.to_string()]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(record(&w, WEB)["given_up"], false);
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        verbs(&w, WEB),
        ["stop", "start", "stop", "start", "stop", "start"]
    );
}

/// Runs the daemon against an unresponsive WEB for a while and asserts no power request at all.
async fn assert_no_action(w: &World, cfg: &std::path::Path, args: &[&str]) -> String {
    let mut c = bin();
    c.arg("-c").arg(cfg).args(args);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let daemon = c.spawn().expect("daemon");
    eventually(Duration::from_secs(20), "several failed probes", || {
        w.sim.ssh_connections(WEB) >= 5
    })
    .await;
    let log = stop(daemon).await;
    assert!(w.sim.power_log().is_empty(), "no power request: {log}");
    assert_eq!(w.sim.calls(Endpoint::StatusUpdate), 0, "{log}");
    log
}

#[tokio::test]
async fn no_action_when_no_source_answers() {
    let w = world().await;
    for s in &w.sources {
        s.set_status(503);
    }
    w.sim.set_responsive(WEB, false);
    let cfg = config(&w, &probe_table(&w, WEB, &[]));
    let log = assert_no_action(&w, &cfg, &[]).await;
    assert!(log.contains("no usable public IPv4 address"), "{log}");
}

#[tokio::test]
async fn no_action_while_the_firewall_rule_is_stale() {
    let w = world().await;
    // The home address moved, but the firewall cannot be updated: our probes are blocked by our
    // own stale rule, and the instance must not pay for it.
    w.set_ip(NEW_IP);
    w.sim.set_client_ip(NEW_IP);
    w.sim.fail_next_on(Endpoint::UpdateFirewall, 1000, 400);
    let cfg = config(&w, &probe_table(&w, WEB, &[]));
    let log = assert_no_action(&w, &cfg, &[]).await;
    assert_eq!(w.owned_sources(), vec![OLD_IP.to_string()]);
    // Said once, not every round, and remembered for `status`.
    assert_eq!(log.matches("not acting:").count(), 1, "{log}");
    let hold = record(&w, WEB)["last_hold"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(hold.contains("firewall"), "{hold}");
    let status = run(&cfg, &["status"]).await;
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("not acting: the firewall"),
        "{}",
        text(&status)
    );
}

#[tokio::test]
async fn a_deliberately_stopped_instance_is_left_alone() {
    let w = world().await;
    w.sim.set_power(WEB, PowerState::Stopped);
    let cfg = config(&w, &probe_table(&w, WEB, &[]));
    assert_no_action(&w, &cfg, &[]).await;
    assert_eq!(
        w.sim.instance(WEB).map(|i| i.power),
        Some(PowerState::Stopped)
    );
}

#[tokio::test]
async fn half_the_fleet_down_is_an_observer_problem_not_two_reboots() {
    let w = world().await;
    w.sim.set_responsive(WEB, false);
    w.sim.set_responsive(DB, false);
    let probes = probe_table(&w, WEB, &[]) + &probe_table(&w, DB, &[]);
    let cfg = config(&w, &probes);
    let log = assert_no_action(&w, &cfg, &[]).await;
    assert_eq!(
        log.matches("observer problem").count(),
        1,
        "warned once: {log}"
    );
}

#[tokio::test]
async fn dry_run_logs_the_intended_action_and_takes_none() {
    let w = world().await;
    w.sim.set_responsive(WEB, false);
    let cfg = config(&w, &probe_table(&w, WEB, &[]));
    let log = assert_no_action(&w, &cfg, &["run", "--dry-run"]).await;
    assert!(log.contains("dry run"), "{log}");
}

#[tokio::test]
async fn an_instance_stopped_by_a_killed_daemon_is_started_by_the_next_run() {
    let w = World::with(
        sim_builder()
            .ssh_endpoints(true)
            .power_delays(Duration::from_secs(2), Duration::from_millis(300)),
        2,
    )
    .await;
    w.sim.set_client_ip(OLD_IP);
    let cfg = config(&w, &probe_table(&w, WEB, &[("stop_timeout", "\"20s\"")]));
    let mut daemon = spawn_daemon(&cfg, &[]);
    first_healthy_probe(&w, WEB).await;
    w.sim.set_responsive(WEB, false);
    eventually(Duration::from_secs(20), "the stop", || {
        verbs(&w, WEB) == ["stop"]
    })
    .await;
    signal(&daemon, "KILL").await;
    let _ = daemon.wait().await;
    assert_eq!(
        record(&w, WEB)["remediation"]["step"]["step"],
        "stopping",
        "{}",
        record(&w, WEB)
    );

    eventually(Duration::from_secs(10), "the instance stopped", || {
        w.sim
            .instance(WEB)
            .is_some_and(|i| i.power == PowerState::Stopped)
    })
    .await;
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(verbs(&w, WEB), ["stop", "start"]);
    assert_eq!(
        w.sim.instance(WEB).map(|i| i.power),
        Some(PowerState::Running)
    );
}

#[tokio::test]
async fn a_healthy_round_costs_no_api_call_and_a_failing_one_a_single_list() {
    let w = world().await;
    let probes = probe_table(&w, WEB, &[]) + &probe_table(&w, DB, &[]);
    let cfg = config(&w, &probes);
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        w.sim.calls(Endpoint::InstanceList),
        0,
        "healthy instances need no power state"
    );
    assert_eq!(w.sim.ssh_connections(WEB), 1);
    assert_eq!(w.sim.ssh_connections(DB), 1);
    let status = run(&cfg, &["status"]).await;
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(out.contains(&format!("instance {WEB}: healthy")), "{out}");
    assert!(out.contains("budget 0/3"), "{out}");

    // Both fail once: no decision could act yet (2 failures are needed), so no API call.
    w.sim.set_responsive(WEB, false);
    w.sim.set_responsive(DB, false);
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(w.sim.calls(Endpoint::InstanceList), 0, "{}", text(&out));
    // Both down: one list serves the decisions for both (and the fleet breaker holds them).
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(w.sim.calls(Endpoint::InstanceList), 1, "{}", text(&out));
    assert!(w.sim.power_log().is_empty());
}
