use serde_json::json;

use super::*;
use crate::provider::openstack::fixtures::exchange;

const VM1: &str = "bdfcd4b7-97d0-47b6-933c-daa360afbbde";

fn server(fields: Value) -> Server {
    let mut base = json!({"id": "s1", "name": "vps1", "status": "ACTIVE",
        "OS-EXT-STS:task_state": null, "OS-EXT-STS:vm_state": "active", "addresses": {}});
    for (k, v) in fields.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

#[test]
fn urls_join_below_the_catalog_url_as_given() {
    let base = base_url(
        &Url::parse("http://127.0.0.1:54427/v2.1/1bb16d6e348647c5b2a6d6c8e21258fc").unwrap(),
    );
    assert_eq!(
        base.as_str(),
        "http://127.0.0.1:54427/v2.1/1bb16d6e348647c5b2a6d6c8e21258fc/"
    );
    assert_eq!(
        servers_detail_url(&base).as_str(),
        "http://127.0.0.1:54427/v2.1/1bb16d6e348647c5b2a6d6c8e21258fc/servers/detail"
    );
    assert_eq!(
        action_url(&base, VM1).as_str(),
        format!(
            "http://127.0.0.1:54427/v2.1/1bb16d6e348647c5b2a6d6c8e21258fc/servers/{VM1}/action"
        )
    );
    assert_eq!(
        server_url(&base, VM1).as_str(),
        format!("http://127.0.0.1:54427/v2.1/1bb16d6e348647c5b2a6d6c8e21258fc/servers/{VM1}")
    );
    // SkyAtlas-era catalogs point at /v2/<tenant>: used as given.
    let old = base_url(&Url::parse("https://compute.example:8774/v2/9f2b/").unwrap());
    assert_eq!(
        servers_detail_url(&old).as_str(),
        "https://compute.example:8774/v2/9f2b/servers/detail"
    );
}

#[test]
fn the_pinned_microversion_is_what_nova_echoes() {
    let e = exchange("nova", "show_active");
    for (name, value) in MICROVERSION_HEADERS {
        assert_eq!(
            e.headers.get(name).unwrap().to_str().unwrap(),
            value,
            "{name}"
        );
    }
}

#[test]
fn recorded_servers_map_onto_power_states() {
    let cases = [
        ("show_active", ServerPower::Running),
        ("show_shutoff", ServerPower::Stopped),
        (
            "show_hard_reboot",
            ServerPower::Busy("rebooting_hard".into()),
        ),
    ];
    for (name, want) in cases {
        let s = parse_server(&exchange("nova", name).body).unwrap();
        assert_eq!(s.id, VM1);
        assert_eq!(s.name, "vm1");
        assert_eq!(s.power(), want, "{name}");
        // The fake driver wires no network: nothing to probe, no groups.
        assert_eq!(s.probe_address(), None);
        assert!(s.security_groups().is_empty());
    }
}

#[test]
fn status_lies_while_a_task_runs() {
    // After os-stop Nova says ACTIVE with task powering-off; after os-start SHUTOFF with
    // powering-on (the recorded transitions).
    let stopping = server(json!({"OS-EXT-STS:task_state": "powering-off"}));
    assert_eq!(stopping.power(), ServerPower::Busy("powering-off".into()));
    let starting = server(json!({"status": "SHUTOFF", "OS-EXT-STS:task_state": "powering-on"}));
    assert_eq!(starting.power(), ServerPower::Busy("powering-on".into()));
    assert_eq!(
        server(json!({"status": "ERROR"})).power(),
        ServerPower::Other("ERROR".into())
    );
    assert_eq!(
        server(json!({"status": "SHELVED_OFFLOADED"}))
            .power()
            .to_string(),
        "SHELVED_OFFLOADED"
    );
    assert_eq!(stopping.power().to_string(), "busy (powering-off)");
    // A cloud that hides OS-EXT-STS: status alone decides.
    let hidden: Server = serde_json::from_value(json!({"id": "s", "status": "SHUTOFF"})).unwrap();
    assert_eq!(hidden.power(), ServerPower::Stopped);
}

#[test]
fn the_probe_address_is_the_floating_ipv4_else_the_first_fixed_ipv4() {
    let s = server(json!({"addresses": {
        "private": [
            {"addr": "fd00::5", "version": 6, "OS-EXT-IPS:type": "fixed"},
            {"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed"},
            {"addr": "203.0.113.5", "version": 4, "OS-EXT-IPS:type": "floating"}],
        "another": [{"addr": "10.1.0.5", "version": 4, "OS-EXT-IPS:type": "fixed"}]}}));
    assert_eq!(
        s.probe_address(),
        Some(ProbeAddress {
            ip: "203.0.113.5".parse().unwrap(),
            floating: true
        })
    );
    // Nova's network order decides "first", not the alphabet (raw bytes: a `json!` map sorts).
    let s = parse_server(
        br#"{"server": {"id": "s1", "status": "ACTIVE", "addresses": {
            "zeta": [{"addr": "198.51.100.7", "version": 4, "OS-EXT-IPS:type": "fixed"}],
            "alpha": [{"addr": "10.1.0.5", "version": 4, "OS-EXT-IPS:type": "fixed"}]}}}"#,
    )
    .unwrap();
    assert_eq!(
        s.probe_address(),
        Some(ProbeAddress {
            ip: "198.51.100.7".parse().unwrap(),
            floating: false
        })
    );
    let v6_only = server(json!({"addresses": {"net": [{"addr": "2001:db8::5", "version": 6}]}}));
    assert_eq!(v6_only.probe_address(), None);
}

#[test]
fn a_detail_listing_reads_groups_once_and_the_next_page() {
    let body = serde_json::to_vec(&json!({
        "servers": [
            {"id": "a", "name": "vps1", "status": "ACTIVE", "OS-EXT-STS:task_state": null,
             "addresses": {"net": [{"addr": "203.0.113.5", "version": 4}]},
             "security_groups": [{"name": "ssh-from-home"}, {"name": "default"}, {"name": "ssh-from-home"}]},
            {"id": "b", "name": "vps2", "status": "SHUTOFF"}],
        "servers_links": [{"rel": "next", "href": "https://nova.example/v2.1/p/servers/detail?marker=b"}]}))
    .unwrap();
    let page = parse_servers(&body).unwrap();
    assert_eq!(page.servers.len(), 2);
    assert_eq!(
        page.servers[0].security_groups(),
        ["ssh-from-home", "default"]
    );
    assert_eq!(page.servers[1].power(), ServerPower::Stopped);
    assert_eq!(
        page.next.as_deref(),
        Some("https://nova.example/v2.1/p/servers/detail?marker=b")
    );
    let last = parse_servers(br#"{"servers": []}"#).unwrap();
    assert_eq!(
        last,
        ServerPage {
            servers: vec![],
            next: None
        }
    );
    assert!(matches!(
        parse_servers(b"[]").unwrap_err(),
        OpenStackError::Malformed { .. }
    ));
}

#[test]
fn a_server_is_found_by_id_or_unique_name() {
    let servers = vec![
        server(json!({"id": "a", "name": "vps1"})),
        server(json!({"id": "b", "name": "web"})),
        server(json!({"id": "c", "name": "web"})),
    ];
    assert_eq!(find_server(&servers, "vps1").unwrap().id, "a");
    assert_eq!(find_server(&servers, "c").unwrap().id, "c");
    let err = find_server(&servers, "web").unwrap_err();
    assert!(err.is_config());
    assert_eq!(
        err.to_string(),
        "the server name \"web\" is not unique: it matches b, c; configure the id instead"
    );
    let err = find_server(&servers, "db").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no server is named or has the id \"db\" (there are: vps1, web)"
    );
}

#[test]
fn action_bodies_match_the_recorded_ones() {
    assert_eq!(ServerAction::Stop.body(), exchange("nova", "stop").request);
    assert_eq!(
        ServerAction::Start.body(),
        exchange("nova", "start").request
    );
    assert_eq!(
        ServerAction::HardReboot.body(),
        exchange("nova", "reboot_hard").request
    );
    assert_eq!(ServerAction::HardReboot.to_string(), "reboot HARD");
}

#[test]
fn recorded_action_answers() {
    let cases = [
        ("stop", ServerAction::Stop, ActionOutcome::Accepted),
        ("start", ServerAction::Start, ActionOutcome::Accepted),
        (
            "reboot_hard",
            ServerAction::HardReboot,
            ActionOutcome::Accepted,
        ),
        (
            "start_while_active",
            ServerAction::Start,
            ActionOutcome::AlreadyInState,
        ),
        (
            "stop_while_shutoff",
            ServerAction::Stop,
            ActionOutcome::AlreadyInState,
        ),
        (
            "stop_again",
            ServerAction::Stop,
            ActionOutcome::RetryLater {
                task: "powering-off".into(),
            },
        ),
        (
            "start_during_reboot",
            ServerAction::Start,
            ActionOutcome::RetryLater {
                task: "rebooting_hard".into(),
            },
        ),
    ];
    for (name, action, want) in cases {
        let e = exchange("nova", name);
        assert_eq!(
            action_outcome(action, VM1, e.status, &e.body).unwrap(),
            want,
            "{name}"
        );
    }
}

#[test]
fn conflicts_that_are_not_progress_are_errors() {
    // A stop refused because the server is active would be odd; one refused in another vm_state
    // (shelved, building, …) is not "done".
    let shelved = br#"{"conflictingRequest": {"code": 409, "message": "Cannot 'stop' instance s while it is in vm_state shelved_offloaded"}}"#;
    let err = action_outcome(ServerAction::Stop, "s", 409, shelved).unwrap_err();
    assert!(
        matches!(err, OpenStackError::Api { .. }) && !err.is_transient(),
        "{err}"
    );
    // A HARD reboot has no "already there".
    let stopped = br#"{"conflictingRequest": {"code": 409, "message": "Cannot 'reboot' instance s while it is in vm_state building"}}"#;
    assert!(action_outcome(ServerAction::HardReboot, "s", 409, stopped).is_err());
    let hard = br#"{"conflictingRequest": {"code": 409, "message": "Cannot 'reboot' instance s while it is in task_state reboot_started_hard"}}"#;
    assert_eq!(
        action_outcome(ServerAction::HardReboot, "s", 409, hard).unwrap(),
        ActionOutcome::RetryLater {
            task: "reboot_started_hard".into()
        }
    );
    let locked = br#"{"conflictingRequest": {"code": 409, "message": "Instance s is locked"}}"#;
    let err = action_outcome(ServerAction::Stop, "s", 409, locked).unwrap_err();
    assert!(matches!(err, OpenStackError::Locked { .. }), "{err}");
    let e = exchange("nova", "stop_unknown");
    let err = action_outcome(
        ServerAction::Stop,
        "00000000-0000-0000-0000-000000000001",
        e.status,
        &e.body,
    )
    .unwrap_err();
    assert!(matches!(err, OpenStackError::NotFound { .. }), "{err}");
    assert!(action_outcome(ServerAction::Start, "s", 503, b"")
        .unwrap_err()
        .is_transient());
}
