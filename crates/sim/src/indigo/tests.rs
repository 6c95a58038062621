//! Tests of the Indigo simulator through its real socket.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use super::*;
use crate::testing::{banner, client, greet, Greeted, SILENCE};

const TPL: &str = "/webarenaIndigo/v1/nw/gettemplate/";
const UPDATE: &str = "/webarenaIndigo/v1/nw/updatefirewall";
const FW_LIST: &str = "/webarenaIndigo/v1/nw/getfirewalllist";
const VM_LIST: &str = "/webarenaIndigo/v1/vm/getinstancelist";
const POWER: &str = "/webarenaIndigo/v1/vm/instance/statusupdate";
const TOKEN: &str = "/oauth/v1/accesstokens";

fn ssh(source: &str) -> SimRule {
    SimRule::new("Custom", "TCP", "22", source)
}

/// No spike arrest and a quota nobody reaches.
fn relaxed() -> SimBuilder {
    IndigoSim::builder()
        .spike_arrest(None)
        .quota(10_000, Duration::from_secs(60))
}

fn world(b: SimBuilder) -> SimBuilder {
    b.instance(16, "web1", "192.0.2.16", PowerState::Running)
        .instance(17, "db1", "192.0.2.17", PowerState::Stopped)
        .instance(18, "fresh", "192.0.2.18", PowerState::Installing)
        .template(
            55,
            "home-ssh",
            vec![
                ssh("220.146.61.235"),
                SimRule::new("HTTPS", "TCP", "443", "0.0.0.0/0"),
            ],
            vec![SimRule::new("Custom", "ICMP", "", "192.168.100.100/32")],
            &[16, 17],
        )
        .template(56, "empty", vec![], vec![], &[])
}

struct Resp {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Resp {
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        // Like the documented curl examples: a JSON body without a Content-Type.
        req = req.body(b.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Resp {
        status,
        headers,
        text: resp.text().await.unwrap(),
    }
}

fn token_body(key: &str, secret: &str) -> String {
    json!({"grantType": "client_credentials", "clientId": key, "clientSecret": secret, "code": ""})
        .to_string()
}

/// A started simulator with a client and a valid token.
struct Api {
    sim: IndigoSim,
    http: reqwest::Client,
    token: String,
}

impl Api {
    /// Started, with a token from the default credentials.
    async fn new(b: SimBuilder) -> Api {
        let mut api = Api::without_token(b).await;
        api.token = api.new_token().await;
        api
    }

    async fn without_token(b: SimBuilder) -> Api {
        Api {
            sim: b.start().await.unwrap(),
            http: client(),
            token: String::new(),
        }
    }

    async fn new_token(&self) -> String {
        let r = self
            .raw(
                Method::POST,
                TOKEN,
                None,
                Some(&token_body("test-key", "test-secret")),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["accessToken"].as_str().unwrap().to_owned()
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Resp {
        send(&self.http, &self.sim.url(), method, path, token, body).await
    }

    async fn get(&self, path: &str) -> Resp {
        self.raw(Method::GET, path, Some(&self.token), None).await
    }

    async fn put(&self, path: &str, body: &Value) -> Resp {
        self.raw(
            Method::PUT,
            path,
            Some(&self.token),
            Some(&body.to_string()),
        )
        .await
    }

    async fn power(&self, id: Value, verb: &str) -> Resp {
        let body = json!({"instanceId": id, "status": verb}).to_string();
        self.raw(Method::POST, POWER, Some(&self.token), Some(&body))
            .await
    }

    async fn power_state(&self, id: u64) -> String {
        let list = self.get(VM_LIST).await.json();
        list.as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .map(|i| i["instancestatus"].as_str().unwrap().to_owned())
            .unwrap()
    }
}

fn error_code(r: &Resp) -> String {
    r.json()["errorCode"].as_str().unwrap_or("").to_owned()
}

// ---------------------------------------------------------------------------------------------
// Token and auth

#[tokio::test]
async fn token_is_issued_with_string_fields() {
    let api = Api::new(relaxed()).await;
    let r = api
        .raw(
            Method::POST,
            TOKEN,
            None,
            Some(&token_body("test-key", "test-secret")),
        )
        .await;
    assert_eq!(r.status, 201);
    let v = r.json();
    assert_eq!(v["accessToken"].as_str().unwrap().len(), 28);
    assert!(v["accessToken"]
        .as_str()
        .unwrap()
        .chars()
        .all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(v["tokenType"], "BearerToken");
    assert_eq!(v["expiresIn"], "3599");
    assert_eq!(v["scope"], "");
    let issued: u128 = v["issuedAt"].as_str().unwrap().parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(issued <= now && now - issued < 10_000);
    assert_ne!(v["accessToken"].as_str().unwrap(), api.token);
    assert_eq!(api.sim.tokens_issued(), 2);
    assert_eq!(api.sim.calls(Endpoint::Token), 2);
}

#[tokio::test]
async fn bad_credentials_get_a_gateway_401() {
    let api = Api::without_token(relaxed().credentials("k", "s")).await;
    let default = api
        .raw(
            Method::POST,
            TOKEN,
            None,
            Some(&token_body("test-key", "test-secret")),
        )
        .await;
    assert_eq!(default.status, 401, "the defaults are replaced");
    let r = api
        .raw(Method::POST, TOKEN, None, Some(&token_body("k", "wrong")))
        .await;
    assert_eq!(r.status, 401);
    let v = r.json();
    assert_eq!(v["errorCode"], "401");
    assert_eq!(v["errorMessage"], "Invalid client credentials");
    assert!(v["moreInfo"].is_null());
    assert_eq!(v["requestId"].as_str().unwrap(), r.header("x-request-id"));
    let ok = api
        .raw(Method::POST, TOKEN, None, Some(&token_body("k", "s")))
        .await;
    assert_eq!(ok.status, 201);
    let grant = json!({"grantType": "password", "clientId": "k", "clientSecret": "s"}).to_string();
    assert_eq!(
        api.raw(Method::POST, TOKEN, None, Some(&grant))
            .await
            .status,
        400
    );
    assert_eq!(
        api.raw(Method::POST, TOKEN, None, Some("{nope"))
            .await
            .status,
        400
    );
    assert_eq!(api.sim.tokens_issued(), 1);
}

#[tokio::test]
async fn api_calls_need_a_live_bearer_token() {
    let api = Api::new(world(relaxed())).await;
    let none = api.raw(Method::GET, FW_LIST, None, None).await;
    assert_eq!((none.status, error_code(&none)), (401, "401".to_owned()));
    assert_eq!(
        api.raw(Method::GET, FW_LIST, Some("nope"), None)
            .await
            .status,
        401
    );
    assert_eq!(api.get(FW_LIST).await.status, 200);

    api.sim.expire_tokens();
    let expired = api.get(FW_LIST).await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.json()["errorCode"], "401");
    let fresh = api.new_token().await;
    assert_eq!(
        api.raw(Method::GET, FW_LIST, Some(&fresh), None)
            .await
            .status,
        200
    );
    assert_eq!(api.sim.calls(Endpoint::FirewallList), 5);
}

#[tokio::test]
async fn tokens_expire_after_their_lifetime() {
    let api = Api::new(relaxed().token_lifetime(Duration::from_millis(400))).await;
    let v = api
        .raw(
            Method::POST,
            TOKEN,
            None,
            Some(&token_body("test-key", "test-secret")),
        )
        .await
        .json();
    assert_eq!(v["expiresIn"], "1", "sub-second lifetimes round up");
    assert_eq!(api.get(FW_LIST).await.status, 200);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(api.get(FW_LIST).await.status, 401);
}

// ---------------------------------------------------------------------------------------------
// Firewall

#[tokio::test]
async fn gettemplate_is_a_reordered_array_with_escaped_slashes() {
    let api = Api::new(world(relaxed())).await;
    let r = api.get(&format!("{TPL}55")).await;
    assert_eq!(r.status, 200);
    assert!(r.text.starts_with('['), "{}", r.text);
    assert!(r.text.contains(r#""0.0.0.0\/0""#), "{}", r.text);
    assert!(r.text.contains(r#""192.168.100.100\/32""#), "{}", r.text);

    let key = |v: &Value| -> Vec<(String, String, String, String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|o| {
                assert_eq!(o["id"], 55);
                assert_eq!(o["name"], "home-ssh");
                let s = |k: &str| o[k].as_str().unwrap().to_owned();
                (
                    s("direction"),
                    s("type"),
                    s("protocol"),
                    s("port"),
                    s("source"),
                )
            })
            .collect()
    };
    let first = key(&r.json());
    let stored: Vec<_> = [
        ("in", "Custom", "TCP", "22", "220.146.61.235"),
        ("in", "HTTPS", "TCP", "443", "0.0.0.0/0"),
        ("out", "Custom", "ICMP", "", "192.168.100.100/32"),
    ]
    .iter()
    .map(|(a, b, c, d, e)| {
        (
            a.to_string(),
            b.to_string(),
            c.to_string(),
            d.to_string(),
            e.to_string(),
        )
    })
    .collect();
    assert_ne!(first, stored, "the first read is never in stored order");
    let second = key(&api.get(&format!("{TPL}55")).await.json());
    assert_ne!(first, second, "the order changes between reads");
    let as_set =
        |v: &[(String, String, String, String, String)]| v.iter().cloned().collect::<HashSet<_>>();
    assert_eq!(as_set(&first), as_set(&stored));
    assert_eq!(as_set(&second), as_set(&stored));

    let empty = api.get(&format!("{TPL}56")).await;
    assert_eq!((empty.status, empty.text.as_str()), (200, "[]"));

    for missing in ["999", "abc"] {
        let r = api.get(&format!("{TPL}{missing}")).await;
        assert_eq!(r.status, 404);
        assert_eq!(r.json()["success"], false);
        assert_eq!(r.json()["errorCode"], "F60010");
    }
    assert_eq!(api.sim.calls(Endpoint::GetTemplate), 5);
}

#[tokio::test]
async fn firewall_list_is_a_bare_array() {
    let api = Api::new(world(relaxed())).await;
    let v = api.get(FW_LIST).await.json();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], 55);
    assert_eq!(list[0]["name"], "home-ssh");
    assert_eq!(list[0]["status"], 1);
    assert_eq!(list[0]["user_id"], 6);
    assert!(list[0]["service_id"].as_str().unwrap().starts_with("idg-"));
    assert_eq!(list[0]["created_at"].as_str().unwrap().len(), 19);
    assert!(list[0].get("instances").is_none());
}

#[tokio::test]
async fn updatefirewall_replaces_rules_and_assignments() {
    let api = Api::new(world(relaxed())).await;
    let body = json!({
        "templateid": "55",
        "name": "home-ssh",
        "inbound": [{"type": "Custom", "protocol": "TCP", "port": "22", "source": "198.51.100.7"}],
        "outbound": [],
        "instances": ["16"],
    });
    let r = api.put(UPDATE, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["sucessCode"], "F6004");
    assert_eq!(v["message"], "Firewall template is updated successfully.");
    assert_eq!(v["firewallId"], 55);
    assert_eq!(api.sim.last_update_body().unwrap(), body.to_string());

    let t = api.sim.template(55).unwrap();
    assert_eq!(t.inbound, vec![ssh("198.51.100.7")]);
    assert!(t.outbound.is_empty());
    assert_eq!(t.assigned, vec![16]);
    let read = api.get(&format!("{TPL}55")).await.json();
    assert_eq!(read.as_array().unwrap().len(), 1);
    assert_eq!(read[0]["source"], "198.51.100.7");

    // Numbers work wherever ids are documented as strings; the name may change.
    let body = json!({
        "templateid": 55,
        "name": "renamed",
        "inbound": [],
        "outbound": [{"type": "All TCP", "protocol": "TCP", "port": "1-65535", "source": "0.0.0.0"}],
        "instances": [17, "16"],
    });
    assert_eq!(api.put(UPDATE, &body).await.status, 200);
    let t = api.sim.template(55).unwrap();
    assert_eq!(t.name, "renamed");
    assert!(t.inbound.is_empty());
    assert_eq!(t.assigned, vec![16, 17]);
    assert_eq!(api.sim.update_bodies().len(), 2);
}

#[tokio::test]
async fn updatefirewall_without_instances_keeps_or_clears() {
    let body = json!({"templateid": "55", "name": "home-ssh", "inbound": [ssh_json("198.51.100.7")], "outbound": []});
    let keep = Api::new(world(relaxed())).await;
    assert_eq!(keep.put(UPDATE, &body).await.status, 200);
    assert_eq!(keep.sim.template(55).unwrap().assigned, vec![16, 17]);

    let clear =
        Api::new(world(relaxed()).assignments_when_instances_absent(AbsentInstances::Clear)).await;
    assert_eq!(clear.put(UPDATE, &body).await.status, 200);
    assert!(clear.sim.template(55).unwrap().assigned.is_empty());
}

fn ssh_json(source: &str) -> Value {
    json!({"type": "Custom", "protocol": "TCP", "port": "22", "source": source})
}

#[tokio::test]
async fn updatefirewall_refuses_bad_requests_and_changes_nothing() {
    let api = Api::new(world(relaxed())).await;
    let before = api.sim.template(55).unwrap();
    let ok_rule = ssh_json("198.51.100.7");
    let cases = [
        (
            json!({"templateid": "55", "inbound": [ok_rule], "outbound": [], "instances": ["16", "99"]}),
            "I10001",
        ),
        (
            json!({"templateid": "999", "inbound": [ok_rule], "outbound": []}),
            "F60010",
        ),
        (json!({"inbound": [ok_rule], "outbound": []}), "F60011"),
        (
            json!({"templateid": "55", "name": "x", "instances": ["16"]}),
            "F60012",
        ),
        (
            json!({"templateid": "55", "inbound": [{"type": "Custom", "protocol": "TCP", "port": 22, "source": "198.51.100.7"}]}),
            "F60013",
        ),
        (
            json!({"templateid": "55", "inbound": [{"type": "Custom", "protocol": "TCP", "port": "22"}]}),
            "F60013",
        ),
        (
            json!({"templateid": "55", "inbound": [ssh_json("anywhere")]}),
            "F60014",
        ),
        (
            json!({"templateid": "55", "inbound": [ssh_json("10.0.0.0/40")]}),
            "F60014",
        ),
        (
            json!({"templateid": "55", "name": "", "inbound": [ok_rule]}),
            "F60015",
        ),
    ];
    for (body, code) in cases {
        let r = api.put(UPDATE, &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.json()["success"], false, "{body}");
        assert_eq!(error_code(&r), code, "{body}");
    }
    let r = api
        .raw(
            Method::PUT,
            UPDATE,
            Some(&api.token),
            Some("{\"templateid\": \"55\", "),
        )
        .await;
    assert_eq!((r.status, error_code(&r)), (400, "S10001".to_owned()));
    assert_eq!(api.sim.template(55).unwrap(), before);
    assert!(api.sim.last_update_body().is_none());
    assert_eq!(api.sim.calls(Endpoint::UpdateFirewall), 10);
}

#[tokio::test]
async fn hand_edits_show_up_in_reads() {
    let api = Api::new(world(relaxed())).await;
    assert!(api.sim.set_rules(55, vec![ssh("0.0.0.0/0")], vec![]));
    assert!(!api.sim.set_rules(999, vec![], vec![]));
    let v = api.get(&format!("{TPL}55")).await.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["source"], "0.0.0.0/0");
    assert_eq!(api.sim.template(55).unwrap().assigned, vec![16, 17]);
}

// ---------------------------------------------------------------------------------------------
// Instances and power

#[tokio::test]
async fn instance_list_has_the_real_fields() {
    let api = Api::new(world(relaxed())).await;
    let v = api.get(VM_LIST).await.json();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 3);
    let web = &list[0];
    assert_eq!(web["id"], 16);
    assert_eq!(web["instance_name"], "web1");
    assert_eq!(web["status"], "OPEN");
    assert_eq!(web["instancestatus"], "Running");
    assert_eq!(web["ip"], "192.0.2.16");
    assert_eq!(web["ipaddress"], web["ip"]);
    assert_eq!(web["plan"], "2CR2GB");
    assert_eq!(web["regionname"], "Tokyo");
    assert!(web["VEID"].is_string());
    assert!(web["os_id"].is_u64());
    assert!(web["vps_kind"].is_u64());
    assert!(web.get("region_id").is_none());
    let created = web["created_at"].as_str().unwrap();
    assert_eq!(
        (created.len(), &created[4..5], &created[10..11]),
        (19, "-", " ")
    );
    assert_eq!(list[1]["instancestatus"], "Stopped");
    assert_eq!(list[2]["instancestatus"], "OS installation In Progress");
    assert_eq!(list[2]["status"], "READY");
}

#[tokio::test]
async fn power_transitions_are_timed_and_not_idempotent() {
    let delay = Duration::from_millis(300);
    let api = Api::new(world(relaxed()).power_delays(delay, delay)).await;

    let r = api.power(json!("16"), "stop").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["sucessCode"], "I20009");
    assert_eq!(v["message"], "Instance has stopped successfully ");
    assert_eq!(v["instanceStatus"], "shutoff");
    assert_eq!(api.power_state(16).await, "Stopping");
    assert_eq!(
        api.power(json!(16), "stop").await.status,
        200,
        "a repeated stop is accepted"
    );
    tokio::time::sleep(delay + Duration::from_millis(50)).await;
    assert_eq!(api.power_state(16).await, "Stopped");
    let again = api.power(json!(16), "stop").await;
    assert_eq!(
        (again.status, error_code(&again)),
        (400, "I10017".to_owned())
    );
    assert_eq!(
        again.json()["errorMessage"],
        "This instance is already stopped."
    );

    let r = api.power(json!(16), "start").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["sucessCode"], "I20008");
    assert_eq!(r.json()["instanceStatus"], "running");
    assert_eq!(api.sim.instance(16).unwrap().power, PowerState::Starting);
    assert_eq!(api.power_state(16).await, "Starting");
    tokio::time::sleep(delay + Duration::from_millis(50)).await;
    assert_eq!(api.sim.instance(16).unwrap().power, PowerState::Running);
    let again = api.power(json!("16"), "start").await;
    assert_eq!(
        (again.status, error_code(&again)),
        (400, "I10016".to_owned())
    );
    assert_eq!(
        again.json()["errorMessage"],
        "This instance is already running."
    );
    assert_eq!(api.sim.calls(Endpoint::StatusUpdate), 5);
}

#[tokio::test]
async fn a_hung_stop_needs_a_forcestop() {
    let api =
        Api::new(world(relaxed()).power_delays(Duration::from_millis(30), Duration::ZERO)).await;
    assert!(api.sim.set_hung(16, true));
    assert_eq!(api.power(json!(16), "stop").await.status, 200);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(api.power_state(16).await, "Stopping");
    let r = api.power(json!(16), "forcestop").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["success"], true);
    assert_eq!(api.power_state(16).await, "Stopped");
    // With a zero start delay the start completes at once.
    assert_eq!(api.power(json!(16), "start").await.status, 200);
    assert_eq!(api.power_state(16).await, "Running");
    assert!(api.sim.instance(16).unwrap().hung);
}

#[tokio::test]
async fn stop_may_answer_i10025_in_a_2xx() {
    let api = Api::new(world(relaxed()).stop_answers_i10025(true)).await;
    let r = api.power(json!("16"), "stop").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["success"], false);
    assert_eq!(error_code(&r), "I10025");
    assert_eq!(api.power_state(16).await, "Stopping");
}

#[tokio::test]
async fn statusupdate_refuses_what_the_real_api_refuses() {
    let api = Api::new(world(relaxed())).await;
    let cases = [
        (json!(16), "pause", "I10020"),
        (json!(99), "start", "I10001"),
        (json!(""), "start", "I10002"),
        (json!(18), "start", "I10030"),
        (json!(16), "destroy", "I10055"),
        (json!(17), "forcestop", "I10017"),
        (json!(17), "reset", "I10017"),
    ];
    for (id, verb, code) in cases {
        let r = api.power(id.clone(), verb).await;
        assert_eq!(
            (r.status, error_code(&r)),
            (400, code.to_owned()),
            "{id} {verb}"
        );
    }
    let r = api.power(json!(16), "reset").await;
    assert_eq!(r.status, 200);
    assert_eq!(api.power_state(16).await, "Running");
    let r = api.power(json!("17"), "destroy").await;
    assert_eq!(r.status, 200);
    assert!(api.sim.instance(17).is_none());
    assert_eq!(api.sim.template(55).unwrap().assigned, vec![16]);
    let r = api
        .raw(Method::POST, POWER, Some(&api.token), Some("stop"))
        .await;
    assert_eq!((r.status, error_code(&r)), (400, "S10001".to_owned()));
}

#[tokio::test]
async fn state_can_be_changed_by_hand() {
    let api = Api::new(world(relaxed())).await;
    assert!(api.sim.set_power(18, PowerState::Stopped));
    assert_eq!(api.power_state(18).await, "Stopped");
    assert!(!api.sim.set_power(99, PowerState::Running));
    assert!(api.sim.remove_instance(16));
    assert_eq!(api.sim.template(55).unwrap().assigned, vec![17]);
    let r = api
        .put(
            UPDATE,
            &json!({"templateid": 55, "inbound": [], "instances": [16]}),
        )
        .await;
    assert_eq!(error_code(&r), "I10001");
}

// ---------------------------------------------------------------------------------------------
// Gateway: limits, headers, routing

#[tokio::test]
async fn quota_answers_429_after_allowed_requests() {
    let api = Api::new(world(
        IndigoSim::builder()
            .spike_arrest(None)
            .quota(3, Duration::from_secs(60)),
    ))
    .await;
    let first = api.get(FW_LIST).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-quota-allowed"), "3");
    assert_eq!(
        first.header("x-quota-available"),
        "1",
        "the token request counts"
    );
    assert_eq!(api.get(FW_LIST).await.header("x-quota-available"), "0");

    let r = api.get(FW_LIST).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-quota-allowed"), "3");
    assert_eq!(r.header("x-quota-available"), "0");
    let reset: u128 = r.header("x-quota-reset").parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(reset > now && reset <= now + 60_000, "{reset} vs {now}");
    assert!(r.headers.get("retry-after").is_none());
    let v = r.json();
    assert_eq!(v["errorCode"], "429");
    assert_eq!(v["errorMessage"], "Too Many Request.");
    assert!(v["developerMessage"]
        .as_str()
        .unwrap()
        .starts_with("Rate limit quota violation. Quota limit  exceeded. Identifier : "));
    assert!(v["moreInfo"].is_null());
    assert_eq!(api.sim.throttled(), 1);
    assert_eq!(api.sim.calls(Endpoint::FirewallList), 3);
    let tok = api
        .raw(
            Method::POST,
            TOKEN,
            None,
            Some(&token_body("test-key", "test-secret")),
        )
        .await;
    assert_eq!(tok.status, 429, "token requests are limited too");
}

#[tokio::test]
async fn quota_window_resets() {
    let window = Duration::from_millis(500);
    let api = Api::new(world(
        IndigoSim::builder().spike_arrest(None).quota(2, window),
    ))
    .await;
    assert_eq!(api.get(FW_LIST).await.status, 200);
    assert_eq!(api.get(FW_LIST).await.status, 429);
    tokio::time::sleep(window + Duration::from_millis(30)).await;
    let r = api.get(FW_LIST).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-quota-available"), "1");
}

#[tokio::test]
async fn spike_arrest_rejects_close_requests() {
    let gap = Duration::from_millis(300);
    let api = Api::new(world(
        IndigoSim::builder()
            .spike_arrest(Some(gap))
            .quota(100, Duration::from_secs(60)),
    ))
    .await;
    let r = api.get(FW_LIST).await;
    assert_eq!(r.status, 429);
    let v = r.json();
    assert_eq!(v["errorCode"], "429");
    assert!(v["developerMessage"]
        .as_str()
        .unwrap()
        .starts_with("Spike arrest violation. Allowed rate : MessageRate{messagesPerPeriod=2"));
    assert!(r.headers.contains_key("x-quota-available"));
    tokio::time::sleep(gap + Duration::from_millis(20)).await;
    assert_eq!(api.get(FW_LIST).await.status, 200);
    assert_eq!(api.sim.throttled(), 1);
}

#[tokio::test]
async fn injected_failures_hit_the_chosen_requests() {
    let api = Api::new(world(relaxed())).await;
    api.sim.fail_next(2, 503);
    let tok = api.new_token().await; // the token endpoint is exempt from fail_next
    let r = api.get(FW_LIST).await;
    assert_eq!((r.status, error_code(&r)), (503, "503".to_owned()));
    assert_eq!(api.get(VM_LIST).await.status, 503);
    assert_eq!(
        api.raw(Method::GET, VM_LIST, Some(&tok), None).await.status,
        200
    );

    api.sim.fail_next_on(Endpoint::InstanceList, 1, 500);
    assert_eq!(api.get(FW_LIST).await.status, 200);
    assert_eq!(api.get(VM_LIST).await.status, 500);
    assert_eq!(api.get(VM_LIST).await.status, 200);

    api.sim.fail_next_on(Endpoint::Token, 1, 502);
    let r = api
        .raw(
            Method::POST,
            TOKEN,
            None,
            Some(&token_body("test-key", "test-secret")),
        )
        .await;
    assert_eq!(r.status, 502);

    api.sim.fail_next(1, 400);
    let r = api.get(FW_LIST).await;
    assert_eq!((r.status, error_code(&r)), (400, "I10037".to_owned()));
    api.sim.fail_next(1, 429);
    let r = api.get(FW_LIST).await;
    assert_eq!((r.status, r.header("x-quota-available")), (429, "0"));
    assert_eq!(api.sim.throttled(), 1);
    assert_eq!(api.sim.calls(Endpoint::InstanceList), 4);
}

#[tokio::test]
async fn malformed_answers_are_200_but_unparseable() {
    let api = Api::new(world(relaxed())).await;
    api.sim.malformed_next(Endpoint::InstanceList, 1);
    let r = api.get(VM_LIST).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/json");
    assert!(
        serde_json::from_str::<Value>(&r.text).is_err(),
        "{}",
        r.text
    );
    assert_eq!(api.get(VM_LIST).await.status, 200);
    api.get(VM_LIST).await.json();

    // A malformed answer to a write does not undo the write.
    api.sim.malformed_next(Endpoint::UpdateFirewall, 1);
    let body = json!({"templateid": "55", "inbound": [ssh_json("198.51.100.9")], "outbound": [], "instances": ["16"]});
    let r = api.put(UPDATE, &body).await;
    assert!(serde_json::from_str::<Value>(&r.text).is_err());
    assert_eq!(
        api.sim.template(55).unwrap().inbound,
        vec![ssh("198.51.100.9")]
    );
}

#[tokio::test]
async fn delay_slows_every_answer() {
    let api = Api::new(world(relaxed())).await;
    let delay = Duration::from_millis(400);
    api.sim.set_delay(delay);
    let t = Instant::now();
    assert_eq!(api.get(FW_LIST).await.status, 200);
    assert!(t.elapsed() >= delay);
    api.sim.set_delay(Duration::ZERO);
    let t = Instant::now();
    assert_eq!(api.get(FW_LIST).await.status, 200);
    assert!(t.elapsed() < delay);
}

#[tokio::test]
async fn routing_headers_and_call_log() {
    let api = Api::new(world(relaxed())).await;
    let r = api.get("/webarenaIndigo/v1/nw/nothing").await;
    assert_eq!(r.status, 404);
    let r = api.get(UPDATE).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), "PUT");
    let r = api.get(FW_LIST).await;
    for name in [
        "x-quota-allowed",
        "x-quota-available",
        "x-quota-reset",
        "x-request-id",
        "access-control-allow-origin",
        "access-control-allow-headers",
        "access-control-allow-methods",
    ] {
        assert!(r.headers.contains_key(name), "{name}");
    }
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(api.sim.calls(Endpoint::Other), 1);
    assert_eq!(api.sim.calls(Endpoint::UpdateFirewall), 1);

    let log = api.sim.call_log();
    let seen: Vec<(&str, &str, Endpoint, u16)> = log
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str(), c.endpoint, c.status))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("POST", TOKEN, Endpoint::Token, 201),
            ("GET", "/webarenaIndigo/v1/nw/nothing", Endpoint::Other, 404),
            ("GET", UPDATE, Endpoint::UpdateFirewall, 405),
            ("GET", FW_LIST, Endpoint::FirewallList, 200),
        ]
    );
    assert!(log[0].body.contains("client_credentials"));
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
}

#[tokio::test]
async fn builder_refuses_assignment_to_unknown_instance() {
    let err = IndigoSim::builder()
        .template(1, "t", vec![], vec![], &[42])
        .start()
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let sim = relaxed().start().await.unwrap();
    let url = sim.url();
    assert!(url.starts_with("http://127.0.0.1:"));
    let http = client();
    assert_eq!(
        send(&http, &url, Method::GET, FW_LIST, None, None)
            .await
            .status,
        401
    );
    sim.shutdown().await;
    assert!(client()
        .get(format!("{url}{FW_LIST}"))
        .send()
        .await
        .is_err());
}

// ---------------------------------------------------------------------------------------------
// SSH endpoints

const HOME: &str = "220.146.61.235";

/// `world` with SSH endpoints, fast power transitions and a second running instance, 19, that
/// shares template 55 with 16.
async fn ssh_world() -> Api {
    let b = world(relaxed())
        .instance(19, "web2", "192.0.2.19", PowerState::Running)
        .template(
            55,
            "home-ssh",
            vec![ssh(HOME), SimRule::new("HTTPS", "TCP", "443", "0.0.0.0/0")],
            vec![],
            &[16, 17, 19],
        )
        .power_delays(Duration::from_millis(40), Duration::from_millis(40))
        .ssh_endpoints(true);
    Api::new(b).await
}

impl Api {
    async fn greet(&self, id: u64) -> Greeted {
        greet(self.sim.ssh_addr(id).unwrap()).await
    }

    /// Waits until `id` reports `want` in the instance list.
    async fn wait_power(&self, id: u64, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.power_state(id).await != want {
            assert!(Instant::now() < deadline, "{id} never became {want}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops (or force-stops) `id`, waits for `Stopped`, starts it and waits for `Running`.
    async fn power_cycle(&self, id: u64, stop: &str) {
        assert_eq!(self.power(json!(id), stop).await.status, 200);
        self.wait_power(id, "Stopped").await;
        assert_eq!(self.power(json!(id), "start").await.status, 200);
        self.wait_power(id, "Running").await;
    }
}

#[tokio::test]
async fn ssh_endpoints_are_off_unless_asked_for() {
    let sim = world(relaxed()).start().await.unwrap();
    assert_eq!(sim.ssh_addr(16), None);
    let api = ssh_world().await;
    for id in [16, 17, 18, 19] {
        let addr = api.sim.ssh_addr(id).unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_ne!(addr, api.sim.addr());
    }
    assert_eq!(api.sim.ssh_addr(99), None);
}

#[tokio::test]
async fn ssh_banner_when_running_responsive_and_admitted() {
    let api = ssh_world().await;
    // No client address set: every firewall admits.
    assert_eq!(api.greet(16).await, banner());
    api.sim.set_client_ip(HOME);
    assert_eq!(api.greet(16).await, banner());
    assert_eq!(api.greet(19).await, banner());
    // 18 has no template (admits everyone) but is still installing.
    assert_eq!(api.greet(18).await, Greeted::Closed);
    assert!(api.sim.set_power(18, PowerState::Running));
    assert_eq!(api.greet(18).await, banner());
}

#[tokio::test]
async fn ssh_closes_while_the_instance_is_not_running() {
    let api = ssh_world().await;
    api.sim.set_client_ip(HOME);
    assert_eq!(api.greet(17).await, Greeted::Closed);
    api.sim.set_hung(16, true);
    assert_eq!(api.power(json!(16), "stop").await.status, 200);
    assert_eq!(api.greet(16).await, Greeted::Closed, "stopping");
    assert_eq!(api.power(json!(16), "forcestop").await.status, 200);
    assert_eq!(api.greet(16).await, Greeted::Closed, "stopped");
    assert_eq!(api.power(json!(16), "start").await.status, 200);
    assert_eq!(api.greet(16).await, Greeted::Closed, "starting");
    api.wait_power(16, "Running").await;
    assert_eq!(api.greet(16).await, banner());
    // A destroyed instance's endpoint stays bound and closes every connection.
    api.sim.set_power(17, PowerState::Stopped);
    assert_eq!(api.power(json!(17), "destroy").await.status, 200);
    assert_eq!(api.greet(17).await, Greeted::Closed);
}

#[tokio::test]
async fn ssh_is_silent_while_the_guest_hangs() {
    let api = ssh_world().await;
    assert!(api.sim.set_responsive(16, false));
    assert!(!api.sim.set_responsive(99, false));
    assert!(!api.sim.instance(16).unwrap().responsive);
    assert_eq!(api.greet(16).await, Greeted::Silent);
    assert_eq!(api.greet(19).await, banner(), "only 16 hangs");
    assert!(api.sim.set_responsive(16, true));
    assert_eq!(api.greet(16).await, banner());
}

#[tokio::test]
async fn ssh_follows_the_firewall_rules() {
    let api = ssh_world().await;
    api.sim.set_client_ip("198.51.100.7");
    assert_eq!(
        api.greet(16).await,
        Greeted::Silent,
        "only {HOME} may connect"
    );

    // The rule is rewritten through the API to our new address.
    let r = api
        .put(
            UPDATE,
            &json!({"templateid": 55, "inbound": [ssh_json("198.51.100.0/24")]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(api.greet(16).await, banner());

    // Rules that do not cover TCP 22 from us.
    for rule in [
        SimRule::new("Custom", "UDP", "22", "0.0.0.0/0"),
        SimRule::new("HTTPS", "TCP", "443", "0.0.0.0/0"),
        SimRule::new("Custom", "TCP", "22", "198.51.100.8"),
        SimRule::new("Custom", "TCP", "2222", "198.51.100.7/32"),
    ] {
        assert!(api.sim.set_rules(55, vec![rule.clone()], vec![]));
        assert_eq!(api.greet(16).await, Greeted::Silent, "{rule:?}");
    }
    // Rules that do.
    for rule in [
        SimRule::new("All TCP", "TCP", "1-65535", "0.0.0.0/0"),
        SimRule::new("All TCP", "TCP", "All Ports", "0.0.0.0"),
        SimRule::new("Custom", "TCP", "20-30", "198.51.100.7/32"),
        ssh("198.51.100.7"),
    ] {
        assert!(api.sim.set_rules(55, vec![rule.clone()], vec![]));
        assert_eq!(api.greet(16).await, banner(), "{rule:?}");
    }

    // Admitted by any one of several templates; an unassigned instance admits everyone.
    assert!(api.sim.set_rules(55, vec![ssh(HOME)], vec![]));
    assert!(api.sim.set_rules(56, vec![ssh("198.51.100.7")], vec![]));
    assert_eq!(api.greet(16).await, Greeted::Silent);
    let r = api
        .put(
            UPDATE,
            &json!({"templateid": 56, "inbound": [ssh_json("198.51.100.7")], "instances": [16]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(api.greet(16).await, banner());
    let r = api
        .put(
            UPDATE,
            &json!({"templateid": 55, "inbound": [], "instances": []}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(api.greet(19).await, banner(), "19 has no template left");

    // An address that does not parse is admitted by no rule.
    api.sim.set_client_ip("not-an-ip");
    assert_eq!(api.greet(16).await, Greeted::Silent);
    assert_eq!(api.greet(19).await, banner());
}

#[tokio::test]
async fn stop_start_cures_a_hang_but_not_a_broken_guest() {
    let api = ssh_world().await;
    api.sim.set_client_ip(HOME);
    assert!(api.sim.set_responsive(16, false));
    assert!(api.sim.set_broken(19, true));
    assert!(!api.sim.set_broken(99, true));
    let broken = api.sim.instance(19).unwrap();
    assert!(broken.broken && !broken.responsive);
    assert_eq!(api.greet(19).await, Greeted::Silent);

    // A reset is not a stop/start.
    assert_eq!(api.power(json!(16), "reset").await.status, 200);
    assert_eq!(api.greet(16).await, Greeted::Silent);

    api.power_cycle(16, "stop").await;
    api.power_cycle(19, "stop").await;
    assert_eq!(api.greet(16).await, banner());
    assert_eq!(api.greet(19).await, Greeted::Silent);
    assert!(api.sim.instance(16).unwrap().responsive);

    // A forcestop that ends a hung stop cures too; set_hung is a separate fault.
    api.sim.set_responsive(16, false);
    api.sim.set_hung(16, true);
    assert_eq!(api.power(json!(16), "stop").await.status, 200);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(api.power_state(16).await, "Stopping");
    api.power_cycle(16, "forcestop").await;
    assert_eq!(api.greet(16).await, banner());
    assert!(api.sim.instance(16).unwrap().hung);

    // A hang that starts while the instance is stopped needs another stop.
    api.sim.set_hung(16, false);
    assert_eq!(api.power(json!(16), "stop").await.status, 200);
    api.wait_power(16, "Stopped").await;
    api.sim.set_responsive(16, false);
    assert_eq!(api.power(json!(16), "start").await.status, 200);
    api.wait_power(16, "Running").await;
    assert_eq!(api.greet(16).await, Greeted::Silent);

    // Broken stays broken through a forcestop too; repairing by hand works, and once no longer
    // broken a later hang is cured by a stop/start again.
    api.power_cycle(19, "forcestop").await;
    assert_eq!(api.greet(19).await, Greeted::Silent);
    assert!(api.sim.set_broken(19, false));
    assert_eq!(
        api.greet(19).await,
        Greeted::Silent,
        "unbreaking leaves the hang"
    );
    api.power_cycle(19, "stop").await;
    assert_eq!(api.greet(19).await, banner());
}

#[tokio::test]
async fn ssh_connections_and_power_actions_are_counted() {
    let api = ssh_world().await;
    assert_eq!(api.sim.ssh_connections(16), 0);
    assert!(api.sim.power_log().is_empty());
    assert_eq!(api.greet(16).await, banner());
    api.sim.set_responsive(16, false);
    assert_eq!(api.greet(16).await, Greeted::Silent);
    assert_eq!(api.greet(17).await, Greeted::Closed);
    assert_eq!(api.sim.ssh_connections(16), 2);
    assert_eq!(api.sim.ssh_connections(17), 1);
    assert_eq!(api.sim.ssh_connections(19), 0);
    assert_eq!(api.sim.ssh_connections(99), 0);

    api.power_cycle(16, "stop").await;
    // Refused (already running) and fault-injected requests took no effect.
    assert_eq!(api.power(json!(16), "start").await.status, 400);
    api.sim.fail_next_on(Endpoint::StatusUpdate, 1, 503);
    assert_eq!(api.power(json!(19), "stop").await.status, 503);
    assert_eq!(
        api.sim.power_log(),
        vec![(16, "stop".to_owned()), (16, "start".to_owned())]
    );
    assert_eq!(api.greet(16).await, banner());
    assert_eq!(api.sim.ssh_connections(16), 3);
}

#[tokio::test]
async fn shutdown_closes_ssh_endpoints_and_held_connections() {
    use tokio::io::AsyncReadExt;
    let api = ssh_world().await;
    api.sim.set_responsive(16, false);
    let addr = api.sim.ssh_addr(16).unwrap();
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    assert!(
        tokio::time::timeout(SILENCE, held.read(&mut buf))
            .await
            .is_err(),
        "a hung guest says nothing"
    );
    api.sim.shutdown().await;
    let read = tokio::time::timeout(Duration::from_secs(2), held.read(&mut buf))
        .await
        .expect("the held connection is closed at shutdown");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
