//! Tests of the OpenStack simulator through its real sockets, with a plain HTTP client.

mod faults;
mod keystone;
mod neutron;
mod nova;
mod ssh;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::*;
use crate::testing::{client, send, Resp};

const HOME: &str = "220.146.61.235";
const PROJECT: &str = "1bb16d6e348647c5b2a6d6c8e21258fc";
const USER: &str = "53416cb05df14706abfc9f54de8dea6e";
const TASK_NEVER: Duration = Duration::from_secs(3600);

/// `NeutronError.type` of an answer.
fn neutron_type(r: &Resp) -> String {
    r.json()["NeutronError"]["type"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// The `default` group, one `ssh-from-home` group admitting [`HOME`] and one server in it.
fn world() -> (OpenStackBuilder, SecurityGroup, ServerSpec) {
    let sg = SecurityGroup::new("ssh-from-home")
        .rule(GroupRule::ingress("tcp", 22, &format!("{HOME}/32")).with_description("dynwall"));
    let vps = ServerSpec::new("vps1")
        .fixed_ipv4("10.0.0.5")
        .floating_ipv4("203.0.113.5")
        .ipv6("2001:db8::5")
        .security_group(&sg.id);
    let b = OpenStackSim::builder()
        .project(PROJECT, "demo")
        .user(USER, "demo", "demopw")
        .application_credential("dab5faebf88546bb8e7f9fd4f5515852", "osreal", "s3cret")
        .security_group(sg.clone())
        .server(vps.clone())
        .task_delays(TASK_NEVER, TASK_NEVER, TASK_NEVER);
    (b, sg, vps)
}

/// A started simulator, a client and a project-scoped v3 token.
struct Cloud {
    sim: OpenStackSim,
    http: reqwest::Client,
    token: String,
}

fn password_auth(password: &str) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "demo", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}})
}

impl Cloud {
    async fn new(b: OpenStackBuilder) -> Cloud {
        let mut cloud = Cloud {
            sim: b.start().await.unwrap(),
            http: client(),
            token: String::new(),
        };
        let r = cloud
            .send(
                Method::POST,
                &format!("{}/auth/tokens", cloud.sim.auth_url()),
                None,
                Some(&password_auth("demopw")),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        cloud.token = r.header("x-subject-token").unwrap().to_owned();
        cloud
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        self.send_with(method, url, token, body, &[]).await
    }

    async fn send_with(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.header("X-Auth-Token", t);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        send(req).await
    }

    /// Neutron's public URL in RegionOne, without the trailing slash.
    fn neutron(&self) -> String {
        let url = self
            .sim
            .endpoint_url(Service::Network, "RegionOne", Interface::Public)
            .unwrap();
        url.trim_end_matches('/').to_owned()
    }

    /// Nova's public URL in RegionOne.
    fn nova(&self) -> String {
        self.sim
            .endpoint_url(Service::Compute, "RegionOne", Interface::Public)
            .unwrap()
    }

    async fn get(&self, url: &str) -> Resp {
        self.send(Method::GET, url, Some(&self.token), None).await
    }

    async fn post(&self, url: &str, body: &Value) -> Resp {
        self.send(Method::POST, url, Some(&self.token), Some(body))
            .await
    }

    async fn delete(&self, url: &str) -> Resp {
        self.send(Method::DELETE, url, Some(&self.token), None)
            .await
    }

    async fn create_rule(&self, rule: Value) -> Resp {
        self.post(
            &format!("{}/v2.0/security-group-rules", self.neutron()),
            &json!({ "security_group_rule": rule }),
        )
        .await
    }

    async fn action(&self, server: &str, body: Value) -> Resp {
        self.post(&format!("{}/servers/{server}/action", self.nova()), &body)
            .await
    }

    /// `(status, task_state, power_state)` as the API shows them.
    async fn server_state(&self, server: &str) -> (String, Option<String>, u64) {
        let v = self
            .get(&format!("{}/servers/{server}", self.nova()))
            .await
            .json();
        let s = &v["server"];
        (
            s["status"].as_str().unwrap().to_owned(),
            s["OS-EXT-STS:task_state"].as_str().map(str::to_owned),
            s["OS-EXT-STS:power_state"].as_u64().unwrap(),
        )
    }
}

/// The ingress SSH rule body for `prefix` in group `sg`.
fn ssh_rule(sg: &str, prefix: &str) -> Value {
    json!({"security_group_id": sg, "direction": "ingress", "ethertype": "IPv4",
        "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
        "remote_ip_prefix": prefix, "description": "dynwall"})
}

fn state(status: &str, task: Option<&str>, power: u64) -> (String, Option<String>, u64) {
    (status.to_owned(), task.map(str::to_owned), power)
}
