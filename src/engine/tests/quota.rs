//! The daemon loop while a write waits for the quota (13.1): IP checks and probe rounds go on,
//! and a newer agreed address replaces the pending write.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::scheduler::{self, Rebuilt};
use crate::systemd::Notifier;

fn hits(w: &World) -> u64 {
    w.sources[0].hits.load(Ordering::SeqCst)
}

/// Sleeps `secs` seconds of (paused, auto-advancing) time in one-second steps.
async fn pass(secs: u64) {
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn checks_and_probes_go_on_while_a_write_waits_and_the_newest_address_is_written() {
    let mut w = World::with(&[WEB], "5s", "").await;
    let engine = w.engine.take().unwrap();
    let shutdown = CancellationToken::new();
    let (_reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let daemon = tokio::spawn(scheduler::run(
        engine,
        Notifier::disabled(),
        shutdown.clone(),
        reload_rx,
        |_, _| -> Result<Rebuilt, crate::exit::AppError> {
            Err(crate::exit::AppError::Setup("no reload here".into()))
        },
    ));
    pass(10).await;
    assert_eq!(w.cloud.owned(), [OLD]);

    // The quota is spent: writes wait.
    {
        let mut inner = w.cloud.lock();
        inner.writes_held = true;
        inner.queue_delay = Duration::from_secs(50);
    }
    w.move_home(NEW);
    let (checks, probes) = (hits(&w), w.cloud.probes(WEB));
    pass(45).await;
    assert_eq!(w.cloud.applies(), 0, "the write is still waiting");
    assert!(
        hits(&w) - checks >= 8,
        "IP checks went on: {}",
        hits(&w) - checks
    );
    assert!(w.cloud.probes(WEB) - probes >= 1, "probe rounds went on");

    // A newer address replaces the pending write.
    w.move_home(NEWER);
    pass(10).await;
    w.cloud.release_writes();
    pass(10).await;
    assert_eq!(w.cloud.owned(), [NEWER]);
    assert_eq!(w.cloud.applies(), 1, "one write, of the newest address");
    assert!(
        w.cloud.actions(WEB).is_empty(),
        "no instance paid for the wait"
    );

    shutdown.cancel();
    daemon.await.unwrap();
}
