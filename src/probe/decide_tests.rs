//! Table tests of the pure decision and its counters.

use super::*;
use crate::probe::record::{Remediation, Step};
use crate::probe::testkit::cfg;
use std::time::Duration;

fn open() -> Gates {
    Gates {
        connectivity_ok: true,
        firewall_in_sync: true,
        api_state: Some(PowerState::Running),
        fleet_down_fraction_exceeded: false,
        other_remediation_in_flight: false,
        dry_run: false,
    }
}

fn failed(rec: &mut InstanceRecord, n: u32, now: u64) {
    for i in 0..n {
        observe(
            rec,
            false,
            Some("connection refused".into()),
            now + u64::from(i),
        );
    }
}

fn down() -> InstanceRecord {
    let mut rec = InstanceRecord::default();
    failed(&mut rec, 3, 1_000);
    rec
}

#[test]
fn counting_failures_and_a_success_resetting_them() {
    let c = cfg();
    let mut rec = InstanceRecord::default();
    assert_eq!(decide(&rec, &c, &open(), 0), Decision::Healthy);
    failed(&mut rec, 2, 10);
    assert_eq!(rec.last_error.as_deref(), Some("connection refused"));
    assert_eq!(
        decide(&rec, &c, &open(), 20),
        Decision::Failing { count: 2 }
    );
    observe(&mut rec, true, None, 30);
    assert_eq!(rec.consecutive_failures, 0);
    assert_eq!(rec.last_probe_ok(), Some(true));
    assert_eq!(decide(&rec, &c, &open(), 30), Decision::Healthy);
    failed(&mut rec, 3, 40);
    assert_eq!(decide(&rec, &c, &open(), 50), Decision::Remediate);
}

#[test]
fn every_closed_gate_holds_a_down_instance() {
    let c = cfg();
    let rec = down();
    let cases: Vec<(Gates, HoldReason)> = vec![
        (
            Gates {
                connectivity_ok: false,
                ..open()
            },
            HoldReason::ConnectivityInDoubt,
        ),
        (
            Gates {
                firewall_in_sync: false,
                ..open()
            },
            HoldReason::FirewallNotInSync,
        ),
        (
            Gates {
                api_state: None,
                ..open()
            },
            HoldReason::ApiUnknown,
        ),
        (
            Gates {
                api_state: Some(PowerState::Stopped),
                ..open()
            },
            HoldReason::NotRunning(PowerState::Stopped),
        ),
        (
            Gates {
                api_state: Some(PowerState::Other("OS installation In Progress".into())),
                ..open()
            },
            HoldReason::NotRunning(PowerState::Other("OS installation In Progress".into())),
        ),
        (
            Gates {
                fleet_down_fraction_exceeded: true,
                ..open()
            },
            HoldReason::FleetDown,
        ),
        (
            Gates {
                other_remediation_in_flight: true,
                ..open()
            },
            HoldReason::OneAtATime,
        ),
        (
            Gates {
                dry_run: true,
                ..open()
            },
            HoldReason::DryRun,
        ),
    ];
    for (gates, reason) in cases {
        assert_eq!(
            decide(&rec, &c, &gates, 2_000),
            Decision::Hold(reason.clone()),
            "{reason:?}"
        );
    }
    assert_eq!(decide(&rec, &c, &open(), 2_000), Decision::Remediate);
}

#[test]
fn observer_gates_win_over_given_up_so_blindness_is_never_reported_as_a_dead_instance() {
    let c = cfg();
    let mut rec = down();
    rec.given_up = true;
    let blind = Gates {
        connectivity_ok: false,
        ..open()
    };
    assert_eq!(
        decide(&rec, &c, &blind, 2_000),
        Decision::Hold(HoldReason::ConnectivityInDoubt)
    );
    assert_eq!(decide(&rec, &c, &open(), 2_000), Decision::GivenUp);
}

#[test]
fn disabled_holds_and_an_in_flight_remediation_continues_whatever_the_gates() {
    let mut c = cfg();
    let mut rec = down();
    c.enabled = false;
    assert_eq!(
        decide(&rec, &c, &open(), 2_000),
        Decision::Hold(HoldReason::Disabled)
    );
    rec.remediation = Some(Remediation {
        started_at: 1_500,
        step: Step::Stopping { since: 1_500 },
        issued: true,
    });
    let closed = Gates {
        connectivity_ok: false,
        firewall_in_sync: false,
        api_state: None,
        fleet_down_fraction_exceeded: true,
        other_remediation_in_flight: true,
        dry_run: true,
    };
    assert_eq!(decide(&rec, &c, &closed, 2_000), Decision::InProgress);
}

#[test]
fn grace_ignores_failures_and_ends_early_on_the_first_success() {
    let c = cfg();
    let mut rec = InstanceRecord {
        grace_until: Some(1_300),
        ..InstanceRecord::default()
    };
    failed(&mut rec, 5, 1_000);
    assert_eq!(rec.consecutive_failures, 0);
    assert_eq!(
        decide(&rec, &c, &open(), 1_100),
        Decision::Hold(HoldReason::Grace)
    );
    observe(&mut rec, true, None, 1_100);
    assert_eq!(rec.grace_until, None, "the first success ends grace");
    failed(&mut rec, 3, 1_110);
    assert_eq!(rec.consecutive_failures, 3, "after grace, failures count");
    assert_eq!(decide(&rec, &c, &open(), 1_200), Decision::Remediate);

    // Without a success, failures count again once grace has expired.
    let mut rec = InstanceRecord {
        grace_until: Some(1_300),
        ..InstanceRecord::default()
    };
    failed(&mut rec, 5, 1_297);
    assert_eq!(
        rec.consecutive_failures, 2,
        "1297..1299 in grace; 1300 and 1301 count"
    );
}

#[test]
fn an_instance_seen_starting_gets_a_grace_period() {
    let c = cfg();
    let mut rec = down();
    note_api_state(&mut rec, &PowerState::Running, &c, 2_000);
    assert_eq!(rec.grace_until, None, "first sighting is not a start");
    note_api_state(&mut rec, &PowerState::Stopped, &c, 2_030);
    note_api_state(&mut rec, &PowerState::Running, &c, 2_060);
    assert_eq!(rec.grace_until, Some(2_360));
    assert_eq!(rec.consecutive_failures, 0);
    observe(&mut rec, false, None, 2_090);
    assert_eq!(
        decide(&rec, &c, &open(), 2_090),
        Decision::Hold(HoldReason::Grace)
    );
}

#[test]
fn acting_is_edge_triggered_within_an_incident() {
    let c = cfg();
    let mut rec = down();
    rec.incident_acted = true;
    failed(&mut rec, 10, 1_100);
    assert_eq!(
        decide(&rec, &c, &open(), 1_200),
        Decision::Hold(HoldReason::AlreadyActed)
    );
    observe(&mut rec, true, None, 1_300);
    assert!(!rec.incident_acted, "a success ends the incident");
    failed(&mut rec, 3, 1_400);
    assert_eq!(decide(&rec, &c, &open(), 1_500), Decision::Remediate);
}

#[test]
fn budget_spent_gives_up_until_healthy_or_reset() {
    let c = cfg();
    let mut rec = down();
    rec.actions = vec![100, 5_000, 9_000];
    assert_eq!(decide(&rec, &c, &open(), 10_000), Decision::GivenUp);
    // Once an action leaves the rolling window the budget has room again.
    let later = 100 + 24 * 3600;
    assert_eq!(decide(&rec, &c, &open(), later), Decision::Remediate);

    // The caller persists the verdict; it sticks even after the window rolls on …
    rec.given_up = true;
    assert_eq!(decide(&rec, &c, &open(), later), Decision::GivenUp);
    // … until the instance answers again (the budget itself is still counted) …
    observe(&mut rec, true, None, 10_100);
    assert!(!rec.given_up);
    failed(&mut rec, 3, 10_200);
    assert_eq!(decide(&rec, &c, &open(), 10_300), Decision::GivenUp);
    // … or the operator resets it, which also forgets the spent budget.
    rec.given_up = true;
    reset(&mut rec);
    failed(&mut rec, 3, 10_400);
    assert_eq!(decide(&rec, &c, &open(), 10_500), Decision::Remediate);
}

#[test]
fn reset_keeps_a_stopped_instance_on_its_way_back() {
    let mut rec = down();
    rec.given_up = true;
    rec.remediation = Some(Remediation {
        started_at: 1,
        step: Step::Starting { since: 2 },
        issued: false,
    });
    reset(&mut rec);
    assert!(!rec.given_up);
    assert!(rec.remediation.is_some());
}

#[test]
fn backoff_holds_until_it_expires() {
    let c = cfg();
    let mut rec = down();
    rec.actions = vec![1_000];
    rec.backoff_until = Some(2_000);
    assert_eq!(
        decide(&rec, &c, &open(), 1_999),
        Decision::Hold(HoldReason::Backoff { until: 2_000 })
    );
    assert_eq!(decide(&rec, &c, &open(), 2_000), Decision::Remediate);
}

#[test]
fn backoff_doubles_from_ten_minutes_and_is_capped() {
    let mut c = cfg();
    let table = [(1, 600), (2, 1_200), (3, 2_400), (6, 19_200), (7, 21_600)];
    c.max_actions = 10;
    for (n, want) in table {
        assert_eq!(backoff_delay(&c, n), want, "n = {n}");
    }
    assert_eq!(backoff_delay(&c, 40), BACKOFF_CAP_SECS);
    // A short window shrinks the base so the budget still fits, and caps the pause.
    c.window = Duration::from_secs(120);
    c.max_actions = 3;
    assert_eq!(backoff_delay(&c, 1), 30);
    assert_eq!(backoff_delay(&c, 2), 60);
    assert_eq!(backoff_delay(&c, 3), 120);
    assert_eq!(backoff_delay(&c, 9), 120);
}

#[test]
fn zero_failures_in_config_is_treated_as_one_and_durations_round_up() {
    let mut c = cfg();
    c.failures = 0;
    let mut rec = InstanceRecord::default();
    assert_eq!(decide(&rec, &c, &open(), 0), Decision::Healthy);
    failed(&mut rec, 1, 0);
    assert_eq!(decide(&rec, &c, &open(), 1), Decision::Remediate);
    assert_eq!(secs(Duration::from_millis(250)), 1);
    assert_eq!(secs(Duration::from_secs(5)), 5);
}

#[test]
fn the_api_is_asked_only_when_a_decision_could_act() {
    let c = cfg();
    let mut rec = InstanceRecord::default();
    observe(&mut rec, true, None, 10);
    assert_eq!(list_need(&rec, &c, &open(), 10), ListNeed::No, "healthy");
    failed(&mut rec, 2, 20);
    assert_eq!(
        list_need(&rec, &c, &open(), 30),
        ListNeed::No,
        "not down yet"
    );
    failed(&mut rec, 1, 40);
    assert_eq!(list_need(&rec, &c, &open(), 40), ListNeed::Now, "could act");
    let blind = Gates {
        connectivity_ok: false,
        ..open()
    };
    assert_eq!(list_need(&rec, &c, &blind, 40), ListNeed::No, "held anyway");
    rec.given_up = true;
    assert_eq!(list_need(&rec, &c, &open(), 40), ListNeed::No, "given up");
    rec.given_up = false;
    rec.backoff_until = Some(1_000);
    assert_eq!(
        list_need(&rec, &c, &open(), 40),
        ListNeed::No,
        "backing off"
    );
    rec.last_api_state = Some(PowerState::Stopped);
    assert_eq!(
        list_need(&rec, &c, &open(), 40),
        ListNeed::Slow,
        "stopped on purpose"
    );
    rec.remediation = Some(Remediation {
        started_at: 1,
        step: Step::Starting { since: 2 },
        issued: true,
    });
    assert_eq!(list_need(&rec, &c, &open(), 40), ListNeed::Now, "in flight");
}

#[test]
fn needs_an_operator_holds_until_reset() {
    let c = cfg();
    let mut rec = down();
    rec.needs_operator = Some("stuck".into());
    assert_eq!(decide(&rec, &c, &open(), 2_000), Decision::NeedsOperator);
    reset(&mut rec);
    failed(&mut rec, 3, 2_000);
    assert_eq!(decide(&rec, &c, &open(), 2_100), Decision::Remediate);
}
