//! Test world for OpenStack clouds: the OpenStack simulator (Keystone v3 or v2.0), fake IP
//! sources, a config file and the real binary (run with the helpers of `common`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use dynwall_sim::openstack::{
    GroupRule, IdentityApi, Op, OpenStackBuilder, SecurityGroup, ServerSpec,
};
use dynwall_sim::{IpEcho, OpenStackSim};

use super::common::OLD_IP;

pub const GROUP: &str = "ssh-from-home";
pub const CRED_ID: &str = "4f1a9c2e7b3d4e5f8a9b0c1d2e3f4a5b";
pub const CRED_SECRET: &str = "Appcr3d-s3cret-9z8y7x";
pub const V2_USER: &str = "owner@example.com";
pub const V2_PASSWORD: &str = "V2-pa55word-q1w2e3";
pub const TENANT: &str = "9f2b6c1d0e3a4b5c8d7e6f5a4b3c2d1e";

/// The group: the owned rule for `OLD_IP`, a web rule open to all, the default egress rules.
pub fn group() -> SecurityGroup {
    SecurityGroup::new(GROUP)
        .rule(GroupRule::ingress("tcp", 22, &format!("{OLD_IP}/32")).with_description("dynwall"))
        .rule(GroupRule::ingress("tcp", 443, "0.0.0.0/0"))
}

/// A v3 cloud with an application credential, the group and two servers in it (fast tasks).
pub fn v3_builder() -> OpenStackBuilder {
    let g = group();
    OpenStackSim::builder()
        .application_credential(CRED_ID, "dynwall", CRED_SECRET)
        .task_delays(
            Duration::from_millis(300),
            Duration::from_millis(300),
            Duration::from_millis(300),
        )
        .security_group(g.clone())
        .server(
            ServerSpec::new("vps1")
                .floating_ipv4("203.0.113.5")
                .fixed_ipv4("10.0.0.5")
                .security_group(&g.id),
        )
        .server(
            ServerSpec::new("vps2")
                .fixed_ipv4("10.0.0.6")
                .security_group(&g.id),
        )
}

/// The same on a v2.0-only (SkyAtlas-like) cloud with a password user and a tenant.
pub fn v2_builder() -> OpenStackBuilder {
    v3_builder()
        .identity(IdentityApi::V2)
        .project(TENANT, "demo")
        .user("a1b2c3d4e5f60718293a4b5c6d7e8f90", V2_USER, V2_PASSWORD)
}

pub struct OsWorld {
    pub sim: OpenStackSim,
    pub sources: Vec<IpEcho>,
    pub dir: tempfile::TempDir,
    pub v2: bool,
}

impl OsWorld {
    pub async fn v3() -> OsWorld {
        OsWorld::with(v3_builder(), false).await
    }

    pub async fn v2() -> OsWorld {
        OsWorld::with(v2_builder(), true).await
    }

    pub async fn with(builder: OpenStackBuilder, v2: bool) -> OsWorld {
        let sim = builder.start().await.expect("simulator starts");
        sim.set_client_ip(OLD_IP);
        let mut sources = Vec::new();
        for _ in 0..2 {
            let e = IpEcho::start().await.expect("echo starts");
            e.set_ip(OLD_IP);
            sources.push(e);
        }
        OsWorld {
            sim,
            sources,
            dir: tempfile::tempdir().expect("tempdir"),
            v2,
        }
    }

    /// Changes the home address the sources report and the fake sshd sees.
    pub fn set_ip(&self, ip: &str) {
        for s in &self.sources {
            s.set_ip(ip);
        }
        self.sim.set_client_ip(ip);
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn resolver(&self) -> String {
        let mut t = "[resolver]\nquorum = 2\ntimeout = \"2s\"\n".to_string();
        for s in &self.sources {
            t += &format!(
                "[[resolver.source]]\nkind = \"http\"\nurl = \"{}\"\n",
                s.url()
            );
        }
        t
    }

    /// The `[openstack.home]` table.
    pub fn cloud_table(&self, extra: &str) -> String {
        let creds = if self.v2 {
            format!(
                "auth_type = \"v2password\"\nusername = \"{V2_USER}\"\npassword = \"{V2_PASSWORD}\"\ntenant_id = \"{TENANT}\"\n"
            )
        } else {
            format!(
                "application_credential_id = \"{CRED_ID}\"\napplication_credential_secret = \"{CRED_SECRET}\"\n"
            )
        };
        format!(
            "[openstack.home]\nauth_url = \"{}\"\n{creds}timeout = \"3s\"\n{extra}\n",
            self.sim.auth_url()
        )
    }

    /// Writes a config: daemon keys, the cloud, then `entries` verbatim.
    pub fn config_with(&self, daemon: &str, cloud_extra: &str, entries: &str) -> PathBuf {
        let text = format!(
            "[daemon]\nstate_dir = \"{}\"\n{daemon}\n\n{}\n{}\n{entries}\n",
            self.state_dir().display(),
            self.resolver(),
            self.cloud_table(cloud_extra),
        );
        let path = self.dir.path().join("dynwall.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    pub fn firewall_table() -> String {
        format!("[[firewall]]\nsecurity_group = \"{GROUP}\"\n")
    }

    pub fn config(&self) -> PathBuf {
        self.config_with("interval = \"1s\"", "", &OsWorld::firewall_table())
    }

    /// A `[[probe]]` table for `server` with fast timings; `overrides` replace or add keys.
    pub fn probe_table(&self, server: &str, overrides: &[(&str, &str)]) -> String {
        let addr = self.sim.ssh_addr(server).expect("ssh endpoint");
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
        let mut t = format!("[[probe]]\ninstance = \"{server}\"\naddress = \"{addr}\"\n");
        for (k, v) in keys {
            t += &format!("{k} = {v}\n");
        }
        t
    }

    /// The prefixes of the group's owned rules (ingress tcp 22), sorted.
    pub fn owned_prefixes(&self) -> Vec<String> {
        let g = self.sim.group(GROUP).expect("group");
        let mut out: Vec<String> = g
            .rules
            .iter()
            .filter(|r| {
                r.direction == "ingress"
                    && r.protocol.as_deref() == Some("tcp")
                    && r.port_range_min == Some(22)
                    && r.remote_group_id.is_none()
            })
            .filter_map(|r| r.remote_ip_prefix.clone())
            .collect();
        out.sort();
        out
    }

    /// Every rule of the group that is not an owned one, as `(direction, port, prefix)`.
    pub fn other_rules(&self) -> Vec<(String, Option<u16>, Option<String>)> {
        let g = self.sim.group(GROUP).expect("group");
        let mut out: Vec<_> = g
            .rules
            .iter()
            .filter(|r| !(r.direction == "ingress" && r.port_range_min == Some(22)))
            .map(|r| {
                (
                    r.direction.clone(),
                    r.port_range_min,
                    r.remote_ip_prefix.clone(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// The write operations (create, delete) in the order the simulator received them, with
    /// the status answered.
    pub fn writes(&self) -> Vec<(Op, Option<u16>)> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| matches!(r.op, Op::CreateRule | Op::DeleteRule))
            .map(|r| (r.op, r.status))
            .collect()
    }

    /// Accepted actions on `server` (`os-stop`, `os-start`, `reboot HARD`).
    pub fn actions(&self, server: &str) -> Vec<String> {
        let id = self.sim.server(server).expect("server").id;
        self.sim
            .actions()
            .into_iter()
            .filter(|(s, _)| *s == id)
            .map(|(_, a)| a)
            .collect()
    }

    /// Starts the daemon (1 s checks) on the group and a probe of `server`, and waits until the
    /// probe has passed once.
    pub async fn daemon_probing(&self, server: &str) -> tokio::process::Child {
        let entries = format!(
            "{}{}",
            OsWorld::firewall_table(),
            self.probe_table(server, &[])
        );
        let cfg = self.config_with("interval = \"1s\"", "", &entries);
        let daemon = super::common::spawn_daemon(&cfg, &[]);
        super::common::eventually(Duration::from_secs(15), "a healthy probe", || {
            self.record(server)["last_ok_at"].is_u64()
        })
        .await;
        daemon
    }

    pub fn record(&self, server: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state_dir().join("state.json")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        v["clouds"]["home"]["instances"][server].clone()
    }
}
