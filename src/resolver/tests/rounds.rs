//! Rounds over several sources: concurrency, timeouts, quorum per family, the memory of
//! failing sources, and building sources from the config.

use super::*;

/// An in-memory source for round-level tests; its answer can be changed between rounds.
struct Fake {
    label: String,
    family: Family,
    delay: Duration,
    answer: Arc<std::sync::Mutex<Result<IpAddr, SourceError>>>,
}

#[async_trait::async_trait]
impl Resolver for Fake {
    fn label(&self) -> &str {
        &self.label
    }
    fn family(&self) -> Family {
        self.family
    }
    async fn lookup(&self) -> Result<IpAddr, SourceError> {
        tokio::time::sleep(self.delay).await;
        self.answer.lock().unwrap().clone()
    }
}

fn fake_in(family: Family, name: &str, ms: u64, answer: &str) -> Box<dyn Resolver> {
    Box::new(Fake {
        label: format!("fake {name}"),
        family,
        delay: Duration::from_millis(ms),
        answer: Arc::new(std::sync::Mutex::new(Ok(ip(answer)))),
    })
}

fn fake(name: &str, ms: u64, answer: &str) -> Box<dyn Resolver> {
    fake_in(Family::Ipv4, name, ms, answer)
}

fn http(server: &testserver::Running) -> Box<dyn Resolver> {
    Box::new(HttpResolver::new(
        build_client(Duration::from_secs(2), Family::Ipv4).unwrap(),
        server.url(),
        Family::Ipv4,
    ))
}

#[tokio::test]
async fn resolve_runs_sources_concurrently() {
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(
            TestServer::ok(A)
                .delay(Duration::from_millis(300))
                .start()
                .await,
        );
    }
    let sources = servers.iter().map(http).collect();
    let set = ResolverSet::new(sources, 3, Duration::from_secs(2));
    let start = Instant::now();
    let r = set.resolve(Family::Ipv4).await;
    let elapsed = start.elapsed();
    assert_eq!(r.outcome, Ok(ip(A)));
    assert_eq!(r.answers.len(), 3);
    // Sequential lookups would take 900 ms; concurrent ones about 300 ms.
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(600),
        "{elapsed:?} is closer to sequential"
    );
}

#[tokio::test]
async fn a_slow_source_times_out() {
    let slow = TestServer::ok(A)
        .delay(Duration::from_secs(3))
        .start()
        .await;
    let fast = TestServer::ok(A).start().await;
    let set = ResolverSet::new(
        vec![http(&slow), http(&fast)],
        1,
        Duration::from_millis(200),
    );
    let start = Instant::now();
    let r = set.resolve(Family::Ipv4).await;
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        r.answers[0].verdict,
        Verdict::Failed(SourceError::Timeout {
            after: Duration::from_millis(200)
        })
    );
    assert_eq!(r.answers[1].verdict, Verdict::Accepted(ip(A)));
    assert_eq!(r.outcome, Ok(ip(A)));
}

#[tokio::test]
async fn non_global_answers_are_rejected_with_their_reason() {
    let cases = [
        ("192.168.1.20", Rejection::NotGlobal(NotGlobal::Private)),
        ("100.64.12.34", Rejection::NotGlobal(NotGlobal::SharedCgnat)),
        ("127.0.0.1", Rejection::NotGlobal(NotGlobal::Loopback)),
        (
            "203.0.113.9",
            Rejection::NotGlobal(NotGlobal::Documentation),
        ),
        ("2a00:1450:4001:80b::200e", WRONG_FAMILY),
    ];
    let mut servers = Vec::new();
    for (body, _) in cases {
        servers.push(TestServer::ok(&format!("{body}\n")).start().await);
    }
    let sources = servers.iter().map(http).collect();
    let set = ResolverSet::new(sources, 1, Duration::from_secs(2));
    let r = set.resolve(Family::Ipv4).await;
    assert_eq!(r.outcome, Err(ResolveError::AllFailed));
    assert!(!r.any_accepted());
    for (answer, (body, reason)) in r.answers.iter().zip(cases) {
        assert_eq!(
            answer.verdict,
            Verdict::Rejected {
                addr: ip(body),
                reason
            },
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_rejected_answer_does_not_help_reach_quorum() {
    let good = TestServer::ok(A).start().await;
    let private = TestServer::ok("10.0.0.1").start().await;
    let set = ResolverSet::new(vec![http(&good), http(&private)], 2, Duration::from_secs(2));
    let r = set.resolve(Family::Ipv4).await;
    assert_eq!(
        r.outcome,
        Err(ResolveError::NoQuorum {
            needed: 2,
            best: Some((ip(A), 1))
        })
    );
    assert!(r.any_accepted());
}

#[tokio::test]
async fn resolve_until_settled_stops_waiting_once_settled() {
    let sources = vec![fake("a", 10, A), fake("slow", 1500, B), fake("b", 20, A)];
    let set = ResolverSet::new(sources, 2, Duration::from_secs(3));
    let start = Instant::now();
    let r = set.resolve_until_settled(Family::Ipv4).await;
    assert!(
        start.elapsed() < Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(r.outcome, Ok(ip(A)));
    let labels: Vec<&str> = r.answers.iter().map(|a| a.source.as_str()).collect();
    assert_eq!(labels, ["fake a", "fake b"]);
}

#[tokio::test]
async fn resolve_until_settled_waits_while_the_outcome_can_change() {
    // A and B disagree after two answers; the third decides.
    let sources = vec![fake("a", 10, A), fake("b", 20, B), fake("late", 200, A)];
    let set = ResolverSet::new(sources, 2, Duration::from_secs(3));
    let r = set.resolve_until_settled(Family::Ipv4).await;
    assert_eq!(r.outcome, Ok(ip(A)));
    assert_eq!(r.answers.len(), 3);
}

#[tokio::test]
async fn resolve_waits_for_all_and_keeps_configuration_order() {
    let sources = vec![
        fake("first", 120, A),
        fake("second", 10, A),
        fake("third", 60, A),
    ];
    let set = ResolverSet::new(sources, 2, Duration::from_secs(3));
    let r = set.resolve(Family::Ipv4).await;
    let labels: Vec<&str> = r.answers.iter().map(|a| a.source.as_str()).collect();
    assert_eq!(labels, ["fake first", "fake second", "fake third"]);
    assert_eq!(r.outcome, Ok(ip(A)));
}

#[test]
fn rounds_can_run_on_any_worker_thread() {
    fn is_send<T: Send>(_: &T) {}
    let set = ResolverSet::new(vec![fake("a", 0, A)], 1, Duration::from_secs(1));
    is_send(&set.resolve(Family::Ipv4));
    is_send(&set.resolve_until_settled(Family::Ipv4));
}

#[tokio::test]
async fn each_family_has_its_own_sources_and_quorum() {
    const V6: &str = "2a00:1450:4001:80b::200e";
    let sources = vec![
        fake_in(Family::Ipv4, "a", 5, A),
        fake_in(Family::Ipv6, "six", 5, V6),
        fake_in(Family::Ipv4, "b", 5, A),
        fake_in(Family::Ipv4, "c", 5, A),
        // A v6 source answering over the wrong family is rejected, not counted.
        fake_in(Family::Ipv6, "confused", 5, B),
    ];
    let set = ResolverSet::with_quorum(sources, None, Duration::from_secs(1));
    assert_eq!(set.families(), [Family::Ipv4, Family::Ipv6]);
    assert_eq!((set.quorum(Family::Ipv4), set.quorum(Family::Ipv6)), (2, 2));
    let r4 = set.resolve(Family::Ipv4).await;
    assert_eq!((r4.family, r4.quorum), (Family::Ipv4, 2));
    assert_eq!(r4.outcome, Ok(ip(A)));
    assert_eq!(r4.answers.len(), 3);
    assert_eq!(r4.agreeing(), 3);
    assert!(r4.answers.iter().all(|a| a.family == Family::Ipv4));
    let r6 = set.resolve(Family::Ipv6).await;
    let labels: Vec<&str> = r6.answers.iter().map(|a| a.source.as_str()).collect();
    assert_eq!(labels, ["fake six", "fake confused"]);
    assert_eq!(
        r6.answers[1].verdict,
        Verdict::Rejected {
            addr: ip(B),
            reason: Rejection::WrongFamily {
                got: Family::Ipv4,
                want: Family::Ipv6
            }
        }
    );
    assert_eq!(
        r6.outcome,
        Err(ResolveError::NoQuorum {
            needed: 2,
            best: Some((ip(V6), 1))
        })
    );

    // Without a configured quorum, a family with one source needs that one.
    let set = ResolverSet::with_quorum(
        vec![fake("a", 0, A), fake_in(Family::Ipv6, "six", 0, V6)],
        None,
        Duration::from_secs(1),
    );
    assert_eq!((set.quorum(Family::Ipv4), set.quorum(Family::Ipv6)), (1, 1));
    assert_eq!(set.resolve(Family::Ipv6).await.outcome, Ok(ip(V6)));
    // A configured quorum applies to each family.
    let set = ResolverSet::new(
        vec![fake("a", 0, A), fake_in(Family::Ipv6, "six", 0, V6)],
        2,
        Duration::from_secs(1),
    );
    assert_eq!((set.quorum(Family::Ipv4), set.quorum(Family::Ipv6)), (2, 2));
}

#[tokio::test]
async fn a_family_without_sources_resolves_to_nothing() {
    let set = ResolverSet::new(vec![fake("a", 0, A)], 1, Duration::from_secs(1));
    assert_eq!(set.families(), [Family::Ipv4]);
    let r = set.resolve_until_settled(Family::Ipv6).await;
    assert_eq!(r.outcome, Err(ResolveError::NoSources(Family::Ipv6)));
    assert!(r.answers.is_empty());
}

#[tokio::test]
async fn a_disagreement_names_every_address_and_its_sources() {
    let sources = vec![fake("a", 0, A), fake("liar", 0, C), fake("b", 0, B)];
    let set = ResolverSet::new(sources, 2, Duration::from_secs(1));
    let r = set.resolve(Family::Ipv4).await;
    let e = r.outcome.unwrap_err();
    assert_eq!(
        e.to_string(),
        "sources disagree: 81.2.69.160 from fake a; 81.2.69.161 from fake b; \
         93.184.216.34 from fake liar"
    );
}

#[tokio::test]
async fn a_failing_source_is_logged_once_per_change() {
    let (logs, _guard) = Logs::capture();

    let answer = Arc::new(std::sync::Mutex::new(Err(SourceError::Status {
        status: 503,
    })));
    let set = ResolverSet::new(
        vec![flaky(&answer), fake("steady", 0, A)],
        1,
        Duration::from_secs(1),
    );
    for _ in 0..3 {
        set.resolve(Family::Ipv4).await;
    }
    assert_eq!(set.failing(), ["fake flaky"]);
    let text = logs.text();
    assert_eq!(text.matches("IP source failing").count(), 1, "{text}");
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("HTTP status 503"), "{text}");

    *answer.lock().unwrap() = Ok(ip(A));
    set.resolve(Family::Ipv4).await;
    set.resolve(Family::Ipv4).await;
    assert!(set.failing().is_empty());
    let text = logs.text();
    assert_eq!(text.matches("IP source answers again").count(), 1, "{text}");
    // A rejected answer counts as failing too.
    *answer.lock().unwrap() = Ok(ip("10.0.0.1"));
    set.resolve(Family::Ipv4).await;
    let text = logs.text();
    assert_eq!(text.matches("IP source failing").count(), 2, "{text}");
    assert!(
        text.contains("rejected 10.0.0.1: private address"),
        "{text}"
    );
    // The steady source was never reported.
    assert!(!text.contains("fake steady"), "{text}");
}

/// A source answering `answer` (shared, so a test can change it between runs).
fn flaky(answer: &Arc<std::sync::Mutex<Result<IpAddr, SourceError>>>) -> Box<dyn Resolver> {
    Box::new(Fake {
        label: "fake flaky".into(),
        family: Family::Ipv4,
        delay: Duration::ZERO,
        answer: answer.clone(),
    })
}

#[tokio::test]
async fn persistent_trouble_is_said_once_across_runs_that_share_the_memory() {
    let (logs, _guard) = Logs::capture();
    let answer = Arc::new(std::sync::Mutex::new(Err(SourceError::Status {
        status: 503,
    })));
    let run = |memory: SourceMemory| {
        // A `--once` run: a new set from the config, given the memory the last run left.
        let set = ResolverSet::new(
            vec![flaky(&answer), fake("steady", 0, A)],
            1,
            Duration::from_secs(1),
        )
        .with_memory(memory);
        async move {
            set.resolve_until_settled(Family::Ipv4).await;
            set.memory()
        }
    };

    // Run 1: the failure is news.
    let memory = run(SourceMemory::new()).await;
    assert_eq!(logs.text().matches("IP source failing").count(), 1);
    assert!(memory.is_failing(Family::Ipv4, "fake flaky"));
    // The memory survives the state file.
    let memory: SourceMemory =
        serde_json::from_str(&serde_json::to_string(&memory).unwrap()).unwrap();

    // Runs 2 and 3: the same failure is not said again.
    let memory = run(memory).await;
    let memory = run(memory).await;
    let text = logs.text();
    assert_eq!(text.matches("IP source failing").count(), 1, "{text}");
    assert!(memory.is_failing(Family::Ipv4, "fake flaky"));

    // Run 4: the recovery is news, once.
    *answer.lock().unwrap() = Ok(ip(A));
    let memory = run(memory).await;
    let memory = run(memory).await;
    let text = logs.text();
    assert_eq!(text.matches("IP source answers again").count(), 1, "{text}");
    assert!(memory.is_empty());

    // A run without the memory (the very first one, or one that lost its state) says it again.
    *answer.lock().unwrap() = Err(SourceError::Status { status: 503 });
    run(SourceMemory::new()).await;
    assert_eq!(logs.text().matches("IP source failing").count(), 2);
}

#[tokio::test]
async fn a_memory_forgets_sources_that_are_gone_and_a_quiet_set_says_nothing() {
    let (logs, _guard) = Logs::capture();
    let mut memory = SourceMemory::new();
    memory.record(Family::Ipv4, "fake removed", Some("HTTP status 500"));
    memory.record(Family::Ipv4, "fake steady", Some("HTTP status 500"));
    let set =
        ResolverSet::new(vec![fake("steady", 0, A)], 1, Duration::from_secs(1)).with_memory(memory);
    assert_eq!(set.failing(), ["fake steady"]);
    assert!(!set.memory().is_failing(Family::Ipv4, "fake removed"));

    let answer = Arc::new(std::sync::Mutex::new(Err(SourceError::Status {
        status: 503,
    })));
    let set = ResolverSet::new(vec![flaky(&answer)], 1, Duration::from_secs(1)).quiet();
    set.resolve(Family::Ipv4).await;
    assert_eq!(set.failing(), ["fake flaky"]);
    assert_eq!(logs.text(), "");
}

#[tokio::test]
async fn from_config_builds_every_kind() {
    use super::testfakes::{DnsReply, FakeDns, FakeStun, StunReply};
    use crate::config::{DnsClass, DnsRecord, DnsSource, SourceKind, StunSource, UpnpSource};

    let plain = TestServer::ok(&format!("{A}\n")).start().await;
    let js = TestServer::ok(&format!(r#"{{"sourceip":"{A}"}}"#))
        .start()
        .await;
    let dns = FakeDns::start("127.0.0.1:0", DnsReply::Records(vec![A.into()])).await;
    let stun = FakeStun::start(
        "127.0.0.1:0",
        StunReply::Xor(std::net::SocketAddr::new(ip(A), 40000)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("myip");
    std::fs::write(&script, format!("#!/bin/sh\necho {A}\n")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let v4 = |kind| SourceConfig {
        family: Family::Ipv4,
        kind,
    };
    let cfg = ResolverConfig {
        quorum: None,
        timeout: Duration::from_secs(2),
        sources: vec![
            v4(SourceKind::Http { url: plain.url() }),
            v4(SourceKind::HttpJson {
                url: js.url(),
                field: JsonField::Key("sourceip".into()),
            }),
            v4(SourceKind::Dns(DnsSource {
                server: dns.addr(),
                name: "myip.opendns.com".into(),
                record: DnsRecord::A,
                class: DnsClass::In,
            })),
            v4(SourceKind::Stun(StunSource {
                server: stun.addr().to_string(),
            })),
            v4(SourceKind::Command {
                argv: vec![script.display().to_string()],
            }),
        ],
    };
    let set = ResolverSet::from_config(&cfg).unwrap();
    assert_eq!((set.len(), set.quorum(Family::Ipv4)), (5, 2));
    let labels: Vec<&str> = set.labels().collect();
    let want: Vec<String> = cfg.sources.iter().map(SourceConfig::label).collect();
    assert_eq!(labels, want);
    let r = set.resolve(Family::Ipv4).await;
    assert_eq!(r.outcome, Ok(ip(A)), "{:?}", r.answers);
    assert_eq!(r.agreeing(), 5);

    // The time of one quorum round over these loopback fakes, as the daemon runs it.
    let rounds = 20;
    let mut times: Vec<Duration> = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let r = set.resolve_until_settled(Family::Ipv4).await;
        times.push(start.elapsed());
        assert_eq!(r.outcome, Ok(ip(A)));
    }
    times.sort();
    let all = set.resolve(Family::Ipv4).await;
    println!(
        "quorum round over 5 loopback sources (http, http-json, dns, stun, command): \
         median {:?}, max {:?} until settled; slowest source {:?}",
        times[rounds / 2],
        times[rounds - 1],
        all.answers
            .iter()
            .map(|a| a.latency)
            .max()
            .unwrap_or_default()
    );
    assert!(times[rounds / 2] < Duration::from_millis(500), "{times:?}");

    // Labels of the remaining kinds, which need a router or an interface to answer.
    let more = ResolverConfig {
        quorum: Some(1),
        timeout: Duration::from_secs(1),
        sources: vec![
            v4(SourceKind::Upnp(UpnpSource::Ssdp(
                "239.255.255.250:1900".parse().unwrap(),
            ))),
            v4(SourceKind::Interface {
                name: "eth0".into(),
            }),
        ],
    };
    let set = ResolverSet::from_config(&more).unwrap();
    let labels: Vec<&str> = set.labels().collect();
    assert_eq!(labels, ["upnp ssdp 239.255.255.250:1900", "interface eth0"]);
}

#[tokio::test]
async fn a_family_with_fewer_sources_than_the_quorum_is_still_asked_and_says_why() {
    // The config refuses this for a tracked family; `dynwall ip` still asks an untracked one.
    let http = |url: &str| SourceConfig {
        family: Family::Ipv4,
        kind: crate::config::SourceKind::Http {
            url: url.parse().unwrap(),
        },
    };
    let cfg = ResolverConfig {
        quorum: Some(3),
        timeout: Duration::from_secs(2),
        sources: vec![http("http://127.0.0.1:9/")],
    };
    assert_eq!(
        ResolverSet::from_config(&cfg).unwrap().quorum(Family::Ipv4),
        3
    );
    let zero = ResolverConfig {
        quorum: Some(0),
        ..cfg
    };
    assert!(matches!(
        ResolverSet::from_config(&zero),
        Err(ResolverBuildError::Quorum)
    ));

    let set = ResolverSet::new(
        vec![
            fake("a", 0, A),
            fake_in(Family::Ipv6, "six", 0, "2a00:1450:4001:80b::200e"),
        ],
        2,
        Duration::from_secs(1),
    );
    let r = set.resolve(Family::Ipv6).await;
    assert_eq!(r.answers.len(), 1);
    assert!(r.any_accepted());
    let e = r.outcome.unwrap_err();
    assert_eq!(
        e,
        ResolveError::QuorumUnreachable {
            family: Family::Ipv6,
            quorum: 2,
            sources: 1
        }
    );
    assert_eq!(
        e.to_string(),
        "the quorum of 2 cannot be met: only 1 IPv6 source is configured"
    );
}
