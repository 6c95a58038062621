//! `dynwall demo --cloud openstack|skyatlas`: the same story on the OpenStack simulator, with
//! Keystone v3 and an application credential, or a SkyAtlas-like Keystone v2.0 with a password.
//!
//! An IP change creates the new rule first and deletes the old one after (shown from the
//! simulator's request log); a hung server is stopped and started through Nova.

use std::time::Duration;

use super::{say, start_daemon, tempfile_dir, wait_for, NEW_IP, OLD_IP};
use crate::exit::{AppError, Code};
use dynwall_sim::openstack::{GroupRule, IdentityApi, Op, SecurityGroup, ServerSpec};
use dynwall_sim::{IpEcho, OpenStackSim};

const GROUP: &str = "ssh-from-home";
const SERVER: &str = "vps1";
const CRED_ID: &str = "demo-credential";
const SECRET: &str = "demo-secret";
const USER: &str = "owner@example.com";
const TENANT: &str = "9f2b6c1d0e3a4b5c8d7e6f5a4b3c2d1e";

fn show_group(sim: &OpenStackSim) {
    let Some(g) = sim.group(GROUP) else {
        return;
    };
    for r in &g.rules {
        let ports = match (r.port_range_min, r.port_range_max) {
            (Some(a), Some(b)) if a == b => a.to_string(),
            (Some(a), Some(b)) => format!("{a}-{b}"),
            _ => "any".to_string(),
        };
        say(&format!(
            "     {:<8} {:<5} {:<4} {:<5} {:<18} {}",
            r.direction,
            r.ethertype,
            r.protocol.as_deref().unwrap_or("any"),
            ports,
            r.remote_ip_prefix.as_deref().unwrap_or("any"),
            r.description.as_deref().unwrap_or("")
        ));
    }
}

fn owned(sim: &OpenStackSim) -> Vec<String> {
    sim.group(GROUP)
        .map(|g| {
            g.rules
                .into_iter()
                .filter(|r| r.direction == "ingress" && r.port_range_min == Some(22))
                .filter_map(|r| r.remote_ip_prefix)
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the OpenStack story; `v2` serves Keystone v2.0 only, as SkyAtlas does.
pub(super) async fn run(v2: bool) -> Result<Code, AppError> {
    let setup = |e: std::io::Error| AppError::Setup(format!("demo: {e}"));
    let group = SecurityGroup::new(GROUP)
        .rule(GroupRule::ingress("tcp", 22, &format!("{OLD_IP}/32")).with_description("dynwall"))
        .rule(GroupRule::ingress("tcp", 443, "0.0.0.0/0"));
    let mut builder = OpenStackSim::builder()
        .task_delays(
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .security_group(group.clone())
        .server(
            ServerSpec::new(SERVER)
                .floating_ipv4("203.0.113.5")
                .security_group(&group.id),
        );
    builder = if v2 {
        builder
            .identity(IdentityApi::V2)
            .project(TENANT, "demo")
            .user("1f56a0b2c3d4e5f60718293a4b5c6d7e", USER, SECRET)
    } else {
        builder.application_credential(CRED_ID, "dynwall", SECRET)
    };
    let sim = builder.start().await.map_err(setup)?;
    let sources = [
        IpEcho::start().await.map_err(setup)?,
        IpEcho::start().await.map_err(setup)?,
    ];
    for s in &sources {
        s.set_ip(OLD_IP);
    }
    sim.set_client_ip(OLD_IP);
    let ssh = sim
        .ssh_addr(SERVER)
        .ok_or_else(|| AppError::Setup("demo: the simulator has no SSH endpoint".into()))?;
    let credentials = if v2 {
        format!("auth_type = \"v2password\"\nusername = \"{USER}\"\npassword = \"{SECRET}\"\ntenant_id = \"{TENANT}\"")
    } else {
        format!(
            "application_credential_id = \"{CRED_ID}\"\napplication_credential_secret = \"{SECRET}\""
        )
    };
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
kind = "http"
url = "{b}"

[openstack.demo]
auth_url = "{auth_url}"
{credentials}

[[firewall]]
security_group = "{GROUP}"

[[probe]]
instance = "{SERVER}"
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
        b = sources[1].url(),
        auth_url = sim.auth_url(),
    );
    std::fs::write(&path, &text).map_err(setup)?;

    let kind = if v2 {
        "a SkyAtlas-like OpenStack simulator (Keystone v2.0, password and tenant)"
    } else {
        "an OpenStack simulator (Keystone v3, application credential)"
    };
    say(&format!(
        "dynwall demo: {kind}, two IP sources on loopback, and the real daemon loop."
    ));
    say("");
    say(&format!(
        "1. The home router's address is {OLD_IP}. Security group {GROUP} as Neutron holds it:"
    ));
    show_group(&sim);

    let (shutdown, daemon) = start_daemon(&path)?;

    let state_file = dir.join("state").join("state.json");
    wait_for("the first cycle", || state_file.exists()).await?;
    say("");
    say(&format!(
        "2. dynwall started, found {OLD_IP} on both sources and the rule already there: {} writes.",
        sim.calls(Op::CreateRule) + sim.calls(Op::DeleteRule)
    ));

    say("");
    say(&format!("3. The router gets a new address: {NEW_IP}."));
    let before = sim.requests().len();
    for s in &sources {
        s.set_ip(NEW_IP);
    }
    sim.set_client_ip(NEW_IP);
    let took = wait_for("the new rule, and the old one gone", || {
        owned(&sim) == [format!("{NEW_IP}/32")]
    })
    .await?;
    wait_for("the read-back", || {
        sim.requests()[before..]
            .iter()
            .filter(|r| r.op == Op::ShowGroup)
            .count()
            >= 2
    })
    .await?;
    say(&format!(
        "   {:.1} s later: Neutron cannot change a rule, so dynwall created the new one first and",
        took.as_secs_f64()
    ));
    say("   deleted the old one only after that (no moment without access from home):");
    let calls: Vec<String> = sim.requests()[before..]
        .iter()
        .map(|r| {
            format!(
                "{} {}{}",
                r.method,
                r.path,
                r.status.map(|s| format!(" → {s}")).unwrap_or_default()
            )
        })
        .collect();
    for c in &calls {
        say(&format!("     {c}"));
    }
    say("   The group now (the other rules untouched):");
    show_group(&sim);

    say("");
    say(&format!(
        "4. {SERVER} hangs: ACTIVE for Nova but no longer answering SSH."
    ));
    sim.set_responsive(SERVER, false);
    let actions = || {
        sim.actions()
            .into_iter()
            .map(|(_, a)| a)
            .collect::<Vec<_>>()
    };
    let took = wait_for("the server to be restarted and answer again", || {
        actions() == ["os-stop", "os-start"]
            && sim.server(SERVER).is_some_and(|s| s.responsive)
            && std::fs::read_to_string(&state_file)
                .is_ok_and(|s| s.contains("\"consecutive_failures\": 0"))
    })
    .await?;
    say(&format!(
        "   {:.1} s later: two failed probes, then os-stop → SHUTOFF → os-start → ACTIVE, and SSH answers again.",
        took.as_secs_f64()
    ));
    say(&format!(
        "   Nova actions sent: {}. Tokens issued in all: {}.",
        actions().join(", "),
        sim.tokens_issued()
    ));

    shutdown.cancel();
    let _ = daemon.await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    say("");
    say("Done. Try `dynwall check` with your own config next.");
    Ok(Code::Ok)
}
