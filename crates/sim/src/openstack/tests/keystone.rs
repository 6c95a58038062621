//! Keystone v3 and v2.0 token flows, the catalog, expiry and revocation.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::*;

const UNAUTHORIZED: &str = r#"{"error":{"code":401,"message":"The request you have made requires authentication.","title":"Unauthorized"}}"#;

async fn post_token(cloud: &Cloud, body: &Value) -> Resp {
    let url = format!("{}/auth/tokens", cloud.sim.auth_url());
    cloud.send(Method::POST, &url, None, Some(body)).await
}

fn endpoints<'a>(catalog: &'a Value, kind: &str) -> &'a Vec<Value> {
    catalog
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {catalog}"))["endpoints"]
        .as_array()
        .unwrap()
}

#[tokio::test]
async fn v3_password_token_carries_the_catalog() {
    let (b, _, _) = world();
    let cloud = Cloud::new(b).await;
    assert!(cloud.sim.auth_url().ends_with("/v3"));
    let r = post_token(&cloud, &password_auth("demopw")).await;
    assert_eq!(r.status, 201);
    let token = r.header("x-subject-token").unwrap();
    assert!(token.starts_with("gAAAAAB") && token.len() > 100, "{token}");
    assert!(r
        .header("x-openstack-request-id")
        .unwrap()
        .starts_with("req-"));
    let v = r.json();
    let t = &v["token"];
    assert_eq!(t["methods"], json!(["password"]));
    assert_eq!(t["project"]["id"], PROJECT);
    assert_eq!(t["user"]["id"], USER);
    assert_eq!(
        t["project"]["domain"],
        json!({"id": "default", "name": "Default"})
    );
    let expires = t["expires_at"].as_str().unwrap();
    assert!(
        expires.ends_with(".000000Z") && expires.len() == 27,
        "{expires}"
    );
    assert!(expires > t["issued_at"].as_str().unwrap());

    let network = endpoints(&t["catalog"], "network");
    assert_eq!(network.len(), 2);
    for ep in network {
        let url = ep["url"].as_str().unwrap();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
            "{url}"
        );
        assert_eq!(url.matches('/').count(), 3, "unversioned: {url}");
        assert_eq!(ep["region_id"], "RegionOne");
        assert_eq!(ep["region"], "RegionOne");
    }
    let compute = endpoints(&t["catalog"], "compute");
    let interfaces: Vec<&str> = compute
        .iter()
        .map(|e| e["interface"].as_str().unwrap())
        .collect();
    assert_eq!(interfaces, ["public", "internal"]);
    for ep in compute {
        assert!(ep["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v2.1/{PROJECT}")));
    }
    assert_ne!(
        compute[0]["url"], compute[1]["url"],
        "interfaces are told apart"
    );
    assert_eq!(
        endpoints(&t["catalog"], "identity")[0]["url"],
        cloud.sim.auth_url()
    );
    assert_eq!(
        cloud
            .sim
            .endpoint_url(Service::Compute, "RegionOne", Interface::Internal)
            .unwrap(),
        compute[1]["url"].as_str().unwrap()
    );
    assert_eq!(cloud.sim.tokens_issued(), 2);
    assert!(cloud.sim.issued_tokens().contains(&token.to_owned()));
}

#[tokio::test]
async fn v3_password_by_ids_or_without_scope() {
    let (b, _, _) = world();
    let cloud = Cloud::new(b).await;
    let by_ids = json!({"auth": {"identity": {"methods": ["password"],
        "password": {"user": {"id": USER, "password": "demopw"}}},
        "scope": {"project": {"id": PROJECT}}}});
    let no_scope = json!({"auth": {"identity": {"methods": ["password"],
        "password": {"user": {"name": "demo", "domain": {"name": "Default"}, "password": "demopw"}}}}});
    for body in [by_ids, no_scope] {
        let r = post_token(&cloud, &body).await;
        assert_eq!(r.status, 201, "{body}: {}", r.text);
        assert_eq!(
            r.json()["token"]["project"]["id"],
            PROJECT,
            "scoped to the default project"
        );
    }
}

#[tokio::test]
async fn v3_refusals_use_keystones_bodies() {
    let (b, _, _) = world();
    let cloud = Cloud::new(b).await;
    let www = format!("Keystone uri=\"{}\"", cloud.sim.auth_url());
    let mut unknown_user = password_auth("demopw");
    unknown_user["auth"]["identity"]["password"]["user"]["name"] = json!("nosuchuser");
    let mut unknown_project = password_auth("demopw");
    unknown_project["auth"]["scope"]["project"]["name"] = json!("admin");
    let mut other_domain = password_auth("demopw");
    other_domain["auth"]["identity"]["password"]["user"]["domain"] = json!({"id": "other"});
    for body in [
        password_auth("wrong"),
        unknown_user,
        unknown_project,
        other_domain,
    ] {
        let r = post_token(&cloud, &body).await;
        assert_eq!((r.status, r.text.as_str()), (401, UNAUTHORIZED), "{body}");
        assert_eq!(r.header("www-authenticate"), Some(www.as_str()));
        assert!(r.header("x-subject-token").is_none());
    }
    let r = post_token(&cloud, &json!({"nope": 1})).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Expecting to find auth in request body."));
    let r = post_token(&cloud, &json!({"auth": {}})).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("'identity' is a required property"));
    let mut no_domain = password_auth("demopw");
    no_domain["auth"]["identity"]["password"]["user"] =
        json!({"name": "demo", "password": "demopw"});
    let r = post_token(&cloud, &no_domain).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("Expecting to find domain in user."));
}

fn app_cred(cred: Value) -> Value {
    json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": cred}}})
}

#[tokio::test]
async fn application_credentials_by_id_or_name() {
    let (b, _, _) = world();
    let cloud = Cloud::new(b).await;
    let id = "dab5faebf88546bb8e7f9fd4f5515852";
    for cred in [
        json!({"id": id, "secret": "s3cret"}),
        json!({"name": "osreal", "secret": "s3cret", "user": {"id": USER}}),
        json!({"name": "osreal", "secret": "s3cret", "user": {"name": "demo", "domain": {"name": "Default"}}}),
    ] {
        let r = post_token(&cloud, &app_cred(cred.clone())).await;
        assert_eq!(r.status, 201, "{cred}: {}", r.text);
        let t = &r.json()["token"];
        assert_eq!(t["methods"], json!(["application_credential"]));
        assert_eq!(
            t["application_credential"],
            json!({"id": id, "name": "osreal", "restricted": true})
        );
        assert_eq!(t["project"]["id"], PROJECT);
    }

    let r = post_token(&cloud, &app_cred(json!({"id": id, "secret": "wrong"}))).await;
    assert_eq!((r.status, r.text.as_str()), (401, UNAUTHORIZED));
    let unknown = "00000000000000000000000000000000";
    let r = post_token(&cloud, &app_cred(json!({"id": unknown, "secret": "x"}))).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["error"]["message"],
        format!("Could not find Application Credential: {unknown}.")
    );
    let r = post_token(
        &cloud,
        &app_cred(json!({"name": "osreal", "secret": "s3cret"})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r
        .text
        .contains("Expecting to find user in application credential."));
    let r = post_token(
        &cloud,
        &app_cred(json!({"name": "osreal", "secret": "s3cret", "user": {"id": "nobody"}})),
    )
    .await;
    assert_eq!(r.status, 404);
    let mut scoped = app_cred(json!({"id": id, "secret": "s3cret"}));
    scoped["auth"]["scope"] = json!({"project": {"id": PROJECT}});
    let r = post_token(&cloud, &scoped).await;
    assert_eq!(r.status, 401);
    assert!(r
        .text
        .contains("Application credentials cannot request a scope."));

    // Deleting the credential revokes its tokens and makes it unknown.
    let r = post_token(&cloud, &app_cred(json!({"id": id, "secret": "s3cret"}))).await;
    let token = r.header("x-subject-token").unwrap().to_owned();
    let groups = format!("{}/v2.0/security-groups", cloud.neutron());
    assert_eq!(
        cloud
            .send(Method::GET, &groups, Some(&token), None)
            .await
            .status,
        200
    );
    assert!(cloud.sim.delete_application_credential(id));
    assert!(!cloud.sim.delete_application_credential(id));
    assert_eq!(
        cloud
            .send(Method::GET, &groups, Some(&token), None)
            .await
            .status,
        401
    );
    let r = post_token(&cloud, &app_cred(json!({"id": id, "secret": "s3cret"}))).await;
    assert_eq!(r.status, 404);
}

async fn validate(cloud: &Cloud, url: &str, subject: &str) -> Resp {
    let h = [("X-Subject-Token", subject)];
    cloud
        .send_with(Method::GET, url, Some(&cloud.token), None, &h)
        .await
}

#[tokio::test]
async fn tokens_expire_and_can_be_revoked() {
    let (b, _, _) = world();
    let cloud = Cloud::new(b.token_lifetime(Duration::from_millis(300))).await;
    let groups = format!("{}/v2.0/security-groups", cloud.neutron());
    assert_eq!(cloud.get(&groups).await.status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = cloud.get(&groups).await;
    assert_eq!(r.status, 401, "expired");
    assert_eq!(
        r.header("www-authenticate"),
        Some(format!("Keystone uri=\"{}\"", cloud.sim.auth_url()).as_str())
    );

    let (b, _, _) = world();
    let cloud = Cloud::new(b).await;
    let groups = format!("{}/v2.0/security-groups", cloud.neutron());
    let tokens = format!("{}/auth/tokens", cloud.sim.auth_url());
    let other = post_token(&cloud, &password_auth("demopw")).await;
    let other = other.header("x-subject-token").unwrap().to_owned();
    let r = validate(&cloud, &tokens, &other).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-subject-token"), Some(other.as_str()));
    let h = [("X-Subject-Token", other.as_str())];
    let r = cloud
        .send_with(Method::DELETE, &tokens, Some(&cloud.token), None, &h)
        .await;
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    assert_eq!(
        cloud
            .send(Method::GET, &groups, Some(&other), None)
            .await
            .status,
        401
    );
    let r = cloud
        .send_with(Method::DELETE, &tokens, Some(&cloud.token), None, &h)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "Failed to validate token");
    let r = validate(&cloud, &tokens, "garbage").await;
    assert_eq!(
        r.json()["error"]["message"],
        "Could not recognize Fernet token"
    );
    let r = cloud
        .send_with(Method::GET, &tokens, Some("garbage"), None, &h)
        .await;
    assert_eq!(r.status, 401);

    assert_eq!(cloud.get(&groups).await.status, 200);
    cloud.sim.revoke_tokens();
    assert_eq!(cloud.get(&groups).await.status, 401);
    assert_eq!(
        cloud.send(Method::GET, &groups, None, None).await.text,
        UNAUTHORIZED
    );
}

#[tokio::test]
async fn two_regions_serve_the_same_project() {
    let (b, sg, _) = world();
    let cloud = Cloud::new(b.regions(&["RegionOne", "RegionTwo"])).await;
    let r = post_token(&cloud, &password_auth("demopw")).await;
    let network = endpoints(&r.json()["token"]["catalog"], "network").clone();
    assert_eq!(network.len(), 4);
    let regions: Vec<&str> = network
        .iter()
        .map(|e| e["region_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        regions,
        ["RegionOne", "RegionOne", "RegionTwo", "RegionTwo"]
    );
    let two = cloud
        .sim
        .endpoint_url(Service::Network, "RegionTwo", Interface::Internal)
        .unwrap();
    assert!(network.iter().any(|e| e["url"] == two.as_str()));
    let r = cloud
        .get(&format!("{two}v2.0/security-groups/{}", sg.id))
        .await;
    assert_eq!(r.status, 200);
    let last = cloud.sim.requests().pop().unwrap();
    assert_eq!(
        (last.service, last.region.as_str(), last.interface),
        (Service::Network, "RegionTwo", Interface::Internal)
    );
    assert_eq!(last.op, Op::ShowGroup);
}

#[tokio::test]
async fn a_v2_cloud_serves_only_keystone_v2() {
    let (b, sg, vps) = world();
    let sim = b.identity(IdentityApi::V2).start().await.unwrap();
    let http = client();
    let cloud = Cloud {
        sim,
        http,
        token: String::new(),
    };
    let auth = cloud.sim.auth_url();
    assert!(auth.ends_with("/v2.0"), "{auth}");
    let tokens = format!("{auth}/tokens");
    let body = |tenant: Value| {
        let mut b =
            json!({"auth": {"passwordCredentials": {"username": "demo", "password": "demopw"}}});
        if let Value::Object(t) = tenant {
            for (k, v) in t {
                b["auth"][k] = v;
            }
        }
        b
    };
    for tenant in [json!({"tenantName": "demo"}), json!({"tenantId": PROJECT})] {
        let r = cloud
            .send(Method::POST, &tokens, None, Some(&body(tenant)))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.header("x-subject-token").is_none());
        let access = &r.json()["access"];
        assert!(access["token"]["id"]
            .as_str()
            .unwrap()
            .starts_with("gAAAAAB"));
        assert!(access["token"]["expires"].as_str().unwrap().ends_with('Z'));
        assert_eq!(access["token"]["tenant"]["id"], PROJECT);
        let compute = endpoints(&access["serviceCatalog"], "compute");
        assert_eq!(compute.len(), 1);
        assert_eq!(compute[0]["region"], "RegionOne");
        assert!(compute[0]["publicURL"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v2/{PROJECT}")));
        assert!(compute[0]["internalURL"].is_string());
        assert!(compute[0].get("adminURL").is_none());
        let network = endpoints(&access["serviceCatalog"], "network");
        assert!(network[0]["internalURL"].is_string());
    }
    let r = cloud
        .send(
            Method::POST,
            &tokens,
            None,
            Some(&body(json!({"tenantName": "demo"}))),
        )
        .await;
    let access = r.json()["access"].clone();
    let token = access["token"]["id"].as_str().unwrap();
    let network = endpoints(&access["serviceCatalog"], "network")[0]["publicURL"]
        .as_str()
        .unwrap()
        .to_owned();
    let compute = endpoints(&access["serviceCatalog"], "compute")[0]["publicURL"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(network.ends_with('/'));
    let r = cloud
        .send(
            Method::GET,
            &format!("{network}v2.0/security-groups/{}", sg.id),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = cloud
        .send(
            Method::GET,
            &format!("{compute}/servers/detail"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["servers"][0]["id"], vps.id());
    assert!(
        r.header("openstack-api-version").is_none(),
        "legacy v2 path"
    );

    let wrong = json!({"auth": {"passwordCredentials": {"username": "demo", "password": "wrong"}, "tenantName": "demo"}});
    let r = cloud.send(Method::POST, &tokens, None, Some(&wrong)).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error"]["message"],
        "The request you have made requires authentication."
    );
    let r = cloud
        .send(
            Method::POST,
            &tokens,
            None,
            Some(&body(json!({"tenantName": "nosuch"}))),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = cloud
        .send(Method::POST, &tokens, None, Some(&json!({"nope": 1})))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["message"],
        "authenticate() got an unexpected keyword argument 'nope'"
    );

    // Unscoped: no tenant, no catalog, refused by the services.
    let r = cloud
        .send(Method::POST, &tokens, None, Some(&body(Value::Null)))
        .await;
    assert_eq!(r.status, 200);
    let access = &r.json()["access"];
    assert!(access["token"].get("tenant").is_none());
    assert_eq!(access["serviceCatalog"], json!([]));
    let unscoped = access["token"]["id"].as_str().unwrap();
    let r = cloud
        .send(
            Method::GET,
            &format!("{network}v2.0/security-groups"),
            Some(unscoped),
            None,
        )
        .await;
    assert_eq!(r.status, 401);

    let v3 = tokens.replace("/v2.0/tokens", "/v3/auth/tokens");
    let r = cloud
        .send(Method::POST, &v3, None, Some(&password_auth("demopw")))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["error"]["message"],
        "The resource could not be found."
    );
}
