//! The Salt client against the Salt simulator, over loopback.

use std::time::Duration;

use dynwall_sim::salt::{JobEffect, SaltOp, SaltSim};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{SaltAuth, SaltConfig};
use crate::secret::Secret;

const JOB: &str = "5c5cc410-4f9f-11e6-88bc-080027a7289c";
const TARGET: &str = "89db0f82-4f9f-11e6-88bc-080027a7289c";
const API_TOKEN: &str = "csp-api-token-7d1e";

async fn sim(effect: JobEffect) -> SaltSim {
    SaltSim::builder()
        .api_token(API_TOKEN)
        .user("root", "salt-pass", "internal")
        .job(JOB, "restart sshd")
        .target(TARGET, "vps1", "vps1")
        .job_duration(Duration::from_millis(100))
        .effect(effect)
        .start()
        .await
        .unwrap()
}

fn cloud(sim: &SaltSim, token: &str) -> SaltClient {
    let cfg = SaltConfig {
        server: sim.url().parse().unwrap(),
        auth: SaltAuth::Cloud {
            csp_url: sim.csp_url().parse().unwrap(),
            api_token: Secret::new(token),
        },
        timeout: Duration::from_secs(5),
    };
    SaltClient::new(&cfg, CancellationToken::new()).unwrap()
}

fn onprem(sim: &SaltSim) -> SaltClient {
    let cfg = SaltConfig {
        server: sim.url().parse().unwrap(),
        auth: SaltAuth::OnPrem {
            username: "root".into(),
            password: Secret::new("salt-pass"),
            config_name: "internal".into(),
        },
        timeout: Duration::from_secs(5),
    };
    SaltClient::new(&cfg, CancellationToken::new()).unwrap()
}

/// Polls until the run ends (bounded).
async fn wait(client: &SaltClient, jid: &str) -> JobStatus {
    for _ in 0..200 {
        match client.job_status(jid).await.unwrap() {
            JobStatus::Pending => tokio::time::sleep(Duration::from_millis(20)).await,
            done => return done,
        }
    }
    panic!("run {jid} never ended");
}

#[tokio::test]
async fn the_cloud_api_runs_a_saved_job_with_one_access_token_and_the_xsrf_pair() {
    let sim = sim(JobEffect::Fixes).await;
    let client = cloud(&sim, API_TOKEN);
    let jid = client.run_job(JOB, TARGET).await.unwrap();
    assert_eq!(wait(&client, &jid).await, JobStatus::Succeeded);
    assert_eq!(sim.runs().len(), 1);
    assert_eq!(sim.access_tokens_issued(), 1, "one token for every call");
    assert_eq!(sim.ad_hoc_refused(), 0);
    let posts: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.op == SaltOp::Rpc)
        .collect();
    assert!(posts.len() >= 2);
    for r in &posts {
        assert_eq!(r.status, 200);
        let h = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        let xsrf = h("x-xsrftoken").expect("X-Xsrftoken sent");
        assert_eq!(h("cookie"), Some(format!("_xsrf={xsrf}")));
        assert!(h("authorization").is_some_and(|a| a.starts_with("Bearer ")));
        assert!(!r.body.contains("\"fun\""), "never a command: {}", r.body);
    }
    let secrets = sim.issued_secrets();
    let shown = format!("{client:?}");
    assert!(secrets.iter().all(|s| !shown.contains(s.as_str())));
    assert!(!shown.contains(API_TOKEN));
}

#[tokio::test]
async fn a_refused_access_token_is_exchanged_again_once() {
    let sim = sim(JobEffect::Fails).await;
    let client = cloud(&sim, API_TOKEN);
    let jid = client.run_job(JOB, TARGET).await.unwrap();
    sim.expire_tokens();
    assert!(matches!(wait(&client, &jid).await, JobStatus::Failed(_)));
    assert_eq!(sim.access_tokens_issued(), 2);
}

#[tokio::test]
async fn a_wrong_api_token_is_named_as_refused_credentials() {
    let sim = sim(JobEffect::Fixes).await;
    let client = cloud(&sim, "not-the-token");
    let e = client.run_job(JOB, TARGET).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("salt authorize: credentials rejected (HTTP 400)"),
        "{text}"
    );
    assert!(!text.contains("not-the-token"));
    assert!(sim.runs().is_empty());
}

#[tokio::test]
async fn an_on_premises_server_is_logged_into_with_the_xsrf_pair() {
    let sim = sim(JobEffect::Fixes).await;
    let client = onprem(&sim);
    let jid = client.run_job(JOB, TARGET).await.unwrap();
    assert_eq!(wait(&client, &jid).await, JobStatus::Succeeded);
    let logins = sim
        .requests()
        .into_iter()
        .filter(|r| r.op == SaltOp::Login && r.method == "POST")
        .count();
    assert_eq!(logins, 1, "one login serves every call");
    let shown = format!("{client:?}");
    assert!(!shown.contains("salt-pass"));
}

#[tokio::test]
async fn an_xsrf_refusal_is_retried_once_with_a_fresh_cookie_then_named() {
    let sim = sim(JobEffect::Fixes).await;
    let client = cloud(&sim, API_TOKEN);
    sim.fail_next(SaltOp::Rpc, 1, 403);
    client.run_job(JOB, TARGET).await.unwrap();
    assert_eq!(
        sim.runs().len(),
        1,
        "one refusal: a fresh cookie and the call went through"
    );
    sim.fail_next(SaltOp::Rpc, 5, 403);
    let e = client.run_job(JOB, TARGET).await.unwrap_err();
    assert!(matches!(e, SaltError::XsrfRefused { .. }));
    assert!(e.to_string().contains("refused the XSRF token"), "{e}");
    assert_eq!(sim.runs().len(), 1);
}

#[tokio::test]
async fn an_unknown_job_is_the_servers_error() {
    let sim = sim(JobEffect::Fixes).await;
    let client = cloud(&sim, API_TOKEN);
    let e = client
        .run_job("00000000-0000-0000-0000-000000000000", TARGET)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("No job with uuid"), "{e}");
}
