//! One clock (A11): in-process timing is monotonic; persisted times are wall times, clamped
//! when they lie in the future.

use std::time::Duration;

use super::*;
use crate::provider::PowerAction::{ForceStop, Start, Stop};

const PROBE: Duration = Duration::from_secs(30);

/// Runs due rounds only (as the daemon does), `n` times `every` apart.
async fn due_rounds(w: &mut World, n: usize, every: Duration) {
    for _ in 0..n {
        tokio::time::advance(every).await;
        w.eng_mut().probe_round(false).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_clock_stepped_back_does_not_stop_probing() {
    let mut w = World::new(&[WEB]).await;
    w.cycle().await;
    due_rounds(&mut w, 2, PROBE).await;
    let before = w.cloud.probes(WEB);
    w.step_wall(-3600);
    due_rounds(&mut w, 10, PROBE).await;
    assert_eq!(w.cloud.probes(WEB) - before, 10, "one probe per interval");
}

#[tokio::test(start_paused = true)]
async fn probes_are_due_on_time_not_a_whole_second_late() {
    let mut w = World::new(&[WEB]).await;
    w.cycle().await;
    w.eng_mut().probe_round(false).await.unwrap();
    let before = w.cloud.probes(WEB);
    // 30 s to the millisecond: due.
    due_rounds(&mut w, 1, PROBE).await;
    assert_eq!(w.cloud.probes(WEB) - before, 1);
    // 29.5 s: not yet.
    due_rounds(&mut w, 1, Duration::from_millis(29_500)).await;
    assert_eq!(w.cloud.probes(WEB) - before, 1);
    due_rounds(&mut w, 1, Duration::from_millis(500)).await;
    assert_eq!(w.cloud.probes(WEB) - before, 2);
}

/// A synced world whose hung WEB had its stop accepted (and the stop does not complete).
async fn stopping() -> World {
    let mut w = World::new(&[WEB]).await;
    w.cycle().await;
    w.round().await;
    w.cloud.inst(WEB, |i| {
        i.responsive = false;
        i.stop_works = false;
    });
    w.rounds(3, PROBE).await;
    assert_eq!(w.cloud.actions(WEB), [Stop]);
    w
}

#[tokio::test(start_paused = true)]
async fn a_clock_stepped_forward_does_not_force_an_escalation() {
    let mut w = stopping().await;
    w.step_wall(3 * 3600);
    w.rounds(5, POLL).await;
    assert_eq!(w.cloud.actions(WEB), [Stop], "five minutes have not passed");
    w.rounds(11, POLL).await;
    assert_eq!(w.cloud.actions(WEB), [Stop, ForceStop, Start]);
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_with_the_clock_set_back_future_times_are_clamped() {
    let mut w = stopping().await;
    // The machine restarts with its clock an hour behind.
    w.step_wall(-3600);
    w.restart();
    let now = w.eng().clock.now();
    let rec = w.record(WEB);
    assert!(
        rec.last_probe_at.is_some_and(|t| t <= now),
        "{rec:?} now {now}"
    );
    let rem = rec.remediation.clone().unwrap();
    assert!(rem.started_at <= now && rem.step.since() <= now);
    assert!(rec.grace_until.is_none_or(|g| g <= now + 300));
    // Probing goes on at once, and the stop times out five minutes after the restart.
    let probes = w.cloud.probes(WEB);
    w.rounds(14, POLL).await;
    assert!(w.cloud.probes(WEB) > probes);
    assert_eq!(w.cloud.actions(WEB), [Stop]);
    w.rounds(3, POLL).await;
    assert_eq!(w.cloud.actions(WEB), [Stop, ForceStop, Start]);
}

#[tokio::test(start_paused = true)]
async fn the_state_file_holds_wall_times_even_after_a_step() {
    let mut w = World::new(&[WEB]).await;
    w.cycle().await;
    w.step_wall(-86_400);
    w.cloud.inst(WEB, |i| i.responsive = false);
    w.rounds(3, PROBE).await;
    let disk = w.on_disk();
    let started = disk["clouds"]["indigo"]["instances"][WEB]["remediation"]["started_at"]
        .as_u64()
        .unwrap();
    let wall = w.eng().clock.wall();
    assert!(
        started <= wall && started + 120 > wall,
        "persisted as wall time: {started} vs {wall}"
    );
}
