//! What the engine tells its watchers: one report per cycle, whether or not it synced.

use super::*;
use crate::metrics::Metrics;
use crate::watch::Watch;

/// The `dynwall_cycles_total` counter for `outcome`, as the endpoint would show it.
fn cycles(w: &World, outcome: &str) -> u64 {
    let text = w.eng().watch.metrics().encode();
    let prefix = format!("dynwall_cycles_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_cycle_that_syncs_is_reported_once_when_its_job_ends() {
    let mut w = World::new(&[]).await;
    w.eng_mut().set_watch(Watch::counting(Metrics::new()));
    // The first cycle brings the firewall in (a read), the second finds it in sync.
    w.cycle().await;
    assert_eq!(cycles(&w, "ok"), 1);
    w.cycle().await;
    assert_eq!(cycles(&w, "ok"), 2);
    // An address change: the check starts a job, the job writes; still one cycle.
    w.move_home(NEW);
    w.cycle().await;
    assert_eq!(w.cloud.applies(), 1);
    assert_eq!(cycles(&w, "ok"), 3);
    assert_eq!(cycles(&w, "failed"), 0);
}
