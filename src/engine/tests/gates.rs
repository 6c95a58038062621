//! Invariant 6 on fresh facts (A1): a healthy instance behind a stale rule is never power-cycled.

use std::time::Duration;

use super::*;
use crate::probe::{Decision, HoldReason};
use crate::provider::PowerAction::{Start, Stop};

const PROBE: Duration = Duration::from_secs(30);

async fn synced(probes: &[&str]) -> World {
    let mut w = World::new(probes).await;
    w.cycle().await;
    w.round().await;
    w
}

fn hold(r: &RoundReport) -> Option<HoldReason> {
    match &r.instances[0].decision {
        Decision::Hold(h) => Some(h.clone()),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn an_address_change_the_sources_disagree_on_holds_every_power_action() {
    let mut w = synced(&[WEB]).await;
    // Home moves; one source says so, the other still says the old address: no quorum.
    w.cloud.lock().client_ip = Some(ip(NEW));
    *w.sources[0].answer.lock().unwrap() = Some(ip(NEW));
    let mut last = None;
    for _ in 0..8 {
        tokio::time::advance(PROBE).await;
        w.eng_mut().check().await;
        last = Some(w.round().await);
    }
    assert!(
        w.cloud.actions(WEB).is_empty(),
        "the healthy instance is not touched"
    );
    assert!(
        matches!(
            hold(last.as_ref().unwrap()),
            Some(HoldReason::AddressUnsettled(_))
        ),
        "{last:?}"
    );
    let said = w.record(WEB).last_hold.unwrap_or_default();
    assert!(said.contains("not settled"), "status shows why: {said}");
    // The sources agree: the rule follows, the probes pass, still nothing was power-cycled.
    w.set_ip(Some(NEW));
    w.cycle().await;
    assert_eq!(w.cloud.owned(), [NEW]);
    w.rounds(3, PROBE).await;
    assert!(w.cloud.actions(WEB).is_empty());
    assert_eq!(w.record(WEB).last_probe_ok(), Some(true));
}

#[tokio::test(start_paused = true)]
async fn an_address_change_not_synced_yet_syncs_first_instead_of_acting() {
    let mut w = synced(&[WEB]).await;
    // Home moved and the sources say so, but no check ran since (the next one is ahead).
    w.move_home(NEW);
    let reports = w.rounds(3, PROBE).await;
    assert!(
        matches!(
            hold(reports.last().unwrap()),
            Some(HoldReason::AddressChanged(_))
        ),
        "{reports:?}"
    );
    assert!(w.eng().check_requested(), "a sync is asked for");
    assert!(w.cloud.actions(WEB).is_empty());
    w.cycle().await;
    assert_eq!(w.cloud.owned(), [NEW]);
    w.rounds(4, PROBE).await;
    assert!(w.cloud.actions(WEB).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_hand_edited_rule_is_read_again_and_synced_before_any_action() {
    let mut w = synced(&[WEB]).await;
    // Someone edits the owned rule by hand: the record (trusted for the reconcile period)
    // still says it holds our address.
    w.cloud.set_owned(&["93.184.216.34"]);
    let reads = w.cloud.count(|c| matches!(c, Call::Read(_)));
    let reports = w.rounds(3, PROBE).await;
    assert!(
        matches!(
            hold(reports.last().unwrap()),
            Some(HoldReason::RuleNotConfirmed(_))
        ),
        "{reports:?}"
    );
    assert_eq!(
        w.cloud.count(|c| matches!(c, Call::Read(_))) - reads,
        1,
        "one read for the incident"
    );
    assert!(w.cloud.actions(WEB).is_empty());
    w.rounds(2, PROBE).await;
    assert_eq!(
        w.cloud.count(|c| matches!(c, Call::Read(_))) - reads,
        1,
        "not again every round"
    );
    w.cycle().await;
    assert_eq!(w.cloud.owned(), [OLD], "the sync repairs it");
    w.rounds(4, PROBE).await;
    assert!(w.cloud.actions(WEB).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_really_hung_instance_is_acted_on_after_one_confirming_read() {
    let mut w = synced(&[WEB]).await;
    w.cloud.inst(WEB, |i| i.responsive = false);
    let reads = w.cloud.count(|c| matches!(c, Call::Read(_)));
    w.rounds(3, PROBE).await;
    assert_eq!(w.cloud.actions(WEB), [Stop]);
    assert_eq!(w.cloud.count(|c| matches!(c, Call::Read(_))) - reads, 1);
    w.rounds(3, POLL).await;
    assert_eq!(w.cloud.actions(WEB), [Stop, Start]);
    assert_eq!(
        w.cloud.count(|c| matches!(c, Call::Read(_))) - reads,
        1,
        "a remediation in flight needs no more reads"
    );
}

#[tokio::test(start_paused = true)]
async fn no_source_answering_means_no_action() {
    let mut w = synced(&[WEB]).await;
    w.cloud.inst(WEB, |i| i.responsive = false);
    w.set_ip(None);
    for _ in 0..5 {
        tokio::time::advance(PROBE).await;
        w.eng_mut().check().await;
        w.round().await;
    }
    assert!(w.cloud.actions(WEB).is_empty());
    assert_eq!(
        w.record(WEB).last_hold.as_deref(),
        Some(HoldReason::ConnectivityInDoubt.to_string().as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn a_firewall_being_synced_holds_actions_until_the_sync_reports() {
    let mut w = synced(&[WEB]).await;
    w.cloud.set_owned(&["93.184.216.34"]);
    w.rounds(3, PROBE).await;
    assert!(w.eng().check_requested());
    // The check starts the repair; it reaches the cloud before the engine hears of it.
    w.eng_mut().check().await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(w.cloud.owned(), [OLD], "repaired at the cloud");
    assert!(w.eng().sync_in_flight(), "its report not folded in yet");
    // One more failed probe (a slow answer, say) before the report arrives.
    w.cloud.inst(WEB, |i| i.responsive = false);
    let r = w.round().await;
    w.cloud.inst(WEB, |i| i.responsive = true);
    assert_eq!(
        r.instances[0].decision,
        Decision::Hold(HoldReason::FirewallNotInSync),
        "the failures may be the old rule's doing"
    );
    assert!(w.cloud.actions(WEB).is_empty());
    w.eng_mut().finish_sync().await;
    w.rounds(4, PROBE).await;
    assert!(w.cloud.actions(WEB).is_empty());
}
