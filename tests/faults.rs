//! The real binary against the API's less common answers and the user's less common inputs:
//! a stop "initiated" (A2), a quota that resets only far away (A6), tokens that cannot be used
//! (A8), absurd sizes (A9), and a state file written by the previous release.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::*;
use dynwall_sim::{BadToken, Endpoint, PowerState, StopCodeKey};

fn probe(w: &World, extra: &str) -> String {
    let addr = w.sim.ssh_addr(WEB).expect("ssh endpoint");
    format!(
        "[[probe]]\ninstance = {WEB}\naddress = \"{addr}\"\ninterval = \"1s\"\ntimeout = \"400ms\"\n\
         failures = 2\nstop_timeout = \"2s\"\nstart_timeout = \"5s\"\ngrace = \"2s\"\n{extra}"
    )
}

fn firewall() -> String {
    format!("[[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}, {DB}]\n")
}

async fn stop(daemon: tokio::process::Child) -> String {
    stop_daemon(daemon).await
}

fn verbs(w: &World) -> Vec<String> {
    w.sim.power_log().into_iter().map(|(_, v)| v).collect()
}

#[tokio::test]
async fn a_stop_initiated_under_either_key_is_accepted_once_then_forced() {
    for key in [StopCodeKey::SucessCode, StopCodeKey::ErrorCode] {
        let w = ssh_world(sim_builder().stop_answers_i10025_under(key)).await;
        let cfg = w.config_with("interval = \"1s\"", &firewall(), &probe(&w, ""));
        let daemon = spawn_daemon(&cfg, &[]);
        eventually(Duration::from_secs(15), "a healthy probe", || {
            state_json(&w)["clouds"]["indigo"]["instances"][WEB.to_string()]["last_ok_at"].is_u64()
        })
        .await;
        // The guest hangs and its stop never completes.
        w.sim.set_hung(WEB, true);
        w.sim.set_responsive(WEB, false);
        eventually(Duration::from_secs(40), "stop, forcestop, start", || {
            verbs(&w) == ["stop", "forcestop", "start"]
                && w.sim
                    .instance(WEB)
                    .is_some_and(|i| i.power == PowerState::Running)
        })
        .await;
        let log = stop(daemon).await;
        assert_eq!(
            w.sim.calls(Endpoint::StatusUpdate),
            3,
            "the accepted stop was never sent again ({key:?}): {log}"
        );
    }
}

#[tokio::test]
async fn a_quota_that_resets_only_far_away_ends_once_with_75_and_the_daemon_carries_on() {
    let w = World::new().await;
    w.set_ip(NEW_IP);
    let cfg = w.config();
    let year_9999 = SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    w.sim.set_quota_reset(Some(year_9999));
    w.sim.fail_next_on(Endpoint::GetTemplate, 1000, 429);
    let t = Instant::now();
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 75, "{}", text(&out));
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(text(&out).contains("quota"), "{}", text(&out));

    // The daemon logs it and carries on: IP checks go on, and it stops promptly.
    let daemon = spawn_daemon(&cfg, &[]);
    eventually(Duration::from_secs(15), "a throttled read", || {
        w.sim.throttled() >= 2
    })
    .await;
    let hits = w.sources[0].hits();
    eventually(Duration::from_secs(15), "IP checks going on", || {
        w.sources[0].hits() >= hits + 3
    })
    .await;
    let t = Instant::now();
    let log = stop(daemon).await;
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(log.contains("quota"), "{log}");
    assert_eq!(
        w.owned_sources(),
        vec![OLD_IP.to_string()],
        "nothing written"
    );
}

#[tokio::test]
async fn tokens_that_cannot_be_used_are_replaced_and_the_daemon_writes() {
    for bad in [BadToken::LineBreak, BadToken::Huge(5000)] {
        let w = World::new().await;
        w.sim.issue_bad_tokens(1, bad);
        w.set_ip(NEW_IP);
        let cfg = w.config();
        let out = run(&cfg, &["--once"]).await;
        assert_eq!(code(&out), 0, "{bad:?}: {}", text(&out));
        assert_eq!(w.owned_sources(), vec![NEW_IP.to_string()]);
        assert_eq!(w.sim.tokens_issued(), 2, "{bad:?}");
        let tokens = w.sim.issued_tokens();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            tokens.iter().all(|t| !stderr.contains(t.trim())),
            "no token is logged"
        );
    }
}

#[tokio::test]
async fn absurd_durations_and_sizes_are_errors_not_panics() {
    let w = World::new().await;
    for value in ["18446744073709551615s", "400d"] {
        let cfg = w.config_with(&format!("interval = \"{value}\""), &firewall(), "");
        for args in [&["check"][..], &["--once"][..]] {
            let out = run(&cfg, args).await;
            assert_eq!(code(&out), 78, "{value} {args:?}: {}", text(&out));
            assert!(text(&out).contains("daemon.interval"), "{}", text(&out));
        }
    }
    // A source URL of 64 KiB: answered (a failure), never a panic.
    let long = format!("{}{}", w.sources[0].url(), "a".repeat(65_536));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dynwall.toml");
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nstate_dir = \"{}\"\n[resolver]\nquorum = 1\n\
             [[resolver.source]]\nkind = \"http\"\nurl = \"{long}\"\n\
             [[resolver.source]]\nkind = \"http-json\"\nurl = \"{long}\"\nfield = \"{f}\"\n\
             [indigo]\nendpoint = \"{}\"\napi_key = \"{KEY}\"\napi_secret = \"{SECRET}\"\n{}",
            dir.path().join("state").display(),
            w.sim.url(),
            firewall(),
            f = "x".repeat(65_536),
        ),
    )
    .unwrap();
    for args in [&["ip"][..], &["check"][..]] {
        let out = run(&cfg, args).await;
        let all = text(&out);
        assert!(!all.contains("panicked"), "{args:?}: {all}");
        assert!(
            [0, 69].contains(&code(&out)),
            "{args:?} exits as documented: {}",
            code(&out)
        );
    }
}

#[tokio::test]
async fn a_state_file_from_the_previous_release_resumes_its_remediation() {
    let w = ssh_world(sim_builder()).await;
    // Version 1, written by a daemon killed right after its stop was accepted.
    std::fs::create_dir_all(w.state_dir()).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/state-v1-in-flight.json"
        ),
        w.state_dir().join("state.json"),
    )
    .unwrap();
    w.sim.set_power(WEB, PowerState::Stopped);
    let cfg = w.config_with("interval = \"1s\"", &firewall(), &probe(&w, ""));
    let status = run(&cfg, &["status"]).await;
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("remediating: stopping"),
        "{}",
        text(&status)
    );
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(verbs(&w), ["start"], "{}", text(&out));
    eventually(Duration::from_secs(5), "running", || {
        w.sim
            .instance(WEB)
            .is_some_and(|i| i.power == PowerState::Running)
    })
    .await;
    let st = state_json(&w);
    assert_eq!(st["version"], dynwall::state::VERSION);
    assert!(st["clouds"]["indigo"]["firewalls"][TEMPLATE.to_string()].is_object());
    assert!(st.get("instances").is_none(), "no version-1 keys left");

    // The other fixture: a finished remediation and the confirmed address are kept.
    let w = World::new().await;
    std::fs::create_dir_all(w.state_dir()).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/state-v1-remediated.json"
        ),
        w.state_dir().join("state.json"),
    )
    .unwrap();
    let probe = format!("[[probe]]\ninstance = {WEB}\naddress = \"127.0.0.1:9\"\n");
    let cfg = w.config_with("interval = \"1s\"", &firewall(), &probe);
    let status = run(&cfg, &["status"]).await;
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        out.contains(&format!("instance {WEB}: last remediation")),
        "{out}"
    );
    assert!(
        out.contains(&format!("firewall {TEMPLATE}: {NEW_IP}")),
        "{out}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_client_with_its_token_and_budget() {
    let w = World::new().await;
    let cfg = w.config_with("interval = \"1s\"\nreconcile = \"1s\"", &firewall(), "");
    let daemon = spawn_daemon(&cfg, &[]);
    eventually(Duration::from_secs(15), "two template reads", || {
        w.sim.calls(Endpoint::GetTemplate) >= 2
    })
    .await;
    signal(&daemon, "HUP").await;
    let reads = w.sim.calls(Endpoint::GetTemplate);
    eventually(Duration::from_secs(15), "two more reads", || {
        w.sim.calls(Endpoint::GetTemplate) >= reads + 2
    })
    .await;
    let log = stop(daemon).await;
    assert!(log.contains("configuration reloaded"), "{log}");
    assert_eq!(
        w.sim.tokens_issued(),
        1,
        "the token outlives the reload: {log}"
    );
    assert_eq!(w.sim.throttled(), 0, "and so does the request budget");
}
