//! The real binary against the OpenStack simulator (Keystone v3 with an application credential):
//! the security group sync (create before delete, read from the request log), its failure modes,
//! tokens, remediation through Nova, and a config holding an Indigo and an OpenStack cloud.

mod common;
#[path = "common/openstack.rs"]
mod os;

use std::time::Duration;

use common::*;
use dynwall_sim::openstack::{Fault, Op, ServerSpec, VmState};
use os::*;

#[tokio::test]
async fn an_ip_change_creates_the_new_rule_before_deleting_the_old_one() {
    let w = OsWorld::v3().await;
    let cfg = w.config();
    let others = w.other_rules();

    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(w.writes().is_empty(), "in sync: no write\n{}", text(&out));
    let in_sync_calls = w.sim.requests().len();

    w.set_ip(NEW_IP);
    let before = w.sim.requests().len();
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        w.writes(),
        [(Op::CreateRule, Some(201)), (Op::DeleteRule, Some(204))],
        "create first, delete after\n{}",
        text(&out)
    );
    assert_eq!(w.owned_prefixes(), [format!("{NEW_IP}/32")]);
    assert_eq!(w.other_rules(), others, "rules not owned are untouched");
    let created = w
        .sim
        .group(GROUP)
        .unwrap()
        .rules
        .into_iter()
        .find(|r| r.remote_ip_prefix.as_deref() == Some(&format!("{NEW_IP}/32")))
        .unwrap();
    assert_eq!(created.description.as_deref(), Some("dynwall"));
    let ops: Vec<Op> = w.sim.requests()[before..].iter().map(|r| r.op).collect();
    eprintln!(
        "API calls: in-sync --once run {in_sync_calls}, IP change {} ({ops:?})",
        ops.len()
    );
    assert_eq!(
        ops,
        [
            Op::Token,
            Op::ListGroups,
            Op::ShowGroup,
            Op::CreateRule,
            Op::DeleteRule,
            Op::ShowGroup
        ],
        "one token, find the group, read, create, delete, read back"
    );
    for r in w.sim.requests() {
        if r.op != Op::Token {
            assert!(r.header("x-auth-token").is_some(), "{r:?}");
        }
    }
}

#[tokio::test]
async fn a_refused_create_deletes_nothing() {
    let w = OsWorld::v3().await;
    let cfg = w.config();
    w.set_ip(NEW_IP);
    // At the quota Neutron answers 409 OverQuota.
    w.sim.set_rule_quota(w.sim.rule_count());
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("quota"), "{}", text(&out));
    assert_eq!(w.writes(), [(Op::CreateRule, Some(409))]);
    assert_eq!(
        w.owned_prefixes(),
        [format!("{OLD_IP}/32")],
        "the old rule stays"
    );

    // A create that fails for another reason deletes nothing either.
    w.sim.set_rule_quota(100);
    w.sim.inject(Op::CreateRule, 3, Fault::Status(500));
    let out = run(&cfg, &["--once"]).await;
    assert_ne!(code(&out), 0, "{}", text(&out));
    assert!(!w.writes().iter().any(|(op, _)| *op == Op::DeleteRule));
    assert_eq!(w.owned_prefixes(), [format!("{OLD_IP}/32")]);
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_makes_no_duplicate() {
    let w = OsWorld::v3().await;
    let cfg = w.config();
    w.set_ip(NEW_IP);
    w.sim.inject(Op::CreateRule, 1, Fault::LoseResponse);
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        w.writes(),
        [
            (Op::CreateRule, None),
            (Op::CreateRule, Some(409)),
            (Op::DeleteRule, Some(204))
        ],
        "{}",
        text(&out)
    );
    assert_eq!(w.owned_prefixes(), [format!("{NEW_IP}/32")]);
    // And the next run finds it in sync.
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(w.writes().len(), 3);
}

#[tokio::test]
async fn a_stale_rule_gone_already_is_fine_and_hand_edits_are_repaired() {
    let w = OsWorld::v3().await;
    let cfg = w.config();
    // Someone removed our rule and added one for an old address.
    let old = w.sim.group(GROUP).unwrap();
    let ours = old
        .rules
        .iter()
        .find(|r| r.port_range_min == Some(22))
        .unwrap()
        .id
        .clone();
    assert!(w.sim.remove_rule(&ours));
    w.sim
        .add_rule(
            GROUP,
            dynwall_sim::openstack::GroupRule::ingress("tcp", 22, "81.2.69.7/32"),
        )
        .unwrap();
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(w.owned_prefixes(), [format!("{OLD_IP}/32")]);
}

#[tokio::test]
async fn check_prints_the_plan_per_cloud_and_dry_run_writes_nothing() {
    let w = OsWorld::v3().await;
    let cfg = w.config_with(
        "interval = \"1s\"",
        "",
        &format!(
            "{}{}",
            OsWorld::firewall_table(),
            w.probe_table("vps1", &[])
        ),
    );
    w.set_ip(NEW_IP);
    let out = run(&cfg, &["check"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(&format!("create ingress tcp 22 from {NEW_IP}/32")),
        "{t}"
    );
    assert!(t.contains(&format!("delete the rule for {OLD_IP}")), "{t}");
    assert!(t.contains("cloud home"), "{t}");
    let plan: Vec<&str> = t.lines().filter_map(|l| l.strip_prefix("plan: ")).collect();
    let before = w.sim.requests().len();
    let out = run(&cfg, &["--once", "--dry-run"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    // The same lines as check, in the order they would be carried out: create, then delete.
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let would: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("would change "))
        .collect();
    assert_eq!(would, plan, "{}", text(&out));
    assert_eq!(would.len(), 2, "{}", text(&out));
    assert!(
        would[0].starts_with(&format!(
            "cloud home: security group {GROUP}: create ingress tcp 22 from {NEW_IP}/32"
        )),
        "{}",
        text(&out)
    );
    assert!(
        would[1].starts_with(&format!(
            "cloud home: security group {GROUP}: then delete the rule for {OLD_IP} ("
        )),
        "{}",
        text(&out)
    );
    let ops: Vec<Op> = w.sim.requests()[before..].iter().map(|r| r.op).collect();
    assert!(ops.contains(&Op::ShowGroup), "the group is read: {ops:?}");
    assert!(
        !ops.iter().any(|o| matches!(
            o,
            Op::CreateRule | Op::DeleteRule | Op::UpdateRule | Op::ServerAction
        )),
        "a dry run writes nothing: {ops:?}"
    );
    assert!(w.writes().is_empty());
    assert!(w.sim.actions().is_empty());

    // A probe naming an unknown server is reported by check.
    let bad = w.config_with(
        "interval = \"1s\"",
        "",
        &w.probe_table("vps1", &[]).replace("\"vps1\"", "\"vps9\""),
    );
    let out = run(&bad, &["check"]).await;
    assert_eq!(code(&out), 78, "{}", text(&out));
    assert!(text(&out).contains("vps9"), "{}", text(&out));
}

#[tokio::test]
async fn keys_of_the_other_provider_are_refused() {
    let w = OsWorld::v3().await;
    for (entry, key) in [
        (
            format!("[[firewall]]\nsecurity_group = \"{GROUP}\"\ntemplate = 1\n"),
            "firewall[0].template",
        ),
        (
            format!("[[firewall]]\nsecurity_group = \"{GROUP}\"\ninstances = []\n"),
            "firewall[0].instances",
        ),
        (
            "[[firewall]]\nport = 22\n".to_string(),
            "firewall[0].security_group",
        ),
        (
            "[[firewall]]\ncloud = \"elsewhere\"\nsecurity_group = \"x\"\n".to_string(),
            "firewall[0].cloud",
        ),
        (
            "[[probe]]\ninstance = \"vps1\"\nremediation = \"reboot\"\n".to_string(),
            "probe[0].remediation",
        ),
    ] {
        let cfg = w.config_with("", "", &entry);
        let out = run(&cfg, &["check"]).await;
        assert_eq!(code(&out), 78, "{entry}\n{}", text(&out));
        assert!(text(&out).contains(key), "{key}\n{}", text(&out));
        assert!(text(&out).contains("dynwall.toml"), "{}", text(&out));
    }
}

#[tokio::test]
async fn an_ambiguous_group_name_is_a_config_error_listing_the_matches() {
    let w = OsWorld::v3().await;
    let twin = dynwall_sim::openstack::SecurityGroup::new(GROUP);
    let twin_id = w.sim.add_group(twin);
    let out = run(&w.config(), &["--once"]).await;
    assert_eq!(code(&out), 78, "{}", text(&out));
    assert!(text(&out).contains(&twin_id), "{}", text(&out));
    assert!(w.writes().is_empty());
}

#[tokio::test]
async fn a_running_daemon_reuses_its_token_and_authenticates_again_after_a_401() {
    let w = OsWorld::v3().await;
    let daemon = w.daemon_probing("vps1").await;
    // Several IP checks and probe rounds: a healthy fleet in sync costs no call at all.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        w.sim.tokens_issued(),
        1,
        "one token for the daemon's life so far"
    );
    let quiet = w.sim.requests().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = w.sim.requests().len() - quiet;
    eprintln!("API calls in 3 s of healthy probe rounds: {during}");
    assert_eq!(during, 0, "healthy rounds in sync make no API call");

    // The token is revoked: the next call gets 401, authenticates once and is replayed.
    w.sim.revoke_tokens();
    w.set_ip(NEW_IP);
    eventually(Duration::from_secs(20), "the new rule", || {
        w.owned_prefixes() == [format!("{NEW_IP}/32")]
    })
    .await;
    assert_eq!(w.sim.tokens_issued(), 2);
    let log = stop_daemon(daemon).await;
    for t in w.sim.issued_tokens() {
        assert!(!log.contains(&t), "a token was logged");
    }
    assert!(!log.contains(CRED_SECRET), "the secret was logged");
}

#[tokio::test]
async fn a_hung_server_is_stopped_and_started() {
    let w = OsWorld::v3().await;
    let daemon = w.daemon_probing("vps1").await;
    w.sim.set_responsive("vps1", false);
    eventually(
        Duration::from_secs(40),
        "os-stop, os-start, healthy",
        || {
            w.actions("vps1") == ["os-stop", "os-start"]
                && w.record("vps1")["remediation"].is_null()
                && w.record("vps1")["consecutive_failures"] == 0
        },
    )
    .await;
    assert!(w.actions("vps2").is_empty());
    for r in w.sim.requests() {
        if r.op == Op::ServerAction || r.op == Op::ListServers {
            assert_eq!(r.header("openstack-api-version"), Some("compute 2.1"));
            assert_eq!(r.header("x-openstack-nova-api-version"), Some("2.1"));
        }
    }
    stop_daemon(daemon).await;
}

#[tokio::test]
async fn a_stop_that_does_not_complete_is_escalated_with_reboot_hard() {
    let w = OsWorld::v3().await;
    let daemon = w.daemon_probing("vps1").await;
    w.sim.set_stop_hangs("vps1", true);
    w.sim.set_responsive("vps1", false);
    eventually(Duration::from_secs(30), "os-stop accepted", || {
        w.actions("vps1") == ["os-stop"]
    })
    .await;
    // Past stop_timeout the escalation is sent while the stop still runs (task powering-off):
    // Nova refuses it until the task ends, and it is asked again at each poll.
    let refused = |w: &OsWorld| {
        w.sim
            .requests()
            .iter()
            .filter(|r| r.op == Op::ServerAction && r.status == Some(409))
            .count()
    };
    eventually(Duration::from_secs(30), "two refused escalations", || {
        refused(&w) >= 2
    })
    .await;
    assert_eq!(w.actions("vps1"), ["os-stop"], "a refusal changes nothing");
    // Never in a tight loop: every attempt follows a fresh read of the servers.
    let ops: Vec<Op> = w
        .sim
        .requests()
        .iter()
        .map(|r| r.op)
        .filter(|op| matches!(op, Op::ServerAction | Op::ListServers))
        .collect();
    assert!(
        ops.windows(2)
            .all(|p| p != [Op::ServerAction, Op::ServerAction]),
        "{ops:?}"
    );
    // The hypervisor drops the stop: the server is ACTIVE with no task, past stop_timeout.
    w.sim.set_task_state("vps1", None);
    eventually(Duration::from_secs(30), "reboot HARD, healthy", || {
        w.actions("vps1") == ["os-stop", "reboot HARD"]
            && w.record("vps1")["remediation"].is_null()
            && w.record("vps1")["consecutive_failures"] == 0
    })
    .await;
    let log = stop_daemon(daemon).await;
    assert!(log.contains("rebooting it hard"), "{log}");
    assert!(log.contains("refused while a task is in flight"), "{log}");
}

#[tokio::test]
async fn hard_reboot_mode_sends_one_reboot_hard() {
    let w = OsWorld::v3().await;
    let cfg = w.config_with(
        "interval = \"1s\"",
        "",
        &format!(
            "{}{}",
            OsWorld::firewall_table(),
            w.probe_table("vps1", &[("remediation", "\"hard-reboot\"")])
        ),
    );
    let daemon = spawn_daemon(&cfg, &[]);
    eventually(Duration::from_secs(15), "a healthy probe", || {
        w.record("vps1")["last_ok_at"].is_u64()
    })
    .await;
    w.sim.set_responsive("vps1", false);
    eventually(Duration::from_secs(40), "one HARD reboot, healthy", || {
        w.actions("vps1") == ["reboot HARD"]
            && w.record("vps1")["remediation"].is_null()
            && w.record("vps1")["consecutive_failures"] == 0
    })
    .await;
    stop_daemon(daemon).await;
}

#[tokio::test]
async fn a_server_shut_off_on_purpose_or_busy_is_left_alone() {
    let w = OsWorld::v3().await;
    w.sim.set_vm_state("vps1", VmState::Stopped);
    w.sim.set_task_state("vps2", Some("image_snapshot"));
    w.sim.set_responsive("vps2", false);
    let cfg = w.config_with(
        "interval = \"1s\"",
        "",
        &format!(
            "{}{}{}",
            OsWorld::firewall_table(),
            w.probe_table("vps1", &[]),
            w.probe_table("vps2", &[])
        ),
    );
    let daemon = spawn_daemon(&cfg, &[]);
    eventually(Duration::from_secs(20), "failed probes counted", || {
        w.sim.ssh_connections("vps1") >= 4 && w.sim.ssh_connections("vps2") >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(w.sim.actions().is_empty(), "{:?}", w.sim.actions());
    assert!(w.sim.requests().iter().all(|r| r.op != Op::ServerAction));
    stop_daemon(daemon).await;
}

#[tokio::test]
async fn one_config_syncs_an_indigo_and_an_openstack_cloud_each_with_its_own_provider() {
    let w = OsWorld::v3().await;
    let indigo = dynwall_sim::IndigoSim::builder()
        .credentials(KEY, SECRET)
        .quota(1000, Duration::from_secs(60))
        .instance(WEB, "web-1", "127.0.0.1", dynwall_sim::PowerState::Running)
        .template(
            TEMPLATE,
            "home-ssh",
            vec![dynwall_sim::SimRule::new("Custom", "TCP", "22", OLD_IP)],
            vec![],
            &[WEB],
        )
        .start()
        .await
        .unwrap();
    let entries = format!(
        "[indigo]\nendpoint = \"{}\"\napi_key = \"{KEY}\"\napi_secret = \"{SECRET}\"\n\n\
         [[firewall]]\ncloud = \"indigo\"\ntemplate = {TEMPLATE}\ninstances = [{WEB}]\n\n\
         [[firewall]]\ncloud = \"home\"\nsecurity_group = \"{GROUP}\"\n",
        indigo.url()
    );
    let cfg = w.config_with("interval = \"1s\"", "", &entries);
    w.set_ip(NEW_IP);
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(w.owned_prefixes(), [format!("{NEW_IP}/32")]);
    let t = indigo.template(TEMPLATE).unwrap();
    let sources: Vec<&str> = t.inbound.iter().map(|r| r.source.as_str()).collect();
    assert_eq!(sources, [NEW_IP]);
    assert_eq!(
        w.writes(),
        [(Op::CreateRule, Some(201)), (Op::DeleteRule, Some(204))]
    );

    // Without cloud = … an entry is ambiguous now.
    let cfg = w.config_with(
        "interval = \"1s\"",
        "",
        &entries.replace("cloud = \"home\"\n", ""),
    );
    let out = run(&cfg, &["check"]).await;
    assert_eq!(code(&out), 78, "{}", text(&out));
    assert!(text(&out).contains("firewall[1].cloud"), "{}", text(&out));
}

#[tokio::test]
async fn no_quorum_or_an_unacceptable_address_changes_nothing() {
    let w = OsWorld::v3().await;
    let cfg = w.config();
    // The sources disagree: no quorum.
    w.sources[0].set_ip(NEW_IP);
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 69, "{}", text(&out));
    // Both agree on a private address: refused, never written.
    w.set_ip("10.0.0.9");
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 69, "{}", text(&out));
    assert!(w.writes().is_empty());
    assert_eq!(w.owned_prefixes(), [format!("{OLD_IP}/32")]);
    assert!(
        w.sim.requests().iter().all(|r| r.op != Op::Token),
        "nothing needed the API"
    );
}

#[tokio::test]
async fn a_daemon_holds_the_lock_keeps_its_client_across_a_reload_and_stops_on_sigterm() {
    let w = OsWorld::v3().await;
    let cfg = w.config_with(
        "interval = \"1s\"\nreconcile = \"1s\"",
        "",
        &OsWorld::firewall_table(),
    );
    let daemon = spawn_daemon(&cfg, &[]);
    eventually(Duration::from_secs(15), "two group reads", || {
        w.sim.calls(Op::ShowGroup) >= 2
    })
    .await;
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 75, "{}", text(&out));
    signal(&daemon, "HUP").await;
    let reads = w.sim.calls(Op::ShowGroup);
    eventually(Duration::from_secs(15), "two more reads", || {
        w.sim.calls(Op::ShowGroup) >= reads + 2
    })
    .await;
    let started = std::time::Instant::now();
    let log = stop_daemon(daemon).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped promptly"
    );
    assert!(log.contains("configuration reloaded"), "{log}");
    assert_eq!(w.sim.tokens_issued(), 1, "the token outlives the reload");
    assert_eq!(
        w.sim.calls(Op::ListGroups),
        1,
        "and so does the group lookup"
    );
    // The state it left is valid and names the group's confirmed address.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.state_dir().join("state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["clouds"]["home"]["firewalls"][GROUP]["ip"].as_str(),
        Some(OLD_IP)
    );
}

#[tokio::test]
async fn a_service_in_several_regions_needs_region_name() {
    let w = OsWorld::with(v3_builder().regions(&["RegionOne", "RegionTwo"]), false).await;
    let out = run(&w.config(), &["--once"]).await;
    assert_eq!(code(&out), 78, "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("RegionOne") && t.contains("RegionTwo") && t.contains("region_name"),
        "{t}"
    );
    let cfg = w.config_with(
        "interval = \"1s\"",
        "region_name = \"RegionTwo\"",
        &OsWorld::firewall_table(),
    );
    w.set_ip(NEW_IP);
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(w.owned_prefixes(), [format!("{NEW_IP}/32")]);
    assert!(w
        .sim
        .requests()
        .iter()
        .filter(|r| r.op == Op::CreateRule)
        .all(|r| r.region == "RegionTwo"));
}

#[tokio::test]
async fn a_409_for_a_task_in_flight_is_asked_again_at_a_later_poll() {
    let w = OsWorld::v3().await;
    let daemon = w.daemon_probing("vps1").await;
    // Every answer now takes a second: a task started between the list and the action is what
    // Nova sees when the action arrives.
    w.sim.set_delay(Duration::from_secs(1));
    w.sim.set_responsive("vps1", false);
    let lists = |w: &OsWorld| w.sim.calls(Op::ListServers);
    let refused = |w: &OsWorld| {
        w.sim
            .requests()
            .iter()
            .any(|r| r.op == Op::ServerAction && r.status == Some(409))
    };
    let start = std::time::Instant::now();
    let mut seen = lists(&w);
    while !refused(&w) {
        assert!(start.elapsed() < Duration::from_secs(60), "no 409 seen");
        if lists(&w) > seen {
            seen = lists(&w);
            w.sim.set_task_state("vps1", Some("image_snapshot"));
            let until = std::time::Instant::now() + Duration::from_secs(4);
            while std::time::Instant::now() < until && !refused(&w) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !refused(&w) {
                w.sim.set_task_state("vps1", None);
                seen = lists(&w);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Refused while the task runs; nothing more is sent until it is done.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let actions: Vec<_> = w
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.op == Op::ServerAction)
        .map(|r| r.status)
        .collect();
    assert_eq!(actions, [Some(409)], "no tight loop");
    w.sim.set_task_state("vps1", None);
    w.sim.set_delay(Duration::ZERO);
    eventually(
        Duration::from_secs(40),
        "os-stop, os-start, healthy",
        || {
            w.actions("vps1") == ["os-stop", "os-start"]
                && w.record("vps1")["remediation"].is_null()
                && w.record("vps1")["consecutive_failures"] == 0
        },
    )
    .await;
    let log = stop_daemon(daemon).await;
    assert!(log.contains("image_snapshot"), "{log}");
}

#[tokio::test]
async fn an_ip_change_in_a_running_daemon_costs_four_calls() {
    let w = OsWorld::v3().await;
    let daemon = spawn_daemon(&w.config(), &[]);
    eventually(Duration::from_secs(15), "the first read", || {
        w.sim.calls(Op::ShowGroup) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = w.sim.requests().len();
    w.set_ip(NEW_IP);
    eventually(Duration::from_secs(20), "the read-back", || {
        w.sim.requests()[before..]
            .iter()
            .filter(|r| r.op == Op::ShowGroup)
            .count()
            >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ops: Vec<Op> = w.sim.requests()[before..].iter().map(|r| r.op).collect();
    eprintln!("API calls for an IP change in a running daemon: {ops:?}");
    assert_eq!(
        ops,
        [Op::ShowGroup, Op::CreateRule, Op::DeleteRule, Op::ShowGroup],
        "read, create, delete, read back: the token and the group lookup are reused"
    );
    stop_daemon(daemon).await;
}

#[tokio::test]
async fn a_probe_finds_a_server_named_with_spaces() {
    let w = OsWorld::with(
        v3_builder().server(
            ServerSpec::new("web 1")
                .fixed_ipv4("10.0.0.7")
                .security_group(GROUP),
        ),
        false,
    )
    .await;
    let cfg = w.config_with(
        "interval = \"1s\"",
        "",
        &format!(
            "{}{}",
            OsWorld::firewall_table(),
            w.probe_table("web 1", &[])
        ),
    );
    assert!(std::fs::read_to_string(&cfg)
        .unwrap()
        .contains("instance = \"web 1\""));
    let out = run(&cfg, &["check"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(!text(&out).contains("probe web 1:"), "{}", text(&out));

    let daemon = spawn_daemon(&cfg, &[]);
    eventually(Duration::from_secs(15), "a healthy probe", || {
        w.record("web 1")["last_ok_at"].is_u64()
    })
    .await;
    w.sim.set_responsive("web 1", false);
    eventually(
        Duration::from_secs(40),
        "os-stop, os-start, healthy",
        || {
            w.actions("web 1") == ["os-stop", "os-start"]
                && w.record("web 1")["remediation"].is_null()
                && w.record("web 1")["consecutive_failures"] == 0
        },
    )
    .await;
    assert!(w.actions("vps1").is_empty() && w.actions("vps2").is_empty());
    stop_daemon(daemon).await;
}
