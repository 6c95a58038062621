//! The OpenStack client against the simulator, in process: what each Nova and Neutron answer
//! becomes at the provider seam.

use std::time::Duration;

use dynwall_sim::openstack::{GroupRule, Op, SecurityGroup, ServerSpec, VmState};
use dynwall_sim::OpenStackSim;
use reqwest::Url;
use tokio_util::sync::CancellationToken;

use super::catalog::Interface;
use super::keystone::{AppCredentialRef, Credentials, KeystoneAuth};
use super::OpenStackClient;
use crate::config::{ConnectionSource, FirewallConfig, OpenStackConfig, Tracked};
use crate::ids::{CloudName, FirewallId, InstanceId};
use crate::provider::{Firewalls, Power, PowerAction, PowerOutcome, PowerState, ProviderError};
use crate::secret::Secret;

async fn cloud() -> (OpenStackSim, OpenStackClient) {
    let g = SecurityGroup::new("ssh")
        .rule(GroupRule::ingress("tcp", 22, "81.2.69.160/32").with_description("dynwall"));
    let sim = OpenStackSim::builder()
        .application_credential("cred", "dynwall", "s3cret")
        .task_delays(
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
        .security_group(g.clone())
        .server(
            ServerSpec::new("vps1")
                .floating_ipv4("203.0.113.5")
                .fixed_ipv4("10.0.0.5")
                .security_group(&g.id),
        )
        .server(ServerSpec::new("vps2").state(VmState::Stopped))
        .start()
        .await
        .unwrap();
    let auth_url = Url::parse(&sim.auth_url()).unwrap();
    let cfg = OpenStackConfig {
        name: CloudName("home".into()),
        auth: KeystoneAuth::new(
            &auth_url,
            Credentials::ApplicationCredential {
                credential: AppCredentialRef::Id("cred".into()),
                secret: Secret::new("s3cret"),
            },
        )
        .unwrap(),
        auth_url,
        region: None,
        interface: Interface::Public,
        timeout: Duration::from_secs(5),
        allow_insecure_http: false,
        source: ConnectionSource::Table,
    };
    let client = OpenStackClient::new(&cfg, CancellationToken::new()).unwrap();
    (sim, client)
}

fn fw(group: &str) -> FirewallConfig {
    FirewallConfig {
        cloud: CloudName("home".into()),
        id: FirewallId(group.into()),
        instances: vec![],
        protocol: "TCP".into(),
        port: "22".into(),
        keep: vec![],
        family: Tracked::Ipv4,
    }
}

#[tokio::test]
async fn servers_map_to_instances_with_their_groups_and_probe_addresses() {
    let (sim, client) = cloud().await;
    // Resolving the group by name first lets its configured name gate the server.
    client.read_firewall(&fw("ssh")).await.unwrap();
    let list = client.list_instances().await.unwrap();
    let vps1 = list.iter().find(|i| i.name == "vps1").unwrap();
    assert_eq!(vps1.power, PowerState::Running);
    assert_eq!(
        vps1.ip,
        Some("203.0.113.5".parse().unwrap()),
        "floating first"
    );
    assert!(vps1.firewalls.contains(&FirewallId("ssh".into())));
    let vps2 = list.iter().find(|i| i.name == "vps2").unwrap();
    assert_eq!(vps2.power, PowerState::Stopped);
    assert_eq!(sim.tokens_issued(), 1, "one token for every call");
    for r in sim.requests().iter().filter(|r| r.op == Op::ListServers) {
        assert_eq!(r.header("openstack-api-version"), Some("compute 2.1"));
    }
}

#[tokio::test]
async fn nova_conflicts_become_done_or_busy() {
    let (sim, client) = cloud().await;
    client.list_instances().await.unwrap();
    // Already stopped: done.
    let vps2 = InstanceId("vps2".into());
    assert_eq!(
        client.power(&vps2, PowerAction::Stop).await.unwrap(),
        PowerOutcome::AlreadyInState
    );
    // A task in flight: busy, asked again at the next poll.
    assert!(sim.set_task_state("vps1", Some("image_snapshot")));
    let vps1 = InstanceId("vps1".into());
    match client.power(&vps1, PowerAction::Stop).await {
        Err(e @ ProviderError::Busy { .. }) => {
            assert!(e.is_transient());
            assert!(e.to_string().contains("image_snapshot"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // The force step is a HARD reboot, accepted once the task is done; by name or by id.
    assert!(sim.set_task_state("vps1", None));
    let id = InstanceId(sim.server("vps1").unwrap().id);
    assert_eq!(
        client.power(&id, PowerAction::Reboot).await.unwrap(),
        PowerOutcome::Accepted
    );
    assert_eq!(sim.actions().last().unwrap().1, "reboot HARD");
    // Locked: a clear error.
    sim.finish_tasks();
    assert!(sim.set_locked("vps1", true));
    let e = client.power(&vps1, PowerAction::Stop).await.unwrap_err();
    assert!(e.to_string().contains("locked"), "{e}");
}

#[tokio::test]
async fn an_unknown_or_ambiguous_group_is_a_config_error() {
    let (sim, client) = cloud().await;
    match client.read_firewall(&fw("nope")).await {
        Err(ProviderError::Config { reason, .. }) => assert!(reason.contains("ssh"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let twin = sim.add_group(SecurityGroup::new("ssh"));
    match client.read_firewall(&fw("ssh")).await {
        Err(ProviderError::Config { reason, .. }) => assert!(reason.contains(&twin), "{reason}"),
        other => panic!("{other:?}"),
    }
    // By id it is found.
    assert!(client.read_firewall(&fw(&twin)).await.is_ok());
}

#[tokio::test]
async fn a_group_configured_by_id_gates_its_servers_before_any_sync() {
    let (sim, client) = cloud().await;
    let id = sim.group("ssh").unwrap().id;
    let list = client.list_instances().await.unwrap();
    let vps1 = list.iter().find(|i| i.name == "vps1").unwrap();
    assert!(vps1.firewalls.contains(&FirewallId(id.clone())), "{vps1:?}");
    assert!(vps1.firewalls.contains(&FirewallId("ssh".into())));
    client.list_instances().await.unwrap();
    assert_eq!(sim.calls(Op::ListGroups), 1, "the names are mapped once");
    // Reading the group by id reuses nothing stale and finds it.
    assert!(client.read_firewall(&fw(&id)).await.is_ok());
}
