//! Injected faults, the delay and the request log.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::*;

#[tokio::test]
async fn injected_statuses_change_nothing() {
    let (b, sg, _) = world();
    let cloud = Cloud::new(b).await;
    let before = cloud.sim.rule_count();
    cloud.sim.inject(Op::CreateRule, 1, Fault::Status(500));
    let r = cloud.create_rule(ssh_rule(&sg.id, "198.51.100.7/32")).await;
    assert_eq!(r.status, 500);
    assert_eq!(neutron_type(&r), "HTTPError");
    assert_eq!(cloud.sim.rule_count(), before);
    assert_eq!(
        cloud
            .create_rule(ssh_rule(&sg.id, "198.51.100.7/32"))
            .await
            .status,
        201
    );

    cloud.sim.inject_any(2, Fault::Status(503));
    let servers = format!("{}/servers/detail", cloud.nova());
    let r = cloud.get(&servers).await;
    assert_eq!(r.status, 503);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.text.contains("503 Service Unavailable"));
    // A token request does not consume a fault meant for the services.
    let tokens = format!("{}/auth/tokens", cloud.sim.auth_url());
    let t = cloud
        .send(Method::POST, &tokens, None, Some(&password_auth("demopw")))
        .await;
    assert_eq!(t.status, 201);
    assert_eq!(cloud.get(&servers).await.status, 503);
    assert_eq!(cloud.get(&servers).await.status, 200);

    cloud.sim.inject(Op::Token, 1, Fault::Status(500));
    let t = cloud
        .send(Method::POST, &tokens, None, Some(&password_auth("demopw")))
        .await;
    assert_eq!(t.status, 500);
    assert!(t.json()["error"]["message"].is_string());
    cloud.sim.inject(Op::ShowServer, 1, Fault::Status(409));
    cloud.sim.inject(Op::ShowServer, 0, Fault::Status(409));
    assert_eq!(cloud.get(&servers).await.status, 200);
}

#[tokio::test]
async fn throttling_says_when_to_come_back() {
    let (b, _, _) = world();
    let cloud = Cloud::new(b).await;
    cloud.sim.inject(
        Op::ListServers,
        1,
        Fault::RetryAfter {
            status: 429,
            seconds: 7,
        },
    );
    let servers = format!("{}/servers/detail", cloud.nova());
    let r = cloud.get(&servers).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    cloud.sim.inject(
        Op::ListRules,
        1,
        Fault::RetryAfter {
            status: 503,
            seconds: 2,
        },
    );
    let r = cloud
        .get(&format!("{}/v2.0/security-group-rules", cloud.neutron()))
        .await;
    assert_eq!((r.status, r.header("retry-after")), (503, Some("2")));
    assert_eq!(cloud.get(&servers).await.status, 200);
}

#[tokio::test]
async fn a_lost_answer_still_creates_the_rule() {
    let (b, sg, _) = world();
    let cloud = Cloud::new(b).await;
    cloud.sim.inject(Op::CreateRule, 1, Fault::LoseResponse);
    let url = format!("{}/v2.0/security-group-rules", cloud.neutron());
    let body = json!({ "security_group_rule": ssh_rule(&sg.id, "198.51.100.7/32") });
    let sent = cloud
        .http
        .post(&url)
        .header("X-Auth-Token", &cloud.token)
        .json(&body)
        .send()
        .await;
    assert!(sent.is_err(), "the connection closes without an answer");
    let created = cloud
        .sim
        .group(&sg.id)
        .unwrap()
        .rules
        .into_iter()
        .find(|r| r.remote_ip_prefix.as_deref() == Some("198.51.100.7/32"))
        .expect("the rule exists");
    let r = cloud.create_rule(ssh_rule(&sg.id, "198.51.100.7/32")).await;
    assert_eq!(r.status, 409);
    assert!(r.text.contains(&created.id));
    let log = cloud.sim.requests();
    let creates: Vec<Option<u16>> = log
        .iter()
        .filter(|r| r.op == Op::CreateRule)
        .map(|r| r.status)
        .collect();
    assert_eq!(creates, [None, Some(409)]);
}

#[tokio::test]
async fn a_hung_request_takes_no_effect() {
    let (b, _, vps) = world();
    let cloud = Cloud::new(b).await;
    cloud.sim.inject(Op::ServerAction, 1, Fault::Hang);
    let url = format!("{}/servers/{}/action", cloud.nova(), vps.id());
    let sent = cloud
        .http
        .post(&url)
        .header("X-Auth-Token", &cloud.token)
        .json(&json!({"os-stop": null}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    assert_eq!(cloud.server_state(vps.id()).await, state("ACTIVE", None, 1));
    assert!(cloud.sim.actions().is_empty());
    assert_eq!(
        cloud
            .action(vps.id(), json!({"os-stop": null}))
            .await
            .status,
        202
    );
    let hung = cloud
        .sim
        .requests()
        .into_iter()
        .find(|r| r.op == Op::ServerAction)
        .unwrap();
    assert_eq!(hung.status, None);
}

#[tokio::test]
async fn delay_slows_every_answer() {
    let (b, _, _) = world();
    let cloud = Cloud::new(b).await;
    cloud.sim.set_delay(Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(
        cloud.get(&format!("{}/servers", cloud.nova())).await.status,
        200
    );
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn the_log_keeps_order_method_path_body_and_headers() {
    let (b, sg, _) = world();
    let cloud = Cloud::new(b).await;
    let created = cloud
        .create_rule(ssh_rule(&sg.id, "198.51.100.7/32"))
        .await
        .json();
    let id = created["security_group_rule"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let old = cloud
        .sim
        .group(&sg.id)
        .unwrap()
        .rules
        .into_iter()
        .find(|r| r.description.as_deref() == Some("dynwall") && r.id != id)
        .unwrap();
    let rules = format!("{}/v2.0/security-group-rules", cloud.neutron());
    assert_eq!(
        cloud.delete(&format!("{rules}/{}", old.id)).await.status,
        204
    );
    let _ = cloud
        .get(&format!("{rules}?security_group_id={}", sg.id))
        .await;

    let log = cloud.sim.requests();
    let ops: Vec<Op> = log.iter().map(|r| r.op).collect();
    assert_eq!(
        ops,
        [Op::Token, Op::CreateRule, Op::DeleteRule, Op::ListRules]
    );
    let token = &log[0];
    assert_eq!(
        (token.service, token.method.as_str(), token.path.as_str()),
        (Service::Identity, "POST", "/v3/auth/tokens")
    );
    assert_eq!(token.status, Some(201));
    assert!(token.body.contains("\"password\""));
    let create = &log[1];
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", "/v2.0/security-group-rules")
    );
    assert!(create.body.contains("198.51.100.7/32"));
    assert_eq!(create.header("X-Auth-Token"), Some(cloud.token.as_str()));
    assert_eq!(
        (create.region.as_str(), create.interface),
        ("RegionOne", Interface::Public)
    );
    assert_eq!(
        log[2].path,
        format!("/v2.0/security-group-rules/{}", old.id)
    );
    assert_eq!(log[3].query, format!("security_group_id={}", sg.id));
    assert!(log
        .windows(2)
        .all(|w| w[0].at <= w[1].at && w[0].time <= w[1].time));
    assert_eq!(cloud.sim.calls(Op::CreateRule), 1);
}
