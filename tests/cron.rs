//! `--once` as cron runs it: overlapping runs are safe, and state carries over between runs.

mod common;

use std::time::Duration;

use common::*;
use dynwall_sim::Endpoint;

#[tokio::test]
async fn two_overlapping_once_runs_act_once_and_the_loser_exits_75() {
    let w = World::new().await;
    w.set_ip(NEW_IP);
    // A slow API keeps the first run (and its lock) busy for several seconds.
    w.sim.set_delay(Duration::from_millis(700));
    let cfg = w.config();

    let (a, b) = tokio::join!(run(&cfg, &["--once"]), run(&cfg, &["--once"]));
    let mut codes = [code(&a), code(&b)];
    codes.sort();
    assert_eq!(codes, [0, 75], "\n{}\n{}", text(&a), text(&b));
    let loser = if code(&a) == 75 { &a } else { &b };
    assert!(
        String::from_utf8_lossy(&loser.stderr).contains("lock"),
        "{}",
        text(loser)
    );
    assert_eq!(
        w.sim.calls(Endpoint::UpdateFirewall),
        1,
        "exactly one run wrote"
    );
    assert_eq!(w.sim.tokens_issued(), 1, "the loser made no API call");
    assert_eq!(w.owned_sources(), vec![NEW_IP.to_string()]);

    // The next cron run starts from the state the winner left: nothing to do, no API call.
    w.sim.set_delay(Duration::ZERO);
    let calls = w.sim.call_log().len();
    let out = run_env(&cfg, &["--once"], &[("RUST_LOG", "warn")]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(w.sim.call_log().len(), calls);
    // The README's crontab line sets RUST_LOG=warn: a good run prints nothing for cron to mail.
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        text(&out)
    );
}
