//! The real binary against a SkyAtlas-like cloud: Keystone v2.0 only (`passwordCredentials` with
//! a tenant, token in the body), Nova at the legacy `/v2/<tenant>` URL. The Neutron and Nova
//! code is the v3 code: only the token source differs.

mod common;
#[path = "common/openstack.rs"]
mod os;

use std::time::Duration;

use common::*;
use dynwall_sim::openstack::Op;
use os::*;

#[tokio::test]
async fn a_v2_cloud_syncs_its_security_group_and_remediates_a_hung_server() {
    let w = OsWorld::v2().await;
    let daemon = w.daemon_probing("vps1").await;
    w.set_ip(NEW_IP);
    eventually(Duration::from_secs(20), "the new rule", || {
        w.owned_prefixes() == [format!("{NEW_IP}/32")]
    })
    .await;
    let writes = w.writes();
    assert_eq!(
        writes,
        [(Op::CreateRule, Some(201)), (Op::DeleteRule, Some(204))]
    );
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
    let token_requests: Vec<_> = w
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.op == Op::Token)
        .collect();
    assert_eq!(token_requests.len(), 1, "one token for all of it");
    assert!(token_requests[0].path.ends_with("/v2.0/tokens"));
    assert!(w
        .sim
        .requests()
        .iter()
        .any(|r| r.op == Op::ServerAction && r.path.contains("/v2/")));
    let log = stop_daemon(daemon).await;
    assert!(!log.contains(V2_PASSWORD));
    for t in w.sim.issued_tokens() {
        assert!(!log.contains(&t), "a token was logged");
    }
}

#[tokio::test]
async fn a_wrong_v2_password_exits_77() {
    let w = OsWorld::v2().await;
    let cfg = w.config();
    let text_cfg = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text_cfg.replace(V2_PASSWORD, "not-the-password")).unwrap();
    for args in [&["--once"][..], &["check"][..]] {
        let out = run(&cfg, args).await;
        assert_eq!(code(&out), 77, "{args:?}\n{}", text(&out));
        assert!(
            text(&out).contains("credentials rejected"),
            "{}",
            text(&out)
        );
        assert!(!text(&out).contains("not-the-password"));
    }
    assert!(w.writes().is_empty());
}

#[tokio::test]
async fn credentials_over_plain_http_need_allow_insecure_http_and_then_warn_each_time() {
    let w = OsWorld::v2().await;
    // The same Keystone, reached through an address that is not a loopback literal.
    let port = w.sim.identity_addr().port();
    let remote = format!("http://[::ffff:127.0.0.1]:{port}/v2.0");
    let write = |allow: bool| {
        let cfg = w.config();
        let t = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(&w.sim.auth_url(), &remote);
        let t = if allow {
            t.replace(
                "[openstack.home]\n",
                "[openstack.home]\nallow_insecure_http = true\n",
            )
        } else {
            t
        };
        std::fs::write(&cfg, t).unwrap();
        cfg
    };
    let out = run(&write(false), &["--once"]).await;
    assert_eq!(code(&out), 78, "{}", text(&out));
    assert!(
        text(&out).contains("openstack.home.auth_url")
            && text(&out).contains("openstack.home.allow_insecure_http"),
        "{}",
        text(&out)
    );
    assert_eq!(w.sim.tokens_issued(), 0, "nothing was sent");

    w.set_ip(NEW_IP);
    let out = run(&write(true), &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains("over plain http") && text(&out).contains("::ffff:7f00:1"),
        "the warning names the host\n{}",
        text(&out)
    );
    assert_eq!(w.owned_prefixes(), [format!("{NEW_IP}/32")]);
}

#[tokio::test]
async fn v2_tokens_are_renewed_before_they_expire_and_after_a_401() {
    let w = OsWorld::with(v2_builder().token_lifetime(Duration::from_secs(4)), true).await;
    let daemon = w.daemon_probing("vps1").await;
    assert_eq!(w.sim.tokens_issued(), 1);
    // Past the token's life: the next call gets a new token first, with no 401 on the way.
    tokio::time::sleep(Duration::from_secs(5)).await;
    w.set_ip(NEW_IP);
    eventually(Duration::from_secs(20), "the new rule", || {
        w.owned_prefixes() == [format!("{NEW_IP}/32")]
    })
    .await;
    assert_eq!(w.sim.tokens_issued(), 2);
    assert!(
        w.sim.requests().iter().all(|r| r.status != Some(401)),
        "an expired token was never sent"
    );
    // Revoked before its time: one 401, one new token, the request replayed.
    w.sim.revoke_tokens();
    w.set_ip(OLD_IP);
    eventually(Duration::from_secs(20), "the old rule back", || {
        w.owned_prefixes() == [format!("{OLD_IP}/32")]
    })
    .await;
    assert_eq!(w.sim.tokens_issued(), 3);
    assert_eq!(
        w.sim
            .requests()
            .iter()
            .filter(|r| r.status == Some(401))
            .count(),
        1
    );
    stop_daemon(daemon).await;
}

#[tokio::test]
async fn the_demo_tells_the_story_on_both_openstack_clouds() {
    for cloud in ["openstack", "skyatlas"] {
        let mut c = bin();
        c.args(["demo", "--cloud", cloud]);
        let out = tokio::time::timeout(Duration::from_secs(90), c.output())
            .await
            .expect("the demo finishes")
            .expect("dynwall runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(code(&out), 0, "{}", text(&out));
        let create = stdout.find("POST /v2.0/security-group-rules → 201");
        let delete = stdout.find("DELETE /v2.0/security-group-rules/");
        assert!(
            create.is_some() && delete.is_some() && create < delete,
            "{stdout}"
        );
        assert!(
            stdout.contains("Nova actions sent: os-stop, os-start."),
            "{stdout}"
        );
    }
}
