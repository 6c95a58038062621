//! The real daemon never power-cycles a healthy instance behind a stale rule (issue A1): it
//! checks the address and the rule afresh before acting, and syncs first.

mod common;

use std::time::Duration;

use common::*;
use dynwall_sim::{Endpoint, SimRule};

async fn world() -> World {
    ssh_world(sim_builder()).await
}

fn config(w: &World) -> std::path::PathBuf {
    let addr = w.sim.ssh_addr(WEB).expect("ssh endpoint");
    w.config_with(
        "interval = \"1s\"",
        &format!("[[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}, {DB}]\n"),
        &format!(
            "[[probe]]\ninstance = {WEB}\naddress = \"{addr}\"\ninterval = \"1s\"\n\
             timeout = \"400ms\"\nfailures = 2\nstop_timeout = \"2s\"\nstart_timeout = \"5s\"\n\
             grace = \"2s\"\n"
        ),
    )
}

async fn stop(daemon: tokio::process::Child) -> String {
    stop_daemon(daemon).await
}

/// A healthy probe, and the firewall confirmed by the first sync.
fn healthy(w: &World) -> bool {
    let st = state_json(w);
    st["clouds"]["indigo"]["instances"][WEB.to_string()]["last_ok_at"].is_u64()
        && st["clouds"]["indigo"]["firewalls"][TEMPLATE.to_string()]["verified_at"].is_u64()
}

#[tokio::test]
async fn an_ip_change_the_sources_disagree_on_never_restarts_the_instance() {
    let w = world().await;
    let cfg = config(&w);
    let daemon = spawn_daemon(&cfg, &[]);
    eventually(Duration::from_secs(15), "a healthy probe", || healthy(&w)).await;
    // The router's address changes; one source sees it, the other does not yet.
    w.sim.set_client_ip(NEW_IP);
    w.sources[0].set_ip(NEW_IP);
    let conns = w.sim.ssh_connections(WEB);
    eventually(Duration::from_secs(20), "several blocked probes", || {
        w.sim.ssh_connections(WEB) >= conns + 6
    })
    .await;
    assert!(w.sim.power_log().is_empty(), "no power request");
    assert_eq!(
        w.owned_sources(),
        vec![OLD_IP.to_string()],
        "nothing written without quorum"
    );
    // Now both agree: the rule follows, the probes pass; nothing was restarted.
    w.sources[1].set_ip(NEW_IP);
    eventually(Duration::from_secs(40), "the rule follows", || {
        w.owned_sources() == vec![NEW_IP.to_string()]
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = stop(daemon).await;
    assert!(w.sim.power_log().is_empty(), "{log}");
    let said = log.lines().filter(|l| l.contains("not settled")).count();
    assert_eq!(said, 1, "the hold is said once: {log}");
}

#[tokio::test]
async fn a_hand_edited_rule_is_read_again_and_repaired_before_any_action() {
    let w = world().await;
    let cfg = config(&w);
    let daemon = spawn_daemon(&cfg, &[]);
    eventually(Duration::from_secs(15), "a healthy probe", || healthy(&w)).await;
    let reads = w.sim.calls(Endpoint::GetTemplate);
    // Someone edits our rule by hand; the default reconcile period (15 min) is far away.
    let mut inbound = others_in();
    inbound.push(SimRule::new("Custom", "TCP", "22", LIAR_IP));
    w.sim.set_rules(TEMPLATE, inbound, others_out());
    eventually(Duration::from_secs(30), "the rule repaired", || {
        w.owned_sources() == vec![OLD_IP.to_string()]
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = stop(daemon).await;
    assert!(w.sim.power_log().is_empty(), "no power request: {log}");
    assert!(
        w.sim.calls(Endpoint::GetTemplate) > reads,
        "the template was read again before acting"
    );
    assert!(log.contains("syncing it first"), "{log}");
}
