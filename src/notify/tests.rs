use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex as StdMutex;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use dynwall_sim::{NotifyReceiver, Received};
use reqwest::Url;
use serde_json::json;
use tokio::time::Instant;

use super::deliver::{judge, Verdict, MAX_ATTEMPTS, RETRY_DELAYS};
use super::*;
use crate::config::Config;
use crate::http_failure::HttpFailure;
use crate::ids::{CloudName, FirewallId, InstanceId};
use crate::net::Family;
use crate::testlog::Logs;

const TOKEN: &str = "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2";
const TOPIC: &str = "dynwall-Xq7r9Tz2";
const PING: &str = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278";
/// Long enough that a loopback exchange on a busy machine never times out.
const PATIENCE: Duration = Duration::from_secs(60);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// One event of each kind (and both `failing` edges).
fn events() -> Vec<Event> {
    let indigo = CloudName::indigo();
    let web = InstanceId("616516".into());
    vec![
        Event::IpChanged(IpChange {
            family: Family::Ipv4,
            old: Some(ip("81.2.69.160")),
            new: ip("81.2.69.161"),
        }),
        Event::FirewallUpdated(FirewallUpdate {
            cloud: indigo.clone(),
            firewall: FirewallId("12836".into()),
            name: Some("home-ssh".into()),
            protocol: "TCP".into(),
            port: "22".into(),
            added: vec!["81.2.69.161".into()],
            removed: vec!["81.2.69.160".into()],
        }),
        Event::Remediation(RemediationEvent {
            cloud: indigo.clone(),
            instance: web.clone(),
            name: Some("web-1".into()),
            step: RemediationStep::Stop,
            outcome: RemediationOutcome::Requested,
            reason: Some("no SSH banner within 5s".into()),
        }),
        Event::GaveUp(GaveUp {
            cloud: indigo,
            instance: web,
            name: None,
            actions: 3,
            window: Duration::from_secs(86_400),
            reason: Some("connection refused".into()),
        }),
        Event::Failing(Failing::Started {
            since: 1_767_225_600,
            cycles: 2,
            error: "no usable public IPv4 address: sources disagree".into(),
        }),
        Event::Failing(Failing::Recovered {
            since: 1_767_225_600,
            at: 1_767_226_020,
            cycles: 4,
        }),
    ]
}

/// What each event's webhook document holds besides `time`.
fn expected_webhooks() -> Vec<serde_json::Value> {
    let common = |event: &str, summary: &str, data: serde_json::Value| json!({"version": 1, "event": event, "host": "nas", "summary": summary, "data": data});
    vec![
        common(
            "ip_changed",
            "public IPv4 address changed: 81.2.69.160 → 81.2.69.161",
            json!({"family": "ipv4", "old": "81.2.69.160", "new": "81.2.69.161"}),
        ),
        common(
            "firewall_updated",
            "firewall 12836 (home-ssh) on indigo: 22/TCP allowed 81.2.69.161; removed 81.2.69.160",
            json!({"cloud": "indigo", "firewall": "12836", "name": "home-ssh", "protocol": "TCP",
                   "port": "22", "added": ["81.2.69.161"], "removed": ["81.2.69.160"]}),
        ),
        common(
            "remediation",
            "instance 616516 (web-1) on indigo: stop requested (no SSH banner within 5s)",
            json!({"cloud": "indigo", "instance": "616516", "name": "web-1", "step": "stop",
                   "outcome": "requested", "reason": "no SSH banner within 5s"}),
        ),
        common(
            "gave_up",
            "instance 616516 on indigo: still down after 3 remediations within 24h; giving up \
             until it answers again or `dynwall reset 616516` (last probe: connection refused)",
            json!({"cloud": "indigo", "instance": "616516", "name": null, "actions": 3,
                   "window_secs": 86400, "reason": "connection refused"}),
        ),
        common(
            "failing",
            "sync cycles failing since 2026-01-01T00:00:00Z (2 in a row): no usable public IPv4 \
             address: sources disagree",
            json!({"state": "failing", "since": "2026-01-01T00:00:00Z", "cycles": 2,
                   "error": "no usable public IPv4 address: sources disagree"}),
        ),
        common(
            "failing",
            "sync cycles recovered after 7m (4 failed)",
            json!({"state": "recovered", "since": "2026-01-01T00:00:00Z",
                   "recovered_at": "2026-01-01T00:07:00Z", "duration_secs": 420, "cycles": 4}),
        ),
    ]
}

#[test]
fn webhook_documents_follow_the_schema() {
    let at = UNIX_EPOCH + Duration::from_secs(1_767_225_601);
    for (event, want) in events().iter().zip(expected_webhooks()) {
        let mut got = format::webhook_json(event, at, Some("nas"));
        assert_eq!(got["time"], "2026-01-01T00:00:01Z");
        got.as_object_mut().unwrap().remove("time");
        assert_eq!(got, want);
    }
    // The host is null when unknown.
    assert_eq!(
        format::webhook_json(&events()[0], at, None)["host"],
        serde_json::Value::Null
    );
    // A first address, and the other remediation outcomes, in words.
    let first = Event::IpChanged(IpChange {
        family: Family::Ipv6,
        old: None,
        new: ip("2001:db8::1"),
    });
    assert_eq!(first.summary(), "public IPv6 address is 2001:db8::1");
    assert_eq!(
        format::webhook_json(&first, at, None)["data"]["old"],
        json!(null)
    );
    let Event::Remediation(r) = &events()[2] else {
        panic!()
    };
    let done = Event::Remediation(RemediationEvent {
        step: RemediationStep::Start,
        outcome: RemediationOutcome::Done,
        reason: None,
        ..r.clone()
    });
    assert_eq!(
        done.summary(),
        "instance 616516 (web-1) on indigo: answers again after start"
    );
    let failed = Event::Remediation(RemediationEvent {
        step: RemediationStep::HardReboot,
        outcome: RemediationOutcome::Failed,
        reason: Some("HTTP 409".into()),
        ..r.clone()
    });
    assert_eq!(
        failed.summary(),
        "instance 616516 (web-1) on indigo: hard reboot failed (HTTP 409)"
    );
    assert_eq!(
        format::webhook_json(&failed, at, None)["data"]["step"],
        "hard_reboot"
    );
}

#[test]
fn ntfy_messages_have_a_title_a_priority_and_tags() {
    let url: Url = format!("https://ntfy.sh/{TOPIC}").parse().unwrap();
    let want = [
        ("Public address changed", "2", "globe_with_meridians"),
        ("Firewall updated", "2", "shield"),
        ("Restarting an instance", "3", "wrench"),
        ("Gave up on an instance", "5", "rotating_light"),
        ("Sync failing", "4", "warning"),
        ("Sync recovered", "3", "white_check_mark"),
    ];
    for (event, (title, priority, tag)) in events().iter().zip(want) {
        let r = format::ntfy(&url, event, Some("nas"), None, &[]);
        assert_eq!(r.url, url);
        assert_eq!(r.content_type, "text/plain; charset=utf-8");
        assert_eq!(
            r.headers,
            [
                ("Title", format!("dynwall on nas: {title}")),
                ("Priority", priority.to_string()),
                ("Tags", tag.to_string()),
            ]
        );
        assert_eq!(String::from_utf8(r.body).unwrap(), event.summary());
    }
    // The configured priority wins; configured tags follow the event's; a host that a header
    // cannot carry as it is loses those characters.
    let r = format::ntfy(
        &url,
        &events()[0],
        Some("nas-ü\r\n"),
        Some(1),
        &["house".into()],
    );
    assert_eq!(
        r.headers,
        [
            (
                "Title",
                "dynwall on nas-: Public address changed".to_string()
            ),
            ("Priority", "1".to_string()),
            ("Tags", "globe_with_meridians,house".to_string()),
        ]
    );
    let r = format::ntfy(&url, &events()[0], None, None, &[]);
    assert_eq!(r.headers[0].1, "dynwall: Public address changed");
    // Debug shows the request without the topic.
    assert!(!format!("{r:?}").contains(TOPIC), "{r:?}");
}

#[test]
fn healthchecks_pings_are_start_success_and_fail() {
    for base in [
        format!("https://hc-ping.com/{PING}"),
        format!("https://hc-ping.com/{PING}/"),
    ] {
        let url: Url = base.parse().unwrap();
        let start = format::healthchecks(&url, &Ping::Start);
        assert_eq!(
            start.url.as_str(),
            format!("https://hc-ping.com/{PING}/start")
        );
        assert!(start.body.is_empty());
        let ok = format::healthchecks(&url, &Ping::Success);
        assert_eq!(ok.url, url);
        let fail = format::healthchecks(&url, &Ping::Fail("HTTP 503".into()));
        assert_eq!(
            fail.url.as_str(),
            format!("https://hc-ping.com/{PING}/fail")
        );
        assert_eq!(fail.body, b"HTTP 503");
    }
    // A ping key and slug, with a query: the suffix goes on the path.
    let url: Url = "https://hc-ping.com/KEY/dynwall?create=1".parse().unwrap();
    assert_eq!(
        format::healthchecks(&url, &Ping::Start).url.as_str(),
        "https://hc-ping.com/KEY/dynwall/start?create=1"
    );
    // A long error is cut to a short body on a character boundary.
    let long = "é".repeat(2000);
    let body = format::healthchecks(&url, &Ping::Fail(long)).body;
    assert!(body.len() <= format::FAIL_BODY_MAX, "{}", body.len());
    assert!(String::from_utf8(body).unwrap().ends_with('…'));
}

#[test]
fn answers_are_judged_retry_or_refused() {
    let connect = HttpFailure::Connect {
        host: "ntfy.sh".into(),
        port: 443,
        reason: "connection refused".into(),
    };
    let tls = HttpFailure::Tls {
        host: "ntfy.sh".into(),
        problem: "certificate of ntfy.sh has expired".into(),
    };
    assert_eq!(judge(&Ok(200)), Verdict::Delivered);
    assert_eq!(judge(&Ok(204)), Verdict::Delivered);
    for s in [408, 429, 500, 502, 503] {
        assert_eq!(judge(&Ok(s)), Verdict::Retry(format!("HTTP {s}")));
    }
    assert_eq!(
        judge(&Err(connect)),
        Verdict::Retry("cannot connect to ntfy.sh:443: connection refused".into())
    );
    assert_eq!(
        judge(&Err(tls)),
        Verdict::Refused("TLS: certificate of ntfy.sh has expired".into())
    );
    for (s, words) in [
        (301, "redirects elsewhere"),
        (401, "is the token right"),
        (403, "is the token right"),
        (404, "is the URL right?"),
        (413, "HTTP 413"),
    ] {
        match judge(&Ok(s)) {
            Verdict::Refused(why) => assert!(why.contains(words), "{s}: {why}"),
            other => panic!("{s}: {other:?}"),
        }
    }
}

/// A transport answering from a script, noting when each attempt came.
struct Scripted {
    answers: StdMutex<Vec<Result<u16, HttpFailure>>>,
    at: StdMutex<Vec<Instant>>,
}

impl Scripted {
    fn new(mut answers: Vec<Result<u16, HttpFailure>>) -> Arc<Scripted> {
        answers.reverse();
        Arc::new(Scripted {
            answers: StdMutex::new(answers),
            at: StdMutex::new(Vec::new()),
        })
    }

    /// Seconds after `t0` of each attempt.
    fn times(&self, t0: Instant) -> Vec<u64> {
        self.at
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.duration_since(t0).as_secs())
            .collect()
    }
}

#[async_trait]
impl Transport for Scripted {
    async fn send(&self, _request: &format::Request) -> Result<u16, HttpFailure> {
        self.at.lock().unwrap().push(Instant::now());
        self.answers.lock().unwrap().pop().unwrap_or(Ok(200))
    }
}

fn request() -> format::Request {
    format::healthchecks(
        &format!("https://hc-ping.com/{PING}").parse().unwrap(),
        &Ping::Success,
    )
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_and_are_bounded() {
    let stop = CancellationToken::new();
    // Always 503: four attempts, 2 s, 10 s and 30 s apart, then given up.
    let t = Scripted::new(vec![Ok(503); 10]);
    let t0 = Instant::now();
    let err = deliver(t.as_ref(), &request(), &stop).await.unwrap_err();
    assert_eq!(err.attempts, MAX_ATTEMPTS);
    assert_eq!(err.reason, "HTTP 503");
    assert_eq!(t.times(t0), [0, 2, 12, 42]);
    assert_eq!(
        RETRY_DELAYS.iter().sum::<Duration>(),
        Duration::from_secs(42)
    );

    // A blip: delivered at the second attempt.
    let t = Scripted::new(vec![Ok(502), Ok(200)]);
    let t0 = Instant::now();
    assert_eq!(deliver(t.as_ref(), &request(), &stop).await, Ok(2));
    assert_eq!(t.times(t0), [0, 2]);

    // Refused: no second attempt.
    let t = Scripted::new(vec![Ok(403)]);
    let err = deliver(t.as_ref(), &request(), &stop).await.unwrap_err();
    assert_eq!(err.attempts, 1);
    assert!(!err.stopped);

    // Stopping ends a pause at once.
    let t = Scripted::new(vec![Ok(503); 10]);
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        stopper.cancel();
    });
    let t0 = Instant::now();
    let err = deliver(t.as_ref(), &request(), &stop).await.unwrap_err();
    assert!(err.stopped);
    assert_eq!(t0.elapsed(), Duration::from_secs(5));
}

fn config_with(notify: &str) -> Config {
    let text = format!(
        "[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n\
         [[firewall]]\ntemplate = 1\ninstances = []\n{notify}"
    );
    Config::parse(&text, Path::new("/x/dynwall.toml"), &HashMap::new()).unwrap()
}

/// A webhook, a ntfy topic (both with the token) and a healthchecks check on `receiver`.
fn three_notifiers(receiver: &NotifyReceiver) -> Config {
    config_with(&format!(
        r#"
[[notify]]
kind = "webhook"
url = "{hook}"
token = "{TOKEN}"

[[notify]]
kind = "ntfy"
url = "{topic}"
token = "{TOKEN}"
tags = ["house"]

[[notify]]
kind = "healthchecks"
url = "{ping}"
"#,
        hook = receiver.url("/hooks/dynwall?key=hook-secret"),
        topic = receiver.url(&format!("/{TOPIC}")),
        ping = receiver.url(&format!("/{PING}")),
    ))
}

async fn wait_for(receiver: &NotifyReceiver, n: usize) -> Vec<Received> {
    tokio::time::timeout(PATIENCE, receiver.wait_for(n))
        .await
        .expect("the notifications arrive")
}

#[tokio::test]
async fn every_event_reaches_every_kind_of_notifier() {
    let receiver = NotifyReceiver::start().await.unwrap();
    receiver.require_token(TOKEN);
    let cfg = three_notifiers(&receiver);
    let n = Notifier::start(&cfg.notify, Some("nas".into()), Metrics::disabled()).unwrap();

    for e in events() {
        n.notify(&e);
    }
    let got = wait_for(&receiver, 12).await;
    let hooks: Vec<&Received> = got.iter().filter(|r| r.path == "/hooks/dynwall").collect();
    let pushes: Vec<&Received> = got
        .iter()
        .filter(|r| r.path == format!("/{TOPIC}"))
        .collect();
    assert_eq!((hooks.len(), pushes.len()), (6, 6), "{got:?}");
    for (r, want) in hooks.iter().zip(expected_webhooks()) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.query, "key=hook-secret");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert!(r.header("user-agent").unwrap().starts_with("dynwall/"));
        let mut doc = r.json();
        doc.as_object_mut().unwrap().remove("time");
        assert_eq!(doc, want);
    }
    for (r, e) in pushes.iter().zip(events()) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.text(), e.summary());
        assert_eq!(
            r.header("title"),
            Some(format!("dynwall on nas: {}", e.title()).as_str())
        );
        assert!(r.header("tags").unwrap().ends_with(",house"));
        assert!(r.header("priority").is_some());
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    // Nothing went to the healthchecks check: it is pinged per cycle, not sent events.
    assert!(got.iter().all(|r| !r.path.contains(PING)));
    // No secret in any payload: not the token, not the URLs' secrets.
    for r in &got {
        for secret in [TOKEN, "hook-secret", TOPIC, PING] {
            assert!(!r.text().contains(secret), "{secret} in {}", r.text());
        }
    }
    n.close(PATIENCE).await;
    assert_eq!(n.last_failure(), None);
}

#[tokio::test]
async fn cycles_ping_healthchecks_and_failing_is_sent_on_each_edge() {
    let receiver = NotifyReceiver::start().await.unwrap();
    let cfg = config_with(&format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\nevents = [\"failing\"]\n\
         [[notify]]\nkind = \"healthchecks\"\nurl = \"{}\"\n",
        receiver.url("/hook"),
        receiver.url(&format!("/{PING}")),
    ));
    let n = Notifier::start(&cfg.notify, None, Metrics::disabled()).unwrap();
    let mut streak = FailureStreak::default();

    // First cycle: /start and success.
    n.cycle_started();
    n.cycle_finished(&mut streak, Ok(()), 1000);
    let got = wait_for(&receiver, 2).await;
    assert_eq!(got[0].path, format!("/{PING}/start"));
    assert_eq!(got[1].path, format!("/{PING}"));
    assert_eq!(got[1].header("authorization"), None);

    // The same outcome within the period: no ping. A failure: /fail at once, with the error.
    n.cycle_started();
    n.cycle_finished(&mut streak, Ok(()), 1060);
    n.cycle_started();
    n.cycle_finished(&mut streak, Err("no usable public IPv4 address"), 1120);
    let got = wait_for(&receiver, 3).await;
    assert_eq!(got[2].path, format!("/{PING}/fail"));
    assert_eq!(got[2].text(), "no usable public IPv4 address");

    // A second failed cycle: `failing`, once; then the recovery, once.
    n.cycle_finished(&mut streak, Err("still no address"), 1240);
    n.cycle_finished(&mut streak, Err("still no address"), 1480);
    n.cycle_finished(&mut streak, Ok(()), 1600);
    // 2 more pings (the /fail above, the recovery) and 2 webhooks (`failing`, recovered).
    wait_for(&receiver, 6).await;
    n.close(PATIENCE).await;
    let got: Vec<_> = receiver
        .received()
        .into_iter()
        .filter(|r| r.path == "/hook")
        .collect();
    let states: Vec<_> = got
        .iter()
        .map(|r| r.json()["data"]["state"].clone())
        .collect();
    assert_eq!(states, [json!("failing"), json!("recovered")]);
    assert_eq!(got[0].json()["data"]["error"], "still no address");
    assert_eq!(got[0].json()["data"]["since"], "1970-01-01T00:18:40Z");
    assert_eq!(got[1].json()["data"]["cycles"], 3);
    // And healthchecks heard of the recovery.
    let pings: Vec<_> = receiver
        .received()
        .into_iter()
        .filter(|r| r.path.contains(PING))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        pings,
        [
            format!("/{PING}/start"),
            format!("/{PING}"),
            format!("/{PING}/fail"),
            format!("/{PING}"),
        ]
    );
}

#[tokio::test]
async fn a_refused_token_is_remembered_and_logged_without_secrets() {
    let (logs, _guard) = Logs::capture();
    let receiver = NotifyReceiver::start().await.unwrap();
    receiver.require_token("tk_another");
    let cfg = config_with(&format!(
        "[[notify]]\nkind = \"ntfy\"\nurl = \"{}\"\ntoken = \"{TOKEN}\"\n",
        receiver.url(&format!("/{TOPIC}"))
    ));
    let n = Notifier::start(&cfg.notify, None, Metrics::disabled()).unwrap();
    n.notify(&events()[0]);
    n.close(PATIENCE).await;
    // Refused: one attempt, no retry.
    assert_eq!(receiver.received().len(), 1);
    let failure = n.last_failure().expect("the failure is remembered");
    let addr = receiver.addr();
    assert_eq!(
        failure.notifier,
        format!("notify[0] ntfy http://{addr}/***")
    );
    assert_eq!(failure.event, "ip_changed");
    assert_eq!(failure.attempts, 1);
    assert_eq!(
        failure.to_string(),
        format!(
            "notify[0] ntfy http://{addr}/***: ip_changed not delivered after 1 attempt: \
             HTTP 403: refused; is the token right, and allowed to write there?"
        )
    );
    let text = logs.text();
    assert!(text.contains("notification not delivered"), "{text}");
    assert!(text.contains(&format!("http://{addr}/***")), "{text}");
    for secret in [TOKEN, TOPIC] {
        assert!(!text.contains(secret), "{secret} in {text}");
        assert!(!format!("{n:?}").contains(secret));
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_notifier_never_delays_the_caller_and_is_retried_then_given_up() {
    let (logs, _guard) = Logs::capture();
    // A port nobody listens on.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let cfg = config_with(&format!(
        "[[notify]]\nkind = \"ntfy\"\nurl = \"http://{addr}/{TOPIC}\"\n"
    ));
    let metrics = Metrics::new();
    let n = Notifier::start(&cfg.notify, None, metrics.clone()).unwrap();
    let t0 = Instant::now();
    n.notify(&events()[0]);
    // The caller is back at once: no time passed.
    assert_eq!(t0.elapsed(), Duration::ZERO);
    // The attempts go on in the background: 4, over the 42 s of backoff.
    n.close(Duration::from_secs(600)).await;
    assert!(
        t0.elapsed() >= Duration::from_secs(42),
        "{:?}",
        t0.elapsed()
    );
    let failure = n.last_failure().unwrap();
    assert_eq!(failure.attempts, MAX_ATTEMPTS);
    assert_eq!(
        failure.error,
        format!(
            "cannot connect to 127.0.0.1:{}: connection refused",
            addr.port()
        )
    );
    assert!(metrics.encode().contains(
        "dynwall_notifications_total{notifier=\"notify[0]\",kind=\"ntfy\",outcome=\"failed\"} 1"
    ));
    let text = logs.text();
    assert_eq!(
        text.matches("notification not delivered").count(),
        1,
        "{text}"
    );
    assert!(!text.contains(TOPIC), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_notifier_fills_its_bounded_queue_and_nothing_else() {
    let (logs, _guard) = Logs::capture();
    let receiver = NotifyReceiver::start().await.unwrap();
    receiver.hang(true);
    let healthy = NotifyReceiver::start().await.unwrap();
    let cfg = config_with(&format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\ntimeout = \"5s\"\n\
         [[notify]]\nkind = \"webhook\"\nurl = \"{}\"\nevents = [\"gave_up\"]\n",
        receiver.url("/hook"),
        healthy.url("/hook"),
    ));
    let metrics = Metrics::new();
    let n = Notifier::start(&cfg.notify, None, metrics.clone()).unwrap();
    let t0 = Instant::now();
    // Let the first request reach the receiver and hang there. (Time is paused: a bound on
    // this wait would only be virtual, and retries would reach the receiver anyway.)
    n.notify(&events()[0]);
    receiver.wait_for(1).await;
    let busy_since = Instant::now();
    for _ in 0..100 {
        n.notify(&events()[1]);
    }
    // 100 events queued behind a hanging request, and the caller never waited.
    assert_eq!(busy_since.elapsed(), Duration::ZERO);
    let dropped = 100 - QUEUE_CAPACITY;
    assert!(metrics.encode().contains(&format!(
        "dynwall_notifications_total{{notifier=\"notify[0]\",kind=\"webhook\",outcome=\"dropped\"}} {dropped}"
    )));
    let text = logs.text();
    assert_eq!(text.matches("dropping the oldest").count(), 1, "{text}");
    // Another notifier is not held up by this one.
    n.notify(&events()[3]);
    let got = healthy.wait_for(1).await;
    assert_eq!(got[0].json()["event"], "gave_up");
    // Stopping waits no longer than the grace period, hanging receiver or not.
    n.close(Duration::from_secs(3)).await;
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert!(logs.text().contains("stopping with notifications not sent"));
}

#[tokio::test]
async fn a_disabled_notifier_and_an_unread_url_send_nothing() {
    let n = Notifier::disabled();
    n.notify(&events()[0]);
    n.cycle_started();
    n.cycle_finished(&mut FailureStreak::default(), Ok(()), 1);
    n.close(Duration::from_secs(1)).await;
    assert_eq!(n.last_failure(), None);

    let dir = tempfile::tempdir().unwrap();
    let text = "[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n\
                [[firewall]]\ntemplate = 1\ninstances = []\n\
                [[notify]]\nkind = \"healthchecks\"\nurl_file = \"missing\"\n";
    let cfg = Config::load_without_secrets(&write(&dir, text), &HashMap::new()).unwrap();
    let n = Notifier::start(&cfg.notify, None, Metrics::disabled()).unwrap();
    assert_eq!(format!("{n:?}"), "Notifier { sinks: [] }");
}

fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let p = dir.path().join("dynwall.toml");
    std::fs::write(&p, text).unwrap();
    p
}
