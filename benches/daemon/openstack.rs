//! The idle minute on an OpenStack cloud (Keystone v3 with an application credential, a
//! Neutron security group, a Nova server probed over SSH): the other provider's code paths, so
//! that idle memory is not measured on Indigo alone.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dynwall_sim::openstack::{GroupRule, SecurityGroup, ServerSpec};
use dynwall_sim::{IpEcho, OpenStackSim};

const GROUP: &str = "ssh-from-home";
const CRED_ID: &str = "4f1a9c2e7b3d4e5f8a9b0c1d2e3f4a5b";
const CRED_SECRET: &str = "Appcr3d-s3cret-9z8y7x";
const SERVER: &str = "vps1";

pub struct OsWorld {
    pub sim: OpenStackSim,
    sources: Vec<IpEcho>,
    dir: tempfile::TempDir,
}

impl OsWorld {
    /// The group holding the owned rule for `old` beside a web rule; one server in it.
    pub async fn new(old: &str) -> OsWorld {
        let group = SecurityGroup::new(GROUP)
            .rule(GroupRule::ingress("tcp", 22, &format!("{old}/32")).with_description("dynwall"))
            .rule(GroupRule::ingress("tcp", 443, "0.0.0.0/0"));
        let sim = OpenStackSim::builder()
            .application_credential(CRED_ID, "dynwall", CRED_SECRET)
            .security_group(group.clone())
            .server(
                ServerSpec::new(SERVER)
                    .floating_ipv4("203.0.113.5")
                    .security_group(&group.id),
            )
            .start()
            .await
            .expect("simulator");
        let mut sources = Vec::new();
        for _ in 0..2 {
            sources.push(IpEcho::start().await.expect("echo"));
        }
        let w = OsWorld {
            sim,
            sources,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        w.set_ip(old);
        w
    }

    /// The address the sources report and the fake sshd sees.
    pub fn set_ip(&self, ip: &str) {
        for s in &self.sources {
            s.set_ip(ip);
        }
        self.sim.set_client_ip(ip);
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("state").join("state.json")
    }

    /// Checks every second, the group, and a probe of the server every second.
    pub fn config(&self) -> PathBuf {
        let mut text = format!(
            "[daemon]\ninterval = \"1s\"\nreconcile = \"15m\"\nstate_dir = \"{}\"\n\
             [resolver]\nquorum = 2\ntimeout = \"2s\"\n",
            self.dir.path().join("state").display()
        );
        for s in &self.sources {
            text += &format!(
                "[[resolver.source]]\nkind = \"http\"\nurl = \"{}\"\n",
                s.url()
            );
        }
        text += &format!(
            "[openstack.home]\nauth_url = \"{}\"\napplication_credential_id = \"{CRED_ID}\"\n\
             application_credential_secret = \"{CRED_SECRET}\"\n\
             [[firewall]]\nsecurity_group = \"{GROUP}\"\n\
             [[probe]]\ninstance = \"{SERVER}\"\naddress = \"{}\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
            self.sim.auth_url(),
            self.sim.ssh_addr(SERVER).expect("ssh endpoint"),
        );
        let path = self.dir.path().join("dynwall.toml");
        std::fs::write(&path, text).expect("config written");
        path
    }

    /// The group's owned rule holds `ip` and only it.
    fn owns(&self, ip: &str) -> bool {
        let Some(group) = self.sim.group(GROUP) else {
            return false;
        };
        let owned: Vec<_> = group
            .rules
            .iter()
            .filter(|r| r.direction == "ingress" && r.port_range_min == Some(22))
            .filter_map(|r| r.remote_ip_prefix.clone())
            .collect();
        owned == [format!("{ip}/32")]
    }

    /// Waits (up to 60 s) until the group holds `ip` and the state file records it.
    pub async fn until_recorded(&self, ip: &str) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if self.owns(ip)
                && std::fs::read_to_string(self.state_file()).is_ok_and(|s| s.contains(ip))
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    pub fn calls(&self) -> usize {
        self.sim.requests().len()
    }
}
