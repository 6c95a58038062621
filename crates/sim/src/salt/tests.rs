//! Tests of the Salt simulator through its real sockets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::testing::{client, send, Resp};

const JOB: &str = "5c5cc410-4f9f-11e6-88bc-080027a7289c";
const TARGET: &str = "89db0f82-4f9f-11e6-88bc-080027a7289c";
const FORBIDDEN: &str = "<html><title>403: Forbidden</title><body>403: Forbidden</body></html>";

fn salt() -> SaltBuilder {
    SaltSim::builder()
        .api_token("my-api-token")
        .job(JOB, "restart sshd")
        .target(TARGET, "vps1", "vps1")
}

/// The value a `Set-Cookie` of the answer gives cookie `name`.
fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A client session: the XSRF pair and how it authenticates.
struct Session<'a> {
    sim: &'a SaltSim,
    http: reqwest::Client,
    xsrf: String,
    auth: Option<String>,
    cookies: Vec<String>,
}

impl<'a> Session<'a> {
    /// Exchanges the API token at the CSP and fetches the XSRF cookie (the cloud flow).
    async fn cloud(sim: &'a SaltSim) -> Session<'a> {
        let http = client();
        let r = send(
            http.post(format!(
                "{}{}",
                sim.csp_url(),
                "/csp/gateway/am/api/auth/api-tokens/authorize"
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("refresh_token=my-api-token"),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let access = r.json()["access_token"].as_str().unwrap().to_owned();
        let page = send(http.get(format!("{}/account/login", sim.url()))).await;
        let xsrf = set_cookie(&page, "_xsrf").unwrap();
        Session {
            sim,
            http,
            xsrf,
            auth: Some(format!("Bearer {access}")),
            cookies: Vec::new(),
        }
    }

    async fn rpc(&self, body: Value) -> Resp {
        let mut cookies = self.cookies.clone();
        cookies.push(format!("_xsrf={}", self.xsrf));
        let mut req = self
            .http
            .post(format!("{}/rpc", self.sim.url()))
            .header("X-Xsrftoken", &self.xsrf)
            .header("Cookie", cookies.join("; "))
            .json(&body);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        send(req).await
    }

    async fn call(&self, resource: &str, method: &str, kwarg: Value) -> Value {
        let r = self
            .rpc(json!({"resource": resource, "method": method, "kwarg": kwarg, "args": []}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    }

    async fn run_job(&self) -> String {
        let v = self
            .call(
                "cmd",
                "route_cmd",
                json!({"job_uuid": JOB, "tgt_uuid": TARGET}),
            )
            .await;
        assert_eq!(v["error"], Value::Null, "{v}");
        v["ret"].as_str().unwrap().to_owned()
    }

    async fn status(&self, jid: &str) -> Value {
        let v = self
            .call("cmd", "get_cmd_status", json!({"jids": [jid]}))
            .await;
        v["ret"]["results"][0].clone()
    }

    /// Polls until the run is complete.
    async fn wait(&self, jid: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.status(jid).await;
            if s["state"] == "complete" {
                return s;
            }
            assert_eq!(s["state"], "pending");
            assert!(Instant::now() < deadline, "{jid} never completed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn csp_exchanges_the_api_token() {
    let sim = salt().start().await.unwrap();
    let http = client();
    let url = format!(
        "{}/csp/gateway/am/api/auth/api-tokens/authorize",
        sim.csp_url()
    );
    for body in ["refresh_token=my-api-token", "api_token=my-api-token"] {
        let r = send(
            http.post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["token_type"], "bearer");
        assert_eq!(v["expires_in"], 1799);
        assert!(v["access_token"].as_str().unwrap().starts_with("eyJ"));
    }
    let r = send(http.post(format!("{url}?refresh_token=my-api-token"))).await;
    assert_eq!(r.status, 200, "query form");
    let r = send(http.post(&url).body("refresh_token=wrong-token")).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "invalid_grant: Invalid refresh token: wron****"
    );
    assert_eq!(send(http.post(&url).body("")).await.status, 400);
    assert_eq!(send(http.get(&url)).await.status, 405);
    assert_eq!(sim.access_tokens_issued(), 3);
    assert_eq!(sim.calls(SaltOp::Authorize), 6);
}

#[tokio::test]
async fn rpc_needs_the_xsrf_pair_then_a_live_token() {
    let sim = salt()
        .access_token_lifetime(Duration::from_millis(400))
        .start()
        .await
        .unwrap();
    let s = Session::cloud(&sim).await;
    let page = send(s.http.get(format!("{}/account/login/", sim.url()))).await;
    assert_eq!(
        page.header("x-xsrftoken"),
        set_cookie(&page, "_xsrf").as_deref()
    );
    assert!(set_cookie(&page, "_xsrf").unwrap().starts_with("2|"));
    let kept = send(
        s.http
            .get(format!("{}/account/login", sim.url()))
            .header("Cookie", format!("_xsrf={}", s.xsrf)),
    )
    .await;
    assert_eq!(
        set_cookie(&kept, "_xsrf"),
        None,
        "an existing cookie is kept"
    );
    assert_eq!(kept.header("x-xsrftoken"), Some(s.xsrf.as_str()));

    let body = json!({"resource": "job", "method": "get_jobs", "kwarg": {}, "args": []});
    let rpc = format!("{}/rpc", sim.url());
    let auth = s.auth.clone().unwrap();
    for req in [
        s.http.post(&rpc).header("Authorization", &auth).json(&body),
        s.http
            .post(&rpc)
            .header("Authorization", &auth)
            .header("X-Xsrftoken", &s.xsrf)
            .json(&body),
        s.http
            .post(&rpc)
            .header("Authorization", &auth)
            .header("Cookie", format!("_xsrf={}", s.xsrf))
            .json(&body),
        s.http
            .post(&rpc)
            .header("Authorization", &auth)
            .header("X-Xsrftoken", "other")
            .header("Cookie", format!("_xsrf={}", s.xsrf))
            .json(&body),
    ] {
        let r = send(req).await;
        assert_eq!((r.status, r.text.as_str()), (403, FORBIDDEN));
    }
    let anonymous = Session {
        auth: None,
        ..Session::cloud(&sim).await
    };
    assert_eq!(anonymous.rpc(body.clone()).await.status, 401);
    let r = s.rpc(body.clone()).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["ret"]["count"], 1);
    assert_eq!(v["ret"]["results"][0]["uuid"], JOB);
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["warnings"], json!([]));

    // The seed's recipe: a Bearer login needs no XSRF pair and hands one out.
    let login = send(
        s.http
            .post(format!("{}/account/login/", sim.url()))
            .header("Authorization", &auth),
    )
    .await;
    assert_eq!(login.status, 200);
    assert_eq!(
        login.header("x-xsrftoken"),
        set_cookie(&login, "_xsrf").as_deref()
    );
    assert_ne!(
        set_cookie(&login, "_xsrf").unwrap(),
        s.xsrf,
        "a login rotates the cookie"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.rpc(body.clone()).await.status,
        401,
        "the access token expired"
    );
    let fresh = Session::cloud(&sim).await;
    assert_eq!(fresh.rpc(body.clone()).await.status, 200);
    sim.expire_tokens();
    assert_eq!(fresh.rpc(body).await.status, 401);
    let login = send(
        fresh
            .http
            .post(format!("{}/account/login", sim.url()))
            .header("Authorization", fresh.auth.as_deref().unwrap()),
    )
    .await;
    assert_eq!(login.status, 401);
}

#[tokio::test]
async fn on_premises_login_with_xsrf() {
    let sim = salt()
        .user("admin", "pw", "internal")
        .start()
        .await
        .unwrap();
    let http = client();
    let login = format!("{}/account/login", sim.url());
    let xsrf = set_cookie(&send(http.get(&login)).await, "_xsrf").unwrap();
    let creds = json!({"username": "admin", "password": "pw", "config_name": "internal"});
    let r = send(http.post(&login).json(&creds)).await;
    assert_eq!((r.status, r.text.as_str()), (403, FORBIDDEN));
    let pair = |req: reqwest::RequestBuilder, x: &str| {
        req.header("X-Xsrftoken", x)
            .header("Cookie", format!("_xsrf={x}"))
    };
    let wrong = json!({"username": "admin", "password": "nope"});
    assert_eq!(
        send(pair(http.post(&login), &xsrf).json(&wrong))
            .await
            .status,
        401
    );
    let r = send(pair(http.post(&login), &xsrf).json(&creds)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let jwt = r.json()["jwt"].as_str().unwrap().to_owned();
    let session = set_cookie(&r, "_session_id").unwrap();
    let rotated = set_cookie(&r, "_xsrf").unwrap();
    assert_ne!(rotated, xsrf);

    let get_jobs = json!({"resource": "job", "method": "get_jobs"});
    let session_cookie = vec![format!("_session_id={session}")];
    for (auth, cookies, want) in [
        (None, session_cookie, 200),
        (Some(format!("JWT {jwt}")), Vec::new(), 200),
        (Some("Basic YWRtaW46cHc=".to_owned()), Vec::new(), 200),
        (Some("Basic YWRtaW46eA==".to_owned()), Vec::new(), 401),
        (None, Vec::new(), 401),
    ] {
        let s = Session {
            sim: &sim,
            http: client(),
            xsrf: rotated.clone(),
            auth: auth.clone(),
            cookies,
        };
        assert_eq!(s.rpc(get_jobs.clone()).await.status, want, "{auth:?}");
    }
    let secrets = sim.issued_secrets();
    for secret in [&jwt, &session, &rotated, &xsrf] {
        assert!(secrets.contains(secret));
    }
}

#[tokio::test]
async fn a_job_runs_then_completes_and_fixes() {
    let fixed = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&fixed);
    let sim = salt()
        .job_duration(Duration::from_millis(100))
        .on_fix(move |run| {
            assert_eq!(run.job_uuid, JOB);
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .start()
        .await
        .unwrap();
    let s = Session::cloud(&sim).await;
    let jid = s.run_job().await;
    assert_eq!(jid.len(), 20);
    assert!(jid.bytes().all(|b| b.is_ascii_digit()), "{jid}");
    let status = s.status(&jid).await;
    assert_eq!(status["state"], "pending");
    assert_eq!(status["success"], Value::Null);
    assert_eq!(status["job_uuid"], JOB);
    assert_eq!(status["tgt_uuid"], TARGET);
    let done = s.wait(&jid).await;
    assert_eq!(
        fixed.load(Ordering::SeqCst),
        1,
        "fixed before it shows complete"
    );
    assert_eq!(done["success"], true);
    assert_eq!(done["minions"]["succeeded"], 1);
    assert!(done["end_time"].is_string());
    assert_eq!(sim.runs()[0].state, JobState::Succeeded);

    for (effect, success, state) in [
        (JobEffect::Fails, false, JobState::Failed),
        (JobEffect::NoEffect, true, JobState::Succeeded),
    ] {
        sim.set_effect(effect);
        let jid = s.run_job().await;
        let done = s.wait(&jid).await;
        assert_eq!(done["success"], success, "{effect:?}");
        assert_eq!(
            sim.runs().iter().find(|r| r.jid == jid).unwrap().state,
            state
        );
    }
    assert_eq!(
        fixed.load(Ordering::SeqCst),
        1,
        "only the fixing run called back"
    );

    sim.set_effect(JobEffect::Hangs);
    let hung = s.run_job().await;
    sim.set_effect(JobEffect::Fixes);
    sim.set_job_duration(Duration::from_secs(3600));
    let slow = s.run_job().await;
    assert_ne!(hung, slow);
    sim.finish_jobs();
    assert_eq!(
        s.status(&hung).await["state"],
        "pending",
        "a hung job never ends"
    );
    assert_eq!(s.status(&slow).await["state"], "complete");
    assert_eq!(fixed.load(Ordering::SeqCst), 2);
    let both = s
        .call("cmd", "get_cmd_status", json!({"jids": [hung, slow, "1"]}))
        .await;
    assert_eq!(both["ret"]["count"], 2, "unknown jids are left out");
}

#[tokio::test]
async fn only_saved_jobs_run() {
    let sim = salt().start().await.unwrap();
    let s = Session::cloud(&sim).await;
    for kwarg in [
        json!({"cmd": "local", "fun": "cmd.run", "arg": {"arg": ["reboot"]}, "tgt": {"*": {"tgt": "vps1", "tgt_type": "glob"}}}),
        json!({"job_uuid": JOB, "tgt_uuid": TARGET, "fun": "cmd.run"}),
        json!({"job_uuid": JOB}),
    ] {
        let v = s.call("cmd", "route_cmd", kwarg.clone()).await;
        assert_eq!(v["ret"], Value::Null, "{kwarg}");
        assert_eq!(v["error"]["code"], 403);
    }
    assert_eq!(sim.ad_hoc_refused(), 3);
    let v = s
        .call(
            "cmd",
            "route_cmd",
            json!({"job_uuid": "nope", "tgt_uuid": TARGET}),
        )
        .await;
    assert_eq!(v["error"]["message"], "No job with uuid nope");
    let v = s
        .call(
            "cmd",
            "route_cmd",
            json!({"job_uuid": JOB, "tgt_uuid": "nope"}),
        )
        .await;
    assert_eq!(v["error"]["code"], 404);
    let v = s.call("cmd", "bogus", json!({})).await;
    assert_eq!(v["error"]["message"], "Unknown method: cmd.bogus");
    assert!(sim.runs().is_empty());

    let batch = s
        .rpc(json!([
            {"resource": "tgt", "method": "get_target_group", "kwarg": {"tgt_uuid": TARGET}},
            {"resource": "cmd", "method": "route_cmd", "kwarg": {"job_uuid": JOB, "tgt_uuid": TARGET}},
        ]))
        .await
        .json();
    assert_eq!(
        batch[0]["ret"]["results"][0]["tgt"],
        json!({"*": {"tgt_type": "glob", "tgt": "vps1"}})
    );
    assert!(batch[1]["ret"].is_string());
    assert!(batch[0]["riq"].as_u64() < batch[1]["riq"].as_u64());
    let log = sim.requests();
    let last = log.last().unwrap();
    assert_eq!(
        (last.host, last.op, last.status),
        (SaltHost::Api, SaltOp::Rpc, 200)
    );
    assert_eq!(last.calls, ["tgt.get_target_group", "cmd.route_cmd"]);
    assert_eq!(sim.runs().len(), 1);
}

#[tokio::test]
async fn faults_and_delay() {
    let sim = salt().start().await.unwrap();
    let s = Session::cloud(&sim).await;
    sim.fail_next(SaltOp::Rpc, 1, 503);
    let r = s.rpc(json!({"resource": "cmd", "method": "route_cmd", "kwarg": {"job_uuid": JOB, "tgt_uuid": TARGET}})).await;
    assert_eq!(r.status, 503);
    assert!(sim.runs().is_empty());
    sim.fail_next(SaltOp::Authorize, 1, 500);
    let url = format!(
        "{}/csp/gateway/am/api/auth/api-tokens/authorize",
        sim.csp_url()
    );
    assert_eq!(
        send(s.http.post(&url).body("refresh_token=my-api-token"))
            .await
            .status,
        500
    );
    sim.set_delay(Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(
        s.rpc(json!({"resource": "job", "method": "get_jobs"}))
            .await
            .status,
        200
    );
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert_eq!(
        send(s.http.get(format!("{}/nope", sim.url()))).await.status,
        404
    );
    assert_eq!(
        send(s.http.get(format!("{}/rpc", sim.url()))).await.status,
        405
    );
    let url = sim.url();
    sim.shutdown().await;
    assert!(client()
        .get(format!("{url}/account/login"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn a_job_can_cure_a_simulated_server() {
    use crate::openstack::{OpenStackSim, ServerSpec};
    let cloud = Arc::new(
        OpenStackSim::builder()
            .server(ServerSpec::new("vps1").hung())
            .start()
            .await
            .unwrap(),
    );
    let cured = Arc::clone(&cloud);
    let sim = salt()
        .job_duration(Duration::from_millis(50))
        .on_fix(move |_| {
            cured.set_responsive("vps1", true);
        })
        .start()
        .await
        .unwrap();
    assert!(!cloud.server("vps1").unwrap().responsive);
    let s = Session::cloud(&sim).await;
    let jid = s.run_job().await;
    s.wait(&jid).await;
    assert!(cloud.server("vps1").unwrap().responsive);
}
