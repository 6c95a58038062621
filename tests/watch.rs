//! Metrics and notifications of the real binary against the Indigo simulator: each event's
//! webhook payload as a loopback receiver gets it, `/metrics` parsed as Prometheus text, a dead
//! receiver that never holds up a cycle, `status` showing what happened, and `--once` runs from
//! cron that say persistent trouble once.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use dynwall_sim::{NotifyReceiver, PowerState, Received};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(60);

/// A loopback port nothing listens on now (the config refuses port 0).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn webhook(url: &str, extra: &str) -> String {
    format!("[[notify]]\nkind = \"webhook\"\nurl = \"{url}\"\ntimeout = \"30s\"\n{extra}\n")
}

fn config(w: &World, extra: &str) -> PathBuf {
    w.config_with(
        "interval = \"1s\"",
        &format!("[[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}, {DB}]\n"),
        extra,
    )
}

/// The webhook documents received so far with this `event`.
fn events(r: &NotifyReceiver, event: &str) -> Vec<Value> {
    r.received()
        .iter()
        .map(Received::json)
        .filter(|j| j["event"] == event)
        .collect()
}

async fn wait_event(r: &NotifyReceiver, event: &str, n: usize) -> Vec<Value> {
    eventually(PATIENCE, &format!("{n} {event} event(s)"), || {
        events(r, event).len() >= n
    })
    .await;
    events(r, event)
}

async fn get(addr: &str, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("the endpoint answers");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

/// A parsed Prometheus text exposition: the `# TYPE` of each family and every sample with its
/// labels. Fails on any line that is not a comment or a well-formed sample.
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

fn parse_exposition(text: &str) -> Exposition {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line == "# EOF" {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels close");
                let mut labels = BTreeMap::new();
                // Label values here hold no escaped quotes or commas.
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                    labels.insert(k.to_string(), v.expect("quoted value").to_string());
                }
                (name.to_string(), labels)
            }
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name {name}"
        );
        samples.push((name, labels, value));
    }
    Exposition { types, samples }
}

impl Exposition {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }

    fn type_of(&self, family: &str) -> Option<&str> {
        self.types.get(family).map(String::as_str)
    }
}

#[tokio::test]
async fn address_and_firewall_events_and_the_metrics_of_a_running_daemon() {
    let w = World::new().await;
    let receiver = NotifyReceiver::start().await.expect("receiver");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = config(
        &w,
        &format!(
            "[metrics]\nlisten = \"{listen}\"\n\n{}",
            webhook(&receiver.url("/hook"), "")
        ),
    );
    let daemon = spawn_daemon(&cfg, &[]);

    // The first agreement: an address with no old one; the firewall already holds it.
    let first = wait_event(&receiver, "ip_changed", 1).await;
    assert_eq!(first[0]["version"], 1);
    assert_eq!(
        first[0]["data"],
        serde_json::json!({"family": "ipv4", "old": null, "new": OLD_IP})
    );

    w.set_ip(NEW_IP);
    let updated = wait_event(&receiver, "firewall_updated", 1).await;
    assert_eq!(
        updated[0]["data"],
        serde_json::json!({
            "cloud": "indigo",
            "firewall": TEMPLATE.to_string(),
            "name": "home-ssh",
            "protocol": "TCP",
            "port": "22",
            "added": [NEW_IP],
            "removed": [OLD_IP],
        })
    );
    let changed = events(&receiver, "ip_changed");
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert_eq!(
        changed[1]["data"],
        serde_json::json!({"family": "ipv4", "old": OLD_IP, "new": NEW_IP})
    );
    // The address change is told before the write it caused.
    let order: Vec<Value> = receiver
        .received()
        .iter()
        .map(|r| r.json()["event"].clone())
        .collect();
    let pos = |e: &str| order.iter().rposition(|x| x == e).expect("event");
    assert!(pos("ip_changed") < pos("firewall_updated"), "{order:?}");

    // Sources that disagree: cycles fail; `failing` is said once, after the second failure.
    w.sources[0].set_ip(OLD_IP);
    let failing = wait_event(&receiver, "failing", 1).await;
    assert_eq!(failing[0]["data"]["state"], "failing");
    assert!(failing[0]["data"]["cycles"].as_u64() >= Some(2));
    assert_eq!(failing[0]["data"]["error"], "no usable public address");
    w.set_ip(NEW_IP);
    let recovered = wait_event(&receiver, "failing", 2).await;
    assert_eq!(recovered.len(), 2, "once down and once on recovery");
    assert_eq!(recovered[1]["data"]["state"], "recovered");

    let (status, text) = get(&listen, "/metrics").await;
    assert_eq!(status, 200);
    let m = parse_exposition(&text);
    for (family, kind) in [
        ("dynwall_build_info", "gauge"),
        ("dynwall_cycles_total", "counter"),
        ("dynwall_last_success_timestamp_seconds", "gauge"),
        ("dynwall_public_address_info", "gauge"),
        ("dynwall_firewall_writes_total", "counter"),
        ("dynwall_api_requests_total", "counter"),
        ("dynwall_resolver_answers_total", "counter"),
        ("dynwall_notifications_total", "counter"),
    ] {
        assert_eq!(m.type_of(family), Some(kind), "{family} in\n{text}");
    }
    let indigo = ("cloud", "indigo");
    let ok = ("status", "2xx");
    for op in [
        "authenticate",
        "gettemplate",
        "getinstancelist",
        "updatefirewall",
    ] {
        let n = m.value(
            "dynwall_api_requests_total",
            &[indigo, ("operation", op), ok],
        );
        assert!(n >= Some(1.0), "{op} requests in\n{text}");
    }
    assert_eq!(
        m.value(
            "dynwall_firewall_writes_total",
            &[indigo, ("firewall", &TEMPLATE.to_string())]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "dynwall_public_address_info",
            &[("family", "ipv4"), ("address", NEW_IP)]
        ),
        Some(1.0)
    );
    assert!(m.value("dynwall_cycles_total", &[("outcome", "failed")]) >= Some(2.0));
    assert!(
        m.value(
            "dynwall_notifications_total",
            &[
                ("notifier", "notify[0]"),
                ("kind", "webhook"),
                ("outcome", "sent")
            ]
        ) >= Some(5.0),
        "{text}"
    );
    assert!(m.value("dynwall_api_quota_remaining", &[indigo]).is_some());
    for secret in [KEY, SECRET] {
        assert!(!text.contains(secret), "a secret in /metrics");
    }
    let (code, body) = get(&listen, "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "healthy\n"));

    let log = stop_daemon(daemon).await;
    assert!(!log.contains(SECRET), "{log}");
}

/// A probe table with fast timings for the instance `id`.
fn probe(w: &World, id: u64, extra: &str) -> String {
    let addr = w.sim.ssh_addr(id).expect("ssh endpoint");
    format!(
        "[[probe]]\ninstance = {id}\naddress = \"{addr}\"\ninterval = \"1s\"\ntimeout = \"400ms\"\n\
         failures = 2\nstop_timeout = \"2s\"\nstart_timeout = \"5s\"\ngrace = \"2s\"\n{extra}\n"
    )
}

#[tokio::test]
async fn remediation_and_gave_up_events_and_what_status_shows() {
    let w = ssh_world(sim_builder()).await;
    let good = NotifyReceiver::start().await.expect("receiver");
    let refusing = NotifyReceiver::start().await.expect("receiver");
    // A receiver that refuses everything: a 400 is not retried, so it fails at once.
    refusing.answer_next(&[400; 64]);
    let cfg = config(
        &w,
        &format!(
            "{}{}{}",
            webhook(
                &good.url("/hook"),
                "events = [\"remediation\", \"gave_up\"]"
            ),
            webhook(&refusing.url("/refuse"), "events = [\"remediation\"]"),
            probe(&w, WEB, "max_actions = 1\nwindow = \"1h\""),
        ),
    );
    let daemon = spawn_daemon(&cfg, &[]);
    eventually(PATIENCE, "a healthy probe", || {
        state_json(&w)["clouds"]["indigo"]["instances"][WEB.to_string()]["last_ok_at"].is_u64()
    })
    .await;
    // Down for good: one stop…start (the budget), then given up.
    w.sim.set_broken(WEB, true);
    w.sim.set_responsive(WEB, false);
    let gave_up = wait_event(&good, "gave_up", 1).await;
    let g = &gave_up[0]["data"];
    assert_eq!(g["cloud"], "indigo");
    assert_eq!(g["instance"], WEB.to_string());
    assert_eq!(g["actions"], 1);
    assert_eq!(g["window_secs"], 3600);
    let steps: Vec<(String, String)> = events(&good, "remediation")
        .iter()
        .map(|e| {
            let d = &e["data"];
            assert_eq!(d["cloud"], "indigo");
            assert_eq!(d["instance"], WEB.to_string());
            assert_eq!(d["name"], "web-1");
            (
                d["step"].as_str().unwrap_or_default().to_string(),
                d["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("stop", "requested"),
        ("start", "requested"),
        ("start", "done"),
    ]
    .iter()
    .map(|(s, o)| (s.to_string(), o.to_string()))
    .collect();
    assert_eq!(steps, want);
    let first = &events(&good, "remediation")[0]["data"];
    assert!(first["reason"].is_string(), "the failed probe: {first}");
    assert_eq!(events(&good, "ip_changed").len(), 0, "not subscribed");
    assert!(w
        .sim
        .instance(WEB)
        .is_some_and(|i| i.power == PowerState::Running));

    // The refusing receiver's failures reach the state; `status` shows them and the last
    // remediation.
    eventually(PATIENCE, "a persisted notification error", || {
        state_json(&w)["last_notification_error"].is_object()
    })
    .await;
    let out = run(&cfg, &["status"]).await;
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        shown.contains(&format!(
            "last remediation: instance {WEB} (indigo): start done"
        )),
        "{shown}"
    );
    // The URL's path is masked: it may be the secret itself.
    let refuse_url = format!("notify[1] webhook http://{}/***", refusing.addr());
    assert!(
        shown.contains("last notification error")
            && shown.contains(&refuse_url)
            && shown.contains("not delivered after 1 attempt")
            && shown.contains("400"),
        "{shown}"
    );
    let _ = stop_daemon(daemon).await;
}

#[tokio::test]
async fn a_dead_receiver_never_holds_up_a_cycle() {
    let w = World::new().await;
    let receiver = NotifyReceiver::start().await.expect("receiver");
    // Every request is read and then never answered, within a long timeout.
    receiver.hang(true);
    let cfg = config(&w, &webhook(&receiver.url("/hook"), ""));
    let daemon = spawn_daemon(&cfg, &[]);
    // The first notification is in flight (and will stay so) …
    tokio::time::timeout(PATIENCE, receiver.wait_for(1))
        .await
        .expect("the first notification arrives");
    // … while cycles go on: two address changes are each written and verified.
    let mut daemon = Some(daemon);
    for ip in [NEW_IP, OLD_IP] {
        w.set_ip(ip);
        let written = tokio::time::timeout(PATIENCE, async {
            while w.owned_sources() != [ip] {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if written.is_err() {
            let log = match daemon.take() {
                Some(d) => stop_daemon(d).await,
                None => String::new(),
            };
            panic!("{ip} not written within {PATIENCE:?}; the daemon said:\n{log}");
        }
    }
    let daemon = daemon.expect("the daemon still runs");
    // The one notifier sends in order: nothing after the hung request (or a retry of it, on a
    // slow box) was sent yet.
    let got: Vec<Value> = receiver.received().iter().map(Received::json).collect();
    assert!(
        got.iter()
            .all(|j| j["event"] == "ip_changed" && j["data"]["old"].is_null()),
        "the notifier is still stuck on its first request: {got:?}"
    );
    let log = stop_daemon(daemon).await;
    // A stopping daemon gives its queue a moment only.
    assert!(log.contains("notifications not sent"), "{log}");
}

/// The two good sources answer after the failing one, so that a round never settles before
/// the failure is in (the daemon stops waiting once the outcome cannot change).
fn slow_good_sources(w: &World) {
    for s in &w.sources[..2] {
        s.set_delay(Duration::from_millis(300));
    }
}

#[tokio::test]
async fn cron_runs_say_a_failing_source_once_and_its_recovery_once() {
    let w = World::with(sim_builder(), 3).await;
    slow_good_sources(&w);
    w.sources[2].set_status(500);
    let cfg = config(&w, "");
    let warned = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stderr)
            .matches("IP source failing")
            .count()
    };
    let first = run(&cfg, &["--once"]).await;
    assert_eq!(code(&first), 0, "{}", text(&first));
    assert_eq!(warned(&first), 1, "{}", text(&first));
    let second = run(&cfg, &["--once"]).await;
    assert_eq!(code(&second), 0, "{}", text(&second));
    assert_eq!(warned(&second), 0, "said already: {}", text(&second));
    let status = run(&cfg, &["status"]).await;
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("IP sources failing"),
        "{}",
        text(&status)
    );
    w.sources[2].set_status(200);
    let third = run(&cfg, &["--once"]).await;
    assert!(
        String::from_utf8_lossy(&third.stderr).contains("IP source answers again"),
        "{}",
        text(&third)
    );
    let fourth = run(&cfg, &["--once"]).await;
    assert!(
        !String::from_utf8_lossy(&fourth.stderr).contains("IP source"),
        "{}",
        text(&fourth)
    );
}

#[tokio::test]
async fn a_reload_does_not_repeat_a_source_warning() {
    let w = World::with(sim_builder(), 3).await;
    slow_good_sources(&w);
    w.sources[2].set_status(500);
    let cfg = config(&w, "");
    let daemon = spawn_daemon(&cfg, &[]);
    eventually(PATIENCE, "the failing source remembered", || {
        state_json(&w)["sources"]["failing"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    })
    .await;
    signal(&daemon, "HUP").await;
    // Two more cycles after the reload (the heartbeat moves at each).
    let mtime = || {
        std::fs::metadata(w.state_dir().join("state.json"))
            .and_then(|m| m.modified())
            .ok()
    };
    let before = mtime();
    eventually(PATIENCE, "cycles after the reload", || mtime() > before).await;
    let log = stop_daemon(daemon).await;
    assert!(log.contains("configuration reloaded"), "{log}");
    assert_eq!(log.matches("IP source failing").count(), 1, "{log}");
}
