//! The real binary against the Indigo simulator: SPEC invariants 1–5, 8 and 9.

mod common;

use std::time::{Duration, Instant};

use common::*;
use dynwall_sim::{Endpoint, SimRule};

fn sorted(mut v: Vec<SimRule>) -> Vec<(String, String, String, String)> {
    let mut out: Vec<_> = v
        .drain(..)
        .map(|r| (r.kind, r.protocol, r.port, r.source))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_new_address_rewrites_only_the_owned_rule_and_keeps_everything_else() {
    let w = World::new().await;
    w.set_ip(NEW_IP);
    let cfg = w.config();
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    assert_eq!(w.owned_sources(), vec![NEW_IP.to_string()]);
    let t = w.sim.template(TEMPLATE).unwrap();
    let mut expected = others_in();
    expected.push(SimRule::new("Custom", "TCP", "22", NEW_IP));
    assert_eq!(
        sorted(t.inbound.clone()),
        sorted(expected),
        "inbound rules other than ours are untouched"
    );
    assert_eq!(
        sorted(t.outbound.clone()),
        sorted(others_out()),
        "outbound rules are untouched"
    );
    let mut assigned = t.assigned.clone();
    assigned.sort();
    assert_eq!(assigned, vec![WEB, DB], "the instance assignment is kept");
    assert_eq!(w.sim.calls(Endpoint::UpdateFirewall), 1);

    // The body sent: bare address, ids as strings, the full instance list.
    let body: serde_json::Value = serde_json::from_str(&w.sim.last_update_body().unwrap()).unwrap();
    assert_eq!(body["templateid"], "12836");
    assert_eq!(body["instances"], serde_json::json!(["616516", "616517"]));
    assert_eq!(body["name"], "home-ssh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("firewall 12836: 22/TCP {OLD_IP} → {NEW_IP}")),
        "one clear line per change: {stderr}"
    );

    let st = state_json(&w);
    assert_eq!(st["clouds"]["indigo"]["firewalls"]["12836"]["ip"], NEW_IP);
    assert_eq!(st["last_cycle"]["ok"], true);
}

#[tokio::test]
async fn an_unchanged_address_writes_nothing_and_cached_runs_call_nothing() {
    let w = World::new().await;
    let cfg = w.config();
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        w.sim.calls(Endpoint::UpdateFirewall),
        0,
        "in sync: no write"
    );
    assert_eq!(w.sim.calls(Endpoint::GetTemplate), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("→"),
        "quiet when nothing changes: {stderr}"
    );

    // The next run within the reconcile period makes no API call at all.
    let before = w.sim.call_log().len();
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        w.sim.call_log().len(),
        before,
        "a cached cycle costs no API call"
    );
}

#[tokio::test]
async fn the_daemon_reuses_one_token_and_repairs_drift() {
    let w = World::new().await;
    let cfg = w.config_with(
        "interval = \"1s\"\nreconcile = \"1s\"",
        &format!("[[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}, {DB}]\n"),
        "",
    );
    let mut daemon = spawn_daemon(&cfg, &[]);
    eventually(Duration::from_secs(15), "three template reads", || {
        w.sim.calls(Endpoint::GetTemplate) >= 3
    })
    .await;
    assert_eq!(w.sim.tokens_issued(), 1, "one token serves every cycle");
    assert_eq!(w.sim.calls(Endpoint::UpdateFirewall), 0);

    // Someone deletes our rule by hand: the next reconcile puts it back.
    w.sim.set_rules(TEMPLATE, others_in(), others_out());
    eventually(Duration::from_secs(15), "drift repaired", || {
        w.owned_sources() == vec![OLD_IP.to_string()]
    })
    .await;
    assert_eq!(w.sim.calls(Endpoint::UpdateFirewall), 1);

    // Tokens revoked server-side: one re-authentication, then business as usual.
    w.sim.expire_tokens();
    w.set_ip(NEW_IP);
    eventually(
        Duration::from_secs(15),
        "rule follows the new address",
        || w.owned_sources() == vec![NEW_IP.to_string()],
    )
    .await;
    assert_eq!(
        w.sim.tokens_issued(),
        2,
        "exactly one re-authentication after a 401"
    );

    signal(&daemon, "TERM").await;
    let status = tokio::time::timeout(Duration::from_secs(5), daemon.wait())
        .await
        .expect("daemon stops")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn disagreeing_sources_change_nothing() {
    let w = World::with(sim_builder(), 2).await;
    w.sources[0].set_ip(NEW_IP);
    w.sources[1].set_ip(LIAR_IP);
    let out = run(&w.config(), &["--once"]).await;
    assert_eq!(code(&out), 69, "{}", text(&out));
    assert_eq!(w.owned_sources(), vec![OLD_IP.to_string()]);
    assert_eq!(
        w.sim.call_log().len(),
        0,
        "no API call without an agreed address"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no usable public IPv4 address"), "{stderr}");
}

#[tokio::test]
async fn a_liar_is_outvoted_when_quorum_is_met() {
    let w = World::with(sim_builder(), 3).await;
    w.set_ip(NEW_IP);
    w.sources[2].set_ip(LIAR_IP);
    let out = run(&w.config(), &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(w.owned_sources(), vec![NEW_IP.to_string()]);
}

#[tokio::test]
async fn private_bogus_and_failing_answers_change_nothing() {
    for (a, b) in [
        ("192.168.1.20", "192.168.1.20"),
        ("100.64.3.4", "100.64.3.4"),
        ("0.0.0.0", "0.0.0.0"),
        ("<html>81.2.69.161</html>", "<html>81.2.69.161</html>"),
    ] {
        let w = World::new().await;
        w.sources[0].set_body(a);
        w.sources[1].set_body(b);
        let out = run(&w.config(), &["--once"]).await;
        assert_eq!(code(&out), 69, "{a}: {}", text(&out));
        assert_eq!(w.owned_sources(), vec![OLD_IP.to_string()], "{a}");
        assert_eq!(w.sim.calls(Endpoint::UpdateFirewall), 0, "{a}");
    }
    // Quorum 2 with one source failing: not enough agreement.
    let w = World::new().await;
    w.set_ip(NEW_IP);
    w.sources[1].set_status(500);
    let out = run(&w.config(), &["--once"]).await;
    assert_eq!(code(&out), 69, "{}", text(&out));
    assert_eq!(w.owned_sources(), vec![OLD_IP.to_string()]);
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_survived() {
    let w = World::new().await;
    w.set_ip(NEW_IP);
    w.sim.fail_next(2, 503);
    let out = run(&w.config(), &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(w.owned_sources(), vec![NEW_IP.to_string()]);

    // A 429 says the quota is spent until the window resets (here in at most 2 s).
    let w = World::with(sim_builder().quota(1000, Duration::from_secs(2)), 2).await;
    w.set_ip(NEW_IP);
    w.sim.fail_next_on(Endpoint::UpdateFirewall, 1, 429);
    let out = run(&w.config(), &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(w.owned_sources(), vec![NEW_IP.to_string()]);
    assert!(w.sim.throttled() >= 1);
}

#[tokio::test]
async fn the_client_stays_inside_a_tight_quota_without_being_throttled() {
    // 4 requests per 3 s window: the five calls of a first sync must be spread over two windows.
    let w = World::with(sim_builder().quota(4, Duration::from_secs(3)), 2).await;
    w.set_ip(NEW_IP);
    let out = run(&w.config(), &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(w.owned_sources(), vec![NEW_IP.to_string()]);
    assert_eq!(w.sim.throttled(), 0, "the budget follows the quota headers");
    let log = w.sim.call_log();
    for pair in log.windows(2) {
        assert!(
            pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(500),
            "spike arrest respected: {log:?}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_api_exits_69_after_retries() {
    let w = World::new().await;
    w.set_ip(NEW_IP);
    w.sim.fail_next(10, 502);
    let out = run(&w.config(), &["--once"]).await;
    assert_eq!(code(&out), 69, "{}", text(&out));
    assert_eq!(w.owned_sources(), vec![OLD_IP.to_string()]);
}

#[tokio::test]
async fn a_malformed_answer_changes_nothing() {
    let w = World::new().await;
    w.set_ip(NEW_IP);
    w.sim.malformed_next(Endpoint::GetTemplate, 1);
    let out = run(&w.config(), &["--once"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert_eq!(w.sim.calls(Endpoint::UpdateFirewall), 0);
    assert_eq!(w.owned_sources(), vec![OLD_IP.to_string()]);
}

#[tokio::test]
async fn rejected_credentials_exit_77() {
    let w = World::with(sim_builder().credentials("other", "pair"), 2).await;
    w.set_ip(NEW_IP);
    let out = run(&w.config(), &["--once"]).await;
    assert_eq!(code(&out), 77, "{}", text(&out));
    assert_eq!(w.owned_sources(), vec![OLD_IP.to_string()]);
}

#[tokio::test]
async fn an_unknown_instance_is_refused_loudly_and_nothing_is_unassigned() {
    let w = World::new().await;
    w.set_ip(NEW_IP);
    let cfg = w.config_with(
        "interval = \"1s\"",
        &format!("[[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}, 999999]\n"),
        "",
    );
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 78, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("firewall[0].instances") && stderr.contains("999999"),
        "{stderr}"
    );
    assert_eq!(w.sim.calls(Endpoint::UpdateFirewall), 0);
    let check = run(&cfg, &["check"]).await;
    assert_eq!(code(&check), 78, "{}", text(&check));
}

#[tokio::test]
async fn dry_run_and_check_print_the_plan_and_write_nothing() {
    let w = World::new().await;
    w.set_ip(NEW_IP);
    let cfg = w.config();
    let out = run(&cfg, &["--once", "--dry-run"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "would change firewall 12836: 22/TCP {OLD_IP} → {NEW_IP}"
        )),
        "{stdout}"
    );
    assert_eq!(w.sim.calls(Endpoint::UpdateFirewall), 0);
    assert!(
        !w.state_dir().join("state.json").exists(),
        "dry run records nothing"
    );

    let out = run(&cfg, &["check"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("plan: firewall 12836: 22/TCP {OLD_IP} → {NEW_IP}")),
        "{stdout}"
    );
    assert!(stdout.contains("credentials: accepted"), "{stdout}");
    assert_eq!(w.sim.calls(Endpoint::UpdateFirewall), 0);
}

#[tokio::test]
async fn a_second_process_on_the_state_dir_exits_75() {
    let w = World::new().await;
    let cfg = w.config();
    let mut daemon = spawn_daemon(&cfg, &[]);
    eventually(Duration::from_secs(10), "daemon's first cycle", || {
        w.state_dir().join("state.json").exists()
    })
    .await;
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 75, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lock"));
    // Read-only commands still work while the daemon holds the lock.
    let out = run(&cfg, &["status"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(OLD_IP));
    let out = run(&cfg, &["healthcheck"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    daemon.kill().await.unwrap();
}

#[tokio::test]
async fn a_corrupt_state_file_is_moved_aside_not_fatal() {
    let w = World::new().await;
    std::fs::create_dir_all(w.state_dir()).unwrap();
    std::fs::write(
        w.state_dir().join("state.json"),
        "{\"version\": 1, \"firewalls\": [tru",
    )
    .unwrap();
    w.set_ip(NEW_IP);
    let out = run(&w.config(), &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));
    let aside = std::fs::read_dir(w.state_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        });
    assert!(aside);
    assert_eq!(
        state_json(&w)["clouds"]["indigo"]["firewalls"]["12836"]["ip"],
        NEW_IP
    );
}

#[tokio::test]
async fn sigterm_stops_the_daemon_within_two_seconds() {
    let w = World::new().await;
    let cfg = w.config();
    let mut daemon = spawn_daemon(&cfg, &[]);
    eventually(Duration::from_secs(10), "first cycle", || {
        w.state_dir().join("state.json").exists()
    })
    .await;
    let t = Instant::now();
    signal(&daemon, "TERM").await;
    let status = tokio::time::timeout(Duration::from_secs(5), daemon.wait())
        .await
        .expect("stopped")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stopped in {:?}",
        t.elapsed()
    );
    assert_eq!(
        state_json(&w)["version"],
        dynwall::state::VERSION,
        "state is valid after the stop"
    );
}

#[tokio::test]
async fn sigterm_inside_a_slow_api_call_stops_promptly() {
    let w = World::new().await;
    w.set_ip(NEW_IP);
    w.sim.set_delay(Duration::from_secs(30));
    let cfg = w.config();
    let mut daemon = spawn_daemon(&cfg, &[]);
    eventually(Duration::from_secs(10), "a request in flight", || {
        !w.sim.call_log().is_empty() || w.sim.tokens_issued() > 0 || w.sources[0].hits() > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    signal(&daemon, "INT").await;
    let status = tokio::time::timeout(Duration::from_secs(5), daemon.wait())
        .await
        .expect("stopped")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stopped in {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn secrets_never_reach_the_output_even_at_trace_level() {
    let w = World::new().await;
    w.set_ip(NEW_IP);
    w.sim.expire_tokens();
    let cfg = w.config();
    let out = run_env(&cfg, &["--once"], &[("RUST_LOG", "trace")]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let all = text(&out);
    assert!(all.len() > 1000, "trace logging is on: {all}");
    assert!(!all.contains(KEY), "API key leaked");
    assert!(!all.contains(SECRET), "API secret leaked");
    for token in w.sim.issued_tokens() {
        assert!(!all.contains(&token), "access token leaked");
    }
    let out = run_env(&cfg, &["check"], &[("RUST_LOG", "trace")]).await;
    let all = text(&out);
    assert!(!all.contains(KEY) && !all.contains(SECRET));
}

#[tokio::test]
async fn config_errors_exit_78_naming_file_and_key() {
    let w = World::new().await;
    let path = w.dir.path().join("bad.toml");
    std::fs::write(&path, "[daemon]\ninterval = \"soon\"\n").unwrap();
    let out = run(&path, &["--once"]).await;
    assert_eq!(code(&out), 78, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("daemon.interval"),
        "{stderr}"
    );
    let out = run(&w.dir.path().join("missing.toml"), &["check"]).await;
    assert_eq!(code(&out), 78, "{}", text(&out));
}

#[tokio::test]
async fn ip_prints_every_source_and_the_agreed_address() {
    let w = World::with(sim_builder(), 3).await;
    w.set_ip(NEW_IP);
    w.sources[2].set_body("10.0.0.1");
    let cfg = w.config();
    let out = run(&cfg, &["ip"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("public address: {NEW_IP}")),
        "{stdout}"
    );
    assert!(stdout.contains("rejected: private"), "{stdout}");
    let out = run(&cfg, &["ip", "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["address"], NEW_IP);
    assert_eq!(v["sources"].as_array().unwrap().len(), 3);
    assert_eq!(w.sim.call_log().len(), 0, "`ip` never calls the cloud API");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let out = bin().arg("--no-such-flag").output().await.unwrap();
    assert_eq!(code(&out), 2);
    let out = bin().args(["status", "--once"]).output().await.unwrap();
    assert_eq!(code(&out), 2);
}

/// Writes an executable script that prints `out` (or fails when `out` is `None`).
fn script(dir: &std::path::Path, name: &str, out: Option<&str>) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let body = match out {
        Some(addr) => format!("#!/bin/sh\necho {addr}\n"),
        None => "#!/bin/sh\necho 'no route' >&2\nexit 3\n".to_string(),
    };
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn a_dual_stack_entry_keeps_one_rule_per_family_and_a_failed_family_keeps_its_rule() {
    const V6: &str = "2a00:1450:4001:81c::5";
    let w = World::new().await;
    w.set_ip(NEW_IP);
    let a = script(w.dir.path(), "v6a", Some(V6));
    let b = script(w.dir.path(), "v6b", Some(V6));
    let v6_sources = format!(
        "[[resolver.source]]\nkind = \"command\"\nfamily = \"ipv6\"\ncommand = [\"{}\"]\n\
         [[resolver.source]]\nkind = \"command\"\nfamily = \"ipv6\"\ncommand = [\"{}\"]\n",
        a.display(),
        b.display()
    );
    // The [resolver] table is written by the world; the extra sources join it.
    let firewall = format!(
        "{v6_sources}\n[[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}, {DB}]\nfamily = \"both\"\n"
    );
    let cfg = w.config_with("interval = \"1s\"", &firewall, "");
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let mut owned = w.owned_sources();
    owned.sort();
    assert_eq!(owned, vec![V6.to_string(), NEW_IP.to_string()]);
    let st = state_json(&w);
    assert_eq!(st["clouds"]["indigo"]["firewalls"]["12836"]["ip"], NEW_IP);
    assert_eq!(st["clouds"]["indigo"]["firewalls"]["12836"]["ip6"], V6);

    // IPv6 lookups now fail while IPv4 moves: the IPv4 rule follows, the IPv6 rule stays.
    script(w.dir.path(), "v6a", None);
    script(w.dir.path(), "v6b", None);
    w.set_ip(OLD_IP);
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(
        code(&out),
        69,
        "a family without an address is reported: {}",
        text(&out)
    );
    let mut owned = w.owned_sources();
    owned.sort();
    assert_eq!(owned, vec![V6.to_string(), OLD_IP.to_string()]);
    assert_eq!(
        state_json(&w)["clouds"]["indigo"]["firewalls"]["12836"]["ip6"],
        V6
    );
}
