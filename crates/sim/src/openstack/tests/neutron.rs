//! Neutron security groups and rules: filters, normalisation, duplicates, quota, delete, no update.

use reqwest::Method;
use serde_json::{json, Value};

use super::*;

fn ids(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn groups_list_with_filters_and_repeated_names() {
    let (b, sg, _) = world();
    let twin = SecurityGroup::new("ssh-from-home");
    let cloud = Cloud::new(b.security_group(twin.clone())).await;
    let groups = format!("{}/v2.0/security-groups", cloud.neutron());
    let all = cloud.get(&groups).await.json();
    let names: Vec<&str> = all["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.contains(&"default"));
    let listed = ids(&all, "security_groups");
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "listed in id order");

    let named = cloud
        .get(&format!("{groups}?name=ssh-from-home"))
        .await
        .json();
    let mut want = vec![sg.id.clone(), twin.id.clone()];
    want.sort();
    assert_eq!(ids(&named, "security_groups"), want);
    let one = cloud
        .get(&format!("{groups}?name=ssh-from-home&id={}", sg.id))
        .await
        .json();
    assert_eq!(ids(&one, "security_groups"), [sg.id.as_str()]);
    let either = cloud
        .get(&format!(
            "{groups}?id={}&id={}&fields=id&fields=name",
            sg.id, twin.id
        ))
        .await
        .json();
    assert_eq!(either["security_groups"].as_array().unwrap().len(), 2);
    assert_eq!(
        either["security_groups"][0].as_object().unwrap().len(),
        2,
        "fields trims"
    );
    assert_eq!(
        cloud.get(&format!("{groups}?name=nosuch")).await.json()["security_groups"],
        json!([])
    );
    let r = cloud.get(&format!("{groups}?bogus=1")).await;
    assert_eq!(r.status, 400);

    let show = cloud.get(&format!("{groups}/{}", sg.id)).await;
    assert_eq!(show.status, 200);
    let g = &show.json()["security_group"];
    assert_eq!(g["name"], "ssh-from-home");
    let rules = g["security_group_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 3, "two egress rules and ours");
    assert!(rules.iter().all(|r| r.get("standard_attr_id").is_some()));
    let r = cloud
        .get(&format!("{groups}/00000000-0000-0000-0000-000000000000"))
        .await;
    assert_eq!(
        (r.status, neutron_type(&r).as_str()),
        (404, "SecurityGroupNotFound")
    );
}

#[tokio::test]
async fn rule_create_normalises_and_finds_duplicates() {
    let (b, sg, _) = world();
    let cloud = Cloud::new(b).await;
    let r = cloud.create_rule(ssh_rule(&sg.id, "203.0.113.5/32")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let rule = r.json()["security_group_rule"].clone();
    let id = rule["id"].as_str().unwrap().to_owned();
    assert_eq!(rule["remote_ip_prefix"], "203.0.113.5/32");
    assert_eq!(rule["normalized_cidr"], "203.0.113.5/32");
    assert_eq!(rule["revision_number"], 0);
    assert_eq!(rule["description"], "dynwall");
    assert_eq!(rule["port_range_min"], 22);
    assert_eq!(rule["project_id"], PROJECT);
    assert!(rule.get("standard_attr_id").is_none());

    let exists = format!("Security group rule already exists. Rule id is {id}.");
    let mut other_description = ssh_rule(&sg.id, "203.0.113.5/32");
    other_description["description"] = json!("other");
    let mut six = ssh_rule(&sg.id, "203.0.113.5/32");
    six["protocol"] = json!("6");
    let mut no_description = ssh_rule(&sg.id, "203.0.113.5/32");
    no_description
        .as_object_mut()
        .unwrap()
        .remove("description");
    for dup in [
        ssh_rule(&sg.id, "203.0.113.5/32"),
        other_description,
        ssh_rule(&sg.id, "203.0.113.5"),
        six,
        no_description,
    ] {
        let r = cloud.create_rule(dup.clone()).await;
        assert_eq!(r.status, 409, "{dup}");
        assert_eq!(
            r.text,
            json!({"NeutronError": {"type": "SecurityGroupRuleExists", "message": exists, "detail": ""}}).to_string()
        );
    }

    let r = cloud.create_rule(ssh_rule(&sg.id, "198.51.100.7/24")).await;
    assert_eq!(r.status, 201, "host bits kept, not a duplicate");
    assert_eq!(
        r.json()["security_group_rule"]["remote_ip_prefix"],
        "198.51.100.7/24"
    );
    assert_eq!(
        r.json()["security_group_rule"]["normalized_cidr"],
        "198.51.100.0/24"
    );
    assert_eq!(
        cloud
            .create_rule(ssh_rule(&sg.id, "198.51.100.0/24"))
            .await
            .status,
        201
    );

    // No prefix, 0.0.0.0/0 and ::/0 are the same "anywhere".
    let mut open = ssh_rule(&sg.id, "0.0.0.0/0");
    open["port_range_min"] = json!(2222);
    open["port_range_max"] = json!(2222);
    assert_eq!(cloud.create_rule(open.clone()).await.status, 201);
    open["remote_ip_prefix"] = Value::Null;
    assert_eq!(cloud.create_rule(open.clone()).await.status, 409);

    let mut all_ports = ssh_rule(&sg.id, "192.0.2.1/32");
    all_ports["port_range_min"] = json!(1);
    all_ports["port_range_max"] = json!("65535");
    let r = cloud.create_rule(all_ports).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.json()["security_group_rule"]["port_range_min"],
        Value::Null
    );

    let mut v6 = ssh_rule(&sg.id, "2001:db8::1/128");
    let r = cloud.create_rule(v6.clone()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["NeutronError"]["message"],
        "Conflicting value ethertype IPv4 for CIDR 2001:db8::1/128"
    );
    v6["ethertype"] = json!("IPv6");
    assert_eq!(cloud.create_rule(v6).await.status, 201);

    let mut range = ssh_rule(&sg.id, "192.0.2.10/32");
    range["port_range_min"] = json!(23);
    let mut no_protocol = ssh_rule(&sg.id, "192.0.2.11/32");
    no_protocol["protocol"] = Value::Null;
    let mut unknown_group = ssh_rule("00000000-0000-0000-0000-000000000000", "203.0.113.5/32");
    unknown_group["description"] = json!("x");
    let mut bogus = ssh_rule(&sg.id, "203.0.113.9/32");
    bogus["bogus"] = json!(1);
    for (body, status, kind, message) in [
        (
            ssh_rule(&sg.id, "not-an-ip"),
            400,
            "InvalidCIDR",
            "Invalid CIDR not-an-ip given as IP prefix.",
        ),
        (
            range,
            400,
            "SecurityGroupInvalidPortRange",
            "For TCP/UDP protocols, port_range_min must be <= port_range_max",
        ),
        (
            no_protocol,
            400,
            "SecurityGroupProtocolRequiredWithPorts",
            "Must also specify protocol if port range is given.",
        ),
        (
            unknown_group,
            404,
            "SecurityGroupNotFound",
            "Security group 00000000-0000-0000-0000-000000000000 does not exist",
        ),
        (
            bogus,
            400,
            "HTTPBadRequest",
            "Unrecognized attribute(s) 'bogus'",
        ),
    ] {
        let r = cloud.create_rule(body).await;
        assert_eq!(r.status, status, "{kind}: {}", r.text);
        assert_eq!(neutron_type(&r), kind);
        assert_eq!(r.json()["NeutronError"]["message"], message);
    }
    let stored = cloud.sim.group(&sg.id).unwrap();
    assert_eq!(
        stored.rules.len(),
        3 + 6,
        "egress ×2, home, and six creates"
    );
}

#[tokio::test]
async fn rule_lists_filter_and_trim() {
    let (b, sg, _) = world();
    let cloud = Cloud::new(b).await;
    let rules = format!("{}/v2.0/security-group-rules", cloud.neutron());
    assert_eq!(
        cloud
            .create_rule(ssh_rule(&sg.id, "203.0.113.5/32"))
            .await
            .status,
        201
    );
    let all = cloud
        .get(&format!("{rules}?security_group_id={}", sg.id))
        .await
        .json();
    assert_eq!(all["security_group_rules"].as_array().unwrap().len(), 4);
    let listed = ids(&all, "security_group_rules");
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
    let ssh = cloud
        .get(&format!(
            "{rules}?security_group_id={}&direction=ingress&protocol=tcp&port_range_min=22&port_range_max=22&ethertype=IPv4&fields=id&fields=remote_ip_prefix",
            sg.id
        ))
        .await
        .json();
    let items = ssh["security_group_rules"].as_array().unwrap();
    let mut prefixes: Vec<&str> = items
        .iter()
        .map(|r| r["remote_ip_prefix"].as_str().unwrap())
        .collect();
    prefixes.sort();
    assert_eq!(prefixes, ["203.0.113.5/32", "220.146.61.235/32"]);
    assert!(items.iter().all(|r| r.as_object().unwrap().len() == 2));
    let prefix = cloud
        .get(&format!("{rules}?remote_ip_prefix=203.0.113.5%2F32"))
        .await
        .json();
    assert_eq!(prefix["security_group_rules"].as_array().unwrap().len(), 1);
    let everything = cloud.get(&rules).await.json();
    assert!(
        everything["security_group_rules"].as_array().unwrap().len() >= 8,
        "default group too"
    );
}

#[tokio::test]
async fn rules_delete_once_and_never_update() {
    let (b, sg, _) = world();
    let cloud = Cloud::new(b).await;
    let rules = format!("{}/v2.0/security-group-rules", cloud.neutron());
    let id = cloud
        .create_rule(ssh_rule(&sg.id, "203.0.113.5/32"))
        .await
        .json()["security_group_rule"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = cloud.get(&format!("{rules}/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["security_group_rule"]["security_group_id"],
        sg.id.as_str()
    );

    let put = |body: Value| {
        let (cloud, url) = (&cloud, format!("{rules}/{id}"));
        async move {
            cloud
                .send(Method::PUT, &url, Some(&cloud.token), Some(&body))
                .await
        }
    };
    let r = put(json!({"security_group_rule": {"remote_ip_prefix": "198.51.100.1/32"}})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["NeutronError"]["message"],
        "Cannot update read-only attribute remote_ip_prefix"
    );
    let r = put(json!({"security_group_rule": {"description": "x"}})).await;
    assert_eq!(r.status, 500);
    let r = cloud.post(&format!("{rules}/{id}"), &json!({})).await;
    assert_eq!(r.status, 405);

    let r = cloud.delete(&format!("{rules}/{id}")).await;
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    for gone in [id.as_str(), "not-a-uuid"] {
        let r = cloud.delete(&format!("{rules}/{gone}")).await;
        assert_eq!(r.status, 404);
        assert_eq!(
            r.text,
            json!({"NeutronError": {"type": "SecurityGroupRuleNotFound",
                "message": format!("Security group rule {gone} does not exist"), "detail": ""}})
            .to_string()
        );
    }
    assert_eq!(cloud.get(&format!("{rules}/{id}")).await.status, 404);
}

#[tokio::test]
async fn quota_is_checked_before_duplicates() {
    let (b, sg, _) = world();
    let cloud = Cloud::new(b).await;
    let count = cloud.sim.rule_count();
    assert_eq!(count, 7, "default group: 4, ssh-from-home: 3");
    cloud.sim.set_rule_quota(count + 1);
    assert_eq!(
        cloud
            .create_rule(ssh_rule(&sg.id, "198.18.0.1/32"))
            .await
            .status,
        201
    );
    for body in [
        ssh_rule(&sg.id, "198.18.0.2/32"),
        ssh_rule(&sg.id, "198.18.0.1/32"),
    ] {
        let r = cloud.create_rule(body).await;
        assert_eq!(r.status, 409);
        assert_eq!(
            r.text,
            json!({"NeutronError": {"type": "OverQuota",
                "message": "Quota exceeded for resources: ['security_group_rule'].", "detail": ""}})
            .to_string()
        );
    }
    assert_eq!(cloud.sim.rule_count(), count + 1);
}

#[tokio::test]
async fn hand_edits_show_up_through_the_api() {
    let (b, sg, _) = world();
    let cloud = Cloud::new(b).await;
    let rules = format!(
        "{}/v2.0/security-group-rules?security_group_id={}&direction=ingress",
        cloud.neutron(),
        sg.id
    );
    let added = cloud
        .sim
        .add_rule(
            "ssh-from-home",
            GroupRule::ingress("tcp", 22, "198.51.100.7"),
        )
        .unwrap();
    let err = cloud
        .sim
        .add_rule(&sg.id, GroupRule::ingress("tcp", 22, "198.51.100.7/32"))
        .unwrap_err();
    assert_eq!(
        err,
        format!("Security group rule already exists. Rule id is {added}.")
    );
    assert!(cloud
        .sim
        .add_rule("nosuch", GroupRule::ingress("tcp", 22, "198.51.100.7"))
        .is_err());
    let listed = cloud.get(&rules).await.json();
    assert_eq!(listed["security_group_rules"].as_array().unwrap().len(), 2);
    assert!(cloud.sim.remove_rule(&added));
    assert!(!cloud.sim.remove_rule(&added));
    assert!(cloud.sim.set_rules(
        &sg.id,
        vec![GroupRule::ingress("tcp", 22, "0.0.0.0/0").with_id("r1")]
    ));
    let listed = cloud.get(&rules).await.json();
    assert_eq!(ids(&listed, "security_group_rules"), ["r1"]);
    assert_eq!(cloud.sim.group("ssh-from-home").unwrap().rules.len(), 1);
    let twin = cloud.sim.add_group(SecurityGroup::new("ssh-from-home"));
    assert!(cloud.sim.group("ssh-from-home").is_none(), "ambiguous name");
    assert_eq!(cloud.sim.group(&twin).unwrap().rules.len(), 2);
    assert_eq!(cloud.sim.groups().len(), 3);
}

#[tokio::test]
async fn services_want_a_token() {
    let (b, _, _) = world();
    let cloud = Cloud::new(b).await;
    let groups = format!("{}/v2.0/security-groups", cloud.neutron());
    for token in [None, Some("garbage")] {
        let r = cloud.send(Method::GET, &groups, token, None).await;
        assert_eq!(r.status, 401);
        assert_eq!(
            r.json()["error"]["message"],
            "The request you have made requires authentication."
        );
        assert!(r
            .header("www-authenticate")
            .unwrap()
            .starts_with("Keystone uri=\"http://127.0.0.1:"));
    }
    let versions = cloud
        .send(Method::GET, &format!("{}/", cloud.neutron()), None, None)
        .await;
    assert_eq!(versions.status, 200);
    assert_eq!(versions.json()["versions"][0]["id"], "v2.0");
    let r = cloud
        .get(&format!("{}/v2.0/networks", cloud.neutron()))
        .await;
    assert_eq!(r.status, 404);
}
