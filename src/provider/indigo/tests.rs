//! The client's request policy against the simulator: quota waits, tokens, retries.

use std::time::{Duration, SystemTime};

use dynwall_sim::{BadToken, Endpoint, IndigoSim, PowerState, SimBuilder};
use tokio_util::sync::CancellationToken;

use super::IndigoClient;
use crate::config::{IndigoConfig, Secret};
use crate::provider::{Power, ProviderError};

fn builder() -> SimBuilder {
    IndigoSim::builder()
        .credentials("k", "s")
        .quota(1000, Duration::from_secs(60))
        .instance(1, "web-1", "127.0.0.1", PowerState::Running)
}

fn client(sim: &IndigoSim) -> IndigoClient {
    let cfg = IndigoConfig {
        endpoint: sim.url().parse().unwrap(),
        api_key: Secret::new("k"),
        api_secret: Secret::new("s"),
        timeout: Duration::from_secs(5),
    };
    IndigoClient::new(&cfg, CancellationToken::new()).unwrap()
}

fn statuses(sim: &IndigoSim, ep: Endpoint) -> Vec<u16> {
    sim.call_log()
        .into_iter()
        .filter(|c| c.endpoint == ep)
        .map(|c| c.status)
        .collect()
}

#[tokio::test]
async fn a_429_whose_reset_lies_beyond_a_window_fails_at_once() {
    let sim = builder().start().await.unwrap();
    let c = client(&sim);
    c.list_instances().await.unwrap();
    let year_9999 = SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    sim.set_quota_reset(Some(year_9999));
    sim.fail_next_on(Endpoint::InstanceList, 1, 429);
    let started = std::time::Instant::now();
    let e = c.list_instances().await.unwrap_err();
    assert!(matches!(e, ProviderError::Quota { .. }), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no wait for a reset that far"
    );
    assert!(e.to_string().contains("resets only in"), "{e}");
}

#[tokio::test]
async fn a_429_with_a_near_reset_waits_for_it_and_succeeds() {
    let sim = builder().start().await.unwrap();
    let c = client(&sim);
    c.list_instances().await.unwrap();
    sim.set_quota_reset(Some(SystemTime::now() + Duration::from_millis(1500)));
    sim.fail_next_on(Endpoint::InstanceList, 1, 429);
    let started = std::time::Instant::now();
    c.list_instances().await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(statuses(&sim, Endpoint::InstanceList), [200, 429, 200]);
}

#[tokio::test]
async fn the_token_is_checked_after_the_quota_wait_not_before() {
    // Three requests per 4 s window; tokens live 3 s. The fourth request waits for the window
    // to reset, long enough for the token to expire meanwhile: a fresh one is fetched after the
    // wait, never a stale one sent (no 401).
    let sim = builder()
        .quota(3, Duration::from_secs(4))
        .token_lifetime(Duration::from_secs(3))
        .start()
        .await
        .unwrap();
    let c = client(&sim);
    c.list_instances().await.unwrap();
    c.list_instances().await.unwrap();
    c.list_instances().await.unwrap();
    let log = sim.call_log();
    assert!(log.iter().all(|r| r.status != 401), "{log:?}");
    assert!(log.iter().all(|r| r.status != 429), "{log:?}");
    assert_eq!(sim.tokens_issued(), 2);
}

#[tokio::test]
async fn a_token_that_cannot_be_sent_is_dropped_and_fetched_again() {
    let sim = builder().start().await.unwrap();
    let c = client(&sim);
    sim.issue_bad_tokens(1, BadToken::LineBreak);
    c.list_instances().await.unwrap();
    assert_eq!(sim.tokens_issued(), 2);
    assert_eq!(statuses(&sim, Endpoint::InstanceList), [200]);

    // A token the gateway refuses as too large (431) is dropped too.
    let sim = builder().start().await.unwrap();
    let c = client(&sim);
    sim.issue_bad_tokens(1, BadToken::Huge(5000));
    c.list_instances().await.unwrap();
    assert_eq!(sim.tokens_issued(), 2);
    assert_eq!(statuses(&sim, Endpoint::InstanceList), [431, 200]);

    // One that is never usable ends in a clear error, bounded, and the next call starts afresh.
    let sim = builder().start().await.unwrap();
    let c = client(&sim);
    sim.issue_bad_tokens(100, BadToken::LineBreak);
    let e = c.list_instances().await.unwrap_err();
    assert!(e.to_string().contains("token"), "{e}");
    assert!(sim.tokens_issued() <= 4);
    sim.issue_bad_tokens(0, BadToken::LineBreak);
    c.list_instances().await.unwrap();
}

#[tokio::test]
async fn a_refused_token_is_replaced_once_and_a_second_refusal_is_an_auth_error() {
    let sim = builder().start().await.unwrap();
    let c = client(&sim);
    c.list_instances().await.unwrap();
    sim.expire_tokens();
    c.list_instances().await.unwrap();
    assert_eq!(sim.tokens_issued(), 2);
    sim.fail_next_on(Endpoint::InstanceList, 2, 401);
    let e = c.list_instances().await.unwrap_err();
    assert!(matches!(e, ProviderError::Auth { status: 401, .. }), "{e}");
}

#[tokio::test]
async fn concurrent_calls_share_the_budget_without_tripping_spike_arrest() {
    let sim = builder().start().await.unwrap();
    let c = client(&sim);
    let (a, b, d) = tokio::join!(c.list_instances(), c.list_instances(), c.list_instances());
    a.unwrap();
    b.unwrap();
    d.unwrap();
    assert_eq!(sim.throttled(), 0, "{:?}", sim.call_log());
    assert_eq!(sim.tokens_issued(), 1, "one fetch at a time");
}

/// A `tracing` writer collecting everything logged in a test.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_long_quota_wait_is_said_once_at_info_with_its_end() {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Two requests per 7 s window: the token and one list use it up.
    let sim = builder()
        .quota(2, Duration::from_secs(7))
        .start()
        .await
        .unwrap();
    let c = client(&sim);
    c.list_instances().await.unwrap();
    let (a, b) = tokio::join!(c.list_instances(), c.list_instances());
    a.unwrap();
    b.unwrap();
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    let said: Vec<&str> = text.lines().filter(|l| l.contains("waiting")).collect();
    assert_eq!(said.len(), 1, "once for both waiting calls: {text}");
    assert!(said[0].contains("INFO"), "{text}");
    assert!(
        said[0].contains("quota") && said[0].contains("until 20"),
        "reason and end: {text}"
    );
    assert_eq!(sim.throttled(), 0, "{:?}", sim.call_log());
}
