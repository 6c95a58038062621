//! The real binary's Salt soft step against the Salt simulator and the Indigo simulator's
//! instances with fake SSH endpoints: a job that cures, one that fails or hangs (the usual
//! stop/start follows), an XSRF refusal, and a dry run.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dynwall_sim::salt::{JobEffect, SaltOp, SaltSim};
use dynwall_sim::PowerState;

const JOB: &str = "5c5cc410-4f9f-11e6-88bc-080027a7289c";
const TARGET: &str = "89db0f82-4f9f-11e6-88bc-080027a7289c";
const API_TOKEN: &str = "csp-api-token-3f9a8b7c";
/// The probe interval of these tests.
const INTERVAL: Duration = Duration::from_secs(1);
/// Their `salt_timeout`.
const SALT_TIMEOUT: Duration = Duration::from_secs(4);

/// A world whose WEB instance answers SSH, and a Salt server whose job, when it fixes
/// things, makes WEB's guest answer again.
async fn worlds(effect: JobEffect) -> (Arc<World>, SaltSim) {
    let w = Arc::new(ssh_world(sim_builder()).await);
    let cured = Arc::clone(&w);
    let salt = SaltSim::builder()
        .api_token(API_TOKEN)
        .job(JOB, "restart sshd")
        .target(TARGET, "web-1", "web-1")
        .job_duration(Duration::from_millis(500))
        .effect(effect)
        .on_fix(move |_| {
            cured.sim.set_responsive(WEB, true);
        })
        .start()
        .await
        .expect("salt simulator starts");
    (w, salt)
}

fn config(w: &World, salt: &SaltSim, failures: u32) -> std::path::PathBuf {
    let addr = w.sim.ssh_addr(WEB).expect("ssh endpoint");
    let extra = format!(
        "[salt]\nserver = \"{}\"\ncsp_url = \"{}\"\napi_token = \"{API_TOKEN}\"\ntimeout = \"2s\"\n\n\
         [[probe]]\ninstance = {WEB}\naddress = \"{addr}\"\ninterval = \"1s\"\ntimeout = \"400ms\"\n\
         failures = {failures}\nstop_timeout = \"2s\"\nstart_timeout = \"5s\"\ngrace = \"2s\"\n\
         salt_job = \"{JOB}\"\nsalt_target = \"{TARGET}\"\nsalt_timeout = \"4s\"\n",
        salt.url(),
        salt.csp_url()
    );
    w.config_with(
        "interval = \"1s\"",
        &format!("[[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}, {DB}]\n"),
        &extra,
    )
}

fn verbs(w: &World) -> Vec<String> {
    w.sim
        .power_log()
        .into_iter()
        .filter(|(i, _)| *i == WEB)
        .map(|(_, v)| v)
        .collect()
}

fn record(w: &World) -> serde_json::Value {
    state_json(w)["clouds"]["indigo"]["instances"][WEB.to_string()].clone()
}

async fn first_healthy_probe(w: &World) {
    eventually(Duration::from_secs(15), "a healthy probe", || {
        record(w)["last_ok_at"].is_u64()
    })
    .await;
}

/// Hangs WEB's guest and waits until the daemon asks for the job: when it did.
async fn hang_until_the_job_runs(w: &World, salt: &SaltSim) -> Instant {
    w.sim.set_responsive(WEB, false);
    eventually(Duration::from_secs(20), "the salt job", || {
        !salt.runs().is_empty()
    })
    .await;
    Instant::now()
}

#[tokio::test]
async fn a_job_that_cures_the_instance_means_no_power_action() {
    let (w, salt) = worlds(JobEffect::Fixes).await;
    let cfg = config(&w, &salt, 2);
    let daemon = spawn_daemon(&cfg, &[]);
    first_healthy_probe(&w).await;
    hang_until_the_job_runs(&w, &salt).await;
    eventually(Duration::from_secs(20), "recovered by the job", || {
        record(&w)["last_soft"]["cured"] == true && record(&w)["consecutive_failures"] == 0
    })
    .await;
    // Healthy again, for longer than a stop would take to come.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(verbs(&w).is_empty(), "no power action: {:?}", verbs(&w));
    assert_eq!(salt.runs().len(), 1);
    assert_eq!(salt.ad_hoc_refused(), 0, "only the saved job is asked for");
    let status = run(&cfg, &["status"]).await;
    assert!(
        text(&status).contains(&format!("recovered by salt job {JOB}")),
        "{}",
        text(&status)
    );
    let log = stop_daemon(daemon).await;
    assert!(log.contains("recovered by salt job"), "{log}");
    assert!(!log.contains(API_TOKEN));
    for secret in salt.issued_secrets() {
        assert!(!log.contains(&secret), "a token or XSRF value was logged");
    }
}

/// The stop that follows a soft step that did not cure comes within `salt_timeout` and one
/// probe interval of the job (with room for a busy machine).
async fn the_stop_follows(w: &World, asked: Instant, what: &str) {
    eventually(Duration::from_secs(20), what, || {
        verbs(w).first().map(String::as_str) == Some("stop")
    })
    .await;
    let took = asked.elapsed();
    eprintln!("{what}: the stop came {took:?} after the job was asked for");
    assert!(
        took <= SALT_TIMEOUT + INTERVAL + Duration::from_secs(3),
        "the stop came {took:?} after the job"
    );
    eventually(Duration::from_secs(30), "stop and start", || {
        verbs(w) == ["stop", "start"]
            && w.sim
                .instance(WEB)
                .is_some_and(|i| i.power == PowerState::Running)
    })
    .await;
}

#[tokio::test]
async fn a_failed_job_is_followed_by_the_usual_stop_and_start() {
    let (w, salt) = worlds(JobEffect::Fails).await;
    let cfg = config(&w, &salt, 2);
    let daemon = spawn_daemon(&cfg, &[]);
    first_healthy_probe(&w).await;
    let asked = hang_until_the_job_runs(&w, &salt).await;
    the_stop_follows(&w, asked, "the stop after a failed job").await;
    assert_eq!(salt.runs().len(), 1, "one job per incident");
    let log = stop_daemon(daemon).await;
    assert!(log.contains("did not cure it"), "{log}");
}

#[tokio::test]
async fn a_job_that_hangs_is_abandoned_at_salt_timeout_for_the_stop_and_start() {
    let (w, salt) = worlds(JobEffect::Hangs).await;
    let cfg = config(&w, &salt, 2);
    let daemon = spawn_daemon(&cfg, &[]);
    first_healthy_probe(&w).await;
    let asked = hang_until_the_job_runs(&w, &salt).await;
    the_stop_follows(&w, asked, "the stop after salt_timeout").await;
    assert!(
        asked.elapsed() >= SALT_TIMEOUT - Duration::from_millis(500),
        "the job was given its salt_timeout"
    );
    assert_eq!(salt.runs().len(), 1);
    let log = stop_daemon(daemon).await;
    assert!(
        log.contains("did not complete within salt_timeout"),
        "{log}"
    );
}

#[tokio::test]
async fn an_xsrf_refusal_is_named_and_the_stop_and_start_follow() {
    let (w, salt) = worlds(JobEffect::Fixes).await;
    let cfg = config(&w, &salt, 2);
    let daemon = spawn_daemon(&cfg, &[]);
    first_healthy_probe(&w).await;
    salt.fail_next(SaltOp::Rpc, 1000, 403);
    w.sim.set_responsive(WEB, false);
    eventually(Duration::from_secs(30), "stop and start", || {
        verbs(&w) == ["stop", "start"]
    })
    .await;
    assert!(salt.runs().is_empty());
    let log = stop_daemon(daemon).await;
    assert!(
        log.contains("the server refused the XSRF token"),
        "the cause is named: {log}"
    );
}

#[tokio::test]
async fn a_dry_run_names_the_job_it_would_run_and_runs_nothing() {
    let (w, salt) = worlds(JobEffect::Fixes).await;
    let cfg = config(&w, &salt, 1);
    w.sim.set_responsive(WEB, false);
    let out = run(&cfg, &["--once", "--dry-run"]).await;
    let all = text(&out);
    assert_eq!(code(&out), 0, "{all}");
    assert!(
        all.contains(&format!("would run salt job {JOB} on target {TARGET}")),
        "{all}"
    );
    assert!(salt.runs().is_empty());
    assert_eq!(salt.calls(SaltOp::Rpc), 0);
    assert!(verbs(&w).is_empty());
}

#[tokio::test]
async fn check_finds_the_saved_job_and_target_and_runs_nothing() {
    let (w, salt) = worlds(JobEffect::Fixes).await;
    let cfg = config(&w, &salt, 2);
    let out = run(&cfg, &["check"]).await;
    let all = text(&out);
    assert_eq!(code(&out), 0, "{all}");
    assert!(
        all.contains(&format!(
            "salt job {JOB} (restart sshd) on target {TARGET} (web-1)"
        )),
        "{all}"
    );
    assert!(salt.runs().is_empty(), "check runs no job");

    // A job uuid the server does not have: the config is wrong (78), naming the key.
    let other = "0f0f0f0f-0000-4000-8000-000000000000";
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace(JOB, other);
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = run(&cfg, &["check"]).await;
    assert_eq!(code(&out), 78, "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "probe[0].salt_job: the Salt server has no saved job {other}"
        )),
        "{}",
        text(&out)
    );

    // A wrong API token: refused credentials (77).
    let text_cfg = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(API_TOKEN, "not-the-token");
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = run(&cfg, &["check"]).await;
    assert_eq!(code(&out), 77, "{}", text(&out));
    assert!(
        text(&out).contains("credentials rejected"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("not-the-token"));
}

#[tokio::test]
async fn a_salt_job_without_a_salt_table_is_a_config_error() {
    let w = ssh_world(sim_builder()).await;
    let addr = w.sim.ssh_addr(WEB).expect("ssh endpoint");
    let cfg = w.config_with(
        "interval = \"1s\"",
        &format!("[[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}, {DB}]\n"),
        &format!(
            "[[probe]]\ninstance = {WEB}\naddress = \"{addr}\"\nsalt_job = \"{JOB}\"\n\
             salt_target = \"{TARGET}\"\n"
        ),
    );
    let out = run(&cfg, &["--once"]).await;
    assert_eq!(code(&out), 78, "{}", text(&out));
    assert!(
        text(&out).contains("probe[0].salt_job: needs a [salt] table"),
        "{}",
        text(&out)
    );
}
