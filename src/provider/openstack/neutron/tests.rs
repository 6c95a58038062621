use serde_json::json;

use super::*;
use crate::provider::openstack::fixtures::exchange;

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn ssh_v4() -> OwnedRules {
    OwnedRules::new("TCP", "22", &[Family::Ipv4]).unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A rule as Neutron lists it, with the fields a test varies.
fn rule(fields: Value) -> SecurityGroupRule {
    let mut base = json!({
        "id": "r1", "security_group_id": "g1", "direction": "ingress", "ethertype": "IPv4",
        "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
        "remote_ip_prefix": "203.0.113.5/32", "remote_group_id": null,
        "remote_address_group_id": null, "description": null});
    for (k, v) in fields.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

fn owned(prefix: &str) -> Ownership {
    Ownership::Owned {
        family: Family::of(net(prefix).addr()),
        prefix: OwnedPrefix::Net(net(prefix)),
    }
}

#[test]
fn the_api_root_gets_its_version_once() {
    let cases = [
        ("http://127.0.0.1:60989/", "http://127.0.0.1:60989/v2.0/"),
        (
            "https://network.example:9696",
            "https://network.example:9696/v2.0/",
        ),
        (
            "https://cloud.example/networking/",
            "https://cloud.example/networking/v2.0/",
        ),
        (
            "https://network.example:9696/v2.0",
            "https://network.example:9696/v2.0/",
        ),
        (
            "https://network.example:9696/v2.0/",
            "https://network.example:9696/v2.0/",
        ),
    ];
    for (catalog, want) in cases {
        assert_eq!(base_url(&url(catalog)).as_str(), want, "{catalog}");
    }
    let base = base_url(&url("http://127.0.0.1:60989/"));
    assert_eq!(
        groups_url(&base).as_str(),
        "http://127.0.0.1:60989/v2.0/security-groups?fields=id&fields=name"
    );
    assert_eq!(
        group_rules_url(&base, "65d731bd-3996-4b6d-8029-3d4cda2d3555").as_str(),
        "http://127.0.0.1:60989/v2.0/security-group-rules?security_group_id=65d731bd-3996-4b6d-8029-3d4cda2d3555"
    );
    assert_eq!(
        create_rule_url(&base).as_str(),
        "http://127.0.0.1:60989/v2.0/security-group-rules"
    );
    assert_eq!(
        rule_url(&base, "21b59312-3fe8-4765-b1da-309903346c1e").as_str(),
        "http://127.0.0.1:60989/v2.0/security-group-rules/21b59312-3fe8-4765-b1da-309903346c1e"
    );
    // An id is one path segment, whatever it holds.
    assert_eq!(
        rule_url(&base, "../x?y").as_str(),
        "http://127.0.0.1:60989/v2.0/security-group-rules/..%2Fx%3Fy"
    );
}

#[test]
fn a_group_is_found_by_id_or_unique_name() {
    let e = exchange("neutron", "list_groups_id_name");
    let groups = parse_groups(&e.body).unwrap();
    assert_eq!(groups.len(), 3);
    assert_eq!(
        find_group(&groups, "default").unwrap().id,
        "e8866643-5dd9-45ad-bded-f6a823cb6dd1"
    );
    let by_id = find_group(&groups, "65d731bd-3996-4b6d-8029-3d4cda2d3555").unwrap();
    assert_eq!(by_id.name, "dynwall-ssh");

    let err = find_group(&groups, "dynwall-ssh").unwrap_err();
    assert!(err.is_config());
    assert_eq!(
        err.to_string(),
        "the security group name \"dynwall-ssh\" is not unique: it matches \
         0ea4e53c-9438-45e6-b34c-7a3f81878b03, 65d731bd-3996-4b6d-8029-3d4cda2d3555; configure \
         the id instead"
    );
    let err = find_group(&groups, "ssh-from-home").unwrap_err();
    assert!(err.is_config());
    assert_eq!(
        err.to_string(),
        "no security group is named or has the id \"ssh-from-home\" (there are: default, \
         dynwall-ssh)"
    );
    // The full listing (rules inline) parses the same way.
    let full = parse_groups(&exchange("neutron", "list_groups").body).unwrap();
    assert_eq!(full[0].name, "default");
}

#[test]
fn recorded_rules_keep_every_field_through_a_round_trip() {
    let e = exchange("neutron", "list_rules");
    let rules = parse_rules(&e.body).unwrap();
    let recorded: Value = serde_json::from_slice(&e.body).unwrap();
    assert_eq!(
        serde_json::to_value(&rules).unwrap(),
        recorded["security_group_rules"]
    );
    let first = &rules[0];
    assert_eq!(first.id, "21b59312-3fe8-4765-b1da-309903346c1e");
    assert_eq!(first.other["normalized_cidr"], json!("203.0.113.5/32"));
    assert_eq!(first.other["revision_number"], json!(0));
}

#[test]
fn ownership_of_the_recorded_rules() {
    let rules = parse_rules(&exchange("neutron", "list_rules").body).unwrap();
    let both = OwnedRules::new("tcp", "22", &[Family::Ipv4, Family::Ipv6]).unwrap();
    let seen: Vec<(&str, Ownership)> = rules
        .iter()
        .map(|r| {
            (
                r.remote_ip_prefix.as_deref().unwrap_or("-"),
                both.classify(r),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("203.0.113.5/32", owned("203.0.113.5")),
            ("-", Ownership::NotOwned), // egress
            ("-", Ownership::NotOwned), // egress
            ("2001:db8::1/128", owned("2001:db8::1")),
            ("192.0.2.9/32", owned("192.0.2.9")), // protocol "6" is tcp
            ("198.51.100.7/24", owned("198.51.100.0/24")), // host bits kept by Neutron
        ]
    );
    // Tracking IPv4 only leaves the IPv6 rule alone.
    assert_eq!(ssh_v4().classify(&rules[3]), Ownership::NotOwned);
}

#[test]
fn ownership_needs_ingress_protocol_exact_port_family_and_no_remote_group() {
    let o = ssh_v4();
    assert_eq!(o.classify(&rule(json!({}))), owned("203.0.113.5"));
    assert_eq!(
        o.classify(&rule(json!({"protocol": "6"}))),
        owned("203.0.113.5")
    );
    assert_eq!(
        o.classify(&rule(json!({"protocol": 6}))),
        owned("203.0.113.5")
    );
    assert_eq!(
        o.classify(&rule(json!({"remote_ip_prefix": "203.0.113.5"}))),
        owned("203.0.113.5")
    );
    let not_ours = [
        json!({"direction": "egress"}),
        json!({"protocol": "udp"}),
        json!({"protocol": null}),
        json!({"protocol": "17"}),
        json!({"port_range_min": 22, "port_range_max": 23}),
        json!({"port_range_min": 2222, "port_range_max": 2222}),
        json!({"port_range_min": null, "port_range_max": null}),
        json!({"ethertype": "IPv6", "remote_ip_prefix": "2001:db8::1/128"}),
        json!({"remote_ip_prefix": null, "remote_group_id": "g2"}),
        json!({"remote_address_group_id": "ag1"}),
        // Someone's open-to-all rule on another port stays.
        json!({"remote_ip_prefix": "0.0.0.0/0", "port_range_min": 443, "port_range_max": 443}),
    ];
    for fields in not_ours {
        assert_eq!(
            o.classify(&rule(fields.clone())),
            Ownership::NotOwned,
            "{fields}"
        );
    }
}

#[test]
fn a_null_prefix_is_anywhere_and_owned_and_garbage_is_unreadable() {
    let o = OwnedRules::new("TCP", "22", &[Family::Ipv4, Family::Ipv6]).unwrap();
    assert_eq!(
        o.classify(&rule(json!({"remote_ip_prefix": null}))),
        owned("0.0.0.0/0")
    );
    assert_eq!(
        o.classify(&rule(
            json!({"ethertype": "IPv6", "remote_ip_prefix": null})
        )),
        owned("::/0")
    );
    assert_eq!(
        o.classify(&rule(json!({"remote_ip_prefix": "2001:db8::/64"}))),
        Ownership::Owned {
            family: Family::Ipv4,
            prefix: OwnedPrefix::Unreadable("2001:db8::/64".into())
        }
    );
    assert_eq!(
        prefix_of(Some("10.0.0.1/33"), Family::Ipv4),
        OwnedPrefix::Unreadable("10.0.0.1/33".into())
    );
    // Normalised comparison: a bare host equals its /32.
    assert_eq!(
        prefix_of(Some("10.0.0.1"), Family::Ipv4),
        prefix_of(Some("10.0.0.1/32"), Family::Ipv4)
    );
}

#[test]
fn every_port_is_stored_as_no_range() {
    let all = OwnedRules::new("TCP", "1-65535", &[Family::Ipv4]).unwrap();
    let open = rule(json!({"port_range_min": null, "port_range_max": null}));
    assert_eq!(all.classify(&open), owned("203.0.113.5"));
    let ranged = OwnedRules::new("udp", "60000-61000", &[Family::Ipv4]).unwrap();
    let r = rule(json!({"protocol": "udp", "port_range_min": "60000", "port_range_max": 61000}));
    assert_eq!(ranged.classify(&r), owned("203.0.113.5"));
}

#[test]
fn owned_rules_refuse_what_neutron_could_not_express() {
    assert!(OwnedRules::new("ICMP", "22", &[Family::Ipv4]).is_err());
    assert!(OwnedRules::new("TCP", "0", &[Family::Ipv4]).is_err());
    assert!(OwnedRules::new("TCP", "23-22", &[Family::Ipv4]).is_err());
    assert!(OwnedRules::new("TCP", "ssh", &[Family::Ipv4]).is_err());
}

#[test]
fn the_create_body_matches_the_recorded_one() {
    let e = exchange("neutron", "create_rule");
    let body = create_body(
        "65d731bd-3996-4b6d-8029-3d4cda2d3555",
        &ssh_v4(),
        net("203.0.113.5"),
    );
    assert_eq!(body, e.request);
    let v6 = create_body("g", &ssh_v4(), net("2001:db8::1"));
    assert_eq!(v6["security_group_rule"]["ethertype"], json!("IPv6"));
    assert_eq!(
        v6["security_group_rule"]["remote_ip_prefix"],
        json!("2001:db8::1/128")
    );
    let keep = create_body("g", &ssh_v4(), net("198.51.100.0/24"));
    assert_eq!(
        keep["security_group_rule"]["remote_ip_prefix"],
        json!("198.51.100.0/24")
    );
}

#[test]
fn a_created_rule_is_read_back_from_the_answer() {
    let e = exchange("neutron", "create_rule");
    match create_outcome(e.status, &e.body).unwrap() {
        CreateOutcome::Created(r) => {
            assert_eq!(r.id, "21b59312-3fe8-4765-b1da-309903346c1e");
            assert_eq!(r.description.as_deref(), Some(RULE_DESCRIPTION));
            assert_eq!(ssh_v4().classify(&r), owned("203.0.113.5"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_recorded_duplicate_is_present_with_the_existing_id() {
    for name in [
        "duplicate",
        "duplicate_other_description",
        "duplicate_no_mask",
        "duplicate_protocol_number",
    ] {
        let e = exchange("neutron", name);
        assert_eq!(e.status, 409);
        assert_eq!(
            create_outcome(e.status, &e.body).unwrap(),
            CreateOutcome::AlreadyPresent {
                rule_id: Some("21b59312-3fe8-4765-b1da-309903346c1e".into())
            },
            "{name}"
        );
    }
    let odd = br#"{"NeutronError": {"type": "SecurityGroupRuleExists", "message": "Security group rule already exists.", "detail": ""}}"#;
    assert_eq!(
        create_outcome(409, odd).unwrap(),
        CreateOutcome::AlreadyPresent { rule_id: None }
    );
}

#[test]
fn over_quota_is_its_own_error_and_other_refusals_are_api_errors() {
    let e = exchange("neutron", "over_quota");
    let err = create_outcome(e.status, &e.body).unwrap_err();
    assert!(matches!(err, OpenStackError::OverQuota { .. }));
    assert_eq!(
        err.to_string(),
        "neutron refused a new security group rule: the project's quota is used up (HTTP 409 \
         OverQuota: Quota exceeded for resources: ['security_group_rule'].)"
    );
    for name in ["foreign_group", "unknown_group"] {
        let e = exchange("neutron", name);
        let err = create_outcome(e.status, &e.body).unwrap_err();
        assert!(
            matches!(err, OpenStackError::Api { .. }) && !err.is_transient(),
            "{err}"
        );
    }
    assert!(create_outcome(503, b"").unwrap_err().is_transient());
    // A 201 whose body is not a rule changes nothing.
    assert!(matches!(
        create_outcome(201, b"{}").unwrap_err(),
        OpenStackError::Malformed { .. }
    ));
}

#[test]
fn a_delete_that_finds_nothing_is_gone() {
    let e = exchange("neutron", "delete");
    assert_eq!(
        delete_outcome(e.status, &e.body).unwrap(),
        DeleteOutcome::Deleted
    );
    let e = exchange("neutron", "delete_again");
    assert_eq!(
        delete_outcome(e.status, &e.body).unwrap(),
        DeleteOutcome::AlreadyGone
    );
    let err = delete_outcome(409, br#"{"NeutronError": {"type": "SecurityGroupRuleInUse", "message": "in use", "detail": ""}}"#)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "neutron delete rule: HTTP 409 SecurityGroupRuleInUse: in use"
    );
}
