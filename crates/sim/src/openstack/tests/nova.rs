//! Nova server views, microversions, actions with their 409s, and timed transitions.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use super::*;

fn stop() -> Value {
    json!({"os-stop": null})
}

fn start() -> Value {
    json!({"os-start": null})
}

fn reboot(kind: &str) -> Value {
    json!({"reboot": {"type": kind}})
}

#[tokio::test]
async fn server_detail_has_what_a_client_reads() {
    let (b, _, vps) = world();
    let db = ServerSpec::new("db1")
        .fixed_ipv4("10.0.0.6")
        .state(VmState::Stopped);
    let cloud = Cloud::new(b.server(db.clone())).await;
    let r = cloud.get(&format!("{}/servers/detail", cloud.nova())).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("openstack-api-version"), Some("compute 2.1"));
    assert_eq!(r.header("x-openstack-nova-api-version"), Some("2.1"));
    assert_eq!(
        r.header("x-compute-request-id"),
        r.header("x-openstack-request-id")
    );
    let v = r.json();
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0]["name"], "db1", "newest first");
    let s = &servers[1];
    assert_eq!(s["id"], vps.id());
    assert_eq!(s["status"], "ACTIVE");
    assert_eq!(s["OS-EXT-STS:vm_state"], "active");
    assert_eq!(s["OS-EXT-STS:task_state"], Value::Null);
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    assert_eq!(s["tenant_id"], PROJECT);
    assert_eq!(s["security_groups"], json!([{"name": "ssh-from-home"}]));
    assert!(s.get("locked").is_none(), "not at 2.1");
    let addrs = s["addresses"]["private"].as_array().unwrap();
    let kinds: Vec<(&str, u64, &str)> = addrs
        .iter()
        .map(|a| {
            (
                a["addr"].as_str().unwrap(),
                a["version"].as_u64().unwrap(),
                a["OS-EXT-IPS:type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("10.0.0.5", 4, "fixed"),
            ("2001:db8::5", 6, "fixed"),
            ("203.0.113.5", 4, "floating")
        ]
    );
    assert!(s["links"][0]["href"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/v2.1/{PROJECT}/servers/{}", vps.id())));
    assert_eq!(servers[0]["status"], "SHUTOFF");
    assert_eq!(servers[0]["OS-EXT-STS:power_state"], 4);
    assert!(servers[0].get("security_groups").is_none());

    let brief = cloud.get(&format!("{}/servers", cloud.nova())).await.json();
    assert_eq!(
        brief["servers"][1].as_object().unwrap().len(),
        3,
        "id, links, name"
    );
    let named = cloud
        .get(&format!("{}/servers/detail?name=%5Evps1%24", cloud.nova()))
        .await
        .json();
    assert_eq!(named["servers"].as_array().unwrap().len(), 1);
    let off = cloud
        .get(&format!("{}/servers/detail?status=SHUTOFF", cloud.nova()))
        .await
        .json();
    assert_eq!(off["servers"][0]["id"], db.id());

    let one = cloud
        .get(&format!("{}/servers/{}", cloud.nova(), vps.id()))
        .await;
    assert_eq!(one.json()["server"]["name"], "vps1");
    let missing = "00000000-0000-0000-0000-000000000001";
    let r = cloud
        .get(&format!("{}/servers/{missing}", cloud.nova()))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.text,
        json!({"itemNotFound": {"code": 404, "message": format!("Instance {missing} could not be found.")}}).to_string()
    );
    let other = cloud
        .nova()
        .replace(PROJECT, "02d363ab8eac4b128c0d99c761ad566e");
    let r = cloud.get(&format!("{other}/servers/{}", vps.id())).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["badRequest"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Malformed request URL: URL's project_id"));
}

#[tokio::test]
async fn microversions_are_negotiated() {
    let (b, _, vps) = world();
    let cloud = Cloud::new(b).await;
    let url = format!("{}/servers/{}", cloud.nova(), vps.id());
    let ask = |headers: Vec<(&'static str, &'static str)>| {
        let (cloud, url) = (&cloud, url.clone());
        async move {
            cloud
                .send_with(Method::GET, &url, Some(&cloud.token), None, &headers)
                .await
        }
    };
    let r = ask(vec![
        ("OpenStack-API-Version", "compute 2.1"),
        ("X-OpenStack-Nova-API-Version", "2.1"),
    ])
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("openstack-api-version"), Some("compute 2.1"));
    let r = ask(vec![("X-OpenStack-Nova-API-Version", "2.79")]).await;
    assert_eq!(r.header("x-openstack-nova-api-version"), Some("2.79"));
    assert_eq!(r.json()["server"]["locked"], false);
    let r = ask(vec![("OpenStack-API-Version", "compute latest")]).await;
    assert_eq!(r.header("openstack-api-version"), Some("compute 2.104"));
    let r = ask(vec![("OpenStack-API-Version", "compute 2.999")]).await;
    assert_eq!(r.status, 406);
    assert_eq!(
        r.json()["computeFault"]["message"],
        "Version 2.999 is not supported by the API. Minimum is 2.1 and maximum is 2.104."
    );
    let r = ask(vec![("OpenStack-API-Version", "compute 2.latest")]).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn actions_are_validated_like_nova() {
    let (b, _, vps) = world();
    let cloud = Cloud::new(b).await;
    let id = vps.id();
    let conflict = |verb: &str, what: &str| {
        json!({"conflictingRequest": {"code": 409,
            "message": format!("Cannot '{verb}' instance {id} while it is in {what}")}})
        .to_string()
    };
    let r = cloud.action(id, start()).await;
    assert_eq!(
        (r.status, r.text.clone()),
        (409, conflict("start", "vm_state active"))
    );
    let r = cloud.action(id, stop()).await;
    assert_eq!((r.status, r.text.as_str()), (202, ""));
    assert_eq!(r.header("openstack-api-version"), Some("compute 2.1"));
    assert_eq!(
        cloud.server_state(id).await,
        state("ACTIVE", Some("powering-off"), 1)
    );
    let r = cloud.action(id, stop()).await;
    assert_eq!(
        (r.status, r.text.clone()),
        (409, conflict("stop", "task_state powering-off"))
    );
    let r = cloud.action(id, reboot("HARD")).await;
    assert_eq!(
        (r.status, r.text.clone()),
        (409, conflict("reboot", "task_state powering-off"))
    );

    cloud.sim.finish_tasks();
    assert_eq!(cloud.server_state(id).await, state("SHUTOFF", None, 4));
    let r = cloud.action(id, stop()).await;
    assert_eq!(
        (r.status, r.text.clone()),
        (409, conflict("stop", "vm_state stopped"))
    );
    assert_eq!(cloud.action(id, reboot("HARD")).await.status, 202);
    assert_eq!(
        cloud.server_state(id).await,
        state("SHUTOFF", Some("rebooting_hard"), 4)
    );
    let r = cloud.action(id, start()).await;
    assert_eq!(
        (r.status, r.text.clone()),
        (409, conflict("start", "task_state rebooting_hard"))
    );
    cloud.sim.finish_tasks();
    assert_eq!(cloud.server_state(id).await, state("ACTIVE", None, 1));

    assert_eq!(cloud.action(id, reboot("SOFT")).await.status, 202);
    assert_eq!(
        cloud.server_state(id).await,
        state("REBOOT", Some("rebooting"), 1)
    );
    assert_eq!(
        cloud.action(id, reboot("hard")).await.status,
        202,
        "HARD escalates a soft reboot"
    );
    assert_eq!(
        cloud.server_state(id).await,
        state("HARD_REBOOT", Some("rebooting_hard"), 1)
    );
    cloud.sim.finish_tasks();

    for (body, message) in [
        (reboot("WARM"), "Invalid input for field/attribute type. Value: WARM. 'WARM' is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']"),
        (json!({"reboot": {}}), "Invalid input for field/attribute reboot. Value: {}. 'type' is a required property"),
        (json!({"bogus-action": null}), "There is no such action: bogus-action"),
    ] {
        let r = cloud.action(id, body).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["badRequest"]["message"], message);
    }
    let missing = "00000000-0000-0000-0000-000000000001";
    let r = cloud.action(missing, stop()).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["itemNotFound"]["message"],
        format!("Instance {missing} has no mapping to a cell.")
    );

    assert!(cloud.sim.set_locked("vps1", true));
    let r = cloud.action(id, stop()).await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["conflictingRequest"]["message"],
        format!("Instance {id} is locked")
    );
    assert!(cloud.sim.set_locked("vps1", false));
    assert!(cloud.sim.set_task_state("vps1", Some("image_snapshot")));
    let r = cloud.action(id, stop()).await;
    assert_eq!(
        (r.status, r.text.clone()),
        (409, conflict("stop", "task_state image_snapshot"))
    );
    assert!(cloud.sim.set_vm_state("vps1", VmState::Error));
    assert_eq!(cloud.server_state(id).await, state("ERROR", None, 4));
    assert!(!cloud.sim.set_vm_state("nosuch", VmState::Error));

    let labels: Vec<String> = cloud
        .sim
        .actions()
        .into_iter()
        .map(|(s, a)| {
            assert_eq!(s, id);
            a
        })
        .collect();
    assert_eq!(
        labels,
        ["os-stop", "reboot HARD", "reboot SOFT", "reboot HARD"]
    );
}

#[tokio::test]
async fn a_stop_can_hang_in_powering_off() {
    let (b, _, vps) = world();
    let cloud = Cloud::new(b).await;
    assert!(cloud.sim.set_stop_hangs("vps1", true));
    assert_eq!(cloud.action(vps.id(), stop()).await.status, 202);
    cloud.sim.finish_tasks();
    assert_eq!(
        cloud.server_state(vps.id()).await,
        state("ACTIVE", Some("powering-off"), 1)
    );
    assert!(cloud.sim.server("vps1").unwrap().stop_hangs);
    assert_eq!(cloud.action(vps.id(), reboot("HARD")).await.status, 409);
    assert!(cloud.sim.set_stop_hangs("vps1", false));
    assert_eq!(
        cloud.server_state(vps.id()).await,
        state("ACTIVE", Some("powering-off"), 1)
    );
    cloud.sim.finish_tasks();
    assert_eq!(
        cloud.server_state(vps.id()).await,
        state("SHUTOFF", None, 4)
    );
}

/// Polls until the server shows `want`, recording every distinct state seen on the way.
async fn watch(cloud: &Cloud, id: &str, want: &str) -> Vec<(String, Option<String>, u64)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let s = cloud.server_state(id).await;
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s.0 == want && s.1.is_none() {
            return seen;
        }
        assert!(Instant::now() < deadline, "never {want}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn tasks_complete_on_the_clock() {
    let (b, _, vps) = world();
    let d = Duration::from_millis(150);
    let cloud = Cloud::new(b.task_delays(d, d, d)).await;
    let id = vps.id();
    assert_eq!(cloud.action(id, stop()).await.status, 202);
    let seen = watch(&cloud, id, "SHUTOFF").await;
    assert_eq!(seen.last(), Some(&state("SHUTOFF", None, 4)));
    assert!(
        seen.iter()
            .all(|s| *s == state("ACTIVE", Some("powering-off"), 1) || s.0 == "SHUTOFF"),
        "{seen:?}"
    );
    assert_eq!(cloud.action(id, start()).await.status, 202);
    let seen = watch(&cloud, id, "ACTIVE").await;
    assert!(
        seen.iter()
            .all(|s| *s == state("SHUTOFF", Some("powering-on"), 4) || s.0 == "ACTIVE"),
        "{seen:?}"
    );
    assert_eq!(cloud.action(id, reboot("HARD")).await.status, 202);
    let seen = watch(&cloud, id, "ACTIVE").await;
    let allowed = [
        state("HARD_REBOOT", Some("rebooting_hard"), 1),
        state("HARD_REBOOT", Some("reboot_started_hard"), 1),
        state("ACTIVE", None, 1),
    ];
    assert!(seen.iter().all(|s| allowed.contains(s)), "{seen:?}");
    assert_eq!(cloud.sim.server(id).unwrap().status, "ACTIVE");
}
