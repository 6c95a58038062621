//! Remediations: the ladder, what is never sent twice, what is cancelled, what is owed, what
//! ends, and what it costs at the API.

use std::time::Duration;

use super::*;
use crate::probe::{Decision, HoldReason, Step};
use crate::provider::PowerAction::{ForceStop, Start, Stop};

const PROBE: Duration = Duration::from_secs(30);

/// A synced world with `probes`, one healthy round behind it.
async fn healthy(probes: &[&str]) -> World {
    let mut w = World::new(probes).await;
    w.cycle().await;
    let r = w.round().await;
    assert!(r.instances.iter().all(|i| i.decision == Decision::Healthy));
    w
}

/// Rounds until `id` has a remediation in flight (at most `limit`).
async fn until_acting(w: &mut World, id: &str, limit: usize) {
    for _ in 0..limit {
        tokio::time::advance(PROBE).await;
        w.round().await;
        if w.record(id).remediation.is_some() {
            return;
        }
    }
    panic!(
        "no remediation of {id} after {limit} rounds: {:?}",
        w.record(id)
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_instance_gets_exactly_one_stop_and_one_start() {
    let mut w = healthy(&[WEB]).await;
    w.cloud.inst(WEB, |i| i.responsive = false);
    until_acting(&mut w, WEB, 3).await;
    w.rounds(3, POLL).await;
    assert_eq!(w.cloud.actions(WEB), [Stop, Start]);
    let rec = w.record(WEB);
    assert_eq!(rec.remediation, None);
    assert!(rec.grace_until.is_some() || rec.last_probe_ok() == Some(true));
    assert_eq!(rec.actions.len(), 1);
    // Healthy again: nothing more, and no API call while it is.
    let lists = w.cloud.lists();
    w.rounds(10, PROBE).await;
    assert_eq!(w.cloud.actions(WEB), [Stop, Start]);
    assert_eq!(
        w.cloud.lists(),
        lists,
        "a healthy instance costs no API call"
    );
}

#[tokio::test(start_paused = true)]
async fn an_accepted_stop_is_never_sent_again_and_the_force_step_comes_at_stop_timeout() {
    let mut w = healthy(&[WEB]).await;
    w.cloud.inst(WEB, |i| {
        i.responsive = false;
        i.stop_works = false;
    });
    until_acting(&mut w, WEB, 3).await;
    // 14 polls (4 min 40 s): still the one stop.
    w.rounds(14, POLL).await;
    assert_eq!(w.cloud.actions(WEB), [Stop]);
    w.rounds(3, POLL).await;
    assert_eq!(w.cloud.actions(WEB), [Stop, ForceStop, Start]);
    assert_eq!(w.cloud.power_of(WEB), PowerState::Running);
}

#[tokio::test(start_paused = true)]
async fn a_stop_that_failed_is_cancelled_and_refunded_when_the_instance_recovers() {
    let mut w = healthy(&[WEB]).await;
    w.cloud.inst(WEB, |i| i.responsive = false);
    w.cloud.lock().fail_power = 1;
    until_acting(&mut w, WEB, 3).await;
    let rem = w.record(WEB).remediation.unwrap();
    assert!(!rem.issued, "the stop was not accepted");
    // The guest recovers before the stop is sent again.
    w.cloud.inst(WEB, |i| i.responsive = true);
    w.rounds(1, POLL).await;
    let rec = w.record(WEB);
    assert_eq!(rec.remediation, None, "cancelled");
    assert!(rec.actions.is_empty(), "its budget entry is refunded");
    assert!(!rec.incident_acted);
    w.rounds(5, PROBE).await;
    assert!(
        w.cloud.actions(WEB).is_empty(),
        "the recovered instance is never stopped"
    );
    assert_eq!(w.cloud.power_of(WEB), PowerState::Running);
}

#[tokio::test(start_paused = true)]
async fn a_forced_stop_that_completes_after_dynwall_gave_up_is_followed_by_a_start() {
    let mut w = healthy(&[WEB]).await;
    w.cloud.inst(WEB, |i| {
        i.responsive = false;
        i.stop_works = false;
        i.force_works = false;
    });
    until_acting(&mut w, WEB, 3).await;
    // stop, 5 min, forcestop, 5 min, failed.
    w.rounds(32, POLL).await;
    assert_eq!(w.cloud.actions(WEB), [Stop, ForceStop]);
    let rec = w.record(WEB);
    assert_eq!(rec.remediation, None, "{rec:?}");
    assert!(rec.incident_acted);
    // The forced stop takes effect late: the instance must not stay off.
    w.cloud.inst(WEB, |i| i.power = PowerState::Stopped);
    w.rounds(12, PROBE).await;
    assert_eq!(w.cloud.actions(WEB), [Stop, ForceStop, Start]);
    assert_eq!(w.cloud.power_of(WEB), PowerState::Running);
}

#[tokio::test(start_paused = true)]
async fn an_owed_start_survives_a_restart_with_a_corrupt_state_file() {
    let mut w = healthy(&[WEB]).await;
    w.cloud.inst(WEB, |i| i.responsive = false);
    until_acting(&mut w, WEB, 3).await;
    assert_eq!(w.cloud.actions(WEB), [Stop]);
    assert_eq!(w.cloud.power_of(WEB), PowerState::Stopped);
    // dynwall dies, and its state file is damaged meanwhile.
    std::fs::write(w.dir.path().join("state.json"), b"{\"version\":2,").unwrap();
    w.restart();
    assert!(w.record(WEB).remediation.is_none(), "the record is lost");
    w.rounds(1, PROBE).await;
    assert_eq!(w.cloud.actions(WEB), [Stop, Start]);
    assert_eq!(w.cloud.power_of(WEB), PowerState::Running);
}

#[tokio::test(start_paused = true)]
async fn an_instance_stopped_before_a_restart_is_started_by_the_next_engine() {
    let mut w = healthy(&[WEB]).await;
    w.cloud.inst(WEB, |i| i.responsive = false);
    until_acting(&mut w, WEB, 3).await;
    w.restart();
    assert!(matches!(
        w.record(WEB).remediation.map(|r| r.step),
        Some(Step::Stopping { .. })
    ));
    w.rounds(2, POLL).await;
    assert_eq!(w.cloud.actions(WEB), [Stop, Start]);
}

#[tokio::test(start_paused = true)]
async fn a_round_cut_off_mid_request_loses_no_record() {
    let mut w = healthy(&[WEB, DB]).await;
    w.cloud.inst(WEB, |i| i.responsive = false);
    for _ in 0..2 {
        tokio::time::advance(PROBE).await;
        w.round().await;
    }
    w.cloud.lock().power_delay = Duration::from_secs(60);
    tokio::time::advance(PROBE).await;
    let cut = tokio::time::timeout(Duration::from_secs(10), w.eng_mut().probe_round(true)).await;
    assert!(
        cut.is_err(),
        "the round was cut off inside the stop request"
    );
    let indigo = CloudName::indigo();
    let st = &w.eng().state;
    assert!(st.instance(&indigo, &InstanceId(DB.into())).is_some());
    assert!(st
        .instance(&indigo, &InstanceId(WEB.into()))
        .is_some_and(|r| r.remediation.is_some()));
    let disk = w.on_disk();
    let web = &disk["clouds"]["indigo"]["instances"][WEB];
    assert_eq!(web["remediation"]["step"]["step"], "stopping", "{disk}");
    assert!(disk["clouds"]["indigo"]["instances"][DB].is_object());
    // The next round sends the stop (not accepted before) and goes on.
    w.cloud.lock().power_delay = Duration::ZERO;
    w.rounds(3, POLL).await;
    assert_eq!(w.cloud.actions(WEB), [Stop, Start]);
}

#[tokio::test(start_paused = true)]
async fn a_remediation_that_cannot_end_needs_an_operator_and_frees_the_others() {
    let mut w = healthy(&[WEB, DB, APP, MAIL]).await;
    w.cloud.inst(WEB, |i| {
        i.responsive = false;
        i.stop_works = false;
    });
    until_acting(&mut w, WEB, 3).await;
    // The instance vanishes from the list: the ladder cannot go on.
    w.cloud.inst(WEB, |i| i.gone = true);
    w.rounds(95, POLL).await; // > 30 min: the overall deadline
    let rec = w.record(WEB);
    assert_eq!(rec.remediation, None);
    assert!(rec.needs_operator.is_some(), "{rec:?}");
    // Another instance can now be remediated.
    w.cloud.inst(DB, |i| i.responsive = false);
    until_acting(&mut w, DB, 4).await;
    w.rounds(3, POLL).await;
    assert_eq!(w.cloud.actions(DB), [Stop, Start]);
    // No fast polling of the stuck one any more.
    let lists = w.cloud.lists();
    w.rounds(20, PROBE).await;
    assert!(w.cloud.lists() - lists <= 3, "{}", w.cloud.lists() - lists);
    // The operator resets it.
    std::fs::write(w.dir.path().join(format!("reset.{WEB}")), b"").unwrap();
    w.round().await;
    assert_eq!(w.record(WEB).needs_operator, None);
}

#[tokio::test(start_paused = true)]
async fn an_accepted_start_is_not_sent_again_while_the_list_lags() {
    let mut w = healthy(&[WEB]).await;
    w.cloud.inst(WEB, |i| {
        i.responsive = false;
        i.start_works = false;
    });
    until_acting(&mut w, WEB, 3).await;
    w.rounds(13, POLL).await; // 4 min 20 s after the start
    assert_eq!(
        w.cloud.actions(WEB),
        [Stop, Start],
        "one start while the list lags"
    );
    w.rounds(3, POLL).await; // past start_timeout: a new attempt
    assert_eq!(w.cloud.actions(WEB), [Stop, Start, Start]);
    w.cloud.inst(WEB, |i| i.start_works = true);
    w.cloud.inst(WEB, |i| i.power = PowerState::Running);
    w.rounds(1, POLL).await;
    assert_eq!(w.record(WEB).remediation, None);
}

#[tokio::test(start_paused = true)]
async fn held_instances_cost_a_list_call_only_every_few_minutes() {
    let mut w = healthy(&[WEB]).await;
    w.cloud.inst(WEB, |i| i.power = PowerState::Stopped);
    let lists = w.cloud.lists();
    let reports = w.rounds(60, PROBE).await; // 30 min
    let spent = w.cloud.lists() - lists;
    assert!((1..=7).contains(&spent), "{spent} list calls in 30 min");
    assert!(
        w.cloud.actions(WEB).is_empty(),
        "a deliberately stopped instance is left alone"
    );
    let last = reports.last().unwrap();
    assert_eq!(
        last.instances[0].decision,
        Decision::Hold(HoldReason::NotRunning(PowerState::Stopped))
    );
}

#[tokio::test(start_paused = true)]
async fn given_up_instances_cost_no_api_call() {
    let mut w = healthy(&[WEB]).await;
    w.cloud.inst(WEB, |i| i.responsive = false);
    // A guest no stop cures: the budget (3) is spent, then the instance is given up.
    let mut cured = 0;
    for _ in 0..400 {
        tokio::time::advance(POLL).await;
        w.round().await;
        w.cloud.inst(WEB, |i| i.responsive = false);
        if w.record(WEB).given_up {
            break;
        }
        cured += 1;
    }
    assert!(w.record(WEB).given_up, "after {cured} rounds");
    assert_eq!(
        w.cloud.actions(WEB).iter().filter(|a| **a == Stop).count(),
        3
    );
    let lists = w.cloud.lists();
    w.rounds(20, PROBE).await;
    assert_eq!(
        w.cloud.lists(),
        lists,
        "a given-up instance is not asked about"
    );
}

#[tokio::test(start_paused = true)]
async fn half_the_fleet_down_is_an_observer_problem_not_two_reboots() {
    let mut w = healthy(&[WEB, DB]).await;
    w.cloud.inst(WEB, |i| i.responsive = false);
    w.cloud.inst(DB, |i| i.responsive = false);
    let reports = w.rounds(6, PROBE).await;
    assert!(reports.last().unwrap().observer_problem);
    assert!(w.cloud.actions(WEB).is_empty() && w.cloud.actions(DB).is_empty());
}

#[tokio::test(start_paused = true)]
async fn one_remediation_at_a_time_across_the_fleet() {
    let mut w = healthy(&[WEB, DB, APP, MAIL]).await;
    for id in [WEB, DB] {
        w.cloud.inst(id, |i| {
            i.responsive = false;
            i.stop_works = false;
        });
    }
    w.rounds(4, PROBE).await;
    let acting = [WEB, DB]
        .iter()
        .filter(|id| w.record(id).remediation.is_some())
        .count();
    assert_eq!(acting, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_state_write_stops_the_round_before_any_power_call() {
    let mut w = healthy(&[WEB]).await;
    w.cloud.inst(WEB, |i| i.responsive = false);
    for _ in 0..2 {
        tokio::time::advance(PROBE).await;
        w.round().await;
    }
    let file = w.dir.path().join("state.json");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    tokio::time::advance(PROBE).await;
    assert!(w.eng_mut().probe_round(true).await.is_err());
    assert!(
        w.cloud.actions(WEB).is_empty(),
        "nothing sent without the step on disk"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_decides_and_logs_but_sends_nothing() {
    let mut w = healthy(&[WEB]).await;
    w.eng_mut().dry_run = true;
    w.cloud.inst(WEB, |i| i.responsive = false);
    let reports = w.rounds(5, PROBE).await;
    assert_eq!(
        reports.last().unwrap().instances[0].decision,
        Decision::Hold(HoldReason::DryRun)
    );
    assert!(w.cloud.actions(WEB).is_empty());
}
