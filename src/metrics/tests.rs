use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::net::NotGlobal;
use crate::resolver::{Answer, Rejection, ResolveError, SourceError};

/// A Prometheus text exposition (format 0.0.4), parsed strictly.
#[derive(Debug, Default)]
struct Exposition {
    /// Family name → (HELP text, TYPE).
    families: BTreeMap<String, (String, String)>,
    /// (name, labels) → value.
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Exposition {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), labels)).copied()
    }

    fn series(&self, name: &str) -> Vec<&BTreeMap<String, String>> {
        self.samples
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, l)| l)
            .collect()
    }

    fn kind(&self, name: &str) -> &str {
        &self.families[name].1
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `text` as the Prometheus text format: HELP and TYPE lines before their samples, one
/// of each per family, valid metric and label names, escaped label values, numeric values, no
/// duplicate series, counters named `_total`.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut help: HashMap<String, String> = HashMap::new();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text"))?;
            if !valid_name(name) || help.insert(name.into(), doc.into()).is_some() {
                return Err(at("bad or repeated HELP"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without type"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at("unknown type"));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(at("counter not named _total"));
            }
            let doc = help.get(name).ok_or_else(|| at("TYPE before HELP"))?;
            if out
                .families
                .insert(name.into(), (doc.clone(), kind.into()))
                .is_some()
            {
                return Err(at("repeated TYPE"));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(at("no value")),
        };
        if !valid_name(name) || !out.families.contains_key(name) {
            return Err(at("sample of an undeclared family"));
        }
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let mut end = None;
            while let Some(&(i, c)) = chars.peek() {
                if c == '}' {
                    end = Some(i);
                    break;
                }
                let key: String = std::iter::from_fn(|| chars.next_if(|(_, c)| *c != '='))
                    .map(|(_, c)| c)
                    .collect();
                let key = key.trim_start_matches(',').to_string();
                if !valid_name(&key) || chars.next().map(|(_, c)| c) != Some('=') {
                    return Err(at("bad label name"));
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(at("label value not quoted"));
                }
                let mut value = String::new();
                loop {
                    match chars.next().map(|(_, c)| c) {
                        Some('\\') => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            _ => return Err(at("bad escape")),
                        },
                        Some('"') => break,
                        Some('\n') | None => return Err(at("unterminated label value")),
                        Some(c) => value.push(c),
                    }
                }
                if labels.insert(key, value).is_some() {
                    return Err(at("repeated label"));
                }
                if chars.peek().map(|(_, c)| *c) == Some(',') {
                    chars.next();
                }
            }
            let end = end.ok_or_else(|| at("labels not closed"))?;
            rest = &body[end + 1..];
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value"))?;
        let value = value.split(' ').next().unwrap_or("");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| at("value is not a number"))?,
        };
        if out
            .samples
            .insert((name.to_string(), labels), value)
            .is_some()
        {
            return Err(at("repeated series"));
        }
    }
    Ok(out)
}

#[test]
fn the_parser_refuses_what_prometheus_refuses() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 1\n";
    let e = parse_exposition(ok).unwrap();
    assert_eq!(e.value("a_total", &[("x", "q\"\\\n")]), Some(1.0));
    for bad in [
        "a_total 1\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total 2\n",
        "# HELP a A.\n# TYPE a counter\na 1\n",
        "# HELP a A.\n# TYPE a gauge\na{x=y} 1\n",
        "# HELP a A.\n# TYPE a gauge\na{x=\"y} 1\n",
        "# HELP a A.\n# TYPE a gauge\na{x=\"y\"} one\n",
        "# HELP a A.\n# TYPE a gauge\na 1",
        "# TYPE a gauge\na 1\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "{bad:?}");
    }
}

const SOURCE_SECRET: &str = "Tk-4f1d";

fn config() -> Config {
    let text = format!(
        r#"
[daemon]
interval = "60s"

[resolver]
quorum = 1
[[resolver.source]]
kind = "http"
url = "https://user:{SOURCE_SECRET}@echo.example/ip?key={SOURCE_SECRET}"
[[resolver.source]]
kind = "command"
command = ["/usr/local/bin/myip", "--token", "{SOURCE_SECRET}"]
[[resolver.source]]
kind = "dns"
family = "ipv6"
server = "[2620:119:35::35]:53"
name = "myip.opendns.com"
record = "AAAA"

[indigo]
api_key = "k"
api_secret = "s"

[[firewall]]
template = 12836
instances = []

[metrics]
listen = "127.0.0.1:9798"

[[notify]]
kind = "ntfy"
url = "https://ntfy.sh/topic-{SOURCE_SECRET}"
"#
    );
    Config::parse(&text, Path::new("/x/dynwall.toml"), &HashMap::new()).unwrap()
}

fn answer(source: &str, verdict: Verdict) -> Answer {
    Answer {
        source: source.to_string(),
        family: AddrFamily::Ipv4,
        latency: Duration::from_millis(20),
        verdict,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Every kind of event, counted once or more.
fn busy_metrics(cfg: &Config) -> Metrics {
    let m = Metrics::new();
    m.configure(cfg);
    let labels: Vec<String> = cfg.resolver.sources.iter().map(|s| s.label()).collect();
    let v4 = Resolution {
        family: AddrFamily::Ipv4,
        quorum: 1,
        answers: vec![
            answer(&labels[0], Verdict::Accepted(ip("81.2.69.160"))),
            answer(
                &labels[1],
                Verdict::Rejected {
                    addr: ip("10.0.0.1"),
                    reason: Rejection::NotGlobal(NotGlobal::Private),
                },
            ),
            answer(
                "a source no longer configured",
                Verdict::Accepted(ip("81.2.69.160")),
            ),
        ],
        outcome: Ok(ip("81.2.69.160")),
    };
    m.resolution(&v4);
    // The address changes: the info series follows, never two at once.
    let mut v4b = v4.clone();
    v4b.outcome = Ok(ip("81.2.69.161"));
    v4b.answers.truncate(1);
    m.resolution(&v4b);
    let v6 = Resolution {
        family: AddrFamily::Ipv6,
        quorum: 1,
        answers: vec![Answer {
            family: AddrFamily::Ipv6,
            ..answer(
                &labels[2],
                Verdict::Failed(SourceError::Status { status: 503 }),
            )
        }],
        outcome: Err(ResolveError::AllFailed),
    };
    m.resolution(&v6);
    let indigo = CloudName::indigo();
    m.api_request(&indigo, "accesstokens", ApiStatus::Http(201));
    m.api_request(&indigo, "gettemplate", ApiStatus::Http(200));
    m.api_request(&indigo, "gettemplate", ApiStatus::Http(200));
    m.api_request(&indigo, "updatefirewall", ApiStatus::Http(429));
    m.api_request(&indigo, "updatefirewall", ApiStatus::NoAnswer);
    m.quota_remaining(&indigo, 4);
    m.quota_waited(&indigo, Duration::from_millis(1500));
    m.firewall_written(&indigo, &FirewallId("12836".into()));
    let web = InstanceId("616516".into());
    m.probed(&indigo, &web, ProbeResult::Down);
    m.probed(&indigo, &web, ProbeResult::Down);
    m.remediation(
        &indigo,
        &web,
        RemediationStep::Stop,
        RemediationOutcome::Requested,
    );
    m.given_up(&indigo, &web, true);
    m.notifier(&cfg.notify[0]);
    m.notification(&cfg.notify[0], NotificationOutcome::Sent);
    m.cycle_finished(Ok(()), 1_767_225_600);
    m
}

#[test]
fn every_series_is_prometheus_text_with_bounded_masked_labels() {
    let cfg = config();
    let m = busy_metrics(&cfg);
    let text = m.encode();
    let e = parse_exposition(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));

    let want = [
        ("dynwall_build_info", "gauge"),
        ("dynwall_cycles_total", "counter"),
        ("dynwall_last_success_timestamp_seconds", "gauge"),
        ("dynwall_last_cycle_timestamp_seconds", "gauge"),
        ("dynwall_healthy", "gauge"),
        ("dynwall_public_address_info", "gauge"),
        ("dynwall_firewall_writes_total", "counter"),
        ("dynwall_api_requests_total", "counter"),
        ("dynwall_api_quota_remaining", "gauge"),
        ("dynwall_api_quota_waits_total", "counter"),
        ("dynwall_api_quota_wait_seconds_total", "counter"),
        ("dynwall_resolver_answers_total", "counter"),
        ("dynwall_probes_total", "counter"),
        ("dynwall_instance_up", "gauge"),
        ("dynwall_remediations_total", "counter"),
        ("dynwall_instance_given_up", "gauge"),
        ("dynwall_notifications_total", "counter"),
    ];
    assert_eq!(
        e.families.keys().collect::<Vec<_>>(),
        {
            let mut names: Vec<_> = want.iter().map(|(n, _)| n.to_string()).collect();
            names.sort();
            names
        }
        .iter()
        .collect::<Vec<_>>()
    );
    for (name, kind) in want {
        assert_eq!(e.kind(name), kind, "{name}");
        assert!(!e.families[name].0.is_empty(), "{name} has no help");
    }

    assert_eq!(
        e.value(
            "dynwall_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(
        e.value("dynwall_cycles_total", &[("outcome", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        e.value("dynwall_cycles_total", &[("outcome", "failed")]),
        Some(0.0)
    );
    assert_eq!(
        e.value("dynwall_last_success_timestamp_seconds", &[]),
        Some(1_767_225_600.0)
    );
    assert_eq!(e.value("dynwall_healthy", &[]), Some(1.0));
    // One address series per family, the current one; the failed IPv6 lookup adds none.
    assert_eq!(e.series("dynwall_public_address_info").len(), 1);
    assert_eq!(
        e.value(
            "dynwall_public_address_info",
            &[("family", "ipv4"), ("address", "81.2.69.161")]
        ),
        Some(1.0)
    );
    assert_eq!(
        e.value(
            "dynwall_api_requests_total",
            &[
                ("cloud", "indigo"),
                ("operation", "gettemplate"),
                ("status", "2xx")
            ]
        ),
        Some(2.0)
    );
    for (op, status) in [
        ("accesstokens", "2xx"),
        ("updatefirewall", "429"),
        ("updatefirewall", "error"),
    ] {
        assert_eq!(
            e.value(
                "dynwall_api_requests_total",
                &[("cloud", "indigo"), ("operation", op), ("status", status)]
            ),
            Some(1.0),
            "{op} {status}"
        );
    }
    assert_eq!(
        e.value("dynwall_api_quota_remaining", &[("cloud", "indigo")]),
        Some(4.0)
    );
    assert_eq!(
        e.value(
            "dynwall_api_quota_wait_seconds_total",
            &[("cloud", "indigo")]
        ),
        Some(1.5)
    );
    assert_eq!(
        e.value(
            "dynwall_firewall_writes_total",
            &[("cloud", "indigo"), ("firewall", "12836")]
        ),
        Some(1.0)
    );
    // Sources: configured ones only, every verdict from the start, secrets masked.
    let sources: Vec<&str> = e
        .series("dynwall_resolver_answers_total")
        .iter()
        .filter(|l| l["verdict"] == "failed")
        .map(|l| l["source"].as_str())
        .collect();
    assert_eq!(sources.len(), 3, "{sources:?}");
    let http = "http https://***@echo.example/ip?key=***";
    assert_eq!(
        e.value(
            "dynwall_resolver_answers_total",
            &[
                ("family", "ipv4"),
                ("source", http),
                ("verdict", "accepted")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        e.value(
            "dynwall_resolver_answers_total",
            &[
                ("family", "ipv4"),
                ("source", "command /usr/local/bin/myip"),
                ("verdict", "rejected")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        e.value(
            "dynwall_resolver_answers_total",
            &[
                ("family", "ipv6"),
                ("source", "dns myip.opendns.com AAAA @[2620:119:35::35]:53"),
                ("verdict", "failed")
            ]
        ),
        Some(1.0)
    );
    let inst = [("cloud", "indigo"), ("instance", "616516")];
    assert_eq!(
        e.value(
            "dynwall_probes_total",
            &[inst[0], inst[1], ("result", "down")]
        ),
        Some(2.0)
    );
    assert_eq!(e.value("dynwall_instance_up", &inst), Some(0.0));
    assert_eq!(e.value("dynwall_instance_given_up", &inst), Some(1.0));
    assert_eq!(
        e.value(
            "dynwall_remediations_total",
            &[inst[0], inst[1], ("step", "stop"), ("outcome", "requested")]
        ),
        Some(1.0)
    );
    for (outcome, n) in [("sent", 1.0), ("failed", 0.0), ("dropped", 0.0)] {
        assert_eq!(
            e.value(
                "dynwall_notifications_total",
                &[
                    ("notifier", "notify[0]"),
                    ("kind", "ntfy"),
                    ("outcome", outcome)
                ]
            ),
            Some(n)
        );
    }
    // No secret anywhere: not the source's password, query token or command argument, not the
    // ntfy topic, not the API key.
    assert!(!text.contains(SOURCE_SECRET), "{text}");
    assert!(!text.contains("topic"), "{text}");
}

#[test]
fn disabled_metrics_count_nothing() {
    let m = Metrics::disabled();
    m.configure(&config());
    m.cycle_finished(Ok(()), 1);
    m.api_request(&CloudName::indigo(), "x", ApiStatus::Http(200));
    assert_eq!(m.encode(), "");
    assert!(m.health().is_err());
}

#[tokio::test(start_paused = true)]
async fn health_follows_the_healthcheck_rule() {
    let m = Metrics::new();
    m.configure(&config());
    assert_eq!(m.health(), Err("no cycle has finished yet".into()));
    m.cycle_finished(Ok(()), 1000);
    assert_eq!(m.health(), Ok(()));
    tokio::time::advance(Duration::from_secs(180)).await;
    assert_eq!(m.health(), Ok(()));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        m.health(),
        Err("last cycle finished 182s ago (limit 180s)".into())
    );
    m.cycle_finished(Err("no usable public IPv4 address: sources disagree"), 1200);
    assert_eq!(
        m.health(),
        Err("last cycle failed: no usable public IPv4 address: sources disagree".into())
    );
    let e = parse_exposition(&m.encode()).unwrap();
    assert_eq!(e.value("dynwall_healthy", &[]), Some(0.0));
    assert_eq!(
        e.value("dynwall_last_success_timestamp_seconds", &[]),
        Some(1000.0)
    );
    assert_eq!(
        e.value("dynwall_last_cycle_timestamp_seconds", &[]),
        Some(1200.0)
    );
}

/// Sends `request` and reads the whole answer (the server closes the connection).
async fn exchange(addr: std::net::SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_string(), body.to_string())
}

#[tokio::test]
async fn metrics_and_health_over_loopback() {
    let cfg = config();
    let shutdown = CancellationToken::new();
    let m = Metrics::new();
    m.configure(&cfg);
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), m.clone(), &shutdown)
        .await
        .unwrap();
    let addr = server.local_addr();

    // Before the first cycle: 503, as `dynwall healthcheck` would say.
    let (status, _, body) = exchange(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "unhealthy: no cycle has finished yet\n")
    );

    // A slow scraper that sent half a request holds its own connection, and nobody else.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /metr").await.unwrap();

    let busy = busy_metrics(&cfg);
    m.cycle_finished(Ok(()), 1_767_225_600);
    let (status, _, body) = exchange(addr, "GET /healthz HTTP/1.1\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "healthy\n"));

    // A real client, as a scraper would.
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    let e = parse_exposition(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    assert_eq!(
        e.value("dynwall_cycles_total", &[("outcome", "ok")]),
        Some(1.0)
    );
    assert_eq!(e.kind("dynwall_resolver_answers_total"), "counter");
    drop(busy);

    let (status, head, body) = exchange(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, 200);
    assert!(head.contains("Content-Length: "), "{head}");
    assert_eq!(body, "");
    let (status, head, _) = exchange(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET, HEAD"), "{head}");
    assert_eq!(exchange(addr, "GET /secrets HTTP/1.1\r\n\r\n").await.0, 404);
    assert_eq!(exchange(addr, "hello\r\n\r\n").await.0, 400);
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(server::MAX_REQUEST)
    );
    assert_eq!(exchange(addr, &huge).await.0, 431);

    // The slow scraper finishes its request late and still gets its answer.
    slow.write_all(b"ics HTTP/1.1\r\n\r\n").await.unwrap();
    let mut raw = String::new();
    slow.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");

    // Stops on the shutdown token, even with a connection open, and frees the port.
    let _idle = TcpStream::connect(addr).await.unwrap();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), server.stop())
        .await
        .expect("the endpoint stops on cancellation");
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_taken_address_is_an_error_naming_the_key() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = MetricsServer::start(addr, Metrics::new(), &CancellationToken::new())
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "metrics.listen: cannot listen on {addr}: address in use (by another program, or \
             another dynwall)"
        )
    );
}
