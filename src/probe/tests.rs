//! Round tests: a scripted provider, loopback listeners, and injected `now` values.

use super::testkit::{cfg, FakePower, Listener, Mode, Script};
use super::*;
use crate::provider::PowerAction::{ForceStop, Start, Stop};
use crate::provider::PowerState::{Running, Stopped};
use std::collections::BTreeMap;

/// Seconds between rounds (the default probe interval).
const TICK: u64 = 30;

/// One configured instance, probed at its own loopback listener.
struct Node {
    listener: Listener,
    cfg: ProbeConfig,
}

impl Node {
    async fn new(id: &str, mode: Mode) -> Node {
        let listener = Listener::start(mode).await;
        assert!(listener.addr.ip().is_loopback());
        let cfg = ProbeConfig {
            instance: InstanceId(id.into()),
            address: Some(listener.addr),
            ..cfg()
        };
        Node { listener, cfg }
    }
}

/// A prober with its persisted state, as the daemon would hold it.
struct Harness {
    nodes: Vec<Node>,
    power: FakePower,
    records: BTreeMap<String, InstanceRecord>,
    /// The state file: the JSON of the last persisted map.
    saved: String,
    /// Number of writes.
    saves: usize,
    connectivity_ok: bool,
    firewall_in_sync: bool,
    dry_run: bool,
    list_fails: bool,
}

impl Harness {
    async fn new(nodes: &[(&str, Mode, PowerState)], script: Script) -> Harness {
        let mut built = Vec::new();
        for (id, mode, _) in nodes {
            built.push(Node::new(id, mode.clone()).await);
        }
        let states: Vec<(&str, PowerState)> =
            nodes.iter().map(|(id, _, s)| (*id, s.clone())).collect();
        Harness {
            nodes: built,
            power: FakePower::new(&states, script),
            records: BTreeMap::new(),
            saved: String::new(),
            saves: 0,
            connectivity_ok: true,
            firewall_in_sync: true,
            dry_run: false,
            list_fails: false,
        }
    }

    async fn one(mode: Mode, script: Script) -> Harness {
        Harness::new(&[("616516", mode, Running)], script).await
    }

    fn probes(&self) -> Vec<ProbeConfig> {
        self.nodes.iter().map(|n| n.cfg.clone()).collect()
    }

    async fn round(&mut self, now: u64) -> RoundReport {
        let probes = self.probes();
        let list = self.power.list();
        let list_error = ProviderError::Unavailable {
            op: "getinstancelist",
            status: 503,
        };
        let fw = self.firewall_in_sync;
        let in_sync = move |_: &InstanceId| fw;
        let input = RoundInput {
            instances: if self.list_fails {
                Err(&list_error)
            } else {
                Ok(&list)
            },
            connectivity_ok: self.connectivity_ok,
            firewall_in_sync: &in_sync,
            dry_run: self.dry_run,
            now,
        };
        let (saved, saves) = (&mut self.saved, &mut self.saves);
        let mut persist = |m: &BTreeMap<String, InstanceRecord>| -> Result<(), String> {
            *saved = serde_json::to_string(m).map_err(|e| e.to_string())?;
            *saves += 1;
            Ok(())
        };
        round(&probes, &self.power, &mut self.records, input, &mut persist)
            .await
            .unwrap()
    }

    /// Rounds every [`TICK`] from `from` while `now < until`; the reports in order.
    async fn rounds(&mut self, from: u64, until: u64) -> Vec<RoundReport> {
        let mut out = Vec::new();
        let mut now = from;
        while now < until {
            out.push(self.round(now).await);
            now += TICK;
        }
        out
    }

    /// Simulates a restart: the in-memory records are replaced by the state file.
    fn restart(&mut self) {
        self.records = serde_json::from_str(&self.saved).unwrap();
    }

    fn record(&self, id: &str) -> &InstanceRecord {
        &self.records[id]
    }
}

fn decision(r: &RoundReport, i: usize) -> &Decision {
    &r.instances[i].decision
}

#[tokio::test]
async fn a_hung_instance_gets_exactly_one_stop_and_one_start() {
    let mut h = Harness::one(Mode::Closing, Script::default()).await;
    let r = h.round(0).await;
    assert_eq!(
        r.instances[0].health,
        Health::Down(ProbeFailure::BadBanner(String::new()))
    );
    assert_eq!(decision(&r, 0), &Decision::Failing { count: 1 });
    assert_eq!(
        decision(&h.round(30).await, 0),
        &Decision::Failing { count: 2 }
    );

    let r = h.round(60).await;
    assert_eq!(decision(&r, 0), &Decision::Remediate);
    assert_eq!(r.instances[0].actions, vec![Stop]);
    assert_eq!(
        r.instances[0].remediation,
        Some(Step::Stopping { since: 60 })
    );
    assert_eq!(h.record("616516").actions, vec![60]);

    // Next round the API reports it stopped: start it.
    let r = h.round(90).await;
    assert_eq!(decision(&r, 0), &Decision::InProgress);
    assert_eq!(r.instances[0].actions, vec![Start]);

    // It boots and answers SSH again.
    h.nodes[0].listener.set(Mode::Ssh);
    let r = h.round(120).await;
    assert_eq!(r.instances[0].health, Health::Up);
    assert_eq!(r.instances[0].remediation, None);
    let rec = h.record("616516");
    assert_eq!(rec.remediation, None);
    assert_eq!(rec.grace_until, None, "ended early by the first success");
    assert_eq!(rec.backoff_until, Some(120 + 600));

    for r in h.rounds(150, 1_200).await {
        assert_eq!(decision(&r, 0), &Decision::Healthy);
    }
    assert_eq!(h.power.actions(), vec![Stop, Start]);
    assert!(!h.round(1_200).await.any_given_up());
}

#[tokio::test]
async fn a_stop_that_never_completes_is_forced_after_stop_timeout_then_started() {
    let script = Script {
        stop_works: false,
        ..Script::default()
    };
    let mut h = Harness::one(Mode::Closing, script).await;
    h.rounds(0, 90).await;
    assert_eq!(h.power.actions(), vec![Stop]);
    // Still Running: wait out stop_timeout (300 s after the accepted stop at 60).
    for r in h.rounds(90, 360).await {
        assert_eq!(decision(&r, 0), &Decision::InProgress);
        assert!(r.instances[0].actions.is_empty());
    }
    let r = h.round(360).await;
    assert_eq!(r.instances[0].actions, vec![ForceStop]);
    assert_eq!(
        r.instances[0].remediation,
        Some(Step::ForceStopping { since: 360 })
    );
    let r = h.round(390).await;
    assert_eq!(r.instances[0].actions, vec![Start]);
    h.nodes[0].listener.set(Mode::Ssh);
    h.round(420).await;
    assert_eq!(h.record("616516").remediation, None);
    assert_eq!(h.power.actions(), vec![Stop, ForceStop, Start]);
}

#[tokio::test]
async fn an_instance_that_never_recovers_gets_max_actions_then_is_given_up() {
    let mut h = Harness::one(Mode::Closing, Script::default()).await;
    let reports = h.rounds(0, 2 * 3600).await;
    let actions = h.power.actions();
    assert_eq!(actions, vec![Stop, Start, Stop, Start, Stop, Start]);
    // Never left stopped: every stop was followed by a start.
    assert_eq!(actions.last(), Some(&Start));
    // Backoff spaced them out: 10 min after the first, 20 min after the second.
    assert_eq!(h.record("616516").actions, vec![60, 720, 1_980]);

    let first_given_up = reports.iter().position(|r| r.any_given_up()).unwrap();
    assert!(reports[first_given_up..].iter().all(|r| r.any_given_up()));
    assert_eq!(decision(&reports[first_given_up], 0), &Decision::GivenUp);
    assert!(reports[..first_given_up]
        .iter()
        .any(|r| matches!(decision(r, 0), Decision::Hold(HoldReason::Backoff { .. }))));

    // Persisted: a restart (or the next `--once`) still knows.
    h.restart();
    assert!(h.record("616516").given_up);
    let r = h.round(2 * 3600).await;
    assert!(r.any_given_up());
    assert_eq!(h.power.actions().len(), 6);

    // The instance answers again: no longer given up.
    h.nodes[0].listener.set(Mode::Ssh);
    let r = h.round(2 * 3600 + 30).await;
    assert!(!r.any_given_up());
    assert_eq!(decision(&r, 0), &Decision::Healthy);
}

#[tokio::test]
async fn closed_gates_mean_no_power_call() {
    type Setup = fn(&mut Harness);
    let cases: Vec<(&str, Setup, HoldReason)> = vec![
        (
            "connectivity",
            |h| h.connectivity_ok = false,
            HoldReason::ConnectivityInDoubt,
        ),
        (
            "firewall",
            |h| h.firewall_in_sync = false,
            HoldReason::FirewallNotInSync,
        ),
        (
            "stopped on purpose",
            |h| h.power.set("616516", Stopped),
            HoldReason::NotRunning(Stopped),
        ),
        (
            "transitional",
            |h| {
                h.power.set(
                    "616516",
                    PowerState::Other("OS installation In Progress".into()),
                )
            },
            HoldReason::NotRunning(PowerState::Other("OS installation In Progress".into())),
        ),
        (
            "list error",
            |h| h.list_fails = true,
            HoldReason::ApiUnknown,
        ),
        ("dry run", |h| h.dry_run = true, HoldReason::DryRun),
        (
            "disabled",
            |h| h.nodes[0].cfg.enabled = false,
            HoldReason::Disabled,
        ),
    ];
    for (name, setup, reason) in cases {
        let mut h = Harness::one(Mode::Closing, Script::default()).await;
        setup(&mut h);
        let reports = h.rounds(0, 600).await;
        assert!(h.power.calls().is_empty(), "{name}: {:?}", h.power.calls());
        let last = reports.last().unwrap();
        assert_eq!(decision(last, 0), &Decision::Hold(reason), "{name}");
        assert!(!last.any_given_up(), "{name}");
        assert_eq!(h.record("616516").actions, Vec::<u64>::new(), "{name}");
    }
}

#[tokio::test]
async fn the_fleet_breaker_holds_everyone_when_most_look_down() {
    let mut h = Harness::new(
        &[
            ("1", Mode::Closing, Running),
            ("2", Mode::Closing, Running),
            ("3", Mode::Ssh, Running),
        ],
        Script::default(),
    )
    .await;
    let reports = h.rounds(0, 600).await;
    assert!(h.power.calls().is_empty());
    let last = reports.last().unwrap();
    assert!(last.observer_problem);
    assert_eq!(decision(last, 0), &Decision::Hold(HoldReason::FleetDown));
    assert_eq!(decision(last, 1), &Decision::Hold(HoldReason::FleetDown));
    assert_eq!(decision(last, 2), &Decision::Healthy);

    // One of three down is not an observer problem.
    h.nodes[1].listener.set(Mode::Ssh);
    let r = h.round(600).await;
    assert!(!r.observer_problem);
    assert_eq!(decision(&r, 0), &Decision::Remediate);
    assert_eq!(h.power.calls(), vec![("1".to_string(), Stop)]);
}

#[tokio::test]
async fn deliberately_stopped_instances_do_not_trip_the_breaker() {
    let mut h = Harness::new(
        &[
            ("1", Mode::Closing, Running),
            ("2", Mode::Closing, Stopped),
            ("3", Mode::Closing, Stopped),
            ("4", Mode::Ssh, Running),
        ],
        Script::default(),
    )
    .await;
    let r = h.rounds(0, 90).await.pop().unwrap();
    assert!(!r.observer_problem);
    assert_eq!(decision(&r, 0), &Decision::Remediate);
    assert_eq!(
        decision(&r, 1),
        &Decision::Hold(HoldReason::NotRunning(Stopped))
    );
    assert_eq!(h.power.calls(), vec![("1".to_string(), Stop)]);
}

#[tokio::test]
async fn one_remediation_at_a_time_across_the_fleet() {
    let mut h = Harness::new(
        &[
            ("a", Mode::Closing, Running),
            ("b", Mode::Closing, Running),
            ("c", Mode::Ssh, Running),
            ("d", Mode::Ssh, Running),
        ],
        Script::default(),
    )
    .await;
    let r = h.rounds(0, 90).await.pop().unwrap();
    assert_eq!(decision(&r, 0), &Decision::Remediate);
    assert_eq!(decision(&r, 1), &Decision::Hold(HoldReason::OneAtATime));
    h.round(90).await; // a: start
    h.nodes[0].listener.set(Mode::Ssh);
    let r = h.round(120).await; // a: running again; b may go now
    assert_eq!(decision(&r, 1), &Decision::Remediate);
    let calls: Vec<(String, PowerAction)> = h.power.calls();
    let want: Vec<(String, PowerAction)> =
        vec![("a".into(), Stop), ("a".into(), Start), ("b".into(), Stop)];
    assert_eq!(calls, want);
}

#[tokio::test]
async fn a_persisted_stopping_step_with_the_instance_stopped_resumes_by_starting() {
    for issued in [true, false] {
        let mut h = Harness::one(Mode::Closing, Script::default()).await;
        h.power.set("616516", Stopped);
        h.saved = serde_json::to_string(&BTreeMap::from([(
            "616516".to_string(),
            InstanceRecord {
                consecutive_failures: 3,
                actions: vec![1_000],
                incident_acted: true,
                remediation: Some(Remediation {
                    started_at: 1_000,
                    step: Step::Stopping { since: 1_000 },
                    issued,
                }),
                ..InstanceRecord::default()
            },
        )]))
        .unwrap();
        h.restart();
        // Even with every gate closed: dynwall stopped it, dynwall starts it.
        h.connectivity_ok = false;
        h.firewall_in_sync = false;
        let r = h.round(1_030).await;
        assert_eq!(decision(&r, 0), &Decision::InProgress);
        assert_eq!(r.instances[0].actions, vec![Start], "issued = {issued}");
        assert_eq!(h.power.actions(), vec![Start]);
        h.round(1_060).await;
        assert_eq!(h.record("616516").remediation, None);
        assert_eq!(h.record("616516").grace_until, Some(1_060 + 300));
    }
}

#[tokio::test]
async fn a_budget_spent_while_stopped_still_starts_the_instance() {
    let mut h = Harness::one(Mode::Closing, Script::default()).await;
    h.power.set("616516", Stopped);
    h.records.insert(
        "616516".into(),
        InstanceRecord {
            consecutive_failures: 3,
            actions: vec![900, 950, 1_000],
            given_up: true,
            remediation: Some(Remediation {
                started_at: 1_000,
                step: Step::Starting { since: 1_000 },
                issued: true,
            }),
            ..InstanceRecord::default()
        },
    );
    let r = h.round(1_030).await;
    assert_eq!(r.instances[0].actions, vec![Start]);
}

#[tokio::test]
async fn an_api_error_on_stop_is_retried_next_round_without_a_second_action() {
    let script = Script {
        fail_calls: 1,
        ..Script::default()
    };
    let mut h = Harness::one(Mode::Closing, script).await;
    let r = h.rounds(0, 90).await.pop().unwrap();
    assert!(r.instances[0].api_error.is_some());
    assert!(h.power.calls().is_empty());
    let r = h.round(90).await;
    assert_eq!(r.instances[0].actions, vec![Stop]);
    assert_eq!(h.record("616516").actions, vec![60], "counted once");
}

#[tokio::test]
async fn dry_run_does_not_continue_a_remediation_either() {
    let mut h = Harness::one(Mode::Closing, Script::default()).await;
    h.rounds(0, 90).await;
    assert_eq!(h.power.actions(), vec![Stop]);
    h.dry_run = true;
    let r = h.round(90).await;
    assert_eq!(decision(&r, 0), &Decision::InProgress);
    assert_eq!(h.power.actions(), vec![Stop]);
    h.dry_run = false;
    assert_eq!(h.round(120).await.instances[0].actions, vec![Start]);
}

#[tokio::test]
async fn no_address_is_unknown_and_held() {
    let mut h = Harness::one(Mode::Closing, Script::default()).await;
    h.nodes[0].cfg.address = None; // and the fake lists no IP
    let reports = h.rounds(0, 300).await;
    let last = reports.last().unwrap();
    assert!(matches!(last.instances[0].health, Health::Unknown(_)));
    assert_eq!(decision(last, 0), &Decision::Hold(HoldReason::NoAddress));
    assert_eq!(h.record("616516").consecutive_failures, 0);
    assert!(h.power.calls().is_empty());
}

#[tokio::test]
async fn a_failed_state_write_stops_the_round_before_any_power_call() {
    let mut h = Harness::one(Mode::Closing, Script::default()).await;
    h.rounds(0, 60).await;
    let probes = h.probes();
    let list = h.power.list();
    let in_sync = |_: &InstanceId| true;
    let input = RoundInput {
        instances: Ok(&list),
        connectivity_ok: true,
        firewall_in_sync: &in_sync,
        dry_run: false,
        now: 60,
    };
    let mut broken =
        |_: &BTreeMap<String, InstanceRecord>| -> Result<(), String> { Err("disk full".into()) };
    let err = round(&probes, &h.power, &mut h.records, input, &mut broken).await;
    assert_eq!(err, Err("disk full".to_string()));
    assert!(h.power.calls().is_empty());
}

#[tokio::test]
async fn every_round_persists_and_a_remediation_writes_before_acting() {
    let mut h = Harness::one(Mode::Closing, Script::default()).await;
    h.round(0).await;
    assert_eq!(h.saves, 1);
    assert!(h.saved.contains("\"consecutive_failures\":1"));
    h.rounds(30, 90).await;
    // Round at 60: step persisted, stop accepted and persisted, end of round.
    assert_eq!(h.saves, 2 + 3);
    h.restart();
    assert_eq!(
        h.record("616516").remediation.as_ref().map(|r| r.issued),
        Some(true)
    );
}

#[test]
fn the_round_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let power = FakePower::new(&[], Script::default());
    let mut records = BTreeMap::new();
    let in_sync = |_: &InstanceId| true;
    let mut persist = |_: &BTreeMap<String, InstanceRecord>| -> Result<(), String> { Ok(()) };
    let fut = round(
        &[],
        &power,
        &mut records,
        RoundInput {
            instances: Ok(&[]),
            connectivity_ok: true,
            firewall_in_sync: &in_sync,
            dry_run: false,
            now: 0,
        },
        &mut persist,
    );
    assert_send(&fut);
}
