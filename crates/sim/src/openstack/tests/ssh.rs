//! The fake sshd of each server: gated by the server's state, its guest and its security groups.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncReadExt;

use super::*;
use crate::testing::{banner, greet, Greeted, SILENCE};

impl Cloud {
    async fn greet(&self, server: &str) -> Greeted {
        greet(self.sim.ssh_addr(server).unwrap()).await
    }
}

#[tokio::test]
async fn ssh_follows_the_security_group_rules() {
    let (b, sg, vps) = world();
    let open = ServerSpec::new("open").fixed_ipv4("10.0.0.9");
    let cloud = Cloud::new(b.server(open)).await;
    assert_eq!(
        cloud.greet("vps1").await,
        banner(),
        "no client address set yet"
    );
    cloud.sim.set_client_ip(HOME);
    assert_eq!(cloud.greet(vps.id()).await, banner());
    cloud.sim.set_client_ip("198.51.100.7");
    assert_eq!(cloud.greet("vps1").await, Greeted::Silent);
    assert_eq!(
        cloud.greet("open").await,
        banner(),
        "a port without groups filters nothing"
    );

    // The client creates the rule for its new address, then deletes the old one.
    let created = cloud.create_rule(ssh_rule(&sg.id, "198.51.100.7/32")).await;
    assert_eq!(created.status, 201);
    assert_eq!(cloud.greet("vps1").await, banner());
    let id = created.json()["security_group_rule"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rules = format!("{}/v2.0/security-group-rules", cloud.neutron());
    assert_eq!(cloud.delete(&format!("{rules}/{id}")).await.status, 204);
    assert_eq!(cloud.greet("vps1").await, Greeted::Silent);

    for rule in [
        GroupRule::ingress("udp", 22, "198.51.100.7/32"),
        GroupRule::ingress("tcp", 2222, "0.0.0.0/0"),
        GroupRule::ingress("tcp", 22, "198.51.100.8/32"),
        GroupRule::ingress("tcp", 22, "::/0"),
        GroupRule::ingress("tcp", 22, "x").with_remote_group(&sg.id),
    ] {
        assert!(cloud.sim.set_rules(&sg.id, vec![rule.clone()]));
        assert_eq!(cloud.greet("vps1").await, Greeted::Silent, "{rule:?}");
    }
    for rule in [
        GroupRule::ingress("tcp", 22, "0.0.0.0/0"),
        GroupRule::ingress("6", 22, "198.51.100.0/24"),
        GroupRule::ingress("tcp", 20, "198.51.100.7/32").with_ports(Some(20), Some(30)),
        GroupRule::ingress("tcp", 22, "x")
            .with_prefix(None)
            .with_ports(None, None),
    ] {
        assert!(cloud.sim.set_rules(&sg.id, vec![rule.clone()]));
        assert_eq!(cloud.greet("vps1").await, banner(), "{rule:?}");
    }

    // Admitted by any group of the server.
    assert!(cloud.sim.set_rules(&sg.id, vec![]));
    assert_eq!(cloud.greet("vps1").await, Greeted::Silent);
    let other = cloud
        .sim
        .add_group(SecurityGroup::new("other").rule(GroupRule::ingress(
            "tcp",
            22,
            "198.51.100.7/32",
        )));
    assert!(cloud.sim.set_server_groups("vps1", &[&sg.id, &other]));
    assert_eq!(cloud.greet("vps1").await, banner());
    cloud.sim.set_client_ip("not-an-ip");
    assert_eq!(cloud.greet("vps1").await, Greeted::Silent);
    assert_eq!(cloud.sim.ssh_connections("vps1"), 17);
    assert_eq!(cloud.sim.ssh_connections("open"), 1);
}

#[tokio::test]
async fn ssh_follows_the_server_state() {
    let (b, _, vps) = world();
    let cloud = Cloud::new(b).await;
    cloud.sim.set_client_ip(HOME);
    let id = vps.id();
    assert!(cloud.sim.set_responsive("vps1", false));
    assert!(!cloud.sim.server("vps1").unwrap().responsive);
    assert_eq!(
        cloud.greet(id).await,
        Greeted::Silent,
        "hung guest, server ACTIVE"
    );
    assert_eq!(cloud.server_state(id).await, state("ACTIVE", None, 1));

    assert_eq!(cloud.action(id, json!({"os-stop": null})).await.status, 202);
    assert_eq!(
        cloud.greet(id).await,
        Greeted::Silent,
        "a hung guest ignores the stop"
    );
    cloud.sim.finish_tasks();
    assert_eq!(cloud.greet(id).await, Greeted::Closed, "SHUTOFF");
    assert_eq!(
        cloud.action(id, json!({"os-start": null})).await.status,
        202
    );
    assert_eq!(cloud.greet(id).await, Greeted::Closed, "powering on");
    cloud.sim.finish_tasks();
    assert_eq!(
        cloud.greet(id).await,
        banner(),
        "a stop and a start cure the hang"
    );

    assert!(cloud.sim.set_broken("vps1", true));
    assert_eq!(cloud.greet(id).await, Greeted::Silent);
    assert_eq!(
        cloud
            .action(id, json!({"reboot": {"type": "HARD"}}))
            .await
            .status,
        202
    );
    assert_eq!(cloud.greet(id).await, Greeted::Closed, "rebooting");
    cloud.sim.finish_tasks();
    assert_eq!(cloud.greet(id).await, Greeted::Silent, "broken stays hung");
    assert!(cloud.sim.set_broken("vps1", false));
    assert_eq!(
        cloud
            .action(id, json!({"reboot": {"type": "HARD"}}))
            .await
            .status,
        202
    );
    cloud.sim.finish_tasks();
    assert_eq!(cloud.greet(id).await, banner(), "a HARD reboot cures");

    assert!(cloud.sim.remove_server("vps1"));
    assert_eq!(
        greet(cloud.sim.ssh_addr(id).unwrap()).await,
        Greeted::Closed
    );
    assert!(cloud.sim.server(id).is_none());
}

#[tokio::test]
async fn ssh_endpoints_can_be_off_and_close_at_shutdown() {
    let (b, _, _) = world();
    let sim = b.clone().ssh_endpoints(false).start().await.unwrap();
    assert_eq!(sim.ssh_addr("vps1"), None);
    drop(sim);

    let sim = b.start().await.unwrap();
    sim.set_responsive("vps1", false);
    let addr = sim.ssh_addr("vps1").unwrap();
    assert!(addr.ip().is_loopback());
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    assert!(tokio::time::timeout(SILENCE, held.read(&mut buf))
        .await
        .is_err());
    let keystone = sim.identity_addr();
    sim.shutdown().await;
    let read = tokio::time::timeout(Duration::from_secs(5), held.read(&mut buf))
        .await
        .expect("the held connection is closed at shutdown");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert!(tokio::net::TcpStream::connect(keystone).await.is_err());
}
